//! Synthetic but realistic series for the storage figures: request counters that grow at
//! a wandering rate, CPU seconds (full-precision floats), memory that wanders by pages,
//! small gauges that rarely change, and a latency histogram, sampled every 10 s.

use std::path::Path;

use baton_metrics::{History, HistoryConfig, Labels, Scrape};

pub const STEP_MS: i64 = 10_000;
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Kind {
    /// Integer counter, `rate` per step on average, the rate itself wandering.
    Requests { rate: f64 },
    /// CPU seconds from nanoseconds: a float counter with every mantissa bit in use.
    Cpu,
    /// Bytes, moving by whole 4 KiB pages.
    Memory,
    /// A small integer that changes now and then.
    Small,
    /// A latency histogram's buckets, sum and count.
    Histogram,
}

struct Series {
    labels: Vec<Labels>,
    values: Vec<f64>,
    kind: Kind,
}

/// The mix of one service's replica-level and service-level series.
pub struct Workload {
    series: Vec<Series>,
    rng: Rng,
}

const BOUNDS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

impl Workload {
    /// `replicas` containers of one service, its proxy series and one histogram.
    pub fn new(replicas: usize, seed: u64) -> Self {
        let mut series = Vec::new();
        for r in 0..replicas {
            let r = r.to_string();
            let one = |name: &str| {
                vec![Labels::metric(
                    name,
                    [("service", "web"), ("replica", r.as_str())],
                )]
            };
            series.push(Series {
                labels: one("baton_container_cpu_seconds_total"),
                values: vec![1000.0],
                kind: Kind::Cpu,
            });
            series.push(Series {
                labels: one("baton_container_memory_bytes"),
                values: vec![256.0 * 1024.0 * 1024.0],
                kind: Kind::Memory,
            });
            series.push(Series {
                labels: one("baton_container_network_receive_bytes_total"),
                values: vec![1e9],
                kind: Kind::Requests { rate: 200_000.0 },
            });
            series.push(Series {
                labels: one("baton_container_network_transmit_bytes_total"),
                values: vec![3e9],
                kind: Kind::Requests { rate: 900_000.0 },
            });
            series.push(Series {
                labels: one("baton_container_restarts_total"),
                values: vec![0.0],
                kind: Kind::Small,
            });
        }
        for code in ["2xx", "4xx", "5xx"] {
            let rate = match code {
                "2xx" => 400.0,
                "4xx" => 12.0,
                _ => 0.5,
            };
            series.push(Series {
                labels: vec![Labels::metric(
                    "baton_proxy_requests_total",
                    [("service", "web"), ("code", code)],
                )],
                values: vec![0.0],
                kind: Kind::Requests { rate },
            });
        }
        for (name, v) in [
            ("baton_proxy_in_flight", 3.0),
            ("baton_service_replicas", replicas as f64),
        ] {
            series.push(Series {
                labels: vec![Labels::metric(name, [("service", "web")])],
                values: vec![v],
                kind: Kind::Small,
            });
        }
        let mut labels: Vec<Labels> = BOUNDS
            .iter()
            .map(|le| {
                Labels::metric(
                    "baton_proxy_request_duration_seconds_bucket",
                    [("service", "web"), ("le", *le)],
                )
            })
            .collect();
        labels.push(Labels::metric(
            "baton_proxy_request_duration_seconds_sum",
            [("service", "web")],
        ));
        labels.push(Labels::metric(
            "baton_proxy_request_duration_seconds_count",
            [("service", "web")],
        ));
        let n = labels.len();
        series.push(Series {
            labels,
            values: vec![0.0; n],
            kind: Kind::Histogram,
        });
        Workload {
            series,
            rng: Rng::new(seed),
        }
    }

    /// How many series one scrape holds.
    pub fn width(&self) -> usize {
        self.series.iter().map(|s| s.labels.len()).sum()
    }

    /// The next scrape, at `t`.
    pub fn scrape(&mut self, t: i64) -> Scrape {
        let rng = &mut self.rng;
        let mut samples = Vec::new();
        for s in &mut self.series {
            match &mut s.kind {
                Kind::Requests { rate } => {
                    *rate = (*rate * (0.95 + 0.1 * rng.unit())).max(0.1);
                    s.values[0] += (*rate * (0.5 + rng.unit())).round();
                }
                Kind::Cpu => s.values[0] += (rng.next() % 2_000_000_000) as f64 / 1e9,
                Kind::Memory => {
                    let pages = (rng.next() % 65) as f64 - 32.0;
                    s.values[0] = (s.values[0] + pages * 4096.0).max(0.0);
                }
                Kind::Small => {
                    if rng.next() % 500 == 0 {
                        s.values[0] += 1.0;
                    }
                }
                Kind::Histogram => {
                    let n = 300 + rng.next() % 200;
                    for _ in 0..n {
                        let latency = 0.002 * (1.0 / (1.0 - rng.unit() * 0.999)).powf(1.3);
                        let first = [
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                        ]
                        .iter()
                        .position(|b| latency <= *b)
                        .unwrap_or(11);
                        for v in &mut s.values[first..12] {
                            *v += 1.0;
                        }
                        s.values[12] += latency;
                        s.values[13] += 1.0;
                    }
                }
            }
            samples.extend(s.labels.iter().cloned().zip(s.values.iter().copied()));
        }
        Scrape { t, samples }
    }
}

/// Appends `steps` scrapes of `workload` to a history in `dir`; the number of samples.
pub fn fill(dir: &Path, workload: &mut Workload, steps: i64) -> usize {
    let h = History::open(dir, HistoryConfig::default()).expect("open the history");
    let mut samples = 0;
    for i in 0..steps {
        samples += h
            .append(&workload.scrape(T0 + i * STEP_MS))
            .expect("append")
            .samples;
    }
    samples
}

/// Bytes of every file under `dir`: (blocks, log, all).
pub fn disk_bytes(dir: &Path) -> (u64, u64, u64) {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let blocks: u64 = std::fs::read_dir(dir.join("blocks"))
        .map(|d| d.filter_map(Result::ok).map(|e| size(&e.path())).sum())
        .unwrap_or(0);
    let wal = size(&dir.join("wal"));
    (blocks, wal, blocks + wal + size(&dir.join("lock")))
}
