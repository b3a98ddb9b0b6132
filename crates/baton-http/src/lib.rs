//! One HTTP stack for every listener baton opens: an axum `Router` served over TCP or
//! TLS with header and body deadlines, a body size cap, a connection cap, bearer tokens
//! (one shared secret, or many through a [`Verify`]) and a slowdown for wrong guesses.
//!
//! Architecture invariant: every listener baton opens goes through [`serve`], so no
//! listener can forget a limit; the [`Limits`] always apply, TLS and tokens are opt-in
//! per listener. API boundary: knows nothing of VMs, pipelines or what the routes do;
//! the caller brings the `Router`. The [`Client`] is the other side of the same stack
//! (one request per connection, the token and the trusted CA when given).

mod auth;
mod client;
mod serve;
mod throttle;
mod tls;

pub use auth::{require_bearer, require_principal, Token, Verify};
pub use client::{Answer, Client, Endpoint, Scheme};
pub use serve::{serve, ClientAddr, Limits, ServeOptions};
pub use throttle::{Throttle, ThrottleConfig};
pub use tls::{ClientTls, ServerTls};

/// What can go wrong setting up or using the stack. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A certificate, key, CA or token file that cannot be read or holds nothing usable.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A token that breaks the rules of [`Token::new`].
    #[error("bearer token: {0}")]
    Token(String),
    /// A TLS configuration rustls refuses.
    #[error("TLS: {0}")]
    Tls(String),
    /// An address [`Endpoint::parse`] cannot read.
    #[error("{0:?} is not an address: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT")]
    Address(String),
    /// A request that got no HTTP answer (connect, TLS, timeout, protocol).
    #[error("{endpoint}: {message}")]
    Request { endpoint: String, message: String },
    /// The server ended the TLS handshake over this client's certificate: it asks for
    /// one, or trusts not the one given (mutual TLS).
    #[error("{endpoint}: {message} (the server asks for a client certificate it trusts)")]
    IdentityRefused { endpoint: String, message: String },
}
