//! The workload runtime: the one small trait every container backend implements, and the
//! plain data that crosses it (what to create, what was observed).
//!
//! Architecture invariant: nothing here names Docker. The docker backend (crate
//! `baton-docker`) maps these types to the Engine API; a later swarm or kubernetes
//! backend maps them to its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_spec::{Ipam, Mount, Service};
use serde::{Deserialize, Serialize};

/// Labels baton puts on every resource it creates. They are the source of truth for
/// adoption: a run killed half-way is finished or cleaned by the next one from them.
pub mod labels {
    pub const PROJECT: &str = "io.baton.project";
    pub const SERVICE: &str = "io.baton.service";
    /// Replica number, from 1.
    pub const REPLICA: &str = "io.baton.replica";
    /// Hash of the service's effective configuration (see `hash::service_hash`).
    pub const CONFIG_HASH: &str = "io.baton.config-hash";
    /// Set to `true` on containers made by `baton run`; never counted as replicas.
    pub const ONEOFF: &str = "io.baton.oneoff";
    /// The key of a network or volume in the file (`default`, `db-data`, …).
    pub const NETWORK: &str = "io.baton.network";
    pub const VOLUME: &str = "io.baton.volume";
    /// The hash of a network's or volume's definition.
    pub const RESOURCE_HASH: &str = "io.baton.resource-hash";
}

/// What a backend can do, said plainly instead of faked. The planner reads it: a setting
/// the backend cannot honour is a warning or an error, never silently dropped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub build: bool,
    pub healthchecks: bool,
    pub networks: bool,
    pub volumes: bool,
    /// Secrets and configs marked `external: true` are taken from the engine's own store
    /// (a swarm's); without one they cannot be mounted.
    pub external_files: bool,
    /// `deploy.placement` (constraints, preferences) picks among several machines.
    pub placement: bool,
    /// `deploy.mode: global` runs one replica per machine.
    pub global_mode: bool,
    /// `deploy.endpoint_mode` (vip, dnsrr) chooses how a service's name resolves.
    pub endpoint_mode: bool,
}

/// A container to create, fully resolved by the engine: names are engine-level names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    /// `<project>-<service>-<replica>` unless `container_name` is set.
    pub name: String,
    pub project: String,
    pub service_name: String,
    pub replica: u32,
    /// The image reference to run (for built services, the tag that was built).
    pub image: String,
    /// The normalised service. The backend maps its fields; it must not read
    /// `service.networks`, `service.volumes`, `service.image` or `service.labels`,
    /// which are given resolved below.
    pub service: Service,
    /// Every label to set: the service's own plus baton's (`labels::*`).
    pub labels: BTreeMap<String, String>,
    /// `KEY=VALUE`; variables without a value are already dropped.
    pub env: Vec<String>,
    /// Networks to attach, engine-level names; the first is used at create time.
    pub networks: Vec<NetworkAttachment>,
    /// Mounts with `source` resolved: engine-level volume names, absolute host paths.
    pub mounts: Vec<Mount>,
    /// Files to bind read-only into the container (configs and secrets).
    pub files: Vec<FileMount>,
    /// The container's hostname (the service's `hostname:` when set).
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkAttachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileMount {
    pub source: PathBuf,
    pub target: String,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam: Option<Ipam>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// An image to build from a context directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSpec {
    pub context: PathBuf,
    /// Relative to the context.
    pub dockerfile: String,
    /// When set, used instead of the file.
    pub dockerfile_inline: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Tags to apply; the first is the one services run.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No healthcheck.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// A container as the backend sees it, read from its labels and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    /// From `labels::SERVICE`; empty if absent.
    pub service: String,
    /// From `labels::REPLICA`; 0 if absent or unparsable.
    pub replica: u32,
    /// From `labels::CONFIG_HASH`; empty if absent.
    pub config_hash: String,
    pub oneoff: bool,
    pub image: String,
    pub state: ContainerState,
    pub health: Health,
    pub exit_code: Option<i64>,
    /// Human status as the engine words it (`Up 3 seconds (healthy)`).
    pub status: String,
    /// Published ports as `host_ip:published->target/proto`.
    pub ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    /// How often the engine itself restarted it (its restart policy); only `inspect`
    /// fills it, listing reports 0.
    #[serde(default)]
    pub restart_count: u32,
    /// The container's IPv4 address on each network it is attached to, by engine-level
    /// network name (how the traffic proxy reaches it).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedNetwork {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds (0 if unknown); used to keep the oldest of duplicates.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedVolume {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything of one project the backend can see, found by `labels::PROJECT`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    pub networks: Vec<ObservedNetwork>,
    pub volumes: Vec<ObservedVolume>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the container engine: {0}")]
    Unavailable(String),
    #[error("image {image} not found: {detail}")]
    ImageNotFound { image: String, detail: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Conflict { what: String },
    /// Still used by something (a network with endpoints, a volume mounted).
    #[error("{what} is in use: {detail}")]
    InUse { what: String, detail: String },
    #[error("{op} failed: {detail}")]
    Failed { op: String, detail: String },
    /// The target's backend cannot do this at all (`target prod (kubernetes) cannot
    /// exec`), or is not built yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A line of progress from a long operation (pull, build).
pub type ProgressFn<'a> = &'a (dyn Fn(&str) + Sync);

/// One container backend. Every method is a single engine operation; ordering,
/// parallelism and retries belong to the engine.
#[allow(async_fn_in_trait)]
pub trait Runtime {
    fn capabilities(&self) -> Capabilities;

    /// A backend that keeps services itself (Swarm, Kubernetes) answers here; `up`,
    /// `ps`, `scale`, `logs`, `rollout` and `down` then go through it instead of
    /// container by container.
    fn orchestrator(&self) -> Option<&dyn crate::orchestrate::Orchestrator> {
        None
    }

    /// All containers (running or not), networks and volumes labelled with this project.
    async fn observe(&self, project: &str) -> Result<Observed, RuntimeError>;

    async fn image_exists(&self, reference: &str) -> Result<bool, RuntimeError>;
    /// Fails with `ImageNotFound` when the registry does not have it or cannot be reached.
    async fn pull_image(
        &self,
        reference: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError>;
    async fn build_image(
        &self,
        spec: &BuildSpec,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError>;

    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError>;
    /// Returns the new network's id.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, RuntimeError>;
    async fn remove_network(&self, id_or_name: &str) -> Result<(), RuntimeError>;

    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError>;
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;

    /// Creates (does not start) the container and attaches every network in the spec.
    /// Returns its id. A name already taken is `Conflict`.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends `signal` (default SIGTERM), waits up to `grace`, then kills.
    async fn stop_container(
        &self,
        id: &str,
        grace: Duration,
        signal: Option<&str>,
    ) -> Result<(), RuntimeError>;
    async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<(), RuntimeError>;
    /// Force-removes the container and its anonymous volumes.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    async fn inspect_container(&self, id: &str) -> Result<ObservedContainer, RuntimeError>;
    /// The container's resource use so far, when the backend can say (by default it
    /// cannot: `None`).
    async fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        let _ = id;
        Ok(None)
    }
}

/// A running container's resource use, as the metrics export it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time used since the container started.
    pub cpu_seconds: f64,
    /// Memory in use, page cache excluded.
    pub memory_bytes: u64,
    /// Bytes received and sent over every interface since it started.
    pub network_receive_bytes: u64,
    pub network_transmit_bytes: u64,
}

/// A one-shot container: an image, a command, one host directory mounted read-write,
/// environment variables (pipeline `image:` jobs).
#[derive(Debug, Clone, PartialEq)]
pub struct OneShotSpec {
    /// Unique; how the container is found again to stop it.
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    /// (host directory, path in the container); also the working directory.
    pub workdir: (PathBuf, String),
    /// Values travel to the engine, never on a command line.
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
}

/// A future a backend returns through a trait object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What only some backends can do: run a one-shot container to its end and follow its
/// output. Callers that need it (pipelines) are handed one; a backend that cannot do it
/// (a cluster API without attach) does not implement it.
pub trait OneShot: Send + Sync {
    /// Pulls the image if missing, creates and starts the container, gives each line
    /// it writes (stdout and stderr) to `output`, and returns its exit code once it
    /// has ended; the container is removed then. Dropping the future leaves the
    /// container running: `remove` stops it.
    fn run_to_end<'a>(
        &'a self,
        spec: &'a OneShotSpec,
        output: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<i64, RuntimeError>>;

    /// Kills and removes the container named `name`, if it is there.
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
}

/// Which output stream a line came from. TTY containers have one merged stream,
/// reported as `Stdout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line of container output, without its line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: OutputStream,
    pub text: String,
}

/// Which part of a container's output to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new output until the container stops.
    pub follow: bool,
    /// Only the last N lines (all when `None`).
    pub tail: Option<usize>,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    pub timestamps: bool,
}

/// A stream of output lines, owned (it outlives the call that made it).
pub type LogStream = futures_util::stream::BoxStream<'static, Result<LogLine, RuntimeError>>;

/// What most backends can do: read (and follow) a container's output. A front door
/// that shows logs (`baton logs`, the HTTP API) is handed one.
pub trait Logs: Send + Sync {
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream;
}

/// A future a capability returns through a trait object, on the caller's thread (the
/// command line's capabilities: exec with this process's terminal, attach, stats).
pub type LocalBoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// What `exec` runs and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The argument vector; never a shell string.
    pub cmd: Vec<String>,
    /// Allocate a TTY: output is passed through raw. The local terminal is not put in
    /// raw mode, so input is line-buffered and echoed locally.
    pub tty: bool,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Forward this process's stdin to the command.
    pub interactive: bool,
}

/// Running a command in a running container with this process's stdin, stdout and
/// stderr attached (`baton exec`).
pub trait Exec {
    /// Returns the command's exit code.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        options: &'a ExecOptions,
    ) -> LocalBoxFuture<'a, Result<i64, RuntimeError>>;
}

/// Attaching to a container's live output and waiting for its end (`baton run`).
pub trait Attach {
    /// The container's output from now on, until it stops; attach before starting it
    /// to miss nothing.
    fn attach_output<'a>(
        &'a self,
        id: &'a str,
    ) -> LocalBoxFuture<'a, Result<LogStream, RuntimeError>>;
    /// Waits for the container to stop and returns its exit code.
    fn wait_container<'a>(&'a self, id: &'a str) -> LocalBoxFuture<'a, Result<i64, RuntimeError>>;
}

/// A container's resource use at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// 100.0 = one CPU fully used.
    pub cpu_percent: f64,
    /// Bytes, page cache excluded as `docker stats` does.
    pub mem_usage: u64,
    pub mem_limit: u64,
    /// Bytes received and sent over every interface.
    pub net_rx: u64,
    pub net_tx: u64,
    pub pids: u64,
}

/// Sampling a running container's resource use (`baton stats`).
pub trait ResourceStats {
    /// One sample (may take about a second).
    fn stats_once<'a>(&'a self, id: &'a str) -> LocalBoxFuture<'a, Result<Stats, RuntimeError>>;
}

/// An image as `Images::images_list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    /// `repo:tag` references; empty for dangling images.
    pub tags: Vec<String>,
    /// Bytes.
    pub size: i64,
    /// Unix seconds.
    pub created: i64,
}

/// Which images `Images::images_list` returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// A reference pattern as the engine takes it (`baton-test/*`, `web:1.2`).
    pub reference: Option<String>,
    /// `key` or `key=value` labels.
    pub labels: Vec<String>,
}

/// The engine's own image store beyond pull and build (which every backend that runs
/// images has, in `Runtime`): listing, removing and pushing (`baton images`, `push`).
pub trait Images {
    fn images_list<'a>(
        &'a self,
        filter: &'a ImageFilter,
    ) -> LocalBoxFuture<'a, Result<Vec<ImageInfo>, RuntimeError>>;
    fn image_remove<'a>(
        &'a self,
        reference: &'a str,
        force: bool,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>>;
    /// Pushes a reference to its registry, streaming progress lines.
    fn image_push<'a>(
        &'a self,
        reference: &'a str,
        progress: ProgressFn<'a>,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>>;
}
