//! One-shot containers (pipeline `image:` jobs): create, attach, start, wait, remove,
//! through the same create path as service replicas.

use baton_engine::runtime::{
    BoxFuture, ContainerSpec, OneShot, OneShotSpec, Runtime, RuntimeError,
};
use baton_spec::{Mount, Service};
use futures_util::StreamExt;

use crate::Docker;

/// The replica-shaped spec of a one-shot container: the default network, the directory
/// bound read-write and used as the working directory, an init process (so that the
/// script's children are reaped and a stop signal reaches them).
fn container_spec(spec: &OneShotSpec) -> ContainerSpec {
    let (host_dir, target) = &spec.workdir;
    ContainerSpec {
        name: spec.name.clone(),
        project: String::new(),
        service_name: String::new(),
        replica: 0,
        image: spec.image.clone(),
        service: Service {
            command: Some(spec.command.clone()),
            working_dir: Some(target.clone()),
            init: Some(true),
            ..Default::default()
        },
        labels: spec.labels.clone(),
        env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        networks: Vec::new(),
        mounts: vec![Mount {
            kind: "bind".into(),
            source: Some(host_dir.display().to_string()),
            target: target.clone(),
            read_only: false,
            consistency: None,
            bind: None,
            volume: None,
            tmpfs: None,
        }],
        files: Vec::new(),
        hostname: None,
    }
}

impl Docker {
    async fn run_one_shot(
        &self,
        spec: &OneShotSpec,
        output: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i64, RuntimeError> {
        if !self.image_exists(&spec.image).await? {
            self.pull_image(&spec.image, &|_| {}).await?;
        }
        let id = self.create_container(&container_spec(spec)).await?;
        let ran = async {
            let mut lines = self.attach_output(&id).await?;
            self.start_container(&id).await?;
            while let Some(line) = lines.next().await {
                output(&line?.text);
            }
            self.wait_container(&id).await
        }
        .await;
        // The exit code is known (or the run failed): the container has done its work.
        let removed = self.remove_container(&id).await;
        let code = ran?;
        removed?;
        Ok(code)
    }
}

impl OneShot for Docker {
    fn run_to_end<'a>(
        &'a self,
        spec: &'a OneShotSpec,
        output: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<i64, RuntimeError>> {
        Box::pin(self.run_one_shot(spec, output))
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.remove_container(name).await {
                Err(RuntimeError::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
    }
}
