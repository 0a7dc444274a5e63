//! Collaborative inference, end to end.
//!
//! This crate will own `EdgeSession` (plan with the live link estimate, run the edge part, ship
//! the boundary tensors, fall back to local execution on faults) and `CloudServer` (serve model
//! parts behind a bounded queue and report its load). The CLIs are thin wrappers over it.
//!
//! Today it holds [`cli`]: the commands both binaries share (`profile`, `train`), so that the
//! edge and the cloud are profiled by one implementation.

pub mod cli;
