//! The audit log: who changed what, when, and how it went; every entry is also an
//! event (kind `audit`), so the one event stream carries it.

use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

/// Migration: the `audit` table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    project TEXT NOT NULL,
    target TEXT NOT NULL,
    request_json TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_project ON audit (project, id);
";

/// One change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Set by the store (0 when recording).
    pub id: i64,
    pub at: i64,
    /// A token's name, `cli:<user>`, or `local:<user>` for the daemon's socket.
    pub actor: String,
    /// `up`, `down`, `scale`, `rollout.promote`, `token.create`, …
    pub action: String,
    /// Empty when the change concerns no project (tokens).
    pub project: String,
    /// What it was done to: `shop`, `shop/web`, a token's name.
    pub target: String,
    /// What was asked, as JSON (never a secret).
    pub request_json: String,
    /// `ok` or `error`.
    pub outcome: String,
    /// A one-line result, or the error.
    pub message: String,
}

fn audit_row(r: &Row) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        project: r.get(4)?,
        target: r.get(5)?,
        request_json: r.get(6)?,
        outcome: r.get(7)?,
        message: r.get(8)?,
    })
}

const COLS: &str = "id, at, actor, action, project, target, request_json, outcome, message";

impl Store {
    /// Appends an entry and its event in one transaction; returns the entry's id.
    pub fn record_audit(&self, e: &AuditRecord) -> Result<i64> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO audit (at, actor, action, project, target, request_json, outcome, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    e.at,
                    e.actor,
                    e.action,
                    e.project,
                    e.target,
                    e.request_json,
                    e.outcome,
                    e.message
                ],
            )?;
            let id = tx.last_insert_rowid();
            let message = if e.message.is_empty() {
                format!("{} {}: {}", e.action, e.target, e.outcome)
            } else {
                format!("{} {}: {}: {}", e.action, e.target, e.outcome, e.message)
            };
            crate::insert_event(&tx, &e.project, e.at, "audit", &e.actor, &message)?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Up to `limit` entries older than `before` (all when `None`), newest first; only
    /// those of `project` when given.
    pub fn audit_page(
        &self,
        project: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLS} FROM audit
                 WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![project, before, limit], audit_row)?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, project: &str, at: i64) -> AuditRecord {
        AuditRecord {
            id: 0,
            at,
            actor: actor.into(),
            action: "scale".into(),
            project: project.into(),
            target: format!("{project}/web"),
            request_json: "{\"replicas\":{\"web\":3}}".into(),
            outcome: "ok".into(),
            message: "2 step(s) done".into(),
        }
    }

    #[test]
    fn entries_page_newest_first_and_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let ids: Vec<i64> = (0..5)
            .map(|i| {
                let p = if i % 2 == 0 { "shop" } else { "blog" };
                s.record_audit(&entry("cli:ann", p, i)).unwrap()
            })
            .collect();
        let first = s.audit_page(None, None, 2).unwrap();
        assert_eq!(
            first.iter().map(|e| e.id).collect::<Vec<_>>(),
            [ids[4], ids[3]]
        );
        let next = s.audit_page(None, Some(first[1].id), 2).unwrap();
        assert_eq!(
            next.iter().map(|e| e.id).collect::<Vec<_>>(),
            [ids[2], ids[1]]
        );
        let shop = s.audit_page(Some("shop"), None, 10).unwrap();
        assert_eq!(shop.len(), 3);
        let events = s.events("shop", 10).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].kind, "audit");
        assert_eq!(events[0].subject, "cli:ann");
        assert_eq!(events[0].message, "scale shop/web: ok: 2 step(s) done");
    }
}
