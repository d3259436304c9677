#!/usr/bin/env bash
# Backup and restore at size: a database with ROWS usage records (default
# one million) plus a few keys, on SQLite and on PostgreSQL, backed up to a
# local directory with `switchyard backup create`, restored into an empty
# database with `backup restore`, and restore-tested with `backup verify`,
# each timed, with the archive's size. Release build. Prints one line per
# engine; docs/operations.md keeps the figures.
#
#   scripts/bench/backup.sh
#   ROWS=200000 scripts/bench/backup.sh
#
# Needs PostgreSQL with pg_dump/pg_restore of the server's major version
# (scripts/test.sh installs them) and python3 (for the SQLite fill).
set -euo pipefail
cd "$(dirname "$0")/../.."

rows=${ROWS:-1000000}
admin=${SWITCHYARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/switchyard/target}
echo "==> building the release binary"
cargo build --release --locked -p switchyard --no-default-features --quiet
bin="$CARGO_TARGET_DIR/release/switchyard"
work=$(mktemp -d)
moto_pid=
cleanup() {
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null
  rm -rf "$work"
  psql "$admin" -qAt -c "DROP DATABASE IF EXISTS sy_bench_backup WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS sy_bench_restore WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
export LOCAL_MODEL_PRELOAD=false LOG_LEVEL=warn BACKUP_KEEP_MIN=1000

seconds() { # run a command, print its wall time in seconds
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

fill_sql() { # the usage rows, as one INSERT … SELECT for each engine's series
  echo "INSERT INTO usage_log (timestamp, request_id, key_id, project, endpoint, model_requested, model_used, backend, input_tokens, output_tokens, cost_nano_usd, latency_ms, status)"
}

report() { # engine, db url, restore url
  local engine=$1 url=$2 target=$3 dest="$work/$1-backups"
  for i in 1 2 3; do
    DATABASE_URL=$url "$bin" keys create --name "bench-$i" --project bench >/dev/null
  done
  local create restore verify size id
  create=$(DATABASE_URL=$url seconds "$bin" backup create --to "$dest")
  id=$(DATABASE_URL=$url "$bin" backup list --from "$dest" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  size=$(DATABASE_URL=$url "$bin" backup list --from "$dest" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size_bytes"])')
  restore=$(DATABASE_URL=$url seconds "$bin" backup restore "$id" --from "$dest" --target "$target")
  verify=$(DATABASE_URL=$url seconds "$bin" backup verify "$id" --from "$dest")
  printf 'BACKUP %-8s rows=%s archive=%.1fMiB create=%.1fs restore=%.1fs verify=%.1fs\n' \
    "$engine" "$rows" "$(echo "$size / 1048576" | bc -l)" "$create" "$restore" "$verify"
}

echo "==> SQLite, $rows usage records"
sqlite="$work/switchyard.db"
DATABASE_URL="sqlite://$sqlite" "$bin" migrate >/dev/null
python3 - "$sqlite" "$rows" "$(fill_sql)" <<'EOF'
import sqlite3, sys
db, rows, insert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db)
c.execute(f"""{insert}
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 86400) || ' seconds'), 'req_' || i, 'key_bench', 'bench',
       '/v1/chat/completions', 'fast', 'fast', 'openai', 100 + i % 50, 20 + i % 10, 1000 + i % 977, 5, 200 FROM n""")
c.commit()
EOF
report sqlite "sqlite://$sqlite" "sqlite://$work/restored.db"

echo "==> PostgreSQL, $rows usage records"
psql "$admin" -qAt -c "DROP DATABASE IF EXISTS sy_bench_backup WITH (FORCE)" -c "CREATE DATABASE sy_bench_backup" \
  -c "DROP DATABASE IF EXISTS sy_bench_restore WITH (FORCE)" -c "CREATE DATABASE sy_bench_restore" >/dev/null
pg=${admin%/*}/sy_bench_backup
DATABASE_URL=$pg "$bin" migrate >/dev/null
psql "$pg" -qAt -c "$(fill_sql)
SELECT now() - (i % 86400) * interval '1 second', 'req_' || i, 'key_bench', 'bench', '/v1/chat/completions', 'fast', 'fast', 'openai',
       100 + i % 50, 20 + i % 10, 1000 + i % 977, 5, 200 FROM generate_series(1, $rows) AS i" >/dev/null
report postgres "$pg" "${admin%/*}/sy_bench_restore"

# The same PostgreSQL backup to S3-compatible storage (moto's server from
# the test virtual environment), uploaded in parts, and restore-tested from
# there.
moto=${SWITCHYARD_TEST_VENV_BIN:-/var/cache/switchyard/sdk-venv/bin}/moto_server
if [ -x "$moto" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null && break; sleep 0.1; done
  curl -fs -X PUT "http://127.0.0.1:$port/bench" >/dev/null
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  create=$(DATABASE_URL=$pg seconds "$bin" backup create --to s3://bench/pg)
  verify=$(DATABASE_URL=$pg seconds "$bin" backup verify --from s3://bench/pg)
  printf 'BACKUP %-8s rows=%s create=%.1fs verify=%.1fs (to and from S3, moto on this host)\n' "pg-s3" "$rows" "$create" "$verify"
fi
