#!/usr/bin/env python3
"""How well two sweeps of one machine agree, layer by layer: the ceiling on held-out accuracy.

`train` scores its regressors on held-out layers against their measured times, so a layer whose
time does not repeat from one sweep to the next cannot be predicted within ±10 % of both. Give
it two sweep directories (`cutpoint-edge profile --out DIR`, or `sweep`) made on one machine
under the same conditions; with the same seed they sample the same layers in the same order.
For each layer class it prints, for the sampled layers (each timed alone with the caches
evicted) and for the networks' layers timed inside their passes apart:

- layers: the layers found in both sweeps (matched by class, shapes, spec and, inside passes,
  network; a spec seen several times is matched in order);
- ±10 % and ±5 %: the share whose two times are within 10 % and 5 % of each other;
- shift: the median ratio of the second sweep's time to the first's (a whole class measured
  slower or faster);
- middle half: the quartiles of that ratio (how far single layers scatter).

Then, for each network timed inside its passes in both sweeps, its layers' times added up in
each and their ratio: what the two profiles will price the network at, where `train` prices
those layers at their measurements.

Standard library only.

    scripts/profile_agreement.py /tmp/sweep1 /tmp/sweep2
    scripts/profile_agreement.py /tmp/sweep1 /tmp/sweep2 --json
"""

import argparse
import csv
import glob
import json
import math
import os
import statistics
import sys


def read_rows(path):
    """The data rows of one sweep CSV (its `#` header lines skipped)."""
    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


def layers(directory, in_pass):
    """Every timed layer of a sweep directory, by (network, class, shapes, spec, residual,
    occurrence): its median time in ms. Sampled layers have no network."""
    pattern = "in-pass/*/*.csv" if in_pass else "*.csv"
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, pattern))):
        name = os.path.basename(path)[: -len(".csv")]
        if name in ("steadiness", "pass"):
            continue
        network = os.path.basename(os.path.dirname(path)) if in_pass else ""
        seen = {}
        for row in read_rows(path):
            key = (network, name, row["input_shapes"], row["layer"], row.get("residual", ""))
            seen[key] = seen.get(key, 0) + 1
            out[key + (seen[key],)] = float(row["median_ms"])
    return out


def agreement(first, second):
    """Per class: the matched layers' agreement figures (no class where none matched)."""
    ratios = {}
    for key, a in first.items():
        b = second.get(key)
        if b is not None and a > 0 and b > 0:
            ratios.setdefault(key[1], []).append(math.log(b / a))
    table = {}
    for name, logs in sorted(ratios.items()):
        quartiles = statistics.quantiles(logs, n=4) if len(logs) >= 2 else [logs[0]] * 3
        table[name] = {
            "layers": len(logs),
            "within_10pct": sum(abs(r) <= math.log(1.10) for r in logs) / len(logs),
            "within_5pct": sum(abs(r) <= math.log(1.05) for r in logs) / len(logs),
            "shift": math.exp(statistics.median(logs)),
            "middle_half": [math.exp(quartiles[0]), math.exp(quartiles[2])],
        }
    return table


def network_sums(first, second):
    """Per network timed inside its passes in both sweeps: its matched layers' times added up
    in each, ms."""
    sums = {}
    for key, a in first.items():
        b = second.get(key)
        if b is not None:
            pair = sums.setdefault(key[0], [0.0, 0.0])
            pair[0] += a
            pair[1] += b
    return {name: {"first_ms": a, "second_ms": b, "ratio": b / a if a > 0 else float("nan")}
            for name, (a, b) in sorted(sums.items())}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("first", help="a sweep directory")
    parser.add_argument("second", help="another sweep directory of the same machine")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    for directory in (args.first, args.second):
        if not os.path.isdir(directory):
            sys.exit(f"{directory} is not a directory: give two sweep directories "
                     "(`cutpoint-edge profile --out DIR`)")
    report = {}
    for label, in_pass in (("sampled", False), ("in_pass", True)):
        first, second = layers(args.first, in_pass), layers(args.second, in_pass)
        report[label] = agreement(first, second)
        if in_pass:
            report["networks"] = network_sums(first, second)
        if not report[label] and not in_pass:
            sys.exit("the two sweeps share no sampled layer: were they made with the same seed?")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for label, title in (("sampled", "Sampled layers (each timed alone, caches evicted)"),
                         ("in_pass", "Networks' layers timed inside their passes")):
        print(title)
        print(f"  {'class':14s} {'layers':>6s} {'±10 %':>6s} {'±5 %':>6s} {'shift':>6s}  middle half")
        for name, row in report[label].items():
            low, high = row["middle_half"]
            print(f"  {name:14s} {row['layers']:6d} {100 * row['within_10pct']:5.0f}% "
                  f"{100 * row['within_5pct']:5.0f}% {row['shift']:6.3f}  {low:.3f}–{high:.3f}")
        print()
    print("Networks' in-pass layers added up")
    print(f"  {'network':26s} {'first ms':>9s} {'second ms':>9s}  ratio")
    for name, row in report["networks"].items():
        print(f"  {name:26s} {row['first_ms']:9.3f} {row['second_ms']:9.3f}  {row['ratio']:.3f}")


if __name__ == "__main__":
    main()
