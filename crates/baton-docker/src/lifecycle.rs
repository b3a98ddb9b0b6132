//! Container lifecycle calls: create (with every network attached), start, stop with a
//! grace period and signal, kill, wait and remove, with idempotent edges made quiet.

use std::time::Duration;

use baton_engine::runtime::{ContainerSpec, RuntimeError};
use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, RemoveContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::client::{create_error, detail, engine_error, status};
use crate::container::{create_body, endpoint};
use crate::Docker;

impl Docker {
    pub(crate) async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let body = create_body(spec)?;
        let op = format!("create container {}", spec.name);
        let what = format!("container {}", spec.name);
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = match self.api.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(e) if status(&e) == Some(404) => {
                return Err(RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                    detail: detail(&e),
                })
            }
            Err(e) => return Err(create_error(e, &op, &what)),
        };
        let id = created.id;
        if spec.service.network_mode.is_none() {
            for attachment in spec.networks.iter().skip(1) {
                let request = NetworkConnectRequest {
                    container: Some(id.clone()),
                    endpoint_config: Some(endpoint(attachment)),
                };
                if let Err(e) = self.api.connect_network(&attachment.network, request).await {
                    // Leave nothing half-made behind: the caller sees one failed create.
                    let _ = self.remove(&id).await;
                    return Err(engine_error(
                        e,
                        &format!("connect {} to network {}", spec.name, attachment.network),
                        &format!("network {}", attachment.network),
                    ));
                }
            }
        }
        Ok(id)
    }

    pub(crate) async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .api
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
        {
            // 304: already running.
            Err(e) if status(&e) == Some(304) => Ok(()),
            other => other.map_err(|e| {
                engine_error(
                    e,
                    &format!("start container {id}"),
                    &format!("container {id}"),
                )
            }),
        }
    }

    pub(crate) async fn stop(
        &self,
        id: &str,
        grace: Duration,
        signal: Option<&str>,
    ) -> Result<(), RuntimeError> {
        let what = format!("container {id}");
        let op = format!("stop container {id}");
        let default_signal = match signal {
            None => true,
            Some(s) => matches!(
                s.to_ascii_uppercase().trim_start_matches("SIG"),
                "TERM" | "15"
            ),
        };
        let seconds = i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX);
        if default_signal {
            let options = StopContainerOptions {
                t: Some(seconds),
                signal: None,
            };
            return match self.api.stop_container(id, Some(options)).await {
                // 304: already stopped.
                Err(e) if status(&e) == Some(304) => Ok(()),
                other => other.map_err(|e| engine_error(e, &op, &what)),
            };
        }
        // API 1.41 has no signal on stop: send it, wait up to the grace period, then kill.
        self.kill(id, signal).await?;
        let exited = tokio::time::timeout(grace, self.wait(id)).await;
        match exited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RuntimeError::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => self.kill(id, Some("SIGKILL")).await,
        }
    }

    pub(crate) async fn kill(&self, id: &str, signal: Option<&str>) -> Result<(), RuntimeError> {
        let options = KillContainerOptions {
            signal: signal.unwrap_or("SIGKILL").to_string(),
        };
        match self.api.kill_container(id, Some(options)).await {
            // 409: not running; there is nothing to signal.
            Err(e) if status(&e) == Some(409) => Ok(()),
            other => other.map_err(|e| {
                engine_error(
                    e,
                    &format!("kill container {id}"),
                    &format!("container {id}"),
                )
            }),
        }
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.api.remove_container(id, Some(options)).await {
            // 409: a removal is already in progress.
            Err(e) if status(&e) == Some(409) && detail(&e).contains("already in progress") => {
                Ok(())
            }
            other => other.map_err(|e| {
                engine_error(
                    e,
                    &format!("remove container {id}"),
                    &format!("container {id}"),
                )
            }),
        }
    }

    /// Waits for the container to stop and returns its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64, RuntimeError> {
        self.wait(id).await
    }

    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut stream = self.api.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(reply)) => Ok(reply.status_code),
            // bollard reports a non-zero exit code as an error; it is an answer here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(engine_error(
                e,
                &format!("wait for container {id}"),
                &format!("container {id}"),
            )),
            None => Err(RuntimeError::Failed {
                op: format!("wait for container {id}"),
                detail: "the engine closed the stream without an exit code".to_string(),
            }),
        }
    }
}
