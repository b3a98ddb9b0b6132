//! The container seam: one backend chosen per target. `AnyRuntime` is an enum over the
//! `Runtime` implementations (as youki's executor is over its container kinds: Docker,
//! Swarm, Kubernetes — one more backend is one more variant and one more arm in each
//! delegation), and `Backend` is that runtime with the target it serves, which
//! answers what only some engines can do (exec, attach, stats, images, logs, one-shot
//! containers) as an `Option` of a small capability trait from `baton_engine::runtime`,
//! or as a clear error ("target prod (kubernetes) cannot exec").
//!
//! Architecture invariant: with the backend crates themselves, the only crate that names
//! a backend crate (`baton_docker`, `baton_kube`); commands, the control plane, the
//! daemon and the API see `Runtime` and the capability traits.

pub mod target;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use baton_docker::{Docker, Swarm};
use baton_engine::hash::DigestKey;
use baton_engine::runtime::{
    Attach, BuildSpec, Capabilities, ContainerSpec, Exec, Images, Logs, NetworkSpec, Observed,
    ObservedContainer, OneShot, ProgressFn, ResourceStats, Runtime, RuntimeError, Usage,
    VolumeSpec,
};
use baton_kube::Kube;

pub use target::{Target, TargetKind, UnknownTarget};

/// Every container backend baton has, behind one `Runtime`.
#[derive(Debug, Clone)]
pub enum AnyRuntime {
    /// One Docker Engine (`baton-docker`).
    Docker(Docker),
    /// A Docker engine that is a swarm manager: services and tasks, not containers
    /// (`baton_docker::swarm`).
    Swarm(Swarm),
    /// One Kubernetes cluster and namespace (`baton-kube`), an orchestrator.
    Kube(Kube),
}

/// Calls the same method on whichever backend this is.
macro_rules! delegate {
    ($self:ident, $r:ident => $call:expr) => {
        match $self {
            AnyRuntime::Docker($r) => $call,
            AnyRuntime::Swarm($r) => $call,
            AnyRuntime::Kube($r) => $call,
        }
    };
}

impl AnyRuntime {
    /// `docker`, as targets name the kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyRuntime::Docker(_) => "docker",
            AnyRuntime::Swarm(_) => "swarm",
            AnyRuntime::Kube(_) => "kubernetes",
        }
    }

    pub fn exec(&self) -> Option<&dyn Exec> {
        match self {
            AnyRuntime::Docker(r) => Some(r as &dyn Exec),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    pub fn attach(&self) -> Option<&dyn Attach> {
        match self {
            AnyRuntime::Docker(r) => Some(r as &dyn Attach),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    pub fn stats(&self) -> Option<&dyn ResourceStats> {
        match self {
            AnyRuntime::Docker(r) => Some(r as &dyn ResourceStats),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    pub fn images(&self) -> Option<&dyn Images> {
        match self {
            AnyRuntime::Docker(r) => Some(r as &dyn Images),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    pub fn logs(&self) -> Option<&dyn Logs> {
        match self {
            AnyRuntime::Docker(r) => Some(r as &dyn Logs),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    /// The logs capability as a shared handle (for the API, which outlives this value).
    pub fn shared_logs(&self) -> Option<Arc<dyn Logs>> {
        match self {
            AnyRuntime::Docker(r) => Some(Arc::new(r.clone()) as Arc<dyn Logs>),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }

    /// One-shot containers (pipelines' `image:` jobs), as a shared handle.
    pub fn shared_one_shot(&self) -> Option<Arc<dyn OneShot>> {
        match self {
            AnyRuntime::Docker(r) => Some(Arc::new(r.clone()) as Arc<dyn OneShot>),
            AnyRuntime::Swarm(_) | AnyRuntime::Kube(_) => None,
        }
    }
}

impl Runtime for AnyRuntime {
    fn capabilities(&self) -> Capabilities {
        delegate!(self, r => r.capabilities())
    }
    fn orchestrator(&self) -> Option<&dyn baton_engine::orchestrate::Orchestrator> {
        delegate!(self, r => r.orchestrator())
    }
    async fn observe(&self, project: &str) -> Result<Observed, RuntimeError> {
        delegate!(self, r => r.observe(project).await)
    }
    async fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        delegate!(self, r => r.usage(id).await)
    }
    async fn image_exists(&self, reference: &str) -> Result<bool, RuntimeError> {
        delegate!(self, r => r.image_exists(reference).await)
    }
    async fn pull_image(
        &self,
        reference: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        delegate!(self, r => r.pull_image(reference, progress).await)
    }
    async fn build_image(
        &self,
        spec: &BuildSpec,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        delegate!(self, r => r.build_image(spec, progress).await)
    }
    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        delegate!(self, r => r.network_exists(name).await)
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, RuntimeError> {
        delegate!(self, r => r.create_network(spec).await)
    }
    async fn remove_network(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        delegate!(self, r => r.remove_network(id_or_name).await)
    }
    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        delegate!(self, r => r.volume_exists(name).await)
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        delegate!(self, r => r.create_volume(spec).await)
    }
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        delegate!(self, r => r.remove_volume(name).await)
    }
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        delegate!(self, r => r.create_container(spec).await)
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        delegate!(self, r => r.start_container(id).await)
    }
    async fn stop_container(
        &self,
        id: &str,
        grace: Duration,
        signal: Option<&str>,
    ) -> Result<(), RuntimeError> {
        delegate!(self, r => r.stop_container(id, grace, signal).await)
    }
    async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<(), RuntimeError> {
        delegate!(self, r => r.kill_container(id, signal).await)
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        delegate!(self, r => r.remove_container(id).await)
    }
    async fn inspect_container(&self, id: &str) -> Result<ObservedContainer, RuntimeError> {
        delegate!(self, r => r.inspect_container(id).await)
    }
}

/// A connected backend and the target it serves. Derefs to its `AnyRuntime`; the
/// capability methods here answer a clear error when the backend lacks one.
#[derive(Debug, Clone)]
pub struct Backend {
    pub target: Target,
    pub runtime: AnyRuntime,
}

impl Deref for Backend {
    type Target = AnyRuntime;
    fn deref(&self) -> &AnyRuntime {
        &self.runtime
    }
}

impl Backend {
    /// `target prod (kubernetes) cannot exec`.
    pub fn cannot(&self, what: &str) -> RuntimeError {
        RuntimeError::Unsupported(format!("target {} cannot {what}", self.target))
    }

    pub fn need_exec(&self) -> Result<&dyn Exec, RuntimeError> {
        self.runtime.exec().ok_or_else(|| self.cannot("exec"))
    }
    pub fn need_attach(&self) -> Result<&dyn Attach, RuntimeError> {
        self.runtime
            .attach()
            .ok_or_else(|| self.cannot("attach to a container's output"))
    }
    pub fn need_stats(&self) -> Result<&dyn ResourceStats, RuntimeError> {
        self.runtime
            .stats()
            .ok_or_else(|| self.cannot("sample resource use"))
    }
    pub fn need_images(&self) -> Result<&dyn Images, RuntimeError> {
        self.runtime
            .images()
            .ok_or_else(|| self.cannot("list or push images"))
    }
    pub fn need_logs(&self) -> Result<&dyn Logs, RuntimeError> {
        self.runtime.logs().ok_or_else(|| self.cannot("read logs"))
    }
}

/// Connects to the target's engine. Docker targets connect (`host`, else
/// `DOCKER_HOST`, else the local socket); Kubernetes targets read the kubeconfig with
/// their context; what cannot be reached says so, naming the target.
///
/// `key` digests secret content where a backend must name or compare it (a swarm's
/// secret names, a Kubernetes Secret in a plan): the front doors keep one per state
/// directory, so digests are stable from run to run and a weak secret cannot be
/// guessed back from one.
pub async fn connect(target: &Target, key: &DigestKey) -> Result<Backend, RuntimeError> {
    let runtime = match &target.kind {
        TargetKind::Docker { host: None } => AnyRuntime::Docker(Docker::connect().await?),
        TargetKind::Docker { host: Some(h) } => {
            AnyRuntime::Docker(Docker::connect_to(h).await.map_err(|e| match e {
                RuntimeError::Unavailable(m) => {
                    RuntimeError::Unavailable(format!("target {target}: {m}"))
                }
                other => other,
            })?)
        }
        TargetKind::Swarm { host } => AnyRuntime::Swarm(
            Swarm::connect(host.as_deref(), &target.to_string(), None, key.clone()).await?,
        ),
        TargetKind::Kubernetes { context, namespace } => AnyRuntime::Kube(
            Kube::connect(context.as_deref(), namespace.as_deref())
                .await
                .map_err(|e| match e {
                    RuntimeError::Unavailable(m) => {
                        RuntimeError::Unavailable(format!("target {target}: {m}"))
                    }
                    other => other,
                })?
                .named(target.to_string())
                .keyed(key.clone()),
        ),
    };
    Ok(Backend {
        target: target.clone(),
        runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DigestKey {
        DigestKey::new([9; 32])
    }

    fn target(kind: TargetKind) -> Target {
        Target {
            name: "t".into(),
            kind,
            declared: true,
        }
    }

    #[tokio::test]
    async fn an_ssh_engine_that_cannot_be_reached_names_the_target_and_says_why() {
        // Nothing listens on port 1: the tunnel's ssh ends at once.
        for kind in [
            TargetKind::Swarm {
                host: Some("ssh://nobody@127.0.0.1:1".into()),
            },
            TargetKind::Docker {
                host: Some("ssh://nobody@127.0.0.1:1".into()),
            },
        ] {
            let e = connect(&target(kind), &key()).await.unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, RuntimeError::Unavailable(_)), "{text}");
            assert!(text.contains(": target t ("), "{text}");
            assert!(
                text.contains("ssh to ssh://nobody@127.0.0.1:1 ended"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_kubernetes_context_the_kubeconfig_lacks_names_the_target() {
        let e = connect(
            &target(TargetKind::Kubernetes {
                context: Some("baton-test-no-such-context".into()),
                namespace: None,
            }),
            &key(),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, RuntimeError::Unavailable(_)), "{text}");
        assert!(text.contains("target t (kubernetes): "), "{text}");
        assert!(text.contains("baton-test-no-such-context"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_docker_host_is_unavailable() {
        let dir = std::env::temp_dir().join(format!("baton-backend-{}", std::process::id()));
        let host = format!("unix://{}/absent.sock", dir.display());
        let e = connect(&target(TargetKind::Docker { host: Some(host) }), &key())
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("target t (docker): "), "{e}");
    }
}
