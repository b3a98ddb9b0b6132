//! Synthetic but realistic series for the storage figures: request counters that grow at
//! a wandering rate, CPU seconds (full-precision floats), memory that wanders by pages,
//! small gauges that rarely change, and a latency histogram, sampled every 10 s.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::Path;

use baton_metrics::{
    ContainerLabels, History, HistoryConfig, HostLabels, JobLabels, Labels, Metrics, ReplicaLabels,
    ReplicaState, RequestLabels, RevisionLabels, RolloutPhase, RuleLabels, RunLabels, RunStatus,
    Scrape, ServiceLabels, VmLabels, VmPhase,
};

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
                    if rng.next().is_multiple_of(500) {
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

/// 20 services of 10 replicas in two projects, two revisions each (a rollout in progress),
/// five pipelines, ten VMs, twenty hosts: what a daemon with 200 replicas exports.
pub fn populate(m: &Metrics) {
    for s in 0..20 {
        let (project, service) = (format!("shop{}", s % 2), format!("svc{s}"));
        for (r, rev) in ["a1b2c3", "d4e5f6"].iter().enumerate() {
            for code in [200u16, 404, 503] {
                m.proxy
                    .requests
                    .get(&RequestLabels::new(&project, &service, *rev, code))
                    .inc_by(1000.0 * (s + 1) as f64 + f64::from(code));
            }
            let rl = RevisionLabels::new(&project, &service, *rev);
            let h = m.proxy.request_duration.get(&rl);
            for i in 0..50 {
                h.observe(0.001 * f64::from(i * (r as u32 + 1)));
            }
            m.proxy.in_flight.get(&rl).set(3.0);
            m.services
                .rollout_weight
                .get(&rl)
                .set(0.25 + 0.5 * r as f64);
        }
        for (st, n) in [
            (ReplicaState::Desired, 10.0),
            (ReplicaState::Running, 10.0),
            (ReplicaState::Healthy, 9.0),
        ] {
            m.services
                .replicas
                .get(&ReplicaLabels::new(&project, &service, st))
                .set(n);
        }
        m.services
            .rollout_status
            .get(&ServiceLabels::new(&project, &service))
            .set(RolloutPhase::Progressing.value());
        for replica in 1..=10 {
            let c = ContainerLabels::new(&project, &service, replica.to_string());
            m.containers.restarts.get(&c).inc();
            m.containers
                .cpu_seconds
                .get(&c)
                .set_total(12.345_678_9 * f64::from(replica));
            m.containers
                .memory_bytes
                .get(&c)
                .set(64.0 * 1024.0 * 1024.0);
            m.containers.network_receive_bytes.get(&c).inc_by(1.5e9);
            m.containers.network_transmit_bytes.get(&c).inc_by(2e6);
        }
    }
    for p in 0..5 {
        let pipeline = format!("deploy-{p}");
        m.pipelines
            .runs
            .get(&RunLabels::new(&pipeline, RunStatus::Succeeded))
            .inc_by(7.0);
        m.pipelines
            .runs
            .get(&RunLabels::new(&pipeline, RunStatus::Failed))
            .inc();
        for j in 0..6 {
            m.pipelines
                .job_duration
                .get(&JobLabels::new(&pipeline, format!("job{j}")))
                .observe(42.0);
        }
    }
    for v in 0..10 {
        let l = VmLabels::new(format!("vm{v}"));
        m.vms.state.get(&l).set(VmPhase::Running.value());
        m.vms.cpu_seconds.get(&l).inc_by(99.5);
        m.vms.memory_bytes.get(&l).set(2e9);
    }
    for h in 0..20 {
        let l = HostLabels::new("shop", format!("host{h}.example"));
        m.fleet.up.get(&l).set(1.0);
        m.fleet.load1.get(&l).set(0.53);
        m.fleet.load5.get(&l).set(0.4);
        m.fleet.load15.get(&l).set(0.2);
        m.fleet.memory_total_bytes.get(&l).set(16e9);
        m.fleet.memory_available_bytes.get(&l).set(9e9);
        m.fleet.disk_total_bytes.get(&l).set(5e11);
        m.fleet.disk_available_bytes.get(&l).set(2e11);
    }
    m.alerts.firing.get(&RuleLabels::new("web-errors")).set(2.0);
    // Label values that need escaping in the text format.
    m.services
        .rollout_status
        .get(&ServiceLabels::new("we\"ird", "back\\slash\nnewline"))
        .set(2.0);
}
