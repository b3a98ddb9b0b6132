//! baton's one registry: every family baton exports, as typed handles the proxy, the
//! supervisor, pipelines, VMs, the fleet and alerts update; `/metrics` text and samples.

use std::sync::Arc;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

use crate::family::{label_set, Collect, Desc, Family, LabelValue};
use crate::metric::{Counter, Gauge, Histogram};
use crate::sample::Scrape;

/// The `Content-Type` of `Metrics::render` (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of `Metrics::render_openmetrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds: request latencies (client_golang's default buckets).
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds: pipeline jobs, from a second to an hour.
pub const JOB_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The class of an HTTP status (`2xx`…), the proxy's `code` label: six values at most,
/// where exact codes would let a backend make up new series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CodeClass {
    Informational,
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// Outside 100–599.
    Other,
}

impl CodeClass {
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => CodeClass::Informational,
            200..=299 => CodeClass::Success,
            300..=399 => CodeClass::Redirect,
            400..=499 => CodeClass::ClientError,
            500..=599 => CodeClass::ServerError,
            _ => CodeClass::Other,
        }
    }
}

impl From<u16> for CodeClass {
    fn from(status: u16) -> Self {
        CodeClass::of(status)
    }
}

impl LabelValue for CodeClass {
    fn as_label(&self) -> &str {
        match self {
            CodeClass::Informational => "1xx",
            CodeClass::Success => "2xx",
            CodeClass::Redirect => "3xx",
            CodeClass::ClientError => "4xx",
            CodeClass::ServerError => "5xx",
            CodeClass::Other => "other",
        }
    }
}

/// Which count of a service's replicas `baton_service_replicas` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplicaState {
    Desired,
    Running,
    Healthy,
}

impl LabelValue for ReplicaState {
    fn as_label(&self) -> &str {
        match self {
            ReplicaState::Desired => "desired",
            ReplicaState::Running => "running",
            ReplicaState::Healthy => "healthy",
        }
    }
}

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl LabelValue for RunStatus {
    fn as_label(&self) -> &str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
        }
    }
}

/// `baton_rollout_status`'s value: where a service's rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutPhase {
    /// No rollout, or the last one finished.
    Idle = 0,
    Progressing = 1,
    Paused = 2,
    RollingBack = 3,
    Failed = 4,
}

impl RolloutPhase {
    /// The gauge's value: `metrics.services.rollout_status.get(&l).set(phase.value())`.
    pub fn value(self) -> f64 {
        f64::from(self as u8)
    }
}

/// `baton_vm_state`'s value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmPhase {
    Stopped = 0,
    Running = 1,
    Paused = 2,
    Migrating = 3,
    Failed = 4,
}

impl VmPhase {
    /// The gauge's value: `metrics.vms.state.get(&l).set(phase.value())`.
    pub fn value(self) -> f64 {
        f64::from(self as u8)
    }
}

label_set!(
    /// A service of a project.
    ServiceLabels { project: String, service: String }
);
label_set!(
    /// One revision of a service (what the proxy splits traffic between).
    RevisionLabels { project: String, service: String, revision: String }
);
label_set!(
    /// Requests of one revision answered with one class of status.
    RequestLabels { project: String, service: String, revision: String, code: CodeClass }
);
label_set!(
    /// One count of a service's replicas.
    ReplicaLabels { project: String, service: String, state: ReplicaState }
);
label_set!(
    /// One replica (container) of a service, by its replica number.
    ContainerLabels { project: String, service: String, replica: String }
);
label_set!(
    /// Runs of a pipeline that ended one way.
    RunLabels { pipeline: String, status: RunStatus }
);
label_set!(
    /// One job of a pipeline.
    JobLabels { pipeline: String, job: String }
);
label_set!(
    /// One virtual machine.
    VmLabels { vm: String }
);
label_set!(
    /// One fleet host of a project's inventory.
    HostLabels { project: String, host: String }
);
label_set!(
    /// A pipeline of a project.
    PipelineLabels { project: String, pipeline: String }
);
label_set!(
    /// A VM of a project's file.
    ProjectVmLabels { project: String, vm: String }
);
label_set!(
    /// One alert rule.
    RuleLabels { rule: String }
);
label_set!(
    /// A host name the edge serves with a certificate, for a project that routes it.
    CertLabels { project: String, host: String }
);
label_set!(
    /// One family, in baton's own bookkeeping.
    FamilyLabels { family: String }
);

/// Settings of the registry.
#[derive(Debug, Clone, Copy)]
pub struct MetricsConfig {
    /// At most this many series per family; more label sets are refused (and counted).
    pub max_series_per_family: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_series_per_family: 5000,
        }
    }
}

/// The traffic proxy's families, per revision of a service.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    /// `baton_proxy_requests_total{project,service,revision,code}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `baton_proxy_request_duration_seconds{project,service,revision}`.
    pub request_duration: Family<RevisionLabels, Histogram>,
    /// `baton_proxy_in_flight{project,service,revision}`.
    pub in_flight: Family<RevisionLabels, Gauge>,
}

/// Services and rollouts.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    /// `baton_service_replicas{project,service,state}`.
    pub replicas: Family<ReplicaLabels, Gauge>,
    /// `baton_rollout_status{project,service}`: a `RolloutPhase` as a number.
    pub rollout_status: Family<ServiceLabels, Gauge>,
    /// `baton_rollout_weight{project,service,revision}`: share of traffic, 0 to 1.
    pub rollout_weight: Family<RevisionLabels, Gauge>,
}

/// Containers (replicas), as the supervisor reads them from the engine.
#[derive(Debug, Clone)]
pub struct ContainerMetrics {
    /// `baton_container_restarts_total`.
    pub restarts: Family<ContainerLabels, Counter>,
    /// `baton_container_cpu_seconds_total`.
    pub cpu_seconds: Family<ContainerLabels, Counter>,
    /// `baton_container_memory_bytes`.
    pub memory_bytes: Family<ContainerLabels, Gauge>,
    /// `baton_container_network_receive_bytes_total`.
    pub network_receive_bytes: Family<ContainerLabels, Counter>,
    /// `baton_container_network_transmit_bytes_total`.
    pub network_transmit_bytes: Family<ContainerLabels, Counter>,
}

/// Pipelines.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    /// `baton_pipeline_runs_total{pipeline,status}`.
    pub runs: Family<RunLabels, Counter>,
    /// `baton_pipeline_job_duration_seconds{pipeline,job}`.
    pub job_duration: Family<JobLabels, Histogram>,
    /// `baton_pipeline_last_run_failed{project,pipeline}`: 1 while the pipeline's newest
    /// finished run failed (or timed out), else 0.
    pub last_run_failed: Family<PipelineLabels, Gauge>,
}

/// Virtual machines.
#[derive(Debug, Clone)]
pub struct VmMetrics {
    /// `baton_vm_state{vm}`: a `VmPhase` as a number.
    pub state: Family<VmLabels, Gauge>,
    /// `baton_vm_cpu_seconds_total{vm}`.
    pub cpu_seconds: Family<VmLabels, Counter>,
    /// `baton_vm_memory_bytes{vm}`.
    pub memory_bytes: Family<VmLabels, Gauge>,
    /// `baton_vm_stopped_unasked{project,vm}`: 1 from when the VM's process ended (or
    /// its guest powered off) without baton asking until it has run again for a minute.
    pub stopped_unasked: Family<ProjectVmLabels, Gauge>,
}

/// Fleet hosts, from their facts.
#[derive(Debug, Clone)]
pub struct FleetMetrics {
    /// `baton_fleet_host_up{host}`: 1 when the last facts run reached it.
    pub up: Family<HostLabels, Gauge>,
    /// `baton_fleet_host_load1{host}`, and 5 and 15 minutes.
    pub load1: Family<HostLabels, Gauge>,
    pub load5: Family<HostLabels, Gauge>,
    pub load15: Family<HostLabels, Gauge>,
    /// `baton_fleet_host_memory_total_bytes{host}`.
    pub memory_total_bytes: Family<HostLabels, Gauge>,
    /// `baton_fleet_host_memory_available_bytes{host}`.
    pub memory_available_bytes: Family<HostLabels, Gauge>,
    /// `baton_fleet_host_disk_total_bytes{host}` (the root filesystem).
    pub disk_total_bytes: Family<HostLabels, Gauge>,
    /// `baton_fleet_host_disk_available_bytes{host}`.
    pub disk_available_bytes: Family<HostLabels, Gauge>,
}

impl VmMetrics {
    /// Keeps the series of the VMs `keep` says yes to, in every per-VM family.
    pub fn retain(&self, keep: impl Fn(&VmLabels) -> bool) {
        self.state.retain(&keep);
        self.cpu_seconds.retain(&keep);
        self.memory_bytes.retain(&keep);
    }
}

impl FleetMetrics {
    /// Keeps the series of the hosts `keep` says yes to, in every family.
    pub fn retain(&self, keep: impl Fn(&HostLabels) -> bool) {
        for family in [
            &self.up,
            &self.load1,
            &self.load5,
            &self.load15,
            &self.memory_total_bytes,
            &self.memory_available_bytes,
            &self.disk_total_bytes,
            &self.disk_available_bytes,
        ] {
            family.retain(&keep);
        }
    }
}

/// The edge's certificates.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    /// `baton_edge_certificate_expiry_timestamp_seconds{project,host}`: when the
    /// certificate served for the host expires.
    pub certificate_expiry: Family<CertLabels, Gauge>,
    /// `baton_edge_certificate_failing{project,host}`: 1 while the host's certificate is
    /// expired, or could not be issued or renewed; else 0.
    pub certificate_failing: Family<CertLabels, Gauge>,
}

/// Alerting.
#[derive(Debug, Clone)]
pub struct AlertMetrics {
    /// `baton_alerts_firing{rule}`: how many of the rule's alerts fire.
    pub firing: Family<RuleLabels, Gauge>,
}

/// Every family baton exports, in one prometheus-client `Registry`. Share it behind an
/// `Arc`: handles are updated through `&self`.
pub struct Metrics {
    registry: Registry,
    families: Vec<Arc<dyn Collect>>,
    pub proxy: ProxyMetrics,
    pub services: ServiceMetrics,
    pub containers: ContainerMetrics,
    pub pipelines: PipelineMetrics,
    pub vms: VmMetrics,
    pub fleet: FleetMetrics,
    pub edge: EdgeMetrics,
    pub alerts: AlertMetrics,
    series_refused: Family<FamilyLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Builds families into one registry.
struct Builder {
    registry: Registry,
    families: Vec<Arc<dyn Collect>>,
    max_series: usize,
    refused: Family<FamilyLabels, Counter>,
}

impl Builder {
    fn family<L, M>(&mut self, name: &'static str, help: &'static str, template: M) -> Family<L, M>
    where
        L: crate::family::LabelSet,
        M: crate::metric::Value,
    {
        let refused = self.refused.get(&FamilyLabels::new(name));
        let family = Family::new(Desc { name, help }, self.max_series, template, refused);
        self.add(family.clone());
        family
    }

    fn add<L, M>(&mut self, family: Family<L, M>)
    where
        L: crate::family::LabelSet,
        M: crate::metric::Value,
    {
        let desc = family.desc();
        self.registry.register(desc.name, desc.help, family.clone());
        self.families.push(Arc::new(family));
    }
}

impl Metrics {
    pub fn new(config: MetricsConfig) -> Self {
        let refused: Family<FamilyLabels, Counter> = Family::new(
            Desc {
                name: "baton_metrics_series_refused",
                help: "New label sets refused because their family held its maximum of series",
            },
            // One series per family: bounded by the code, not by the input.
            usize::MAX,
            Counter::default(),
            Counter::default(),
        );
        let mut b = Builder {
            registry: Registry::default(),
            families: Vec::new(),
            max_series: config.max_series_per_family.max(1),
            refused: refused.clone(),
        };
        let c = Counter::default;
        let g = Gauge::default;
        let proxy = ProxyMetrics {
            requests: b.family(
                "baton_proxy_requests",
                "Requests the traffic proxy answered, by status class",
                c(),
            ),
            request_duration: b.family(
                "baton_proxy_request_duration_seconds",
                "Time from a request's arrival to its response's head, in seconds",
                Histogram::new(&REQUEST_BUCKETS),
            ),
            in_flight: b.family(
                "baton_proxy_in_flight",
                "Requests the proxy is handling now",
                g(),
            ),
        };
        let services = ServiceMetrics {
            replicas: b.family(
                "baton_service_replicas",
                "Replicas of a service: desired, running and healthy",
                g(),
            ),
            rollout_status: b.family(
                "baton_rollout_status",
                "Rollout phase: 0 idle, 1 progressing, 2 paused, 3 rolling back, 4 failed",
                g(),
            ),
            rollout_weight: b.family(
                "baton_rollout_weight",
                "Share of a service's traffic a revision gets, 0 to 1",
                g(),
            ),
        };
        let containers = ContainerMetrics {
            restarts: b.family(
                "baton_container_restarts",
                "Restarts of a replica's container",
                c(),
            ),
            cpu_seconds: b.family(
                "baton_container_cpu_seconds",
                "CPU time a replica's container used, in seconds",
                c(),
            ),
            memory_bytes: b.family(
                "baton_container_memory_bytes",
                "Memory a replica's container uses, in bytes",
                g(),
            ),
            network_receive_bytes: b.family(
                "baton_container_network_receive_bytes",
                "Bytes a replica's container received",
                c(),
            ),
            network_transmit_bytes: b.family(
                "baton_container_network_transmit_bytes",
                "Bytes a replica's container sent",
                c(),
            ),
        };
        let pipelines = PipelineMetrics {
            runs: b.family(
                "baton_pipeline_runs",
                "Pipeline runs, by how they ended",
                c(),
            ),
            job_duration: b.family(
                "baton_pipeline_job_duration_seconds",
                "How long pipeline jobs ran, in seconds",
                Histogram::new(&JOB_BUCKETS),
            ),
            last_run_failed: b.family(
                "baton_pipeline_last_run_failed",
                "1 while the pipeline's newest finished run failed or timed out",
                g(),
            ),
        };
        let vms = VmMetrics {
            state: b.family(
                "baton_vm_state",
                "VM state: 0 stopped, 1 running, 2 paused, 3 migrating, 4 failed",
                g(),
            ),
            cpu_seconds: b.family(
                "baton_vm_cpu_seconds",
                "CPU time a VM's QEMU process used, in seconds",
                c(),
            ),
            memory_bytes: b.family(
                "baton_vm_memory_bytes",
                "Resident memory of a VM's QEMU process, in bytes",
                g(),
            ),
            stopped_unasked: b.family(
                "baton_vm_stopped_unasked",
                "1 from when a VM stopped without baton asking until it has run again for a minute",
                g(),
            ),
        };
        let fleet = FleetMetrics {
            up: b.family(
                "baton_fleet_host_up",
                "1 when the host answered its last facts run, else 0",
                g(),
            ),
            load1: b.family(
                "baton_fleet_host_load1",
                "The host's 1-minute load average",
                g(),
            ),
            load5: b.family(
                "baton_fleet_host_load5",
                "The host's 5-minute load average",
                g(),
            ),
            load15: b.family(
                "baton_fleet_host_load15",
                "The host's 15-minute load average",
                g(),
            ),
            memory_total_bytes: b.family(
                "baton_fleet_host_memory_total_bytes",
                "The host's memory, in bytes",
                g(),
            ),
            memory_available_bytes: b.family(
                "baton_fleet_host_memory_available_bytes",
                "The host's available memory, in bytes",
                g(),
            ),
            disk_total_bytes: b.family(
                "baton_fleet_host_disk_total_bytes",
                "Size of the host's root filesystem, in bytes",
                g(),
            ),
            disk_available_bytes: b.family(
                "baton_fleet_host_disk_available_bytes",
                "Available space on the host's root filesystem, in bytes",
                g(),
            ),
        };
        let edge = EdgeMetrics {
            certificate_expiry: b.family(
                "baton_edge_certificate_expiry_timestamp_seconds",
                "When the certificate the edge serves for a host expires, in Unix seconds",
                g(),
            ),
            certificate_failing: b.family(
                "baton_edge_certificate_failing",
                "1 while a host's certificate is expired or could not be issued or renewed",
                g(),
            ),
        };
        let alerts = AlertMetrics {
            firing: b.family("baton_alerts_firing", "Alerts of a rule that fire now", g()),
        };
        b.add(refused.clone());
        Metrics {
            registry: b.registry,
            families: b.families,
            proxy,
            services,
            containers,
            pipelines,
            vms,
            fleet,
            edge,
            alerts,
            series_refused: refused,
        }
    }

    /// The exposition in Prometheus text format 0.0.4 (`CONTENT_TYPE`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and our families' encoders do not.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in OpenMetrics text format (`OPENMETRICS_CONTENT_TYPE`).
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// Every series' current value as samples at `t` (Unix milliseconds, the caller's
    /// clock): the series Prometheus would store from a scrape of `render`.
    pub fn sample(&self, t: i64) -> Scrape {
        let mut samples = Vec::new();
        for f in &self.families {
            f.collect(&mut samples);
        }
        Scrape { t, samples }
    }

    /// How many label sets each family has refused (family name → count).
    pub fn refused(&self, family: &str) -> f64 {
        self.series_refused.get(&FamilyLabels::new(family)).get()
    }

    /// Forgets every series of a replica that is gone.
    pub fn forget_replica(&self, project: &str, service: &str, replica: &str) {
        let gone = |l: &ContainerLabels| {
            l.project == project && l.service == service && l.replica == replica
        };
        self.forget_containers(gone);
    }

    /// Forgets every series of a revision that is gone (its proxy and weight series).
    pub fn forget_revision(&self, project: &str, service: &str, revision: &str) {
        let p = &self.proxy;
        p.requests
            .retain(|l| !(l.project == project && l.service == service && l.revision == revision));
        let gone = |l: &RevisionLabels| {
            l.project == project && l.service == service && l.revision == revision
        };
        p.request_duration.retain(|l| !gone(l));
        p.in_flight.retain(|l| !gone(l));
        self.services.rollout_weight.retain(|l| !gone(l));
    }

    /// Forgets every series of a service that is gone, its revisions and replicas too.
    pub fn forget_service(&self, project: &str, service: &str) {
        self.forget_where(|p, s| p == project && s == service);
    }

    /// Forgets every series of a project that is gone.
    pub fn forget_project(&self, project: &str) {
        self.forget_where(|p, _| p == project);
    }

    /// Forgets a pipeline's series.
    pub fn forget_pipeline(&self, pipeline: &str) {
        self.pipelines.runs.retain(|l| l.pipeline != pipeline);
        self.pipelines
            .job_duration
            .retain(|l| l.pipeline != pipeline);
    }

    /// Forgets a VM's series.
    pub fn forget_vm(&self, vm: &str) {
        self.vms.retain(|l| l.vm != vm);
    }

    /// Forgets a fleet host's series.
    pub fn forget_host(&self, host: &str) {
        self.fleet.retain(|l| l.host != host);
    }

    /// Forgets an alert rule's series.
    pub fn forget_rule(&self, rule: &str) {
        self.alerts.firing.retain(|l| l.rule != rule);
    }

    fn forget_where(&self, gone: impl Fn(&str, &str) -> bool) {
        let p = &self.proxy;
        p.requests.retain(|l| !gone(&l.project, &l.service));
        p.request_duration.retain(|l| !gone(&l.project, &l.service));
        p.in_flight.retain(|l| !gone(&l.project, &l.service));
        let s = &self.services;
        s.replicas.retain(|l| !gone(&l.project, &l.service));
        s.rollout_status.retain(|l| !gone(&l.project, &l.service));
        s.rollout_weight.retain(|l| !gone(&l.project, &l.service));
        self.forget_containers(|l| gone(&l.project, &l.service));
    }

    fn forget_containers(&self, gone: impl Fn(&ContainerLabels) -> bool) {
        let c = &self.containers;
        c.restarts.retain(|l| !gone(l));
        c.cpu_seconds.retain(|l| !gone(l));
        c.memory_bytes.retain(|l| !gone(l));
        c.network_receive_bytes.retain(|l| !gone(l));
        c.network_transmit_bytes.retain(|l| !gone(l));
    }
}
