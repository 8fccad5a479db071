//! Which peers may speak for the client: TRUSTED_PROXIES.
//!
//! postern never builds a public URL from request headers (they come from `from` and AUTHENTICATE_SERVICE_URL), so
//! trust here decides only one thing: the client address. From a trusted proxy (DSM's nginx on 127.0.0.1, say)
//! postern keeps the `X-Forwarded-For` chain it received and takes the client to be the right-most address in it
//! that is not itself a trusted proxy; from anyone else the chain is dropped and the peer is the client.

use std::fmt;
use std::net::IpAddr;

/// An address block: `127.0.0.1/32`, `10.0.0.0/8`, `::1/128`, or a bare address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "{s:?}: the prefix must be a number from 0 to {max}"
                    ))
                }
            },
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The `X-Forwarded-For` value to send upstream, and the client address it names.
pub fn forwarded_for(trusted: &[Cidr], peer: IpAddr, received: &[&str]) -> (String, IpAddr) {
    if !is_trusted(trusted, peer) {
        return (peer.to_string(), peer);
    }
    let chain: Vec<&str> = received
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // Right to left: the first hop a trusted proxy did not vouch for is the client. A malformed entry ends the
    // walk there (nothing left of it can be believed), and the last good address stands.
    let mut client = peer;
    for entry in chain.iter().rev() {
        let Ok(ip) = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            break;
        };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    let mut value = chain.join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(&peer.to_string());
    (value, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn cidr_contains() {
        let cases = [
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "203.0.113.7", true),
            ("::1/128", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::1", "127.0.0.1", false),
        ];
        for (net, addr, want) in cases {
            let c = Cidr::parse(net).expect(net);
            assert_eq!(c.contains(ip(addr)), want, "{net} ∋ {addr}");
        }
        for bad in ["", "localhost", "10.0.0.0/33", "::1/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_trusts_only_trusted_peers() {
        let trusted = [Cidr::parse("127.0.0.1").expect("literal")];
        // From nginx on loopback: the chain is kept, the client is what nginx saw.
        let (v, c) = forwarded_for(&trusted, ip("127.0.0.1"), &["203.0.113.7"]);
        assert_eq!(
            (v.as_str(), c),
            ("203.0.113.7, 127.0.0.1", ip("203.0.113.7"))
        );
        // A client that forged a chain through nginx: nginx appended the real address last.
        let (_, c) = forwarded_for(&trusted, ip("127.0.0.1"), &["1.1.1.1, 203.0.113.7"]);
        assert_eq!(c, ip("203.0.113.7"));
        // From an untrusted peer, whatever it claims is dropped.
        let (v, c) = forwarded_for(&trusted, ip("198.51.100.9"), &["1.1.1.1"]);
        assert_eq!((v.as_str(), c), ("198.51.100.9", ip("198.51.100.9")));
        // No trust configured: the same.
        let (v, _) = forwarded_for(&[], ip("127.0.0.1"), &["1.1.1.1"]);
        assert_eq!(v, "127.0.0.1");
        // Garbage in the chain stops the walk.
        let (_, c) = forwarded_for(&trusted, ip("127.0.0.1"), &["junk, 127.0.0.1"]);
        assert_eq!(c, ip("127.0.0.1"));
    }
}
