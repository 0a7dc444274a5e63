//! A plan: which nodes run on the cloud, what crosses the link, and what it costs.

use std::fmt;

use crate::cost::Breakdown;
use crate::error::SolveError;
use crate::graph::Graph;
use crate::scenario::Scenario;

/// How a plan was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Everything on the edge.
    EdgeOnly,
    /// Everything but the input on the cloud.
    CloudOnly,
    /// A cloud set given by the caller.
    Fixed,
    /// Neurosurgeon's argmin over the split points of a chain.
    Chain,
    /// DADS's s–t minimum cut.
    MinCut,
    /// Neurosurgeon's single split of a DAG's topological order (at most one crossing tensor).
    Prefix,
    /// Shortest path over (layer, placement) states; `allow_return` lets work come back to the edge.
    Dp {
        /// Whether tensors may return from the cloud to the edge mid-graph.
        allow_return: bool,
    },
    /// Enumeration of every feasible placement.
    Exhaustive {
        /// Whether tensors may return from the cloud to the edge mid-graph.
        allow_return: bool,
    },
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Method::EdgeOnly => "edge_only",
            Method::CloudOnly => "cloud_only",
            Method::Fixed => "fixed",
            Method::Chain => "chain",
            Method::MinCut => "mincut",
            Method::Prefix => "prefix",
            Method::Dp {
                allow_return: false,
            } => "dp",
            Method::Dp { allow_return: true } => "dp_allow_return",
            Method::Exhaustive {
                allow_return: false,
            } => "exhaustive",
            Method::Exhaustive { allow_return: true } => "exhaustive_allow_return",
        };
        f.write_str(name)
    }
}

/// Which way a tensor crosses the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Edge to cloud.
    Up,
    /// Cloud to edge (only in plans that allow returns).
    Down,
}

impl fmt::Display for Direction {
    /// `up` or `down`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// A tensor that crosses the cut. The final result's download is not listed: it is in the
/// breakdown's `download_ms` whenever the output is computed on the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// The node whose output crosses.
    pub tensor: usize,
    /// How it travels: an index into [`Graph::encodings`] of `tensor`, or `None` for raw
    /// (always for tensors that come down). [`Graph::encoding_name`] names it.
    pub encoding: Option<usize>,
    /// Bytes sent: the encoded size, or the raw size when it travels raw.
    pub bytes: u64,
    /// The tensor's raw size ([`Graph::out_bytes`]).
    pub raw_bytes: u64,
    /// Which way it goes.
    pub direction: Direction,
}

/// A placement of every node on the edge or the cloud, with its predicted cost.
///
/// Every constructor recomputes the breakdown from the placement with the cost model, so a
/// plan's figures never depend on how the solver found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    method: Method,
    cloud: Vec<bool>,
    transfers: Vec<Transfer>,
    breakdown: Breakdown,
    value: f64,
}

impl Plan {
    /// Costs an arbitrary placement (`cloud[v]` is true when node v runs on the cloud).
    ///
    /// The raw input must stay on the edge. Returns to the edge are allowed here; use
    /// [`Plan::fixed`] to insist on docs/DESIGN.md's no-return rule.
    pub fn from_placement(
        graph: &Graph,
        scenario: &Scenario,
        method: Method,
        cloud: Vec<bool>,
    ) -> Result<Plan, SolveError> {
        if cloud.len() != graph.len() {
            return Err(SolveError::PlacementLength {
                got: cloud.len(),
                expected: graph.len(),
            });
        }
        let source = graph.source();
        if cloud[source] {
            return Err(SolveError::InputOnCloud(graph.id(source).to_string()));
        }
        Ok(Plan::build(graph, scenario, method, cloud))
    }

    /// Costs a placement that is known to have one flag per node and the input on the edge.
    pub(crate) fn build(
        graph: &Graph,
        scenario: &Scenario,
        method: Method,
        cloud: Vec<bool>,
    ) -> Plan {
        let (breakdown, uploads) = Breakdown::priced(graph, scenario, &cloud);
        let mut uploads = uploads.into_iter().peekable();
        let transfers = (0..graph.len())
            .filter(|&u| graph.consumers(u).iter().any(|&w| cloud[w] != cloud[u]))
            .map(|u| {
                let raw_bytes = graph.out_bytes(u);
                let (encoding, bytes, direction) = match uploads.next_if(|(v, _)| *v == u) {
                    Some((_, up)) => (up.encoding, up.bytes, Direction::Up),
                    None => (None, raw_bytes, Direction::Down),
                };
                Transfer {
                    tensor: u,
                    encoding,
                    bytes,
                    raw_bytes,
                    direction,
                }
            })
            .collect();
        Plan {
            method,
            value: breakdown.objective_value(scenario.objective()),
            cloud,
            transfers,
            breakdown,
        }
    }

    /// Runs everything on the edge.
    pub fn edge_only(graph: &Graph, scenario: &Scenario) -> Plan {
        let cloud = vec![false; graph.len()];
        Plan::build(graph, scenario, Method::EdgeOnly, cloud)
    }

    /// Sends the raw input up and runs everything else on the cloud.
    pub fn cloud_only(graph: &Graph, scenario: &Scenario) -> Plan {
        let mut cloud = vec![true; graph.len()];
        cloud[graph.source()] = false;
        Plan::build(graph, scenario, Method::CloudOnly, cloud)
    }

    /// Runs exactly the named nodes on the cloud. The set must be successor-closed (no tensor
    /// returns to the edge) and must not hold the raw input.
    pub fn fixed<S: AsRef<str>>(
        graph: &Graph,
        scenario: &Scenario,
        cloud_ids: &[S],
    ) -> Result<Plan, SolveError> {
        let mut cloud = vec![false; graph.len()];
        for id in cloud_ids {
            let id = id.as_ref();
            let v = graph
                .index_of(id)
                .ok_or_else(|| SolveError::UnknownNode(id.to_string()))?;
            cloud[v] = true;
        }
        check_successor_closed(graph, &cloud)?;
        Plan::from_placement(graph, scenario, Method::Fixed, cloud)
    }

    /// The same placement costed under another scenario (for example, a new link estimate).
    pub fn reprice(&self, graph: &Graph, scenario: &Scenario) -> Result<Plan, SolveError> {
        Plan::from_placement(graph, scenario, self.method, self.cloud.clone())
    }

    /// How the plan was made.
    pub fn method(&self) -> Method {
        self.method
    }

    /// True when node `v` runs on the cloud.
    pub fn is_cloud(&self, v: usize) -> bool {
        self.cloud.get(v).copied().unwrap_or(false)
    }

    /// One flag per node: true for the cloud.
    pub fn placement(&self) -> &[bool] {
        &self.cloud
    }

    /// Indices of the cloud nodes, ascending (topological order).
    pub fn cloud_nodes(&self) -> Vec<usize> {
        (0..self.cloud.len()).filter(|&v| self.cloud[v]).collect()
    }

    /// Indices of the edge nodes, ascending (topological order).
    pub fn edge_nodes(&self) -> Vec<usize> {
        (0..self.cloud.len()).filter(|&v| !self.cloud[v]).collect()
    }

    /// Tensors that cross the cut, in topological order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The predicted time breakdown.
    pub fn breakdown(&self) -> &Breakdown {
        &self.breakdown
    }

    /// The objective's value: ms for latency, mJ for energy, ms per frame for the stream.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// True when both plans put the same nodes on the cloud.
    pub fn same_placement(&self, other: &Plan) -> bool {
        self.cloud == other.cloud
    }
}

/// Checks docs/DESIGN.md's no-return rule: every consumer of a cloud node is on the cloud.
pub fn check_successor_closed(graph: &Graph, cloud: &[bool]) -> Result<(), SolveError> {
    if cloud.len() != graph.len() {
        return Err(SolveError::PlacementLength {
            got: cloud.len(),
            expected: graph.len(),
        });
    }
    for u in (0..graph.len()).filter(|&u| cloud[u]) {
        if let Some(&w) = graph.consumers(u).iter().find(|&&w| !cloud[w]) {
            return Err(SolveError::NotSuccessorClosed {
                node: graph.id(u).to_string(),
                consumer: graph.id(w).to_string(),
            });
        }
    }
    Ok(())
}
