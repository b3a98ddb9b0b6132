//! baton's metrics: one registry with Prometheus exposition, samples of it stored as
//! compressed history on disk, and a PromQL subset to query that history.
//!
//! The daemon registers nothing: every family baton exports is a typed handle in
//! `Metrics` (`metrics.proxy.requests.get(&labels).inc()`). Every interval it calls
//! `Metrics::sample(now)` and `History::append(&scrape)`; `/metrics` is
//! `Metrics::render`; alert rules and graphs are `query::parse` then `query::instant` or
//! `query::range` over the `History`.
//!
//! Architecture invariant: no clock is read and no thread is started here: time comes from
//! the caller, so tests are exact. The crate knows nothing of HTTP, containers or the
//! spec; errors carry columns, and callers make located errors of them.

pub mod family;
pub mod gorilla;
pub mod history;
pub mod labels;
pub mod metric;
pub mod query;
pub mod registry;
pub mod sample;

pub use family::{Family, LabelSet, LabelValue};
pub use history::{
    Appended, History, HistoryConfig, Points, Recovery, Resolution, SeriesData, StoreError, Window,
};
pub use labels::{Labels, MatchOp, Matcher, METRIC_NAME};
pub use metric::{Counter, Gauge, Histogram};
pub use query::{parse, ParseError, QueryError, QueryOptions, Source};
pub use registry::{
    AlertMetrics, CertLabels, CodeClass, ContainerLabels, ContainerMetrics, EdgeMetrics,
    FleetMetrics, HostLabels, JobLabels, Metrics, MetricsConfig, PipelineLabels, PipelineMetrics,
    ProjectVmLabels, ProxyMetrics, ReplicaLabels, ReplicaState, RequestLabels, RevisionLabels,
    RolloutPhase, RuleLabels, RunLabels, RunStatus, ServiceLabels, ServiceMetrics, VmLabels,
    VmMetrics, VmPhase, CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE,
};
pub use sample::Scrape;
