#!/usr/bin/env python3
"""Where a gateway's CPU goes: Switchyard (SQLite or PostgreSQL, the same
configuration as scripts/bench/gateway.py) or the bare forwarding proxy,
under a fixed open-loop load or saturated (`--rate 0`: a closed loop on
--connections), profiled by `perf record` with DWARF call graphs. Prints the
CPU per call from /proc (user and kernel apart) and, from the samples, the
shares of the kernel, of waking the peer that reads a socket the gateway
wrote to (`sock_def_readable`), of `memcpy`/`memmove` and of the allocator.
Writes perf.data, a folded-stack file and, when inferno is installed, a
flame graph SVG to --out.

  scripts/bench/profile.py --bin target/release --oha oha --out target/bench/profile \\
      [--target switchyard|bare-proxy] [--db sqlite|postgres] [--rate 1000|0] [--seconds 10]
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


# Parts of a sample's stack, each the share of samples with a frame that
# matches (a sample can count in more than one).
PARTS = [
    ("in the kernel", lambda leaf, frames: leaf.endswith("([kernel.kallsyms])")),
    ("… waking the reader of a socket written to (sock_def_readable)", lambda leaf, frames: any("sock_def_readable" in f for f in frames)),
    ("memcpy / memmove", lambda leaf, frames: "memmove" in leaf or "memcpy" in leaf),
    ("the allocator (mimalloc or the C library's malloc)", lambda leaf, frames: " mi_" in leaf or " _mi_" in leaf or "malloc" in leaf or " free" in leaf or "_int_free" in leaf),
]


COUNTED = ["sched:sched_waking", "syscalls:sys_enter_writev", "syscalls:sys_enter_futex", "syscalls:sys_enter_pwrite64"]


def counted_per_call(csv, calls):
    """{event: count per call} from `perf stat -x ,` output."""
    out = {}
    for line in csv.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in COUNTED and fields[0].strip().isdigit():
            out[fields[2]] = int(fields[0]) / max(calls, 1)
    return out


def shares(script):
    """(label, percent of samples) for each of PARTS, from `perf script` text."""
    counts, total = [0] * len(PARTS), 0
    for sample in script.split("\n\n"):
        frames = [line.strip() for line in sample.splitlines()[1:] if line.strip()]
        if not frames:
            continue
        total += 1
        for i, (_, test) in enumerate(PARTS):
            if test(frames[0], frames):
                counts[i] += 1
    return [(label, 100 * n / max(total, 1)) for (label, _), n in zip(PARTS, counts)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", default="switchyard", choices=["switchyard", "bare-proxy"])
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rate", type=int, default=1000, help="calls per second; 0: as many as the target answers")
    ap.add_argument("--connections", type=int, default=None, help="default: 100 at a fixed rate, 64 saturated (gateway.py's)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--frequency", type=int, default=999, help="perf samples per second")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    ap.add_argument("--database-priority", default="normal", choices=["normal", "idle"])
    args = ap.parse_args()
    connections = args.connections or (100 if args.rate else 64)
    load_name = f"{args.rate} calls/s" if args.rate else f"saturated, {connections} connections"
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="switchyard-profile-")
    port = g.free_port()
    upstream = subprocess.Popen(g.pinned(args, g.LOAD_CPU) + [os.path.join(args.bin, "fake-upstream"), "--port", str(port)], stdout=subprocess.DEVNULL)
    upstream_base = f"http://127.0.0.1:{port}"
    target = g.Switchyard(args, work, upstream_base, args.db) if args.target == "switchyard" else g.BareProxy(args, upstream_base)
    try:
        g.wait_ready(f"http://127.0.0.1:{port}/v1/models")
        target.start()
        # Warm-up: connections, the key cache, the budget lease.
        g.oha(args, target.chat_url(), args.rate, key=target.key, count=2 * (args.rate or 1000))
        load = subprocess.Popen(
            g.oha_command(args, target.chat_url(), args.rate, args.seconds + 4, target.key, connections=connections),
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(2)
        pid = target.pid()
        before, up_before, t0 = g.cpu_split(pid), g.cpu_seconds(upstream.pid), time.time()
        data = os.path.join(args.out, "perf.data")
        # Counted alongside: the wake-ups the gateway's threads cause (each
        # one of another thread, here mostly the load generator's and the
        # upstream's) and its socket writes.
        counted = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", ",".join(COUNTED), "-p", str(pid), "--", "sleep", str(args.seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        subprocess.run(
            ["perf", "record", "-q", "-F", str(args.frequency), "-g", "--call-graph", "dwarf,16384", "-p", str(pid),
             "-o", data, "--", "sleep", str(args.seconds)],
            check=True,
        )
        _, counts = counted.communicate()
        after = g.cpu_split(pid)
        user, kernel = after[0] - before[0], after[1] - before[1]
        up_cpu, wall = g.cpu_seconds(upstream.pid) - up_before, time.time() - t0
        out, _ = load.communicate()
        r = g.json.loads(out)["summary"]
        calls = r["requestsPerSec"] * wall
        name = f"{args.target} ({args.db})" if args.target == "switchyard" else args.target
        print(f"{name}, {load_name}: achieved {r['requestsPerSec']:.0f}/s; gateway CPU {(user + kernel) / calls * 1e6:.1f} µs per call "
              f"({user / calls * 1e6:.1f} user, {kernel / calls * 1e6:.1f} kernel), upstream {up_cpu / calls * 1e6:.1f} µs per call "
              f"(over {wall:.1f} s, perf attached)")
        folded = os.path.join(args.out, "stacks.folded")
        script = subprocess.run(["perf", "script", "-i", data], check=True, capture_output=True)
        for label, share in shares(script.stdout.decode(errors="replace")):
            print(f"  {share:5.1f} %  {label}")
        per_call = counted_per_call(counts, r["requestsPerSec"] * args.seconds)
        if counted.returncode != 0 or not per_call:
            print(f"  (perf stat could not count {', '.join(COUNTED)}: {counts.strip()[-300:]})")
        for event, n in per_call.items():
            print(f"  {n:7.3f} per call  {event}")
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
