//! What the upstream is told: the request head rewritten for forwarding.
//!
//! Identity can only come from postern: every header a client could use to claim one, and postern's own cookies,
//! are removed on every route (public ones too) before postern adds anything. Framing and hop-by-hop headers are the
//! forwarder's business and are left to it.

use crate::assertion::Signer;
use crate::http::{Headers, Request};
use crate::route::{Origin, Route};
use crate::session::Session;

/// Header name prefixes and names that claim an identity or a client address. Clients never get to set them.
const IDENTITY_PREFIXES: &[&str] = &["x-pomerium-", "x-auth-request-"];
const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-email",
    "x-forwarded-user",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-email",
    "x-user",
    "x-remote-user",
    "x-webauth-user",
    "x-authenticated-user",
    "x-id-token",
    "x-access-token",
    "remote-user",
];
/// Client-address headers: postern sets its own, from the connection, and trusts no copy from the client.
const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-original-url",
    "x-rewrite-url",
];

pub(crate) fn is_identity_header(name: &str) -> bool {
    // Underscores: some servers (CGI/WSGI) read `X_Pomerium_Claim_Email` as `X-Pomerium-Claim-Email`; nginx drops
    // such names by default, and so does postern.
    name.contains('_')
        || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p))
        || IDENTITY_HEADERS.contains(&name)
        || FORWARDING_HEADERS.contains(&name)
}

/// What the rewrite needs from the configuration.
pub struct Settings<'a> {
    pub cookie_name: &'a str,
    pub trusted: &'a [crate::trust::Cidr],
    pub signer: Option<&'a Signer>,
    /// The authenticate host, issuer of assertions.
    pub issuer: &'a str,
}

/// The head sent upstream for `req` on `route` (reached through `origin`); `session` is the signed-in user, if any.
pub fn upstream_headers(
    req: &Request,
    route: &Route,
    origin: &Origin,
    settings: &Settings<'_>,
    session: Option<&Session>,
) -> Headers {
    let mut headers = req.head.headers.clone();
    let client_host = headers.get("host").unwrap_or_default().to_owned();
    // Hop-by-hop headers, and those the client's `Connection` names, go now: later, `Connection` could name the
    // headers postern adds below and have the forwarder strip them.
    crate::forward::strip_hop_by_hop(&mut headers);

    // Names are stored lower-cased, so these comparisons are exact.
    headers.retain(|name, _| !is_identity_header(name) && name != "host");

    // postern's cookies out, the app's cookies kept in order; no empty Cookie header.
    let cookies: Vec<String> = headers.get_all("cookie").map(str::to_owned).collect();
    headers.remove("cookie");
    let kept: Vec<String> = cookies
        .iter()
        .filter_map(|c| crate::session::strip_own_cookies(c, settings.cookie_name))
        .collect();
    if !kept.is_empty() {
        headers.append("cookie", kept.join("; "));
    }

    for name in &route.remove_request_headers {
        headers.remove(name);
    }
    for (name, value) in &route.set_request_headers {
        headers.set(name, value.as_str());
    }

    let host = if route.preserve_host_header && !client_host.is_empty() {
        client_host.clone()
    } else {
        route.to.authority.clone()
    };
    headers.set("host", host);
    if !route.preserve_host_header {
        if let Some(dest) = headers
            .get("destination")
            .and_then(|d| upstream_destination(d, origin, route))
        {
            headers.set("destination", dest);
        }
    }

    let received: Vec<&str> = req.head.headers.get_all("x-forwarded-for").collect();
    let (xff, client) = crate::trust::forwarded_for(settings.trusted, req.peer.ip(), &received);
    headers.append("x-forwarded-for", xff);
    headers.append("x-real-ip", client.to_string());
    headers.append(
        "x-forwarded-proto",
        if origin.https { "https" } else { "http" },
    );
    // The public host as configured, not the client's spelling of it (case, trailing dot, port).
    headers.append("x-forwarded-host", origin.authority());

    if let (true, Some(s)) = (route.pass_identity_headers, session) {
        headers.append("x-pomerium-claim-email", s.email.as_str());
        if !s.groups.is_empty() {
            headers.append("x-pomerium-claim-groups", s.groups.join(","));
        }
        if let Some(name) = &s.name {
            headers.append("x-pomerium-claim-name", name.as_str());
        }
        let now = crate::clock::now_secs();
        let jwt = settings.signer.and_then(|k| {
            k.assert(
                settings.issuer,
                &origin.authority(),
                &s.email,
                s.name.as_deref(),
                &s.groups,
                now,
            )
        });
        if let Some(jwt) = jwt {
            headers.append("x-pomerium-jwt-assertion", jwt);
        }
    }
    headers
}

/// WebDAV's COPY and MOVE name their target in `Destination` as a full URL, and servers check that it is on
/// their own host. When postern rewrites Host to the upstream's, the app would see a foreign URL and refuse (502),
/// so a Destination on this route's public origin is rewritten to the upstream's scheme and authority; its path
/// and query are kept byte for byte. Any other Destination (another host, a bare path) is left as sent.
fn upstream_destination(dest: &str, origin: &Origin, route: &Route) -> Option<String> {
    let (scheme, rest) = dest.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = crate::route::normalize_host(authority)?;
    if !origin.matches(&host, port) {
        return None;
    }
    let to = &route.to;
    let path = if path.is_empty() { "/" } else { path };
    Some(format!(
        "{}://{}{path}",
        if to.https { "https" } else { "http" },
        to.authority
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_table() {
        let origin = Origin {
            https: true,
            host: "dav.example.com".into(),
            port: 443,
        };
        let mut route = crate::route::tests::route_for_tests();
        route.to = std::rc::Rc::new(crate::route::Upstream::new(
            false,
            "127.0.0.1".into(),
            8080,
            "http://127.0.0.1:8080".into(),
        ));
        let cases: &[(&str, Option<&str>)] = &[
            (
                "https://dav.example.com/a/b%20c.txt",
                Some("http://127.0.0.1:8080/a/b%20c.txt"),
            ),
            (
                "https://DAV.example.com:443/x?y=1",
                Some("http://127.0.0.1:8080/x?y=1"),
            ),
            ("http://dav.example.com./x", Some("http://127.0.0.1:8080/x")),
            ("https://dav.example.com", Some("http://127.0.0.1:8080/")),
            ("https://other.example.com/x", None),
            ("https://dav.example.com:8443/x", None),
            ("https://user@dav.example.com/x", None),
            ("/relative/path", None),
            ("ftp://dav.example.com/x", None),
        ];
        for (dest, want) in cases {
            assert_eq!(
                upstream_destination(dest, &origin, &route).as_deref(),
                *want,
                "{dest}"
            );
        }
    }

    #[test]
    fn identity_headers_are_recognised_whatever_the_case_was() {
        // Names arrive lower-cased from the codec; this is the set that must never pass.
        for h in [
            "x-pomerium-claim-email",
            "x-pomerium-jwt-assertion",
            "x-forwarded-email",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "remote-user",
        ] {
            assert!(is_identity_header(h), "{h}");
        }
        for h in [
            "x_pomerium_claim_email",
            "x-webauth-user",
            "true-client-ip",
            "x-original-url",
        ] {
            assert!(is_identity_header(h), "{h}");
        }
        for h in ["x-request-id", "authorization", "cookie", "x-pomerium"] {
            assert!(!is_identity_header(h), "{h}");
        }
    }
}
