//! Silences: made and ended for a project, by either door, as [`Operation::Silence`]
//! and [`Operation::Unsilence`]. The daemon applies them from its next evaluation; the
//! rules, the grouping and whether a silence matches are the engine's
//! (`baton_engine::alert`).
//!
//! [`Operation::Silence`]: crate::Operation::Silence
//! [`Operation::Unsilence`]: crate::Operation::Unsilence

use baton_engine::alert::{Matcher, Silence};
use baton_state::SilenceRecord;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Actor, Control, ControlError, Result};

/// The longest a silence may last: a year (a longer one is a rule to switch off).
pub const MAX_SILENCE_SECS: u64 = 366 * 24 * 3600;

/// A silence made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Silenced {
    pub id: String,
    pub project: String,
    /// Unix milliseconds.
    pub starts_at: i64,
    pub ends_at: i64,
}

/// 16 random hex digits.
fn random_id() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| ControlError::Unavailable(format!("no randomness for an id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl<R> Control<R> {
    /// Silences `project`'s alerts whose labels match every matcher
    /// (`service="web"`, `severity=~"page|critical"`) for `duration_secs`, made by
    /// `actor`, for the reason `comment`.
    pub fn silence(
        &self,
        actor: &Actor,
        project: &str,
        matchers: &[String],
        duration_secs: u64,
        comment: &str,
    ) -> Result<Silenced> {
        let invalid = |e: &dyn std::fmt::Display| ControlError::Invalid(format!("silence: {e}"));
        if duration_secs == 0 || duration_secs > MAX_SILENCE_SECS {
            return Err(ControlError::Invalid(format!(
                "silence: a duration from 1 s to 366 days, not {duration_secs} s"
            )));
        }
        let matchers = matchers
            .iter()
            .map(|m| Matcher::parse(m).map_err(|e| invalid(&e)))
            .collect::<Result<Vec<_>>>()?;
        let now = (self.clock)();
        let start = u64::try_from(now).unwrap_or(0);
        let silence = Silence {
            id: random_id()?,
            matchers,
            starts_at_ms: start,
            ends_at_ms: start + duration_secs * 1000,
            comment: comment.trim().to_string(),
            created_by: actor.0.clone(),
        };
        silence.check().map_err(|e| invalid(&e))?;
        let matchers_json =
            serde_json::to_string(&silence.matchers).map_err(|e| invalid(&e.to_string()))?;
        let ends_at = i64::try_from(silence.ends_at_ms).unwrap_or(i64::MAX);
        self.store.add_silence(&SilenceRecord {
            id: silence.id.clone(),
            project: project.to_string(),
            matchers_json,
            starts_at: now,
            ends_at,
            comment: silence.comment,
            created_by: silence.created_by,
            created_at: now,
        })?;
        Ok(Silenced {
            id: silence.id,
            project: project.to_string(),
            starts_at: now,
            ends_at,
        })
    }

    /// Ends `project`'s silence `id` now (it stays listed, expired).
    pub fn unsilence(&self, project: &str, id: &str) -> Result<()> {
        let well_formed =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !well_formed || !self.store.expire_silence(project, id, (self.clock)())? {
            return Err(ControlError::NotFound(format!(
                "project {project} has no active silence {id:?}"
            )));
        }
        Ok(())
    }
}
