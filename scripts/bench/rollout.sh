#!/usr/bin/env bash
# Rollouts under load with release builds: the scenarios of
# crates/cli/tests/rollout.rs (a blue/green switch then a rolling restart of
# both slots, a healthy canary 1/5/50/100 %, a broken canary rolled back),
# with two `switchyard serve` slots on PostgreSQL and Redis behind a real
# nginx, at RATE open-loop chat calls a second (default 500). Prints one
# line of figures per scenario: calls, calls not answered 200, client-side
# latency through nginx. The tests' own assertions (zero lost, measured
# shares, rollback within a window) hold at this rate too, or the run fails.
#
#   scripts/bench/rollout.sh            # 500 calls/s
#   RATE=1000 scripts/bench/rollout.sh
#
# Needs what scripts/test.sh installs (PostgreSQL, Redis, nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."

rate=${RATE:-500}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/switchyard/target}
export SWITCHYARD_TEST_POSTGRES_URL=${SWITCHYARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
echo "==> building release binaries"
cargo test --release --locked -p switchyard --test rollout --no-run
echo "==> running the rollout scenarios at $rate calls/s"
SWITCHYARD_ROLLOUT_RATE=$rate cargo test --release --locked -p switchyard --test rollout -- \
  --test-threads 1 --nocapture 2>&1 | tee /tmp/switchyard-rollout-bench.log |
  grep -E '^ROLLOUT|^test |test result'
