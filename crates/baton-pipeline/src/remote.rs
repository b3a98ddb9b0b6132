//! Host jobs: a job's script run on the fleet's hosts over SSH (baton-fleet's russh
//! transport), one connection per host kept for the job's attempts, as many hosts at
//! once as the job's `parallel:` allows.
//!
//! The remote command line is the constant `exec sh -s`: nothing from the spec or the
//! environment is ever in it. What the host runs arrives on the channel's stdin:
//!
//! ```text
//! printf '%s %s\n' baton-pgid-<nonce> "$$"     # its process group, for timeouts
//! export NAME='value'                          # the job's variables and secrets
//! exec sh -e -c '<the job script>'
//! ```
//!
//! so secret values never appear in an argument vector (no `ps` on either side shows
//! them) nor in any log: the script's own output is masked like a local job's. `sshd`
//! starts each session's command in a session of its own, so `$$` of `exec sh -s` is the
//! process group of everything the script starts: a timeout or a cancellation sends
//! `kill -TERM -<pgid>` (then `-KILL` after the grace period) over a second channel of
//! the same connection, then closes the job's channel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_fleet::ssh::{Event, Jumps, RemoteProcess, Session, SshError, SshOptions};
use baton_fleet::{Host, Inventory};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The fixed remote command: the script comes on stdin.
const REMOTE_COMMAND: &str = "exec sh -s";

/// How SSH connections are made: known_hosts as for `baton fleet` (`BATON_KNOWN_HOSTS`,
/// else ~/.ssh/known_hosts), unknown keys refused, `BATON_CONNECT_TIMEOUT` seconds (10);
/// hosts without a `key` use the ssh-agent at `SSH_AUTH_SOCK`, else ~/.ssh/id_ed25519.
pub fn ssh_options(env: &BTreeMap<String, String>) -> SshOptions {
    let known_hosts = env
        .get("BATON_KNOWN_HOSTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env.get("HOME").map(String::as_str).unwrap_or("/root"))
                .join(".ssh/known_hosts")
        });
    let connect_timeout = env
        .get("BATON_CONNECT_TIMEOUT")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(10)
        .max(1);
    SshOptions {
        known_hosts,
        accept_new: false,
        identity: None,
        agent_sock: SshOptions::agent_sock(env.get("SSH_AUTH_SOCK")),
        default_identity: SshOptions::default_identity(env.get("HOME")),
        connect_timeout: Duration::from_secs(connect_timeout),
    }
}

/// How the script ended on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostOutcome {
    Exited(i32),
    TimedOut,
    Cancelled,
    /// Could not connect, or the connection was lost.
    Error(String),
}

/// One job's (or rollback's) hosts and their connections.
pub(crate) struct HostJob {
    pub hosts: Vec<Host>,
    pub inventory: Arc<Inventory>,
    pub ssh: SshOptions,
    pub parallel: usize,
    conns: Mutex<BTreeMap<String, Arc<Session>>>,
    /// Jump-host connections shared by the hosts behind them.
    jumps: Arc<Jumps>,
    /// Hosts the script already passed on: a retry runs only on the others.
    done: Mutex<BTreeSet<String>>,
}

/// What an attempt needs besides the hosts.
pub(crate) struct AttemptSpec<'a> {
    pub script: &'a str,
    pub env: &'a [(String, String)],
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub cancel: watch::Receiver<bool>,
}

impl HostJob {
    pub fn new(
        hosts: Vec<Host>,
        inventory: Arc<Inventory>,
        ssh: SshOptions,
        parallel: usize,
    ) -> HostJob {
        HostJob {
            hosts,
            inventory,
            ssh,
            parallel: parallel.max(1),
            conns: Mutex::new(BTreeMap::new()),
            jumps: Arc::default(),
            done: Mutex::new(BTreeSet::new()),
        }
    }

    /// Runs the script on every host it has not passed on yet; `emit` gets each output
    /// line as `host | text`. Returns each host's outcome, in inventory order.
    pub async fn attempt(
        &self,
        a: AttemptSpec<'_>,
        emit: &mut (dyn FnMut(&str) + Send),
    ) -> Vec<(String, HostOutcome)> {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let deadline = a.timeout.map(|t| Instant::now() + t);
        let sem = Arc::new(Semaphore::new(self.parallel));
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let mut set = JoinSet::new();
        for h in self.hosts.iter().filter(|h| !done.contains(&h.id)) {
            let conn = self
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&h.id)
                .cloned();
            let marker = format!("baton-pgid-{:016x}", fastrand::u64(..));
            let task = OnHost {
                host: h.clone(),
                inventory: self.inventory.clone(),
                ssh: self.ssh.clone(),
                jumps: self.jumps.clone(),
                conn,
                stdin: remote_script(&marker, a.env, h, a.script),
                marker,
                deadline,
                grace: a.grace,
                cancel: a.cancel.clone(),
                lines: tx.clone(),
                sem: sem.clone(),
            };
            set.spawn(task.run());
        }
        drop(tx);
        let mut results = BTreeMap::new();
        loop {
            tokio::select! {
                Some(line) = rx.recv() => emit(&line),
                r = set.join_next() => match r {
                    None => break,
                    Some(Ok((id, conn, outcome))) => {
                        if let Some(c) = conn {
                            self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), c);
                        }
                        results.insert(id, outcome);
                    }
                    Some(Err(e)) => emit(&format!("-- a host task failed: {e}")),
                },
            }
        }
        while let Ok(line) = rx.try_recv() {
            emit(&line);
        }
        let mut passed = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for h in &self.hosts {
            if let Some(o) = results.remove(&h.id) {
                if o == HostOutcome::Exited(0) {
                    passed.insert(h.id.clone());
                }
                out.push((h.id.clone(), o));
            }
        }
        out
    }

    /// Closes every connection the job opened.
    pub async fn close(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, c) in conns {
            if let Ok(s) = Arc::try_unwrap(c) {
                s.close().await;
            }
        }
        self.jumps.close().await;
    }
}

/// The stdin of `exec sh -s`: the group marker, the variables (each value quoted as one
/// shell word) and the script as one quoted word for `sh -e -c`.
pub(crate) fn remote_script(
    marker: &str,
    env: &[(String, String)],
    host: &Host,
    script: &str,
) -> Vec<u8> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    // Host vars first (scalars only): the job's own variables win.
    for (k, v) in &host.vars {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        vars.insert(k.clone(), v);
    }
    vars.insert("BATON_HOST".into(), host.id.clone());
    for (k, v) in env {
        // Local paths mean nothing on the host.
        if k == "BATON_WORKSPACE" || k == "BATON_PROJECT_DIR" {
            continue;
        }
        vars.insert(k.clone(), v.clone());
    }
    let mut s = format!("printf '%s %s\\n' {marker} \"$$\"\n");
    for (k, v) in &vars {
        if valid_var(k) {
            s.push_str(&format!("export {k}={}\n", shell_words::quote(v)));
        }
    }
    s.push_str(&format!("exec sh -e -c {}\n", shell_words::quote(script)));
    s.into_bytes()
}

fn valid_var(k: &str) -> bool {
    k.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The script on one host, as a task of its own.
struct OnHost {
    host: Host,
    inventory: Arc<Inventory>,
    ssh: SshOptions,
    jumps: Arc<Jumps>,
    conn: Option<Arc<Session>>,
    stdin: Vec<u8>,
    marker: String,
    deadline: Option<Instant>,
    grace: Duration,
    cancel: watch::Receiver<bool>,
    lines: mpsc::UnboundedSender<String>,
    sem: Arc<Semaphore>,
}

/// Why an attempt was stopped from outside.
enum Stop {
    TimedOut,
    Cancelled,
}

impl OnHost {
    async fn run(mut self) -> (String, Option<Arc<Session>>, HostOutcome) {
        let id = self.host.id.clone();
        let outcome = self.go().await;
        match &outcome {
            HostOutcome::Exited(0) => {}
            HostOutcome::Exited(c) => self.say(&format!("-- exit code {c}")),
            HostOutcome::TimedOut => self.say("-- timed out: killed its process group"),
            HostOutcome::Cancelled => self.say("-- cancelled: killed its process group"),
            HostOutcome::Error(e) => self.say(&format!("-- {e}")),
        }
        (id, self.conn.take(), outcome)
    }

    fn say(&self, text: &str) {
        let _ = self.lines.send(format!("{} | {text}", self.host.id));
    }

    /// Resolves when the deadline passes or the run is cancelled.
    async fn stopped(deadline: Option<Instant>, cancel: &mut watch::Receiver<bool>) -> Stop {
        tokio::select! {
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => Stop::TimedOut,
            _ = crate::run::wait_cancel(cancel) => Stop::Cancelled,
        }
    }

    async fn go(&mut self) -> HostOutcome {
        let mut cancel = self.cancel.clone();
        let sem = self.sem.clone();
        let _permit = tokio::select! {
            p = sem.acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return HostOutcome::Error("no slot to run in".into()),
            },
            s = Self::stopped(self.deadline, &mut cancel) => return s.into(),
        };
        let session = match self.conn.clone() {
            Some(s) => s,
            None => {
                let connect =
                    Session::connect_in(&self.inventory, &self.host, &self.ssh, &self.jumps);
                let s = tokio::select! {
                    r = connect => match r {
                        Ok(s) => Arc::new(s),
                        Err(e) => return HostOutcome::Error(connect_error(&e)),
                    },
                    s = Self::stopped(self.deadline, &mut cancel) => return s.into(),
                };
                self.conn = Some(s.clone());
                s
            }
        };
        let mut proc = match session.spawn(REMOTE_COMMAND, &self.stdin).await {
            Ok(p) => p,
            Err(e) => {
                // A broken connection is not reused by a retry.
                self.conn = None;
                return HostOutcome::Error(e.to_string());
            }
        };
        let mut out = Lines::default();
        let mut err = Lines::default();
        let mut pgid: Option<i64> = None;
        let mut status: Option<i32> = None;
        let mut drain: Option<Instant> = None;
        let stop = loop {
            tokio::select! {
                ev = proc.next() => match ev {
                    Some(Event::Stdout(b)) => {
                        for l in out.feed(&b) { self.line(&l, &mut pgid); }
                    }
                    Some(Event::Stderr(b)) => {
                        for l in err.feed(&b) { self.say(&l); }
                    }
                    Some(Event::Exit(c)) => {
                        status = Some(c);
                        // Output still held open by something it left behind gets 2 s.
                        drain = Some(Instant::now() + Duration::from_secs(2));
                    }
                    None => break None,
                },
                _ = async { match drain { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    kill_group(&session, pgid, "KILL").await;
                    break None;
                }
                s = Self::stopped(self.deadline, &mut cancel), if status.is_none() => break Some(s),
            }
        };
        if let Some(stop) = stop {
            kill_group(&session, pgid, "TERM").await;
            let ended = tokio::time::timeout(self.grace, async {
                while let Some(ev) = proc.next().await {
                    match ev {
                        Event::Stdout(b) => {
                            for l in out.feed(&b) {
                                self.line(&l, &mut pgid);
                            }
                        }
                        Event::Stderr(b) => {
                            for l in err.feed(&b) {
                                self.say(&l);
                            }
                        }
                        Event::Exit(_) => {}
                    }
                }
            })
            .await;
            if ended.is_err() {
                kill_group(&session, pgid, "KILL").await;
            }
            self.flush(&mut out, &mut err, &mut pgid);
            close(proc).await;
            return stop.into();
        }
        self.flush(&mut out, &mut err, &mut pgid);
        close(proc).await;
        match status {
            Some(c) => HostOutcome::Exited(c),
            None => {
                self.conn = None;
                HostOutcome::Error("the connection closed without an exit status".into())
            }
        }
    }

    fn line(&self, l: &str, pgid: &mut Option<i64>) {
        if pgid.is_none() {
            if let Some(rest) = l.strip_prefix(self.marker.as_str()) {
                *pgid = rest.trim().parse().ok();
                return;
            }
        }
        self.say(l);
    }

    fn flush(&self, out: &mut Lines, err: &mut Lines, pgid: &mut Option<i64>) {
        if let Some(l) = out.rest() {
            self.line(&l, pgid);
        }
        if let Some(l) = err.rest() {
            self.say(&l);
        }
    }
}

impl From<Stop> for HostOutcome {
    fn from(s: Stop) -> HostOutcome {
        match s {
            Stop::TimedOut => HostOutcome::TimedOut,
            Stop::Cancelled => HostOutcome::Cancelled,
        }
    }
}

async fn close(proc: RemoteProcess) {
    let _ = tokio::time::timeout(Duration::from_secs(2), proc.close()).await;
}

/// The fleet's error, with the way to trust an unknown key that fits a pipeline (which
/// never learns keys itself).
fn connect_error(e: &SshError) -> String {
    match e {
        SshError::UnknownKey {
            host,
            addr,
            fingerprint,
            known_hosts,
        } => format!(
            "{host}: unknown host key {fingerprint} for {addr}, not in {known_hosts}; check it, then trust it with `baton fleet ping {host} --accept-new` (pipelines never learn keys)"
        ),
        other => other.to_string(),
    }
}

/// Signals the script's whole process group on the host (over another channel).
async fn kill_group(session: &Session, pgid: Option<i64>, signal: &str) {
    let Some(g) = pgid.filter(|g| *g > 1) else {
        return;
    };
    let cmd =
        baton_fleet::transport::quote_args(&["kill", &format!("-{signal}"), &format!("-{g}")]);
    let _ = session.exec(&cmd, None, Some(Duration::from_secs(5))).await;
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct Lines(Vec<u8>);

impl Lines {
    fn feed(&mut self, b: &[u8]) -> Vec<String> {
        self.0.extend_from_slice(b);
        let mut out = Vec::new();
        while let Some(n) = self.0.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = self.0.drain(..=n).collect();
            let text = String::from_utf8_lossy(&line);
            out.push(text.trim_end_matches(['\n', '\r']).to_string());
        }
        out
    }

    fn rest(&mut self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.0).into_owned();
        self.0.clear();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        let inv = baton_fleet::inventory::from_ansible_ini(
            "[web]\nw1 root=/srv/w1 list_is_skipped=x\n",
            "i",
            std::path::Path::new("/"),
        )
        .unwrap();
        inv.hosts["w1"].clone()
    }

    #[test]
    fn the_script_and_values_travel_quoted_on_stdin() {
        let env = vec![
            ("TOKEN".to_string(), "it's $(rm -rf /); `x`".to_string()),
            ("BATON_WORKSPACE".to_string(), "/local/ws".to_string()),
            ("root".to_string(), "/override".to_string()),
            ("bad-name".to_string(), "x".to_string()),
        ];
        let s =
            String::from_utf8(remote_script("M", &env, &host(), "echo \"$TOKEN\" > f")).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "printf '%s %s\\n' M \"$$\"");
        assert!(s.contains("export BATON_HOST=w1\n"), "{s}");
        assert!(
            s.contains("export TOKEN='it'\\''s $(rm -rf /); `x`'\n"),
            "{s}"
        );
        assert!(s.contains("export root=/override\n"), "{s}");
        assert!(
            !s.contains("BATON_WORKSPACE") && !s.contains("bad-name"),
            "{s}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            "exec sh -e -c 'echo \"$TOKEN\" > f'"
        );
        // Nothing but the constant command line goes in the exec request.
        assert_eq!(REMOTE_COMMAND, "exec sh -s");
    }

    #[test]
    fn output_is_cut_into_lines() {
        let mut l = Lines::default();
        assert_eq!(l.feed(b"a\nb"), ["a"]);
        assert_eq!(l.feed(b"c\r\n\n"), ["bc", ""]);
        assert_eq!(l.feed(b"tail"), Vec::<String>::new());
        assert_eq!(l.rest().as_deref(), Some("tail"));
        assert_eq!(l.rest(), None);
    }

    #[test]
    fn ssh_options_follow_the_fleet_defaults() {
        let mut env = BTreeMap::new();
        env.insert("HOME".to_string(), "/home/u".to_string());
        let o = ssh_options(&env);
        assert_eq!(o.known_hosts, PathBuf::from("/home/u/.ssh/known_hosts"));
        assert!(!o.accept_new);
        env.insert("BATON_KNOWN_HOSTS".to_string(), "/k".to_string());
        env.insert("BATON_CONNECT_TIMEOUT".to_string(), "60".to_string());
        let o = ssh_options(&env);
        assert_eq!(o.known_hosts, PathBuf::from("/k"));
        assert_eq!(o.connect_timeout, Duration::from_secs(60));
    }
}
