//! Per-revision traffic counters and a fixed-bucket latency histogram, all atomics.
//! The hot path only does relaxed increments; `Metrics` is the serialisable snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::workers;

/// A snapshot of the proxy's counters since start or the last `reset_metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Keyed by revision.
    pub revisions: BTreeMap<String, RevisionStats>,
    /// Requests (or connections) answered 503 because no backend was available at all.
    pub no_backend: u64,
}

/// Counters of one revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RevisionStats {
    /// HTTP requests, or TCP connections, routed to this revision.
    pub requests: u64,
    /// Backend answers with a 5xx status (HTTP only).
    pub responses_5xx: u64,
    /// Requests that got no answer from a backend of this revision: every connect attempt
    /// failed, or the exchange broke before a response; the client got a 502/503.
    pub failures: u64,
    /// In flight now (a gauge; not reset).
    pub active: u64,
    pub latency: LatencyStats,
    /// Since the proxy started, never reset (what `/metrics` exports).
    #[serde(skip)]
    pub totals: Totals,
}

/// Counters of one revision since the proxy started: `reset_metrics` leaves them, so a
/// scraper sees counters that only grow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Requests by the class of their answer, indexed as [`CLASSES`]: a backend's
    /// status, `5xx` when no backend answered (the client got a 502/503, or a TCP
    /// connection closed), `other` for a TCP connection forwarded.
    pub by_class: [u64; 6],
    /// Observations per latency bucket (not cumulative), bounds [`TOTAL_BUCKETS`], the
    /// last one `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of the latencies, in seconds.
    pub sum_seconds: f64,
}

/// The classes of [`Totals::by_class`], in order.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Upper bounds in seconds of [`Totals::buckets`] (client_golang's defaults, as
/// `baton_metrics::REQUEST_BUCKETS`).
pub const TOTAL_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

/// Latency to response headers (HTTP) or to the backend connection being open (TCP).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

const BUCKETS: usize = 64;

/// Upper bounds in microseconds: 50 µs growing by 25 % per bucket (~80 s at the top); a
/// percentile is reported as its bucket's upper bound, so it is at most 25 % high.
const BOUNDS_US: [u64; BUCKETS] = bounds();

const fn bounds() -> [u64; BUCKETS] {
    let mut b = [0u64; BUCKETS];
    b[0] = 50;
    let mut i = 1;
    while i < BUCKETS {
        b[i] = b[i - 1] * 5 / 4 + 1;
        i += 1;
    }
    b
}

/// Live counters of one revision; backends hold an `Arc` so the hot path does no lookup.
///
/// Kept per worker thread (see `workers::slot`) and summed when read, so the proxy's
/// workers never write the same cache line on the request path.
#[derive(Debug)]
pub(crate) struct RevisionMetrics {
    shards: Box<[Shard]>,
}

#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    requests: AtomicU64,
    responses_5xx: AtomicU64,
    failures: AtomicU64,
    /// Entered minus left on this shard; may wrap when a request leaves on another
    /// thread than it entered, the wrapping sum over shards is still exact.
    active: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    /// Never reset: requests by class, latency in `TOTAL_BUCKETS` (+Inf last), the sum
    /// of latencies in microseconds.
    classes: [AtomicU64; 6],
    totals: [AtomicU64; TOTAL_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            requests: AtomicU64::new(0),
            responses_5xx: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            active: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            classes: std::array::from_fn(|_| AtomicU64::new(0)),
            totals: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Default for RevisionMetrics {
    fn default() -> Self {
        RevisionMetrics {
            shards: (0..workers::slots()).map(|_| Shard::default()).collect(),
        }
    }
}

impl RevisionMetrics {
    fn shard(&self) -> &Shard {
        &self.shards[workers::slot().min(self.shards.len() - 1)]
    }

    fn sum(&self, field: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(field(s).load(Relaxed)))
    }

    pub fn request(&self) {
        self.shard().requests.fetch_add(1, Relaxed);
    }

    pub fn response(&self, status: u16, latency: Duration) {
        let shard = self.shard();
        if status >= 500 {
            shard.responses_5xx.fetch_add(1, Relaxed);
        }
        shard.classes[class_index(status)].fetch_add(1, Relaxed);
        self.latency(latency);
    }

    /// A latency without a status (a TCP connection opened): class `other`.
    pub fn observe(&self, latency: Duration) {
        self.shard().classes[5].fetch_add(1, Relaxed);
        self.latency(latency);
    }

    fn latency(&self, latency: Duration) {
        let shard = self.shard();
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us).min(BUCKETS - 1);
        shard.latency[i].fetch_add(1, Relaxed);
        let secs = latency.as_secs_f64();
        let t = TOTAL_BUCKETS.partition_point(|&b| b < secs);
        shard.totals[t].fetch_add(1, Relaxed);
        shard.sum_us.fetch_add(us, Relaxed);
    }

    pub fn failure(&self) {
        let shard = self.shard();
        shard.failures.fetch_add(1, Relaxed);
        shard.classes[4].fetch_add(1, Relaxed);
    }

    pub fn enter(&self) {
        self.shard().active.fetch_add(1, Relaxed);
    }

    pub fn leave(&self) {
        self.shard().active.fetch_sub(1, Relaxed);
    }

    fn active(&self) -> u64 {
        self.sum(|s| &s.active)
    }

    fn reset(&self) {
        for s in self.shards.iter() {
            s.requests.store(0, Relaxed);
            s.responses_5xx.store(0, Relaxed);
            s.failures.store(0, Relaxed);
            for b in &s.latency {
                b.store(0, Relaxed);
            }
        }
    }

    fn snapshot(&self) -> RevisionStats {
        let counts: Vec<u64> = (0..BUCKETS).map(|i| self.sum(|s| &s.latency[i])).collect();
        RevisionStats {
            requests: self.sum(|s| &s.requests),
            responses_5xx: self.sum(|s| &s.responses_5xx),
            failures: self.sum(|s| &s.failures),
            active: self.active(),
            latency: LatencyStats {
                count: counts.iter().sum(),
                p50_ms: percentile(&counts, 0.50),
                p95_ms: percentile(&counts, 0.95),
                p99_ms: percentile(&counts, 0.99),
            },
            totals: Totals {
                by_class: std::array::from_fn(|i| self.sum(|s| &s.classes[i])),
                buckets: (0..=TOTAL_BUCKETS.len())
                    .map(|i| self.sum(|s| &s.totals[i]))
                    .collect(),
                sum_seconds: self.sum(|s| &s.sum_us) as f64 / 1e6,
            },
        }
    }
}

/// The upper bound (ms) of the bucket holding the `q` quantile; 0 when empty.
fn percentile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return BOUNDS_US[i] as f64 / 1000.0;
        }
    }
    BOUNDS_US[BUCKETS - 1] as f64 / 1000.0
}

/// All revisions' counters.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    revisions: Mutex<HashMap<String, Arc<RevisionMetrics>>>,
    no_backend: AtomicU64,
}

impl Registry {
    /// The counters of `revision`, created on first use (at `set_backends`, not per request).
    pub fn revision(&self, revision: &str) -> Arc<RevisionMetrics> {
        let mut map = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(revision.to_owned()).or_default().clone()
    }

    pub fn no_backend(&self) {
        self.no_backend.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Metrics {
        let map = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Metrics {
            revisions: map.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect(),
            no_backend: self.no_backend.load(Relaxed),
        }
    }

    /// Zeroes the counters and forgets revisions that no backend refers to any more.
    pub fn reset(&self) {
        let mut map = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, m| Arc::strong_count(m) > 1 || m.active() > 0);
        for m in map.values() {
            m.reset();
        }
        self.no_backend.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_and_cover_a_minute() {
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
        assert!(BOUNDS_US[BUCKETS - 1] > 60_000_000);
    }

    #[test]
    fn percentiles_come_from_buckets() {
        let m = RevisionMetrics::default();
        for _ in 0..95 {
            m.response(200, Duration::from_millis(1));
        }
        for _ in 0..5 {
            m.response(503, Duration::from_millis(100));
        }
        let s = m.snapshot();
        assert_eq!(s.latency.count, 100);
        assert_eq!(s.responses_5xx, 5);
        assert!((1.0..=1.25).contains(&s.latency.p50_ms), "{s:?}");
        assert!((1.0..=1.25).contains(&s.latency.p95_ms), "{s:?}");
        assert!((100.0..=125.0).contains(&s.latency.p99_ms), "{s:?}");
        m.reset();
        assert_eq!(m.snapshot().latency, LatencyStats::default());
    }

    #[test]
    fn huge_latency_lands_in_the_last_bucket() {
        let m = RevisionMetrics::default();
        m.observe(Duration::MAX);
        assert_eq!(
            m.snapshot().latency.p99_ms,
            BOUNDS_US[BUCKETS - 1] as f64 / 1000.0
        );
    }

    #[test]
    fn totals_count_classes_and_buckets_and_survive_a_reset() {
        let m = RevisionMetrics::default();
        m.response(200, Duration::from_millis(3));
        m.response(404, Duration::from_millis(30));
        m.response(503, Duration::from_secs(20));
        m.failure();
        m.observe(Duration::from_millis(7));
        m.reset();
        let t = m.snapshot().totals;
        assert_eq!(t.by_class, [0, 1, 0, 1, 2, 1]);
        // 3 ms ≤ 5 ms, 7 ms ≤ 10 ms, 30 ms ≤ 50 ms, 20 s in +Inf.
        let mut want = vec![0u64; TOTAL_BUCKETS.len() + 1];
        want[0] = 1;
        want[1] = 1;
        want[3] = 1;
        want[TOTAL_BUCKETS.len()] = 1;
        assert_eq!(t.buckets, want);
        assert!((t.sum_seconds - 20.040).abs() < 1e-9, "{t:?}");
        assert_eq!(
            m.snapshot().requests,
            0,
            "the resettable counters were reset"
        );
    }
}
