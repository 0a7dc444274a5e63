//! `cutpoint-edge graph`, `local` and `layers`, run as a user runs them: the real binary, real
//! files, real exit codes. Small models (LeNet, a tiny 1000-class spec) keep them fast.

use std::path::{Path, PathBuf};

use models::{HostTensor, Weights, load_npy, relative_difference, save_npy, zoo};
use serde_json::Value;

mod common;
use common::{edge, ok, one_line_error};

/// A fresh directory for one test's files, and the guard that removes it with everything in it
/// when it drops, also when the test fails.
fn scratch(test: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix(&format!("edge-cli-{test}-"))
        .tempdir()
        .expect("scratch dir");
    let dir = root.path().to_path_buf();
    (root, dir)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Deterministic input data of `shape`.
fn tensor(shape: &[usize]) -> HostTensor {
    let count: usize = shape.iter().product();
    let data = (0..count)
        .map(|i| ((i * 7919 % 997) as f32 / 498.5) - 1.0)
        .collect();
    HostTensor::new(shape.to_vec(), data).expect("tensor")
}

/// A LeNet input batch of two, written to `dir/x.npy`.
fn lenet_input(dir: &Path) -> PathBuf {
    let path = dir.join("x.npy");
    save_npy(&path, &tensor(&[2, 1, 32, 32])).expect("write input");
    path
}

/// A tiny model that takes an ImageNet image and outputs 1000 logits: global average pool,
/// flatten, linear 3 -> 1000.
const TINY_IMAGENET_SPEC: &str = r#"{
  "name": "tiny",
  "input_shape": [3, 224, 224],
  "nodes": [
    {"id": "input", "inputs": [], "kind": "input"},
    {"id": "pool", "inputs": ["input"], "kind": "adaptive_avg_pool2d", "output_size": [1, 1]},
    {"id": "flatten", "inputs": ["pool"], "kind": "flatten"},
    {"id": "fc", "inputs": ["flatten"], "kind": "linear", "in_features": 3, "out_features": 1000}
  ]
}"#;

#[test]
fn graph_prints_design_graph_json_with_zero_costs_that_plan_accepts() {
    let (_root, dir) = scratch("graph");
    let text = ok(&["graph", "--model", "lenet"]);
    let graph: Value = serde_json::from_str(&text).expect("graph JSON");
    assert_eq!(graph["name"], "lenet");
    let nodes = graph["nodes"].as_array().expect("nodes");
    let net = zoo::build("lenet").expect("lenet");
    assert_eq!(nodes.len(), net.len());
    for (node, want) in nodes.iter().zip(net.nodes()) {
        assert_eq!(node["id"], want.id());
        assert_eq!(node["edge_ms"].as_f64(), Some(0.0));
        assert_eq!(node["cloud_ms"].as_f64(), Some(0.0));
        assert_eq!(node["out_bytes"].as_u64(), Some(want.spec().out_bytes));
    }
    assert_eq!(nodes[0]["inputs"].as_array().map(Vec::len), Some(0));
    assert_eq!(nodes[1]["id"], "features.0");
    assert_eq!(nodes[1]["inputs"][0], "input");
    assert_eq!(nodes[1]["out_bytes"].as_u64(), Some(6 * 28 * 28 * 4));

    // The exchange format: `plan` reads it.
    let file = dir.join("lenet.json");
    std::fs::write(&file, &text).expect("write graph");
    let plan: Value = serde_json::from_str(&ok(&[
        "plan",
        "--graph",
        s(&file),
        "--uplink-mbps",
        "10",
        "--json",
    ]))
    .expect("plan JSON");
    assert!(plan.get("predicted_ms").is_some(), "{plan}");
}

#[test]
fn specs_read_back_unchanged_and_describe_the_same_graph() {
    let (_root, dir) = scratch("spec");
    for model in ["lenet", "googlenet", "resnet18"] {
        let spec = ok(&["graph", "--model", model, "--spec"]);
        let file = dir.join(format!("{model}.spec.json"));
        std::fs::write(&file, &spec).expect("write spec");
        assert_eq!(
            ok(&["graph", "--model-spec", s(&file), "--spec"]),
            spec,
            "{model}: the spec does not read back unchanged"
        );
        assert_eq!(
            ok(&["graph", "--model-spec", s(&file)]),
            ok(&["graph", "--model", model]),
            "{model}: the spec's graph differs from the zoo model's"
        );
    }
}

#[test]
fn local_split_runs_give_the_whole_forward_output() {
    let (_root, dir) = scratch("split");
    let x = lenet_input(&dir);
    let whole = dir.join("whole.npy");
    ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--save-output",
        s(&whole),
    ]);
    let whole = load_npy(&whole).expect("whole output");
    assert_eq!(whole.shape(), &[2, 10]);

    let net = zoo::build("lenet").expect("lenet");
    // Every split point of the chain, from cloud-only (everything but `input`) to edge-only.
    for first_cloud in 1..=net.len() {
        let cut: Vec<&str> = net.nodes()[first_cloud..].iter().map(|n| n.id()).collect();
        let cut = cut.join(",");
        let out = dir.join(format!("split{first_cloud}.npy"));
        let report: Value = serde_json::from_str(&ok(&[
            "local",
            "--model",
            "lenet",
            "--input",
            s(&x),
            "--cut",
            &cut,
            "--save-output",
            s(&out),
            "--json",
        ]))
        .expect("JSON report");
        let got = load_npy(&out).expect("split output");
        let diff = relative_difference(&got, &whole);
        assert!(diff <= 1e-5, "cut at {first_cloud}: differs by {diff}");
        let crossing = report["cut"]["crossing"].as_array().expect("crossing");
        if first_cloud < net.len() {
            // A chain sends exactly the tensor before the first cloud node.
            assert_eq!(crossing.len(), 1, "{report}");
            let sent = &net.nodes()[first_cloud - 1];
            assert_eq!(crossing[0]["id"], sent.id());
            assert_eq!(
                crossing[0]["bytes"].as_u64(),
                Some(2 * sent.spec().out_bytes)
            );
        } else {
            assert!(crossing.is_empty(), "{report}");
        }
    }
}

#[test]
fn local_single_sample_and_weights_file_match_the_seed() {
    let (_root, dir) = scratch("weights");
    let net = zoo::build("lenet").expect("lenet");
    let weights = dir.join("lenet.safetensors");
    models::save_safetensors(&weights, &Weights::seeded(&net, 7)).expect("write weights");
    // One sample without the batch dimension.
    let x = dir.join("one.npy");
    save_npy(&x, &tensor(&[1, 32, 32])).expect("write input");
    let from_file = dir.join("file.npy");
    let from_seed = dir.join("seed.npy");
    ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--weights",
        s(&weights),
        "--save-output",
        s(&from_file),
    ]);
    ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--seed",
        "7",
        "--save-output",
        s(&from_seed),
    ]);
    let a = load_npy(&from_file).expect("output");
    let b = load_npy(&from_seed).expect("output");
    assert_eq!(a.shape(), &[1, 10]);
    assert_eq!(a, b);
    let other = dir.join("other.npy");
    ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--seed",
        "8",
        "--save-output",
        s(&other),
    ]);
    assert_ne!(load_npy(&other).expect("output"), a, "the seed matters");
}

#[test]
fn local_ndarray_backend_agrees_with_flex() {
    let (_root, dir) = scratch("ndarray");
    let x = lenet_input(&dir);
    let flex = dir.join("flex.npy");
    let ndarray = dir.join("ndarray.npy");
    ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--save-output",
        s(&flex),
    ]);
    let out = edge(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--backend",
        "ndarray",
        "--save-output",
        s(&ndarray),
    ]);
    if !out.status.success() {
        // Built without the (default) ndarray feature: the error must say how to get it.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--features ndarray"), "{err}");
        return;
    }
    let diff = relative_difference(
        &load_npy(&ndarray).expect("ndarray output"),
        &load_npy(&flex).expect("flex output"),
    );
    assert!(diff <= 1e-4, "ndarray differs from flex by {diff}");
}

#[test]
fn local_image_prints_top5_imagenet_classes() {
    let (_root, dir) = scratch("image");
    let spec = dir.join("tiny.spec.json");
    std::fs::write(&spec, TINY_IMAGENET_SPEC).expect("write spec");
    let png = dir.join("red.png");
    image::RgbImage::from_pixel(300, 240, image::Rgb([220, 30, 30]))
        .save(&png)
        .expect("write png");

    let report: Value = serde_json::from_str(&ok(&[
        "local",
        "--model-spec",
        s(&spec),
        "--image",
        s(&png),
        "--json",
    ]))
    .expect("JSON report");
    assert_eq!(report["input_shape"], serde_json::json!([1, 3, 224, 224]));
    assert_eq!(report["output_shape"], serde_json::json!([1, 1000]));
    let top5 = report["top5"][0].as_array().expect("top-5 of sample 0");
    assert_eq!(top5.len(), 5);
    let classes = models::imagenet_classes();
    let mut last = f64::INFINITY;
    for entry in top5 {
        let class = entry["class"].as_u64().expect("class") as usize;
        assert_eq!(entry["name"], classes[class]);
        let p = entry["probability"].as_f64().expect("probability");
        assert!((0.0..=1.0).contains(&p) && p <= last, "{report}");
        last = p;
    }

    let text = ok(&["local", "--model-spec", s(&spec), "--image", s(&png)]);
    assert!(text.contains("top-5 (sample 0):"), "{text}");
    let first = &top5[0];
    assert!(
        text.contains(&format!(
            "{} ({})",
            first["name"].as_str().expect("name"),
            first["class"]
        )),
        "{text}"
    );

    // LeNet's 10 outputs are not ImageNet classes: no top-5.
    let x = lenet_input(&dir);
    let report: Value = serde_json::from_str(&ok(&[
        "local",
        "--model",
        "lenet",
        "--input",
        s(&x),
        "--json",
    ]))
    .expect("JSON report");
    assert!(report.get("top5").is_none(), "{report}");
}

#[test]
fn layers_writes_table_csv_and_plots() {
    let (_root, dir) = scratch("layers");
    let csv = dir.join("lenet.csv");
    let svg = dir.join("lenet.svg");
    let png = dir.join("lenet.png");
    let table = ok(&[
        "layers",
        "--model",
        "lenet",
        "--warmup",
        "1",
        "--runs",
        "2",
        "--csv",
        s(&csv),
        "--plot",
        s(&svg),
    ]);
    let net = zoo::build("lenet").expect("lenet");
    for node in net.nodes() {
        assert!(table.contains(node.id()), "{table}");
    }
    let mut lines = table.lines().rev();
    assert!(
        lines
            .next()
            .expect("a closing line")
            .starts_with("A whole forward pass: ")
    );
    assert!(lines.next().expect("rows").starts_with("total"));

    let csv = std::fs::read_to_string(&csv).expect("CSV written");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "node,kind,median_ms,out_bytes");
    assert_eq!(rows.len(), net.len() + 1);
    for (row, node) in rows[1..].iter().zip(net.nodes()) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 4, "{row}");
        assert_eq!(cells[0], node.id());
        assert_eq!(cells[1], node.spec().kind.name());
        let ms: f64 = cells[2].parse().expect("latency is a number");
        assert!(ms >= 0.0 && ms.is_finite(), "{row}");
        assert_eq!(cells[3], node.spec().out_bytes.to_string());
    }

    let svg = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(svg.starts_with("<svg"), "not an SVG");
    assert!(svg.contains("classifier.4") && svg.contains("latency (ms)"));

    let report: Value = serde_json::from_str(&ok(&[
        "layers",
        "--model",
        "lenet",
        "--warmup",
        "0",
        "--runs",
        "1",
        "--batch",
        "3",
        "--plot",
        s(&png),
        "--json",
    ]))
    .expect("JSON report");
    let layers = report["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), net.len());
    assert_eq!(
        layers[1]["out_bytes"].as_u64(),
        Some(3 * net.nodes()[1].spec().out_bytes),
        "output sizes are for the batch"
    );
    let forward = report["forward_median_ms"].as_f64().expect("forward time");
    assert!(forward.is_finite() && forward > 0.0, "{report}");
    let png = std::fs::read(&png).expect("PNG written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let decoded = image::load_from_memory(&png).expect("the PNG decodes");
    assert!(decoded.width() >= 800 && decoded.height() >= 600);
}

#[test]
fn layers_in_pass_times_every_layer_inside_whole_passes() {
    let report: Value = serde_json::from_str(&ok(&[
        "layers",
        "--model",
        "lenet",
        "--in-pass",
        "--runs",
        "2",
        "--json",
    ]))
    .expect("JSON report");
    assert_eq!(report["timing"], "in-pass", "{report}");
    let layers = report["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), zoo::build("lenet").expect("lenet").len());
    for layer in layers {
        let ms = layer["median_ms"].as_f64().expect("a median");
        assert!(ms.is_finite() && ms >= 0.0, "{layer}");
    }
    assert!(report["forward_median_ms"].as_f64().is_some(), "{report}");

    let table = ok(&["layers", "--model", "lenet", "--runs", "1", "--in-pass"]);
    assert!(table.contains("Timing: in-pass"), "{table}");
    let alone: Value = serde_json::from_str(&ok(&[
        "layers", "--model", "lenet", "--runs", "1", "--json",
    ]))
    .expect("JSON report");
    assert_eq!(alone["timing"], "alone", "{alone}");
}

#[test]
fn help_names_every_flag() {
    let help = ok(&["local", "--help"]);
    for flag in [
        "--model",
        "--model-spec",
        "--weights",
        "--input",
        "--image",
        "--save-output",
        "--cut",
        "--backend",
        "Examples:",
    ] {
        assert!(help.contains(flag), "local --help lacks {flag}");
    }
    let help = ok(&["layers", "--help"]);
    for flag in [
        "--csv",
        "--plot",
        "--runs",
        "--warmup",
        "--backend",
        "--in-pass",
    ] {
        assert!(help.contains(flag), "layers --help lacks {flag}");
    }
    assert!(ok(&["graph", "--help"]).contains("--spec"));
}

#[test]
fn bad_inputs_are_one_line_errors_that_say_what_to_do() {
    let (_root, dir) = scratch("bad");
    let x = lenet_input(&dir);
    let x = s(&x);
    let wrong_shape = dir.join("wrong.npy");
    save_npy(&wrong_shape, &tensor(&[2, 3, 32, 32])).expect("write");
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not a numpy file").expect("write");
    let not_image = dir.join("image.png");
    std::fs::write(&not_image, b"not a png").expect("write");
    let tiny = dir.join("tiny.spec.json");
    std::fs::write(&tiny, TINY_IMAGENET_SPEC).expect("write");
    let bad_spec = dir.join("bad.spec.json");
    std::fs::write(
        &bad_spec,
        TINY_IMAGENET_SPEC.replace("\"in_features\": 3", "\"in_features\": 4"),
    )
    .expect("write");
    let other_weights = dir.join("alexnet-ish.safetensors");
    let mut w = Weights::new();
    w.insert("features.0.weight", tensor(&[2, 2]));
    models::save_safetensors(&other_weights, &w).expect("write");
    let missing = dir.join("missing.npy");
    let pdf = dir.join("plot.pdf");

    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec![
                "local",
                "--model",
                "lenet",
                "--input",
                x,
                "--cut",
                "features.0",
            ],
            &["invalid cut", "features.1", "add"],
        ),
        (
            vec![
                "local",
                "--model",
                "lenet",
                "--input",
                x,
                "--cut",
                "input,features.0",
            ],
            &["invalid cut", "`input`", "edge"],
        ),
        (
            vec!["local", "--model", "lenet", "--input", x, "--cut", "conv9"],
            &["conv9", "graph --model"],
        ),
        (
            vec!["local", "--model", "lenet", "--input", s(&wrong_shape)],
            &["[2, 3, 32, 32]", "[N, 1, 32, 32]"],
        ),
        (
            vec!["local", "--model", "lenet", "--input", s(&garbage)],
            &["garbage.npy"],
        ),
        (
            vec!["local", "--model", "lenet", "--input", s(&missing)],
            &["missing.npy", "No such file"],
        ),
        (
            vec!["local", "--model", "lenet", "--image", s(&not_image)],
            &["3x224x224", "--input"],
        ),
        (
            vec!["local", "--model-spec", s(&tiny), "--image", s(&not_image)],
            &["image.png", "JPEG or PNG"],
        ),
        (vec!["local", "--model", "lenet"], &["--input"]),
        (
            vec!["local", "--model", "lenet", "--input", x, "--image", x],
            &["--image", "cannot be used"],
        ),
        (
            vec![
                "local",
                "--model",
                "lenet",
                "--input",
                x,
                "--backend",
                "cuda",
            ],
            &["cuda", "flex"],
        ),
        (
            vec![
                "local",
                "--model",
                "lenet",
                "--input",
                x,
                "--weights",
                s(&other_weights),
            ],
            &["missing", "features.3.weight", "shape"],
        ),
        (vec!["graph", "--model", "lenet5"], &["lenet5", "lenet"]),
        (vec!["graph"], &["--model"]),
        (
            vec!["graph", "--model", "lenet", "--model-spec", s(&tiny)],
            &["cannot be used"],
        ),
        (
            vec!["graph", "--model-spec", s(&bad_spec)],
            &["bad.spec.json", "`fc`", "4"],
        ),
        (vec!["graph", "--model-spec", s(&missing)], &["missing.npy"]),
        (
            vec!["layers", "--model", "lenet", "--plot", s(&pdf)],
            &[".svg or .png"],
        ),
        (
            vec!["layers", "--model", "lenet", "--runs", "0"],
            &["--runs"],
        ),
        (
            vec!["layers", "--model", "lenet", "--batch", "x"],
            &["--batch"],
        ),
    ];
    for (args, needles) in cases {
        let err = one_line_error(&args);
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
        }
    }
}

#[test]
fn fidelity_reports_every_cut_under_each_lossy_codec() {
    let report: Value = serde_json::from_str(&ok(&[
        "fidelity", "--model", "lenet", "--seeded", "2", "--json",
    ]))
    .expect("fidelity JSON");
    assert_eq!(report["model"], "lenet");
    assert_eq!(report["inputs"], 2);
    let rows = report["rows"].as_array().expect("rows");
    let codecs: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r["codec"].as_str()).collect();
    assert_eq!(
        codecs,
        ["f16", "f16+lossless", "int8", "int8+lossless"].into()
    );
    for r in rows {
        let agree = r["top1_agreement"].as_f64().expect("agreement");
        let error = r["max_relative_error"].as_f64().expect("error");
        assert!((0.0..=1.0).contains(&agree), "{r}");
        assert!(error.is_finite() && error >= 0.0, "{r}");
        assert_eq!(r["samples"], 2, "{r}");
    }
    // A compressed codec changes nothing the uncompressed one does not.
    for r in rows.iter().filter(|r| r["codec"] == "int8+lossless") {
        let plain = rows
            .iter()
            .find(|p| p["codec"] == "int8" && p["after"] == r["after"])
            .expect("the same cut as int8");
        assert_eq!(plain["max_relative_error"], r["max_relative_error"]);
    }
    let (_root, dir) = scratch("fidelity");
    let err = one_line_error(&["fidelity", "--model", "lenet", "--images", s(&dir)]);
    assert!(err.contains("--seeded"), "{err}");
    let err = one_line_error(&["fidelity", "--model", "lenet", "--seeded", "0"]);
    assert!(err.contains("at least one"), "{err}");
}
