//! TLS at the edge (rustls with the ring provider): certificates chosen by SNI from a table
//! swapped whole, so a rotation never drops a connection; client certificates per host;
//! ACME's TLS-ALPN-01 answers. A private key never reaches an error, a log or `Debug`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::routes::normalize_host;

/// The protocol name of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why TLS material cannot be used. The messages never quote a key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)")]
    NoCertificate,
    #[error("the certificate is not valid PEM")]
    CertificatePem,
    #[error("no private key in it (expected a PEM PKCS#8, PKCS#1 or SEC1 key)")]
    NoKey,
    #[error("the private key is not valid PEM")]
    KeyPem,
    /// rustls refused the key (an unsupported type, a malformed key); rustls's message
    /// names the problem, not the key.
    #[error("the private key cannot be used: {0}")]
    Key(String),
    #[error("the private key does not match the certificate")]
    Mismatch,
    #[error("the certificate cannot be parsed: {0}")]
    Certificate(String),
    #[error("client CA: {0}")]
    ClientCa(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring provider, made once.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A certificate chain and the private key that belongs to it (checked).
#[derive(Clone)]
pub struct Certificate {
    pub(crate) key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("chain", &self.key.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Certificate {
    /// A chain (the end-entity certificate first) and its key, from PEM text. The key
    /// must match the first certificate.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::CertificatePem)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
            _ => TlsError::KeyPem,
        })?;
        Certificate::from_der(chain, key)
    }

    /// As `from_pem`, from DER.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Certificate, TlsError> {
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::Mismatch)
            }
            // A key type whose public half the provider cannot give: nothing to compare.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(TlsError::Certificate(e.to_string())),
        }
        Ok(Certificate {
            key: Arc::new(certified),
        })
    }

    /// A certificate the caller made itself with `key`, not parsed: ACME's TLS-ALPN-01
    /// answer, whose critical `acmeIdentifier` extension the checker of `from_pem` does not
    /// know (a client never verifies it: only the ACME server reads it).
    pub fn made_with(chain_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::CertificatePem)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::KeyPem)?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        Ok(Certificate {
            key: Arc::new(CertifiedKey::new(chain, signing)),
        })
    }

    /// The end-entity certificate, DER (for reading its names and validity).
    pub fn end_entity(&self) -> &[u8] {
        self.key.cert.first().map_or(&[], |c| c.as_ref())
    }
}

/// The certificate authorities whose client certificates a host accepts (mTLS).
#[derive(Clone)]
pub struct ClientCa {
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl ClientCa {
    /// One or more CA certificates, PEM.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCa, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| TlsError::ClientCa("not valid PEM".into()))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::ClientCa("no certificate in it".into()));
        }
        Ok(ClientCa {
            roots: Arc::new(roots),
        })
    }
}

/// Host name (or `*.` pattern) → value, looked up as a certificate is: the exact name,
/// then the wildcard of its parent.
#[derive(Debug)]
pub(crate) struct ByHost<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
}

impl<T> Default for ByHost<T> {
    fn default() -> Self {
        ByHost {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> ByHost<T> {
    pub fn new(entries: impl IntoIterator<Item = (String, T)>) -> ByHost<T> {
        let mut out = ByHost::default();
        for (host, value) in entries {
            let host = normalize_host(&host);
            match host.strip_prefix("*.") {
                Some(parent) => out.wildcard.insert(parent.to_string(), value),
                None => out.exact.insert(host, value),
            };
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.exact.values().chain(self.wildcard.values())
    }
}

/// The certificate for a handshake, by SNI, from a table swapped whole.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    table: RwLock<Arc<ByHost<Arc<CertifiedKey>>>>,
}

impl Resolver {
    fn set(&self, table: ByHost<Arc<CertifiedKey>>) {
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    fn current(&self) -> Arc<ByHost<Arc<CertifiedKey>>> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Resolver {
    /// By SNI; a client that sends none (an IP address typed in) gets the edge's only
    /// certificate when it has exactly one, else none.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.current();
        match hello.server_name() {
            Some(name) => table.get(name).cloned(),
            None => {
                let mut all = table.values();
                let first = all.next()?;
                all.all(|c| Arc::ptr_eq(c, first)).then(|| first.clone())
            }
        }
    }
}

/// Always the same certificate (a TLS-ALPN-01 challenge's).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Everything the HTTPS listener chooses from when a client says hello.
pub(crate) struct TlsState {
    resolver: Arc<Resolver>,
    /// Certificates by SNI, ALPN h2 and http/1.1, no client certificate asked.
    plain: Arc<ServerConfig>,
    /// Hosts with a client-certificate route: the same, asking for a certificate signed
    /// by the host's CA (optional in the handshake; the route checks it was given).
    client_auth: RwLock<Arc<ByHost<Arc<ServerConfig>>>>,
    /// TLS-ALPN-01 challenges in progress, by domain.
    alpn: RwLock<HashMap<String, Arc<ServerConfig>>>,
}

impl TlsState {
    pub fn new() -> Result<TlsState, TlsError> {
        let resolver = Arc::new(Resolver::default());
        let plain = server_config(None, resolver.clone(), alpn_h2_h1())?;
        Ok(TlsState {
            resolver,
            plain,
            client_auth: RwLock::default(),
            alpn: RwLock::default(),
        })
    }

    /// The configuration for a client's hello: a TLS-ALPN-01 challenge's, a host's that
    /// asks for client certificates, or the common one.
    pub fn config_for(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let name = hello.server_name().map(normalize_host);
        if let Some(name) = &name {
            let acme = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
            if acme {
                let alpn = self.alpn.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(config) = alpn.get(name) {
                    return config.clone();
                }
            }
            let client_auth = self
                .client_auth
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if !client_auth.is_empty() {
                if let Some(config) = client_auth.get(name) {
                    return config.clone();
                }
            }
        }
        self.plain.clone()
    }

    /// Replaces every served certificate at once: handshakes from now on see the new
    /// table; connections already open keep theirs.
    pub fn set_certificates(&self, certs: Vec<(String, Certificate)>) {
        self.resolver
            .set(ByHost::new(certs.into_iter().map(|(h, c)| (h, c.key))));
    }

    /// The certificate served for `name` now, if any.
    pub fn certificate(&self, name: &str) -> Option<Certificate> {
        self.resolver
            .current()
            .get(name)
            .map(|key| Certificate { key: key.clone() })
    }

    /// Replaces the hosts that ask for client certificates.
    pub fn set_client_auth(&self, hosts: Vec<(String, ClientCa)>) -> Result<(), TlsError> {
        let mut configs = Vec::with_capacity(hosts.len());
        for (host, ca) in hosts {
            let verifier = WebPkiClientVerifier::builder_with_provider(ca.roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            let config = server_config(Some(verifier), self.resolver.clone(), alpn_h2_h1())?;
            configs.push((host, config));
        }
        *self
            .client_auth
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(ByHost::new(configs));
        Ok(())
    }

    /// Answers (or, with `None`, stops answering) TLS-ALPN-01 for `domain` with the
    /// challenge's certificate.
    pub fn set_alpn_challenge(
        &self,
        domain: &str,
        cert: Option<Certificate>,
    ) -> Result<(), TlsError> {
        let mut alpn = self.alpn.write().unwrap_or_else(PoisonError::into_inner);
        match cert {
            None => {
                alpn.remove(&normalize_host(domain));
            }
            Some(cert) => {
                let config = server_config(
                    None,
                    Arc::new(Fixed(cert.key)),
                    vec![ACME_TLS_ALPN.to_vec()],
                )?;
                alpn.insert(normalize_host(domain), config);
            }
        }
        Ok(())
    }
}

fn alpn_h2_h1() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn server_config(
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    // Stateless resumption, as nginx and Caddy offer by default (keys rotate every 6 h).
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_host_prefers_the_exact_name_and_wildcards_cover_one_label() {
        let t = ByHost::new([
            ("*.shop.test".to_string(), 1),
            ("admin.shop.test".to_string(), 2),
            ("Blog.Test.".to_string(), 3),
        ]);
        assert_eq!(t.get("a.shop.test"), Some(&1));
        assert_eq!(t.get("admin.shop.test"), Some(&2));
        assert_eq!(t.get("ADMIN.shop.test"), Some(&2));
        assert_eq!(t.get("blog.test"), Some(&3));
        assert_eq!(t.get("shop.test"), None);
        assert_eq!(t.get("a.b.shop.test"), None);
    }

    #[test]
    fn pem_errors_say_what_is_wrong_without_the_key() {
        let err = |c: &[u8], k: &[u8]| Certificate::from_pem(c, k).unwrap_err().to_string();
        assert!(err(b"", b"").contains("no certificate"));
        let garbage_key =
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n";
        let e = err(b"nothing", garbage_key);
        assert!(e.contains("no certificate"), "{e}");
    }
}
