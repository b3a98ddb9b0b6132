//! Services as the engine last showed them, shared by every reader: an answer younger
//! than `fresh` is served as is; an older one (up to `stale`) is served while one
//! refresh runs behind it; a change through the API drops the project's answer. So a
//! dashboard polling a 50-replica project costs the engine one listing every `fresh`,
//! not one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use baton_control::ControlHandle;
use bytes::Bytes;

use crate::ApiError;

struct Entry {
    at: Instant,
    body: Bytes,
    refreshing: bool,
}

/// The serialized `ServicesView` of each project read lately.
pub struct ServicesCache {
    fresh: Duration,
    stale: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What to do for one read, decided under the lock.
enum Plan {
    Serve(Bytes),
    ServeAndRefresh(Bytes),
    Fetch,
}

impl ServicesCache {
    pub fn new(fresh: Duration, stale: Duration) -> ServicesCache {
        ServicesCache {
            fresh,
            stale,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn plan(&self, project: &str, now: Instant) -> Plan {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get_mut(project) {
            Some(e) if now.saturating_duration_since(e.at) < self.fresh => {
                Plan::Serve(e.body.clone())
            }
            Some(e) if now.saturating_duration_since(e.at) < self.stale => {
                if e.refreshing {
                    Plan::Serve(e.body.clone())
                } else {
                    e.refreshing = true;
                    Plan::ServeAndRefresh(e.body.clone())
                }
            }
            _ => Plan::Fetch,
        }
    }

    fn store(&self, project: &str, body: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(
            project.to_string(),
            Entry {
                at: Instant::now(),
                body,
                refreshing: false,
            },
        );
    }

    /// Forgets the project's answer (after a change to it).
    pub fn forget(&self, project: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(project);
    }

    async fn fetch(&self, control: &ControlHandle, project: &str) -> Result<Bytes, ApiError> {
        let view = control.services(project.to_string()).await;
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                // A failed refresh leaves the old answer to age out.
                let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(e) = entries.get_mut(project) {
                    e.refreshing = false;
                }
                return Err(e.into());
            }
        };
        let body =
            Bytes::from(serde_json::to_vec(&view).map_err(|e| ApiError::internal(e.to_string()))?);
        self.store(project, body.clone());
        Ok(body)
    }

    /// The project's services as JSON.
    pub async fn get(
        self: &Arc<Self>,
        control: &ControlHandle,
        project: &str,
    ) -> Result<Bytes, ApiError> {
        match self.plan(project, Instant::now()) {
            Plan::Serve(b) => Ok(b),
            Plan::ServeAndRefresh(b) => {
                let (me, control, project) = (self.clone(), control.clone(), project.to_string());
                tokio::spawn(async move {
                    let _ = me.fetch(&control, &project).await;
                });
                Ok(b)
            }
            Plan::Fetch => self.fetch(control, project).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_answers_are_served_stale_ones_refreshed_once_old_ones_fetched() {
        let c = ServicesCache::new(Duration::from_millis(100), Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(matches!(c.plan("p", t0), Plan::Fetch));
        c.store("p", Bytes::from_static(b"v1"));
        let at = Instant::now();
        assert!(matches!(c.plan("p", at), Plan::Serve(_)));
        let later = at + Duration::from_millis(500);
        assert!(matches!(c.plan("p", later), Plan::ServeAndRefresh(_)));
        assert!(
            matches!(c.plan("p", later), Plan::Serve(_)),
            "one refresh at a time"
        );
        assert!(matches!(
            c.plan("p", at + Duration::from_secs(3)),
            Plan::Fetch
        ));
        c.forget("p");
        assert!(matches!(c.plan("p", at), Plan::Fetch));
    }
}
