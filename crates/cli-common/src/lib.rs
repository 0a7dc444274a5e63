//! What `cutpoint-edge` and `cutpoint-cloud` share: the `profile` and `train` commands (one
//! implementation, two roles), the `--backend` flag, and usage and error rendering.

mod backend;
mod profile;
mod train;
mod usage;

pub use backend::{BackendArg, parse_backend};
pub use profile::{ProfileArgs, profile};
pub use train::{TrainArgs, train};
pub use usage::{error_line, usage_error};
