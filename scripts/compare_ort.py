#!/usr/bin/env python3
"""Side-by-side CPU latency: cutpoint's fast kernels against ONNX Runtime, per model and per layer
kind, on each vector path cutpoint can run (AVX-512, AVX2, other).

For each model it prints the median whole forward pass of cutpoint on every --paths entry and of
ONNX Runtime, and the ratios; then, summed over the models, each engine's time per layer kind
(3x3 / 1x1 / depthwise / other convolutions, linear, pooling, add, concat, layout reorders...),
worst excess first.

The engines run alternately, round after round (cutpoint on each path, then ONNX Runtime, then
again, each round starting one engine further along), so that a machine whose speed drifts
treats them alike; each figure is the median of the
round medians, each round the median of --runs passes after --warmup. Batch 1, --threads threads
for both (cutpoint: RAYON_NUM_THREADS; ONNX Runtime: intra-op threads, inter-op 1, sequential).

The ONNX graphs are built here, with the `onnx` package, from cutpoint's own model spec
(`cutpoint-edge graph --spec`), so both engines run the same layers, with the same ids, without
torch. Their weights are seeded random numbers drawn here (He-scaled, so that activations stay
well away from denormals), not cutpoint's seeded weights: an f32 kernel's speed does not depend on
the values. ONNX Runtime gets opset 17 and every graph optimisation (it folds the batch norms,
fuses the activations and, on x86, runs convolutions in its channel-blocked NCHWc layout).

Per layer: both engines time nodes inside real forward passes (cutpoint: `layers --in-pass`; ONNX
Runtime: its profiler). ONNX Runtime's kernels are sorted into kinds by op and weight shape, as
its fused nodes take other names: a convolution with its folded batch norm, activation or
residual add counts as the convolution (cutpoint's absorbed nodes cost nothing either); the
layout reorders it adds count apart. With --layers N the same in-pass times are also listed layer
by layer, the N with the largest excess per model, each fused kernel of ONNX Runtime's counted
as the convolution or linear layer that precedes the node it is named after.

The vector path: cutpoint caps its kernels with CUTPOINT_VECTOR_PATH (see
`models::VectorPath`); ONNX Runtime has no such cap and always runs the widest path the CPU has,
so on an AVX-512 machine the AVX2 column compares cutpoint's AVX2 kernels with ONNX Runtime's
AVX-512 ones. With --hide-avx512 the script builds `scripts/hide_avx512.c` (with `cc`) and runs
itself, and so every engine, under it: the CPU then reports no AVX-512 to anyone (CPUID
faulting, which Linux offers where /proc/cpuinfo lists `cpuid_fault`), and ONNX Runtime, PyTorch
and cutpoint all run their AVX2 kernels, as on an AVX2-only machine with this one's caches and
clock.

With --chains N it also times each distinct stride-1 convolution of the models on its own, as
whole passes of a network of N copies of it (each with its ReLU; a layer whose output channels
differ from its input's goes in pairs with its mirror, out to in), in both engines, alternating
as above: a layer kind's cost without ONNX Runtime's profiler, which adds a few microseconds to
every node it times (its kernels' in-pass sum exceeds its own whole pass). It prints each shape's
time per layer and the models' convolutions summed by kind at those times.

With --near-cores NS it builds `scripts/core_latency.c` (with `cc`) and, before and after every
engine's timed step, measures how long a cache line takes to go from the first CPU the engines
run on to the second and back; a step that either reading puts above NS nanoseconds is timed
again, after a pause, up to five times (then it is kept, and counted). On a virtual machine the
host may move the virtual CPUs apart for seconds at a time (machine D: about 55 ns most of the
time, about 320 for stretches of up to several seconds), and a two-thread pass timed then takes
up to twice as long, in every engine.

With --torch it also times PyTorch's torchvision model (random weights, eval mode, inference
mode, `torch.set_num_threads(--threads)`) in every round, whole forward passes only, for a
three-way table.

Needs `pip install onnx onnxruntime numpy` (and `torch torchvision` for --torch); without them it
says so and exits with status 2. cutpoint's side is the release `cutpoint-edge` binary
(`cargo build --release -p edge-cli`, or --cutpoint).

    scripts/compare_ort.py
    scripts/compare_ort.py --models resnet18,mobilenet_v2 --rounds 5 --threads 2
    scripts/compare_ort.py --paths avx2 --json
    scripts/compare_ort.py --paths avx2 --hide-avx512             # every engine on AVX2
    scripts/compare_ort.py --baseline main-build/cutpoint-edge   # before/after a kernel change
    scripts/compare_ort.py --torch                                # cutpoint, ONNX Runtime, PyTorch
    scripts/compare_ort.py --models mobilenet_v2 --chains 10 --threads 1   # per shape, whole passes
    scripts/compare_ort.py --models resnet50 --layers 10          # the ten worst layers
    scripts/compare_ort.py --threads 2 --near-cores 150           # two threads on near CPUs
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ["lenet", "alexnet", "vgg16", "mobilenet_v2", "resnet18", "resnet50", "googlenet"]
PATHS = ["avx512", "avx2", "other"]
ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--models",
        default="alexnet,resnet18,mobilenet_v2,googlenet,resnet50",
        help="comma-separated zoo models (default: alexnet,resnet18,mobilenet_v2,googlenet,"
        f"resnet50; any of {','.join(MODELS)})",
    )
    parser.add_argument(
        "--paths",
        default="avx512,avx2",
        help="comma-separated vector paths for cutpoint (default avx512,avx2; a path the CPU "
        "lacks runs narrower, and the report says which ran)",
    )
    parser.add_argument("--runs", type=int, default=20, help="passes per round (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured passes (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads")
    parser.add_argument(
        "--cutpoint",
        default=str(ROOT / "target" / "release" / "cutpoint-edge"),
        help="the cutpoint-edge binary (default: target/release/cutpoint-edge)",
    )
    parser.add_argument(
        "--baseline",
        help="another cutpoint-edge build (e.g. main's) timed in the same rounds, on the same "
        "paths, for before/after figures",
    )
    parser.add_argument(
        "--torch",
        action="store_true",
        help="also time PyTorch's torchvision model, whole passes (needs torch and torchvision)",
    )
    parser.add_argument(
        "--chains",
        type=int,
        default=0,
        metavar="N",
        help="also time every distinct stride-1 convolution as whole passes of N copies of it, "
        "in both engines (default 0: off)",
    )
    parser.add_argument(
        "--hide-avx512",
        action="store_true",
        help="hide AVX-512 from every engine (scripts/hide_avx512.c, needs cc and CPUID "
        "faulting), so that all of them run AVX2 kernels",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=0,
        metavar="N",
        help="also list, per model, the N layers with the largest in-pass excess over ONNX "
        "Runtime (default 0: none)",
    )
    parser.add_argument(
        "--near-cores",
        type=float,
        default=0.0,
        metavar="NS",
        help="time a step again while a cache line's round trip between the first two CPUs "
        "reads above NS nanoseconds before or after it (scripts/core_latency.c, needs cc and "
        "two CPUs; default 0: off)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    unknown += [p for p in args.paths.split(",") if p not in PATHS]
    if unknown:
        parser.error(f"unknown models or paths: {', '.join(unknown)}")
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.rounds < 1:
        parser.error("--runs, --rounds and --threads must be at least 1, --warmup at least 0")
    if args.chains < 0 or args.layers < 0 or args.near_cores < 0:
        parser.error("--chains, --layers and --near-cores must be 0 (off) or more")
    if args.near_cores and len(os.sched_getaffinity(0)) < 2:
        parser.error("--near-cores needs two CPUs, and this process may run on one")
    for binary in [args.cutpoint] + ([args.baseline] if args.baseline else []):
        if not Path(binary).is_file():
            sys.exit(f"no cutpoint-edge at {binary}; build it with "
                     "`cargo build --release -p edge-cli` or pass --cutpoint")
    return args


def import_ort():
    try:
        import numpy
        import onnx
        import onnxruntime
    except ImportError as e:
        print(f"compare_ort.py needs numpy, onnx and onnxruntime ({e}); install them with "
              "`pip install numpy onnx onnxruntime`", file=sys.stderr)
        sys.exit(2)
    return numpy, onnx, onnxruntime


def in_turn(steps, r):
    """`steps` in round `r`'s order: each round starts one place further along, so that no
    engine always runs first or last in a round (on a machine where the process that runs
    second in a round was measured slower, whichever it was)."""
    k = r % len(steps)
    return steps[k:] + steps[:k]


def cutpoint_spec(binary, model):
    out = subprocess.run([binary, "graph", "--model", model, "--spec"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def layer_kind(node):
    """A spec node's kind for the per-kind table."""
    kind = node["kind"]
    if kind == "conv2d":
        if node.get("groups", 1) > 1 and node["groups"] == node["in_channels"]:
            return "conv depthwise"
        k = node["kernel_size"]
        return f"conv {k[0]}x{k[1]}" if k in ([1, 1], [3, 3]) else "conv other"
    if kind in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
        return "pool"
    if kind in ("relu", "relu6"):
        return "activation"
    return kind


def pool_out(size, k, s, p, d, ceil):
    span = d * (k - 1) + 1
    room = size + 2 * p - span
    out = (-(-room // s) if ceil else room // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def to_onnx(spec, np, onnx):
    """cutpoint's spec as an ONNX model (opset 17) with seeded He-scaled weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    shapes = {"input": list(spec["input_shape"])}

    def init(name, array):
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    for n in spec["nodes"]:
        nid, kind, ins = n["id"], n["kind"], n["inputs"]
        if kind == "input":
            continue
        shape = shapes[ins[0]]
        if kind == "conv2d":
            cin, cout, g = n["in_channels"], n["out_channels"], n.get("groups", 1)
            (kh, kw), (sh, sw) = n["kernel_size"], n.get("stride", [1, 1])
            (ph, pw), (dh, dw) = n.get("padding", [0, 0]), n.get("dilation", [1, 1])
            fan_in = cin // g * kh * kw
            w = rng.standard_normal((cout, cin // g, kh, kw)) * (2.0 / fan_in) ** 0.5
            args = [ins[0], init(f"{nid}.weight", w)]
            if n.get("bias", True):
                args.append(init(f"{nid}.bias", rng.standard_normal(cout) * 0.01))
            nodes.append(helper.make_node(
                "Conv", args, [nid], name=nid, kernel_shape=[kh, kw], strides=[sh, sw],
                pads=[ph, pw, ph, pw], dilations=[dh, dw], group=g))
            shapes[nid] = [cout, pool_out(shape[1], kh, sh, ph, dh, False),
                           pool_out(shape[2], kw, sw, pw, dw, False)]
            continue
        if kind == "batch_norm2d":
            c = n["num_features"]
            args = [ins[0], init(f"{nid}.weight", 1 + 0.1 * rng.standard_normal(c)),
                    init(f"{nid}.bias", 0.1 * rng.standard_normal(c)),
                    init(f"{nid}.running_mean", 0.1 * rng.standard_normal(c)),
                    init(f"{nid}.running_var", 1 + 0.1 * rng.random(c))]
            nodes.append(helper.make_node("BatchNormalization", args, [nid], name=nid,
                                          epsilon=n.get("eps", 1e-5)))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", ins, [nid], name=nid))
        elif kind == "relu6":
            lo, hi = init(f"{nid}.min", np.array(0.0)), init(f"{nid}.max", np.array(6.0))
            nodes.append(helper.make_node("Clip", [ins[0], lo, hi], [nid], name=nid))
        elif kind in ("max_pool2d", "avg_pool2d"):
            (kh, kw), (sh, sw) = n["kernel_size"], n.get("stride", n["kernel_size"])
            (ph, pw) = n.get("padding", [0, 0])
            (dh, dw) = n.get("dilation", [1, 1])
            ceil = int(n.get("ceil_mode", False))
            extra = dict(dilations=[dh, dw]) if kind == "max_pool2d" else dict(
                count_include_pad=int(n.get("count_include_pad", True)))
            op = "MaxPool" if kind == "max_pool2d" else "AveragePool"
            nodes.append(helper.make_node(op, ins, [nid], name=nid, kernel_shape=[kh, kw],
                                          strides=[sh, sw], pads=[ph, pw, ph, pw],
                                          ceil_mode=ceil, **extra))
            shapes[nid] = [shape[0], pool_out(shape[1], kh, sh, ph, dh, ceil),
                           pool_out(shape[2], kw, sw, pw, dw, ceil)]
            continue
        elif kind == "adaptive_avg_pool2d":
            oh, ow = n["output_size"]
            if [oh, ow] == [1, 1]:
                nodes.append(helper.make_node("GlobalAveragePool", ins, [nid], name=nid))
            elif shape[1] % oh or shape[2] % ow:
                sys.exit(f"{nid}: adaptive pooling of {shape} to {oh}x{ow} has no ONNX form here")
            else:
                k = [shape[1] // oh, shape[2] // ow]
                nodes.append(helper.make_node("AveragePool", ins, [nid], name=nid,
                                              kernel_shape=k, strides=k))
            shapes[nid] = [shape[0], oh, ow]
            continue
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", ins, [nid], name=nid, axis=1))
            shapes[nid] = [int(np.prod(shape))]
            continue
        elif kind == "dropout":
            nodes.append(helper.make_node("Identity", ins, [nid], name=nid))
        elif kind == "linear":
            fin, fout = n["in_features"], n["out_features"]
            args = [ins[0], init(f"{nid}.weight",
                                 rng.standard_normal((fout, fin)) * (2.0 / fin) ** 0.5)]
            if n.get("bias", True):
                args.append(init(f"{nid}.bias", rng.standard_normal(fout) * 0.01))
            nodes.append(helper.make_node("Gemm", args, [nid], name=nid, transB=1))
            shapes[nid] = [fout]
            continue
        elif kind == "add":
            nodes.append(helper.make_node("Sum" if len(ins) > 2 else "Add", ins, [nid], name=nid))
        elif kind == "concat":
            nodes.append(helper.make_node("Concat", ins, [nid], name=nid, axis=1))
            shapes[nid] = [sum(shapes[i][0] for i in ins)] + shape[1:]
            continue
        else:
            sys.exit(f"{nid}: no ONNX form here for a `{kind}` layer")
        shapes[nid] = shape
    sink = spec["nodes"][-1]["id"]
    consumed = {i for n in spec["nodes"] for i in n["inputs"]}
    sink = next(n["id"] for n in reversed(spec["nodes"]) if n["id"] not in consumed)
    graph = helper.make_graph(
        nodes, spec["name"],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1] + shapes["input"])],
        [helper.make_tensor_value_info(sink, TensorProto.FLOAT, [1] + shapes[sink])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, [1] + shapes["input"]


def cutpoint_round(binary, model, path, args):
    """cutpoint's forward median, per-layer in-pass medians, and the path that ran."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), CUTPOINT_VECTOR_PATH=path)
    out = subprocess.run(
        [binary, "layers", "--model", model, "--in-pass", "--json",
         "--runs", str(args.runs), "--warmup", str(args.warmup)],
        env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"cutpoint-edge layers --model {model} failed: {out.stderr.strip()}")
    report = json.loads(out.stdout)
    layers = {l["id"]: l["median_ms"] for l in report["layers"]}
    return report["forward_median_ms"], layers, report.get("vector_path", path)


def ort_session(ort, model_bytes, args, profile_dir=None):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def ort_forward_ms(ort, np, model_bytes, shape, args):
    """ONNX Runtime's median whole pass of the model, unprofiled, after --warmup passes, ms."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    session = ort_session(ort, model_bytes, args)
    samples = []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        session.run(None, {"input": x})
        if i >= args.warmup:
            samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def ort_round(ort, np, model_bytes, shape, owner, args):
    """ONNX Runtime's forward median, in-pass median per layer kind, and in-pass median per
    cutpoint layer (`owner` maps a node name to the layer its fused kernel counts as)."""
    forward = ort_forward_ms(ort, np, model_bytes, shape, args)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        profiled = ort_session(ort, model_bytes, args, tmp)
        for _ in range(args.warmup + args.runs):
            profiled.run(None, {"input": x})
        events = json.loads(Path(profiled.end_profiling()).read_text())
    per_kind, per_layer = {}, {}
    runs_seen = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen += 1
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if runs_seen > args.warmup:
            kind = ort_kind(e["args"])
            layer = ort_layer(e["name"].removesuffix("_kernel_time"), kind, owner)
            for table, key in ((per_kind, kind), (per_layer, layer)):
                table.setdefault(key, {}).setdefault(runs_seen, 0.0)
                table[key][runs_seen] += e["dur"] / 1e3
    # Each kind's (layer's) time summed within each measured pass, then the median over passes.
    kinds = {kind: statistics.median(by_run.values()) for kind, by_run in per_kind.items()}
    layers = {layer: statistics.median(by_run.values()) for layer, by_run in per_layer.items()}
    return forward, kinds, layers


def layer_owners(spec):
    """For each node of cutpoint's spec, the convolution or linear layer at or before it in
    node order: the layer whose kernel ONNX Runtime fuses that node into, when it does (a
    batch norm, an activation or a residual add after a convolution)."""
    owners, last = {}, None
    for node in spec["nodes"]:
        if layer_kind(node).startswith("conv") or layer_kind(node) == "linear":
            last = node["id"]
        owners[node["id"]] = last or node["id"]
    return owners


def ort_layer(name, kind, owner):
    """The cutpoint layer one of ONNX Runtime's kernels counts as: a fused convolution or
    linear kernel (named after one of the nodes it absorbed, `X_nchwc` or `fused X`) as the
    layer that owns that node; anything else as the node it is named after, or by its own
    name (a layout reorder)."""
    node = name.removeprefix("fused ").removesuffix("_nchwc")
    if kind.startswith("conv") or kind == "linear":
        return owner.get(node, node)
    return node


def ort_kind(event_args):
    """The layer kind of one of ONNX Runtime's kernels, by its op and operand shapes: fused
    nodes (a convolution with its batch norm, activation or residual add) count as the
    convolution, as cutpoint's do; layout reorders count apart."""
    op = event_args.get("op_name", "")
    shapes = [next(iter(t.values())) for t in event_args.get("input_type_shape", [])]
    if op in ("Conv", "FusedConv") and len(shapes) >= 2:
        cin, (cout, per_group, kh, kw) = shapes[0][1], shapes[1]
        if per_group == 1 and cout == cin and cin > 1:
            return "conv depthwise"
        return f"conv {kh}x{kw}" if [kh, kw] in ([1, 1], [3, 3]) else "conv other"
    kinds = {
        "MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "pool",
        "Gemm": "linear", "FusedGemm": "linear", "MatMul": "linear",
        "Add": "add", "Sum": "add", "Concat": "concat",
        "Relu": "activation", "Clip": "activation",
        "Flatten": "flatten", "Identity": "dropout", "BatchNormalization": "batch_norm2d",
    }
    return kinds.get(op, "layout reorder" if op.startswith("Reorder") else f"ort {op}")


def torch_model(model):
    """PyTorch's forward pass of `model` (compare_torch.py's `torch_net`) on a random input, as
    a function of no arguments."""
    from compare_torch import import_torch, torch_net

    torch, torchvision = import_torch()
    net, x = torch_net(torch, torchvision, model)

    def forward():
        with torch.inference_mode():
            net(x)

    return forward


class NearCores:
    """Times steps while the first two CPUs this process may run on are near each other
    (--near-cores): a step whose cache-line round trip between them, read before it or after
    it, is above the limit is timed again after a pause, up to `TRIES` times."""

    TRIES = 5
    PAUSE_S = 2.0

    def __init__(self, limit_ns):
        self.limit_ns = limit_ns
        self.redone = 0
        self.kept_far = 0
        self.readings = []
        if limit_ns:
            self.cpus = sorted(os.sched_getaffinity(0))[:2]
            self.probe = build_helper("core_latency.c", ["-pthread"], "--near-cores")

    def round_trip_ns(self):
        """The median round trip of a burst of readings between the two CPUs, ns."""
        out = subprocess.run([str(self.probe)] + [str(c) for c in self.cpus],
                             capture_output=True, text=True, env=without_preload())
        if out.returncode != 0:
            sys.exit(f"--near-cores: {self.probe} failed: {out.stderr.strip()}")
        ns = float(out.stdout)
        self.readings.append(ns)
        return ns

    def time(self, step):
        """`step()`'s result, from a try with near CPUs before and after it where one came."""
        if not self.limit_ns:
            return step()
        for attempt in range(self.TRIES):
            before = self.round_trip_ns()
            result = step()
            if max(before, self.round_trip_ns()) <= self.limit_ns:
                return result
            if attempt + 1 < self.TRIES:
                self.redone += 1
                time.sleep(self.PAUSE_S)
        self.kept_far += 1
        return result

    def report(self):
        if not self.limit_ns:
            return None
        return {
            "limit_ns": self.limit_ns,
            "cpus": self.cpus,
            "redone": self.redone,
            "kept_far": self.kept_far,
            "median_ns": statistics.median(self.readings) if self.readings else None,
            "far_readings": sum(ns > self.limit_ns for ns in self.readings),
            "readings": len(self.readings),
        }


def compare(args):
    np, onnx, ort = import_ort()
    near = NearCores(args.near_cores)
    if args.torch:
        from compare_torch import import_torch, median_ms

        torch, _ = import_torch()
        torch.set_num_threads(args.threads)
    # (column name, binary, vector path) for every cutpoint build and path timed.
    columns = [(p, args.cutpoint, p) for p in args.paths.split(",")]
    if args.baseline:
        columns += [(f"base_{p}", args.baseline, p) for p in args.paths.split(",")]
    paths = [c for c, _, _ in columns]
    models, kinds = [], {}
    for model in args.models.split(","):
        spec = cutpoint_spec(args.cutpoint, model)
        kind_of = {n["id"]: layer_kind(n) for n in spec["nodes"]}
        onnx_model, shape = to_onnx(spec, np, onnx)
        model_bytes = onnx_model.SerializeToString()
        rounds = {p: [] for p in paths}
        ran = {}
        theirs, pytorch = [], []
        torch_forward = torch_model(model) if args.torch else None
        def cutpoint_step(column, binary, path):
            def step():
                forward, layers, ran[column] = cutpoint_round(binary, model, path, args)
                return forward, layers
            return step, rounds[column]

        # (what times one step, the list its result goes to)
        steps = [cutpoint_step(*c) for c in columns]
        owner = layer_owners(spec)
        steps.append((lambda: ort_round(ort, np, model_bytes, shape, owner, args), theirs))
        if torch_forward:
            steps.append((lambda: median_ms(torch_forward, args), pytorch))
        for r in range(args.rounds):
            for step, results in in_turn(steps, r):
                results.append(near.time(step))
        ort_ms = statistics.median(f for f, _, _ in theirs)
        row = {"model": model, "ort_ms": ort_ms}
        if pytorch:
            row["torch_ms"] = statistics.median(pytorch)
        for p in paths:
            ms = statistics.median(f for f, _ in rounds[p])
            row[f"cutpoint_{p}_ms"] = ms
            row[f"ratio_{p}"] = ms / ort_ms
            if pytorch:
                row[f"torch_ratio_{p}"] = ms / row["torch_ms"]
        models.append(row)
        # Per kind: each layer's median over the rounds, summed by kind.
        sources = [(f"cutpoint_{p}_ms", [l for _, l in rounds[p]]) for p in paths]
        sources.append(("ort_ms", [l for _, l, _ in theirs]))
        for column, layer_rounds in sources:
            keys = set().union(*layer_rounds)
            for key in keys:
                ms = statistics.median(r.get(key, 0.0) for r in layer_rounds)
                kind = kind_of.get(key, key)
                entry = kinds.setdefault(kind, {"kind": kind})
                entry[column] = entry.get(column, 0.0) + ms
        if args.layers:
            row["layers"] = worst_layers(spec, paths, rounds, [l for _, _, l in theirs], args)
    chains = compare_chains(args, np, onnx, ort, columns, near) if args.chains else None
    first = f"cutpoint_{paths[0]}_ms"
    for entry in kinds.values():
        for column in [f"cutpoint_{p}_ms" for p in paths] + ["ort_ms"]:
            entry.setdefault(column, 0.0)
        entry["excess_ms"] = entry[first] - entry["ort_ms"]
    return {
        "threads": args.threads,
        "runs": args.runs,
        "rounds": args.rounds,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__ if args.torch else None,
        "cpu_flags": cpu_flags(),
        "avx512_hidden": os.environ.get(HIDING) == "1",
        "paths_ran": ran,
        "models": models,
        "kinds": sorted(kinds.values(), key=lambda r: -r["excess_ms"]),
        "chains": chains,
        "near_cores": near.report(),
    }


def worst_layers(spec, paths, rounds, ort_rounds, args):
    """The model's --layers layers with the largest in-pass excess of cutpoint's first path
    over ONNX Runtime, each a median over the rounds, worst first."""
    def median(layer_rounds, key):
        return statistics.median(r.get(key, 0.0) for r in layer_rounds)

    rows = []
    for node in spec["nodes"]:
        key = node["id"]
        row = {"layer": key, "kind": layer_kind(node), "ort_ms": median(ort_rounds, key)}
        for p in paths:
            row[f"cutpoint_{p}_ms"] = median([l for _, l in rounds[p]], key)
        row["excess_ms"] = row[f"cutpoint_{paths[0]}_ms"] - row["ort_ms"]
        if row["ort_ms"] or row[f"cutpoint_{paths[0]}_ms"]:
            rows.append(row)
    return sorted(rows, key=lambda r: -r["excess_ms"])[:args.layers]


def chained_shapes(spec, model_onnx, onnx):
    """The model's stride-1, size-keeping convolutions, each as (shape key, kind, input [c, h, w],
    node): the key names the layer's shape, as many nodes share one."""
    inferred = onnx.shape_inference.infer_shapes(model_onnx).graph
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
            for v in list(inferred.value_info) + list(inferred.output)}
    dims["input"] = list(spec["input_shape"])
    shapes = []
    for n in spec["nodes"]:
        if n["kind"] != "conv2d":
            continue
        (kh, kw), stride = n["kernel_size"], n.get("stride", [1, 1])
        keeps = stride == [1, 1] and n.get("padding", [0, 0]) == [kh // 2, kw // 2] \
            and n.get("dilation", [1, 1]) == [1, 1] and kh % 2 == 1 and kw % 2 == 1
        c, h, w = dims[n["inputs"][0]]
        g = n.get("groups", 1)
        key = f"{n['in_channels']}->{n['out_channels']} {kh}x{kw} g{g} {h}x{w}"
        shapes.append((key if keeps else None, layer_kind(n), [c, h, w], n))
    return shapes


def chain_spec(node, chw, copies):
    """A network of `copies` of the convolution `node` over `chw` inputs, each with its ReLU; a
    layer that changes the channel count alternates with its mirror (out to in), so that each
    copy reads what the one before wrote, as in a network."""
    nodes, prev = [{"id": "input", "inputs": [], "kind": "input"}], "input"
    cin, cout = node["in_channels"], node["out_channels"]
    for i in range(copies):
        for j, (a, b) in enumerate([(cin, cout)] + ([(cout, cin)] if cin != cout else [])):
            conv = dict(node, id=f"c{i}.{j}", inputs=[prev], in_channels=a, out_channels=b,
                        bias=True)
            nodes += [conv, {"id": f"r{i}.{j}", "inputs": [conv["id"]], "kind": "relu"}]
            prev = f"r{i}.{j}"
    return {"name": "chain", "input_shape": chw, "nodes": nodes}


def layers_in(chain):
    return sum(1 for n in chain["nodes"] if n["kind"] == "conv2d")


def cutpoint_chain_ms(binary, chain, path, args):
    """cutpoint's median whole pass over `chain`, per convolution, ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(chain, f)
        f.flush()
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), CUTPOINT_VECTOR_PATH=path)
        out = subprocess.run(
            [binary, "layers", "--model-spec", f.name, "--json", "--runs", str(args.runs),
             "--warmup", str(args.warmup)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"cutpoint-edge layers --model-spec (a chain) failed: {out.stderr.strip()}")
    return json.loads(out.stdout)["forward_median_ms"] / layers_in(chain)


def ort_chain_ms(ort, np, onnx, chain, args):
    """ONNX Runtime's median whole pass over `chain`, per convolution, ms."""
    model, shape = to_onnx(chain, np, onnx)
    forward = ort_forward_ms(ort, np, model.SerializeToString(), shape, args)
    return forward / layers_in(chain)


def compare_chains(args, np, onnx, ort, columns, near):
    """Every distinct stride-1 convolution of the models timed as chains in both engines, and
    each model's convolutions summed by kind at those times."""
    shapes, per_model = {}, []
    for model in args.models.split(","):
        spec = cutpoint_spec(args.cutpoint, model)
        onnx_model, _ = to_onnx(spec, np, onnx)
        layers = chained_shapes(spec, onnx_model, onnx)
        per_model.append((model, layers))
        for key, kind, chw, node in layers:
            if key is not None:
                shapes.setdefault(key, (kind, chw, node))
    timed = {}
    for key, (kind, chw, node) in shapes.items():
        chain = chain_spec(node, chw, args.chains)
        rounds = {c: [] for c, _, _ in columns + [("ort", None, None)]}
        # (what times one step, the list its result goes to)
        steps = [(lambda b=b, p=p: cutpoint_chain_ms(b, chain, p, args), rounds[c])
                 for c, b, p in columns]
        steps.append((lambda: ort_chain_ms(ort, np, onnx, chain, args), rounds["ort"]))
        for r in range(args.rounds):
            for step, results in in_turn(steps, r):
                results.append(near.time(step))
        timed[key] = {"shape": key, "kind": kind, "count": 0,
                      **{f"{c}_ms": statistics.median(r) for c, r in rounds.items()}}
    kinds = []
    for model, layers in per_model:
        by_kind = {}
        for key, kind, _, _ in layers:
            entry = by_kind.setdefault(kind, {"model": model, "kind": kind, "layers": 0,
                                              "not_chained": 0})
            if key is None:
                entry["not_chained"] += 1
                continue
            timed[key]["count"] += 1
            entry["layers"] += 1
            for column, value in timed[key].items():
                if column.endswith("_ms"):
                    entry[column] = entry.get(column, 0.0) + value
        kinds += by_kind.values()
    return {"copies": args.chains, "shapes": sorted(timed.values(), key=lambda r: r["shape"]),
            "kinds": kinds}


def print_chains(chains, paths):
    print(f"\nconvolutions as chains of {chains['copies']} copies, whole passes, ms a layer "
          "(a layer that changes the channel count: the mean of it and its mirror)")
    header = "".join(f"{'cp ' + p:>13}{'/ORT':>7}" for p in paths)
    print(f"{'shape':<34}{'kind':<16}{'in':>4}{'ORT':>9}{header}")
    for s in chains["shapes"]:
        cells = "".join(f"{s[f'{p}_ms']:>13.4f}{s[f'{p}_ms'] / s['ort_ms']:>6.2f}x"
                        for p in paths)
        print(f"{s['shape']:<34}{s['kind']:<16}{s['count']:>4}{s['ort_ms']:>9.4f}{cells}")
    print("\nper model and kind, the chained layers summed at those times (ms); "
          "strided layers are not chained")
    header = "".join(f"{'cp ' + p:>13}{'/ORT':>7}" for p in paths)
    print(f"{'model':<14}{'kind':<16}{'layers':>7}{'not':>5}{'ORT':>9}{header}")
    for k in chains["kinds"]:
        if not k["layers"]:
            print(f"{k['model']:<14}{k['kind']:<16}{0:>7}{k['not_chained']:>5}")
            continue
        cells = "".join(f"{k[f'{p}_ms']:>13.3f}{k[f'{p}_ms'] / k['ort_ms']:>6.2f}x"
                        for p in paths)
        print(f"{k['model']:<14}{k['kind']:<16}{k['layers']:>7}{k['not_chained']:>5}"
              f"{k['ort_ms']:>9.3f}{cells}")


# Set in the environment of a run under hide_avx512.so, so that it is not started again.
HIDING = "CUTPOINT_HIDING_AVX512"


def without_preload():
    """This process's environment without LD_PRELOAD: under --hide-avx512 the compiler and the
    helpers run without hide_avx512.so (the compiler's own fault handler crashes under it)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def build_helper(source_name, flags, option):
    """Builds `scripts/<source_name>` with `cc` into target/ (named without `.c`, `.so` for a
    shared library) and returns its path; exits naming `option` where it cannot."""
    source = ROOT / "scripts" / source_name
    name = source_name[:-2] + (".so" if "-shared" in flags else "")
    built_path = ROOT / "target" / name
    built_path.parent.mkdir(exist_ok=True)
    try:
        built = subprocess.run(["cc", "-O2", *flags, "-o", str(built_path), str(source)],
                               capture_output=True, text=True, env=without_preload())
    except FileNotFoundError:
        sys.exit(f"{option}: building {source} needs a C compiler (`cc`); install one")
    if built.returncode != 0:
        sys.exit(f"{option}: building {source} with cc failed: {built.stderr.strip()}")
    return built_path


def rerun_hiding_avx512():
    """Builds hide_avx512.so into target/ and runs this script again under it, with the same
    arguments; does not return."""
    library = build_helper("hide_avx512.c", ["-shared", "-fPIC"], "--hide-avx512")
    preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD")]))
    env = dict(os.environ, LD_PRELOAD=preload, **{HIDING: "1"})
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve())] + sys.argv[1:], env)


def cpu_flags():
    """The CPU's vector flags, as /proc/cpuinfo lists them, less AVX-512's when it is hidden."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines()
                  if l.startswith("flags")), [])
    hidden = os.environ.get(HIDING) == "1"
    return sorted(f for f in set(flags)
                  if f.startswith(("avx", "fma")) and not (hidden and f.startswith("avx512")))


def print_tables(report):
    paths = list(report["paths_ran"])
    print(f"onnxruntime {report['onnxruntime']}, {report['threads']} threads, batch 1, median of "
          f"{report['rounds']} alternating rounds of {report['runs']} passes")
    if report["torch"]:
        print(f"PyTorch {report['torch']} (PT), {report['threads']} threads")
    hidden = " (AVX-512 hidden from every engine: hide_avx512.so)" if report["avx512_hidden"] else ""
    print(f"CPU flags: {' '.join(report['cpu_flags'])}{hidden}")
    print("cutpoint ran: " + ", ".join(f"{p} -> {r}" for p, r in report["paths_ran"].items()))
    near = report["near_cores"]
    if near:
        print(f"near cores: CPUs {near['cpus'][0]} and {near['cpus'][1]}, a cache line's round "
              f"trip {near['median_ns']:.0f} ns (median of {near['readings']} readings, "
              f"{near['far_readings']} above {near['limit_ns']:.0f}); steps timed again: "
              f"{near['redone']}, kept far: {near['kept_far']}")
    if any(p.startswith("base_") for p in paths):
        print("base_*: the --baseline build")
    torch = all("torch_ms" in m for m in report["models"])
    header = "".join(f"{'cp ' + p + ' ms':>15}{'/ORT':>7}" + ("   /PT" if torch else "")
                     for p in paths)
    print(f"\n{'model':<14}{'ORT ms':>9}" + (f"{'PT ms':>9}" if torch else "") + header)
    for m in report["models"]:
        cells = "".join(f"{m[f'cutpoint_{p}_ms']:>15.2f}{m[f'ratio_{p}']:>6.2f}x"
                        + (f"{m[f'torch_ratio_{p}']:>5.2f}x" if torch else "") for p in paths)
        pt = f"{m['torch_ms']:>9.2f}" if torch else ""
        print(f"{m['model']:<14}{m['ort_ms']:>9.2f}{pt}{cells}")
    print("\nper layer kind, in-pass, summed over the models (worst excess first, "
          f"excess = cutpoint {paths[0]} - ORT)")
    header = "".join(f"{'cp ' + p + ' ms':>15}" for p in paths)
    print(f"{'kind':<22}{'ORT ms':>9}{header}{'excess':>9}")
    for k in report["kinds"]:
        cells = "".join(f"{k[f'cutpoint_{p}_ms']:>15.2f}" for p in paths)
        print(f"{k['kind']:<22}{k['ort_ms']:>9.2f}{cells}{k['excess_ms']:>9.2f}")
    for m in report["models"]:
        if m.get("layers"):
            print(f"\n{m['model']}: layers with the largest in-pass excess (excess = cutpoint "
                  f"{paths[0]} - ORT; ONNX Runtime's fused kernels count as their convolution)")
            header = "".join(f"{'cp ' + p + ' ms':>15}" for p in paths)
            print(f"{'layer':<28}{'kind':<16}{'ORT ms':>9}{header}{'excess':>9}")
            for r in m["layers"]:
                cells = "".join(f"{r[f'cutpoint_{p}_ms']:>15.3f}" for p in paths)
                print(f"{r['layer']:<28}{r['kind']:<16}{r['ort_ms']:>9.3f}{cells}"
                      f"{r['excess_ms']:>9.3f}")
    if report["chains"]:
        print_chains(report["chains"], paths)


def main():
    args = parse_args()
    if args.hide_avx512 and os.environ.get(HIDING) != "1":
        rerun_hiding_avx512()
    report = compare(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_tables(report)


if __name__ == "__main__":
    main()
