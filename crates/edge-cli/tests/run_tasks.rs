//! `cutpoint-edge run` and `tasks` against a real cloud server: a `runtime::LocalCloud` on
//! loopback QUIC in the test process, the real binary as the edge. LeNet (a chain) and
//! ResNet-18 at 32×32 (a DAG) keep them fast; `--graph` cost files keep them free of sweeps.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use models::{
    HostTensor, Net, Weights, load_npy, relative_difference, save_npy, save_safetensors, zoo,
};
use runtime::{CloudConfig, LocalCloud};
use serde_json::Value;

mod common;
use common::{edge, ok, one_line_error, tiny_sweep};

/// The name the small ResNet is served under (the zoo's `resnet18` takes 224×224).
const SMALL_RESNET: &str = "resnet18_32";

/// A cloud on loopback with the files an edge needs to reach it.
struct Setup {
    dir: PathBuf,
    runtime: tokio::runtime::Runtime,
    cloud: LocalCloud,
    lenet: Net,
    resnet: Net,
}

impl Setup {
    /// Starts a cloud serving the zoo and the small ResNet, and writes its token, the
    /// ResNet's spec and both models' cost graphs under a fresh directory.
    fn start(test: &str) -> Setup {
        Setup::start_with(test, None)
    }

    /// [`Setup::start`], with the small ResNet's weights from a safetensors file of these
    /// seeded weights (`<dir>/resnet18_32.safetensors`) on the cloud when a seed is given.
    fn start_with(test: &str, weights_seed: Option<u64>) -> Setup {
        let dir = std::env::temp_dir().join(format!("edge-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let lenet = zoo::build("lenet").expect("lenet");
        let resnet = small_resnet();
        let mut config = CloudConfig::default();
        if let Some(seed) = weights_seed {
            let file = dir.join(format!("{SMALL_RESNET}.safetensors"));
            save_safetensors(&file, &Weights::seeded(&resnet, seed)).expect("weights file");
            config.weights_dir = Some(dir.clone());
        }
        let runtime = runtime::async_runtime().expect("runtime");
        let cloud = {
            let _inside = runtime.enter();
            LocalCloud::start(config, std::slice::from_ref(&resnet)).expect("cloud starts")
        };
        std::fs::write(dir.join("token"), cloud.token().expose()).expect("token file");
        std::fs::write(dir.join("resnet.spec.json"), resnet.to_spec().to_json()).expect("spec");
        let setup = Setup {
            dir,
            runtime,
            cloud,
            lenet,
            resnet,
        };
        setup.write_graph(&setup.lenet, &["--model", "lenet"], "lenet.graph.json");
        let spec = setup.path("resnet.spec.json");
        setup.write_graph(&setup.resnet, &["--model-spec", &spec], "resnet.graph.json");
        setup
    }

    fn path(&self, name: &str) -> String {
        s(&self.dir.join(name)).to_string()
    }

    /// `graph` output for `net` with costs filled in: the edge computes 100 MFLOP/s, the
    /// cloud 20× faster, so that the cut depends on the uplink.
    fn write_graph(&self, net: &Net, model_flags: &[&str], name: &str) {
        let mut args = vec!["graph"];
        args.extend_from_slice(model_flags);
        let mut graph: Value = serde_json::from_str(&ok(&args)).expect("graph JSON");
        for node in graph["nodes"].as_array_mut().expect("nodes") {
            let id = node["id"].as_str().expect("id");
            let v = net.index_of(id).expect("a node of the network");
            let edge_ms = net.nodes()[v].spec().flops as f64 / 1e5;
            node["edge_ms"] = edge_ms.into();
            node["cloud_ms"] = (edge_ms / 20.0).into();
        }
        std::fs::write(self.dir.join(name), graph.to_string()).expect("graph file");
    }

    /// The flags that reach the cloud: its address, token file and a fresh known-servers file.
    fn connect_flags(&self) -> Vec<String> {
        vec![
            "--connect".into(),
            self.cloud.addr().to_string(),
            "--token-file".into(),
            self.path("token"),
            "--known-servers".into(),
            self.path("known_servers"),
        ]
    }

    /// The model and cost flags for the chain (`lenet`) or the DAG.
    fn model_flags(&self, dag: bool) -> Vec<String> {
        if dag {
            vec![
                "--model-spec".into(),
                self.path("resnet.spec.json"),
                "--graph".into(),
                self.path("resnet.graph.json"),
            ]
        } else {
            vec![
                "--model".into(),
                "lenet".into(),
                "--graph".into(),
                self.path("lenet.graph.json"),
            ]
        }
    }

    /// `cutpoint-edge run` with the connect flags, the model's flags and `extra`; its JSON.
    fn run_json(&self, dag: bool, extra: &[&str]) -> Value {
        let mut args: Vec<String> = vec!["run".into(), "--json".into()];
        args.extend(self.connect_flags());
        args.extend(self.model_flags(dag));
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&ok(&args)).expect("run prints JSON")
    }

    fn served(&self) -> u64 {
        self.cloud.server().stats().served
    }

    fn stop(self) {
        self.runtime.block_on(self.cloud.stop());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ResNet-18 on 32×32 inputs, renamed so that it does not shadow the zoo's.
fn small_resnet() -> Net {
    let net = zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18");
    let mut spec = net.to_spec();
    spec.name = SMALL_RESNET.into();
    Net::from_spec(&spec).expect("renamed resnet18")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A deterministic input batch of `batch` samples for `net`, written to `path`.
fn write_input(net: &Net, batch: usize, path: &Path) {
    let mut shape = vec![batch];
    shape.extend_from_slice(net.input_shape());
    let count: usize = shape.iter().product();
    let data = (0..count)
        .map(|i| ((i * 7919 % 997) as f32 / 498.5) - 1.0)
        .collect();
    save_npy(path, &HostTensor::new(shape, data).expect("tensor")).expect("write input");
}

/// The successor closure of the network's middle node: a cut strictly inside the network.
fn middle_cut(net: &Net) -> Vec<String> {
    let mut cloud = vec![false; net.len()];
    let mut stack = vec![net.len() / 2];
    while let Some(v) = stack.pop() {
        if !cloud[v] {
            cloud[v] = true;
            stack.extend_from_slice(net.consumers(v));
        }
    }
    (0..net.len())
        .filter(|&v| cloud[v])
        .map(|v| net.nodes()[v].id().to_string())
        .collect()
}

fn sorted_ids(value: &Value) -> Vec<String> {
    let mut ids: Vec<String> = value
        .as_array()
        .expect("an id list")
        .iter()
        .map(|v| v.as_str().expect("an id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn forced_cuts_give_the_local_output_for_a_chain_and_a_dag() {
    let setup = Setup::start("forced");
    for dag in [false, true] {
        let net = if dag { &setup.resnet } else { &setup.lenet };
        let input = setup.dir.join(format!("x-{dag}.npy"));
        write_input(net, 2, &input);
        let reference = setup.dir.join(format!("ref-{dag}.npy"));
        let mut local = vec!["local".to_string()];
        local.extend(setup.model_flags(dag).into_iter().take(2));
        local.extend(["--input".into(), s(&input).into()]);
        local.extend(["--save-output".into(), s(&reference).into()]);
        ok(&local.iter().map(String::as_str).collect::<Vec<_>>());
        let expected = load_npy(&reference).expect("reference output");

        let fixed = middle_cut(net);
        for (split, kind) in [
            ("edge".to_string(), "edge-only"),
            ("cloud".to_string(), "cloud-only"),
            (fixed.join(","), "split"),
        ] {
            let served = setup.served();
            let output = setup.dir.join(format!("out-{dag}-{kind}.npy"));
            let report = setup.run_json(
                dag,
                &[
                    "--split",
                    &split,
                    "--input",
                    s(&input),
                    "--save-output",
                    s(&output),
                ],
            );
            let got = load_npy(&output).expect("run output");
            assert!(
                relative_difference(&got, &expected) <= 1e-5,
                "{} at --split {kind}: the output differs from `local`",
                net.name()
            );
            assert_eq!(report["cut"]["kind"], kind, "{report}");
            assert_eq!(report["fallback"], Value::Null, "{report}");
            let addr = setup.cloud.addr().to_string();
            assert_eq!(report["server"], addr.as_str(), "{report}");
            // Which server answered: none for a run on this device.
            let answered = (kind != "edge-only").then_some(addr.as_str());
            assert_eq!(report["answered_by"].as_str(), answered, "{report}");
            assert_eq!(report["output_shape"][0], 2);
            assert!(report.get("top5").is_none(), "seeded weights: no classes");
            let cloud_nodes = sorted_ids(&report["cut"]["cloud_nodes"]);
            match kind {
                "edge-only" => {
                    assert!(cloud_nodes.is_empty());
                    assert_eq!(setup.served(), served, "edge-only never uses the cloud");
                }
                "cloud-only" => {
                    assert_eq!(cloud_nodes.len(), net.len() - 1);
                    assert_eq!(setup.served(), served + 1);
                }
                _ => {
                    let mut want = fixed.clone();
                    want.sort();
                    assert_eq!(cloud_nodes, want);
                    assert!(
                        !report["cut"]["crossing"]
                            .as_array()
                            .expect("crossing")
                            .is_empty()
                    );
                    assert_eq!(setup.served(), served + 1);
                    assert!(report["measured_ms"]["cloud"].as_f64().expect("cloud ms") > 0.0);
                }
            }
        }
    }
    setup.stop();
}

#[test]
fn a_weights_file_gives_the_top5_classes_of_a_local_run() {
    let setup = Setup::start_with("top5", Some(7));
    let weights = setup.path(&format!("{SMALL_RESNET}.safetensors"));
    let input = setup.dir.join("x.npy");
    write_input(&setup.resnet, 1, &input);
    let flags = [
        "--weights",
        &weights,
        "--input",
        s(&input),
        "--split",
        "cloud",
    ];
    let report = setup.run_json(true, &flags);
    assert_eq!(report["fallback"], Value::Null, "{report}");
    let local: Value = serde_json::from_str(&ok(&[
        "local",
        "--model-spec",
        &setup.path("resnet.spec.json"),
        "--weights",
        &weights,
        "--input",
        s(&input),
        "--json",
    ]))
    .expect("local JSON");
    let classes = |v: &Value| -> Vec<u64> {
        v["top5"][0]
            .as_array()
            .expect("five classes")
            .iter()
            .map(|c| c["class"].as_u64().expect("a class"))
            .collect()
    };
    assert_eq!(classes(&report).len(), 5, "{report}");
    assert_eq!(classes(&report), classes(&local));

    let mut args: Vec<String> = vec!["run".into()];
    args.extend(setup.connect_flags());
    args.extend(setup.model_flags(true));
    args.extend(flags.map(String::from));
    let text = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.contains("top-5 (sample 0):\n  1. "), "{text}");
    setup.stop();
}

#[test]
fn auto_split_reports_the_cut_plan_predicts() {
    let setup = Setup::start("auto");
    for dag in [false, true] {
        let graph = setup.model_flags(dag)[3].clone();
        for uplink in ["0.01", "1000"] {
            let report = setup.run_json(dag, &["--uplink-mbps", uplink]);
            let planned = &report["link"]["planned"];
            assert_eq!(planned["uplink_mbps"].as_f64(), uplink.parse().ok());
            assert_eq!(planned["uplink_override"], true);
            assert!(report["link"]["measured"]["rtt_ms"].is_number(), "{report}");
            let number = |v: &Value| v.as_f64().expect("a number").to_string();
            let plan: Value = serde_json::from_str(&ok(&[
                "plan",
                "--graph",
                &graph,
                "--uplink-mbps",
                uplink,
                "--downlink-mbps",
                &number(&planned["downlink_mbps"]),
                "--rtt-ms",
                &number(&planned["rtt_ms"]),
                "--wait-ms",
                &number(&report["wait_ms"]),
                "--json",
            ]))
            .expect("plan JSON");
            assert_eq!(
                sorted_ids(&report["cut"]["cloud_nodes"]),
                sorted_ids(&plan["cloud_nodes"]),
                "uplink {uplink}: run's cut is not plan's\nrun: {report}\nplan: {plan}"
            );
            assert_eq!(report["cut"]["solver"], plan["solver"]);
            let predicted = report["predicted_ms"]["total"].as_f64().expect("predicted");
            let planned_total = plan["predicted_ms"]["total"].as_f64().expect("plan total");
            assert!((predicted - planned_total).abs() <= 1e-9 * planned_total.max(1.0));
            if uplink == "0.01" {
                // Seconds to send the input beat any compute saving: the edge keeps it all.
                assert_eq!(report["cut"]["kind"], "edge-only", "{report}");
            }
        }
    }
    setup.stop();
}

#[test]
fn run_prints_the_link_the_cut_and_both_breakdowns() {
    let setup = Setup::start("text");
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(setup.connect_flags());
    args.extend(setup.model_flags(false));
    args.extend(["--split".into(), "cloud".into()]);
    let text = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let answered = format!("answered by: {}\n", setup.cloud.addr());
    for needle in [
        answered.as_str(),
        "link (measured): up ",
        "Mbit/s",
        "RTT ",
        "cut (cloud, cloud_only, max loss exact): cloud-only",
        "sends up: input",
        "predicted",
        "measured",
        "seeded random",
        "objective: latency (ms)",
        "measured edge energy: ",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    assert!(!text.contains("fallback"), "{text}");
    // Trust on first use: the server's fingerprint is now pinned.
    let pinned = std::fs::read_to_string(setup.dir.join("known_servers")).expect("pinned");
    assert!(pinned.contains(&setup.cloud.addr().to_string()), "{pinned}");
    assert!(
        pinned.contains(&setup.cloud.fingerprint().to_string()),
        "{pinned}"
    );
    setup.stop();
}

/// With only this device's profile, `run` prices the edge by it and the cloud by what the
/// server publishes.
#[test]
fn an_edge_profile_alone_plans_with_the_costs_the_server_publishes() {
    let setup = Setup::start("edge-profile");
    let sweep = setup.path("sweep");
    tiny_sweep(&sweep);
    let profile = setup.path("edge.profile");
    ok(&[
        "train",
        "--data",
        &sweep,
        "--out",
        &profile,
        "--check-models",
        "none",
    ]);
    let mut args: Vec<String> = vec!["run".into(), "--json".into()];
    args.extend(setup.connect_flags());
    args.extend(["--model", "lenet", "--edge-profile", &profile].map(String::from));
    let report: Value =
        serde_json::from_str(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .expect("run prints JSON");
    let costs = &report["costs"];
    assert!(
        costs["edge"]
            .as_str()
            .expect("edge")
            .contains("edge.profile"),
        "{costs}"
    );
    assert!(
        costs["cloud"]
            .as_str()
            .expect("cloud")
            .contains("published"),
        "{costs}"
    );
    assert!(report["predicted_ms"]["total"].as_f64().expect("predicted") > 0.0);
    setup.stop();
}

/// The predicted energy a report gives against the powers it names and the predicted times:
/// compute on the edge, transmit the upload, idle for the rest.
fn energy_of(predicted_ms: &Value, powers: &Value) -> f64 {
    let ms = |k: &str| predicted_ms[k].as_f64().expect("a time");
    let w = |k: &str| powers[k].as_f64().expect("a power");
    w("compute") * ms("edge")
        + w("transmit") * ms("upload")
        + w("idle") * (ms("cloud") + ms("download") + ms("rtt") + ms("wait"))
}

#[test]
fn energy_runs_and_tasks_report_the_powers_and_the_predicted_millijoules() {
    let setup = Setup::start("energy");
    let energy = [
        "--objective",
        "energy",
        "--device-class",
        "jetson",
        "--idle-w",
        "0.5",
    ];
    for split in ["edge", "cloud"] {
        let mut extra = vec!["--split", split];
        extra.extend_from_slice(&energy);
        let report = setup.run_json(false, &extra);
        let objective = &report["objective"];
        assert_eq!(objective["name"], "energy", "{report}");
        let powers = &objective["powers_w"];
        assert_eq!(powers["device_class"], "jetson");
        assert_eq!(
            (powers["compute"].as_f64(), powers["idle"].as_f64()),
            (Some(5.6), Some(0.5))
        );
        assert!(
            powers["source"]
                .as_str()
                .is_some_and(|s| s.contains("--idle-w")),
            "{powers}"
        );
        let mj = report["predicted_mj"].as_f64().expect("predicted mJ");
        let expected = energy_of(&report["predicted_ms"], powers);
        assert!(
            mj > 0.0 && (mj - expected).abs() <= 1e-9 * expected,
            "{report}"
        );
        // The CPU's own counters: a package-wide figure where the machine has them, and where
        // it has none (or may not read them) a plain statement of that.
        let measured = &report["measured_energy"];
        let note = measured["note"].as_str().expect("note");
        match measured["edge_mj"].as_f64() {
            Some(mj) => assert!(mj >= 0.0 && note.contains("package-wide"), "{measured}"),
            None => assert!(
                note.contains("no powercap energy counters") || note.contains("cannot be read"),
                "{measured}"
            ),
        }
    }
    // A latency run names its objective and no powers.
    let report = setup.run_json(false, &["--split", "edge"]);
    assert_eq!(report["objective"], serde_json::json!({"name": "latency"}));
    assert!(report.get("predicted_mj").is_none(), "{report}");

    // Tasks: each record and the summary carry the predicted energy.
    let mut args = tasks_args(&setup, &["--random", "3", "--json"]);
    args.extend(energy.iter().map(|a| a.to_string()));
    let tasks: Value =
        serde_json::from_str(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .expect("tasks JSON");
    assert_eq!(tasks["objective"]["name"], "energy");
    let records = tasks["tasks"].as_array().expect("records");
    let sum: f64 = records
        .iter()
        .map(|t| t["predicted_mj"].as_f64().expect("a task's predicted mJ"))
        .sum();
    let total = tasks["summary"]["predicted_energy_mj"]
        .as_f64()
        .expect("total");
    assert!((sum - total).abs() <= 1e-9 * total, "{tasks}");
    // Power flags without the energy objective are refused, naming the flag.
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(setup.connect_flags());
    args.extend(setup.model_flags(false));
    args.extend(["--compute-w".into(), "2".into()]);
    let err = one_line_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("--compute-w only applies to --objective energy"),
        "{err}"
    );
    setup.stop();
}

#[test]
fn a_wrong_token_is_refused_on_one_line() {
    let setup = Setup::start("token");
    let wrong = setup.dir.join("wrong-token");
    std::fs::write(&wrong, "not-the-token-the-server-printed").expect("token file");
    let addr = setup.cloud.addr().to_string();
    let mut args = vec![
        "run".to_string(),
        "--connect".into(),
        addr.clone(),
        "--token-file".into(),
        s(&wrong).into(),
        "--known-servers".into(),
        setup.path("known_servers"),
        "--split".into(),
        "cloud".into(),
    ];
    args.extend(setup.model_flags(false));
    let err = one_line_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("refused the token") && err.contains(&addr),
        "{err}"
    );
    assert_eq!(setup.served(), 0);
    setup.stop();
}

#[test]
fn a_missing_token_says_where_to_get_one() {
    for command in ["run", "tasks"] {
        let mut args = vec![command, "--connect", "127.0.0.1:4433", "--model", "lenet"];
        if command == "tasks" {
            args = vec![command, "--connect", "127.0.0.1:4433", "--random", "2"];
        }
        let err = one_line_error(&args);
        for needle in [
            "--token-file",
            "CUTPOINT_TOKEN_FILE",
            "cutpoint-cloud serve",
        ] {
            assert!(err.contains(needle), "no `{needle}` in: {err}");
        }
    }
    let err = one_line_error(&[
        "run",
        "--connect",
        "127.0.0.1:4433",
        "--model",
        "lenet",
        "--token-file",
        "/nonexistent/cutpoint-token",
    ]);
    assert!(err.contains("/nonexistent/cutpoint-token"), "{err}");
}

/// The flags of a `tasks` run over LeNet and the small ResNet.
fn tasks_args(setup: &Setup, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["tasks".into()];
    args.extend(setup.connect_flags());
    args.extend(
        [
            "--model-spec",
            &setup.path("resnet.spec.json"),
            "--graph",
            &setup.path("lenet.graph.json"),
            "--graph",
            &setup.path("resnet.graph.json"),
            "--models",
            &format!("lenet,{SMALL_RESNET}"),
            "--seed",
            "3",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The task lines of `tasks` text output: those that start with the task's number.
fn task_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .collect()
}

#[test]
fn random_tasks_print_a_line_each_and_a_summary() {
    let setup = Setup::start("tasks");
    let args = tasks_args(&setup, &["--random", "12"]);
    let text = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines = task_lines(&text);
    assert_eq!(lines.len(), 12, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], (i + 1).to_string(), "{line}");
        assert!(["lenet", SMALL_RESNET].contains(&words[1]), "{line}");
        assert!(
            !line.contains("fallback") && !line.contains("error"),
            "{line}"
        );
    }
    assert!(
        text.contains("summary: 12 tasks, 12 completed, 0 failed; 0 fallbacks;"),
        "{text}"
    );
    assert!(text.contains("latency (measured, ms): mean "), "{text}");

    // The same queue as JSON: the same draws, consistent counts.
    let served = setup.served();
    let mut json_args = args.clone();
    json_args.push("--json".into());
    let report: Value = serde_json::from_str(&ok(&json_args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()))
    .expect("tasks JSON");
    let tasks = report["tasks"].as_array().expect("task records");
    assert_eq!(tasks.len(), 12);
    for (record, line) in tasks.iter().zip(&lines) {
        assert_eq!(line.split_whitespace().nth(1), record["model"].as_str());
    }
    let used_cloud = tasks
        .iter()
        .filter(|t| t["cut"]["kind"] != "edge-only")
        .count() as u64;
    assert_eq!(setup.served() - served, used_cloud);
    let summary = &report["summary"];
    assert_eq!(summary["completed"], 12);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["fallbacks"], 0);
    let changes = tasks.iter().filter(|t| t["cut_changed"] == true).count();
    assert_eq!(summary["cut_changes"], changes);
    let latency = |key: &str| summary["latency_ms"][key].as_f64().expect("latency");
    assert!(latency("p50") <= latency("p95"));
    let max = tasks
        .iter()
        .filter_map(|t| t["measured_ms"].as_f64())
        .fold(0.0, f64::max);
    assert!(latency("mean") > 0.0 && latency("p95") <= max);
    assert_eq!(report["models"].as_array().map(Vec::len), Some(2));
    assert_eq!(summary["pipeline"], 1);
    assert_eq!(report["objective"]["name"], "latency");

    // Pipelined: the same tasks, two in flight, planned for the stream by default.
    let mut piped_args = json_args.clone();
    piped_args.extend(["--pipeline".to_string(), "2".to_string()]);
    let piped: Value = serde_json::from_str(&ok(&piped_args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()))
    .expect("tasks JSON");
    assert_eq!(piped["objective"]["name"], "stream");
    let summary = &piped["summary"];
    assert_eq!(
        (summary["pipeline"].as_u64(), summary["completed"].as_u64()),
        (Some(2), Some(12))
    );
    assert!(
        summary["throughput_per_s"]
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{summary}"
    );
    for (i, record) in piped["tasks"]
        .as_array()
        .expect("records")
        .iter()
        .enumerate()
    {
        assert_eq!(record["index"], i + 1, "in queue order");
        assert!(record["predicted_frame_ms"].as_f64().is_some(), "{record}");
    }
    let mut zero = args.clone();
    zero.extend(["--pipeline".to_string(), "0".to_string()]);
    let err = one_line_error(&zero.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("frames in flight is out of range"), "{err}");
    setup.stop();
}

#[test]
fn tasks_finish_locally_after_the_cloud_stops() {
    let setup = Setup::start("stop");
    let args = tasks_args(
        &setup,
        &["--random", "12", "--split", "cloud", "--interval-ms", "300"],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut text = String::new();
    let mut seen = 0;
    // Served while the cloud is up.
    while seen < 3 {
        let line = lines
            .next()
            .expect("more output before the third task")
            .expect("UTF-8 line");
        if !task_lines(&line).is_empty() {
            assert!(!line.contains("fallback"), "{line}");
            seen += 1;
        }
        text += &line;
        text.push('\n');
    }
    let server = setup.cloud.server().clone();
    let dir = setup.dir.clone();
    setup.stop();
    for line in lines {
        text += &line.expect("UTF-8 line");
        text.push('\n');
    }
    let out = child.wait_with_output().expect("the binary ends");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines = task_lines(&text);
    assert_eq!(lines.len(), 12, "{text}");
    let fallback: Vec<bool> = lines.iter().map(|l| l.contains("fallback: ")).collect();
    let first = fallback
        .iter()
        .position(|&f| f)
        .expect("some tasks ran locally");
    assert!(first >= 3, "{text}");
    assert!(
        fallback[first..].iter().all(|&f| f),
        "once the cloud is gone every task finishes locally:\n{text}"
    );
    let count = fallback.iter().filter(|&&f| f).count();
    assert!(
        text.contains(&format!(
            "summary: 12 tasks, 12 completed, 0 failed; {count} fallbacks;"
        )),
        "{text}"
    );
    assert!(server.stats().served >= (12 - count) as u64);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_task_is_reported_and_fails_the_command() {
    let setup = Setup::start("failed");
    let queue = setup.dir.join("queue.txt");
    std::fs::write(&queue, "lenet\nlenet missing.npy\nlenet\n").expect("tasks file");
    let mut args = vec!["tasks".to_string()];
    args.extend(setup.connect_flags());
    args.extend(["--graph".into(), setup.path("lenet.graph.json")]);
    args.extend(["--tasks".into(), s(&queue).into()]);
    let text_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = edge(&text_args);
    assert!(!out.status.success(), "a failed task fails the command");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = task_lines(&text);
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("error: ") && lines[1].contains("missing.npy"),
        "{text}"
    );
    assert!(
        !lines[0].contains("error") && !lines[2].contains("error"),
        "{text}"
    );
    assert!(text.contains("3 tasks, 2 completed, 1 failed;"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 3 tasks failed"), "{stderr}");

    args.push("--json".into());
    let json_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = edge(&json_args);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("tasks JSON");
    assert_eq!(report["summary"]["failed"], 1);
    let record = &report["tasks"][1];
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing.npy")),
        "{record}"
    );
    assert!(
        record["input"]
            .as_str()
            .is_some_and(|p| p.ends_with("missing.npy"))
    );
    setup.stop();
}
