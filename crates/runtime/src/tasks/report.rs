//! What a task queue reports: a [`TaskRecord`] per task and a [`TaskSummary`] over them, as
//! JSON (`Serialize`) and as the text lines of `cutpoint-edge tasks` (`Display`).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::TaskInput;
use crate::cut_report::CutReport;

/// What became of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    /// The task's number in the queue, from 1.
    pub index: usize,
    /// The model it ran.
    pub model: String,
    /// Its input; serialised as the file's path, or `null` for a seeded input.
    #[serde(serialize_with = "input_path")]
    pub input: TaskInput,
    /// The cut and the times, or why it failed.
    #[serde(flatten)]
    pub result: TaskResult,
}

/// A task that ran, or the reason it did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskResult {
    /// It ran (on the cloud as planned, or locally as a fallback).
    Done(Box<TaskDone>),
    /// It failed: its input could not be read, or the cloud refused it.
    Failed {
        /// What went wrong, on one line.
        error: String,
    },
}

/// A task that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDone {
    /// The cut it ran at.
    pub cut: CutReport,
    /// The cut in a few words ([`crate::Outcome::cut_summary`]), for the text line.
    #[serde(skip)]
    pub cut_summary: String,
    /// The plan's predicted latency, ms.
    pub predicted_ms: f64,
    /// The plan's predicted edge energy, mJ, when its session plans for energy
    /// ([`crate::EdgeConfig::objective`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_mj: Option<f64>,
    /// The plan's predicted time per frame of a pipelined stream (its slowest stage), ms, when
    /// its session plans for the stream objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_frame_ms: Option<f64>,
    /// The measured latency, ms.
    pub measured_ms: f64,
    /// Whether the cut differs from the previous task of the same model (a model's first task
    /// is no change).
    pub cut_changed: bool,
    /// Why it ran locally although its plan used the cloud; `None` when it ran as planned.
    pub fallback: Option<String>,
}

impl TaskRecord {
    /// The task when it ran; `None` when it failed.
    pub fn done(&self) -> Option<&TaskDone> {
        match &self.result {
            TaskResult::Done(done) => Some(done),
            TaskResult::Failed { .. } => None,
        }
    }

    /// The column heads above the records' text lines.
    pub fn table_header() -> String {
        format!(
            "{:>4}  {:<14}  {:<36}  {:>12}  {:>11}",
            "#", "model", "cut", "predicted ms", "measured ms"
        )
    }
}

/// The task's line of text: its number, model, cut, predicted and measured ms, and whether
/// the cut changed or the task fell back; or its error.
impl fmt::Display for TaskRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>4}  {:<14}", self.index, self.model)?;
        let done = match &self.result {
            TaskResult::Failed { error } => return write!(f, "  error: {error}"),
            TaskResult::Done(done) => done,
        };
        write!(
            f,
            "  {:<36}  {:>12.2}  {:>11.2}",
            done.cut_summary, done.predicted_ms, done.measured_ms
        )?;
        if let Some(mj) = done.predicted_mj {
            write!(f, "  {mj:.1} mJ predicted")?;
        }
        if let Some(ms) = done.predicted_frame_ms {
            write!(f, "  {ms:.2} ms/frame predicted")?;
        }
        if done.cut_changed {
            write!(f, "  (cut changed)")?;
        }
        if let Some(reason) = &done.fallback {
            write!(f, "  fallback: {reason}")?;
        }
        Ok(())
    }
}

/// A task input as JSON: the file's path, or `null` for a seeded input.
fn input_path<S: Serializer>(input: &TaskInput, serializer: S) -> Result<S::Ok, S::Error> {
    match input.path() {
        Some(path) => serializer.serialize_str(&path.display().to_string()),
        None => serializer.serialize_none(),
    }
}

/// Counts and latency statistics over a queue's records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSummary {
    /// Tasks in the queue.
    pub tasks: usize,
    /// Tasks that ran.
    pub completed: usize,
    /// Tasks that failed.
    pub failed: usize,
    /// Tasks that ran locally although their plans used the cloud.
    pub fallbacks: usize,
    /// Tasks whose cut differs from the previous task of the same model.
    pub cut_changes: usize,
    /// The measured latency of the tasks that ran.
    pub latency_ms: Latency,
    /// The predicted edge energy of the tasks that ran, summed, mJ; absent when no task's
    /// session planned for energy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_energy_mj: Option<f64>,
    /// Bandwidth probes the link monitor ran while the queue ran.
    pub monitor_probes: u64,
    /// Frames in flight at once ([`super::QueueConfig::pipeline`]); 1 runs the tasks one by one.
    pub pipeline: usize,
    /// From the first task's start to the last one's end, ms.
    pub wall_ms: f64,
    /// Tasks that ran per second of `wall_ms`.
    pub throughput_per_s: f64,
}

/// Latency statistics, ms; `None` when no task ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// The mean.
    pub mean: Option<f64>,
    /// The median (nearest rank).
    pub p50: Option<f64>,
    /// The 95th percentile (nearest rank).
    pub p95: Option<f64>,
}

impl TaskSummary {
    /// The summary of `records`, with the monitor's probe count, the pipeline's depth and the
    /// run's wall time.
    pub fn of(
        records: &[TaskRecord],
        monitor_probes: u64,
        pipeline: usize,
        wall: Duration,
    ) -> TaskSummary {
        let wall_ms = wall.as_secs_f64() * 1e3;
        let done: Vec<&TaskDone> = records.iter().filter_map(TaskRecord::done).collect();
        let mut latencies: Vec<f64> = done.iter().map(|d| d.measured_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let mean =
            (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
        TaskSummary {
            tasks: records.len(),
            completed: done.len(),
            failed: records.len() - done.len(),
            fallbacks: done.iter().filter(|d| d.fallback.is_some()).count(),
            cut_changes: done.iter().filter(|d| d.cut_changed).count(),
            latency_ms: Latency {
                mean,
                p50: percentile(&latencies, 50.0),
                p95: percentile(&latencies, 95.0),
            },
            predicted_energy_mj: done
                .iter()
                .filter_map(|d| d.predicted_mj)
                .reduce(|a, b| a + b),
            monitor_probes,
            pipeline,
            wall_ms,
            throughput_per_s: if wall_ms > 0.0 {
                done.len() as f64 * 1e3 / wall_ms
            } else {
                0.0
            },
        }
    }
}

/// Two lines: the counts, then the latency statistics.
impl fmt::Display for TaskSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        writeln!(
            f,
            "summary: {} tasks, {} completed, {} failed; {} fallbacks; {} cut changes; {} link probes by the monitor",
            self.tasks,
            self.completed,
            self.failed,
            self.fallbacks,
            self.cut_changes,
            self.monitor_probes
        )?;
        write!(
            f,
            "latency (measured, ms): mean {}, p50 {}, p95 {}",
            ms(self.latency_ms.mean),
            ms(self.latency_ms.p50),
            ms(self.latency_ms.p95)
        )?;
        if let Some(mj) = self.predicted_energy_mj {
            write!(f, "\nedge energy (predicted, mJ): {mj:.1} in all")?;
        }
        let how = if self.pipeline > 1 {
            format!("pipelined, {} frames in flight", self.pipeline)
        } else {
            "one task at a time".to_string()
        };
        write!(
            f,
            "\nthroughput: {:.2} tasks/s ({} tasks in {:.0} ms, {how})",
            self.throughput_per_s, self.completed, self.wall_ms
        )
    }
}

/// Everything a queue run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// A record per task, in queue order.
    pub tasks: Vec<TaskRecord>,
    /// The statistics over them.
    pub summary: TaskSummary,
}

/// A model of a queue and where its planner's costs came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueModel {
    /// The model's name.
    pub model: String,
    /// Where its costs came from ([`crate::Costs::session`]).
    pub costs: String,
}

/// The `p`-th percentile (nearest rank) of sorted values; `None` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    fn failed(index: usize) -> TaskRecord {
        TaskRecord {
            index,
            model: "lenet".into(),
            input: TaskInput::Tensor("x.npy".into()),
            result: TaskResult::Failed {
                error: "input file x.npy: missing".into(),
            },
        }
    }

    #[test]
    fn failures_count_and_print_their_error() {
        let summary = TaskSummary::of(&[failed(1), failed(2)], 0, 1, Duration::from_secs(1));
        assert_eq!(
            (summary.tasks, summary.completed, summary.failed),
            (2, 0, 2)
        );
        assert_eq!(summary.latency_ms.mean, None);
        assert!(summary.to_string().contains("mean -, p50 -, p95 -"));
        assert_eq!(summary.throughput_per_s, 0.0);
        assert!(
            summary
                .to_string()
                .ends_with("throughput: 0.00 tasks/s (0 tasks in 1000 ms, one task at a time)")
        );
        let line = failed(7).to_string();
        assert!(line.starts_with("   7  lenet"), "{line}");
        assert!(
            line.ends_with("  error: input file x.npy: missing"),
            "{line}"
        );
        let json = serde_json::to_value(failed(7)).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "index": 7,
                "model": "lenet",
                "input": "x.npy",
                "error": "input file x.npy: missing",
            })
        );
    }
}
