//! cutpoint: cloud–edge collaborative DNN inference.
//!
//! This facade re-exports the workspace's library crates so that an application can depend on one
//! package. Each crate owns one concern; see `docs/DESIGN.md` for how they fit together.

pub use models;
pub use partition_core;
pub use predictor;
pub use runtime;
pub use transport;
