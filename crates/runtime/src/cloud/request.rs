//! Checks an inference request against the network before any work is queued: the cloud node
//! set must be a valid cut and the boundary tensors exactly what that cut needs, or the input
//! must come as an image file for a cloud-only run. Payloads are decoded later, on the compute
//! thread ([`CloudPart::decode`]), so that decompression and image decoding never stall the
//! async runtime and are timed.

use std::time::Instant;

use models::{Cut, HostTensor, INPUT_ID, Net, decode_image, image_dimensions};
use transport::{ErrorCode, ErrorReply, InferRequest, WireTensor};

use crate::wire::from_wire;

/// A checked request: the cut, and what the cloud part starts from, still encoded.
#[derive(Debug)]
pub(crate) struct CloudPart {
    /// The nodes to run, as a validated cut.
    pub cut: Cut,
    /// The boundary tensors by node index, each with the shape its node produces.
    boundary: Vec<(usize, WireTensor)>,
    /// The input as an image file, for a cloud-only run.
    input_file: Option<Vec<u8>>,
    /// The batch it carries: the boundary tensors' first dimension (1 for an image file).
    samples: usize,
}

/// A decoded request, ready to run.
pub(crate) struct Decoded {
    /// The nodes to run.
    pub cut: Cut,
    /// The boundary tensors (the preprocessed input, when an image file was sent).
    pub boundary: Vec<(usize, HostTensor)>,
    /// Time spent decoding, in ms.
    pub decode_ms: f64,
}

fn bad(message: String) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::BadRequest,
        message,
    }
}

impl CloudPart {
    /// The batch it carries (samples).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Decodes the boundary tensors (codecs) or the input file (image decoding and
    /// preprocessing, exactly as the edge does it), and times it.
    pub fn decode(self, net: &Net) -> Result<Decoded, ErrorReply> {
        let started = Instant::now();
        let mut boundary = Vec::with_capacity(self.boundary.len().max(1));
        if let Some(file) = self.input_file {
            let input = decode_image(&file).map_err(|e| bad(format!("the input file: {e}")))?;
            if input.shape()[1..] != *net.input_shape() {
                return Err(bad(format!(
                    "the input file decodes to shape {:?}, but `{}` takes {:?}; send a tensor instead",
                    input.shape(),
                    net.name(),
                    net.input_shape()
                )));
            }
            boundary.push((0, input));
        }
        for (u, tensor) in self.boundary {
            let id = net.nodes()[u].id();
            let host =
                from_wire(&tensor, &format!("for node `{id}`")).map_err(|e| bad(e.to_string()))?;
            boundary.push((u, host));
        }
        Ok(Decoded {
            cut: self.cut,
            boundary,
            decode_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// Checks `request` against `net` and a batch of at most `max_batch`, and takes its payloads.
pub(crate) fn check(
    net: &Net,
    request: InferRequest,
    max_batch: usize,
) -> Result<CloudPart, ErrorReply> {
    let model = net.name();
    if request.cloud_nodes.is_empty() {
        return Err(bad(format!(
            "the request for `{model}` names no cloud nodes; an edge-only plan needs no server"
        )));
    }
    let mut cloud = vec![false; net.len()];
    for id in &request.cloud_nodes {
        if id == INPUT_ID {
            return Err(bad(format!(
                "the cloud nodes include `{INPUT_ID}`, but the raw input always stays on the edge; send its tensor as a boundary tensor, or the image file as the input file"
            )));
        }
        let v = net.index_of(id).map_err(|_| {
            bad(format!(
                "model `{model}` has no node `{id}`; are edge and cloud running the same network?"
            ))
        })?;
        cloud[v] = true;
    }
    let cut = net.cut_from_mask(cloud).map_err(|e| bad(e.to_string()))?;
    if let Some(file) = request.input_file {
        let cloud_only = cut.cloud_mask().iter().skip(1).all(|&c| c);
        if !cloud_only || !request.boundary.is_empty() {
            return Err(bad(format!(
                "a request with an input file runs all of `{model}` but `{INPUT_ID}` in the cloud, with no boundary tensors; send tensors for a split run"
            )));
        }
        // What the header tells is checked now; the pixels are decoded on the worker.
        image_dimensions(&file).map_err(|e| bad(format!("the input file: {e}")))?;
        if net.input_shape() != [3, 224, 224] {
            return Err(bad(format!(
                "an input file decodes to [1, 3, 224, 224], but `{model}` takes {:?}; send a tensor instead",
                net.input_shape()
            )));
        }
        return Ok(CloudPart {
            cut,
            boundary: Vec::new(),
            input_file: Some(file),
            samples: 1,
        });
    }
    let cloud = cut.cloud_mask();
    let needed = |u: usize| !cloud[u] && net.consumers(u).iter().any(|&w| cloud[w]);
    let mut boundary = Vec::with_capacity(request.boundary.len());
    let mut batch = None;
    for (id, tensor) in request.boundary {
        let u = net
            .index_of(&id)
            .ok()
            .filter(|&u| needed(u))
            .ok_or_else(|| {
                bad(format!(
                    "unexpected boundary tensor `{id}`: no cloud node of `{model}` consumes it from the edge; send exactly the outputs of edge nodes that cloud nodes read"
                ))
            })?;
        let per_sample = &net.nodes()[u].spec().output_shape;
        let shape = &tensor.shape;
        let b = *batch.get_or_insert(shape.first().copied().unwrap_or(0));
        let fits = b > 0
            && shape.len() == per_sample.len() + 1
            && shape[0] == b
            && shape[1..]
                .iter()
                .zip(per_sample)
                .all(|(&a, &e)| a == e as u64);
        if !fits {
            let mut expected = vec![b.max(1)];
            expected.extend(per_sample.iter().map(|&d| d as u64));
            return Err(bad(format!(
                "boundary tensor `{id}` has shape {shape:?}, but node `{id}` of `{model}` produces {expected:?} (batch first, one batch size for all tensors)"
            )));
        }
        if b > max_batch as u64 {
            return Err(ErrorReply {
                code: ErrorCode::Busy,
                message: format!(
                    "boundary tensor `{id}` carries a batch of {b}, more than the {max_batch} this server computes at once (its welcome says so); send smaller batches or run this one locally"
                ),
            });
        }
        boundary.push((u, tensor));
    }
    if let Some(u) = (0..net.len()).find(|&u| needed(u) && !boundary.iter().any(|(b, _)| *b == u)) {
        let id = net.nodes()[u].id();
        let reader = net
            .consumers(u)
            .iter()
            .find(|&&w| cloud[w])
            .map_or("", |&w| net.nodes()[w].id());
        return Err(bad(format!(
            "missing boundary tensor `{id}`: cloud node `{reader}` reads it, so the edge must send it"
        )));
    }
    Ok(CloudPart {
        cut,
        boundary,
        input_file: None,
        samples: usize::try_from(batch.unwrap_or(1)).unwrap_or(usize::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use transport::WireTensor;

    fn lenet() -> Net {
        models::zoo::build("lenet").expect("lenet")
    }

    fn tensor(net: &Net, id: &str, batch: usize) -> WireTensor {
        let v = net.index_of(id).expect("node");
        let mut shape = vec![batch];
        shape.extend_from_slice(&net.nodes()[v].spec().output_shape);
        let n = shape.iter().product();
        WireTensor::from_f32(&shape, &vec![0.5; n]).expect("tensor")
    }

    fn request(net: &Net, cloud: &[&str], boundary: &[(&str, WireTensor)]) -> InferRequest {
        InferRequest {
            model_id: net.name().into(),
            weights_hash: String::new(),
            cloud_nodes: cloud.iter().map(|s| s.to_string()).collect(),
            boundary: boundary
                .iter()
                .map(|(id, t)| (id.to_string(), t.clone()))
                .collect::<BTreeMap<_, _>>(),
            input_file: None,
        }
    }

    fn suffix(net: &Net, from: usize) -> Vec<&str> {
        net.nodes()[from..].iter().map(|n| n.id()).collect()
    }

    fn check_(net: &Net, request: InferRequest) -> Result<CloudPart, ErrorReply> {
        check(net, request, 64)
    }

    #[test]
    fn a_batch_over_the_cap_is_refused_as_busy() {
        let net = lenet();
        let cloud = suffix(&net, 3);
        let before = net.nodes()[2].id().to_string();
        let reply = check(
            &net,
            request(&net, &cloud, &[(&before, tensor(&net, &before, 3))]),
            2,
        )
        .expect_err("over the cap");
        assert_eq!(reply.code, ErrorCode::Busy);
        assert!(reply.message.contains("batch of 3"), "{}", reply.message);
    }

    fn message<T: std::fmt::Debug>(result: Result<T, ErrorReply>) -> String {
        let reply = result.expect_err("refused");
        assert_eq!(reply.code, ErrorCode::BadRequest);
        reply.message
    }

    #[test]
    fn a_valid_cut_converts_its_boundary() {
        let net = lenet();
        let cloud = suffix(&net, 3);
        let before = net.nodes()[2].id().to_string();
        let part = check_(
            &net,
            request(&net, &cloud, &[(&before, tensor(&net, &before, 2))]),
        )
        .expect("valid")
        .decode(&net)
        .expect("decodes");
        assert_eq!(part.boundary.len(), 1);
        assert_eq!(part.boundary[0].0, 2);
        assert_eq!(part.boundary[0].1.shape()[0], 2);
        assert!(part.cut.cloud_mask()[net.sink()]);
    }

    #[test]
    fn every_fault_names_the_node() {
        let net = lenet();
        let cloud = suffix(&net, 3);
        let before = net.nodes()[2].id().to_string();
        let good = tensor(&net, &before, 1);
        assert!(message(check_(&net, request(&net, &[], &[]))).contains("no cloud nodes"));
        let mut with_input = cloud.clone();
        with_input.push("input");
        assert!(message(check_(&net, request(&net, &with_input, &[]))).contains("`input`"));
        let mut unknown = cloud.clone();
        unknown.push("nope");
        assert!(message(check_(&net, request(&net, &unknown, &[]))).contains("`nope`"));
        // Not successor-closed: a middle node alone.
        let middle = net.nodes()[3].id();
        assert!(message(check_(&net, request(&net, &[middle], &[]))).contains(middle));
        assert!(message(check_(&net, request(&net, &cloud, &[]))).contains(&before));
        let extra = net.nodes()[1].id().to_string();
        let msg = message(check_(
            &net,
            request(
                &net,
                &cloud,
                &[(&before, good.clone()), (&extra, tensor(&net, &extra, 1))],
            ),
        ));
        assert!(msg.contains(&extra), "{msg}");
        let wrong = WireTensor::from_f32(&[1, 3], &[0.0; 3]).expect("tensor");
        let msg = message(check_(&net, request(&net, &cloud, &[(&before, wrong)])));
        assert!(msg.contains(&before) && msg.contains("[1, 3]"), "{msg}");
    }
}
