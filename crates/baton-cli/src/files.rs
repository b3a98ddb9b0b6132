//! Configs and secrets as host files: `file:` sources are used where they are; `content:`
//! and `environment:` sources are written under the state directory, mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use baton_engine::resolve::FileSources;
use baton_spec::{FileObject, Project};

pub fn materialize(project: &Project, state_dir: &Path) -> Result<FileSources> {
    let mut out = FileSources::new();
    let dir = state_dir.join("files").join(&project.name);
    for (kind, objects) in [("config", &project.configs), ("secret", &project.secrets)] {
        for (name, obj) in objects {
            if let Some(path) = source(kind, name, obj, &dir)? {
                out.insert(format!("{kind}:{name}"), path);
            }
        }
    }
    Ok(out)
}

fn source(kind: &str, name: &str, obj: &FileObject, dir: &Path) -> Result<Option<PathBuf>> {
    if let Some(f) = &obj.file {
        return Ok(Some(f.clone()));
    }
    let content = match (&obj.content, &obj.environment) {
        (Some(c), _) => c.clone(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| anyhow!("{kind} {name}: environment variable {var} is not set"))?,
        (None, None) => return Ok(None),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{kind}-{name}"));
    write_private(&path, content.as_bytes())
        .with_context(|| format!("cannot write {kind} {name}"))?;
    Ok(Some(path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
