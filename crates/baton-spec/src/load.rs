//! The reader's entry point: find the files, read the environment, parse, interpolate,
//! apply `include` and `extends`, merge the files, then normalise and validate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::envfile;
use crate::error::{ErrorKind, SpecError};
use crate::interpolate::interpolate;
use crate::merge::{merge_files, merge_service, strip_resets};
use crate::model::Project;
use crate::normalize;
use crate::yaml::{self, Entry, Kind, Node, Source};

/// What to load and under which environment; the loader reads nothing else.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty = discover defaults in `working_dir`.
    pub files: Vec<PathBuf>,
    /// Directory for discovery and relative paths (the caller passes the cwd).
    pub working_dir: PathBuf,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--profile` (also `COMPOSE_PROFILES` from `environment`).
    pub profiles: Vec<String>,
    /// `--env-file`; when empty, `<project dir>/.env` if it exists.
    pub env_files: Vec<PathBuf>,
    /// The process environment, passed in (the loader never reads std::env itself, so tests are exact).
    pub environment: BTreeMap<String, String>,
    /// Services named on the command line: enabled even when their profile is not.
    pub enable_services: Vec<String>,
}

const DEFAULT_FILES: &[(&str, &str)] = &[
    ("baton.yaml", "baton.override.yaml"),
    ("baton.yml", "baton.override.yml"),
    ("compose.yaml", "compose.override.yaml"),
    ("compose.yml", "compose.override.yml"),
    ("docker-compose.yaml", "docker-compose.override.yaml"),
    ("docker-compose.yml", "docker-compose.override.yml"),
];

/// Default file names, first match wins: baton.yaml, baton.yml, compose.yaml, compose.yml,
/// docker-compose.yaml, docker-compose.yml; plus the matching override file
/// (compose.override.yaml etc.) when it exists, as Compose does.
pub fn find_default_files(dir: &Path) -> Option<Vec<PathBuf>> {
    DEFAULT_FILES.iter().find_map(|(main, over)| {
        let main = dir.join(main);
        if !main.is_file() {
            return None;
        }
        let over = dir.join(over);
        Some(if over.is_file() {
            vec![main, over]
        } else {
            vec![main]
        })
    })
}

/// Load a project.
pub fn load(opts: &LoadOptions) -> Result<Project, SpecError> {
    load_with_warnings(opts).map(|(p, _)| p)
}

/// Load a project, also returning warnings (unset variables and the like).
pub fn load_with_warnings(opts: &LoadOptions) -> Result<(Project, Vec<String>), SpecError> {
    let files = select_files(opts)?;
    let first = files
        .first()
        .cloned()
        .unwrap_or_else(|| opts.working_dir.clone());
    let project_dir = first
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.working_dir.clone());

    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let dot = project_dir.join(".env");
        if dot.is_file() {
            vec![dot]
        } else {
            Vec::new()
        }
    } else {
        opts.env_files
            .iter()
            .map(|f| opts.working_dir.join(f))
            .collect()
    };
    let env = Env::new(&opts.environment, &env_files, &opts.working_dir)?;

    let mut ctx = Loader {
        working_dir: opts.working_dir.clone(),
        warnings: Vec::new(),
        files_read: Vec::new(),
    };
    let mut merged: Option<Node> = None;
    for file in &files {
        let node = ctx.load_tree(file, &project_dir, &env, &mut Vec::new())?;
        merged = Some(match merged {
            None => node,
            Some(base) => merge_files(base, node),
        });
    }
    let mut root = merged.unwrap_or_else(|| {
        let src = Source::new(first.clone(), first.clone(), project_dir.clone());
        Node::new(
            Kind::Null,
            yaml::Mark {
                source: src,
                line: 0,
                column: 0,
            },
        )
    });
    strip_resets(&mut root);

    let mut profiles = opts.profiles.clone();
    if profiles.is_empty() {
        if let Some(p) = env.get("COMPOSE_PROFILES") {
            profiles = p
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    let settings = normalize::Settings {
        project_name: opts
            .project_name
            .clone()
            .or_else(|| env.get("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty())),
        project_dir,
        files: ctx.files_read.clone(),
        profiles,
        enable_services: opts.enable_services.clone(),
    };
    let project = normalize::project(&root, &settings, &env)?;
    Ok((project, ctx.warnings))
}

fn select_files(opts: &LoadOptions) -> Result<Vec<PathBuf>, SpecError> {
    if !opts.files.is_empty() {
        return Ok(opts
            .files
            .iter()
            .map(|f| opts.working_dir.join(f))
            .collect());
    }
    if let Some(list) = opts
        .environment
        .get("COMPOSE_FILE")
        .filter(|s| !s.is_empty())
    {
        let sep = opts
            .environment
            .get("COMPOSE_PATH_SEPARATOR")
            .map(String::as_str)
            .unwrap_or(":");
        return Ok(list
            .split(sep)
            .filter(|s| !s.is_empty())
            .map(|f| opts.working_dir.join(f))
            .collect());
    }
    // Compose also looks in parent directories.
    let mut dir = Some(opts.working_dir.as_path());
    while let Some(d) = dir {
        if let Some(found) = find_default_files(d) {
            return Ok(found);
        }
        dir = d.parent();
    }
    Err(SpecError::new(
        ErrorKind::Io,
        "",
        format!(
            "no configuration file provided: none of baton.yaml, compose.yaml, docker-compose.yaml (or .yml) found in {} or its parents",
            opts.working_dir.display()
        ),
    ))
}

/// Variables for interpolation: the process environment first, then env files.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn new(
        environment: &BTreeMap<String, String>,
        env_files: &[PathBuf],
        working_dir: &Path,
    ) -> Result<Env, SpecError> {
        let mut file_vars: BTreeMap<String, String> = BTreeMap::new();
        for file in env_files {
            let entries = read_env_file(file, working_dir, &|k| {
                environment.get(k).or_else(|| file_vars.get(k)).cloned()
            })?;
            for (k, v) in entries {
                if let Some(v) = v {
                    file_vars.insert(k, v);
                }
            }
        }
        let mut vars = file_vars;
        vars.extend(environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Env { vars })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.vars.get(key).cloned()
    }
}

/// Read and parse a `.env`-format file, with errors located in it.
pub(crate) fn read_env_file(
    file: &Path,
    working_dir: &Path,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, SpecError> {
    let shown = display_path(file, working_dir);
    let text = std::fs::read_to_string(file).map_err(|e| {
        SpecError::new(ErrorKind::Io, "", format!("cannot read env file: {e}"))
            .with_file(shown.clone())
    })?;
    envfile::parse(&text, outer).map_err(|(line, msg)| {
        let mut e = SpecError::new(ErrorKind::Syntax, "", msg).with_file(shown);
        e.line = Some(u32::try_from(line).unwrap_or(u32::MAX));
        e.column = Some(1);
        e
    })
}

pub(crate) fn display_path(file: &Path, working_dir: &Path) -> PathBuf {
    if let Ok(rel) = file.strip_prefix(working_dir) {
        return rel.to_path_buf();
    }
    match (
        std::fs::canonicalize(file),
        std::fs::canonicalize(working_dir),
    ) {
        (Ok(f), Ok(w)) => f.strip_prefix(&w).map(Path::to_path_buf).unwrap_or(f),
        _ => file.to_path_buf(),
    }
}

struct Loader {
    working_dir: PathBuf,
    warnings: Vec<String>,
    files_read: Vec<PathBuf>,
}

impl Loader {
    /// Parse and interpolate one file.
    fn read(&mut self, path: &Path, base_dir: &Path, env: &Env) -> Result<Node, SpecError> {
        let shown = display_path(path, &self.working_dir);
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError::new(ErrorKind::Io, "", format!("cannot read file: {e}"))
                .with_file(shown.clone())
        })?;
        if !self.files_read.iter().any(|f| f == path) {
            self.files_read.push(path.to_path_buf());
        }
        let source = Source::new(path.to_path_buf(), shown, base_dir.to_path_buf());
        let mut node = yaml::parse(&text, &source)?;
        match &node.kind {
            Kind::Map(_) | Kind::Null => {}
            _ => {
                return Err(SpecError::at(
                    ErrorKind::Type,
                    &node.mark,
                    "",
                    format!(
                        "expected a mapping at the top level, found {}",
                        node.type_name()
                    ),
                ))
            }
        }
        let mut missing = Vec::new();
        interpolate_node(&mut node, "", env, &mut missing)?;
        for name in missing {
            let w = format!("the \"{name}\" variable is not set, defaulting to a blank string");
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        Ok(node)
    }

    /// One file with its `include`s and `extends` applied.
    fn load_tree(
        &mut self,
        path: &Path,
        base_dir: &Path,
        env: &Env,
        stack: &mut Vec<PathBuf>,
    ) -> Result<Node, SpecError> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if stack.contains(&canonical) {
            let mut chain: Vec<String> = stack
                .iter()
                .map(|p| display_path(p, &self.working_dir).display().to_string())
                .collect();
            chain.push(
                display_path(&canonical, &self.working_dir)
                    .display()
                    .to_string(),
            );
            return Err(SpecError::new(
                ErrorKind::Cycle,
                "include",
                format!("include cycle: {}", chain.join(" -> ")),
            )
            .with_file(display_path(path, &self.working_dir)));
        }
        stack.push(canonical);
        let mut node = self.read(path, base_dir, env)?;
        self.apply_extends(&mut node, path, base_dir, env)?;
        let includes = take_entry(&mut node, "include");
        if let Some(entry) = includes {
            self.apply_includes(&mut node, entry, path, env, stack)?;
        }
        stack.pop();
        Ok(node)
    }

    fn apply_includes(
        &mut self,
        node: &mut Node,
        entry: Entry,
        path: &Path,
        env: &Env,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), SpecError> {
        let here = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let Kind::Seq(items) = &entry.value.kind else {
            return Err(SpecError::at(
                ErrorKind::Type,
                &entry.value.mark,
                "include",
                format!("expected a sequence, found {}", entry.value.type_name()),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("include[{i}]");
            let (paths, project_dir, env_files) = match &item.kind {
                Kind::Scalar { text, .. } => (vec![text.clone()], None, Vec::new()),
                Kind::Map(_) => {
                    normalize::check_keys(item, crate::schema::INCLUDE, &ipath, false)?;
                    let paths = match item.get("path") {
                        Some(p) => normalize::string_or_list(p, &format!("{ipath}.path"))?,
                        None => {
                            return Err(SpecError::at(
                                ErrorKind::Invalid,
                                &item.mark,
                                &ipath,
                                "missing \"path\"",
                            ))
                        }
                    };
                    let pd = match item.get("project_directory") {
                        Some(p) => {
                            Some(normalize::string(p, &format!("{ipath}.project_directory"))?)
                        }
                        None => None,
                    };
                    let ef = match item.get("env_file") {
                        Some(p) => normalize::string_or_list(p, &format!("{ipath}.env_file"))?,
                        None => Vec::new(),
                    };
                    (paths, pd, ef)
                }
                _ => {
                    return Err(SpecError::at(
                        ErrorKind::Type,
                        &item.mark,
                        &ipath,
                        format!("expected a string or a mapping, found {}", item.type_name()),
                    ))
                }
            };
            let files: Vec<PathBuf> = paths.iter().map(|p| here.join(p)).collect();
            let Some(first) = files.first() else { continue };
            let sub_base = match &project_dir {
                Some(d) => here.join(d),
                None => first
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| here.clone()),
            };
            let sub_env = if env_files.is_empty() {
                env.clone()
            } else {
                let files: Vec<PathBuf> = env_files.iter().map(|f| here.join(f)).collect();
                let mut e = env.clone();
                let extra = Env::new(&BTreeMap::new(), &files, &self.working_dir)?;
                for (k, v) in extra.vars {
                    e.vars.entry(k).or_insert(v);
                }
                e
            };
            let mut sub: Option<Node> = None;
            for f in &files {
                let n = self.load_tree(f, &sub_base, &sub_env, stack).map_err(|e| {
                    if e.kind == ErrorKind::Cycle && e.line.is_none() {
                        let mut e = e.with_mark(&item.mark);
                        e.path = ipath.clone();
                        e
                    } else {
                        e
                    }
                })?;
                sub = Some(match sub {
                    None => n,
                    Some(b) => merge_files(b, n),
                });
            }
            if let Some(sub) = sub {
                add_included(node, sub, &ipath)?;
            }
        }
        Ok(())
    }

    fn apply_extends(
        &mut self,
        node: &mut Node,
        path: &Path,
        base_dir: &Path,
        env: &Env,
    ) -> Result<(), SpecError> {
        let snapshot = node.clone();
        let Some(services) = node
            .as_map_mut()
            .and_then(|m| m.iter_mut().find(|e| e.key == "services"))
        else {
            return Ok(());
        };
        let Some(entries) = services.value.as_map_mut() else {
            return Ok(());
        };
        for e in entries.iter_mut() {
            if e.value.get("extends").is_some() {
                let mut stack = Vec::new();
                e.value = self.extend(&snapshot, path, base_dir, env, &e.key, &mut stack, None)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn extend(
        &mut self,
        file: &Node,
        path: &Path,
        base_dir: &Path,
        env: &Env,
        name: &str,
        stack: &mut Vec<(PathBuf, String)>,
        from: Option<&Node>,
    ) -> Result<Node, SpecError> {
        let spath = format!("services.{name}");
        let Some(service) = file.get("services").and_then(|s| s.get(name)) else {
            let mark = from.map(|f| &f.mark).unwrap_or(&file.mark);
            return Err(SpecError::at(
                ErrorKind::Undefined,
                mark,
                format!(
                    "services.{}.extends",
                    stack.last().map(|s| s.1.as_str()).unwrap_or(name)
                ),
                format!(
                    "cannot extend service \"{name}\": it is not defined in {}",
                    display_path(path, &self.working_dir).display()
                ),
            ));
        };
        let Some(ext) = service.get("extends") else {
            return Ok(service.clone());
        };
        let epath = format!("{spath}.extends");
        let (base_name, base_file) = match &ext.kind {
            Kind::Scalar { text, .. } => (text.clone(), None),
            Kind::Map(_) => {
                normalize::check_keys(ext, crate::schema::EXTENDS, &epath, false)?;
                let svc = match ext.get("service") {
                    Some(s) => normalize::string(s, &format!("{epath}.service"))?,
                    None => {
                        return Err(SpecError::at(
                            ErrorKind::Invalid,
                            &ext.mark,
                            &epath,
                            "missing \"service\"",
                        ))
                    }
                };
                let f = match ext.get("file") {
                    Some(f) => Some(normalize::string(f, &format!("{epath}.file"))?),
                    None => None,
                };
                (svc, f)
            }
            _ => {
                return Err(SpecError::at(
                    ErrorKind::Type,
                    &ext.mark,
                    &epath,
                    format!("expected a string or a mapping, found {}", ext.type_name()),
                ))
            }
        };
        let key = (path.to_path_buf(), name.to_string());
        if stack.contains(&key) {
            let mut chain: Vec<String> = stack.iter().map(|s| s.1.clone()).collect();
            chain.push(name.to_string());
            return Err(SpecError::at(
                ErrorKind::Cycle,
                &ext.mark,
                &epath,
                format!("extends cycle: {}", chain.join(" -> ")),
            ));
        }
        stack.push(key);
        let base = match base_file {
            None => self.extend(file, path, base_dir, env, &base_name, stack, Some(ext))?,
            Some(f) => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let other = dir.join(&f);
                let other_base = if base_dir == dir {
                    other.parent().map(Path::to_path_buf).unwrap_or(dir)
                } else {
                    base_dir.to_path_buf()
                };
                let other_node = self.read(&other, &other_base, env)?;
                self.extend(
                    &other_node,
                    &other,
                    &other_base,
                    env,
                    &base_name,
                    stack,
                    Some(ext),
                )?
            }
        };
        stack.pop();
        let mut local = service.clone();
        if let Some(m) = local.as_map_mut() {
            m.retain(|e| e.key != "extends");
        }
        Ok(merge_service(base, local))
    }
}

fn take_entry(node: &mut Node, key: &str) -> Option<Entry> {
    let entries = node.as_map_mut()?;
    let i = entries.iter().position(|e| e.key == key)?;
    Some(entries.remove(i))
}

/// Add an included project's resources; defining the same one twice is a conflict.
fn add_included(node: &mut Node, sub: Node, ipath: &str) -> Result<(), SpecError> {
    let Kind::Map(sub_entries) = sub.kind else {
        return Ok(());
    };
    if node.is_null() {
        node.kind = Kind::Map(Vec::new());
    }
    let Some(entries) = node.as_map_mut() else {
        return Ok(());
    };
    for section in sub_entries {
        if !matches!(
            section.key.as_str(),
            "services" | "networks" | "volumes" | "configs" | "secrets"
        ) {
            continue;
        }
        let Kind::Map(items) = section.value.kind else {
            continue;
        };
        let target = match entries.iter().position(|e| e.key == section.key) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    key: section.key.clone(),
                    key_mark: section.key_mark.clone(),
                    value: Node::new(Kind::Map(Vec::new()), section.value.mark.clone()),
                });
                entries.len() - 1
            }
        };
        let Some(target) = entries.get_mut(target) else {
            continue;
        };
        if target.value.is_null() {
            target.value.kind = Kind::Map(Vec::new());
        }
        let Some(existing) = target.value.as_map_mut() else {
            continue;
        };
        for item in items {
            if let Some(mine) = existing.iter().find(|e| e.key == item.key) {
                if section.key == "services" || mine.value.to_json() != item.value.to_json() {
                    return Err(SpecError::at(
                        ErrorKind::Conflict,
                        &mine.key_mark,
                        format!("{}.{}", section.key, item.key),
                        format!(
                            "{} \"{}\" is also defined by an included file ({}:{})",
                            singular(&section.key),
                            item.key,
                            item.key_mark.source.display.display(),
                            item.key_mark.line
                        ),
                    )
                    .with_hint(format!("rename one of them or remove the {ipath} entry")));
                }
                continue;
            }
            existing.push(item);
        }
    }
    Ok(())
}

fn singular(section: &str) -> &str {
    section.strip_suffix('s').unwrap_or(section)
}

/// Interpolate every scalar value (never keys).
fn interpolate_node(
    node: &mut Node,
    path: &str,
    env: &Env,
    missing: &mut Vec<String>,
) -> Result<(), SpecError> {
    let mark = node.mark.clone();
    match &mut node.kind {
        Kind::Scalar { text, .. } => {
            if text.contains('$') {
                let lookup = |k: &str| env.get(k);
                let out = interpolate(text, &lookup, &mut |n| {
                    if !missing.iter().any(|m| m == n) {
                        missing.push(n.to_string());
                    }
                })
                .map_err(|msg| SpecError::at(ErrorKind::Interpolation, &mark, path, msg))?;
                *text = out;
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_node(item, &format!("{path}[{i}]"), env, missing)?;
            }
        }
        Kind::Map(entries) => {
            for e in entries.iter_mut() {
                let p = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                interpolate_node(&mut e.value, &p, env, missing)?;
            }
        }
        Kind::Null => {}
    }
    Ok(())
}
