//! Where tasks come from: a tasks file, or random draws; and the networks they name.

use std::path::Path;

use models::{Net, zoo};
use partition_core::synthetic::SplitMix64;

use super::{Task, TaskInput};
use crate::error::RuntimeError;

/// How a task is written, for error messages.
const TASK_SYNTAX: &str =
    "a task is `MODEL [INPUT]`, the input a float32 .npy tensor or a JPEG or PNG image";

/// Reads a tasks file: one task per line, `MODEL [INPUT]`, where `#` starts a comment and
/// blank lines are skipped. A relative input path starts at the file's directory; a task
/// without one gets a seeded input. An error names the line at fault.
pub fn read_tasks(path: &Path) -> Result<Vec<Task>, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::TasksFile {
        path: path.to_path_buf(),
        line: None,
        reason: format!("cannot read it: {e}"),
    })?;
    parse_tasks(&text, path)
}

/// The tasks in `text`, read from the file at `path`.
fn parse_tasks(text: &str, path: &Path) -> Result<Vec<Task>, RuntimeError> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [] => {}
            [model] => tasks.push(Task {
                model: model.to_string(),
                input: TaskInput::Seeded,
            }),
            [model, input] => tasks.push(Task {
                model: model.to_string(),
                input: TaskInput::from_path(dir.join(input)),
            }),
            _ => {
                return Err(RuntimeError::TasksFile {
                    path: path.to_path_buf(),
                    line: Some(n + 1),
                    reason: format!("`{}` has {} words; {TASK_SYNTAX}", line.trim(), words.len()),
                });
            }
        }
    }
    if tasks.is_empty() {
        return Err(RuntimeError::TasksFile {
            path: path.to_path_buf(),
            line: None,
            reason: format!("it holds no tasks; write one per line ({TASK_SYNTAX})"),
        });
    }
    Ok(tasks)
}

/// `n` tasks, each a model drawn at random from `models` (blank names skipped), all with
/// seeded inputs. The same seed draws the same tasks.
pub fn random_tasks<S: AsRef<str>>(
    n: usize,
    models: &[S],
    seed: u64,
) -> Result<Vec<Task>, RuntimeError> {
    let models: Vec<&str> = models
        .iter()
        .map(|m| m.as_ref().trim())
        .filter(|m| !m.is_empty())
        .collect();
    if n == 0 {
        return Err(RuntimeError::Config {
            name: "task count",
            reason: "0 gives no tasks; draw at least 1".into(),
        });
    }
    if models.is_empty() {
        return Err(RuntimeError::Config {
            name: "models",
            reason: "no model to draw from; name at least one, e.g. alexnet,resnet18".into(),
        });
    }
    let mut rng = SplitMix64::new(seed);
    Ok((0..n)
        .map(|_| Task {
            model: models[(rng.next_u64() % models.len() as u64) as usize].to_string(),
            input: TaskInput::Seeded,
        })
        .collect())
}

/// The networks `tasks` name, each once, in the order first named: the network in `specs`
/// with that name, or else the zoo model.
pub fn task_networks(tasks: &[Task], specs: &[Net]) -> Result<Vec<Net>, RuntimeError> {
    let mut nets: Vec<Net> = Vec::new();
    for task in tasks {
        if nets.iter().any(|n| n.name() == task.model) {
            continue;
        }
        if let Some(net) = specs.iter().find(|n| n.name() == task.model) {
            nets.push(net.clone());
            continue;
        }
        let net = zoo::build(&task.model).map_err(|e| {
            let names: Vec<&str> = specs.iter().map(Net::name).collect();
            RuntimeError::TaskModel {
                model: task.model.clone(),
                reason: format!(
                    "it is not one of the networks given ({}), and {e}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            }
        })?;
        nets.push(net);
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_a_model_and_an_optional_input() {
        let path = Path::new("queues/q.txt");
        let text = "# queue\nlenet\n\nresnet18 x.npy  # with input\nalexnet cat.jpg\n";
        let tasks = parse_tasks(text, path).expect("parses");
        assert_eq!(
            tasks,
            vec![
                Task {
                    model: "lenet".into(),
                    input: TaskInput::Seeded,
                },
                Task {
                    model: "resnet18".into(),
                    input: TaskInput::Tensor("queues/x.npy".into()),
                },
                Task {
                    model: "alexnet".into(),
                    input: TaskInput::Image("queues/cat.jpg".into()),
                },
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let path = Path::new("q.txt");
        let err = parse_tasks("lenet\n\nlenet a.npy b.npy\n", path)
            .expect_err("three words")
            .to_string();
        assert!(
            err.starts_with("tasks file q.txt:3: `lenet a.npy b.npy` has 3 words")
                && err.contains("MODEL [INPUT]"),
            "{err}"
        );
        let err = parse_tasks("# nothing\n\n", path)
            .expect_err("no tasks")
            .to_string();
        assert!(err.contains("q.txt") && err.contains("no tasks"), "{err}");
    }

    #[test]
    fn random_draws_repeat_for_a_seed_and_use_every_model() {
        let names = |seed| -> Vec<String> {
            random_tasks(30, &["lenet", " alexnet ", ""], seed)
                .expect("tasks")
                .into_iter()
                .map(|t| t.model)
                .collect()
        };
        assert_eq!(names(4), names(4));
        assert_ne!(names(4), names(5));
        assert!(names(4).iter().all(|m| m == "lenet" || m == "alexnet"));
        assert!(names(4).iter().any(|m| m == "lenet") && names(4).iter().any(|m| m == "alexnet"));
    }

    #[test]
    fn random_draws_keep_the_sequence_of_earlier_releases() {
        // `cutpoint-edge tasks --random 8 --seed 3` over two models has always drawn these:
        // SplitMix64 from the seed, each draw the next value modulo the number of models.
        let drawn: Vec<String> = random_tasks(8, &["a", "b"], 3)
            .expect("tasks")
            .into_iter()
            .map(|t| t.model)
            .collect();
        assert_eq!(drawn, DRAWS_SEED3);
    }

    const DRAWS_SEED3: [&str; 8] = ["b", "b", "b", "b", "a", "b", "a", "a"];

    #[test]
    fn an_empty_draw_says_what_to_give() {
        let err = random_tasks(0, &["lenet"], 1)
            .expect_err("no tasks")
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
        let err = random_tasks(3, &[" "], 1)
            .expect_err("no models")
            .to_string();
        assert!(err.contains("name at least one"), "{err}");
    }

    #[test]
    fn task_models_come_from_the_specs_then_the_zoo() {
        let small = zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18");
        let mut spec = small.to_spec();
        spec.name = "resnet18_32".into();
        let small = Net::from_spec(&spec).expect("renamed");
        let tasks = random_tasks(10, &["lenet", "resnet18_32"], 0).expect("tasks");
        let nets = task_networks(&tasks, std::slice::from_ref(&small)).expect("networks");
        let mut names: Vec<&str> = nets.iter().map(Net::name).collect();
        names.sort_unstable();
        assert_eq!(names, ["lenet", "resnet18_32"]);
        let err = task_networks(&tasks, &[])
            .expect_err("no such zoo model")
            .to_string();
        assert!(
            err.contains("resnet18_32") && err.contains("none") && err.contains("lenet"),
            "{err}"
        );
    }
}
