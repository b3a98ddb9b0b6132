//! The autoscale decider driven with a scripted clock and scripted load, asserting the
//! exact decisions and their reasons; the `x-baton.autoscale` reader's defaults and errors.

use baton_engine::autoscale::{
    autoscale_spec, decide, rollout_replicas, AutoscaleSpec, AutoscaleState, Behavior, Bound,
    Decision, Direction, Metric, MetricReason, MetricTarget, Observation, Reason, ReplicaUsage,
    Step, Target,
};
use baton_spec::Service;
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

fn service(v: Value) -> Service {
    serde_json::from_value(v).expect("test service")
}

fn spec(autoscale: Value) -> AutoscaleSpec {
    spec_of(json!({"baton": {"autoscale": autoscale}}))
}

fn spec_of(svc: Value) -> AutoscaleSpec {
    autoscale_spec(&service(svc))
        .expect("valid spec")
        .expect("an autoscale section")
}

fn spec_err(svc: Value) -> String {
    autoscale_spec(&service(svc)).unwrap_err().to_string()
}

/// A service behind baton's proxy, so `rps`, `p95` and `in_flight` are allowed.
fn proxied(autoscale: Value) -> Value {
    json!({
        "ports": [{"target": 80, "published": 8080}],
        "baton": {"rollout": {}, "autoscale": autoscale}
    })
}

/// `n` ready replicas, each using `cpus`.
fn cpu(now_ms: u64, n: u32, cpus: f64) -> Observation {
    Observation {
        now_ms,
        replicas: n,
        ready: n,
        usage: (0..n)
            .map(|i| ReplicaUsage {
                replica: format!("r{i}"),
                ready: true,
                cpus: Some(cpus),
                memory_bytes: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// A service being driven: each call is one sync period, and the daemon carries out
/// every decision (the next observation has the replicas decided).
struct Scaler {
    spec: AutoscaleSpec,
    state: AutoscaleState,
    replicas: u32,
    log: Vec<Decision>,
}

impl Scaler {
    fn new(spec: AutoscaleSpec, replicas: u32) -> Scaler {
        Scaler {
            spec,
            state: AutoscaleState::new(),
            replicas,
            log: Vec::new(),
        }
    }

    /// One decision with every replica using `total_cpus / replicas`.
    fn total_cpu(&mut self, now_ms: u64, total_cpus: f64) -> Decision {
        let per = total_cpus / f64::from(self.replicas.max(1));
        let o = cpu(now_ms, self.replicas, per);
        self.observe(o)
    }

    fn observe(&mut self, o: Observation) -> Decision {
        let (state, d) = decide(&self.spec, &self.state, &o);
        // The state is plain data: it survives a trip through the store.
        let text = serde_json::to_string(&state).expect("state serialises");
        self.state = serde_json::from_str(&text).expect("state reads back");
        assert_eq!(self.state, state);
        if let Some(n) = d.desired {
            self.replicas = n;
        }
        self.log.push(d.clone());
        d
    }
}

fn cpu_reason(target: f64, current: f64, rec: u32, within: bool) -> MetricReason {
    MetricReason {
        metric: Metric::Cpu,
        target,
        current: Some(current),
        recommendation: Some(rec),
        within_tolerance: within,
        missing_replicas: 0,
        not_ready_replicas: 0,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------- the spec

#[test]
fn defaults_are_the_hpa_v2_defaults() {
    let s = spec(json!({"max": 8}));
    assert_eq!(
        s,
        AutoscaleSpec {
            min: 1,
            max: 8,
            metrics: vec![MetricTarget {
                metric: Metric::Cpu,
                target: Target::Utilization {
                    percent: 80.0,
                    limit: 1.0
                },
            }],
            scale_up: Behavior {
                stabilization_ms: 0,
                max_step: vec![Step::Replicas(4), Step::Percent(100)],
                period_ms: 15_000,
            },
            scale_down: Behavior {
                stabilization_ms: 300_000,
                max_step: vec![Step::Percent(100)],
                period_ms: 15_000,
            },
        }
    );
    assert_eq!(autoscale_spec(&service(json!({"image": "x"}))), Ok(None));
}

#[test]
fn the_documented_example_reads() {
    let s = spec_of(proxied(json!({
        "min": 1, "max": 8,
        "metrics": [{"cpu": "70%"}, {"rps": 200}, {"p95": "150ms"}, {"memory": "512m"}, {"in_flight": 10}],
        "behavior": {
            "scale_up": {"stabilization": "0s", "max_step": 4, "period": "15s"},
            "scale_down": {"stabilization": "300s", "max_step": "100%", "period": "15s"}
        }
    })));
    let targets: Vec<(Metric, Target)> = s.metrics.iter().map(|m| (m.metric, m.target)).collect();
    assert_eq!(
        targets,
        [
            (
                Metric::Cpu,
                Target::Utilization {
                    percent: 70.0,
                    limit: 1.0
                }
            ),
            (Metric::Rps, Target::AverageValue { value: 200.0 }),
            (Metric::P95, Target::Value { value: 150.0 }),
            (
                Metric::Memory,
                Target::AverageValue {
                    value: 512.0 * 1024.0 * 1024.0
                }
            ),
            (Metric::InFlight, Target::AverageValue { value: 10.0 }),
        ]
    );
    assert_eq!(s.scale_up.max_step, [Step::Replicas(4)]);
    assert_eq!(s.scale_down.max_step, [Step::Percent(100)]);
}

#[test]
fn percentages_are_of_the_replica_limit() {
    let s = spec_of(json!({
        "deploy": {"resources": {"limits": {"cpus": 2.0, "memory": 1073741824u64}}},
        "baton": {"autoscale": {"max": 4, "metrics": [{"cpu": "50%"}, {"memory": "75%"}]}}
    }));
    assert_eq!(
        s.metrics[0].target,
        Target::Utilization {
            percent: 50.0,
            limit: 2.0
        }
    );
    assert_eq!(
        s.metrics[1].target,
        Target::Utilization {
            percent: 75.0,
            limit: 1073741824.0
        }
    );
    // Docker applies `cpus` and `mem_limit` after deploy's limits: they win.
    let s = spec_of(json!({
        "deploy": {"resources": {"limits": {"cpus": 2.0}}},
        "other": {"cpus": "0.5", "mem_limit": "256m"},
        "baton": {"autoscale": {"max": 4, "metrics": [{"cpu": "50%"}, {"memory": "50%"}]}}
    }));
    assert_eq!(
        s.metrics[0].target,
        Target::Utilization {
            percent: 50.0,
            limit: 0.5
        }
    );
    assert_eq!(
        s.metrics[1].target,
        Target::Utilization {
            percent: 50.0,
            limit: 268435456.0
        }
    );
}

#[test]
fn max_step_takes_a_count_a_percentage_a_list_or_zero() {
    let s = spec(json!({"max": 8, "behavior": {
        "scale_up": {"max_step": [2, "50%"], "period": "1m"},
        "scale_down": {"max_step": 0}
    }}));
    assert_eq!(s.scale_up.max_step, [Step::Replicas(2), Step::Percent(50)]);
    assert_eq!(s.scale_up.period_ms, 60_000);
    assert_eq!(s.scale_up.stabilization_ms, 0);
    assert!(s.scale_down.max_step.is_empty());
    assert_eq!(s.scale_down.stabilization_ms, 300_000);
}

#[test]
fn spec_errors_name_the_setting() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"baton": {"autoscale": {"min": 5, "max": 3}}}),
            "x-baton.autoscale.min: min 5 is above max 3",
        ),
        (
            json!({"baton": {"autoscale": {"min": -1, "max": 3}}}),
            "x-baton.autoscale.min: expected a whole number of replicas, 0 or more, found -1",
        ),
        (
            json!({"baton": {"autoscale": {"min": 1}}}),
            "x-baton.autoscale: max is missing: the most replicas autoscaling may run, e.g. max: 8",
        ),
        (
            json!({"baton": {"autoscale": {"max": 0}}}),
            "x-baton.autoscale.max: must be at least 1",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrcs": []}}}),
            "x-baton.autoscale.metrcs: unknown key \"metrcs\" (did you mean \"metrics\"?)",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"cpuu": "70%"}]}}}),
            "x-baton.autoscale.metrics[0].cpuu: unknown metric \"cpuu\" (did you mean \"cpu\"?) (known: cpu, memory, rps, p95, in_flight)",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"cpu": 70}]}}}),
            "x-baton.autoscale.metrics[0].cpu: expected a percentage above 0 like \"70%\", found 70",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"cpu": "-5%"}]}}}),
            "x-baton.autoscale.metrics[0].cpu: expected a percentage above 0 like \"70%\", found \"-5%\"",
        ),
        (
            json!({"deploy": {"resources": {"limits": {"cpus": 1.5}}},
                   "baton": {"autoscale": {"max": 3, "metrics": [{"cpu": "150%"}]}}}),
            "x-baton.autoscale.metrics[0].cpu: \"150%\" is more than the CPU limit (1.5 CPUs) allows: at most 100%",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"cpu": "70%"}, {"cpu": "50%"}]}}}),
            "x-baton.autoscale.metrics[1].cpu: cpu has a target already",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"cpu": "70%", "rps": 3}]}}}),
            "x-baton.autoscale.metrics[0]: expected one metric and its target, like {cpu: 70%}, found {\"cpu\":\"70%\",\"rps\":3}",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"memory": "80%"}]}}}),
            "x-baton.autoscale.metrics[0].memory: a percentage is of the memory limit, and the service has none: set deploy.resources.limits.memory, or write bytes like 512m",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "metrics": [{"rps": 200}]}}}),
            "x-baton.autoscale.metrics[0].rps: rps is measured by baton's proxy, which only runs in front of a service with a published port and x-baton.rollout",
        ),
        (
            json!({"ports": [{"target": 80, "published": 8080}],
                   "baton": {"autoscale": {"max": 3, "metrics": [{"p95": "150ms"}]}}}),
            "x-baton.autoscale.metrics[0].p95: p95 is measured by baton's proxy, which only runs in front of a service with a published port and x-baton.rollout",
        ),
        (
            json!({"ports": [{"target": 80, "published": 8080}],
                   "baton": {"rollout": {}, "proxy": {"protocol": "tcp"},
                             "autoscale": {"max": 3, "metrics": [{"p95": "150ms"}]}}}),
            "x-baton.autoscale.metrics[0].p95: p95 needs x-baton.proxy.protocol http: over tcp the proxy only times the connect",
        ),
        (
            json!({"ports": [{"target": 80, "published": 8080}],
                   "baton": {"rollout": {}, "proxy": {"provider": "nginx", "config": "x.conf"},
                             "autoscale": {"max": 3, "metrics": [{"in_flight": 5}]}}}),
            "x-baton.autoscale.metrics[0].in_flight: in_flight needs baton's own proxy: nginx and HAProxy report a request only once it has ended",
        ),
        (
            proxied(json!({"max": 3, "metrics": [{"p95": 150}]})),
            "x-baton.autoscale.metrics[0].p95: expected a duration above 0 like \"150ms\", found 150",
        ),
        (
            proxied(json!({"max": 3, "metrics": [{"rps": "lots"}]})),
            "x-baton.autoscale.metrics[0].rps: expected a number per replica above 0, like 200, found \"lots\"",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_down": {"stabilization": "5 minutes"}}}}}),
            "x-baton.autoscale.behavior.scale_down.stabilization: expected a duration like \"15s\", \"5m\" or \"0s\", found \"5 minutes\"",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_down": {"stabilization": "2h"}}}}}),
            "x-baton.autoscale.behavior.scale_down.stabilization: at most 1h, found \"2h\"",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_up": {"period": "0s"}}}}}),
            "x-baton.autoscale.behavior.scale_up.period: expected a period from 1s to 30m, found \"0s\"",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_down": {"max_step": "150%"}}}}}),
            "x-baton.autoscale.behavior.scale_down.max_step: a scale-down removes at most 100% of the replicas, found 150%",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_up": {"max_step": "lots"}}}}}),
            "x-baton.autoscale.behavior.scale_up.max_step: expected a number of replicas like 4, a percentage like \"100%\", or a list of them, found \"lots\"",
        ),
        (
            json!({"baton": {"autoscale": {"max": 3, "behavior": {"scale_upp": {}}}}}),
            "x-baton.autoscale.behavior.scale_upp: unknown key \"scale_upp\" (did you mean \"scale_up\"?)",
        ),
        (
            json!({"deploy": {"mode": "global"}, "baton": {"autoscale": {"max": 3}}}),
            "x-baton.autoscale: a service with deploy.mode global runs one replica per node: autoscaling needs mode replicated",
        ),
    ];
    for (svc, expected) in cases {
        assert_eq!(spec_err(svc.clone()), expected, "{svc}");
    }
}

// ---------------------------------------------------------------- the decider

#[test]
fn a_load_step_raises_replicas_in_one_decision_bounded_by_max_step() {
    let mut s = Scaler::new(
        spec(json!({"min": 2, "max": 20, "metrics": [{"cpu": "50%"}]})),
        2,
    );
    // 50% each: on target.
    let d = s.total_cpu(0, 1.0);
    assert_eq!(
        d,
        Decision {
            at_ms: 0,
            current: 2,
            desired: None,
            metrics: vec![cpu_reason(50.0, 50.0, 2, true)],
            recommendation: Some(2),
            reasons: vec![Reason::WithinTolerance { tolerance: 0.1 }],
        }
    );
    // The load quadruples: 200% each asks for 8; HPA's default scale-up allows
    // max(2 + 4, 2 + 100%) = 6 within 15 s.
    let d = s.total_cpu(15_000, 4.0);
    assert_eq!(
        d,
        Decision {
            at_ms: 15_000,
            current: 2,
            desired: Some(6),
            metrics: vec![cpu_reason(50.0, 200.0, 8, false)],
            recommendation: Some(8),
            reasons: vec![Reason::RateLimited {
                direction: Direction::Up,
                period_ms: 15_000,
                changed_in_period: 0,
                from: 8,
                to: 6
            }],
        }
    );
    assert_eq!(
        d.to_string(),
        "2 → 6: cpu 200 of 50 → 8; scale-up rate limit per 15s, 0 changed in it (8 → 6)"
    );
    // The next period: 4 CPUs over 6 replicas is 66.7% each, which asks for 8.
    let d = s.total_cpu(30_000, 4.0);
    assert_eq!(d.desired, Some(8));
    assert_eq!(d.reasons, []);
    // And it stays there.
    let d = s.total_cpu(45_000, 4.0);
    assert_eq!((d.desired, d.recommendation), (None, Some(8)));
}

#[test]
fn the_rate_limit_counts_the_changes_made_within_its_period() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 20, "metrics": [{"cpu": "50%"}],
                    "behavior": {"scale_up": {"max_step": 2, "period": "1m"}}})),
        2,
    );
    assert_eq!(s.total_cpu(0, 4.0).desired, Some(4));
    // 15 s later 2 were already added within the minute: nothing more yet.
    let d = s.total_cpu(15_000, 4.0);
    assert_eq!(d.desired, None);
    assert_eq!(d.recommendation, Some(8));
    assert_eq!(
        d.reasons,
        [Reason::RateLimited {
            direction: Direction::Up,
            period_ms: 60_000,
            changed_in_period: 2,
            from: 8,
            to: 4
        }]
    );
    assert_eq!(s.total_cpu(59_999, 4.0).desired, None);
    // A minute after the first change it counts no more.
    assert_eq!(s.total_cpu(60_000, 4.0).desired, Some(6));
    assert_eq!(s.total_cpu(120_000, 4.0).desired, Some(8));
}

#[test]
fn scale_down_to_min_after_the_load_stops_and_the_window_passes() {
    let mut s = Scaler::new(
        spec(json!({"min": 2, "max": 10, "metrics": [{"cpu": "50%"}]})),
        6,
    );
    for t in [0, 15_000, 30_000, 45_000, 60_000] {
        assert_eq!(s.total_cpu(t, 3.0).desired, None, "at {t}");
    }
    // The load stops; for five minutes after the last busy recommendation (60 s) the
    // window keeps 6.
    let mut t = 75_000;
    while t <= 360_000 {
        let d = s.total_cpu(t, 0.0);
        if t < 360_000 {
            assert_eq!(d.desired, None, "at {t}");
            assert_eq!(
                d.reasons,
                [Reason::Stabilized {
                    direction: Direction::Down,
                    window_ms: 300_000,
                    from: 0,
                    to: 6
                }],
                "at {t}"
            );
        } else {
            assert_eq!(
                d,
                Decision {
                    at_ms: 360_000,
                    current: 6,
                    desired: Some(2),
                    metrics: vec![cpu_reason(50.0, 0.0, 0, false)],
                    recommendation: Some(0),
                    reasons: vec![Reason::Clamped {
                        bound: Bound::Min,
                        from: 0,
                        to: 2
                    }],
                }
            );
        }
        t += 15_000;
    }
    assert_eq!(s.replicas, 2);
    assert_eq!(s.total_cpu(375_000, 0.0).desired, None);
}

#[test]
fn a_first_decision_never_scales_down_before_one_window() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 10, "metrics": [{"cpu": "50%"}]})),
        6,
    );
    // The daemon just started: the current count is the window's first recommendation.
    let d = s.total_cpu(1_000_000, 0.0);
    assert_eq!(d.desired, None);
    assert_eq!(
        d.reasons,
        [Reason::Stabilized {
            direction: Direction::Down,
            window_ms: 300_000,
            from: 0,
            to: 6
        }]
    );
    assert_eq!(s.total_cpu(1_299_999, 0.0).desired, None);
    assert_eq!(s.total_cpu(1_300_000, 0.0).desired, Some(1));
}

#[test]
fn an_oscillating_load_scales_down_at_most_once_per_window() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 10, "metrics": [{"cpu": "50%"}]})),
        4,
    );
    // Busy for 1 minute in every `cycle`, idle the rest, for an hour, over cycles
    // shorter and longer than the 5-minute window.
    let mut t = 0;
    for cycle in [120_000u64, 240_000, 420_000, 600_000] {
        let start = t;
        while t < start + 3_600_000 {
            let busy = (t - start) % cycle < 60_000;
            s.total_cpu(t, if busy { 2.0 } else { 0.1 });
            t += 15_000;
        }
    }
    let downs: Vec<&Decision> = s
        .log
        .iter()
        .filter(|d| d.desired.is_some_and(|n| n < d.current))
        .collect();
    assert!(!downs.is_empty(), "the long cycles do scale down");
    for pair in downs.windows(2) {
        assert!(
            pair[1].at_ms - pair[0].at_ms >= 300_000,
            "two scale-downs within a window: at {} and {}",
            pair[0].at_ms,
            pair[1].at_ms
        );
    }
    // A scale-down never goes below a recommendation of the last five minutes.
    for d in &downs {
        let highest = s
            .log
            .iter()
            .filter(|e| e.at_ms > d.at_ms - 300_000 && e.at_ms <= d.at_ms)
            .filter_map(|e| e.recommendation)
            .max()
            .expect("recommendations in the window");
        assert!(d.desired.expect("a scale-down") >= highest.max(1), "{d:?}");
    }
    // The 2-minute cycle never lets the window empty of busy recommendations.
    let first_hour = s.log.iter().filter(|d| d.at_ms < 3_600_000);
    assert!(first_hour
        .clone()
        .all(|d| d.desired.is_none_or(|n| n >= d.current)));
}

#[test]
fn within_the_tolerance_nothing_changes() {
    let s = spec(json!({"min": 1, "max": 20, "metrics": [{"cpu": "50%"}],
                        "behavior": {"scale_down": {"stabilization": "0s"}}}));
    let st = AutoscaleState::new();
    let at = |per: f64| decide(&s, &st, &cpu(0, 10, per)).1;
    // 54%: 8% above the target.
    let d = at(0.54);
    assert_eq!((d.desired, d.recommendation), (None, Some(10)));
    assert!(d.metrics[0].within_tolerance);
    assert_eq!(d.reasons, [Reason::WithinTolerance { tolerance: 0.1 }]);
    // 56%: 12% above, ceil(1.12 × 10) = 12.
    assert_eq!(at(0.56).desired, Some(12));
    // 46%: 8% below.
    assert_eq!(at(0.46).desired, None);
    // 44%: 12% below, ceil(0.88 × 10) = 9.
    assert_eq!(at(0.44).desired, Some(9));
}

#[test]
fn the_highest_of_several_metrics_wins() {
    let s = spec_of(proxied(json!({"min": 1, "max": 20,
        "metrics": [{"cpu": "50%"}, {"rps": 100}, {"p95": "200ms"}, {"in_flight": 10}]})));
    let mut o = cpu(0, 4, 0.6); // 60%: ceil(1.2 × 4) = 5
    o.rps = Some(900.0); // 225 per replica: ceil(900 / 100) = 9
    o.p95_ms = Some(300.0); // ceil(4 × 300 / 200) = 6
    o.in_flight = Some(40.0); // 10 per replica: on target
    let (_, d) = decide(&s, &AutoscaleState::new(), &o);
    // metric, target, current, recommendation, within the tolerance
    type Row = (Metric, f64, Option<f64>, Option<u32>, bool);
    let got: Vec<Row> = d
        .metrics
        .iter()
        .map(|m| {
            (
                m.metric,
                m.target,
                m.current.map(|c| (c * 1000.0).round() / 1000.0),
                m.recommendation,
                m.within_tolerance,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Metric::Cpu, 50.0, Some(60.0), Some(5), false),
            (Metric::Rps, 100.0, Some(225.0), Some(9), false),
            (Metric::P95, 200.0, Some(300.0), Some(6), false),
            (Metric::InFlight, 10.0, Some(10.0), Some(4), true),
        ]
    );
    assert_eq!(d.recommendation, Some(9));
    assert_eq!(d.desired, Some(8)); // 4 + 4 or 4 + 100 %: 8 within 15 s
    let text = serde_json::to_value(&d).expect("a decision serialises");
    assert_eq!(
        text["reasons"],
        json!([{"reason": "rate_limited", "direction": "up", "period_ms": 15000,
                "changed_in_period": 0, "from": 9, "to": 8}])
    );
    assert_eq!(text["metrics"][1]["metric"], "rps");
}

#[test]
fn memory_in_bytes_and_in_percent() {
    let mib = 1024.0 * 1024.0;
    let s = spec(json!({"max": 10, "metrics": [{"memory": "100m"}]}));
    let mut o = cpu(0, 2, 0.0);
    for u in &mut o.usage {
        u.memory_bytes = Some((250.0 * mib) as u64);
    }
    let (_, d) = decide(&s, &AutoscaleState::new(), &o);
    assert_eq!(d.metrics[0].current, Some(250.0 * mib));
    assert_eq!(d.desired, Some(5));
    let s = spec_of(
        json!({"deploy": {"resources": {"limits": {"memory": 1_000_000_000u64}}},
                           "baton": {"autoscale": {"max": 10, "metrics": [{"memory": "50%"}]}}}),
    );
    for u in &mut o.usage {
        u.memory_bytes = Some(900_000_000);
    }
    let (_, d) = decide(&s, &AutoscaleState::new(), &o);
    assert!(close(d.metrics[0].current.expect("a value"), 90.0));
    assert_eq!(d.desired, Some(4));
}

#[test]
fn a_missing_metric_blocks_a_scale_down_but_not_a_scale_up() {
    let s = spec_of(proxied(json!({"min": 1, "max": 20,
        "behavior": {"scale_down": {"stabilization": "0s"}},
        "metrics": [{"cpu": "50%"}, {"rps": 100}]})));
    let st = AutoscaleState::new();
    // No rps, cpu asks for more: up all the same.
    let d = decide(&s, &st, &cpu(0, 4, 1.0)).1;
    assert_eq!(d.desired, Some(8));
    assert_eq!(d.metrics[1].recommendation, None);
    assert_eq!(d.metrics[1].current, None);
    // No rps, cpu asks for fewer: the HPA does not scale down on half the picture.
    let d = decide(&s, &st, &cpu(0, 4, 0.1)).1;
    assert_eq!(d.desired, None);
    assert_eq!(d.recommendation, Some(1));
    assert_eq!(
        d.reasons,
        [Reason::MetricsMissing {
            metrics: vec![Metric::Rps]
        }]
    );
    // Nothing at all: hold.
    let mut o = cpu(0, 4, 0.0);
    o.usage.clear();
    let d = decide(&s, &st, &o).1;
    assert_eq!(d.desired, None);
    assert_eq!(d.recommendation, None);
    assert_eq!(
        d.reasons,
        [Reason::MetricsMissing {
            metrics: vec![Metric::Cpu, Metric::Rps]
        }]
    );
    assert_eq!(d.metrics[0].missing_replicas, 4);
    // Unusable values count as missing.
    let mut o = cpu(0, 4, 0.5);
    o.rps = Some(f64::NAN);
    assert_eq!(decide(&s, &st, &o).1.metrics[1].recommendation, None);
}

#[test]
fn replicas_without_samples_are_counted_conservatively() {
    let s = spec(json!({"min": 1, "max": 20, "metrics": [{"cpu": "50%"}],
                        "behavior": {"scale_down": {"stabilization": "0s"}}}));
    let st = AutoscaleState::new();
    let with = |samples: &[(bool, Option<f64>)], replicas: u32| {
        let o = Observation {
            now_ms: 0,
            replicas,
            ready: samples.iter().filter(|(r, _)| *r).count() as u32,
            usage: samples
                .iter()
                .enumerate()
                .map(|(i, (ready, cpus))| ReplicaUsage {
                    replica: format!("r{i}"),
                    ready: *ready,
                    cpus: *cpus,
                    memory_bytes: None,
                })
                .collect(),
            ..Default::default()
        };
        decide(&s, &st, &o).1.metrics.remove(0)
    };
    // Scale-up: 3 at 100%, one missing taken as 0: 75% on average, ceil(1.5 × 4) = 6.
    let m = with(
        &[(true, Some(1.0)), (true, Some(1.0)), (true, Some(1.0))],
        4,
    );
    assert_eq!((m.recommendation, m.missing_replicas), (Some(6), 1));
    assert_eq!(m.current, Some(100.0));
    // Two at 100%, two missing: 50% on average, on target: no change.
    let m = with(&[(true, Some(1.0)), (true, None), (true, Some(1.0))], 4);
    assert_eq!((m.recommendation, m.missing_replicas), (Some(4), 2));
    assert!(m.within_tolerance);
    // Scale-down: 2 at 10%, two missing taken as at the target: 30%, ceil(0.6 × 4) = 3.
    let m = with(&[(true, Some(0.1)), (true, Some(0.1))], 4);
    assert_eq!(m.recommendation, Some(3));
    // Not ready on a scale-up: counted at 0. 3 ready at 100% and one starting: 6.
    let m = with(
        &[
            (true, Some(1.0)),
            (true, Some(1.0)),
            (true, Some(1.0)),
            (false, Some(3.0)),
        ],
        4,
    );
    assert_eq!((m.recommendation, m.not_ready_replicas), (Some(6), 1));
    // Two ready at 100%, two starting: back on target, no change.
    let m = with(
        &[
            (true, Some(1.0)),
            (false, Some(3.0)),
            (true, Some(1.0)),
            (false, None),
        ],
        4,
    );
    assert_eq!(m.recommendation, Some(4));
    // Not ready on a scale-down: left out. 2 ready at 10%: ceil(0.2 × 2) = 1.
    let m = with(
        &[(true, Some(0.1)), (false, Some(3.0)), (true, Some(0.1))],
        3,
    );
    assert_eq!(m.recommendation, Some(1));
    // Bringing missing replicas back would flip the direction: no change.
    // 1 at 60% (up), 3 missing at 0: 15%, a scale-down: the metric holds.
    let m = with(&[(true, Some(0.6))], 4);
    assert_eq!(m.recommendation, Some(4));
    assert!(!m.within_tolerance);
}

#[test]
fn min_and_max_clamp_the_result() {
    let s = spec(json!({"min": 2, "max": 5, "metrics": [{"cpu": "50%"}],
                        "behavior": {"scale_down": {"stabilization": "0s"}}}));
    let st = AutoscaleState::new();
    let d = decide(&s, &st, &cpu(0, 4, 2.0)).1; // asks for 16; the rate allows 8
    assert_eq!(d.desired, Some(5));
    assert_eq!(
        d.reasons,
        [Reason::Clamped {
            bound: Bound::Max,
            from: 16,
            to: 5
        }]
    );
    let d = decide(&s, &st, &cpu(0, 4, 0.0)).1;
    assert_eq!(d.desired, Some(2));
    assert_eq!(
        d.reasons,
        [Reason::Clamped {
            bound: Bound::Min,
            from: 0,
            to: 2
        }]
    );
    // A count outside the bounds (deploy.replicas: 9) is moved in first, no metrics
    // needed.
    let (st2, d) = decide(&s, &st, &cpu(0, 9, 0.5));
    assert_eq!(d.desired, Some(5));
    assert_eq!(d.metrics, []);
    assert_eq!(d.reasons, [Reason::OutsideBounds { min: 2, max: 5 }]);
    assert_eq!(st2.desired, Some(5));
    let mut o = cpu(0, 1, 0.5);
    o.usage.clear();
    assert_eq!(decide(&s, &st, &o).1.desired, Some(2));
}

#[test]
fn a_service_stopped_by_hand_is_left_alone() {
    let s = spec(json!({"min": 1, "max": 5}));
    let (_, d) = decide(&s, &AutoscaleState::new(), &cpu(0, 0, 0.0));
    assert_eq!(d.desired, None);
    assert_eq!(d.reasons, [Reason::ScaledToZero]);
}

#[test]
fn from_zero_on_the_request_rate_when_min_is_zero() {
    let s = spec_of(proxied(
        json!({"min": 0, "max": 5, "metrics": [{"rps": 50}],
        "behavior": {"scale_down": {"stabilization": "0s"}}}),
    ));
    let mut o = cpu(0, 0, 0.0);
    o.rps = Some(120.0);
    let (_, d) = decide(&s, &AutoscaleState::new(), &o);
    assert_eq!(d.desired, Some(3));
    let mut o = cpu(0, 2, 0.0);
    o.rps = Some(0.0);
    assert_eq!(decide(&s, &AutoscaleState::new(), &o).1.desired, Some(0));
}

#[test]
fn p95_is_a_service_wide_value_times_the_ready_replicas() {
    let s = spec_of(proxied(json!({"max": 20, "metrics": [{"p95": "100ms"}]})));
    let mut o = cpu(0, 4, 0.0);
    o.ready = 3;
    o.p95_ms = Some(250.0);
    let d = decide(&s, &AutoscaleState::new(), &o).1;
    assert_eq!(d.recommendation, Some(8)); // ceil(3 × 2.5)
                                           // No replica ready: the latency says nothing about how many are needed.
    o.ready = 0;
    let d = decide(&s, &AutoscaleState::new(), &o).1;
    assert_eq!(d.metrics[0].current, Some(250.0));
    assert_eq!(d.recommendation, None);
}

// ---------------------------------------------------------------- rollouts

#[test]
fn a_rollout_in_progress_holds_autoscaling() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 10, "metrics": [{"cpu": "50%"}]})),
        3,
    );
    assert_eq!(s.total_cpu(0, 1.5).desired, None);
    let before = s.state.clone();
    let mut o = cpu(15_000, 3, 2.0); // would ask for 12
    o.rollout_in_progress = true;
    let d = s.observe(o);
    assert_eq!(
        d,
        Decision {
            at_ms: 15_000,
            current: 3,
            desired: None,
            metrics: vec![],
            recommendation: None,
            reasons: vec![Reason::RolloutInProgress],
        }
    );
    assert_eq!(d.to_string(), "stay at 3; rollout in progress");
    // Nothing was recorded.
    assert_eq!(s.state, before);
    // Once the rollout is over, the load is acted on.
    assert_eq!(s.total_cpu(30_000, 6.0).desired, Some(7));
}

#[test]
fn a_rollout_starts_from_the_count_autoscaling_set() {
    let spec = spec(json!({"min": 2, "max": 6}));
    // Not autoscaled: the file's count.
    assert_eq!(rollout_replicas(None, None, 3), 3);
    // Autoscaled, no decision yet: the file's count within the bounds.
    assert_eq!(rollout_replicas(Some(&spec), None, 3), 3);
    assert_eq!(rollout_replicas(Some(&spec), None, 1), 2);
    assert_eq!(
        rollout_replicas(Some(&spec), Some(&AutoscaleState::new()), 9),
        6
    );
    // After autoscaling set 5, a rollout of the file's 3 replicas rolls out 5.
    let mut s = Scaler::new(spec.clone(), 3);
    s.total_cpu(0, 3.8); // 80% of 4.75 replicas
    assert_eq!(s.state.desired, Some(5));
    assert_eq!(rollout_replicas(Some(&spec), Some(&s.state), 3), 5);
    // A file that lowered max since then still wins.
    let narrower = self::spec(json!({"min": 2, "max": 4}));
    assert_eq!(rollout_replicas(Some(&narrower), Some(&s.state), 3), 4);
}

#[test]
fn after_a_long_rollout_a_scale_down_waits_a_full_window() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 10, "metrics": [{"cpu": "50%"}]})),
        4,
    );
    s.total_cpu(0, 2.0);
    let mut t = 15_000;
    while t < 900_000 {
        let mut o = cpu(t, 4, 0.0);
        o.rollout_in_progress = true;
        assert_eq!(s.observe(o).desired, None);
        t += 15_000;
    }
    assert_eq!(s.state.recommendations, []);
    // Idle after the rollout: still one window before the scale-down.
    assert_eq!(s.total_cpu(900_000, 0.0).desired, None);
    assert_eq!(s.total_cpu(1_199_999, 0.0).desired, None);
    assert_eq!(s.total_cpu(1_200_000, 0.0).desired, Some(1));
}

#[test]
fn the_state_stays_bounded() {
    let mut s = Scaler::new(
        spec(json!({"min": 1, "max": 10, "metrics": [{"cpu": "50%"}]})),
        4,
    );
    for i in 0..2_000u64 {
        let load = if i % 7 < 3 { 4.0 } else { 0.5 };
        s.total_cpu(i * 15_000, load);
    }
    // One recommendation per call within 5 minutes, events within 15 s.
    assert!(
        s.state.recommendations.len() <= 21,
        "{}",
        s.state.recommendations.len()
    );
    assert!(s.state.scale_events.len() <= 2);
}
