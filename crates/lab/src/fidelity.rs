//! What a lossy codec at the boundary costs in accuracy: for every cut of the network's
//! topological order and every lossy codec, the share of inputs whose top-1 class is unchanged
//! and the largest relative error of the output, against the exact output.
//!
//! Each input is run once whole, keeping every node's output; then, for each cut, the tensors
//! that cross it are encoded, decoded and handed to the cloud part, exactly as a split run
//! would do over the wire.

use std::path::{Path, PathBuf};

use models::{Activations, HostTensor, Model, relative_difference};
use runtime::{RuntimeError, Table};
use serde::Serialize;
use transport::{Codec, Limits, Loss, WireTensor};

use crate::error::LabError;

/// One cut under one codec, over all inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityRow {
    /// The last node on the edge: the cut runs nodes up to it (topological order) on the edge.
    pub after: String,
    /// The tensors that cross the cut, by node id.
    pub crossing: Vec<String>,
    /// The codec every crossing tensor travelled under.
    pub codec: Codec,
    /// How many inputs (samples) were compared.
    pub samples: usize,
    /// The share of samples whose most likely class is the exact output's.
    pub top1_agreement: f64,
    /// The largest relative error of the output over all inputs: `max |a − b| / max |b|` per
    /// input, as [`models::relative_difference`] computes it.
    pub max_relative_error: f64,
    /// Inputs at which the codec could not encode a crossing tensor (f16 beyond its range);
    /// they are left out of the figures above.
    pub unencodable: usize,
}

/// The most images [`read_images`] reads from one directory.
pub const MAX_IMAGES: usize = 1000;

/// Every JPEG or PNG in `dir` (by extension, sorted by name), decoded and preprocessed as for
/// ImageNet (3x224x224): the inputs a fidelity measurement means most with. At most
/// [`MAX_IMAGES`]; an empty directory is an error too.
pub fn read_images(dir: &Path) -> Result<Vec<HostTensor>, LabError> {
    let unreadable = |path: &Path, reason: String| LabError::File {
        action: "read",
        path: path.display().to_string(),
        reason,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    let problem = match paths.len() {
        0 => Some("no .jpg, .jpeg or .png file".to_string()),
        n if n > MAX_IMAGES => Some(format!(
            "{n} images; give a directory of at most {MAX_IMAGES}"
        )),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(LabError::Images {
            dir: dir.display().to_string(),
            problem,
        });
    }
    paths
        .iter()
        .map(|p| models::load_image(p).map_err(|e| unreadable(p, e.to_string())))
        .collect()
}

/// What `cutpoint-edge fidelity` reports: the model, its weights, how many inputs, and every
/// cut under every lossy codec.
#[derive(Debug, Clone, Serialize)]
pub struct FidelityReport {
    /// The network's name.
    pub model: String,
    /// Where the weights came from.
    pub weights: String,
    /// How many inputs were compared.
    pub inputs: usize,
    /// One row per cut and codec ([`measure_fidelity`]).
    pub rows: Vec<FidelityRow>,
}

impl FidelityReport {
    /// The report as a table, one line per cut and codec.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}, weights {}, {} input(s): lossy codecs at every cut against the exact output\n",
            self.model, self.weights, self.inputs
        );
        let mut table = Table::new(&[
            "cut after",
            "crossing",
            "codec",
            "top-1 agree",
            "max rel error",
        ]);
        for r in &self.rows {
            let crossing = if r.crossing.len() > 2 {
                format!("{} tensors", r.crossing.len())
            } else {
                r.crossing.join("+")
            };
            let agreement = if r.unencodable > 0 {
                format!("{:.3} ({} not encodable)", r.top1_agreement, r.unencodable)
            } else {
                format!("{:.3}", r.top1_agreement)
            };
            table.row(vec![
                r.after.clone(),
                crossing,
                r.codec.name().to_string(),
                agreement,
                format!("{:.2e}", r.max_relative_error),
            ]);
        }
        out += &table.render();
        out
    }
}

/// Measures every lossy codec of `codecs` (lossless ones are skipped: they change nothing) at
/// every cut of `model`'s topological order, over `inputs` (each `[N, ...input shape]`).
///
/// A cut after node k runs nodes `0..=k` on the edge; its crossing tensors are the outputs of
/// those nodes read by later nodes. Cuts are listed once per distinct crossing set.
pub fn measure_fidelity(
    model: &Model,
    inputs: &[HostTensor],
    codecs: &[Codec],
) -> Result<Vec<FidelityRow>, LabError> {
    let net = model.net();
    let n = net.len();
    let lossy: Vec<Codec> = codecs
        .iter()
        .copied()
        .filter(|c| c.loss() != Loss::Exact)
        .collect();
    let mut cuts: Vec<(usize, Vec<usize>)> = Vec::new();
    for k in 0..n.saturating_sub(1) {
        let crossing: Vec<usize> = (0..=k)
            .filter(|&u| net.consumers(u).iter().any(|&w| w > k))
            .collect();
        if cuts.last().is_none_or(|(_, last)| *last != crossing) {
            cuts.push((k, crossing));
        }
    }
    let mut rows: Vec<FidelityRow> = cuts
        .iter()
        .flat_map(|(k, crossing)| {
            lossy.iter().map(move |&codec| FidelityRow {
                after: net.nodes()[*k].id().to_string(),
                crossing: crossing
                    .iter()
                    .map(|&u| net.nodes()[u].id().to_string())
                    .collect(),
                codec,
                samples: 0,
                top1_agreement: 0.0,
                max_relative_error: 0.0,
                unencodable: 0,
            })
        })
        .collect();
    let mut agree = vec![0usize; rows.len()];
    for input in inputs {
        let all = model.run_all(model.upload(input.clone())?)?;
        let exact = all
            .get(&net.sink())
            .cloned()
            .ok_or_else(|| LabError::Task("the whole run produced no output".into()))?
            .to_host()?;
        let mut row = 0;
        for (k, crossing) in &cuts {
            let cloud: Vec<bool> = (0..n).map(|v| v > *k).collect();
            for &codec in &lossy {
                match through_codec(model, &all, crossing, codec)? {
                    None => rows[row].unencodable += 1,
                    Some(boundary) => {
                        let out = model.run_part(&cloud, boundary)?;
                        let got = out
                            .get(&net.sink())
                            .cloned()
                            .ok_or_else(|| {
                                LabError::Task("the cloud part produced no output".into())
                            })?
                            .to_host()?;
                        let r = &mut rows[row];
                        let samples = input.shape()[0];
                        r.samples += samples;
                        agree[row] += same_top1(&exact, &got);
                        r.max_relative_error =
                            r.max_relative_error.max(relative_difference(&got, &exact));
                    }
                }
                row += 1;
            }
        }
    }
    for (r, agreed) in rows.iter_mut().zip(agree) {
        r.top1_agreement = if r.samples == 0 {
            0.0
        } else {
            agreed as f64 / r.samples as f64
        };
    }
    Ok(rows)
}

/// The crossing tensors of `all` after a round trip through `codec`, on the model's device;
/// `None` when the codec cannot encode one of them.
fn through_codec(
    model: &Model,
    all: &Activations,
    crossing: &[usize],
    codec: Codec,
) -> Result<Option<Activations>, LabError> {
    let mut boundary = Activations::new();
    for &u in crossing {
        let Some(value) = all.get(&u) else {
            return Err(LabError::Task(format!("no output for node #{u}")));
        };
        let host = value.clone().to_host()?;
        let Ok(wire) = WireTensor::encode(host.shape(), host.data(), codec) else {
            return Ok(None);
        };
        let data = wire
            .decode(&Limits::default())
            .map_err(|e| RuntimeError::Tensor {
                what: format!("decoded from {}", codec.name()),
                reason: e.to_string(),
            })?;
        boundary.insert(
            u,
            model.upload(HostTensor::new(host.shape().to_vec(), data)?)?,
        );
    }
    Ok(Some(boundary))
}

/// How many samples (rows of `[N, classes]`) have the same most likely class in both.
fn same_top1(a: &HostTensor, b: &HostTensor) -> usize {
    let classes = a.shape().iter().skip(1).product::<usize>().max(1);
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    };
    a.data()
        .chunks(classes)
        .zip(b.data().chunks(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::{Backend, zoo};

    #[test]
    fn a_directory_gives_its_images_in_name_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read_images(dir.path()).expect_err("empty").to_string();
        assert!(err.ends_with("holds no .jpg, .jpeg or .png file"), "{err}");
        let err = read_images(&dir.path().join("absent")).expect_err("absent");
        assert!(err.to_string().starts_with("cannot read "), "{err}");

        std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
        let png = |name: &str, shade: u8| {
            image::RgbImage::from_pixel(300, 260, image::Rgb([shade, 0, 0]))
                .save(dir.path().join(name))
                .expect("png");
        };
        png("b.png", 200);
        png("a.PNG", 10);
        let images = read_images(dir.path()).expect("two images");
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].shape(), [1, 3, 224, 224]);
        // Name order: a.PNG (dark) before b.png (bright red).
        assert!(images[0].data()[0] < images[1].data()[0]);

        std::fs::write(dir.path().join("c.jpg"), "not a JPEG").expect("write");
        let err = read_images(dir.path())
            .expect_err("a broken file")
            .to_string();
        assert!(err.contains("c.jpg"), "{err}");
    }

    fn lenet() -> Model {
        let net = zoo::build("lenet").expect("lenet");
        Model::seeded(net, 3, &Backend::Flex.device().expect("flex")).expect("model")
    }

    fn inputs(model: &Model, count: usize) -> Vec<HostTensor> {
        (0..count)
            .map(|s| {
                let mut shape = vec![1];
                shape.extend_from_slice(model.net().input_shape());
                let n: usize = shape.iter().product();
                let data = (0..n)
                    .map(|i| (((i + s * 31) * 7919) % 2000) as f32 / 1000.0 - 1.0)
                    .collect();
                HostTensor::new(shape, data).expect("input")
            })
            .collect()
    }

    #[test]
    fn f16_keeps_every_class_and_int8_errs_more_than_f16() {
        let model = lenet();
        let rows = measure_fidelity(
            &model,
            &inputs(&model, 3),
            &[
                Codec::Raw,
                Codec::Lossless,
                Codec::F16,
                Codec::Int8,
                Codec::Int8Lossless,
            ],
        )
        .expect("measures");
        assert!(
            rows.iter()
                .all(|r| r.codec != Codec::Raw && r.codec != Codec::Lossless)
        );
        let cuts = model.net().len() - 1;
        assert!(rows.len() >= 3 && rows.len() <= 3 * cuts, "{}", rows.len());
        for r in &rows {
            assert_eq!(r.samples + r.unencodable, 3, "{r:?}");
            assert!(!r.crossing.is_empty());
        }
        let worst = |codec: Codec| {
            rows.iter()
                .filter(|r| r.codec == codec)
                .map(|r| r.max_relative_error)
                .fold(0.0, f64::max)
        };
        assert!(worst(Codec::F16) > 0.0, "f16 changes some value");
        assert!(worst(Codec::F16) < 1e-2, "{}", worst(Codec::F16));
        assert!(worst(Codec::Int8) > worst(Codec::F16));
        // f16 on LeNet with these inputs keeps the class everywhere.
        assert!(
            rows.iter()
                .filter(|r| r.codec == Codec::F16)
                .all(|r| r.top1_agreement == 1.0)
        );
    }
}
