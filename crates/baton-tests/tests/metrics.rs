//! Metrics of a real daemon with real containers: `/metrics` behind tokens, read by a real
//! Prometheus parser (PyPI's prometheus_client) with the proxy's requests, latency
//! histogram and the replicas in it; the history sampled every second into the state
//! directory (private files) and queried through `GET /api/v1/series`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use baton_tests::api::{request, token};
use baton_tests::pipeline::Serve;
use baton_tests::{
    assert_private, docker_available, free_port, http_get, wait_for, web_service, within, Scratch,
};
use serde_json::Value;

/// Reads the exposition on stdin; prints one JSON line per sample.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps([family.type, s.name, s.labels, s.value]))
"#;

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
        eprintln!("skipped: no python3 prometheus_client (scripts/ensure-metrics.sh)");
    }
    ok
}

/// One sample as the parser read it.
#[derive(Debug)]
struct Parsed {
    kind: String,
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

fn parse(text: &str) -> Vec<Parsed> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
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
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            Parsed {
                kind: v[0].as_str().unwrap_or("").into(),
                name: v[1].as_str().unwrap_or("").into(),
                labels: v[2].as_object().cloned().unwrap_or_default(),
                value: v[3].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include every pair of `want`.
fn total(parsed: &[Parsed], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = parsed
        .iter()
        .filter(|p| p.name == name)
        .filter(|p| {
            want.iter()
                .all(|(k, v)| p.labels.get(*k) == Some(&Value::from(*v)))
        })
        .map(|p| p.value)
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}

fn scrape(port: u16, token: &str) -> String {
    let a = request(port, "GET", "/metrics", Some(token), None);
    assert_eq!(a.status, 200, "{a:?}");
    a.body.as_str().expect("text").to_string()
}

fn series(port: u16, token: &str, query: &str, from: f64) -> (u16, Value) {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let a = request(
        port,
        "GET",
        &format!("/api/v1/series?query={q}&from={from}&step=1s"),
        Some(token),
        None,
    );
    (a.status, a.body)
}

#[test]
fn metrics_of_a_real_daemon_parse_and_its_history_answers_queries() {
    if !docker_available() || !parser_available() {
        return;
    }
    let s = Scratch::new("metrics");
    let web_port = free_port();
    s.write(
        "compose.yaml",
        &web_service(
            web_port,
            ("3s", 4),
            "      rollout:\n        strategy: rolling",
        ),
    );
    let viewer = token(&s, "scraper", "viewer");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _serve = Serve::start(&s, &["--listen", &addr, "--sample-interval", "1s"], &[]);
    let log = || std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    assert!(
        within(Duration::from_secs(60), || request(
            port,
            "GET",
            "/api/v1/openapi.json",
            None,
            None
        )
        .status
            == 200)
        .is_some(),
        "the API never answered:\n{}",
        log()
    );
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    s.ok(&["up", "-d"]);
    assert!(wait_for(web_port, "v1", 90), "v1 serves:\n{}", log());
    let sent = 20;
    for _ in 0..sent {
        assert!(http_get(web_port, 10).is_some_and(|b| b.contains("v1")));
    }

    // No token, a wrong one: refused; any role reads.
    assert_eq!(request(port, "GET", "/metrics", None, None).status, 401);
    assert_eq!(
        request(
            port,
            "GET",
            "/metrics",
            Some("baton_not-a-token-at-all-0123456789"),
            None
        )
        .status,
        401
    );
    let p = s.name.clone();
    let svc = [("project", p.as_str()), ("service", "web")];
    let mut parsed = Vec::new();
    let full = within(Duration::from_secs(30), || {
        parsed = parse(&scrape(port, &viewer));
        total(
            &parsed,
            "baton_proxy_requests_total",
            &[svc[0], svc[1], ("code", "2xx")],
        )
        .is_some_and(|n| n >= f64::from(sent))
            && total(
                &parsed,
                "baton_service_replicas",
                &[svc[0], svc[1], ("state", "healthy")],
            ) == Some(3.0)
    });
    assert!(full.is_some(), "{parsed:#?}");
    for (state, want) in [("desired", 3.0), ("running", 3.0), ("healthy", 3.0)] {
        assert_eq!(
            total(
                &parsed,
                "baton_service_replicas",
                &[svc[0], svc[1], ("state", state)]
            ),
            Some(want),
            "{state}"
        );
    }
    // A real histogram: buckets, count and sum, every request in it.
    let count = total(&parsed, "baton_proxy_request_duration_seconds_count", &svc).unwrap();
    assert!(count >= f64::from(sent), "{count}");
    let inf = total(
        &parsed,
        "baton_proxy_request_duration_seconds_bucket",
        &[svc[0], svc[1], ("le", "+Inf")],
    );
    assert_eq!(inf, Some(count));
    assert!(parsed
        .iter()
        .any(|x| x.name == "baton_proxy_request_duration_seconds_bucket" && x.kind == "histogram"));
    let sum = total(&parsed, "baton_proxy_request_duration_seconds_sum", &svc).unwrap();
    assert!(sum > 0.0 && sum < count * 10.0, "{sum}");
    assert_eq!(
        total(&parsed, "baton_proxy_in_flight", &svc),
        Some(0.0),
        "nothing in flight between requests"
    );
    // The containers' resource use, read from the engine every 5 s.
    let used = within(Duration::from_secs(30), || {
        parsed = parse(&scrape(port, &viewer));
        let replicas = parsed
            .iter()
            .filter(|x| x.name == "baton_container_memory_bytes" && x.value > 0.0)
            .filter(|x| x.labels.get("service") == Some(&Value::from("web")))
            .count();
        replicas == 3
            && total(&parsed, "baton_container_cpu_seconds_total", &svc).is_some_and(|c| c > 0.0)
            && total(&parsed, "baton_container_network_receive_bytes_total", &svc).is_some()
    });
    assert!(used.is_some(), "{parsed:#?}");
    // Every request label is a bounded class and a short revision.
    for x in parsed
        .iter()
        .filter(|x| x.name == "baton_proxy_requests_total")
    {
        let code = x.labels["code"].as_str().unwrap();
        assert!(
            ["1xx", "2xx", "3xx", "4xx", "5xx", "other"].contains(&code),
            "{x:?}"
        );
        assert_eq!(x.labels["revision"].as_str().unwrap().len(), 12, "{x:?}");
    }

    // The history: sampled every second, queried over HTTP.
    let mut answer = Value::Null;
    let sampled = within(Duration::from_secs(30), || {
        let (status, body) = series(
            port,
            &viewer,
            "sum(baton_service_replicas{state=\"running\",service=\"web\"})",
            started,
        );
        assert_eq!(status, 200, "{body}");
        answer = body;
        answer["series"][0]["points"]
            .as_array()
            .is_some_and(|pts| pts.iter().filter(|p| p[1] == 3.0).count() >= 2)
    });
    assert!(sampled.is_some(), "{answer}\n{}", log());
    assert_eq!(answer["step"], 1.0);
    let mut body = Value::Null;
    let counted = within(Duration::from_secs(30), || {
        body = series(
            port,
            &viewer,
            "sum by (code) (increase(baton_proxy_requests_total{service=\"web\"}[1m]))",
            started,
        )
        .1;
        body["series"][0]["labels"]["code"] == "2xx"
    });
    assert!(
        counted.is_some(),
        "{body}\n{}",
        series(port, &viewer, "baton_proxy_requests_total", started).1
    );
    // A bad expression is a located error; a bad step a 400; no token a 401.
    let (status, body) = series(
        port,
        &viewer,
        "sum(rate(baton_proxy_requests_total[1m])",
        started,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("column"), "{body}");
    let a = request(
        port,
        "GET",
        "/api/v1/series?query=up&step=often",
        Some(&viewer),
        None,
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(
        request(port, "GET", "/api/v1/series?query=up", None, None).status,
        401
    );
    // The route is in the document; the history's files are the owner's alone.
    let doc = request(port, "GET", "/api/v1/openapi.json", None, None).body;
    assert!(doc["paths"]["/api/v1/series"]["get"].is_object(), "{doc}");
    let dir = s.state.path().join("metrics");
    assert!(dir.join("wal").is_file(), "{}", dir.display());
    assert_private(&dir);
}
