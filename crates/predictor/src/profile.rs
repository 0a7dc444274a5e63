//! `DeviceProfile`: what each class of layer costs on one device, learned from a sweep.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use models::{ConvRun, Fusion, LayerSpec, Net};
use partition_core::Graph;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::ceiling::Ceiling;
use crate::class::LayerClass;
use crate::error::PredictorError;
use crate::features::{self, Context};
use crate::regress::Fitted;

/// Marks a profile file, so that another file given by mistake gets a clear error.
const MAGIC: &str = "cutpoint-device-profile";

/// Version of the profile file: how its models are stored and which features they read. Bump it
/// whenever either changes, with [`FEATURE_SCHEMA_VERSION`](crate::features::FEATURE_SCHEMA_VERSION) for the features. Format 1 stored
/// models over every feature column; format 2 leaves out the columns constant in the sweep;
/// format 3 reads feature schema 2; format 4 stores the power laws under trees as ridge
/// regressions; format 5 reads feature schema 3 and keeps the layers timed inside the sweep's
/// passes ([`MeasuredLayer`]); format 6 reads feature schema 4 (the timing context); format 7
/// reads feature schema 5 (sampled layers timed in interleaved rounds); format 8 reads feature
/// schema 6 (the stride-2 depthwise kernel); format 9 keeps what a pass costs beyond its nodes
/// ([`DeviceProfile::pass_ms`]); format 10 reads feature schema 7 (the kernel as the network
/// runs it) and keeps the kernel of each layer timed inside a pass; format 11 reads feature
/// schema 8 (layers sampled inside chains); format 12 reads feature schema 9, keeps whether
/// each convolution timed inside a pass added a residual ([`models::ConvRun`]) and each
/// kernel's best rate ([`Ceiling`]); format 13 reads feature schema 10 (Winograd's F(2×2, 5×5));
/// format 14 reads feature schema 11 (small networks timed in-pass); format 15 reads feature
/// schema 12 (inverted residual blocks among them); format 16 reads feature schema 13 (in-pass
/// layers that add up to their network's median pass); format 17 reads feature schema 14 (rounds
/// judged against the anchor's lower quartile); format 18 reads feature schema 15 (each anchor
/// the fastest of six passes, each network timed after 5 ms of its own passes).
pub const PROFILE_FORMAT_VERSION: u32 = 18;

/// Which side of the link a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The device that holds the input.
    Edge,
    /// The server that runs the rest.
    Cloud,
}

impl Role {
    /// `edge` or `cloud`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Cloud => "cloud",
        }
    }
}

/// A layer the sweep timed inside a network's passes, and what it took there: the mean of its
/// in-pass times (each node's median, scaled with its network's nodes to their median pass)
/// where several nodes share its spec (ResNet's repeated blocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredLayer {
    /// The layer's kind and shapes.
    pub spec: LayerSpec,
    /// How it ran, for a convolution: its kernel, and whether it added a residual.
    pub conv: Option<ConvRun>,
    /// Its in-pass time, ms.
    pub ms: f64,
}

/// A trained latency model of one device: per layer class, a regressor from layer features
/// to ms, and the layers it measured inside real passes, with the conditions it was measured
/// under.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// A name for reports (defaults to the file's stem).
    pub name: String,
    /// Edge or cloud.
    pub role: Role,
    /// Host and CPU model of the profiled machine.
    pub device: String,
    /// Burn backend the layers ran on.
    pub backend: String,
    /// Threads available during the sweep.
    pub threads: usize,
    /// CPU quota during the sweep, if any.
    pub cpu_quota: Option<f64>,
    /// Version of the crate that trained it.
    pub crate_version: String,
    pub(crate) models: BTreeMap<LayerClass, Fitted>,
    /// Layers timed inside the sweep's passes, priced at their measurement rather than
    /// predicted.
    pub(crate) measured: Vec<MeasuredLayer>,
    /// Per class, the best rate each kernel reached in the sweep: no prediction is faster.
    pub(crate) ceilings: BTreeMap<LayerClass, Ceiling>,
    /// What a forward pass costs beyond its nodes, ms: the sweep's probe's whole pass less its
    /// one node's in-pass time ([`PassTime`](crate::PassTime): handing the pass to a worker
    /// thread and waking it, setting it up); 0 where the sweep timed no networks in passes.
    /// Each side that runs a part of a plan pays it once: [`DeviceProfile::predict_graph`]
    /// adds the edge's to the input node's edge time (the edge always holds the input) and the
    /// cloud's to the sink's cloud time (the cloud runs a part exactly when it runs the sink).
    pub pass_ms: f64,
}

impl DeviceProfile {
    /// The classes this profile can predict.
    pub fn classes(&self) -> Vec<LayerClass> {
        self.models.keys().copied().collect()
    }

    /// The regressor chosen for each class.
    pub fn regressors(&self) -> Vec<(LayerClass, &'static str)> {
        self.models
            .iter()
            .map(|(c, m)| (*c, m.candidate().name()))
            .collect()
    }

    /// How many distinct layers this profile timed inside real passes.
    pub fn measured_layers(&self) -> usize {
        self.measured.len()
    }

    /// Latency of one layer run as `conv` says (for a convolution: see [`ConvRun::of_net`]),
    /// in ms: its in-pass measurement where the sweep timed a layer of exactly this spec, run
    /// the same way, inside a network's passes, otherwise its class's regressor's prediction for
    /// a layer inside a pass ([`Context::InPass`]), never under its kernel's best measured rate
    /// ([`Ceiling`]). Kinds that cost nothing (input, dropout, flatten) predict 0. `node` names
    /// the layer in errors.
    pub fn predict_ms(
        &self,
        node: &str,
        spec: &LayerSpec,
        conv: Option<ConvRun>,
    ) -> Result<f64, PredictorError> {
        let Some(class) = LayerClass::of(&spec.kind) else {
            return Ok(0.0);
        };
        if let Some(layer) = self
            .measured
            .iter()
            .find(|m| m.spec == *spec && m.conv == conv)
        {
            return Ok(layer.ms);
        }
        let model = self
            .models
            .get(&class)
            .ok_or_else(|| PredictorError::MissingClass {
                profile: self.name.clone(),
                class: class.name(),
                node: node.to_string(),
            })?;
        let x = vec![features::ours(class, spec, conv, Context::InPass)];
        let regression = |reason| PredictorError::Regression {
            class: class.name(),
            reason,
        };
        let predicted = model.predict(&x).map_err(regression)?;
        let predicted = predicted.first().copied().unwrap_or(0.0);
        Ok(self
            .ceilings
            .get(&class)
            .map_or(predicted, |c| c.bound(predicted, spec, conv)))
    }

    /// Predicted latency of every node of `net`, in node order, in ms, as the default kernels
    /// run it: a node fused into a convolution (a folded batch norm, a ReLU in its epilogue; see
    /// [`models::Fusion`]) costs nothing, and so does a residual addition its convolution adds
    /// in its epilogue ([`Fusion::shortcut_conv`]), whose cost the convolution's in-pass
    /// timings carry. (At a cut between the two, the addition then runs alone and is predicted
    /// free: a few hundredths of a millisecond.)
    pub fn layer_costs(&self, net: &Net) -> Result<Vec<f64>, PredictorError> {
        let fusion = Fusion::of(net);
        let runs = ConvRun::of_net(net);
        net.nodes()
            .iter()
            .zip(runs)
            .enumerate()
            .map(|(v, (node, conv))| {
                if fusion.is_absorbed(v) || fusion.shortcut_conv(v).is_some() {
                    Ok(0.0)
                } else {
                    self.predict_ms(node.id(), node.spec(), conv)
                }
            })
            .collect()
    }

    /// `net` as a partition graph whose costs are predicted: `edge_ms` by `edge`, `cloud_ms` by
    /// `cloud`. Profiles given in each other's place (an edge profile as the cloud's) are refused.
    pub fn predict_graph(
        net: &Net,
        edge: &DeviceProfile,
        cloud: &DeviceProfile,
    ) -> Result<Graph, PredictorError> {
        for (profile, role) in [(edge, Role::Edge), (cloud, Role::Cloud)] {
            if profile.role != role {
                return Err(PredictorError::WrongRole {
                    profile: profile.name.clone(),
                    found: profile.role.name(),
                    wanted: role.name(),
                });
            }
        }
        let edge_ms = edge.side_costs(net, Role::Edge)?;
        let cloud_ms = cloud.side_costs(net, Role::Cloud)?;
        Ok(net.graph(&edge_ms, &cloud_ms)?)
    }

    /// [`DeviceProfile::layer_costs`] for the side `role` of a plan, with the pass's own cost
    /// ([`DeviceProfile::pass_ms`]) on the node that side always runs when it runs a part: the
    /// input on the edge, the sink on the cloud.
    pub fn side_costs(&self, net: &Net, role: Role) -> Result<Vec<f64>, PredictorError> {
        let mut ms = self.layer_costs(net)?;
        let node = match role {
            Role::Edge => 0,
            Role::Cloud => net.sink(),
        };
        if let Some(cost) = ms.get_mut(node) {
            *cost += self.pass_ms;
        }
        Ok(ms)
    }

    /// `net` as a partition graph with both sides priced by `edge`: the cloud assumed as fast
    /// as this device, the labelled fallback while a server's own costs are unknown. A profile
    /// trained for the cloud is refused, as [`DeviceProfile::predict_graph`] refuses it.
    pub fn predict_graph_alike(net: &Net, edge: &DeviceProfile) -> Result<Graph, PredictorError> {
        if edge.role != Role::Edge {
            return Err(PredictorError::WrongRole {
                profile: edge.name.clone(),
                found: edge.role.name(),
                wanted: Role::Edge.name(),
            });
        }
        let edge_ms = edge.side_costs(net, Role::Edge)?;
        let cloud_ms = edge.side_costs(net, Role::Cloud)?;
        Ok(net.graph(&edge_ms, &cloud_ms)?)
    }

    /// Writes the profile (MessagePack).
    pub fn save(&self, path: &Path) -> Result<(), PredictorError> {
        let bytes = rmp_serde::to_vec(&(MAGIC, PROFILE_FORMAT_VERSION, self)).map_err(|e| {
            PredictorError::Profile {
                path: path.to_path_buf(),
                reason: format!("cannot encode: {e}"),
            }
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| PredictorError::io("cannot create", dir, e))?;
        }
        fs::write(path, bytes).map_err(|e| PredictorError::io("cannot write", path, e))
    }

    /// Reads a profile, refusing files that are not profiles or are in another format.
    pub fn load(path: &Path) -> Result<DeviceProfile, PredictorError> {
        let bytes = fs::read(path).map_err(|e| PredictorError::io("cannot read", path, e))?;
        let bad = |reason: String| PredictorError::Profile {
            path: path.to_path_buf(),
            reason,
        };
        let (magic, version, _): (String, u32, IgnoredAny) = rmp_serde::from_slice(&bytes)
            .map_err(|_| {
                bad(
                    "this is not a cutpoint device profile; make one with `profile` then `train`"
                        .into(),
                )
            })?;
        if magic != MAGIC {
            return Err(bad(
                "this is not a cutpoint device profile; make one with `profile` then `train`"
                    .into(),
            ));
        }
        if version != PROFILE_FORMAT_VERSION {
            return Err(bad(format!(
                "it is in profile format {version}, but this build reads format {PROFILE_FORMAT_VERSION}; train it again from its sweep (`train --data DIR --out FILE`)"
            )));
        }
        let (_, _, profile): (String, u32, DeviceProfile) =
            rmp_serde::from_slice(&bytes).map_err(|e| bad(format!("the file is damaged: {e}")))?;
        Ok(profile)
    }
}
