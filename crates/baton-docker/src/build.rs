//! Image builds: the context directory packed as a tar (honouring `.dockerignore`), sent
//! to the Engine's classic build API with credentials for the registries of its base
//! images, progress streamed, the extra tags applied after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use baton_engine::runtime::{BuildSpec, ProgressFn, RuntimeError};
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use crate::client::{detail, engine_error};
use crate::credentials::registry_key;
use crate::dockerignore::DockerIgnore;
use crate::image::is_auth_failure;
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
        // The engine pulls the base images itself: it gets the credentials of their
        // registries (and of no other).
        let text = match &spec.dockerfile_inline {
            Some(text) => Some(text.clone()),
            None => std::fs::read_to_string(spec.context.join(&spec.dockerfile)).ok(),
        };
        let registries: Vec<String> = text
            .map(|t| base_images(&t, &spec.args))
            .unwrap_or_default()
            .iter()
            .map(|i| registry_key(i))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = self.registry_credentials(&op, registries.clone()).await?;
        let creds = found.credentials;
        let with_creds: Vec<String> = creds.iter().map(|c| c.server.clone()).collect();
        let refused = |detail: String| {
            if !is_auth_failure(&detail) {
                return fail(detail);
            }
            let have = if with_creds.is_empty() {
                "none".to_string()
            } else {
                with_creds.join(", ")
            };
            fail(format!(
                "{detail} (the base images come from {}; credentials found for: {have}, \
                 looked for in {})",
                registries.join(", "),
                found.looked_in
            ))
        };
        let (api, creds) = if creds.is_empty() {
            (&self.api, None)
        } else {
            let map: HashMap<_, _> = creds
                .iter()
                .map(|c| (c.server.clone(), c.to_bollard()))
                .collect();
            (&self.auth_api, Some(map))
        };
        let mut stream = api.build_image(
            options,
            creds,
            Some(bollard::body_full(bytes::Bytes::from(tar))),
        );
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e @ bollard::errors::Error::DockerStreamError { .. })
                | Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    return Err(refused(detail(&e)))
                }
                Err(e) => return Err(engine_error(e, &op, "build context")),
            };
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(refused(error.trim().to_string()));
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

/// The images a Dockerfile builds on: each `FROM` (with the `ARG`s declared before the
/// first one, `args` overriding their defaults) and each `COPY --from` that names an
/// image rather than a stage. `scratch`, stages and references left with an unset
/// variable are left out.
pub fn base_images(dockerfile: &str, args: &BTreeMap<String, String>) -> Vec<String> {
    let escape = escape_char(dockerfile);
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut seen_from = false;
    let mut out: Vec<String> = Vec::new();
    let push = |image: String, out: &mut Vec<String>| {
        if !out.contains(&image) {
            out.push(image);
        }
    };
    for line in logical_lines(dockerfile, escape) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        match instruction.to_ascii_lowercase().as_str() {
            "arg" if !seen_from => {
                for word in words {
                    let (name, default) = match word.split_once('=') {
                        Some((n, v)) => (n, unquote(v)),
                        None => (word, ""),
                    };
                    let value = args.get(name).map_or(default, String::as_str);
                    meta.insert(name.to_string(), value.to_string());
                }
            }
            "from" => {
                seen_from = true;
                let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
                let Some(image) = rest.first() else { continue };
                let image = substitute(image, &meta);
                if let [_, as_word, name, ..] = rest.as_slice() {
                    if as_word.eq_ignore_ascii_case("as") {
                        stages.insert(name.to_ascii_lowercase());
                    }
                }
                if let Some(image) = image.filter(|i| {
                    !i.is_empty()
                        && !i.eq_ignore_ascii_case("scratch")
                        && !stages.contains(&i.to_ascii_lowercase())
                }) {
                    push(image, &mut out);
                }
            }
            "copy" => {
                for word in words {
                    let Some(from) = word.strip_prefix("--from=") else {
                        continue;
                    };
                    let from = unquote(from);
                    if !from.is_empty()
                        && !from.contains('$')
                        && !from.chars().all(|c| c.is_ascii_digit())
                        && !stages.contains(&from.to_ascii_lowercase())
                    {
                        push(from.to_string(), &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The escape character from a `# escape=` parser directive (default backslash).
fn escape_char(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            break;
        };
        if let Some((key, value)) = comment.split_once('=') {
            if key.trim().eq_ignore_ascii_case("escape") {
                if let Some(c) = value.trim().chars().next() {
                    return c;
                }
            }
        }
    }
    '\\'
}

/// Instructions with their continuation lines joined, comments and blank lines dropped.
fn logical_lines(dockerfile: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix(escape) {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

/// `$X`, `${X}`, `${X:-default}` and `${X:+alternative}` from `vars`; `None` when the
/// text is malformed.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(body) = rest.strip_prefix('{') {
            let end = body.find('}')?;
            let expr = &body[..end];
            rest = &body[end + 1..];
            let value = if let Some((name, default)) = expr.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| default.to_string())
            } else if let Some((name, alternative)) = expr.split_once(":+") {
                match vars.get(name) {
                    Some(v) if !v.is_empty() => alternative.to_string(),
                    _ => String::new(),
                }
            } else {
                vars.get(expr).cloned().unwrap_or_default()
            };
            out.push_str(&value);
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            out.push_str(vars.get(&rest[..end]).map_or("", String::as_str));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Some(out)
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
    fn base_images_of_a_dockerfile() {
        let dockerfile = "\
# syntax=docker/dockerfile:1
ARG BASE=127.0.0.1:5000/base REV=\"1\"
ARG UNSET
FROM --platform=linux/amd64 ${BASE}:${REV} AS build
RUN echo hi \\
  && echo there
from busybox as Other
FROM build
COPY --from=build /a /a
COPY --from=0 /b /b
COPY --from=ghcr.io/o/tool:2 /bin/tool /bin/tool
COPY --from=other /c /c
FROM scratch
FROM $UNSET
FROM ${UNSET:-docker.io/library/alpine}
FROM busybox
";
        assert_eq!(
            base_images(dockerfile, &BTreeMap::new()),
            vec![
                "127.0.0.1:5000/base:1",
                "busybox",
                "ghcr.io/o/tool:2",
                "docker.io/library/alpine",
            ]
        );
        let args = BTreeMap::from([("REV".to_string(), "2".to_string())]);
        assert_eq!(base_images(dockerfile, &args)[0], "127.0.0.1:5000/base:2");
    }

    #[test]
    fn escape_directive_and_continuations() {
        let dockerfile = "# escape=`\nFROM `\n  127.0.0.1:5000/x:t\nRUN a \\\n";
        assert_eq!(
            base_images(dockerfile, &BTreeMap::new()),
            vec!["127.0.0.1:5000/x:t"]
        );
    }

    #[test]
    fn missing_context_is_an_error() {
        let err = context_tar(Path::new("/nonexistent/ctx"), "Dockerfile", None).unwrap_err();
        assert!(err.starts_with("cannot read build context"), "{err}");
    }
}
