//! SSH fleets as the front doors drive them: the run options a runbook's defaults and
//! the caller's overrides make, an ad-hoc command or a runbook over the selected
//! hosts (recorded in the store), and managed files applied or rolled back.

use std::time::Duration;

use baton_fleet::files::{self, FileReport, ManagedFile};
use baton_fleet::runbook::{self, Runbook};
use baton_fleet::ssh::SshOptions;
use baton_fleet::{Batch, Inventory, OnFailure, RunOptions, RunReport, Strategy, Task};
use baton_spec::Project;

use crate::converge::refused;
use crate::{Control, Result};

/// What the caller sets of a run; a runbook's own settings fill in the rest.
#[derive(Debug, Clone, Default)]
pub struct FleetOverrides {
    pub strategy: Option<Strategy>,
    pub batch: Option<Batch>,
    /// A duration like `30s` between rolling batches.
    pub pause: Option<String>,
    pub on_failure: Option<OnFailure>,
    pub max_fail_percentage: Option<u8>,
    pub forks: Option<usize>,
    /// Dry run: report what would change, change nothing.
    pub check: bool,
    pub command_timeout: Option<Duration>,
}

/// Hosts worked on at once when neither the caller nor the runbook says.
pub const DEFAULT_FORKS: usize = 50;

/// How managed files reach their hosts.
#[derive(Debug, Clone)]
pub struct FilesTarget<'a> {
    pub inventory: &'a Inventory,
    pub ssh: &'a SshOptions,
    pub forks: usize,
}

impl<R> Control<R> {
    /// The options of a run: the caller's overrides, else the runbook's, else the
    /// defaults; refused when they do not fit together.
    pub fn fleet_options(
        &self,
        o: &FleetOverrides,
        rb: Option<&Runbook>,
        ssh: SshOptions,
        base_dir: std::path::PathBuf,
    ) -> Result<RunOptions> {
        let pause = match &o.pause {
            Some(p) => {
                Some(runbook::parse_duration(p).map_err(|e| refused(format!("--pause: {e}")))?)
            }
            None => rb.and_then(|r| r.pause),
        };
        if o.forks == Some(0) {
            return Err(refused("--forks must be at least 1"));
        }
        if o.max_fail_percentage.is_some_and(|m| m > 100) {
            return Err(refused("--max-fail-percentage must be 0 to 100"));
        }
        let strategy = o
            .strategy
            .or(rb.and_then(|r| r.strategy))
            .unwrap_or_default();
        let batch = o.batch.or(rb.and_then(|r| r.batch));
        if batch.is_some() && strategy != Strategy::Rolling {
            return Err(refused("--batch only applies to --strategy rolling"));
        }
        Ok(RunOptions {
            strategy,
            batch,
            pause,
            forks: o
                .forks
                .or(rb.and_then(|r| r.forks))
                .unwrap_or(DEFAULT_FORKS),
            on_failure: o
                .on_failure
                .or(rb.and_then(|r| r.on_failure))
                .unwrap_or_default(),
            max_fail_percentage: o
                .max_fail_percentage
                .or(rb.and_then(|r| r.max_fail_percentage)),
            check: o.check,
            clock: self.clock,
            command_timeout: o.command_timeout,
            ssh,
            base_dir,
        })
    }

    /// Runs a task over the hosts `target` selects and records the run under
    /// `project`; the report carries its id.
    pub async fn fleet_run(
        &self,
        project: &str,
        inventory: &Inventory,
        target: &str,
        task: &Task,
        opts: &RunOptions,
    ) -> Result<RunReport> {
        let report = baton_fleet::run::run(inventory, target, task, opts)
            .await
            .map_err(|e| refused(e.to_string()))?;
        self.record_fleet_run(project, report)
    }

    /// Keeps each host's newest facts (`baton fleet facts`): what the daemon's host
    /// series (`baton_fleet_host_*`) and the built-in rules `host_unreachable` and
    /// `disk_space_low` read.
    pub fn record_facts(
        &self,
        project: &str,
        facts: &[baton_fleet::facts::HostFacts],
    ) -> Result<()> {
        let at = (self.clock)();
        let rows: Vec<baton_state::HostFactsRecord> = facts
            .iter()
            .map(|h| baton_state::HostFactsRecord {
                project: project.to_string(),
                host: h.host.clone(),
                facts_json: h.facts.as_ref().and_then(|f| serde_json::to_string(f).ok()),
                error: h.error.clone(),
                at,
            })
            .collect();
        Ok(self.store.record_host_facts(&rows)?)
    }

    /// Records a finished run (a ping's too) in the store.
    pub fn record_fleet_run(&self, project: &str, mut report: RunReport) -> Result<RunReport> {
        let json = serde_json::to_string(&report).map_err(|e| refused(e.to_string()))?;
        let hosts: Vec<baton_state::HostInRun<'_>> = report
            .hosts
            .iter()
            .map(|h| baton_state::HostInRun {
                host: &h.host,
                address: &h.address,
                status: h.status.as_str(),
            })
            .collect();
        let id = self.store.record_fleet_run(
            project,
            &report.kind,
            &report.task,
            &report.target,
            &report.strategy,
            &report.outcome,
            report.started_at,
            report.finished_at,
            &json,
            &hosts,
        )?;
        report.id = Some(id);
        Ok(report)
    }

    /// A runbook of the file by name, with the run's target: the runbook's own, narrowed
    /// by `target` when given.
    pub fn runbook(
        &self,
        project: &Project,
        name: &str,
        target: Option<&str>,
    ) -> Result<(Runbook, String)> {
        let books = runbook::from_project(project).map_err(|e| refused(e.to_string()))?;
        let Some(rb) = books.get(name) else {
            let known: Vec<&str> = books.keys().map(String::as_str).collect();
            return Err(refused(format!(
                "no runbook `{name}` in x-baton.runbooks (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let target = match target {
            Some(t) => format!("{}:&{t}", rb.target),
            None => rb.target.clone(),
        };
        Ok((rb.clone(), target))
    }

    /// The managed files named (all when none).
    pub fn managed_files(&self, project: &Project, names: &[String]) -> Result<Vec<ManagedFile>> {
        let all = files::from_project(project)?;
        let list: Vec<ManagedFile> = if names.is_empty() {
            if all.is_empty() {
                return Err(refused("no managed files: write a `files:` section"));
            }
            all.into_values().collect()
        } else {
            names
                .iter()
                .map(|n| {
                    all.get(n)
                        .cloned()
                        .ok_or_else(|| refused(format!("no managed file `{n}` in `files:`")))
                })
                .collect::<Result<_>>()?
        };
        Ok(list)
    }

    fn files_env<'a>(&'a self, project: &'a str, t: &FilesTarget<'a>) -> files::Env<'a> {
        files::Env {
            project,
            inventory: t.inventory,
            ssh: t.ssh,
            store: &self.store,
            forks: t.forks,
            timeout: Some(Duration::from_secs(60)),
            now: (self.clock)(),
        }
    }

    /// Applies managed files: a version recorded when the bytes or mode are new, each
    /// host compared first and written with a backup.
    pub async fn files_apply(
        &self,
        project: &Project,
        names: &[String],
        check: bool,
        target: &FilesTarget<'_>,
    ) -> Result<Vec<FileReport>> {
        let list = self.managed_files(project, names)?;
        // Every file is validated by its format before any host is touched.
        for f in &list {
            files::validate(f.format, &f.content).map_err(|message| {
                refused(
                    files::FileError::Invalid {
                        name: f.name.clone(),
                        message,
                    }
                    .to_string(),
                )
            })?;
        }
        let env = self.files_env(&project.name, target);
        let mut reports = Vec::new();
        for f in &list {
            reports.push(
                files::apply(f, check, &env)
                    .await
                    .map_err(|e| refused(e.to_string()))?,
            );
        }
        Ok(reports)
    }

    /// Compares each host's copy of the named managed files (all when none) with the
    /// version it last received.
    pub async fn files_drift(
        &self,
        project: &Project,
        names: &[String],
        target: &FilesTarget<'_>,
    ) -> Result<Vec<FileReport>> {
        let list = self.managed_files(project, names)?;
        let env = self.files_env(&project.name, target);
        let mut reports = Vec::new();
        for f in &list {
            reports.push(
                files::drift(f, &env)
                    .await
                    .map_err(|e| refused(e.to_string()))?,
            );
        }
        Ok(reports)
    }

    /// Puts an earlier version of a managed file back on its hosts.
    pub async fn files_rollback(
        &self,
        project: &Project,
        name: &str,
        to: i64,
        check: bool,
        target: &FilesTarget<'_>,
    ) -> Result<FileReport> {
        let f = self
            .managed_files(project, std::slice::from_ref(&name.to_string()))?
            .remove(0);
        let env = self.files_env(&project.name, target);
        files::rollback(&f, to, check, &env)
            .await
            .map_err(|e| refused(e.to_string()))
    }
}
