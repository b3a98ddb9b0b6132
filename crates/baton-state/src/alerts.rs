//! Alerts in the store: each alert's transitions (history), silences, every
//! notification's delivery, and the evaluator's state between daemon runs. Labels,
//! matchers and states travel as JSON the engine's types read (this crate knows none).

use rusqlite::{params, OptionalExtension};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

/// Migration 6.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    from_phase TEXT NOT NULL,
    to_phase TEXT NOT NULL,
    value REAL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_project ON alert_history (project, id);
CREATE TABLE IF NOT EXISTS alert_silences (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    matchers_json TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    alerts INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    project TEXT PRIMARY KEY,
    rules_json TEXT NOT NULL,
    notify_json TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// One transition of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertTransition {
    pub id: i64,
    pub project: String,
    pub rule: String,
    pub fingerprint: String,
    /// `{"alertname": …, …}`.
    pub labels_json: String,
    pub from_phase: String,
    pub to_phase: String,
    pub value: Option<f64>,
    pub at: i64,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub id: String,
    pub project: String,
    /// The engine's matchers as JSON.
    pub matchers_json: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
}

/// One notification's delivery: `delivered`, or `failed: …` once its tries ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationRecord {
    pub id: i64,
    pub project: String,
    pub receiver: String,
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub alerts: i64,
    pub attempts: i64,
    pub outcome: String,
    pub at: i64,
}

impl Store {
    pub fn add_alert_transitions(&self, rows: &[AlertTransition]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for r in rows {
                tx.execute(
                    "INSERT INTO alert_history (project, rule, fingerprint, labels_json,
                     from_phase, to_phase, value, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        r.project,
                        r.rule,
                        r.fingerprint,
                        r.labels_json,
                        r.from_phase,
                        r.to_phase,
                        r.value,
                        r.at
                    ],
                )?;
            }
            tx.commit()
        })
    }

    /// The newest transitions first.
    pub fn alert_history(&self, project: &str, limit: i64) -> Result<Vec<AlertTransition>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, project, rule, fingerprint, labels_json, from_phase, to_phase,
                 value, at FROM alert_history WHERE project = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![project, limit], |r| {
                Ok(AlertTransition {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    rule: r.get(2)?,
                    fingerprint: r.get(3)?,
                    labels_json: r.get(4)?,
                    from_phase: r.get(5)?,
                    to_phase: r.get(6)?,
                    value: r.get(7)?,
                    at: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn add_silence(&self, s: &SilenceRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alert_silences (id, project, matchers_json, starts_at, ends_at,
                 comment, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.id,
                    s.project,
                    s.matchers_json,
                    s.starts_at,
                    s.ends_at,
                    s.comment,
                    s.created_by,
                    s.created_at
                ],
            )?;
            Ok(())
        })
    }

    /// Ends a silence now (it stays listed as expired); false when there is none by
    /// that id in the project, or it had already ended.
    pub fn expire_silence(&self, project: &str, id: &str, now: i64) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE alert_silences SET ends_at = ?3
                 WHERE project = ?1 AND id = ?2 AND ends_at > ?3",
                params![project, id, now],
            )?;
            Ok(n > 0)
        })
    }

    /// Every silence of the project, newest first.
    pub fn silences(&self, project: &str) -> Result<Vec<SilenceRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, project, matchers_json, starts_at, ends_at, comment, created_by,
                 created_at FROM alert_silences WHERE project = ?1
                 ORDER BY created_at DESC, id",
            )?;
            let rows = st.query_map(params![project], |r| {
                Ok(SilenceRecord {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    matchers_json: r.get(2)?,
                    starts_at: r.get(3)?,
                    ends_at: r.get(4)?,
                    comment: r.get(5)?,
                    created_by: r.get(6)?,
                    created_at: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn add_notification(&self, n: &NotificationRecord) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alert_notifications (project, receiver, group_key, status,
                 alerts, attempts, outcome, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    n.project,
                    n.receiver,
                    n.group_key,
                    n.status,
                    n.alerts,
                    n.attempts,
                    n.outcome,
                    n.at
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The newest deliveries first.
    pub fn notifications(&self, project: &str, limit: i64) -> Result<Vec<NotificationRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, project, receiver, group_key, status, alerts, attempts, outcome, at
                 FROM alert_notifications WHERE project = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![project, limit], |r| {
                Ok(NotificationRecord {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    receiver: r.get(2)?,
                    group_key: r.get(3)?,
                    status: r.get(4)?,
                    alerts: r.get(5)?,
                    attempts: r.get(6)?,
                    outcome: r.get(7)?,
                    at: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The evaluator's state of a project: (rules' alerts, notification groups) as JSON.
    pub fn alert_state(&self, project: &str) -> Result<Option<(String, String)>> {
        self.with(|c| {
            c.query_row(
                "SELECT rules_json, notify_json FROM alert_state WHERE project = ?1",
                params![project],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    pub fn set_alert_state(
        &self,
        project: &str,
        rules_json: &str,
        notify_json: &str,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alert_state (project, rules_json, notify_json, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project) DO UPDATE SET rules_json = ?2, notify_json = ?3,
                 updated_at = ?4",
                params![project, rules_json, notify_json, now],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_silences_notifications_and_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let t = |to: &str, at| AlertTransition {
            id: 0,
            project: "p".into(),
            rule: "r".into(),
            fingerprint: "f".into(),
            labels_json: "{}".into(),
            from_phase: "pending".into(),
            to_phase: to.into(),
            value: Some(1.5),
            at,
        };
        s.add_alert_transitions(&[t("firing", 1), t("resolved", 2)])
            .unwrap();
        let h = s.alert_history("p", 10).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].to_phase, "resolved", "newest first");
        assert!(s.alert_history("q", 10).unwrap().is_empty());

        let silence = SilenceRecord {
            id: "s1".into(),
            project: "p".into(),
            matchers_json: "[]".into(),
            starts_at: 0,
            ends_at: 100,
            comment: "deploy".into(),
            created_by: "me".into(),
            created_at: 0,
        };
        s.add_silence(&silence).unwrap();
        assert!(s.add_silence(&silence).is_err(), "ids are unique");
        assert!(!s.expire_silence("q", "s1", 50).unwrap());
        assert!(s.expire_silence("p", "s1", 50).unwrap());
        assert!(!s.expire_silence("p", "s1", 60).unwrap(), "already ended");
        assert_eq!(s.silences("p").unwrap()[0].ends_at, 50);

        let n = NotificationRecord {
            id: 0,
            project: "p".into(),
            receiver: "ops".into(),
            group_key: "g".into(),
            status: "firing".into(),
            alerts: 1,
            attempts: 3,
            outcome: "delivered".into(),
            at: 5,
        };
        assert!(s.add_notification(&n).unwrap() > 0);
        assert_eq!(s.notifications("p", 5).unwrap()[0].attempts, 3);

        assert_eq!(s.alert_state("p").unwrap(), None);
        s.set_alert_state("p", "{\"a\":1}", "{}", 1).unwrap();
        s.set_alert_state("p", "{\"a\":2}", "{}", 2).unwrap();
        assert_eq!(
            s.alert_state("p").unwrap(),
            Some(("{\"a\":2}".to_string(), "{}".to_string()))
        );
    }
}
