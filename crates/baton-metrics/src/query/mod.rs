//! The query language: a PromQL subset (selectors, range functions, aggregations,
//! arithmetic and comparisons) parsed into an `Expr` and evaluated over a `Source`.
//!
//! Semantics follow Prometheus 3: instant selectors look back 5 minutes for each series'
//! latest sample (a staleness marker ends a series at once), ranges `x[5m]` are left-open
//! `(t-5m, t]`, `rate` and `increase` extrapolate as Prometheus does and treat a drop as
//! a counter reset, arithmetic drops the metric name and comparisons filter.

mod eval;
mod parser;

use crate::history::{downsample, History, Points, Resolution, SeriesData, StoreError};
use crate::labels::{Labels, Matcher};

pub use eval::{instant, range, RangeSeries, Sample, Value};
pub use parser::{
    parse, parse_duration, AggOp, BinOp, Expr, Function, Grouping, Matching, ParseError, Selector,
};

/// Where queries read series from: the `History`, or series in memory (tests, or a
/// caller that has them at hand).
pub trait Source {
    /// The series matching every matcher with their points in `[from, to]` (inclusive).
    fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<SeriesData>, StoreError>;
}

impl Source for History {
    fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<SeriesData>, StoreError> {
        History::select(self, matchers, from, to, resolution)
    }
}

/// Raw series in memory: `(labels, points in time order)`; five-minute aggregates are
/// computed from them when asked for.
impl Source for [(Labels, Vec<(i64, f64)>)] {
    fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<SeriesData>, StoreError> {
        let mut out = Vec::new();
        for (labels, points) in self {
            if !labels.matches(matchers) {
                continue;
            }
            let points = match resolution {
                Resolution::Raw => Points::Raw(
                    points
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t >= from && *t <= to)
                        .collect(),
                ),
                Resolution::FiveMinutes => Points::Windows(
                    downsample::downsample(points, None)
                        .into_iter()
                        .filter(|w| w.t >= from && w.t <= to)
                        .collect(),
                ),
            };
            if !points.is_empty() {
                out.push(SeriesData {
                    labels: labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }
}

/// Bounds and knobs of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a series' latest sample.
    pub lookback_ms: i64,
    /// A range query with a step at least this long reads five-minute aggregates
    /// instead of raw samples (for ranges functions, only when their range is at least
    /// this long too).
    pub downsample_step_ms: i64,
    /// At most this many steps in a range query (Prometheus's 11 000).
    pub max_steps: usize,
    /// At most this many points read from the source for one query.
    pub max_samples: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_ms: 5 * 60 * 1000,
            downsample_step_ms: 15 * 60 * 1000,
            max_steps: 11_000,
            max_samples: 50_000_000,
        }
    }
}

/// A query that parsed but could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Matching(String),
    #[error("a range query of {steps} steps is more than {max}: use a longer step")]
    TooManySteps { steps: u128, max: usize },
    #[error("the query reads more than {max} samples: use a shorter range or a longer step")]
    TooManySamples { max: usize },
    #[error("a range query needs a positive step and an end after its start")]
    BadRange,
}

#[cfg(test)]
mod tests;
