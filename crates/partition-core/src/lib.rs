//! Where to cut a DNN between an edge device and a cloud server.
//!
//! This crate is pure: no IO, no Burn, no async. It holds the cost model of docs/DESIGN.md and
//! exact solvers for it, so that everything can be tested with plain numbers.
//!
//! - [`Graph`]: a validated DAG with per-node `edge_ms`, `cloud_ms` and `out_bytes`, parsed from
//!   graph JSON or built from any [`LayerGraph`]. A node may also list [`Encoding`]s of its
//!   output (bytes on the wire, edge encode time, cloud decode time); a crossing tensor then
//!   goes up in the cheapest of raw and its encodings, `min(e + bytes/Bu + d)`, one term per
//!   tensor, so every solver stays exact ([`Graph::with_encodings`] swaps in fresh estimates).
//! - [`Scenario`]: the [`Link`] (Mbit/s and ms), the [`Objective`] (latency, edge energy, or a
//!   pipelined stream's time per frame: its slowest stage) and the cloud's load factor;
//!   [`DeviceClass`] and [`Powers`] give the energy objective's documented default watts for a
//!   few kinds of edge device.
//! - [`Solver`]: `chain` (Neurosurgeon), `mincut` (DADS), `dp` (JointDNN-style, optionally
//!   letting work return to the edge), `exhaustive` (the reference) and `auto`. For the stream
//!   objective, `chain` and `exhaustive` stay exact and `mincut` searches candidate cuts with a
//!   lower bound beside them ([`Solver::stream_bound`]).
//! - [`Plan`]: the cloud node set, the tensors that cross (each with the [`Transfer::encoding`]
//!   it goes in), and a [`Breakdown`] recomputed from the cost model; [`Plan::edge_only`],
//!   [`Plan::cloud_only`] and [`Plan::fixed`] are the baselines.
//! - [`Hysteresis`]: keeps a cut until a new one saves enough.
//!
//! ```
//! use partition_core::{Graph, Link, Plan, Scenario, Solver};
//!
//! let graph = Graph::from_json(r#"{"name": "tiny", "nodes": [
//!     {"id": "input", "inputs": [],        "edge_ms": 0.0,  "cloud_ms": 0.0, "out_bytes": 602112},
//!     {"id": "conv1", "inputs": ["input"], "edge_ms": 12.5, "cloud_ms": 1.1, "out_bytes": 774400},
//!     {"id": "fc",    "inputs": ["conv1"], "edge_ms": 3.0,  "cloud_ms": 0.2, "out_bytes": 4000}
//! ]}"#)?;
//! let scenario = Scenario::latency(Link::new(10.0, 10.0, 20.0)?);
//! let plan = Solver::Auto.solve(&graph, &scenario)?;
//! assert!(plan.value() <= Plan::edge_only(&graph, &scenario).value());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cost;
mod error;
mod graph;
mod hysteresis;
mod json;
mod plan;
mod power;
mod scenario;
mod solve;
pub mod synthetic;

pub use cost::Breakdown;
pub use error::{GraphError, ScenarioError, SolveError, readable};
pub use graph::{Encoding, Graph, LayerGraph, MAX_NODE_MS, NodeSpec};
pub use hysteresis::{DEFAULT_MIN_SAVING, Decision, Hysteresis};
pub use plan::{Direction, Method, Plan, Transfer, check_successor_closed};
pub use power::{DeviceClass, Powers, UnknownDeviceClass};
pub use scenario::{Link, Objective, Scenario};
pub use solve::{MAX_EXHAUSTIVE_NODES, Solver};
