//! Configs and secrets as host files: `file:` sources are used where they are; `content:`
//! and `environment:` sources are written, mode 0600, where `resolve::file_sources` says
//! (under the state directory), so the daemon finds them too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use baton_engine::resolve::{file_sources, FileSources};
use baton_spec::Project;

use crate::{ControlError, Result};

/// Writes the project's `content:` and `environment:` configs and secrets under
/// `state_dir/files`, reading `environment:` sources from `env`; returns where each is.
pub fn materialize(
    project: &Project,
    state_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<FileSources> {
    let sources = file_sources(project, &state_dir.join("files"));
    for (kind, objects) in [("config", &project.configs), ("secret", &project.secrets)] {
        for (name, obj) in objects {
            if obj.file.is_some() {
                continue;
            }
            let Some(path) = sources.get(&format!("{kind}:{name}")) else {
                continue;
            };
            let content = match (&obj.content, &obj.environment) {
                (Some(c), _) => c.clone(),
                (None, Some(var)) => env.get(var).cloned().ok_or_else(|| {
                    ControlError::Refused(format!(
                        "{kind} {name}: environment variable {var} is not set"
                    ))
                })?,
                (None, None) => continue,
            };
            let io = |source| ControlError::Io {
                path: path.clone(),
                source,
            };
            if let Some(dir) = path.parent() {
                baton_state::private::create_dir(dir).map_err(io)?;
            }
            let mut f = baton_state::private::create(path).map_err(io)?;
            f.write_all(content.as_bytes()).map_err(io)?;
        }
    }
    Ok(sources)
}
