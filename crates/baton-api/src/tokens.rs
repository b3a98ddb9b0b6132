//! API tokens: roles, making a secret (32 random bytes, shown once), keeping only its
//! SHA-256, and recognising it again in constant time from a short-lived snapshot of
//! the token table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use baton_state::{AuditRecord, Store, TokenRecord};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// What a token may do; each role may do everything the ones before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: status, projects, services, rollouts, events, logs, pipelines, VMs, fleet.
    Viewer,
    /// Reads and changes: up, down, scale, start/stop/restart, rollout requests.
    Operator,
    /// Everything, tokens and the audit log included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking, once their token was recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name: what the audit log says.
    pub name: String,
    pub role: Role,
}

/// A token's secret, as made. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The text to give the holder, once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a secret starts with, so scanners and people recognise one.
pub const PREFIX: &str = "baton_";

/// The stored form of a secret: hex SHA-256. A random 256-bit secret needs no salt or
/// slow hash: nothing about it can be guessed from its digest.
pub fn digest(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A new secret: 32 bytes from the operating system's generator, base64url.
pub fn new_secret() -> Result<Secret, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness from the system: {e}")))?;
    Ok(Secret(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// A token as it may be shown: never its secret or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A token just made: the only time its secret is shown.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: Role,
    /// Give it to the holder now: only its digest is kept.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with(['-', '.'])
        && !name.starts_with("cli:")
}

fn view(t: TokenRecord) -> TokenView {
    TokenView {
        role: Role::parse(&t.role).unwrap_or(Role::Viewer),
        name: t.name,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
    }
}

fn audit(
    store: &Store,
    actor: &str,
    action: &str,
    name: &str,
    ok: bool,
    message: String,
    now: i64,
) {
    let entry = AuditRecord {
        id: 0,
        at: now,
        actor: actor.to_string(),
        action: action.to_string(),
        project: String::new(),
        target: name.to_string(),
        request_json: serde_json::json!({ "name": name }).to_string(),
        outcome: if ok { "ok" } else { "error" }.into(),
        message,
    };
    if let Err(e) = store.record_audit(&entry) {
        tracing::warn!(action, error = %e, "cannot record an audit entry");
    }
}

/// Makes a token named `name` with `role` for `actor` (audited); its secret is in the
/// answer and nowhere else.
pub fn create(
    store: &Store,
    actor: &str,
    name: &str,
    role: Role,
    now: i64,
) -> Result<CreatedToken, ApiError> {
    let result = (|| {
        if !valid_name(name) {
            return Err(ApiError::unprocessable(format!(
                "token name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
            )));
        }
        let secret = new_secret()?;
        if !store.add_token(
            name,
            role.as_str(),
            &digest(secret.expose().as_bytes()),
            now,
        )? {
            return Err(ApiError::conflict(format!(
                "a token named {name} exists; revoke it first or choose another name"
            )));
        }
        Ok(CreatedToken {
            name: name.to_string(),
            role,
            token: secret.0,
        })
    })();
    let message = match &result {
        Ok(_) => format!("role {role}"),
        Err(e) => e.message.clone(),
    };
    audit(
        store,
        actor,
        "token.create",
        name,
        result.is_ok(),
        message,
        now,
    );
    result
}

/// Revokes the token named `name` for `actor` (audited).
pub fn revoke(store: &Store, actor: &str, name: &str, now: i64) -> Result<(), ApiError> {
    let result = match store.revoke_token(name)? {
        true => Ok(()),
        false => Err(ApiError::not_found(format!("no token named {name}"))),
    };
    let message = result
        .as_ref()
        .err()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    audit(
        store,
        actor,
        "token.revoke",
        name,
        result.is_ok(),
        message,
        now,
    );
    result
}

/// Every token, by name.
pub fn list(store: &Store) -> Result<Vec<TokenView>, ApiError> {
    Ok(store.tokens()?.into_iter().map(view).collect())
}

/// How long a snapshot of the token table is trusted: a new or revoked token counts
/// within this time.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);
/// After a miss, the table is read again when the copy is older than this: at once (a
/// read of a small table; wrong guesses are slowed down per address, which bounds how
/// often they make it read).
const MISS_TTL: Duration = Duration::ZERO;

/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_MS: i64 = 60_000;

struct Snapshot {
    taken: Option<Instant>,
    tokens: Vec<(String, Role, [u8; 32])>,
}

/// Recognises presented tokens against the store's digests.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<Store>,
    snapshot: Arc<Mutex<Snapshot>>,
    touched: Arc<Mutex<HashMap<String, i64>>>,
    clock: fn() -> i64,
}

impl Tokens {
    pub fn new(store: Arc<Store>, clock: fn() -> i64) -> Tokens {
        Tokens {
            store,
            snapshot: Arc::new(Mutex::new(Snapshot {
                taken: None,
                tokens: Vec::new(),
            })),
            touched: Arc::new(Mutex::new(HashMap::new())),
            clock,
        }
    }

    /// The tokens as the store has them, read again when the copy is older than
    /// `max_age`.
    async fn current(&self, max_age: Duration) -> Vec<(String, Role, [u8; 32])> {
        {
            let s = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
            if s.taken.is_some_and(|t| t.elapsed() < max_age) {
                return s.tokens.clone();
            }
        }
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || store.tokens()).await;
        let tokens: Vec<(String, Role, [u8; 32])> = match read {
            Ok(Ok(rows)) => rows
                .into_iter()
                .filter_map(|t| {
                    let mut d = [0u8; 32];
                    hex::decode_to_slice(&t.hash, &mut d).ok()?;
                    Some((t.name, Role::parse(&t.role)?, d))
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the token table");
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let mut s = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        s.taken = Some(Instant::now());
        s.tokens = tokens.clone();
        tokens
    }

    /// The token whose digest is `presented`'s: every stored digest is compared in
    /// constant time, all of them, whichever matches.
    pub async fn find(&self, presented: &[u8]) -> Option<Principal> {
        self.find_digest(Sha256::digest(presented).into()).await
    }

    /// The token whose digest is `got` (a dashboard session keeps the digest of the
    /// token it was opened with, never the token, and asks again on each request).
    /// A token made a moment ago (`baton token create` while the daemon runs) is found:
    /// a miss reads the table again.
    pub async fn find_digest(&self, got: [u8; 32]) -> Option<Principal> {
        let find = |tokens: Vec<(String, Role, [u8; 32])>| {
            let mut found = None;
            for (name, role, d) in tokens {
                if bool::from(d.ct_eq(&got)) {
                    found = Some(Principal { name, role });
                }
            }
            found
        };
        let p = match find(self.current(SNAPSHOT_TTL).await) {
            Some(p) => p,
            None => find(self.current(MISS_TTL).await)?,
        };
        self.touch(&p.name);
        Some(p)
    }

    fn touch(&self, name: &str) {
        let now = (self.clock)();
        {
            let mut t = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            if t.get(name).is_some_and(|at| now - at < TOUCH_EVERY_MS) {
                return;
            }
            t.insert(name.to_string(), now);
        }
        let (store, name) = (self.store.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.touch_token(&name, now) {
                tracing::warn!(error = %e, "cannot note a token's use");
            }
        });
    }
}

impl baton_http::Verify for Tokens {
    type Principal = Principal;
    async fn verify(&self, presented: &[u8]) -> Option<Principal> {
        self.find(presented).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        (dir, s)
    }

    #[test]
    fn secrets_are_long_random_and_kept_only_as_digests() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + 43, "32 bytes, base64url");
        assert!(
            baton_http::Token::new(a.expose()).is_ok(),
            "a valid bearer token"
        );
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (_d, s) = store();
        let made = create(&s, "cli:ann", "ci", Role::Operator, 5).unwrap();
        assert!(!format!("{made:?}").contains(&made.token));
        let rows = s.tokens().unwrap();
        assert_eq!(rows[0].hash, digest(made.token.as_bytes()));
        let dump = std::fs::read(s.path()).unwrap();
        let text = String::from_utf8_lossy(&dump);
        assert!(
            !text.contains(&made.token),
            "the secret is not in the database"
        );
    }

    #[test]
    fn names_are_checked_taken_once_and_changes_audited() {
        let (_d, s) = store();
        for bad in ["", "has space", "../x", "-x", "cli:ann", &"x".repeat(65)] {
            assert_eq!(
                create(&s, "cli:ann", bad, Role::Viewer, 1)
                    .unwrap_err()
                    .status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{bad:?}"
            );
        }
        create(&s, "cli:ann", "ci", Role::Viewer, 1).unwrap();
        let again = create(&s, "cli:ann", "ci", Role::Admin, 2).unwrap_err();
        assert_eq!(again.status, axum::http::StatusCode::CONFLICT);
        revoke(&s, "cli:ann", "ci", 3).unwrap();
        assert_eq!(
            revoke(&s, "cli:ann", "ci", 4).unwrap_err().status,
            axum::http::StatusCode::NOT_FOUND
        );
        let log = s.audit_page(None, None, 100).unwrap();
        let actions: Vec<(&str, &str)> = log
            .iter()
            .rev()
            .skip(6)
            .map(|e| (e.action.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("token.create", "ok"),
                ("token.create", "error"),
                ("token.revoke", "ok"),
                ("token.revoke", "error")
            ]
        );
        assert!(log.iter().all(|e| e.actor == "cli:ann"));
    }

    #[tokio::test]
    async fn a_token_made_while_the_daemon_runs_is_found_at_once() {
        let (_d, s) = store();
        let tokens = Tokens::new(s.clone(), || 100);
        assert!(tokens.find(b"baton_nope").await.is_none());
        let late = create(&s, "cli:ann", "late", Role::Operator, 1).unwrap();
        let p = tokens.find(late.token.as_bytes()).await;
        assert_eq!(p.map(|p| p.name).as_deref(), Some("late"));
    }

    #[tokio::test]
    async fn presented_tokens_name_their_holder_and_revocation_counts() {
        let (_d, s) = store();
        let viewer = create(&s, "cli:ann", "dash", Role::Viewer, 1).unwrap();
        let admin = create(&s, "cli:ann", "root", Role::Admin, 1).unwrap();
        let tokens = Tokens::new(s.clone(), || 100);
        let p = tokens.find(viewer.token.as_bytes()).await.unwrap();
        assert_eq!((p.name.as_str(), p.role), ("dash", Role::Viewer));
        let p = tokens.find(admin.token.as_bytes()).await.unwrap();
        assert_eq!(p.role, Role::Admin);
        assert!(tokens.find(b"baton_nope").await.is_none());
        assert!(tokens.find(&viewer.token.as_bytes()[1..]).await.is_none());
        revoke(&s, "cli:ann", "dash", 2).unwrap();
        tokio::time::sleep(SNAPSHOT_TTL + Duration::from_millis(50)).await;
        assert!(tokens.find(viewer.token.as_bytes()).await.is_none());
        // Use is noted (off the async threads, so wait for it).
        for _ in 0..50 {
            if s.token("root").unwrap().unwrap().last_used_at == Some(100) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("last_used_at was not written");
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }
}
