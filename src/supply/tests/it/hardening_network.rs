//! Network faults, against real servers on loopback: retries and their limits, stalls
//! and slow servers, redirects, TLS trust, proxies, and no network at all. Every URL
//! carries a secret (user-info or a query token) that no output may show.

use crate::packaging::Source;
use crate::support::*;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// An artifact of `size` incompressible bytes around the fake sidecar.
fn big_artifact(size: usize) -> Vec<u8> {
    let mut data = sidecar_bytes("big");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    tgz(&[("bin/config-server", &data, 0o755)])
}

/// A buildpack whose uri is `path` (with a secret query token) on `server`.
fn pinned_to(bp: Buildpack, server: &Server, path: &str) -> Buildpack {
    bp.uri(server.url(&format!("{path}?token={SECRET}")))
        .write()
}

const ART: &str = "/releases/config-server-0.1.0.tgz";

/// A server on 127.0.0.2, another host to redirect to, serving `bp`'s artifact.
fn another_host(bp: &Buildpack) -> Server {
    Server::start_on(
        Ipv4Addr::new(127, 0, 0, 2),
        vec![Reply::Body(bp.artifact.clone())],
    )
}

#[test]
fn server_error_then_ok_is_retried_and_says_so() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Status(500), Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       **WARNING** attempt 1 of 4 failed (HTTP 500); retrying in 0.1s\n")
        .has("Verified sha256");
    assert_eq!(server.hits(), 2);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
}

#[test]
fn connection_reset_mid_body_is_retried() {
    let bp = Buildpack::new().artifact(big_artifact(256 * 1024));
    let a = bp.artifact.clone();
    let server = Server::start(vec![Reply::Reset(a.clone(), a.len() / 3), Reply::Body(a)]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       **WARNING** attempt 1 of 4 failed (");
    assert_eq!(server.hits(), 2);
    assert!(out.installed().starts_with(&sidecar_bytes("big")));
    assert_no_temp_files(&dirs.deps());
}

#[test]
fn stalled_body_hits_the_stall_timeout_and_is_retried() {
    let bp = Buildpack::new().artifact(big_artifact(64 * 1024));
    let a = bp.artifact.clone();
    let server = Server::start(vec![
        Reply::Stall(a.clone(), a.len() / 2, Duration::from_secs(20)),
        Reply::Body(a),
    ]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_STALL_TIMEOUT", "1")
        .run();
    out.success()
        .has("       **WARNING** attempt 1 of 4 failed (")
        .has("timed out");
    assert_eq!(server.hits(), 2);
    // The stall timeout ended the attempt, not the server, which stays silent for 20 s.
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    assert_no_temp_files(&dirs.deps());
}

/// A server that sends 64 KiB over about 7 s, in a chunk every 0.5 s: more than three
/// times the 2 s stall timeout in all, but never 2 s without a byte. It completes,
/// because there is no overall deadline.
#[test]
fn slow_but_steady_download_completes() {
    let bp = Buildpack::new().artifact(big_artifact(64 * 1024));
    let a = bp.artifact.clone();
    let chunk = a.len().div_ceil(14);
    let server = Server::start(vec![Reply::Slow(a, chunk, Duration::from_millis(500))]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_STALL_TIMEOUT", "2")
        .run();
    out.success().lacks("**WARNING**");
    assert_eq!(server.hits(), 1);
    assert!(
        out.elapsed > Duration::from_secs(6),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn redirect_to_another_host_is_followed() {
    let bp = Buildpack::new();
    let other = another_host(&bp);
    let target = other.url(&format!(
        "/mirror/config-server-0.1.0.tgz?X-Amz-Signature={SECRET}"
    ));
    let server = Server::start(vec![Reply::Redirect(target)]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).env("BP_DEBUG", "1").run();
    out.success().has(&format!(
        "DEBUG: HTTP 200 from {}",
        other.url("/mirror/config-server-0.1.0.tgz?***")
    ));
    assert_eq!((server.hits(), other.hits()), (1, 1));
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn redirect_loop_is_stopped_with_an_error() {
    // A relative Location back to the same path: a loop from the second hop on.
    let looping = Server::start(vec![Reply::Redirect(ART.into())]);
    let bp = pinned_to(Buildpack::new(), &looping, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.code(4)
        .has(&format!(
            "       **ERROR** could not download config-server from {}\n",
            looping.url(&format!("{ART}?***"))
        ))
        .has("redirect loop")
        .lacks("retrying")
        .not_installed();
}

#[test]
fn too_many_redirects_are_stopped() {
    let hops = Server::start(
        (1..=12)
            .map(|i| Reply::Redirect(format!("/hop/{i}")))
            .collect(),
    );
    let bp = pinned_to(Buildpack::new(), &hops, "/hop/0");
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .run()
        .code(4)
        .has("more than 10 redirects")
        .not_installed();
}

#[test]
fn redirect_from_https_to_http_is_refused() {
    let bp = Buildpack::new();
    let plain = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let (dirs, tls, certs) = trusted_tls(vec![Reply::Redirect(
        plain.url(&format!("{ART}?token={SECRET}")),
    )]);
    let bp = pinned_to(bp, &tls, ART);
    let out = Stage::new(&bp, &dirs)
        .env("CF_SYSTEM_CERT_PATH", &certs)
        .run();
    out.code(4)
        .has("refusing a redirect from https to http")
        .not_installed();
    assert_eq!(plain.hits(), 0, "the http URL must never be requested");
}

#[test]
fn http_manifest_uri_may_redirect_through_https_to_http() {
    let bp = Buildpack::new();
    let last = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let (dirs, tls, certs) = trusted_tls(vec![Reply::Redirect(last.url(ART))]);
    let first = Server::start(vec![Reply::Redirect(tls.url(ART))]);
    let bp = pinned_to(bp, &first, ART);
    let out = Stage::new(&bp, &dirs)
        .env("CF_SYSTEM_CERT_PATH", &certs)
        .run();
    out.success();
    assert_eq!((first.hits(), tls.hits(), last.hits()), (1, 1, 1));
}

#[test]
fn redirect_targets_never_show_their_secrets() {
    // The redirect target fails: its own token must not reach any message.
    let bp = Buildpack::new();
    let target = format!(
        "http://bob:hunter2@127.0.0.1:{}/signed.tgz?X-Amz-Signature={SECRET}",
        closed_port()
    );
    let server = Server::start(vec![Reply::Redirect(target)]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("BP_DEBUG", "1")
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "2")
        .run()
        .code(4)
        .has("could not download config-server from")
        .not_installed();
}

/// Staging dirs whose `certs/` (for CF_SYSTEM_CERT_PATH) trusts a fresh CA, and a TLS
/// server for 127.0.0.1 with a certificate from it.
fn trusted_tls(replies: Vec<Reply>) -> (Dirs, Server, String) {
    let ca = TestCa::new();
    let dirs = Dirs::new();
    let certs = dirs.root.path().join("certs");
    ca.install(&certs);
    let server = Server::start_tls(ca.server(&["127.0.0.1"], false), replies);
    let certs = certs.to_str().expect("utf8").to_string();
    (dirs, server, certs)
}

/// A TLS server whose certificate is for `names`, and a CF_SYSTEM_CERT_PATH that holds
/// the CA when `trusted`.
fn tls_case(names: &[&str], expired: bool, trusted: bool) -> (Outcome, Server, Dirs) {
    let ca = TestCa::new();
    let dirs = Dirs::new();
    let certs = dirs.root.path().join("certs");
    fs::create_dir_all(&certs).expect("certs");
    if trusted {
        ca.install(&certs);
    }
    let bp = Buildpack::new();
    let server = Server::start_tls(
        ca.server(names, expired),
        vec![Reply::Body(bp.artifact.clone())],
    );
    let bp = pinned_to(bp, &server, ART);
    let out = Stage::new(&bp, &dirs)
        .env("CF_SYSTEM_CERT_PATH", certs.to_str().expect("utf8"))
        .env("BP_DEBUG", "1")
        .run();
    (out, server, dirs)
}

#[test]
fn untrusted_certificate_says_to_use_cf_system_cert_path() {
    let (out, server, dirs) = tls_case(&["127.0.0.1"], false, false);
    out.code(4)
        .has("       **ERROR** could not download config-server from https://127.0.0.1:")
        .has("Cause: the server's TLS certificate is not trusted")
        .has(&format!(
            "CF_SYSTEM_CERT_PATH (now {})",
            dirs.root.path().join("certs").display()
        ))
        .has("         attempts: 1\n")
        .not_installed();
    assert_eq!(server.hits(), 1, "a certificate error is not retried");
}

#[test]
fn ca_in_cf_system_cert_path_is_trusted() {
    let (out, server, _dirs) = tls_case(&["127.0.0.1"], false, true);
    out.success()
        .has("DEBUG: trusting 1 certificate(s) from ")
        .has("DEBUG: skipping ");
    assert_eq!(server.hits(), 1);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn expired_certificate_is_refused() {
    let (out, server, _dirs) = tls_case(&["127.0.0.1"], true, true);
    out.code(4)
        .has("Cause: the server's TLS certificate has expired")
        .not_installed();
    assert_eq!(server.hits(), 1);
}

#[test]
fn certificate_for_another_host_is_refused() {
    let (out, server, _dirs) = tls_case(&["other.invalid"], false, true);
    out.code(4)
        .has("Cause: the server's TLS certificate is not valid for the host in the URL")
        .not_installed();
    assert_eq!(server.hits(), 1);
}

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn http_proxy_in_either_case_is_used() {
    for var in ["http_proxy", "HTTP_PROXY"] {
        let proxy = Tinyproxy::start();
        let bp = Buildpack::new();
        let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
        let bp = pinned_to(bp, &server, ART);
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .env(var, &proxy.url())
            .run()
            .success();
        let log = proxy.log();
        assert!(
            log.contains(&format!("GET {}", server.url(ART))),
            "{var}: the proxy did not forward the download; its log:\n{log}"
        );
        assert_eq!(server.hits(), 1);
    }
}

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn https_proxy_in_either_case_is_used() {
    for var in ["https_proxy", "HTTPS_PROXY"] {
        let proxy = Tinyproxy::start();
        let bp = Buildpack::new();
        let (dirs, server, certs) = trusted_tls(vec![Reply::Body(bp.artifact.clone())]);
        let bp = pinned_to(bp, &server, ART);
        Stage::new(&bp, &dirs)
            .env(
                var,
                &format!("http://proxyuser:hunter2@127.0.0.1:{}", proxy.port),
            )
            .env("CF_SYSTEM_CERT_PATH", &certs)
            .run()
            .success();
        let log = proxy.log();
        assert!(
            log.contains(&format!("CONNECT {} ", server.addr)),
            "{var}: no CONNECT through the proxy; its log:\n{log}"
        );
    }
}

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn no_proxy_bypasses_the_proxy() {
    for (var, value) in [
        ("no_proxy", "127.0.0.1"),
        ("NO_PROXY", "example.invalid, 127.0.0.1"),
        ("no_proxy", "127.0.0.0/8"),
        ("no_proxy", "*"),
    ] {
        let proxy = Tinyproxy::start();
        let bp = Buildpack::new();
        let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
        let bp = pinned_to(bp, &server, ART);
        // First without no_proxy: the proxy forwards and logs it, so its log can tell.
        Stage::new(&bp, &Dirs::new())
            .env("http_proxy", &proxy.url())
            .run()
            .success();
        let forwarded = format!("GET {}", server.url(ART));
        let log = proxy.log();
        assert_eq!(log.matches(&forwarded).count(), 1, "control run:\n{log}");
        Stage::new(&bp, &Dirs::new())
            .env("http_proxy", &proxy.url())
            .env(var, value)
            .run()
            .success();
        assert_eq!(server.hits(), 2);
        let log = proxy.log();
        assert_eq!(
            log.matches("GET http://").count(),
            1,
            "{var}={value}: went through the proxy:\n{log}"
        );
    }
}

#[test]
fn refusing_proxy_is_a_clear_error_that_names_it() {
    let port = closed_port();
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env(
            "http_proxy",
            &format!("http://proxyuser:hunter2@127.0.0.1:{port}"),
        )
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "2")
        .run();
    out.code(4)
        .has("       **ERROR** could not download config-server from")
        .has("Cause: the proxy or the release host could not be reached")
        .has(&format!("         proxy: http://***@127.0.0.1:{port}/\n"))
        .not_installed();
    assert_eq!(server.hits(), 0);
}

#[test]
fn proxy_without_a_scheme_never_shows_its_password() {
    // reqwest and curl read `user:pw@host:port` as an http:// proxy; so must redaction.
    let port = closed_port();
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("http_proxy", &format!("proxyuser:hunter2@127.0.0.1:{port}"))
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "1")
        .run()
        .code(4)
        .has(&format!("         proxy: http://***@127.0.0.1:{port}/\n"))
        .not_installed();
    assert_eq!(server.hits(), 0);
}

#[test]
#[ignore = "needs root: runs inside unshare -n (no network)"]
fn no_network_at_all_with_an_app_cache_hit() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).run().success();
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    // A new network namespace has no interface up, not even loopback.
    let out = Stage::new(&bp, &dirs)
        .wrapped(&["unshare", "-n", "--"])
        .run();
    out.success()
        .has("       Using the copy in the app cache\n")
        .lacks("Downloading");
    assert_eq!(server.hits(), 1);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
#[ignore = "needs root: runs inside unshare -n (no network)"]
fn no_network_at_all_with_a_cached_buildpack() {
    let bp = Buildpack::new()
        .uri(format!(
            "https://127.0.0.1:{}/config-server-0.1.0.tgz?token={SECRET}",
            closed_port()
        ))
        .cached()
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .wrapped(&["unshare", "-n", "--"])
        .env("https_proxy", "http://127.0.0.1:9")
        .run();
    out.success().lacks("Downloading");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

// The packager downloads with the same fetcher: the same retries, limits and proxies.

fn packaged(src: &Source, env: &[(&str, &str)]) -> (i32, String, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("out");
    let mut env = env.to_vec();
    env.push(("SIDECAR_BUILDPACK_RETRY_DELAY_MS", "10"));
    let (code, text) = src.package_with(out.path(), &["--cached"], &env);
    (code, text, out)
}

fn served_source(replies: impl FnOnce(&[u8]) -> Vec<Reply>) -> (Source, Server, String) {
    let src = Source::new();
    let server = Server::start(replies(&src.artifact));
    let url = server.url(&format!(
        "/config-server-0.1.0-linux-x86_64.tgz?token={SECRET}"
    ));
    src.served_from(&url);
    (src, server, url)
}

fn only_the_zip(out: &Path) {
    assert_eq!(listing(out), [crate::packaging::zip_name("-cached")]);
}

#[test]
fn packager_retries_a_server_error() {
    let (src, server, _) = served_source(|a| vec![Reply::Status(502), Reply::Body(a.to_vec())]);
    let (code, text, out) = packaged(&src, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("**WARNING** attempt 1 of 4 failed (HTTP 502)"),
        "{text}"
    );
    assert_eq!(server.hits(), 2);
    only_the_zip(out.path());
}

#[test]
fn packager_does_not_retry_not_found() {
    let (src, server, _) = served_source(|_| vec![Reply::Status(404)]);
    let (code, text, out) = packaged(&src, &[]);
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains(&format!(
            "**ERROR** downloading config-server from {} failed with HTTP 404",
            server.url("/config-server-0.1.0-linux-x86_64.tgz?***")
        )),
        "{text}"
    );
    assert_eq!(server.hits(), 1);
    assert!(listing(out.path()).is_empty(), "no zip, no temp files");
}

#[test]
fn packager_gives_up_on_a_server_that_is_always_down() {
    let (src, server, _) = served_source(|_| vec![Reply::Status(503)]);
    let (code, text, out) = packaged(&src, &[("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "2")]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("failed with HTTP 503\n"), "{text}");
    assert_eq!(server.hits(), 2);
    assert!(listing(out.path()).is_empty());
}

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn packager_uses_the_proxy() {
    let proxy = Tinyproxy::start();
    let (src, server, _) = served_source(|a| vec![Reply::Body(a.to_vec())]);
    let (code, text, out) = packaged(&src, &[("http_proxy", &proxy.url())]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(server.hits(), 1);
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "GET {}",
            server.url("/config-server-0.1.0-linux-x86_64.tgz")
        )),
        "{log}"
    );
    only_the_zip(out.path());
}

// Headers that could carry the first URL's user-info, query or the proxy's credentials
// to another host (#10 item 1). Each host records every request head it gets.

/// Fails if the request `head` has a header named in `names` or holds any of `texts`.
#[track_caller]
fn head_lacks(head: &str, names: &[&str], texts: &[&str]) {
    for line in head.lines().skip(1) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        assert!(
            !names.contains(&name.as_str()),
            "header {name} was sent:\n{head}"
        );
    }
    for t in texts {
        assert!(!head.contains(t), "{t:?} was sent:\n{head}");
    }
}

#[track_caller]
fn head_has(head: &str, name: &str) {
    assert!(
        head.lines()
            .skip(1)
            .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:"))),
        "no {name} header in:\n{head}"
    );
}

#[test]
fn a_redirect_carries_no_header_of_the_first_url_to_another_host() {
    let bp = Buildpack::new();
    let other_host = another_host(&bp);
    let other_port = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    for target in [&other_host, &other_port] {
        let first = Server::start(vec![Reply::Redirect(
            target.url("/mirror/config-server.tgz"),
        )]);
        let uri = format!(
            "http://bob:hunter2@{}/releases/config-server-0.1.0.tgz?X-Amz-Signature={SECRET}",
            first.addr
        );
        let bp = Buildpack::new().uri(uri).write();
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).run();
        out.success();
        // The first host gets its own credentials: a header the test would see.
        head_has(&first.requests()[0], "authorization");
        let last = target.requests().pop().expect("the redirect was followed");
        head_lacks(
            &last,
            &["referer", "authorization", "proxy-authorization", "cookie"],
            &[
                SECRET,
                "X-Amz-Signature",
                "/releases/",
                &first.addr.to_string(),
            ],
        );
    }
}

#[test]
fn proxy_credentials_go_only_to_the_proxy() {
    let bp = Buildpack::new();
    // A plain-HTTP proxy is sent the request itself, so a scripted server can play one:
    // it redirects each download to a host that no_proxy sends around it.
    let direct = another_host(&bp);
    let proxy = Server::start(vec![Reply::Redirect(direct.url("/direct.tgz"))]);
    let bp = Buildpack::new()
        .uri(format!(
            "http://releases.invalid/config-server-0.1.0.tgz?token={SECRET}"
        ))
        .write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env(
            "http_proxy",
            &format!("http://proxyuser:hunter2@{}", proxy.addr),
        )
        .env("no_proxy", "127.0.0.2")
        .run()
        .success();
    let to_proxy = &proxy.requests()[0];
    assert!(
        to_proxy.starts_with("GET http://releases.invalid/"),
        "{to_proxy}"
    );
    head_has(to_proxy, "proxy-authorization");
    head_lacks(
        &direct.requests()[0],
        &["proxy-authorization", "authorization", "referer"],
        &[SECRET, "releases.invalid"],
    );

    // The same host and port, from http (proxied) to https (not): the TLS server must
    // not get the header that went to the proxy.
    let (dirs, tls, certs) = trusted_tls(vec![Reply::Body(bp.artifact.clone())]);
    let proxy = Server::start(vec![Reply::Redirect(tls.url("/x.tgz"))]);
    let bp = Buildpack::new()
        .uri(format!("http://{}/config-server-0.1.0.tgz", tls.addr))
        .write();
    Stage::new(&bp, &dirs)
        .env(
            "http_proxy",
            &format!("http://proxyuser:hunter2@{}", proxy.addr),
        )
        .env("CF_SYSTEM_CERT_PATH", &certs)
        .run()
        .success();
    head_has(&proxy.requests()[0], "proxy-authorization");
    head_lacks(&tls.requests()[0], &["proxy-authorization", "referer"], &[]);
}

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn https_through_a_proxy_keeps_its_credentials_in_the_connect() {
    let proxy = Tinyproxy::start();
    let bp = Buildpack::new();
    let (dirs, server, certs) = trusted_tls(vec![Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    Stage::new(&bp, &dirs)
        .env(
            "https_proxy",
            &format!("http://proxyuser:hunter2@127.0.0.1:{}", proxy.port),
        )
        .env("CF_SYSTEM_CERT_PATH", &certs)
        .run()
        .success();
    assert!(proxy.log().contains(&format!("CONNECT {} ", server.addr)));
    head_lacks(
        &server.requests()[0],
        &["proxy-authorization"],
        &["hunter2"],
    );
}

// Proxy settings that are not URLs (#10 item 2): the password never shows, whatever
// cuts it (`/`, `#`, `?`), and the variable is named.

#[test]
fn proxy_values_that_are_not_urls_never_show_their_password() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = pinned_to(bp, &server, ART);
    for (var, value) in [
        ("https_proxy", format!("user:pa/{SECRET}@127.0.0.1:1")),
        ("http_proxy", format!("http://user:pa#{SECRET}@host:1")),
        ("HTTP_PROXY", format!("http://user:pa?{SECRET}@host:1")),
        ("http_proxy", format!("http://user/{SECRET}@127.0.0.1:1")),
        ("http_proxy", format!("socks5://user:{SECRET}@127.0.0.1:1")),
        ("http_proxy", format!("http://u:{SECRET}@[::1")),
    ] {
        let dirs = Dirs::new();
        // A cached buildpack never downloads: here the proxy is needed, so it is read.
        Stage::new(&bp, &dirs)
            .env(var, &value)
            .run()
            .code(3)
            .has(&format!("       **ERROR** {var} is set to \""))
            .has("a proxy URL such as http://proxy.example:3128")
            .lacks("pa/")
            .lacks("user:")
            .not_installed();
    }
    assert_eq!(server.hits(), 0);
}

// One no_proxy matcher for the client and for messages (#10 item 14).

#[test]
fn no_proxy_ranges_bypass_the_proxy_and_errors_do_not_name_it() {
    let port = closed_port();
    let bp = Buildpack::new()
        .uri(format!(
            "http://127.0.0.1:{port}/config-server-0.1.0.tgz?token={SECRET}"
        ))
        .write();
    for no_proxy in [
        "127.0.0.0/8",
        "*",
        "localhost,127.0.0.1",
        ".invalid, 127.0.0.1:0",
    ]
    .map(|v| v.replace(":0", &format!(":{port}")))
    {
        let out = Stage::new(&bp, &Dirs::new())
            .env(
                "http_proxy",
                &format!("http://proxyuser:hunter2@127.0.0.1:{}", closed_port()),
            )
            .env("no_proxy", &no_proxy)
            .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "1")
            .run();
        out.code(4)
            .has("Cause: the release host could not be reached from the staging container")
            .lacks("proxy:")
            .lacks("the proxy or")
            .not_installed();
    }
}

// What a failed download says (#10 item 12): whether the host was reached, and what
// broke; answers that never change are not retried.

fn failing(replies: Vec<Reply>, attempts: &str) -> (Outcome, Server) {
    let bp = Buildpack::new();
    let server = Server::start(replies);
    let bp = pinned_to(bp, &server, ART);
    let out = Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", attempts)
        .env("SIDECAR_BUILDPACK_STALL_TIMEOUT", "1")
        .run();
    (out, server)
}

#[test]
fn a_host_that_was_reached_is_not_called_unreachable() {
    let a = Buildpack::new().artifact;
    let broke_off = "Cause: the host was reached, but the download broke off on every attempt";
    for reply in [
        Reply::Truncated(a.clone(), a.len() / 2),
        Reply::Reset(a.clone(), a.len() / 2),
        Reply::Stall(a.clone(), 10, Duration::from_secs(5)),
    ] {
        let (out, server) = failing(vec![reply], "2");
        out.code(4)
            .has(broke_off)
            .has("         attempts: 2\n")
            .lacks("could not be reached")
            .not_installed();
        assert_eq!(server.hits(), 2);
    }
    // Headers too large to read: the same every time, so not retried.
    let (out, server) = failing(vec![Reply::HugeHead(1 << 20)], "4");
    out.code(4)
        .has("Cause: the host was reached, but its answer is not usable HTTP")
        .has("         attempts: 1\n")
        .lacks("retrying")
        .lacks("could not be reached");
    assert_eq!(server.hits(), 1);
    // Nothing listens: that one is unreachable.
    let bp = Buildpack::new()
        .uri(format!("http://127.0.0.1:{}/a.tgz", closed_port()))
        .write();
    Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "1")
        .run()
        .code(4)
        .has("Cause: the release host could not be reached");
}

#[test]
fn a_redirect_to_a_local_file_is_refused_as_a_redirect() {
    for (reply, says) in [
        (
            Reply::Redirect("file:///etc/passwd".into()),
            "refusing a redirect to file:///etc/passwd: only http and https locations are followed",
        ),
        (
            Reply::Redirect(format!("file://user:{SECRET}@host/x?{SECRET}")),
            "HTTP 302 to \"file://***@host/x?***\", which is not a URL",
        ),
        (
            Reply::StatusWith(302, vec![]),
            "HTTP 302 without a usable Location",
        ),
    ] {
        let (out, server) = failing(vec![reply], "4");
        out.code(4)
            .has(says)
            .has("Cause: the server redirected in a loop, more than 10 times, from https to http, or to a location that is not http(s)")
            .lacks("refused the request")
            .has("         attempts: 1\n")
            .not_installed();
        assert_eq!(server.hits(), 1);
    }
}

// Retry-After on 429 and 503 (#10 item 13), bounded by a documented maximum.

#[test]
fn retry_after_is_honoured_up_to_its_maximum() {
    let bp = Buildpack::new();
    let server = Server::start(vec![
        Reply::StatusWith(503, vec!["Retry-After: 2".into()]),
        Reply::Body(bp.artifact.clone()),
    ]);
    let bp = pinned_to(bp, &server, ART);
    let out = Stage::new(&bp, &Dirs::new()).run();
    out.success().has(
        "**WARNING** attempt 1 of 4 failed (HTTP 503); retrying in 2.0s (the server asked for 2 s with Retry-After)\n",
    );
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "took {:?}",
        out.elapsed
    );

    let bp = Buildpack::new();
    let server = Server::start(vec![
        Reply::StatusWith(429, vec!["Retry-After: 86400".into()]),
        Reply::Body(bp.artifact.clone()),
    ]);
    let bp = pinned_to(bp, &server, ART);
    let out = Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_MAX_RETRY_AFTER", "1")
        .run();
    out.success().has(
        "retrying in 1.0s (the server asked for 86400 s with Retry-After; waiting at most SIDECAR_BUILDPACK_MAX_RETRY_AFTER = 1 s)\n",
    );
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

// A size cap on every download (#10 item 8).

#[test]
fn downloads_stop_at_the_size_cap() {
    for (reply, hits) in [
        (Reply::Endless, 1),
        (Reply::Unsized(vec![7; 3 << 20]), 1),
        (Reply::Announce(10 << 30), 1),
    ] {
        let (dirs, bp, server) = {
            let bp = Buildpack::new();
            let server = Server::start(vec![reply]);
            (Dirs::new(), pinned_to(bp, &server, ART), server)
        };
        let out = Stage::new(&bp, &dirs)
            .env("SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB", "1")
            .run();
        out.code(4)
            .has("**ERROR** config-server 0.1.0 from ")
            .has("is larger than the download cap of 1 MB\n")
            .has("raise SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB")
            .lacks("retrying")
            .not_installed();
        assert_eq!(server.hits(), hits);
        assert!(
            out.elapsed < Duration::from_secs(10),
            "took {:?}",
            out.elapsed
        );
    }
}

#[test]
fn file_uris_must_name_a_regular_file_under_the_cap() {
    let dirs = Dirs::new();
    let fifo = dirs.root.path().join("fifo.tgz");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let big = dirs.root.path().join("big.tgz");
    fs::File::create(&big)
        .and_then(|f| f.set_len(3 << 20))
        .expect("sparse file");
    let link = dirs.root.path().join("zero.tgz");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("link");
    for (path, says) in [
        (
            "/dev/zero".into(),
            "is a device; only a regular file can be an artifact",
        ),
        (link, "is a device"),
        (fifo, "is a FIFO; only a regular file can be an artifact"),
        (dirs.root.path().to_path_buf(), "is a directory"),
        (big, "is larger than the download cap of 1 MB"),
    ] {
        let bp = Buildpack::new()
            .uri(format!("file://{}", path.display()))
            .write();
        let out = Stage::new(&bp, &Dirs::new())
            .env("SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB", "1")
            .run();
        out.code(4).has(says).not_installed();
        assert!(
            out.elapsed < Duration::from_secs(10),
            "took {:?}",
            out.elapsed
        );
    }
}

#[test]
fn an_error_on_a_uri_with_user_info_says_nothing_of_a_redirect() {
    // reqwest drops a URL's user-info from the URL it reports; the failure must still
    // be told apart from one after a redirect (issue 21, item 10).
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Reset(bp.artifact.clone(), 10); 2]);
    let url = server
        .url(ART)
        .replace("http://", &format!("http://bob:{SECRET}@"));
    let bp = bp.uri(url).write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "2")
        .run()
        .code(4)
        .has("could not download config-server from")
        .lacks("redirected")
        .not_installed();
}

#[test]
fn a_redirect_targets_password_never_rewrites_the_log() {
    // A password the server chose ("Installed") is hidden where the target is printed,
    // not scrubbed by value from every line (issue 21, item 11).
    let bp = Buildpack::new();
    let other = another_host(&bp);
    let target = other
        .url("/mirror/config-server-0.1.0.tgz")
        .replace("http://", "http://mirror:Installed@");
    let server = Server::start(vec![Reply::Redirect(target)]);
    let bp = pinned_to(bp, &server, ART);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).env("BP_DEBUG", "1").run();
    out.success()
        .has("       Installed ")
        .has("redirected to http://***@127.0.0.2:")
        .lacks("mirror:Installed");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn a_failed_name_lookup_says_which_host_in_full_on_every_attempt() {
    // A long uri on a name that does not resolve: the cause is said in full, in its own
    // words, and the uri (not the cause) is what gets cut (issue 21, item 12).
    let long_path = "a".repeat(300);
    let bp = Buildpack::new()
        .uri(format!(
            "https://releases.invalid/{long_path}/config-server-linux-x86_64.tgz?token={SECRET}"
        ))
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "2")
        .env("SIDECAR_BUILDPACK_RETRY_DELAY_MS", "0")
        .run();
    out.code(4)
        .has(
            "**WARNING** attempt 1 of 2 failed (could not resolve host releases.invalid); retrying",
        )
        .has("could not resolve host releases.invalid")
        .lacks("lookup address information")
        .not_installed();
}
