#!/usr/bin/env bash
# Instructions per call: the release service under callgrind, on SQLite with
# the benchmark's production settings (JSON access log at info, a rate
# limit, a project budget, a usage row per call), measured over CALLS chat
# completions against the benchmark upstream after 300 to warm up. Counts
# instructions, not time, so the figure is the same from run to run whatever
# else the machine is doing: a change's cost shows without a load test.
# Prints instructions per call, the share of the heaviest parts, and leaves
# the callgrind file for callgrind_annotate or kcachegrind.
#
#   scripts/bench/instructions.sh                 # build, then measure
#   BIN=/path/to/release CALLS=500 scripts/bench/instructions.sh
#   BENCH_DATABASE_URL=postgres://…/empty_db scripts/bench/instructions.sh
#   BENCH_TARGET=bare-proxy scripts/bench/instructions.sh   # the floor (service.sh)
#
# Needs valgrind (Debian `valgrind`) and oha (scripts/bench/gateway.sh
# installs it into /var/cache/switchyard/tools). Under valgrind the CPU has
# no SHA extensions, so key hashing counts its portable code; and the C
# library's memcpy counts one instruction per byte for large copies, so
# its share here is far above its share of time (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

calls=${CALLS:-2000}
oha=${OHA:-/var/cache/switchyard/tools/bin/oha}
out=${OUT:-target/bench/instructions}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/switchyard/target}
if [ -z "${BIN:-}" ]; then
  cargo build --profile production --quiet -p switchyard -p switchyard-bench
  BIN=$CARGO_TARGET_DIR/production
fi
for tool in valgrind callgrind_control callgrind_annotate "$oha"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

mkdir -p "$out"
rm -f "$out"/callgrind.out.* "$out"/usage.db*
# shellcheck source=scripts/bench/service.sh
. scripts/bench/service.sh
echo "==> starting the service under callgrind"
start_service "$out" "" \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out.%p"

load() { chat -n "$1" -c 4; }
echo "==> warming up (300 calls)"
load 300 >/dev/null
sleep 2
echo "==> measuring $calls calls"
callgrind_control -i on "$sy" >/dev/null 2>&1
load "$calls" >"$out/oha.txt"
sleep 1
callgrind_control -i off "$sy" >/dev/null 2>&1
callgrind_control -d "$sy" >/dev/null 2>&1
sleep 1
answered=$(grep -Eo '\[200\] [0-9]+' "$out/oha.txt" | awk '{print $2}')
[ "${answered:-0}" = "$calls" ] || { echo "only ${answered:-0} of $calls calls answered 200" >&2; exit 1; }

file=$(ls -S "$out"/callgrind.out.* | head -1)
python3 - "$file" "$calls" <<'EOF'
import re, subprocess, sys
path, calls = sys.argv[1], int(sys.argv[2])
text = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", path],
                      check=True, capture_output=True, text=True).stdout
total, parts = 0, {}
for line in text.splitlines():
    m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*)", line)
    if not m:
        continue
    n, where = int(m.group(1).replace(",", "")), m.group(2)
    if "PROGRAM TOTALS" in where:
        total = n
        continue
    crate = re.search(r"index\.crates\.io-[^/]+/([A-Za-z0-9_-]+?)-\d", where)
    if re.search(r"memmove|memcpy", where):
        part = "memcpy"
    elif re.search(r"malloc|arena\.c|free", where) and "libc" in where:
        part = "malloc/free"
    elif crate:
        part = crate.group(1)
    elif m2 := re.search(r"/crates/([a-z]+)/", where):
        part = "switchyard-" + m2.group(1)
    elif "/rustc/" in where:
        part = "std (inlined into callers)"
    else:
        part = "other"
    parts[part] = parts.get(part, 0) + n
print(f"\ninstructions per call: {total // calls:,} ({total:,} over {calls} calls)")
print(f"  of which outside memcpy: {(total - parts.get('memcpy', 0)) // calls:,}")
for part, n in sorted(parts.items(), key=lambda kv: -kv[1])[:15]:
    print(f"  {n / total:6.1%}  {n // calls:>9,}  {part}")
print(f"\ncallgrind file: {path}")
EOF
