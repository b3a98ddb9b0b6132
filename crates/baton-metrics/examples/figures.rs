//! The figures docs/metrics.md quotes: bytes per sample on disk for a week of samples,
//! the time to render and sample the registry with 200 replicas' worth of series, and
//! the time of queries over 14 days. `cargo run --release -p baton-metrics --example figures`

#[path = "../tests/synthetic/mod.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use baton_metrics::query::range;
use baton_metrics::{parse, History, HistoryConfig, Metrics, MetricsConfig, QueryOptions};
use synthetic::{disk_bytes, fill, populate, Workload, STEP_MS, T0};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let replicas: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);

    // Storage: one week at 10 s.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Workload::new(replicas, 7);
    let week = 7 * 24 * 360;
    let start = Instant::now();
    let samples = fill(dir.path(), &mut w, week);
    let took = start.elapsed();
    let (blocks, wal, all) = disk_bytes(dir.path());
    println!(
        "storage: {} series, {samples} samples (a week at 10 s) appended in {took:.1?}: {all} bytes on disk ({blocks} blocks, {wal} log) = {:.2} bytes/sample",
        w.width(),
        all as f64 / samples as f64
    );

    // Scrape: 200 replicas' worth of series.
    let m = Metrics::new(MetricsConfig::default());
    populate(&m);
    let mut bytes = 0;
    let render = median(
        (0..50)
            .map(|_| {
                let s = Instant::now();
                bytes = m.render().len();
                s.elapsed()
            })
            .collect(),
    );
    let mut n = 0;
    let sample = median(
        (0..50)
            .map(|i| {
                let s = Instant::now();
                n = m.sample(i).samples.len();
                s.elapsed()
            })
            .collect(),
    );
    println!("scrape (200 replicas): render {render:.2?} for {bytes} bytes; sample {sample:.2?} for {n} series");

    // Queries over 14 days, the week above continued.
    let h = History::open(dir.path(), HistoryConfig::default()).expect("reopen");
    let start = Instant::now();
    for i in week..(2 * week) {
        h.append(&w.scrape(T0 + i * STEP_MS)).expect("append");
    }
    println!("second week appended in {:.1?}", start.elapsed());
    let (from, to) = (T0, T0 + 2 * week * STEP_MS - STEP_MS);
    let opts = QueryOptions::default();
    for (q, step) in [
        (
            "sum by (code) (rate(baton_proxy_requests_total[1h]))",
            3_600_000,
        ),
        ("max_over_time(baton_container_memory_bytes[1h])", 3_600_000),
        ("baton_container_memory_bytes", 3_600_000),
        (
            "sum by (code) (rate(baton_proxy_requests_total[5m]))",
            300_000,
        ),
    ] {
        let e = parse(q).expect("parses");
        let runs: Vec<Duration> = (0..5)
            .map(|_| {
                let s = Instant::now();
                let out = range(&h, &e, from, to, step, &opts).expect("query");
                assert!(!out.is_empty());
                s.elapsed()
            })
            .collect();
        println!(
            "query over 14 days every {} min: {q}: {:.1?}",
            step / 60_000,
            median(runs)
        );
    }
}
