//! The `alerts:` section typed (top-level or under `x-baton:`): receivers, the route, rules
//! and the built-in rules switched off, read from `project.baton["alerts"]` and validated.
//!
//! ```yaml
//! alerts:
//!   receivers:
//!     ops: {webhook: https://hooks.example.com/baton}
//!     chat: {slack: https://hooks.slack.com/services/T/B/X, send_resolved: false}
//!     mail: {email: {to: [ops@example.com], from: baton@example.com,
//!                    smtp: smtp.example.com:587, username: baton, password_env: SMTP_PASSWORD}}
//!   route: {receiver: ops, group_by: [alertname, service], group_wait: 30s,
//!           group_interval: 5m, repeat_interval: 4h}
//!   rules:
//!     HighErrorRate:
//!       expr: 'sum by (service) (rate(baton_requests_errors_total[5m])) > 0.05'
//!       for: 5m
//!       keep_firing_for: 2m
//!       labels: {severity: page}
//!       annotations: {summary: '{{ $$labels.service }} fails {{ $$value | humanizePercentage }}'}
//!   builtin: {crash_looping: false}
//! ```
//!
//! Templates are Prometheus's, but the file is a Compose file, where `$` starts a variable:
//! write `$$value` and `$$labels.service` (or `.Value` and `.Labels.service`).
//!
//! Every error is located (`file:line:column: alerts.route.receiver: …`) through
//! `Project::error_at`; unknown keys and names get a did-you-mean. A rule's `expr` is kept
//! as written: the query language belongs to the metrics crate, whose parser the caller
//! passes to `check_exprs` (the engine does not depend on it).

use std::collections::{BTreeMap, BTreeSet};

use baton_spec::{ErrorKind, Project, SpecError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::Template;
use super::{valid_label_name, Labels, ALERTNAME};
use crate::rollout::spec::duration_ms;

/// Alertmanager's default wait before a new group's first notification.
pub const DEFAULT_GROUP_WAIT_MS: u64 = 30_000;
/// Alertmanager's default wait before notifying about alerts added to a group.
pub const DEFAULT_GROUP_INTERVAL_MS: u64 = 300_000;
/// Alertmanager's default wait before sending the same notification again.
pub const DEFAULT_REPEAT_INTERVAL_MS: u64 = 4 * 3_600_000;

/// The whole `alerts:` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertsSpec {
    pub receivers: BTreeMap<String, Receiver>,
    /// Where notifications go; `None` when no receiver is defined (alerts are still
    /// evaluated and shown, nobody is notified).
    pub route: Option<Route>,
    /// In the order written.
    pub rules: Vec<AlertRule>,
    /// The built-in rules that stay on.
    pub builtin: BTreeSet<BuiltinRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// Whether resolved alerts are notified too (default true).
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// POSTs Alertmanager's webhook JSON.
    Webhook { url: String },
    /// Slack's incoming-webhook URL.
    Slack { url: String },
    Email {
        to: Vec<String>,
        from: String,
        smtp_host: String,
        smtp_port: u16,
        username: Option<String>,
        /// The environment variable holding the password, read when sending.
        password_env: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait_ms: u64,
    pub group_interval_ms: u64,
    pub repeat_interval_ms: u64,
}

/// Which labels make a group: the listed ones (none: one group for every alert, as
/// Alertmanager's default), or every label (`group_by: ['...']`: no grouping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Labels(Vec<String>),
    All,
}

/// One alerting rule. `labels` values and `annotations` are templates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    /// Also the `alertname` label of its alerts.
    pub name: String,
    /// The condition in the metrics crate's query language, as written; its output
    /// vector is the set of alerts.
    pub expr: String,
    /// How long the condition must hold before an alert fires (`for`).
    pub for_ms: u64,
    /// How long an alert keeps firing after the condition cleared.
    pub keep_firing_for_ms: u64,
    pub labels: BTreeMap<String, Template>,
    pub annotations: BTreeMap<String, Template>,
}

/// The rules baton brings; each on unless `builtin: {NAME: false}`. The daemon defines
/// their conditions (they watch baton's own state, not a query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinRule {
    CrashLooping,
    ReplicaUnhealthy,
    RolloutFailed,
    PipelineFailed,
    HostUnreachable,
    VmStopped,
    DiskSpaceLow,
    CertificateFailing,
}

impl BuiltinRule {
    pub const ALL: [BuiltinRule; 8] = [
        BuiltinRule::CrashLooping,
        BuiltinRule::ReplicaUnhealthy,
        BuiltinRule::RolloutFailed,
        BuiltinRule::PipelineFailed,
        BuiltinRule::HostUnreachable,
        BuiltinRule::VmStopped,
        BuiltinRule::DiskSpaceLow,
        BuiltinRule::CertificateFailing,
    ];

    /// The key under `builtin:`.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinRule::CrashLooping => "crash_looping",
            BuiltinRule::ReplicaUnhealthy => "replica_unhealthy",
            BuiltinRule::RolloutFailed => "rollout_failed",
            BuiltinRule::PipelineFailed => "pipeline_failed",
            BuiltinRule::HostUnreachable => "host_unreachable",
            BuiltinRule::VmStopped => "vm_stopped",
            BuiltinRule::DiskSpaceLow => "disk_space_low",
            BuiltinRule::CertificateFailing => "certificate_failing",
        }
    }

    /// The `alertname` its alerts carry.
    pub fn alertname(self) -> &'static str {
        match self {
            BuiltinRule::CrashLooping => "ReplicaCrashLooping",
            BuiltinRule::ReplicaUnhealthy => "ReplicaUnhealthy",
            BuiltinRule::RolloutFailed => "RolloutFailed",
            BuiltinRule::PipelineFailed => "PipelineFailed",
            BuiltinRule::HostUnreachable => "HostUnreachable",
            BuiltinRule::VmStopped => "VmStopped",
            BuiltinRule::DiskSpaceLow => "HostDiskSpaceLow",
            BuiltinRule::CertificateFailing => "CertificateFailing",
        }
    }

    /// What it watches.
    pub fn description(self) -> &'static str {
        match self {
            BuiltinRule::CrashLooping => "a replica is crash-looping",
            BuiltinRule::ReplicaUnhealthy => "a replica has been unhealthy for 1m",
            BuiltinRule::RolloutFailed => "a rollout was rolled back or paused",
            BuiltinRule::PipelineFailed => "a pipeline run failed",
            BuiltinRule::HostUnreachable => "a fleet host is unreachable",
            BuiltinRule::VmStopped => "a VM stopped without being asked to",
            BuiltinRule::DiskSpaceLow => "a host has less than 10% disk free",
            BuiltinRule::CertificateFailing => {
                "a certificate the edge serves expired, or could not be issued or renewed"
            }
        }
    }
}

impl AlertsSpec {
    /// The receiver the route names.
    pub fn route_receiver(&self) -> Option<&Receiver> {
        self.route
            .as_ref()
            .and_then(|r| self.receivers.get(&r.receiver))
    }

    pub fn builtin_on(&self, rule: BuiltinRule) -> bool {
        self.builtin.contains(&rule)
    }
}

const KEYS: &[&str] = &["receivers", "route", "rules", "builtin"];
const RECEIVER_KINDS: &[&str] = &["webhook", "slack", "email"];
const RECEIVER_KEYS: &[&str] = &["webhook", "slack", "email", "send_resolved"];
const EMAIL_KEYS: &[&str] = &["to", "from", "smtp", "username", "password_env"];
const ROUTE_KEYS: &[&str] = &[
    "receiver",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
];
const RULE_KEYS: &[&str] = &["expr", "for", "keep_firing_for", "labels", "annotations"];

/// Reads and validates the project's `alerts:` section (an empty spec, every built-in
/// rule on, when there is none).
pub fn alerts_spec(project: &Project) -> Result<AlertsSpec, SpecError> {
    let empty = Map::new();
    let r = Reader {
        section: baton_spec::Section::new(project),
    };
    let path = "alerts";
    let map = match project.baton.get("alerts") {
        None | Some(Value::Null) => &empty,
        Some(section) => r.map(section, path)?,
    };
    r.keys(map, KEYS, path)?;

    let mut receivers = BTreeMap::new();
    if let Some(v) = map.get("receivers").filter(|v| !v.is_null()) {
        let rpath = format!("{path}.receivers");
        for (name, rv) in r.map(v, &rpath)? {
            let here = format!("{rpath}.{name}");
            r.name(name, &here, "a receiver")?;
            receivers.insert(name.clone(), r.receiver(name, rv, &here)?);
        }
    }
    let route = match map.get("route").filter(|v| !v.is_null()) {
        Some(v) => Some(r.route(v, &format!("{path}.route"), &receivers)?),
        None if receivers.len() > 1 => {
            return Err(r.err(
                ErrorKind::Invalid,
                path,
                format!(
                    "there are {} receivers and no route: add route: {{receiver: NAME}}",
                    receivers.len()
                ),
            ))
        }
        None => receivers.keys().next().map(|only| Route {
            receiver: only.clone(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait_ms: DEFAULT_GROUP_WAIT_MS,
            group_interval_ms: DEFAULT_GROUP_INTERVAL_MS,
            repeat_interval_ms: DEFAULT_REPEAT_INTERVAL_MS,
        }),
    };
    let mut rules = Vec::new();
    if let Some(v) = map.get("rules").filter(|v| !v.is_null()) {
        let rpath = format!("{path}.rules");
        for (name, rv) in r.map(v, &rpath)? {
            let here = format!("{rpath}.{name}");
            rules.push(r.rule(name, rv, &here)?);
        }
    }
    let mut builtin: BTreeSet<BuiltinRule> = BuiltinRule::ALL.into_iter().collect();
    if let Some(v) = map.get("builtin").filter(|v| !v.is_null()) {
        let bpath = format!("{path}.builtin");
        let names: Vec<&str> = BuiltinRule::ALL.iter().map(|b| b.name()).collect();
        for (name, on) in r.map(v, &bpath)? {
            let here = format!("{bpath}.{name}");
            let Some(rule) = BuiltinRule::ALL.into_iter().find(|b| b.name() == name) else {
                let mut e = r.err(
                    ErrorKind::UnknownKey,
                    &here,
                    format!("no built-in rule \"{name}\" (known: {})", names.join(", ")),
                );
                e.hint = baton_spec::suggest(name, names.iter().copied());
                return Err(e);
            };
            if !r.bool(on, &here)? {
                builtin.remove(&rule);
            }
        }
    }
    Ok(AlertsSpec {
        receivers,
        route,
        rules,
        builtin,
    })
}

/// Checks every rule's `expr` with `parse` (the metrics crate's parser, which the engine
/// does not know), locating a refusal at `alerts.rules.NAME.expr`.
pub fn check_exprs(
    project: &Project,
    spec: &AlertsSpec,
    parse: impl Fn(&str) -> Result<(), String>,
) -> Result<(), SpecError> {
    for rule in &spec.rules {
        parse(&rule.expr).map_err(|message| {
            project.error_at(
                ErrorKind::Invalid,
                &format!("alerts.rules.{}.expr", rule.name),
                message,
            )
        })?;
    }
    Ok(())
}

/// The typed reader of `alerts:`, over the spec's located primitives.
struct Reader<'a> {
    section: baton_spec::Section<'a>,
}

impl<'a> std::ops::Deref for Reader<'a> {
    type Target = baton_spec::Section<'a>;
    fn deref(&self) -> &Self::Target {
        &self.section
    }
}

impl Reader<'_> {
    /// Durations are strings with a unit, as everywhere in baton: `30s`, `5m`, `4h`.
    fn duration(&self, v: &Value, path: &str) -> Result<u64, SpecError> {
        duration_ms(v).ok_or_else(|| {
            self.err(
                ErrorKind::Invalid,
                path,
                format!(
                    "expected a duration like \"30s\", \"5m\" or \"4h\", found {}",
                    crate::rollout::spec::found(v)
                ),
            )
        })
    }

    fn name(&self, name: &str, path: &str, what: &str) -> Result<(), SpecError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if ok {
            Ok(())
        } else {
            Err(self.err(
                ErrorKind::Invalid,
                path,
                format!("\"{name}\" is not a valid name for {what}: letters, digits, _, - and ."),
            ))
        }
    }

    fn url(&self, v: &Value, path: &str) -> Result<String, SpecError> {
        let s = self.string(v, path)?;
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with('/')
                    && !s.contains(char::is_whitespace) =>
            {
                Ok(s)
            }
            _ => Err(self.err(
                ErrorKind::Invalid,
                path,
                "expected an http:// or https:// URL with a host",
            )),
        }
    }

    fn receiver(&self, name: &str, v: &Value, path: &str) -> Result<Receiver, SpecError> {
        let m = self.map(v, path)?;
        self.keys(m, RECEIVER_KEYS, path)?;
        let kinds: Vec<&str> = RECEIVER_KINDS
            .iter()
            .copied()
            .filter(|k| m.contains_key(*k))
            .collect();
        let kind =
            match kinds.as_slice() {
                [one] => *one,
                [] => return Err(self.err(
                    ErrorKind::Invalid,
                    path,
                    "a receiver needs one of webhook: URL, slack: URL or email: {to, from, smtp}",
                )),
                _ => {
                    return Err(self.err(
                        ErrorKind::Conflict,
                        path,
                        format!(
                            "a receiver is one of webhook, slack or email, not {}",
                            kinds.join(" and ")
                        ),
                    ))
                }
            };
        let at = format!("{path}.{kind}");
        let value = m.get(kind).unwrap_or(&Value::Null);
        let kind = match kind {
            "webhook" => ReceiverKind::Webhook {
                url: self.url(value, &at)?,
            },
            "slack" => ReceiverKind::Slack {
                url: self.url(value, &at)?,
            },
            _ => self.email(value, &at)?,
        };
        let send_resolved = match m.get("send_resolved") {
            None => true,
            Some(v) => self.bool(v, &format!("{path}.send_resolved"))?,
        };
        Ok(Receiver {
            name: name.to_string(),
            kind,
            send_resolved,
        })
    }

    fn email(&self, v: &Value, path: &str) -> Result<ReceiverKind, SpecError> {
        let m = self.map(v, path)?;
        self.keys(m, EMAIL_KEYS, path)?;
        let address = |v: &Value, at: &str| -> Result<String, SpecError> {
            let s = self.string(v, at)?;
            let ok = s.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && (host.contains('.') || host == "localhost")
            }) && !s.contains(char::is_whitespace);
            if ok {
                Ok(s)
            } else {
                Err(self.err(
                    ErrorKind::Invalid,
                    at,
                    format!("\"{s}\" is not an email address"),
                ))
            }
        };
        let required = |key: &str| {
            m.get(key)
                .ok_or_else(|| self.err(ErrorKind::Invalid, path, format!("email needs {key}:")))
        };
        let to_path = format!("{path}.to");
        let to = match required("to")? {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, x)| address(x, &format!("{to_path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
            Value::Array(_) => {
                return Err(self.err(
                    ErrorKind::Invalid,
                    &to_path,
                    "expected at least one address",
                ))
            }
            other => other
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(|a| address(&Value::String(a.trim().to_string()), &to_path))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let from = address(required("from")?, &format!("{path}.from"))?;
        let smtp_path = format!("{path}.smtp");
        let smtp = self.string(required("smtp")?, &smtp_path)?;
        let (smtp_host, smtp_port) = smtp
            .rsplit_once(':')
            .and_then(|(host, port)| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
                (!host.is_empty()).then(|| (host.to_string(), port))
            })
            .ok_or_else(|| {
                self.err(
                    ErrorKind::Invalid,
                    &smtp_path,
                    format!("expected host:port like smtp.example.com:587, found \"{smtp}\""),
                )
            })?;
        let username = m
            .get("username")
            .map(|v| self.string(v, &format!("{path}.username")))
            .transpose()?;
        let password_env = match m.get("password_env") {
            None => None,
            Some(v) => {
                let at = format!("{path}.password_env");
                let name = self.string(v, &at)?;
                let ok = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(self.err(
                        ErrorKind::Invalid,
                        &at,
                        format!("\"{name}\" is not an environment variable name (the password itself never goes in the file)"),
                    ));
                }
                Some(name)
            }
        };
        if username.is_some() != password_env.is_some() {
            return Err(self.err(
                ErrorKind::Invalid,
                path,
                "username and password_env go together",
            ));
        }
        Ok(ReceiverKind::Email {
            to,
            from,
            smtp_host,
            smtp_port,
            username,
            password_env,
        })
    }

    fn route(
        &self,
        v: &Value,
        path: &str,
        receivers: &BTreeMap<String, Receiver>,
    ) -> Result<Route, SpecError> {
        let m = self.map(v, path)?;
        self.keys(m, ROUTE_KEYS, path)?;
        let rpath = format!("{path}.receiver");
        let receiver = match m.get("receiver") {
            Some(v) => self.string(v, &rpath)?,
            None => return Err(self.err(ErrorKind::Invalid, path, "route needs receiver:")),
        };
        if !receivers.contains_key(&receiver) {
            let known: Vec<&str> = receivers.keys().map(String::as_str).collect();
            let mut e = self.err(
                ErrorKind::Undefined,
                &rpath,
                if known.is_empty() {
                    format!("no receiver \"{receiver}\": alerts.receivers defines none")
                } else {
                    format!("no receiver \"{receiver}\" (known: {})", known.join(", "))
                },
            );
            e.hint = baton_spec::suggest(&receiver, known.iter().copied());
            return Err(e);
        }
        let group_by = match m.get("group_by") {
            None | Some(Value::Null) => GroupBy::Labels(Vec::new()),
            Some(Value::Array(items)) => {
                let gpath = format!("{path}.group_by");
                let names = items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.string(x, &format!("{gpath}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if names.iter().any(|n| n == "...") {
                    if names.len() > 1 {
                        return Err(self.err(
                            ErrorKind::Invalid,
                            &gpath,
                            "'...' groups by every label and stands alone",
                        ));
                    }
                    GroupBy::All
                } else {
                    let mut seen = BTreeSet::new();
                    for (i, n) in names.iter().enumerate() {
                        let at = format!("{gpath}[{i}]");
                        if !valid_label_name(n) {
                            return Err(self.err(
                                ErrorKind::Invalid,
                                &at,
                                format!("\"{n}\" is not a label name"),
                            ));
                        }
                        if !seen.insert(n) {
                            return Err(self.err(
                                ErrorKind::Invalid,
                                &at,
                                format!("\"{n}\" is listed twice"),
                            ));
                        }
                    }
                    GroupBy::Labels(names)
                }
            }
            Some(_) => {
                return Err(self.err(
                    ErrorKind::Type,
                    &format!("{path}.group_by"),
                    "expected a list of label names, like [alertname, service]",
                ))
            }
        };
        let duration = |key: &str, default: u64, zero_ok: bool| -> Result<u64, SpecError> {
            match m.get(key) {
                None => Ok(default),
                Some(v) => {
                    let at = format!("{path}.{key}");
                    let ms = self.duration(v, &at)?;
                    if ms == 0 && !zero_ok {
                        return Err(self.err(ErrorKind::Invalid, &at, "must be above 0"));
                    }
                    Ok(ms)
                }
            }
        };
        Ok(Route {
            receiver,
            group_by,
            group_wait_ms: duration("group_wait", DEFAULT_GROUP_WAIT_MS, true)?,
            group_interval_ms: duration("group_interval", DEFAULT_GROUP_INTERVAL_MS, false)?,
            repeat_interval_ms: duration("repeat_interval", DEFAULT_REPEAT_INTERVAL_MS, false)?,
        })
    }

    fn rule(&self, name: &str, v: &Value, path: &str) -> Result<AlertRule, SpecError> {
        // The name is the `alertname` label's value (as Prometheus's `alert:`, any label
        // value): `web-errors` is fine; blanks and control characters are not.
        let valid = !name.is_empty()
            && name.chars().count() <= 128
            && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(self.err(
                ErrorKind::Invalid,
                path,
                format!("\"{name}\" is not a valid alert name: 1 to 128 characters, no blanks or control characters"),
            ));
        }
        if let Some(b) = BuiltinRule::ALL.iter().find(|b| b.alertname() == name) {
            return Err(self.err(
                ErrorKind::Conflict,
                path,
                format!(
                    "\"{name}\" is the built-in rule {}'s alert: pick another name",
                    b.name()
                ),
            ));
        }
        let m = self.map(v, path)?;
        self.keys(m, RULE_KEYS, path)?;
        let expr = match m.get("expr") {
            None => return Err(self.err(ErrorKind::Invalid, path, "a rule needs expr:")),
            Some(v) => {
                let at = format!("{path}.expr");
                let e = self.string(v, &at)?;
                if e.trim().is_empty() {
                    return Err(self.err(ErrorKind::Invalid, &at, "expr is empty"));
                }
                // The caller checks the query itself with `check_exprs`.
                e
            }
        };
        let for_ms = match m.get("for") {
            None => 0,
            Some(v) => self.duration(v, &format!("{path}.for"))?,
        };
        let keep_firing_for_ms = match m.get("keep_firing_for") {
            None => 0,
            Some(v) => self.duration(v, &format!("{path}.keep_firing_for"))?,
        };
        let labels = self.templates(m.get("labels"), &format!("{path}.labels"), true)?;
        let annotations =
            self.templates(m.get("annotations"), &format!("{path}.annotations"), false)?;
        Ok(AlertRule {
            name: name.to_string(),
            expr,
            for_ms,
            keep_firing_for_ms,
            labels,
            annotations,
        })
    }

    fn templates(
        &self,
        v: Option<&Value>,
        path: &str,
        labels: bool,
    ) -> Result<BTreeMap<String, Template>, SpecError> {
        let mut out = BTreeMap::new();
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        for (key, value) in self.map(v, path)? {
            let at = format!("{path}.{key}");
            if labels && !valid_label_name(key) {
                return Err(self.err(
                    ErrorKind::Invalid,
                    &at,
                    format!("\"{key}\" is not a label name: letters, digits and _, not starting with a digit or __"),
                ));
            }
            if labels && key == ALERTNAME {
                return Err(self.err(
                    ErrorKind::Invalid,
                    &at,
                    "alertname is the rule's name, set by baton",
                ));
            }
            if !labels && key.is_empty() {
                return Err(self.err(ErrorKind::Invalid, &at, "an annotation needs a name"));
            }
            let text = self.string(value, &at)?;
            let t = Template::parse(&text).map_err(|e| {
                let mut err = self.err(ErrorKind::Invalid, &at, e.to_string());
                // `$value` in a Compose file is an interpolation, gone by now.
                if !text.contains('$') {
                    err.hint = Some(
                        "in a baton file `$` starts a variable: write $$value and $$labels.NAME, or .Value and .Labels.NAME".into(),
                    );
                }
                err
            })?;
            out.insert(key.clone(), t);
        }
        Ok(out)
    }
}

/// The labels a rule's alert carries for one sample: the sample's own (less `__name__`),
/// then the rule's (expanded), then `alertname`.
pub(crate) fn alert_labels(rule: &AlertRule, sample: &Labels, value: f64) -> Labels {
    let mut out: Labels = sample
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, t) in &rule.labels {
        let v = t.render_or_error(sample, value);
        if v.is_empty() {
            // An empty label is no label, as in Prometheus.
            out.remove(k);
        } else {
            out.insert(k.clone(), v);
        }
    }
    out.insert(ALERTNAME.to_string(), rule.name.clone());
    out
}
