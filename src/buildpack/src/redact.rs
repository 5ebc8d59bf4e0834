//! What may be shown of text the buildpack did not write itself. URLs are printed only
//! through `Redacted`: user-info and query strings carry credentials (presigned S3 URLs,
//! basic auth), so they never reach a log or an error. Every other untrusted string
//! (an archive entry, a setting's value, a manifest value) goes through [`shown`] or
//! [`quoted`]: control characters escaped, cut to a sane length. And the staging log
//! scrubs every secret it was told about ([`remember_url`], [`remember_user_info`]) from
//! every line, whatever path a secret took to get there.

use std::fmt;
use std::sync::Mutex;
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
        // An `@` left in the path may end a password the parser took for a host
        // (`http://user/pw@host`): hide everything before it too.
        let hidden = structural(u.as_str());
        match as_url(&hidden) {
            Some(v) if hidden != u.as_str() => Redacted(v.to_string()),
            _ => Redacted(hidden),
        }
    }

    /// Redacts a string that may or may not parse as a URL. Whatever else is wrong
    /// with it, everything before its last `@` (after any `scheme://`) is user-info and
    /// hidden, and anything after a `?` or `#` is hidden.
    pub fn str(s: &str) -> Self {
        match as_url(s) {
            Some(u) => Self::url(&u),
            // What is left holds no secret: show it as a URL if it now reads as one.
            None => {
                let hidden = structural(s);
                match as_url(&hidden) {
                    Some(u) => Redacted(u.to_string()),
                    None => Redacted(hidden),
                }
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `s` as a URL with a host. `user:pw@host:3128` parses with `user` as its scheme and
/// no user-info, yet reqwest and curl take it as `http://user:pw@host:3128`: read it
/// their way.
fn as_url(s: &str) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if u.has_host() => Some(u),
        _ if !s.contains("://") => Url::parse(&format!("http://{s}"))
            .ok()
            .filter(Url::has_host),
        _ => None,
    }
}

/// The `@` rule, without parsing: `scheme://` kept, everything up to the last `@` shown
/// as `***@`, and the rest cut at the first `?` or `#` (shown as `?***`).
fn structural(s: &str) -> String {
    let (scheme, rest) = match s.find("://") {
        Some(i)
            if i > 0
                && s[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            s.split_at(i + 3)
        }
        _ => ("", s),
    };
    let (hidden, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let (main, tail) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], "?***"),
        None => (rest, ""),
    };
    format!("{scheme}{hidden}{main}{tail}")
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

/// Most characters of an untrusted string a message shows. A real archive entry,
/// setting or manifest value is far shorter; a hostile one is cut.
pub const MAX_SHOWN: usize = 160;

/// An untrusted string as a message may show it: control and bidi characters escaped
/// (no fake log lines, no terminal tricks), and cut to about [`MAX_SHOWN`] characters,
/// keeping its start and end and saying how long it was.
pub fn shown(s: &str) -> String {
    let (text, note) = cut(s, false);
    format!("{text}{note}")
}

/// [`shown`], in double quotes (the note on its length after them), with quotes and
/// backslashes inside escaped as well.
pub fn quoted(s: &str) -> String {
    let (text, note) = cut(s, true);
    format!("\"{text}\"{note}")
}

/// [`quoted`] for a value someone typed (an env setting, `CF_STACK`, `DEPS_IDX`): a
/// URL or an `@` word pasted into it is redacted first, by the same rule as every URL,
/// since a credential may sit in a value that is not meant to hold one.
pub fn quoted_value(s: &str) -> String {
    quoted(&scrub_urls(s))
}

fn cut(s: &str, in_quotes: bool) -> (String, String) {
    let escaped: Vec<String> = s.chars().map(|c| escape(c, in_quotes)).collect();
    if escaped.len() <= MAX_SHOWN {
        return (escaped.concat(), String::new());
    }
    let tail = MAX_SHOWN / 4;
    let head = MAX_SHOWN - tail;
    let text = format!(
        "{}…{}",
        escaped[..head].concat(),
        escaped[escaped.len() - tail..].concat()
    );
    (text, format!(" ({} characters)", s.chars().count()))
}

fn escape(c: char, in_quotes: bool) -> String {
    if is_unsafe(c) || (in_quotes && (c == '"' || c == '\\')) {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    }
}

/// Characters that must never reach a log line raw: controls (a newline or carriage
/// return fakes a line, ESC drives the terminal), and the invisible ones that reorder
/// or hide text (bidi overrides, line separators).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Secrets seen in this run, scrubbed from every line of output ([`scrub_known`]).
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter secrets are not scrubbed by value (they would mangle ordinary words); the
/// structural redaction still hides them.
const MIN_SECRET: usize = 4;

fn remember(secret: &str) {
    remember_at_least(secret, MIN_SECRET);
}

fn remember_at_least(secret: &str, min: usize) {
    if secret.chars().count() < min {
        return;
    }
    let decoded = percent_encoding::percent_decode_str(secret)
        .decode_utf8_lossy()
        .into_owned();
    if let Ok(mut all) = SECRETS.lock() {
        for s in [secret.to_string(), decoded] {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        // Longest first, so a secret that contains another is removed whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Remembers the secret parts of a URL the run will use: its password, query string and
/// query values, and fragment.
pub fn remember_url(url: &Url) {
    if let Some(p) = url.password() {
        remember(p);
    }
    if let Some(q) = url.query() {
        remember(q);
        // A short value (`?raw=true`) is likely no secret, and scrubbing it everywhere
        // would mangle ordinary words; tokens and signatures are long.
        for (_, v) in url.query_pairs() {
            remember_at_least(&v, 8);
        }
    }
    if let Some(f) = url.fragment() {
        remember(f);
    }
}

/// Remembers the user-info of a setting such as a proxy, by the `@` rule: everything
/// before its last `@`, and what follows its first `:` (the password).
pub fn remember_user_info(value: &str) {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    if let Some((info, _)) = rest.rsplit_once('@') {
        remember(info);
        if let Some((_, password)) = info.split_once(':') {
            remember(password);
        }
    }
}

/// `text` with every remembered secret replaced by `***`.
pub fn scrub_known(text: &str) -> String {
    let Ok(all) = SECRETS.lock() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
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
/// was never given, such as a redirect's target (a presigned URL), and every word with
/// an `@` in it (`user:pw@proxy:3128` with no scheme).
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(len) = rest.find(|c: char| !is_separator(c)).map(|start| {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        rest.find(is_separator).unwrap_or(rest.len())
    }) {
        let token = &rest[..len];
        rest = &rest[len..];
        let start = match token.find("://") {
            // The scheme: the letters just before "://".
            Some(at) => token[..at]
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(*c)))
                .map_or(0, |(i, c)| i + c.len_utf8()),
            None if token.contains('@') => token
                .find(|c: char| !"([{".contains(c))
                .unwrap_or(token.len()),
            None => {
                out.push_str(token);
                continue;
            }
        };
        // Punctuation that closes the sentence or the parenthesis around the URL.
        let url = token[start..].trim_end_matches(|c: char| ")]},;:.".contains(c));
        out.push_str(&token[..start]);
        out.push_str(Redacted::str(url).as_str());
        out.push_str(&token[start + url.len()..]);
    }
    // Separators after the last word.
    out.push_str(rest);
    out
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'<>`".contains(c)
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
        assert_eq!(r("http://us er:pw@ho st/x?tok=1"), "http://***@ho st/x?***");
        assert_eq!(r("not a url?secret"), "not a url?***");
    }

    #[test]
    fn anything_with_an_at_sign_hides_its_user_info() {
        // Values no URL parser accepts, with the password cut by `/`, `#` or `?`.
        for (value, want) in [
            ("user:pa/SECRET@127.0.0.1:1", "http://***@127.0.0.1:1/"),
            ("http://user:pa#SECRET@host:1", "http://***@host:1/"),
            ("http://user:pa?SECRET@host:1", "http://***@host:1/"),
            ("http://user/SECRET@127.0.0.1:1", "http://***@127.0.0.1:1/"),
            ("socks5://u:SECRET@@h:1", "socks5://***@h:1"),
            ("u:SECRET@[::1", "***@[::1"),
            ("http://u:SECRET@h:99999/x", "http://***@h:99999/x"),
            ("@host", "http://host/"),
            ("https://h/a@mirror/b?x", "https://***@mirror/b?***"),
        ] {
            let got = r(value);
            assert_eq!(got, want, "{value}");
            assert!(!got.contains("SECRET") && !got.contains(":pa"), "{got}");
        }
        assert_eq!(
            scrub_urls("proxy u:pa/SECRET@h:3128 refused (x:SECRET@y)."),
            "proxy http://***@h:3128/ refused (http://***@y/)."
        );
    }

    #[test]
    fn untrusted_text_is_escaped_and_cut() {
        assert_eq!(shown("bin/config-server"), "bin/config-server");
        assert_eq!(
            quoted("a\n-----> b\r\u{1b}[2J\u{202e}"),
            r#""a\n-----> b\r\u{1b}[2J\u{202e}""#
        );
        let long = format!("{}{}", "a".repeat(10_000), "../evil");
        let s = shown(&long);
        assert!(s.starts_with(&"a".repeat(120)), "{s}");
        assert!(s.ends_with("../evil (10007 characters)"), "{s}");
        assert!(s.chars().count() < MAX_SHOWN + 30, "{s}");
    }

    #[test]
    fn remembered_secrets_are_scrubbed_from_any_text() {
        let u = Url::parse("https://bob:pw%2Fx-1234@h.example/f?sig=zz-secret-99").expect("url");
        remember_url(&u);
        remember_user_info("proxyuser:pa/ss-77@proxy:3128");
        remember_url(&Url::parse("https://h/x?raw=true").expect("url"));
        let out = scrub_known("a pw/x-1234 b zz-secret-99 c pa/ss-77 d, true");
        assert_eq!(out, "a *** b *** c *** d, true");
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
        assert_eq!(
            scrub_urls("missing field `language`"),
            "missing field `language`"
        );
        assert_eq!(scrub_urls(" \"quoted\" \n"), " \"quoted\" \n");
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
