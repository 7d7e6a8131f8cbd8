"""API latency of ``serve``: ``GET /v1/accounts/{account}`` at a fixed rate (open loop),
with or without a live ingest load beside it.

    uv run python bench/bench_api.py                                  # the API alone
    uv run python bench/bench_api.py --ingest-rate 100000             # while ingesting
    uv run python bench/bench_api.py --ingest-rate 100000 --wrk 16    # plus wrk's closed loop

``serve`` first reads ``--history`` minutes of pool lines (``bench_live.pool``: every
account active in every window) stamped in the past, so every account has scored
windows to show; then a writer process appends lines stamped with the wall clock at
``--ingest-rate`` lines/s (0: none), and a client process asks for random accounts at
``--api-rate`` requests/s for ``--api-seconds``, each request timed from its due time so
a slow answer delays none of the next (no coordinated omission). Writer, client and
``serve`` are three processes, so neither load generator's GIL is in what is measured.

Prints the latency quantiles, status codes, ``serve``'s CPU seconds per request, lines
read per second during the load, and the load average before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_live import LAP, STAMP, TOKEN, client, pool
from bench_score import PY, ensure_model
from bench_serve import free_port, metric


def _stamp(t: datetime) -> bytes:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3].encode() + b" UTC"


def prefill(path: Path, accounts: int, statements: int, minutes: float) -> int:
    """Pool lines stamped evenly over the last ``minutes``; returns the lines written."""
    blob, ends = pool(accounts, statements, seed=1)
    blob = blob.replace(LAP, b"9999")
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    step = timedelta(minutes=minutes) / len(ends)
    with path.open("ab") as out:
        at = 0
        for i in range(0, len(ends), 1000):
            end = ends[min(i + 1000, len(ends)) - 1]
            out.write(blob[at:end].replace(STAMP, _stamp(start + step * i)))
            at = end
    return len(ends)


def writer(path: str, rate: int, accounts: int, statements: int, ready: Any, stop: Any) -> None:
    """Append pool lines stamped with the wall clock at ``rate`` lines/s until ``stop``."""
    blob, ends = pool(accounts, statements, seed=2)
    ready.set()
    written, lap, at, line_no = 0, 0, 0, 0
    current = blob.replace(LAP, b"%04d" % lap)
    start = time.monotonic()
    with open(path, "ab") as out:
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) - written
            stamp = _stamp(datetime.now(UTC))
            while due > 0:
                take = min(due, len(ends) - line_no)
                end = ends[line_no + take - 1]
                out.write(current[at:end].replace(STAMP, stamp))
                written, due, line_no, at = written + take, due - take, line_no + take, end
                if line_no == len(ends):
                    lap, line_no, at = lap + 1, 0, 0
                    current = blob.replace(LAP, b"%04d" % lap)
            out.flush()
            time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its threads and its child processes."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: parent pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def schedstat(pid: int) -> tuple[float, float]:
    """CPU time and run-queue wait (seconds) of a process's threads so far."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def sample_sched(pid: int, stop: threading.Event, out: list[tuple[float, float, float]]) -> None:
    """Every second: (time, CPU s, run-queue wait s) of ``pid`` over that second."""
    last, t = schedstat(pid), time.monotonic()
    while not stop.wait(1.0):
        now = schedstat(pid)
        out.append((time.monotonic() - t, now[0] - last[0], now[1] - last[1]))
        last = now


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    fields = _read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else 0


def wrk(port: int, connections: int, seconds: float, accounts: int, tmp: Path) -> str:
    """wrk's closed loop (``connections`` requests in flight): capacity and latency."""
    script = tmp / "accounts.lua"
    script.write_text(
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        "request = function()\n"
        f'  return wrk.format("GET", string.format("/v1/accounts/user%06d?limit=10", '
        f"math.random(0, {accounts - 1})))\n"
        "end\n"
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    done = subprocess.run([*cmd, f"http://127.0.0.1:{port}"], capture_output=True, text=True)
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--statements", type=int, default=300_000, help="pool size")
    parser.add_argument("--history", type=float, default=12, help="minutes read first")
    parser.add_argument("--ingest-rate", type=int, default=0, help="lines/s during the load")
    parser.add_argument("--warm-up", type=float, default=20, help="s of ingest before the load")
    parser.add_argument("--api-rate", type=float, default=500)
    parser.add_argument("--api-seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16, help="client connections")
    parser.add_argument("--wrk", type=int, default=0, help="then wrk with this many connections")
    parser.add_argument(
        "--close-at",
        type=float,
        help="start the writer so that windows close (5-min boundary + 30 s lateness) "
        "this many seconds into the load",
    )
    parser.add_argument(
        "--nice-ingest", type=int, default=0, help="renice serve's own threads (not the API's)"
    )
    parser.add_argument("--serve-arg", action="append", default=[], help="extra serve argument")
    args = parser.parse_args()
    model = ensure_model(500_000)
    tmp = Path(tempfile.mkdtemp(prefix="trovewatch-api-"))
    followed = tmp / "postgresql.json"
    lines = prefill(followed, args.accounts, args.statements, args.history)
    port = free_port()
    env = {**os.environ, "TROVEWATCH_API_TOKENS": f"{TOKEN}:read"}
    cmd = [PY, "-m", "detector", "serve", "--model-dir", str(model), "--follow", str(followed)]
    cmd += ["--state-dir", str(tmp / "state"), "--port", str(port), *args.serve_arg]
    serve = subprocess.Popen(cmd, env=env, stderr=(tmp / "serve.log").open("ab"))
    spawn = mp.get_context("spawn")
    stop, ready = spawn.Event(), spawn.Event()
    feed = None
    try:
        started = time.monotonic()
        while metric(port, "trovewatch_lines_read_total") < lines:
            if serve.poll() is not None:
                print((tmp / "serve.log").read_text(), file=sys.stderr)
                return 1
            time.sleep(0.5)
        while metric(port, "trovewatch_windows_scored_total") < args.accounts:
            time.sleep(0.5)
        print(
            f"serve read {lines:,} lines of history and scored "
            f"{metric(port, 'trovewatch_windows_scored_total'):,.0f} windows in "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
        if args.nice_ingest:
            for task in Path(f"/proc/{serve.pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), args.nice_ingest)
        if args.close_at is not None:
            # Windows of the live lines close at a 5-minute boundary plus the lateness.
            lead = args.warm_up + args.close_at
            now = time.time()
            close = (now + lead) // 300 * 300 + 300 + 30
            if close - 300 - now >= lead:
                close -= 300
            print(f"waiting {close - lead - now:.0f} s to start the writer", flush=True)
            time.sleep(close - lead - now)
        if args.ingest_rate:
            feed = spawn.Process(
                target=writer,
                args=(str(followed), args.ingest_rate, args.accounts, 500_000, ready, stop),
            )
            feed.start()
            ready.wait()
            time.sleep(args.warm_up)
        results = spawn.Queue()
        load_before = loadavg()
        print(f"load starts at {datetime.now(UTC):%H:%M:%S} UTC", flush=True)
        cpu0, t0 = cpu_seconds(serve.pid), time.monotonic()
        read0 = metric(port, "trovewatch_lines_read_total")
        children = [
            int(p.parent.name)
            for p in Path("/proc").glob("[0-9]*/cmdline")
            if f"/proc/{serve.pid}" != str(p.parent)
            and b"spawn_main" in _read(p)
            and _parent(int(p.parent.name)) == serve.pid
        ]
        sched: list[tuple[float, float, float]] = []
        watching = threading.Event()
        if children:  # the API process: how much CPU it got, and how long it waited for one
            threading.Thread(
                target=sample_sched, args=(children[0], watching, sched), daemon=True
            ).start()
        asker = spawn.Process(
            target=client,
            args=(port, args.api_rate, args.api_seconds, args.accounts, args.threads, results),
        )
        asker.start()
        took, when, codes = results.get()
        watching.set()
        asker.join()
        cpu1, t1 = cpu_seconds(serve.pid), time.monotonic()
        read1 = metric(port, "trovewatch_lines_read_total")
        load_after = loadavg()
        ordered = sorted(took)

        def q(p: float) -> float:
            return ordered[min(int(p * len(ordered)), len(ordered) - 1)] * 1000

        print(
            f"GET /v1/accounts/{{account}}?limit=10: {len(ordered):,} requests at "
            f"{args.api_rate:g}/s for {args.api_seconds:g} s, ingest {args.ingest_rate:,} lines/s; "
            f"p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, "
            f"p99.9 {q(0.999):.1f} ms, max {ordered[-1] * 1000:.0f} ms; status {codes}"
        )
        print(
            f"serve: {cpu1 - cpu0:.1f} CPU s over {t1 - t0:.0f} s "
            f"({(cpu1 - cpu0) / max(len(ordered), 1) * 1000:.2f} ms per request, ingest "
            f"included); lines read {(read1 - read0) / (t1 - t0):,.0f}/s; "
            f"load average {load_before} before, {load_after} after"
        )
        slow: dict[int, int] = {}
        for t, w in zip(took, when, strict=True):
            if t > 0.1:
                slow[int(w)] = slow.get(int(w), 0) + 1
        print(f"requests over 100 ms, by second of the load: {slow}")
        if sched:
            print(
                "API process, per second (CPU ms / run-queue wait ms): "
                + " ".join(f"{t:.0f}:{c * 1000:.0f}/{w * 1000:.0f}" for t, c, w in sched)
            )
        if args.wrk:
            print(wrk(port, args.wrk, 20, args.accounts, tmp))
    finally:
        stop.set()
        if feed is not None:
            feed.join(timeout=10)
        serve.terminate()
        serve.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
