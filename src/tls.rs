//! TLS settings: the server side (postern's own certificate, ALPN http/1.1) and the client side for outbound
//! HTTPS (identity provider, https upstreams), trusting the built-in webpki roots plus SSL_CERT_FILE.
//!
//! Both use rustls with the ring provider, chosen explicitly so no process-wide default provider is needed.

use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::client::WantsClientCert;
use futures_rustls::rustls::crypto::ring::default_provider;
use futures_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::pki_types::{ServerName, UnixTime};
use futures_rustls::rustls::{
    ClientConfig, ConfigBuilder, DigitallySignedStruct, Error, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Build the listener's TLS configuration. The error says why rustls refused (e.g. the key does not match the
/// certificate).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            futures_rustls::rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate (the first certificate of the chain must be the one the key was made for)".to_string()
            }
            e => e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parse every certificate in a PEM text. An empty list is an error: a PEM with no certificate is a mistake.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM that does not parse ({e})"))?;
    if certs.is_empty() {
        return Err("PEM with no CERTIFICATE block".into());
    }
    Ok(certs)
}

/// Parse the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        futures_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
            "PEM with no PRIVATE KEY block".to_string()
        }
        e => format!("PEM that does not parse ({e})"),
    })
}

/// The shared client configuration: webpki roots plus the certificates in SSL_CERT_FILE (read once, at first use).
#[allow(dead_code)] // used by client.rs and forward.rs
pub fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let extra = std::env::var_os("SSL_CERT_FILE");
            let (config, problem) = client_config_with(extra.as_deref().map(Path::new), &[]);
            if let Some(problem) = problem {
                log::warn!("{problem}");
            }
            config
        })
        .clone()
}

/// A client configuration trusting webpki roots, the PEM file `extra_file` (if any) and `extra` certificates
/// (a route's tls_custom_ca). A problem with the file is returned beside the configuration, which still works
/// with the other roots.
#[allow(dead_code)] // used by client_config, and forward.rs for tls_custom_ca
pub fn client_config_with(
    extra_file: Option<&Path>,
    extra: &[CertificateDer<'static>],
) -> (Arc<ClientConfig>, Option<String>) {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut problem = None;
    if let Some(path) = extra_file {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| parse_certs(&pem))
        {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    problem = Some(format!(
                        "SSL_CERT_FILE {}: {ignored} certificates ignored ({added} added)",
                        path.display()
                    ));
                }
            }
            Err(e) => {
                problem = Some(format!(
                    "SSL_CERT_FILE {}: {e}; using the built-in roots only",
                    path.display()
                ))
            }
        }
    }
    roots.add_parsable_certificates(extra.iter().cloned());
    // The ring provider supports the default protocol versions, so this cannot fail; fall back to the
    // process default rather than panic if it ever does.
    let builder = match ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(_) => ClientConfig::builder(),
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), problem)
}

/// A client certificate chain and its key, shown to an upstream that asks for one (tls_client_cert/tls_client_key).
pub type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client configuration for one https upstream that needs its own: extra trust roots (tls_custom_ca) or no
/// certificate check at all (tls_skip_verify). Built once at load; other upstreams share `client_config()`.
pub fn upstream_client_config(
    custom_ca: &[CertificateDer<'static>],
    skip_verify: bool,
) -> Arc<ClientConfig> {
    finish(upstream_trust(custom_ca, skip_verify).with_no_client_auth())
}

/// As `upstream_client_config`, showing a client certificate to the upstream (tls_client_cert/tls_client_key).
/// Err: the certificate and key do not go together (the text says why).
pub fn upstream_client_config_with_cert(
    custom_ca: &[CertificateDer<'static>],
    skip_verify: bool,
    (certs, key): ClientAuth,
) -> Result<Arc<ClientConfig>, String> {
    let config = upstream_trust(custom_ca, skip_verify)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("a certificate and key that go together ({e})"))?;
    Ok(finish(config))
}

/// How an upstream's certificate is checked: the built-in roots, SSL_CERT_FILE and `custom_ca`, or not at all.
fn upstream_trust(
    custom_ca: &[CertificateDer<'static>],
    skip_verify: bool,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    let provider = Arc::new(default_provider());
    let builder = match ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(_) => ClientConfig::builder(),
    };
    if skip_verify {
        return builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)));
    }
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        if let Ok(certs) = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| parse_certs(&pem))
        {
            roots.add_parsable_certificates(certs);
        }
    }
    roots.add_parsable_certificates(custom_ca.iter().cloned());
    builder.with_root_certificates(roots)
}

fn finish(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// tls_skip_verify: any certificate is accepted, but the handshake signatures are still checked (so the
/// connection is at least encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const CERT_A: &str = include_str!("testdata/a.crt");
    pub const KEY_A: &str = include_str!("testdata/a.key");
    pub const KEY_B: &str = include_str!("testdata/b.key");

    #[test]
    fn server_config_from_matching_pair() {
        let certs = parse_certs(CERT_A.as_bytes()).unwrap();
        let key = parse_key(KEY_A.as_bytes()).unwrap();
        let config = server_config(certs, key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let certs = parse_certs(CERT_A.as_bytes()).unwrap();
        let key = parse_key(KEY_B.as_bytes()).unwrap();
        let e = server_config(certs, key).unwrap_err();
        assert!(
            e.contains("the private key does not belong to the certificate"),
            "{e}"
        );
    }

    #[test]
    fn bad_pem_is_described() {
        assert_eq!(
            parse_certs(b"hello").unwrap_err(),
            "PEM with no CERTIFICATE block"
        );
        assert_eq!(
            parse_key(CERT_A.as_bytes()).unwrap_err(),
            "PEM with no PRIVATE KEY block"
        );
        assert!(
            parse_certs(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
    }

    pub const CA: &str = include_str!("testdata/ca.crt");
    const LEAF: &str = include_str!("testdata/leaf.crt");
    const LEAF_KEY: &str = include_str!("testdata/leaf.key");

    /// Run a handshake in memory between `client` and a server holding the test leaf certificate.
    fn handshake(client: Arc<ClientConfig>, name: &str) -> Result<Option<Vec<u8>>, Error> {
        use futures_rustls::rustls::{ClientConnection, ServerConnection};
        let certs = parse_certs(LEAF.as_bytes()).unwrap();
        let server = server_config(certs, parse_key(LEAF_KEY.as_bytes()).unwrap()).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        let mut c =
            ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap()).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn upstream_trust_settings_decide_handshakes() {
        let ca = parse_certs(CA.as_bytes()).unwrap();
        // Default roots: the private CA is unknown.
        assert!(handshake(upstream_client_config(&[], false), "backend.internal").is_err());
        // tls_custom_ca: trusted, ALPN http/1.1 agreed.
        let alpn = handshake(upstream_client_config(&ca, false), "backend.internal").unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        // ... but only for the name in the certificate (tls_server_name exists for this).
        assert!(handshake(upstream_client_config(&ca, false), "other.internal").is_err());
        // tls_skip_verify: any certificate, any name.
        assert!(handshake(upstream_client_config(&[], true), "other.internal").is_ok());
    }

    #[test]
    fn client_certificate_must_match_its_key() {
        let cert = || parse_certs(CERT_A.as_bytes()).unwrap();
        let good = parse_key(KEY_A.as_bytes()).unwrap();
        let config = upstream_client_config_with_cert(&[], false, (cert(), good)).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        let bad = parse_key(KEY_B.as_bytes()).unwrap();
        let e = upstream_client_config_with_cert(&[], false, (cert(), bad)).unwrap_err();
        assert!(e.contains("go together"), "{e}");
    }

    #[test]
    fn client_config_with_extra_file() {
        let dir = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, CERT_A).unwrap();
        let (config, problem) = client_config_with(Some(&file), &[]);
        assert_eq!(problem, None);
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let (_, problem) = client_config_with(Some(&dir.join("missing.pem")), &[]);
        assert!(problem.unwrap().contains("missing.pem"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = client_config();
    }
}
