//! ACME (RFC 8555) through instant-acme: the account per directory (kept 0600 in the state
//! directory), one order per host answered with HTTP-01 or TLS-ALPN-01 on the edge itself.
//!
//! What comes back is a chain and a private key; the key only ever goes to a 0600 file and
//! to the edge, never to an error, a log line or `Debug`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_engine::edge::{AcmeChallenge, AcmeSettings};
use baton_proxy::edge::{Certificate, Edge as Listener};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use sha2::Digest as _;

/// The longest one issuance may take, all round trips and validations included.
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);

/// A certificate the CA issued: the chain and key as PEM, and the pair checked.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: KeyPem,
    pub certificate: Certificate,
}

/// A private key in PEM; its `Debug` shows nothing of it.
pub struct KeyPem(pub String);

impl std::fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// Where ACME accounts are kept: one file per directory URL.
fn account_file(accounts: &Path, directory: &str) -> PathBuf {
    let digest = sha2::Sha256::digest(directory.as_bytes());
    accounts.join(format!("{}.json", hex::encode(&digest[..8])))
}

fn builder(settings: &AcmeSettings) -> Result<instant_acme::AccountBuilder, String> {
    match &settings.ca {
        Some(ca) => Account::builder_with_root(ca)
            .map_err(|e| format!("cannot trust the ACME CA file {ca}: {e}")),
        None => Account::builder().map_err(|e| format!("cannot make an HTTPS client: {e}")),
    }
}

/// The account for `settings.directory`: the one kept in `accounts`, or a new one (kept).
async fn account(settings: &AcmeSettings, accounts: &Path) -> Result<Account, String> {
    let file = account_file(accounts, &settings.directory);
    if let Ok(text) = std::fs::read(&file) {
        if let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&text) {
            return builder(settings)?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("ACME account from {}: {e}", file.display()));
        }
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(settings)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            format!(
                "cannot create an ACME account at {}: {e}",
                settings.directory
            )
        })?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    baton_state::private::create_dir(accounts)
        .and_then(|()| {
            use std::io::Write as _;
            baton_state::private::create(&file)?.write_all(&json)
        })
        .map_err(|e| format!("cannot keep the ACME account in {}: {e}", file.display()))?;
    Ok(account)
}

/// Asks the CA of `settings` for a certificate for `host`, answering its challenge on
/// `edge` (whose HTTP port, or HTTPS port for TLS-ALPN-01, the CA must reach).
pub async fn issue(
    host: &str,
    settings: &AcmeSettings,
    accounts: &Path,
    edge: &Listener,
) -> Result<Issued, String> {
    match tokio::time::timeout(ISSUE_TIMEOUT, issue_inner(host, settings, accounts, edge)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no certificate within {}",
            humantime::format_duration(ISSUE_TIMEOUT)
        )),
    }
}

async fn issue_inner(
    host: &str,
    settings: &AcmeSettings,
    accounts: &Path,
    edge: &Listener,
) -> Result<Issued, String> {
    let account = account(settings, accounts).await?;
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let kind = match settings.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    // What to stop answering once the order is decided.
    let mut tokens: Vec<String> = Vec::new();
    let mut alpn = false;
    let answered = async {
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("the authorization is {other:?}")),
            }
            let mut challenge = a.challenge(kind.clone()).ok_or_else(|| {
                format!(
                    "the CA offers no {} challenge",
                    challenge_name(settings.challenge)
                )
            })?;
            let key_authorization = challenge.key_authorization();
            match settings.challenge {
                AcmeChallenge::Http01 => {
                    edge.set_http_challenge(
                        &challenge.token,
                        Some(key_authorization.as_str().to_string()),
                    );
                    tokens.push(challenge.token.clone());
                }
                AcmeChallenge::TlsAlpn01 => {
                    let cert = alpn_certificate(host, key_authorization.digest().as_ref())?;
                    edge.set_alpn_challenge(host, Some(cert))
                        .map_err(|e| e.to_string())?;
                    alpn = true;
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    let status = match answered {
        Ok(()) => order
            .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(120)))
            .await
            .map_err(|e| format!("waiting for validation: {e}")),
        Err(e) => Err(e),
    };
    for token in &tokens {
        edge.set_http_challenge(token, None);
    }
    if alpn {
        let _ = edge.set_alpn_challenge(host, None);
    }
    match status? {
        OrderStatus::Ready => {}
        other => {
            let why = validation_error(&mut order).await;
            return Err(format!("the order is {other:?}{why}"));
        }
    }
    let key_pem = KeyPem(
        order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?,
    );
    let chain_pem = order
        .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(120)))
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    let certificate = Certificate::from_pem(chain_pem.as_bytes(), key_pem.0.as_bytes())
        .map_err(|e| format!("the issued certificate: {e}"))?;
    Ok(Issued {
        chain_pem,
        key_pem,
        certificate,
    })
}

/// Why the CA refused: the first challenge error it reports, as `: …`.
async fn validation_error(order: &mut instant_acme::Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut a)) = authorizations.next().await {
        if let Ok(state) = a.refresh().await {
            if let Some(e) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
                return format!(": {e}");
            }
        }
    }
    String::new()
}

fn challenge_name(c: AcmeChallenge) -> &'static str {
    match c {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    }
}

/// The self-signed certificate that answers TLS-ALPN-01 (RFC 8737): the host as its only
/// name and the key authorization's digest in the acmeIdentifier extension.
fn alpn_certificate(host: &str, digest: &[u8]) -> Result<Certificate, String> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])
        .map_err(|e| format!("challenge certificate: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("challenge key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("challenge certificate: {e}"))?;
    Certificate::made_with(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .map_err(|e| format!("challenge certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_kept_by_directory_and_keys_never_shown() {
        let a = account_file(Path::new("/s"), "https://a/dir");
        assert_ne!(a, account_file(Path::new("/s"), "https://b/dir"));
        assert_eq!(a, account_file(Path::new("/s"), "https://a/dir"));
        assert_eq!(
            format!("{:?}", KeyPem("-----BEGIN PRIVATE KEY-----".into())),
            "KeyPem(<redacted>)"
        );
        let c = alpn_certificate("shop.test", &[7; 32]).unwrap();
        assert!(!c.end_entity().is_empty());
    }
}
