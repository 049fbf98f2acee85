#!/usr/bin/env bash
# `make bench`: builds release binaries and runs the benchmark against them. Extra arguments go to the
# benchmark (see `target/release/hookline-bench --help`), e.g. BENCH_ARGS="--subscriptions 10".
set -euo pipefail
cd "$(dirname "$0")/.."
HOOKLINE_BENCH=1 scripts/install-deps.sh
cargo build --release -q --workspace --bins
export HOOKLINE_BIN_DIR="$PWD/target/release"
# BENCH_ARGS is split on whitespace, like arguments typed on a command line.
read -ra extra <<<"${BENCH_ARGS:-}"
exec target/release/hookline-bench "${extra[@]}" "$@"
