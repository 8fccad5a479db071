//! id_token checks: the JWT's signature against the IdP's JWKS, then iss, aud/azp, exp, iat and nonce, then the
//! claims postern uses (email, email_verified, name, groups).
//!
//! Only asymmetric algorithms are accepted (RS256/384/512, PS256/384/512, ES256, ES384): `none` and HS* would let
//! anyone who knows the client secret (or nobody at all) mint tokens. Each refusal names the check that failed; the
//! token itself is never put into an error or a log line.

use std::fmt;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

use crate::seal::LEEWAY_SECS;

/// id_tokens larger than this are refused before parsing (a token with hundreds of groups is about 20 KB).
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The algorithms postern accepts, each tied to the key type it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    fn rsa(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 | Alg::Es384 => return None,
        })
    }

    /// The curve an EC algorithm needs, and ring's verifier for it.
    fn ec(self) -> Option<(Curve, &'static dyn VerificationAlgorithm)> {
        match self {
            Alg::Es256 => Some((Curve::P256, &signature::ECDSA_P256_SHA256_FIXED)),
            Alg::Es384 => Some((Curve::P384, &signature::ECDSA_P384_SHA384_FIXED)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

#[derive(Clone, Debug)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point `04 | x | y`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

/// One signing key from the IdP's JWKS.
#[derive(Clone, Debug)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: KeyMaterial,
}

/// The IdP's signing keys (keys for encryption, or of types postern cannot use, are left out).
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// The JWKS document could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson,
    NoKeysArray,
    NoUsableKey,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotJson => write!(f, "JWKS document is not JSON"),
            JwksError::NoKeysArray => write!(f, "JWKS document has no `keys` array"),
            JwksError::NoUsableKey => {
                write!(
                    f,
                    "JWKS document has no usable signing key (RSA, or EC on P-256/P-384)"
                )
            }
        }
    }
}

impl std::error::Error for JwksError {}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    // JWKs and JWTs use base64url without padding; a few IdPs pad anyway.
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .ok()
}

impl Jwks {
    pub fn parse(json: &[u8]) -> Result<Jwks, JwksError> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotJson)?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        let keys: Vec<Jwk> = keys.iter().filter_map(parse_jwk).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks { keys })
    }
}

fn parse_jwk(v: &Value) -> Option<Jwk> {
    let s = |name: &str| v.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match s("kty")? {
        "RSA" => KeyMaterial::Rsa {
            n: b64_decode(s("n")?)?,
            e: b64_decode(s("e")?)?,
        },
        "EC" => {
            let curve = match s("crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                _ => return None,
            };
            let (x, y) = (b64_decode(s("x")?)?, b64_decode(s("y")?)?);
            if x.len() != curve.coord_len() || y.len() != curve.coord_len() {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * curve.coord_len());
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::Ec { curve, point }
        }
        _ => return None,
    };
    Some(Jwk {
        kid: s("kid").map(str::to_owned),
        alg: s("alg").map(str::to_owned),
        key,
    })
}

/// What the token must say to be accepted.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The issuer from discovery, compared exactly.
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce postern sent in the authorization request (from the sealed state).
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// A second accepted `iss` (Google's id_tokens may say `accounts.google.com` without the scheme).
    pub alt_issuer: Option<&'a str>,
}

/// The claims postern keeps from a verified id_token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub sub: Option<String>,
    pub email: Option<String>,
    /// True only for `true` or `"true"`; `false`, `"false"`, missing or anything else is unverified.
    pub email_verified: bool,
    pub name: Option<String>,
    /// The `groups` claim when it is an array of strings (non-strings inside are skipped); empty otherwise.
    pub groups: Vec<String>,
    pub iat: u64,
    pub exp: u64,
}

/// Why an id_token was refused. Display names the failed check, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenError {
    Malformed(&'static str),
    AlgNone,
    /// HS* (symmetric) or anything else postern does not accept.
    UnsupportedAlg(String),
    /// No key in the JWKS has this kid (or, without a kid, no key fits the algorithm).
    UnknownKid(Option<String>),
    /// The key named by kid does not fit the header's algorithm (type, curve, or its own `alg`).
    KeyMismatch {
        kid: Option<String>,
        alg: &'static str,
    },
    BadSignature,
    Issuer {
        expected: String,
        found: Option<String>,
    },
    Audience {
        client_id: String,
    },
    Azp {
        client_id: String,
        found: Option<String>,
    },
    MissingClaim(&'static str),
    Expired {
        exp: u64,
        now: u64,
    },
    IssuedInFuture {
        iat: u64,
        now: u64,
    },
    Nonce,
    /// The userinfo answer cannot be used.
    Userinfo(&'static str),
}

impl fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdTokenError::Malformed(what) => write!(f, "id_token is malformed: {what}"),
            IdTokenError::AlgNone => write!(f, "id_token refused: alg `none` (unsigned)"),
            IdTokenError::UnsupportedAlg(a) => write!(
                f,
                "id_token refused: alg `{a}` is not accepted (use RS256/384/512, PS256/384/512, ES256 or ES384)"
            ),
            IdTokenError::UnknownKid(Some(k)) => write!(f, "id_token refused: key id `{k}` is not in the IdP's JWKS"),
            IdTokenError::UnknownKid(None) => {
                write!(f, "id_token refused: no kid and no key in the IdP's JWKS fits its algorithm")
            }
            IdTokenError::KeyMismatch { kid, alg } => write!(
                f,
                "id_token refused: key `{}` in the JWKS is not a key for {alg}",
                kid.as_deref().unwrap_or("(no kid)")
            ),
            IdTokenError::BadSignature => write!(f, "id_token refused: signature does not verify"),
            IdTokenError::Issuer { expected, found } => write!(
                f,
                "id_token refused: iss is {} but the IdP's issuer is {expected:?}",
                found.as_deref().map(|s| format!("{s:?}")).unwrap_or_else(|| "missing".into())
            ),
            IdTokenError::Audience { client_id } => {
                write!(f, "id_token refused: aud does not contain this client ({client_id:?})")
            }
            IdTokenError::Azp { client_id, found } => write!(
                f,
                "id_token refused: azp is {} but must be this client ({client_id:?})",
                found.as_deref().map(|s| format!("{s:?}")).unwrap_or_else(|| "missing".into())
            ),
            IdTokenError::MissingClaim(c) => write!(f, "id_token refused: claim `{c}` is missing or not the right type"),
            IdTokenError::Expired { exp, now } => {
                write!(f, "id_token refused: expired at {exp} (now {now}, leeway {LEEWAY_SECS}s)")
            }
            IdTokenError::IssuedInFuture { iat, now } => write!(
                f,
                "id_token refused: iat {iat} is in the future (now {now}, leeway {LEEWAY_SECS}s; check the clocks)"
            ),
            IdTokenError::Nonce => write!(f, "id_token refused: nonce does not match this sign-in"),
            IdTokenError::Userinfo(why) => write!(f, "userinfo refused: {why}"),
        }
    }
}

impl std::error::Error for IdTokenError {}

fn json_part(
    part: &str,
    what: &'static str,
) -> Result<serde_json::Map<String, Value>, IdTokenError> {
    let raw = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdTokenError::Malformed(what))?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(IdTokenError::Malformed(what)),
    }
}

fn num(claims: &serde_json::Map<String, Value>, name: &'static str) -> Result<u64, IdTokenError> {
    let v = claims.get(name).ok_or(IdTokenError::MissingClaim(name))?;
    // Some IdPs send floats (1700000000.0); negative or absurd values are refused.
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                .map(|f| f as u64)
        })
        .ok_or(IdTokenError::MissingClaim(name))
}

/// Verifies `token` against `jwks` and `expect`. Checks run in this order: shape, alg, key, signature, iss, aud,
/// azp, exp, iat, nonce.
pub fn verify(token: &str, jwks: &Jwks, expect: &Expected<'_>) -> Result<Claims, IdTokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdTokenError::Malformed("larger than 64 KB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed("not three dot-separated parts"));
    };
    let header = json_part(h, "header is not base64url JSON")?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(IdTokenError::Malformed("header has no alg"))?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(IdTokenError::AlgNone);
    }
    let alg = Alg::parse(alg_name)
        .ok_or_else(|| IdTokenError::UnsupportedAlg(alg_name.chars().take(16).collect()))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| IdTokenError::Malformed("signature is not base64url"))?;
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];

    let kid = header.get("kid").and_then(Value::as_str);
    check_signature(jwks, kid, alg, signed, &sig)?;

    let claims = json_part(c, "claims are not base64url JSON")?;
    let s = |name: &str| claims.get(name).and_then(Value::as_str);

    let iss = s("iss");
    if iss != Some(expect.issuer) && (iss.is_none() || iss != expect.alt_issuer) {
        return Err(IdTokenError::Issuer {
            expected: expect.issuer.into(),
            found: iss.map(str::to_owned),
        });
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expect.client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expect.client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(IdTokenError::Audience {
            client_id: expect.client_id.into(),
        });
    }
    let several_audiences = matches!(claims.get("aud"), Some(Value::Array(l)) if l.len() > 1);
    let azp = s("azp");
    if (several_audiences || azp.is_some()) && azp != Some(expect.client_id) {
        return Err(IdTokenError::Azp {
            client_id: expect.client_id.into(),
            found: azp.map(str::to_owned),
        });
    }
    let exp = num(&claims, "exp")?;
    if expect.now > exp.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::Expired {
            exp,
            now: expect.now,
        });
    }
    let iat = num(&claims, "iat")?;
    if iat > expect.now.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::IssuedInFuture {
            iat,
            now: expect.now,
        });
    }
    let nonce_ok =
        s("nonce").is_some_and(|n| constant_time_eq(n.as_bytes(), expect.nonce.as_bytes()));
    if !nonce_ok {
        return Err(IdTokenError::Nonce);
    }

    let mut out = Claims {
        sub: s("sub").map(str::to_owned),
        email: None,
        email_verified: false,
        name: None,
        groups: vec![],
        iat,
        exp,
    };
    take_profile(&mut out, &claims);
    Ok(out)
}

/// Reads email, email_verified, name and groups from an id_token's claims or a userinfo answer.
fn take_profile(out: &mut Claims, claims: &serde_json::Map<String, Value>) {
    let s = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    out.email = s("email");
    out.email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => v.eq_ignore_ascii_case("true"),
        _ => false,
    };
    out.name = s("name");
    out.groups = match claims.get("groups") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
}

/// Takes the profile claims from the IdP's userinfo answer, for IdPs that keep them out of the id_token (OpenID
/// Connect lets them; `oidc-provider` does so by default). Its `sub` must be the id_token's (OIDC Core 5.3.2).
pub fn merge_userinfo(claims: &mut Claims, userinfo: &Value) -> Result<(), IdTokenError> {
    let Value::Object(map) = userinfo else {
        return Err(IdTokenError::Userinfo("answer is not a JSON object"));
    };
    let sub = map.get("sub").and_then(Value::as_str);
    if sub.is_none() || sub != claims.sub.as_deref() {
        return Err(IdTokenError::Userinfo(
            "its sub differs from the id_token's",
        ));
    }
    take_profile(claims, map);
    Ok(())
}

fn check_signature(
    jwks: &Jwks,
    kid: Option<&str>,
    alg: Alg,
    signed: &[u8],
    sig: &[u8],
) -> Result<(), IdTokenError> {
    let fits = |k: &Jwk| -> bool {
        let alg_ok = k.alg.as_deref().map_or(true, |a| a == alg.name());
        let type_ok = match (&k.key, alg.ec()) {
            (KeyMaterial::Rsa { .. }, None) => true,
            (KeyMaterial::Ec { curve, .. }, Some((want, _))) => *curve == want,
            _ => false,
        };
        alg_ok && type_ok
    };
    let verify_with = |k: &Jwk| -> bool {
        match &k.key {
            KeyMaterial::Rsa { n, e } => match alg.rsa() {
                Some(params) => RsaPublicKeyComponents { n, e }
                    .verify(params, signed, sig)
                    .is_ok(),
                None => false,
            },
            KeyMaterial::Ec { point, .. } => match alg.ec() {
                Some((_, verifier)) => UnparsedPublicKey::new(verifier, point)
                    .verify(signed, sig)
                    .is_ok(),
                None => false,
            },
        }
    };
    match kid {
        Some(kid) => {
            let named: Vec<&Jwk> = jwks
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if named.is_empty() {
                return Err(IdTokenError::UnknownKid(Some(
                    kid.chars().take(64).collect(),
                )));
            }
            let usable: Vec<&&Jwk> = named.iter().filter(|k| fits(k)).collect();
            if usable.is_empty() {
                return Err(IdTokenError::KeyMismatch {
                    kid: Some(kid.chars().take(64).collect()),
                    alg: alg.name(),
                });
            }
            if usable.iter().any(|k| verify_with(k)) {
                Ok(())
            } else {
                Err(IdTokenError::BadSignature)
            }
        }
        None => {
            let usable: Vec<&Jwk> = jwks.keys.iter().filter(|k| fits(k)).collect();
            if usable.is_empty() {
                return Err(IdTokenError::UnknownKid(None));
            }
            if usable.iter().any(|k| verify_with(k)) {
                Ok(())
            } else {
                Err(IdTokenError::BadSignature)
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Test-only token forging, shared with the flow tests in `authn::tests`.
#[cfg(test)]
pub(crate) mod forge {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};

    /// A fixed RSA-2048 test key (PKCS#8 DER), made once with `openssl genpkey`. Used only to forge test tokens.
    pub const TEST_RSA_PKCS8: &[u8] = include_bytes!("testdata/test-rsa2048.pk8.der");

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn rsa_key() -> RsaKeyPair {
        RsaKeyPair::from_pkcs8(TEST_RSA_PKCS8).unwrap()
    }

    pub fn rsa_jwk(kid: &str) -> Value {
        let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa_key().public());
        serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&c.n), "e": b64(&c.e)})
    }

    pub fn ec_key() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let p = kp.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])});
        (kp, jwk)
    }

    pub fn unsigned(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }

    /// A test-forged RS256 token signed with the fixed test key.
    pub fn forged_rs256(kid: &str, claims: &Value) -> String {
        let msg = unsigned(
            &serde_json::json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
            claims,
        );
        let kp = rsa_key();
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            msg.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{msg}.{}", b64(&sig))
    }

    /// A test-forged ES256 token.
    pub fn forged_es256(kp: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
        let msg = unsigned(&serde_json::json!({"alg": "ES256", "kid": kid}), claims);
        let sig = kp.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", b64(sig.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::forge::*;
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://idp.example.com";
    const CLIENT: &str = "postern-client";

    fn expect() -> Expected<'static> {
        Expected {
            issuer: ISS,
            client_id: CLIENT,
            nonce: "n-123",
            now: NOW,
            alt_issuer: None,
        }
    }

    #[test]
    fn alt_issuer_and_userinfo() {
        let c = with(json!({"iss": "accounts.google.com"}));
        let e = Expected {
            alt_issuer: Some("accounts.google.com"),
            ..expect()
        };
        assert!(verify(&forged_rs256("rsa-1", &c), &jwks(), &e).is_ok());
        assert!(verify(&forged_rs256("rsa-1", &c), &jwks(), &expect()).is_err());
        let bare =
            with(json!({"email": null, "email_verified": null, "name": null, "groups": null}));
        let mut c = verify(&forged_rs256("rsa-1", &bare), &jwks(), &expect()).unwrap();
        assert_eq!((c.email.as_deref(), c.email_verified), (None, false));
        assert!(merge_userinfo(&mut c, &json!({"sub": "u2", "email": "x@y"})).is_err());
        assert!(merge_userinfo(&mut c, &json!({"email": "x@y"})).is_err());
        assert!(merge_userinfo(&mut c, &json!([])).is_err());
        let info = json!({"sub": "u1", "email": "bob@example.com", "email_verified": "true", "groups": ["g"]});
        merge_userinfo(&mut c, &info).unwrap();
        assert_eq!(
            (c.email.as_deref(), c.email_verified, c.groups.len()),
            (Some("bob@example.com"), true, 1)
        );
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": CLIENT, "sub": "u1", "exp": NOW + 300, "iat": NOW - 5, "nonce": "n-123",
               "email": "Alice@Example.com", "email_verified": true, "name": "Alice", "groups": ["admins", 7, "ops"]})
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn jwks() -> Jwks {
        Jwks::parse(json!({"keys": [rsa_jwk("rsa-1")]}).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn good_rs256_token() {
        let c = verify(&forged_rs256("rsa-1", &claims()), &jwks(), &expect()).unwrap();
        assert_eq!(c.email.as_deref(), Some("Alice@Example.com"));
        assert!(c.email_verified);
        assert_eq!(c.name.as_deref(), Some("Alice"));
        assert_eq!(c.groups, vec!["admins", "ops"]);
        assert_eq!(c.sub.as_deref(), Some("u1"));
    }

    #[test]
    fn good_es256_token_and_wrong_curve_key() {
        let (kp, jwk) = ec_key();
        let set = Jwks::parse(
            json!({"keys": [rsa_jwk("rsa-1"), jwk]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let tok = forged_es256(&kp, "ec-1", &claims());
        assert!(verify(&tok, &set, &expect()).is_ok());
        // The same token naming the RSA key: the key does not fit ES256.
        let tok = forged_es256(&kp, "rsa-1", &claims());
        assert!(matches!(
            verify(&tok, &set, &expect()),
            Err(IdTokenError::KeyMismatch { .. })
        ));
        // An RS256 token naming the EC key.
        let tok = forged_rs256("ec-1", &claims());
        assert!(matches!(
            verify(&tok, &set, &expect()),
            Err(IdTokenError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn claim_refusals_table() {
        type Case = (&'static str, Value, fn(&IdTokenError) -> bool);
        let cases: Vec<Case> = vec![
            ("wrong aud", with(json!({"aud": "someone-else"})), |e| {
                matches!(e, IdTokenError::Audience { .. })
            }),
            (
                "aud array without us",
                with(json!({"aud": ["a", "b"]})),
                |e| matches!(e, IdTokenError::Audience { .. }),
            ),
            (
                "aud array, no azp",
                with(json!({"aud": [CLIENT, "b"]})),
                |e| matches!(e, IdTokenError::Azp { .. }),
            ),
            ("azp other", with(json!({"azp": "other"})), |e| {
                matches!(e, IdTokenError::Azp { .. })
            }),
            (
                "wrong iss",
                with(json!({"iss": "https://idp.example.com/"})),
                |e| matches!(e, IdTokenError::Issuer { .. }),
            ),
            ("missing iss", with(json!({"iss": null})), |e| {
                matches!(e, IdTokenError::Issuer { found: None, .. })
            }),
            ("wrong nonce", with(json!({"nonce": "n-124"})), |e| {
                *e == IdTokenError::Nonce
            }),
            ("missing nonce", with(json!({"nonce": null})), |e| {
                *e == IdTokenError::Nonce
            }),
            (
                "expired",
                with(json!({"exp": NOW - LEEWAY_SECS - 1})),
                |e| matches!(e, IdTokenError::Expired { .. }),
            ),
            (
                "future iat",
                with(json!({"iat": NOW + LEEWAY_SECS + 1})),
                |e| matches!(e, IdTokenError::IssuedInFuture { .. }),
            ),
            ("missing exp", with(json!({"exp": null})), |e| {
                *e == IdTokenError::MissingClaim("exp")
            }),
            ("string exp", with(json!({"exp": "soon"})), |e| {
                *e == IdTokenError::MissingClaim("exp")
            }),
        ];
        for (name, c, want) in cases {
            let err = verify(&forged_rs256("rsa-1", &c), &jwks(), &expect()).unwrap_err();
            assert!(want(&err), "{name}: got {err:?}");
            assert!(
                err.to_string().starts_with("id_token refused"),
                "{name}: {err}"
            );
        }
        // Accepted edges: aud array with azp = us, leeway on exp and iat, float times.
        let ok = [
            with(json!({"aud": [CLIENT, "b"], "azp": CLIENT})),
            with(json!({"aud": [CLIENT]})),
            with(json!({"exp": NOW - LEEWAY_SECS, "iat": NOW + LEEWAY_SECS})),
            with(json!({"exp": (NOW + 10) as f64})),
        ];
        for c in ok {
            assert!(
                verify(&forged_rs256("rsa-1", &c), &jwks(), &expect()).is_ok(),
                "{c}"
            );
        }
    }

    #[test]
    fn signature_and_alg_refusals() {
        let good = forged_rs256("rsa-1", &claims());
        // Bad signature: one claim changed after signing.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(with(json!({"email": "mallory@example.com"}))
            .to_string()
            .as_bytes());
        assert_eq!(
            verify(&parts.join("."), &jwks(), &expect()),
            Err(IdTokenError::BadSignature)
        );
        // Signature bytes flipped.
        let mut sig = URL_SAFE_NO_PAD
            .decode(good.rsplit('.').next().unwrap())
            .unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}", good.rsplit_once('.').unwrap().0, b64(&sig));
        assert_eq!(
            verify(&flipped, &jwks(), &expect()),
            Err(IdTokenError::BadSignature)
        );
        // alg none, with and without a signature part.
        let none = unsigned(&json!({"alg": "none"}), &claims());
        assert_eq!(
            verify(&format!("{none}."), &jwks(), &expect()),
            Err(IdTokenError::AlgNone)
        );
        let none = unsigned(&json!({"alg": "None", "kid": "rsa-1"}), &claims());
        assert_eq!(
            verify(&format!("{none}.AAAA"), &jwks(), &expect()),
            Err(IdTokenError::AlgNone)
        );
        // HS256 "signed" with the RSA modulus as the HMAC key (the classic confusion attack).
        let hs = unsigned(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"n-of-the-rsa-key");
        let tag = ring::hmac::sign(&key, hs.as_bytes());
        assert_eq!(
            verify(&format!("{hs}.{}", b64(tag.as_ref())), &jwks(), &expect()),
            Err(IdTokenError::UnsupportedAlg("HS256".into()))
        );
        // Unknown kid.
        assert_eq!(
            verify(&forged_rs256("rsa-2", &claims()), &jwks(), &expect()),
            Err(IdTokenError::UnknownKid(Some("rsa-2".into())))
        );
        // JWK says RS256 only; header says PS256.
        let ps = unsigned(&json!({"alg": "PS256", "kid": "rsa-1"}), &claims());
        assert!(matches!(
            verify(&format!("{ps}.AAAA"), &jwks(), &expect()),
            Err(IdTokenError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn no_kid_uses_the_one_fitting_key() {
        let msg = unsigned(&json!({"alg": "RS256"}), &claims());
        let kp = rsa_key();
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            msg.as_bytes(),
            &mut sig,
        )
        .unwrap();
        assert!(verify(&format!("{msg}.{}", b64(&sig)), &jwks(), &expect()).is_ok());
        let (_, ec) = ec_key();
        let only_ec = Jwks::parse(json!({"keys": [ec]}).to_string().as_bytes()).unwrap();
        assert_eq!(
            verify(&format!("{msg}.{}", b64(&sig)), &only_ec, &expect()),
            Err(IdTokenError::UnknownKid(None))
        );
    }

    #[test]
    fn email_verified_table() {
        let cases = [
            (json!(true), true),
            (json!("true"), true),
            (json!("TRUE"), true),
            (json!(false), false),
            (json!("false"), false),
            (Value::Null, false), // removed: missing
            (json!(1), false),
            (json!("yes"), false),
        ];
        for (v, want) in cases {
            let c = verify(
                &forged_rs256("rsa-1", &with(json!({"email_verified": v}))),
                &jwks(),
                &expect(),
            )
            .unwrap();
            assert_eq!(c.email_verified, want, "{v}");
        }
        let c = verify(
            &forged_rs256("rsa-1", &with(json!({"groups": "admins"}))),
            &jwks(),
            &expect(),
        )
        .unwrap();
        assert!(c.groups.is_empty());
    }

    #[test]
    fn malformed_tokens_never_panic() {
        let good = forged_rs256("rsa-1", &claims());
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "e30.e30.",
            "W10.e30.AA",
            long.as_str(),
            "é.é.é",
        ] {
            assert!(verify(bad, &jwks(), &expect()).is_err(), "{bad:?}");
        }
        for n in 0..good.len() {
            assert!(
                verify(&good[..n], &jwks(), &expect()).is_err(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn jwks_parsing() {
        assert_eq!(Jwks::parse(b"nope").unwrap_err(), JwksError::NotJson);
        assert_eq!(Jwks::parse(b"{}").unwrap_err(), JwksError::NoKeysArray);
        let enc_only = json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}, {"kty": "oct", "k": "x"}]});
        assert_eq!(
            Jwks::parse(enc_only.to_string().as_bytes()).unwrap_err(),
            JwksError::NoUsableKey
        );
        let set = Jwks::parse(
            json!({"keys": [rsa_jwk("a"), {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("a"));
    }
}
