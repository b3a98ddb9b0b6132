//! TLS through rustls with the ring provider (the one russh already brings): a server
//! identity from PEM certificate and key files (asking clients for certificates of a
//! CA when told to: mutual TLS), a client trusting the CAs of a PEM file and presenting
//! its own certificate when it has one.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::HttpError;

/// A listener's TLS identity: its certificate chain and private key.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// The certificates a client trusts: the CA (or CAs) that signed the servers' certificates.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, message: String) -> HttpError {
    HttpError::File {
        path: path.display().to_string(),
        message,
    }
}

/// Every certificate of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(
            path,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

impl ServerTls {
    /// The certificate chain in `cert` (PEM, the server's certificate first) and the
    /// private key in `key` (PEM: PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, HttpError> {
        ServerTls::build(cert, key, None)
    }

    /// As [`ServerTls::from_pem_files`], and every client must present a certificate
    /// signed by a CA of `client_ca` (PEM) for the handshake to succeed: mutual TLS.
    pub fn requiring_clients(
        cert: &Path,
        key: &Path,
        client_ca: &Path,
    ) -> Result<ServerTls, HttpError> {
        ServerTls::build(cert, key, Some(client_ca))
    }

    fn build(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, HttpError> {
        let (chain, key_der) = identity(cert, key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| file_err(ca, format!("cannot verify clients with it: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
            HttpError::Tls(format!(
                "{} and {} do not make a server identity: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// A certificate chain and its private key from PEM files.
fn identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), HttpError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        file_err(
            key,
            format!("cannot read a private key (expected PEM): {e}"),
        )
    })?;
    Ok((chain, key_der))
}

/// The certificates of a PEM file as trusted roots.
fn roots(ca: &Path) -> Result<rustls::RootCertStore, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(ca)? {
        roots
            .add(c)
            .map_err(|e| file_err(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

impl ClientTls {
    /// Trusts the system's root certificates (as a browser would): for public
    /// servers, such as a chat service's incoming webhooks.
    pub fn system_roots() -> Result<ClientTls, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            return Err(HttpError::Tls(
                "no system root certificates found (install ca-certificates)".into(),
            ));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Trusts the certificates in `ca` (PEM) as roots: servers must present a
    /// certificate they signed, for the name or IP address the client connects to.
    pub fn from_ca_file(ca: &Path) -> Result<ClientTls, HttpError> {
        ClientTls::build(ca, None)
    }

    /// As [`ClientTls::from_ca_file`], presenting the certificate chain in `cert` and
    /// its key in `key` (PEM) to servers that ask for one (mutual TLS).
    pub fn with_identity(ca: &Path, cert: &Path, key: &Path) -> Result<ClientTls, HttpError> {
        ClientTls::build(ca, Some((cert, key)))
    }

    fn build(ca: &Path, me: Option<(&Path, &Path)>) -> Result<ClientTls, HttpError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(roots(ca)?);
        let mut config = match me {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, key_der) = identity(cert, key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    HttpError::Tls(format!(
                        "{} and {} do not make a client identity: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}
