//! The SSH transport: one russh connection per host, reused for every step (one channel
//! per command), key authentication, connect and command timeouts, and host keys checked
//! against a known_hosts file (unknown keys refused unless `accept_new`, changed keys
//! always refused).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;

use crate::inventory::{Host, Inventory};

/// How to reach hosts; shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    /// Trust and record keys of hosts not yet in `known_hosts`.
    pub accept_new: bool,
    /// Used for hosts without their own `key`.
    pub identity: Option<PathBuf>,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("{host}: authentication as `{user}` failed with key {key}")]
    Auth {
        host: String,
        user: String,
        key: String,
    },
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

/// An authenticated connection to one host.
pub struct Session {
    host: String,
    handle: Handle<Client>,
    /// The jump host's connection this one is tunnelled through, kept alive with it.
    _via: Option<Box<Session>>,
}

impl Session {
    /// Connects to `host`, through its `jump` host when it has one (a direct-tcpip
    /// channel over the jump host's own SSH connection; both host keys are checked).
    pub async fn connect_in(
        inv: &Inventory,
        host: &Host,
        opts: &SshOptions,
    ) -> Result<Session, SshError> {
        let Some(jump_id) = &host.jump else {
            return Session::connect(host, opts, None).await;
        };
        let jump = inv.hosts.get(jump_id).ok_or_else(|| SshError::Connect {
            host: host.id.clone(),
            addr: format!("{}:{}", host.address, host.port),
            reason: format!("jump host `{jump_id}` is not in the inventory"),
        })?;
        if jump.jump.is_some() {
            return Err(SshError::Connect {
                host: host.id.clone(),
                addr: format!("{}:{}", host.address, host.port),
                reason: format!("jump host `{jump_id}` has a jump host itself (one hop only)"),
            });
        }
        let via = Session::connect(jump, opts, None)
            .await
            .map_err(|e| SshError::Connect {
                host: host.id.clone(),
                addr: format!("{}:{}", host.address, host.port),
                reason: format!("through jump host: {e}"),
            })?;
        Session::connect(host, opts, Some(via)).await
    }

    /// Connects, checks the host key and authenticates, all within the connect timeout;
    /// with `via`, the TCP connection is a channel of that session.
    pub async fn connect(
        host: &Host,
        opts: &SshOptions,
        via: Option<Session>,
    ) -> Result<Session, SshError> {
        let addr = format!("{}:{}", host.address, host.port);
        let connect_err = |reason: String| SshError::Connect {
            host: host.id.clone(),
            addr: addr.clone(),
            reason,
        };
        let key_path = host
            .key
            .clone()
            .or_else(|| opts.identity.clone())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519")))
            .ok_or_else(|| {
                connect_err("no private key: give the host a `key` or pass --identity".into())
            })?;
        let key = keys::load_secret_key(&key_path, None).map_err(|e| SshError::Key {
            host: host.id.clone(),
            key: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let verdict = Arc::new(Mutex::new(None));
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
            let mut handle =
                match client::connect(config, (host.address.as_str(), host.port), handler).await {
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
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let auth = handle
                .authenticate_publickey(&host.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| connect_err(e.to_string()))?;
            if !auth.success() {
                return Err(SshError::Auth {
                    host: host.id.clone(),
                    user: host.user.clone(),
                    key: key_path.display().to_string(),
                });
            }
            Ok(Session {
                host: host.id.clone(),
                handle,
                _via: None,
            })
        };
        let mut session = match tokio::time::timeout(opts.connect_timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(connect_err(format!(
                    "timed out after {:?}",
                    opts.connect_timeout
                )))
            }
        };
        session._via = via.map(Box::new);
        Ok(session)
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
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| lost(e.to_string()))?;
        ch.exec(true, command)
            .await
            .map_err(|e| lost(e.to_string()))?;
        if let Some(data) = stdin {
            ch.data(data).await.map_err(|e| lost(e.to_string()))?;
        }
        ch.eof().await.map_err(|e| lost(e.to_string()))?;
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
        Ok(RemoteProcess { ch })
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        if let Some(via) = self._via {
            Box::pin(via.close()).await;
        }
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
