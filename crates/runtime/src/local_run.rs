//! A model run on this machine, whole or split at a cut, with no network: what
//! `cutpoint-edge local` does and reports ([`run_local`], [`LocalReport`]).

use std::time::Instant;

use models::{Backend, Cut, HostTensor, Kernels, Model};
use serde::Serialize;

use crate::error::RuntimeError;
use crate::outcome_report::{ClassScore, render_top5, top5};

/// A local run: the model, its input and output, the two parts when split, and the time.
/// `cutpoint-edge local --json` prints it and [`LocalReport::render`] writes it as text.
#[derive(Debug, Clone, Serialize)]
pub struct LocalReport {
    /// The network's name.
    pub model: String,
    /// The backend.
    pub backend: &'static str,
    /// The kernels.
    pub kernels: &'static str,
    /// The input's shape.
    pub input_shape: Vec<usize>,
    /// With a cut: both parts and the tensors between them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<LocalCut>,
    /// From the upload of the input to the output on the host, ms.
    pub total_ms: f64,
    /// The output's shape.
    pub output_shape: Vec<usize>,
    /// Where the output was written, if the caller saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_output: Option<String>,
    /// The top-5 ImageNet classes of each sample, for a 1000-class output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<Vec<Vec<ClassScore>>>,
}

/// The two parts of a split local run.
#[derive(Debug, Clone, Serialize)]
pub struct LocalCut {
    /// Ids of the nodes of the cloud part.
    pub cloud_nodes: Vec<String>,
    /// The tensors that would cross the link.
    pub crossing: Vec<LocalCrossing>,
    /// The edge part's time, ms.
    pub edge_ms: f64,
    /// The cloud part's time, ms.
    pub cloud_ms: f64,
}

/// A tensor that crosses the cut, as raw f32.
#[derive(Debug, Clone, Serialize)]
pub struct LocalCrossing {
    /// The node whose output it is.
    pub id: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its size as raw f32.
    pub bytes: usize,
}

/// Runs `model` on `input` in this process: whole, or with `cut` its edge part then its cloud
/// part. Returns the output and the report, which names `backend` and `kernels` (those the
/// model was built with) and leaves `saved_output` `None`.
pub fn run_local(
    model: &Model,
    input: HostTensor,
    cut: Option<&Cut>,
    (backend, kernels): (Backend, Kernels),
) -> Result<(HostTensor, LocalReport), RuntimeError> {
    let net = model.net();
    let input_shape = input.shape().to_vec();
    let x = model.upload(input)?;
    let start = Instant::now();
    let (output, cut_report) = match cut {
        None => (model.forward(x)?, None),
        Some(cut) => {
            let boundary = model.run_edge(cut, x)?;
            let edge_ms = start.elapsed().as_secs_f64() * 1e3;
            let crossing: Vec<LocalCrossing> = if cut.is_edge_only() {
                Vec::new()
            } else {
                boundary
                    .iter()
                    .map(|(&node, value)| LocalCrossing {
                        id: net.nodes()[node].id().to_string(),
                        shape: value.shape().to_vec(),
                        bytes: value.shape().iter().product::<usize>() * 4,
                    })
                    .collect()
            };
            let cloud_start = Instant::now();
            let y = model.run_cloud(cut, boundary)?;
            let cloud_ms = cloud_start.elapsed().as_secs_f64() * 1e3;
            let cloud_nodes = net
                .nodes()
                .iter()
                .zip(cut.cloud_mask())
                .filter(|&(_, &c)| c)
                .map(|(n, _)| n.id().to_string())
                .collect();
            let report = LocalCut {
                cloud_nodes,
                crossing,
                edge_ms,
                cloud_ms,
            };
            (y, Some(report))
        }
    };
    let output = output.to_host()?;
    let report = LocalReport {
        model: net.name().to_string(),
        backend: backend.name(),
        kernels: kernels.name(),
        input_shape,
        cut: cut_report,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        output_shape: output.shape().to_vec(),
        saved_output: None,
        top5: top5(&output),
    };
    Ok((output, report))
}

/// A shape as JSON writes it: `[1,3,224,224]`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

impl LocalReport {
    /// The report as text: the run, the two parts and the crossing tensors, the saved output
    /// and the top-5 classes.
    pub fn render(&self) -> String {
        let mut out = format!(
            "model {} on {}: input {} -> output {} in {:.1} ms\n",
            self.model,
            self.backend,
            shape_text(&self.input_shape),
            shape_text(&self.output_shape),
            self.total_ms,
        );
        if let Some(cut) = &self.cut {
            let bytes: usize = cut.crossing.iter().map(|t| t.bytes).sum();
            out += &format!(
                "cut: edge part {:.1} ms, {} cloud node(s) {:.1} ms; {} tensor(s), {} bytes, cross to the cloud\n",
                cut.edge_ms,
                cut.cloud_nodes.len(),
                cut.cloud_ms,
                cut.crossing.len(),
                bytes,
            );
            for t in &cut.crossing {
                out += &format!("  {} {} ({} bytes)\n", t.id, shape_text(&t.shape), t.bytes);
            }
        }
        if let Some(path) = &self.saved_output {
            out += &format!("output written to {path}\n");
        }
        if let Some(samples) = &self.top5 {
            out += &render_top5(samples);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadedModel, WeightsSource};

    #[test]
    fn a_split_run_matches_the_whole_one_and_names_the_crossing_tensor() {
        let net = models::zoo::build("lenet").expect("lenet");
        let input = models::seeded_input(&net, 1, 0).expect("input");
        let cloud = vec![net.nodes()[net.len() - 1].id().to_string()];
        let cut = net.cut(&cloud).expect("cut");
        let model = LoadedModel::load(net, &WeightsSource::default(), models::Backend::Flex)
            .expect("model")
            .model;
        let backend = (Backend::Flex, Kernels::default());
        let (whole, report) = run_local(&model, input.clone(), None, backend).expect("whole");
        assert!(report.cut.is_none());
        let (split, report) = run_local(&model, input, Some(&cut), backend).expect("split");
        assert_eq!(whole.shape(), split.shape());
        assert!(models::relative_difference(&whole, &split) < 1e-5);
        let parts = report.cut.as_ref().expect("parts");
        assert_eq!(parts.cloud_nodes, cloud);
        assert_eq!(parts.crossing.len(), 1);
        let text = report.render();
        assert!(
            text.starts_with("model lenet on flex: input [1,1,32,32] -> output [1,10]"),
            "{text}"
        );
        assert!(text.contains("1 cloud node(s)"), "{text}");
    }
}
