//! The proxy's one error enum.
//! Only setting up can fail; per-request problems become 502/503 answers and metrics.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listening socket could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is the port already published by something else?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The bound socket has no local address (should not happen on TCP).
    #[error("cannot read the local address of the listener: {0}")]
    LocalAddr(std::io::Error),
    /// The edge's routes make no table.
    #[error(transparent)]
    Route(#[from] crate::edge::RouteError),
    /// TLS material or configuration rustls refuses.
    #[error(transparent)]
    Tls(#[from] crate::edge::TlsError),
}
