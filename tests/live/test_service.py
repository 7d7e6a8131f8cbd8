"""The real service behind the real API, in one process: push ingest and readiness."""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal

from api.app import create_app
from api.auth import Tokens
from detector import carried, formats, model, settings
from detector import features as F
from detector import schema as S
from detector.live import service as service_module
from detector.live.engine import Engine
from detector.live.service import READ_BUDGET, Service
from detector.live.sources import Files, source_key
from detector.pipeline import read_events
from detector.rejects import Quarantine
from tests.formats.test_shared_syslog import other_programs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
TOKEN = "service-test-token-0123"


@pytest.fixture(scope="module")
def trained() -> model.TrainedModel:
    return model.load(ROOT / "models" / "default")


@pytest.fixture
def running(trained: model.TrainedModel, tmp_path: Path) -> Iterator[tuple[Service, TestClient]]:
    conf = settings.Settings(
        state_dir=tmp_path / "state",
        follow=[str(tmp_path / "none-yet" / "*.json")],
        lateness="1s",
        checkpoint_interval=0.1,
        poll_interval=0.05,
        api_tokens=f"{TOKEN}:admin",
    )
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    app = create_app(service, conf, Tokens.parse(conf.api_tokens or ""))
    service.start()
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield service, client
    service.stop()


def day_of_lines(day: str) -> bytes:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    return b"".join(line for line in lines if f'"timestamp":"{day}'.encode() in line)


def test_pushed_lines_are_scored_and_the_incident_alerted(
    running: tuple[Service, TestClient],
) -> None:
    _, client = running
    body = day_of_lines("2026-10-20")  # INC-1: web_shop pulls every customer at 03:10
    pushed = client.post("/v1/events", params={"format": "pgaudit-jsonlog"}, content=body)
    assert pushed.status_code == 200, pushed.text
    counts = pushed.json()
    assert counts["lines"] == body.count(b"\n")
    assert counts["events"] > 1000
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = client.get("/v1/alerts").json()["items"]
        if any(a["account"] == "web_shop" for a in alerts):
            break
        time.sleep(0.2)
    assert [a["window_start"] for a in alerts if a["account"] == "web_shop"] == [
        "2026-10-20T03:10:00Z"
    ]


def test_garbage_push_is_a_400_and_counted_nowhere(running: tuple[Service, TestClient]) -> None:
    _, client = running
    assert client.post("/v1/events", content=b"\x00\x01\x02" * 500).status_code == 400
    assert client.post("/v1/events", params={"format": "nope"}, content=b"x\n").status_code == 422


def test_the_formats_a_refused_push_says_to_name_are_the_ones_the_api_takes(
    running: tuple[Service, TestClient],
) -> None:
    """Found by hand: a push no format fits was told to name one of 15 formats in
    ?format=, and naming any but the four PostgreSQL ones was refused (422, "Input should
    be 'auto', 'pgaudit-jsonlog', ..."): the advice led to another error."""
    _, client = running
    refused = client.post("/v1/events", content=b"hello world\nthis is not a log\n")
    assert refused.status_code == 400
    named = refused.json()["error"].rsplit("?format= one of ", 1)[1].split(", ")
    assert named
    for name in named:
        answer = client.post("/v1/events", params={"format": name}, content=b"hello world\n")
        assert answer.status_code != 422, (name, answer.json())


def test_readiness_names_a_glob_with_no_files(running: tuple[Service, TestClient]) -> None:
    service, client = running
    ready = client.get("/readyz")
    assert ready.status_code == 503
    # once twice: each glob is followed as plain files and as .gz archives
    assert ready.json()["problems"] == [f"no file matches {service.follow[0]}"]


def test_one_servers_three_outputs_are_read_once(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A glob over a log directory where PostgreSQL writes stderr, csvlog and jsonlog
    (the same events three times) reads only the jsonlog: nothing counted thrice."""
    logs = tmp_path / "log"
    logs.mkdir()
    for name in ("postgresql.log.gz", "postgresql.csv.gz", "postgresql.json.gz"):
        (logs / name.removesuffix(".gz")).write_bytes(
            b"\n".join(
                line
                for line in gzip.decompress((SAMPLE.parent / name).read_bytes()).split(b"\n")
                if b"2026-10-20 03:" in line[:40] or b'"timestamp":"2026-10-20 03:' in line
            )
            + b"\n"
        )
    conf = settings.Settings(state_dir=tmp_path / "state", follow=[str(logs / "*")], lateness="0s")
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    while service.step():
        pass
    samples = service.metrics.events.collect()[0].samples
    by_format = {s.labels["format"]: s.value for s in samples if s.name.endswith("_total")}
    assert set(by_format) == {"pgaudit-jsonlog"}
    assert by_format["pgaudit-jsonlog"] > 0


def test_an_error_mid_step_resumes_from_the_checkpoint(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A failure after lines were read but before their events were kept (here: the
    engine refuses them once) must not skip those lines: the loop goes back to the last
    checkpoint, as a restart would, and the totals come out exact."""
    with half_a_day_followed(trained, tmp_path) as (service, write_the_rest):
        first_engine = service.engine

        def refuse(events: object) -> None:
            raise RuntimeError("injected fault")

        first_engine.add = refuse  # type: ignore[method-assign]
        expected = write_the_rest()
        wait_for(lambda: service.engine is not first_engine)  # recovered
        wait_for(lambda: stored_totals(service, expected) == expected, timeout=30)


def test_a_push_whose_step_fails_is_told_to_send_it_again_not_answered_saved(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """Found by reading the loop: a pushed body whose step failed after its events were
    taken went back with the state to the last checkpoint (a push cannot be read again),
    yet stayed waiting, and the next checkpoint answered it 200 with its counts: its
    events were gone. Now its request is told to send it again (503), and the body sent
    again is stored once."""
    body = day_of_lines("2026-10-20").replace(b'"user":"web_shop"', b'"user":"pushed_shop"')
    body = b"".join(line for line in body.splitlines(True) if b"pushed_shop" in line)
    expected = {"pushed_shop": batch_totals(body, tmp_path)["pushed_shop"]}
    with half_a_day_followed(trained, tmp_path) as (service, _):
        first_engine = service.engine
        close = first_engine.close

        def fail_once_with_a_push(*args: Any, **kwargs: Any) -> Any:
            if service._waiting:
                raise RuntimeError("injected fault")
            return close(*args, **kwargs)

        first_engine.close = fail_once_with_a_push  # type: ignore[method-assign]
        with pytest.raises(service_module.Busy, match="send it again"):
            service.push(body, "auto")
        assert service.engine is not first_engine  # recovered
        service.push(body, "auto")
        wait_for(lambda: stored_totals(service, expected) == expected, timeout=30)


@contextmanager
def half_a_day_followed(
    trained: model.TrainedModel, tmp_path: Path
) -> Iterator[tuple[Service, Callable[[], dict[str, int]]]]:
    """A running service following the first half of a day of the sample log, its
    first checkpoint saved; and a function that writes the other half and returns the
    whole day's totals, as batch scoring counts them."""
    log = tmp_path / "postgresql.json"
    body = day_of_lines("2026-10-19")
    half = body.index(b"\n", len(body) // 2) + 1
    log.write_bytes(body[:half])
    conf = following(log)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()

    def write_the_rest() -> dict[str, int]:
        with log.open("ab") as fh:
            fh.write(body[half:])
        return batch_totals(body, tmp_path)

    try:
        wait_for(lambda: service.store.load_checkpoint() is not None)
        yield service, write_the_rest
    finally:
        service.stop()


def test_an_error_every_pass_is_named_on_readiness_counted_and_tried_less_often(
    trained: model.TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault that every pass meets again (a line of the log that trips a bug, say):
    the loop goes back to the last checkpoint and tries again, waiting 1, 2, 4 ... s, each
    error counted in trovewatch_ingest_errors_total; from the third in a row /readyz
    names it. Once a pass gets through, the problem clears and the totals are exact
    (before: a retry every second for ever, /readyz saying ready)."""
    monkeypatch.setattr(service_module, "FAILED_WAIT", 0.2)
    with half_a_day_followed(trained, tmp_path) as (service, write_the_rest):
        add = Engine.add

        def tripped(engine: Engine, events: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tripped on a line")

        monkeypatch.setattr(Engine, "add", tripped)
        began = time.monotonic()
        expected = write_the_rest()
        wait_for(lambda: len(service.problems()) == 1)
        took = time.monotonic() - began
        (problem,) = service.problems()
        assert problem.startswith(
            "the ingest loop failed 3 times in a row, the last with RuntimeError: tripped on "
            "a line; it goes back to the last checkpoint and tries again"
        )
        assert took >= 0.2 + 0.4  # waited 0.2 s, then 0.4 s: less often each time
        errors = service.metrics.registry.get_sample_value("trovewatch_ingest_errors_total")
        assert errors is not None and errors >= 3
        monkeypatch.setattr(Engine, "add", add)
        wait_for(lambda: stored_totals(service, expected) == expected, timeout=30)
        assert service.problems() == []


def following(log: Path, **overrides: Any) -> settings.Settings:
    """Settings to follow ``log`` with state beside it, quick to checkpoint and to close
    windows (no lateness)."""
    quick: dict[str, Any] = {"lateness": "0s", "checkpoint_interval": 0.05, "poll_interval": 0.05}
    where = {"state_dir": log.parent / "state", "follow": [str(log)]}
    return settings.Settings(**{**where, **quick, **overrides})


def read_beside(trained: model.TrainedModel, logs: Path, stranger: str) -> None:
    """A day of the sample log in ``logs``, beside ``stranger`` (made there), the two
    matched by one glob: ``serve`` (its state beside ``logs``) stores every statement of
    the log."""
    body = day_of_lines("2026-10-18")
    (logs / "postgresql.json").write_bytes(body)
    expected = batch_totals(body, logs.parent)
    conf = following(
        logs / "postgresql.json", follow=[str(logs / f"*{Path(stranger).suffixes[0]}*")]
    )
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()
    try:
        wait_for(lambda: stored_totals(service, expected) == expected, timeout=60)
    finally:
        service.stop()


def wait_for(check, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def batch_totals(body: bytes, tmp: Path) -> dict[str, int]:
    from detector import pipeline

    path = tmp / "expected.json"
    path.write_bytes(body)
    events, _ = pipeline.read_events([path])
    counts = events.group_by(S.ACCOUNT).agg(pl.col(S.SUCCESS).sum())
    return {a: int(n) for a, n in counts.iter_rows() if a is not None}


def stored_totals(service: Service, expected: dict[str, int]) -> dict[str, int] | None:
    out = {}
    for account in expected:
        found = service.store.account(account)
        if found is None:
            return None
        out[account] = found["totals"]["statements"]
    return out


def test_a_servers_rotated_logs_are_followed_as_score_reads_them(
    trained: model.TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` started beside a server's rotated logs (logrotate's
    ``postgresql.json.3.gz`` and ``.2.gz``, then ``.1`` and the live file: four days)
    counts in every window what ``score`` counts in it, none of it late. Before, it read
    the archives in name order and beside the plain files: an older file's events came
    after their windows had closed."""
    # A read of a few lines at a time, far smaller than the logs, as a server's logs are.
    monkeypatch.setattr(service_module, "READ_BUDGET", 64 << 10)
    days = [day_of_lines(f"2026-10-{day:02}") for day in (5, 6, 7, 8)]
    logs = tmp_path / "log"
    logs.mkdir()
    for age, name in enumerate(["json.3.gz", "json.2.gz", "json.1", "json"]):
        path = logs / f"postgresql.{name}"
        path.write_bytes(gzip.compress(days[age]) if name.endswith(".gz") else days[age])
        os.utime(path, ns=(10**18 + age * 10**9,) * 2)
    conf = following(logs / "postgresql.json*", lateness="1s")
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        deadline = time.monotonic() + 120
        while service.step() or service.engine.open_windows:
            assert time.monotonic() < deadline, "never closed its windows"
            time.sleep(0.01)
        late = service.metrics.registry.get_sample_value("trovewatch_late_events_total")
    finally:
        service.stop()
    whole = tmp_path / "postgresql.json"
    whole.write_bytes(b"".join(days))
    events, _ = read_events([whole])
    key = [F.ACCOUNT, F.WINDOW]
    batch = F.window_activity(events.lazy(), "5m").select(*key, "statements", "rows_read")
    with sqlite3.connect(conf.state_dir / "trovewatch.db") as db:
        stored = pl.read_database(
            "SELECT account, window_start, statements, rows_read FROM windows", db
        )
    start = pl.from_epoch(F.WINDOW, time_unit="us").dt.replace_time_zone("UTC")
    stored = stored.with_columns(start).sort(key)
    assert late == 0
    assert_frame_equal(stored, batch.collect().sort(key), check_dtypes=False)


def test_a_damaged_archive_is_counted_named_and_the_log_after_it_read(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A rotated log's archive with bytes overwritten in the middle: ``serve`` reads it
    up to the damage, names it on ``/readyz``, counts it in
    ``trovewatch_archives_damaged`` (alert ``TrovewatchArchiveDamaged``), and reads the
    log after it (before: every pass failed on it, for ever)."""
    older, newer = day_of_lines("2026-10-05"), day_of_lines("2026-10-06")
    logs = tmp_path / "log"
    logs.mkdir()
    archive, live = logs / "postgresql.json.1.gz", logs / "postgresql.json"
    packed = bytearray(gzip.compress(older))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = b"\xff" * 64
    archive.write_bytes(packed)
    live.write_bytes(newer)
    os.utime(archive, ns=(10**18,) * 2)
    conf = following(logs / "postgresql.json*")
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        deadline = time.monotonic() + 60
        while service.step() or not all(s.caught_up() for s in service.sources):
            assert time.monotonic() < deadline, "never caught up"
        value = service.metrics.registry.get_sample_value
        damaged = value("trovewatch_archives_damaged", {"source": str(logs / "postgresql.json*")})
        problems = service.problems()
        samples = service.metrics.events.collect()[0].samples
        counted = sum(s.value for s in samples if s.name.endswith("_total"))
    finally:
        service.stop()
    assert damaged == 1
    assert [p for p in problems if p.startswith(f"{archive}: a damaged archive")], problems
    assert counted >= sum(batch_totals(newer, tmp_path).values())  # the log after it


def test_mariadb_audit_and_slow_logs_in_one_directory_are_both_read(
    trained: model.TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlike PostgreSQL's outputs, MariaDB's two logs carry different facts: neither
    is skipped for the other."""
    # The bundled model was trained on other logs' fields; only reading counts here.
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    reference = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11"
    logs = tmp_path / "log"
    logs.mkdir()
    for name in ("server_audit.log", "slow.log"):
        (logs / name).write_bytes((reference / name).read_bytes())
    conf = settings.Settings(state_dir=tmp_path / "state", follow=[str(logs / "*.log")])
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    while service.step():
        pass
    samples = service.metrics.events.collect()[0].samples
    by_format = {s.labels["format"]: s.value for s in samples if s.name.endswith("_total")}
    assert set(by_format) == {"mariadb-audit", "mariadb-slow"}


def test_logs_carrying_other_fields_than_the_models_are_refused_and_held(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """The bundled model learned pgAudit (rows, no bytes); MariaDB's slow log carries
    bytes: nothing of it is scored or checkpointed, /readyz says why, a metric says so,
    and pushes are turned away, until a model trained on such logs is loaded."""
    reference = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11"
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "slow.log").write_bytes((reference / "slow.log").read_bytes())
    conf = settings.Settings(state_dir=tmp_path / "state", follow=[str(logs / "*.log")])
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        for _ in range(3):
            service.step()
        problems = service.problems()
        assert any(
            p.startswith("reading held: the model was trained on logs with rows")
            and "bytes differ" in p
            for p in problems
        ), problems
        assert service.metrics.registry.get_sample_value("trovewatch_model_refuses_logs") == 1
        assert service.store.load_checkpoint() is None  # no position moved on
        assert service.store.accounts()[0] == 0  # nothing scored
        with pytest.raises(ValueError, match="not accepted: the model was trained"):
            service.push(day_of_lines("2026-10-20"), "pgaudit-jsonlog")
    finally:
        service.stop()


FIXTURES = ROOT / "tests" / "fixtures"


@pytest.mark.parametrize(
    ("fixture", "format_name"),
    [
        ("mysql-audit/percona-9.7-audit-filter.jsonl", "mysql-audit"),
        ("mysql-audit/percona-8.0-audit-filter.json", "mysql-audit"),
        ("percona-audit/percona-docs-query.log", "percona-audit"),
        ("aws-das/aurora-postgresql.jsonl", "aws-das"),
        ("mssql-audit/eventhub-record.json", "mssql-audit-json"),
        ("snowflake/query_history.csv", "snowflake-query-history"),
        ("snowflake/access_history.ndjson", "snowflake-access-history"),
        ("mongodb-audit/otel-atlas-5.0.log", "mongodb-audit"),
        ("pgaudit-syslog/postgresql.syslog", "pgaudit-syslog"),
        ("pgaudit-syslog/postgresql-rfc3339.syslog", "pgaudit-syslog"),
        ("mariadb-audit-syslog/server_audit.syslog", "mariadb-audit-syslog"),
        ("mariadb-audit-syslog/server_audit-rfc5424.syslog", "mariadb-audit-syslog"),
    ],
)
def test_every_format_is_followed_as_score_reads_it(
    trained: model.TrainedModel,
    tmp_path: Path,
    fixture: str,
    format_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A followed file of each format is detected and parsed as the batch reader parses
    it: the same events and the same rejects (a CSV header learned once, multi-line
    records kept whole). The follower holds a file's last record back until the file is
    quiet (it may still grow), so the file is read in two parts here: a MySQL
    statement's table records and its status record then arrive apart, and count as two
    statements (README, Limits)."""
    # The bundled model fits none of these formats' fields; its refusal to score them
    # is tested above. Here only reading counts.
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = FIXTURES / fixture
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / source.name).write_bytes(source.read_bytes())
    quarantine = Quarantine(None)
    events, _ = read_events([source], quarantine=quarantine)
    conf = settings.Settings(
        state_dir=tmp_path / "state", follow=[str(logs / "*")], lateness="3650d"
    )
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        service.step()
        time.sleep(2.1)  # the follower's idle_flush: a last record that may still grow
        service.step()
        samples = service.metrics.events.collect()[0].samples
        counted = {s.labels["format"]: s.value for s in samples if s.name.endswith("_total")}
        split = format_name == "mysql-audit" and fixture.endswith(".jsonl")
        assert counted == ({format_name: events.height + split} if events.height else {})
        assert service.quarantine.total == quarantine.total
        live = service.engine.open_activity()  # every window: none closes in ten years
        batch = F.window_activity(events.lazy(), "5m").collect()
        assert live["rows_read"].sum() == batch["rows_read"].sum()
        assert live["statements"].sum() == batch["statements"].sum() + split
        objects = set(batch["objects_list"].explode().drop_nulls())
        read = set(live["objects_list"].explode().drop_nulls())
        # Apart, the status record also lacks its connection's database: its tables,
        # named from the text, stay unqualified beside the table records' names.
        assert objects <= read if split else objects == read
    finally:
        service.stop()


def test_a_restart_waits_the_lateness_before_the_wall_clock_closes_windows(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A restart is no sign that the writers went quiet: a statement whose first table's
    line was read before the restart and whose second arrives just after is counted once
    (the restarted service does not close its window as if the log had ended)."""
    body = day_of_lines("2026-10-19")
    # billing_job's second statement logs one line per table (its session's lines 4-6):
    # cut between two of them.
    lines = body.splitlines(keepends=True)
    at = next(
        i
        for i, line in enumerate(lines)
        if b'"user":"billing_job"' in line and b'"line_num":5,' in line
    )
    assert b"AUDIT: SESSION,2,1," in lines[at - 1] and b"AUDIT: SESSION,2,1," in lines[at]
    cut = len(b"".join(lines[:at]))
    log = tmp_path / "postgresql.json"
    log.write_bytes(body[:cut])
    conf = following(log, lateness="5s")
    first = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    first.start()
    wait_for(lambda: first.sources[0].caught_up())
    first.stop()
    second = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    second.start()
    try:
        time.sleep(1)  # the restarted service polls the unchanged log a few times
        with log.open("ab") as fh:
            fh.write(body[cut:])
        expected = batch_totals(body, tmp_path)
        wait_for(lambda: stored_totals(second, expected) == expected, timeout=30)
    finally:
        second.stop()


def test_a_damaged_table_met_while_pruning_is_logged_not_a_crash(
    trained: model.TrainedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Damage in a part of the state database that only the retention's deletes reach
    (the suppressions table, on the real SQLite file) is an error line naming the state
    directory when `serve` stops, not an internal error; what was read is still saved."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(day_of_lines("2026-10-18"))
    conf = following(log)
    first = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    first.start()
    wait_for(lambda: first.store.load_checkpoint() is not None)
    first.stop()
    first.store.close()
    damage_table(conf.state_dir / "trovewatch.db", "suppressions")
    log.write_bytes(log.read_bytes() + day_of_lines("2026-10-19")[:20_000].rsplit(b"\n", 1)[0])

    second = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    second.start()
    try:
        wait_for(lambda: second.sources[0].positions() != first.sources[0].positions())
    finally:
        second.stop()  # checkpoints, then prunes: the prune meets the damage
    assert "malformed" in caplog.text and str(conf.state_dir) in caplog.text
    assert "ingest loop error" not in caplog.text
    saved = second.store.load_checkpoint()
    assert saved is not None
    assert saved.sources == {source_key(s): s.positions() for s in second.sources}


def damage_table(database: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in the SQLite file with garbage."""
    import sqlite3

    conn = sqlite3.connect(database)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    with database.open("r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xa5" * page)


def test_a_line_dated_far_ahead_does_not_make_the_lines_after_it_late(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """One line from a server clock gone wrong (here dated 2099) must not take event time
    there: every later true line would be late, counted in a 2099 window that never
    closes, and serve blind. It counts at the newest sane time, in a metric of its own,
    and every true line is scored as a batch run scores it."""
    log = tmp_path / "postgresql.json"
    body = day_of_lines("2026-10-19")
    half = body.index(b"\n", len(body) // 2) + 1
    first = body[:half].splitlines(keepends=True)
    forged = next(line for line in first if b'"AUDIT: SESSION' in line and b",READ," in line)
    forged = forged.replace(b'"timestamp":"2026-10-19', b'"timestamp":"2099-10-19', 1)
    forged = forged.replace(b'"session_id":"', b'"session_id":"f', 1)
    log.write_bytes(body[:half] + forged)
    conf = following(log)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()
    try:
        wait_for(lambda: service.store.load_checkpoint() is not None)
        with log.open("ab") as fh:
            fh.write(body[half:])
        expected = batch_totals(body + forged.replace(b"2099-10-19", b"2026-10-19"), tmp_path)
        wait_for(lambda: stored_totals(service, expected) == expected, timeout=30)
        assert "trovewatch_future_events_total 1.0" in service.exposition().decode()
    finally:
        service.stop()


def test_a_flood_of_garbage_cannot_fill_the_state_directory(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """Megabytes of garbage appended to a followed log are counted line by line, but the
    quarantine copy keeps only the latest: two files of at most quarantine_max_bytes."""
    log = tmp_path / "postgresql.json"
    garbage = b"".join(b"garbage %06d " % i + b"x" * 180 + b"\n" for i in range(20_000))
    log.write_bytes(day_of_lines("2026-10-18") + garbage)
    conf = following(log, quarantine_max_bytes=1_000_000)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()
    try:
        wait_for(lambda: service.quarantine.total == 20_000)
    finally:
        service.stop()
    current = conf.state_dir / "quarantine.ndjson"
    previous = conf.state_dir / "quarantine.ndjson.1"
    assert len(garbage) > 3 * conf.quarantine_max_bytes
    assert 0 < current.stat().st_size <= conf.quarantine_max_bytes
    assert 0 < previous.stat().st_size <= conf.quarantine_max_bytes
    kept = [json.loads(line) for line in current.read_text().splitlines()]
    assert kept[-1]["raw"].startswith("garbage 019999 ")  # the latest are kept
    assert {k["reason"] for k in kept} == {"invalid_json"}


def test_a_state_directory_serve_creates_is_its_owners_alone(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """The state directory holds alerts and quarantined log lines (statement text, with
    whatever literals it carried): made by serve, nobody but its owner can list or read
    it, whatever the umask (the systemd unit sets 0700 too)."""
    conf = settings.Settings(state_dir=tmp_path / "var" / "trovewatch", follow=[])
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.store.close()
    assert stat.S_IMODE(conf.state_dir.stat().st_mode) == 0o700


def test_a_statement_split_between_two_polls_counts_once_in_events_total(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """pgAudit logs a statement once per relation. A poll that ends between a join's
    relation lines leaves the rest to the next poll: the engine scores one statement,
    and ``trovewatch_events_total`` counts one too, as many events as ``score`` reads
    from the log (before: one more, the statement's rest counted again)."""
    body = gzip.decompress((SAMPLE.parent / "postgresql.log.gz").read_bytes())
    records = re.split(rb"\n(?=[^\t])", body)  # a continuation line starts with a tab
    ids = [re.search(rb"\[(\d+)\].*AUDIT: SESSION,(\d+),", r) for r in records]
    keys = [m.groups() if m else None for m in ids]
    cut = next(i for i in range(len(keys) - 1) if keys[i] and keys[i] == keys[i + 1]) + 1
    first, rest = b"\n".join(records[:cut]) + b"\n", b"\n".join(records[cut : cut + 300]) + b"\n"
    log = tmp_path / "postgresql.log"
    service = Service(
        trained, following(log, lateness="3650d"), [str(log)], ROOT / "models" / "default"
    )
    try:
        for part in (first, rest):
            with log.open("ab") as fh:
                fh.write(part)
            service.step()
            time.sleep(2.1)  # the follower's idle_flush: the last line is let go
            service.step()
        counted = service.metrics.events.collect()[0].samples
        total = sum(s.value for s in counted if s.name.endswith("_total"))
    finally:
        service.stop()
    events, _ = read_events([log])
    assert total == events.height


def test_one_pass_reads_a_followed_file_with_the_whole_read_budget(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A glob is two sources (its plain files, its .gz archives). With no archive to
    read, the files get the pass's whole ``READ_BUDGET``, not half of it: a pass has a
    cost of its own, so half-size reads made catching up slower (12 MB here: one pass)."""
    body = gzip.decompress(SAMPLE.read_bytes())
    body = body[: body.index(b"\n", 3 * READ_BUDGET // 4) + 1]
    log = tmp_path / "postgresql.json"
    log.write_bytes(body)
    service = Service(
        trained, following(log, lateness="3650d"), [str(log)], ROOT / "models" / "default"
    )
    try:
        service.step()
        read = service.metrics.registry.get_sample_value(
            "trovewatch_lines_read_total", {"source": str(log)}
        )
    finally:
        service.stop()
    assert read == body.count(b"\n")


def test_a_stop_that_cannot_wait_for_the_step_leaves_the_last_checkpoint(
    trained: model.TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during a step longer than the stop waits for (a close of 150,000 accounts'
    windows took 28 s on 2 busy cores; the wait is 30 s): the stop must not save what
    the step is halfway through (lines read, their events not yet in a window: lost
    for good). It leaves the last checkpoint, as `kill -9` would; the restart is exact."""
    monkeypatch.setattr("detector.live.service.STOP_WAIT", 0.0)
    log = tmp_path / "postgresql.json"
    body = day_of_lines("2026-10-19") + day_of_lines("2026-10-20")
    log.write_bytes(body)
    conf = following(log)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()
    files = service.sources[0]
    assert isinstance(files, Files)
    wait_for(lambda: files.follower.polled, timeout=5)
    service.stop()  # the first step is under way: lines read, being parsed
    # `serve`'s process ends here, its ingest thread with it: what it leaves on disk is
    # the database as of now (the test's thread goes on, and must not write to it)
    left = tmp_path / "left"
    left.mkdir()
    with (
        sqlite3.connect(conf.state_dir / "trovewatch.db") as now,
        sqlite3.connect(left / "trovewatch.db") as copy,
    ):
        now.backup(copy)
    assert service._thread is not None
    service._thread.join()
    service.stop()
    conf = conf.model_copy(update={"state_dir": left})
    restarted = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        while restarted.step():
            pass
        time.sleep(0.1)
        restarted.step()  # quiet: the wall clock closes the last windows
        expected = batch_totals(body, tmp_path)
        assert stored_totals(restarted, expected) == expected
    finally:
        restarted.stop()


def test_a_binary_file_beside_the_log_does_not_stop_the_reads(
    trained: model.TrainedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A glob that matches a binary file beside the server's log (a gzip archive of
    zeros: no line, no text) reads the log as ever and refuses the binary file with a
    warning. (Before, telling the log's directory's outputs apart ran every format's
    detection on it, and each poll ended in a traceback before any file was read.)"""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "zeros.json.gz").write_bytes(gzip.compress(b"\0" * 5_000_000))
    read_beside(trained, tmp_path / "logs", "zeros.json.gz")
    assert "zeros.json.gz: binary data, not a text log" in caplog.text
    assert "ingest loop error" not in caplog.text


def test_a_pushed_body_unlike_the_models_logs_is_refused_alone(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A body of MariaDB audit records (no rows) pushed to a serve whose model learned
    pgAudit is refused with the reason, before the followed log has any line and after:
    the log is read on, every statement of it stored. (Before, the body pushed first held
    every read until a restart, and the body pushed later was scored with the rest.)"""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"")
    audit = (FIXTURES / "reference" / "mariadb10.11" / "server_audit.log").read_bytes()
    conf = following(log)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    service.start()
    try:
        written = b""
        for day in ("2026-10-18", "2026-10-19"):
            with pytest.raises(ValueError, match="not accepted: the model was trained on logs"):
                service.push(audit, "auto")
            assert not any(p.startswith("reading held") for p in service.problems())
            lines = day_of_lines(day)
            with log.open("ab") as fh:
                fh.write(lines)
            written += lines
            expected = batch_totals(written, tmp_path)
            wait_for(lambda want=expected: stored_totals(service, want) == want, timeout=60)
        assert service.store.account("bob") is None  # no MariaDB account was scored
    finally:
        service.stop()


def test_readiness_says_why_a_globs_directory_cannot_be_listed(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A glob whose directory is a file (a mistyped path; or, past the open files limit,
    any directory): /readyz says it cannot be listed and why, not that no file matches."""
    not_a_directory = tmp_path / "postgresql.json"
    not_a_directory.write_bytes(b"")
    pattern = str(not_a_directory / "*.json")
    conf = settings.Settings(state_dir=tmp_path / "state", follow=[pattern])
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        assert service.problems() == [
            f"cannot list {not_a_directory} for {pattern}: Not a directory"
        ]
        service.step()  # and counted as a file it may not read (TrovewatchLogUnreadable)
        assert (
            service.metrics.registry.get_sample_value(
                "trovewatch_files_unreadable", {"source": pattern}
            )
            == 1
        )
    finally:
        service.store.close()


def test_a_quarantine_that_cannot_be_written_is_said_once_and_lines_still_counted(
    trained: model.TrainedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The quarantine file cannot be opened (here a directory stands in its place; past
    the open files limit, the same): every rejected line is counted all the same, the
    error is logged once, not at every read with a bad line, and /readyz and
    trovewatch_quarantine_writable say so until a reject is written again."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(day_of_lines("2026-10-18")[:20_000].rsplit(b"\n", 1)[0] + b"\n")
    conf = following(log)
    (conf.state_dir / "quarantine.ndjson").mkdir(parents=True)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        service.step()
        for n in range(4):
            with log.open("ab") as fh:
                fh.write(b"garbage %d\n" % n)
            time.sleep(2.1)  # the follower's idle_flush: the last line is let go
            service.step()
        rejected = service.metrics.rejected.collect()[0].samples
        assert sum(s.value for s in rejected if s.name.endswith("_total")) == 4
        assert service.metrics.registry.get_sample_value("trovewatch_quarantine_writable") == 0
        [said_ready] = [p for p in service.problems() if "quarantine" in p]
        assert said_ready.startswith("cannot write the quarantine file: ")
        (conf.state_dir / "quarantine.ndjson").rmdir()  # the file can be made again
        with log.open("ab") as fh:
            fh.write(b"garbage again\n")
        time.sleep(2.1)
        service.step()
        assert service.metrics.registry.get_sample_value("trovewatch_quarantine_writable") == 1
        assert not [p for p in service.problems() if "quarantine" in p]
        assert b"garbage again" in (conf.state_dir / "quarantine.ndjson").read_bytes()
    finally:
        service.stop()
    said = [r for r in caplog.records if "cannot write the quarantine file" in r.getMessage()]
    assert len(said) == 1


def test_a_fifo_beside_the_log_does_not_stop_the_reads(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A named pipe the glob matches (no writer on it) is passed over: the log beside it
    is read. (Before, looking for .gz archives opened it, which waits for a writer: the
    loop stopped there for good while /readyz said ready.)"""
    (tmp_path / "logs").mkdir()
    os.mkfifo(tmp_path / "logs" / "piped.json")
    read_beside(trained, tmp_path / "logs", "piped.json")


def test_a_pass_that_does_not_end_is_named_on_readiness_with_what_it_waits_on(
    trained: model.TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that does not return (the followed file on a hung network file system):
    /readyz says the ingest loop is stuck and on what, and the metric says for how long
    (before: ready, with nothing read). Once the read returns, ready again."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(day_of_lines("2026-10-18")[:20_000].rsplit(b"\n", 1)[0] + b"\n")
    conf = following(log)
    monkeypatch.setattr(service_module, "STUCK_AFTER", 0.5)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    source = next(s for s in service.sources if isinstance(s, Files))
    answers = threading.Event()
    poll = source.poll

    def hung(budget: int) -> Any:  # the read(2) of a hung mount: it waits
        answers.wait()
        return poll(budget)

    monkeypatch.setattr(source, "poll", hung)
    service.start()
    try:
        wait_for(lambda: any("ingest loop" in p for p in service.problems()), timeout=10)
        [stuck] = service.problems()
        assert stuck.startswith(f"the ingest loop has been reading {source.label} for ")
        assert "restart trovewatch" in stuck
        seconds = re.search(r"^trovewatch_ingest_pass_seconds (\S+)$", exposition(service), re.M)
        assert seconds is not None and float(seconds[1]) >= 0.5
        answers.set()
        wait_for(lambda: service.problems() == [], timeout=10)
        assert "trovewatch_ingest_pass_seconds 0.0" in exposition(service)
    finally:
        answers.set()
        service.stop()


def exposition(service: Service) -> str:
    return service.exposition().decode()


def test_a_pushed_body_in_no_known_format_is_told_how_to_name_it_in_the_request(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """POST /v1/events of lines no format fits: the reason says to name the format in the
    request, with the names, not to pass command-line flags the client has no way to."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"")
    conf = following(log)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        with pytest.raises(ValueError) as refused:
            service.push(b"hello world\nthis is not a log\n", "auto")
        assert str(refused.value).endswith(
            f"first line: 'hello world'; name it in the request: ?format= one of "
            f"{', '.join(formats.PG_OUTPUTS)}"
        )
        assert "--" not in str(refused.value)
    finally:
        service.store.close()


def test_a_shared_syslog_file_is_read_from_the_databases_first_line(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """``serve`` following /var/log/syslog just after its rotation: other programs' lines
    only, then the database's. Every statement is read, as from the database's own file,
    and no line is rejected (before: the file's format was settled as none on its first
    lines, and every line after was quarantined as unrecognised)."""
    database = FIXTURES / "pgaudit-syslog" / "postgresql.syslog"
    shared = tmp_path / "syslog"
    shared.write_text(other_programs(database, 90))
    conf = following(shared)
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    try:
        service.step()
        with shared.open("a") as fh:
            fh.write(database.read_text())
        for _ in range(3):
            service.step()
        metrics = exposition(service)
        events, _ = read_events([database])
        assert events.height > 0
        assert f'format="pgaudit-syslog",source="{shared}"}} {events.height}.0' in metrics
        rejected = re.findall(r"^trovewatch_lines_rejected_total\{.*\} (\S+)$", metrics, re.M)
        assert rejected and all(float(n) == 0 for n in rejected)
    finally:
        service.stop()
