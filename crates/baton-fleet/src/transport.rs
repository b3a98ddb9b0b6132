//! Where commands run: a host over SSH, or the local machine (for managed files that
//! target it). Both take the same quoted command line, so steps have one code path.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::ssh::{Output, Session, SshError};

pub enum Conn {
    Local,
    Ssh(Session),
}

impl Conn {
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Output, SshError> {
        match self {
            Conn::Ssh(s) => s.exec(command, stdin, timeout).await,
            Conn::Local => {
                let fut = local(command, stdin);
                match timeout {
                    None => fut.await,
                    Some(t) => {
                        tokio::time::timeout(t, fut)
                            .await
                            .unwrap_or(Err(SshError::Timeout {
                                host: "local".into(),
                                secs: t.as_secs(),
                            }))
                    }
                }
            }
        }
    }

    pub async fn close(self) {
        if let Conn::Ssh(s) = self {
            s.close().await
        }
    }
}

async fn local(command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
    let lost = |e: std::io::Error| SshError::Lost {
        host: "local".into(),
        reason: e.to_string(),
    };
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(lost)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await.map_err(lost)?;
        drop(pipe);
    }
    let out = child.wait_with_output().await.map_err(lost)?;
    Ok(Output {
        status: out.status.code().unwrap_or(128),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// One shell command line from an argument vector, each argument quoted.
pub fn quote_args<S: AsRef<str>>(args: &[S]) -> String {
    shell_words::join(args.iter().map(|a| a.as_ref()))
}
