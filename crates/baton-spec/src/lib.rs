//! baton's spec: the project model and the reader that turns baton and Compose files
//! into it. It does no I/O beyond reading the files it is pointed at.

mod envfile;
mod error;
mod interpolate;
pub mod limits;
mod load;
mod merge;
pub mod model;
mod normalize;
mod read;
pub mod render;
pub mod schema;
mod section;
mod validate;
mod yaml;

pub use error::{closest, suggest, ErrorKind, SpecError};
pub use load::{find_default_files, load, load_with_warnings, LoadOptions};
pub use model::*;
pub use normalize::{normalize_project_name, parse_bytes, parse_duration, parse_port};
pub use section::Section;
