//! What `cutpoint-edge` and `cutpoint-cloud` share: the `profile` and `train` commands (one
//! implementation, two roles), usage and error rendering and plain-text tables.

mod profile;
mod table;
mod train;
mod usage;

pub use profile::{ProfileArgs, parse_backend, profile};
pub use table::Table;
pub use train::{TrainArgs, train};
pub use usage::{error_line, usage_error};
