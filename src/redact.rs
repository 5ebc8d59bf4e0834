//! URLs are printed only through `Redacted`: user-info and query strings carry
//! credentials (presigned S3 URLs, basic auth), so they never reach a log or an error.

use std::fmt;
use url::Url;

/// A URL with its user-info, query and fragment replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn url(url: &Url) -> Self {
        let mut u = url.clone();
        let had_user = !u.username().is_empty() || u.password().is_some();
        if had_user {
            // Cannot fail for URLs with a host, and only those carry user-info.
            let _ = u.set_username("***");
            let _ = u.set_password(None);
        }
        if u.query().is_some() {
            u.set_query(Some("***"));
        }
        if u.fragment().is_some() {
            u.set_fragment(None);
        }
        Redacted(u.to_string())
    }

    /// Redacts a string that may or may not parse as a URL; what does not parse is
    /// cut at the first `?` or `#` and stripped of anything before an `@`.
    pub fn str(s: &str) -> Self {
        // `user:pw@host:3128` parses with `user` as its scheme and no user-info, yet
        // reqwest and curl take it as `http://user:pw@host:3128`: read it their way.
        let parsed = match Url::parse(s) {
            Ok(u) if u.has_host() => Ok(u),
            _ if !s.contains("://") => Url::parse(&format!("http://{s}")),
            other => other,
        };
        match parsed {
            Ok(u) => Self::url(&u),
            Err(_) => {
                let cut = s.split(['?', '#']).next().unwrap_or_default();
                let cut = match (cut.find("://"), cut.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        format!("{}***@{}", &cut[..scheme + 3], &cut[at + 1..])
                    }
                    _ => cut.to_string(),
                };
                Redacted(cut)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Removes every occurrence of the secret parts of `url` from `text`. Used on error
/// chains from libraries that print the URL they were given.
pub fn scrub(text: &str, url: &Url) -> String {
    let mut out = text.replace(url.as_str(), Redacted::url(url).as_str());
    let secrets = [
        url.password().map(str::to_string),
        Some(url.username().to_string()),
        url.query().map(str::to_string),
        url.fragment().map(str::to_string),
    ];
    let values = url.query_pairs().map(|(_, v)| v.into_owned());
    for s in secrets
        .into_iter()
        .flatten()
        .chain(values)
        .filter(|s| s.len() >= 3)
    {
        out = out.replace(&s, "***");
    }
    out
}

/// Redacts every URL found in `text`, for messages that may name URLs the buildpack
/// was never given, such as a redirect's target (a presigned URL).
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters just before "://".
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(*c)))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let len = rest[start..]
            .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
            .unwrap_or(rest.len() - start);
        let token = &rest[start..start + len];
        // Punctuation that closes the sentence or the parenthesis around the URL.
        let url = token.trim_end_matches(|c: char| ")],;:.".contains(c));
        let tail = &token[url.len()..];
        out.push_str(&rest[..start]);
        out.push_str(Redacted::str(url).as_str());
        out.push_str(tail);
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// The error chain of a library error, with the secrets of `url` and of any other URL
/// in it (a redirect's target) removed.
pub fn describe(err: &(dyn std::error::Error + 'static), url: &Url) -> String {
    scrub_urls(&scrub(&error_chain(err), url))
}

/// An error and its sources, each once, joined with `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut src = err.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redacted::str(s).to_string()
    }

    #[test]
    fn strips_user_info_query_and_fragment() {
        assert_eq!(
            r("https://user:pa55@host.example/a/b.tgz?X-Amz-Signature=abc#frag"),
            "https://***@host.example/a/b.tgz?***"
        );
        assert_eq!(
            r("https://token@host.example/x"),
            "https://***@host.example/x"
        );
    }

    #[test]
    fn redacts_proxy_settings_without_a_scheme() {
        assert_eq!(r("bob:s3cretpw@127.0.0.1:1"), "http://***@127.0.0.1:1/");
        assert_eq!(r("proxy.example:3128"), "http://proxy.example:3128/");
    }

    #[test]
    fn scrubs_urls_after_multibyte_text() {
        assert_eq!(
            scrub_urls("see→https://u:pw@h.example/x?t=1 now"),
            "see→https://***@h.example/x?*** now"
        );
    }

    #[test]
    fn leaves_plain_urls_alone() {
        assert_eq!(
            r("https://host.example/a.tgz"),
            "https://host.example/a.tgz"
        );
        assert_eq!(r("file:///srv/mirror/a.tgz"), "file:///srv/mirror/a.tgz");
    }

    #[test]
    fn redacts_unparsable_strings() {
        assert_eq!(r("http://us er:pw@ho st/x?tok=1"), "http://***@ho st/x");
        assert_eq!(r("not a url?secret"), "not a url");
    }

    #[test]
    fn scrubs_every_url_in_a_message() {
        let msg = "error following redirect for url (https://u:pw1@s3.example/a.tgz?X-Amz-Signature=zzz): \
                   boom; see http://other.example/x?t=yyy.";
        let out = scrub_urls(msg);
        assert_eq!(
            out,
            "error following redirect for url (https://***@s3.example/a.tgz?***): boom; see \
             http://other.example/x?***."
        );
        assert_eq!(scrub_urls("no url here"), "no url here");
        assert_eq!(scrub_urls("://"), "://");
    }

    #[test]
    fn scrubs_secrets_from_library_messages() {
        let u = Url::parse("https://bob:hunter2@h.example/f?sig=s3cr3t").expect("url");
        let msg = format!("error sending request for url ({u}): boom hunter2 s3cr3t");
        let out = scrub(&msg, &u);
        assert!(!out.contains("hunter2") && !out.contains("s3cr3t"), "{out}");
        assert!(out.contains("https://***@h.example/f?***"), "{out}");
    }
}
