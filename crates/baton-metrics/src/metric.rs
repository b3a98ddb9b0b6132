//! The values a family's series hold: `Counter`, `Gauge` and `Histogram`, lock-free handles
//! that encode themselves for prometheus-client's exposition and read themselves as samples.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A series' value type.
pub trait Value: Clone + fmt::Debug + Send + Sync + 'static {
    const TYPE: MetricType;
    /// A new series of the same shape (a histogram's buckets), at zero.
    fn fresh(&self) -> Self;
    fn encode(&self, encoder: &mut MetricEncoder) -> fmt::Result;
    /// Pushes this series' samples: `(suffix, extra label, value)` as Prometheus names the
    /// series of its type (`_total`; `_bucket{le}`, `_sum`, `_count`).
    fn read(&self, out: &mut Vec<(&'static str, Option<String>, f64)>);
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

/// Whether `v` prints exactly as an integer.
fn integral(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0
}

/// A monotonically increasing total, exposed as `<name>_total`.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1.0);
    }

    /// Adds `v`; a negative or NaN `v` is ignored (a counter only goes up).
    pub fn inc_by(&self, v: f64) {
        if v > 0.0 {
            add_f64(&self.0, v);
        }
    }

    /// Sets the total read from elsewhere (a container's CPU seconds from the engine's
    /// stats); a lower value than before is a reset of the source, as Prometheus reads it.
    pub fn set_total(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Value for Counter {
    const TYPE: MetricType = MetricType::Counter;

    fn fresh(&self) -> Self {
        Counter::default()
    }

    fn encode(&self, encoder: &mut MetricEncoder) -> fmt::Result {
        let v = self.get();
        if integral(v) && v >= 0.0 {
            encoder.encode_counter::<NoLabelSet, _, u64>(&(v as u64), None)
        } else {
            encoder.encode_counter::<NoLabelSet, _, f64>(&v, None)
        }
    }

    fn read(&self, out: &mut Vec<(&'static str, Option<String>, f64)>) {
        out.push(("_total", None, self.get()));
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, v: f64) {
        add_f64(&self.0, v);
    }

    pub fn inc(&self) {
        self.add(1.0);
    }

    pub fn dec(&self) {
        self.add(-1.0);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Value for Gauge {
    const TYPE: MetricType = MetricType::Gauge;

    fn fresh(&self) -> Self {
        Gauge::default()
    }

    fn encode(&self, encoder: &mut MetricEncoder) -> fmt::Result {
        let v = self.get();
        if integral(v) {
            encoder.encode_gauge(&(v as i64))
        } else {
            encoder.encode_gauge(&v)
        }
    }

    fn read(&self, out: &mut Vec<(&'static str, Option<String>, f64)>) {
        out.push(("", None, self.get()));
    }
}

#[derive(Debug)]
struct Buckets {
    /// Upper bounds, increasing and finite; the `+Inf` bucket is implicit.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A classic Prometheus histogram: observations counted in buckets by upper bound
/// (`le`), with their sum and count.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Buckets>);

impl Histogram {
    /// A histogram with these upper bounds (sorted; non-finite ones dropped: `+Inf` is
    /// always there).
    pub fn new(bounds: &[f64]) -> Self {
        let mut b: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let counts = (0..=b.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Buckets {
            bounds: b.into(),
            counts,
            sum: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, v: f64) {
        let i = if v.is_nan() {
            self.0.bounds.len()
        } else {
            self.0.bounds.partition_point(|b| *b < v)
        };
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&self.0.sum, v);
    }

    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Sets every bucket at once from totals counted elsewhere (as `Counter::set_total`):
    /// `counts` per bucket alone (not cumulative), in the order of the bounds with
    /// `+Inf` last; missing ones are 0, extra ones are added to `+Inf`.
    pub fn set_counts(&self, counts: &[u64], sum: f64) {
        let n = self.0.counts.len();
        for (i, c) in self.0.counts.iter().enumerate() {
            let v = if i + 1 == n {
                counts.iter().skip(i).sum()
            } else {
                counts.get(i).copied().unwrap_or(0)
            };
            c.store(v, Ordering::Relaxed);
        }
        self.0.sum.store(sum.to_bits(), Ordering::Relaxed);
    }

    /// `(upper bound, observations in that bucket alone)`, `+Inf` last; the sum; the count.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = f64::from_bits(self.0.sum.load(Ordering::Relaxed));
        (buckets, sum, count)
    }
}

impl Value for Histogram {
    const TYPE: MetricType = MetricType::Histogram;

    fn fresh(&self) -> Self {
        Histogram::new(&self.0.bounds)
    }

    fn encode(&self, encoder: &mut MetricEncoder) -> fmt::Result {
        let (buckets, sum, count) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn read(&self, out: &mut Vec<(&'static str, Option<String>, f64)>) {
        let (buckets, sum, count) = self.snapshot();
        let mut cumulative = 0u64;
        for (bound, c) in buckets {
            cumulative += c;
            out.push(("_bucket", Some(format_le(bound)), cumulative as f64));
        }
        out.push(("_sum", None, sum));
        out.push(("_count", None, count as f64));
    }
}

/// A bucket bound as the exposition writes it (Go's `%g` shortest form, which
/// prometheus-client copies), so a series has one name in `/metrics` and in the history.
pub fn format_le(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return format!("{}", v as i64);
    }
    if (1e-4..1e6).contains(&v.abs()) {
        return format!("{v}");
    }
    let sci = format!("{v:e}");
    let mut out = String::new();
    match sci.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            let _ = write!(out, "{mantissa}e{exp:+03}");
        }
        None => out = sci,
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_set_counts_replaces_buckets_and_sum() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.set_counts(&[3, 0, 1, 2], 7.5);
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(buckets, vec![(1.0, 3), (2.0, 0), (f64::INFINITY, 3)]);
        assert_eq!((sum, count), (7.5, 6));
        h.set_counts(&[1], 0.25);
        assert_eq!(h.snapshot().2, 1);
    }

    #[test]
    fn histogram_counts_by_upper_bound_inclusive() {
        let h = Histogram::new(&[0.1, 1.0, f64::INFINITY]);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        let mut out = Vec::new();
        h.read(&mut out);
        let buckets: Vec<(Option<String>, f64)> = out
            .iter()
            .filter(|(s, _, _)| *s == "_bucket")
            .map(|(_, le, v)| (le.clone(), *v))
            .collect();
        assert_eq!(
            buckets,
            vec![
                (Some("0.1".into()), 2.0),
                (Some("1".into()), 3.0),
                (Some("+Inf".into()), 5.0)
            ]
        );
        assert_eq!(out.last().map(|x| x.2), Some(5.0));
    }

    #[test]
    fn counters_only_go_up_unless_a_total_is_set() {
        let c = Counter::default();
        c.inc();
        c.inc_by(-4.0);
        c.inc_by(f64::NAN);
        c.inc_by(0.5);
        assert_eq!(c.get(), 1.5);
        c.set_total(0.25);
        assert_eq!(c.get(), 0.25);
    }

    #[test]
    fn bounds_print_as_go_does() {
        assert_eq!(format_le(0.005), "0.005");
        assert_eq!(format_le(10.0), "10");
        assert_eq!(format_le(2.5), "2.5");
        assert_eq!(format_le(1e7), "1e+07");
        assert_eq!(format_le(1.5e-5), "1.5e-05");
    }
}
