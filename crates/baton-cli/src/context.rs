//! What every command needs: the global options turned into a loaded project, an open
//! state store and a connected backend.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use baton_backend::{AnyRuntime, Backend, Target};
use baton_control::Control;
use baton_spec::{LoadOptions, Project};
use baton_state::Store;

use crate::cli::Global;

pub struct Context {
    pub global: Global,
    pub cwd: PathBuf,
}

/// Unix milliseconds, the clock every store write is stamped with.
pub fn now_ms() -> i64 {
    baton_control::system_clock()
}

impl Context {
    pub fn new(global: Global) -> Result<Context> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        Ok(Context { global, cwd })
    }

    fn load_options(&self, enable: &[String]) -> LoadOptions {
        LoadOptions {
            files: self.global.files.iter().map(|f| self.cwd.join(f)).collect(),
            working_dir: self.cwd.clone(),
            project_name: self.global.project_name.clone(),
            profiles: self.global.profiles.clone(),
            env_files: self.global.env_files.clone(),
            environment: std::env::vars().collect(),
            enable_services: enable.to_vec(),
        }
    }

    /// Reads and validates the project, the engine's settings included (so `config`,
    /// `plan` and `up` refuse and warn alike); `enable` are services named on the
    /// command line.
    pub fn project(&self, enable: &[String]) -> Result<Project> {
        let (project, mut warnings) = baton_spec::load_with_warnings(&self.load_options(enable))
            .map_err(|e| anyhow!("{e}"))?;
        warnings.extend(baton_engine::check::project(&project).map_err(|e| anyhow!("{e}"))?);
        baton_backend::target::read(&project).map_err(|e| anyhow!("{e}"))?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        Ok(project)
    }

    /// The project name, from `-p` when no file can be read (so `down` works without one).
    pub fn project_or_name(&self) -> Result<(Option<Project>, String)> {
        self.project_or_name_with(&[])
    }

    /// `project_or_name`, with the services named on the command line enabled even when
    /// their profile is not.
    pub fn project_or_name_with(&self, enable: &[String]) -> Result<(Option<Project>, String)> {
        match self.project(enable) {
            Ok(p) => {
                let name = p.name.clone();
                Ok((Some(p), name))
            }
            Err(e) => match &self.global.project_name {
                Some(name) if self.global.files.is_empty() => Ok((None, name.clone())),
                _ => Err(e),
            },
        }
    }

    /// Where the store, locks and files live: `--state-dir` (else the user's data
    /// directory), and for a target other than `local` its own `targets/NAME` below it,
    /// so that each target keeps its own revisions, desired state and daemon. A name
    /// that is not a valid target name never becomes a path (`target()` refuses it).
    pub fn state_dir(&self) -> PathBuf {
        let base = self.global.state_dir.clone().unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
                .join("baton")
        });
        match self.global.target.as_deref() {
            Some(name)
                if name != baton_backend::target::DEFAULT
                    && baton_backend::target::valid_name(name) =>
            {
                base.join("targets").join(name)
            }
            _ => base,
        }
    }

    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.state_dir())?)
    }

    /// The target the command acts on: `--target`/`BATON_TARGET` among the file's
    /// `targets:`, else `local`. Naming one needs the file; without a name, a command
    /// that has none (`down -p NAME`) still gets the default. An unknown name is a usage
    /// error.
    pub fn target(&self) -> Result<Target> {
        let named = self.global.target.as_deref();
        let Some(name) = named.filter(|n| !n.is_empty() && *n != baton_backend::target::DEFAULT)
        else {
            // The file may redefine `local`; a command without a file gets the default.
            let targets = match baton_spec::load(&self.load_options(&[])) {
                Ok(p) => baton_backend::target::read(&p).map_err(|e| anyhow!("{e}"))?,
                Err(_) => Default::default(),
            };
            return Ok(baton_backend::target::select(&targets, None)?);
        };
        let project = baton_spec::load(&self.load_options(&[]))
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("--target {name} needs the file that defines it"))?;
        let targets = baton_backend::target::read(&project).map_err(|e| anyhow!("{e}"))?;
        baton_backend::target::select(&targets, Some(name))
            .map_err(|e| anyhow::Error::new(crate::UsageError(e.to_string())))
    }

    /// The connected backend of the chosen target (the one place a backend is made).
    pub async fn backend(&self) -> Result<Backend> {
        let target = self.target()?;
        Ok(baton_backend::connect(&target, &self.digest_key()?).await?)
    }

    /// The key secret content is digested with (`DigestKey`): 32 random bytes in
    /// `<state dir>/digest.key` (0600), made the first time one is needed. Two commands
    /// that make it at once agree: the first link wins and the other reads it.
    pub fn digest_key(&self) -> Result<baton_engine::hash::DigestKey> {
        use std::io::Write;
        let dir = self.state_dir();
        baton_state::private::create_dir(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("digest.key");
        let read = |p: &std::path::Path| -> Result<Option<[u8; 32]>> {
            match std::fs::read(p) {
                Ok(b) => Ok(Some(b.try_into().map_err(|_| {
                    anyhow!(
                        "{} is not 32 bytes: remove it to make a new one",
                        p.display()
                    )
                })?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(anyhow!("cannot read {}: {e}", p.display())),
            }
        };
        if let Some(k) = read(&path)? {
            return Ok(baton_engine::hash::DigestKey::new(k));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random bytes: {e}"))?;
        let tmp = dir.join(format!(".digest.key.{}", std::process::id()));
        baton_state::private::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(baton_engine::hash::DigestKey::new(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path)?
                .map(baton_engine::hash::DigestKey::new)
                .ok_or_else(|| anyhow!("{} vanished", path.display())),
            Err(e) => Err(anyhow!("cannot write {}: {e}", path.display())),
        }
    }

    /// The control plane over this state directory and the chosen target's backend.
    pub async fn control(&self) -> Result<Control<AnyRuntime>> {
        // The target first: a wrong one makes no state directory.
        let runtime = self.backend().await?.runtime;
        Ok(Control {
            store: std::sync::Arc::new(self.store()?),
            runtime,
            state_dir: self.state_dir(),
            env: std::env::vars().collect(),
            clock: now_ms,
        })
    }

    /// The control plane without a container backend: what works on the store alone
    /// (pipelines without `image:` jobs, cancels, reruns).
    pub fn control_of_store(&self) -> Result<Control<()>> {
        Ok(Control {
            store: std::sync::Arc::new(self.store()?),
            runtime: (),
            state_dir: self.state_dir(),
            env: std::env::vars().collect(),
            clock: now_ms,
        })
    }
}
