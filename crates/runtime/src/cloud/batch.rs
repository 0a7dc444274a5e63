//! Cross-client batching. Admitted requests wait in the [`Lobby`]; the one that gets a free
//! worker leads a batch: it waits at most the batching window (from its own arrival) for the
//! batch to fill, takes the oldest waiting requests with its [`BatchKey`] while their samples
//! fit the cap, and hands them all to one worker, which concatenates their boundary tensors
//! along the batch dimension, runs the cloud part once, splits the output and answers each
//! request with its own rows ([`run`]).
//!
//! Requests share a batch when they ask for the same model and the same weights. Requests at
//! one cut (the same cloud node set) run as one pass: [`request::check`](super::request::check)
//! has already made sure that their boundary tensors are for the same nodes with the same
//! per-sample shapes. Requests at different cuts share the nodes every one of them runs: the
//! intersection of their cloud sets, which is successor-closed too and holds at least the
//! output. Each cut's own nodes run first, one pass per cut over that cut's requests, and the
//! tensors that enter the shared nodes are then joined into one pass ([`compute`]).
//!
//! Every bound of a lone request holds for a batch: each member keeps its place in the queue
//! ([`Admission`]) until it is answered, the batch's samples never exceed the cap (at most
//! `max_batch`, the bound on one request), and a member whose client stops waiting stops
//! being waited for; the compute stops at the next node once no member is waited for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use models::{Activations, Cut, HostTensor};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, warn};
use transport::{ErrorCode, ErrorReply, Inference, WireTensor};

use super::queue::{Admission, Running};
use super::request::CloudPart;
use crate::error::RuntimeError;
use crate::loaded::LoadedModel;
use crate::wire::to_wire;

/// One member's boundary tensors, by node index.
type Boundary = Vec<(usize, HostTensor)>;

/// The members of a batch at one cut: the cut, and each member's boundary tensors.
struct CutGroup {
    cut: Cut,
    boundaries: Vec<Boundary>,
}

/// What requests must share to run in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchKey {
    /// The model.
    pub model_id: String,
    /// The weights hash the client sent.
    pub weights_hash: String,
}

/// The answer a member gets.
pub(crate) type Reply = Result<Inference, ErrorReply>;

/// A request in the lobby or in a batch.
#[derive(Debug)]
pub(crate) struct Member {
    /// What it asks the cloud to run.
    pub part: CloudPart,
    /// When it arrived.
    pub arrived: Instant,
    /// Set once nobody waits for its answer.
    pub stop: Arc<AtomicBool>,
    /// Its place in the queue and where its answer goes.
    pub answer: Answer,
}

/// A request's place in the queue, held until it is answered, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Answer {
    admission: Admission,
    reply: oneshot::Sender<Reply>,
}

impl Answer {
    /// Holds `admission` until [`Answer::send`].
    pub fn new(admission: Admission, reply: oneshot::Sender<Reply>) -> Answer {
        Answer { admission, reply }
    }

    /// Frees the queue place, then sends `reply`: by the time the client reads its answer,
    /// the server's counts no longer hold the request. A client that has gone is ignored.
    pub fn send(self, reply: Reply) {
        drop(self.admission);
        let _ = self.reply.send(reply);
    }
}

/// Requests admitted and not yet in a batch, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Lobby {
    waiting: Mutex<Waiting>,
    joined: Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    next_id: u64,
    members: Vec<(u64, Arc<BatchKey>, Member)>,
}

/// A member's claim on its place in the lobby. Dropping it (the request was abandoned)
/// takes the member out if it is still there.
pub(crate) struct Ticket<'a> {
    lobby: &'a Lobby,
    id: u64,
}

impl Lobby {
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `member` in the lobby under `key`.
    pub fn join(&self, key: Arc<BatchKey>, member: Member) -> Ticket<'_> {
        let id = {
            let mut waiting = self.waiting();
            let id = waiting.next_id;
            waiting.next_id += 1;
            waiting.members.push((id, key, member));
            id
        };
        self.joined.notify_waiters();
        Ticket { lobby: self, id }
    }

    /// Samples waiting under `key`.
    fn samples(&self, key: &BatchKey) -> usize {
        self.waiting()
            .members
            .iter()
            .filter(|(_, k, _)| **k == *key)
            .map(|(_, _, m)| m.part.samples())
            .sum()
    }

    /// Takes the oldest members under `key` whose samples fit in `room`, oldest first.
    fn take(&self, key: &BatchKey, mut room: usize) -> Vec<Member> {
        let mut waiting = self.waiting();
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(waiting.members.len());
        for (id, k, member) in waiting.members.drain(..) {
            let samples = member.part.samples();
            if *k == *key && samples <= room {
                room -= samples;
                taken.push(member);
            } else {
                kept.push((id, k, member));
            }
        }
        waiting.members = kept;
        taken
    }

    /// Waits until `key` has `wanted` samples waiting or `deadline` passes, then takes the
    /// oldest members under it that fit in `room`.
    pub async fn gather(
        &self,
        key: &BatchKey,
        wanted: usize,
        room: usize,
        deadline: Instant,
    ) -> Vec<Member> {
        loop {
            let joined = self.joined.notified();
            tokio::pin!(joined);
            joined.as_mut().enable();
            if self.samples(key) >= wanted || Instant::now() >= deadline {
                break;
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            if tokio::time::timeout_at(deadline, joined).await.is_err() {
                break;
            }
        }
        self.take(key, room)
    }
}

impl Ticket<'_> {
    /// Takes this member out of the lobby to lead a batch, or `None` when another request's
    /// batch has already taken it.
    pub fn take(self) -> Option<(Arc<BatchKey>, Member)> {
        let mut waiting = self.lobby.waiting();
        let at = waiting
            .members
            .iter()
            .position(|(id, _, _)| *id == self.id)?;
        let (_, key, member) = waiting.members.remove(at);
        Some((key, member))
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.lobby
            .waiting()
            .members
            .retain(|(id, _, _)| *id != self.id);
    }
}

/// The batching window a leader waits for companions, from its own arrival.
pub(crate) fn window_end(arrived: Instant, wait_ms: f64) -> Instant {
    arrived + Duration::from_secs_f64(wait_ms.max(0.0) / 1e3)
}

/// Runs `members` (the leader first, all under one key) as one batch on this worker thread
/// and answers each. The leader's answer carries `load_ms`, the time it spent loading the
/// model. Members whose payloads do not decode are answered with that error and left out.
pub(crate) fn run(model: &LoadedModel, members: Vec<Member>, running: Running, load_ms: f64) {
    // The queue ends where the service clock starts, not when this thread gets to run: the
    // wait for a blocking thread is service time already, and counting it in both would make
    // a request's queue and compute longer than the server held it.
    let started = running.started();
    let mut boundaries = Vec::with_capacity(members.len());
    let mut ready = Vec::with_capacity(members.len());
    for (i, member) in members.into_iter().enumerate() {
        let samples = member.part.samples();
        let load_ms = if i == 0 { load_ms } else { 0.0 };
        match member.part.decode(model.model.net()) {
            Ok(decoded) => {
                boundaries.push(decoded.boundary);
                ready.push(Ready {
                    samples,
                    queue_ms: (started
                        .saturating_duration_since(member.arrived)
                        .as_secs_f64()
                        * 1e3
                        - load_ms)
                        .max(0.0),
                    decode_ms: decoded.decode_ms,
                    load_ms,
                    stop: member.stop,
                    answer: member.answer,
                    cut: decoded.cut,
                });
            }
            Err(e) => {
                member.answer.send(Err(e));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    // Members of one cut side by side, the cuts in the order they first came.
    let mut cuts: Vec<Cut> = Vec::new();
    let mut order: Vec<(usize, Ready, Boundary)> = ready
        .into_iter()
        .zip(boundaries)
        .map(|(member, boundary)| {
            let group = match cuts.iter().position(|c| *c == member.cut) {
                Some(group) => group,
                None => {
                    cuts.push(member.cut.clone());
                    cuts.len() - 1
                }
            };
            (group, member, boundary)
        })
        .collect();
    order.sort_by_key(|(group, _, _)| *group);
    let mut groups: Vec<CutGroup> = cuts
        .into_iter()
        .map(|cut| CutGroup {
            cut,
            boundaries: Vec::new(),
        })
        .collect();
    let mut ready = Vec::with_capacity(order.len());
    for (group, member, boundary) in order {
        groups[group].boundaries.push(boundary);
        ready.push(member);
    }
    let decode_ms: f64 = ready.iter().map(|m| m.decode_ms).sum();
    let stopped = || ready.iter().all(|m| m.stop.load(Ordering::Acquire));
    let output = compute(model, groups, &stopped);
    // A stopped run is no service: it stays out of the mean and the served count.
    let worker_ms = if stopped() {
        drop(running);
        0.0
    } else {
        running.finish()
    };
    // The worker's time covers decoding too; report the two apart.
    let cloud_ms = (worker_ms - decode_ms).max(0.0);
    match output.and_then(|output| split(output, &ready)) {
        Ok(outputs) => {
            debug!(requests = ready.len(), cloud_ms, "batch served");
            for (member, output) in ready.into_iter().zip(outputs) {
                member.answer.send(Ok(Inference {
                    output,
                    cloud_ms,
                    queue_ms: member.queue_ms,
                    decode_ms: member.decode_ms,
                    load_ms: member.load_ms,
                }));
            }
        }
        Err(e) => {
            warn!(error = %e, requests = ready.len(), "cloud part failed");
            let message = format!("running the cloud part failed: {e}");
            for member in ready {
                member.answer.send(Err(ErrorReply {
                    code: ErrorCode::Internal,
                    message: message.clone(),
                }));
            }
        }
    }
}

/// A member whose payloads decoded, waiting for the batch's output.
struct Ready {
    cut: Cut,
    samples: usize,
    queue_ms: f64,
    decode_ms: f64,
    load_ms: f64,
    stop: Arc<AtomicBool>,
    answer: Answer,
}

/// Runs the batch and returns its output on the host, members in `groups` order: the
/// requests of each cut, with their boundary tensors. One cut runs as one pass over its
/// members' boundaries, concatenated along the batch dimension. Several cuts share the nodes
/// all of them run: each cut's own nodes run first (one pass per cut), then the tensors that
/// enter the shared nodes, each cut's in turn, run through them as one pass.
fn compute(
    model: &LoadedModel,
    groups: Vec<CutGroup>,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<HostTensor, RuntimeError> {
    let model = &model.model;
    let net = model.net();
    let upload = |tensors: BTreeMap<usize, HostTensor>| -> Result<Activations, RuntimeError> {
        let mut values = Activations::new();
        for (v, host) in tensors {
            values.insert(v, model.upload(host)?);
        }
        Ok(values)
    };
    let mut groups = groups;
    if groups.len() == 1
        && let Some(CutGroup { cut, boundaries }) = groups.pop()
    {
        let boundary = upload(concat(boundaries)?)?;
        return Ok(model.run_cloud_until(&cut, boundary, stopped)?.to_host()?);
    }
    let shared: Vec<bool> = (0..net.len())
        .map(|v| groups.iter().all(|g| g.cut.cloud_mask()[v]))
        .collect();
    let enters_shared = |u: usize| net.consumers(u).iter().any(|&w| shared[w]);
    let mut frontiers = Vec::with_capacity(groups.len());
    for CutGroup { cut, boundaries } in groups {
        let own: Vec<bool> = cut
            .cloud_mask()
            .iter()
            .zip(&shared)
            .map(|(&mine, &all)| mine && !all)
            .collect();
        let mut frontier = Vec::new();
        let mut into_own = BTreeMap::new();
        for (v, host) in concat(boundaries)? {
            if net.consumers(v).iter().any(|&w| own[w]) {
                into_own.insert(v, host.clone());
            }
            if enters_shared(v) {
                frontier.push((v, host));
            }
        }
        if own.contains(&true) {
            for (v, value) in model.run_part(&own, upload(into_own)?)? {
                if enters_shared(v) {
                    frontier.push((v, value.to_host()?));
                }
            }
        }
        frontiers.push(frontier);
    }
    let cut = net.cut_from_mask(shared)?;
    let boundary = upload(concat(frontiers)?)?;
    Ok(model.run_cloud_until(&cut, boundary, stopped)?.to_host()?)
}

fn batch_error(reason: String) -> RuntimeError {
    RuntimeError::Tensor {
        what: "of a batch".into(),
        reason,
    }
}

/// Each node's tensors of every member, concatenated along the first (batch) dimension in
/// member order; a lone member's tensors are moved, not copied.
fn concat(boundaries: Vec<Boundary>) -> Result<BTreeMap<usize, HostTensor>, RuntimeError> {
    let mut joined: BTreeMap<usize, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (v, tensor) in boundaries.into_iter().flatten() {
        let (shape, data) = tensor.into_parts();
        match joined.get_mut(&v) {
            None => {
                if shape.is_empty() {
                    return Err(batch_error(
                        "a boundary tensor has no batch dimension".into(),
                    ));
                }
                joined.insert(v, (shape, data));
            }
            Some((joined_shape, joined_data)) => {
                if joined_shape.get(1..) != shape.get(1..) {
                    return Err(batch_error(format!(
                        "it mixes shapes {joined_shape:?} and {shape:?} for one node"
                    )));
                }
                joined_shape[0] += shape[0];
                joined_data.extend_from_slice(&data);
            }
        }
    }
    joined
        .into_iter()
        .map(|(v, (shape, data))| Ok((v, HostTensor::new(shape, data)?)))
        .collect()
}

/// The batch's output cut back into each member's rows, as wire tensors.
fn split(output: HostTensor, ready: &[Ready]) -> Result<Vec<WireTensor>, RuntimeError> {
    let total: usize = ready.iter().map(|m| m.samples).sum();
    let shape = output.shape().to_vec();
    if shape.first() != Some(&total) {
        return Err(batch_error(format!(
            "its output has shape {shape:?}, not {total} samples first"
        )));
    }
    let per_sample: usize = shape[1..].iter().product();
    let mut rows = output.data().chunks(per_sample.max(1));
    ready
        .iter()
        .map(|m| {
            let mut part_shape = shape.clone();
            part_shape[0] = m.samples;
            let data: Vec<f32> = rows.by_ref().take(m.samples).flatten().copied().collect();
            to_wire(&HostTensor::new(part_shape, data)?, "output")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], first: f32) -> HostTensor {
        let n = shape.iter().product();
        HostTensor::new(shape.to_vec(), (0..n).map(|i| first + i as f32).collect()).expect("tensor")
    }

    #[test]
    fn concatenation_stacks_samples_in_member_order() {
        let joined = concat(vec![
            vec![(2, tensor(&[1, 2], 0.0)), (5, tensor(&[1, 3], 10.0))],
            vec![(2, tensor(&[2, 2], 100.0)), (5, tensor(&[2, 3], 200.0))],
        ])
        .expect("joins");
        assert_eq!(joined[&2].shape(), [3, 2]);
        assert_eq!(joined[&2].data(), [0.0, 1.0, 100.0, 101.0, 102.0, 103.0]);
        assert_eq!(joined[&5].shape(), [3, 3]);
        assert_eq!(
            joined[&5].data()[3..],
            [200.0, 201.0, 202.0, 203.0, 204.0, 205.0]
        );
        let mixed = concat(vec![
            vec![(2, tensor(&[1, 2], 0.0))],
            vec![(2, tensor(&[1, 3], 0.0))],
        ]);
        assert!(mixed.is_err(), "shapes [1, 2] and [1, 3] cannot stack");
    }
}
