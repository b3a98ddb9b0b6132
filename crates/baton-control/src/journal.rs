//! The engine's journal written to the state store: every action as intent before and
//! outcome after, stamped with the control plane's clock.

use baton_engine::apply::Journal;
use baton_engine::plan::Action;
use baton_state::Store;

pub struct StoreJournal<'a> {
    pub store: &'a Store,
    pub project: &'a str,
    pub revision: Option<i64>,
    pub clock: fn() -> i64,
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
            (self.clock)(),
        );
        match r {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(action = action.kind(), target = action.target(), error = %e, "cannot journal an action");
                None
            }
        }
    }

    fn outcome(&self, token: Option<i64>, result: Result<(), &str>) {
        if let Some(id) = token {
            if let Err(e) = self.store.action_outcome(id, result, (self.clock)()) {
                tracing::warn!(error = %e, "cannot journal an outcome");
            }
        }
    }
}
