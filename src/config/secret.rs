//! Secrets: 32-byte keys written as base64, and a wrapper that keeps secret strings out of logs.

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use std::fmt;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// How to make a secret, for error messages.
pub const HOW_TO_MAKE: &str =
    "make one with `postern gen-secret` (or `head -c32 /dev/urandom | base64`)";

/// Decode base64 in either alphabet, padded or not, ignoring surrounding whitespace (a trailing newline from
/// `base64` or a YAML block scalar). The error describes the input's shape, never its content.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| {
            if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/-_=".contains(&b)) {
                format!("{} characters, which is not a whole base64 text (a 32-byte secret is 44 characters, 43 without `=`)", s.len())
            } else {
                format!("{} characters that are not base64", s.len())
            }
        })
}

/// Decode a 32-byte key.
pub fn decode_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = decode_base64(s)?;
    let n = bytes.len();
    <[u8; 32]>::try_from(bytes).map_err(|_| format!("base64 of {n} bytes"))
}

/// Make a fresh random 32-byte key.
pub fn generate_key() -> Result<[u8; 32], String> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the system random source failed".to_string())?;
    Ok(key)
}

/// `postern gen-secret`: a new key as standard padded base64.
pub fn generate_base64() -> Result<String, String> {
    Ok(base64::engine::general_purpose::STANDARD.encode(generate_key()?))
}

/// A secret string (client secret). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value, for the one place that must send it (the token request).
    #[allow(dead_code)] // used by authn
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_every_base64_form() {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(250))
            .collect();
        let forms = [
            base64::engine::general_purpose::STANDARD.encode(&key),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&key),
            base64::engine::general_purpose::URL_SAFE.encode(&key),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key),
            format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(&key)
            ),
        ];
        for f in forms {
            assert_eq!(decode_key(&f).map(|k| k.to_vec()), Ok(key.clone()), "{f}");
        }
    }

    #[test]
    fn wrong_keys_are_described_not_shown() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert_eq!(decode_key(&short), Err("base64 of 16 bytes".to_string()));
        let e = decode_key("not base64!!").unwrap_err();
        assert!(!e.contains("not base64!!"), "{e}");
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = generate_base64().unwrap();
        let b = generate_base64().unwrap();
        assert_ne!(a, b);
        assert!(decode_key(&a).is_ok());
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
