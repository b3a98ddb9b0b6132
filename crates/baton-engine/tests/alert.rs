//! Alerting driven with a scripted clock: the `alerts:` section read from real files (and its
//! located errors), the rules' state machine, and notification grouping with silences.

use std::collections::{BTreeMap, BTreeSet};

use baton_engine::alert::{
    alerts_spec, check_exprs, delivered, drop_rules, evaluate, fingerprint, notify, AlertRule,
    AlertsSpec, AlertsState, BuiltinRule, EvalError, GroupBy, Labels, Matcher, Notification,
    NotifyState, Phase, ReceiverKind, Sample, Silence, Status, Transition,
};
use baton_spec::{load, LoadOptions, Project};

// ---------------------------------------------------------------- helpers

fn project(yaml: &str) -> Result<Project, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("baton.yaml"), yaml).map_err(|e| e.to_string())?;
    load(&LoadOptions {
        files: vec![],
        working_dir: dir.path().to_path_buf(),
        project_name: Some("t".into()),
        profiles: vec![],
        env_files: vec![],
        environment: BTreeMap::new(),
        enable_services: vec![],
    })
    .map_err(|e| e.to_string())
}

fn read(yaml: &str) -> Result<AlertsSpec, String> {
    alerts_spec(&project(yaml)?).map_err(|e| e.to_string())
}

fn spec(yaml: &str) -> AlertsSpec {
    read(yaml).expect("a valid alerts section")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels(pairs),
        value,
    }
}

const MIN: u64 = 60_000;

/// Alerting as the daemon runs it: every `tick` evaluates each rule with the samples given
/// for it (none: the condition is false), then notifies and delivers every notification
/// (unless told that delivery fails).
struct Alerting {
    spec: AlertsSpec,
    rules: AlertsState,
    groups: NotifyState,
    silences: Vec<Silence>,
    deliver: bool,
}

impl Alerting {
    fn new(spec: AlertsSpec) -> Alerting {
        Alerting {
            spec,
            rules: AlertsState::default(),
            groups: NotifyState::default(),
            silences: Vec::new(),
            deliver: true,
        }
    }

    fn tick(
        &mut self,
        now: u64,
        samples: &[(&str, Vec<Sample>)],
    ) -> (Vec<Transition>, Vec<Notification>) {
        let mut transitions = Vec::new();
        for rule in &self.spec.rules {
            let given = samples
                .iter()
                .find(|(name, _)| *name == rule.name)
                .map(|(_, s)| s.as_slice())
                .unwrap_or(&[]);
            let (state, t) = evaluate(&self.rules, rule, given, now).expect("evaluates");
            self.rules = state;
            transitions.extend(t);
        }
        // The state is plain data: it survives a trip through the store.
        let text = serde_json::to_string(&self.rules).expect("serialises");
        let back: AlertsState = serde_json::from_str(&text).expect("reads back");
        assert_eq!(
            back.alerts.keys().collect::<Vec<_>>(),
            self.rules.alerts.keys().collect::<Vec<_>>()
        );
        let (groups, sent) = notify(&self.spec, &self.groups, &self.rules, &self.silences, now);
        self.groups = groups;
        if self.deliver {
            for n in &sent {
                self.groups = delivered(&self.groups, n);
            }
        }
        (transitions, sent)
    }
}

fn phases(ts: &[Transition]) -> Vec<(String, Phase, Phase)> {
    ts.iter()
        .map(|t| {
            (
                t.labels.get("service").cloned().unwrap_or_default(),
                t.from,
                t.to,
            )
        })
        .collect()
}

/// Per notification: status, firing services, resolved services.
fn summary(ns: &[Notification]) -> Vec<(Status, Vec<String>, Vec<String>)> {
    let services = |list: &[baton_engine::alert::AlertView]| {
        list.iter()
            .map(|a| a.labels.get("service").cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    ns.iter()
        .map(|n| (n.status, services(&n.firing), services(&n.resolved)))
        .collect()
}

const ONE_RULE: &str = r#"
alerts:
  receivers:
    ops: {webhook: "http://127.0.0.1:9/hook"}
  route: {receiver: ops, group_by: [alertname]}
  rules:
    HighErrorRate:
      expr: 'errors > 0.05'
      for: 1m
      keep_firing_for: 2m
      labels: {severity: page, team: '{{ .Labels.service | toUpper }}'}
      annotations:
        summary: '{{ $$labels.service }} fails {{ $$value | humanizePercentage }} of requests'
"#;

// ---------------------------------------------------------------- the section

#[test]
fn every_key_is_typed() {
    let s = spec(
        r#"
x-baton:
  alerts:
    receivers:
      ops: {webhook: https://hooks.example.com/baton}
      chat: {slack: "https://hooks.slack.com/services/T/B/X", send_resolved: false}
      mail:
        email: {to: [ops@example.com, oncall@example.com], from: baton@example.com,
                smtp: "smtp.example.com:587", username: baton, password_env: SMTP_PASSWORD}
    route: {receiver: chat, group_by: [alertname, service], group_wait: 10s,
            group_interval: 1m, repeat_interval: 1h}
    rules:
      Slow:
        expr: histogram_quantile(0.95, x) > 0.5
        for: 5m
    builtin: {crash_looping: false, disk_space_low: false, vm_stopped: true}
"#,
    );
    assert_eq!(s.receivers.len(), 3);
    assert_eq!(
        s.receivers["mail"].kind,
        ReceiverKind::Email {
            to: vec!["ops@example.com".into(), "oncall@example.com".into()],
            from: "baton@example.com".into(),
            smtp_host: "smtp.example.com".into(),
            smtp_port: 587,
            username: Some("baton".into()),
            password_env: Some("SMTP_PASSWORD".into()),
        }
    );
    assert!(s.receivers["ops"].send_resolved);
    assert!(!s.receivers["chat"].send_resolved);
    let route = s.route.as_ref().expect("a route");
    assert_eq!(route.receiver, "chat");
    assert_eq!(
        route.group_by,
        GroupBy::Labels(vec!["alertname".into(), "service".into()])
    );
    assert_eq!(
        (
            route.group_wait_ms,
            route.group_interval_ms,
            route.repeat_interval_ms
        ),
        (10_000, 60_000, 3_600_000)
    );
    assert_eq!(s.rules.len(), 1);
    assert_eq!(s.rules[0].expr, "histogram_quantile(0.95, x) > 0.5");
    assert_eq!(s.rules[0].for_ms, 300_000);
    assert!(!s.builtin_on(BuiltinRule::CrashLooping));
    assert!(!s.builtin_on(BuiltinRule::DiskSpaceLow));
    assert!(s.builtin_on(BuiltinRule::VmStopped));
    assert_eq!(s.builtin.len(), 6);
}

#[test]
fn defaults_are_alertmanagers() {
    // No section: nothing to notify, every built-in rule on.
    let s = spec("services: {web: {image: x}}\n");
    assert!(s.route.is_none() && s.rules.is_empty());
    assert_eq!(s.builtin.len(), BuiltinRule::ALL.len());
    // One receiver and no route: it is the route, with Alertmanager's timings and one
    // group for everything.
    let s = spec("alerts:\n  receivers:\n    ops: {webhook: http://localhost:8080/x}\n");
    let route = s.route.expect("a default route");
    assert_eq!(route.receiver, "ops");
    assert_eq!(route.group_by, GroupBy::Labels(vec![]));
    assert_eq!(
        (
            route.group_wait_ms,
            route.group_interval_ms,
            route.repeat_interval_ms
        ),
        (30_000, 300_000, 14_400_000)
    );
    let s = spec("alerts:\n  receivers: {a: {webhook: 'http://h/x'}}\n  route: {receiver: a, group_by: ['...']}\n");
    assert_eq!(s.route.map(|r| r.group_by), Some(GroupBy::All));
}

#[test]
fn errors_are_located_with_did_you_mean() {
    let cases: &[(&str, &str)] = &[
        (
            "alerts:\n  receivers:\n    ops: {webhook: 'http://h/x'}\n  route:\n    receiver: opz\n",
            "baton.yaml:5:5: alerts.route.receiver: no receiver \"opz\" (known: ops) (did you mean \"ops\"?)",
        ),
        (
            "alerts:\n  route: {receiver: ops}\n",
            "baton.yaml:2:11: alerts.route.receiver: no receiver \"ops\": alerts.receivers defines none",
        ),
        (
            "alerts:\n  receivers:\n    ops: {webhook: 'http://h/x'}\n  route: {receiver: ops, group_wait: soon}\n",
            "baton.yaml:4:26: alerts.route.group_wait: expected a duration like \"30s\", \"5m\" or \"4h\", found \"soon\"",
        ),
        (
            "alerts:\n  receivers:\n    ops: {webhook: 'http://h/x'}\n  route: {receiver: ops, repeat_interval: 0s}\n",
            "baton.yaml:4:26: alerts.route.repeat_interval: must be above 0",
        ),
        (
            "alerts:\n  recievers: {}\n",
            "baton.yaml:2:3: alerts.recievers: unknown key \"recievers\" (did you mean \"receivers\"?)",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      fro: 1m\n",
            "baton.yaml:5:7: alerts.rules.Down.fro: unknown key \"fro\" (did you mean \"for\"?)",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      for: 60\n",
            "baton.yaml:5:7: alerts.rules.Down.for: expected a duration like \"30s\", \"5m\" or \"4h\", found 60",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      for: 1m\n",
            "baton.yaml:3:5: alerts.rules.Down: a rule needs expr:",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      annotations: {summary: '{{ $$value | humanise }}'}\n",
            "baton.yaml:5:21: alerts.rules.Down.annotations.summary: template: at byte 12: unknown function \"humanise\" (did you mean \"humanize\"?) (known: humanize, humanize1024, humanizePercentage, humanizeDuration, printf, toUpper, toLower, title)",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      annotations: {summary: '{{ $value }}'}\n",
            "baton.yaml:5:21: alerts.rules.Down.annotations.summary: template: at byte 4: empty action: expected an expression (in a baton file `$` starts a variable: write $$value and $$labels.NAME, or .Value and .Labels.NAME)",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      labels: {alertname: x}\n",
            "baton.yaml:5:16: alerts.rules.Down.labels.alertname: alertname is the rule's name, set by baton",
        ),
        (
            "alerts:\n  rules:\n    Down:\n      expr: up == 0\n      labels: {team-name: x}\n",
            "baton.yaml:5:16: alerts.rules.Down.labels.team-name: \"team-name\" is not a label name: letters, digits and _, not starting with a digit or __",
        ),
        (
            "alerts:\n  rules:\n    ReplicaCrashLooping: {expr: x > 1}\n",
            "baton.yaml:3:5: alerts.rules.ReplicaCrashLooping: \"ReplicaCrashLooping\" is the built-in rule crash_looping's alert: pick another name",
        ),
        (
            "alerts:\n  rules:\n    high errors: {expr: x > 1}\n",
            "baton.yaml:3:5: alerts.rules.high errors: \"high errors\" is not a valid alert name: 1 to 128 characters, no blanks or control characters",
        ),
        (
            "alerts:\n  builtin: {crash_loop: false}\n",
            "baton.yaml:2:13: alerts.builtin.crash_loop: no built-in rule \"crash_loop\" (known: crash_looping, replica_unhealthy, rollout_failed, pipeline_failed, host_unreachable, vm_stopped, disk_space_low, certificate_failing) (did you mean \"crash_looping\"?)",
        ),
        (
            "alerts:\n  builtin: {vm_stopped: maybe}\n",
            "baton.yaml:2:13: alerts.builtin.vm_stopped: expected true or false",
        ),
        (
            "alerts:\n  receivers:\n    ops: {webhook: 'http://h/x', slack: 'https://h/y'}\n",
            "baton.yaml:3:5: alerts.receivers.ops: a receiver is one of webhook, slack or email, not webhook and slack",
        ),
        (
            "alerts:\n  receivers:\n    ops: {webhok: 'http://h/x'}\n",
            "baton.yaml:3:11: alerts.receivers.ops.webhok: unknown key \"webhok\" (did you mean \"webhook\"?)",
        ),
        (
            "alerts:\n  receivers:\n    ops: {webhook: 'h/x'}\n",
            "baton.yaml:3:11: alerts.receivers.ops.webhook: expected an http:// or https:// URL with a host",
        ),
        (
            "alerts:\n  receivers:\n    m: {email: {to: a@b.c, from: x@y.z, smtp: mailhost}}\n",
            "baton.yaml:3:41: alerts.receivers.m.email.smtp: expected host:port like smtp.example.com:587, found \"mailhost\"",
        ),
        (
            "alerts:\n  receivers:\n    m: {email: {to: nobody, from: x@y.z, smtp: 'h:25'}}\n",
            "baton.yaml:3:17: alerts.receivers.m.email.to: \"nobody\" is not an email address",
        ),
        (
            "alerts:\n  receivers:\n    m: {email: {to: a@b.c, from: x@y.z, smtp: 'h:25', username: u, password_env: 'my password'}}\n",
            "baton.yaml:3:68: alerts.receivers.m.email.password_env: \"my password\" is not an environment variable name (the password itself never goes in the file)",
        ),
        (
            "alerts:\n  receivers:\n    a: {webhook: 'http://h/x'}\n    b: {webhook: 'http://h/y'}\n",
            "baton.yaml:1:1: alerts: there are 2 receivers and no route: add route: {receiver: NAME}",
        ),
        (
            "alerts:\n  receivers: {a: {webhook: 'http://h/x'}}\n  route: {receiver: a, group_by: ['...', service]}\n",
            "baton.yaml:3:24: alerts.route.group_by: '...' groups by every label and stands alone",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(yaml, want)| {
            let got = read(yaml).err().unwrap_or_else(|| "no error".into());
            (got != *want).then(|| format!("{yaml}\n  want: {want}\n  got:  {got}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_file_check_reports_alerts_and_autoscale_too() {
    let p = project("alerts:\n  route: {receiver: ops}\n").expect("loads");
    assert!(baton_engine::check::project(&p)
        .unwrap_err()
        .to_string()
        .contains("alerts.route.receiver: no receiver \"ops\""));
    let p = project(
        "services:\n  web:\n    image: x\n    x-baton:\n      autoscale:\n        max: 4\n        metrics: [{rps: 100}]\n",
    )
    .expect("loads");
    assert_eq!(
        baton_engine::check::project(&p).unwrap_err().to_string(),
        "baton.yaml:7:20: services.web.x-baton.autoscale.metrics[0].rps: rps is measured by baton's proxy, which only runs in front of a service with a published port and x-baton.rollout"
    );
}

#[test]
fn exprs_are_checked_by_the_parser_the_caller_passes() {
    let p = project(
        "alerts:\n  rules:\n    A: {expr: 'up == 0'}\n    B:\n      expr: 'rate(x[5m] > 1'\n",
    )
    .expect("loads");
    let s = alerts_spec(&p).expect("reads");
    let parse = |e: &str| {
        if e.matches('(').count() == e.matches(')').count() {
            Ok(())
        } else {
            Err("unclosed parenthesis".to_string())
        }
    };
    assert_eq!(
        check_exprs(&p, &s, parse).unwrap_err().to_string(),
        "baton.yaml:5:7: alerts.rules.B.expr: unclosed parenthesis"
    );
}

// ---------------------------------------------------------------- the rules

#[test]
fn pending_firing_kept_firing_resolved_forgotten() {
    let mut a = Alerting::new(spec(ONE_RULE));
    let web = || {
        vec![(
            "HighErrorRate",
            vec![sample(
                &[("__name__", "errors"), ("service", "web")],
                0.0712,
            )],
        )]
    };
    let (t, _) = a.tick(0, &web());
    assert_eq!(
        phases(&t),
        [("web".into(), Phase::Inactive, Phase::Pending)]
    );
    let alert = a.rules.alerts.values().next().expect("an alert").clone();
    assert_eq!(
        alert.labels,
        labels(&[
            ("alertname", "HighErrorRate"),
            ("service", "web"),
            ("severity", "page"),
            ("team", "WEB"),
        ])
    );
    assert_eq!(alert.fingerprint, fingerprint(&alert.labels));
    assert_eq!(alert.annotations["summary"], "web fails 7.12% of requests");
    // Not yet `for` (1m).
    assert_eq!(a.tick(59_999, &web()).0, []);
    let (t, _) = a.tick(MIN, &web());
    assert_eq!(phases(&t), [("web".into(), Phase::Pending, Phase::Firing)]);
    // The condition clears at 2m: kept firing for 2m.
    assert_eq!(a.tick(2 * MIN, &[]).0, []);
    // Back at 2m30s: still firing, the keep-firing clock starts over.
    assert_eq!(a.tick(150_000, &web()).0, []);
    assert_eq!(a.tick(3 * MIN, &[]).0, []);
    assert_eq!(a.tick(299_999, &[]).0, []);
    let (t, _) = a.tick(5 * MIN, &[]);
    assert_eq!(phases(&t), [("web".into(), Phase::Firing, Phase::Resolved)]);
    assert_eq!(t[0].value, 0.0712);
    // Kept 15 minutes after resolving, then forgotten.
    assert_eq!(a.tick(20 * MIN, &[]).0, []);
    let (t, _) = a.tick(20 * MIN + 1, &[]);
    assert_eq!(
        phases(&t),
        [("web".into(), Phase::Resolved, Phase::Inactive)]
    );
    assert!(a.rules.alerts.is_empty());
}

#[test]
fn a_pending_alert_that_clears_never_fires() {
    let mut a = Alerting::new(spec(ONE_RULE));
    let web = vec![("HighErrorRate", vec![sample(&[("service", "web")], 0.2)])];
    a.tick(0, &web);
    let (t, n) = a.tick(30_000, &[]);
    assert_eq!(
        phases(&t),
        [("web".into(), Phase::Pending, Phase::Inactive)]
    );
    assert!(n.is_empty() && a.rules.alerts.is_empty());
}

#[test]
fn without_for_an_alert_fires_at_once_and_comes_back_as_a_new_one() {
    let s = spec("alerts:\n  rules:\n    Down: {expr: up == 0}\n");
    let rule = &s.rules[0];
    let x = [sample(&[("service", "db")], 0.0)];
    let (st, t) = evaluate(&AlertsState::default(), rule, &x, 1_000).expect("evaluates");
    assert_eq!(
        phases(&t),
        [
            ("db".into(), Phase::Inactive, Phase::Pending),
            ("db".into(), Phase::Pending, Phase::Firing)
        ]
    );
    let (st, t) = evaluate(&st, rule, &[], 2_000).expect("evaluates");
    assert_eq!(phases(&t), [("db".into(), Phase::Firing, Phase::Resolved)]);
    // Back before it is forgotten: a new alert, pending (and firing) again.
    let (st, t) = evaluate(&st, rule, &x, 3_000).expect("evaluates");
    assert_eq!(
        phases(&t),
        [
            ("db".into(), Phase::Resolved, Phase::Pending),
            ("db".into(), Phase::Pending, Phase::Firing)
        ]
    );
    let a = st.alerts.values().next().expect("an alert");
    assert_eq!(
        (a.active_since_ms, a.fired_at_ms, a.resolved_at_ms),
        (3_000, Some(3_000), None)
    );
}

#[test]
fn two_series_with_the_same_labels_refuse_the_evaluation() {
    let s = spec("alerts:\n  rules:\n    Down: {expr: up == 0, labels: {service: all}}\n");
    let out = evaluate(
        &AlertsState::default(),
        &s.rules[0],
        &[
            sample(&[("service", "a")], 0.0),
            sample(&[("service", "b")], 0.0),
        ],
        0,
    );
    assert_eq!(
        out,
        Err(EvalError::DuplicateLabels {
            rule: "Down".into(),
            labels: labels(&[("alertname", "Down"), ("service", "all")]),
        })
    );
}

#[test]
fn alerts_of_a_rule_gone_from_the_file_are_settled() {
    let s = spec("alerts:\n  rules:\n    A: {expr: x}\n    B: {expr: y, for: 1h}\n");
    let st = AlertsState::default();
    let (st, _) = evaluate(&st, &s.rules[0], &[sample(&[("service", "a")], 1.0)], 0).expect("ok");
    let (st, _) = evaluate(&st, &s.rules[1], &[sample(&[("service", "b")], 1.0)], 0).expect("ok");
    let (st, t) = drop_rules(&st, &BTreeSet::new(), 1_000);
    let mut got = phases(&t);
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        got,
        [
            ("a".into(), Phase::Firing, Phase::Resolved),
            ("b".into(), Phase::Pending, Phase::Inactive)
        ]
    );
    assert_eq!(st.alerts.len(), 1);
    let (st, t) = drop_rules(&st, &BTreeSet::new(), 1_000 + 15 * MIN + 1);
    assert_eq!(phases(&t), [("a".into(), Phase::Resolved, Phase::Inactive)]);
    assert!(st.alerts.is_empty());
}

#[test]
fn the_state_reads_back_with_any_value() {
    let s = spec("alerts:\n  rules:\n    A: {expr: x}\n");
    let (st, _) = evaluate(
        &AlertsState::default(),
        &s.rules[0],
        &[
            sample(&[("k", "nan")], f64::NAN),
            sample(&[("k", "inf")], f64::INFINITY),
        ],
        0,
    )
    .expect("evaluates");
    let text = serde_json::to_string(&st).expect("serialises");
    assert!(
        text.contains("\"NaN\"") && text.contains("\"+Inf\""),
        "{text}"
    );
    let back: AlertsState = serde_json::from_str(&text).expect("reads back");
    let values: Vec<String> = back.alerts.values().map(|a| a.value.to_string()).collect();
    assert_eq!(values.len(), 2);
    assert!(values.contains(&"NaN".to_string()) && values.contains(&"inf".to_string()));
}

// ---------------------------------------------------------------- notifications

const GROUPED: &str = r#"
alerts:
  receivers:
    ops: {webhook: "http://127.0.0.1:9/hook"}
  route: {receiver: ops, group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h}
  rules:
    Down: {expr: up == 0}
"#;

fn down(services: &[&str]) -> Vec<(&'static str, Vec<Sample>)> {
    vec![(
        "Down",
        services
            .iter()
            .map(|s| sample(&[("service", s)], 0.0))
            .collect(),
    )]
}

#[test]
fn a_group_waits_then_notifies_changes_and_repeats() {
    let mut a = Alerting::new(spec(GROUPED));
    // web goes down at 0: the group waits 30 s.
    assert!(a.tick(0, &down(&["web"])).1.is_empty());
    assert!(a.tick(15_000, &down(&["web"])).1.is_empty());
    let (_, n) = a.tick(30_000, &down(&["web"]));
    assert_eq!(summary(&n), [(Status::Firing, vec!["web".into()], vec![])]);
    assert_eq!(n[0].group_key, "ops:{alertname=\"Down\"}");
    assert_eq!(n[0].group_labels, labels(&[("alertname", "Down")]));
    assert_eq!(
        n[0].common_labels,
        labels(&[("alertname", "Down"), ("service", "web")])
    );
    assert_eq!(n[0].firing[0].starts_at_ms, 0);
    // api joins at 1m: nothing until the group's interval (30 s + 5 m).
    let mut t = 60_000;
    while t < 330_000 {
        assert!(a.tick(t, &down(&["web", "api"])).1.is_empty(), "at {t}");
        t += 15_000;
    }
    let (_, n) = a.tick(330_000, &down(&["web", "api"]));
    assert_eq!(
        summary(&n),
        [(Status::Firing, vec!["api".into(), "web".into()], vec![])]
    );
    assert_eq!(n[0].common_labels, labels(&[("alertname", "Down")]));
    // Nothing changes: no notification until 4 h have passed since the last one.
    let mut t = 330_000 + 300_000;
    let mut repeats = Vec::new();
    while t <= 330_000 + 4 * 3_600_000 + 300_000 {
        let (_, n) = a.tick(t, &down(&["web", "api"]));
        if !n.is_empty() {
            repeats.push(t);
        }
        t += 300_000;
    }
    // The first flush strictly after 4 h (Alertmanager's "before now - repeat").
    assert_eq!(repeats, [330_000 + 4 * 3_600_000 + 300_000]);
}

#[test]
fn resolved_alerts_are_notified_once() {
    let mut a = Alerting::new(spec(GROUPED));
    a.tick(0, &down(&["web", "api"]));
    assert_eq!(a.tick(30_000, &down(&["web", "api"])).1.len(), 1);
    // api recovers at 1m; the group's next flush (5m30s) says so.
    a.tick(60_000, &down(&["web"]));
    let (_, n) = a.tick(330_000, &down(&["web"]));
    assert_eq!(
        summary(&n),
        [(Status::Firing, vec!["web".into()], vec!["api".into()])]
    );
    assert_eq!(n[0].resolved[0].ends_at_ms, Some(60_000));
    // web recovers: the next flush is the all-resolved message, then silence.
    a.tick(400_000, &[]);
    let (_, n) = a.tick(630_000, &[]);
    assert_eq!(
        summary(&n),
        [(Status::Resolved, vec![], vec!["api".into(), "web".into()])]
    );
    assert!(a.tick(930_000, &[]).1.is_empty());
    // Once the resolved alerts are forgotten the group is gone.
    a.tick(30 * MIN, &[]);
    assert!(a.groups.groups.is_empty() && a.rules.alerts.is_empty());
}

#[test]
fn group_by_splits_and_dots_group_by_every_label() {
    let by_service = GROUPED.replace("group_by: [alertname]", "group_by: [service]");
    let mut a = Alerting::new(spec(&by_service));
    a.tick(0, &down(&["web", "api"]));
    let (_, n) = a.tick(30_000, &down(&["web", "api"]));
    assert_eq!(
        summary(&n),
        [
            (Status::Firing, vec!["api".into()], vec![]),
            (Status::Firing, vec!["web".into()], vec![])
        ]
    );
    assert_eq!(n[0].group_key, "ops:{service=\"api\"}");
    let every = GROUPED.replace("group_by: [alertname]", "group_by: ['...']");
    let mut a = Alerting::new(spec(&every));
    a.tick(0, &down(&["web", "api"]));
    assert_eq!(a.tick(30_000, &down(&["web", "api"])).1.len(), 2);
    // Without group_by: one group for all.
    let one = GROUPED.replace("group_by: [alertname], ", "");
    let mut a = Alerting::new(spec(&one));
    a.tick(0, &down(&["web", "api"]));
    let (_, n) = a.tick(30_000, &down(&["web", "api"]));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].group_key, "ops:{}");
}

#[test]
fn silences_mute_matching_alerts_while_active() {
    let mut a = Alerting::new(spec(GROUPED));
    a.silences.push(Silence {
        id: "maintenance".into(),
        matchers: vec![Matcher::parse("service=~\"web|db\"").expect("a matcher")],
        starts_at_ms: 0,
        ends_at_ms: 20 * MIN,
        comment: "moving the database".into(),
        created_by: "ana".into(),
    });
    a.tick(0, &down(&["web", "api"]));
    let (_, n) = a.tick(30_000, &down(&["web", "api"]));
    assert_eq!(summary(&n), [(Status::Firing, vec!["api".into()], vec![])]);
    // api recovers; web, silenced, changes nothing.
    a.tick(60_000, &down(&["web"]));
    let (_, n) = a.tick(330_000, &down(&["web"]));
    assert_eq!(
        summary(&n),
        [(Status::Resolved, vec![], vec!["api".into()])]
    );
    // Only silenced alerts: nothing at all.
    let mut t = 630_000;
    while t < 20 * MIN {
        assert!(a.tick(t, &down(&["web"])).1.is_empty(), "at {t}");
        t += 300_000;
    }
    // The silence ends at 20m: web is notified at the group's next flush.
    let (_, n) = a.tick(t, &down(&["web"]));
    assert_eq!(t, 1_230_000);
    assert_eq!(summary(&n), [(Status::Firing, vec!["web".into()], vec![])]);
}

#[test]
fn an_undelivered_notification_is_tried_again_at_the_next_flush() {
    let mut a = Alerting::new(spec(GROUPED));
    a.deliver = false;
    a.tick(0, &down(&["web"]));
    assert_eq!(a.tick(30_000, &down(&["web"])).1.len(), 1);
    assert!(a.tick(60_000, &down(&["web"])).1.is_empty());
    a.deliver = true;
    assert_eq!(a.tick(330_000, &down(&["web"])).1.len(), 1);
    assert!(a.tick(630_000, &down(&["web"])).1.is_empty());
}

#[test]
fn a_receiver_without_send_resolved_hears_only_of_firing_alerts() {
    let quiet = GROUPED.replace(
        "ops: {webhook: \"http://127.0.0.1:9/hook\"}",
        "ops: {webhook: \"http://127.0.0.1:9/hook\", send_resolved: false}",
    );
    let mut a = Alerting::new(spec(&quiet));
    a.tick(0, &down(&["web", "api"]));
    assert_eq!(a.tick(30_000, &down(&["web", "api"])).1.len(), 1);
    a.tick(60_000, &down(&["web"]));
    // api resolved: not a reason to notify this receiver.
    assert!(a.tick(330_000, &down(&["web"])).1.is_empty());
    a.tick(400_000, &[]);
    assert!(a.tick(630_000, &[]).1.is_empty());
    // A new firing alert is.
    a.tick(700_000, &down(&["db"]));
    let (_, n) = a.tick(930_000, &down(&["db"]));
    assert_eq!(summary(&n), [(Status::Firing, vec!["db".into()], vec![])]);
}

#[test]
fn a_group_of_long_firing_alerts_flushes_at_once() {
    // After a restart the notification state is gone but the alerts fired long ago.
    let mut a = Alerting::new(spec(GROUPED));
    a.tick(0, &down(&["web"]));
    a.groups = NotifyState::default();
    let (_, n) = a.tick(10 * MIN, &down(&["web"]));
    assert_eq!(summary(&n), [(Status::Firing, vec!["web".into()], vec![])]);
}

#[test]
fn without_a_receiver_nobody_is_notified() {
    let mut a = Alerting::new(spec("alerts:\n  rules:\n    Down: {expr: up == 0}\n"));
    a.tick(0, &down(&["web"]));
    assert!(a.tick(MIN, &down(&["web"])).1.is_empty());
    assert_eq!(a.rules.in_phase(Phase::Firing).count(), 1);
}

#[test]
fn a_rule_keeps_its_name_in_every_alert() {
    let s = spec(ONE_RULE);
    let rule: &AlertRule = &s.rules[0];
    assert_eq!(rule.name, "HighErrorRate");
    assert_eq!(rule.keep_firing_for_ms, 2 * MIN);
    assert_eq!(
        rule.annotations["summary"].source(),
        "{{ $labels.service }} fails {{ $value | humanizePercentage }} of requests"
    );
}

/// The documented example: a rule named with a hyphen, Slack and email receivers,
/// Alertmanager's route. (`$value` is written `$$value`: a baton file is interpolated as
/// a Compose file is, and a bare `$value` is refused with that advice.)
#[test]
fn the_documented_example_loads_as_written() {
    let s = spec(
        r#"alerts:
  receivers:
    ops: {webhook: http://127.0.0.1:9099/hook}
    chat: {slack: https://hooks.example/T0/B0/x}
    mail: {email: {to: [ops@example.com], from: baton@example.com, smtp: mail.example.com:587, username: baton, password_env: SMTP_PASSWORD}}
  route: {receiver: ops, group_by: [alertname, service], group_wait: 30s, group_interval: 5m, repeat_interval: 4h}
  rules:
    web-errors:
      expr: sum(rate(baton_proxy_requests_total{service="web",code=~"5.."}[1m])) / sum(rate(baton_proxy_requests_total{service="web"}[1m])) > 0.05
      for: 1m
      keep_firing_for: 2m
      labels: {severity: critical}
      annotations: {summary: "web answers {{ $$value | humanizePercentage }} errors"}
"#,
    );
    assert_eq!(s.rules.len(), 1);
    assert_eq!(s.rules[0].name, "web-errors");
    assert_eq!(s.rules[0].for_ms, 60_000);
    assert_eq!(s.receivers.len(), 3);
}
