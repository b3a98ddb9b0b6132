//! Runbooks, typed from `x-baton.runbooks`: ordered steps, each with its own target, of
//! kind command, shell, script, copy, template, file, service or wait_for, plus the
//! defaults a run takes (strategy, batch, pause, forks, on_failure, max_fail_percentage).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_spec::{ErrorKind, Project, SpecError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::strategy::{Batch, OnFailure, Strategy};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runbook {
    pub name: String,
    /// Hosts the runbook runs on (default `all`); each step may narrow it.
    pub target: String,
    pub strategy: Option<Strategy>,
    pub batch: Option<Batch>,
    pub pause: Option<Duration>,
    pub forks: Option<usize>,
    pub on_failure: Option<OnFailure>,
    pub max_fail_percentage: Option<u8>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub name: String,
    /// A selector; the step runs on the hosts of the run that it also matches.
    pub target: Option<String>,
    pub timeout: Option<Duration>,
    /// For command/shell/script: skip when this path exists on the host.
    pub creates: Option<String>,
    pub action: Action,
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Source {
    Inline(String),
    /// A local file, relative to the project directory.
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileDest {
    pub dest: String,
    /// Permission bits (`0644`); default keeps an existing file's, else 0644.
    pub mode: Option<u32>,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
    Enabled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    /// An argument vector, each argument quoted on the way.
    Command(Vec<String>),
    /// A shell command line, run with `sh -c`.
    Shell(String),
    /// A script uploaded to a temporary file, run with its arguments, then removed.
    Script {
        source: Source,
        args: Vec<String>,
    },
    /// A local file copied as it is.
    Copy {
        src: PathBuf,
        to: FileDest,
    },
    /// A minijinja template rendered with the host's vars.
    Template {
        source: Source,
        to: FileDest,
    },
    /// A managed file with the given (templated) content.
    File {
        content: String,
        to: FileDest,
    },
    Service {
        name: String,
        state: ServiceState,
    },
    /// Waits for a TCP port (checked from baton) or an URL (checked on the host).
    WaitFor {
        port: Option<u16>,
        host: Option<String>,
        url: Option<String>,
        timeout: Duration,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command(_) => "command",
            Action::Shell(_) => "shell",
            Action::Script { .. } => "script",
            Action::Copy { .. } => "copy",
            Action::Template { .. } => "template",
            Action::File { .. } => "file",
            Action::Service { .. } => "service",
            Action::WaitFor { .. } => "wait_for",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunbookRaw {
    #[serde(default)]
    target: Option<String>,
    strategy: Option<Strategy>,
    batch: Option<Value>,
    pause: Option<String>,
    forks: Option<usize>,
    on_failure: Option<OnFailure>,
    max_fail_percentage: Option<u8>,
    #[serde(default)]
    steps: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRaw {
    name: Option<String>,
    target: Option<String>,
    timeout: Option<String>,
    creates: Option<String>,
    command: Option<Value>,
    shell: Option<String>,
    script: Option<ScriptRaw>,
    copy: Option<FileRaw>,
    template: Option<FileRaw>,
    file: Option<FileRaw>,
    service: Option<ServiceRaw>,
    wait_for: Option<WaitRaw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptRaw {
    src: Option<String>,
    content: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    src: Option<String>,
    content: Option<String>,
    #[serde(alias = "path")]
    dest: String,
    mode: Option<Value>,
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRaw {
    name: String,
    state: ServiceState,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitRaw {
    port: Option<u16>,
    host: Option<String>,
    url: Option<String>,
    timeout: Option<String>,
}

/// Reads a file mode: `"0644"`/`"644"` as octal; a YAML integer's digits are read as octal
/// too (`644`), since YAML 1.2 reads `0644` as decimal.
pub fn parse_mode(v: &Value) -> Option<u32> {
    let s = match v {
        Value::String(s) => s.trim().trim_start_matches("0o").to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    u32::from_str_radix(&s, 8).ok().filter(|m| *m <= 0o7777)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration (30s, 2m): {e}"))
}

/// Every runbook of the project, by name.
pub fn from_project(project: &Project) -> Result<BTreeMap<String, Runbook>, SpecError> {
    let mut out = BTreeMap::new();
    let Some(section) = project.baton.get("runbooks") else {
        return Ok(out);
    };
    let err = |path: &str, msg: String| project.error_at(ErrorKind::Invalid, path, msg);
    let Value::Object(books) = section else {
        return Err(err(
            "runbooks",
            "must be a mapping of runbook name to runbook".into(),
        ));
    };
    for (name, v) in books {
        let p = format!("runbooks.{name}");
        let raw: RunbookRaw =
            serde_json::from_value(v.clone()).map_err(|e| err(&p, e.to_string()))?;
        let batch = match &raw.batch {
            None => None,
            Some(b) => {
                let s = match b {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some(
                    s.parse::<Batch>()
                        .map_err(|e| err(&format!("{p}.batch"), e))?,
                )
            }
        };
        let pause = raw
            .pause
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| err(&format!("{p}.pause"), e))?;
        if raw.steps.is_empty() {
            return Err(err(
                &format!("{p}.steps"),
                "a runbook needs at least one step".into(),
            ));
        }
        if raw.forks == Some(0) {
            return Err(err(&format!("{p}.forks"), "must be at least 1".into()));
        }
        if raw.max_fail_percentage.is_some_and(|m| m > 100) {
            return Err(err(
                &format!("{p}.max_fail_percentage"),
                "must be 0 to 100".into(),
            ));
        }
        let mut steps = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            let sp = format!("{p}.steps[{i}]");
            steps.push(step(s, i, &sp).map_err(|m| err(&sp, m))?);
        }
        out.insert(
            name.clone(),
            Runbook {
                name: name.clone(),
                target: raw.target.unwrap_or_else(|| "all".into()),
                strategy: raw.strategy,
                batch,
                pause,
                forks: raw.forks,
                on_failure: raw.on_failure,
                max_fail_percentage: raw.max_fail_percentage,
                steps,
            },
        );
    }
    Ok(out)
}

fn source(src: Option<String>, content: Option<String>) -> Result<Source, String> {
    match (src, content) {
        (Some(s), None) => Ok(Source::Path(PathBuf::from(s))),
        (None, Some(c)) => Ok(Source::Inline(c)),
        _ => Err("give exactly one of `src` or `content`".into()),
    }
}

fn dest(f: &FileRaw) -> Result<FileDest, String> {
    let mode = match &f.mode {
        None => None,
        Some(m) => Some(
            parse_mode(m).ok_or_else(|| format!("mode {m} is not an octal mode like \"0644\""))?,
        ),
    };
    if f.dest.is_empty() {
        return Err("`dest` must not be empty".into());
    }
    Ok(FileDest {
        dest: f.dest.clone(),
        mode,
        owner: f.owner.clone(),
    })
}

fn step(v: &Value, i: usize, _path: &str) -> Result<Step, String> {
    let raw: StepRaw = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mut actions = Vec::new();
    if let Some(c) = raw.command {
        actions.push(match c {
            Value::String(s) => {
                Action::Command(shell_words::split(&s).map_err(|e| format!("command: {e}"))?)
            }
            Value::Array(a) => Action::Command(
                a.iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err("command arguments must be strings".to_string()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err("`command` must be a list of arguments or a string".into()),
        });
    }
    if let Some(s) = raw.shell {
        actions.push(Action::Shell(s));
    }
    if let Some(s) = raw.script {
        actions.push(Action::Script {
            source: source(s.src, s.content)?,
            args: s.args,
        });
    }
    if let Some(f) = raw.copy {
        let to = dest(&f)?;
        let src = f.src.ok_or("copy needs `src` (a local file)")?;
        actions.push(Action::Copy {
            src: PathBuf::from(src),
            to,
        });
    }
    if let Some(f) = raw.template {
        let to = dest(&f)?;
        actions.push(Action::Template {
            source: source(f.src, f.content)?,
            to,
        });
    }
    if let Some(f) = raw.file {
        let to = dest(&f)?;
        let content = f.content.ok_or("file needs `content`")?;
        actions.push(Action::File { content, to });
    }
    if let Some(s) = raw.service {
        actions.push(Action::Service {
            name: s.name,
            state: s.state,
        });
    }
    if let Some(w) = raw.wait_for {
        if w.port.is_none() == w.url.is_none() {
            return Err("wait_for needs exactly one of `port` or `url`".into());
        }
        let timeout = w
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or(Duration::from_secs(60));
        actions.push(Action::WaitFor {
            port: w.port,
            host: w.host,
            url: w.url,
            timeout,
        });
    }
    if actions.len() != 1 {
        return Err("a step needs exactly one of command, shell, script, copy, template, file, service, wait_for".into());
    }
    if let Some(Action::Command(a)) = actions.first() {
        if a.is_empty() {
            return Err("`command` must not be empty".into());
        }
    }
    let action = actions.remove(0);
    let timeout = raw.timeout.as_deref().map(parse_duration).transpose()?;
    Ok(Step {
        name: raw
            .name
            .unwrap_or_else(|| format!("{} #{}", action.kind(), i + 1)),
        target: raw.target,
        timeout,
        creates: raw.creates,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_are_typed() {
        let s = step(
            &json!({"command": ["echo", "a b"], "target": "role:web"}),
            0,
            "x",
        )
        .unwrap();
        assert_eq!(s.action, Action::Command(vec!["echo".into(), "a b".into()]));
        assert_eq!(s.name, "command #1");
        let s = step(
            &json!({"file": {"path": "/etc/x", "content": "hi", "mode": "0640"}}),
            1,
            "x",
        )
        .unwrap();
        assert!(matches!(
            s.action,
            Action::File {
                to: FileDest {
                    mode: Some(0o640),
                    ..
                },
                ..
            }
        ));
        let s = step(&json!({"wait_for": {"port": 80, "timeout": "5s"}}), 1, "x").unwrap();
        assert!(
            matches!(s.action, Action::WaitFor { timeout, .. } if timeout == Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_steps_say_why() {
        assert!(step(&json!({"command": ["a"], "shell": "b"}), 0, "x")
            .unwrap_err()
            .contains("exactly one"));
        assert!(step(&json!({"comand": ["a"]}), 0, "x")
            .unwrap_err()
            .contains("unknown field"));
        assert!(step(
            &json!({"file": {"path": "/x", "content": "", "mode": "rw"}}),
            0,
            "x"
        )
        .is_err());
        assert!(step(&json!({"wait_for": {}}), 0, "x").is_err());
        assert!(step(&json!({"command": []}), 0, "x").is_err());
        assert!(step(
            &json!({"service": {"name": "x", "state": "dancing"}}),
            0,
            "x"
        )
        .is_err());
    }

    #[test]
    fn modes_read_as_octal() {
        assert_eq!(parse_mode(&json!("0644")), Some(0o644));
        assert_eq!(parse_mode(&json!(600)), Some(0o600));
        assert_eq!(parse_mode(&json!("9")), None);
    }
}
