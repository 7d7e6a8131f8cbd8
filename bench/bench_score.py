"""Batch ``score`` throughput on a large pgAudit jsonlog, beside a plain-Python reference
and the Polars parse ceiling, each in its own process (wall time and peak RSS).

    uv run python bench/bench_score.py            # 2,000,000 lines
    uv run python bench/bench_score.py --lines 10000000

Makes the data on first use (bench/data/, not committed): a log shaped like real
PostgreSQL 15 + pgAudit 1.7 jsonlog (bench/make_jsonlog.py), and a model trained on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PY = sys.executable

CEILING = """
import sys, polars as pl
cols = ["timestamp", "user", "dbname", "pid", "remote_host", "session_id", "error_severity",
        "message", "statement", "application_name", "backend_type", "leader_pid"]
schema = {c: (pl.Int64 if c in ("pid", "leader_pid") else pl.String) for c in cols}
print(pl.scan_ndjson(sys.argv[1], schema=schema).select(cols).collect().height)
"""


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024


def ensure_data(lines: int) -> Path:
    DATA.mkdir(exist_ok=True)
    log = DATA / f"pg{lines}.json"
    if not log.exists():
        make = [PY, str(HERE / "make_jsonlog.py"), "--lines", str(lines), "--out", str(log)]
        subprocess.run(make, check=True)
    return log


def ensure_model(lines: int) -> Path:
    """The model trained once on the same log (not timed): the same population at the
    same activity, so the flag rate is a real one's, not that of a mismatched model."""
    log = ensure_data(lines)
    model = DATA / f"model{lines}"
    if not (model / "manifest.json").exists():
        train = [PY, "-m", "detector", "train", "--model-dir", str(model)]
        subprocess.run([*train, "--quarantine", "/dev/null", str(log)], check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    log = ensure_data(args.lines)
    model = ensure_model(args.lines)
    events = sum(1 for line in log.open() if '"message":"AUDIT: ' in line)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"input: {log.name}, {args.lines:,} lines ({log.stat().st_size / 1e6:,.0f} MB), {events:,} AUDIT lines\n"
    )
    results = {
        "polars read ceiling": run([PY, "-c", CEILING, str(log)]),
        "trovewatch score": run(
            [
                PY,
                "-m",
                "detector",
                "score",
                "--model-dir",
                str(model),
                "--quarantine",
                "/dev/null",
                "--out",
                "/dev/null",
                str(log),
            ]
        ),
        "plain-Python reference": run([PY, str(HERE / "reference.py"), str(log)]),
    }
    print(f"{'':<24}{'seconds':>9}{'lines/s':>12}{'AUDIT lines/s':>15}{'peak RSS MB':>13}")
    for name, (seconds, rss) in results.items():
        print(
            f"{name:<24}{seconds:>9.1f}{args.lines / seconds:>12,.0f}{events / seconds:>15,.0f}{rss:>13,.0f}"
        )
    ours, ref, ceil = (
        results["trovewatch score"][0],
        results["plain-Python reference"][0],
        results["polars read ceiling"][0],
    )
    print(
        f"\ntrovewatch is {ref / ours:.1f}x the plain-Python reference; {ours / ceil:.2f}x the Polars read ceiling"
    )


if __name__ == "__main__":
    main()
