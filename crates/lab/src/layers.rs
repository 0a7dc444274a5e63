//! Neurosurgeon's layer characterisation: each layer's latency and output size on this machine
//! ([`measure_layers`]), as a report, a table and a CSV.

use std::fmt::Write as _;

use models::{Backend, CacheScrub, HostTensor, Kernels, LayerTiming, Model, VectorPath};
use runtime::Table;
use serde::Serialize;

use crate::error::LabError;

/// How each layer is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMode {
    /// One by one, warm ([`Model::time_layers`]).
    Alone,
    /// Inside whole forward passes, each from the end of the one before it
    /// ([`Model::time_in_pass`]).
    InPass,
    /// One by one, with the caches evicted before each run ([`Model::time_layers_cold`]).
    Cold,
}

impl TimingMode {
    /// `alone`, `in-pass` or `cold`, as reports name it.
    pub fn name(self) -> &'static str {
        match self {
            TimingMode::Alone => "alone",
            TimingMode::InPass => "in-pass",
            TimingMode::Cold => "cold",
        }
    }

    /// What the mode means, for the text report.
    fn explanation(self) -> &'static str {
        match self {
            TimingMode::InPass => {
                "each layer inside whole passes, from the end of the layer before it"
            }
            TimingMode::Cold => {
                "each layer one by one after evicting the caches, so its weights come from memory as in a pass of a network larger than the cache"
            }
            TimingMode::Alone => {
                "each layer one by one, warm, whereas in a pass each finds the cache holding the previous layer's data; --in-pass times them there"
            }
        }
    }
}

/// What to measure: the runs and the mode, and for the report the backend, kernels and batch.
#[derive(Debug, Clone, Copy)]
pub struct LayersConfig {
    /// The backend the model runs on.
    pub backend: Backend,
    /// The kernels it runs with.
    pub kernels: Kernels,
    /// Samples per batch (the input's first dimension).
    pub batch: u32,
    /// Unmeasured runs before the measured ones.
    pub warmup: u32,
    /// Measured runs; the median is reported.
    pub runs: u32,
    /// How each layer is timed.
    pub mode: TimingMode,
}

/// `cutpoint-edge layers --json`: every node's median time and output size, their sum, and a
/// whole forward pass for comparison.
#[derive(Debug, Clone, Serialize)]
pub struct LayersReport {
    /// The network's name.
    pub model: String,
    /// The backend.
    pub backend: &'static str,
    /// The kernels.
    pub kernels: &'static str,
    /// The vector instructions cutpoint's own kernels ran (`avx512`, `avx2` or `other`).
    pub vector_path: &'static str,
    /// Samples per batch.
    pub batch: u32,
    /// Unmeasured runs.
    pub warmup: u32,
    /// Measured runs.
    pub runs: u32,
    /// How the layers were timed: `in-pass` (inside whole passes), `alone` (one by one, warm)
    /// or `cold` (one by one, caches evicted before each run).
    pub timing: &'static str,
    /// The layers' medians summed, ms.
    pub total_ms: f64,
    /// A whole forward pass's median, ms.
    pub forward_median_ms: f64,
    /// One row per node.
    pub layers: Vec<LayerRow>,
    /// The mode, for the text.
    #[serde(skip)]
    mode: TimingMode,
}

/// One node's median time and output size.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    /// The node's id.
    pub id: String,
    /// Its layer kind.
    pub kind: &'static str,
    /// Its median latency, ms.
    pub median_ms: f64,
    /// Its output's size, bytes.
    pub out_bytes: u64,
}

/// Times a whole forward pass of `model` on `input`, then every layer as `config.mode` says;
/// returns the report and the timings (for [`layers_csv`] and the figure).
pub fn measure_layers(
    model: &Model,
    input: HostTensor,
    config: &LayersConfig,
) -> Result<(LayersReport, Vec<LayerTiming>), LabError> {
    let (warmup, runs) = (config.warmup as usize, config.runs as usize);
    let forward_median_ms = model.time_forward(&input, warmup, runs)?;
    let timings = match config.mode {
        TimingMode::InPass => model.time_in_pass(input, warmup, runs),
        TimingMode::Cold => {
            model.time_layers_cold(input, warmup, runs, &mut CacheScrub::for_this_machine())
        }
        TimingMode::Alone => model.time_layers(input, warmup, runs),
    }?;
    let report = LayersReport {
        model: model.net().name().to_string(),
        backend: config.backend.name(),
        kernels: config.kernels.name(),
        vector_path: VectorPath::current().name(),
        batch: config.batch,
        warmup: config.warmup,
        runs: config.runs,
        timing: config.mode.name(),
        total_ms: timings.iter().map(|t| t.median_ms).sum(),
        forward_median_ms,
        layers: timings
            .iter()
            .map(|t| LayerRow {
                id: t.id.clone(),
                kind: t.kind,
                median_ms: t.median_ms,
                out_bytes: t.out_bytes,
            })
            .collect(),
        mode: config.mode,
    };
    Ok((report, timings))
}

impl LayersReport {
    /// The report as a table, one row per node and the total, then the whole pass and how the
    /// layers were timed.
    pub fn render(&self) -> String {
        let mut table = Table::new(&["node", "kind", "median_ms", "out_bytes"]);
        for t in &self.layers {
            table.row(vec![
                t.id.clone(),
                t.kind.to_string(),
                format!("{:.3}", t.median_ms),
                t.out_bytes.to_string(),
            ]);
        }
        table.row(vec![
            "total".into(),
            String::new(),
            format!("{:.3}", self.total_ms),
            String::new(),
        ]);
        let mut out = table.render();
        let _ = writeln!(
            out,
            "A whole forward pass: {:.3} ms (median of {}). Timing: {} ({}). Vector path: {}.",
            self.forward_median_ms,
            self.runs,
            self.timing,
            self.mode.explanation(),
            self.vector_path
        );
        out
    }
}

/// One row per node: `node,kind,median_ms,out_bytes`.
pub fn layers_csv(timings: &[LayerTiming]) -> String {
    let mut out = String::from("node,kind,median_ms,out_bytes\n");
    for t in timings {
        // Node ids are module paths (letters, digits, `.`, `_`); quote anything else.
        let id = if t.id.contains([',', '"', '\n']) {
            format!("\"{}\"", t.id.replace('"', "\"\""))
        } else {
            t.id.clone()
        };
        let _ = writeln!(out, "{id},{},{:.6},{}", t.kind, t.median_ms, t.out_bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(id: &str, ms: f64, bytes: u64) -> LayerTiming {
        LayerTiming {
            node: 0,
            id: id.into(),
            kind: "conv2d",
            median_ms: ms,
            out_bytes: bytes,
        }
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_node() {
        let text = layers_csv(&[timing("input", 0.0, 16), timing("a,b", 1.5, 8)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "node,kind,median_ms,out_bytes");
        assert_eq!(lines[1], "input,conv2d,0.000000,16");
        assert_eq!(lines[2], "\"a,b\",conv2d,1.500000,8");
    }

    #[test]
    fn every_node_is_timed_and_the_text_says_how() {
        let net = models::zoo::build("lenet").expect("lenet");
        let input = models::seeded_input(&net, 1, 0).expect("input");
        let model = runtime::LoadedModel::load(net, &Default::default(), Backend::Flex)
            .expect("model")
            .model;
        let config = LayersConfig {
            backend: Backend::Flex,
            kernels: Kernels::default(),
            batch: 1,
            warmup: 0,
            runs: 1,
            mode: TimingMode::InPass,
        };
        let (report, timings) = measure_layers(&model, input, &config).expect("measured");
        assert_eq!(report.layers.len(), model.net().len());
        assert_eq!(timings.len(), report.layers.len());
        assert_eq!(report.timing, "in-pass");
        let text = report.render();
        assert!(
            text.contains("Timing: in-pass (each layer inside whole passes"),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("total")), "{text}");
    }
}
