//! Evaluation of a parsed expression: each selector's series are read once for the whole
//! query, then the expression is evaluated at each step with PromQL's semantics.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Points, Resolution, Window};
use crate::labels::{Labels, METRIC_NAME};
use crate::sample::is_stale;

use super::parser::{AggOp, BinOp, Expr, Function, Grouping, Matching, Selector};
use super::{QueryError, QueryOptions, Source};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    /// Sorted by labels.
    Vector(Vec<Sample>),
}

/// One series of a range query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A selector's series as the evaluation reads them: times, values and how many raw
/// samples each point stands for (1, or a window's count).
struct Loaded {
    labels: Labels,
    t: Vec<i64>,
    v: Vec<f64>,
    n: Vec<f64>,
}

struct Ctx {
    lookback: i64,
    /// Keyed by the address of the selector in the expression.
    data: HashMap<usize, Vec<Loaded>>,
}

fn key(s: &Selector) -> usize {
    s as *const Selector as usize
}

/// Evaluates `expr` at `t` (Unix milliseconds).
pub fn instant<S: Source + ?Sized>(
    source: &S,
    expr: &Expr,
    t: i64,
    options: &QueryOptions,
) -> Result<Value, QueryError> {
    let ctx = load(source, expr, t, t, None, options)?;
    ctx.eval(expr, t)
}

/// Evaluates `expr` at every `step` from `from` to `to` (inclusive, Unix milliseconds):
/// one series per label set that had a value at some step, sorted by labels.
pub fn range<S: Source + ?Sized>(
    source: &S,
    expr: &Expr,
    from: i64,
    to: i64,
    step: i64,
    options: &QueryOptions,
) -> Result<Vec<RangeSeries>, QueryError> {
    if step <= 0 || to < from {
        return Err(QueryError::BadRange);
    }
    let steps = ((i128::from(to) - i128::from(from)) / i128::from(step)) as u128 + 1;
    if steps > options.max_steps as u128 {
        return Err(QueryError::TooManySteps {
            steps,
            max: options.max_steps,
        });
    }
    let ctx = load(source, expr, from, to, Some(step), options)?;
    let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    let mut t = from;
    while t <= to {
        match ctx.eval(expr, t)? {
            Value::Scalar(v) => out.entry(Labels::default()).or_default().push((t, v)),
            Value::Vector(samples) => {
                for s in samples {
                    out.entry(s.labels).or_default().push((t, s.value));
                }
            }
        }
        t = match t.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    let mut series: Vec<RangeSeries> = out
        .into_iter()
        .map(|(labels, points)| RangeSeries { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

fn load<S: Source + ?Sized>(
    source: &S,
    expr: &Expr,
    from: i64,
    to: i64,
    step: Option<i64>,
    options: &QueryOptions,
) -> Result<Ctx, QueryError> {
    let mut ctx = Ctx {
        lookback: options.lookback_ms,
        data: HashMap::new(),
    };
    let mut budget = options.max_samples;
    let coarse = step.is_some_and(|s| s >= options.downsample_step_ms);
    let mut todo = vec![expr];
    while let Some(e) = todo.pop() {
        match e {
            Expr::Number(_) => {}
            Expr::Selector(sel) => {
                let res = if coarse {
                    Resolution::FiveMinutes
                } else {
                    Resolution::Raw
                };
                let start = from.saturating_sub(options.lookback_ms).saturating_add(1);
                let series = fetch(source, sel, start, to, res, None, &mut budget, options)?;
                ctx.data.insert(key(sel), series);
            }
            Expr::Call { func, arg } => {
                if let Expr::Range { selector, range_ms } = arg.as_ref() {
                    let res = if coarse && *range_ms >= options.downsample_step_ms {
                        Resolution::FiveMinutes
                    } else {
                        Resolution::Raw
                    };
                    let start = from.saturating_sub(*range_ms).saturating_add(1);
                    let series = fetch(
                        source,
                        selector,
                        start,
                        to,
                        res,
                        Some(*func),
                        &mut budget,
                        options,
                    )?;
                    ctx.data.insert(key(selector), series);
                }
            }
            Expr::Range { .. } => {}
            Expr::Aggregate { expr, .. } => todo.push(expr),
            Expr::Binary { lhs, rhs, .. } => {
                todo.push(lhs);
                todo.push(rhs);
            }
            Expr::Neg(e) => todo.push(e),
            Expr::Quantile { q, buckets } => {
                todo.push(q);
                todo.push(buckets);
            }
        }
    }
    Ok(ctx)
}

/// Reads a selector's series; `func` says which field of an aggregate window it needs
/// (`None`: an instant selector, the window's last value).
#[allow(clippy::too_many_arguments)]
fn fetch<S: Source + ?Sized>(
    source: &S,
    sel: &Selector,
    from: i64,
    to: i64,
    res: Resolution,
    func: Option<Function>,
    budget: &mut usize,
    options: &QueryOptions,
) -> Result<Vec<Loaded>, QueryError> {
    let mut out = Vec::new();
    for s in source.select(&sel.matchers, from, to, res)? {
        let len = s.points.len();
        if len > *budget {
            return Err(QueryError::TooManySamples {
                max: options.max_samples,
            });
        }
        *budget -= len;
        let mut l = Loaded {
            labels: s.labels,
            t: Vec::with_capacity(len),
            v: Vec::with_capacity(len),
            n: Vec::with_capacity(len),
        };
        match s.points {
            Points::Raw(points) => {
                for (t, v) in points {
                    // Range functions never see staleness markers; instant selectors do.
                    if func.is_some() && is_stale(v) {
                        continue;
                    }
                    l.t.push(t);
                    l.v.push(v);
                    l.n.push(1.0);
                }
            }
            Points::Windows(windows) => {
                let mut total = 0.0;
                for w in windows {
                    let v = match func {
                        None => w.last,
                        Some(Function::Rate | Function::Increase) => {
                            // A counter without resets whose growth is the windows'.
                            total += w.inc;
                            total
                        }
                        Some(Function::MaxOverTime) => w.max,
                        Some(Function::MinOverTime) => w.min,
                        Some(
                            Function::AvgOverTime | Function::SumOverTime | Function::CountOverTime,
                        ) => w.sum,
                    };
                    let Window { t, count, .. } = w;
                    l.t.push(t);
                    l.v.push(v);
                    l.n.push(count);
                }
            }
        }
        if !l.t.is_empty() {
            out.push(l);
        }
    }
    Ok(out)
}

impl Ctx {
    fn series(&self, sel: &Selector) -> &[Loaded] {
        self.data.get(&key(sel)).map(Vec::as_slice).unwrap_or(&[])
    }

    fn eval(&self, e: &Expr, t: i64) -> Result<Value, QueryError> {
        Ok(match e {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Selector(sel) => {
                let mut out = Vec::new();
                for s in self.series(sel) {
                    let i = s.t.partition_point(|x| *x <= t);
                    if i == 0 {
                        continue;
                    }
                    let (st, sv) = (s.t[i - 1], s.v[i - 1]);
                    if st > t.saturating_sub(self.lookback) && !is_stale(sv) {
                        out.push(Sample {
                            labels: s.labels.clone(),
                            value: sv,
                        });
                    }
                }
                sorted(out)?
            }
            Expr::Call { func, arg } => {
                let Expr::Range { selector, range_ms } = arg.as_ref() else {
                    return Ok(Value::Vector(Vec::new()));
                };
                let start = t.saturating_sub(*range_ms);
                let mut out = Vec::new();
                for s in self.series(selector) {
                    let lo = s.t.partition_point(|x| *x <= start);
                    let hi = s.t.partition_point(|x| *x <= t);
                    if lo >= hi {
                        continue;
                    }
                    let (ts, vs, ns) = (&s.t[lo..hi], &s.v[lo..hi], &s.n[lo..hi]);
                    let value = match func {
                        Function::Rate => extrapolated(ts, vs, start, t, *range_ms, true),
                        Function::Increase => extrapolated(ts, vs, start, t, *range_ms, false),
                        Function::AvgOverTime => {
                            Some(vs.iter().sum::<f64>() / ns.iter().sum::<f64>())
                        }
                        Function::SumOverTime => Some(vs.iter().sum()),
                        Function::CountOverTime => Some(ns.iter().sum()),
                        Function::MaxOverTime => Some(fold_max(vs)),
                        Function::MinOverTime => Some(fold_min(vs)),
                    };
                    if let Some(value) = value {
                        out.push(Sample {
                            labels: s.labels.without_name(),
                            value,
                        });
                    }
                }
                sorted(out)?
            }
            Expr::Range { .. } => Value::Vector(Vec::new()),
            Expr::Aggregate { op, grouping, expr } => match self.eval(expr, t)? {
                Value::Vector(v) => aggregate(*op, grouping, v),
                Value::Scalar(_) => Value::Vector(Vec::new()),
            },
            Expr::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
            } => {
                let l = self.eval(lhs, t)?;
                let r = self.eval(rhs, t)?;
                binary(*op, l, r, matching.as_ref(), *return_bool)?
            }
            Expr::Quantile { q, buckets } => {
                let q = match self.eval(q, t)? {
                    Value::Scalar(q) => q,
                    Value::Vector(_) => f64::NAN,
                };
                match self.eval(buckets, t)? {
                    Value::Vector(v) => sorted(histogram_quantile(q, v))?,
                    Value::Scalar(_) => Value::Vector(Vec::new()),
                }
            }
            Expr::Neg(e) => match self.eval(e, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => sorted(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: s.labels.without_name(),
                            value: -s.value,
                        })
                        .collect(),
                )?,
            },
        })
    }
}

/// Prometheus's `histogram_quantile`: the samples grouped by their labels but `le` (and
/// the name), each group's cumulative buckets sorted by bound; the quantile interpolated
/// linearly inside the bucket where its rank falls (the first bucket starts at 0), the
/// highest finite bound when it falls in `+Inf`. A group without a `+Inf` bucket, with
/// fewer than two buckets or no observations is NaN; φ outside 0…1 is ∓Inf.
pub(crate) fn histogram_quantile(q: f64, samples: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        let Some(le) = s.labels.get("le").and_then(parse_bound) else {
            continue;
        };
        let key = s.labels.filtered(|n| n != "le" && n != METRIC_NAME);
        groups.entry(key).or_default().push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            Sample {
                labels,
                value: bucket_quantile(q, &mut buckets),
            }
        })
        .collect()
}

fn parse_bound(le: &str) -> Option<f64> {
    match le.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = buckets.len();
    if n < 2 || buckets[n - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Counts that went down (buckets read at slightly different moments) are made
    // monotonic, as Prometheus does.
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 < max {
            b.1 = max;
        }
        max = b.1;
    }
    let total = buckets[n - 1].1;
    if total.is_nan() || total <= 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let b = buckets
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (start, mut count) = (if b == 0 { 0.0 } else { buckets[b - 1].0 }, buckets[b].1);
    if b > 0 {
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    let end = buckets[b].0;
    if count <= 0.0 {
        return end;
    }
    start + (end - start) * (rank / count)
}

/// Sorts a vector by labels; two elements with the same labels (series that differed
/// only by the name an operation dropped) are an error, as in Prometheus.
fn sorted(mut v: Vec<Sample>) -> Result<Value, QueryError> {
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    if let Some(w) = v.windows(2).find(|w| w[0].labels == w[1].labels) {
        return Err(QueryError::Matching(format!(
            "vector cannot contain metrics with the same labelset {}: the series differ only by their name, which the operation drops",
            w[0].labels
        )));
    }
    Ok(Value::Vector(v))
}

fn fold_max(vs: &[f64]) -> f64 {
    vs.iter()
        .copied()
        .fold(f64::NAN, |m, v| if v > m || m.is_nan() { v } else { m })
}

fn fold_min(vs: &[f64]) -> f64 {
    vs.iter()
        .copied()
        .fold(f64::NAN, |m, v| if v < m || m.is_nan() { v } else { m })
}

/// Prometheus's `extrapolatedRate` (promql/functions.go) for `rate` and `increase`:
/// the growth between the first and last sample in the range, resets added back,
/// extrapolated towards the range's ends (all the way when a sample is within 1.1
/// average intervals of the end, else half an interval; never below zero for counters).
fn extrapolated(
    t: &[i64],
    v: &[f64],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_rate: bool,
) -> Option<f64> {
    let n = t.len();
    if n < 2 {
        return None;
    }
    let (first, last) = (v[0], v[n - 1]);
    let mut result = last - first;
    let mut prev = first;
    for &cur in &v[1..] {
        if cur < prev {
            result += prev;
        }
        prev = cur;
    }
    let mut to_start = (t[0] - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - t[n - 1]) as f64 / 1000.0;
    let sampled = (t[n - 1] - t[0]) as f64 / 1000.0;
    let average = sampled / (n - 1) as f64;
    let threshold = average * 1.1;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if result > 0.0 && first >= 0.0 {
        // A counter cannot have been below zero: do not extrapolate past its zero point.
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

fn aggregate(op: AggOp, grouping: &Grouping, samples: Vec<Sample>) -> Value {
    let mut groups: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
    for s in samples {
        let key = match grouping {
            Grouping::All => Labels::default(),
            Grouping::By(names) => s.labels.filtered(|n| names.iter().any(|x| x == n)),
            Grouping::Without(names) => s
                .labels
                .filtered(|n| n != METRIC_NAME && !names.iter().any(|x| x == n)),
        };
        let v = s.value;
        let (acc, count) = groups.entry(key).or_insert((f64::NAN, 0.0));
        *acc = match op {
            AggOp::Sum | AggOp::Avg if *count == 0.0 => v,
            AggOp::Sum | AggOp::Avg => *acc + v,
            AggOp::Max if *count == 0.0 || v > *acc || acc.is_nan() => v,
            AggOp::Min if *count == 0.0 || v < *acc || acc.is_nan() => v,
            AggOp::Max | AggOp::Min => *acc,
            AggOp::Count => 0.0,
        };
        *count += 1.0;
    }
    Value::Vector(
        groups
            .into_iter()
            .map(|(labels, (acc, count))| Sample {
                labels,
                value: match op {
                    AggOp::Avg => acc / count,
                    AggOp::Count => count,
                    _ => acc,
                },
            })
            .collect(),
    )
}

fn arith(op: BinOp, l: f64, r: f64) -> f64 {
    match op {
        BinOp::Add => l + r,
        BinOp::Sub => l - r,
        BinOp::Mul => l * r,
        BinOp::Div => l / r,
        BinOp::Mod => l % r,
        BinOp::Pow => l.powf(r),
        BinOp::Eq => f64::from(u8::from(l == r)),
        BinOp::Ne => f64::from(u8::from(l != r)),
        BinOp::Gt => f64::from(u8::from(l > r)),
        BinOp::Lt => f64::from(u8::from(l < r)),
        BinOp::Ge => f64::from(u8::from(l >= r)),
        BinOp::Le => f64::from(u8::from(l <= r)),
    }
}

fn binary(
    op: BinOp,
    lhs: Value,
    rhs: Value,
    matching: Option<&Matching>,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let cmp = op.is_comparison();
    Ok(match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(arith(op, a, b)),
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(op, v, s, false, return_bool)?,
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(op, v, s, true, return_bool)?,
        (Value::Vector(l), Value::Vector(r)) => {
            let signature = |labels: &Labels| match matching {
                Some(Matching {
                    on: true,
                    labels: on,
                }) => labels.filtered(|n| on.iter().any(|x| x == n)),
                Some(Matching {
                    on: false,
                    labels: ign,
                }) => labels.filtered(|n| n != METRIC_NAME && !ign.iter().any(|x| x == n)),
                None => labels.without_name(),
            };
            let mut right: HashMap<Labels, &Sample> = HashMap::with_capacity(r.len());
            for s in &r {
                let sig = signature(&s.labels);
                if right.insert(sig.clone(), s).is_some() {
                    return Err(QueryError::Matching(format!(
                        "found duplicate series for the match group {sig} on the right hand-side of the operation: many-to-many matching is not allowed, the matching labels must be unique on one side"
                    )));
                }
            }
            let mut matched: HashSet<Labels> = HashSet::new();
            let mut out = Vec::new();
            for s in l {
                let sig = signature(&s.labels);
                let Some(other) = right.get(&sig) else {
                    continue;
                };
                if !matched.insert(sig.clone()) {
                    return Err(QueryError::Matching(format!(
                        "multiple matches for labels {sig}: many-to-one matching is not supported, add labels to on(…) or ignoring(…) so that each side is unique"
                    )));
                }
                let value = arith(op, s.value, other.value);
                if cmp && !return_bool && value == 0.0 {
                    continue;
                }
                let mut labels = if !cmp || return_bool {
                    s.labels.without_name()
                } else {
                    s.labels
                };
                match matching {
                    Some(Matching {
                        on: true,
                        labels: on,
                    }) => labels = labels.filtered(|n| on.iter().any(|x| x == n)),
                    Some(Matching {
                        on: false,
                        labels: ign,
                    }) => {
                        labels = labels.filtered(|n| !ign.iter().any(|x| x == n));
                    }
                    None => {}
                }
                out.push(Sample {
                    labels,
                    value: if cmp && !return_bool { s.value } else { value },
                });
            }
            return sorted(out);
        }
    })
}

/// A vector and a number; `swap`: the number was on the left.
fn vector_scalar(
    op: BinOp,
    v: Vec<Sample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let cmp = op.is_comparison();
    let mut out = Vec::with_capacity(v.len());
    for sample in v {
        let (l, r) = if swap {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        let value = arith(op, l, r);
        if cmp && !return_bool {
            // A comparison filters and keeps the vector's own value and name.
            if value != 0.0 {
                out.push(sample);
            }
            continue;
        }
        out.push(Sample {
            labels: sample.labels.without_name(),
            value,
        });
    }
    sorted(out)
}
