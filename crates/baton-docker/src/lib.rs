//! baton's Docker Engine backend: implements `baton_engine::runtime::Runtime` with bollard,
//! plus the Docker-only extras the CLI needs (logs, exec, stats, images, registry logins).
//!
//! Architecture invariant: this is the only crate that knows the Engine API. It makes
//! one engine call (or a tight sequence, such as create-then-connect) per trait method;
//! ordering, retries and parallelism belong to the engine crate.

mod auth_header;
mod build;
mod client;
mod container;
pub mod credentials;
pub mod dockerignore;
mod exec;
mod image;
mod lifecycle;
mod logs;
mod observe;
mod oneshot;
mod resources;
mod stats;
pub mod swarm;
mod tunnel;

use std::time::Duration;

use baton_engine::runtime::{
    BuildSpec, Capabilities, ContainerSpec, NetworkSpec, Observed, ObservedContainer, ProgressFn,
    Runtime, RuntimeError, VolumeSpec,
};

pub use build::{base_images, context_tar, INLINE_DOCKERFILE};
pub use client::Docker;
pub use exec::ExecOptions;
pub use image::{split_reference, ImageFilter, ImageInfo};
pub use logs::{LogLine, LogOptions, LogStream, OutputStream};
pub use resources::LEAKED_ENDPOINT;
pub use stats::Stats;
pub use swarm::Swarm;

impl Runtime for Docker {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            build: true,
            healthchecks: true,
            networks: true,
            volumes: true,
            // One engine, one machine: no secret store, nowhere else to place.
            external_files: false,
            placement: false,
            global_mode: false,
            endpoint_mode: false,
        }
    }

    async fn observe(&self, project: &str) -> Result<Observed, RuntimeError> {
        self.observe_project(project).await
    }

    async fn image_exists(&self, reference: &str) -> Result<bool, RuntimeError> {
        self.has_image(reference).await
    }

    async fn pull_image(
        &self,
        reference: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        self.pull(reference, progress).await
    }

    async fn build_image(
        &self,
        spec: &BuildSpec,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        self.build(spec, progress).await
    }

    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        self.has_network(name).await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, RuntimeError> {
        self.make_network(spec).await
    }

    async fn remove_network(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.drop_network(id_or_name).await
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        self.has_volume(name).await
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        self.make_volume(spec).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.drop_volume(name).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.create(spec).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.start(id).await
    }

    async fn stop_container(
        &self,
        id: &str,
        grace: Duration,
        signal: Option<&str>,
    ) -> Result<(), RuntimeError> {
        self.stop(id, grace, signal).await
    }

    async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<(), RuntimeError> {
        self.kill(id, signal).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.remove(id).await
    }

    async fn inspect_container(&self, id: &str) -> Result<ObservedContainer, RuntimeError> {
        self.inspect(id).await
    }

    async fn usage(&self, id: &str) -> Result<Option<baton_engine::runtime::Usage>, RuntimeError> {
        self.usage_once(id).await.map(Some)
    }
}
