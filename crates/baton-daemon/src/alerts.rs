//! Alerts in the daemon: after every sample, each active project's `alerts:` rules are
//! evaluated over the history (`baton_metrics::query::instant`) and handed to the
//! engine's state machine (`baton_engine::alert::evaluate`), then to its grouping
//! (`notify`) with the project's silences from the store. Transitions go to the store's
//! alert history and the event stream; notifications go to a delivery task per
//! notification (webhook: Alertmanager's v4 JSON, Slack-compatible webhook, email over
//! SMTP), retried with backoff, so a receiver that is down never holds up an evaluation,
//! the supervisor or traffic. What was delivered comes back to the grouping's memory.
//!
//! Built-in rules on (`alerts.builtin`) are rules of the same kind over the project's own
//! series ([`builtin_rules`]): crash-looping replicas, replicas unhealthy for a minute,
//! rollouts paused, rolling back or rolled back, a pipeline whose newest run failed, a
//! fleet host that did not answer, a VM that stopped without being asked, a host's disk
//! under 10 % free, a certificate that expired or could not be issued.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use baton_engine::alert::{
    self, AlertsSpec, AlertsState, Notification, NotifyState, Receiver, ReceiverKind, Silence,
};
use baton_metrics::query::{self, QueryOptions, Value};
use baton_metrics::{History, Metrics, RuleLabels};
use baton_spec::Project;
use baton_state::{AlertTransition, NotificationRecord, Store};
use tokio::sync::mpsc;

/// How many times a notification is tried, and the first wait between tries (doubling).
pub const ATTEMPTS: u32 = 6;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one try may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A notification delivered: its project and what was sent.
type Delivered = (String, Notification);

/// The evaluator: per project, the rules' state and the groups' memory.
pub struct Alerter {
    store: Store,
    metrics: Arc<Metrics>,
    env: BTreeMap<String, String>,
    projects: BTreeMap<String, ProjectAlerts>,
    delivered_tx: mpsc::UnboundedSender<Delivered>,
    delivered_rx: mpsc::UnboundedReceiver<Delivered>,
}

#[derive(Default)]
struct ProjectAlerts {
    rules: AlertsState,
    notify: NotifyState,
    /// Rule names whose expression failed, so the error is logged once.
    broken: BTreeSet<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Alerter {
    /// `env` is the daemon's environment (email passwords come from it by name).
    pub fn new(store: Store, metrics: Arc<Metrics>, env: BTreeMap<String, String>) -> Alerter {
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        Alerter {
            store,
            metrics,
            env,
            projects: BTreeMap::new(),
            delivered_tx,
            delivered_rx,
        }
    }

    /// Evaluates after each sample the telemetry announces, until `stop`.
    pub async fn run(
        mut self,
        history: Arc<History>,
        mut sampled: tokio::sync::watch::Receiver<i64>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        while let Some(Ok(())) = crate::unless_stopped(sampled.changed(), &mut stop).await {
            let t = *sampled.borrow_and_update();
            // Store reads and queries: off the async workers' hands (the daemon's
            // runtime is multi-threaded).
            tokio::task::block_in_place(|| self.evaluate(&history, t));
        }
    }

    fn project(&self, name: &str) -> Option<Project> {
        let rev = self.store.latest_revision(name).ok()??;
        let json = self.store.revision_spec(name, rev.number).ok()??;
        serde_json::from_str(&json).ok()
    }

    /// One evaluation of every active project's rules at `t`.
    pub fn evaluate(&mut self, history: &History, t: i64) {
        while let Ok((project, n)) = self.delivered_rx.try_recv() {
            if let Some(p) = self.projects.get_mut(&project) {
                p.notify = alert::delivered(&p.notify, &n);
            }
        }
        let active = self.store.active_projects().unwrap_or_default();
        self.projects.retain(|p, _| active.contains(p));
        let mut firing: BTreeMap<String, f64> = BTreeMap::new();
        for name in &active {
            let Some(project) = self.project(name) else {
                continue;
            };
            let mut spec = match alert::alerts_spec(&project) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::warn!("{name}: alerts: {e}");
                    continue;
                }
            };
            spec.rules.extend(builtin_rules(&spec, name));
            if spec.rules.is_empty() && !self.projects.contains_key(name) {
                continue;
            }
            let state = self.load(name);
            let counts = self.evaluate_project(name, &spec, state, history, t);
            for (rule, n) in counts {
                *firing.entry(rule).or_default() += n;
            }
        }
        self.metrics
            .alerts
            .firing
            .retain(|l| firing.contains_key(&l.rule));
        for (rule, n) in firing {
            self.metrics
                .alerts
                .firing
                .get(&RuleLabels::new(rule))
                .set(n);
        }
    }

    fn load(&mut self, project: &str) -> ProjectAlerts {
        if let Some(p) = self.projects.remove(project) {
            return p;
        }
        let mut p = ProjectAlerts::default();
        if let Ok(Some((rules, notify))) = self.store.alert_state(project) {
            p.rules = serde_json::from_str(&rules).unwrap_or_default();
            p.notify = serde_json::from_str(&notify).unwrap_or_default();
        }
        p
    }

    /// Returns how many alerts of each rule fire.
    fn evaluate_project(
        &mut self,
        name: &str,
        spec: &AlertsSpec,
        mut p: ProjectAlerts,
        history: &History,
        t: i64,
    ) -> BTreeMap<String, f64> {
        let now = u64::try_from(t).unwrap_or(0);
        let mut transitions = Vec::new();
        for rule in &spec.rules {
            let samples = match query::parse(&rule.expr)
                .map_err(|e| e.to_string())
                .and_then(|expr| {
                    query::instant(history, &expr, t, &QueryOptions::default())
                        .map_err(|e| e.to_string())
                }) {
                Ok(Value::Vector(v)) => v
                    .into_iter()
                    .map(|s| alert::Sample {
                        labels: s
                            .labels
                            .iter()
                            .filter(|(k, _)| *k != baton_metrics::METRIC_NAME)
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        value: s.value,
                    })
                    .collect::<Vec<_>>(),
                Ok(Value::Scalar(_)) => Vec::new(),
                Err(e) => {
                    if p.broken.insert(rule.name.clone()) {
                        tracing::warn!("{name}: alert rule {}: {e}", rule.name);
                    }
                    continue;
                }
            };
            p.broken.remove(&rule.name);
            match alert::evaluate(&p.rules, rule, &samples, now) {
                Ok((state, mut changes)) => {
                    p.rules = state;
                    transitions.append(&mut changes);
                }
                Err(e) => tracing::warn!("{name}: {e}"),
            }
        }
        let defined: BTreeSet<String> = spec.rules.iter().map(|r| r.name.clone()).collect();
        let (state, mut dropped) = alert::drop_rules(&p.rules, &defined, now);
        p.rules = state;
        transitions.append(&mut dropped);
        self.record(name, &transitions, t);

        let silences = self.silences(name);
        let (notify, notes) = alert::notify(spec, &p.notify, &p.rules, &silences, now);
        p.notify = notify;
        for n in notes {
            let Some(receiver) = spec.receivers.get(&n.receiver).cloned() else {
                continue;
            };
            self.spawn_delivery(name, receiver, n);
        }
        let _ = self.store.set_alert_state(
            name,
            &serde_json::to_string(&p.rules).unwrap_or_default(),
            &serde_json::to_string(&p.notify).unwrap_or_default(),
            t,
        );
        let mut counts = BTreeMap::new();
        for a in p.rules.in_phase(alert::Phase::Firing) {
            *counts.entry(a.rule.clone()).or_insert(0.0) += 1.0;
        }
        self.projects.insert(name.to_string(), p);
        counts
    }

    fn record(&self, project: &str, transitions: &[alert::Transition], t: i64) {
        let word = |p: alert::Phase| {
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let rows: Vec<AlertTransition> = transitions
            .iter()
            .map(|tr| AlertTransition {
                id: 0,
                project: project.to_string(),
                rule: tr.rule.clone(),
                fingerprint: tr.fingerprint.clone(),
                labels_json: serde_json::to_string(&tr.labels).unwrap_or_default(),
                from_phase: word(tr.from),
                to_phase: word(tr.to),
                value: tr.value.is_finite().then_some(tr.value),
                at: i64::try_from(tr.at_ms).unwrap_or(t),
            })
            .collect();
        if let Err(e) = self.store.add_alert_transitions(&rows) {
            tracing::warn!("{project}: cannot record alert transitions: {e}");
        }
        for tr in transitions {
            let message = format!(
                "{} {}: {} -> {} (value {})",
                tr.rule,
                alert::labels_text(&tr.labels),
                word(tr.from),
                word(tr.to),
                tr.value
            );
            tracing::info!("{project}: alert {message}");
            let _ = self.store.event(project, "alert", &tr.rule, &message, t);
        }
    }

    /// The project's silences from the store (unreadable ones left out).
    fn silences(&self, project: &str) -> Vec<Silence> {
        self.store
            .silences(project)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                Some(Silence {
                    matchers: serde_json::from_str(&r.matchers_json).ok()?,
                    id: r.id,
                    starts_at_ms: u64::try_from(r.starts_at).ok()?,
                    ends_at_ms: u64::try_from(r.ends_at).ok()?,
                    comment: r.comment,
                    created_by: r.created_by,
                })
            })
            .collect()
    }

    fn spawn_delivery(&self, project: &str, receiver: Receiver, n: Notification) {
        let store_dir = self.store.path().parent().map(|p| p.to_path_buf());
        let env = self.env.clone();
        let tx = self.delivered_tx.clone();
        let project = project.to_string();
        tokio::spawn(async move {
            let (attempts, outcome) = deliver_with_retries(&receiver, &n, &env).await;
            let ok = outcome.is_ok();
            let outcome = match outcome {
                Ok(()) => "delivered".to_string(),
                Err(e) => format!("failed: {e}"),
            };
            if ok {
                tracing::info!(
                    "{project}: notification to {} delivered ({} alert(s))",
                    receiver.name,
                    n.firing.len() + n.resolved.len()
                );
                let _ = tx.send((project.clone(), n.clone()));
            } else {
                tracing::warn!("{project}: notification to {}: {outcome}", receiver.name);
            }
            // The store is written from a connection of this task's own.
            if let Some(dir) = store_dir {
                let record = NotificationRecord {
                    id: 0,
                    project: project.clone(),
                    receiver: receiver.name.clone(),
                    group_key: n.group_key.clone(),
                    status: if n.status == alert::Status::Firing {
                        "firing".into()
                    } else {
                        "resolved".into()
                    },
                    alerts: (n.firing.len() + n.resolved.len()) as i64,
                    attempts: i64::from(attempts),
                    outcome,
                    at: now_ms(),
                };
                let _ = tokio::task::spawn_blocking(move || {
                    if let Ok(store) = Store::open(&dir) {
                        let _ = store.add_notification(&record);
                    }
                })
                .await;
            }
        });
    }
}

/// A PromQL string literal.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The built-in rules that are on, as rules over `project`'s series.
pub fn builtin_rules(spec: &AlertsSpec, project: &str) -> Vec<alert::AlertRule> {
    use alert::BuiltinRule as B;
    let p = quoted(project);
    let template = |t: &str| alert::Template::parse(t).ok();
    let mut out = Vec::new();
    for rule in B::ALL {
        if !spec.builtin_on(rule) {
            continue;
        }
        let (expr, for_ms, summary) = match rule {
            B::CrashLooping => (
                format!("increase(baton_container_restarts_total{{project={p}}}[5m]) >= 3"),
                0,
                "replica {{ .Labels.replica }} of {{ .Labels.service }} restarted {{ .Value }} times in 5 minutes",
            ),
            B::ReplicaUnhealthy => (
                format!(
                    "baton_service_replicas{{project={p},state=\"running\"}} - ignoring (state) baton_service_replicas{{project={p},state=\"healthy\"}} > 0"
                ),
                60_000,
                "{{ .Value }} replica(s) of {{ .Labels.service }} running but not healthy for 1m",
            ),
            B::RolloutFailed => (
                format!("baton_rollout_status{{project={p}}} >= 2"),
                0,
                "the rollout of {{ .Labels.service }} is paused, rolling back or rolled back",
            ),
            B::CertificateFailing => (
                format!("baton_edge_certificate_failing{{project={p}}} > 0"),
                0,
                "the certificate of {{ .Labels.host }} expired, or could not be issued or renewed: see baton routes",
            ),
            B::PipelineFailed => (
                format!("baton_pipeline_last_run_failed{{project={p}}} > 0"),
                0,
                "the newest run of pipeline {{ .Labels.pipeline }} failed: see baton pipeline runs",
            ),
            B::HostUnreachable => (
                format!("baton_fleet_host_up{{project={p}}} == 0"),
                0,
                "host {{ .Labels.host }} did not answer the newest fleet run or facts that tried it",
            ),
            B::VmStopped => (
                format!("baton_vm_stopped_unasked{{project={p}}} > 0"),
                0,
                "VM {{ .Labels.vm }} stopped without baton asking: see baton events",
            ),
            B::DiskSpaceLow => (
                format!(
                    "baton_fleet_host_disk_available_bytes{{project={p}}} / baton_fleet_host_disk_total_bytes{{project={p}}} < 0.1"
                ),
                0,
                "host {{ .Labels.host }} has {{ .Value | humanizePercentage }} of its root filesystem free",
            ),
        };
        let (Some(severity), Some(summary)) = (template("warning"), template(summary)) else {
            continue;
        };
        out.push(alert::AlertRule {
            name: rule.alertname().to_string(),
            expr,
            for_ms,
            keep_firing_for_ms: 0,
            labels: [("severity".to_string(), severity)].into(),
            annotations: [("summary".to_string(), summary)].into(),
        });
    }
    out
}

/// Tries `ATTEMPTS` times with doubling waits; how many tries it took and how it ended.
pub async fn deliver_with_retries(
    receiver: &Receiver,
    n: &Notification,
    env: &BTreeMap<String, String>,
) -> (u32, Result<(), String>) {
    let mut wait = FIRST_BACKOFF;
    let mut last = Err(String::new());
    for attempt in 1..=ATTEMPTS {
        last = match tokio::time::timeout(SEND_TIMEOUT, deliver(receiver, n, env)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())),
        };
        if last.is_ok() {
            return (attempt, last);
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    (ATTEMPTS, last)
}

/// One try at delivering `n` to `receiver`.
pub async fn deliver(
    receiver: &Receiver,
    n: &Notification,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    match &receiver.kind {
        ReceiverKind::Webhook { url } => post_json(url, &alert::payload::alertmanager(n, "")).await,
        ReceiverKind::Slack { url } => post_json(url, &alert::payload::slack(n)).await,
        ReceiverKind::Email {
            to,
            from,
            smtp_host,
            smtp_port,
            username,
            password_env,
        } => {
            let password = match password_env {
                Some(var) => Some(env.get(var).cloned().ok_or_else(|| {
                    format!("the daemon's environment has no {var} (password_env)")
                })?),
                None => None,
            };
            send_email(
                to,
                from,
                smtp_host,
                *smtp_port,
                username.as_deref(),
                password,
                n,
            )
            .await
        }
    }
}

/// Splits `http(s)://host:port/path` into the endpoint and the path.
fn split_url(url: &str) -> Result<(baton_http::Endpoint, String, bool), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !authority.ends_with(']'));
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    let scheme = if https { "https" } else { "http" };
    let endpoint = baton_http::Endpoint::parse(&format!("{scheme}://{authority}"))
        .map_err(|e| e.to_string())?;
    Ok((endpoint, path.to_string(), https))
}

async fn post_json(url: &str, body: &serde_json::Value) -> Result<(), String> {
    let (endpoint, path, https) = split_url(url)?;
    let client = baton_http::Client {
        token: None,
        tls: if https {
            Some(baton_http::ClientTls::system_roots().map_err(|e| e.to_string())?)
        } else {
            None
        },
        timeout: SEND_TIMEOUT,
    };
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    // The URL's path may carry a secret (Slack's does): errors name the host only.
    let answer = client
        .send(&endpoint, hyper::Method::POST, &path, Some(bytes))
        .await
        .map_err(|_| format!("cannot reach {}", endpoint.authority()))?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{} answered {}",
            endpoint.authority(),
            answer.status
        ))
    }
}

async fn send_email(
    to: &[String],
    from: &str,
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<String>,
    n: &Notification,
) -> Result<(), String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let (subject, body) = alert::payload::email(n);
    let mut message = Message::builder()
        .from(from.parse::<Mailbox>().map_err(|e| format!("from: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        message = message.to(t.parse::<Mailbox>().map_err(|e| format!("to {t}: {e}"))?);
    }
    let message = message.body(body).map_err(|e| e.to_string())?;
    // Port 465 is TLS from the start; elsewhere STARTTLS when the server offers it (a
    // loopback relay may not), and credentials only ever over TLS.
    let mut builder = if port == 465 {
        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| e.to_string())?
    } else if password.is_some() {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| e.to_string())?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    };
    builder = builder.port(port).timeout(Some(SEND_TIMEOUT));
    if let (Some(user), Some(password)) = (username, password) {
        builder = builder.credentials(Credentials::new(user.to_string(), password));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {host}:{port}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_parse_and_are_scoped_to_the_project() {
        let project = Project {
            name: "shop".into(),
            ..Project::default()
        };
        let spec = alert::alerts_spec(&project).expect("an empty section");
        let rules = builtin_rules(&spec, "shop");
        assert_eq!(
            rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            [
                "ReplicaCrashLooping",
                "ReplicaUnhealthy",
                "RolloutFailed",
                "PipelineFailed",
                "HostUnreachable",
                "VmStopped",
                "HostDiskSpaceLow",
                "CertificateFailing"
            ]
        );
        for r in &rules {
            query::parse(&r.expr).unwrap_or_else(|e| panic!("{}: {e}", r.expr));
            assert!(r.expr.contains("project=\"shop\""), "{}", r.expr);
        }
        assert_eq!(quoted("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    /// The built-ins of pipelines, hosts and VMs over a real history: each finds its
    /// project's failing thing and nothing of another project or a healthy one.
    #[test]
    fn builtin_rules_find_failed_pipelines_lost_hosts_stopped_vms_and_full_disks() {
        use baton_metrics::{HistoryConfig, HostLabels, PipelineLabels, ProjectVmLabels};
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default()).unwrap();
        let m = Metrics::new(baton_metrics::MetricsConfig::default());
        for project in ["shop", "other"] {
            let p = &m.pipelines.last_run_failed;
            p.get(&PipelineLabels::new(project, "ci")).set(1.0);
            p.get(&PipelineLabels::new(project, "deploy")).set(0.0);
            let f = &m.fleet;
            for (host, up, free) in [("a", 1.0, 50.0), ("b", 0.0, 50.0), ("c", 1.0, 5.0)] {
                let l = HostLabels::new(project, host);
                f.up.get(&l).set(up);
                f.disk_total_bytes.get(&l).set(100.0);
                f.disk_available_bytes.get(&l).set(free);
            }
            m.vms
                .stopped_unasked
                .get(&ProjectVmLabels::new(project, "db"))
                .set(1.0);
        }
        let t = 1_700_000_000_000;
        history.append(&m.sample(t)).unwrap();
        let project = Project {
            name: "shop".into(),
            ..Project::default()
        };
        let spec = alert::alerts_spec(&project).unwrap();
        let found = |name: &str| -> Vec<String> {
            let rule = builtin_rules(&spec, "shop")
                .into_iter()
                .find(|r| r.name == name)
                .unwrap();
            let expr = query::parse(&rule.expr).unwrap();
            let Ok(Value::Vector(v)) = query::instant(&history, &expr, t, &QueryOptions::default())
            else {
                panic!("{name}: not a vector");
            };
            let mut out: Vec<String> = v
                .iter()
                .map(|s| {
                    assert_eq!(s.labels.get("project"), Some("shop"), "{name}");
                    ["pipeline", "host", "vm"]
                        .iter()
                        .find_map(|k| s.labels.get(k))
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(found("PipelineFailed"), ["ci"]);
        assert_eq!(found("HostUnreachable"), ["b"]);
        assert_eq!(found("HostDiskSpaceLow"), ["c"]);
        assert_eq!(found("VmStopped"), ["db"]);
    }
}
