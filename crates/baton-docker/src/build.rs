//! Image builds: the context directory packed as a tar (honouring `.dockerignore`), sent
//! to the Engine's classic build API, progress streamed, the extra tags applied after.

use std::collections::HashMap;
use std::path::Path;

use baton_engine::runtime::{BuildSpec, ProgressFn, RuntimeError};
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use crate::client::{detail, engine_error};
use crate::dockerignore::DockerIgnore;
use crate::Docker;

/// Where `dockerfile_inline` is put in the context; unlikely to clash with a real file.
pub const INLINE_DOCKERFILE: &str = ".baton-inline.Dockerfile";

impl Docker {
    pub(crate) async fn build(
        &self,
        spec: &BuildSpec,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        let first_tag = spec.tags.first().cloned();
        let op = format!(
            "build {}",
            first_tag
                .clone()
                .unwrap_or_else(|| spec.context.display().to_string())
        );
        let fail = |detail: String| RuntimeError::Failed {
            op: op.clone(),
            detail,
        };
        let context = spec.context.clone();
        let dockerfile = match &spec.dockerfile_inline {
            Some(_) => INLINE_DOCKERFILE.to_string(),
            None => spec.dockerfile.clone(),
        };
        let inline = spec.dockerfile_inline.clone();
        let keep = dockerfile.clone();
        let tar =
            tokio::task::spawn_blocking(move || context_tar(&context, &keep, inline.as_deref()))
                .await
                .map_err(|e| fail(format!("packing the context panicked: {e}")))?
                .map_err(fail)?;

        let options = BuildImageOptions {
            dockerfile,
            t: first_tag,
            rm: true,
            forcerm: true,
            buildargs: Some(
                spec.args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ),
            labels: Some(
                spec.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ),
            target: spec.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = self.api.build_image(
            options,
            None,
            Some(bollard::body_full(bytes::Bytes::from(tar))),
        );
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e @ bollard::errors::Error::DockerStreamError { .. })
                | Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    return Err(fail(detail(&e)))
                }
                Err(e) => return Err(engine_error(e, &op, "build context")),
            };
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(fail(error.trim().to_string()));
            }
            if let Some(text) = info.stream.or(info.status) {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    progress(line);
                }
            }
        }
        if let Some(first) = spec.tags.first() {
            for tag in &spec.tags[1..] {
                self.image_tag(first, tag).await?;
            }
        }
        Ok(())
    }
}

/// Packs the context directory as a tar. Files `.dockerignore` excludes are left out,
/// except the Dockerfile and `.dockerignore` themselves, which the engine needs.
pub fn context_tar(
    context: &Path,
    dockerfile: &str,
    inline_dockerfile: Option<&str>,
) -> Result<Vec<u8>, String> {
    let ignore_path = context.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", ignore_path.display())),
    };
    let meta = std::fs::metadata(context)
        .map_err(|e| format!("cannot read build context {}: {e}", context.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "build context {} is not a directory",
            context.display()
        ));
    }
    let always = [dockerfile.trim_start_matches("./"), ".dockerignore"];
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let full = if dir.is_empty() {
            context.to_path_buf()
        } else {
            context.join(&dir)
        };
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if inline_dockerfile.is_some() && rel == INLINE_DOCKERFILE {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
            let excluded = ignore.is_excluded(&rel) && !always.contains(&rel.as_str());
            if kind.is_dir() {
                // Walk an excluded folder only if an exception may bring part of it back.
                if excluded && !ignore.has_exceptions() {
                    continue;
                }
                if !excluded {
                    builder
                        .append_path_with_name(entry.path(), &rel)
                        .map_err(|e| format!("cannot add {rel} to the context: {e}"))?;
                }
                pending.push(rel);
            } else if !excluded {
                builder
                    .append_path_with_name(entry.path(), &rel)
                    .map_err(|e| format!("cannot add {rel} to the context: {e}"))?;
            }
        }
    }
    if let Some(text) = inline_dockerfile {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, INLINE_DOCKERFILE, text.as_bytes())
            .map_err(|e| format!("cannot add the inline dockerfile: {e}"))?;
    }
    builder
        .into_inner()
        .map_err(|e| format!("cannot finish the context tar: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        let mut out: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn context_honours_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            root.join(".dockerignore"),
            "secret.txt\nlogs\n!logs/keep\nDockerfile\n",
        )
        .unwrap();
        std::fs::write(root.join("secret.txt"), "x").unwrap();
        std::fs::write(root.join("app.txt"), "x").unwrap();
        std::fs::create_dir(root.join("logs")).unwrap();
        std::fs::write(root.join("logs/a"), "x").unwrap();
        std::fs::write(root.join("logs/keep"), "x").unwrap();
        let tar = context_tar(root, "Dockerfile", None).unwrap();
        assert_eq!(
            names(&tar),
            vec![".dockerignore", "Dockerfile", "app.txt", "logs/keep"]
        );
    }

    #[test]
    fn inline_dockerfile_is_added() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        let tar = context_tar(dir.path(), INLINE_DOCKERFILE, Some("FROM scratch\n")).unwrap();
        assert_eq!(
            names(&tar),
            vec![INLINE_DOCKERFILE.to_string(), "a".to_string()]
        );
    }

    #[test]
    fn missing_context_is_an_error() {
        let err = context_tar(Path::new("/nonexistent/ctx"), "Dockerfile", None).unwrap_err();
        assert!(err.starts_with("cannot read build context"), "{err}");
    }
}
