//! `ssh://[USER@]HOST[:PORT][/SOCKET]` engine addresses, as the docker CLI takes them:
//! an `ssh` child forwards a private local socket to the engine's socket on that host
//! (`/var/run/docker.sock` unless the address names one) and the client connects to the
//! local end. The user's own ssh runs (its config, keys, agent and known hosts; `BATON_SSH`
//! names another program), in batch mode: a host it does not know or a key it lacks is
//! an error naming the address, never a prompt. The child lives as long as the
//! connection: it is killed when the last clone of the client goes, and its remote
//! command (`cat`, reading the pipe baton holds) ends when baton does, however it ends,
//! so no tunnel outlives baton.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the tunnel may take to come up (connect, authenticate, forward).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// Where an `ssh://` address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshAddress {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub socket: String,
}

impl SshAddress {
    /// Parses `ssh://[USER@]HOST[:PORT][/SOCKET]`; nothing of it can become an option
    /// of ssh (a host or user starting with `-` is refused).
    pub(crate) fn parse(address: &str) -> Result<SshAddress, String> {
        let rest = address
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("{address:?} is not an ssh:// address"))?;
        let (authority, socket) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, DEFAULT_REMOTE_SOCKET.to_string()),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            // [v6]:port
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("{address:?}: an unclosed [ in the host"))?;
                (h.to_string(), after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            },
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{address:?}: port {p:?} is not a port number"))
            })
            .transpose()?;
        let fine = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c))
        };
        if !fine(&host) {
            return Err(format!(
                "{address:?}: {host:?} is not a host name or address"
            ));
        }
        if let Some(u) = &user {
            if !fine(u) {
                return Err(format!("{address:?}: {u:?} is not a user name"));
            }
        }
        if socket.contains(':') || socket.chars().any(char::is_whitespace) {
            return Err(format!("{address:?}: {socket:?} is not a socket path"));
        }
        Ok(SshAddress {
            user,
            host,
            port,
            socket,
        })
    }

    /// The arguments of `ssh` that forward `local` to the engine's socket.
    fn args(&self, local: &std::path::Path) -> Vec<String> {
        let mut a: Vec<String> = [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-L",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(format!("{}:{}", local.display(), self.socket));
        if let Some(p) = self.port {
            a.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["-l".to_string(), u.clone()]);
        }
        // The remote command holds the session open until baton's end of its input
        // closes (baton ends, or drops the tunnel).
        a.extend(["--".to_string(), self.host.clone(), "cat".to_string()]);
        a
    }
}

/// A running forward. Dropping it ends the ssh child and removes the local socket.
#[derive(Debug)]
pub(crate) struct SshTunnel {
    child: Child,
    _input: Option<ChildStdin>,
    /// The private directory (0700) holding the local socket and ssh's messages.
    dir: tempfile::TempDir,
    pub local: PathBuf,
}

impl SshTunnel {
    /// Starts the forward and waits (bounded) until its local socket exists.
    pub(crate) async fn open(address: &str) -> Result<SshTunnel, String> {
        let a = SshAddress::parse(address)?;
        let dir = tempfile::Builder::new()
            .prefix("baton-ssh-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for the tunnel: {e}"))?;
        let local = dir.path().join("engine.sock");
        let messages = dir.path().join("ssh.log");
        let log = std::fs::File::create(&messages)
            .map_err(|e| format!("cannot create {}: {e}", messages.display()))?;
        let program = std::env::var_os("BATON_SSH").unwrap_or_else(|| "ssh".into());
        let mut child = Command::new(&program)
            .args(a.args(&local))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
        let input = child.stdin.take();
        let mut tunnel = SshTunnel {
            child,
            _input: input,
            dir,
            local,
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        loop {
            if tunnel.local.exists() {
                return Ok(tunnel);
            }
            let said = || {
                let text =
                    std::fs::read_to_string(tunnel.dir.path().join("ssh.log")).unwrap_or_default();
                let text = text.trim();
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            };
            if let Ok(Some(status)) = tunnel.child.try_wait() {
                return Err(format!("ssh to {address} ended ({status}){}", said()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "ssh to {address} did not forward the engine's socket within {}s{}",
                    OPEN_TIMEOUT.as_secs(),
                    said()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_never_become_options() {
        let a = SshAddress::parse("ssh://ops@10.0.0.5").unwrap();
        assert_eq!(
            (
                a.user.as_deref(),
                a.host.as_str(),
                a.port,
                a.socket.as_str()
            ),
            (Some("ops"), "10.0.0.5", None, "/var/run/docker.sock")
        );
        let a = SshAddress::parse("ssh://box:2222/run/user/1000/docker.sock").unwrap();
        assert_eq!(
            (a.user, a.host.as_str(), a.port, a.socket.as_str()),
            (None, "box", Some(2222), "/run/user/1000/docker.sock")
        );
        let a = SshAddress::parse("ssh://root@[::1]:22").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", Some(22)));
        for bad in [
            "ssh://-oProxyCommand=x",
            "ssh://-l@host",
            "ssh://host:0",
            "ssh://host:99999",
            "ssh://",
            "ssh://a b",
            "ssh://host/with space",
            "tcp://host",
        ] {
            assert!(SshAddress::parse(bad).is_err(), "{bad} was accepted");
        }
        let args = SshAddress::parse("ssh://ops@box:2200")
            .unwrap()
            .args(std::path::Path::new("/tmp/x/engine.sock"));
        let tail: Vec<&str> = args.iter().rev().take(3).map(String::as_str).collect();
        assert_eq!(
            tail,
            ["cat", "box", "--"],
            "the host comes after --: {args:?}"
        );
        assert!(args.contains(&"/tmp/x/engine.sock:/var/run/docker.sock".to_string()));
        assert!(args.contains(&"BatchMode=yes".to_string()));
    }

    #[tokio::test]
    async fn a_tunnel_that_cannot_start_says_why() {
        // Nothing listens on port 1 of loopback: ssh ends at once, and says so.
        let e = SshTunnel::open("ssh://nobody@127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(e.contains("ssh to ssh://nobody@127.0.0.1:1 ended"), "{e}");
    }
}
