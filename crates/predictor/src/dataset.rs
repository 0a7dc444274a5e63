//! Sweep data on disk: one CSV per layer class, with the conditions it was measured under.
//!
//! ```text
//! # cutpoint sweep
//! # schema_version=9
//! # crate_version=0.1.0
//! # class=conv
//! # device=host (CPU model)
//! # backend=flex
//! # threads=2
//! # cpu_quota=none
//! kind,input_shapes,flops,params,out_bytes,median_ms,layer,kernel,residual
//! conv2d,64x56x56,231211008,36928,802816,4.21,"{""kind"":""conv2d"",...}",winograd-f4,false
//! ```
//!
//! `layer` is the layer kind in model-spec JSON, so that every row can be re-featurised;
//! `kernel` names the kernel that ran a convolution ([`ConvKernel::name`]), empty for other
//! layers, and `residual` says whether it added a residual block's shortcut in its epilogue
//! ([`ConvRun`]): both depend on the network the layer ran in, not on its spec alone.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use models::{ConvKernel, ConvRun, LayerKind, LayerSpec};
use serde::{Deserialize, Serialize};

use crate::class::LayerClass;
use crate::error::PredictorError;
use crate::features::FEATURE_SCHEMA_VERSION;
use crate::rounds::Steadiness;

/// The conditions a sweep ran under; written at the top of each CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepMeta {
    /// Host and CPU model.
    pub device: String,
    /// Burn backend name.
    pub backend: String,
    /// Threads available to the sweep.
    pub threads: usize,
    /// CPU quota the sweep ran under, if any.
    pub cpu_quota: Option<f64>,
}

/// One measured layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The layer's spec (kind and shapes).
    pub spec: LayerSpec,
    /// How it ran, for a convolution ([`ConvRun::of_net`] of the network it was timed in):
    /// its kernel, and whether it added a residual.
    pub conv: Option<ConvRun>,
    /// Median latency, in ms.
    pub median_ms: f64,
}

#[derive(Serialize, Deserialize)]
struct Row {
    kind: String,
    input_shapes: String,
    flops: u64,
    params: u64,
    out_bytes: u64,
    median_ms: f64,
    layer: String,
    kernel: String,
    residual: bool,
}

/// The CSV file of one class in a sweep directory.
pub fn csv_path(dir: &Path, class: LayerClass) -> PathBuf {
    dir.join(format!("{}.csv", class.name()))
}

/// The directory, inside sweep directory `dir`, of one network's layers timed inside its
/// forward passes: one CSV per class, like the sweep's own.
pub fn in_pass_dir(dir: &Path, model: &str) -> PathBuf {
    in_pass_root(dir).join(model)
}

/// The directory, inside sweep directory `dir`, of the networks timed inside their passes
/// (each in its [`in_pass_dir`]), which also holds the sweep's [`PassTime`].
pub fn in_pass_root(dir: &Path) -> PathBuf {
    dir.join("in-pass")
}

/// A network's whole forward pass against its nodes timed inside passes, as the sweep
/// measured both: what a pass costs beyond its nodes (handing the pass to a worker thread and
/// back, waking it; setting the pass up), which no node's time holds. The sweep keeps its
/// probe's ([`in_pass_root`]`/pass.csv`), whose one node takes next to nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassTime {
    /// Median of whole forward passes, timed as an application runs one, ms.
    pub whole_ms: f64,
    /// Every node's in-pass time (its median, scaled so that the nodes add up to the median of
    /// the passes' sums), added up, ms.
    pub nodes_ms: f64,
    /// The guard's anchor through the rounds that timed these passes
    /// ([`SpellGuard::calm_since`](crate::SpellGuard::calm_since)), ms: how fast the machine
    /// ran while they were timed (0 where a sweep did not record it).
    #[serde(default)]
    pub anchor_ms: f64,
}

impl PassTime {
    /// What a pass costs beyond its nodes, ms (never below 0).
    pub fn overhead_ms(&self) -> f64 {
        (self.whole_ms - self.nodes_ms).max(0.0)
    }

    /// Writes it into directory `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), PredictorError> {
        write_row(dir, PASS_FILE, self)
    }

    /// Reads it from directory `dir`; `None` where the sweep did not write one.
    pub fn read(dir: &Path) -> Result<Option<PassTime>, PredictorError> {
        read_row(dir, PASS_FILE, |pass: &PassTime| {
            let time = |ms: f64| ms.is_finite() && ms >= 0.0;
            if !(time(pass.whole_ms) && time(pass.nodes_ms) && time(pass.anchor_ms)) {
                return Err(format!(
                    "times must be finite and not negative, not {}, {} and {}",
                    pass.whole_ms, pass.nodes_ms, pass.anchor_ms
                ));
            }
            Ok(())
        })
    }
}

/// The file of a sweep's [`in_pass_root`] that holds its probe's [`PassTime`].
const PASS_FILE: &str = "pass.csv";

/// The file of a sweep directory that holds how steady the machine was through the sweep.
const STEADINESS_FILE: &str = "steadiness.csv";

impl Steadiness {
    /// Writes it into sweep directory `dir` (replacing an earlier run's: a resumed sweep's
    /// file tells of its last run).
    pub fn write(&self, dir: &Path) -> Result<(), PredictorError> {
        write_row(dir, STEADINESS_FILE, self)
    }

    /// Reads it from sweep directory `dir`; `None` where the sweep did not write one.
    pub fn read(dir: &Path) -> Result<Option<Steadiness>, PredictorError> {
        read_row(dir, STEADINESS_FILE, |s: &Steadiness| {
            let time = |ms: f64| ms.is_finite() && ms >= 0.0;
            if !time(s.calm_ms) || !time(s.fastest_ms) || s.slow_kept > s.kept {
                return Err(format!(
                    "the reference pass's calm and fastest times must be finite and not negative (not {} and {}) and the slow rounds kept at most the rounds kept ({} of {})",
                    s.calm_ms, s.fastest_ms, s.slow_kept, s.kept
                ));
            }
            Ok(())
        })
    }
}

/// Writes `row` as the one row of CSV file `name` in directory `dir`.
fn write_row<T: Serialize>(dir: &Path, name: &str, row: &T) -> Result<(), PredictorError> {
    let path = dir.join(name);
    fs::create_dir_all(dir).map_err(|e| PredictorError::io("cannot create", dir, e))?;
    let io = |e: std::io::Error| PredictorError::io("cannot write", &path, e);
    let mut writer = csv::Writer::from_path(&path).map_err(|e| io(std::io::Error::other(e)))?;
    writer
        .serialize(row)
        .map_err(|e| io(std::io::Error::other(e)))?;
    writer.flush().map_err(io)
}

/// Reads the one row of CSV file `name` in directory `dir`, refusing it (naming the file) where
/// it is damaged or `check` finds it wrong; `None` where there is no such file.
fn read_row<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Option<T>, PredictorError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let bad = |reason: String| PredictorError::BadData {
        path: path.clone(),
        reason: format!("{reason}; run `profile` again"),
    };
    let mut reader =
        csv::Reader::from_path(&path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let row: T = reader
        .deserialize()
        .next()
        .ok_or_else(|| bad("it holds no row".into()))?
        .map_err(|e| bad(format!("its row is damaged ({e})")))?;
    check(&row).map_err(bad)?;
    Ok(Some(row))
}

/// The networks whose layers were timed inside their passes in sweep directory `dir`, by
/// name, in order.
pub fn in_pass_models(dir: &Path) -> Result<Vec<String>, PredictorError> {
    let root = in_pass_root(dir);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let entries = fs::read_dir(&root).map_err(|e| PredictorError::io("cannot read", &root, e))?;
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PredictorError::io("cannot read", &root, e))?;
        if entry.path().is_dir() {
            models.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    models.sort();
    Ok(models)
}

fn shapes_text(shapes: &[Vec<usize>]) -> String {
    shapes
        .iter()
        .map(|s| s.iter().map(usize::to_string).collect::<Vec<_>>().join("x"))
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_shapes(text: &str) -> Option<Vec<Vec<usize>>> {
    text.split(';')
        .map(|s| s.split('x').map(|d| d.parse().ok()).collect())
        .collect()
}

/// Appends measurements to a class's CSV, writing the header first if the file is new.
pub struct CsvSink {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl CsvSink {
    /// Opens `dir`'s CSV for `class`. An existing file must have been written under the same
    /// conditions (`meta`), so that an interrupted sweep resumes rather than mixes machines.
    /// Returns the sink and the number of rows already there.
    pub fn open(
        dir: &Path,
        class: LayerClass,
        meta: &SweepMeta,
    ) -> Result<(CsvSink, usize), PredictorError> {
        fs::create_dir_all(dir).map_err(|e| PredictorError::io("cannot create", dir, e))?;
        let path = csv_path(dir, class);
        let existing = if path.exists() {
            let (found, rows) = read_class(&path)?;
            if found != *meta {
                return Err(PredictorError::BadData {
                    path,
                    reason: format!(
                        "it was measured on {} (backend {}, quota {}), not on this setup ({}, backend {}, quota {}); sweep into another --out directory",
                        found.device,
                        found.backend,
                        quota_text(found.cpu_quota),
                        meta.device,
                        meta.backend,
                        quota_text(meta.cpu_quota)
                    ),
                });
            }
            Some(rows.len())
        } else {
            None
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PredictorError::io("cannot open", &path, e))?;
        if existing.is_none() {
            let header = format!(
                "# cutpoint sweep\n# schema_version={FEATURE_SCHEMA_VERSION}\n# crate_version={}\n# class={}\n# device={}\n# backend={}\n# threads={}\n# cpu_quota={}\nkind,input_shapes,flops,params,out_bytes,median_ms,layer,kernel,residual\n",
                env!("CARGO_PKG_VERSION"),
                class.name(),
                meta.device,
                meta.backend,
                meta.threads,
                quota_text(meta.cpu_quota),
            );
            file.write_all(header.as_bytes())
                .map_err(|e| PredictorError::io("cannot write", &path, e))?;
        }
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        Ok((CsvSink { path, writer }, existing.unwrap_or(0)))
    }

    /// Appends one measurement and flushes it, so that an interruption loses nothing.
    pub fn push(&mut self, m: &Measurement) -> Result<(), PredictorError> {
        let row = Row {
            kind: m.spec.kind.name().to_string(),
            input_shapes: shapes_text(&m.spec.input_shapes),
            flops: m.spec.flops,
            params: m.spec.params,
            out_bytes: m.spec.out_bytes,
            median_ms: m.median_ms,
            layer: serde_json::to_string(&m.spec.kind).unwrap_or_default(),
            kernel: m.conv.map_or("", |c| c.kernel.name()).to_string(),
            residual: m.conv.is_some_and(|c| c.residual),
        };
        let io = |e: std::io::Error| PredictorError::io("cannot write", &self.path, e);
        self.writer
            .serialize(row)
            .map_err(|e| io(std::io::Error::other(e)))?;
        self.writer.flush().map_err(io)
    }
}

fn quota_text(quota: Option<f64>) -> String {
    quota.map_or_else(|| "none".into(), |q| q.to_string())
}

/// Reads one class's CSV: its conditions and its measurements.
pub fn read_class(path: &Path) -> Result<(SweepMeta, Vec<Measurement>), PredictorError> {
    let bad = |reason: String| PredictorError::BadData {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| PredictorError::io("cannot read", path, e))?;
    let mut fields = BTreeMap::new();
    for line in BufReader::new(&file).lines() {
        let line = line.map_err(|e| PredictorError::io("cannot read", path, e))?;
        let Some(comment) = line.strip_prefix("# ") else {
            break;
        };
        if let Some((k, v)) = comment.split_once('=') {
            fields.insert(k.to_string(), v.to_string());
        }
    }
    let field = |k: &str| {
        fields.get(k).cloned().ok_or_else(|| {
            bad(format!(
                "the header has no `{k}` line; was it written by `profile`?"
            ))
        })
    };
    let schema: u32 = field("schema_version")?
        .parse()
        .map_err(|_| bad("schema_version is not a number".into()))?;
    if schema != FEATURE_SCHEMA_VERSION {
        return Err(bad(format!(
            "schema version {schema}, but this build reads version {FEATURE_SCHEMA_VERSION}; run the sweep again"
        )));
    }
    let quota = field("cpu_quota")?;
    let meta = SweepMeta {
        device: field("device")?,
        backend: field("backend")?,
        threads: field("threads")?
            .parse()
            .map_err(|_| bad("threads is not a number".into()))?,
        cpu_quota: if quota == "none" {
            None
        } else {
            Some(
                quota
                    .parse()
                    .map_err(|_| bad(format!("cpu_quota `{quota}` is not a number")))?,
            )
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| bad(e.to_string()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let line = i + 1;
        let row = row.map_err(|e| bad(format!("row {line}: {e}")))?;
        let kind: LayerKind = serde_json::from_str(&row.layer).map_err(|e| {
            bad(format!(
                "row {line}: the layer column is not a layer kind: {e}"
            ))
        })?;
        let shapes = parse_shapes(&row.input_shapes).ok_or_else(|| {
            bad(format!(
                "row {line}: input_shapes `{}` is not like 64x56x56",
                row.input_shapes
            ))
        })?;
        let spec =
            LayerSpec::infer("layer", kind, shapes).map_err(|e| bad(format!("row {line}: {e}")))?;
        if !(row.median_ms.is_finite() && row.median_ms >= 0.0) {
            return Err(bad(format!(
                "row {line}: median_ms {} is not a time",
                row.median_ms
            )));
        }
        let conv = match row.kernel.as_str() {
            "" => None,
            name => Some(ConvRun {
                kernel: ConvKernel::from_name(name).ok_or_else(|| {
                    bad(format!(
                        "row {line}: kernel `{name}` is not one this build has; run the sweep again"
                    ))
                })?,
                residual: row.residual,
            }),
        };
        rows.push(Measurement {
            spec,
            conv,
            median_ms: row.median_ms,
        });
    }
    Ok((meta, rows))
}
