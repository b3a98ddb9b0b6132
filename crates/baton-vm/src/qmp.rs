//! A small typed QMP client: JSON lines over a Unix socket, the greeting and capability
//! negotiation, commands with ids, events kept aside until asked for.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot reach QMP at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP sent something that is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("QMP closed the connection")]
    Closed,
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// Events received while waiting for command replies, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capability negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            events: Vec::new(),
        };
        let greeting = q.read().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Command {
                command: "greeting".into(),
                class: "Protocol".into(),
                desc: format!("unexpected greeting {greeting}"),
            });
        }
        q.execute("qmp_capabilities", Value::Null).await?;
        Ok(q)
    }

    /// Connects with a bound on the whole handshake.
    pub async fn connect_timeout(path: &Path, t: Duration) -> Result<Qmp, QmpError> {
        tokio::time::timeout(t, Qmp::connect(path))
            .await
            .map_err(|_| QmpError::Timeout(t))?
    }

    async fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(QmpError::Closed);
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, args: Value) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if !args.is_null() {
            msg["arguments"] = args;
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await?;
        loop {
            let v = self.read().await?;
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: e["class"].as_str().unwrap_or("Error").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").to_string(),
                });
            }
            return Ok(v.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    /// Runs a human-monitor command (savevm, loadvm, delvm); its text output is an
    /// error when not empty.
    pub async fn hmp(&mut self, line: &str) -> Result<String, QmpError> {
        let out = self
            .execute("human-monitor-command", json!({"command-line": line}))
            .await?;
        let text = out.as_str().unwrap_or("").trim().to_string();
        if text.is_empty() {
            Ok(text)
        } else {
            Err(QmpError::Command {
                command: line.split_whitespace().next().unwrap_or("hmp").to_string(),
                class: "GenericError".into(),
                desc: text,
            })
        }
    }

    /// The run state (`running`, `paused`, `postmigrate`, `inmigrate`, …).
    pub async fn status(&mut self) -> Result<String, QmpError> {
        let v = self.execute("query-status", Value::Null).await?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_string())
    }
}
