"""Batch ``score`` throughput on a large pgAudit log, beside the Polars read of the same
file (the parse ceiling) and, for jsonlog, a plain-Python reference, each in its own
process (wall time and peak RSS).

    uv run python bench/bench_score.py                    # 2,000,000 lines of jsonlog
    uv run python bench/bench_score.py --format csvlog    # the same records as csvlog
    uv run python bench/bench_score.py --format stderr
    uv run python bench/bench_score.py --format syslog    # stderr's lines through rsyslog

Makes the data on first use (bench/data/, not committed): a log shaped like real
PostgreSQL 15 + pgAudit 1.7 output (bench/make_jsonlog.py), and a model trained on the
jsonlog of the same records (all three outputs give the same events).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PY = sys.executable

SUFFIX = {"jsonlog": "json", "csvlog": "csv", "stderr": "log", "syslog": "syslog"}
# What Polars alone needs to read the columns trovewatch reads, per format.
CEILING = {
    "jsonlog": """
import sys, polars as pl
cols = ["timestamp", "user", "dbname", "pid", "remote_host", "session_id", "error_severity",
        "message", "statement", "application_name", "backend_type", "leader_pid"]
schema = {c: (pl.Int64 if c in ("pid", "leader_pid") else pl.String) for c in cols}
print(pl.scan_ndjson(sys.argv[1], schema=schema).select(cols).collect().height)
""",
    "csvlog": """
import sys, polars as pl
from detector.formats.pg_csvlog import COLUMNS
schema = dict.fromkeys(COLUMNS, pl.String)
print(pl.scan_csv(sys.argv[1], has_header=False, schema=schema).collect().height)
""",
    # stderr has no columns to read: the lines themselves (one column, no separator).
    "stderr": """
import sys, polars as pl
lines = pl.scan_csv(sys.argv[1], has_header=False, separator="\x1f", quote_char=None,
                    schema={"line": pl.String})
print(lines.collect().height)
""",
}
CEILING["syslog"] = CEILING["stderr"]


def run(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def ensure_data(lines: int, fmt: str = "jsonlog", days: float = 3.0) -> Path:
    DATA.mkdir(exist_ok=True)
    log = DATA / f"pg{lines}.{SUFFIX[fmt]}"
    if not log.exists():
        make = [PY, str(HERE / "make_jsonlog.py"), "--lines", str(lines), "--format", fmt]
        subprocess.run([*make, "--days", str(days), "--out", str(log)], check=True)
    return log


def ensure_model(lines: int) -> Path:
    """The model trained once on the same log (not timed): the same population at the
    same activity, so the flag rate is a real one's, not that of a mismatched model."""
    log = ensure_data(lines)
    model = DATA / f"model{lines}"
    if not _loadable(model):
        shutil.rmtree(model, ignore_errors=True)
        train = [PY, "-m", "detector", "train", "--model-dir", str(model)]
        subprocess.run([*train, "--quarantine", "/dev/null", str(log)], check=True)
    return model


def _loadable(model: Path) -> bool:
    """A model this trovewatch would load: one of its schema and feature versions (an
    older one, left by an earlier version's run, is refused and trained again)."""
    from detector.model import ModelError, check_versions, read_manifest

    try:
        check_versions(model, read_manifest(model))
    except ModelError:
        return False
    return True


def score_command(model: Path, log: Path) -> list[str]:
    """``trovewatch score`` of ``log``, output and rejects discarded."""
    out = ["--quarantine", "/dev/null", "--out", "/dev/null"]
    return [PY, "-m", "detector", "score", "--model-dir", str(model), *out, str(log)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--format", choices=SUFFIX, default="jsonlog")
    args = parser.parse_args()
    log = ensure_data(args.lines, args.format)
    model = ensure_model(args.lines)
    events = sum(1 for line in log.open() if "AUDIT: " in line)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"input: {log.name}, {args.lines:,} lines ({log.stat().st_size / 1e6:,.0f} MB), {events:,} AUDIT lines\n"
    )
    results = {
        "polars read ceiling": run([PY, "-c", CEILING[args.format], str(log)]),
        "trovewatch score": run(score_command(model, log)),
    }
    if args.format == "jsonlog":
        results["plain-Python reference"] = run([PY, str(HERE / "reference.py"), str(log)])
    print(
        f"{'':<24}{'seconds':>9}{'lines/s':>12}{'AUDIT lines/s':>15}{'peak RSS MB':>13}{'CPU s':>8}"
    )
    for name, (seconds, rss, cpu) in results.items():
        print(
            f"{name:<24}{seconds:>9.1f}{args.lines / seconds:>12,.0f}{events / seconds:>15,.0f}"
            f"{rss:>13,.0f}{cpu:>8.1f}"
        )
    ours, ceil = results["trovewatch score"][0], results["polars read ceiling"][0]
    print(f"\ntrovewatch takes {ours / ceil:.2f}x the Polars read ceiling")
    if "plain-Python reference" in results:
        ref = results["plain-Python reference"][0]
        print(f"trovewatch is {ref / ours:.1f}x the plain-Python reference")


if __name__ == "__main__":
    main()
