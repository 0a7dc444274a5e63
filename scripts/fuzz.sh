#!/usr/bin/env bash
# Runs one fuzz target of fuzz/ on a stable toolchain, without cargo-fuzz: the target is built
# with SanitizerCoverage (the instrumentation libFuzzer needs; no AddressSanitizer) plus debug
# assertions and overflow checks, then run from fuzz/seeds/T into fuzz/corpus/T.
#
#   scripts/fuzz.sh T [SECONDS]     e.g. scripts/fuzz.sh handshake 600
#
# Crashes are written to fuzz/artifacts/T/; replay one with
#   fuzz/target/<triple>/release/T fuzz/artifacts/T/<file>
# (CARGO_TARGET_DIR, when set, replaces fuzz/target.)
set -euo pipefail

target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS]; targets are the [[bin]] names in fuzz/Cargo.toml}"
seconds="${2:-600}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
if ! grep -q "^name = \"$target\"$" Cargo.toml; then
    echo "no fuzz target named '$target'; the targets are:" >&2
    grep -A0 '^name = ' Cargo.toml | grep -v cutpoint-fuzz | sed 's/name = /  /' >&2
    exit 2
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
out="${CARGO_TARGET_DIR:-target}"
# --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" --bin "$target"
mkdir -p "corpus/$target" "artifacts/$target"
exec "$out/$triple/release/$target" "corpus/$target" "seeds/$target" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="artifacts/$target/"
