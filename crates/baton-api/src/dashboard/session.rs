//! Dashboard sessions: a token traded at login for a random session id in an HttpOnly,
//! SameSite=Strict cookie; the session lives in memory on the server, expires, and
//! carries the CSRF token that every change must send back.
//!
//! Why in memory: a session is worth no more than the token it came from, and the token
//! is checked again on every request (a revoked token ends its sessions at once); a
//! daemon restart asking everyone to log in again is the safe way round. The map is
//! keyed by the SHA-256 of the session id, so what the server holds cannot be replayed
//! as a cookie, and it is bounded.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tokens::{Principal, Tokens};
use crate::ApiError;

/// The cookie's name.
pub const COOKIE: &str = "baton_session";

/// How long sessions last and how many are kept.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// A session unused for this long ends (an open page's live stream keeps it used).
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub max_age: Duration,
    /// Sessions kept at once; a login beyond it ends the one unused longest.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle: Duration::from_secs(60 * 60),
            max_age: Duration::from_secs(12 * 60 * 60),
            max_sessions: 10_000,
        }
    }
}

struct Entry {
    /// The digest of the token the session was opened with.
    token: [u8; 32],
    csrf: String,
    created: Instant,
    used: Instant,
}

/// Who a request's session belongs to, once checked.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// What forms and htmx requests send back in `X-CSRF-Token` or `_csrf`.
    pub csrf: String,
}

/// The sessions of one dashboard.
pub struct Sessions {
    config: SessionConfig,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

/// A fresh random id: 32 bytes from the operating system, base64url.
fn random_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness from the system: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(config: SessionConfig) -> Sessions {
        Sessions {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for the holder of the token whose digest is `token`; returns the
    /// id for the cookie (shown nowhere else).
    pub fn open(&self, token: [u8; 32], now: Instant) -> Result<String, ApiError> {
        let id = random_id()?;
        let csrf = random_id()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut map, now);
        if map.len() >= self.config.max_sessions {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&id),
            Entry {
                token,
                csrf,
                created: now,
                used: now,
            },
        );
        Ok(id)
    }

    /// Ends the session `id` (logout); nothing if there is none.
    pub fn close(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&key(id));
    }

    /// The token digest and CSRF token of a live session, marking it used.
    fn touch(&self, id: &str, now: Instant) -> Option<([u8; 32], String)> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(id);
        let e = map.get_mut(&k)?;
        if self.expired(e, now) {
            map.remove(&k);
            return None;
        }
        e.used = now;
        Some((e.token, e.csrf.clone()))
    }

    /// The session `id` names, if it is live and its token still exists; a session
    /// whose token was revoked is ended.
    pub async fn check(&self, tokens: &Tokens, id: &str, now: Instant) -> Option<Session> {
        let (token, csrf) = self.touch(id, now)?;
        match tokens.find_digest(token).await {
            Some(principal) => Some(Session { principal, csrf }),
            None => {
                self.close(id);
                None
            }
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.used) >= self.config.idle
            || now.saturating_duration_since(e.created) >= self.config.max_age
    }

    fn expire(&self, map: &mut HashMap<[u8; 32], Entry>, now: Instant) {
        map.retain(|_, e| !self.expired(e, now));
    }
}

/// Whether `sent` is the session's CSRF token (constant time).
pub fn csrf_matches(session: &Session, sent: &str) -> bool {
    !sent.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(sent.as_bytes()))
}

/// The session id from a `Cookie` header, if it has ours.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value that gives the browser session `id`. `secure` when served
/// over TLS (a browser keeps a Secure cookie from plain-HTTP loopback out of reach).
pub fn set_cookie(id: &str, secure: bool, max_age: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config() -> SessionConfig {
        SessionConfig {
            idle: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            max_sessions: 3,
        }
    }

    #[test]
    fn sessions_expire_when_idle_or_old_and_are_bounded() {
        let s = Sessions::new(config());
        let t0 = Instant::now();
        let a = s.open([1; 32], t0).unwrap();
        assert_eq!(a.len(), 43, "32 random bytes");
        assert!(s.touch(&a, t0 + Duration::from_secs(59)).is_some());
        // Used at 59 s: idle counts from then.
        assert!(s.touch(&a, t0 + Duration::from_secs(118)).is_some());
        assert!(s.touch(&a, t0 + Duration::from_secs(179)).is_none(), "idle");
        let b = s.open([2; 32], t0).unwrap();
        for i in 1..20 {
            assert!(s.touch(&b, t0 + Duration::from_secs(i * 30)).is_some());
        }
        assert!(
            s.touch(&b, t0 + Duration::from_secs(600)).is_none(),
            "too old"
        );
        // Bounded: the one unused longest goes.
        let ids: Vec<String> = (0..4)
            .map(|i| s.open([i; 32], t0 + Duration::from_secs(i as u64)).unwrap())
            .collect();
        assert_eq!(s.len(), 3);
        assert!(s.touch(&ids[0], t0 + Duration::from_secs(5)).is_none());
        assert!(s.touch(&ids[3], t0 + Duration::from_secs(5)).is_some());
        s.close(&ids[3]);
        assert!(s.touch(&ids[3], t0 + Duration::from_secs(5)).is_none());
    }

    #[tokio::test]
    async fn a_revoked_token_ends_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(baton_state::Store::open(dir.path()).unwrap());
        let made =
            crate::tokens::create(&store, "cli:ann", "dash", crate::Role::Operator, 1).unwrap();
        let tokens = Tokens::new(store.clone(), || 1);
        let s = Sessions::new(SessionConfig::default());
        let digest: [u8; 32] = Sha256::digest(made.token.as_bytes()).into();
        let id = s.open(digest, Instant::now()).unwrap();
        let got = s.check(&tokens, &id, Instant::now()).await.unwrap();
        assert_eq!(got.principal.name, "dash");
        assert!(csrf_matches(&got, &got.csrf.clone()));
        assert!(!csrf_matches(&got, ""));
        assert!(!csrf_matches(&got, "nope"));
        crate::tokens::revoke(&store, "cli:ann", "dash", 2).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(s.check(&tokens, &id, Instant::now()).await.is_none());
        assert!(s.is_empty(), "the session was ended");
    }

    #[test]
    fn cookies_are_read_strictly_and_set_safely() {
        assert_eq!(cookie_value("a=1; baton_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("baton_session="), None);
        assert_eq!(cookie_value("other=1"), None);
        let c = set_cookie("xyz", false, Duration::from_secs(60));
        assert_eq!(
            c,
            "baton_session=xyz; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(set_cookie("x", true, Duration::from_secs(1)).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
