//! baton's engine: turns (desired, observed) into a plan that is plain data, and applies
//! a plan through a `Runtime`. It knows nothing of Docker, HTTP, QMP or SSH.

pub mod alert;
pub mod apply;
pub mod autoscale;
pub mod check;
pub mod edge;
pub mod graph;
pub mod hash;
pub mod health;
pub mod orchestrate;
pub mod plan;
pub mod resolve;
pub mod restart;
pub mod rollout;
pub mod runtime;
pub mod supervise;
