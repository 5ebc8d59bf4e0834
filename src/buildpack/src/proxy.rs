//! Which proxy a request goes through: `https_proxy` or `http_proxy` by the URL's
//! scheme, unless `no_proxy` names its host. There is one matcher: the HTTP client asks
//! it for every request (`reqwest::Proxy::custom`), and messages ask it which proxy to
//! name, so the two can never disagree.

use crate::errors::Error;
use crate::redact::{quoted, Redacted};
use crate::settings::Named;
use std::net::IpAddr;
use url::{Host, Url};

/// The proxies of a run and the hosts that bypass them.
#[derive(Debug, Clone)]
pub struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: NoProxy,
}

/// One proxy setting, parsed, with the variable it came from.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub var: String,
    pub url: Url,
}

impl Proxies {
    /// Parses the proxy settings; a value that is not a usable proxy URL fails, naming
    /// the variable as the user spelled it.
    pub fn parse(
        http: Option<&Named>,
        https: Option<&Named>,
        no_proxy: Option<&Named>,
    ) -> Result<Proxies, Error> {
        Ok(Proxies {
            http: http.map(parse_proxy).transpose()?,
            https: https.map(parse_proxy).transpose()?,
            no_proxy: NoProxy::parse(no_proxy.map_or("", |n| n.value.as_str())),
        })
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Proxy> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        (!self.no_proxy.matches(url)).then_some(proxy)
    }

    /// True when no proxy is set at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }
}

fn parse_proxy(setting: &Named) -> Result<Proxy, Error> {
    let bad = || Error::Setting {
        name: setting.var.clone(),
        value: quoted(Redacted::str(&setting.value).as_str()),
        accepted: "a proxy URL such as http://proxy.example:3128 (http:// or https://, \
                   user-info allowed)"
            .into(),
    };
    let raw = setting.value.trim();
    // curl and reqwest read a value without a scheme as http://.
    let text = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&text).map_err(|_| bad())?;
    // A path, query or fragment means the value was misread: a `/`, `?` or `#` in a
    // password that was not percent-encoded.
    let bare = matches!(url.path(), "" | "/") && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() || !bare {
        return Err(bad());
    }
    crate::redact::remember_user_info(raw);
    crate::redact::remember_url(&url);
    Ok(Proxy {
        var: setting.var.clone(),
        url,
    })
}

/// `no_proxy`: comma-separated entries, each a host name (it and its subdomains; a
/// leading `.` or `*.` is allowed), an IP address, or a CIDR range such as
/// `10.0.0.0/8`, optionally with `:port`; `*` alone bypasses every proxy.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Domain(String, Option<u16>),
    Net(IpAddr, u8, Option<u16>),
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut np = NoProxy::default();
        for raw in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if raw == "*" {
                np.all = true;
            } else if let Some(e) = parse_entry(raw) {
                np.entries.push(e);
            }
        }
        np
    }

    pub fn matches(&self, url: &Url) -> bool {
        if self.all {
            return true;
        }
        let port = url.port_or_known_default();
        let port_ok = |want: &Option<u16>| want.is_none() || *want == port;
        let ip = match url.host() {
            Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        self.entries.iter().any(|e| match e {
            Entry::Net(net, len, p) => ip.is_some_and(|ip| in_net(ip, *net, *len)) && port_ok(p),
            Entry::Domain(d, p) => {
                ip.is_none()
                    && port_ok(p)
                    && (host == *d
                        || host
                            .strip_suffix(d.as_str())
                            .is_some_and(|h| h.ends_with('.')))
            }
        })
    }
}

fn parse_entry(raw: &str) -> Option<Entry> {
    let raw = raw.to_ascii_lowercase();
    // `[::1]:8080`, `[::1]`, `10.0.0.0/8`, `::1`, `host:8080`, `host`.
    let (addr, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (inside.to_string(), port)
    } else if raw.matches(':').count() == 1 {
        let (h, p) = raw.split_once(':')?;
        (h.to_string(), Some(p.parse().ok()?))
    } else {
        (raw.clone(), None)
    };
    let (ip_part, len) = match addr.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u8>().ok()?)),
        None => (addr.as_str(), None),
    };
    if let Ok(ip) = ip_part.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        return (len <= max).then_some(Entry::Net(ip, len, port));
    }
    if len.is_some() {
        return None;
    }
    let domain = addr.trim_start_matches("*.").trim_start_matches('.');
    (!domain.is_empty()).then(|| Entry::Domain(domain.to_string(), port))
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bypass(list: &str, url: &str) -> bool {
        NoProxy::parse(list).matches(&Url::parse(url).expect("url"))
    }

    #[test]
    fn no_proxy_entries() {
        for (list, url, want) in [
            ("127.0.0.0/8", "http://127.0.0.2:8080/x", true),
            ("127.0.0.0/8", "http://128.0.0.1/x", false),
            ("127.0.0.1", "http://127.0.0.1:1/x", true),
            ("10.0.0.0/33", "http://10.0.0.1/", false),
            ("example.com", "https://example.com/", true),
            ("example.com", "https://a.b.example.com/", true),
            ("example.com", "https://notexample.com/", false),
            (".example.com", "https://a.example.com/", true),
            ("*.example.com", "https://example.com/", true),
            ("EXAMPLE.com", "https://Example.COM/", true),
            ("*", "https://anything/", true),
            ("a, *", "https://anything/", true),
            ("::1", "http://[::1]:8080/", true),
            ("[::1]:8080", "http://[::1]:8080/", true),
            ("[::1]:8080", "http://[::1]:8081/", false),
            ("fd00::/8", "http://[fd12::1]/", true),
            ("host:8080", "http://host:8080/", true),
            ("host:8080", "http://host/", false),
            ("127.0.0.1", "http://localhost/", false),
            ("", "http://h/", false),
            (" , ,", "http://h/", false),
        ] {
            assert_eq!(bypass(list, url), want, "{list:?} for {url}");
        }
    }

    fn named(var: &str, value: &str) -> Named {
        Named {
            var: var.into(),
            value: value.into(),
        }
    }

    #[test]
    fn proxies_by_scheme_unless_bypassed() {
        let p = Proxies::parse(
            Some(&named("http_proxy", "proxy:3128")),
            Some(&named("HTTPS_PROXY", "https://u:pw@sproxy:443")),
            Some(&named("no_proxy", "direct.example")),
        )
        .expect("parse");
        let u = |s: &str| Url::parse(s).expect("url");
        assert_eq!(
            p.for_url(&u("http://h/x")).map(|p| p.url.as_str()),
            Some("http://proxy:3128/")
        );
        assert_eq!(
            p.for_url(&u("https://h/x")).map(|p| p.var.as_str()),
            Some("HTTPS_PROXY")
        );
        assert!(p.for_url(&u("https://a.direct.example/x")).is_none());
        assert!(p.for_url(&u("file:///x")).is_none());
    }

    #[test]
    fn unusable_proxies_name_the_variable_and_hide_the_password() {
        for value in [
            "http://user:hunter2@[::1",
            "socks5://user:hunter2@h:1",
            "user:pa/hunter2@127.0.0.1:1",
            "http://user:pa#hunter2@h:1",
            "http://user/hunter2@h:1",
            "http://proxy:3128/?hunter2",
        ] {
            let err = Proxies::parse(Some(&named("HTTP_PROXY", value)), None, None)
                .expect_err(value)
                .to_string();
            assert!(err.starts_with("HTTP_PROXY is set to \""), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
