//! The identity postern vouches for, as a signed JWT for the app: `X-Pomerium-Jwt-Assertion`.
//!
//! On routes with `pass_identity_headers`, every forwarded request carries an ES256 JWT naming the user (email,
//! groups, name), the route host as audience and the authenticate host as issuer, valid for a few minutes. Apps
//! verify it with the keys postern serves at `/.well-known/pomerium/jwks.json` on every route host. The key is
//! SIGNING_KEY (base64 of a PEM P-256 key, as `openssl ecparam -genkey -name prime256v1 -noout` makes, or PKCS#8);
//! without one, postern makes a key at start, so apps must re-fetch the JWKS after a restart.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::PrivateKeyDer;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// How long one assertion is valid: it travels with one request.
const ASSERTION_SECS: u64 = 300;

pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    jwks: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Reads one DER TLV at the start of `der`: (tag, contents, rest).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The private scalar and the public point of a SEC 1 `EC PRIVATE KEY` (RFC 5915).
fn sec1_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, body, _) = tlv(der)? else {
        return None;
    };
    let (0x02, _version, body) = tlv(body)? else {
        return None;
    };
    let (0x04, private, mut body) = tlv(body)? else {
        return None;
    };
    while let Some((tag, contents, rest)) = tlv(body) {
        if tag == 0xa1 {
            // [1] { BIT STRING: 0 unused bits, then the uncompressed point }
            let (0x03, bits, _) = tlv(contents)? else {
                return None;
            };
            return Some((private, bits.get(1..)?));
        }
        body = rest;
    }
    None
}

impl Signer {
    /// From PEM text: `EC PRIVATE KEY` (with its public key, as openssl writes it) or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<Signer, String> {
        let rng = SystemRandom::new();
        let key = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der.secret_pkcs8_der(),
                &rng,
            )
            .map_err(|e| format!("not a P-256 key: {e}"))?,
            Ok(PrivateKeyDer::Sec1(der)) => {
                let (private, public) = sec1_parts(der.secret_sec1_der())
                    .ok_or("an EC PRIVATE KEY without its public key (make it with `openssl ecparam -genkey -name prime256v1 -noout`)")?;
                EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    private,
                    public,
                    &rng,
                )
                .map_err(|e| format!("not a P-256 key: {e}"))?
            }
            Ok(_) => return Err("an RSA key; the assertion key must be EC P-256".into()),
            Err(_) => return Err("no PEM private key".into()),
        };
        Ok(Signer::with_key(key, rng))
    }

    /// A key of this process only.
    pub fn generate() -> Result<Signer, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "the system random source failed".to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| format!("generated key rejected: {e}"))?;
        Ok(Signer::with_key(key, rng))
    }

    fn with_key(key: EcdsaKeyPair, rng: SystemRandom) -> Signer {
        // Uncompressed point: 0x04 || x || y.
        let point = key.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(point.len().saturating_sub(1) / 2);
        let digest = ring::digest::digest(&ring::digest::SHA256, point);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        let jwks = format!(
            "{{\"keys\":[{{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"use\":\"sig\",\"kid\":\"{kid}\",\"x\":\"{}\",\"y\":\"{}\"}}]}}\n",
            URL_SAFE_NO_PAD.encode(x),
            URL_SAFE_NO_PAD.encode(y)
        );
        Signer {
            key,
            rng,
            kid,
            jwks,
        }
    }

    /// The public keys, for `/.well-known/pomerium/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for one request of `email` to `audience` (the route host), issued by `issuer`.
    pub fn assert(
        &self,
        issuer: &str,
        audience: &str,
        email: &str,
        name: Option<&str>,
        groups: &[String],
        now: u64,
    ) -> Option<String> {
        let header = format!(
            "{{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"{}\"}}",
            self.kid
        );
        let claims = serde_json::json!({
            "iss": issuer,
            "aud": audience,
            "sub": email,
            "email": email,
            "name": name,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).ok()?;
        Some(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    /// `openssl ecparam -genkey -name prime256v1 -noout` output, made for this test only.
    const SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIOEY1n08nxQyM6jBhwZK5CVRZz7nWmcVSPp81JPqEC/0oAoGCCqGSM49
AwEHoUQDQgAE4bLEc2NwjdVdWHwtNnDqWMav4yrVaQUiyrEhcEfl0/GYkciwBcxl
faA+fB6MZ1+RmNz/L9nMEGNF8x/7bDKpMg==
-----END EC PRIVATE KEY-----
";

    fn verify(signer: &Signer, jwt: &str) -> serde_json::Value {
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64 signature");
        let public = signer.key.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies");
        let claims = input.split('.').nth(1).expect("claims");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64 claims"))
            .expect("json")
    }

    #[test]
    fn assertions_verify_against_the_published_key() {
        for signer in [
            Signer::from_pem(SEC1_PEM.as_bytes()).expect("sec1 key"),
            Signer::generate().expect("key"),
        ] {
            let jwt = signer
                .assert(
                    "auth.example.com",
                    "app.example.com",
                    "alice@example.com",
                    None,
                    &["staff".into()],
                    1000,
                )
                .expect("signed");
            let c = verify(&signer, &jwt);
            assert_eq!(c["email"], "alice@example.com");
            assert_eq!(c["aud"], "app.example.com");
            assert_eq!(c["exp"], 1300);
            let jwks: serde_json::Value = serde_json::from_str(signer.jwks()).expect("jwks json");
            assert_eq!(jwks["keys"][0]["crv"], "P-256");
            assert_eq!(
                URL_SAFE_NO_PAD
                    .decode(jwks["keys"][0]["x"].as_str().expect("x"))
                    .expect("b64")
                    .len(),
                32
            );
        }
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(Signer::from_pem(b"junk").unwrap_err().contains("no PEM"));
        let truncated = SEC1_PEM.replace("faA+fB6MZ1+RmNz/L9nMEGNF8x/7bDKpMg==\n", "");
        assert!(Signer::from_pem(truncated.as_bytes()).is_err());
    }
}
