"""A known workload on real MariaDB servers with settings other than the recommended
ones (``docs/formats-mariadb.md``): what trovewatch reads from the audit log and the
slow log must still be what the clients did, or the run must say what the logs lost.

Each test starts its own throw-away server (``scripts/mariadb_server.py``) with the
settings it is about, runs :func:`workload` (accounts reading known numbers of rows)
and reads the two logs back with the batch reader.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import model, pipeline
from detector import schema as S
from detector.formats import Told
from detector.ingest import Summary
from detector.live.engine import Engine
from detector.live.service import Service
from detector.pipeline import read_events
from detector.rejects import Quarantine
from detector.settings import Settings
from tests.conftest import window_counts
from tests.integration.conftest import mariadb_server

REPO = Path(__file__).parents[2]
RUN_CLI = [sys.executable, "-m", "detector"]
SCHEMA = (
    "CREATE DATABASE shop; CREATE DATABASE hr; USE shop;"
    "CREATE TABLE shop.customers(id int primary key, email varchar(64), card varchar(64));"
    "INSERT INTO shop.customers SELECT seq, concat('u', seq, '@x.com'), md5(seq)"
    " FROM seq_1_to_5000;"
    "CREATE TABLE hr.salaries(id int primary key, salary int);"
    "INSERT INTO hr.salaries SELECT seq, seq * 10 FROM seq_1_to_500;"
)
# An account name the audit log writes with its comma unescaped.
COMMA_USER = "zoë,1"
# One the slow log writes as ``# User@Host: br[a]ck[br[a]ck] @  [127.0.0.1]``.
BRACKET_USER = "br[a]ck"
ACCOUNTS = ("reader", "writer", COMMA_USER, BRACKET_USER)
BIG_IN = "SELECT id FROM customers WHERE id IN (" + ",".join(map(str, range(1, 2001))) + ")"


@dataclass(frozen=True)
class Truth:
    """Per account: statements run and rows read (sent) or written (affected)."""

    statements: dict[str, int]
    rows: dict[str, int]


def workload(server: Any, between: Callable[[], object] = lambda: None) -> Truth:
    """Accounts reading known numbers of rows, ``between()`` called after each client's
    connection; returns once both logs have all of it."""

    def client(user: str, database: str, statements: str) -> None:
        server.client(user, "pw", database, statements)
        between()

    server.sql(
        SCHEMA
        + "".join(
            f"CREATE USER '{u}'@'%' IDENTIFIED BY 'pw';"
            f" GRANT SELECT, INSERT, UPDATE ON shop.* TO '{u}'@'%'; GRANT SELECT ON hr.* TO '{u}'@'%';"
            for u in ACCOUNTS
        )
        # A password with a doubled quote, which the audit plugin masks only up to it.
        + "CREATE USER 'quoted'@'%' IDENTIFIED BY 'se''cr\\\\et';"
        + "SET GLOBAL server_audit_excl_users = 'root';"
    )
    client("reader", "shop", "SELECT * FROM customers WHERE id <= 1234")
    # One connection running 30 short reads (465 rows), then a 2,000-value IN list.
    client(
        "reader",
        "shop",
        ";".join(f"SELECT * FROM customers WHERE id <= {i}" for i in range(1, 31)),
    )
    client("reader", "shop", BIG_IN)
    client("writer", "shop", "UPDATE customers SET card = 'x' WHERE id <= 100")
    client("writer", "shop", "ANALYZE TABLE customers")  # its result: 0 rows sent
    client("writer", "hr", "SELECT * FROM salaries WHERE id <= 50")
    # The one slow statement: 0.25 s a row, 2 rows.
    client("writer", "hr", "SELECT sleep(0.25), id FROM salaries WHERE id <= 2")
    client(COMMA_USER, "shop", "SELECT * FROM customers WHERE id <= 15")
    client(BRACKET_USER, "hr", "SELECT * FROM salaries WHERE id <= 7")
    client("reader", "shop", "SELECT 'the end'")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "the end" not in server.audit_log.read_text(
        errors="replace"
    ):
        time.sleep(0.1)
    time.sleep(0.2)
    return Truth(
        statements={"reader": 33, "writer": 4, COMMA_USER: 1, BRACKET_USER: 1},
        rows={
            "reader": 1234 + 465 + 2000 + 1,
            "writer": 100 + 50 + 2,
            COMMA_USER: 15,
            BRACKET_USER: 7,
        },
    )


@pytest.fixture
def run(server_dir: Callable[[str], Path]) -> Iterator[Callable[..., tuple[Any, Truth]]]:
    """``run(setting=value, ...)``: a server with those settings, after the workload."""
    with ExitStack() as stack:

        def start(**settings: str) -> tuple[Any, Truth]:
            server = stack.enter_context(mariadb_server(server_dir("mariadb"), settings))
            return server, workload(server)

        yield start


@pytest.fixture(scope="module")
def recommended(server_dir: Callable[[str], Path]) -> Iterator[tuple[Any, Truth]]:
    """A server with the recommended settings, after the workload."""
    with mariadb_server(server_dir("mariadb")) as server:
        yield server, workload(server)


def read(*paths: Path) -> tuple[pl.DataFrame, Summary]:
    quarantine = Quarantine(None)
    events, summary = read_events(list(paths), quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events.filter(pl.col(S.ACCOUNT).is_in(ACCOUNTS)), summary


def per_account(events: pl.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Statements and rows (reads' and writes') per account, as the features count them."""
    counts = events.group_by(S.ACCOUNT).agg(pl.len(), pl.col(S.ROWS).sum())
    return (
        dict(zip(counts[S.ACCOUNT], counts["len"], strict=True)),
        dict(zip(counts[S.ACCOUNT], counts[S.ROWS], strict=True)),
    )


def test_the_audit_log_read_without_its_slow_log_says_its_reads_have_no_rows(
    recommended: tuple[Any, Truth],
) -> None:
    """The audit log carries no volume: read alone, the run's paragraph says so and
    which log to give beside it; read with the slow log, it says nothing of the kind."""
    server, _ = recommended
    _, alone = read(server.audit_log)
    assert alone.blind_spots() == [
        "None of the mariadb-audit reads gives its rows (give its slow log too, with "
        "long_query_time = 0): a bulk read is judged by its statements, objects and "
        "exports only, not by how much it read."
    ]
    _, both = read(server.audit_log, server.slow_log)
    assert both.blind_spots() == []


def test_an_account_name_with_a_comma_is_read_from_the_audit_log(
    recommended: tuple[Any, Truth],
) -> None:
    """The audit log writes ``zoë,1,127.0.0.1,10,37,READ,...``: the comma is not escaped.
    Before: its 4 lines were rejected as unrecognised, and its statements came from the
    slow log alone (no TABLE records, no failures)."""
    server, truth = recommended
    assert f",{COMMA_USER},127.0.0.1," in server.audit_log.read_text()
    events, _ = read(server.audit_log)
    mine = events.filter(pl.col(S.ACCOUNT) == COMMA_USER)
    assert mine[S.OBJECTS].to_list() == [["shop.customers"]]
    assert mine[S.CLIENT_IP].to_list() == ["127.0.0.1"]
    events, _ = read(server.audit_log, server.slow_log)
    assert per_account(events) == (truth.statements, truth.rows)
    assert set(events[S.SOURCE_FORMAT]) == {"mariadb-audit"}


def test_an_account_name_with_brackets_is_read_from_the_slow_log(
    recommended: tuple[Any, Truth],
) -> None:
    """``# User@Host: br[a]ck[br[a]ck] @  [127.0.0.1]``. Before: the record was rejected
    as truncated, and the account's statement had no volume."""
    server, truth = recommended
    assert (
        f"# User@Host: {BRACKET_USER}[{BRACKET_USER}] @  [127.0.0.1]" in server.slow_log.read_text()
    )
    events, _ = read(server.slow_log)
    mine = events.filter(pl.col(S.ACCOUNT) == BRACKET_USER)
    assert mine[S.ROWS].to_list() == [truth.rows[BRACKET_USER]]
    assert mine[S.OBJECTS].to_list() == [["hr.salaries"]]
    events, _ = read(server.audit_log, server.slow_log)
    assert per_account(events) == (truth.statements, truth.rows)


def test_a_password_in_a_statement_never_reaches_the_events_and_the_statement_counts_once(
    recommended: tuple[Any, Truth],
) -> None:
    """The audit log masks ``CREATE USER ... IDENTIFIED BY *****``; the slow log writes the
    password as it was typed. Before: the slow log's text kept ``'pw'`` in the events, and
    each such statement was counted twice (its two records' texts differ)."""
    server, _ = recommended
    assert "IDENTIFIED BY 'pw'" in server.slow_log.read_text()
    assert "IDENTIFIED BY *****\\'cr\\\\\\\\et\\'" in server.audit_log.read_text()
    quarantine = Quarantine(None)
    slow, _ = read_events([server.slow_log], quarantine=quarantine)
    both, _ = read_events([server.audit_log, server.slow_log], quarantine=quarantine)
    for events in (slow, both):
        assert not events[S.QUERY].str.contains("'pw'|cr.*et'").any()
    created = both.filter(pl.col(S.QUERY).str.starts_with("CREATE USER"))
    assert created[S.QUERY].to_list() == [
        f"CREATE USER '{u}'@'%' IDENTIFIED BY *****" for u in (*ACCOUNTS, "quoted")
    ]
    assert set(created[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    assert created[S.ROWS].to_list() == [0] * 5


def test_statements_cut_by_a_small_query_log_limit_still_get_their_volume(
    run: Callable[..., tuple[Any, Truth]],
) -> None:
    """``server_audit_query_log_limit = 24`` cuts ``SELECT * FROM customers WHERE id <= 1234``
    to ``SELECT * FROM customers``. Before: no cut statement found its slow-log record,
    and every one was counted twice (reader: 65 statements for 33)."""
    server, truth = run(server_audit_query_log_limit="24")
    assert ",QUERY,shop,'SELECT * FROM customers ',0" in server.audit_log.read_text()
    events, _ = read(server.audit_log, server.slow_log)
    assert per_account(events) == (truth.statements, truth.rows)
    assert set(events[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    big = events.filter(pl.col(S.ROWS) == 2000)
    assert big[S.OBJECTS].to_list() == [["shop.customers"]]


def test_table_records_without_query_records_are_one_statement_with_their_volume(
    run: Callable[..., tuple[Any, Truth]],
) -> None:
    """``server_audit_events = CONNECT,TABLE``: the audit log names each statement's tables
    but not its text. Before: each of its statements was counted twice, once from its
    TABLE records and once from its slow-log record (reader: 65 statements for 33), and
    an ``ANALYZE TABLE`` too until the slow record's text named its table."""
    server, truth = run(server_audit_events="CONNECT,TABLE")
    assert ",QUERY," not in server.audit_log.read_text()
    events, _ = read(server.audit_log, server.slow_log)
    assert per_account(events) == (truth.statements, truth.rows)
    update = events.filter(pl.col(S.CLASS) == "WRITE")
    assert update[S.OBJECTS].to_list() == [["shop.customers"]]
    assert update[S.QUERY].to_list() == ["UPDATE customers SET card = 'x' WHERE id <= 100"]


@pytest.mark.parametrize(
    ("setting", "value", "unvolumed"),
    # long_query_time = 0.2: only the sleep (0.5 s) is in the slow log. log_slow_rate_limit
    # = 3: one statement in three is (nothing in the log says so).
    [("long_query_time", "0.2", 38), ("log_slow_rate_limit", "3", None)],
)
def test_statements_the_slow_log_left_out_are_counted_and_said(
    run: Callable[..., tuple[Any, Truth]], setting: str, value: str, unvolumed: int | None
) -> None:
    """A slow log that leaves statements out (a threshold, sampling) cannot give their
    volume: they keep unknown rows (null, never 0), and the run says how many. Before:
    the paragraph said nothing, and the windows' rows looked complete; ``serve`` counts
    them in ``trovewatch_statements_without_volume_total``."""
    server, truth = run(**{setting: value})
    events, summary = read(server.audit_log, server.slow_log)
    statements, _ = per_account(events)
    assert statements == truth.statements  # each statement still counted once
    missing = events.filter(pl.col(S.ROWS).is_null()).height
    if unvolumed is not None:
        assert missing == unvolumed
    assert 0 < missing < events.height
    audited = summary.audited
    assert summary.unvolumed >= missing and audited >= events.height
    assert (
        f"{summary.unvolumed:,} of {audited:,} audited MariaDB statements have no slow-log record"
        in summary.paragraph()
    )
    # serve: the two logs followed apart, joined as windows close, the same count.
    engine = Engine(model.load(REPO / "models" / "default"), Settings())
    for log in (server.audit_log, server.slow_log):
        engine.add(read_events([log])[0], source=log.name)
    assert engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC)).unvolumed == summary.unvolumed


@pytest.fixture(scope="module")
def simulated_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A week of simulated MariaDB logs (``trovewatch simulate``): their directory."""
    base = tmp_path_factory.mktemp("mariadb-sim")
    subprocess.run(
        [*RUN_CLI, "simulate", "--format", "mariadb", "--out", str(base),
         "--accounts", "10", "--days", "7"],
        check=True, capture_output=True,
    )  # fmt: skip
    return base


def trained_on(logs: list[Path], model_dir: Path) -> Path:
    subprocess.run(
        [*RUN_CLI, "train", "--model-dir", str(model_dir), *map(str, logs)],
        check=True, capture_output=True,
    )  # fmt: skip
    return model_dir


@pytest.fixture(scope="module")
def mariadb_model(simulated_mariadb: Path) -> Path:
    """A model trained on both simulated logs: the bundled model would refuse MariaDB's
    fields."""
    return trained_on(sorted(simulated_mariadb.glob("*.log")), simulated_mariadb / "model")


@pytest.fixture(scope="module")
def audit_model(simulated_mariadb: Path) -> Path:
    """A model trained on the simulated audit log alone (no volume)."""
    audit = sorted(simulated_mariadb.glob("server_audit-*.log"))
    return trained_on(audit, simulated_mariadb / "audit-model")


@dataclass(frozen=True)
class Served:
    truth: Truth
    score: dict[str, tuple[int, int]]  # per account: statements, rows read (score)
    serve: dict[str, tuple[int, int]]  # the same, as serve stored them


@pytest.fixture(scope="module")
def served(
    server_dir: Callable[[str], Path], mariadb_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Served:
    """``server_audit_file_rotate_size = 3000``: the plugin renames the log to
    ``server_audit.log.01``, ``.02``, ... every 3 KB, mid-workload, while ``serve`` follows
    ``server_audit.log*`` and ``slow.log``; then ``score`` reads the rotated files."""
    rotating = {"server_audit_file_rotate_size": "3000", "server_audit_file_rotations": "50"}
    trained = model.load(mariadb_model)
    # In the past, so that the wall clock closes every window once the logs are quiet.
    past = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with mariadb_server(server_dir("mariadb"), rotating, clock=past) as server:
        logs = server.audit_log.parent
        conf = Settings(
            state_dir=tmp_path_factory.mktemp("state"),
            follow=[str(logs / "server_audit.log*"), str(logs / "slow.log")],
            lateness="3s",  # above the follower's idle_flush (2 s): see the last test
        )
        server.audit_log.touch()  # the plugin creates it at its first record
        service = Service(trained, conf, conf.follow, mariadb_model)
        try:
            truth = workload(server, between=service.step)
            rotated = sorted(p.name for p in logs.glob("server_audit.log.*"))
            assert len(rotated) >= 3, rotated
            deadline = time.monotonic() + 60
            while (service.step() or service.engine.open_windows) and time.monotonic() < deadline:
                pass
            service._checkpoint(force=True)  # the last windows closed since the last one
            live = {a: service.store.account(a) for a in ACCOUNTS}
        finally:
            service.stop()
        events, _ = read(*logs.glob("server_audit.log*"), server.slow_log)
    assert per_account(events) == (truth.statements, truth.rows)
    feature = pl.col("features").struct.field
    sums = (
        pipeline.score(events, trained, conf)
        .group_by("account")
        .agg(feature("statements_5m").sum(), feature("rows_read_5m").sum())
    )
    return Served(
        truth,
        {a: (n, rows) for a, n, rows in sums.iter_rows()},
        {
            a: (found["totals"]["statements"], found["totals"]["rows_read"])
            for a, found in live.items()
            if found is not None
        },
    )


def test_score_reads_the_rotated_audit_logs_as_the_clients_ran_them(served: Served) -> None:
    assert {a: n for a, (n, _) in served.score.items()} == served.truth.statements


def test_serve_follows_the_audit_log_through_its_rotations_counting_each_statement_once(
    served: Served,
) -> None:
    assert {a: n for a, (n, _) in served.serve.items()} == served.truth.statements


def test_serve_counts_the_rows_score_counts_following_the_logs_as_written(
    served: Served,
) -> None:
    """With ``lateness = 1s`` (below the follower's 2 s wait for a quiet file's last
    record) this failed: reader 3,699 rows for 3,700, the slow log's last record read
    after its window closed and its rows dropped as the rest of a closed statement."""
    assert served.serve == served.score


def test_a_server_on_local_time_gets_its_volume_and_times_in_utc(
    server_dir: Callable[[str], Path],
) -> None:
    """Most servers run on local time, and the audit log writes it with no zone (08:00 in
    Shanghai at 00:00 UTC) where the slow log's ``SET timestamp`` is UTC. Read together,
    the audit log's clock is set by the slow log's: every statement has its volume and
    its time in UTC. Before: the logs 8 h apart, no statement was paired with its slow
    record (each counted twice, once without volume), and every audit time 8 h ahead."""
    with mariadb_server(server_dir("mariadb"), tz="Asia/Shanghai") as server:
        truth = workload(server)
        alone, _ = read(server.audit_log)
        events, _ = read(server.audit_log, server.slow_log)
    now = datetime.now(UTC)
    assert abs(alone[S.TIME].max() - now - timedelta(hours=8)) < timedelta(minutes=5)
    assert per_account(events) == (truth.statements, truth.rows)
    assert set(events[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    assert abs(events[S.TIME].max() - now) < timedelta(minutes=5)


def read_at(server: Any, reads: dict[datetime, int], log: Path) -> None:
    """On a server on a fake clock, ``reader`` reads ``n`` rows at each time ``when`` of
    ``reads``; returns once ``log`` has the last statement."""
    server.sql(
        SCHEMA + "CREATE USER 'reader'@'%' IDENTIFIED BY 'pw';"
        " GRANT SELECT ON shop.* TO 'reader'@'%';"
    )
    for when, n in reads.items():
        server.set_clock(when)
        server.client("reader", "pw", "shop", f"SELECT * FROM customers WHERE id <= {n}")
    server.client("reader", "pw", "shop", "SELECT 'the end'")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "the end" not in log.read_text():
        time.sleep(0.1)


def test_the_audit_logs_clock_follows_the_end_of_summer_time(
    server_dir: Callable[[str], Path],
) -> None:
    """Berlin leaves summer time at 01:00 UTC on 2026-10-25: the audit log's clock goes
    from 2 h ahead of UTC to 1 h. A server on a fake clock, read an hour before and an
    hour after: both statements have their volume and their UTC times (the offset is
    taken hour by hour of the audit log's time)."""
    before = datetime(2026, 10, 25, 0, 20, tzinfo=UTC)  # 02:20 CEST
    after = datetime(2026, 10, 25, 2, 20, tzinfo=UTC)  # 03:20 CET
    reads = {before: 11, after: 22}
    with mariadb_server(server_dir("mariadb"), clock=before, tz="Europe/Berlin") as server:
        read_at(server, reads, server.slow_log)
        events, _ = read(server.audit_log, server.slow_log)
    assert f"{before + timedelta(hours=2):%Y%m%d %H:%M}" in server.audit_log.read_text()
    for when, n in reads.items():
        got = events.filter(pl.col(S.QUERY) == f"SELECT * FROM customers WHERE id <= {n}")
        assert got[S.SOURCE_FORMAT].to_list() == ["mariadb-audit"]  # one event, paired
        assert got[S.ROWS].to_list() == [n]
        assert abs(got[S.TIME][0] - when) < timedelta(minutes=5)


@pytest.mark.parametrize(
    "clock",
    [
        pytest.param(None, id="now: audit records ahead of the wall clock"),
        pytest.param(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), id="a day in the past"),
    ],
)
def test_serve_puts_a_local_time_servers_audit_log_on_utc(
    server_dir: Callable[[str], Path],
    mariadb_model: Path,
    tmp_path: Path,
    clock: datetime | None,
) -> None:
    """``serve`` following both logs of a server on Shanghai time (8 h ahead of UTC)
    counts each statement once, with its rows, in windows of UTC time, as ``score``
    does. Before, the two records of a statement were filed in windows 8 h apart and
    never paired (each counted twice, once without volume), and audit records written
    now were "from the future" (``trovewatch_future_events_total``)."""
    trained = model.load(mariadb_model)
    with mariadb_server(server_dir("mariadb"), clock=clock, tz="Asia/Shanghai") as server:
        conf = Settings(
            state_dir=tmp_path / "state",
            follow=[str(server.audit_log), str(server.slow_log)],
            lateness="3s",
        )
        server.audit_log.touch()  # the plugin creates it at its first record
        service = Service(trained, conf, conf.follow, mariadb_model)
        try:
            started = datetime.now(UTC) if clock is None else clock
            truth = workload(server, between=service.step)
            # Until both logs have been quiet past the follower's wait for a quiet
            # file's last record (2 s).
            deadline, quiet = time.monotonic() + 30, time.monotonic() + 3
            while time.monotonic() < min(quiet, deadline):
                if service.step():
                    quiet = time.monotonic() + 3
            value = service.metrics.registry.get_sample_value
            future = value("trovewatch_future_events_total")
            ahead = value("trovewatch_mariadb_audit_clock_ahead_seconds")
            # The windows serve closed and stored, and the rest, closed now.
            stored = [service.store.account(a) for a in ACCOUNTS]
            rest = service.engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC)).scored
        finally:
            service.stop()
        events, _ = read(server.audit_log, server.slow_log)

    windows = pl.concat(
        [
            pl.DataFrame(
                [
                    {
                        "account": a,
                        "window_start": datetime.fromisoformat(w["window_start"]),
                        "statements": w["features"]["statements_5m"],
                        "rows": w["features"]["rows_read_5m"] or 0,
                    }
                    for a, found in zip(ACCOUNTS, stored, strict=True)
                    if found is not None
                    for w in found["windows"]
                ],
                schema={
                    "account": pl.String,
                    "window_start": pl.Datetime("us", "UTC"),
                    "statements": pl.Int64,
                    "rows": pl.Int64,
                },
            ),
            *([window_counts(rest)] if rest.height else []),
        ]
    )
    windows = windows.filter(pl.col("account").is_in(ACCOUNTS))

    def per_window(frame: pl.DataFrame) -> dict[tuple[str, datetime], tuple[int, int]]:
        return {
            (a, at): (n, rows) for a, at, n, rows in frame.sort("account", "window_start").rows()
        }

    assert per_window(windows) == per_window(window_counts(pipeline.score(events, trained, conf)))
    counted = windows.group_by("account").agg(pl.col("statements").sum())
    assert dict(counted.iter_rows()) == truth.statements
    assert (windows["window_start"] - started).abs().max() < timedelta(minutes=30)  # type: ignore[operator]
    assert not future
    assert ahead == 8 * 3600  # what an SRE sees: the server is on local time


def test_an_audit_log_alone_is_read_in_the_servers_time_zone_across_the_end_of_summer_time(
    server_dir: Callable[[str], Path],
) -> None:
    """Without the slow log nothing in the audit log tells its clock: told the server's
    zone (``--mariadb-timezone Europe/Berlin``), ``score`` reads each statement at its
    UTC time, through the end of summer time (01:00 UTC on 2026-10-25), when the hour
    from 02:00 comes twice: a read at 02:40 CEST and one at 02:40 CET an hour later are
    an hour apart. Without it, every time is one or two hours late."""
    reads = {
        datetime(2026, 10, 25, 0, 20, tzinfo=UTC): 11,  # 02:20 CEST
        datetime(2026, 10, 25, 0, 40, tzinfo=UTC): 12,  # 02:40 CEST
        datetime(2026, 10, 25, 1, 10, tzinfo=UTC): 13,  # 02:10 CET, the hour again
        datetime(2026, 10, 25, 1, 40, tzinfo=UTC): 14,  # 02:40 CET
        datetime(2026, 10, 25, 2, 20, tzinfo=UTC): 15,  # 03:20 CET
    }
    first = next(iter(reads))
    with mariadb_server(server_dir("mariadb"), clock=first, tz="Europe/Berlin") as server:
        read_at(server, reads, server.audit_log)
    text = server.audit_log.read_text()
    assert text.count("20261025 02:40:") >= 2  # the same local time, an hour apart
    told = Quarantine(None)
    zoned, _ = read_events(
        [server.audit_log], told=Told(mariadb_timezone="Europe/Berlin"), quarantine=told
    )
    assert told.total == 0
    utc, _ = read(server.audit_log)
    for when, n in reads.items():
        text_of = pl.col(S.QUERY) == f"SELECT * FROM customers WHERE id <= {n}"
        (at,) = zoned.filter(text_of)[S.TIME]
        assert abs(at - when) < timedelta(minutes=2), (n, at, when)
        (late,) = utc.filter(text_of)[S.TIME]
        assert late - at in (timedelta(hours=1), timedelta(hours=2))


def test_serve_told_the_servers_time_zone_files_an_audit_log_alone_at_utc(
    server_dir: Callable[[str], Path], audit_model: Path, tmp_path: Path
) -> None:
    """A server on Shanghai time on a day in the past, its audit log alone followed:
    nothing in the log tells its clock, and its records are not ahead of the machine's
    (which would tell it by their lead). Told ``mariadb_timezone = "Asia/Shanghai"``,
    ``serve`` files each statement in the UTC window ``score`` gives it with the same
    setting; without it, 8 h late."""
    trained = model.load(audit_model)
    clock = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with mariadb_server(server_dir("mariadb"), clock=clock, tz="Asia/Shanghai") as server:
        conf = Settings(
            state_dir=tmp_path / "state",
            follow=[str(server.audit_log)],
            lateness="3s",
            mariadb_timezone="Asia/Shanghai",
        )
        server.audit_log.touch()  # the plugin creates it at its first record
        service = Service(trained, conf, conf.follow, audit_model)
        try:
            truth = workload(server, between=service.step)
            deadline, quiet = time.monotonic() + 30, time.monotonic() + 3
            while time.monotonic() < min(quiet, deadline):
                if service.step():
                    quiet = time.monotonic() + 3
            rest = service.engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC)).scored
            stored = [service.store.account(a) for a in ACCOUNTS]
        finally:
            service.stop()
    windows = {
        (a, datetime.fromisoformat(w["window_start"])): w["features"]["statements_5m"]
        for a, found in zip(ACCOUNTS, stored, strict=True)
        if found is not None
        for w in found["windows"]
    }

    def statements(scored: pl.DataFrame) -> dict[tuple[str, datetime], int]:
        counted = pl.col("features").struct.field("statements_5m")
        rows = scored.select("account", "window_start", counted).rows() if scored.height else []
        return {(a, at): n for a, at, n in rows if a in ACCOUNTS}

    windows.update(statements(rest))
    events, _ = read_events([server.audit_log], told=Told(mariadb_timezone="Asia/Shanghai"))
    assert windows == statements(pipeline.score(events, trained, conf))
    assert sum(windows.values()) == sum(truth.statements.values())
    assert all(abs(at - clock) < timedelta(minutes=30) for _, at in windows)


def test_statements_prepared_through_the_binary_protocol_get_their_rows(
    server_dir: Callable[[str], Path],
) -> None:
    """A client that prepares its statements on the server (the binary protocol:
    COM_STMT_PREPARE and COM_STMT_EXECUTE, as Go's database/sql MySQL driver does for
    every query with arguments, and Connector/J with useServerPrepStmts): both logs write
    each execution with its values in the text, the slow log with the rows sent, so each
    is one statement of its table with the rows its client got. Bytes_sent is not what
    was sent there: the server counts only what it had flushed when it wrote the slow
    record (0 for results under its 16 KiB buffer; docs/formats-mariadb.md)."""
    import mysql.connector as connector  # a dev dependency: the binary protocol's client

    with mariadb_server(server_dir("mariadb")) as server:
        server.sql(SCHEMA + "CREATE USER 'gopher'@'%' IDENTIFIED BY 'pw';")
        server.sql("GRANT SELECT ON shop.* TO 'gopher'@'%';")
        conn = connector.connect(
            host="127.0.0.1", port=server.port, user="gopher", password="pw", database="shop"
        )
        got = []
        prepared = conn.cursor(prepared=True)
        for n in (10, 250, 1234):
            prepared.execute("SELECT * FROM customers WHERE id <= %s", (n,))
            got.append(len(prepared.fetchall()))
        conn.close()
        server.client("gopher", "pw", "shop", "SELECT 'the end'")
        deadline = time.monotonic() + 10
        while "the end" not in server.audit_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the audit log never got the last statement"
            time.sleep(0.1)
        time.sleep(0.2)
        quarantine = Quarantine(None)
        events, _ = read_events([server.audit_log, server.slow_log], quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    gopher = pl.col(S.ACCOUNT) == "gopher"
    reads = events.filter(gopher, pl.col(S.CLASS) == "READ", pl.col(S.OBJECTS).list.len() > 0)
    assert got == [10, 250, 1234]
    assert reads[S.ROWS].to_list() == got
    assert reads[S.OBJECTS].to_list() == [["shop.customers"]] * 3
    assert reads[S.BYTES].to_list()[0] == 0  # 10 rows, none of them flushed yet
