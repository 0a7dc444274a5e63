//! A request's input as the application holds it ([`RequestInput`]), and what a report says
//! of it and of the session's costs ([`InputReport`], [`CostsReport`]).

use models::HostTensor;
use serde::Serialize;

use crate::cut_report::human_bytes;
use crate::edge::{EdgeSession, Outcome};
use crate::error::RuntimeError;

/// A request's input: a tensor, or an image file (JPEG or PNG) as the application holds it,
/// which the planner may send as it is or decode and preprocess on the edge.
#[derive(Debug, Clone)]
pub enum RequestInput {
    /// A tensor of the network's input shape, with the batch dimension.
    Tensor(HostTensor),
    /// An image file's bytes ([`crate::read_image_file`]).
    Image(Vec<u8>),
}

/// Where a request's input came from, and its shape.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// Where it came from, in words (a file name, or how it was made).
    pub source: String,
    /// Its shape, or the image file's size.
    pub shape: InputShape,
}

/// A tensor's shape, or the size of an image file.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum InputShape {
    /// The tensor's shape.
    Tensor(Vec<usize>),
    /// `image file, 27.2 KiB`.
    File(String),
}

/// Where each side's costs came from.
#[derive(Debug, Clone, Serialize)]
pub struct CostsReport {
    /// The cost source the session was made with (graph file, profiles, quick profile).
    pub edge: String,
    /// The cloud's: as given, published by the server, or assumed (and why).
    pub cloud: String,
}

impl RequestInput {
    /// What a report says of this input, which came from `source`.
    pub fn report(&self, source: String) -> InputReport {
        let shape = match self {
            RequestInput::Tensor(tensor) => InputShape::Tensor(tensor.shape().to_vec()),
            RequestInput::Image(file) => {
                InputShape::File(format!("image file, {}", human_bytes(file.len() as u64)))
            }
        };
        InputReport { source, shape }
    }

    /// Runs one request of this input in `session` ([`EdgeSession::infer`] or
    /// [`EdgeSession::infer_image`]).
    pub async fn infer(self, session: &mut EdgeSession) -> Result<Outcome, RuntimeError> {
        match self {
            RequestInput::Tensor(tensor) => session.infer(tensor).await,
            RequestInput::Image(file) => session.infer_image(file).await,
        }
    }
}

impl InputReport {
    /// `input: [1,3,224,224] cat.npy`, as text reports give it.
    pub fn line(&self) -> String {
        let shape = match &self.shape {
            InputShape::Tensor(dims) => {
                let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
                format!("[{}]", dims.join(","))
            }
            InputShape::File(size) => format!("\"{size}\""),
        };
        format!("input: {shape} {}", self.source)
    }
}

impl CostsReport {
    /// The costs of `session`, made with costs from `edge` ([`crate::Costs::session`]'s
    /// origin).
    pub fn new(edge: String, session: &EdgeSession) -> CostsReport {
        CostsReport {
            edge,
            cloud: session.cloud_cost_source().to_string(),
        }
    }

    /// `costs: …` and `cloud costs: …`, two lines.
    pub fn lines(&self) -> String {
        format!("costs: {}\ncloud costs: {}\n", self.edge, self.cloud)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_line_writes_the_shape_as_json_does() {
        let tensor = HostTensor::new(vec![1, 2], vec![0.0; 2]).expect("tensor");
        let report = RequestInput::Tensor(tensor).report("seeded".into());
        assert_eq!(report.line(), "input: [1,2] seeded");
        assert_eq!(serde_json::to_string(&report.shape).expect("JSON"), "[1,2]");
        let report = RequestInput::Image(vec![0; 2048]).report("cat.jpg".into());
        assert_eq!(report.line(), "input: \"image file, 2.0 KiB\" cat.jpg");
        assert_eq!(
            serde_json::to_string(&report.shape).expect("JSON"),
            "\"image file, 2.0 KiB\""
        );
    }
}
