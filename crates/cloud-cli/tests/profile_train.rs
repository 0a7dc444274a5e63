//! `cutpoint-cloud profile` and `train`, run as a user runs them: the real binary, a real
//! (tiny) sweep on this machine, real files and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn cloud(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = cloud(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// A failure: non-zero exit and a one-line message without a panic. Returns the message.
fn one_line_error(args: &[&str]) -> String {
    let out = cloud(args);
    assert!(!out.status.success(), "expected a failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "stderr for {args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn tiny_sweep(dir: &Path, samples: &str) -> String {
    ok(&[
        "profile",
        "--out",
        dir.to_str().expect("utf-8 path"),
        "--quick",
        "--samples",
        samples,
        "--in-pass",
        "lenet",
        "--no-progress",
    ])
}

#[test]
fn a_tiny_sweep_resumes_trains_a_cloud_profile_and_checks_a_model() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("sweep");
    let first = tiny_sweep(&data, "6");
    assert!(first.contains("cutpoint-cloud train --data"), "{first}");
    assert!(
        first.contains("Layers timed inside their networks' passes"),
        "{first}"
    );
    assert!(
        data.join("in-pass").is_dir(),
        "LeNet's layers, timed in its passes"
    );
    // And the small seeded networks beside it.
    for i in 0..predictor::SMALL_NETS {
        assert!(first.contains(&format!("\nsmall-{i}-")), "{first}");
    }
    // Every round had its reference pass, and the sweep kept what it saw.
    assert!(first.contains("Rounds measured: "), "{first}");
    let steadiness = std::fs::read_to_string(data.join("steadiness.csv")).expect("steadiness");
    assert!(
        steadiness.starts_with("kept,redone,slow_kept,calm_ms"),
        "{steadiness}"
    );
    // Run again with a larger cap: the six rows per class are kept and only the rest measured.
    let second = tiny_sweep(&data, "10");
    let conv = second
        .lines()
        .find(|l| l.starts_with("conv "))
        .expect("a conv row");
    let cells: Vec<&str> = conv.split_whitespace().collect();
    assert_eq!(cells[1..], ["6", "4", "10"], "{second}");
    for class in ["conv", "grouped_conv", "linear", "batch_norm", "activation"] {
        assert!(data.join(format!("{class}.csv")).exists(), "{class}.csv");
    }

    let profile = tmp.path().join("cloud.profile");
    let out = ok(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        profile.to_str().expect("utf-8"),
        "--check-models",
        "lenet",
        "--check-runs",
        "2",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).expect("stdout is JSON");
    assert_eq!(report["role"], "cloud");
    assert_eq!(report["name"], "cloud");
    assert_eq!(report["classes"].as_array().expect("classes").len(), 9);
    // Ten sampled layers of each class, and LeNet's layers as its passes timed them.
    let mut in_pass = 0;
    for class in report["classes"].as_array().expect("classes") {
        let own = class["in_pass"].as_u64().expect("in-pass count");
        assert_eq!(class["samples"].as_u64(), Some(10 + own), "{class}");
        in_pass += own;
        let share = class["ours"]["within_10pct"].as_f64().expect("share");
        assert!((0.0..=1.0).contains(&share), "{class}");
    }
    assert!(
        in_pass >= 5 + predictor::SMALL_NETS as u64,
        "LeNet's and the small networks' layers: {in_pass}"
    );
    // LeNet and the small networks, each predicted without its own layers.
    let unseen = report["unseen"].as_array().expect("unseen networks");
    assert_eq!(unseen.len(), 1 + predictor::SMALL_NETS);
    let name = |n: &Value| n["model"].as_str().expect("name").to_string();
    assert!(
        unseen
            .iter()
            .all(|n| name(n).starts_with("lenet-") || name(n).starts_with("small-")),
        "{unseen:?}"
    );
    let lenet = unseen
        .iter()
        .find(|n| name(n).starts_with("lenet-"))
        .expect("LeNet unseen");
    // The network's error by layer class: its classes' sums add up to its own, and hold every
    // in-pass layer of it.
    let by_class = lenet["by_class"].as_array().expect("by class");
    for key in ["in_pass_ms", "predicted_ms"] {
        let ms = lenet[key].as_f64().expect("ms");
        assert!(ms > 0.0 && ms.is_finite(), "{key} {ms}");
        let sum: f64 = by_class.iter().map(|c| c[key].as_f64().expect("ms")).sum();
        assert!(
            (sum - ms).abs() <= 1e-9 * ms.max(1.0),
            "{key}: {sum} against {ms}"
        );
    }
    let classes: Vec<&str> = by_class
        .iter()
        .map(|c| c["class"].as_str().expect("class"))
        .collect();
    assert!(
        classes.contains(&"conv") && classes.contains(&"linear"),
        "LeNet's convolutions and linear layers: {classes:?}"
    );
    let layers: u64 = unseen
        .iter()
        .flat_map(|n| n["by_class"].as_array().expect("by class"))
        .map(|c| c["layers"].as_u64().expect("layers"))
        .sum();
    assert_eq!(layers, in_pass, "every in-pass layer in one class");
    let models = report["models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["model"], "lenet");
    let predicted = models[0]["predicted_ms"].as_f64().expect("predicted");
    let measured = models[0]["measured_ms"].as_f64().expect("measured");
    assert!(predicted > 0.0 && predicted.is_finite(), "{predicted}");
    assert!(measured > 0.0 && measured.is_finite(), "{measured}");
    assert!(std::fs::metadata(&profile).expect("profile written").len() > 0);
    // How steady the machine was, through the sweep's last run (ten rounds of each sampled
    // batch and LeNet's passes) and through the check (one round of two passes a model).
    let sweep = &report["sweep_steadiness"];
    assert!(sweep["kept"].as_u64().expect("kept") >= 9, "{sweep}");
    assert!(sweep["calm_ms"].as_f64().expect("calm") > 0.0, "{sweep}");
    assert_eq!(report["models_steadiness"]["kept"], 2, "{report}");
    // And how fast it ran the reference pass through the check, to set against the sweep's.
    let anchor = report["models_anchor_ms"]
        .as_f64()
        .expect("the check's reference pass");
    assert!(anchor > 0.0 && anchor.is_finite(), "{report}");
    // And through the sweep's in-pass rounds, which priced LeNet's layers.
    let in_pass = report["in_pass_anchor_ms"]
        .as_f64()
        .expect("the in-pass rounds' reference pass");
    assert!(in_pass > 0.0 && in_pass.is_finite(), "{report}");

    // The text report names the chosen regressors and the baseline side by side.
    let text = ok(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        profile.to_str().expect("utf-8"),
        "--check-models",
        "none",
    ]);
    assert!(text.contains("base MAPE"), "{text}");
    assert!(text.contains("Networks unseen"), "{text}");
    assert!(text.contains("Whole-model check skipped"), "{text}");
    assert!(text.contains("The sweep's last run measured"), "{text}");
}

#[test]
fn bad_inputs_get_one_line_errors_that_say_what_to_do() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = tmp.path().to_str().expect("utf-8").to_string();
    let out = tmp.path().join("p.profile");
    let out = out.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 5] = [
        (
            &["train", "--data", &empty, "--out", out],
            "run `profile --out DIR` first",
        ),
        (
            &["train", "--data", &empty, "--out", out, "--holdout", "1.5"],
            "between 0 and 1",
        ),
        (
            &[
                "train",
                "--data",
                &empty,
                "--out",
                out,
                "--check-models",
                "lenet,nosuch",
            ],
            "nosuch",
        ),
        (&["profile", "--out", &empty, "--backend", "tpu"], "flex"),
        (
            &["profile", "--out", &empty, "--cpu-quota", "-1"],
            "positive share",
        ),
    ];
    for (args, needle) in cases {
        let err = one_line_error(args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
