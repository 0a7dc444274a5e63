//! `cutpoint-edge graph`: print a model's graph JSON (zero costs) or its model spec.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use predictor::DeviceProfile;

use crate::model_args::ModelArgs;

/// Print a model as graph JSON, or as a model spec.
///
/// The graph JSON is docs/DESIGN.md's exchange format with every cost zero: node ids, inputs and
/// output sizes (f32 bytes, batch 1). Fill in edge_ms and cloud_ms (from `layers` or a device
/// profile) and hand it to `plan`. With --spec it prints the model spec instead: each node's
/// layer kind and hyper-parameters plus the input shape, which --model-spec reads back. With
/// --edge-profile and --cloud-profile, the costs are the profiles' predictions instead of zero,
/// ready for `plan --graph`.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge graph --model resnet18 > resnet18.json
  cutpoint-edge graph --model alexnet --spec > alexnet.spec.json
  cutpoint-edge graph --model-spec my_net.spec.json
  cutpoint-edge graph --model vgg16 --edge-profile edge.profile --cloud-profile cloud.profile")]
pub struct GraphArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print the model spec (layer kinds and hyper-parameters) instead of the graph JSON.
    #[arg(long, conflicts_with_all = ["edge_profile", "cloud_profile"])]
    spec: bool,
    /// Edge device profile (from `train`): fills edge_ms with its predictions.
    #[arg(long, value_name = "FILE", requires = "cloud_profile")]
    edge_profile: Option<PathBuf>,
    /// Cloud device profile (from `cutpoint-cloud train`): fills cloud_ms with its predictions.
    #[arg(long, value_name = "FILE", requires = "edge_profile")]
    cloud_profile: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: &GraphArgs) -> Result<()> {
    let net = args.model.build()?;
    let text = if args.spec {
        net.to_spec().to_json()
    } else if let (Some(edge), Some(cloud)) = (&args.edge_profile, &args.cloud_profile) {
        let (edge, cloud) = (DeviceProfile::load(edge)?, DeviceProfile::load(cloud)?);
        DeviceProfile::predict_graph(&net, &edge, &cloud)?.to_json()
    } else {
        net.graph_json()?
    };
    println!("{}", text.trim_end());
    Ok(())
}
