//! A queue of inference tasks against the cloud (Neurosurgeon's multi-task mode), as
//! `cutpoint-edge tasks` runs it.
//!
//! - [`Task`] and [`TaskInput`]: what to run, on what; [`read_tasks`] reads them from a file
//!   (`MODEL [INPUT]` per line) and [`random_tasks`] draws them; [`task_networks`] finds the
//!   networks they name.
//! - [`TaskQueue`]: one [`crate::EdgeSession`] per model, connected together, while a
//!   background monitor keeps each connection's bandwidth estimate fresh so that every plan
//!   uses a recent one.
//! - [`TaskRecord`] and [`TaskSummary`]: what became of each task, and the latency statistics,
//!   cut changes, fallbacks and failures over the queue; both serialise to the JSON of
//!   `cutpoint-edge tasks --json` and print as its text lines.

mod file;
mod queue;
mod report;

use std::path::{Path, PathBuf};

pub use file::{random_tasks, read_tasks, task_networks};
pub use queue::{MAX_PIPELINE, QueueConfig, TaskQueue};
pub use report::{
    Latency, QueueModel, TaskDone, TaskRecord, TaskReport, TaskResult, TaskSummary, percentile,
};

/// One inference task: a model, and the input to run it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The model's name: a zoo model or a network registered with the queue's sessions.
    pub model: String,
    /// What it runs on.
    pub input: TaskInput,
}

/// A task's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInput {
    /// A seeded random sample ([`models::seeded_input`]); the queue seeds each task with its
    /// [`QueueConfig::seed`] plus the task's number (from 1), so a queue repeats exactly.
    Seeded,
    /// A float32 `.npy` tensor: a batch, or one sample ([`crate::read_npy_input`]).
    Tensor(PathBuf),
    /// A JPEG or PNG file, which the planner may send as it is or decode on the edge
    /// ([`crate::read_image_file`]); the model must take ImageNet's 3x224x224.
    Image(PathBuf),
}

impl TaskInput {
    /// The input held in the file at `path`: an image for a `.jpg`, `.jpeg` or `.png` name
    /// (any case), else a tensor.
    pub fn from_path(path: PathBuf) -> TaskInput {
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()));
        if is_image {
            TaskInput::Image(path)
        } else {
            TaskInput::Tensor(path)
        }
    }

    /// The input's file; `None` for a seeded input.
    pub fn path(&self) -> Option<&Path> {
        match self {
            TaskInput::Seeded => None,
            TaskInput::Tensor(path) | TaskInput::Image(path) => Some(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_told_by_their_extension() {
        assert_eq!(
            TaskInput::from_path("a/cat.JPG".into()),
            TaskInput::Image("a/cat.JPG".into())
        );
        assert_eq!(
            TaskInput::from_path("dog.png".into()),
            TaskInput::Image("dog.png".into())
        );
        let tensor = TaskInput::from_path("x.npy".into());
        assert_eq!(tensor, TaskInput::Tensor("x.npy".into()));
        assert_eq!(tensor.path(), Some(Path::new("x.npy")));
        assert_eq!(TaskInput::Seeded.path(), None);
    }
}
