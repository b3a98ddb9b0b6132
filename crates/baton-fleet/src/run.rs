//! Runs a task (an ad-hoc command or a runbook) across selected hosts: waves from the
//! strategy, a forks bound inside each wave, one SSH connection per host for all its
//! steps, and the failure policy (stop, continue, ignore, max_fail_percentage).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::inventory::{Host, Inventory};
use crate::remote::{self, RemoteError};
use crate::report::{HostResult, HostStatus, RunReport, StepResult, Wave};
use crate::runbook::{Action, Runbook, ServiceState, Source, Step};
use crate::select::{select, SelectError};
use crate::ssh::{Jumps, Session, SshError, SshOptions};
use crate::strategy::{too_many_failures, waves, Batch, OnFailure, Strategy};
use crate::tail;
use crate::template::{host_context, render};
use crate::transport::{quote_args, Conn};

/// What to run.
#[derive(Debug, Clone)]
pub enum Task {
    /// An argument vector, quoted into one command line.
    Adhoc(Vec<String>),
    Runbook(Runbook),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub strategy: Strategy,
    pub batch: Option<Batch>,
    pub pause: Option<Duration>,
    pub forks: usize,
    pub on_failure: OnFailure,
    pub max_fail_percentage: Option<u8>,
    /// Dry run: report what would change, with diffs; change nothing.
    pub check: bool,
    pub command_timeout: Option<Duration>,
    pub ssh: SshOptions,
    /// Where `src:` paths of copy, script and template steps are read from.
    pub base_dir: PathBuf,
    /// Unix milliseconds now, for the report's times: the caller's clock (tests pass
    /// their own), never one the fleet reads itself.
    pub clock: fn() -> i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Auth(#[from] crate::ssh::NoAuth),
}

struct Shared<'a> {
    inv: &'a Inventory,
    opts: &'a RunOptions,
    steps: Vec<(Step, Option<BTreeSet<String>>)>,
    adhoc: Option<Vec<String>>,
    halted: AtomicBool,
    failed_in_wave: AtomicUsize,
    wave_len: AtomicUsize,
    reason: std::sync::Mutex<Option<String>>,
    jumps: Jumps,
}

impl Shared<'_> {
    fn halt(&self, why: String) {
        if !self.halted.swap(true, Ordering::SeqCst) {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
    }
}

/// Runs `task` on the hosts `target` selects. Selector errors, hosts with no way to
/// authenticate and unreadable local sources are reported before any host is contacted.
pub async fn run(
    inv: &Inventory,
    target: &str,
    task: &Task,
    opts: &RunOptions,
) -> Result<RunReport, RunError> {
    let ids = select(inv, target)?;
    let hosts: Vec<&Host> = ids.iter().filter_map(|id| inv.hosts.get(id)).collect();
    crate::ssh::check_auth(inv, hosts.iter().copied(), &opts.ssh)?;
    let (steps, adhoc, kind, name) = match task {
        Task::Adhoc(argv) => {
            if argv.is_empty() {
                return Err(RunError::Invalid(
                    "no command given (baton fleet run TARGET -- CMD ARGS...)".into(),
                ));
            }
            (
                Vec::new(),
                Some(argv.clone()),
                "adhoc",
                shell_words::join(argv),
            )
        }
        Task::Runbook(rb) => {
            let mut steps = Vec::new();
            for s in &rb.steps {
                let sel = match &s.target {
                    Some(t) => Some(select(inv, t)?.into_iter().collect()),
                    None => None,
                };
                for src in sources(&s.action) {
                    let p = opts.base_dir.join(src);
                    if !p.is_file() {
                        return Err(RunError::Invalid(format!(
                            "step `{}`: cannot read {}",
                            s.name,
                            p.display()
                        )));
                    }
                }
                steps.push((s.clone(), sel));
            }
            (steps, None, "runbook", rb.name.clone())
        }
    };
    let shared = Shared {
        inv,
        opts,
        steps,
        adhoc,
        halted: AtomicBool::new(false),
        failed_in_wave: AtomicUsize::new(0),
        wave_len: AtomicUsize::new(0),
        reason: std::sync::Mutex::new(None),
        jumps: Jumps::default(),
    };
    let started_at = (opts.clock)();
    let clock = Instant::now();
    let plan = waves(&hosts, opts.strategy, opts.batch);
    let mut results: BTreeMap<String, HostResult> = BTreeMap::new();
    let mut wave_log = Vec::new();
    let mut aborted = false;
    for (wi, wave) in plan.iter().enumerate() {
        let number = wi + 1;
        if shared.halted.load(Ordering::SeqCst) {
            for h in wave {
                results.insert(h.id.clone(), skipped(h, number));
            }
            continue;
        }
        if wi > 0 {
            if let Some(p) = opts.pause {
                tokio::time::sleep(p).await;
            }
        }
        shared.failed_in_wave.store(0, Ordering::SeqCst);
        shared.wave_len.store(wave.len(), Ordering::SeqCst);
        let w_start = (opts.clock)();
        let done: Vec<HostResult> = stream::iter(wave.iter().map(|h| run_host(h, number, &shared)))
            .buffer_unordered(opts.forks.max(1))
            .collect()
            .await;
        wave_log.push(Wave {
            number,
            hosts: wave.iter().map(|h| h.id.clone()).collect(),
            started_at: w_start,
            finished_at: (opts.clock)(),
        });
        let failed = done.iter().filter(|r| r.status.is_failure()).count();
        for r in done {
            results.insert(r.host.clone(), r);
        }
        if too_many_failures(failed, wave.len(), opts.max_fail_percentage) {
            aborted = true;
            shared.halt(format!(
                "max_fail_percentage {}% exceeded: {failed} of {} hosts failed in wave {number}",
                opts.max_fail_percentage.unwrap_or(0),
                wave.len()
            ));
        }
    }
    shared.jumps.close().await;
    let mut report = RunReport {
        id: None,
        kind: kind.into(),
        task: name,
        target: target.into(),
        strategy: format!("{:?}", opts.strategy).to_lowercase(),
        batch: opts.batch.map(|b| match b {
            Batch::Count(n) => n.to_string(),
            Batch::Percent(p) => format!("{p}%"),
        }),
        forks: opts.forks,
        on_failure: format!("{:?}", opts.on_failure).to_lowercase(),
        max_fail_percentage: opts.max_fail_percentage,
        check: opts.check,
        groups: inv
            .groups()
            .into_iter()
            .map(|(g, m)| {
                (
                    g,
                    m.into_iter()
                        .filter(|h| ids.contains(h))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, m)| !m.is_empty())
            .collect(),
        waves: wave_log,
        hosts: ids.iter().filter_map(|id| results.remove(id)).collect(),
        summary: Default::default(),
        started_at,
        finished_at: (opts.clock)(),
        duration_ms: clock.elapsed().as_millis() as i64,
        outcome: String::new(),
        reason: shared
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    };
    report.summarise();
    let any_failed = report.hosts.iter().any(|h| h.status.is_failure());
    report.outcome = if aborted {
        "aborted"
    } else if shared.halted.load(Ordering::SeqCst) {
        "halted"
    } else if any_failed {
        "failed"
    } else {
        "ok"
    }
    .into();
    Ok(report)
}

fn sources(a: &Action) -> Vec<&PathBuf> {
    match a {
        Action::Copy { src, .. } => vec![src],
        Action::Script {
            source: Source::Path(p),
            ..
        }
        | Action::Template {
            source: Source::Path(p),
            ..
        } => vec![p],
        _ => vec![],
    }
}

fn skipped(h: &Host, wave: usize) -> HostResult {
    HostResult {
        host: h.id.clone(),
        address: format!("{}:{}", h.address, h.port),
        wave,
        status: HostStatus::Skipped,
        started_at: 0,
        finished_at: 0,
        duration_ms: 0,
        steps: Vec::new(),
        output_tail: String::new(),
        error: None,
        halted: true,
    }
}

/// Records a failure and applies the policy; true when the host must stop.
fn on_host_failure(shared: &Shared<'_>, host: &str, what: &str) {
    let n = shared.failed_in_wave.fetch_add(1, Ordering::SeqCst) + 1;
    if shared.opts.on_failure == OnFailure::Stop {
        shared.halt(format!("{host} failed ({what}); on_failure: stop"));
    } else if too_many_failures(
        n,
        shared.wave_len.load(Ordering::SeqCst),
        shared.opts.max_fail_percentage,
    ) {
        shared.halt(format!(
            "max_fail_percentage {}% exceeded",
            shared.opts.max_fail_percentage.unwrap_or(0)
        ));
    }
}

async fn run_host(h: &Host, wave: usize, shared: &Shared<'_>) -> HostResult {
    let mut r = skipped(h, wave);
    if shared.halted.load(Ordering::SeqCst) {
        return r;
    }
    r.halted = false;
    r.started_at = (shared.opts.clock)();
    let clock = Instant::now();
    let conn = match Session::connect_in(shared.inv, h, &shared.opts.ssh, &shared.jumps).await {
        Ok(s) => Conn::Ssh(s),
        Err(e) => {
            r.status = HostStatus::Unreachable;
            r.error = Some(e.to_string());
            on_host_failure(shared, &h.id, "unreachable");
            r.finished_at = (shared.opts.clock)();
            r.duration_ms = clock.elapsed().as_millis() as i64;
            return r;
        }
    };
    r.status = HostStatus::Ok;
    let ctx = host_context(h);
    let adhoc_step;
    let steps: Vec<&Step> = match &shared.adhoc {
        Some(argv) => {
            adhoc_step = Step {
                name: "command".into(),
                target: None,
                timeout: None,
                creates: None,
                action: Action::Command(argv.clone()),
            };
            vec![&adhoc_step]
        }
        None => shared
            .steps
            .iter()
            .filter(|(_, sel)| sel.as_ref().is_none_or(|s| s.contains(&h.id)))
            .map(|(s, _)| s)
            .collect(),
    };
    for step in steps {
        if shared.halted.load(Ordering::SeqCst) {
            r.halted = true;
            break;
        }
        let t = Instant::now();
        let timeout = step.timeout.or(shared.opts.command_timeout);
        let outcome = run_step(&conn, h, &ctx, step, shared.opts, timeout).await;
        let mut sr = StepResult {
            name: step.name.clone(),
            kind: step.action.kind().into(),
            status: String::new(),
            duration_ms: t.elapsed().as_millis() as i64,
            output: String::new(),
            diff: String::new(),
        };
        match outcome {
            Ok(done) => {
                sr.status = if done.changed { "changed" } else { "ok" }.into();
                if done.changed {
                    r.status = HostStatus::Changed;
                }
                sr.output = tail(&done.output, 5);
                sr.diff = done.diff;
                if !sr.output.is_empty() {
                    r.output_tail = sr.output.clone();
                }
                r.steps.push(sr);
            }
            Err(StepError::Failed(msg)) => {
                sr.output = tail(&msg, 5);
                r.output_tail = sr.output.clone();
                if shared.opts.on_failure == OnFailure::Ignore {
                    sr.status = "ignored".into();
                    r.steps.push(sr);
                    continue;
                }
                sr.status = "failed".into();
                r.steps.push(sr);
                r.status = HostStatus::Failed;
                r.error = Some(format!("step `{}` failed", step.name));
                on_host_failure(shared, &h.id, &step.name);
                break;
            }
            Err(StepError::Transport(e)) => {
                sr.status = "failed".into();
                sr.output = e.to_string();
                r.steps.push(sr);
                r.status = if e.unreachable() {
                    HostStatus::Unreachable
                } else {
                    HostStatus::Failed
                };
                r.error = Some(e.to_string());
                on_host_failure(shared, &h.id, &step.name);
                break;
            }
        }
    }
    conn.close().await;
    r.finished_at = (shared.opts.clock)();
    r.duration_ms = clock.elapsed().as_millis() as i64;
    r
}

struct Done {
    changed: bool,
    output: String,
    diff: String,
}

enum StepError {
    Failed(String),
    Transport(SshError),
}

impl From<RemoteError> for StepError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Transport(t) => StepError::Transport(t),
            RemoteError::Failed(m) => StepError::Failed(m),
        }
    }
}

impl From<SshError> for StepError {
    fn from(e: SshError) -> Self {
        StepError::Transport(e)
    }
}

async fn exec_checked(
    conn: &Conn,
    cmd: &str,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Done, StepError> {
    let out = conn.exec(cmd, stdin, timeout).await?;
    if out.ok() {
        Ok(Done {
            changed: true,
            output: out.text(),
            diff: String::new(),
        })
    } else {
        Err(StepError::Failed(format!(
            "{}\nexit status {}",
            out.text().trim_end(),
            out.status
        )))
    }
}

fn rendered(text: &str, ctx: &serde_json::Value) -> Result<String, StepError> {
    render(text, ctx).map_err(StepError::Failed)
}

async fn run_step(
    conn: &Conn,
    h: &Host,
    ctx: &serde_json::Value,
    step: &Step,
    opts: &RunOptions,
    timeout: Option<Duration>,
) -> Result<Done, StepError> {
    if let Some(c) = &step.creates {
        let path = rendered(c, ctx)?;
        let out = conn
            .exec(&quote_args(&["test", "-e", &path]), None, timeout)
            .await?;
        if out.ok() {
            return Ok(Done {
                changed: false,
                output: format!("{path} exists"),
                diff: String::new(),
            });
        }
    }
    let would = |what: String| {
        Ok(Done {
            changed: true,
            output: format!("would run: {what}"),
            diff: String::new(),
        })
    };
    match &step.action {
        Action::Command(argv) => {
            let argv: Vec<String> = argv
                .iter()
                .map(|a| rendered(a, ctx))
                .collect::<Result<_, _>>()?;
            let cmd = quote_args(&argv);
            if opts.check {
                return would(cmd);
            }
            exec_checked(conn, &cmd, None, timeout).await
        }
        Action::Shell(s) => {
            let s = rendered(s, ctx)?;
            if opts.check {
                return would(s);
            }
            exec_checked(conn, &quote_args(&["sh", "-c", &s]), None, timeout).await
        }
        Action::Script { source, args } => {
            let body = match source {
                Source::Inline(c) => c.clone().into_bytes(),
                Source::Path(p) => std::fs::read(opts.base_dir.join(p))
                    .map_err(|e| StepError::Failed(format!("cannot read {}: {e}", p.display())))?,
            };
            let args: Vec<String> = args
                .iter()
                .map(|a| rendered(a, ctx))
                .collect::<Result<_, _>>()?;
            if opts.check {
                return would(format!("script {}", shell_words::join(&args)));
            }
            let wrapper = r#"f=$(mktemp) || exit 1; cat > "$f" && chmod 700 "$f" && "$f" "$@"; rc=$?; rm -f "$f"; exit $rc"#;
            let mut argv = vec!["sh".to_string(), "-c".into(), wrapper.into(), "sh".into()];
            argv.extend(args);
            exec_checked(conn, &quote_args(&argv), Some(&body), timeout).await
        }
        Action::Copy { src, to } => {
            let body = std::fs::read(opts.base_dir.join(src))
                .map_err(|e| StepError::Failed(format!("cannot read {}: {e}", src.display())))?;
            put(conn, ctx, &body, to, opts, timeout).await
        }
        Action::Template { source, to } => {
            let text = match source {
                Source::Inline(c) => c.clone(),
                Source::Path(p) => std::fs::read_to_string(opts.base_dir.join(p))
                    .map_err(|e| StepError::Failed(format!("cannot read {}: {e}", p.display())))?,
            };
            let body = rendered(&text, ctx)?;
            put(conn, ctx, body.as_bytes(), to, opts, timeout).await
        }
        Action::File { content, to } => {
            let body = rendered(content, ctx)?;
            put(conn, ctx, body.as_bytes(), to, opts, timeout).await
        }
        Action::Service { name, state } => {
            let name = rendered(name, ctx)?;
            let (probe, verb) = match state {
                ServiceState::Started => (Some(("is-active", true)), "start"),
                ServiceState::Stopped => (Some(("is-active", false)), "stop"),
                ServiceState::Enabled => (Some(("is-enabled", true)), "enable"),
                ServiceState::Restarted => (None, "restart"),
            };
            if let Some((q, want)) = probe {
                let out = conn
                    .exec(
                        &quote_args(&["systemctl", q, "--quiet", &name]),
                        None,
                        timeout,
                    )
                    .await?;
                if out.ok() == want {
                    return Ok(Done {
                        changed: false,
                        output: format!("{name}: already {state:?}").to_lowercase(),
                        diff: String::new(),
                    });
                }
            }
            if opts.check {
                return would(format!("systemctl {verb} {name}"));
            }
            exec_checked(
                conn,
                &quote_args(&["systemctl", verb, &name]),
                None,
                timeout,
            )
            .await
        }
        Action::WaitFor {
            port,
            host,
            url,
            timeout: limit,
        } => {
            if opts.check {
                return Ok(Done {
                    changed: false,
                    output: "wait_for skipped in check mode".into(),
                    diff: String::new(),
                });
            }
            if let Some(port) = port {
                let addr = match host {
                    Some(t) => rendered(t, ctx)?,
                    None => h.address.clone(),
                };
                let deadline = Instant::now() + *limit;
                loop {
                    if tokio::net::TcpStream::connect((addr.as_str(), *port))
                        .await
                        .is_ok()
                    {
                        return Ok(Done {
                            changed: false,
                            output: format!("{addr}:{port} is open"),
                            diff: String::new(),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Err(StepError::Failed(format!(
                            "{addr}:{port} did not open within {limit:?}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let url = rendered(url.as_deref().unwrap_or_default(), ctx)?;
            let script = r#"n=$2; while [ "$n" -gt 0 ]; do if command -v curl >/dev/null; then curl -fsS -o /dev/null "$1" && exit 0; else wget -q -O /dev/null "$1" && exit 0; fi; n=$((n-1)); sleep 1; done; exit 1"#;
            let secs = limit.as_secs().max(1).to_string();
            let mut done = exec_checked(
                conn,
                &quote_args(&["sh", "-c", script, "sh", &url, &secs]),
                None,
                None,
            )
            .await?;
            done.changed = false;
            done.output = format!("{url} answered");
            Ok(done)
        }
    }
}

async fn put(
    conn: &Conn,
    ctx: &serde_json::Value,
    body: &[u8],
    to: &crate::runbook::FileDest,
    opts: &RunOptions,
    timeout: Option<Duration>,
) -> Result<Done, StepError> {
    let path = rendered(&to.dest, ctx)?;
    let p = remote::put(
        conn,
        &path,
        body,
        to.mode,
        to.owner.as_deref(),
        false,
        opts.check,
        timeout,
    )
    .await?;
    Ok(Done {
        changed: p.changed,
        output: p.note,
        diff: if opts.check { p.diff } else { String::new() },
    })
}
