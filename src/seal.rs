//! Sealed tokens: every secret postern hands to a browser (session cookie, IdP `state`, cross-host handoff, sign-in
//! and sign-out return URLs) is encrypted and authenticated here, and opened here.
//!
//! Format (base64url, no padding): `version(1) | purpose(1) | nonce(24) | XChaCha20-Poly1305(expiry_be64 | payload)`.
//! The associated data is the clear header (version, purpose) plus the audience host, so a token sealed for one
//! purpose or one host never opens as another. The purpose byte is also readable in clear only so that a token used
//! in the wrong place gets a clear error; it is authenticated like the rest.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use ring::rand::{SecureRandom, SystemRandom};

/// How far apart postern's and the browser's/IdP's idea of "now" may be, in seconds. The one clock leeway for
/// every expiry and issued-at check in postern.
pub const LEEWAY_SECS: u64 = 60;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2;
const EXPIRY_LEN: usize = 8;
/// Tokens longer than this are refused before decoding (a cookie or URL parameter never needs more).
const MAX_TOKEN_CHARS: usize = 16 * 1024;

/// What a sealed token is for. Part of the associated data: one purpose can never be replayed as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A session cookie (sealed under COOKIE_SECRET).
    Session,
    /// The OAuth2 `state` parameter sent through the IdP (sealed under COOKIE_SECRET).
    State,
    /// A session handed from the authenticate host to a route host (sealed under SHARED_SECRET).
    Handoff,
    /// A sign-in request from a route host to the authenticate host (SHARED_SECRET).
    SignIn,
    /// A sign-out request from a route host to the authenticate host (SHARED_SECRET).
    SignOut,
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Purpose::Session => 1,
            Purpose::State => 2,
            Purpose::Handoff => 3,
            Purpose::SignIn => 4,
            Purpose::SignOut => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Purpose> {
        Some(match b {
            1 => Purpose::Session,
            2 => Purpose::State,
            3 => Purpose::Handoff,
            4 => Purpose::SignIn,
            5 => Purpose::SignOut,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::State => "state",
            Purpose::Handoff => "handoff",
            Purpose::SignIn => "sign_in",
            Purpose::SignOut => "sign_out",
        }
    }
}

/// Why a token did not open. None of these is a server error: the caller treats the token as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not base64url, too short, or too long.
    Malformed,
    /// Made by another format version of postern.
    UnknownVersion(u8),
    /// A valid-looking token made for another purpose (e.g. a state token offered as a session).
    WrongPurpose {
        expected: Purpose,
        found: Option<Purpose>,
    },
    /// Authentication failed: altered, sealed under another secret, or sealed for another host.
    BadTag,
    /// Opened fine but its lifetime ended (expiry + leeway is in the past).
    Expired { expired_at: u64, now: u64 },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Malformed => write!(f, "sealed token is malformed (not base64url, truncated or oversized)"),
            OpenError::UnknownVersion(v) => write!(f, "sealed token has unknown format version {v}"),
            OpenError::WrongPurpose { expected, found } => write!(
                f,
                "sealed token is for {} but was used as {}",
                found.map(Purpose::name).unwrap_or("an unknown purpose"),
                expected.name()
            ),
            OpenError::BadTag => write!(
                f,
                "sealed token failed authentication (altered, sealed with another secret, or for another host)"
            ),
            OpenError::Expired { expired_at, now } => {
                write!(f, "sealed token expired at {expired_at} (now {now}, leeway {LEEWAY_SECS}s)")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Sealing needs fresh random bytes; the OS refused to give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealError;

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not seal a token: the system random number generator failed"
        )
    }
}

impl std::error::Error for SealError {}

/// A key for sealing and opening tokens. One per secret (COOKIE_SECRET, SHARED_SECRET).
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
            rng: SystemRandom::new(),
        }
    }

    /// Seals `payload` for `purpose` and `audience` (a host, with port when not the default), valid until `expires`
    /// (unix seconds).
    pub fn seal(
        &self,
        purpose: Purpose,
        audience: &str,
        expires: u64,
        payload: &[u8],
    ) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
        self.seal_with_nonce(purpose, audience, expires, payload, &nonce)
    }

    fn seal_with_nonce(
        &self,
        purpose: Purpose,
        audience: &str,
        expires: u64,
        payload: &[u8],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<String, SealError> {
        let header = [VERSION, purpose.byte()];
        let mut plain = Vec::with_capacity(EXPIRY_LEN + payload.len());
        plain.extend_from_slice(&expires.to_be_bytes());
        plain.extend_from_slice(payload);
        let aad = associated_data(&header, audience);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a token sealed for `purpose` and `audience`, checking its expiry against `now` (unix seconds). Total:
    /// any input gives `Ok` or a typed error.
    pub fn open(
        &self,
        purpose: Purpose,
        audience: &str,
        now: u64,
        token: &str,
    ) -> Result<Vec<u8>, OpenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(OpenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < HEADER_LEN + NONCE_LEN + TAG_LEN + EXPIRY_LEN {
            return Err(OpenError::Malformed);
        }
        let (header, rest) = raw.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        if header[0] != VERSION {
            return Err(OpenError::UnknownVersion(header[0]));
        }
        if header[1] != purpose.byte() {
            return Err(OpenError::WrongPurpose {
                expected: purpose,
                found: Purpose::from_byte(header[1]),
            });
        }
        let aad = associated_data(header, audience);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::BadTag)?;
        let (expiry, payload) = plain.split_at(EXPIRY_LEN);
        let mut be = [0u8; EXPIRY_LEN];
        be.copy_from_slice(expiry);
        let expires = u64::from_be_bytes(be);
        if now > expires.saturating_add(LEEWAY_SECS) {
            return Err(OpenError::Expired {
                expired_at: expires,
                now,
            });
        }
        Ok(payload.to_vec())
    }
}

fn associated_data(header: &[u8], audience: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + audience.len());
    aad.extend_from_slice(b"postern\0");
    aad.extend_from_slice(header);
    aad.push(0);
    aad.extend_from_slice(audience.as_bytes());
    aad
}

/// Unix time in seconds (0 if the clock is before 1970, which then makes every token look expired, not valid).
/// `n` random bytes, base64url: for nonces, PKCE verifiers and browser-binding values.
pub fn random_token(n: usize) -> Result<String, SealError> {
    let mut buf = vec![0u8; n];
    SystemRandom::new().fill(&mut buf).map_err(|_| SealError)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const OTHER_KEY: [u8; 32] = [8u8; 32];
    const NOW: u64 = 1_800_000_000;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The primitive itself, against draft-irtf-cfrg-xchacha-03 appendix A.3.1.
    #[test]
    fn xchacha20poly1305_known_answer() {
        let key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = hex("404142434445464748494a4b4c4d4e4f5051525354555657");
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, \
sunscreen would be it.";
        let expected = hex(concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c",
            "54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768",
            "812f615c68b13b52e",
            "c0875924c1c7987947deafd8780acf49"
        ));
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
        let out = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad: &aad })
            .unwrap();
        assert_eq!(out, expected);
    }

    /// postern's token format with a fixed nonce: a change here breaks every cookie in the field.
    #[test]
    fn token_format_known_answer() {
        let s = Sealer::new(&KEY);
        let t = s
            .seal_with_nonce(
                Purpose::Session,
                "app.example.com",
                NOW,
                b"hello",
                &[1u8; 24],
            )
            .unwrap();
        assert!(t.starts_with("AQE")); // version 1, purpose 1
        assert_eq!(t, KAT_TOKEN);
        assert_eq!(
            s.open(Purpose::Session, "app.example.com", NOW, KAT_TOKEN)
                .unwrap(),
            b"hello"
        );
    }
    const KAT_TOKEN: &str =
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQGxdANNoqU_n1WO--9I_y2BsyCcACswOONaOslf5g";

    #[test]
    fn round_trip_and_fresh_nonces() {
        let s = Sealer::new(&KEY);
        let a = s
            .seal(
                Purpose::Handoff,
                "app.example.com:8443",
                NOW + 300,
                b"payload",
            )
            .unwrap();
        let b = s
            .seal(
                Purpose::Handoff,
                "app.example.com:8443",
                NOW + 300,
                b"payload",
            )
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(
            s.open(Purpose::Handoff, "app.example.com:8443", NOW, &a)
                .unwrap(),
            b"payload"
        );
        assert_eq!(
            s.open(Purpose::Handoff, "app.example.com:8443", NOW, &b)
                .unwrap(),
            b"payload"
        );
        let empty = s.seal(Purpose::State, "auth", NOW, b"").unwrap();
        assert_eq!(s.open(Purpose::State, "auth", NOW, &empty).unwrap(), b"");
    }

    #[test]
    fn refusals() {
        let s = Sealer::new(&KEY);
        let t = s
            .seal(Purpose::Session, "app.example.com", NOW + 100, b"alice")
            .unwrap();
        let open = |p, aud: &str, now, tok: &str| s.open(p, aud, now, tok);
        // Wrong purpose: named.
        assert_eq!(
            open(Purpose::Handoff, "app.example.com", NOW, &t),
            Err(OpenError::WrongPurpose {
                expected: Purpose::Handoff,
                found: Some(Purpose::Session)
            })
        );
        // Wrong audience, wrong key.
        assert_eq!(
            open(Purpose::Session, "evil.example.com", NOW, &t),
            Err(OpenError::BadTag)
        );
        assert_eq!(
            open(Purpose::Session, "app.example.com:443", NOW, &t),
            Err(OpenError::BadTag)
        );
        assert_eq!(
            Sealer::new(&OTHER_KEY).open(Purpose::Session, "app.example.com", NOW, &t),
            Err(OpenError::BadTag)
        );
        // Expiry, with the leeway.
        assert!(open(
            Purpose::Session,
            "app.example.com",
            NOW + 100 + LEEWAY_SECS,
            &t
        )
        .is_ok());
        assert_eq!(
            open(
                Purpose::Session,
                "app.example.com",
                NOW + 101 + LEEWAY_SECS,
                &t
            ),
            Err(OpenError::Expired {
                expired_at: NOW + 100,
                now: NOW + 101 + LEEWAY_SECS
            })
        );
        // Purpose byte rewritten in clear: refused as wrong purpose or, if it claims the right one, by the tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[1] = Purpose::Handoff.byte();
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            open(Purpose::Handoff, "app.example.com", NOW, &forged),
            Err(OpenError::BadTag)
        );
        raw[0] = 9;
        assert_eq!(
            open(
                Purpose::Handoff,
                "app.example.com",
                NOW,
                &URL_SAFE_NO_PAD.encode(&raw)
            ),
            Err(OpenError::UnknownVersion(9))
        );
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let s = Sealer::new(&KEY);
        let t = s
            .seal(Purpose::Session, "h", NOW + 100, b"alice@example.com")
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut r = raw.clone();
                r[i] ^= 1 << bit;
                assert!(
                    s.open(Purpose::Session, "h", NOW, &URL_SAFE_NO_PAD.encode(&r))
                        .is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn truncation_and_garbage_never_panic() {
        let s = Sealer::new(&KEY);
        let t = s
            .seal(Purpose::Session, "h", NOW + 100, b"alice@example.com")
            .unwrap();
        for n in 0..t.len() {
            assert!(
                s.open(Purpose::Session, "h", NOW, &t[..n]).is_err(),
                "prefix {n}"
            );
        }
        let long = "A".repeat(MAX_TOKEN_CHARS + 1);
        for bad in [
            "",
            "=",
            "AQE=",
            "!!!!",
            "AQEB AQEB",
            "é",
            "AQEB\0",
            "%41%51",
            long.as_str(),
        ] {
            assert!(s.open(Purpose::Session, "h", NOW, bad).is_err(), "{bad:?}");
        }
        // Valid base64 of the right length but random bytes.
        let junk = URL_SAFE_NO_PAD.encode([1u8; 80]);
        assert_eq!(
            s.open(Purpose::Session, "h", NOW, &junk),
            Err(OpenError::BadTag)
        );
    }

    #[test]
    fn errors_say_what_failed() {
        let e = OpenError::WrongPurpose {
            expected: Purpose::Session,
            found: Some(Purpose::State),
        };
        assert_eq!(
            e.to_string(),
            "sealed token is for state but was used as session"
        );
        assert!(OpenError::BadTag.to_string().contains("another host"));
        assert!(random_token(32).unwrap().len() == 43);
    }
}
