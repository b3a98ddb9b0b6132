//! The `pipelines:` section typed: pipelines, their triggers and jobs, read from
//! `project.baton["pipelines"]` and validated without touching processes or files.
//!
//! Every error is located (`file:line:column: pipelines.ci.jobs.build.timeout: …`) through
//! `Project::error_at`; unknown keys get a did-you-mean.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use baton_spec::{ErrorKind, Project, SpecError};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cond::Condition;

/// One pipeline: how it starts and the jobs it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub triggers: Vec<Trigger>,
    /// In the order written; the planner breaks ties by this order.
    pub jobs: Vec<Job>,
    /// How many runs of this pipeline may be in flight at once (unbounded when `None`).
    pub concurrency: Option<u32>,
    /// The fleet's hosts (`hosts:`), read only when a job has `host:`; jobs name theirs
    /// in [`Job::hosts`].
    #[serde(skip)]
    pub inventory: baton_fleet::Inventory,
}

/// What starts a run. A pipeline without `triggers:` is manual only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    /// A cron expression (5 fields, or 6 with seconds first), checked with croner.
    Schedule(String),
    Webhook(Webhook),
    Git(GitPoll),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<hmac of the body>`.
    Github,
    /// `X-Gitlab-Token: <secret>`.
    Gitlab,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    pub provider: Provider,
    pub secret: SecretSource,
}

/// Where a secret value is read from, at run time; the value itself is never in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GitPoll {
    /// A path (relative to the project directory) or any URL `git ls-remote` accepts.
    pub repo: String,
    pub branch: String,
    #[serde(with = "millis")]
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum When {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Retry {
    /// Retries after the first attempt.
    pub max: u32,
    /// The first delay; doubled each retry, with jitter.
    #[serde(with = "millis")]
    pub backoff: Duration,
    /// Retry only on these exit codes (any failure when empty).
    pub on_exit_codes: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifacts {
    /// Files, directories or glob patterns, relative to the job's workspace.
    pub paths: Vec<String>,
    pub retention: Retention,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep the artifacts of this job's last N runs.
    KeepLast(u32),
    /// Drop them this long after they were made.
    ExpireIn(#[serde(with = "millis")] Duration),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cache {
    pub key: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Secret {
    /// The environment variable the job sees.
    pub name: String,
    pub source: SecretSource,
}

/// One job as written (before matrix expansion).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub name: String,
    pub run: String,
    pub needs: Vec<String>,
    pub image: Option<String>,
    /// A fleet selector (`web1`, a group, `role:web`, `web:!canary`, …): the job's script
    /// runs on each host it picks, over SSH.
    pub host: Option<String>,
    /// The host ids `host` selected, in inventory order (empty for local jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts a host job works on at once (the run's `--jobs` when `None`).
    pub parallel: Option<u32>,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<Secret>,
    #[serde(with = "opt_millis")]
    pub timeout: Option<Duration>,
    pub retry: Retry,
    pub when: When,
    #[serde(rename = "if")]
    pub condition: Option<Condition>,
    pub artifacts: Option<Artifacts>,
    pub cache: Option<Cache>,
    /// Variable → values; the job runs once per combination.
    pub matrix: BTreeMap<String, Vec<String>>,
    pub allow_failure: bool,
    /// A script run when a later job fails, in reverse order of the jobs that succeeded.
    pub rollback: Option<String>,
}

/// Reads and validates every pipeline of the project (none when there is no section).
pub fn pipelines(project: &Project) -> Result<BTreeMap<String, Pipeline>, SpecError> {
    let Some(section) = project.baton.get("pipelines") else {
        return Ok(BTreeMap::new());
    };
    let r = Reader {
        project,
        section: baton_spec::Section::new(project),
    };
    let map = r.map(section, "pipelines")?;
    let mut out = BTreeMap::new();
    for (name, v) in map {
        let path = format!("pipelines.{name}");
        check_name(&r, name, &path)?;
        out.insert(name.clone(), r.pipeline(name, v, &path)?);
    }
    Ok(out)
}

/// The named pipeline, or an error listing the ones there are.
pub fn pipeline(project: &Project, name: &str) -> Result<Pipeline, SpecError> {
    let mut all = pipelines(project)?;
    all.remove(name).ok_or_else(|| {
        let known: Vec<&str> = project
            .baton
            .get("pipelines")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut e = SpecError::new(
            ErrorKind::Undefined,
            "pipelines",
            format!("no pipeline named \"{name}\" (known: {})", known.join(", ")),
        );
        e.hint = baton_spec::suggest(name, known.iter().copied());
        e
    })
}

const PIPELINE_KEYS: &[&str] = &["triggers", "jobs", "concurrency"];
const JOB_KEYS: &[&str] = &[
    "run",
    "needs",
    "image",
    "host",
    "parallel",
    "env",
    "secrets",
    "timeout",
    "retry",
    "when",
    "if",
    "artifacts",
    "cache",
    "matrix",
    "allow_failure",
    "rollback",
];

/// The typed reader of `pipelines:`, over the spec's located primitives.
struct Reader<'a> {
    project: &'a Project,
    section: baton_spec::Section<'a>,
}

impl<'a> std::ops::Deref for Reader<'a> {
    type Target = baton_spec::Section<'a>;
    fn deref(&self) -> &Self::Target {
        &self.section
    }
}

impl Reader<'_> {
    fn pipeline(&self, name: &str, v: &Value, path: &str) -> Result<Pipeline, SpecError> {
        let m = self.map(v, path)?;
        self.keys(m, PIPELINE_KEYS, path)?;
        let triggers = match m.get("triggers") {
            None => vec![Trigger::Manual],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, t)| self.trigger(t, &format!("{path}.triggers[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(self.err(
                    ErrorKind::Type,
                    &format!("{path}.triggers"),
                    "expected a list of triggers (manual, schedule, webhook, git)",
                ))
            }
        };
        let concurrency = match m.get("concurrency") {
            None => None,
            Some(v) => {
                let p = format!("{path}.concurrency");
                let n = self.uint(v, &p)?;
                if n == 0 {
                    return Err(self.err(ErrorKind::Invalid, &p, "must be at least 1"));
                }
                Some(n)
            }
        };
        let jobs_path = format!("{path}.jobs");
        let jobs_map = match m.get("jobs") {
            Some(j) => self.map(j, &jobs_path)?,
            None => return Err(self.err(ErrorKind::Invalid, path, "a pipeline needs `jobs:`")),
        };
        let mut jobs = Vec::new();
        for (jname, jv) in jobs_map {
            let jpath = format!("{jobs_path}.{jname}");
            check_name(self, jname, &jpath)?;
            jobs.push(self.job(jname, jv, &jpath)?);
        }
        let mut p = Pipeline {
            name: name.to_string(),
            triggers,
            jobs,
            concurrency,
            inventory: baton_fleet::Inventory::default(),
        };
        self.check_graph(&p, path)?;
        self.select_hosts(&mut p, &jobs_path)?;
        Ok(p)
    }

    fn trigger(&self, v: &Value, path: &str) -> Result<Trigger, SpecError> {
        const KINDS: &[&str] = &["manual", "schedule", "webhook", "git"];
        if v.as_str() == Some("manual") {
            return Ok(Trigger::Manual);
        }
        let m = self.map(v, path)?;
        if m.len() != 1 {
            return Err(self.err(
                ErrorKind::Invalid,
                path,
                "a trigger is one of: manual, schedule: CRON, webhook: {...}, git: {...}",
            ));
        }
        self.keys(m, KINDS, path)?;
        let Some((kind, body)) = m.iter().next() else {
            return Err(self.err(ErrorKind::Invalid, path, "empty trigger"));
        };
        let p = format!("{path}.{kind}");
        match kind.as_str() {
            "schedule" => {
                let expr = self.string(body, &p)?;
                if let Err(e) = crate::triggers::parse_cron(&expr) {
                    return Err(self.err(
                        ErrorKind::Invalid,
                        &p,
                        format!("\"{expr}\" is not a cron expression: {e}"),
                    ));
                }
                Ok(Trigger::Schedule(expr))
            }
            "webhook" => {
                let b = self.map(body, &p)?;
                self.keys(b, &["provider", "secret_env", "secret_file"], &p)?;
                let provider = match b.get("provider").map(|v| self.string(v, &p)).transpose()? {
                    None => Provider::Github,
                    Some(s) if s == "github" => Provider::Github,
                    Some(s) if s == "gitlab" => Provider::Gitlab,
                    Some(s) => {
                        return Err(self.err(
                            ErrorKind::Invalid,
                            &format!("{p}.provider"),
                            format!("\"{s}\" is not a provider (github, gitlab)"),
                        ))
                    }
                };
                let secret = self.secret_source(b, &p)?.ok_or_else(|| {
                    self.err(
                        ErrorKind::Invalid,
                        &p,
                        "a webhook needs `secret_env: VAR` or `secret_file: PATH`",
                    )
                })?;
                Ok(Trigger::Webhook(Webhook { provider, secret }))
            }
            "git" => {
                let b = self.map(body, &p)?;
                self.keys(b, &["repo", "branch", "interval"], &p)?;
                let repo = match b.get("repo") {
                    Some(r) => self.string(r, &format!("{p}.repo"))?,
                    None => return Err(self.err(ErrorKind::Invalid, &p, "`repo:` is required")),
                };
                let branch = match b.get("branch") {
                    Some(r) => self.string(r, &format!("{p}.branch"))?,
                    None => "main".to_string(),
                };
                if branch.is_empty() || branch.starts_with('-') {
                    return Err(self.err(
                        ErrorKind::Invalid,
                        &format!("{p}.branch"),
                        "not a branch name",
                    ));
                }
                let interval = match b.get("interval") {
                    Some(v) => self.duration(v, &format!("{p}.interval"))?,
                    None => Duration::from_secs(60),
                };
                Ok(Trigger::Git(GitPoll {
                    repo,
                    branch,
                    interval: interval.max(Duration::from_millis(100)),
                }))
            }
            _ => Ok(Trigger::Manual),
        }
    }

    fn secret_source(
        &self,
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<Option<SecretSource>, SpecError> {
        match (
            m.get("secret_env").or(m.get("env")),
            m.get("secret_file").or(m.get("file")),
        ) {
            (Some(_), Some(_)) => Err(self.err(
                ErrorKind::Conflict,
                path,
                "give the secret from an environment variable or a file, not both",
            )),
            (Some(e), None) => Ok(Some(SecretSource::Env(self.string(e, path)?))),
            (None, Some(f)) => Ok(Some(SecretSource::File(PathBuf::from(
                self.string(f, path)?,
            )))),
            (None, None) => Ok(None),
        }
    }

    fn job(&self, name: &str, v: &Value, path: &str) -> Result<Job, SpecError> {
        let m = self.map(v, path)?;
        self.keys(m, JOB_KEYS, path)?;
        let at = |k: &str| format!("{path}.{k}");
        let run = match m.get("run") {
            Some(Value::Array(lines)) => lines
                .iter()
                .enumerate()
                .map(|(i, l)| self.string(l, &format!("{path}.run[{i}]")))
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
            Some(r) => self.string(r, &at("run"))?,
            None => return Err(self.err(ErrorKind::Invalid, path, "a job needs `run:`")),
        };
        let needs = match m.get("needs") {
            Some(n) => self.strings(n, &at("needs"))?,
            None => Vec::new(),
        };
        let opt_string = |k: &str| m.get(k).map(|v| self.string(v, &at(k))).transpose();
        let image = opt_string("image")?;
        let host = opt_string("host")?;
        if image.is_some() && host.is_some() {
            return Err(self.err(
                ErrorKind::Conflict,
                &at("host"),
                "a job runs in an `image:` or on a `host:`, not both",
            ));
        }
        let parallel = match m.get("parallel") {
            None => None,
            Some(v) => {
                let n = self.uint(v, &at("parallel"))?;
                if n == 0 {
                    return Err(self.err(
                        ErrorKind::Invalid,
                        &at("parallel"),
                        "must be at least 1",
                    ));
                }
                if host.is_none() {
                    return Err(self.err(
                        ErrorKind::Invalid,
                        &at("parallel"),
                        "`parallel:` bounds the hosts of a `host:` job; this job has no `host:`",
                    ));
                }
                Some(n)
            }
        };
        if host.is_some() {
            for k in ["artifacts", "cache"] {
                if m.contains_key(k) {
                    return Err(self.err(
                        ErrorKind::Conflict,
                        &at(k),
                        format!("a `host:` job runs on remote hosts: it has no local workspace for `{k}:`"),
                    ));
                }
            }
        }
        let mut env = BTreeMap::new();
        if let Some(e) = m.get("env") {
            for (k, v) in self.map(e, &at("env"))? {
                let p = format!("{path}.env.{k}");
                check_var(self, k, &p)?;
                env.insert(k.clone(), self.string(v, &p)?);
            }
        }
        let secrets = match m.get("secrets") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let p = format!("{path}.secrets[{i}]");
                    let name = self.string(s, &p)?;
                    check_var(self, &name, &p)?;
                    Ok(Secret {
                        source: SecretSource::Env(name.clone()),
                        name,
                    })
                })
                .collect::<Result<_, SpecError>>()?,
            Some(Value::Object(items)) => items
                .iter()
                .map(|(k, s)| {
                    let p = format!("{path}.secrets.{k}");
                    check_var(self, k, &p)?;
                    let body = self.map(s, &p)?;
                    self.keys(body, &["env", "file"], &p)?;
                    let source = self.secret_source(body, &p)?.ok_or_else(|| {
                        self.err(ErrorKind::Invalid, &p, "give `env: VAR` or `file: PATH`")
                    })?;
                    Ok(Secret {
                        name: k.clone(),
                        source,
                    })
                })
                .collect::<Result<_, SpecError>>()?,
            Some(_) => {
                return Err(self.err(
                    ErrorKind::Type,
                    &at("secrets"),
                    "expected a list of variable names or a mapping NAME: {env|file}",
                ))
            }
        };
        let timeout = m
            .get("timeout")
            .map(|v| self.duration(v, &at("timeout")))
            .transpose()?;
        let retry = match m.get("retry") {
            None => Retry::default(),
            Some(v) if v.is_number() || v.is_string() => Retry {
                max: self.uint(v, &at("retry"))?,
                backoff: Duration::from_secs(1),
                on_exit_codes: Vec::new(),
            },
            Some(v) => {
                let p = at("retry");
                let r = self.map(v, &p)?;
                self.keys(r, &["max", "backoff", "on_exit_codes"], &p)?;
                Retry {
                    max: r
                        .get("max")
                        .map(|v| self.uint(v, &format!("{p}.max")))
                        .transpose()?
                        .unwrap_or(1),
                    backoff: r
                        .get("backoff")
                        .map(|v| self.duration(v, &format!("{p}.backoff")))
                        .transpose()?
                        .unwrap_or(Duration::from_secs(1)),
                    on_exit_codes: match r.get("on_exit_codes") {
                        None => Vec::new(),
                        Some(Value::Array(c)) => c
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                c.as_i64()
                                    .and_then(|c| i32::try_from(c).ok())
                                    .ok_or_else(|| {
                                        self.err(
                                            ErrorKind::Type,
                                            &format!("{p}.on_exit_codes[{i}]"),
                                            "expected an exit code",
                                        )
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(_) => {
                            return Err(self.err(
                                ErrorKind::Type,
                                &format!("{p}.on_exit_codes"),
                                "expected a list of exit codes",
                            ))
                        }
                    },
                }
            }
        };
        let when = match opt_string("when")?.as_deref() {
            None | Some("on_success") => When::OnSuccess,
            Some("on_failure") => When::OnFailure,
            Some("always") => When::Always,
            Some(other) => {
                let mut e = self.err(
                    ErrorKind::Invalid,
                    &at("when"),
                    format!("\"{other}\" is not one of on_success, on_failure, always"),
                );
                e.hint = baton_spec::suggest(other, ["on_success", "on_failure", "always"]);
                return Err(e);
            }
        };
        let condition = match opt_string("if")? {
            None => None,
            Some(src) => Some(Condition::parse(&src).map_err(|e| {
                self.err(ErrorKind::Invalid, &at("if"), format!("bad condition: {e}"))
            })?),
        };
        let artifacts = match m.get("artifacts") {
            None => None,
            Some(v) => {
                let p = at("artifacts");
                let a = self.map(v, &p)?;
                self.keys(a, &["paths", "keep_last", "expire_in"], &p)?;
                let paths = match a.get("paths") {
                    Some(v) => self.strings(v, &format!("{p}.paths"))?,
                    None => return Err(self.err(ErrorKind::Invalid, &p, "`paths:` is required")),
                };
                for (i, s) in paths.iter().enumerate() {
                    check_relative(self, s, &format!("{p}.paths[{i}]"))?;
                }
                let retention = match (a.get("keep_last"), a.get("expire_in")) {
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            ErrorKind::Conflict,
                            &p,
                            "give `keep_last` or `expire_in`, not both",
                        ))
                    }
                    (Some(k), None) => {
                        let n = self.uint(k, &format!("{p}.keep_last"))?;
                        if n == 0 {
                            return Err(self.err(
                                ErrorKind::Invalid,
                                &format!("{p}.keep_last"),
                                "must be at least 1",
                            ));
                        }
                        Retention::KeepLast(n)
                    }
                    (None, Some(e)) => {
                        Retention::ExpireIn(self.duration(e, &format!("{p}.expire_in"))?)
                    }
                    (None, None) => Retention::KeepLast(5),
                };
                Some(Artifacts { paths, retention })
            }
        };
        let cache = match m.get("cache") {
            None => None,
            Some(v) => {
                let p = at("cache");
                let c = self.map(v, &p)?;
                self.keys(c, &["key", "paths"], &p)?;
                let key = match c.get("key") {
                    Some(k) => self.string(k, &format!("{p}.key"))?,
                    None => name.to_string(),
                };
                check_name(self, &key, &format!("{p}.key"))?;
                let paths = match c.get("paths") {
                    Some(v) => self.strings(v, &format!("{p}.paths"))?,
                    None => return Err(self.err(ErrorKind::Invalid, &p, "`paths:` is required")),
                };
                for (i, s) in paths.iter().enumerate() {
                    check_relative(self, s, &format!("{p}.paths[{i}]"))?;
                }
                Some(Cache { key, paths })
            }
        };
        let mut matrix = BTreeMap::new();
        if let Some(v) = m.get("matrix") {
            for (k, vals) in self.map(v, &at("matrix"))? {
                let p = format!("{path}.matrix.{k}");
                check_var(self, k, &p)?;
                let vals = self.strings(vals, &p)?;
                if vals.is_empty() {
                    return Err(self.err(ErrorKind::Invalid, &p, "needs at least one value"));
                }
                matrix.insert(k.clone(), vals);
            }
        }
        let allow_failure = m
            .get("allow_failure")
            .map(|v| self.bool(v, &at("allow_failure")))
            .transpose()?
            .unwrap_or(false);
        let rollback = opt_string("rollback")?;
        Ok(Job {
            name: name.to_string(),
            run,
            needs,
            image,
            host,
            hosts: Vec::new(),
            parallel,
            env,
            secrets,
            timeout,
            retry,
            when,
            condition,
            artifacts,
            cache,
            matrix,
            allow_failure,
            rollback,
        })
    }

    /// Resolves each `host:` selector against the fleet's inventory with the fleet's own
    /// selector code: an unknown word or a selector matching no host is an error at the
    /// job's `host`.
    fn select_hosts(&self, p: &mut Pipeline, jobs_path: &str) -> Result<(), SpecError> {
        if p.jobs.iter().all(|j| j.host.is_none()) {
            return Ok(());
        }
        let inv = baton_fleet::inventory::from_project(self.project).map_err(|e| match e {
            baton_fleet::inventory::InventoryError::Spec(e) => e,
            other => self.err(ErrorKind::Invalid, "hosts", other.to_string()),
        })?;
        for j in &mut p.jobs {
            let Some(selector) = &j.host else { continue };
            let at = format!("{jobs_path}.{}.host", j.name);
            if inv.hosts.is_empty() {
                return Err(self.err(
                    ErrorKind::Undefined,
                    &at,
                    format!("selector `{selector}`: there is no `hosts:` section to pick from"),
                ));
            }
            let ids = baton_fleet::select::select(&inv, selector)
                .map_err(|e| self.err(ErrorKind::Undefined, &at, e.to_string()))?;
            if ids.is_empty() {
                return Err(self.err(
                    ErrorKind::Invalid,
                    &at,
                    format!("selector `{selector}` matches no host"),
                ));
            }
            j.hosts = ids;
        }
        p.inventory = inv;
        Ok(())
    }

    /// Unknown `needs` and cycles, located at the `needs` that names them.
    fn check_graph(&self, p: &Pipeline, path: &str) -> Result<(), SpecError> {
        let names: BTreeSet<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
        for j in &p.jobs {
            for (i, n) in j.needs.iter().enumerate() {
                if !names.contains(n.as_str()) {
                    let np = format!("{path}.jobs.{}.needs[{i}]", j.name);
                    let mut e = self.err(
                        ErrorKind::Undefined,
                        &np,
                        format!(
                            "job \"{}\" needs \"{n}\", which is not a job of this pipeline",
                            j.name
                        ),
                    );
                    e.hint = baton_spec::suggest(n, names.iter().copied());
                    return Err(e);
                }
                if n == &j.name {
                    return Err(self.err(
                        ErrorKind::Cycle,
                        &format!("{path}.jobs.{}.needs[{i}]", j.name),
                        format!("job \"{n}\" needs itself"),
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(p) {
            let first = &cycle[0];
            let next = &cycle[1];
            let idx = p
                .jobs
                .iter()
                .find(|j| &j.name == first)
                .and_then(|j| j.needs.iter().position(|n| n == next))
                .unwrap_or(0);
            return Err(self.err(
                ErrorKind::Cycle,
                &format!("{path}.jobs.{first}.needs[{idx}]"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(())
    }
}

/// A cycle as `[a, b, …, a]` when the `needs` graph has one.
fn find_cycle(p: &Pipeline) -> Option<Vec<String>> {
    let needs: BTreeMap<&str, &Vec<String>> =
        p.jobs.iter().map(|j| (j.name.as_str(), &j.needs)).collect();
    // 0 unvisited, 1 on the stack, 2 done
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut stack: Vec<&str> = Vec::new();
    fn visit<'a>(
        n: &'a str,
        needs: &BTreeMap<&'a str, &'a Vec<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for m in needs.get(n).map(|v| v.iter()).into_iter().flatten() {
            if let Some(c) = visit(m.as_str(), needs, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for j in &p.jobs {
        if let Some(c) = visit(j.name.as_str(), &needs, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}

fn check_name(r: &Reader, name: &str, path: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(r.err(
            ErrorKind::Invalid,
            path,
            format!("\"{name}\" is not a valid name (letters, digits, '-', '_', '.')"),
        ))
    }
}

fn check_var(r: &Reader, name: &str, path: &str) -> Result<(), SpecError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(r.err(
            ErrorKind::Invalid,
            path,
            format!("\"{name}\" is not a valid environment variable name"),
        ))
    }
}

fn check_relative(r: &Reader, p: &str, path: &str) -> Result<(), SpecError> {
    let pb = std::path::Path::new(p);
    if p.is_empty()
        || pb.is_absolute()
        || pb
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(r.err(
            ErrorKind::Invalid,
            path,
            format!("\"{p}\" must be a path inside the job's workspace (relative, no '..')"),
        ));
    }
    Ok(())
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod opt_millis {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}
