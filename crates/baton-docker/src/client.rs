//! The connection to the Docker Engine: `DOCKER_HOST` handling, API version negotiation,
//! where registry credentials come from, and the translation of bollard's errors.

use baton_engine::runtime::RuntimeError;
use bollard::errors::Error as BollardError;
use bollard::API_DEFAULT_VERSION;

use crate::credentials::{CredentialSource, Credentials, Lookup};

/// The default socket when `DOCKER_HOST` is unset.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Seconds bollard waits for a response's headers; streams (logs, build, wait) are not
/// cut by it because the engine sends their headers at once.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connected Docker Engine. Cheap to clone: clones share one HTTP client.
#[derive(Debug, Clone)]
pub struct Docker {
    pub(crate) api: bollard::Docker,
    /// The same engine for requests that carry registry credentials (`auth_header.rs`).
    pub(crate) auth_api: bollard::Docker,
    pub(crate) credentials: CredentialSource,
    host: String,
    /// For an `ssh://` address, the forward the clients talk through (kept as long as
    /// a clone of this client is).
    tunnel: Option<std::sync::Arc<crate::tunnel::SshTunnel>>,
}

impl Docker {
    /// Connects to `DOCKER_HOST` (`unix://…` or `tcp://…`; default the local Unix socket)
    /// and negotiates the API version down to what the daemon speaks. Registry
    /// credentials come from the docker CLI's configuration (`DOCKER_CONFIG`, else
    /// `~/.docker`); see `with_credentials`.
    pub async fn connect() -> Result<Docker, RuntimeError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        Docker::connect_to(&host).await
    }

    /// Connects to an explicit engine address (`unix:///path` or `tcp://host:port`).
    pub async fn connect_to(host: &str) -> Result<Docker, RuntimeError> {
        let unreachable = |detail: String| {
            RuntimeError::Unavailable(format!(
                "{detail} (engine address {host}); is dockerd running and is the socket \
                 readable by this user? set DOCKER_HOST to point elsewhere"
            ))
        };
        let tunnel = if host.starts_with("ssh://") {
            Some(std::sync::Arc::new(
                crate::tunnel::SshTunnel::open(host)
                    .await
                    .map_err(RuntimeError::Unavailable)?,
            ))
        } else {
            None
        };
        let endpoint = match &tunnel {
            Some(t) => format!("unix://{}", t.local.display()),
            None => host.to_string(),
        };
        let api = if let Some(path) = endpoint.strip_prefix("unix://") {
            bollard::Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            bollard::Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if host.starts_with('/') {
            bollard::Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(unreachable(format!(
                "unsupported DOCKER_HOST scheme in {host:?}, expected unix:// or tcp://"
            )));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let api = api
            .negotiate_version()
            .await
            .map_err(|e| unreachable(format!("cannot negotiate the api version: {e}")))?;
        let auth_api =
            crate::auth_header::connect(&endpoint, REQUEST_TIMEOUT_SECS, &api.client_version())
                .map_err(|e| unreachable(e.to_string()))?;
        Ok(Docker {
            api,
            auth_api,
            credentials: CredentialSource::from_env(),
            host: host.to_string(),
            tunnel,
        })
    }

    /// The same client with credentials from another source.
    pub fn with_credentials(self, credentials: CredentialSource) -> Docker {
        Docker {
            credentials,
            ..self
        }
    }

    /// Credentials for the registries `keys` (`credentials::registry_key`), read off
    /// the async threads since a credential helper is a process.
    pub(crate) async fn registry_credentials(
        &self,
        op: &str,
        keys: Vec<String>,
    ) -> Result<Lookup, RuntimeError> {
        let source = self.credentials.clone();
        let failed = |detail: String| RuntimeError::Failed {
            op: op.to_string(),
            detail,
        };
        tokio::task::spawn_blocking(move || source.lookup(&keys))
            .await
            .map_err(|e| failed(format!("reading registry credentials panicked: {e}")))?
            .map_err(|e| failed(format!("registry credentials: {e}")))
    }

    /// For a request to one registry: the fixed transport with its credentials when
    /// there are some (the plain client without), and where they were looked for.
    pub(crate) async fn for_registry(
        &self,
        op: &str,
        key: &str,
    ) -> Result<(&bollard::Docker, Option<Credentials>, String), RuntimeError> {
        let Lookup {
            credentials,
            looked_in,
        } = self.registry_credentials(op, vec![key.to_string()]).await?;
        Ok(match credentials.into_iter().next() {
            Some(c) => (&self.auth_api, Some(c), looked_in),
            None => (&self.api, None, looked_in),
        })
    }

    /// The engine address this client talks to, as it was given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the client connects: the address, or for `ssh://` the local end of its
    /// forward.
    pub(crate) fn endpoint(&self) -> String {
        match &self.tunnel {
            Some(t) => format!("unix://{}", t.local.display()),
            None => self.host.clone(),
        }
    }

    /// The negotiated API version, such as `1.41`.
    pub fn api_version(&self) -> String {
        self.api.client_version().to_string()
    }

    /// The underlying bollard client, for operations baton does not wrap.
    pub fn bollard(&self) -> &bollard::Docker {
        &self.api
    }
}

/// The HTTP status of an engine reply, if the error is one.
pub(crate) fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words for an error, without bollard's prefix.
pub(crate) fn detail(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

/// Whether the error means the engine could not be reached at all.
fn is_transport(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
            | BollardError::HttpClientError { .. }
            | BollardError::HyperResponseError { .. }
    )
}

/// Maps an engine error for operation `op` on `what` (`container web-1`): 404 is
/// `NotFound`, transport failures are `Unavailable`, the rest `Failed`.
pub(crate) fn engine_error(e: BollardError, op: &str, what: &str) -> RuntimeError {
    if status(&e) == Some(404) {
        return RuntimeError::NotFound {
            what: what.to_string(),
        };
    }
    if is_transport(&e) {
        return RuntimeError::Unavailable(format!(
            "{op}: {e}; is dockerd running? check DOCKER_HOST"
        ));
    }
    RuntimeError::Failed {
        op: op.to_string(),
        detail: detail(&e),
    }
}

/// Like `engine_error`, and a 403 or 409 reply to a removal is `InUse`.
pub(crate) fn remove_error(e: BollardError, op: &str, what: &str) -> RuntimeError {
    if matches!(status(&e), Some(403 | 409)) {
        return RuntimeError::InUse {
            what: what.to_string(),
            detail: detail(&e),
        };
    }
    engine_error(e, op, what)
}

/// Like `engine_error`, and a 409 reply is `Conflict` (a name already taken).
pub(crate) fn create_error(e: BollardError, op: &str, what: &str) -> RuntimeError {
    if status(&e) == Some(409) {
        return RuntimeError::Conflict {
            what: what.to_string(),
        };
    }
    engine_error(e, op, what)
}
