#!/usr/bin/env python3
"""Side-by-side CPU latency: cutpoint's default backend against PyTorch + torchvision.

For each model it prints the median whole forward pass of both, and their ratio; then, summed
over the models, the time per layer kind (3x3 / 1x1 / depthwise / other convolutions, linear,
batchnorm, activations, pooling, ...) of both and their ratio, worst excess first, so the layers
to optimise are obvious.

Both sides are timed the same way: batch 1 at the model's input size, on the same number of
threads, the median of --runs after --warmup. A layer's time is that layer run alone on the input
it receives in a forward pass (cutpoint's `layers` command; here, a forward hook records each
module's input and the module is then re-run on it). Operations that torchvision does not run as
modules (residual adds, concatenation, torch.flatten, functional ReLUs) have no torch time: their
rows show ours only.

Optional: it needs torch and torchvision (`pip install torch torchvision`). Without them it says
so and exits with status 2. cutpoint's side is the release `cutpoint-edge` binary; build it with
`cargo build --release -p edge-cli`, or point --cutpoint at one.

    scripts/compare_torch.py
    scripts/compare_torch.py --models alexnet,resnet18 --runs 20 --threads 2 --json
    scripts/compare_torch.py --rounds 3          # alternate both sides 3 times: steadier on a VM
    scripts/compare_torch.py --kernels plain     # cutpoint before its own kernels
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["lenet", "alexnet", "vgg16", "mobilenet_v2", "resnet18", "resnet50", "googlenet"]
ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated zoo models (default: all seven; LeNet-5 is defined here, the rest "
        "come from torchvision)",
    )
    parser.add_argument("--runs", type=int, default=20, help="measured runs (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs first (default 3)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times both sides are measured, alternating, per model; each figure is the median "
        "over the rounds (default 1; 3 or more on a machine whose speed drifts)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for both sides (default: every core)",
    )
    parser.add_argument(
        "--cutpoint",
        default=str(ROOT / "target" / "release" / "cutpoint-edge"),
        help="the cutpoint-edge binary (default: target/release/cutpoint-edge)",
    )
    parser.add_argument(
        "--kernels",
        choices=["fast", "plain"],
        default="fast",
        help="cutpoint's kernels: fast (default) or plain (Burn's own operations, unfused)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not among {', '.join(MODELS)}")
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.rounds < 1:
        parser.error("--runs, --rounds and --threads must be at least 1, --warmup at least 0")
    return args


def import_torch():
    try:
        import torch
        import torchvision
    except ImportError as e:
        print(
            f"compare_torch.py needs torch and torchvision ({e}); install them with "
            "`pip install torch torchvision` and run it again",
            file=sys.stderr,
        )
        sys.exit(2)
    return torch, torchvision


def ours(binary, model, args):
    """cutpoint's forward median and per-layer medians, from `cutpoint-edge layers --json`."""
    if not Path(binary).is_file():
        sys.exit(
            f"no cutpoint-edge at {binary}; build it with `cargo build --release -p edge-cli` "
            "or pass --cutpoint"
        )
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(
        [binary, "layers", "--model", model, "--json", "--kernels", args.kernels]
        + ["--runs", str(args.runs), "--warmup", str(args.warmup)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"cutpoint-edge layers --model {model} failed: {out.stderr.strip()}")
    report = json.loads(out.stdout)
    layers = {l["id"]: (l["kind"], l["median_ms"]) for l in report["layers"] if l["kind"] != "input"}
    return report["forward_median_ms"], layers


def median_ms(fn, args):
    samples = []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        fn()
        if i >= args.warmup:
            samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def lenet(torch):
    """LeNet-5 as cutpoint's zoo builds it (torchvision has none), with the same module names."""
    nn = torch.nn
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2, 2),
    )
    net.flatten = nn.Flatten()
    net.classifier = nn.Sequential(
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)
    )
    net.forward = lambda x: net.classifier(net.flatten(net.features(x)))
    return net, torch.randn(1, 1, 32, 32)


def torch_net(torch, torchvision, model):
    """`model` in eval mode with random weights (torchvision's, or LeNet-5 from `lenet`), and a
    random input for it."""
    if model == "lenet":
        net, x = lenet(torch)
    else:
        builders = {"googlenet": dict(aux_logits=False, init_weights=False)}
        net = getattr(torchvision.models, model)(weights=None, **builders.get(model, {}))
        x = torch.randn(1, 3, 224, 224)
    return net.eval(), x


def theirs(torch, torchvision, model, args):
    """torchvision's forward median, per-module medians and each module's kind."""
    net, x = torch_net(torch, torchvision, model)
    with torch.inference_mode():
        forward = median_ms(lambda: net(x), args)
        leaves = {
            name: m for name, m in net.named_modules() if name and not list(m.children())
        }
        inputs = {}

        def record(name):
            # A forward pre-hook that returns None leaves the call alone; clones keep the input
            # as it was before an in-place ReLU overwrites it.
            def hook(module, inp):
                inputs.setdefault(name, tuple(t.clone() for t in inp))

            return hook

        hooks = [m.register_forward_pre_hook(record(name)) for name, m in leaves.items()]
        net(x)
        for hook in hooks:
            hook.remove()
        layers = {
            name: (kind_of(torch, m), median_ms(lambda m=m, inp=inputs[name]: m(*inp), args))
            for name, m in leaves.items()
            if name in inputs
        }
    return forward, layers


def kind_of(torch, module):
    nn = torch.nn
    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "conv depthwise"
        k = module.kernel_size
        return f"conv {k[0]}x{k[1]}" if k in [(1, 1), (3, 3)] else "conv other"
    names = {
        nn.Linear: "linear",
        nn.BatchNorm2d: "batchnorm",
        nn.ReLU: "relu",
        nn.ReLU6: "relu",
        nn.MaxPool2d: "pool",
        nn.AvgPool2d: "pool",
        nn.AdaptiveAvgPool2d: "pool",
        nn.Dropout: "dropout",
        nn.Flatten: "flatten",
    }
    return names.get(type(module), type(module).__name__.lower())


def median_of_rounds(results):
    """Several rounds' (forward, {layer: (kind, ms)}) as one: the median of each figure."""
    forward = statistics.median(f for f, _ in results)
    first = results[0][1]
    layers = {
        layer: (kind, statistics.median(r[layer][1] for _, r in results))
        for layer, (kind, _) in first.items()
    }
    return forward, layers


def compare(args):
    torch, torchvision = import_torch()
    torch.set_num_threads(args.threads)
    models, kinds = [], {}
    for model in args.models.split(","):
        rounds = [
            (ours(args.cutpoint, model, args), theirs(torch, torchvision, model, args))
            for _ in range(args.rounds)
        ]
        our_forward, our_layers = median_of_rounds([o for o, _ in rounds])
        their_forward, their_layers = median_of_rounds([t for _, t in rounds])
        models.append(
            {
                "model": model,
                "cutpoint_ms": our_forward,
                "torch_ms": their_forward,
                "ratio": our_forward / their_forward,
            }
        )
        for layer_id, (our_kind, our_ms) in our_layers.items():
            # The torch module of the same name gives both sides one kind. Ops that are not
            # modules of their own in torchvision keep cutpoint's kind and count apart.
            kind, their_ms = their_layers.get(layer_id, (our_kind, None))
            row = kinds.setdefault(
                kind, {"kind": kind, "cutpoint_ms": 0.0, "torch_ms": 0.0, "cutpoint_only_ms": 0.0}
            )
            if their_ms is None:
                row["cutpoint_only_ms"] += our_ms
            else:
                row["cutpoint_ms"] += our_ms
                row["torch_ms"] += their_ms
    for row in kinds.values():
        row["ratio"] = row["cutpoint_ms"] / row["torch_ms"] if row["torch_ms"] > 0 else None
        row["excess_ms"] = row["cutpoint_ms"] - row["torch_ms"]
    by_kind = sorted(kinds.values(), key=lambda r: -r["excess_ms"])
    return {
        "threads": args.threads,
        "runs": args.runs,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "models": models,
        "kinds": by_kind,
    }


def print_tables(report):
    rounds = f", median of {report['rounds']} alternating rounds" if report["rounds"] > 1 else ""
    print(
        f"torch {report['torch']}, {report['threads']} threads, median of {report['runs']}"
        f"{rounds}, batch 1"
    )
    print(f"\n{'model':<14}{'cutpoint ms':>13}{'torch ms':>11}{'ratio':>8}")
    for m in report["models"]:
        print(f"{m['model']:<14}{m['cutpoint_ms']:>13.2f}{m['torch_ms']:>11.2f}{m['ratio']:>7.2f}x")
    print("\nper layer kind, each layer alone, summed over the models (worst excess first);")
    print("'cutpoint only' is time in ops that torchvision does not run as modules of their own")
    print(f"{'kind':<18}{'cutpoint ms':>13}{'torch ms':>11}{'ratio':>8}{'excess ms':>11}{'cutpoint only':>15}")
    for k in report["kinds"]:
        ratio = f"{k['ratio']:>7.2f}x" if k["ratio"] is not None else f"{'-':>8}"
        print(
            f"{k['kind']:<18}{k['cutpoint_ms']:>13.1f}{k['torch_ms']:>11.1f}{ratio}"
            f"{k['excess_ms']:>11.1f}{k['cutpoint_only_ms']:>15.1f}"
        )


def main():
    args = parse_args()
    report = compare(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_tables(report)


if __name__ == "__main__":
    main()
