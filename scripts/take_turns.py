#!/usr/bin/env python3
"""cutpoint against ONNX Runtime in the same moments: the two engines take turns on the same CPUs.

A virtual machine's speed changes from one second to the next (another tenant on the same core,
the host moving its virtual CPUs): timed a few seconds apart, as `compare_ort.py`'s rounds are, two
engines can each meet the machine in a different state. Here both run at once, as two processes
pinned to the same CPUs (--threads of them), each passing one forward pass after another:
cutpoint's through the `pass_series` example of the `models` crate (seeded weights, the fast
kernels, its workers pinned as `cutpoint-edge` pins them), ONNX Runtime's through this script
(the graph `compare_ort.py` builds from cutpoint's model spec, --threads intra-op threads, every
graph optimisation). The script lets one run for a slot (--slot-ms),
stops it (SIGSTOP), lets the other run for the next slot, and so on, --slots times each. A slot's
time is the median of the passes that ran wholly inside it; each cutpoint slot is paired with the
ONNX Runtime slot right after it, less than a second later.

The machine's state in a pair: each engine's slot time over that engine's own fastest slots (its
10th percentile), the two averaged. A pair whose state reads under 1.1 counts as *fast* (both
engines near their best), over 1.25 as *slow*. For each model the script prints, in fast pairs,
slow pairs and all of them, the two engines' median slot times and the median of the pairs'
ratios (cutpoint / ONNX Runtime). A pair's ratio compares the engines in one state; how the two
states' ratios differ says how much more one engine slows than the other when the machine does.

Needs `pip install onnx onnxruntime numpy`, Linux (CPU affinity, SIGSTOP), the release
`cutpoint-edge` (for the model specs; `cargo build --release -p edge-cli`) and the example
(`cargo build --release -p models --example pass_series`).

    scripts/take_turns.py
    scripts/take_turns.py --models mobilenet_v2,resnet50 --slots 60 --slot-ms 700
    scripts/take_turns.py --threads 2                      # on the first two CPUs
    scripts/take_turns.py --json
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_ort  # noqa: E402  (the ONNX graph, the session options and the model list)

ROOT = Path(__file__).resolve().parent.parent
FAST, SLOW = 1.1, 1.25


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="alexnet,resnet18,mobilenet_v2,googlenet,resnet50",
                   help="comma-separated zoo models (default: %(default)s)")
    p.add_argument("--slots", type=int, default=40,
                   help="turns each engine takes per model (default %(default)s)")
    p.add_argument("--slot-ms", type=float, default=700,
                   help="length of a turn in ms; several passes of the model should fit "
                        "(default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of each engine, on as many CPUs (default %(default)s)")
    p.add_argument("--cpus", default=None,
                   help="comma-separated CPUs both engines run on, one a thread (default: the "
                        "first --threads this script may use)")
    p.add_argument("--cutpoint", default=str(ROOT / "target/release/cutpoint-edge"),
                   help="the cutpoint-edge binary, for the model specs (default: %(default)s)")
    p.add_argument("--series", default=str(ROOT / "target/release/examples/pass_series"),
                   help="the pass_series example binary (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--ort-series", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in compare_ort.MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(compare_ort.MODELS)}")
    if args.slots < 3 or args.slot_ms < 50 or args.threads < 1:
        p.error("--slots needs at least 3, --slot-ms at least 50 and --threads at least 1")
    allowed = sorted(os.sched_getaffinity(0))
    try:
        args.cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else allowed[:args.threads]
    except ValueError:
        p.error(f"--cpus {args.cpus}: give CPU numbers separated by commas")
    if len(args.cpus) != args.threads or not set(args.cpus) <= set(allowed):
        p.error(f"--threads {args.threads} needs {args.threads} CPUs from {allowed} (--cpus), "
                f"not {args.cpus}")
    for flag, path in (("--cutpoint", args.cutpoint), ("--series", args.series)):
        if not args.ort_series and not Path(path).is_file():
            p.error(f"{flag} {path} does not exist: build it (see --help)")
    args.models = models
    return args


def ort_series(spec_path, threads):
    """ONNX Runtime's side: passes of the spec's graph on `threads` threads, each printed as it
    ends."""
    np, onnx, ort = compare_ort.import_ort()
    spec = json.loads(Path(spec_path).read_text())
    model, shape = compare_ort.to_onnx(spec, np, onnx)
    options = types.SimpleNamespace(threads=threads)
    session = compare_ort.ort_session(ort, model.SerializeToString(), options)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    while True:
        start = time.perf_counter()
        session.run(None, {"input": x})
        ms = (time.perf_counter() - start) * 1e3
        print(f"{ms:.4f} {time.time():.4f}", flush=True)


def start_pinned(command, cpus, out, err):
    """Starts `command` on `cpus` only, a thread each, its lines to `out`, its errors to `err`."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(len(cpus)))
    return subprocess.Popen(command, stdout=out, stderr=err, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, set(cpus)))


def ready(path):
    """Whether the series in `path` has printed a pass."""
    return path.exists() and path.read_text().count("\n") >= 2


def passes(path):
    """The (ms, end time) of every pass in a series file."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((float(parts[0]), float(parts[1])))
    return rows


def slot_medians(rows, slots):
    """Each slot's median pass, over the passes that started and ended inside it (None where
    none did)."""
    medians = []
    for start, end in slots:
        inside = [ms for ms, t in rows if start <= t - ms / 1e3 and t <= end]
        medians.append(statistics.median(inside) if inside else None)
    return medians


def take_turns(args, model, workdir):
    """One model's turns: the pairs of (cutpoint, ONNX Runtime) slot medians, in order."""
    spec = compare_ort.cutpoint_spec(args.cutpoint, model)
    spec_path = workdir / f"{model}.spec.json"
    spec_path.write_text(json.dumps(spec))
    files = {side: workdir / f"{model}.{side}.txt" for side in ("cutpoint", "ort")}
    errors = {side: workdir / f"{model}.{side}.err" for side in ("cutpoint", "ort")}
    commands = {
        "cutpoint": [args.series, str(spec_path), str(10 ** 9)],
        "ort": [sys.executable, __file__, "--ort-series", str(spec_path),
                "--threads", str(args.threads), "--cpus", ",".join(map(str, args.cpus))],
    }
    procs, outs, turns = {}, [], {"cutpoint": [], "ort": []}
    try:
        for side in ("cutpoint", "ort"):
            outs += [files[side].open("w"), errors[side].open("w")]
            procs[side] = start_pinned(commands[side], args.cpus, outs[-2], outs[-1])
        # Both load their model side by side; then each waits for its turns.
        deadline = time.time() + 120
        while not all(ready(f) for f in files.values()):
            ended = {side: p.poll() for side, p in procs.items() if p.poll() is not None}
            if ended or time.time() > deadline:
                why = ", ".join(f"the {side} side exited with status {code}: "
                                f"{errors[side].read_text().strip()[-500:] or '(nothing said)'}"
                                for side, code in ended.items()) or "no pass within 120 s"
                sys.exit(f"{model}: an engine did not start ({why})")
            time.sleep(0.1)
        for proc in procs.values():
            proc.send_signal(signal.SIGSTOP)
        for _ in range(args.slots):
            for side in ("cutpoint", "ort"):
                procs[side].send_signal(signal.SIGCONT)
                start = time.time()
                time.sleep(args.slot_ms / 1e3)
                procs[side].send_signal(signal.SIGSTOP)
                turns[side].append((start, time.time()))
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
        for out in outs:
            out.close()
    cp = slot_medians(passes(files["cutpoint"]), turns["cutpoint"])
    ort = slot_medians(passes(files["ort"]), turns["ort"])
    return [(a, b) for a, b in zip(cp, ort) if a is not None and b is not None]


def summary(pairs):
    """Fast, slow and all pairs: counts, each engine's median slot and the median pair ratio."""
    if len(pairs) < 3:
        return None
    best = [sorted(side)[len(side) // 10] for side in zip(*pairs)]
    state = [(a / best[0] + b / best[1]) / 2 for a, b in pairs]
    groups = {
        "fast": [p for p, s in zip(pairs, state) if s < FAST],
        "slow": [p for p, s in zip(pairs, state) if s > SLOW],
        "all": pairs,
    }
    out = {}
    for name, group in groups.items():
        if group:
            out[name] = {
                "pairs": len(group),
                "cutpoint_ms": statistics.median(a for a, _ in group),
                "ort_ms": statistics.median(b for _, b in group),
                "ratio": statistics.median(a / b for a, b in group),
            }
    return out


def main():
    args = parse_args()
    if args.ort_series:
        ort_series(args.ort_series, args.threads)
        return
    compare_ort.import_ort()  # says what to install, and exits, where it is missing
    report = {}
    with tempfile.TemporaryDirectory(prefix="take_turns.") as workdir:
        for model in args.models:
            report[model] = summary(take_turns(args, model, Path(workdir)))
            if not args.json:
                print_model(model, report[model], args)
                sys.stdout.flush()
    if args.json:
        print(json.dumps(report, indent=2))


def print_model(model, result, args):
    if result is None:
        print(f"{model}: too few slots held a whole pass; raise --slot-ms")
        return
    cpus = ",".join(map(str, args.cpus))
    print(f"{model} ({args.slots} turns of {args.slot_ms:.0f} ms each, {args.threads} "
          f"thread(s) on CPU {cpus})")
    for name in ("fast", "slow", "all"):
        r = result.get(name)
        if r:
            print(f"  {name:4s} {r['pairs']:3d} pairs  cutpoint {r['cutpoint_ms']:8.3f} ms  "
                  f"ONNX Runtime {r['ort_ms']:8.3f} ms  cutpoint/ORT {r['ratio']:.3f}")
        else:
            print(f"  {name:4s}   0 pairs")


if __name__ == "__main__":
    main()
