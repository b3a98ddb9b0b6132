//! Running a command in a running container with this process's stdin, stdout and
//! stderr attached, and returning the command's exit code.

use baton_engine::runtime::RuntimeError;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::engine_error;
use crate::Docker;

pub use baton_engine::runtime::ExecOptions;

impl baton_engine::runtime::Exec for Docker {
    fn exec<'a>(
        &'a self,
        id: &'a str,
        options: &'a ExecOptions,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<i64, RuntimeError>> {
        Box::pin(Docker::exec(self, id, options))
    }
}

impl Docker {
    /// Runs the command, copying its output to this process's stdout and stderr.
    pub async fn exec(&self, id: &str, options: &ExecOptions) -> Result<i64, RuntimeError> {
        self.exec_to(id, options, tokio::io::stdout(), tokio::io::stderr())
            .await
    }

    /// Like `exec`, writing the output to the given sinks (stderr goes to `stdout` too
    /// when a TTY is used).
    pub async fn exec_to(
        &self,
        id: &str,
        options: &ExecOptions,
        mut stdout: impl AsyncWrite + Unpin,
        mut stderr: impl AsyncWrite + Unpin,
    ) -> Result<i64, RuntimeError> {
        let op = format!("exec in container {id}");
        let what = format!("container {id}");
        let fail = |detail: String| RuntimeError::Failed {
            op: op.clone(),
            detail,
        };
        if options.cmd.is_empty() {
            return Err(fail("no command given".to_string()));
        }
        let config = ExecConfig {
            cmd: Some(options.cmd.clone()),
            env: (!options.env.is_empty()).then(|| options.env.clone()),
            user: options.user.clone(),
            working_dir: options.workdir.clone(),
            tty: Some(options.tty),
            attach_stdin: Some(options.interactive),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .api
            .create_exec(id, config)
            .await
            .map_err(|e| engine_error(e, &op, &what))?;
        let started = self
            .api
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: options.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| engine_error(e, &op, &what))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(fail("the engine detached the command".to_string()));
        };
        if options.interactive {
            // A plain thread: a blocked read of the terminal must not hold a runtime
            // thread, and it must not keep the process alive once the command is done.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            std::thread::spawn(move || {
                use std::io::Read;
                let mut stdin = std::io::stdin();
                let mut buf = [0u8; 8192];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.blocking_send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    if input.write_all(&chunk).await.is_err() {
                        return;
                    }
                    let _ = input.flush().await;
                }
                // End of our stdin: close the command's.
                let _ = input.shutdown().await;
            });
        }
        while let Some(frame) = output.next().await {
            let frame = frame.map_err(|e| engine_error(e, &op, &what))?;
            let written = match frame {
                LogOutput::StdErr { message } => stderr.write_all(&message).await,
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => stdout.write_all(&message).await,
            };
            written.map_err(|e| fail(format!("cannot write the output: {e}")))?;
        }
        let _ = stdout.flush().await;
        let _ = stderr.flush().await;
        let inspected = self
            .api
            .inspect_exec(&created.id)
            .await
            .map_err(|e| engine_error(e, &op, &what))?;
        inspected
            .exit_code
            .ok_or_else(|| fail("the engine reported no exit code".to_string()))
    }
}
