"""PostgreSQL servers whose ``log_timezone`` is not UTC, on a real PostgreSQL 15 + pgAudit.

initdb sets ``log_timezone`` to the machine's zone, and PostgreSQL prints each time with
that zone's abbreviation. Some abbreviations name several offsets: ``CST`` is UTC-6 on a
server in Chicago and UTC+8 on one in Shanghai; ``IST`` is UTC+5:30 in India. Told the
server's zone (``postgres_timezone``), every output's events are at the UTC times the
statements ran, through the hour that comes twice when summer time ends (``01:20 CDT``
and ``01:20 CST``); not told, those abbreviations are read by a guess (this machine's
zone, else China's CST and India's IST) that the run's summary names, none lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import psycopg
import pytest

from detector import model, pipeline
from detector import schema as S
from detector.formats import Told, zones
from detector.ingest import read_events
from detector.live.service import Service
from detector.rejects import Quarantine
from detector.settings import Settings
from tests.conftest import OUTPUTS
from tests.integration.conftest import (
    MODEL,
    clerk_and_cases,
    free_port,
    require_postgres,
    wait_for_logs,
)

pytestmark = pytest.mark.postgres

# Each zone, and the UTC moments its server's clock is set to before a read: in Chicago
# 01:20 CDT and an hour later 01:20 CST (summer time ended at 02:00 CDT), in Jerusalem
# 01:20 IDT and 01:20 IST the same way; in Shanghai and Kolkata either side of local
# midnight.
ZONES = {
    "America/Chicago": [datetime(2026, 11, 1, 6, 20, tzinfo=UTC), datetime(2026, 11, 1, 7, 20, tzinfo=UTC)],
    "Asia/Shanghai": [datetime(2026, 11, 2, 15, 50, tzinfo=UTC), datetime(2026, 11, 2, 16, 10, tzinfo=UTC)],
    "Asia/Kolkata": [datetime(2026, 11, 2, 18, 20, tzinfo=UTC), datetime(2026, 11, 2, 18, 40, tzinfo=UTC)],
    "Asia/Jerusalem": [datetime(2026, 10, 24, 22, 20, tzinfo=UTC), datetime(2026, 10, 24, 23, 20, tzinfo=UTC)],
}  # fmt: skip
# Zones whose logs print a summer abbreviation beside the ambiguous winter one (CDT, IDT):
# that names the zone (zones.COMPANIONS).
NAMED_BESIDE = {"America/Chicago": "CDT", "Asia/Jerusalem": "IDT"}
ROWS = [7, 9]  # rows the clerk reads at each moment
SLACK = timedelta(seconds=20)  # the server's clock runs on from where it is set


@dataclass
class Server:
    zone: str
    at: list[datetime]
    log_dir: Path


@pytest.fixture(scope="module", params=sorted(ZONES))
def server(request: pytest.FixtureRequest, server_dir: Callable[[str], Path]) -> Iterator[Server]:
    require_postgres()
    from pg_cluster import PgCluster

    zone, moments = request.param, ZONES[request.param]
    base = server_dir("pg-tz")
    pg = PgCluster(
        base / "pg",
        free_port(),
        {"log_timezone": f"'{zone}'", "pgaudit.log": "'read'"},
        faketime_file=base / "faketime",
    )
    pg.set_clock(moments[0] - timedelta(minutes=5))
    pg.start()
    try:
        clerk_and_cases(pg)
        for at, rows in zip(moments, ROWS, strict=True):
            pg.set_clock(at)
            with psycopg.connect(pg.dsn("clerk"), autocommit=True) as clerk:
                clerk.execute(f"SELECT * FROM cases WHERE id <= {rows}").fetchall()
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT 'tz-done'")
        wait_for_logs(pg.log_dir, "tz-done")
        yield Server(zone, moments, pg.log_dir)
    finally:
        pg.stop()


def clerks(events: pl.DataFrame) -> list[tuple[datetime, int]]:
    reads = events.filter(pl.col(S.ACCOUNT) == "clerk").sort(S.TIME)
    return list(zip(reads[S.TIME].to_list(), reads[S.ROWS].to_list(), strict=True))


@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_told_the_servers_zone_each_read_is_at_the_utc_time_it_ran(
    server: Server, output: str
) -> None:
    quarantine = Quarantine(None)
    events, _ = read_events(
        [server.log_dir / OUTPUTS[output]],
        told=Told(postgres_timezone=server.zone),
        quarantine=quarantine,
    )
    reads = clerks(events)
    assert [rows for _, rows in reads] == ROWS
    for (when, _), at in zip(reads, server.at, strict=True):
        assert at <= when < at + SLACK, (server.zone, when, at)
    assert quarantine.total == 0


@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_not_told_its_zone_an_abbreviation_of_several_is_read_by_the_guess_said(
    server: Server, output: str
) -> None:
    """Not told, CST and IST are read as this machine's zone reads them, or as China's and
    India's (right for Shanghai and Kolkata), except where the log also prints CDT or IDT:
    Chicago's CST is then read as UTC-6 (it read 14 h off), Jerusalem's IST as UTC+2 (3.5 h
    off): no line is lost, every read at the UTC time it ran, and the summary says what
    was guessed and what to give."""
    quarantine = Quarantine(None)
    events, summary = read_events([server.log_dir / OUTPUTS[output]], quarantine=quarantine)
    assert quarantine.total == 0
    reads = {rows: when for when, rows in clerks(events)}  # (Chicago's may swap places)
    assert sorted(reads) == ROWS
    for rows, at in zip(ROWS, server.at, strict=True):
        when = reads[rows]
        local = at.astimezone(ZoneInfo(server.zone))
        name, off = local.tzname() or "", timedelta()
        if name in zones.AMBIGUOUS:  # its local time read at the guessed offset
            off = (local.utcoffset() or off) - timedelta(minutes=zones.guessed()[name])
        assert at + off <= when < at + off + SLACK, (server.zone, name, when, at)
        if server.zone in NAMED_BESIDE:  # its summer lines say its winter ones' zone
            assert off == timedelta(0), (name, when, at)
    assert summary.guessed and "--postgres-timezone" in summary.paragraph()
    if server.zone in NAMED_BESIDE:
        assert f"as the {NAMED_BESIDE[server.zone]} times in" in summary.paragraph()


def test_serve_told_the_servers_zone_files_each_read_in_its_utc_window(
    server: Server, tmp_path: Path
) -> None:
    """``serve`` with ``postgres_timezone`` counts the statements ``score`` counts, in the
    same windows."""
    trained = model.load(MODEL)
    log = server.log_dir / OUTPUTS["jsonlog"]
    conf = Settings(state_dir=tmp_path / "state", follow=[str(log)], postgres_timezone=server.zone)
    service = Service(trained, conf, conf.follow, MODEL)
    try:
        quiet = time.monotonic() + 2
        while time.monotonic() < quiet:
            if service.step():
                quiet = time.monotonic() + 2
        rest = service.engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC)).scored
        stored = service.store.account("clerk")
    finally:
        service.stop()
    events, _ = read_events([log], told=Told(postgres_timezone=server.zone))
    scored = pipeline.score(events, trained, conf)

    def clerk_windows(frame: pl.DataFrame) -> dict[datetime, int]:
        statements = pl.col("features").struct.field("statements_5m")
        rows = frame.filter(pl.col("account") == "clerk")
        return dict(rows.select("window_start", statements).rows())

    windows = {
        datetime.fromisoformat(w["window_start"]): w["features"]["statements_5m"]
        for w in (stored or {"windows": []})["windows"]
    }
    windows.update(clerk_windows(rest))
    assert windows == clerk_windows(scored)
    assert sorted(windows) == [at.replace(minute=at.minute - at.minute % 5) for at in server.at]


def test_serve_not_told_the_servers_zone_counts_the_lines_it_read_by_a_guess(
    server: Server, tmp_path: Path
) -> None:
    """``trovewatch_zone_guessed_lines_total{abbreviation}``: the records ``serve`` read in
    a guessed zone, by the abbreviations the log prints, for the SRE to set
    ``postgres_timezone``."""
    log = server.log_dir / OUTPUTS["jsonlog"]
    conf = Settings(state_dir=tmp_path / "state", follow=[str(log)])
    service = Service(model.load(MODEL), conf, conf.follow, MODEL)
    try:
        quiet = time.monotonic() + 2
        while time.monotonic() < quiet:
            if service.step():
                quiet = time.monotonic() + 2
        value = service.metrics.registry.get_sample_value
        counted = {
            name: value("trovewatch_zone_guessed_lines_total", {"abbreviation": name}) or 0
            for name in zones.AMBIGUOUS
        }
    finally:
        service.stop()
    text = log.read_text()
    assert {name for name, n in counted.items() if n} == {
        name for name in zones.AMBIGUOUS if f' {name}",' in text
    }


# On the real clock, a live log's newest line was written when its file last changed:
# of the zones that print its abbreviation, that settles which one (``zones.settle``).
# (Now: winter in the northern hemisphere or not, each prints an abbreviation of several.)
NOW_ZONES = {"America/Chicago": ("CST", "CDT"), "Asia/Jerusalem": ("IST", "IDT")}


@pytest.mark.parametrize("zone", sorted(NOW_ZONES))
def test_not_told_a_live_logs_last_write_settles_its_zone(
    zone: str, server_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """A server on the real clock: ``score`` and ``serve`` read its reads at the UTC
    times they ran (within the clock's second), the summary saying how; a guess of
    China's or India's zone would have put them 14 h or 3.5 h off."""
    require_postgres()
    from pg_cluster import PgCluster

    pg = PgCluster(server_dir("pg-now"), free_port(), {"log_timezone": f"'{zone}'"})
    pg.start()
    try:
        clerk_and_cases(pg)
        before = datetime.now(UTC)
        with psycopg.connect(pg.dsn("clerk"), autocommit=True) as clerk:
            clerk.execute("SELECT * FROM cases WHERE id <= 7").fetchall()
        after = datetime.now(UTC)
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT 'now-done'")
        wait_for_logs(pg.log_dir, "now-done")
        printed = datetime.now(UTC).astimezone(ZoneInfo(zone)).tzname()
        if printed not in zones.AMBIGUOUS:  # (summer: CDT, IDT name one offset)
            pytest.skip(f"{zone} prints {printed} now")
        for output in sorted(OUTPUTS):
            zones.reset()
            events, summary = read_events([pg.log_dir / OUTPUTS[output]])
            [(when, rows)] = clerks(events)
            assert rows == 7
            assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1), output
            assert f"as {OUTPUTS[output]}'s last write says" in summary.paragraph()
        zones.reset()
        log = pg.log_dir / OUTPUTS["jsonlog"]
        conf = Settings(state_dir=tmp_path / "state", follow=[str(log)], lateness="2s")
        service = Service(model.load(MODEL), conf, conf.follow, MODEL)
        try:
            while service.step():
                pass
            scored = service.engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC)).scored
            stored = service.store.account("clerk")
        finally:
            service.stop()
        starts = [
            datetime.fromisoformat(w["window_start"])
            for w in (stored or {"windows": []})["windows"]
        ]
        starts += scored.filter(pl.col("account") == "clerk")["window_start"].to_list()
        assert starts and all(abs(start - before) < timedelta(minutes=6) for start in starts)
    finally:
        pg.stop()
