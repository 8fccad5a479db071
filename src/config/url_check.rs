//! Checking the URLs of the configuration: a route's `from` and `to`, AUTHENTICATE_SERVICE_URL, IDP_PROVIDER_URL.
//! Each check returns what was expected when it fails; the caller adds what was found.

use crate::route::{url_host, Origin, Upstream};
use url::Url;

/// Parse an http(s) URL with a host and no userinfo. `Err` is the "expected ..." text.
fn parse(s: &str) -> Result<Url, String> {
    const EXPECTED: &str = "an http or https URL like https://app.example.com";
    if s.trim().is_empty() || s.trim().contains(char::is_whitespace) {
        return Err(format!("{EXPECTED} (no spaces)"));
    }
    let url = Url::parse(s.trim()).map_err(|_| EXPECTED.to_string())?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{EXPECTED} (http or https only)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{EXPECTED} (no user@ part)"));
    }
    if url.host().is_none() {
        return Err(format!("{EXPECTED} (with a host)"));
    }
    Ok(url)
}

/// Scheme, host and port only: no path (other than `/`), query or fragment.
fn bare(s: &str) -> Result<(bool, String, u16), String> {
    let url = parse(s)?;
    if url.path() != "/" && !url.path().is_empty() {
        return Err("a URL with no path (scheme, host and port only)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a URL with no ?query or #fragment".into());
    }
    let host = url_host(&url).ok_or("a URL whose host is a plain DNS name or IP address")?;
    let https = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    Ok((https, host, port))
}

/// A route's `from`, or the authenticate host.
pub(crate) fn origin(s: &str) -> Result<Origin, String> {
    let (https, host, port) = bare(s)?;
    Ok(Origin { https, host, port })
}

/// A route's `to`.
pub(crate) fn upstream(s: &str) -> Result<Upstream, String> {
    let (https, host, port) = bare(s)?;
    Ok(Upstream::new(https, host, port, s.trim().to_string()))
}

/// A URL that may have a path (IDP_PROVIDER_URL): http(s), host, no query or fragment.
pub(crate) fn with_path(s: &str) -> Result<Url, String> {
    let url = parse(s)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a URL with no ?query or #fragment".into());
    }
    url_host(&url).ok_or("a URL whose host is a plain DNS name or IP address")?;
    Ok(url)
}

/// Loopback hosts may use plain http (a local IdP in tests, the demo): 127.0.0.0/8, ::1, localhost, *.localhost.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let h = host.to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_to_table() {
        let ok: &[(&str, bool, &str, u16)] = &[
            ("https://App.Example.com", true, "app.example.com", 443),
            ("https://app.example.com/", true, "app.example.com", 443),
            ("https://app.example.com.", true, "app.example.com", 443),
            (
                "https://app.example.com:8443",
                true,
                "app.example.com",
                8443,
            ),
            ("http://httpbin", false, "httpbin", 80),
            ("http://127.0.0.1:9001", false, "127.0.0.1", 9001),
            ("http://[::1]:9001", false, "::1", 9001),
            ("https://app.example.com:443", true, "app.example.com", 443),
        ];
        for (s, https, host, port) in ok {
            let o = origin(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                (o.https, o.host.as_str(), o.port),
                (*https, *host, *port),
                "{s}"
            );
        }
        let bad = [
            "http://httpbin - your.email.address@gmail.com",
            "alice@example.com",
            "app.example.com",
            "ftp://app.example.com",
            "https://user:pw@app.example.com",
            "https://app.example.com/path",
            "https://app.example.com/?q=1",
            "https://app.example.com/#x",
            "https://*.example.com",
            "https://",
            "",
            "http://a b",
        ];
        for s in bad {
            assert!(origin(s).is_err(), "{s} should be refused");
            assert!(upstream(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn loopback() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "auth.localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "example.com",
            "localhost.example.com",
            "notlocalhost",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
