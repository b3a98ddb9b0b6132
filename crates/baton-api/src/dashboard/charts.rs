//! The history graphs of the service, VM and fleet pages: which series each chart
//! shows (PromQL of baton's subset, docs/metrics.md), and `GET /ui/series`, the API's
//! `GET /api/v1/series` behind a dashboard session, which the charts read.
//!
//! A chart is rendered as an element whose `data-series` holds its queries as JSON
//! (escaped by the template like any attribute); `assets/charts.js` fetches them for the
//! chosen range and draws them with the vendored uPlot. `$window` in a query is the
//! range of its `rate`, which the script picks from the step (twice the step, at least
//! a minute). Names from the spec go into the queries as quoted PromQL strings.

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use crate::metrics::{SeriesAnswer, SeriesQuery};
use crate::ApiError;

use super::D;

/// `GET /ui/series?query=…&from=…&to=…&step=…`: the same answer as `/api/v1/series`.
pub(crate) async fn series(
    State(d): D,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesAnswer>, ApiError> {
    crate::metrics::answer(&d.api, q).await.map(Json)
}

/// A PromQL string literal holding `s` exactly.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line (or one set of lines) of a chart.
#[derive(Debug, Clone, Serialize)]
struct Line {
    /// The expression; `$window` stands for the rate's range.
    q: String,
    /// What the legend calls it (before the label's value, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    /// The label whose value tells its series apart in the legend.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'static str>,
}

fn line(q: String, name: Option<&'static str>, label: Option<&'static str>) -> Line {
    Line { q, name, label }
}

/// A chart as the templates render it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Chart {
    /// Unique on its page (a `data-chart` attribute the tests find it by).
    pub id: String,
    pub title: &'static str,
    /// How the axis and the legend write values: `count`, `rate`, `seconds`, `bytes`,
    /// `cores`, `load`, `vm-state`.
    pub unit: &'static str,
    /// The lines, as JSON.
    pub series: String,
    /// A sentence under the chart, when it needs one.
    pub note: Option<&'static str>,
}

fn chart(
    id: String,
    title: &'static str,
    unit: &'static str,
    lines: &[Line],
    note: Option<&'static str>,
) -> Chart {
    Chart {
        id,
        title,
        unit,
        series: serde_json::to_string(lines).unwrap_or_else(|_| "[]".into()),
        note,
    }
}

/// The service page: replicas desired / running / healthy (what autoscaling wants
/// against what runs), requests per second by revision and its errors, latency, CPU
/// and memory of its containers.
pub(crate) fn service(project: &str, service: &str) -> Vec<Chart> {
    let sel = format!("project={},service={}", quote(project), quote(service));
    vec![
        chart(
            "replicas".into(),
            "Replicas",
            "count",
            &[line(
                format!("baton_service_replicas{{{sel}}}"),
                None,
                Some("state"),
            )],
            None,
        ),
        chart(
            "requests".into(),
            "Requests per second",
            "rate",
            &[
                line(
                    format!(
                        "sum by (revision) (rate(baton_proxy_requests_total{{{sel}}}[$window]))"
                    ),
                    Some("requests"),
                    Some("revision"),
                ),
                line(
                    format!(
                        "sum (rate(baton_proxy_requests_total{{{sel},code=\"5xx\"}}[$window]))"
                    ),
                    Some("5xx errors"),
                    None,
                ),
            ],
            Some("Through baton's proxy: every answer, and those in the 5xx class (also when no backend answered)."),
        ),
        chart(
            "latency".into(),
            "Latency",
            "seconds",
            &[
                line(
                    format!(
                        "histogram_quantile(0.95, sum by (revision, le) (rate(baton_proxy_request_duration_seconds_bucket{{{sel}}}[$window])))"
                    ),
                    Some("p95"),
                    Some("revision"),
                ),
                line(
                    format!(
                        "sum by (revision) (rate(baton_proxy_request_duration_seconds_sum{{{sel}}}[$window])) \
                         / sum by (revision) (rate(baton_proxy_request_duration_seconds_count{{{sel}}}[$window]))"
                    ),
                    Some("mean"),
                    Some("revision"),
                ),
            ],
            Some("Through baton's proxy, per revision: the 95th percentile (from the latency histogram's buckets, as Prometheus's histogram_quantile) and the mean."),
        ),
        chart(
            "cpu".into(),
            "CPU",
            "cores",
            &[line(
                format!(
                    "sum by (replica) (rate(baton_container_cpu_seconds_total{{{sel}}}[$window]))"
                ),
                Some("replica"),
                Some("replica"),
            )],
            None,
        ),
        chart(
            "memory".into(),
            "Memory",
            "bytes",
            &[line(
                format!("baton_container_memory_bytes{{{sel}}}"),
                Some("replica"),
                Some("replica"),
            )],
            None,
        ),
    ]
}

/// The VM page: its state, CPU and memory.
pub(crate) fn vm(vm: &str) -> Vec<Chart> {
    let sel = format!("vm={}", quote(vm));
    vec![
        chart(
            "vm-state".into(),
            "State",
            "vm-state",
            &[line(
                format!("baton_vm_state{{{sel}}}"),
                Some("state"),
                None,
            )],
            Some("0 stopped, 1 running, 2 paused, 3 migrating, 4 failed."),
        ),
        chart(
            "vm-cpu".into(),
            "CPU",
            "cores",
            &[line(
                format!("rate(baton_vm_cpu_seconds_total{{{sel}}}[$window])"),
                Some("cpu"),
                None,
            )],
            None,
        ),
        chart(
            "vm-memory".into(),
            "Memory",
            "bytes",
            &[line(
                format!("baton_vm_memory_bytes{{{sel}}}"),
                Some("memory"),
                None,
            )],
            None,
        ),
    ]
}

/// A fleet host's charts: load, memory and disk available (with the totals).
pub(crate) fn host(index: usize, host: &str) -> Vec<Chart> {
    let sel = format!("host={}", quote(host));
    vec![
        chart(
            format!("host-{index}-load"),
            "Load",
            "load",
            &[
                line(format!("baton_fleet_host_load1{{{sel}}}"), Some("1m"), None),
                line(format!("baton_fleet_host_load5{{{sel}}}"), Some("5m"), None),
                line(
                    format!("baton_fleet_host_load15{{{sel}}}"),
                    Some("15m"),
                    None,
                ),
            ],
            None,
        ),
        chart(
            format!("host-{index}-memory"),
            "Memory available",
            "bytes",
            &[
                line(
                    format!("baton_fleet_host_memory_available_bytes{{{sel}}}"),
                    Some("available"),
                    None,
                ),
                line(
                    format!("baton_fleet_host_memory_total_bytes{{{sel}}}"),
                    Some("total"),
                    None,
                ),
            ],
            None,
        ),
        chart(
            format!("host-{index}-disk"),
            "Disk available (/)",
            "bytes",
            &[
                line(
                    format!("baton_fleet_host_disk_available_bytes{{{sel}}}"),
                    Some("available"),
                    None,
                ),
                line(
                    format!("baton_fleet_host_disk_total_bytes{{{sel}}}"),
                    Some("total"),
                    None,
                ),
            ],
            None,
        ),
    ]
}

/// The host charts of the fleet page, one group per host.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostCharts {
    pub host: String,
    pub charts: Vec<Chart>,
}

pub(crate) fn hosts(names: impl IntoIterator<Item = String>) -> Vec<HostCharts> {
    let names: std::collections::BTreeSet<String> = names.into_iter().collect();
    names
        .into_iter()
        .enumerate()
        .map(|(i, h)| HostCharts {
            charts: host(i, &h),
            host: h,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_metrics::query;

    fn lines(c: &Chart) -> Vec<serde_json::Value> {
        serde_json::from_str(&c.series).expect("a chart's series are JSON")
    }

    /// Every query of every chart parses once its `$window` is filled in, for names
    /// that need quoting too.
    #[test]
    fn every_chart_query_parses() {
        let odd = "we\"ird\\name";
        let mut all = service("shop", "web");
        all.extend(service(odd, odd));
        all.extend(vm("db-1"));
        all.extend(vm(odd));
        all.extend(host(0, "h1"));
        all.extend(host(1, odd));
        for c in &all {
            for l in lines(c) {
                let q = l["q"].as_str().unwrap().replace("$window", "60s");
                query::parse(&q).unwrap_or_else(|e| panic!("{}: {q}: {e}", c.id));
            }
        }
    }

    /// A name is one string in the expression: a quote in it cannot end the string
    /// and add a matcher. Evaluated over two series, the query finds only the VM whose
    /// name is the odd string.
    #[test]
    fn names_are_quoted_in_queries() {
        assert_eq!(quote("web"), "\"web\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let evil = "x\",vm=~\".*";
        let q = lines(&vm(evil)[0])[0]["q"].as_str().unwrap().to_string();
        let expr = query::parse(&q).expect("parses");
        let source = [
            (
                baton_metrics::Labels::metric("baton_vm_state", [("vm", evil)]),
                vec![(1_000, 1.0)],
            ),
            (
                baton_metrics::Labels::metric("baton_vm_state", [("vm", "x")]),
                vec![(1_000, 0.0)],
            ),
        ];
        let got = query::instant(&source[..], &expr, 1_000, &Default::default()).unwrap();
        let query::Value::Vector(v) = got else {
            panic!("{got:?}")
        };
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].value, 1.0);
    }

    #[test]
    fn the_service_charts_read_its_series() {
        let c = service("shop", "web");
        let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["replicas", "requests", "latency", "cpu", "memory"]);
        let q = lines(&c[0])[0]["q"].as_str().unwrap().to_string();
        assert_eq!(
            q,
            "baton_service_replicas{project=\"shop\",service=\"web\"}"
        );
        assert_eq!(lines(&c[0])[0]["label"], "state");
        assert!(lines(&c[1])[1]["q"]
            .as_str()
            .unwrap()
            .contains("code=\"5xx\""));
    }

    #[test]
    fn hosts_are_listed_once_in_order() {
        let h = hosts(["b".to_string(), "a".to_string(), "b".to_string()]);
        let names: Vec<&str> = h.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(h[1].charts[0].id, "host-1-load");
    }
}
