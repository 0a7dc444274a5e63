//! The deployment phase: what each kind of layer costs on a device.
//!
//! This crate will own the profiling sweeps (per layer kind, seeded, resumable), the layer
//! features, the per-kind smartcore regressors chosen by cross-validation, and `DeviceProfile`,
//! which turns a model's layer specs into the `edge_ms` / `cloud_ms` costs that
//! `partition_core` solves over.
//!
//! Status: not built yet; see the predictor issue in the tracker.
