#!/usr/bin/env python3
"""Gateway overhead, side by side: the same open-loop load against one fake
OpenAI upstream, directly and through each gateway, on this machine.

Targets: `direct` (the upstream itself), `bare-proxy` (a proxy on the same
HTTP stacks as Switchyard that only forwards: the floor of any gateway
built on them; `bare-proxy-current-thread` the same on tokio's
current-thread runtime), `switchyard-sqlite` and
`switchyard-postgres` (authentication, per-key rate limit, budget
reservation and usage logging all on) and `litellm` (LiteLLM's proxy with a
master key). For each target and offered rate: achieved rate, latency
percentiles, errors, CPU seconds and peak RSS of the gateway's processes;
then its closed-loop saturation throughput, streaming time to first token,
authenticated `GET /v1/models` throughput, and usage rows versus requests
served. Optionally a soak at a fixed rate with RSS sampled throughout.

Run through scripts/bench/gateway.sh, which builds and installs what this
needs; results land in --out as results.json, results.md and latency.png.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

BODY = {"model": "bench", "messages": [{"role": "user", "content": "What is the capital of Germany?"}]}
TICK = os.sysconf("SC_CLK_TCK")
# With --pin, the target under test (a gateway, or the upstream itself when
# measured directly) runs on one core and everything else (the load
# generator, and the upstream behind a gateway) on the other, so that the
# target's figures are not shared with the load it is measured by.
TARGET_CPU, LOAD_CPU, ALL_CPUS = 1, 0, f"0-{(os.cpu_count() or 1) - 1}"


def pinned(args, cpu):
    """The argv prefix that runs a command on `cpu` (nothing without --pin)."""
    return ["taskset", "-c", str(cpu)] if args.pin else []


def pin_running(args, pid, cpu):
    """Moves every thread of a running process to `cpu`."""
    if args.pin:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, key=None, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def wait_ready(url, key=None, timeout=120, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if http("GET", url, key)[0] == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {timeout} s")


def tree(pid):
    """The pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_split(pid):
    """User and kernel CPU seconds of `pid` and its children, apart."""
    user = kernel = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user, kernel = user + int(fields[11]), kernel + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return user / TICK, kernel / TICK


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def database_server_pid(url):
    """The PostgreSQL server's postmaster (the oldest process named
    `postgres`) when `url` is on this machine, or None."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    out = subprocess.run(["pgrep", "-o", "-x", "postgres"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.split() else None


def set_database_priority(pid, priority):
    """Gives every process of the database server `priority`: `idle`
    (SCHED_IDLE: it runs only on a core that nothing else wants, and never
    preempts what does) or `normal`. Backends started later inherit it from
    the postmaster."""
    policy = "--idle" if priority == "idle" else "--other"
    for p in tree(pid):
        r = subprocess.run(["chrt", policy, "-a", "-p", "0", str(p)], capture_output=True, text=True)
        # A backend that ended meanwhile has nothing left to schedule; any
        # other failure would leave the run measuring something else.
        if r.returncode != 0 and os.path.exists(f"/proc/{p}"):
            raise RuntimeError(f"chrt {policy} on the database server's process {p}: {r.stderr.strip()}")


def rss_mb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Sampler:
    """Peak RSS of a process tree, sampled every 100 ms while running."""

    def __init__(self, pid):
        self.pid, self.peak, self.samples = pid, 0.0, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_mb(self.pid)
            self.peak = max(self.peak, v)
            self.samples.append((time.time(), v))
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._t.join()


class Target:
    name = ""
    key = None
    proc = None
    # The PostgreSQL server's postmaster when the target writes to one on
    # this machine: its CPU is read beside the target's.
    database_pid = None

    def pid(self):
        return self.proc.pid

    def chat_url(self):
        return f"{self.base}/v1/chat/completions"

    def models_url(self):
        return f"{self.base}/v1/models"

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def usage_rows(self):
        return None


class Direct(Target):
    name = "direct"

    def __init__(self, args, upstream_base, upstream_proc):
        self.args, self.base, self.proc_pid = args, upstream_base, upstream_proc.pid

    def start(self):
        pin_running(self.args, self.proc_pid, TARGET_CPU)

    def pid(self):
        return self.proc_pid

    def stop(self):
        pin_running(self.args, self.proc_pid, LOAD_CPU)


class BareProxy(Target):
    """The floor: a proxy on Switchyard's HTTP stacks that only forwards
    (crates/bench/src/bin/bare-proxy.rs)."""

    def __init__(self, args, upstream_base, current_thread=False):
        self.args, self.upstream_base, self.current_thread = args, upstream_base, current_thread
        self.name = "bare-proxy-current-thread" if current_thread else "bare-proxy"

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            pinned(self.args, TARGET_CPU)
            + [os.path.join(self.args.bin, "bare-proxy"), "--port", str(port), "--upstream", self.upstream_base]
            + (["--current-thread"] if self.current_thread else []),
            stdout=subprocess.DEVNULL,
        )
        wait_ready(self.models_url(), proc=self.proc)


class Switchyard(Target):
    def __init__(self, args, work, upstream_base, db):
        self.args, self.work, self.upstream_base, self.db = args, work, upstream_base, db
        self.name = f"switchyard-{db}"

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = os.path.join(self.work, f"{self.name}.toml")
        with open(config, "w") as f:
            f.write(
                f'[[models]]\nid = "bench"\nbase_url = "{self.upstream_base}/v1"\n'
                "input_per_mtok = 1.0\noutput_per_mtok = 2.0\n"
            )
        if self.db == "sqlite":
            # A database of its own for every start (repeated runs too).
            self.sqlite = os.path.join(self.work, f"switchyard-{port}.db")
            url = f"sqlite://{self.sqlite}"
        else:
            name = "switchyard_bench"
            admin = self.args.postgres.rsplit("/", 1)[0] + "/postgres"
            subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)
            subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
            url = self.args.postgres.rsplit("/", 1)[0] + "/" + name
            self.database_pid = database_server_pid(url)
            if self.database_pid is None:
                print("  the PostgreSQL server's processes are not on this machine: its CPU is not measured", flush=True)
            elif self.args.database_priority != "normal":
                set_database_priority(self.database_pid, self.args.database_priority)
        self.db_url = url
        admin_key = "sy_" + secrets.token_hex(32)
        env = {
            "PATH": os.environ["PATH"],
            "PORT": str(port),
            "DATABASE_URL": url,
            "SWITCHYARD_CONFIG": config,
            "ADMIN_API_KEY": admin_key,
            # What a production replica runs: access log lines at info, as
            # JSON, metrics on, no trace export.
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
            "LOCAL_MODEL_PRELOAD": "false",
            "TASK_WORKERS": "0",
        }
        self.log = open(os.path.join(self.work, f"{self.name}.log"), "w")
        self.proc = subprocess.Popen(
            pinned(self.args, TARGET_CPU) + [os.path.join(self.args.bin, "switchyard"), "serve"], env=env, cwd=self.work, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_ready(f"{self.base}/ready", proc=self.proc)
        # A user key of its own with a rate limit well above the offered
        # load (the limiter still runs on every call), and a project budget
        # that every call reserves against and settles.
        _, created = http(
            "POST",
            f"{self.base}/v1/admin/keys",
            admin_key,
            {"name": "bench", "project": "bench", "rate_limit": {"requests": 1000000, "period_seconds": 60}},
        )
        self.key = json.loads(created)["key"]
        http(
            "PUT",
            f"{self.base}/v1/admin/budgets",
            admin_key,
            {"scope": "project", "subject": "bench", "period": "monthly", "limit_usd": 1000000},
        )

    def stop(self):
        super().stop()
        if self.database_pid and self.args.database_priority != "normal":
            set_database_priority(self.database_pid, "normal")

    def usage_rows(self):
        sql = "SELECT COUNT(*) FROM usage_log WHERE endpoint = '/v1/chat/completions'"
        if self.db == "sqlite":
            return sqlite3.connect(self.sqlite).execute(sql).fetchone()[0]
        out = subprocess.run(["psql", self.db_url, "-tAc", sql], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())


class LiteLLM(Target):
    name = "litellm"

    def __init__(self, args, work, upstream_base):
        self.args, self.work, self.upstream_base = args, work, upstream_base

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.key = "sk-bench-" + secrets.token_hex(16)
        config = os.path.join(self.work, "litellm.yaml")
        with open(config, "w") as f:
            f.write(
                "model_list:\n"
                "  - model_name: bench\n"
                "    litellm_params:\n"
                "      model: openai/bench\n"
                f"      api_base: {self.upstream_base}/v1\n"
                "      api_key: sk-upstream\n"
                "general_settings:\n"
                f"  master_key: {self.key}\n"
                "litellm_settings:\n"
                "  telemetry: false\n"
            )
        env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False", NO_DOCS="True", LITELLM_LOCAL_MODEL_COST_MAP="True")
        env.pop("DATABASE_URL", None)
        self.log = open(os.path.join(self.work, "litellm.log"), "w")
        self.proc = subprocess.Popen(
            pinned(self.args, TARGET_CPU) + [self.args.litellm, "--config", config, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(self.args.litellm_workers)],
            env=env, cwd=self.work, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_ready(f"{self.base}/health/liveliness", proc=self.proc, timeout=300)


def oha_command(args, url, rate, duration=None, key=None, method="POST", body=BODY, connections=64, count=None, cpu=LOAD_CPU):
    """The oha argv for `count` requests or `duration` seconds, at `rate`
    (open loop, latency-corrected) or closed loop, on `cpu` (None:
    anywhere); it prints its summary as JSON."""
    cmd = (pinned(args, cpu) if cpu is not None else []) + [args.oha, "--no-tui", "--output-format", "json", "-c", str(connections), "-t", "30s"]
    cmd += ["-n", str(count)] if count else ["-z", f"{duration}s"]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    cmd += ["-m", method]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    return cmd + [url]


def oha(args, url, rate, duration=None, key=None, method="POST", body=BODY, connections=64, count=None, cpu=LOAD_CPU):
    """One oha run: for `count` requests (every one answered, so the answers
    can be matched against usage rows) or for `duration` seconds; on `cpu`
    (None: anywhere)."""
    cmd = oha_command(args, url, rate, duration, key, method, body, connections, count, cpu)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    r = json.loads(out.stdout)
    s, p = r["summary"], r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    # Requests still in flight when the duration ends are cut off by oha
    # ("aborted due to deadline"); they are not the target's errors.
    cut = {k: v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k}
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {
        "offered": rate,
        "achieved": round(s["requestsPerSec"] or 0, 1),
        "ok": codes.get("200", 0),
        "answered": sum(codes.values()),
        "errors": sum(v for k, v in codes.items() if not k.startswith("2")) + sum(cut.values()),
        "error_kinds": {**{k: v for k, v in codes.items() if not k.startswith("2")}, **cut},
        "p50": ms(p.get("p50")),
        "p90": ms(p.get("p90")),
        "p99": ms(p.get("p99")),
        "max": ms(s.get("slowest")),
    }


def measured(target, fn, upstream_pid):
    """Runs fn while sampling the target's CPU seconds and peak RSS, and
    the upstream's CPU seconds over the same time."""
    pid, db = target.pid(), target.database_pid
    before, up_before = cpu_seconds(pid), cpu_seconds(upstream_pid)
    db_before = cpu_seconds(db) if db else None
    with Sampler(pid) as sampler:
        r = fn()
    r["cpu_s"] = round(cpu_seconds(pid) - before, 3)
    r["upstream_cpu_s"] = round(cpu_seconds(upstream_pid) - up_before, 3)
    if db:
        # The database server's processes over the same time: the backends
        # the service writes through, and the server's own writers.
        r["database_cpu_s"] = round(cpu_seconds(db) - db_before, 3)
    r["peak_rss_mb"] = round(sampler.peak, 1)
    return r


def ttft(args, target):
    cmd = pinned(args, LOAD_CPU) + [os.path.join(args.bin, "sse-probe"), "--url", target.chat_url(), "--requests", str(args.ttft_requests)]
    if target.key:
        cmd += ["--key", target.key]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


def run_target(args, target, results, upstream_pid):
    print(f"==> {target.name}", flush=True)
    target.start()
    r = results.setdefault(target.name, {"rates": []})
    # Gateways that write usage rows get a fixed number of requests per run,
    # so that every request is answered and can be matched with its row;
    # LiteLLM (no database here) runs for a fixed time, since at rates past
    # its capacity a fixed count would take minutes.
    exact = not isinstance(target, LiteLLM)
    answered = oha(args, target.chat_url(), min(args.rates), key=target.key, count=2 * min(args.rates))["answered"]  # warm-up
    for rate in args.rates:
        n = rate * args.duration if exact else None
        row = measured(target, lambda: oha(args, target.chat_url(), rate, args.duration, target.key, connections=max(64, min(512, rate // 10)), count=n), upstream_pid)
        answered += row["answered"]
        r["rates"].append(row)
        print(
            f"  offered {rate:>6}/s achieved {row['achieved']:>9.1f}/s  p50 {row['p50']} p90 {row['p90']} p99 {row['p99']} max {row['max']} ms"
            f"  errors {row['errors']}  cpu {row['cpu_s']} s  peak rss {row['peak_rss_mb']} MB",
            flush=True,
        )
    sat = measured(target, lambda: oha(args, target.chat_url(), None, args.duration, target.key, connections=args.saturation_connections, count=args.saturation_requests if exact else None), upstream_pid)
    answered += sat["answered"]
    time.sleep(5)
    sat["rss_5s_after_mb"] = round(rss_mb(target.pid()), 1)
    if isinstance(target, Switchyard):
        time.sleep(max(0, args.settle - 5))
        sat["rss_after_mb"] = round(rss_mb(target.pid()), 1)
    r["saturation"] = sat
    if args.pin:
        # The same closed loop with nothing pinned: the target, the upstream
        # and the load generator share both cores as they please.
        for pid in {target.pid(), upstream_pid}:
            pin_running(args, pid, ALL_CPUS)
        shared = measured(target, lambda: oha(args, target.chat_url(), None, args.duration, target.key, connections=args.saturation_connections, count=args.saturation_requests if exact else None, cpu=None), upstream_pid)
        answered += shared["answered"]
        pin_running(args, upstream_pid, LOAD_CPU)
        pin_running(args, target.pid(), TARGET_CPU)
        r["saturation_unpinned"] = shared
        print(f"  saturation, nothing pinned: {shared['achieved']:.1f}/s  errors {shared['errors']}", flush=True)
    print(f"  saturation ({args.saturation_connections} connections): {sat['achieved']:.1f}/s  p50 {sat['p50']} p99 {sat['p99']} ms  errors {sat['errors']}  cpu {sat['cpu_s']} s  peak rss {sat['peak_rss_mb']} MB, {sat['rss_5s_after_mb']} MB 5 s later, {sat.get('rss_after_mb', '-')} MB {args.settle} s later", flush=True)
    models = oha(args, target.models_url(), None, 5, target.key, method="GET", body=None, connections=32)
    r["models"] = models
    print(f"  GET /v1/models: {models['achieved']:.1f}/s  p50 {models['p50']} ms  errors {models['errors']}", flush=True)
    r["ttft"] = ttft(args, target)
    print(f"  streaming: first token p50 {r['ttft']['ttft_ms']['p50']:.3f} p99 {r['ttft']['ttft_ms']['p99']:.3f} ms  errors {r['ttft']['errors']}", flush=True)
    answered += r["ttft"]["sent"]
    if args.soak and target.name == "switchyard-sqlite":
        print(f"  soak: {args.soak_rate}/s for {args.soak} s", flush=True)
        with Sampler(target.pid()) as sampler:
            soak = oha(args, target.chat_url(), args.soak_rate, args.soak, target.key, connections=128, count=args.soak_rate * args.soak)
        answered += soak["answered"]
        series = sampler.samples
        minute = [v for t, v in series if t - series[0][0] <= 60]
        last = [v for t, v in series if series[-1][0] - t <= 60]
        soak.update(
            rss_first_minute_mb=round(max(minute), 1),
            rss_last_minute_mb=round(max(last), 1),
            rss_peak_mb=round(sampler.peak, 1),
            rss_series=[(round(t - series[0][0], 1), round(v, 1)) for t, v in series[::50]],
        )
        r["soak"] = soak
        print(
            f"  soak: achieved {soak['achieved']:.1f}/s p50 {soak['p50']} p99 {soak['p99']} ms errors {soak['errors']}; "
            f"RSS peak in first minute {soak['rss_first_minute_mb']} MB, in last minute {soak['rss_last_minute_mb']} MB, overall {soak['rss_peak_mb']} MB",
            flush=True,
        )
    target.stop()
    rows = target.usage_rows()
    r["answered"] = answered
    r["usage_rows"] = rows
    if rows is not None:
        print(f"  usage rows {rows} for {answered} chat requests answered (warm-up included)", flush=True)


def spread(values):
    """`median (min–max)` of a list of numbers, or '-'."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-", None
    n = len(values)
    median = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
    fmt = lambda v: f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    text = fmt(median) if n == 1 else f"{fmt(median)} ({fmt(values[0])}–{fmt(values[-1])})"
    return text, median


def headline(run, name, rate):
    """The figures the gateway is judged by, for one target in one run:
    CPU per call at `rate` as a multiple of the upstream's, added latency
    against direct, saturation as a share of direct's, RSS at and after
    saturation, added time to first token."""
    r, d = run.get(name), run.get("direct")
    if r is None:
        return None
    row = next((x for x in r["rates"] if x["offered"] == rate), None)
    drow = next((x for x in d["rates"] if x["offered"] == rate), None) if d else None
    out = {}
    if row and row["answered"]:
        out["cpu_us_per_call"] = row["cpu_s"] / row["answered"] * 1e6
        out["upstream_cpu_us_per_call"] = row["upstream_cpu_s"] / row["answered"] * 1e6
        if row.get("database_cpu_s") is not None:
            out["database_cpu_us_per_call"] = row["database_cpu_s"] / row["answered"] * 1e6
        if out["upstream_cpu_us_per_call"]:
            out["cpu_multiple"] = out["cpu_us_per_call"] / out["upstream_cpu_us_per_call"]
        if drow:
            out["added_p50_ms"] = row["p50"] - drow["p50"]
            out["added_p99_ms"] = row["p99"] - drow["p99"]
    s = r["saturation"]
    out["saturation"] = s["achieved"]
    if d:
        out["saturation_share"] = 100 * s["achieved"] / d["saturation"]["achieved"]
        out["ttft_added_ms"] = r["ttft"]["ttft_ms"]["p50"] - d["ttft"]["ttft_ms"]["p50"]
    if r.get("saturation_unpinned"):
        out["saturation_unpinned"] = r["saturation_unpinned"]["achieved"]
    if d and r.get("saturation_unpinned") and d.get("saturation_unpinned"):
        out["saturation_unpinned_share"] = 100 * r["saturation_unpinned"]["achieved"] / d["saturation_unpinned"]["achieved"]
    out["rss_saturation_mb"] = s["peak_rss_mb"]
    out["rss_after_mb"] = s.get("rss_after_mb")
    return out


HEADLINE = [
    ("gateway CPU per call (µs)", "cpu_us_per_call"),
    ("upstream CPU per call, same run (µs)", "upstream_cpu_us_per_call"),
    ("CPU per call, multiple of the upstream's", "cpu_multiple"),
    ("database server CPU per call, same run (µs)", "database_cpu_us_per_call"),
    ("added p50 (ms)", "added_p50_ms"),
    ("added p99 (ms)", "added_p99_ms"),
    ("saturation (req/s)", "saturation"),
    ("saturation, % of direct", "saturation_share"),
    ("saturation with nothing pinned (req/s)", "saturation_unpinned"),
    ("saturation with nothing pinned, % of direct", "saturation_unpinned_share"),
    ("peak RSS under saturation (MB)", "rss_saturation_mb"),
    ("RSS after saturation (MB)", "rss_after_mb"),
    ("streaming first token, added p50 (ms)", "ttft_added_ms"),
]


def write_report(args, runs, machine):
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "args": {k: v for k, v in vars(args).items()}, "runs": runs}, f, indent=1)
    rate = 1000 if 1000 in args.rates else max(args.rates)
    names = list(runs[0])
    head = [f"Median (min–max) of {len(runs)} run(s); latency and CPU at {rate}/s; RSS after: {args.settle} s after the saturation run.", "",
            "| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, k in HEADLINE:
        cells = []
        for n in names:
            vals = [(headline(run, n, rate) or {}).get(k) for run in runs]
            cells.append(spread(vals)[0])
        head.append(f"| {label} | " + " | ".join(cells) + " |")
    results = runs[-1]
    direct = {row["offered"]: row for row in results.get("direct", {}).get("rates", [])}
    lines = ["| target | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | added p50 | added p99 | errors | CPU s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for row in r["rates"]:
            d = direct.get(row["offered"])
            add = lambda k: "-" if not d or name == "direct" or row[k] is None or d[k] is None else f"{row[k] - d[k]:+.3f}"
            lines.append(
                f"| {name} | {row['offered']} | {row['achieved']} | {row['p50']} | {row['p90']} | {row['p99']} | {row['max']} | {add('p50')} | {add('p99')} | {row['errors']} | {row['cpu_s']} | {row['peak_rss_mb']} |"
            )
    lines += ["", "| target | saturation/s | CPU s | peak RSS MB | GET /v1/models /s | TTFT p50 ms | TTFT p99 ms | usage rows | chat requests answered |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        s = r["saturation"]
        lines.append(
            f"| {name} | {s['achieved']} | {s['cpu_s']} | {s['peak_rss_mb']} | {r['models']['achieved']} | {r['ttft']['ttft_ms']['p50']:.3f} | {r['ttft']['ttft_ms']['p99']:.3f} | {r.get('usage_rows') if r.get('usage_rows') is not None else 'n/a'} | {r['answered']} |"
        )
    lines = head + ["", "The last run in full:", ""] + lines
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, q in zip(axes, ["p50", "p99"]):
        for name, r in results.items():
            pts = [(row["offered"], row[q]) for row in r["rates"] if row[q] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (requests/s, open loop)")
        ax.set_title(f"{q} latency")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, latency-corrected)")
    axes[0].legend()
    fig.suptitle(f"Chat completions through each gateway to the same fake upstream ({machine['cpus']} CPUs, all on one machine)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "latency.png"), dpi=110)
    print(f"plot: {os.path.join(args.out, 'latency.png')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", required=True, help="directory with switchyard, fake-upstream, sse-probe")
    ap.add_argument("--oha", required=True)
    ap.add_argument("--litellm", help="the litellm command (omit to skip LiteLLM)")
    ap.add_argument("--litellm-workers", type=int, default=os.cpu_count())
    ap.add_argument("--postgres", help="postgres://… URL of a server to create a scratch database on (omit to skip)")
    ap.add_argument("--rates", default="100,250,500,1000,2000,4000")
    ap.add_argument("--duration", type=int, default=10, help="seconds per rate")
    ap.add_argument("--saturation-connections", type=int, default=64)
    ap.add_argument("--saturation-requests", type=int, default=30000, help="requests of the closed-loop saturation run")
    ap.add_argument("--ttft-requests", type=int, default=1000)
    ap.add_argument("--soak", type=int, default=0, help="seconds of soak on switchyard-sqlite (0: none)")
    ap.add_argument("--soak-rate", type=int, default=1000)
    ap.add_argument("--targets", default="direct,bare-proxy,switchyard-sqlite,switchyard-postgres,litellm")
    ap.add_argument("--repeat", type=int, default=1, help="runs of every target, one after another; figures are given as median and range")
    ap.add_argument("--settle", type=int, default=60, help="seconds after the saturation run at which RSS is read again")
    ap.add_argument(
        "--database-priority",
        choices=["normal", "idle"],
        default="normal",
        help="scheduling of the PostgreSQL server's processes while switchyard-postgres runs; idle (SCHED_IDLE) keeps its work from preempting the path a call takes, on a machine where it shares the cores",
    )
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2, help="the target on CPU 1, load generator and upstream on CPU 0")
    args = ap.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="switchyard-bench-")
    up_port = free_port()
    upstream = subprocess.Popen(pinned(args, LOAD_CPU) + [os.path.join(args.bin, "fake-upstream"), "--port", str(up_port)], stdout=subprocess.DEVNULL)
    up_base = f"http://127.0.0.1:{up_port}"
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "kernel": os.uname().release,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    runs = []
    targets = []
    wanted = args.targets.split(",")
    try:
        wait_ready(f"{up_base}/v1/models")
        if "direct" in wanted:
            targets.append(Direct(args, up_base, upstream))
        if "bare-proxy" in wanted:
            targets.append(BareProxy(args, up_base))
        if "bare-proxy-current-thread" in wanted:
            targets.append(BareProxy(args, up_base, current_thread=True))
        if "switchyard-sqlite" in wanted:
            targets.append(Switchyard(args, work, up_base, "sqlite"))
        if "switchyard-postgres" in wanted and args.postgres:
            targets.append(Switchyard(args, work, up_base, "postgres"))
        if "litellm" in wanted and args.litellm:
            targets.append(LiteLLM(args, work, up_base))
        for i in range(args.repeat):
            print(f"=== run {i + 1} of {args.repeat}", flush=True)
            results = {}
            for t in targets:
                try:
                    run_target(args, t, results, upstream.pid)
                finally:
                    t.stop()
            runs.append(results)
        write_report(args, runs, machine)
    finally:
        upstream.terminate()
        upstream.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
