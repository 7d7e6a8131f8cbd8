"""pgAudit settings trovewatch's other live tests do not use, on a real PostgreSQL 15 +
pgAudit: each account's rows read (the volume signal), statements and exports come out
as the clients saw them.

* ``pgaudit.log_statement_once = on``: a statement's later relation lines say
  ``<previously logged>`` instead of its text and parameters.
* ``pgaudit.role``: OBJECT lines beside the SESSION lines of the same statement, or
  alone (``pgaudit.log = none``).
* ``pgaudit.log_statement = off`` (no statement text, no parameters: ``<not
  logged>,<not logged>``, a setting kept for logs that must hold no literal values).
* ``pgaudit.log_relation = off``, ``pgaudit.log = 'all'``, ``pgaudit.log_level =
  notice`` with ``pgaudit.log_client``; ``pgaudit.log_parameter`` (on in every cluster
  here) with values holding commas, quotes and a newline.
* Several statements sent as one simple query, and prepared statements (``PREPARE`` /
  ``EXECUTE``, and psycopg's server-side prepared statements).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg
import pytest
from pg_cluster import PgCluster

from detector import carried, formats, ingest, model, settings
from detector import features as F
from detector import schema as S
from detector.ingest import Summary, event_batches, read_events
from detector.live.service import Service
from detector.reader import read_chunks
from detector.rejects import Quarantine
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
CLASSES = "'read,write,ddl,role,misc'"
# A parameter value with what CSV must quote: commas, quotes, a newline.
AWKWARD = 'a, "quoted",\nnext line'


SNEAKY = [
    "SELECT count(*) FROM shop.orders; COPY shop.customers TO STDOUT",
    "COPY shop.customers TO STDOUT; SELECT * FROM shop.orders WHERE id <= 4",
    "BEGIN; DECLARE c CURSOR FOR SELECT * FROM shop.customers; FETCH 100 FROM c; COMMIT",
]


@dataclass
class Truth:
    """What the clients saw: rows read per account, and the statements' own facts."""

    rows: dict[str, int] = field(default_factory=dict)


def workload(pg: PgCluster) -> Truth:
    """Roles reading known numbers of rows, in every way this file is about."""
    truth = Truth()
    admin = psycopg.connect(pg.dsn(), autocommit=True)
    for role in ("reader", "exporter", "fn_reader", "proc_runner", "multi", "prep", "sneak"):
        admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute("CREATE ROLE auditor NOLOGIN")
    admin.execute("CREATE DATABASE corp")
    admin.close()
    with psycopg.connect(pg.dsn(dbname="corp"), autocommit=True) as db:
        db.execute("CREATE SCHEMA shop")
        db.execute("CREATE TABLE shop.customers(id int primary key, email text)")
        db.execute("CREATE TABLE shop.orders(id int primary key, customer_id int, total numeric)")
        db.execute(
            "INSERT INTO shop.customers SELECT g, 'u'||g||'@x.com' FROM generate_series(1,500) g"
        )
        db.execute(
            "INSERT INTO shop.orders SELECT g, 1 + g % 500, g % 97 FROM generate_series(1,2000) g"
        )
        db.execute(
            "CREATE FUNCTION shop.all_customers() RETURNS SETOF shop.customers"
            " LANGUAGE sql AS 'SELECT * FROM shop.customers'"
        )
        db.execute(
            "CREATE PROCEDURE shop.tally() LANGUAGE plpgsql AS $$BEGIN"
            " PERFORM * FROM shop.customers WHERE id <= 40;"
            " PERFORM * FROM shop.orders WHERE id < 8; END$$"
        )
        roles = "reader, exporter, fn_reader, proc_runner, multi, prep, sneak"
        db.execute(f"GRANT USAGE ON SCHEMA shop TO {roles}")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA shop TO {roles}")
        # Object audit logging (pgaudit.role = 'auditor'): what auditor may do is logged.
        db.execute("GRANT SELECT ON shop.customers, shop.orders TO auditor")

    with psycopg.connect(pg.dsn("reader", "corp"), application_name="report") as conn:
        join = "SELECT c.email, o.total FROM shop.customers c JOIN shop.orders o"
        join += " ON o.customer_id = c.id WHERE c.id <= 10"
        truth.rows["join"] = len(conn.execute(join).fetchall())  # type: ignore[arg-type]
        truth.rows["awkward"] = len(
            conn.execute(
                "SELECT * FROM shop.orders WHERE id <= %s AND total::text <> %s", (321, AWKWARD)
            ).fetchall()
        )
    with psycopg.connect(pg.dsn("exporter", "corp"), application_name="psql") as conn:
        with conn.cursor().copy("COPY shop.customers TO STDOUT") as copy:
            truth.rows["copy table"] = sum(1 for _ in copy.rows())
        query = "COPY (SELECT c.id, o.total FROM shop.customers c JOIN shop.orders o"
        query += " ON o.customer_id = c.id WHERE o.id <= 77) TO STDOUT"
        with conn.cursor().copy(query) as copy:  # type: ignore[arg-type]
            truth.rows["copy query"] = sum(1 for _ in copy.rows())
    with psycopg.connect(pg.dsn("fn_reader", "corp")) as conn:
        truth.rows["function"] = len(conn.execute("SELECT * FROM shop.all_customers()").fetchall())
    with psycopg.connect(pg.dsn("proc_runner", "corp"), autocommit=True) as conn:
        conn.execute("CALL shop.tally()")  # reads 40 and 7 rows, returns none
        truth.rows["procedure"] = 40 + 7
    with psycopg.connect(pg.dsn("multi", "corp"), autocommit=True) as conn:
        # One simple query of three statements: each is audited with its own rows.
        conn.execute(
            "SELECT * FROM shop.customers WHERE id <= 5; SELECT * FROM shop.orders WHERE id <= 17;"
            " SELECT c.id FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
            " WHERE o.id <= 3",
            prepare=False,
        )
        truth.rows["multi"] = 5 + 17 + 3
    with psycopg.connect(pg.dsn("prep", "corp"), autocommit=True) as conn:
        conn.execute("PREPARE q(int) AS SELECT * FROM shop.orders WHERE id <= $1")
        truth.rows["execute"] = sum(
            len(conn.execute(f"EXECUTE q({n})").fetchall())
            for n in (40, 9)  # type: ignore[arg-type]
        )
        truth.rows["server-side prepared"] = sum(
            len(
                conn.execute(
                    "SELECT * FROM shop.customers WHERE id <= %s", (n,), prepare=True
                ).fetchall()
            )
            for n in range(11, 17)
        )
    # psql -c sends its string as one simple query: a COPY or a cursor among SELECTs.
    psql = [str(pg.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "sneak"]
    for strings in SNEAKY:
        subprocess.run([*psql, "-d", "corp", "-c", strings], capture_output=True, check=True)
    truth.rows["sneaky"] = 1 + 4
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        # Written whatever pgAudit logs (nothing, for a SELECT of no table, with only
        # object logging).
        conn.execute("DO $$BEGIN RAISE LOG 'end-of-settings-workload'; END$$")
    wait_for_logs(pg.log_dir, "end-of-settings-workload")
    return truth


@pytest.fixture(scope="module")
def once(server_dir: Callable[[str], Path]) -> Iterator[tuple[Path, Truth]]:
    """A server with ``pgaudit.log_statement_once = on``."""
    with pg_cluster(
        server_dir("pg-once"), {"pgaudit.log": CLASSES, "pgaudit.log_statement_once": "on"}
    ) as pg:
        yield Path(pg.log_dir), workload(pg)


# Each setting on a cluster of its own, beside pgaudit.log_rows and log_parameter (on in
# every cluster here: scripts/pg_cluster.py).
SETTINGS = {
    "log_statement_once": {"pgaudit.log": CLASSES, "pgaudit.log_statement_once": "on"},
    "object and session": {"pgaudit.log": CLASSES, "pgaudit.role": "auditor"},
    "object only": {"pgaudit.log": "none", "pgaudit.role": "auditor"},
    "log_relation off": {"pgaudit.log": CLASSES, "pgaudit.log_relation": "off"},
    "log all": {"pgaudit.log": "all", "pgaudit.log_statement_once": "on"},
    "log read only": {"pgaudit.log": "read"},
    "log_statement off": {"pgaudit.log": CLASSES, "pgaudit.log_statement": "off"},
    # log_min_messages must let NOTICE through, or no AUDIT line reaches the log.
    "log_level notice": {
        "pgaudit.log": CLASSES,
        "pgaudit.log_level": "notice",
        "pgaudit.log_client": "on",
        "log_min_messages": "notice",
    },
}


NO_CALL_LINE = ("object only", "log read only")


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def matrix(
    request: pytest.FixtureRequest, server_dir: Callable[[str], Path]
) -> Iterator[tuple[str, Path, Truth]]:
    name = str(request.param)
    with pg_cluster(server_dir("pg-settings"), SETTINGS[name]) as pg:
        yield name, Path(pg.log_dir), workload(pg)


def test_each_accounts_rows_read_are_what_its_clients_got(
    matrix: tuple[str, Path, Truth], output: str
) -> None:
    """Under each setting, every account's rows read are the rows its client received,
    each statement of a string of several or of a prepared statement with its own rows,
    and no line is rejected (parameters with commas, quotes and a newline included)."""
    name, log_dir, truth = matrix
    events, quarantine = parse(log_dir / OUTPUTS[output])
    assert dict(quarantine.counts) == {}
    events = events.filter(pl.col(S.ACCOUNT) != "postgres")
    activity = F.window_activity(events.lazy(), "1d").collect()
    rows = dict(activity.select(F.ACCOUNT, "rows_read").iter_rows())
    r = truth.rows
    assert rows == {
        "reader": r["join"] + r["awkward"],
        "exporter": r["copy query"],  # COPY t TO logs no rows: an export of unknown size
        "fn_reader": r["function"],
        # Without the CALL's own line (MISC, not logged here) a procedure's reads look
        # like a function's inner reads and its caller: only the last counts (Limits).
        "proc_runner": 7 if name in NO_CALL_LINE else r["procedure"],
        "multi": r["multi"],
        "prep": r["execute"] + r["server-side prepared"],
        "sneak": r["sneaky"],
    }
    reads = events.filter(pl.col(S.COMMAND) == "SELECT", pl.col(S.ROWS).is_not_null())
    by = {a: reads.filter(pl.col(S.ACCOUNT) == a)[S.ROWS].to_list() for a in ("multi", "prep")}
    assert by == {"multi": [5, 17, 3], "prep": [40, 9, 11, 12, 13, 14, 15, 16]}
    awkward = reads.filter(pl.col(S.QUERY).str.contains("total::text <> $2", literal=True))
    if name == "log_statement off":  # each statement's text and parameters: <not logged>
        assert awkward.is_empty()
    else:
        assert awkward[S.ROWS].to_list() == [r["awkward"]]
    exporter = activity.filter(pl.col(F.ACCOUNT) == "exporter").row(0, named=True)
    # Object audit logging alone never sees COPY t TO (pgAudit checks no table
    # permission for it): only the COPY (SELECT ...) is there.
    assert exporter["uncounted_exports"] == (0 if name == "object only" else 1)
    assert exporter["export_objects_list"] == ["shop.customers", "shop.orders"]


@pytest.fixture(scope="module")
def trained() -> model.TrainedModel:
    return model.load(ROOT / "models" / "default")


def follow(trained: model.TrainedModel, tmp: Path, log: Path, parts: list[bytes]) -> Service:
    """A real service following ``log``, written in ``parts`` with a poll after each
    (as a server writing while ``serve`` reads); it has read all of it on return."""
    conf = settings.Settings(
        state_dir=tmp / "state", follow=[str(log.parent / "*")], lateness="3650d"
    )
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    for part in parts:
        with log.open("ab") as fh:
            fh.write(part)
        service.step()
        time.sleep(2.1)  # the follower's idle_flush: a last record that may still grow
        service.step()
    return service


PREVIOUSLY = b"TABLE,shop.orders,<previously logged>"  # the join's second relation line
# Where a poll of ``serve`` ends: the first line of the statement, and what comes next.
CUTS = {
    # the function's own SELECT of shop.customers, then its caller's line
    "function, then its caller": (b"SELECT * FROM shop.customers,", b"shop.all_customers()"),
    # the join's first relation line, then its second: <previously logged>
    "join, then <previously logged>": (b"JOIN shop.orders o", b"<previously logged>"),
    # a procedure's last read, then its CALL's line (logged last)
    "procedure's reads, then its CALL": (
        b"TABLE,shop.orders,SELECT * FROM shop.orders WHERE id < 8",
        b"CALL shop.tally()",
    ),
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_serve_counts_what_the_clients_got_when_a_statements_lines_come_in_two_reads(
    trained: model.TrainedModel,
    once: tuple[Path, Truth],
    output: str,
    cut: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` reads the log as the server writes it, so a poll may end inside a
    statement's lines: between a function's own SELECT (500 rows) and its caller's line
    (500 rows), or, with ``log_statement_once``, between a join's first relation line and
    the next, which says ``<previously logged>``. Every account's rows and statements
    are what ``score`` counts and its clients got (the function's reader had 1,000)."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    log_dir, truth = once
    source = log_dir / OUTPUTS[output]
    body = source.read_bytes()
    first, then = CUTS[cut]
    at = body.index(b"\n", body.index(first)) + 1
    assert then in body[at : body.index(b"\n", at)]
    (tmp_path / "log").mkdir()
    service = follow(trained, tmp_path, tmp_path / "log" / source.name, [body[:at], body[at:]])
    try:
        live = service.engine.open_activity()
        events, quarantine = parse(source)
        assert quarantine.total == 0
        batch = F.window_activity(events.lazy(), "5m").collect()
        columns = ["rows_read", "statements", "exports"]

        def totals(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.group_by(F.ACCOUNT).agg(pl.col(columns).sum()).sort(F.ACCOUNT)

        assert totals(live).equals(totals(batch))
        rows = dict(totals(live).select(F.ACCOUNT, "rows_read").iter_rows())
        assert rows["fn_reader"] == truth.rows["function"] == 500
        assert rows["reader"] == truth.rows["join"] + truth.rows["awkward"]
        assert rows["proc_runner"] == truth.rows["procedure"] == 47
    finally:
        service.stop()


def test_a_copy_or_cursor_among_several_statements_is_an_export_of_its_own_table(
    once: tuple[Path, Truth], output: str
) -> None:
    """pgAudit logs each statement of ``psql -c "SELECT ...; COPY t TO STDOUT"`` with the
    whole string. The COPY is an export of shop.customers wherever it stands in the
    string, the SELECTs beside it are not exports, and the cursor's FETCH reads
    shop.customers (not a table ``public.c`` taken from ``FETCH 100 FROM c``)."""
    log_dir, truth = once
    events, quarantine = parse(log_dir / OUTPUTS[output])
    assert quarantine.total == 0
    sneak = events.filter(pl.col(S.ACCOUNT) == "sneak")
    exports = sneak.filter(pl.col(S.EXPORT))
    assert sorted(exports[S.COMMAND]) == ["COPY", "COPY", "DECLARE CURSOR", "FETCH"]
    assert exports[S.OBJECTS].to_list() == [["shop.customers"]] * 4
    selects = sneak.filter(pl.col(S.COMMAND) == "SELECT")
    assert selects[S.ROWS].to_list() == [1, 4]
    assert not selects[S.EXPORT].any()
    window = F.window_activity(sneak.lazy(), "1d").collect().row(0, named=True)
    assert window["rows_read"] == truth.rows["sneaky"]
    assert window["objects_list"] == ["shop.customers", "shop.orders"]
    assert window["export_objects_list"] == ["shop.customers"]


def test_score_reading_small_chunks_counts_what_it_counts_whole(
    once: tuple[Path, Truth], output: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``score`` reads a log in chunks (16 MiB): with ``log_statement_once``, a chunk
    may begin at a statement's ``<previously logged>`` line, or at a ``CALL``'s line,
    logged after its procedure's reads. Read in chunks of 700 bytes to 1.4 KB, every
    statement has the class, rows, objects and export it has read whole."""
    log_dir, _ = once
    path = log_dir / OUTPUTS[output]
    whole, _ = read_events([path], quarantine=Quarantine(None))
    columns = [S.SESSION, S.STATEMENT_ID, S.ACCOUNT, S.CLASS, S.ROWS, S.OBJECTS, S.EXPORT]
    whole = whole.select(columns).sort(columns[:2])
    record_start = getattr(formats.get("auto", path), "record_start", None)
    body = path.read_bytes()
    # Chunk sizes that end the first chunk just before a <previously logged> line or a
    # CALL's line (logged after its procedure's reads), and a few more.
    marks = [body.rindex(b"\n", 0, body.index(m)) + 1 for m in (PREVIOUSLY, b"MISC,CALL")]
    split = 0  # chunkings that begin a chunk at a <previously logged> line
    procedure = 0  # chunkings that begin a chunk at a CALL's line
    for size in [*(mark + 40 for mark in marks), *range(700, 1400, 200)]:
        starts = [c.text.split("\n")[0] for c in read_chunks(path, record_start, size)]
        split += any(PREVIOUSLY.decode() in head for head in starts)
        procedure += any("MISC,CALL" in head for head in starts)
        monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", size)
        quarantine = Quarantine(None)
        small = pl.concat(list(event_batches([path], Summary(), quarantine=quarantine)))
        assert quarantine.total == 0
        assert small.select(columns).sort(columns[:2]).equals(whole), size
    assert split > 0 and procedure > 0
