//! The exposition read by a real Prometheus parser (PyPI's prometheus_client), against the
//! samples the history stores; the scrape of 200 replicas' worth of series, timed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

mod synthetic;

use baton_metrics::metric::format_le;
use baton_metrics::{ContainerLabels, Metrics, MetricsConfig};
use synthetic::populate;

/// Reads the exposition on stdin with the given parser; prints one JSON line per sample.
const PARSE: &str = r#"
import json, sys
from importlib import import_module
parser = import_module(sys.argv[1])
for family in parser.text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps([family.name, family.type, s.name, sorted(s.labels.items()), repr(s.value)]))
"#;

/// Whether python3 with prometheus_client is here; with `BATON_REQUIRE_PYTHON` set a
/// missing one is a failure, not a skip.
fn parser_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_PYTHON").is_none(),
            "BATON_REQUIRE_PYTHON is set but python3 cannot import prometheus_client: run scripts/ensure-metrics.sh"
        );
        eprintln!("skipped: no python3 prometheus_client (scripts/ensure-metrics.sh; BATON_REQUIRE_PYTHON=1 makes this a failure)");
    }
    ok
}

/// `(family, type, sample name, labels, value)` for every sample the parser read.
type Parsed = Vec<(String, String, String, Vec<(String, String)>, f64)>;

/// One line of `PARSE`; the value travels as Python's repr, which Rust parses exactly
/// (serde_json's float parsing may be one unit in the last place off).
type Line = (String, String, String, Vec<(String, String)>, String);

fn parse(module: &str, text: &str) -> Parsed {
    let mut child = Command::new("python3")
        .args(["-c", PARSE, module])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "{module} refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (f, t, n, labels, v): Line = serde_json::from_str(l).expect("a JSON line");
            (f, t, n, labels, v.parse().expect("a float"))
        })
        .collect()
}

fn check_against_samples(m: &Metrics, parsed: &Parsed) {
    let scrape = m.sample(1_700_000_000_000);
    assert!(
        scrape.samples.len() > 2000,
        "{} samples",
        scrape.samples.len()
    );
    let mut seen = std::collections::BTreeMap::new();
    for (_, _, name, labels, value) in parsed {
        // OpenMetrics writes bounds as floats (`1.0`): compare them as the text format has them.
        let pairs = labels
            .iter()
            .map(|(k, v)| match (k.as_str(), v.parse::<f64>()) {
                ("le", Ok(le)) => (k.clone(), format_le(le)),
                _ => (k.clone(), v.clone()),
            });
        let key = baton_metrics::Labels::metric(name, pairs);
        seen.insert(key, *value);
    }
    for (labels, value) in &scrape.samples {
        let got = seen
            .get(labels)
            .unwrap_or_else(|| panic!("{labels} is sampled but not exposed"));
        assert_eq!(got, value, "{labels}");
    }
    // The parsers add `_created` series for OpenMetrics; everything else matches.
    let exposed = parsed.iter().filter(|p| !p.2.ends_with("_created")).count();
    assert_eq!(exposed, scrape.samples.len());
}

#[test]
fn a_prometheus_parser_reads_the_exposition_as_the_history_samples_it() {
    let m = Metrics::new(MetricsConfig::default());
    populate(&m);
    let text = m.render();
    assert!(
        text.contains("# TYPE baton_proxy_requests_total counter"),
        "{text}"
    );
    assert!(text.contains("baton_proxy_request_duration_seconds_bucket{project=\"shop0\",service=\"svc0\",revision=\"a1b2c3\",le=\"0.005\"} 6\n"), "{text}");
    assert!(text.contains(
        "baton_container_restarts_total{project=\"shop0\",service=\"svc0\",replica=\"1\"} 1\n"
    ));
    if !parser_available() {
        return;
    }
    let parsed = parse("prometheus_client.parser", &text);
    let types: std::collections::BTreeMap<&str, &str> = parsed
        .iter()
        .map(|p| (p.0.as_str(), p.1.as_str()))
        .collect();
    assert_eq!(types.get("baton_proxy_requests"), Some(&"counter"));
    assert_eq!(
        types.get("baton_proxy_request_duration_seconds"),
        Some(&"histogram")
    );
    assert_eq!(types.get("baton_container_memory_bytes"), Some(&"gauge"));
    check_against_samples(&m, &parsed);

    let parsed = parse(
        "prometheus_client.openmetrics.parser",
        &m.render_openmetrics(),
    );
    check_against_samples(&m, &parsed);
}

#[test]
fn a_full_family_refuses_new_series_and_counts_them() {
    let m = Metrics::new(MetricsConfig {
        max_series_per_family: 3,
    });
    for r in 0..5 {
        m.containers
            .restarts
            .get(&ContainerLabels::new("p", "s", r.to_string()))
            .inc();
    }
    assert_eq!(m.containers.restarts.len(), 3);
    assert_eq!(m.refused("baton_container_restarts"), 2.0);
    assert!(m
        .render()
        .contains("baton_metrics_series_refused_total{family=\"baton_container_restarts\"} 2"));
    m.forget_replica("p", "s", "0");
    assert_eq!(m.containers.restarts.len(), 2);
    m.containers
        .restarts
        .get(&ContainerLabels::new("p", "s", "9"))
        .inc();
    assert_eq!(m.containers.restarts.len(), 3);
}

#[test]
fn forgetting_a_service_removes_its_revisions_and_replicas() {
    let m = Metrics::new(MetricsConfig::default());
    populate(&m);
    let before = m.sample(0).samples.len();
    m.forget_revision("shop0", "svc0", "a1b2c3");
    let text = m.render();
    assert!(
        !text.contains("service=\"svc0\",revision=\"a1b2c3\""),
        "{text}"
    );
    assert!(text.contains("service=\"svc0\",revision=\"d4e5f6\""));
    m.forget_service("shop0", "svc0");
    let text = m.render();
    assert!(!text.contains("service=\"svc0\""), "{text}");
    assert!(text.contains("service=\"svc2\""));
    m.forget_project("shop1");
    assert!(!m.render().contains("project=\"shop1\""));
    m.forget_vm("vm1");
    m.forget_host("host1.example");
    m.forget_pipeline("deploy-1");
    m.forget_rule("web-errors");
    let text = m.render();
    for gone in [
        "vm=\"vm1\"",
        "host=\"host1.example\"",
        "pipeline=\"deploy-1\"",
        "rule=\"web-errors\"",
    ] {
        assert!(!text.contains(gone), "{gone}");
    }
    assert!(m.sample(0).samples.len() < before * 6 / 10);
}

#[test]
fn scrape_time_with_200_replicas() {
    let m = Metrics::new(MetricsConfig::default());
    populate(&m);
    let rounds = 20;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = m.render().len();
    }
    let render = start.elapsed() / rounds;
    let start = Instant::now();
    let mut n = 0;
    for t in 0..rounds {
        n = m.sample(i64::from(t)).samples.len();
    }
    let sample = start.elapsed() / rounds;
    // Printed, not asserted: a shared machine's timing is no verdict.
    println!("render: {render:?} for {bytes} bytes; sample: {sample:?} for {n} series (200 replicas; cargo test --release for the real figure)");
}
