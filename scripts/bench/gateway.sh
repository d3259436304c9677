#!/usr/bin/env bash
# Gateway overhead, side by side, in one run on this machine: the same
# open-loop load (oha at fixed rates, latency-corrected) against one fake
# OpenAI upstream directly, through a bare proxy on Switchyard's HTTP stacks
# that only forwards (the floor), through Switchyard on SQLite and on
# PostgreSQL (authentication, rate limit, budget reservation and usage
# logging all on), and through LiteLLM's proxy. Prints the tables and
# writes results.json, results.md and latency.png to $OUT (default
# target/bench/gateway).
#
#   scripts/bench/gateway.sh
#   RATES=500,1000 DURATION=5 SOAK=0 REPEAT=1 TARGETS=direct,switchyard-sqlite scripts/bench/gateway.sh
#
# Every target runs REPEAT times (default 3), one after another, and the
# headline figures are the median and range over the runs. On a machine
# with two or more CPUs the target under test is pinned to CPU 1 and the
# load generator and the upstream to CPU 0 (--no-pin to share them).
#
# Installs what is missing into /var/cache/switchyard/tools: oha 1.16.0
# (cargo install) and a Python venv with LiteLLM's proxy and matplotlib.
# PostgreSQL: $BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres);
# the run creates and drops a scratch database `switchyard_bench` there.
set -euo pipefail
cd "$(dirname "$0")/../.."

tools=/var/cache/switchyard/tools
mkdir -p "$tools"
oha=${OHA:-$tools/bin/oha}
if [ ! -x "$oha" ]; then
  echo "==> installing oha into $tools"
  cargo install oha --version 1.16.0 --locked --root "$tools"
fi
venv=$tools/bench-venv
if [ ! -x "$venv/bin/litellm" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "==> installing LiteLLM's proxy and matplotlib into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'litellm[proxy]==1.108.7' 'matplotlib==3.10.*'
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/switchyard/target}
cargo build --profile production --quiet -p switchyard -p switchyard-bench
out=${OUT:-target/bench/gateway}

exec "$venv/bin/python" scripts/bench/gateway.py \
  --out "$out" \
  --bin "$CARGO_TARGET_DIR/production" \
  --oha "$oha" \
  --litellm "$venv/bin/litellm" \
  --postgres "${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}" \
  --rates "${RATES:-100,250,500,1000,2000,4000}" \
  --duration "${DURATION:-10}" \
  --soak "${SOAK:-300}" \
  --repeat "${REPEAT:-3}" \
  --settle "${SETTLE:-60}" \
  --targets "${TARGETS:-direct,bare-proxy,switchyard-sqlite,switchyard-postgres,litellm}"
