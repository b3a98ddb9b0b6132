//! Images: existence, pull with progress, and the Docker-only extras the CLI calls
//! (list, remove, tag, push, save to a tar file, load from one).

use std::collections::HashMap;
use std::path::Path;

use baton_engine::runtime::{ProgressFn, RuntimeError};
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListImagesOptions, PushImageOptions,
    RemoveImageOptions, TagImageOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{detail, engine_error, status};
use crate::credentials::{registry_host, registry_key};
use crate::Docker;

pub use baton_engine::runtime::{ImageFilter, ImageInfo};

impl baton_engine::runtime::Images for Docker {
    fn images_list<'a>(
        &'a self,
        filter: &'a ImageFilter,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<Vec<ImageInfo>, RuntimeError>> {
        Box::pin(Docker::images_list(self, filter))
    }
    fn image_remove<'a>(
        &'a self,
        reference: &'a str,
        force: bool,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Docker::image_remove(self, reference, force))
    }
    fn image_push<'a>(
        &'a self,
        reference: &'a str,
        progress: ProgressFn<'a>,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Docker::image_push(self, reference, progress))
    }
}

/// Splits `repo[:tag]` into repo and tag (default `latest`); a digest stays in the repo.
pub fn split_reference(reference: &str) -> (String, String) {
    if reference.contains('@') {
        return (reference.to_string(), String::new());
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            reference[..name_start + i].to_string(),
            reference[name_start + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "latest".to_string()),
    }
}

/// When the engine's words say the registry of `reference` wanted credentials (or
/// others), what to do about it; `None` for any other failure. `looked_in` is where
/// credentials were looked for, `had_credentials` whether some were sent.
pub(crate) fn refusal(
    reference: &str,
    detail: &str,
    had_credentials: bool,
    looked_in: &str,
) -> Option<String> {
    if !is_auth_failure(detail) {
        return None;
    }
    let host = registry_host(reference);
    Some(if had_credentials {
        format!("registry {host} refused the credentials from {looked_in}")
    } else {
        format!(
            "registry {host} wants credentials and {looked_in} has none for it: run \
             `docker login {host}`, or point DOCKER_CONFIG at a directory whose \
             config.json has them"
        )
    })
}

impl Docker {
    pub(crate) async fn has_image(&self, reference: &str) -> Result<bool, RuntimeError> {
        match self.api.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine_error(
                e,
                &format!("inspect image {reference}"),
                &format!("image {reference}"),
            )),
        }
    }

    pub(crate) async fn pull(
        &self,
        reference: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        let not_found = |detail: String| RuntimeError::ImageNotFound {
            image: reference.to_string(),
            detail,
        };
        let op = format!("pull {reference}");
        let (api, creds, looked_in) = self.for_registry(&op, &registry_key(reference)).await?;
        let had_credentials = creds.is_some();
        // A registry that refused is not a missing image: say which registry and why.
        let refused =
            |detail: String| match refusal(reference, &detail, had_credentials, &looked_in) {
                Some(hint) => RuntimeError::Failed {
                    op: format!(
                        "pull {reference} from registry {}",
                        registry_host(reference)
                    ),
                    detail: format!("{detail} ({hint})"),
                },
                None => not_found(detail),
            };
        let (repo, tag) = split_reference(reference);
        // Without a tag the engine would pull every tag of the repository.
        let options = CreateImageOptions {
            from_image: Some(repo),
            tag: (!tag.is_empty()).then_some(tag),
            ..Default::default()
        };
        let mut stream = api.create_image(Some(options), None, creds.map(|c| c.to_bollard()));
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e @ bollard::errors::Error::DockerStreamError { .. })
                | Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    return Err(refused(detail(&e)))
                }
                Err(e) => return Err(engine_error(e, &op, reference)),
            };
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(refused(error.trim().to_string()));
            }
            if let Some(status) = info.status {
                let line = match (info.id, info.progress) {
                    (Some(id), Some(p)) => format!("{id}: {status} {p}"),
                    (Some(id), None) => format!("{id}: {status}"),
                    (None, _) => status,
                };
                progress(&line);
            }
        }
        Ok(())
    }

    /// Images matching the filter, newest first.
    pub async fn images_list(&self, filter: &ImageFilter) -> Result<Vec<ImageInfo>, RuntimeError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(reference) = &filter.reference {
            filters.insert("reference".into(), vec![reference.clone()]);
        }
        if !filter.labels.is_empty() {
            filters.insert("label".into(), filter.labels.clone());
        }
        let images = self
            .api
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine_error(e, "list images", "images"))?;
        let mut out: Vec<ImageInfo> = images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size: i.size,
                created: i.created,
            })
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes an image (untags a reference; deletes the image when no tag is left).
    pub async fn image_remove(&self, reference: &str, force: bool) -> Result<(), RuntimeError> {
        let options = RemoveImageOptions {
            force,
            noprune: false,
        };
        self.api
            .remove_image(reference, Some(options), None)
            .await
            .map(drop)
            .map_err(|e| {
                engine_error(
                    e,
                    &format!("remove image {reference}"),
                    &format!("image {reference}"),
                )
            })
    }

    /// Gives image `source` the extra reference `target` (`repo[:tag]`).
    pub async fn image_tag(&self, source: &str, target: &str) -> Result<(), RuntimeError> {
        let (repo, tag) = split_reference(target);
        let options = TagImageOptions {
            repo: Some(repo),
            tag: (!tag.is_empty()).then_some(tag),
        };
        self.api
            .tag_image(source, Some(options))
            .await
            .map_err(|e| {
                engine_error(
                    e,
                    &format!("tag image {source} as {target}"),
                    &format!("image {source}"),
                )
            })
    }

    /// Pushes a reference to its registry, streaming progress lines.
    pub async fn image_push(
        &self,
        reference: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        let op = format!("push {reference} to registry {}", registry_host(reference));
        let (api, creds, looked_in) = self.for_registry(&op, &registry_key(reference)).await?;
        let had_credentials = creds.is_some();
        let (repo, tag) = split_reference(reference);
        let options = PushImageOptions {
            tag: (!tag.is_empty()).then_some(tag),
            platform: None,
        };
        let mut stream = api.push_image(&repo, Some(options), creds.map(|c| c.to_bollard()));
        while let Some(item) = stream.next().await {
            let refused = |error: String| {
                let detail = match refusal(reference, &error, had_credentials, &looked_in) {
                    Some(hint) => format!("{error} ({hint})"),
                    None => error,
                };
                RuntimeError::Failed {
                    op: op.clone(),
                    detail,
                }
            };
            let info = item.map_err(|e| match (status(&e), &e) {
                (Some(404), _) => RuntimeError::ImageNotFound {
                    image: reference.to_string(),
                    detail: detail(&e),
                },
                (_, bollard::errors::Error::DockerStreamError { .. }) => refused(detail(&e)),
                _ => engine_error(e, &op, &format!("image {reference}")),
            })?;
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(refused(error.trim().to_string()));
            }
            // Moving progress bars and per-layer waits are left out (bollard drops the
            // layer id): what is left is the repository, each layer pushed, the digest.
            if info.progress.is_some() {
                continue;
            }
            if let Some(status) = info.status.filter(|s| s != "Preparing" && s != "Waiting") {
                progress(&status);
            }
        }
        Ok(())
    }

    /// Writes the images as one `docker save` tar to `path`. A partial file is removed.
    pub async fn image_save(&self, references: &[&str], path: &Path) -> Result<(), RuntimeError> {
        let op = format!("save images to {}", path.display());
        let result = async {
            let mut file =
                tokio::fs::File::create(path)
                    .await
                    .map_err(|e| RuntimeError::Failed {
                        op: op.clone(),
                        detail: e.to_string(),
                    })?;
            let mut stream = self.api.export_images(references);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| engine_error(e, &op, &references.join(", ")))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| RuntimeError::Failed {
                        op: op.clone(),
                        detail: e.to_string(),
                    })?;
            }
            file.flush().await.map_err(|e| RuntimeError::Failed {
                op: op.clone(),
                detail: e.to_string(),
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    /// Loads a `docker save` tar; returns the engine's lines (`Loaded image: …`).
    pub async fn image_load(&self, path: &Path) -> Result<Vec<String>, RuntimeError> {
        let op = format!("load images from {}", path.display());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RuntimeError::Failed {
                op: op.clone(),
                detail: e.to_string(),
            })?;
        let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 64 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((bytes::Bytes::from(buf), file)))
        });
        let options = ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let stream = self
            .api
            .import_image(options, bollard::body_try_stream(chunks), None);
        let infos: Vec<_> = stream
            .map_err(|e| match e {
                e @ bollard::errors::Error::DockerStreamError { .. } => RuntimeError::Failed {
                    op: op.clone(),
                    detail: detail(&e),
                },
                e => engine_error(e, &op, "image archive"),
            })
            .try_collect()
            .await?;
        let mut lines = Vec::new();
        for info in infos {
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(RuntimeError::Failed {
                    op,
                    detail: error.trim().to_string(),
                });
            }
            if let Some(text) = info.stream.or(info.status) {
                lines.extend(text.lines().map(str::to_string));
            }
        }
        Ok(lines)
    }
}

/// Whether an engine or registry message means "not authorised". Docker Hub's "pull
/// access denied for x, repository does not exist or may require 'docker login'" is
/// left a missing image: it says both itself.
pub(crate) fn is_auth_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    if d.contains("does not exist") {
        return false;
    }
    [
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
        "access denied",
        "requested access to the resource is denied",
        "incorrect username or password",
    ]
    .iter()
    .any(|w| d.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures() {
        assert!(is_auth_failure(
            "Head \"http://127.0.0.1:5000/v2/x/manifests/t\": no basic auth credentials"
        ));
        assert!(is_auth_failure("unauthorized: authentication required"));
        assert!(is_auth_failure(
            "denied: requested access to the resource is denied"
        ));
        assert!(!is_auth_failure(
            "pull access denied for x, repository does not exist or may require 'docker login'"
        ));
        assert!(!is_auth_failure(
            "manifest for x:t not found: manifest unknown"
        ));
    }

    #[test]
    fn references() {
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(split_reference("a/b:1.2"), ("a/b".into(), "1.2".into()));
        assert_eq!(
            split_reference("localhost:5000/b"),
            ("localhost:5000/b".into(), "latest".into())
        );
        assert_eq!(
            split_reference("localhost:5000/b:x"),
            ("localhost:5000/b".into(), "x".into())
        );
        assert_eq!(
            split_reference("b@sha256:00"),
            ("b@sha256:00".into(), String::new())
        );
    }
}
