//! The event stream: one poller per daemon reads new rows of the store's `events` table
//! and fans them out to every client through a broadcast channel; each client filters
//! by project, resumes after `Last-Event-ID` from the store, and reads the store again
//! when it fell behind the channel (so a slow client costs memory for nothing).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use baton_state::{Event, Store};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

/// Events the channel holds for a slow client before it must read the store instead.
const CHANNEL: usize = 4096;
/// Rows read from the store at once.
const BATCH: i64 = 1000;
/// How far back a resuming client is served from the store at most; older events are
/// skipped (it is told by a comment).
const MAX_BACKLOG: usize = 10_000;

/// The daemon's one reader of the `events` table.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
    /// The newest id broadcast.
    last: Arc<AtomicI64>,
    store: Arc<Store>,
}

impl EventHub {
    /// Starts the poller on the current runtime: every `interval`, the rows after the
    /// newest seen. Only events written from now on are broadcast.
    pub fn start(store: Arc<Store>, interval: Duration) -> EventHub {
        let (tx, _) = broadcast::channel(CHANNEL);
        let start = store.last_event_id().unwrap_or(0);
        let hub = EventHub {
            tx,
            last: Arc::new(AtomicI64::new(start)),
            store,
        };
        let poller = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A full batch means more are waiting: read on at once.
                while poller.poll().await >= BATCH as usize {}
            }
        });
        hub
    }

    /// Reads and broadcasts what is new; returns how many rows it read.
    async fn poll(&self) -> usize {
        let after = self.last.load(Ordering::SeqCst);
        let store = self.store.clone();
        let rows = match tokio::task::spawn_blocking(move || store.events_after(after, None, BATCH))
            .await
        {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read events");
                return 0;
            }
            Err(_) => return 0,
        };
        let n = rows.len();
        for e in rows {
            self.last.store(e.id, Ordering::SeqCst);
            // No receiver is fine: nobody listens.
            let _ = self.tx.send(Arc::new(e));
        }
        n
    }

    /// The newest event id broadcast.
    pub fn last_id(&self) -> i64 {
        self.last.load(Ordering::SeqCst)
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The stream of one client: events of `project` (all when `None`) after `since`
    /// (from now on when `None`), without end.
    pub fn stream(
        &self,
        project: Option<String>,
        since: Option<i64>,
    ) -> impl Stream<Item = Item> + Send + 'static {
        // Subscribe first, then read the store: nothing falls between the two.
        let rx = self.tx.subscribe();
        let client = Client {
            rx,
            store: self.store.clone(),
            project,
            sent: since.unwrap_or_else(|| self.last_id()),
            backlog: Vec::new(),
            catching_up: since.is_some(),
            caught_up_to: self.last_id(),
            skipped: None,
        };
        stream::unfold(client, |mut c| async move {
            let item = c.next().await;
            Some((item, c))
        })
    }
}

/// What a client is sent next.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Arc<Event>),
    /// Events were skipped (a resume too far back); the id is where it goes on.
    Skipped(i64),
}

impl Item {
    pub fn to_sse(&self) -> SseEvent {
        match self {
            Item::Event(e) => SseEvent::default()
                .id(e.id.to_string())
                .data(serde_json::to_string(e.as_ref()).unwrap_or_default()),
            Item::Skipped(at) => SseEvent::default().comment(format!("events skipped up to {at}")),
        }
    }
}

struct Client {
    rx: broadcast::Receiver<Arc<Event>>,
    store: Arc<Store>,
    project: Option<String>,
    /// The newest id this client has been given (or asked to start after).
    sent: i64,
    /// Read from the store, not sent yet (oldest last, so `pop` gives the next).
    backlog: Vec<Event>,
    /// Reading the store until `caught_up_to`.
    catching_up: bool,
    caught_up_to: i64,
    skipped: Option<i64>,
}

impl Client {
    fn wants(&self, e: &Event) -> bool {
        e.id > self.sent && self.project.as_deref().is_none_or(|p| p == e.project)
    }

    async fn next(&mut self) -> Item {
        loop {
            if let Some(at) = self.skipped.take() {
                return Item::Skipped(at);
            }
            if let Some(e) = self.backlog.pop() {
                self.sent = e.id;
                return Item::Event(Arc::new(e));
            }
            if self.catching_up {
                self.read_store().await;
                continue;
            }
            match self.rx.recv().await {
                Ok(e) => {
                    if self.wants(&e) {
                        self.sent = e.id;
                        return Item::Event(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the channel: the store has every event.
                    self.catching_up = true;
                    self.caught_up_to = i64::MAX;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The hub went away (the daemon stops); end quietly by waiting.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// One batch from the store after `sent`; catching up ends with a short batch.
    /// A client too far behind goes on from the newest `MAX_BACKLOG` events.
    async fn read_store(&mut self) {
        let (store, project, sent) = (self.store.clone(), self.project.clone(), self.sent);
        let read = tokio::task::spawn_blocking(move || {
            let newest = store.last_event_id()?;
            let after = sent.max(newest - MAX_BACKLOG as i64);
            Ok::<_, baton_state::StateError>((
                after,
                store.events_after(after, project.as_deref(), BATCH)?,
            ))
        })
        .await;
        let (after, rows) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read events");
                (sent, Vec::new())
            }
            Err(_) => (sent, Vec::new()),
        };
        if after > sent {
            self.sent = after;
            self.skipped = Some(after);
        }
        let horizon = self.caught_up_to;
        if (rows.len() as i64) < BATCH {
            self.catching_up = false;
        }
        self.backlog = rows.into_iter().filter(|e| e.id <= horizon).rev().collect();
        if self.backlog.is_empty() {
            self.catching_up = false;
        }
    }
}

/// The SSE answer for one client, with a keep-alive comment every 15 s.
pub fn sse(
    hub: &EventHub,
    project: Option<String>,
    since: Option<i64>,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send + 'static> {
    use futures_util::StreamExt;
    let events = hub
        .stream(project, since)
        .map(|item| Ok::<_, std::convert::Infallible>(item.to_sse()));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn ids(items: &[Item]) -> Vec<i64> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e.id),
                Item::Skipped(_) => None,
            })
            .collect()
    }

    async fn take(s: impl Stream<Item = Item>, n: usize) -> Vec<Item> {
        tokio::time::timeout(Duration::from_secs(5), s.take(n).collect::<Vec<_>>())
            .await
            .expect("events in time")
    }

    #[tokio::test]
    async fn clients_get_new_events_resume_after_an_id_and_filter_by_project() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        for i in 0..3 {
            store.event("a", "up", "a", &format!("old {i}"), i).unwrap();
        }
        let hub = EventHub::start(store.clone(), Duration::from_millis(20));
        let live = hub.stream(None, None);
        let only_b = hub.stream(Some("b".into()), None);
        let resumed = hub.stream(None, Some(1));
        store
            .event("b", "supervise", "b-web-1", "exited: started", 10)
            .unwrap();
        store
            .event("a", "supervise", "a-web-1", "exited: started", 11)
            .unwrap();
        assert_eq!(ids(&take(live, 2).await), [4, 5]);
        assert_eq!(ids(&take(only_b, 1).await), [4]);
        // From the store after id 1, then on live without a gap or a repeat.
        assert_eq!(ids(&take(resumed, 4).await), [2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_the_channel_reads_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let hub = EventHub::start(store.clone(), Duration::from_millis(10));
        let slow = hub.stream(None, None);
        for i in 0..(CHANNEL as i64 + 500) {
            store.event("p", "k", "s", "m", i).unwrap();
        }
        // Let the poller broadcast everything past the channel's capacity.
        for _ in 0..200 {
            if hub.last_id() == CHANNEL as i64 + 500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = ids(&take(slow, CHANNEL + 500).await);
        assert_eq!(got.len(), CHANNEL + 500);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gap");
    }
}
