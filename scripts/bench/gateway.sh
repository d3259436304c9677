#!/usr/bin/env bash
# Gateway overhead, first part: the same open-loop load (oha at fixed
# rates, latency-corrected) against the fake upstream directly and through
# Switchyard (SQLite; authentication, rate limiting, budget reservation and
# usage logging all on), with the usage rows counted afterwards.
# LiteLLM, the PostgreSQL variant, CPU/RSS sampling and the plot come next.
#
#   scripts/bench/gateway.sh                   # RATES="500 1000 2000" DURATION=10s
set -euo pipefail
cd "$(dirname "$0")/../.."

rates=${RATES:-"500 1000 2000"}
duration=${DURATION:-10s}
tools=/var/cache/switchyard/tools
oha=${OHA:-$tools/bin/oha}
if [ ! -x "$oha" ]; then
  echo "==> installing oha into $tools"
  cargo install oha --locked --root "$tools"
fi
cargo build --release --quiet -p switchyard -p switchyard-bench

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port)
sy_port=$(free_port)

target/release/fake-upstream --port "$up_port" > "$work/upstream.log" &
pids+=($!)

cat > "$work/switchyard.toml" <<TOML
[[models]]
id = "bench"
base_url = "http://127.0.0.1:$up_port/v1"
input_per_mtok = 1.0
output_per_mtok = 2.0
TOML
key="sy_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
env -i PATH="$PATH" PORT="$sy_port" DATABASE_URL="sqlite://$work/switchyard.db" \
  SWITCHYARD_CONFIG="$work/switchyard.toml" ADMIN_API_KEY="$key" \
  API_RATE_LIMIT=1000000 LOG_LEVEL=warn LOCAL_MODEL_PRELOAD=false TASK_WORKERS=0 \
  target/release/switchyard serve > "$work/switchyard.log" 2>&1 &
sy_pid=$!
pids+=($sy_pid)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$sy_port/ready" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$up_port/v1/models" >/dev/null 2>&1 && break
  sleep 0.1
done

body='{"model":"bench","messages":[{"role":"user","content":"What is the capital of Germany?"}]}'
run() { # name url rate
  "$oha" --no-tui --output-format json -z "$duration" -q "$3" --latency-correction \
    -m POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d "$body" "$2" \
    > "$work/$1-$3.json"
  python3 - "$work/$1-$3.json" "$1" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
# Requests still in flight when the duration ends are cut off by oha
# ("aborted due to deadline"); they are not the target's errors.
cut = {k: v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k}
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(cut.values())
ms = lambda v: "%.3f" % (v * 1000) if v is not None else "-"
print("%-10s offered %6s/s  achieved %8.1f/s  p50 %s  p90 %s  p99 %s  max %s ms  errors %d" % (
    sys.argv[2], sys.argv[3], s["requestsPerSec"], ms(p["p50"]), ms(p["p90"]), ms(p["p99"]), ms(s["slowest"]), errors))
PY
}

echo "==> $duration per rate; latency in ms"
for rate in $rates; do
  run direct "http://127.0.0.1:$up_port/v1/chat/completions" "$rate"
  run switchyard "http://127.0.0.1:$sy_port/v1/chat/completions" "$rate"
done

# Usage rows written versus requests answered with 200.
kill -TERM "$sy_pid" 2>/dev/null || true; wait "$sy_pid" 2>/dev/null || true
served=$(python3 - "$work" <<'PY'
import glob, json, sys
print(sum(json.load(open(f)).get("statusCodeDistribution", {}).get("200", 0) for f in glob.glob(sys.argv[1] + "/switchyard-*.json")))
PY
)
rows=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from usage_log").fetchone()[0])' "$work/switchyard.db")
echo "usage rows $rows for $served requests served"
