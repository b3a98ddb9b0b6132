//! Queries over the history (blocks on disk and the head in memory) answer exactly what
//! the same queries answer over the same samples held in memory.

mod synthetic;

use baton_metrics::query::{instant, range, Value};
use baton_metrics::{parse, History, HistoryConfig, Labels, QueryOptions};
use synthetic::{Workload, STEP_MS, T0};

const HOUR: i64 = 3_600_000;

#[test]
fn the_history_answers_as_the_samples_in_memory_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    let mut w = Workload::new(3, 11);
    let mut memory: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
    // Five hours: two blocks on disk, the rest in the head.
    for i in 0..(5 * 360) {
        let scrape = w.scrape(T0 + i * STEP_MS);
        for (l, v) in &scrape.samples {
            memory.entry(l.clone()).or_default().push((scrape.t, *v));
        }
        h.append(&scrape).expect("append");
    }
    let memory: Vec<(Labels, Vec<(i64, f64)>)> = memory.into_iter().collect();
    let opts = QueryOptions::default();
    let queries = [
        "baton_container_memory_bytes",
        r#"sum by (code) (rate(baton_proxy_requests_total[5m]))"#,
        r#"sum(rate(baton_proxy_requests_total{code="5xx"}[10m])) / sum(rate(baton_proxy_requests_total[10m])) >= 0"#,
        r#"max_over_time(baton_container_memory_bytes{replica=~"0|2"}[1h]) / 1024 / 1024"#,
        r#"avg without (replica) (rate(baton_container_cpu_seconds_total[15m]))"#,
        r#"increase(baton_proxy_request_duration_seconds_bucket{le="0.1"}[30m]) / ignoring (le) increase(baton_proxy_request_duration_seconds_count[30m])"#,
    ];
    for q in queries {
        let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        for t in [
            T0 + HOUR,
            T0 + 2 * HOUR,
            T0 + 4 * HOUR + 123_456,
            T0 + 5 * HOUR,
        ] {
            let a = instant(&h, &e, t, &opts).expect("history");
            let b = instant(memory.as_slice(), &e, t, &opts).expect("memory");
            assert_eq!(a, b, "{q} at {t}");
            if let Value::Vector(v) = &a {
                assert!(!v.is_empty(), "{q} at {t} is empty");
            }
        }
        for step in [60_000, HOUR / 2] {
            let a = range(&h, &e, T0 + HOUR, T0 + 5 * HOUR, step, &opts).expect("history");
            let b = range(memory.as_slice(), &e, T0 + HOUR, T0 + 5 * HOUR, step, &opts)
                .expect("memory");
            assert_eq!(a, b, "{q} every {step} ms");
            assert!(!a.is_empty(), "{q}");
        }
    }
}
