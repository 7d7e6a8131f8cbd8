from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import polars as pl
import pytest

from detector import features as F
from detector import formats, model, pipeline, settings
from detector import schema as S
from detector.formats import mariadb, zones
from detector.formats.mariadb_audit import RECORD_START
from detector.live.engine import Engine
from detector.pipeline import read_events
from detector.reader import Chunk
from detector.rejects import Quarantine

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_PG = FIXTURES / "reference" / "postgres15-pgaudit1.7.0"
PG_SCENARIOS = FIXTURES / "pgaudit"
OUTPUTS = {"stderr": "postgresql.log", "csvlog": "postgresql.csv", "jsonlog": "postgresql.json"}


@pytest.fixture(autouse=True)
def _zones_unsettled() -> Iterator[None]:
    """Each test reads CST and IST by the guess a new run makes: a log's last write read
    by another test settles them for the process (``zones.settle``)."""
    zones.reset()
    yield
    zones.reset()


def unavailable(reason: str) -> NoReturn:
    """A test's real component is missing: skipped here, a failure in CI, where the
    project's own scripts install it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; required in CI")
    pytest.skip(reason)


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``8m``) mounted on the new directory ``mount``, for a real
    full disk; unmounted after. Needs root (CI runs as root)."""
    mount.mkdir()
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def parse(
    path: Path, format_name: str = "auto", **kwargs: object
) -> tuple[pl.DataFrame, Quarantine]:
    """Events from one file, and the quarantine that counted its rejects (in memory)."""
    quarantine = Quarantine(None)
    events, _ = read_events([path], format_name=format_name, quarantine=quarantine, **kwargs)  # type: ignore[arg-type]
    return events, quarantine


@pytest.fixture(params=sorted(OUTPUTS))
def output(request: pytest.FixtureRequest) -> str:
    """Each of PostgreSQL's three log outputs in turn."""
    return str(request.param)


def window_counts(scored: pl.DataFrame) -> pl.DataFrame:
    """The statements and rows read of each account-window of ``score``'s output."""
    feature = pl.col("features").struct.field
    return scored.select(
        "account",
        "window_start",
        feature("statements_5m").cast(pl.Int64).alias("statements"),
        feature("rows_read_5m").fill_null(0).cast(pl.Int64).alias("rows"),
    ).sort("account", "window_start")


def audit_log_ahead(audit_log: bytes, hours: int) -> bytes:
    """A MariaDB audit log's records with their times ``hours`` ahead: the log a server
    on a clock that far ahead of UTC (``hours=8``: Shanghai) writes for the same run."""

    def ahead(at: re.Match[bytes]) -> bytes:
        local = datetime.strptime(at[0].decode(), "%Y%m%d %H:%M:%S") + timedelta(hours=hours)
        return local.strftime("%Y%m%d %H:%M:%S").encode()

    return re.sub(rb"(?m)^\d{8} \d\d:\d\d:\d\d(?=,)", ahead, audit_log)


@functools.cache
def _mariadb_records(
    audit_log: Path, slow_log: Path
) -> tuple[list[tuple[datetime, bytes]], list[tuple[datetime, bytes]], pl.DataFrame]:
    """The records of a MariaDB server's audit and slow logs, each with the time it was
    written at, and the events ``score`` reads from the two."""
    audit = []  # an audit record is written at its time, its lines together
    for line in audit_log.read_bytes().splitlines(keepends=True):
        if RECORD_START.match(line) or not audit:
            at = datetime.strptime(line[:17].decode(), "%Y%m%d %H:%M:%S").replace(tzinfo=UTC)
            audit.append((at, line))
        else:
            audit[-1] = (audit[-1][0], audit[-1][1] + line)
    # A slow-log record is written at the statement's end: (its header and text, its end)
    # from the parsed events, in the order the log has them.
    slow = formats.native("mariadb-slow")
    text = slow_log.read_bytes()
    starts = [m.start() for m in re.finditer(rb"^# User@Host: ", text, re.MULTILINE)]
    records = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    times = [
        slow.parse(Chunk("slow", record, 1))
        .events.select(mariadb.slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)))
        .item()
        for record in records
    ]
    whole, _ = read_events([audit_log, slow_log])
    return audit, [*zip(times, records, strict=True)], whole


def mariadb_windows_cut_at(
    trained: model.TrainedModel, audit_log: Path, slow_log: Path, cut: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """A UTC MariaDB server's audit and slow logs moved in time so that ``cut`` falls on
    a window boundary, read by the live engine as ``serve`` reads them while they are
    written, and by ``score``. The engine takes each log in three reads: up to the
    boundary, up to the lateness past it, then a close at the boundary, and the rest.
    Returns the statements and rows read per account and window that the engine
    counted, those ``score`` counted, and the events the engine took as late."""
    conf = settings.Settings(lateness="3s")
    boundary = datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    delta = boundary - cut
    ends = [boundary, boundary + timedelta(seconds=3, milliseconds=1)]

    def reads(name: str, records: list[tuple[datetime, bytes]]) -> list[pl.DataFrame]:
        """``records`` (each with the time it is written at) parsed in the three reads."""
        fmt = formats.native(name)
        parts: list[list[bytes]] = [[], [], []]
        for at, record in records:
            parts[sum(at + delta >= end for end in ends)].append(record)
        return [
            fmt.parse(Chunk(name, b"".join(part), 1)).events.with_columns(pl.col(S.TIME) + delta)
            for part in parts
        ]

    audit, slow, whole = _mariadb_records(audit_log, slow_log)
    by_log = {"audit": reads("mariadb-audit", audit), "slow": reads("mariadb-slow", slow)}
    engine = Engine(trained, conf)
    closes = []
    for n in range(3):
        for source, parts in by_log.items():
            engine.add(parts[n], source=source)
        if n:
            closes.append(engine.close(wall=None if n == 1 else datetime(2100, 1, 1, tzinfo=UTC)))
    live = pl.concat([part.scored for part in closes if part.scored.height])
    known = trained.profile.known.lazy()
    activity = F.window_activity(whole.with_columns(pl.col(S.TIME) + delta).lazy(), "5m", known)
    batch = pipeline.score_windows(activity.collect(), trained, conf)

    late = sum(part.late_events for part in closes)
    return window_counts(live), window_counts(batch), late


__all__ = [
    "FIXTURES",
    "OUTPUTS",
    "PG_SCENARIOS",
    "REFERENCE_PG",
    "formats",
    "mariadb_windows_cut_at",
    "parse",
    "window_counts",
]
