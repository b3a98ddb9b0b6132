//! TCP mode: one backend per client connection, bytes copied both ways until either side ends.
//! Connections count as requests; draining a backend waits for its open connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backends::{BackendSet, BackendState};

/// Attempts after the first when connecting to a backend fails.
const MAX_RETRIES: usize = 2;

/// Accepts clients until `stop`, then lets open connections run up to the drain timeout.
pub(crate) async fn serve(listener: TcpListener, set: Arc<BackendSet>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        tracker.spawn(forward(set.clone(), client, force.clone()));
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(set.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        force.cancel();
        tracker.wait().await;
    }
}

async fn forward(set: Arc<BackendSet>, mut client: TcpStream, force: CancellationToken) {
    let mut ticket = None;
    let mut tried: Vec<Arc<BackendState>> = Vec::new();
    let (guard, mut upstream) = loop {
        let chosen = if tried.len() <= MAX_RETRIES {
            set.choose(&mut ticket, &tried)
        } else {
            None
        };
        let Some(guard) = chosen else {
            match tried.last() {
                None => set.registry.no_backend(),
                Some(last) => {
                    last.metrics.request();
                    last.metrics.failure();
                }
            }
            return;
        };
        let started = Instant::now();
        match tokio::time::timeout(
            set.connect_timeout,
            TcpStream::connect(guard.state.backend.addr),
        )
        .await
        {
            Ok(Ok(upstream)) => {
                guard.state.metrics.request();
                guard.state.metrics.observe(started.elapsed());
                break (guard, upstream);
            }
            Ok(Err(e)) => {
                tracing::debug!(backend = %guard.state.backend.id, error = %e, "connect failed")
            }
            Err(_) => tracing::debug!(backend = %guard.state.backend.id, "connect timed out"),
        }
        set.mark_down(&guard.state);
        tried.push(guard.state.clone());
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = result {
                tracing::debug!(backend = %guard.state.backend.id, error = %e, "connection ended with an error");
            }
        }
        () = guard.state.closed.cancelled() => {}
        () = force.cancelled() => {}
    }
}
