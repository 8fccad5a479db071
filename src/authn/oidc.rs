//! The OpenID Connect provider: discovery, JWKS, the authorization URL (PKCE S256, nonce, state) and the code
//! exchange, ending in a verified id_token.
//!
//! Discovery happens lazily on the first sign-in and is cached; a failure is not cached, so the next sign-in retries
//! and a down IdP never stops postern from starting or serving public routes. The JWKS is fetched with discovery and
//! refreshed when a token names a key id it does not hold (key rotation), at most once per `JWKS_REFRESH_INTERVAL`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::http::{header, Method, Request};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::idtoken::{self, Claims, Expected, IdTokenError, Jwks, JwksError};
use crate::client::ClientError;

/// The fewest seconds between two JWKS fetches triggered by unknown key ids (a flood of forged kids must not make
/// postern hammer the IdP).
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Sends one request to the IdP. The real one is `client::send_oauth2`; tests plug in a fake IdP.
pub type Transport =
    Rc<dyn Fn(HttpRequest) -> Pin<Box<dyn Future<Output = Result<HttpResponse, ClientError>>>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpKind {
    Oidc,
    Google,
}

/// The identity provider settings (IDP_PROVIDER, IDP_PROVIDER_URL, IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_SCOPES).
#[derive(Clone)]
pub struct IdpSettings {
    pub kind: IdpKind,
    pub provider_url: Url,
    pub client_id: String,
    pub client_secret: String,
    /// Empty means `openid email profile`.
    pub scopes: Vec<String>,
}

impl fmt::Debug for IdpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpSettings")
            .field("kind", &self.kind)
            .field("provider_url", &self.provider_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What discovery told us.
#[derive(Debug)]
struct Discovered {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    userinfo_endpoint: Option<Url>,
    /// Send the client secret in the form body, because the IdP does not list `client_secret_basic`.
    secret_in_body: bool,
}

#[derive(Deserialize)]
struct DiscoveryDoc {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The token endpoint's answer: OAuth2's fields plus OpenID Connect's `id_token`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type OidcTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;
type OidcClient = Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Why talking to the IdP failed. Display is for the operator's log.
#[derive(Debug)]
pub enum OidcError {
    /// The IdP could not be reached or sent something unreadable (-> 502).
    Transport {
        step: &'static str,
        error: ClientError,
    },
    /// Discovery or JWKS answered, but not with what OpenID Connect requires (-> 502).
    Discovery {
        url: String,
        detail: String,
    },
    IssuerMismatch {
        expected: String,
        found: String,
    },
    Jwks {
        url: String,
        error: JwksError,
    },
    /// The token endpoint refused the code (e.g. `invalid_grant`: reused or expired code) (-> 400).
    TokenRefused {
        error: String,
        description: Option<String>,
    },
    /// The token endpoint's answer was not a token response (-> 502).
    TokenResponse(String),
    NoIdToken,
    /// postern's own PKCE verifier is not 43..=128 unreserved characters (a bug, not the user's fault).
    BadPkceVerifier,
    /// The id_token failed a check (-> 400).
    IdToken(IdTokenError),
}

impl OidcError {
    /// True when the IdP itself is unreachable or misbehaving (a 502 for the user), false when this sign-in was
    /// refused (a 400).
    pub fn is_upstream_failure(&self) -> bool {
        !matches!(self, OidcError::TokenRefused { .. } | OidcError::IdToken(_))
    }
}

impl fmt::Display for OidcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OidcError::Transport { step, error } => write!(f, "identity provider {step}: {error}"),
            OidcError::Discovery { url, detail } => write!(f, "OpenID Connect discovery at {url}: {detail}"),
            OidcError::IssuerMismatch { expected, found } => write!(
                f,
                "OpenID Connect discovery: issuer is {found:?} but IDP_PROVIDER_URL is {expected:?} (they must be equal)"
            ),
            OidcError::Jwks { url, error } => write!(f, "JWKS at {url}: {error}"),
            OidcError::TokenRefused { error, description } => write!(
                f,
                "token endpoint refused the authorization code: {error}{}",
                description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            OidcError::TokenResponse(d) => write!(f, "token endpoint answer unreadable: {d}"),
            OidcError::NoIdToken => write!(f, "token endpoint answer has no id_token (is the `openid` scope requested?)"),
            OidcError::BadPkceVerifier => write!(f, "PKCE verifier must be 43 to 128 unreserved characters"),
            OidcError::IdToken(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OidcError {}

/// The identity provider, discovered lazily.
pub struct Provider {
    settings: IdpSettings,
    redirect_url: Url,
    transport: Transport,
    discovered: RefCell<Option<Rc<Discovered>>>,
    jwks: RefCell<Option<Rc<Jwks>>>,
    jwks_fetched: Cell<Option<Instant>>,
}

impl Provider {
    /// `redirect_url` is AUTHENTICATE_SERVICE_URL + `/oauth2/callback`.
    pub fn new(settings: IdpSettings, redirect_url: Url, transport: Transport) -> Provider {
        Provider {
            settings,
            redirect_url,
            transport,
            discovered: RefCell::new(None),
            jwks: RefCell::new(None),
            jwks_fetched: Cell::new(None),
        }
    }

    pub fn kind(&self) -> IdpKind {
        self.settings.kind
    }

    fn scopes(&self) -> Vec<String> {
        if self.settings.scopes.is_empty() {
            vec!["openid".into(), "email".into(), "profile".into()]
        } else {
            let mut s = self.settings.scopes.clone();
            // Without `openid` there is no id_token, and so no sign-in.
            if !s.iter().any(|x| x == "openid") {
                s.insert(0, "openid".into());
            }
            s
        }
    }

    /// GETs a JSON document from the IdP (discovery, JWKS, userinfo with its bearer token).
    async fn get_json(
        &self,
        url: &Url,
        step: &'static str,
        bearer: Option<&str>,
    ) -> Result<serde_json::Value, OidcError> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Vec::new()).map_err(|e| OidcError::Discovery {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        let resp = (self.transport)(req)
            .await
            .map_err(|error| OidcError::Transport { step, error })?;
        if resp.status() != 200 {
            return Err(OidcError::Discovery {
                url: url.to_string(),
                detail: format!("{step} answered HTTP {}", resp.status().as_u16()),
            });
        }
        serde_json::from_slice(resp.body()).map_err(|e| OidcError::Discovery {
            url: url.to_string(),
            detail: format!("{step} is not JSON: {e}"),
        })
    }

    /// The discovery document, fetched on first use.
    async fn discovered(&self) -> Result<Rc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.borrow().as_ref() {
            return Ok(d.clone());
        }
        let base = self.settings.provider_url.as_str().trim_end_matches('/');
        let url_s = format!("{base}/.well-known/openid-configuration");
        let url = Url::parse(&url_s).map_err(|e| OidcError::Discovery {
            url: url_s.clone(),
            detail: e.to_string(),
        })?;
        let doc = self.get_json(&url, "discovery", None).await?;
        let doc: DiscoveryDoc = serde_json::from_value(doc).map_err(|e| OidcError::Discovery {
            url: url_s.clone(),
            detail: format!("missing field: {e}"),
        })?;
        if doc.issuer.trim_end_matches('/') != base {
            return Err(OidcError::IssuerMismatch {
                expected: base.into(),
                found: doc.issuer,
            });
        }
        let parse = |what: &str, s: &str| {
            Url::parse(s).map_err(|e| OidcError::Discovery {
                url: url_s.clone(),
                detail: format!("{what} {s:?}: {e}"),
            })
        };
        let methods = doc
            .token_endpoint_auth_methods_supported
            .unwrap_or_default();
        let d = Rc::new(Discovered {
            authorization_endpoint: parse("authorization_endpoint", &doc.authorization_endpoint)?,
            token_endpoint: parse("token_endpoint", &doc.token_endpoint)?,
            jwks_uri: parse("jwks_uri", &doc.jwks_uri)?,
            userinfo_endpoint: match &doc.userinfo_endpoint {
                Some(u) => Some(parse("userinfo_endpoint", u)?),
                None => None,
            },
            // RFC 8414: an absent list means client_secret_basic.
            secret_in_body: !methods.is_empty()
                && !methods.iter().any(|m| m == "client_secret_basic")
                && methods.iter().any(|m| m == "client_secret_post"),
            issuer: doc.issuer,
        });
        log::info!("identity provider discovered: issuer {}", d.issuer);
        *self.discovered.borrow_mut() = Some(d.clone());
        Ok(d)
    }

    async fn fetch_jwks(&self, d: &Discovered) -> Result<Rc<Jwks>, OidcError> {
        self.jwks_fetched.set(Some(Instant::now()));
        let doc = self.get_json(&d.jwks_uri, "JWKS", None).await?;
        let jwks = Jwks::parse(doc.to_string().as_bytes()).map_err(|error| OidcError::Jwks {
            url: d.jwks_uri.to_string(),
            error,
        })?;
        let jwks = Rc::new(jwks);
        *self.jwks.borrow_mut() = Some(jwks.clone());
        Ok(jwks)
    }

    async fn jwks(&self, d: &Discovered) -> Result<Rc<Jwks>, OidcError> {
        let cached = self.jwks.borrow().clone();
        match cached {
            Some(j) => Ok(j),
            None => self.fetch_jwks(d).await,
        }
    }

    fn client(&self, d: &Discovered) -> OidcClient {
        Client::new(ClientId::new(self.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.settings.client_secret.clone()))
            .set_auth_uri(AuthUrl::from_url(d.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(d.token_endpoint.clone()))
            .set_redirect_uri(RedirectUrl::from_url(self.redirect_url.clone()))
            .set_auth_type(if d.secret_in_body {
                AuthType::RequestBody
            } else {
                AuthType::BasicAuth
            })
    }

    /// The IdP authorization URL for one sign-in. `prompt` is e.g. `login` or `select_account` after a sign-out.
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
        prompt: Option<&str>,
    ) -> Result<Url, OidcError> {
        // oauth2 asserts (panics) on a verifier outside RFC 7636's 43..=128 unreserved characters.
        let pkce_ok = (43..=128).contains(&pkce_verifier.len())
            && pkce_verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !pkce_ok {
            return Err(OidcError::BadPkceVerifier);
        }
        let d = self.discovered().await?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.into(),
        ));
        let client = self.client(&d);
        let state = state.to_owned();
        let mut req = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes().into_iter().map(Scope::new))
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.to_owned());
        if let Some(p) = prompt {
            req = req.add_extra_param("prompt", p.to_owned());
        }
        Ok(req.url().0)
    }

    /// Exchanges the authorization code and verifies the id_token against the nonce of this sign-in.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: u64,
    ) -> Result<Claims, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d);
        let send = |req: HttpRequest| (self.transport)(req);
        let resp = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&send)
            .await
            .map_err(token_error)?;
        let id_token = resp
            .extra_fields()
            .id_token
            .as_deref()
            .ok_or(OidcError::NoIdToken)?;
        let expect = Expected {
            issuer: &d.issuer,
            client_id: &self.settings.client_id,
            nonce,
            now,
            alt_issuer: (self.settings.kind == IdpKind::Google).then_some("accounts.google.com"),
        };
        let jwks = self.jwks(&d).await?;
        let mut claims = match idtoken::verify(id_token, &jwks, &expect) {
            Err(IdTokenError::UnknownKid(kid)) => {
                let recently = self
                    .jwks_fetched
                    .get()
                    .is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL);
                if recently {
                    return Err(OidcError::IdToken(IdTokenError::UnknownKid(kid)));
                }
                log::info!("id_token names an unknown key id; fetching the IdP's JWKS again (key rotation?)");
                let jwks = self.fetch_jwks(&d).await?;
                idtoken::verify(id_token, &jwks, &expect).map_err(OidcError::IdToken)?
            }
            other => other.map_err(OidcError::IdToken)?,
        };
        if claims.email.is_none() {
            if let Some(url) = &d.userinfo_endpoint {
                let info = self
                    .get_json(url, "userinfo", Some(resp.access_token().secret()))
                    .await?;
                idtoken::merge_userinfo(&mut claims, &info).map_err(OidcError::IdToken)?;
            }
        }
        Ok(claims)
    }
}

fn token_error(e: RequestTokenError<ClientError, BasicErrorResponse>) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::TokenRefused {
            error: r.error().as_ref().to_owned(),
            description: r.error_description().cloned(),
        },
        RequestTokenError::Request(error) => OidcError::Transport {
            step: "token endpoint",
            error,
        },
        // The body may hold tokens: never include it.
        RequestTokenError::Parse(e, _) => OidcError::TokenResponse(e.to_string()),
        RequestTokenError::Other(s) => OidcError::TokenResponse(s),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake identity provider for tests: discovery, JWKS and a token endpoint answering with a test-forged token.
    use super::*;
    use std::collections::HashMap;

    pub const ISSUER: &str = "https://idp.example.com";

    pub struct FakeIdp {
        pub jwks: RefCell<serde_json::Value>,
        /// The id_token the token endpoint returns for each code.
        pub tokens: RefCell<HashMap<String, String>>,
        /// Every request seen: (method, url, body).
        pub seen: RefCell<Vec<(String, String, String)>>,
        pub discovery_fails: Cell<bool>,
        /// What the userinfo endpoint answers for the access token `at`.
        pub userinfo: RefCell<serde_json::Value>,
    }

    impl FakeIdp {
        pub fn new(jwks: serde_json::Value) -> Rc<FakeIdp> {
            Rc::new(FakeIdp {
                jwks: RefCell::new(jwks),
                tokens: RefCell::new(HashMap::new()),
                seen: RefCell::new(Vec::new()),
                discovery_fails: Cell::new(false),
                userinfo: RefCell::new(serde_json::json!({})),
            })
        }

        fn answer(&self, req: &HttpRequest) -> Result<HttpResponse, ClientError> {
            let url = req.uri().to_string();
            let body = String::from_utf8_lossy(req.body()).into_owned();
            self.seen
                .borrow_mut()
                .push((req.method().to_string(), url.clone(), body.clone()));
            let json = |status: u16, v: serde_json::Value| {
                oauth2::http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(v.to_string().into_bytes())
                    .map_err(|e| ClientError::BadResponse {
                        host: "fake".into(),
                        detail: e.to_string(),
                    })
            };
            match url.as_str() {
                "https://idp.example.com/.well-known/openid-configuration" => {
                    if self.discovery_fails.get() {
                        return Err(ClientError::Timeout {
                            host: "idp.example.com".into(),
                        });
                    }
                    json(
                        200,
                        serde_json::json!({
                            "issuer": ISSUER,
                            "authorization_endpoint": "https://idp.example.com/auth",
                            "token_endpoint": "https://idp.example.com/token",
                            "jwks_uri": "https://idp.example.com/jwks",
                            "userinfo_endpoint": "https://idp.example.com/me",
                        }),
                    )
                }
                "https://idp.example.com/jwks" => json(200, self.jwks.borrow().clone()),
                "https://idp.example.com/me" => match req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                {
                    Some("Bearer at") => json(200, self.userinfo.borrow().clone()),
                    _ => json(401, serde_json::json!({"error": "invalid_token"})),
                },
                "https://idp.example.com/token" => {
                    let code = url::form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    match self.tokens.borrow().get(&code) {
                        Some(t) => json(
                            200,
                            serde_json::json!({"access_token": "at", "token_type": "Bearer", "id_token": t}),
                        ),
                        None => json(400, serde_json::json!({"error": "invalid_grant"})),
                    }
                }
                _ => json(404, serde_json::json!({})),
            }
        }

        pub fn transport(self: &Rc<Self>) -> Transport {
            let me = self.clone();
            Rc::new(move |req| {
                let r = me.answer(&req);
                Box::pin(async move { r })
            })
        }
    }

    pub fn settings() -> IdpSettings {
        IdpSettings {
            kind: IdpKind::Oidc,
            provider_url: Url::parse(ISSUER).unwrap(),
            client_id: "postern-client".into(),
            client_secret: "s3cret".into(),
            scopes: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;
    use crate::authn::idtoken::forge;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn provider(idp: &Rc<FakeIdp>) -> Provider {
        Provider::new(
            settings(),
            Url::parse("https://auth.example.com/oauth2/callback").unwrap(),
            idp.transport(),
        )
    }

    fn claims(nonce: &str) -> serde_json::Value {
        json!({"iss": ISSUER, "aud": "postern-client", "exp": NOW + 300, "iat": NOW, "nonce": nonce,
               "email": "alice@example.com", "email_verified": true})
    }

    #[test]
    fn authorization_url_has_pkce_nonce_state_and_prompt() {
        let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
        let p = provider(&idp);
        let url =
            smol::block_on(p.authorization_url("STATE", "NONCE", &"v".repeat(43), Some("login")))
                .unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(
            url.as_str().split('?').next(),
            Some("https://idp.example.com/auth")
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "postern-client");
        assert_eq!(q["state"], "STATE");
        assert_eq!(q["nonce"], "NONCE");
        assert_eq!(q["prompt"], "login");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["redirect_uri"],
            "https://auth.example.com/oauth2/callback"
        );
        assert_eq!(q["scope"], "openid email profile");
        // S256 of 43 'v's, base64url.
        let digest = ring::digest::digest(&ring::digest::SHA256, "v".repeat(43).as_bytes());
        assert_eq!(q["code_challenge"], forge::b64(digest.as_ref()));
    }

    #[test]
    fn discovery_failure_is_retried_and_issuer_checked() {
        let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
        let p = provider(&idp);
        idp.discovery_fails.set(true);
        let e = smol::block_on(p.authorization_url("s", "n", &"v".repeat(43), None)).unwrap_err();
        assert!(
            e.is_upstream_failure() && e.to_string().contains("did not answer"),
            "{e}"
        );
        idp.discovery_fails.set(false);
        assert!(smol::block_on(p.authorization_url("s", "n", &"v".repeat(43), None)).is_ok());

        let mut s = settings();
        s.provider_url = Url::parse("https://idp.example.com/other").unwrap();
        let p = Provider::new(
            s,
            Url::parse("https://a/oauth2/callback").unwrap(),
            idp.transport(),
        );
        // The fake answers 404 for this discovery URL.
        assert!(smol::block_on(p.authorization_url("s", "n", &"v".repeat(43), None)).is_err());
        let p = provider(&idp);
        for bad in ["short", &"v".repeat(129), &format!("{}+", "v".repeat(43))] {
            let e = smol::block_on(p.authorization_url("s", "n", bad, None)).unwrap_err();
            assert!(matches!(e, OidcError::BadPkceVerifier));
        }
    }

    #[test]
    fn exchange_verifies_the_id_token_and_refreshes_jwks_once() {
        let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("old")]}));
        let p = provider(&idp);
        idp.tokens
            .borrow_mut()
            .insert("c1".into(), forge::forged_rs256("old", &claims("n1")));
        let c = smol::block_on(p.exchange("c1", "verifier", "n1", NOW)).unwrap();
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        let token_req = idp
            .seen
            .borrow()
            .iter()
            .find(|(_, u, _)| u.ends_with("/token"))
            .cloned()
            .unwrap();
        assert!(
            token_req.2.contains("code_verifier=verifier")
                && token_req.2.contains("grant_type=authorization_code")
        );

        // Wrong nonce: refused as a 400, not a 502.
        let e = smol::block_on(p.exchange("c1", "verifier", "n2", NOW)).unwrap_err();
        assert!(matches!(e, OidcError::IdToken(IdTokenError::Nonce)) && !e.is_upstream_failure());
        // Unknown code: the IdP refuses.
        let e = smol::block_on(p.exchange("nope", "verifier", "n1", NOW)).unwrap_err();
        assert!(
            matches!(&e, OidcError::TokenRefused { error, .. } if error == "invalid_grant"),
            "{e}"
        );

        // Key rotation: the IdP now signs with kid "new"; the first try within the interval is refused, after the
        // interval the JWKS is fetched again and the token accepted.
        *idp.jwks.borrow_mut() = json!({"keys": [forge::rsa_jwk("new")]});
        idp.tokens
            .borrow_mut()
            .insert("c2".into(), forge::forged_rs256("new", &claims("n1")));
        let e = smol::block_on(p.exchange("c2", "v", "n1", NOW)).unwrap_err();
        assert!(matches!(e, OidcError::IdToken(IdTokenError::UnknownKid(_))));
        p.jwks_fetched
            .set(Instant::now().checked_sub(JWKS_REFRESH_INTERVAL * 2));
        assert!(smol::block_on(p.exchange("c2", "v", "n1", NOW)).is_ok());
        // An id_token without email: the profile comes from userinfo, whose sub must match.
        let mut bare = claims("n1");
        bare["sub"] = json!("u1");
        bare.as_object_mut().unwrap().remove("email");
        idp.tokens
            .borrow_mut()
            .insert("c3".into(), forge::forged_rs256("new", &bare));
        *idp.userinfo.borrow_mut() =
            json!({"sub": "u1", "email": "carol@other.example", "email_verified": true});
        let c = smol::block_on(p.exchange("c3", "v", "n1", NOW)).unwrap();
        assert_eq!(
            (c.email.as_deref(), c.email_verified),
            (Some("carol@other.example"), true)
        );
        *idp.userinfo.borrow_mut() = json!({"sub": "someone-else", "email": "mallory@example.com"});
        assert!(smol::block_on(p.exchange("c3", "v", "n1", NOW)).is_err());
        let jwks_fetches = idp
            .seen
            .borrow()
            .iter()
            .filter(|(_, u, _)| u.ends_with("/jwks"))
            .count();
        assert_eq!(jwks_fetches, 2);
    }
}
