#!/usr/bin/env python3
"""Where a gateway's CPU goes: Switchyard (SQLite or PostgreSQL, the same
configuration as scripts/bench/gateway.py) under a fixed open-loop load,
profiled by `perf record` with DWARF call graphs, and the CPU per call read
from /proc. Writes perf.data, a folded-stack file and, when inferno is
installed, a flame graph SVG to --out.

  scripts/bench/profile.py --bin target/release --oha oha --out target/bench/profile \\
      [--db sqlite|postgres] [--rate 1000] [--seconds 10]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--frequency", type=int, default=999, help="perf samples per second")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="switchyard-profile-")
    port = g.free_port()
    upstream = subprocess.Popen(g.pinned(args, g.LOAD_CPU) + [os.path.join(args.bin, "fake-upstream"), "--port", str(port)], stdout=subprocess.DEVNULL)
    target = g.Switchyard(args, work, f"http://127.0.0.1:{port}", args.db)
    try:
        g.wait_ready(f"http://127.0.0.1:{port}/v1/models")
        target.start()
        # Warm-up: connections, the key cache, the budget lease.
        g.oha(args, target.chat_url(), args.rate, key=target.key, count=2 * args.rate)
        load = subprocess.Popen(
            g.oha_command(args, target.chat_url(), args.rate, args.seconds + 4, target.key, connections=100),
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(2)
        pid = target.pid()
        before, up_before, t0 = g.cpu_seconds(pid), g.cpu_seconds(upstream.pid), time.time()
        data = os.path.join(args.out, "perf.data")
        subprocess.run(
            ["perf", "record", "-q", "-F", str(args.frequency), "-g", "--call-graph", "dwarf,16384", "-p", str(pid),
             "-o", data, "--", "sleep", str(args.seconds)],
            check=True,
        )
        cpu, up_cpu, wall = g.cpu_seconds(pid) - before, g.cpu_seconds(upstream.pid) - up_before, time.time() - t0
        out, _ = load.communicate()
        r = g.json.loads(out)["summary"]
        calls = args.rate * wall
        print(f"{args.db} at {args.rate}/s: achieved {r['requestsPerSec']:.0f}/s; gateway CPU {cpu / calls * 1e6:.0f} µs per call, "
              f"upstream {up_cpu / calls * 1e6:.0f} µs per call (over {wall:.1f} s, perf attached)")
        folded = os.path.join(args.out, "stacks.folded")
        script = subprocess.run(["perf", "script", "-i", data], check=True, capture_output=True)
        collapse = shutil.which("inferno-collapse-perf")
        if collapse:
            with open(folded, "wb") as f:
                subprocess.run([collapse], input=script.stdout, stdout=f, check=True)
            flame = shutil.which("inferno-flamegraph")
            if flame:
                with open(folded, "rb") as src, open(os.path.join(args.out, "flamegraph.svg"), "wb") as svg:
                    subprocess.run([flame, "--title", f"switchyard serve, {args.db}, {args.rate} calls/s", "--width", "1600"], stdin=src, stdout=svg, check=True)
        else:
            print("inferno is not installed (cargo install inferno): no folded stacks or flame graph", file=sys.stderr)
        print(f"perf report -i {data} --no-children --sort dso,sym")
    finally:
        target.stop()
        upstream.terminate()
        upstream.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
