//! The reader's entry point: find the files, read the environment, parse, interpolate,
//! apply `include` and `extends`, merge the files, then normalise and validate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::envfile;
use crate::error::{ErrorKind, SpecError};
use crate::interpolate::interpolate;
use crate::limits::{Budget, MAX_EXTENDS_DEPTH, MAX_INCLUDE_DEPTH};
use crate::merge::{merge_files, merge_service, strip_resets};
use crate::model::Project;
use crate::normalize;
use crate::read;
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
    let budget = Budget::default();
    let env = Env::new(&opts.environment, &env_files, &opts.working_dir, &budget)?;

    let mut ctx = Loader {
        working_dir: opts.working_dir.clone(),
        warnings: Vec::new(),
        unset: HashSet::new(),
        files_read: Vec::new(),
        budget,
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
    let project = normalize::project(&root, &settings, &env, &ctx.budget)?;
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
        budget: &Budget,
    ) -> Result<Env, SpecError> {
        let mut file_vars: BTreeMap<String, String> = BTreeMap::new();
        for file in env_files {
            let entries = read_env_file(
                file,
                working_dir,
                &|k| environment.get(k).or_else(|| file_vars.get(k)).cloned(),
                budget,
            )?;
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
    budget: &Budget,
) -> Result<Vec<(String, Option<String>)>, SpecError> {
    let shown = display_path(file, working_dir);
    let text = read::text(file, &shown, "env file", budget)?;
    envfile::parse(&text, outer, budget).map_err(|(line, kind, msg)| {
        let mut e = SpecError::new(kind, "", msg).with_file(shown);
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
    /// Variables already warned about.
    unset: HashSet<String>,
    files_read: Vec<PathBuf>,
    budget: Budget,
}

/// What one file's `extends` resolution has already done: resolved services by file and
/// name (with the length of their chain), and the files `extends: {file: …}` read (by
/// file and base directory), each with its services indexed by name.
#[derive(Default)]
struct Extends {
    resolved: HashMap<(PathBuf, String), (Node, usize)>,
    files: HashMap<(PathBuf, PathBuf), Rc<ServiceIndex>>,
}

/// A file's node and where each of its services is.
struct ServiceIndex {
    node: Node,
    services: HashMap<String, usize>,
}

impl ServiceIndex {
    fn new(node: Node) -> ServiceIndex {
        let services = node
            .get("services")
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .enumerate()
                    .map(|(i, e)| (e.key.clone(), i))
                    .collect()
            })
            .unwrap_or_default();
        ServiceIndex { node, services }
    }

    fn service(&self, name: &str) -> Option<&Node> {
        let i = *self.services.get(name)?;
        let entries = self.node.get("services")?.as_map()?;
        entries.get(i).map(|e| &e.value)
    }
}

impl Loader {
    /// Parse and interpolate one file.
    fn read(&mut self, path: &Path, base_dir: &Path, env: &Env) -> Result<Node, SpecError> {
        let shown = display_path(path, &self.working_dir);
        let text = read::text(path, &shown, "file", &self.budget)?;
        if !self.files_read.iter().any(|f| f == path) {
            self.files_read.push(path.to_path_buf());
        }
        let source = Source::new(path.to_path_buf(), shown, base_dir.to_path_buf());
        let mut node = yaml::parse(&text, &source, &self.budget)?;
        drop(text);
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
        let unset = &mut self.unset;
        interpolate_node(
            &mut node,
            &mut String::new(),
            env,
            &self.budget,
            &mut |name, path| {
                // Once per variable; once more if a pipeline script uses it.
                let script = pipeline_script(path);
                let key = if script {
                    format!("script:{name}")
                } else {
                    name.to_string()
                };
                if unset.insert(key) {
                    missing.push((name.to_string(), script.then(|| path.to_string())));
                }
            },
        )?;
        self.warnings.extend(missing.into_iter().map(|(name, script)| match script {
            None => format!("the \"{name}\" variable is not set, defaulting to a blank string"),
            // Compose's rule interpolates the whole file, scripts too: a shell variable
            // set inside a script is gone before the script runs.
            Some(path) => format!(
                "the \"{name}\" variable is not set, defaulting to a blank string in {path}: if the script sets it itself, write $${name} to leave it to the shell"
            ),
        }));
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
                let extra = Env::new(&BTreeMap::new(), &files, &self.working_dir, &self.budget)?;
                for (k, v) in extra.vars {
                    e.vars.entry(k).or_insert(v);
                }
                e
            };
            if stack.len() >= MAX_INCLUDE_DEPTH {
                return Err(SpecError::at(
                    ErrorKind::Limit,
                    &item.mark,
                    &ipath,
                    format!("include nested deeper than {MAX_INCLUDE_DEPTH} files"),
                ));
            }
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
        let wanted: Vec<String> = node
            .get("services")
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .filter(|e| e.value.get("extends").is_some())
                    .map(|e| e.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        if wanted.is_empty() {
            return Ok(());
        }
        // Resolve against the file as written, then put the results in place.
        let mark = node.mark.clone();
        let file = Rc::new(ServiceIndex::new(std::mem::replace(
            node,
            Node::new(Kind::Null, mark),
        )));
        let mut cache = Extends::default();
        let mut done = HashMap::new();
        for name in wanted {
            let mut chain = Vec::new();
            let (resolved, _) = self.extend(
                &file, path, base_dir, env, &name, &mut chain, None, &mut cache,
            )?;
            done.insert(name, resolved);
        }
        drop(cache);
        *node = Rc::try_unwrap(file)
            .map(|f| f.node)
            .unwrap_or_else(|f| f.node.clone());
        if let Some(entries) = node
            .as_map_mut()
            .and_then(|m| m.iter_mut().find(|e| e.key == "services"))
            .and_then(|s| s.value.as_map_mut())
        {
            for e in entries.iter_mut() {
                if let Some(resolved) = done.remove(&e.key) {
                    e.value = resolved;
                }
            }
        }
        Ok(())
    }

    /// Service `name` of `file` with its `extends` chain applied, and the chain's length
    /// (at most [`MAX_EXTENDS_DEPTH`] links). `chain` holds the services being resolved,
    /// for cycles; each service is resolved once per file, and every copy is charged to
    /// the budget.
    #[allow(clippy::too_many_arguments)]
    fn extend(
        &mut self,
        file: &Rc<ServiceIndex>,
        path: &Path,
        base_dir: &Path,
        env: &Env,
        name: &str,
        chain: &mut Vec<(PathBuf, String)>,
        from: Option<&Node>,
        cache: &mut Extends,
    ) -> Result<(Node, usize), SpecError> {
        let spath = format!("services.{name}");
        let key = (path.to_path_buf(), name.to_string());
        if let Some((done, links)) = cache.resolved.get(&key) {
            self.charge_copy(done)?;
            return Ok((done.clone(), *links));
        }
        let Some(service) = file.service(name) else {
            let mark = from.map(|f| &f.mark).unwrap_or(&file.node.mark);
            return Err(SpecError::at(
                ErrorKind::Undefined,
                mark,
                format!(
                    "services.{}.extends",
                    chain.last().map(|s| s.1.as_str()).unwrap_or(name)
                ),
                format!(
                    "cannot extend service \"{name}\": it is not defined in {}",
                    display_path(path, &self.working_dir).display()
                ),
            ));
        };
        let Some(ext) = service.get("extends") else {
            self.charge_copy(service)?;
            return Ok((service.clone(), 0));
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
        if chain.contains(&key) {
            let mut names: Vec<String> = chain.iter().map(|s| s.1.clone()).collect();
            names.push(name.to_string());
            return Err(SpecError::at(
                ErrorKind::Cycle,
                &ext.mark,
                &epath,
                format!("extends cycle: {}", names.join(" -> ")),
            ));
        }
        let too_long = || {
            SpecError::at(
                ErrorKind::Limit,
                &ext.mark,
                &epath,
                format!("extends chain longer than {MAX_EXTENDS_DEPTH} links"),
            )
        };
        if chain.len() >= MAX_EXTENDS_DEPTH {
            return Err(too_long());
        }
        chain.push(key.clone());
        let (base, base_links) = match base_file {
            None => self.extend(
                file,
                path,
                base_dir,
                env,
                &base_name,
                chain,
                Some(ext),
                cache,
            )?,
            Some(f) => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let other = dir.join(&f);
                let other_base = if base_dir == dir {
                    other.parent().map(Path::to_path_buf).unwrap_or(dir)
                } else {
                    base_dir.to_path_buf()
                };
                let file_key = (other.clone(), other_base.clone());
                let other_file = match cache.files.get(&file_key) {
                    Some(f) => f.clone(),
                    None => {
                        let node = self.read(&other, &other_base, env)?;
                        let f = Rc::new(ServiceIndex::new(node));
                        cache.files.insert(file_key, f.clone());
                        f
                    }
                };
                self.extend(
                    &other_file,
                    &other,
                    &other_base,
                    env,
                    &base_name,
                    chain,
                    Some(ext),
                    cache,
                )?
            }
        };
        chain.pop();
        let links = base_links + 1;
        if links > MAX_EXTENDS_DEPTH {
            return Err(too_long());
        }
        self.charge_copy(service)?;
        let mut local = service.clone();
        if let Some(m) = local.as_map_mut() {
            m.retain(|e| e.key != "extends");
        }
        let merged = merge_service(base, local);
        self.charge_copy(&merged)?;
        cache.resolved.insert(key, (merged.clone(), links));
        Ok((merged, links))
    }

    /// Charge a copy of `node` to the budget, located at the node.
    fn charge_copy(&self, node: &Node) -> Result<(), SpecError> {
        let (nodes, text) = node.size();
        self.budget
            .nodes(nodes)
            .and_then(|()| self.budget.text(text))
            .map_err(|m| SpecError::at(ErrorKind::Limit, &node.mark, "", m))
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
        let mut index: HashMap<String, usize> = existing
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        for item in items {
            if let Some(mine) = index.get(&item.key).and_then(|i| existing.get(*i)) {
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
            index.insert(item.key.clone(), existing.len());
            existing.push(item);
        }
    }
    Ok(())
}

fn singular(section: &str) -> &str {
    section.strip_suffix('s').unwrap_or(section)
}

/// Whether a dotted path is a pipeline job's script or condition (`run`, `rollback`,
/// `if`), where an unset variable is most often the shell's own.
fn pipeline_script(path: &str) -> bool {
    let path = path.strip_prefix("x-baton.").unwrap_or(path);
    let Some(rest) = path.strip_prefix("pipelines.") else {
        return false;
    };
    let field = rest.rsplit('.').next().unwrap_or("");
    let field = field.split('[').next().unwrap_or(field);
    rest.contains(".jobs.") && matches!(field, "run" | "rollback" | "if")
}

/// Interpolate every scalar value (never keys). `path` is the dotted path of `node`,
/// one buffer grown and cut back on the way down, so long keys are not copied per node;
/// text an interpolation adds is charged to the budget. `missing` is told each unset
/// variable and where it was used.
fn interpolate_node(
    node: &mut Node,
    path: &mut String,
    env: &Env,
    budget: &Budget,
    missing: &mut dyn FnMut(&str, &str),
) -> Result<(), SpecError> {
    match &mut node.kind {
        Kind::Scalar { text, .. } => {
            if text.contains('$') {
                let lookup = |k: &str| env.get(k);
                let max_len = text.len().saturating_add(budget.text_left());
                let at = path.as_str();
                let mut tell = |name: &str| missing(name, at);
                let out = interpolate(text, &lookup, &mut tell, max_len)
                    .and_then(|out| {
                        budget
                            .text(out.len().saturating_sub(text.len()))
                            .map(|()| out)
                            .map_err(|m| (ErrorKind::Limit, m))
                    })
                    .map_err(|(kind, msg)| SpecError::at(kind, &node.mark, path.as_str(), msg))?;
                *text = out;
            }
        }
        Kind::Seq(items) => {
            let len = path.len();
            for (i, item) in items.iter_mut().enumerate() {
                use std::fmt::Write;
                let _ = write!(path, "[{i}]");
                interpolate_node(item, path, env, budget, missing)?;
                path.truncate(len);
            }
        }
        Kind::Map(entries) => {
            let len = path.len();
            for e in entries.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&e.key);
                interpolate_node(&mut e.value, path, env, budget, missing)?;
                path.truncate(len);
            }
        }
        Kind::Null => {}
    }
    Ok(())
}
