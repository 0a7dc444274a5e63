//! The predictor end to end on a tiny real sweep: measure, resume, train, save, load, predict.

use std::path::{Path, PathBuf};

use models::{Backend, ConvKernel, ConvRun, LayerKind, LayerSpec, NetBuilder};
use predictor::{
    Context, DeviceProfile, LayerClass, MIN_SAMPLES, PassTime, PredictorError, Role, Sample,
    Sampler, SpellGuard, Steadiness, SweepConfig, SweepSize, TrainOptions, features, read_class,
    run_in_pass, run_sweep, train,
};

/// A path for one test's sweep, not yet created, inside a fresh temporary directory that the
/// returned guard removes when it drops, also when the test fails.
fn temp_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix(&format!("cutpoint-predictor-{name}-"))
        .tempdir()
        .expect("temp dir");
    let dir = root.path().join(name);
    (root, dir)
}

/// The guard every sweep here runs under: the real anchor on the default backend.
fn guard() -> SpellGuard<'static> {
    SpellGuard::on(Backend::Flex).expect("the anchor builds")
}

fn sweep(dir: &Path, classes: Vec<LayerClass>, samples: usize) -> SweepConfig {
    SweepConfig {
        out_dir: dir.to_path_buf(),
        size: SweepSize::Quick,
        backend: Backend::Flex,
        cpu_quota: None,
        seed: 7,
        classes,
        max_samples: Some(samples),
        progress: false,
    }
}

/// How a sampled layer runs: the last node of the network that feeds it.
fn sampled_run(sample: &Sample) -> Option<ConvRun> {
    let net = sample.net().expect("a net that feeds the layer builds");
    ConvRun::of_net(&net).pop().flatten()
}

fn options() -> TrainOptions {
    TrainOptions {
        name: "tiny".into(),
        role: Role::Edge,
        seed: 1,
        holdout: 0.2,
        folds: 3,
    }
}

#[test]
fn sampling_and_features_are_deterministic() {
    for class in LayerClass::ALL {
        let mut a = Sampler::new(class, SweepSize::Full, 42);
        let mut b = Sampler::new(class, SweepSize::Full, 42);
        for _ in 0..20 {
            let (x, y) = (a.next_sample(), b.next_sample());
            assert_eq!(x, y);
            let spec = x.spec().expect("sampled layers are valid");
            assert_eq!(LayerClass::of(&spec.kind), Some(class));
            let conv = sampled_run(&x);
            let f = features::ours(class, &spec, conv, Context::Cold);
            assert_eq!(
                f,
                features::ours(class, &y.spec().expect("valid"), conv, Context::Cold)
            );
            assert!(f.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn feature_vectors_have_one_length_per_class() {
    for class in LayerClass::ALL {
        let mut sampler = Sampler::new(class, SweepSize::Full, 3);
        let first = sampler.next_sample();
        let spec = first.spec().expect("valid");
        let len = features::ours(class, &spec, sampled_run(&first), Context::Cold).len();
        for _ in 0..50 {
            let sample = sampler.next_sample();
            let spec = sample.spec().expect("valid");
            assert_eq!(
                features::ours(class, &spec, sampled_run(&sample), Context::Cold).len(),
                len,
                "{class:?}"
            );
        }
    }
}

#[test]
fn tiny_sweep_resumes_trains_and_predicts() {
    let (_root, dir) = temp_dir("tiny");
    let classes = vec![LayerClass::Activation, LayerClass::Add];
    let (_, first) = run_sweep(&sweep(&dir, classes.clone(), 6), &mut guard()).expect("sweep runs");
    assert!(first.iter().all(|s| s.resumed == 0 && s.measured == 6));
    // A second run resumes: it keeps the six rows and measures only the rest.
    let (meta, second) =
        run_sweep(&sweep(&dir, classes.clone(), 12), &mut guard()).expect("sweep resumes");
    assert!(
        second.iter().all(|s| s.resumed == 6 && s.measured == 6),
        "{second:?}"
    );
    let (found, rows) = read_class(&predictor::csv_path(&dir, LayerClass::Add)).expect("csv reads");
    assert_eq!(found, meta);
    assert_eq!(rows.len(), 12);
    // The rows are the sampler's sequence, in order, so a resume continues it exactly.
    let mut sampler = Sampler::new(LayerClass::Add, SweepSize::Quick, 7);
    for row in &rows {
        assert_eq!(row.spec, sampler.next_sample().spec().expect("valid"));
        assert!(row.median_ms > 0.0);
    }

    let (profile, reports) = train(&dir, &options()).expect("training works");
    assert_eq!(profile.classes(), classes);
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.samples, 12);
        assert!(r.ours.n > 0 && r.baseline.n > 0);
        assert!(r.ours.mape_pct.is_finite() && r.ours.rmse_ms.is_finite());
        // No layer was timed inside a pass, so none is held out as one.
        assert_eq!(r.ours_in_pass.n, 0);
    }

    // A layer like the sampled ones is predicted within sane bounds of its measured time.
    let spec = LayerSpec::infer("relu", LayerKind::Relu, vec![vec![64, 56, 56]]).expect("valid");
    let predicted = profile.predict_ms("relu", &spec, None).expect("predicts");
    assert!(predicted > 0.0 && predicted < 1000.0, "{predicted} ms");
    let free =
        LayerSpec::infer("flatten", LayerKind::Flatten, vec![vec![64, 2, 2]]).expect("valid");
    assert_eq!(
        profile
            .predict_ms("flatten", &free, None)
            .expect("predicts"),
        0.0
    );

    // A network with a layer class the profile lacks is refused by name.
    let mut b = NetBuilder::new("n", vec![8]).expect("builder");
    let input = b.input();
    b.add(
        "fc",
        LayerKind::Linear {
            in_features: 8,
            out_features: 2,
            bias: true,
        },
        &[input],
    )
    .expect("layer");
    let net = b.build().expect("net");
    let err = profile.layer_costs(&net).expect_err("no linear model");
    assert!(
        matches!(&err, PredictorError::MissingClass { class: "linear", node, .. } if node == "fc"),
        "{err}"
    );

    // A network of the profiled classes becomes a graph whose costs are the two profiles'.
    let cloud_options = TrainOptions {
        role: Role::Cloud,
        ..options()
    };
    let (cloud, _) = train(&dir, &cloud_options).expect("training works");
    let mut b = NetBuilder::new("residual", vec![4, 8, 8]).expect("builder");
    let input = b.input();
    let relu = b.add("relu", LayerKind::Relu, &[input]).expect("relu");
    b.add("add", LayerKind::Add, &[relu, input]).expect("add");
    let net = b.build().expect("net");
    let graph = DeviceProfile::predict_graph(&net, &profile, &cloud).expect("graph");
    let edge_ms = profile.layer_costs(&net).expect("edge costs");
    let cloud_ms = cloud.layer_costs(&net).expect("cloud costs");
    assert!(edge_ms[1] > 0.0 && edge_ms[2] > 0.0, "{edge_ms:?}");
    assert_eq!(graph.len(), 3);
    for i in 0..graph.len() {
        assert_eq!(graph.edge_ms(i), edge_ms[i], "{}", graph.id(i));
        assert_eq!(graph.cloud_ms(i), cloud_ms[i], "{}", graph.id(i));
    }
    let err = DeviceProfile::predict_graph(&net, &cloud, &profile).expect_err("swapped roles");
    assert!(
        matches!(
            err,
            PredictorError::WrongRole {
                found: "cloud",
                wanted: "edge",
                ..
            }
        ),
        "{err}"
    );

    // Save, load, save again: the same bytes, and the same predictions.
    let path = dir.join("tiny.profile");
    profile.save(&path).expect("save");
    let loaded = DeviceProfile::load(&path).expect("load");
    assert_eq!(
        loaded.predict_ms("relu", &spec, None).expect("predicts"),
        predicted
    );
    assert_eq!(loaded.name, "tiny");
    assert_eq!(loaded.role, Role::Edge);
    let again = dir.join("again.profile");
    loaded.save(&again).expect("save");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        std::fs::read(&again).expect("read")
    );
}

#[test]
fn foreign_or_newer_profiles_are_refused() {
    let (_root, dir) = temp_dir("refuse");
    std::fs::create_dir_all(&dir).expect("dir");
    let newer = dir.join("newer.profile");
    let bytes = rmp_serde::to_vec(&("cutpoint-device-profile", 999u32, 0u8)).expect("encode");
    std::fs::write(&newer, bytes).expect("write");
    let err = DeviceProfile::load(&newer).expect_err("format 999");
    assert!(err.to_string().contains("format 999"), "{err}");

    let foreign = dir.join("foreign.profile");
    std::fs::write(&foreign, b"{\"not\": \"a profile\"}").expect("write");
    let err = DeviceProfile::load(&foreign).expect_err("not a profile");
    assert!(
        err.to_string().contains("not a cutpoint device profile"),
        "{err}"
    );
}

#[test]
fn training_an_empty_or_short_sweep_says_what_to_do() {
    let (_root, dir) = temp_dir("short");
    std::fs::create_dir_all(&dir).expect("dir");
    let err = train(&dir, &options()).expect_err("no data");
    assert!(
        err.to_string().contains("run `profile --out DIR` first"),
        "{err}"
    );
    run_sweep(&sweep(&dir, vec![LayerClass::Activation], 3), &mut guard()).expect("sweep runs");
    let err = train(&dir, &options()).expect_err("too few");
    assert!(err.to_string().contains("resume the sweep"), "{err}");
}

#[test]
fn impossible_quotas_stop_the_sweep() {
    let (_root, dir) = temp_dir("quota");
    let mut config = sweep(&dir, vec![LayerClass::Activation], 1);
    config.cpu_quota = Some(-1.0);
    let err = run_sweep(&config, &mut guard()).expect_err("negative quota");
    assert!(matches!(err, PredictorError::Quota { .. }), "{err}");
    assert!(!dir.exists(), "nothing was measured without the quota");
}

#[test]
fn a_node_fused_into_a_convolution_is_priced_zero() {
    let (_root, dir) = temp_dir("fused");
    let classes = vec![LayerClass::Conv, LayerClass::Activation, LayerClass::Add];
    run_sweep(&sweep(&dir, classes, MIN_SAMPLES), &mut guard()).expect("sweep runs");
    let (profile, _) = train(&dir, &options()).expect("training works");
    // conv → relu fuses (the ReLU runs in the convolution's epilogue); the second ReLU reads a
    // node that already has its activation, so it runs as itself; a second convolution's
    // output added to it runs in that convolution's epilogue.
    let mut b = NetBuilder::new("fused", vec![3, 16, 16]).expect("builder");
    let input = b.input();
    let conv = LayerKind::Conv2d {
        in_channels: 3,
        out_channels: 8,
        kernel_size: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    };
    let conv = b.add("conv", conv, &[input]).expect("conv");
    let fused = b.add("fused", LayerKind::Relu, &[conv]).expect("relu");
    let alone = b.add("alone", LayerKind::Relu, &[fused]).expect("relu");
    let second = LayerKind::Conv2d {
        in_channels: 8,
        out_channels: 8,
        kernel_size: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    };
    let second = b.add("second", second, &[alone]).expect("conv");
    b.add("add", LayerKind::Add, &[second, alone]).expect("add");
    let net = b.build().expect("net");
    let costs = profile.layer_costs(&net).expect("costs");
    assert!(costs[1] > 0.0, "{costs:?}");
    assert_eq!(costs[2], 0.0, "{costs:?}");
    assert!(costs[3] > 0.0, "{costs:?}");
    assert!(costs[4] > 0.0, "{costs:?}");
    assert_eq!(costs[5], 0.0, "{costs:?}");
    let add = &net.nodes()[5];
    assert!(
        profile
            .predict_ms(add.id(), add.spec(), None)
            .expect("predicts")
            > 0.0
    );
    // The zero is the fusion's, not the regressor's: the same ReLU alone is priced.
    let relu = &net.nodes()[2];
    assert!(
        profile
            .predict_ms(relu.id(), relu.spec(), None)
            .expect("predicts")
            > 0.0
    );
}

/// A convolution of `kind`'s shape: `groups` groups, a `k`×`k` filter at stride 1 padded to
/// keep the map.
fn conv(in_channels: usize, out_channels: usize, k: usize, groups: usize) -> LayerKind {
    LayerKind::Conv2d {
        in_channels,
        out_channels,
        kernel_size: [k, k],
        stride: [1, 1],
        padding: [k / 2, k / 2],
        dilation: [1, 1],
        groups,
        bias: true,
    }
}

#[test]
fn samples_drawn_in_a_chain_are_fed_and_run_as_a_chain_runs_them() {
    let blocked = models::VectorPath::current() == models::VectorPath::Avx512;
    // The class, then the blocked kernels of its feed and of its sampled layer.
    for (class, kernels) in [
        (
            LayerClass::Conv,
            [ConvKernel::BlockedDepthwise, ConvKernel::BlockedPointwise],
        ),
        (
            LayerClass::GroupedConv,
            [ConvKernel::BlockedPointwise, ConvKernel::BlockedDepthwise],
        ),
    ] {
        let mut sampler = Sampler::new(class, SweepSize::Quick, 5);
        let samples: Vec<Sample> = (0..200).map(|_| sampler.next_sample()).collect();
        let chained: Vec<&Sample> = samples.iter().filter(|s| s.in_chain).collect();
        // About a quarter of the class.
        assert!(
            (25..=75).contains(&chained.len()),
            "{class:?}: {}",
            chained.len()
        );
        for sample in chained {
            let net = sample.net().expect("a chain builds");
            let ids: Vec<&str> = net.nodes().iter().map(|n| n.id()).collect();
            assert_eq!(ids, ["input", "feed", "layer"], "{class:?}");
            // The sampled layer is the last node, with its own spec, on a map of at most 14²,
            // and the feed keeps the map's shape.
            let spec = sample.spec().expect("valid");
            let [_, feed, layer] = net.nodes() else {
                unreachable!("three nodes")
            };
            assert_eq!(layer.spec().kind, spec.kind);
            assert_eq!(layer.spec().input_shapes, spec.input_shapes);
            assert!(spec.input_shapes[0][1] <= 14, "{:?}", spec.input_shapes);
            assert_eq!(feed.spec().output_shape, spec.input_shapes[0]);
            let of_net = ConvKernel::of_net(&net);
            if blocked {
                assert_eq!([of_net[1], of_net[2]], kernels.map(Some), "{class:?}");
            } else {
                assert!(
                    of_net.iter().flatten().all(|k| !k.is_blocked()),
                    "{of_net:?}"
                );
            }
        }
    }
}

#[test]
fn a_convolution_keeps_the_kernel_its_network_ran_it_with() {
    let (_root, dir) = temp_dir("kernels");
    // An inverted residual block on 7×7 maps, which runs on channel-blocked maps on the
    // AVX-512 path, its projection adding the shortcut, and the same expansion alone, which
    // runs on NCHW maps everywhere.
    let mut b = NetBuilder::new("chain", vec![16, 7, 7]).expect("builder");
    let input = b.input();
    let expand = b.add("expand", conv(16, 32, 1, 1), &[input]).expect("conv");
    let depthwise = b.add("dw", conv(32, 32, 3, 32), &[expand]).expect("conv");
    let project = b
        .add("project", conv(32, 16, 1, 1), &[depthwise])
        .expect("conv");
    b.add("sum", LayerKind::Add, &[project, input])
        .expect("add");
    let chain = b.build().expect("net");
    // A max pool after the lone layer: a class this sweep does not sample, so its row is not
    // written (training needs sampled rows of every class it fits).
    let mut b = NetBuilder::new("alone", vec![16, 7, 7]).expect("builder");
    let input = b.input();
    let expand = b.add("expand", conv(16, 32, 1, 1), &[input]).expect("conv");
    let pool = LayerKind::MaxPool2d {
        kernel_size: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
        dilation: [1, 1],
        ceil_mode: false,
    };
    b.add("pool", pool, &[expand]).expect("pool");
    let alone = b.build().expect("net");
    let classes = vec![LayerClass::Conv, LayerClass::GroupedConv];
    let config = sweep(&dir, classes, MIN_SAMPLES);
    run_in_pass(&config, &[chain.clone(), alone.clone()], &mut guard()).expect("runs");
    let kernels = |net: &models::Net, class| {
        let in_pass = predictor::in_pass_dir(&dir, &predictor::in_pass_name(net));
        let path = predictor::csv_path(&in_pass, class);
        let (_, rows) = read_class(&path).expect("in-pass convolutions");
        rows.iter()
            .map(|r| r.conv.map(|c| c.kernel))
            .collect::<Vec<_>>()
    };
    let blocked = models::VectorPath::current() == models::VectorPath::Avx512;
    let expected = if blocked {
        [ConvKernel::BlockedPointwise, ConvKernel::BlockedDepthwise]
    } else {
        [ConvKernel::Pointwise, ConvKernel::Depthwise]
    };
    assert_eq!(kernels(&chain, LayerClass::Conv), [Some(expected[0]); 2]);
    assert_eq!(
        kernels(&chain, LayerClass::GroupedConv),
        [Some(expected[1])]
    );
    assert_eq!(
        kernels(&alone, LayerClass::Conv),
        [Some(ConvKernel::Pointwise)]
    );
    let alone_dir = predictor::in_pass_dir(&dir, &predictor::in_pass_name(&alone));
    assert!(!predictor::csv_path(&alone_dir, LayerClass::MaxPool).exists());
    // The projection added the shortcut in its epilogue, and its row says so.
    let in_pass = predictor::in_pass_dir(&dir, &predictor::in_pass_name(&chain));
    let (_, rows) = read_class(&predictor::csv_path(&in_pass, LayerClass::Conv)).expect("rows");
    let residuals: Vec<_> = rows.iter().map(|r| r.conv.map(|c| c.residual)).collect();
    assert_eq!(residuals, [Some(false), Some(true)]);
    // A kernel this build does not know is refused with what to do.
    let in_pass = predictor::in_pass_dir(&dir, &predictor::in_pass_name(&alone));
    let path = predictor::csv_path(&in_pass, LayerClass::Conv);
    let text = std::fs::read_to_string(&path).expect("csv");
    std::fs::write(&path, text.replace(",pointwise", ",systolic")).expect("write");
    let err = read_class(&path).expect_err("an unknown kernel");
    assert!(
        err.to_string().contains("kernel `systolic`") && err.to_string().contains("sweep again"),
        "{err}"
    );
}

#[test]
fn a_layer_timed_inside_a_pass_is_priced_at_its_measurement() {
    let (_root, dir) = temp_dir("in-pass");
    let classes = vec![LayerClass::Activation, LayerClass::Add];
    run_sweep(&sweep(&dir, classes.clone(), MIN_SAMPLES), &mut guard()).expect("sweep runs");
    // Two ReLUs of one spec and an addition, timed inside the network's passes.
    let mut b = NetBuilder::new("twice", vec![4, 24, 24]).expect("builder");
    let input = b.input();
    let first = b.add("first", LayerKind::Relu, &[input]).expect("relu");
    let second = b.add("second", LayerKind::Relu, &[first]).expect("relu");
    b.add("add", LayerKind::Add, &[second, input]).expect("add");
    let net = b.build().expect("net");
    let mut guard = guard();
    let (_, summaries) = run_in_pass(
        &sweep(&dir, classes, MIN_SAMPLES),
        std::slice::from_ref(&net),
        &mut guard,
    )
    .expect("in-pass timing runs");
    assert_eq!(summaries.len(), 1);
    // 11 rounds, each a pass timed between nodes and a whole pass of every network, each
    // round with an anchor pass after it.
    let steadiness = guard.steadiness();
    assert_eq!(steadiness.kept, 11, "{steadiness:?}");
    assert!(steadiness.calm_ms > 0.0, "{steadiness:?}");
    assert_eq!(summaries[0].layers, 3);
    let in_pass = predictor::in_pass_dir(&dir, &predictor::in_pass_name(&net));
    let (_, relus) =
        read_class(&predictor::csv_path(&in_pass, LayerClass::Activation)).expect("in-pass ReLUs");
    let (_, adds) =
        read_class(&predictor::csv_path(&in_pass, LayerClass::Add)).expect("in-pass addition");
    assert_eq!((relus.len(), adds.len()), (2, 1));

    // The network's whole passes against its nodes: the nodes are the layers written (and
    // the input, which takes no time). The sweep keeps its probe's.
    let pass = summaries[0].pass;
    assert!(pass.whole_ms > 0.0, "{pass:?}");
    assert!(
        (pass.nodes_ms - summaries[0].total_ms).abs() < 1e-9,
        "{pass:?}"
    );
    let root = predictor::in_pass_root(&dir);
    let probe = PassTime::read(&root)
        .expect("readable")
        .expect("the sweep writes its probe's pass time");
    assert!(probe.whole_ms > 0.0 && probe.nodes_ms >= 0.0, "{probe:?}");
    // Both say how fast the machine ran the guard's anchor through the rounds that timed them.
    assert!(probe.anchor_ms > 0.0, "{probe:?}");
    assert_eq!(pass.anchor_ms, probe.anchor_ms);
    // A sweep's file from before the anchor was recorded reads as one without it.
    std::fs::write(
        root.join("pass.csv"),
        "whole_ms,nodes_ms
0.05,0.01
",
    )
    .expect("write");
    let old = PassTime::read(&root).expect("readable").expect("a row");
    assert_eq!((old.whole_ms, old.anchor_ms), (0.05, 0.0));
    probe.write(&root).expect("the probe's own again");

    let (profile, reports) = train(&dir, &options()).expect("training works");
    // Of the held-out samples, those timed inside the network's passes are scored apart too.
    for r in &reports {
        assert!(r.ours_in_pass.n <= r.in_pass.min(r.ours.n), "{r:?}");
    }
    // The two ReLUs share a spec: one measured layer at their mean; the addition another.
    assert_eq!(profile.measured_layers(), 2);
    let relu_ms = (relus[0].median_ms + relus[1].median_ms) / 2.0;
    let costs = profile.layer_costs(&net).expect("costs");
    assert_eq!(costs, [0.0, relu_ms, relu_ms, adds[0].median_ms]);
    // A measurement is of a spec run by a kernel: asked for another kernel, the regressor
    // prices the layer.
    let relu = net.nodes()[1].spec();
    let elsewhere = profile
        .predict_ms(
            "first",
            relu,
            Some(ConvRun {
                kernel: ConvKernel::Pointwise,
                residual: false,
            }),
        )
        .expect("predicts");
    assert!(elsewhere > 0.0 && elsewhere != relu_ms, "{elsewhere} ms");
    // The profile's pass cost is the probe's whole pass beyond its node, paid on the input by
    // the edge and on the sink by the cloud.
    assert_eq!(profile.pass_ms, probe.overhead_ms());
    let cloud_options = TrainOptions {
        role: Role::Cloud,
        ..options()
    };
    let (mut cloud, _) = train(&dir, &cloud_options).expect("training works");
    let mut edge = train(&dir, &options()).expect("training works").0;
    (edge.pass_ms, cloud.pass_ms) = (0.25, 0.5);
    let graph = DeviceProfile::predict_graph(&net, &edge, &cloud).expect("graph");
    let sink = net.sink();
    assert_eq!((graph.edge_ms(0), graph.cloud_ms(0)), (0.25, 0.0));
    assert_eq!(graph.edge_ms(1), costs[1]);
    assert_eq!(
        graph.cloud_ms(1),
        cloud.layer_costs(&net).expect("costs")[1]
    );
    assert_eq!(graph.edge_ms(sink), costs[sink]);
    assert_eq!(graph.cloud_ms(sink), costs[sink] + 0.5);
    // Priced alike (no cloud profile), the edge's pass cost stands for both sides'.
    let alike = DeviceProfile::predict_graph_alike(&net, &edge).expect("graph");
    assert_eq!(
        (alike.edge_ms(0), alike.cloud_ms(sink)),
        (0.25, costs[sink] + 0.25)
    );
    // A ReLU of another shape is no measured layer: the regressor prices it.
    let other = LayerSpec::infer("other", LayerKind::Relu, vec![vec![4, 25, 25]]).expect("valid");
    let predicted = profile.predict_ms("other", &other, None).expect("predicts");
    assert!(predicted > 0.0 && predicted != relu_ms, "{predicted} ms");
    // The measurements survive a save and a load.
    let path = dir.join("in-pass.profile");
    profile.save(&path).expect("save");
    let loaded = DeviceProfile::load(&path).expect("load");
    assert_eq!(loaded.measured_layers(), 2);
    assert_eq!(loaded.layer_costs(&net).expect("costs"), costs);
    assert_eq!(loaded.pass_ms, profile.pass_ms);
    // A damaged pass time is named, not taken as no time.
    std::fs::write(root.join("pass.csv"), "whole_ms,nodes_ms\n-1,0.5\n").expect("write");
    let err = train(&dir, &options()).expect_err("a negative time");
    assert!(
        err.to_string().contains("pass.csv") && err.to_string().contains("not negative"),
        "{err}"
    );
}

#[test]
fn a_sweeps_steadiness_is_kept_and_a_damaged_one_named() {
    let (_root, dir) = temp_dir("steadiness");
    assert_eq!(Steadiness::read(&dir).expect("no file"), None);
    let steadiness = Steadiness {
        kept: 40,
        redone: 3,
        slow_kept: 5,
        calm_ms: 0.32,
        fastest_ms: 0.25,
    };
    steadiness.write(&dir).expect("write");
    assert_eq!(Steadiness::read(&dir).expect("read"), Some(steadiness));
    let warning = steadiness
        .warning()
        .expect("5 of 40 slow is more than a tenth");
    assert!(warning.contains("5 of 40"), "{warning}");
    std::fs::write(
        dir.join("steadiness.csv"),
        "kept,redone,slow_kept,calm_ms\n4,0,5,0.3\n",
    )
    .expect("write");
    let err = Steadiness::read(&dir).expect_err("more slow rounds than rounds");
    assert!(
        err.to_string().contains("steadiness.csv")
            && err.to_string().contains("run `profile` again"),
        "{err}"
    );
    // A file without the fastest time reads as one that did not record it: never taken for a
    // sweep that ran slow.
    std::fs::write(
        dir.join("steadiness.csv"),
        "kept,redone,slow_kept,calm_ms\n4,0,1,0.3\n",
    )
    .expect("write");
    let old = Steadiness::read(&dir).expect("read").expect("a row");
    assert_eq!((old.kept, old.fastest_ms), (4, 0.0));
    assert_eq!(old.ran_slower_than(1e-6), None);
}
