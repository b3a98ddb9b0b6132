//! What a proxy is told: where to listen, which protocol, how to balance, and the backends.
//! Plain data, no I/O; the daemon builds these from the spec and the observed replicas.

use std::net::SocketAddr;
use std::time::Duration;

/// How traffic on the listening port is understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 cleartext (prior knowledge) from clients; HTTP/1.1 with
    /// keep-alive to backends. Balanced per request.
    Http,
    /// Plain byte forwarding, balanced per connection.
    Tcp,
}

/// How a backend is chosen among the eligible ones of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

/// How long a backend may take to send a response head by default (nginx's
/// `proxy_read_timeout`).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a proxy needs to start serving.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to bind; port 0 picks a free port (see `Proxy::local_addr`).
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub balance: Balance,
    /// How long a removed backend's in-flight requests and open connections may run on
    /// before they are closed.
    pub drain_timeout: Duration,
    /// Bound on establishing a TCP connection to a backend.
    pub connect_timeout: Duration,
    /// HTTP: how long a backend may take to send a response head once the request is
    /// written (nginx's `proxy_read_timeout` default, 60 s); the client then gets a 504.
    pub response_timeout: Duration,
}

impl ProxyConfig {
    /// An HTTP proxy with round-robin, a 30 s drain, a 2 s connect timeout and a 60 s
    /// response timeout.
    pub fn http(listen: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            listen,
            protocol: Protocol::Http,
            balance: Balance::RoundRobin,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

/// How a backend pool without a listener of its own balances and times out: the settings
/// of [`ProxyConfig`] that are not about the listener. The edge routes to such pools.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub balance: Balance,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl PoolConfig {
    /// Round-robin, a 30 s drain, a 2 s connect timeout and a 60 s response timeout.
    pub fn http() -> PoolConfig {
        let c = ProxyConfig::http(SocketAddr::from(([127, 0, 0, 1], 0)));
        PoolConfig {
            balance: c.balance,
            drain_timeout: c.drain_timeout,
            connect_timeout: c.connect_timeout,
            response_timeout: c.response_timeout,
        }
    }
}

impl From<&ProxyConfig> for PoolConfig {
    fn from(c: &ProxyConfig) -> PoolConfig {
        PoolConfig {
            balance: c.balance,
            drain_timeout: c.drain_timeout,
            connect_timeout: c.connect_timeout,
            response_timeout: c.response_timeout,
        }
    }
}

/// One replica that can take traffic: a container reachable from the host at `addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity (e.g. the container name); used by `drained` and in logs.
    pub id: String,
    pub addr: SocketAddr,
    /// The service revision this replica runs; splits and metrics are per revision.
    pub revision: String,
}

impl Backend {
    pub fn new(id: impl Into<String>, addr: SocketAddr, revision: impl Into<String>) -> Backend {
        Backend {
            id: id.into(),
            addr,
            revision: revision.into(),
        }
    }
}
