//! API tokens in the store: a name, a role and the SHA-256 of the secret (never the
//! secret itself), when each was made and last used.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

/// Migration: the `tokens` table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
";

/// One token as stored: what may be shown, plus the digest that identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// The role's name; its meaning belongs to the API.
    pub role: String,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

fn token_row(r: &Row) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
    })
}

const COLS: &str = "name, role, hash, created_at, last_used_at";

impl Store {
    /// Adds a token; `false` (nothing written) when the name is taken.
    pub fn add_token(&self, name: &str, role: &str, hash: &str, now: i64) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role, hash, now],
            )
            .map(|n| n > 0)
        })
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {COLS} FROM tokens ORDER BY name"))?;
            let rows = st.query_map([], token_row)?;
            rows.collect()
        })
    }

    pub fn token(&self, name: &str) -> Result<Option<TokenRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLS} FROM tokens WHERE name = ?1"),
                params![name],
                token_row,
            )
            .optional()
        })
    }

    /// Removes a token; `false` when there was none of that name.
    pub fn revoke_token(&self, name: &str) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM tokens WHERE name = ?1", params![name])
                .map(|n| n > 0)
        })
    }

    /// Notes that a token was used at `now`.
    pub fn touch_token(&self, name: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, now],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_added_once_listed_touched_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.add_token("ci", "operator", "aa", 1).unwrap());
        assert!(!s.add_token("ci", "viewer", "bb", 2).unwrap(), "name taken");
        assert!(s.add_token("alice", "admin", "cc", 3).unwrap());
        let all = s.tokens().unwrap();
        assert_eq!(
            all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["alice", "ci"]
        );
        assert_eq!(all[1].role, "operator");
        s.touch_token("ci", 10).unwrap();
        assert_eq!(s.token("ci").unwrap().unwrap().last_used_at, Some(10));
        // The digest never leaves through serde.
        let json = serde_json::to_string(&all[1]).unwrap();
        assert!(!json.contains("\"hash\""), "{json}");
        assert!(s.revoke_token("ci").unwrap());
        assert!(!s.revoke_token("ci").unwrap());
        assert!(s.token("ci").unwrap().is_none());
    }
}
