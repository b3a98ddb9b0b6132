//! The query language against hand-computed values and the values Prometheus's own test
//! files (promql/promqltest/testdata) give for the same input.

use super::*;
use crate::labels::Labels;

const MIN: i64 = 60_000;

/// Prometheus test notation: `0+10x3` is 0 10 20 30, `_` nothing, `stale` a marker.
fn expand(spec: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for part in spec.split_whitespace() {
        if part == "_" {
            out.push(None);
        } else if part == "stale" {
            out.push(Some(f64::from_bits(crate::sample::STALE_NAN_BITS)));
        } else if let Some((start, rest)) = part
            .split_once('+')
            .or_else(|| part.split_once("-").filter(|(s, _)| !s.is_empty()))
        {
            let neg = part.contains('-') && !part.contains('+');
            let (step, times) = rest.split_once('x').expect("AxB");
            let (start, step, times): (f64, f64, usize) = (
                start.parse().expect("start"),
                step.parse().expect("step"),
                times.parse().expect("times"),
            );
            for i in 0..=times {
                let d = step * i as f64;
                out.push(Some(if neg { start - d } else { start + d }));
            }
        } else {
            out.push(Some(part.parse().expect("a number")));
        }
    }
    out
}

fn load(interval_ms: i64, series: &[(&str, &str)]) -> Vec<(Labels, Vec<(i64, f64)>)> {
    series
        .iter()
        .map(|(sel, spec)| {
            let Ok(Expr::Selector(s)) = parse(sel) else {
                panic!("{sel} is not a selector");
            };
            let labels = Labels::new(s.matchers.iter().map(|m| (m.name.clone(), m.value.clone())));
            let points = expand(spec)
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as i64 * interval_ms, v)))
                .collect();
            (labels, points)
        })
        .collect()
}

fn at(data: &[(Labels, Vec<(i64, f64)>)], t: i64, q: &str) -> Vec<(String, f64)> {
    let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    match instant(data, &e, t, &QueryOptions::default()).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Value::Scalar(v) => vec![("scalar".into(), v)],
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels.to_string(), s.value))
            .collect(),
    }
}

fn check(data: &[(Labels, Vec<(i64, f64)>)], t: i64, q: &str, want: &[(&str, f64)]) {
    let got = at(data, t, q);
    let mut want: Vec<(String, f64)> = want.iter().map(|(l, v)| (l.to_string(), *v)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got_sorted.len(),
        want.len(),
        "{q}: got {got:?}, want {want:?}"
    );
    for ((gl, gv), (wl, wv)) in got_sorted.iter().zip(&want) {
        assert_eq!(gl, wl, "{q}");
        let close =
            gv == wv || (gv - wv).abs() <= 1e-9 * wv.abs().max(1.0) || (gv.is_nan() && wv.is_nan());
        assert!(close, "{q}: {gl} is {gv}, want {wv}");
    }
}

// Prometheus 2's test files (promqltest/testdata/functions.test) evaluate ranges as
// closed [t-r, t]; Prometheus 3, and baton, as left-open (t-r, t]. Where that changes a
// value the expectation is computed by hand below, with the file's value in a comment.

#[test]
fn increase_as_prometheus_tests_it() {
    // functions.test, "Tests for increase()".
    let d = load(
        5 * MIN,
        &[
            (r#"http_requests{path="/foo"}"#, "0+10x10"),
            (r#"http_requests{path="/bar"}"#, "0+10x5 0+10x5"),
            (r#"http_requests{path="/dings"}"#, "10+10x10"),
            (r#"http_requests{path="/bumms"}"#, "1+10x10"),
        ],
    );
    check(
        &d,
        50 * MIN,
        "increase(http_requests[50m])",
        // /bar: the file's 90 counts the sample at 0m; left-open, 10…50 then 0…40 in
        // 45 minutes is 80, extrapolated by the 5 minutes to the range's start: 80 × 50/45.
        &[
            (r#"{path="/foo"}"#, 100.0),
            (r#"{path="/bar"}"#, 80.0 * 50.0 / 45.0),
            (r#"{path="/dings"}"#, 100.0),
            (r#"{path="/bumms"}"#, 100.0),
        ],
    );
    // The zero point of a counter bounds the extrapolation to the left.
    check(
        &d,
        50 * MIN,
        "increase(http_requests[100m])",
        &[
            (r#"{path="/foo"}"#, 100.0),
            (r#"{path="/bar"}"#, 90.0),
            (r#"{path="/dings"}"#, 105.0),
            (r#"{path="/bumms"}"#, 101.0),
        ],
    );
    // A drop is a reset: 3 2 counts as 3 0 1 2.
    let d = load(
        5 * MIN,
        &[(r#"http_requests{path="/foo"}"#, "0 1 2 3 2 3 4")],
    );
    check(
        &d,
        30 * MIN,
        "increase(http_requests[30m])",
        &[(r#"{path="/foo"}"#, 7.0)],
    );
}

#[test]
fn rate_as_prometheus_tests_it() {
    let d = load(
        5 * MIN,
        &[
            ("testcounter_reset_middle", "0+10x4 0+10x5"),
            ("testcounter_reset_end", "0+10x9 0 10"),
            ("calculate_rate_window", "0+80x10"),
        ],
    );
    // File: 0.03 (90 over 3000 s with the sample at 0m); left-open: 80 × 50/45 over 3000 s.
    check(
        &d,
        50 * MIN,
        "rate(testcounter_reset_middle[50m])",
        &[("{}", 80.0 * 50.0 / 45.0 / 3000.0)],
    );
    // With the sample at 0m in range, its value 0 stops extrapolation there: 90 over 51m.
    check(
        &d,
        50 * MIN,
        "rate(testcounter_reset_middle[51m])",
        &[("{}", 90.0 / 3060.0)],
    );
    // A reset at the range's end counts as the value after it: 0. Left-open, [5m] holds
    // one sample (no rate); [6m] holds the two the file's [5m] did.
    check(&d, 50 * MIN, "rate(testcounter_reset_end[5m])", &[]);
    check(
        &d,
        50 * MIN,
        "rate(testcounter_reset_end[6m])",
        &[("{}", 0.0)],
    );
    check(
        &d,
        50 * MIN,
        "rate(calculate_rate_window[50m])",
        &[("{}", 0.266_666_666_666_666_66)],
    );
    let d = load(
        4 * MIN,
        &[
            (r#"testcounter_zero_cutoff{start="0m"}"#, "0+240x10"),
            (r#"testcounter_zero_cutoff{start="1m"}"#, "60+240x10"),
            (r#"testcounter_zero_cutoff{start="2m"}"#, "120+240x10"),
            (r#"testcounter_zero_cutoff{start="3m"}"#, "180+240x10"),
            (r#"testcounter_zero_cutoff{start="4m"}"#, "240+240x10"),
            (r#"testcounter_zero_cutoff{start="5m"}"#, "300+240x10"),
        ],
    );
    let want: Vec<(String, f64)> = [
        ("0m", 0.5),
        ("1m", 0.55),
        ("2m", 0.6),
        ("3m", 0.6),
        ("4m", 0.6),
        ("5m", 0.6),
    ]
    .iter()
    .map(|(s, v)| (format!("{{start=\"{s}\"}}"), *v))
    .collect();
    let want: Vec<(&str, f64)> = want.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    check(&d, 10 * MIN, "rate(testcounter_zero_cutoff[20m])", &want);
    let flat: Vec<(&str, f64)> = want.iter().map(|(s, _)| (*s, 0.6)).collect();
    check(&d, 50 * MIN, "rate(testcounter_zero_cutoff[20m])", &flat);
}

fn requests() -> Vec<(Labels, Vec<(i64, f64)>)> {
    // promqltest/testdata/aggregators.test's data.
    load(
        5 * MIN,
        &[
            (
                r#"http_requests{job="api-server", instance="0", group="production"}"#,
                "0+10x10",
            ),
            (
                r#"http_requests{job="api-server", instance="1", group="production"}"#,
                "0+20x10",
            ),
            (
                r#"http_requests{job="api-server", instance="0", group="canary"}"#,
                "0+30x10",
            ),
            (
                r#"http_requests{job="api-server", instance="1", group="canary"}"#,
                "0+40x10",
            ),
            (
                r#"http_requests{job="app-server", instance="0", group="production"}"#,
                "0+50x10",
            ),
            (
                r#"http_requests{job="app-server", instance="1", group="production"}"#,
                "0+60x10",
            ),
            (
                r#"http_requests{job="app-server", instance="0", group="canary"}"#,
                "0+70x10",
            ),
            (
                r#"http_requests{job="app-server", instance="1", group="canary"}"#,
                "0+80x10",
            ),
        ],
    )
}

#[test]
fn aggregations_group_by_and_without() {
    let d = requests();
    let t = 50 * MIN;
    check(
        &d,
        t,
        r#"sum by (group) (http_requests{job="api-server"})"#,
        &[
            (r#"{group="canary"}"#, 700.0),
            (r#"{group="production"}"#, 300.0),
        ],
    );
    check(
        &d,
        t,
        r#"sum(http_requests{job="api-server"}) by (group)"#,
        &[
            (r#"{group="canary"}"#, 700.0),
            (r#"{group="production"}"#, 300.0),
        ],
    );
    check(&d, t, "sum(http_requests)", &[("{}", 3600.0)]);
    check(
        &d,
        t,
        "avg by (job) (http_requests)",
        &[
            (r#"{job="api-server"}"#, 250.0),
            (r#"{job="app-server"}"#, 650.0),
        ],
    );
    check(
        &d,
        t,
        "max without (instance, group) (http_requests)",
        &[
            (r#"{job="api-server"}"#, 400.0),
            (r#"{job="app-server"}"#, 800.0),
        ],
    );
    check(
        &d,
        t,
        "min by (instance) (http_requests)",
        &[(r#"{instance="0"}"#, 100.0), (r#"{instance="1"}"#, 200.0)],
    );
    check(
        &d,
        t,
        "count by (job) (http_requests > 250)",
        &[
            (r#"{job="api-server"}"#, 2.0),
            (r#"{job="app-server"}"#, 4.0),
        ],
    );
    // Over a range function, then summed: the usual rule shape.
    check(
        &d,
        t,
        "sum by (job) (rate(http_requests[10m]))",
        &[
            (r#"{job="api-server"}"#, 100.0 / 300.0),
            (r#"{job="app-server"}"#, 260.0 / 300.0),
        ],
    );
}

#[test]
fn arithmetic_and_comparisons_follow_promql() {
    let d = requests();
    let t = 50 * MIN;
    let c0 = r#"{group="canary", instance="0", job="api-server"}"#;
    check(
        &d,
        t,
        r#"http_requests{job="api-server", group="canary"} * 2 + 1"#,
        &[
            (c0, 601.0),
            (r#"{group="canary", instance="1", job="api-server"}"#, 801.0),
        ],
    );
    check(
        &d,
        t,
        r#"1 - http_requests{job="api-server", group="canary", instance="0"} / 100"#,
        &[(c0, -2.0)],
    );
    check(&d, t, "-2 ^ 2", &[("scalar", -4.0)]);
    check(&d, t, "2 ^ 3 ^ 2", &[("scalar", 512.0)]);
    check(&d, t, "(1 + 2) * 3 % 4", &[("scalar", 1.0)]);
    check(&d, t, "1 < bool 2", &[("scalar", 1.0)]);
    // A comparison filters and keeps the name and the value.
    check(
        &d,
        t,
        r#"http_requests{job="app-server"} >= 700"#,
        &[
            (
                r#"http_requests{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
        ],
    );
    check(
        &d,
        t,
        r#"700 < http_requests{job="app-server"}"#,
        &[(
            r#"http_requests{group="canary", instance="1", job="app-server"}"#,
            800.0,
        )],
    );
    check(
        &d,
        t,
        r#"http_requests{job="app-server", group="canary"} == bool 700"#,
        &[
            (r#"{group="canary", instance="0", job="app-server"}"#, 1.0),
            (r#"{group="canary", instance="1", job="app-server"}"#, 0.0),
        ],
    );
    // Vector to vector, one to one on all labels but the name.
    check(
        &d,
        t,
        r#"http_requests{group="canary"} - http_requests{group="canary"}"#,
        &[
            (c0, 0.0),
            (r#"{group="canary", instance="1", job="api-server"}"#, 0.0),
            (r#"{group="canary", instance="0", job="app-server"}"#, 0.0),
            (r#"{group="canary", instance="1", job="app-server"}"#, 0.0),
        ],
    );
    // on(…) and ignoring(…).
    check(
        &d,
        t,
        r#"sum by (job) (http_requests) / on (job) sum by (job) (http_requests{group="canary"})"#,
        &[
            (r#"{job="api-server"}"#, 1000.0 / 700.0),
            (r#"{job="app-server"}"#, 2600.0 / 1500.0),
        ],
    );
    check(
        &d,
        t,
        r#"http_requests{group="canary"} / ignoring (group) http_requests{group="production"}"#,
        &[
            (r#"{instance="0", job="api-server"}"#, 3.0),
            (r#"{instance="1", job="api-server"}"#, 2.0),
            (r#"{instance="0", job="app-server"}"#, 1.4),
            (r#"{instance="1", job="app-server"}"#, 80.0 / 60.0),
        ],
    );
    // `*` binds tighter than `>`: canary > 2 × production holds for api-server's instance 0 only.
    check(
        &d,
        t,
        r#"http_requests{group="canary"} > ignoring (group) http_requests{group="production"} * 2"#,
        &[(r#"http_requests{instance="0", job="api-server"}"#, 300.0)],
    );
    // Many on one side: refused, not guessed.
    let e = parse(r#"http_requests / on (job) sum by (job) (http_requests)"#).expect("parses");
    let err = instant(d.as_slice(), &e, t, &QueryOptions::default()).expect_err("many-to-one");
    assert!(err.to_string().contains("many-to-one"), "{err}");
    let e = parse(r#"sum by (job) (http_requests) / on (job) http_requests"#).expect("parses");
    let err = instant(d.as_slice(), &e, t, &QueryOptions::default()).expect_err("many-to-many");
    assert!(err.to_string().contains("many-to-many"), "{err}");
}

#[test]
fn selectors_look_back_five_minutes_and_stop_at_a_staleness_marker() {
    let d = load(
        MIN,
        &[
            (r#"up{job="a"}"#, "1 1 1"),
            (r#"up{job="b"}"#, "1 1 stale"),
            (r#"up{job="c", env="dev"}"#, "5"),
        ],
    );
    check(
        &d,
        2 * MIN,
        "up",
        &[(r#"up{job="a"}"#, 1.0), (r#"up{env="dev", job="c"}"#, 5.0)],
    );
    check(
        &d,
        MIN + 30_000,
        "up",
        &[
            (r#"up{job="a"}"#, 1.0),
            (r#"up{job="b"}"#, 1.0),
            (r#"up{env="dev", job="c"}"#, 5.0),
        ],
    );
    // (t-5m, t]: the sample at 2m is seen until 7m, not at 7m.
    check(
        &d,
        7 * MIN - 1,
        r#"up{job="a"}"#,
        &[(r#"up{job="a"}"#, 1.0)],
    );
    check(&d, 7 * MIN, r#"up{job="a"}"#, &[]);
    // Matchers: =, !=, =~ (anchored), !~, and the name as a label.
    check(
        &d,
        0,
        r#"up{job!="a"}"#,
        &[(r#"up{job="b"}"#, 1.0), (r#"up{env="dev", job="c"}"#, 5.0)],
    );
    check(
        &d,
        0,
        r#"up{job=~"a|b"}"#,
        &[(r#"up{job="a"}"#, 1.0), (r#"up{job="b"}"#, 1.0)],
    );
    check(&d, 0, r#"up{job=~"a.*b"}"#, &[]);
    check(
        &d,
        0,
        r#"up{env!~"d.*"}"#,
        &[(r#"up{job="a"}"#, 1.0), (r#"up{job="b"}"#, 1.0)],
    );
    check(
        &d,
        0,
        r#"{__name__="up", env="dev"}"#,
        &[(r#"up{env="dev", job="c"}"#, 5.0)],
    );
}

#[test]
fn over_time_functions() {
    let d = load(MIN, &[("g", "1 5 2 stale 8 4")]);
    let t = 5 * MIN;
    check(
        &d,
        t,
        "avg_over_time(g[5m])",
        &[("{}", (5.0 + 2.0 + 8.0 + 4.0) / 4.0)],
    );
    check(&d, t, "max_over_time(g[5m])", &[("{}", 8.0)]);
    check(&d, t, "min_over_time(g[5m])", &[("{}", 2.0)]);
    check(&d, t, "sum_over_time(g[10m])", &[("{}", 20.0)]);
    check(&d, t, "count_over_time(g[10m])", &[("{}", 5.0)]);
    check(&d, t, "rate(g[1m])", &[]);
}

#[test]
fn range_queries_evaluate_each_step() {
    let d = load(
        MIN,
        &[
            (r#"c{x="1"}"#, "0+60x20"),
            (r#"c{x="2"}"#, "_ _ _ _ _ 0+120x15"),
        ],
    );
    let e = parse("rate(c[2m])").expect("parses");
    let out = range(
        d.as_slice(),
        &e,
        0,
        20 * MIN,
        5 * MIN,
        &QueryOptions::default(),
    )
    .expect("range");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].labels.to_string(), r#"{x="1"}"#);
    assert_eq!(
        out[0].points,
        vec![
            (5 * MIN, 1.0),
            (10 * MIN, 1.0),
            (15 * MIN, 1.0),
            (20 * MIN, 1.0)
        ]
    );
    // Series 2 starts at 5m: one sample in (3m, 5m], no rate yet.
    assert_eq!(
        out[1].points.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![10 * MIN, 15 * MIN, 20 * MIN]
    );
    assert!(out[1].points.iter().all(|p| (p.1 - 2.0).abs() < 1e-12));
    let e = parse("1 + 1").expect("parses");
    let out = range(d.as_slice(), &e, 0, MIN, 30_000, &QueryOptions::default()).expect("range");
    assert_eq!(out[0].points, vec![(0, 2.0), (30_000, 2.0), (MIN, 2.0)]);
    assert!(matches!(
        range(d.as_slice(), &e, 0, 100, 0, &QueryOptions::default()),
        Err(QueryError::BadRange)
    ));
    assert!(matches!(
        range(
            d.as_slice(),
            &e,
            0,
            20_000 * MIN,
            MIN,
            &QueryOptions::default()
        ),
        Err(QueryError::TooManySteps { .. })
    ));
    let tight = QueryOptions {
        max_samples: 10,
        ..QueryOptions::default()
    };
    let e = parse("c").expect("parses");
    assert!(matches!(
        range(d.as_slice(), &e, 0, 20 * MIN, MIN, &tight),
        Err(QueryError::TooManySamples { .. })
    ));
}

#[test]
fn long_steps_read_five_minute_aggregates_and_agree_with_raw() {
    // Two days of a counter at 10 s with a reset, and a gauge.
    let mut counter = Vec::new();
    let mut gauge = Vec::new();
    let mut c = 0.0;
    for i in 0..(2 * 8640) {
        let t = i as i64 * 10_000;
        c = if i == 9000 {
            3.0
        } else {
            c + 1.0 + (i % 7) as f64
        };
        counter.push((t, c));
        gauge.push((t, ((i % 360) as f64 - 180.0).abs()));
    }
    let d = vec![
        (Labels::metric("req_total", [("s", "web")]), counter),
        (Labels::metric("mem", [("s", "web")]), gauge),
    ];
    let raw_opts = QueryOptions {
        downsample_step_ms: i64::MAX,
        ..QueryOptions::default()
    };
    let agg_opts = QueryOptions::default();
    let (from, to, step) = (6 * 60 * MIN, 2 * 24 * 60 * MIN - 10_000, 60 * MIN);
    // (query, relative tolerance, absolute tolerance)
    for (q, rel, abs) in [
        // A range's first window may reach up to 5 minutes before the range.
        ("increase(req_total[1h])", 0.01, 0.0),
        ("rate(req_total[6h])", 0.001, 0.0),
        // Windows end on the hour, as the steps do: exact.
        ("max_over_time(mem[1h])", 0.0, 0.0),
        ("min_over_time(mem[1h])", 0.0, 0.0),
        ("sum_over_time(mem[1h])", 0.0, 0.0),
        ("count_over_time(mem[1h])", 0.0, 0.0),
        ("avg_over_time(mem[1h])", 0.0, 0.0),
        // An instant selector reads the last complete window's last value: at most 5
        // minutes old, and this gauge moves by 1 every 10 s.
        ("mem", 0.0, 30.0),
    ] {
        let e = parse(q).expect("parses");
        let raw = range(d.as_slice(), &e, from, to, step, &raw_opts).expect("raw");
        let agg = range(d.as_slice(), &e, from, to, step, &agg_opts).expect("aggregates");
        assert_eq!(raw.len(), agg.len(), "{q}");
        for (r, a) in raw.iter().zip(&agg) {
            assert_eq!(r.points.len(), a.points.len(), "{q}");
            for ((t, rv), (_, av)) in r.points.iter().zip(&a.points) {
                let off = (rv - av).abs();
                assert!(
                    off <= rel * rv.abs().max(1.0) || off <= abs,
                    "{q} at {t}: raw {rv}, aggregates {av}"
                );
            }
        }
    }
}

fn err(q: &str) -> String {
    match parse(q) {
        Ok(e) => panic!("{q} parsed: {e:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parse_errors_say_the_column() {
    assert_eq!(
        err(r#"sum by (service) (rate(baton_proxy_requests_total{code="5xx"}[5m])) > 0.05 and up"#),
        "column 76: `and` is not supported: baton's queries have arithmetic and comparisons, not set operators"
    );
    assert_eq!(
        err("rate(x)"),
        "column 6: rate(…) takes a range vector such as x[5m]"
    );
    assert_eq!(
        err("x[5m]"),
        "column 1: a range vector (`x[5m]`) is only allowed inside a function such as rate(…)"
    );
    assert_eq!(
        err("x{a=~\"(\"}"),
        "column 6: bad regular expression for a: error: unclosed group"
    );
    assert_eq!(err("label_replace(x)"), "column 1: unknown function label_replace(…): baton's queries have rate, increase, avg_over_time, max_over_time, min_over_time, sum_over_time, count_over_time, histogram_quantile and the aggregations sum, avg, max, min, count");
    assert_eq!(err("sum(x"), "column 6: expected `)`, found the end");
    assert_eq!(
        err("x[5q]"),
        "column 3: bad duration \"5q\": write it as 30s, 5m, 1h30m"
    );
    assert_eq!(
        err("{job=~\".*\"}"),
        "column 1: a selector needs a metric name or a matcher that does not match the empty value"
    );
    assert_eq!(
        err("1 > 2"),
        "column 3: a comparison between two numbers needs `bool` (`1 < bool 2`)"
    );
    assert_eq!(
        err("x + on(a) 1"),
        "column 3: on(…) and ignoring(…) only go between two vectors"
    );
    assert_eq!(
        err("x / on(a) group_left y"),
        "column 11: `group_left` is not supported: baton matches vectors one to one"
    );
    assert_eq!(err("x{a=\"b}"), "column 5: string not closed");
    assert_eq!(err("x offset 5m"), "column 3: `offset` is not supported");
    assert_eq!(err("x $ y"), "column 3: unexpected character '$'");
    let e = parse("sum(\n  rate(x[5m]\n)").expect_err("unclosed");
    assert_eq!(
        e.to_string(),
        "line 3, column 2: expected `)`, found the end"
    );
    assert_eq!((e.line, e.column), (3, 2));
    assert_eq!(parse("é + x{").expect_err("bad").column, 1);
    assert_eq!(
        parse("x{a=\"é\"} + ").expect_err("bad").to_string(),
        "column 12: the expression ends too early"
    );
    let deep = format!("{}x{}", "(".repeat(500), ")".repeat(500));
    assert!(err(&deep).contains("nested deeper"));
    let e = parse("x + ").expect_err("bad");
    assert_eq!(e.caret(), "x + \n    ^");
}

#[test]
fn literals_and_durations() {
    let d: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
    check(&d, 0, "0x10 + 1e2 + .5 + 1.5e-1", &[("scalar", 116.65)]);
    check(&d, 0, "Inf > bool 1e308", &[("scalar", 1.0)]);
    assert!(at(&d, 0, "NaN")[0].1.is_nan());
    assert_eq!(parse_duration("1h30m"), Some(90 * MIN));
    assert_eq!(parse_duration("500ms"), Some(500));
    assert_eq!(parse_duration("2d"), Some(2 * 24 * 60 * MIN));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("5"), None);
}

#[test]
fn dropping_the_name_cannot_merge_two_series_and_extreme_times_do_not_panic() {
    let d = load(MIN, &[("a_total", "0+1x10"), ("b_total", "0+2x10")]);
    let e = parse(r#"rate({__name__=~"a_total|b_total"}[5m])"#).expect("parses");
    let err =
        instant(d.as_slice(), &e, 10 * MIN, &QueryOptions::default()).expect_err("same labels");
    assert!(err.to_string().contains("same labelset"), "{err}");
    check(
        &d,
        10 * MIN,
        r#"{__name__=~"a_total|b_total"} > 5"#,
        &[("a_total{}", 10.0), ("b_total{}", 20.0)],
    );
    for q in ["a_total", "rate(a_total[1y])", "-a_total * 2"] {
        let e = parse(q).expect("parses");
        for t in [i64::MIN, i64::MAX, 0] {
            instant(d.as_slice(), &e, t, &QueryOptions::default()).expect("no panic");
        }
        let _ = range(
            d.as_slice(),
            &e,
            i64::MIN,
            i64::MAX,
            i64::MAX,
            &QueryOptions::default(),
        );
        let _ = range(
            d.as_slice(),
            &e,
            i64::MIN,
            i64::MAX,
            1,
            &QueryOptions::default(),
        )
        .expect_err("too many steps");
    }
}

#[test]
fn mangled_expressions_are_errors_not_panics() {
    let seeds = [
        r#"sum by (service) (rate(baton_proxy_requests_total{code="5xx"}[5m])) / sum by (service) (rate(baton_proxy_requests_total[5m])) > bool 0.05"#,
        r#"max_over_time(m{a=~"x|y", b!~'z.*', c!=`q`}[1h30m]) - on (a) -2 ^ 0x1f % 3e2"#,
        "avg without (le) (count_over_time({__name__=\"x\"}[10s])) <= ignoring(b) min(y)",
    ];
    let pieces = [
        "(", ")", "{", "}", "[", "]", "\"", "'", "`", ",", "=~", "!", "5m", "by", "é", "\\", "\n",
        "1e", "0x", " ",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let d = load(MIN, &[("m", "1 2 3")]);
    for _ in 0..3000 {
        let mut text: Vec<char> = seeds[(next() % 3) as usize].chars().collect();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % (text.len() + 1);
            match next() % 3 {
                0 if at < text.len() => {
                    text.remove(at);
                }
                1 => {
                    let p = pieces[(next() as usize) % pieces.len()];
                    for (k, c) in p.chars().enumerate() {
                        text.insert(at + k, c);
                    }
                }
                _ => text.truncate(at),
            }
        }
        let text: String = text.into_iter().collect();
        if let Ok(e) = parse(&text) {
            let _ = instant(d.as_slice(), &e, 2 * MIN, &QueryOptions::default());
        } else if let Err(err) = parse(&text) {
            assert!(err.column >= 1 && err.line >= 1, "{text}: {err}");
            let _ = err.caret();
        }
    }
}

#[test]
fn histogram_quantile_as_prometheus_tests_it() {
    // histograms.test: a histogram of positive observations and one starting below 0.
    let d = load(
        5 * MIN,
        &[
            (
                r#"testhistogram_bucket{le="0.1",start="positive"}"#,
                "0+5x10",
            ),
            (
                r#"testhistogram_bucket{le=".2",start="positive"}"#,
                "0+7x10",
            ),
            (
                r#"testhistogram_bucket{le="1e0",start="positive"}"#,
                "0+11x10",
            ),
            (
                r#"testhistogram_bucket{le="+Inf",start="positive"}"#,
                "0+12x10",
            ),
            (
                r#"testhistogram_bucket{le="-.2",start="negative"}"#,
                "0+1x10",
            ),
            (
                r#"testhistogram_bucket{le="-0.1",start="negative"}"#,
                "0+2x10",
            ),
            (
                r#"testhistogram_bucket{le="0.3",start="negative"}"#,
                "0+2x10",
            ),
            (
                r#"testhistogram_bucket{le="+Inf",start="negative"}"#,
                "0+3x10",
            ),
        ],
    );
    let t = 50 * MIN;
    let q = |phi: &str| format!("histogram_quantile({phi}, testhistogram_bucket)");
    let (pos, neg) = (r#"{start="positive"}"#, r#"{start="negative"}"#);
    check(
        &d,
        t,
        &q("-0.1"),
        &[(pos, f64::NEG_INFINITY), (neg, f64::NEG_INFINITY)],
    );
    check(&d, t, &q("0"), &[(pos, 0.0), (neg, -0.2)]);
    check(&d, t, &q("0.2"), &[(pos, 0.048), (neg, -0.2)]);
    check(&d, t, &q("0.5"), &[(pos, 0.15), (neg, -0.15)]);
    check(&d, t, &q("0.8"), &[(pos, 0.72), (neg, 0.3)]);
    check(&d, t, &q("1"), &[(pos, 1.0), (neg, 0.3)]);
    check(
        &d,
        t,
        &q("1.01"),
        &[(pos, f64::INFINITY), (neg, f64::INFINITY)],
    );
    // Over rates, summed by le, as the dashboard and alert rules write it.
    check(
        &d,
        t,
        "histogram_quantile(0.5, sum by (le) (rate(testhistogram_bucket{start=\"positive\"}[10m])))",
        &[("{}", 0.15)],
    );
    // A histogram without its +Inf bucket, or without observations, has no quantile.
    let e = load(
        5 * MIN,
        &[
            (r#"h_bucket{le="1"}"#, "0+1x10"),
            (r#"h_bucket{le="2"}"#, "0+2x10"),
        ],
    );
    assert!(at(&e, t, "histogram_quantile(0.5, h_bucket)")[0].1.is_nan());
    let z = load(
        5 * MIN,
        &[
            (r#"h_bucket{le="1"}"#, "0+0x10"),
            (r#"h_bucket{le="+Inf"}"#, "0+0x10"),
        ],
    );
    assert!(at(&z, t, "histogram_quantile(0.5, h_bucket)")[0].1.is_nan());
    // Located errors.
    for (bad, col) in [
        ("histogram_quantile(x, h_bucket)", 20),
        ("histogram_quantile(0.5, h_bucket[5m])", 25),
        ("histogram_quantile(0.5)", 23),
    ] {
        let err = parse(bad).expect_err(bad);
        assert_eq!(err.column, col, "{bad}: {err}");
    }
}
