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
  cargo build --release --quiet -p switchyard -p switchyard-bench
  BIN=$CARGO_TARGET_DIR/release
fi
for tool in perf taskset "$oha"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

out=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port)
port=$(free_port)
taskset -c 0 "$BIN/fake-upstream" --port "$up_port" >/dev/null 2>&1 &
upstream=$!
sy=
cleanup() {
  [ -n "$sy" ] && kill "$sy" 2>/dev/null && wait "$sy" 2>/dev/null
  kill "$upstream" 2>/dev/null && wait "$upstream" 2>/dev/null
  rm -rf "$out"
  return 0
}
trap cleanup EXIT

printf '[[models]]\nid = "bench"\nbase_url = "http://127.0.0.1:%s/v1"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n' "$up_port" >"$out/models.toml"
admin=sy_$(python3 -c 'import secrets; print(secrets.token_hex(32))')
env -i PATH="$PATH" PORT="$port" DATABASE_URL="sqlite://$out/usage.db" \
  SWITCHYARD_CONFIG="$out/models.toml" ADMIN_API_KEY="$admin" \
  LOG_LEVEL=info LOG_FORMAT=json LOCAL_MODEL_PRELOAD=false TASK_WORKERS=0 \
  taskset -c 1 "$BIN/switchyard" serve >"$out/serve.log" 2>&1 &
sy=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 "$sy" 2>/dev/null || { echo "the service stopped" >&2; cat "$out/serve.log" >&2; exit 1; }
  sleep 0.2
done

json() { curl -sf -X "$1" -H "authorization: Bearer $admin" -H 'content-type: application/json' "http://127.0.0.1:$port$2" -d "$3"; }
key=$(json POST /v1/admin/keys '{"name":"bench","project":"bench","rate_limit":{"requests":1000000,"period_seconds":60}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
json PUT /v1/admin/budgets '{"scope":"project","subject":"bench","period":"monthly","limit_usd":1000000}' >/dev/null

load() {
  taskset -c 0 "$oha" --no-tui "$@" -m POST -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"model":"bench","messages":[{"role":"user","content":"What is the capital of Germany?"}]}' \
    "http://127.0.0.1:$port/v1/chat/completions"
}
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
