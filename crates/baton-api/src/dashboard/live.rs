//! The dashboard's streams: the event stream as page updates (each event rendered as a
//! list item, and a replica's new state for its row at once), a service's live logs, and
//! a pipeline job's log followed as its file grows. A stream ends when its session does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use minijinja::context;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::pages::PageError;
use super::{render, Dash, Session};
use crate::events::Item;
use crate::input::name;
use crate::routes::read;
use crate::ApiError;

type D = State<Arc<Dash>>;

/// How often a stream looks whether its session still holds.
const SESSION_CHECK: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LiveQuery {
    project: Option<String>,
}

/// What a replica's state or health became, from the daemon's `container` event text
/// (`running -> exited (exit code 137)`, `appeared: running`, `health: starting ->
/// healthy`, `removed`): `(field, word)`.
pub(crate) fn change_of(message: &str) -> Option<(&'static str, String)> {
    let first_word = |s: &str| s.split_whitespace().next().map(str::to_string);
    if let Some(rest) = message.strip_prefix("health: ") {
        return rest
            .split(" -> ")
            .nth(1)
            .and_then(first_word)
            .map(|w| ("health", w));
    }
    if let Some(rest) = message.strip_prefix("appeared: ") {
        return first_word(rest).map(|w| ("state", w));
    }
    if message == "removed" {
        return Some(("state", "removed".into()));
    }
    message
        .split(" -> ")
        .nth(1)
        .and_then(first_word)
        .map(|w| ("state", w))
}

/// An SSE event name made of a container's name, if it is one.
fn event_name(prefix: &str, subject: &str) -> Option<String> {
    let ok = !subject.is_empty()
        && subject.len() <= 200
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    ok.then(|| format!("{prefix}-{subject}"))
}

/// The SSE messages one store event makes: `change` (the event as a list item, for
/// every page's live list and refresh) and, for a replica, `state-NAME`/`health-NAME`
/// with its new badge, so the row shows it before the page's next read.
fn messages(item: &Item, now: i64) -> Vec<SseEvent> {
    let e = match item {
        Item::Event(e) => e,
        Item::Skipped(at) => {
            return vec![SseEvent::default().comment(format!("events skipped up to {at}"))]
        }
    };
    let mut out = Vec::with_capacity(2);
    let li = render::render(
        "event.html",
        None,
        &context! { e => e.as_ref(), now => now },
    )
    .unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot render an event for the dashboard");
        String::new()
    });
    out.push(
        SseEvent::default()
            .event("change")
            .id(e.id.to_string())
            .data(li),
    );
    if e.kind == "container" {
        if let Some((field, word)) = change_of(&e.message) {
            if let Some(name) = event_name(field, &e.subject) {
                let badge = render::render("badge.html", None, &context! { word => word })
                    .unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "cannot render a badge for the dashboard");
                        String::new()
                    });
                out.push(SseEvent::default().event(name).data(badge));
            }
        }
    }
    out
}

type Items = Pin<Box<dyn Stream<Item = Item> + Send>>;

struct Live {
    items: Items,
    queue: VecDeque<SseEvent>,
    tick: tokio::time::Interval,
    dash: Arc<Dash>,
    id: String,
    clock: fn() -> i64,
}

/// `GET /ui/live?project=P`: the event stream as page updates (`Last-Event-ID` resumes).
pub(crate) async fn events(
    State(d): D,
    headers: HeaderMap,
    q: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let project = q
        .ok()
        .and_then(|Query(q)| q.project)
        .map(|p| name("project", &p))
        .transpose()?;
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let id = super::session_id(&headers).unwrap_or_default();
    let mut tick = tokio::time::interval(SESSION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = Live {
        items: Box::pin(d.api.events.stream(project, since)),
        queue: VecDeque::new(),
        tick,
        clock: d.api.clock,
        dash: d,
        id,
    };
    let s = stream::unfold(live, |mut l| async move {
        loop {
            if let Some(m) = l.queue.pop_front() {
                return Some((Ok::<_, Infallible>(m), l));
            }
            tokio::select! {
                item = l.items.next() => match item {
                    Some(i) => l.queue.extend(messages(&i, (l.clock)())),
                    None => return None,
                },
                _ = l.tick.tick() => {
                    let d = &l.dash;
                    // The session ended: so does the stream.
                    d.sessions.check(&d.api.tokens, &l.id, Instant::now()).await.as_ref()?;
                }
            }
        }
    });
    Ok(Sse::new(s)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

type P2 = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;
type P3 = Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>;

/// `GET …/services/{service}/logs`: the replicas' output as it comes (the API's log
/// stream: one JSON line per event).
pub(crate) async fn service_logs(State(d): D, p: P2) -> Result<Response, PageError> {
    let Path((project, service)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let q = crate::logs::LogsQuery {
        follow: true,
        tail: Some(200),
        timestamps: false,
    };
    Ok(crate::logs::stream(
        &d.api,
        name("project", &project)?,
        name("service", &service)?,
        q,
    )
    .await?)
}

/// How much of a long job log is sent first: its end.
const LOG_TAIL: u64 = 256 * 1024;
/// A line longer than this is cut (a job printing one huge line).
const LINE_MAX: usize = 8 * 1024;
const LOG_POLL: Duration = Duration::from_millis(300);

struct Follow {
    dash: Arc<Dash>,
    path: PathBuf,
    run: i64,
    job: String,
    file: Option<tokio::fs::File>,
    partial: Vec<u8>,
    queue: VecDeque<SseEvent>,
    ended: bool,
}

fn line_event(text: &str) -> SseEvent {
    let text: String = text.chars().take(LINE_MAX).collect();
    SseEvent::default()
        .json_data(serde_json::json!({ "line": text }))
        .unwrap_or_default()
}

impl Follow {
    /// Reads what the file has now; `Ok(false)` at its end.
    async fn read_more(&mut self) -> bool {
        if self.file.is_none() {
            let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
                return false;
            };
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            if len > LOG_TAIL
                && f.seek(std::io::SeekFrom::Start(len - LOG_TAIL))
                    .await
                    .is_ok()
            {
                self.queue
                    .push_back(line_event("… (earlier output not shown)"));
                // The first line read is a part of one: dropped below.
                self.partial = b"\0".to_vec();
            }
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        self.partial.extend_from_slice(&buf[..n]);
        while let Some(at) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=at).collect();
            if line.first() == Some(&0) {
                continue;
            }
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            self.queue
                .push_back(line_event(text.trim_end_matches('\r')));
        }
        if self.partial.len() > LINE_MAX {
            let line = std::mem::take(&mut self.partial);
            self.queue
                .push_back(line_event(&String::from_utf8_lossy(&line)));
        }
        true
    }

    /// Whether the job is over (its log will not grow).
    async fn finished(&self) -> bool {
        let (run, job) = (self.run, self.job.clone());
        read(&self.dash.api, move |store| {
            Ok(store
                .pipeline_jobs(run)?
                .into_iter()
                .find(|j| j.name == job)
                .is_none_or(|j| !matches!(j.status.as_str(), "running" | "pending")))
        })
        .await
        .unwrap_or(true)
    }
}

/// `GET …/runs/{run}/jobs/{job}/log`: the job's log from its (last 256 KiB) start, then
/// each line as it is written, and `end` once the job is over.
pub(crate) async fn job_log(
    State(d): D,
    Extension(_s): Extension<Session>,
    p: P3,
) -> Result<Response, PageError> {
    let Path((project, run, job)) =
        p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    let project = name("project", &project)?;
    let job = name("job", &job)?;
    let run: i64 = run
        .parse()
        .map_err(|_| ApiError::bad_request(format!("run {run:?} is not a run id")))?;
    let (p2, j2) = (project.clone(), job.clone());
    let log_file = read(&d.api, move |store| {
        store
            .pipeline_run(run)?
            .filter(|r| r.project == p2)
            .ok_or_else(|| ApiError::not_found(format!("project {p2} has no run {run}")))?;
        let j = store
            .pipeline_jobs(run)?
            .into_iter()
            .find(|j| j.name == j2)
            .ok_or_else(|| ApiError::not_found(format!("run {run} has no job {j2}")))?;
        Ok(j.log_file)
    })
    .await?;
    // The store names a file in the run's log directory, never a path.
    if log_file.is_empty() || log_file.contains(['/', '\\', '\0']) || log_file.starts_with('.') {
        return Err(PageError(ApiError::internal(
            "the job's log file name is not a file name",
        )));
    }
    let path = baton_pipeline::run::run_dir(&d.api.state_dir, run)
        .join("logs")
        .join(log_file);
    let follow = Follow {
        dash: d,
        path,
        run,
        job,
        file: None,
        partial: Vec::new(),
        queue: VecDeque::new(),
        ended: false,
    };
    let s = stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(m) = f.queue.pop_front() {
                return Some((Ok::<_, Infallible>(m), f));
            }
            if f.ended {
                return None;
            }
            if f.read_more().await {
                continue;
            }
            // At the end of what is written: done once the job is (read once more, for
            // what it wrote last), else wait for more.
            if f.finished().await {
                while f.read_more().await {}
                if !f.partial.is_empty() {
                    let rest = std::mem::take(&mut f.partial);
                    f.queue
                        .push_back(line_event(&String::from_utf8_lossy(&rest)));
                }
                f.queue
                    .push_back(SseEvent::default().event("end").data("end"));
                f.ended = true;
                continue;
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    });
    Ok(Sse::new(s)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_changes_are_read_from_the_daemon_words() {
        assert_eq!(
            change_of("running -> exited (exit code 137)"),
            Some(("state", "exited".into()))
        );
        assert_eq!(
            change_of("appeared: running"),
            Some(("state", "running".into()))
        );
        assert_eq!(
            change_of("health: starting -> healthy"),
            Some(("health", "healthy".into()))
        );
        assert_eq!(change_of("removed"), Some(("state", "removed".into())));
        assert_eq!(change_of("something else"), None);
        assert_eq!(
            event_name("state", "p-web-1").as_deref(),
            Some("state-p-web-1")
        );
        assert_eq!(event_name("state", "bad name\n"), None);
        assert_eq!(event_name("state", ""), None);
    }
}
