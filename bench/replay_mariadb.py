"""``serve`` against ``score`` on one MariaDB server's audit and slow logs.

    uv run python bench/replay_mariadb.py DIR --model-dir MODEL

DIR holds a server's ``server_audit.log`` and ``slow.log`` with their rotated copies
(``server_audit.log.01``, ``slow.log.1``, ``slow.log.2.gz``, ...), as
``scripts/independent_mariadb_population.py`` writes them. Each log's files are put in
one file, oldest first, then followed by ``serve``'s service in process from the start
until it has closed every window; the same two files are read and counted per window as
``score`` reads and counts them. Prints the statements and rows read each counted, the
windows where they differ, the audit log's clock as ``serve`` last set it, its late and
future events and the process's peak memory while ``serve`` ran.

A server on local time (``--tz`` of the generator other than UTC) is the case this is
for: ``score`` and ``serve`` each set the audit log's clock by the slow log's.

``--mariadb-timezone ZONE``: both are told the server's zone (``mariadb_timezone``).

``--as-rotated``: ``serve`` follows the directory's files as they lie
(``DIR/server_audit.log*`` and ``DIR/slow.log*``, the ``.gz`` archives among them), as a
sidecar started beside a server with rotated logs does; ``score`` still reads them joined.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from detector import features as F
from detector import model, pipeline
from detector.formats import Told
from detector.live.follow import by_name, rotated_from
from detector.live.service import Service
from detector.reader import open_binary
from detector.settings import Settings


def in_order(directory: Path, name: str) -> list[Path]:
    """``name`` and its rotated copies (``name.1``, ``name.01``, ``name.2.gz``), oldest
    first, as ``serve``'s follower orders them."""
    files = [p for p in directory.glob(f"{name}*") if rotated_from(p.name)[0] == name]
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, by_name(str(path))))


def joined(directory: Path, name: str, into: Path) -> Path:
    out = into / name
    with out.open("wb") as fh:
        for path in in_order(directory, name):
            with open_binary(path) as src:
                shutil.copyfileobj(src, fh)
    return out


def counted(events: pl.DataFrame) -> pl.DataFrame:
    """Statements and rows read per account-window, as ``score`` counts them."""
    activity = F.window_activity(events.lazy(), "5m").collect()
    rows = pl.col("rows_read").fill_null(0).cast(pl.Int64).alias("rows")
    return activity.select(F.ACCOUNT, F.WINDOW, pl.col("statements").cast(pl.Int64), rows)


def served(
    logs: list[Path], model_dir: Path, state: Path, timezone: str | None
) -> tuple[pl.DataFrame, str]:
    """The windows ``serve`` stored following ``logs`` from their start, and its clock."""
    trained = model.load(model_dir)
    conf = Settings(state_dir=state, follow=[str(p) for p in logs], mariadb_timezone=timezone)
    service = Service(trained, conf, conf.follow, model_dir)
    try:
        # Read until the logs are done; the wall clock closes the last windows once they
        # have been quiet for the lateness.
        while service.step() or service.engine.open_windows:
            time.sleep(0.01)
        engine = service.engine
        value = service.metrics.registry.get_sample_value
        said = (
            f"audit log's clock {engine.audit_ahead} s ahead of UTC"
            f" ({'told' if engine.audit_clock_told else 'not told'} by both logs),"
            f" {value('trovewatch_late_events_total'):,.0f} late events,"
            f" {value('trovewatch_future_events_total'):,.0f} future events"
        )
    finally:
        service.stop()
    with sqlite3.connect(state / "trovewatch.db") as db:
        stored = pl.read_database(
            "SELECT account, window_start, statements, rows_read AS rows FROM windows", db
        )
    start = pl.from_epoch("window_start", time_unit="us").dt.replace_time_zone("UTC")
    return stored.with_columns(start, pl.col("rows").fill_null(0)), said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--as-rotated", action="store_true", help="follow the files as they lie")
    parser.add_argument(
        "--mariadb-timezone", metavar="ZONE", help="the server's zone, told to serve and score"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logs = [joined(args.directory, name, work) for name in ("server_audit.log", "slow.log")]
        started = time.monotonic()
        follow = logs
        if args.as_rotated:
            names = ("server_audit.log*", "slow.log*")
            follow = [args.directory.resolve() / name for name in names]
        live, said = served(follow, args.model_dir, work / "state", args.mariadb_timezone)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"serve: {time.monotonic() - started:.0f} s, peak memory {peak:.0f} MiB; {said}")
        events, _ = pipeline.read_events(logs, told=Told(mariadb_timezone=args.mariadb_timezone))
        batch = counted(events)
    for name, frame in (("serve", live), ("score", batch)):
        print(
            f"{name}: {frame['statements'].sum():,} statements,"
            f" {frame['rows'].sum():,} rows read, {frame.height:,} windows"
        )
    key = ["account", "window_start"]
    both = live.join(batch, on=key, how="full", coalesce=True, suffix="_score").fill_null(0)
    differing = both.filter(
        (pl.col("statements") != pl.col("statements_score"))
        | (pl.col("rows") != pl.col("rows_score"))
    )
    print(f"windows differing: {differing.height:,} of {batch.height:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
