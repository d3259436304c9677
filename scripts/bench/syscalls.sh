#!/usr/bin/env bash
# System calls per call: the release service on SQLite with the benchmark's
# production settings (JSON access log at info, a rate limit, a project
# budget, a usage row per call), pinned to CPU 1, at a fixed rate (default
# 1,000/s for 8 s, after 3,000 calls to warm up), counted by `perf trace -s`
# and printed per call, most frequent first. The kernel's share of a call's
# CPU is what instructions.sh does not see; this shows where it goes.
#
#   scripts/bench/syscalls.sh                      # build, then measure
#   BIN=/path/to/release RATE=2000 scripts/bench/syscalls.sh
#   BENCH_DATABASE_URL=postgres://…/empty_db scripts/bench/syscalls.sh
#
# Needs perf (Debian `linux-perf`), taskset and oha (scripts/bench/gateway.sh
# installs it into /var/cache/switchyard/tools); two or more CPUs.
set -euo pipefail
cd "$(dirname "$0")/../.."

rate=${RATE:-1000}
seconds=8
oha=${OHA:-/var/cache/switchyard/tools/bin/oha}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/switchyard/target}
if [ -z "${BIN:-}" ]; then
  cargo build --profile production --quiet -p switchyard -p switchyard-bench
  BIN=$CARGO_TARGET_DIR/production
fi
for tool in perf taskset "$oha"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

out=$(mktemp -d)
cleanup_dir=$out
# shellcheck source=scripts/bench/service.sh
. scripts/bench/service.sh
start_service "$out" "taskset -c 0" taskset -c 1

chat_prefix="taskset -c 0"
load() { chat "$@"; }
echo "==> warming up (3,000 calls)"
load -n 3000 -c 16 >/dev/null
echo "==> counting for ${seconds} s at ${rate}/s"
perf trace -s -p "$sy" -o "$out/trace.txt" -- sleep $((seconds + 2)) &
tracer=$!
sleep 0.5
load -z "${seconds}s" -q "$rate" -c 32 --latency-correction >"$out/oha.txt"
wait "$tracer" || true
calls=$((rate * seconds))
awk -v n="$calls" '/^ *[a-z_0-9]+ +[0-9]+ / {t+=$2} END {printf "system calls per call: %.2f\n", t/n}' "$out/trace.txt"
awk -v n="$calls" '/^ *[a-z_0-9]+ +[0-9]+ / {c[$1]+=$2} END {
  for (k in c) if (c[k]/n >= 0.005) printf "  %-18s %6.2f\n", k, c[k]/n
}' "$out/trace.txt" | sort -k2 -nr
