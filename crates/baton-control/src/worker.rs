//! The control plane on a thread of its own, for doors that serve many clients at once
//! (the HTTP API): calls go in over a channel and answers come back, as Firecracker's
//! API thread hands `VmmAction`s to the VMM.
//!
//! Why a thread: the backends' futures are not `Send` (the `Runtime` trait's `async fn`s
//! promise nothing), while an HTTP server's handlers must be; and a long `up` must not
//! hold up the threads that answer requests. Calls run concurrently on the worker's own
//! single-threaded runtime; changes to one project still take turns through its lock.

use std::future::Future;
use std::pin::Pin;

use baton_engine::apply::Silent;
use baton_engine::orchestrate::UpdateStatus;
use baton_engine::runtime::Runtime;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::views::ServicesView;
use crate::{Actor, Control, ControlError, ExecSettings, Operation, Outcome, Result};

/// Calls waiting for the worker beyond this are refused (the door answers 503).
const QUEUE: usize = 256;

enum Call {
    Execute {
        actor: Actor,
        op: Box<Operation>,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Services {
        project: String,
        reply: oneshot::Sender<Result<ServicesView>>,
    },
    UpdateStatus {
        project: String,
        service: String,
        reply: oneshot::Sender<Result<Option<UpdateStatus>>>,
    },
}

/// The door's side of the worker: cheap to clone, `Send`, usable from any task.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Call>,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlHandle")
    }
}

fn gone() -> ControlError {
    ControlError::Unavailable("the control plane has stopped".into())
}

impl ControlHandle {
    /// A handle with no worker behind it: every call is refused as unavailable (for
    /// doors tested without a container engine).
    pub fn detached() -> ControlHandle {
        let (tx, _) = mpsc::channel(1);
        ControlHandle { tx }
    }

    /// Carries out `op` for `actor` (audited, as [`Control::execute`]).
    pub async fn execute(&self, actor: Actor, op: Operation) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Call::Execute {
            actor,
            op: Box::new(op),
            reply,
        })?;
        answer.await.map_err(|_| gone())?
    }

    /// The project's services as the engine shows them now.
    pub async fn services(&self, project: String) -> Result<ServicesView> {
        let (reply, answer) = oneshot::channel();
        self.send(Call::Services { project, reply })?;
        answer.await.map_err(|_| gone())?
    }

    /// Where the orchestrator's last update of a service stands (as
    /// [`Control::update_status`]).
    pub async fn update_status(
        &self,
        project: String,
        service: String,
    ) -> Result<Option<UpdateStatus>> {
        let (reply, answer) = oneshot::channel();
        self.send(Call::UpdateStatus {
            project,
            service,
            reply,
        })?;
        answer.await.map_err(|_| gone())?
    }

    fn send(&self, call: Call) -> Result<()> {
        self.tx.try_send(call).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ControlError::Unavailable(format!(
                "the control plane is busy ({QUEUE} calls waiting); try again"
            )),
            mpsc::error::TrySendError::Closed(_) => gone(),
        })
    }
}

type Local<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Starts the worker thread. `make` builds the [`Control`] on it (a backend connects
/// from the runtime it is used on); if it fails, every call gets its error.
pub fn spawn<R, F, Fut>(settings: ExecSettings, make: F) -> std::io::Result<ControlHandle>
where
    R: Runtime + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<Control<R>, String>> + 'static,
{
    let (tx, rx) = mpsc::channel::<Call>(QUEUE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("baton-control".into())
        .spawn(move || runtime.block_on(work(settings, make, rx)))?;
    Ok(ControlHandle { tx })
}

async fn work<R, F, Fut>(settings: ExecSettings, make: F, mut rx: mpsc::Receiver<Call>)
where
    R: Runtime,
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<Control<R>, String>>,
{
    let control = match make().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the control plane cannot start");
            while let Some(call) = rx.recv().await {
                let err =
                    || ControlError::Unavailable(format!("the control plane cannot start: {e}"));
                match call {
                    Call::Execute { reply, .. } => drop(reply.send(Err(err()))),
                    Call::Services { reply, .. } => drop(reply.send(Err(err()))),
                    Call::UpdateStatus { reply, .. } => drop(reply.send(Err(err()))),
                }
            }
            return;
        }
    };
    let control = &control;
    let settings = &settings;
    let mut running: FuturesUnordered<Local<'_>> = FuturesUnordered::new();
    loop {
        tokio::select! {
            call = rx.recv() => match call {
                Some(call) => running.push(Box::pin(answer(control, settings, call))),
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
}

async fn answer<R: Runtime>(control: &Control<R>, settings: &ExecSettings, call: Call) {
    match call {
        Call::Execute { actor, op, reply } if matches!(*op, Operation::PipelineRun { .. }) => {
            // Answered once the run has an id; this call lives as long as the run.
            control.start_pipeline(&actor, &op, settings, reply).await;
        }
        Call::Execute { actor, op, reply } => {
            let r = control.execute(&actor, &op, settings, &Silent).await;
            let _ = reply.send(r);
        }
        Call::Services { project, reply } => {
            let _ = reply.send(control.services(&project).await);
        }
        Call::UpdateStatus {
            project,
            service,
            reply,
        } => {
            let _ = reply.send(control.update_status(&project, &service).await);
        }
    }
}
