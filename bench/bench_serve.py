"""Live ``serve`` throughput: a pgAudit jsonlog is appended to a followed file as fast as
the disk takes it, while ``trovewatch serve`` follows, parses, windows and scores it.

    uv run python bench/bench_serve.py                 # 500,000 lines
    uv run python bench/bench_serve.py --lines 2000000

Prints lines/s and AUDIT lines/s from the first byte written until every line is
counted in ``trovewatch_lines_read_total`` (read from ``/metrics``, as Prometheus would),
the time until the last windows are scored after that, and the service's peak RSS
(sampled from /proc). Uses the same data and model as bench_score.py (bench/data/).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_score import PY, ensure_data, ensure_model

BLOCK = 4 << 20  # bytes appended per write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples in one scrape (0 when absent or unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (serve's API runs in a child
    process), in MB: the sum of their RSS, an upper bound (shared pages count in each)."""
    return sum(_own_rss_mb(p) for p in [pid, *_descendants(pid)])


def _own_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000)
    args = parser.parse_args()
    log = ensure_data(args.lines)
    model = ensure_model(args.lines)
    events = sum(1 for line in log.open() if '"message":"AUDIT: ' in line)
    size = log.stat().st_size
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"input: {log.name}, {args.lines:,} lines ({size / 1e6:,.0f} MB), {events:,} AUDIT lines")

    with tempfile.TemporaryDirectory(prefix="trovewatch-bench-") as tmp:
        followed = Path(tmp) / "postgresql.json"
        followed.touch()
        port = free_port()
        env = {**os.environ, "TROVEWATCH_API_TOKENS": "bench-token-0123456789:read"}
        cmd = [PY, "-m", "detector", "serve", "--model-dir", str(model)]
        cmd += ["--follow", str(followed), "--state-dir", str(Path(tmp) / "state")]
        serve = subprocess.Popen([*cmd, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            while metric(port, "trovewatch_storage_writable") != 1.0:
                time.sleep(0.2)
            peak = rss_mb(serve.pid)
            start = time.perf_counter()
            with log.open("rb") as src, followed.open("ab") as dst:
                while block := src.read(BLOCK):
                    dst.write(block)
                    dst.flush()
                    peak = max(peak, rss_mb(serve.pid))
            written = time.perf_counter() - start
            while metric(port, "trovewatch_lines_read_total") < args.lines:
                peak = max(peak, rss_mb(serve.pid))
                time.sleep(0.1)
            ingested = time.perf_counter() - start
            # The last windows close once the source is quiet for the lateness (30 s).
            scored = metric(port, "trovewatch_windows_scored_total")
            while True:
                time.sleep(1)
                now = metric(port, "trovewatch_windows_scored_total")
                if now == scored and metric(port, "trovewatch_open_windows") == 0:
                    break
                scored = now
            drained = time.perf_counter() - start
        finally:
            serve.terminate()
            serve.wait(timeout=60)
    print(f"written in {written:.1f} s; every line parsed and counted after {ingested:.1f} s")
    print(f"{'':<28}{'seconds':>9}{'lines/s':>12}{'AUDIT lines/s':>15}{'peak RSS MB':>13}")
    print(
        f"{'serve, follow + score':<28}{ingested:>9.1f}{args.lines / ingested:>12,.0f}"
        f"{events / ingested:>15,.0f}{peak:>13,.0f}"
    )
    print(
        f"all {scored:,.0f} account-windows scored {drained - ingested:.1f} s later "
        "(the last ones wait for the 30 s lateness)"
    )


if __name__ == "__main__":
    sys.exit(main())
