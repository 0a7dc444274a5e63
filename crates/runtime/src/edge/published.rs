//! The cloud's own per-node costs, as a server publishes them: fetched once per server
//! (certificate fingerprint) and weights, and swapped into the planner's graph.

use std::collections::HashMap;
use std::sync::Arc;

use partition_core::Graph;
use transport::{CloudCosts, DecodingCosts, Fingerprint};

use crate::error::RuntimeError;

/// Where the planner's cloud costs come from now.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudCostSource {
    /// The costs the session was made with (a cost graph or a cloud profile), because the
    /// caller said they are authoritative ([`crate::EdgeConfig::use_published_costs`] off).
    Given,
    /// The costs the session was made with, because no server has published its own yet
    /// (never connected, or it could not answer: the reason).
    Assumed(Option<String>),
    /// The connected server's own, measured on it.
    Published {
        /// The server's certificate fingerprint.
        fingerprint: String,
        /// How the server measured them.
        method: String,
    },
}

impl std::fmt::Display for CloudCostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloudCostSource::Given => write!(
                f,
                "as given with the edge's (the server's published costs are not used)"
            ),
            CloudCostSource::Assumed(None) => {
                write!(f, "assumed (no server has published its costs yet)")
            }
            CloudCostSource::Assumed(Some(reason)) => {
                write!(
                    f,
                    "assumed (the server did not publish its costs: {reason})"
                )
            }
            CloudCostSource::Published {
                fingerprint,
                method,
            } => write!(f, "published by the server {fingerprint}: {method}"),
        }
    }
}

/// The cloud costs the planner uses for one server (or, before any server, the given ones).
#[derive(Debug, Clone)]
pub(crate) struct ServerCosts {
    /// The session's cost graph with this server's cloud costs.
    pub graph: Graph,
    /// The server's own decoding costs, when it published them.
    pub decoding: Option<DecodingCosts>,
    /// How many times this machine's time the server takes for the same work: its summed
    /// layer costs over the edge's, before any emulated slowdown.
    pub cloud_factor: f64,
    /// Where the cloud costs come from.
    pub source: CloudCostSource,
}

/// Published cost tables by server fingerprint and weights hash: a server that restarts with
/// the same identity and weights is not asked again; another server, or other weights, is.
#[derive(Debug, Clone, Default)]
pub(crate) struct CostCache {
    tables: HashMap<(Fingerprint, String), Arc<CloudCosts>>,
}

impl CostCache {
    /// The table of this server for these weights, if fetched before.
    pub fn get(&self, server: Fingerprint, weights_hash: &str) -> Option<Arc<CloudCosts>> {
        self.tables
            .get(&(server, weights_hash.to_string()))
            .cloned()
    }

    /// Keeps a fetched table.
    pub fn insert(&mut self, server: Fingerprint, costs: Arc<CloudCosts>) {
        self.tables
            .insert((server, costs.weights_hash.clone()), costs);
    }
}

/// `graph` with the cloud's published time for every node.
pub(crate) fn apply(graph: &Graph, costs: &CloudCosts) -> Result<Graph, RuntimeError> {
    let by_id: HashMap<&str, f64> = costs.nodes.iter().map(|n| (n.id.as_str(), n.ms)).collect();
    Ok(graph.with_cloud_costs(|id| by_id.get(id).copied())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::NodeCost;

    fn table(hash: &str, ms: f64) -> Arc<CloudCosts> {
        Arc::new(CloudCosts {
            model_id: "m".into(),
            weights_hash: hash.into(),
            nodes: vec![NodeCost {
                id: "input".into(),
                ms,
            }],
            method: "test".into(),
            decoding: transport::DecodingCosts {
                image_ms_per_mpixel: 1.0,
                codecs: Vec::new(),
            },
        })
    }

    #[test]
    fn the_cache_keys_on_the_server_and_the_weights() {
        let a = Fingerprint::of_der(b"server a");
        let b = Fingerprint::of_der(b"server b");
        let mut cache = CostCache::default();
        cache.insert(a, table("h1", 1.0));
        assert!(cache.get(a, "h1").is_some());
        assert!(
            cache.get(b, "h1").is_none(),
            "another server is asked again"
        );
        assert!(
            cache.get(a, "h2").is_none(),
            "other weights are asked again"
        );
        cache.insert(a, table("h2", 2.0));
        assert_eq!(cache.get(a, "h1").map(|t| t.nodes[0].ms), Some(1.0));
        assert_eq!(cache.get(a, "h2").map(|t| t.nodes[0].ms), Some(2.0));
    }

    #[test]
    fn a_table_missing_a_node_is_refused() {
        let graph = partition_core::synthetic::chain(3, 1);
        let err = apply(&graph, &table("h", 1.0)).expect_err("only `input` is priced");
        assert!(err.to_string().contains("cloud_ms"), "{err}");
    }
}
