#!/usr/bin/env bash
# Resident memory around a burst: the release service on SQLite with the
# benchmark's production settings (scripts/bench/service.sh), pinned to
# CPU 1 with the upstream and the load on CPU 0. Prints VmRSS and its
# anonymous and file-backed parts (MB) idle, right after CALLS calls on
# CONNECTIONS connections, 5 s and 60 s later. Arguments go before the
# service's command, e.g. an environment setting to compare:
#
#   BIN=/path/to/release scripts/bench/rss.sh
#   BIN=/path/to/release scripts/bench/rss.sh env MIMALLOC_PURGE_DELAY=10
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${BIN:?BIN: the directory holding switchyard and fake-upstream}"
oha=${OHA:-/var/cache/switchyard/tools/bin/oha}
out=${OUT:-target/bench/rss}
calls=${CALLS:-30000}
connections=${CONNECTIONS:-64}
mkdir -p "$out"
rm -f "$out"/usage.db*
# shellcheck source=scripts/bench/service.sh
. scripts/bench/service.sh
start_service "$out" "taskset -c 0" taskset -c 1 "$@"
rss() {
  awk '/^VmRSS|^RssAnon|^RssFile/ { printf "%s %.1f  ", $1, $2 / 1024 }' "/proc/$sy/status"
  echo
}
echo "idle:        $(rss)"
chat_prefix="taskset -c 0" chat -n "$calls" -c "$connections" | grep -E "Requests/sec" || true
echo "after burst: $(rss)"
sleep 5
echo "5 s later:   $(rss)"
sleep 55
echo "60 s later:  $(rss)"
