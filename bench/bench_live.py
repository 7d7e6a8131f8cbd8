"""Live ``serve`` under a real-time load: throughput, score latency, memory and the API.

A load generator appends pgAudit jsonlog lines (the record shapes of bench/make_jsonlog.py,
one AUDIT statement per account in turn, so every account is active all the time) to a
followed file at a steady rate, each stamped with the wall clock as it is written, while
``trovewatch serve`` follows, scores and checkpoints it. Optionally a second process asks
``GET /v1/accounts/{account}`` at a fixed rate (open loop) and times every answer, from
the first scored windows for ``--api-seconds``.

    uv run python bench/bench_live.py --rate 20000 --accounts 100000 --seconds 600
    uv run python bench/bench_live.py --rate 100000 --accounts 2000 --seconds 120 --api-rate 500

Prints: lines written and read per second (and how far serve fell behind), the p50/p99
of ``trovewatch_score_latency_seconds`` (from a window's end plus the lateness to its
score being stored: the issue's "event time to scored window after it closes"), RSS
every 10 s with its least-squares slope, accounts tracked, and the API latencies.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_score import PY, ensure_data, ensure_model
from bench_serve import free_port, metric, rss_mb
from make_jsonlog import _messages, jsonlog
from soak import quantile


def peak_mb(pid: int) -> float:
    """The process's peak RSS so far (VmHWM): catches a close between two samples."""
    try:
        found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0.0
    return int(found.group(1)) / 1024 if found else 0.0


def children_mb(pid: int) -> float:
    """RSS of ``pid``'s child processes (the API process, multiprocessing's tracker)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(rss_mb(int(kid)) for kid in kids)
    return total


TOKEN = "bench-live-token-0123456789"
STAMP = b"2000-01-01 00:00:00.000 UTC"  # placeholder, replaced as each block is written
LAP = b"@@@@"  # placeholder in session ids, replaced by the pass over the pool


def pool(accounts: int, statements: int, seed: int) -> tuple[bytes, list[int]]:
    """``statements`` statements, account by account in turn, as jsonlog lines with
    placeholder timestamps and session ids; and the byte offset where each line ends."""
    rng = random.Random(seed)
    t = datetime(2000, 1, 1, tzinfo=UTC)
    lines: list[str] = []
    for j in range(statements):
        user = f"user{j % accounts:06d}"
        sid = f"{j % accounts:x}.{LAP.decode()}"
        for message in _messages(rng, j // accounts + 1):
            lines.append(jsonlog(t, user, 10_000 + j % accounts, sid, message))
    blob = ("\n".join(lines) + "\n").encode()
    assert blob.count(STAMP) == len(lines)
    ends, at = [], 0
    for line in lines:
        at += len(line) + 1
        ends.append(at)
    return blob, ends


def client(port: int, rate: float, seconds: float, accounts: int, threads: int, out: Any) -> None:
    """Open loop: request k is due at start + k/rate; its latency runs from then."""
    interval = 1.0 / rate
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    lock = threading.Lock()
    counter = iter(range(total))
    took: list[float] = []
    when: list[float] = []
    codes: dict[int, int] = {}

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        rng = random.Random()
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            due = start + k * interval
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            account = f"user{rng.randrange(accounts):06d}"
            conn.request("GET", f"/v1/accounts/{account}?limit=10", headers=headers)
            answer = conn.getresponse()
            answer.read()
            elapsed = time.perf_counter() - due
            with lock:
                took.append(elapsed)
                when.append(due - start)
                codes[answer.status] = codes.get(answer.status, 0) + 1

    pool_ = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool_:
        t.start()
    for t in pool_:
        t.join()
    out.put((took, when, codes))


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    xs, ys = [t / 60 for t, _ in samples], [m for _, m in samples]
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1e-9
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="lines per second")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--statements", type=int, default=1_000_000, help="pool size")
    parser.add_argument("--api-rate", type=float, default=0, help="API requests per second")
    parser.add_argument(
        "--api-seconds", type=float, default=60, help="API load once windows are scored"
    )
    parser.add_argument("--max-accounts", type=int, help="serve's max_accounts")
    parser.add_argument(
        "--catch-up", type=float, default=600, help="longest wait for serve to catch up, s"
    )
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    model = ensure_model(500_000)
    ensure_data(500_000)
    blob, ends = pool(args.accounts, args.statements, seed=1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; pool {len(ends):,} lines "
        f"({len(blob) / 1e6:,.0f} MB), {args.accounts:,} accounts",
        flush=True,
    )
    print(f"load average at start: {os.getloadavg()}", flush=True)
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="trovewatch-live-"))
    tmp.mkdir(parents=True, exist_ok=True)
    followed = tmp / "postgresql.json"
    followed.write_bytes(b"")
    port = free_port()
    env = {**os.environ, "TROVEWATCH_API_TOKENS": f"{TOKEN}:read"}
    if args.max_accounts:
        env["TROVEWATCH_MAX_ACCOUNTS"] = str(args.max_accounts)
    cmd = [PY, "-m", "detector", "serve", "--model-dir", str(model), "--follow", str(followed)]
    cmd += ["--state-dir", str(tmp / "state"), "--port", str(port)]
    serve = subprocess.Popen(cmd, env=env, stderr=(tmp / "serve.log").open("ab"))
    latencies: list[float] = []
    codes: dict[int, int] = {}
    results: Any = mp.get_context("spawn").Queue()
    rss: list[tuple[float, float]] = []
    try:
        while metric(port, "trovewatch_storage_writable") != 1.0:
            time.sleep(0.2)
        idle = rss_mb(serve.pid)
        idle_children = children_mb(serve.pid)
        api = None
        if args.api_rate:  # in a process of its own: the writer's GIL is not in its timings
            api = mp.get_context("spawn").Process(
                target=client,
                args=(port, args.api_rate, args.api_seconds, args.accounts, 16, results),
            )
        start = time.monotonic()
        written, lap, at, line_no = 0, 0, 0, 0
        current = blob.replace(LAP, b"%04d" % lap)
        api_started = False
        with followed.open("ab") as out:
            while (elapsed := time.monotonic() - start) < args.seconds:
                due = int(elapsed * args.rate) - written
                stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3].encode() + b" UTC"
                while due > 0:
                    take = min(due, len(ends) - line_no)
                    end = ends[line_no + take - 1]
                    out.write(current[at:end].replace(STAMP, stamp))
                    written, due, line_no, at = written + take, due - take, line_no + take, end
                    if line_no == len(ends):
                        lap, line_no, at = lap + 1, 0, 0
                        current = blob.replace(LAP, b"%04d" % lap)
                out.flush()
                if not rss or elapsed - rss[-1][0] >= 10:
                    scored = metric(port, "trovewatch_windows_scored_total")
                    if api is not None and not api_started and scored:
                        api.start()  # once windows are scored: accounts have something to show
                        api_started = True
                    rss.append((elapsed, rss_mb(serve.pid)))
                    read = metric(port, "trovewatch_lines_read_total")
                    print(
                        f"{elapsed:6.0f} s  written {written:,}  read {read:,.0f}  "
                        f"RSS {rss[-1][1]:,.0f} MB (peak {peak_mb(serve.pid):,.0f})  accounts "
                        f"{metric(port, 'trovewatch_accounts_tracked'):,.0f}",
                        flush=True,
                    )
                time.sleep(0.02)
        if api is not None and api_started:
            latencies, _, codes = results.get()
            api.join(timeout=30)
        end_at = time.monotonic()
        read = metric(port, "trovewatch_lines_read_total")
        lag = metric(port, "trovewatch_checkpoint_lag_bytes")
        # Wait for serve to catch up (how long it takes says how far behind it was).
        while (
            metric(port, "trovewatch_lines_read_total") < written
            and time.monotonic() - end_at < args.catch_up
        ):
            time.sleep(0.5)
        caught_up = time.monotonic() - end_at
        # Windows of the last minutes close 5 min + lateness after their start.
        time.sleep(5)
        p50, p99 = quantile(port, 0.5), quantile(port, 0.99)
        windows = metric(port, "trovewatch_windows_scored_total")
        evicted = metric(port, "trovewatch_accounts_evicted_total")
        tracked = metric(port, "trovewatch_accounts_tracked")
        final_rss = rss_mb(serve.pid)
        peak = peak_mb(serve.pid)
        final_children = children_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        if args.workdir is None:  # the followed file is GBs: other sessions need the disk
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = args.seconds
    steady = [s for s in rss if s[0] >= 60]
    print(f"\nwritten {written:,} lines in {seconds:g} s ({written / seconds:,.0f}/s)")
    print(
        f"read by the end {read:,.0f} ({read / seconds:,.0f}/s); behind by {lag / 1e6:,.1f} MB; "
        f"caught up {caught_up:.1f} s after the writer stopped"
    )
    print(f"windows scored {windows:,.0f}; score latency p50 <= {p50} s, p99 <= {p99} s")
    print(
        f"RSS: idle {idle:,.0f} MB, max {max(m for _, m in rss):,.0f} MB, "
        f"end {final_rss:,.0f} MB; peak (VmHWM) {peak:,.0f} MB; "
        f"slope after the first minute {slope_per_min(steady):+.1f} MB/min"
    )
    print(
        f"child processes (API, resource tracker): idle {idle_children:,.0f} MB, "
        f"end {final_children:,.0f} MB"
    )
    print(f"load average at the end: {os.getloadavg()}")
    print(f"accounts tracked {tracked:,.0f}, evicted {evicted:,.0f}")
    if latencies:
        ordered = sorted(latencies)
        q = lambda p: ordered[min(int(p * len(ordered)), len(ordered) - 1)] * 1000  # noqa: E731
        print(
            f"API GET /v1/accounts/{{account}}: {len(ordered):,} requests at "
            f"{args.api_rate:g}/s over {args.api_seconds:g} s; p50 {q(0.5):.1f} ms, "
            f"p99 {q(0.99):.1f} ms, max {ordered[-1] * 1000:.0f} ms; status {codes}"
        )
    print(json.dumps({"rss": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
