//! What `cutpoint-edge` and `cutpoint-cloud` share: the `profile` and `train` commands (one
//! implementation, two roles), usage-error rendering and plain-text tables.

mod profile;
mod table;
mod train;
mod usage;

pub use profile::{ProfileArgs, profile};
pub use table::Table;
pub use train::{TrainArgs, train};
pub use usage::usage_error;
