"""Two limits of the log reader, on a real PostgreSQL 15 + pgAudit's output.

* A statement over 1 MB (``SELECT ... WHERE id IN (<200,000 ids>)``, the shape of a bulk
  pull) is an event with its account, objects, class and rows; only its text is cut.
* Without ``%c`` (or ``%u``) in ``log_line_prefix`` a session is known by its process id
  and its connection line: a session whose lines fall in two chunks (batch ``score``)
  or two reads (``serve``) is still one session, with its user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import carried, ingest, model, settings
from detector import features as F
from detector import schema as S
from detector.formats import Told
from detector.ingest import Summary, event_batches, read_events
from detector.live.service import Service, stream_format
from detector.rejects import Quarantine
from tests.conftest import OUTPUTS
from tests.integration.conftest import MODEL, follow, pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
IDS = 200_000
LOOPS = 150  # statements of the long session, enough for it to cross small chunks


@pytest.fixture(scope="module")
def cluster(server_dir: Callable[[str], Path]) -> Iterator[object]:
    """A server with PostgreSQL's default ``log_line_prefix`` ('%m [%p] '): no session
    id, no user on the lines: both come from the connection lines."""
    default_prefix = {"log_line_prefix": "%m [%p] ", "log_min_duration_statement": "0"}
    with pg_cluster(server_dir("pg-limits"), default_prefix) as pg:
        yield pg


@pytest.fixture(scope="module")
def logs(cluster) -> Path:  # type: ignore[no-untyped-def]
    admin = psycopg.connect(cluster.dsn(), autocommit=True)
    admin.execute("CREATE ROLE puller LOGIN")
    admin.execute("CREATE ROLE clerk LOGIN")
    admin.execute("CREATE ROLE exporter LOGIN")
    admin.execute("CREATE DATABASE corp")
    admin.close()
    with psycopg.connect(cluster.dsn(dbname="corp"), autocommit=True) as db:
        db.execute("CREATE SCHEMA big")
        db.execute("CREATE TABLE big.people(id int primary key, name text)")
        db.execute("INSERT INTO big.people SELECT g, 'p' || g FROM generate_series(1, 250000) g")
        db.execute("GRANT USAGE ON SCHEMA big TO puller, clerk, exporter")
        db.execute("GRANT SELECT ON big.people TO puller, clerk, exporter")
    with psycopg.connect(cluster.dsn("clerk", "corp"), application_name="desk") as conn:
        for i in range(1, LOOPS + 1):  # one long session of small reads
            conn.execute(f"SELECT * FROM big.people WHERE id <= {i}").fetchall()
    with psycopg.connect(cluster.dsn("puller", "corp"), application_name="pull") as conn:
        ids = ",".join(str(i) for i in range(1, IDS + 1))
        query = f"SELECT * FROM big.people WHERE id IN ({ids})"
        assert len(query) > 1_280_000  # 1.29 MB
        assert len(conn.execute(query).fetchall()) == IDS  # type: ignore[call-overload]
        conn.execute("SELECT * FROM big.people WHERE id <= 7").fetchall()
    # The same text exported: pgAudit logs its SELECT, then the COPY, each with it whole.
    exporter = psycopg.connect(cluster.dsn("exporter", "corp"), application_name="dump")
    with exporter, exporter.cursor().copy(f"COPY ({query}) TO STDOUT") as copy:
        assert sum(len(block) for block in copy) > 0
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 'end-of-limits-workload'")
    wait_for_logs(cluster.log_dir, "end-of-limits-workload", timeout=30)
    return Path(cluster.log_dir)


def parse(path: Path) -> tuple[pl.DataFrame, Summary, Quarantine]:
    quarantine = Quarantine(None)
    events, summary = read_events([path], quarantine=quarantine)
    return events, summary, quarantine


def test_a_statement_over_1_mb_counts_its_account_objects_and_rows(logs: Path, output: str) -> None:
    events, summary, quarantine = parse(logs / OUTPUTS[output])
    assert dict(quarantine.counts) == {}  # nothing lost; the long duration line is context
    pulled = events.filter(pl.col(S.ACCOUNT) == "puller")
    assert pulled[S.ROWS].to_list() == [IDS, 7]
    assert pulled[S.OBJECTS].to_list() == [["big.people"], ["big.people"]]
    assert pulled[S.CLASS].to_list() == ["READ", "READ"]
    assert pulled[S.APPLICATION].to_list() == ["pull", "pull"]
    giant = pulled[S.QUERY][0]
    assert giant.startswith("SELECT * FROM big.people WHERE id IN (1,2,3,4,5,")
    assert "[trovewatch: statement of " in giant and len(giant) < 70_000
    exported = events.filter(pl.col(S.ACCOUNT) == "exporter")
    assert exported.filter(F.begins_statement()).height == 1
    assert exported[S.EXPORT].any()
    # Two statements over 1 MB, the COPY's two lines one statement (it was 3).
    assert summary.cut == 2
    assert "2 statement(s) longer than 1 MB kept with their text cut" in summary.paragraph()
    # The window sums see the pull: 200,007 rows of big.people read by puller.
    windows = F.window_activity(pulled.lazy(), "5m").collect()
    assert windows["rows_read"].sum() == IDS + 7


def test_stderr_sessions_are_one_session_whatever_the_chunks(
    logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 16 KiB chunk cuts the clerk's session (150 statements, about 50 KB of log)
    several times: every statement keeps its user and the one session id."""
    path = logs / OUTPUTS["stderr"]
    whole, _, whole_quarantine = parse(path)
    clerk = whole.filter(pl.col(S.ACCOUNT) == "clerk")
    assert clerk.height == LOOPS and clerk[S.SESSION].n_unique() == 1
    monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", 16 * 1024)
    assert path.stat().st_size > 40 * ingest.STREAM_CHUNK_BYTES
    summary = Summary()
    quarantine = Quarantine(None)
    small = pl.concat(list(event_batches([path], summary, quarantine=quarantine)))
    columns = [S.TIME, S.ACCOUNT, S.SESSION, S.STATEMENT_ID, S.ROWS, S.OBJECTS, S.APPLICATION]
    key = [S.TIME, S.SESSION, S.STATEMENT_ID]
    small_clerk = small.filter(pl.col(S.ACCOUNT) == "clerk")
    assert small_clerk.height == LOOPS and small_clerk[S.SESSION].n_unique() == 1
    assert small.select(columns).sort(key).equals(whole.select(columns).sort(key))
    assert dict(quarantine.counts) == dict(whole_quarantine.counts) == {}


@pytest.fixture(scope="module")
def trained() -> model.TrainedModel:
    return model.load(ROOT / "models" / "default")


def cut_in_the_clerks_session(body: bytes) -> list[bytes]:
    """``body`` in two, after the clerk's 75th statement's line."""
    at = body.index(b"\n", body.index(b"id <= 75")) + 1
    return [body[:at], body[at:]]


def assert_counts_as_batch(service: Service, events: pl.DataFrame) -> None:
    """``service``'s open windows hold what a batch run gives ``events``: per account,
    the same statements and rows read (the clerk's 150 statements, the pull's rows)."""
    live = service.engine.open_activity()
    batch = F.window_activity(events.lazy(), "5m").collect()
    assert batch.filter(pl.col(F.ACCOUNT) == "clerk")["statements"].sum() == LOOPS
    assert batch.filter(pl.col(F.ACCOUNT) == "puller")["rows_read"].sum() == IDS + 7
    for account in ("clerk", "puller"):
        mine = live.filter(pl.col(F.ACCOUNT) == account)
        theirs = batch.filter(pl.col(F.ACCOUNT) == account)
        assert mine["rows_read"].sum() == theirs["rows_read"].sum(), account
        assert mine["statements"].sum() == theirs["statements"].sum(), account


@pytest.mark.parametrize("cut_at", ["none", "mid-session"])
def test_serve_counts_what_score_counts_with_a_statement_over_1_mb(
    trained: model.TrainedModel,
    logs: Path,
    output: str,
    cut_at: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` reads the real log, all at once or cut in the clerk's session (two
    reads): the same statements and rows as ``score``, the pull's 200,000 rows too."""
    # The bundled model was trained on other logs' fields; only reading counts here.
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = logs / OUTPUTS[output]
    body = source.read_bytes()
    events, _, _ = parse(source)
    parts = cut_in_the_clerks_session(body) if cut_at == "mid-session" else [body]
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / source.name
    service = follow(trained, tmp_path, [(log, part) for part in parts])
    try:
        assert_counts_as_batch(service, events)
        assert service.quarantine.total == 0
        assert service.metrics.cut.collect()[0].samples[0].value == 2  # as score counts
    finally:
        service.stop()


def test_a_session_goes_on_in_the_next_file_of_its_server(logs: Path, tmp_path: Path) -> None:
    """PostgreSQL's logging collector starts a new file at each rotation, and the
    sessions open then go on in it, their lines naming no user (the default prefix).
    ``score`` over the rotated files gives what it gives the log whole: the clerk's
    statements after the rotation keep their user and session."""
    source = logs / OUTPUTS["stderr"]
    whole, _, _ = parse(source)
    (tmp_path / "log").mkdir()
    files = [tmp_path / "log" / f"postgresql-{n}.log" for n in (1, 2)]
    for path, part in zip(files, cut_in_the_clerks_session(source.read_bytes()), strict=True):
        path.write_bytes(part)
    columns = [S.TIME, S.ACCOUNT, S.SESSION, S.STATEMENT_ID, S.ROWS, S.OBJECTS, S.APPLICATION]
    key = [S.TIME, S.SESSION, S.STATEMENT_ID]
    want = whole.select(columns).sort(key)
    rotated, _ = read_events(files)
    batches = pl.concat(list(event_batches(files, Summary())))
    for got in (rotated, batches):
        clerk = got.filter(pl.col(S.ACCOUNT) == "clerk")
        assert clerk.height == LOOPS and clerk[S.SESSION].n_unique() == 1
        assert got.select(columns).sort(key).equals(want)


def test_a_log_that_begins_with_a_statement_over_1_mb_reads_as_the_log_whole(
    logs: Path, output: str, tmp_path: Path
) -> None:
    """A rotation just before the 1.29 MB pull: the new file's first line is longer
    than the head that detection reads (256 KiB). It is detected by the lines after
    it, and the two files give the log's events (before: the csvlog file was "not an
    audit log", the stderr file's every line rejected as truncated)."""
    source = logs / OUTPUTS[output]
    whole, _, _ = parse(source)
    body = source.read_bytes()
    cut = body.rindex(b"\n", 0, body.index(b"WHERE id IN (1,2,3,4,5,")) + 1
    files = [tmp_path / f"{n}-{OUTPUTS[output]}" for n in (1, 2)]
    files[0].write_bytes(body[:cut])
    files[1].write_bytes(body[cut:])
    assert len(body[cut:].split(b"\n", 1)[0]) > 1_000_000
    quarantine = Quarantine(None)
    rotated, _ = read_events(files, quarantine=quarantine)
    assert dict(quarantine.counts) == {}
    columns = [S.TIME, S.ACCOUNT, S.STATEMENT_ID, S.ROWS, S.OBJECTS, S.APPLICATION]
    key = [S.TIME, S.ACCOUNT, S.STATEMENT_ID]
    assert rotated.select(columns).sort(key).equals(whole.select(columns).sort(key))
    assert rotated.filter(pl.col(S.ACCOUNT) == "puller")[S.ROWS].to_list() == [IDS, 7]


def test_a_pushed_body_that_begins_with_a_statement_over_1_mb_is_detected(
    logs: Path, output: str
) -> None:
    """The same for a body pushed to ``serve`` (or piped to its standard input) with
    ``format=auto``: detected by the lines after the giant one (before: from its first
    64 KiB only, the csvlog body was "not an audit log")."""
    body = (logs / OUTPUTS[output]).read_bytes()
    tail = body[body.rindex(b"\n", 0, body.index(b"WHERE id IN (1,2,3,4,5,")) + 1 :]
    assert stream_format(tail, "auto", Told()).name == f"pgaudit-{output}"


@pytest.mark.parametrize("between", ["restart", "rotation", "rotation while stopped"])
def test_serve_keeps_the_sessions_open_across_a_restart_and_a_rotation(
    trained: model.TrainedModel,
    logs: Path,
    between: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The clerk's session, opened before ``serve`` restarts or the server's log
    rotates (or both), goes on after it: its lines carry no user (the default prefix),
    yet every statement counts, as ``score`` counts them in the log whole (before, the
    session's 75 later statements were dropped)."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = logs / OUTPUTS["stderr"]
    events, _, _ = parse(source)
    first, rest = cut_in_the_clerks_session(source.read_bytes())
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "postgresql-1.log"
    after = log if between == "restart" else tmp_path / "log" / "postgresql-2.log"
    restart = None if between == "rotation" else 0
    service = follow(trained, tmp_path, [(log, first), (after, rest)], restart_after=restart)
    try:
        assert_counts_as_batch(service, events)
        assert service.quarantine.total == 0
    finally:
        service.stop()


@pytest.mark.parametrize("rotation", ["rename", "new file"])
def test_serve_reads_a_rotated_files_tail_before_the_new_files_head(
    trained: model.TrainedModel,
    logs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rotation: str,
) -> None:
    """The clerk connects just before the log rotates and runs its statements in the new
    file, all between two polls: by a rename (``postgresql.log`` -> ``postgresql.log.1``,
    a new ``postgresql.log``), or by PostgreSQL's own rotation to a new file
    (``postgresql-Sun.log``, then ``postgresql-Mon.log``, which sorts first). The
    connection line, which names the user, is read before the statements, and all 150
    count, as ``score`` counts them (before, the connection line waited a poll, or two
    seconds, and the statements read before it were dropped, for want of a user)."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = logs / OUTPUTS["stderr"]
    events, _, _ = parse(source)
    body = source.read_bytes()
    at = body.rindex(b"\n", 0, body.index(b"connection authorized: user=clerk")) + 1
    end = body.index(b"\n", at) + 1
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log = log_dir / ("postgresql.log" if rotation == "rename" else "postgresql-Sun.log")
    conf = settings.Settings(
        state_dir=tmp_path / "state", follow=[str(log_dir / "*")], lateness="3650d"
    )
    service = Service(trained, conf, conf.follow, MODEL)
    try:
        log.write_bytes(body[:at])
        service.step()
        time.sleep(2.1)  # the follower's idle_flush: the last line goes too
        service.step()
        with log.open("ab") as fh:
            fh.write(body[at:end])  # the clerk's connection line, then the rotation
        if rotation == "rename":
            log.rename(log_dir / "postgresql.log.1")
            log.write_bytes(body[end:])
        else:
            (log_dir / "postgresql-Mon.log").write_bytes(body[end:])
        service.step()  # one poll sees both files
        time.sleep(2.1)
        service.step()
        assert_counts_as_batch(service, events)
        assert service.quarantine.total == 0
    finally:
        service.stop()
