//! The SSH transport: one russh connection per host, reused for every step (one channel
//! per command); a host behind a jump host is reached over a direct-tcpip channel of
//! the jump host's connection (one such connection per jump host per run).
//! Authentication by key file or through a running ssh-agent (the private keys stay in
//! the agent: it only signs), connect and command timeouts, and host keys checked
//! against a known_hosts file (unknown keys refused unless `accept_new`, changed keys
//! always refused), each host under its own address, tunnelled or not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;

use crate::inventory::{Host, Inventory};

/// How to reach hosts; shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    /// Trust and record keys of hosts not yet in `known_hosts`.
    pub accept_new: bool,
    /// `--identity`: used for hosts without their own `key` (and not `agent: true`).
    pub identity: Option<PathBuf>,
    /// The ssh-agent socket (`SSH_AUTH_SOCK`), when one is set.
    pub agent_sock: Option<PathBuf>,
    /// Last resort when there is no key and no agent: ~/.ssh/id_ed25519 when it exists.
    pub default_identity: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl SshOptions {
    /// The ssh-agent socket from the process environment (`SSH_AUTH_SOCK`, empty = unset).
    pub fn agent_sock_from_env() -> Option<PathBuf> {
        Self::agent_sock(std::env::var_os("SSH_AUTH_SOCK"))
    }

    /// ~/.ssh/id_ed25519 when that file exists.
    pub fn default_identity_from_home() -> Option<PathBuf> {
        Self::default_identity(std::env::var_os("HOME"))
    }

    /// The ssh-agent socket given a value of `SSH_AUTH_SOCK` (empty = unset).
    pub fn agent_sock(value: Option<impl Into<PathBuf>>) -> Option<PathBuf> {
        value.map(Into::into).filter(|p| !p.as_os_str().is_empty())
    }

    /// `HOME/.ssh/id_ed25519` when that file exists.
    pub fn default_identity(home: Option<impl Into<PathBuf>>) -> Option<PathBuf> {
        home.map(|h| h.into().join(".ssh/id_ed25519"))
            .filter(|p| p.is_file())
    }
}

/// How one host authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A private key file read by baton.
    Key(PathBuf),
    /// Every identity the ssh-agent on this socket offers, in order, until one is accepted.
    Agent(PathBuf),
}

/// Chooses how `host` authenticates, like OpenSSH: its own `key` file; else the agent
/// when the host says `agent: true` (an error without `SSH_AUTH_SOCK`); else
/// `--identity`; else the agent when `SSH_AUTH_SOCK` is set (unless `agent: false`);
/// else ~/.ssh/id_ed25519 when it exists; else an error naming the host.
pub fn auth_for(host: &Host, opts: &SshOptions) -> Result<Auth, SshError> {
    let none = |reason: &str| SshError::NoAuth {
        host: host.id.clone(),
        reason: reason.to_string(),
    };
    if let Some(k) = &host.key {
        return Ok(Auth::Key(k.clone()));
    }
    if host.agent == Some(true) {
        return opts
            .agent_sock
            .clone()
            .map(Auth::Agent)
            .ok_or_else(|| none("`agent: true` but no ssh-agent (SSH_AUTH_SOCK unset)"));
    }
    if let Some(k) = &opts.identity {
        return Ok(Auth::Key(k.clone()));
    }
    if host.agent != Some(false) {
        if let Some(sock) = &opts.agent_sock {
            return Ok(Auth::Agent(sock.clone()));
        }
    }
    if let Some(k) = &opts.default_identity {
        return Ok(Auth::Key(k.clone()));
    }
    Err(none(if host.agent == Some(false) {
        "no key and `agent: false`: give the host a `key` or pass --identity"
    } else {
        "no key and no ssh-agent (SSH_AUTH_SOCK unset): give the host a `key`, pass --identity or start ssh-agent"
    }))
}

/// Every host that cannot authenticate (its own way or through its jump host), before
/// any is contacted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}; nothing was run", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct NoAuth(pub Vec<SshError>);

/// Checks that each of `hosts` (and its jump host) has a way to authenticate.
pub fn check_auth<'a>(
    inv: &Inventory,
    hosts: impl IntoIterator<Item = &'a Host>,
    opts: &SshOptions,
) -> Result<(), NoAuth> {
    let mut errs: Vec<SshError> = Vec::new();
    for h in hosts {
        let jump = h.jump.as_ref().and_then(|j| inv.hosts.get(j));
        for h in std::iter::once(h).chain(jump) {
            if let Err(e) = auth_for(h, opts) {
                if !errs.contains(&e) {
                    errs.push(e);
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(NoAuth(errs))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot connect to {addr}: {reason}")]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error("{host}: unknown host key {fingerprint} for {addr}, not in {known_hosts}; check it and rerun with --accept-new to trust it")]
    UnknownKey {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("{host}: the host key of {addr} CHANGED ({fingerprint}; known_hosts line {line} of {known_hosts} differs): refusing to connect")]
    ChangedKey {
        host: String,
        addr: String,
        fingerprint: String,
        line: usize,
        known_hosts: String,
    },
    #[error("{host}: cannot reach {addr} through jump host {jump}: {reason}")]
    Jump {
        host: String,
        addr: String,
        jump: String,
        reason: String,
    },
    #[error("{host}: authentication as `{user}` failed with key {key}")]
    Auth {
        host: String,
        user: String,
        key: String,
    },
    #[error("{host}: authentication as `{user}` failed via ssh-agent ({tried} identities tried){detail}")]
    AgentAuth {
        host: String,
        user: String,
        tried: usize,
        /// Empty, or `: why` when the attempts stopped early.
        detail: String,
    },
    #[error("{host}: cannot use the ssh-agent at {sock}: {reason}")]
    Agent {
        host: String,
        sock: String,
        reason: String,
    },
    #[error("{host}: {reason}")]
    NoAuth { host: String, reason: String },
    #[error("{host}: cannot read private key {key}: {reason}")]
    Key {
        host: String,
        key: String,
        reason: String,
    },
    #[error("{host}: command timed out after {secs}s")]
    Timeout { host: String, secs: u64 },
    #[error("{host}: connection lost: {reason}")]
    Lost { host: String, reason: String },
}

impl SshError {
    /// True when the host could not be (or stopped being) reached, as opposed to a
    /// command that ran and failed.
    pub fn unreachable(&self) -> bool {
        !matches!(self, SshError::Timeout { .. })
    }
}

/// What one remote command did.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&self.stderr));
        s
    }
}

#[derive(Debug, Clone)]
enum Verdict {
    Unknown(String),
    Changed(String, usize),
}

struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

/// Serialises appends to known_hosts between concurrent connections.
static LEARN: Mutex<()> = Mutex::new(());

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let fp = key.fingerprint(Default::default()).to_string();
        let fp = format!("{} {fp}", key.algorithm());
        match keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                let _g = LEARN.lock().unwrap_or_else(|p| p.into_inner());
                // Another connection may have recorded it meanwhile.
                if !matches!(
                    keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts),
                    Ok(true)
                ) {
                    keys::known_hosts::learn_known_hosts_path(
                        &self.host,
                        self.port,
                        key,
                        &self.known_hosts,
                    )?;
                }
                Ok(true)
            }
            Ok(false) => {
                *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Verdict::Unknown(fp));
                Ok(false)
            }
            Err(keys::Error::KeyChanged { line }) => {
                *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Verdict::Changed(fp, line));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

enum Credential {
    Key(PathBuf, Arc<keys::PrivateKey>),
    Agent(AgentClient<tokio::net::UnixStream>, Vec<AgentIdentity>),
}

/// Connects to the agent and lists its identities (public halves only).
async fn open_agent(
    host: &Host,
    sock: &Path,
    timeout: Duration,
) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<AgentIdentity>), SshError> {
    let fail = |reason: String| SshError::Agent {
        host: host.id.clone(),
        sock: sock.display().to_string(),
        reason,
    };
    let fut = async {
        let mut agent = AgentClient::connect_uds(sock)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ids = agent
            .request_identities()
            .await
            .map_err(|e| fail(format!("cannot list identities: {e}")))?;
        Ok((agent, ids))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(fail(format!("no answer within {timeout:?}"))))
}

/// Authenticates with the key file, or with each agent identity in turn until the
/// server accepts one (the agent signs; no private key leaves it).
async fn authenticate(
    handle: &mut Handle<Client>,
    host: &Host,
    credential: Credential,
) -> Result<(), SshError> {
    let lost = |e: String| SshError::Connect {
        host: host.id.clone(),
        addr: format!("{}:{}", host.address, host.port),
        reason: e,
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    match credential {
        Credential::Key(path, key) => {
            let auth = handle
                .authenticate_publickey(&host.user, PrivateKeyWithHashAlg::new(key, rsa_hash))
                .await
                .map_err(|e| lost(e.to_string()))?;
            if !auth.success() {
                return Err(SshError::Auth {
                    host: host.id.clone(),
                    user: host.user.clone(),
                    key: path.display().to_string(),
                });
            }
            Ok(())
        }
        Credential::Agent(mut agent, ids) => {
            let mut tried = 0;
            let mut detail = if ids.is_empty() {
                ": the agent holds no identity (ssh-add one)".to_string()
            } else {
                String::new()
            };
            for id in ids {
                tried += 1;
                let res = match id {
                    AgentIdentity::PublicKey { key, .. } => {
                        let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
                        handle
                            .authenticate_publickey_with(&host.user, key, hash, &mut agent)
                            .await
                    }
                    AgentIdentity::Certificate { certificate, .. } => {
                        let hash = certificate
                            .algorithm()
                            .is_rsa()
                            .then_some(rsa_hash)
                            .flatten();
                        handle
                            .authenticate_certificate_with(
                                &host.user,
                                certificate,
                                hash,
                                &mut agent,
                            )
                            .await
                    }
                };
                match res {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => {}
                    // The server hung up (too many tries) or the agent would not sign.
                    Err(e) => {
                        detail = format!(": {e}");
                        break;
                    }
                }
            }
            Err(SshError::AgentAuth {
                host: host.id.clone(),
                user: host.user.clone(),
                tried,
                detail,
            })
        }
    }
}

/// The jump-host connections of one run (or one gather, one file apply): the first
/// target behind a jump host dials it, every other target behind it opens its own
/// direct-tcpip channel over that same connection. A jump host that could not be reached
/// is not dialled again in the same run (its error is given to every target behind it);
/// one whose connection has dropped is dialled again.
#[derive(Default)]
pub struct Jumps {
    slots: Mutex<HashMap<String, JumpSlot>>,
}

type JumpSlot = Arc<tokio::sync::Mutex<Option<Result<Arc<Session>, SshError>>>>;

impl Jumps {
    async fn get(&self, jump: &Host, opts: &SshOptions) -> Result<Arc<Session>, SshError> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(jump.id.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        match &*slot {
            Some(Ok(s)) if !s.handle.is_closed() => return Ok(s.clone()),
            Some(Err(e)) => return Err(e.clone()),
            _ => {}
        }
        let r = Session::connect(jump, opts).await.map(Arc::new);
        *slot = Some(r.clone());
        r
    }

    /// Disconnects every jump-host connection (call once the run's targets are closed).
    pub async fn close(&self) {
        let slots: Vec<JumpSlot> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            if let Some(Ok(s)) = slot.lock().await.take() {
                s.disconnect().await;
            }
        }
    }
}

/// An authenticated connection to one host.
pub struct Session {
    host: String,
    handle: Handle<Client>,
    /// The jump host's connection this one is tunnelled through (shared with the other
    /// targets behind it; disconnected by `Jumps::close`).
    _via: Option<Arc<Session>>,
}

impl Session {
    /// Connects to `host`, through its `jump` host when it has one: the jump host is
    /// connected to (or its connection in `jumps` reused), a direct-tcpip channel is
    /// opened from it to the host's address:port, and the host's own SSH session runs
    /// over that channel. Both host keys are checked against known_hosts, each under its
    /// own address.
    pub async fn connect_in(
        inv: &Inventory,
        host: &Host,
        opts: &SshOptions,
        jumps: &Jumps,
    ) -> Result<Session, SshError> {
        let Some(jump_id) = &host.jump else {
            return Session::connect(host, opts).await;
        };
        let fail = |reason: String| SshError::Jump {
            host: host.id.clone(),
            addr: format!("{}:{}", host.address, host.port),
            jump: jump_id.clone(),
            reason,
        };
        let jump = inv
            .hosts
            .get(jump_id)
            .ok_or_else(|| fail("it is not in the inventory".into()))?;
        if jump.jump.is_some() {
            return Err(fail("it has a jump host itself (one hop only)".into()));
        }
        let via = jumps
            .get(jump, opts)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Session::establish(host, opts, Some(via)).await
    }

    /// Connects straight to `host`: TCP, host key check, authentication, all within the
    /// connect timeout.
    pub async fn connect(host: &Host, opts: &SshOptions) -> Result<Session, SshError> {
        Session::establish(host, opts, None).await
    }

    /// Like `connect`, the transport being a direct-tcpip channel of `via` when given.
    async fn establish(
        host: &Host,
        opts: &SshOptions,
        via: Option<Arc<Session>>,
    ) -> Result<Session, SshError> {
        let addr = format!("{}:{}", host.address, host.port);
        let connect_err = |reason: String| match &via {
            None => SshError::Connect {
                host: host.id.clone(),
                addr: addr.clone(),
                reason,
            },
            Some(v) => SshError::Jump {
                host: host.id.clone(),
                addr: addr.clone(),
                jump: v.host.clone(),
                reason,
            },
        };
        // The key is read, or the agent asked for its identities, before dialling.
        let credential = match auth_for(host, opts)? {
            Auth::Key(path) => {
                let key = keys::load_secret_key(&path, None).map_err(|e| SshError::Key {
                    host: host.id.clone(),
                    key: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Credential::Key(path, Arc::new(key))
            }
            Auth::Agent(sock) => {
                let (agent, ids) = open_agent(host, &sock, opts.connect_timeout).await?;
                Credential::Agent(agent, ids)
            }
        };
        let verdict = Arc::new(Mutex::new(None));
        // Checked under the target's own address and port, tunnelled or not.
        let handler = Client {
            host: host.address.clone(),
            port: host.port,
            known_hosts: opts.known_hosts.clone(),
            accept_new: opts.accept_new,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let fut = async {
            let connected = match &via {
                None => client::connect(config, (host.address.as_str(), host.port), handler).await,
                Some(v) => {
                    let channel = v
                        .handle
                        .channel_open_direct_tcpip(
                            host.address.as_str(),
                            u32::from(host.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| {
                            connect_err(format!("the jump host cannot open a channel to it: {e}"))
                        })?;
                    client::connect_stream(config, channel.into_stream(), handler).await
                }
            };
            let mut handle = match connected {
                Ok(h) => h,
                Err(e) => {
                    let v = verdict.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let kh = opts.known_hosts.display().to_string();
                    return Err(match v {
                        Some(Verdict::Unknown(fingerprint)) => SshError::UnknownKey {
                            host: host.id.clone(),
                            addr: addr.clone(),
                            fingerprint,
                            known_hosts: kh,
                        },
                        Some(Verdict::Changed(fingerprint, line)) => SshError::ChangedKey {
                            host: host.id.clone(),
                            addr: addr.clone(),
                            fingerprint,
                            line,
                            known_hosts: kh,
                        },
                        None => connect_err(e.to_string()),
                    });
                }
            };
            authenticate(&mut handle, host, credential).await?;
            Ok(handle)
        };
        let handle = match tokio::time::timeout(opts.connect_timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(connect_err(format!(
                    "timed out after {:?}",
                    opts.connect_timeout
                )))
            }
        };
        Ok(Session {
            host: host.id.clone(),
            handle,
            _via: via,
        })
    }

    /// Runs `command` (a shell command line built with `shell_words::quote`), feeding
    /// `stdin` when given; `timeout` bounds the whole command.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Output, SshError> {
        let fut = self.exec_inner(command, stdin);
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or(Err(SshError::Timeout {
                    host: self.host.clone(),
                    secs: t.as_secs(),
                })),
        }
    }

    async fn exec_inner(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let lost = |reason: String| SshError::Lost {
            host: self.host.clone(),
            reason,
        };
        let mut ch = self.start(command, stdin.unwrap_or_default()).await?;
        let mut out = Output::default();
        let mut status = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status as i32),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.stderr.extend_from_slice(
                        format!("killed by signal {signal_name:?}\n").as_bytes(),
                    );
                    status = Some(128);
                }
                _ => {}
            }
        }
        match status {
            Some(s) => {
                out.status = s;
                Ok(out)
            }
            None => Err(lost("the channel closed without an exit status".into())),
        }
    }

    /// Starts `command` (a fixed or quoted command line) and feeds it `stdin` then EOF;
    /// its output is read as it comes with [`RemoteProcess::next`]. For streaming jobs
    /// (pipelines), where [`Session::exec`] collects the output at the end.
    pub async fn spawn(&self, command: &str, stdin: &[u8]) -> Result<RemoteProcess, SshError> {
        Ok(RemoteProcess {
            ch: self.start(command, stdin).await?,
        })
    }

    /// A session channel running `command`, fed `stdin` then EOF.
    async fn start(
        &self,
        command: &str,
        stdin: &[u8],
    ) -> Result<russh::Channel<client::Msg>, SshError> {
        let lost = |e: russh::Error| SshError::Lost {
            host: self.host.clone(),
            reason: e.to_string(),
        };
        let ch = self.handle.channel_open_session().await.map_err(lost)?;
        ch.exec(true, command).await.map_err(lost)?;
        if !stdin.is_empty() {
            ch.data(stdin).await.map_err(lost)?;
        }
        ch.eof().await.map_err(lost)?;
        Ok(ch)
    }

    /// Disconnects this host (a jump-host connection it went through stays up for the
    /// other targets behind it, until `Jumps::close`).
    pub async fn close(self) {
        self.disconnect().await;
    }

    async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(identity: Option<&str>, sock: Option<&str>, default: Option<&str>) -> SshOptions {
        SshOptions {
            known_hosts: PathBuf::from("/kh"),
            accept_new: false,
            identity: identity.map(PathBuf::from),
            agent_sock: sock.map(PathBuf::from),
            default_identity: default.map(PathBuf::from),
            connect_timeout: Duration::from_secs(1),
        }
    }

    fn host(id: &str, key: Option<&str>, agent: Option<bool>) -> Host {
        let mut inv = crate::inventory::from_ansible_ini(id, "inv", Path::new("/")).unwrap();
        let mut h = inv.hosts.remove(id).unwrap();
        h.key = key.map(PathBuf::from);
        h.agent = agent;
        h
    }

    #[test]
    fn a_key_file_wins_then_the_agent_then_the_default_key() {
        let key = |p: &str| Ok(Auth::Key(PathBuf::from(p)));
        let agent = Ok(Auth::Agent(PathBuf::from("/agent.sock")));
        let all = opts(Some("/id"), Some("/agent.sock"), Some("/home/id_ed25519"));
        // The host's own key beats everything.
        assert_eq!(auth_for(&host("a", Some("/k"), None), &all), key("/k"));
        // `agent: true` beats --identity.
        assert_eq!(auth_for(&host("a", None, Some(true)), &all), agent);
        // --identity beats an agent the host did not ask for.
        assert_eq!(auth_for(&host("a", None, None), &all), key("/id"));
        let no_id = opts(None, Some("/agent.sock"), Some("/home/id_ed25519"));
        // No key given: the agent, when SSH_AUTH_SOCK is set...
        assert_eq!(auth_for(&host("a", None, None), &no_id), agent);
        // ...unless the host refuses it.
        assert_eq!(
            auth_for(&host("a", None, Some(false)), &no_id),
            key("/home/id_ed25519")
        );
        // No agent: the default key when it exists.
        let no_agent = opts(None, None, Some("/home/id_ed25519"));
        assert_eq!(
            auth_for(&host("a", None, None), &no_agent),
            key("/home/id_ed25519")
        );
    }

    #[test]
    fn no_key_and_no_agent_is_an_error_naming_the_host() {
        let nothing = opts(None, None, None);
        let e = auth_for(&host("h3", None, None), &nothing)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("h3: no key and no ssh-agent (SSH_AUTH_SOCK unset)"),
            "{e}"
        );
        // `agent: true` without an agent fails even with a default key around.
        let e = auth_for(
            &host("h4", None, Some(true)),
            &opts(Some("/id"), None, Some("/home/id")),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "h4: `agent: true` but no ssh-agent (SSH_AUTH_SOCK unset)"
        );
        let e = auth_for(
            &host("h5", None, Some(false)),
            &opts(None, Some("/s"), None),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("h5: no key and `agent: false`"), "{e}");
    }

    #[test]
    fn check_auth_names_every_host_and_their_jump_hosts() {
        let mut inv = Inventory::default();
        for h in [
            host("ok", Some("/k"), None),
            host("bad1", None, None),
            host("bad2", None, Some(true)),
        ] {
            inv.hosts.insert(h.id.clone(), h);
        }
        let mut behind = host("behind", Some("/k"), None);
        behind.jump = Some("bad1".into());
        inv.hosts.insert("behind".into(), behind);
        let o = opts(None, None, None);
        assert!(check_auth(&inv, [&inv.hosts["ok"]], &o).is_ok());
        let e = check_auth(&inv, inv.hosts.values(), &o).unwrap_err();
        // bad1 is named once, though it is also behind's jump host.
        let names: Vec<String> =
            e.0.iter()
                .map(|e| e.to_string().split(':').next().unwrap_or("").to_string())
                .collect();
        assert_eq!(names, ["bad1", "bad2"]);
        assert!(e.to_string().ends_with("nothing was run"));
        // Only the jump host lacks a way in: still refused.
        assert!(check_auth(&inv, [&inv.hosts["behind"]], &o).is_err());
        // With an agent, all of them pass.
        assert!(check_auth(&inv, inv.hosts.values(), &opts(None, Some("/s"), None)).is_ok());
    }

    #[tokio::test]
    async fn a_jump_host_missing_or_with_its_own_jump_is_refused_naming_both() {
        let mut inv = Inventory::default();
        let mut web3 = host("web3", Some("/k"), None);
        web3.address = "10.0.0.5".into();
        web3.jump = Some("bastion".into());
        let o = opts(None, None, None);
        let e = Session::connect_in(&inv, &web3, &o, &Jumps::default())
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("web3: cannot reach 10.0.0.5:22 through jump host bastion: it is not in the inventory")
        );
        let mut bastion = host("bastion", Some("/k"), None);
        bastion.jump = Some("other".into());
        inv.hosts.insert("bastion".into(), bastion);
        let e = Session::connect_in(&inv, &web3, &o, &Jumps::default())
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("web3: cannot reach 10.0.0.5:22 through jump host bastion: it has a jump host itself (one hop only)")
        );
    }

    #[test]
    fn auth_errors_name_host_user_and_how_many_identities() {
        let e = SshError::AgentAuth {
            host: "h1".into(),
            user: "deploy".into(),
            tried: 2,
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "h1: authentication as `deploy` failed via ssh-agent (2 identities tried)"
        );
    }
}

/// What a streamed remote command sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Its exit status (128 + the signal number when a signal ended it).
    Exit(i32),
}

/// A remote command started with [`Session::spawn`]; dropping it (or [`close`]) closes
/// the channel.
///
/// [`close`]: RemoteProcess::close
pub struct RemoteProcess {
    ch: russh::Channel<client::Msg>,
}

impl RemoteProcess {
    /// The next piece of output or the exit status; `None` once the channel is closed.
    /// Cancel-safe (a channel receive).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.ch.wait().await? {
                ChannelMsg::Data { data } => return Some(Event::Stdout(data.to_vec())),
                ChannelMsg::ExtendedData { data, .. } => return Some(Event::Stderr(data.to_vec())),
                ChannelMsg::ExitStatus { exit_status } => {
                    return Some(Event::Exit(exit_status as i32))
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    return Some(Event::Exit(128 + signal_number(&signal_name)))
                }
                _ => {}
            }
        }
    }

    /// Closes the channel (the remote side sees its end).
    pub async fn close(self) {
        let _ = self.ch.close().await;
    }
}

fn signal_number(sig: &russh::Sig) -> i32 {
    use russh::Sig;
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        _ => 0,
    }
}
