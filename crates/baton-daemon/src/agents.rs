//! VM agents a daemon follows (`baton serve --agent ADDR`): each agent's event stream
//! (its VMs' starts and stops, migrations in and out, failovers, fences, snapshots)
//! is read page by page from `GET /v1/events` and copied into this store's one stream,
//! so `baton events`, the API's SSE stream and the dashboard show the VMs of other
//! hosts beside this host's containers and VMs.
//!
//! Exactly once: a copied page and the agent's cursor are written in one transaction
//! (`Store::import_agent_events`), so a daemon killed mid-way neither loses nor repeats
//! an event. The first look at an agent starts at most [`BACKLOG`] events back; an
//! agent whose stream is shorter than the cursor started over (a new state directory)
//! and is read again from its start. An agent that stops answering is an event (kind
//! `agent`) once, and so is its return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_state::{Event, Store};
use baton_vm::agent::{Client, EVENTS_PAGE};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::Shared;
use crate::supervisor::log;

/// How far back the first look at an agent reads.
pub const BACKLOG: i64 = 1000;

/// The most pages one look copies from one agent: a long backlog is caught up over a
/// few looks, never in one unbounded burst.
const PAGES_PER_LOOK: usize = 8;

/// The project the events about agents themselves go to (as VMs no file declared).
pub const AGENTS_PROJECT: &str = "vms";

/// One followed agent as the daemon last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentStatus {
    /// The address, as given to `--agent`.
    pub agent: String,
    pub reachable: bool,
    /// The id, in the agent's stream, of the last event copied here.
    pub cursor: Option<i64>,
    /// When it last answered (Unix ms).
    pub last_seen_ms: Option<i64>,
    /// Why the last look failed.
    pub error: Option<String>,
}

/// The daemon's side of the agents it follows.
pub struct Followers {
    agents: Vec<String>,
    client: Client,
    store: Store,
    clock: fn() -> i64,
    shared: Arc<Shared>,
    seen: BTreeMap<String, AgentStatus>,
}

/// An agent's event as it joins this stream: the same project, kind, subject and time,
/// the message saying which host it happened on.
pub fn copied(agent: &str, e: &Event) -> Event {
    Event {
        id: 0,
        project: e.project.clone(),
        at: e.at,
        kind: e.kind.clone(),
        subject: e.subject.clone(),
        message: format!("on {agent}: {}", e.message),
    }
}

impl Followers {
    pub fn new(
        agents: Vec<String>,
        client: Client,
        store: Store,
        clock: fn() -> i64,
        shared: Arc<Shared>,
    ) -> Followers {
        Followers {
            agents,
            client,
            store,
            clock,
            shared,
            seen: BTreeMap::new(),
        }
    }

    /// Looks at every agent each `every` until `stop` says so.
    pub async fn run(mut self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.tick().await;
            if crate::unless_stopped(tokio::time::sleep(every), &mut stop)
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// One look at every agent, all at once (an agent cut off from the network holds
    /// only its own look, bounded by the client's timeout; each look copies at most
    /// [`PAGES_PER_LOOK`] pages).
    pub async fn tick(&mut self) {
        let looks = self.agents.iter().map(|agent| self.follow(agent));
        let results = futures_util::future::join_all(looks).await;
        for (agent, result) in self.agents.iter().zip(results) {
            let now = (self.clock)();
            let was_reachable = self.seen.get(agent).map(|s| s.reachable);
            match &result {
                Ok(_) if was_reachable == Some(false) => self.note(agent, "reachable again", now),
                Err(e) if was_reachable != Some(false) => {
                    self.note(agent, &format!("unreachable: {e}"), now)
                }
                _ => {}
            }
            let status = self
                .seen
                .entry(agent.clone())
                .or_insert_with(|| AgentStatus {
                    agent: agent.clone(),
                    ..AgentStatus::default()
                });
            status.reachable = result.is_ok();
            match result {
                Ok(cursor) => {
                    status.cursor = Some(cursor);
                    status.last_seen_ms = Some(now);
                    status.error = None;
                }
                Err(e) => status.error = Some(e),
            }
        }
        let agents: Vec<AgentStatus> = self.seen.values().cloned().collect();
        self.shared.update(|s| s.agents = agents);
    }

    /// An event about the agent itself.
    fn note(&self, agent: &str, message: &str, now: i64) {
        log(&format!("agent {agent}: {message}"));
        let _ = self
            .store
            .event(AGENTS_PROJECT, "agent", agent, message, now);
    }

    /// Copies what is new in the agent's stream; the cursor it reached.
    async fn follow(&self, agent: &str) -> Result<i64, String> {
        let stored = self.store.agent_cursor(agent).map_err(|e| e.to_string())?;
        let mut cursor = match stored {
            Some(c) => c,
            None => {
                let newest = self
                    .client
                    .events(agent, i64::MAX)
                    .await
                    .map_err(|e| e.to_string())?;
                (newest.last - BACKLOG).max(0)
            }
        };
        // The cursor as the store has it: written at the end when the look moved it
        // without copying (a first look, a stream that started over).
        let mut saved = stored;
        for _ in 0..PAGES_PER_LOOK {
            let page = self
                .client
                .events(agent, cursor)
                .await
                .map_err(|e| e.to_string())?;
            if page.last < cursor {
                // Its store is not the one the cursor was read from.
                self.note(
                    agent,
                    &format!(
                        "its event stream started over (newest {}, read up to {cursor}): read again from its start",
                        page.last
                    ),
                    (self.clock)(),
                );
                cursor = 0;
                continue;
            }
            let Some(last) = page.events.last().map(|e| e.id) else {
                break;
            };
            let events: Vec<Event> = page.events.iter().map(|e| copied(agent, e)).collect();
            self.store
                .import_agent_events(agent, &events, last, (self.clock)())
                .map_err(|e| e.to_string())?;
            cursor = last;
            saved = Some(last);
            if (page.events.len() as i64) < EVENTS_PAGE {
                break;
            }
        }
        if saved != Some(cursor) {
            self.store
                .import_agent_events(agent, &[], cursor, (self.clock)())
                .map_err(|e| e.to_string())?;
        }
        Ok(cursor)
    }
}
