# Sourced by the single-service benchmarks (instructions.sh, syscalls.sh):
# the benchmark upstream and the release service on SQLite (or, with
# BENCH_DATABASE_URL=postgres://…/DB, on that empty PostgreSQL database)
# with the benchmark's production settings (JSON access log at info, a
# rate limit, a project budget, a usage row per call), ready to call.
#
#   start_service OUT UPSTREAM_PREFIX SERVICE_PREFIX...
#
# OUT holds the database, the catalog and the logs. UPSTREAM_PREFIX is a
# command line put before the upstream (a quoted string, "" for none, e.g.
# "taskset -c 0"); the remaining arguments go before the service
# (`valgrind …`, `taskset -c 1`). Needs $BIN. Sets $port, $key and $sy,
# the service's pid; stops both processes (and removes $cleanup_dir, when
# set) on exit. `chat ARGS…` runs $oha with ARGS against the chat
# completions endpoint, after $chat_prefix (e.g. "taskset -c 0") when set.
#
# With BENCH_TARGET=bare-proxy the service is the bare forwarding proxy
# (crates/bench/src/bin/bare-proxy.rs) instead: the floor of a gateway on
# Switchyard's HTTP stacks, measured the same way.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until PATH on $port answers 200; exits if the process $sy stops.
wait_ready() {
  local path=$1 out=$2
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port$path" >/dev/null && return
    kill -0 "$sy" 2>/dev/null || { echo "the service stopped; see $out/serve.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "the service did not answer $path within 120 s; see $out/serve.log" >&2
  exit 1
}

start_service() {
  local out=$1 upstream_prefix=$2
  shift 2
  local up_port admin
  up_port=$(free_port)
  port=$(free_port)
  # shellcheck disable=SC2086 # the prefix is words on purpose
  $upstream_prefix "$BIN/fake-upstream" --port "$up_port" >"$out/upstream.log" 2>&1 &
  upstream=$!
  sy=
  trap stop_service EXIT

  if [ "${BENCH_TARGET:-switchyard}" = bare-proxy ]; then
    "$@" "$BIN/bare-proxy" --port "$port" --upstream "http://127.0.0.1:$up_port" >"$out/serve.log" 2>&1 &
    sy=$!
    wait_ready /v1/models "$out"
    key=none
    return
  fi
  printf '[[models]]\nid = "bench"\nbase_url = "http://127.0.0.1:%s/v1"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n' "$up_port" >"$out/models.toml"
  admin=sy_$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  env -i PATH="$PATH" PORT="$port" DATABASE_URL="${BENCH_DATABASE_URL:-sqlite://$out/usage.db}" \
    SWITCHYARD_CONFIG="$out/models.toml" ADMIN_API_KEY="$admin" \
    LOG_LEVEL=info LOG_FORMAT=json LOCAL_MODEL_PRELOAD=false TASK_WORKERS=0 \
    "$@" "$BIN/switchyard" serve >"$out/serve.log" 2>&1 &
  sy=$!
  wait_ready /ready "$out"

  admin_json() { curl -sf -X "$1" -H "authorization: Bearer $admin" -H 'content-type: application/json' "http://127.0.0.1:$port$2" -d "$3"; }
  key=$(admin_json POST /v1/admin/keys '{"name":"bench","project":"bench","rate_limit":{"requests":1000000,"period_seconds":60}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  admin_json PUT /v1/admin/budgets '{"scope":"project","subject":"bench","period":"monthly","limit_usd":1000000}' >/dev/null
}

stop_service() {
  [ -n "${sy:-}" ] && kill "$sy" 2>/dev/null && wait "$sy" 2>/dev/null
  [ -n "${upstream:-}" ] && kill "$upstream" 2>/dev/null && wait "$upstream" 2>/dev/null
  [ -n "${cleanup_dir:-}" ] && rm -rf "$cleanup_dir"
  return 0
}

chat() {
  # shellcheck disable=SC2086 # the prefix is words on purpose
  ${chat_prefix:-} "$oha" --no-tui "$@" -m POST -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"model":"bench","messages":[{"role":"user","content":"What is the capital of Germany?"}]}' \
    "http://127.0.0.1:$port/v1/chat/completions"
}
