//! The engine's journal written to the state store: every action as intent before and
//! outcome after, plus an event per outcome.

use baton_engine::apply::Journal;
use baton_engine::plan::Action;
use baton_state::Store;

use crate::context::now_ms;

pub struct StoreJournal<'a> {
    pub store: &'a Store,
    pub project: &'a str,
    pub revision: Option<i64>,
}

impl Journal for StoreJournal<'_> {
    fn intent(&self, action: &Action, step: &str) -> Option<i64> {
        let verb = step.strip_suffix("ing").unwrap_or(step);
        let verb = match verb {
            "creat" | "remov" => format!("{verb}e"),
            "stopp" => "stop".to_string(),
            v => v.to_string(),
        };
        let kind = if verb == action.kind() {
            verb
        } else {
            format!("{}:{verb}", action.kind())
        };
        let r = self.store.action_intent(
            self.project,
            self.revision,
            &kind,
            action.target(),
            &action.reason(),
            now_ms(),
        );
        match r {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!(
                    "warning: cannot journal {} {}: {e}",
                    action.kind(),
                    action.target()
                );
                None
            }
        }
    }

    fn outcome(&self, token: Option<i64>, result: Result<(), &str>) {
        if let Some(id) = token {
            if let Err(e) = self.store.action_outcome(id, result, now_ms()) {
                eprintln!("warning: cannot journal an outcome: {e}");
            }
        }
    }
}
