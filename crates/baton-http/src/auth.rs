//! Bearer tokens: the secret a listener requires as `Authorization: Bearer <token>`,
//! compared in constant time, and the same secret a [`crate::Client`] sends; or, for a
//! listener with many tokens, a [`Verify`] that names who presented one, with wrong
//! guesses slowed down per client address.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::serve::ClientAddr;
use crate::throttle::Throttle;
use crate::HttpError;

/// Fewer characters than this is too easy to guess (`openssl rand -hex 32` gives 64).
const MIN_LEN: usize = 16;

/// A bearer token. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Token {
    secret: Arc<str>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text. Surrounding whitespace (a file's final newline) is
    /// dropped; what is left must be at least 16 visible ASCII characters (no spaces).
    pub fn new(text: &str) -> Result<Token, HttpError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(HttpError::Token("it is empty".into()));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::Token(
                "use visible ASCII characters only (no spaces or control characters)".into(),
            ));
        }
        if t.len() < MIN_LEN {
            return Err(HttpError::Token(format!(
                "it is {} characters long, use at least {MIN_LEN} (e.g. `openssl rand -hex 32`)",
                t.len()
            )));
        }
        Ok(Token { secret: t.into() })
    }

    /// The token in `path` (the whole file, surrounding whitespace dropped).
    pub fn from_file(path: &Path) -> Result<Token, HttpError> {
        let file_err = |message: String| HttpError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_err(format!("cannot read the token file: {e}")))?;
        Token::new(&text).map_err(|e| match e {
            HttpError::Token(m) => file_err(format!("bad token: {m}")),
            other => other,
        })
    }

    /// True when `presented` is this token. The comparison takes the same time whatever
    /// `presented` is (both sides are hashed first, so not even the length leaks).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let want = Sha256::digest(self.secret.as_bytes());
        let got = Sha256::digest(presented);
        want.ct_eq(&got).into()
    }

    /// `Bearer <token>`, marked sensitive (kept out of hyper's debug output).
    pub(crate) fn header_value(&self) -> HeaderValue {
        // Checked in `new`: visible ASCII only, always a valid header value.
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.secret))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        v.set_sensitive(true);
        v
    }
}

/// `router` with every route, and the fallback, behind `Authorization: Bearer <token>`.
/// A missing or wrong token gets 401 with `{"error": …}` before any handler (or body
/// read) runs.
pub fn require_bearer(router: Router, token: Token) -> Router {
    router.layer(middleware::from_fn_with_state(token, check))
}

async fn check(State(token): State<Token>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    match presented {
        Some(p) if token.matches(p) => next.run(req).await,
        Some(_) => unauthorized("wrong bearer token"),
        None => unauthorized("missing bearer token: send Authorization: Bearer <token>"),
    }
}

/// Who presented credentials, as a listener with many tokens decides it. The caller
/// brings the meaning (names, roles); this crate only finds the credentials, waits out
/// the client's penalty and answers 401.
pub trait Verify: Clone + Send + Sync + 'static {
    type Principal: Clone + Send + Sync + 'static;
    /// The principal `presented` identifies, or `None`. Must not leak through its timing
    /// which part of a secret was right (compare digests in constant time).
    fn verify(&self, presented: &[u8]) -> impl Future<Output = Option<Self::Principal>> + Send;
}

#[derive(Clone)]
struct Verifier<V> {
    verify: V,
    throttle: Arc<Throttle>,
}

/// `router` with every route, and the fallback, behind `Authorization: Bearer <token>`
/// checked by `verify`. The principal it names is put in the request's extensions for
/// the handlers; a missing or unknown token gets 401 before any handler (or body read)
/// runs. A client address that keeps presenting unknown tokens waits longer each time,
/// before its next attempt is looked at and before a failed one is answered (`throttle`).
pub fn require_principal<V: Verify>(router: Router, verify: V, throttle: Arc<Throttle>) -> Router {
    router.layer(middleware::from_fn_with_state(
        Verifier { verify, throttle },
        check_principal::<V>,
    ))
}

async fn check_principal<V: Verify>(
    State(v): State<Verifier<V>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    if let Some(ip) = ip {
        let wait = v.throttle.delay(ip, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| bearer(h.as_bytes()));
    let Some(presented) = presented else {
        return unauthorized("missing bearer token: send Authorization: Bearer <token>");
    };
    match v.verify.verify(presented).await {
        Some(principal) => {
            if let Some(ip) = ip {
                v.throttle.succeeded(ip);
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        None => {
            // The failing attempt itself waits too, so guesses sent all at once are
            // slowed down as much as guesses sent one after another.
            if let Some(ip) = ip {
                v.throttle.failed(ip, Instant::now());
                let wait = v.throttle.delay(ip, Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            unauthorized("unknown bearer token")
        }
    }
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii())
}

fn unauthorized(message: &str) -> Response {
    let mut r = crate::serve::refuse(StatusCode::UNAUTHORIZED, message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123";

    #[test]
    fn tokens_follow_the_rules() {
        assert!(Token::new("").is_err());
        assert!(Token::new("   \n").is_err());
        assert!(Token::new("short").is_err());
        assert!(Token::new("0123456789 abcdef0123").is_err());
        assert!(Token::new("0123456789abcdef\u{e9}0123").is_err());
        let t = Token::new(&format!("  {GOOD}\n")).unwrap();
        assert!(t.matches(GOOD.as_bytes()));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let t = Token::new(GOOD).unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let e = Token::new("tiny-secret").unwrap_err().to_string();
        assert!(!e.contains("tiny-secret"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "tiny-secret\n").unwrap();
        let e = Token::from_file(&f).unwrap_err().to_string();
        assert!(!e.contains("tiny-secret") && e.contains("bad token"), "{e}");
        std::fs::write(&f, format!("{GOOD}\n")).unwrap();
        assert!(Token::from_file(&f).unwrap().matches(GOOD.as_bytes()));
        let e = Token::from_file(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the token file"), "{e}");
    }

    #[test]
    fn the_bearer_scheme_is_read_case_insensitively() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
