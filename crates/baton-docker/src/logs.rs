//! Container output: the logs of a container (optionally followed) and attaching to a
//! container's output for `baton run`, as a stream of lines tagged stdout or stderr.

use baton_engine::runtime::RuntimeError;
use bollard::container::LogOutput;
use bollard::query_parameters::{AttachContainerOptions, LogsOptions};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;

use crate::client::engine_error;
use crate::Docker;

pub use baton_engine::runtime::{LogLine, LogOptions, LogStream, OutputStream};

impl baton_engine::runtime::Logs for Docker {
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream {
        Docker::logs(self, id, options)
    }
}

impl baton_engine::runtime::Attach for Docker {
    fn attach_output<'a>(
        &'a self,
        id: &'a str,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<LogStream, RuntimeError>> {
        Box::pin(Docker::attach_output(self, id))
    }
    fn wait_container<'a>(
        &'a self,
        id: &'a str,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<i64, RuntimeError>> {
        Box::pin(Docker::wait_container(self, id))
    }
}

impl Docker {
    /// The container's logs as lines.
    pub fn logs(&self, id: &str, options: &LogOptions) -> LogStream {
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            timestamps: options.timestamps,
            tail: options
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let id = id.to_string();
        lines(
            self.api.logs(&id, Some(query)).boxed(),
            format!("logs of container {id}"),
            format!("container {id}"),
        )
    }

    /// Attaches to the container's live output until it stops. Attach before `start` to
    /// miss nothing, as `baton run` does (and `docker run`). The log so far is not
    /// replayed: dockerd may replay it after the container has started, and a quick
    /// container's lines then came twice, once replayed and once streamed.
    pub async fn attach_output(&self, id: &str) -> Result<LogStream, RuntimeError> {
        let options = AttachContainerOptions {
            stdout: true,
            stderr: true,
            stream: true,
            logs: false,
            ..Default::default()
        };
        let attached = self
            .api
            .attach_container(id, Some(options))
            .await
            .map_err(|e| {
                engine_error(
                    e,
                    &format!("attach to container {id}"),
                    &format!("container {id}"),
                )
            })?;
        Ok(lines(
            attached.output,
            format!("attach to container {id}"),
            format!("container {id}"),
        ))
    }
}

/// Splits the engine's frames into lines, keeping a partial line until it is finished.
fn lines(
    frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
    op: String,
    what: String,
) -> LogStream {
    struct State {
        frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
        partial: [String; 2],
        done: bool,
        op: String,
        what: String,
    }
    let state = State {
        frames,
        partial: [String::new(), String::new()],
        done: false,
        op,
        what,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.frames.next().await {
            Some(Ok(frame)) => {
                let (stream, bytes) = match frame {
                    LogOutput::StdErr { message } => (OutputStream::Stderr, message),
                    LogOutput::StdOut { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message } => (OutputStream::Stdout, message),
                };
                let slot = &mut st.partial[usize::from(stream == OutputStream::Stderr)];
                slot.push_str(&String::from_utf8_lossy(&bytes));
                let mut out = Vec::new();
                while let Some(i) = slot.find('\n') {
                    let line: String = slot.drain(..=i).collect();
                    let text = line.trim_end_matches(['\n', '\r']).to_string();
                    out.push(Ok(LogLine { stream, text }));
                }
                Some((stream::iter(out), st))
            }
            Some(Err(e)) => {
                st.done = true;
                let err = engine_error(e, &st.op, &st.what);
                Some((stream::iter(vec![Err(err)]), st))
            }
            None => {
                st.done = true;
                let mut out = Vec::new();
                for (i, stream) in [OutputStream::Stdout, OutputStream::Stderr]
                    .into_iter()
                    .enumerate()
                {
                    let rest = std::mem::take(&mut st.partial[i]);
                    if !rest.is_empty() {
                        out.push(Ok(LogLine { stream, text: rest }));
                    }
                }
                Some((stream::iter(out), st))
            }
        }
    })
    .flatten()
    .boxed()
}
