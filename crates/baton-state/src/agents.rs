//! VM agents a daemon follows: how far into each agent's event stream it has read, so
//! the events of VMs on other hosts join this store's one stream exactly once.

use rusqlite::{params, OptionalExtension};

use crate::{Event, Result, Store};

/// Migration: the `agent_cursors` table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE agent_cursors (
    agent TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

impl Store {
    /// The id of the last event of `agent` copied here, if it was ever read.
    pub fn agent_cursor(&self, agent: &str) -> Result<Option<i64>> {
        self.with(|c| {
            c.query_row(
                "SELECT last_id FROM agent_cursors WHERE agent = ?1",
                params![agent],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Appends events read from `agent` (their `id` is ignored: they get this store's)
    /// and moves its cursor to `last_id`, in one transaction: a crash copies them
    /// all or none, and never twice.
    pub fn import_agent_events(
        &self,
        agent: &str,
        events: &[Event],
        last_id: i64,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for e in events {
                crate::insert_event(&tx, &e.project, e.at, &e.kind, &e.subject, &e.message)?;
            }
            tx.execute(
                "INSERT INTO agent_cursors (agent, last_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent) DO UPDATE SET last_id = ?2, updated_at = ?3",
                params![agent, last_id, now],
            )?;
            tx.commit()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Event, Store};

    fn ev(message: &str) -> Event {
        Event {
            id: 99,
            project: "p".into(),
            at: 5,
            kind: "vm".into(),
            subject: "web".into(),
            message: message.into(),
        }
    }

    #[test]
    fn imported_events_join_the_stream_and_move_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.agent_cursor("b:7420").unwrap(), None);
        s.event("p", "vm", "db", "started", 1).unwrap();
        s.import_agent_events("b:7420", &[ev("one"), ev("two")], 12, 10)
            .unwrap();
        assert_eq!(s.agent_cursor("b:7420").unwrap(), Some(12));
        let all = s.events("p", 10).unwrap();
        let msgs: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["started", "one", "two"]);
        assert!(all[1].id > all[0].id, "new ids from this store");
        assert_eq!(all[1].at, 5, "the agent's time is kept");
        s.import_agent_events("b:7420", &[], 3, 11).unwrap();
        assert_eq!(s.agent_cursor("b:7420").unwrap(), Some(3));
    }
}
