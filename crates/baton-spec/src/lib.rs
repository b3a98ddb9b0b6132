//! baton's spec: the project model and the reader that turns baton and Compose files
//! into it. It does no I/O beyond reading the files it is pointed at.

pub mod model;

pub use model::*;
