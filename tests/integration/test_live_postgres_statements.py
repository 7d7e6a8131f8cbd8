"""A client statement counts once, on a real PostgreSQL 15 + pgAudit, however many lines
pgAudit logs for it.

pgAudit numbers the lines of one client statement ``<statement>,<sub-statement>``: an SQL
``EXECUTE`` logs its prepared statement's read (``,1``) then itself (``,2``, MISC); a
``COPY (SELECT ...) TO`` its SELECT then the COPY; a plpgsql function's read before its
caller; ``REFRESH MATERIALIZED VIEW`` its query before itself; and the table owner's
``INSERT ... SELECT`` of 2,000 rows into a table with a foreign key PostgreSQL's own
check of each row (``,1`` to ``,2000``, classed INTERNAL) before the INSERT (``,2001``).
``statements``, which feeds the model and reasons like "50 statements in 5 minutes",
counted each line: these six statements were 2,010.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import carried, model
from detector import features as F
from detector import schema as S
from detector.cli import main
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import MODEL, follow, pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

# What the loader's client sends, one statement each (autocommit: no BEGIN/COMMIT).
PREPARE = "PREPARE by_region(text) AS SELECT * FROM shop.customers WHERE region = $1"
EXECUTE = "EXECUTE by_region('r1')"
COPY = "COPY (SELECT id FROM shop.customers WHERE id <= 300) TO STDOUT"
INSERT = "INSERT INTO shop.orders SELECT g, 1 + g % 500, g % 97 FROM generate_series(1, 2000) g"
FUNCTION = "SELECT * FROM shop.regions('r2')"
REFRESH = "REFRESH MATERIALIZED VIEW shop.per_region"
SENT = (PREPARE, EXECUTE, COPY, INSERT, FUNCTION, REFRESH)


@pytest.fixture(scope="module")
def log_dir(server_dir: Callable[[str], Path]) -> Path:
    """The log directory of a server (the README's ``pgaudit.log``) on which the owner of
    two tables, one referencing the other, sends :data:`SENT`."""
    with pg_cluster(server_dir("pg-stmts"), {"pgaudit.log": "'read,write,ddl,role,misc'"}) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE loader LOGIN")
            admin.execute("CREATE SCHEMA shop AUTHORIZATION loader")
            admin.execute("SET ROLE loader")  # the loader owns what follows
            admin.execute("CREATE TABLE shop.customers(id int primary key, region text)")
            admin.execute(
                "INSERT INTO shop.customers SELECT g, 'r' || g % 5 FROM generate_series(1, 500) g"
            )
            admin.execute(
                "CREATE TABLE shop.orders(id int primary key,"
                " customer_id int REFERENCES shop.customers, total numeric)"
            )
            admin.execute(
                "CREATE MATERIALIZED VIEW shop.per_region AS"
                " SELECT region, count(*) FROM shop.customers GROUP BY region"
            )
            admin.execute(
                "CREATE FUNCTION shop.regions(r text) RETURNS SETOF shop.customers"
                " LANGUAGE plpgsql AS $$BEGIN"
                " RETURN QUERY SELECT * FROM shop.customers WHERE region = r; END$$"
            )
        with psycopg.connect(pg.dsn("loader"), autocommit=True, application_name="etl") as conn:
            conn.execute(PREPARE)
            assert len(conn.execute(EXECUTE).fetchall()) == 100
            with conn.cursor().copy(COPY) as copy:
                assert sum(1 for _ in copy.rows()) == 300
            conn.execute(INSERT)  # type: ignore[arg-type]
            assert len(conn.execute(FUNCTION).fetchall()) == 100
            conn.execute(REFRESH)
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT 'end-of-statements-workload'")
        wait_for_logs(pg.log_dir, "end-of-statements-workload")
        return Path(pg.log_dir)


def audit_lines(log_dir: Path) -> list[tuple[str, int, int]]:
    """The loader's AUDIT lines in the jsonlog, read without trovewatch: (session,
    statement id, sub-statement id) each."""
    lines = []
    for text in (log_dir / "postgresql.json").read_text().splitlines():
        record = json.loads(text)
        found = re.match(r"AUDIT: SESSION,(\d+),(\d+),", record["message"])
        if record.get("user") == "loader" and found:
            lines.append((record["session_id"], int(found[1]), int(found[2])))
    return lines


def test_the_server_logs_the_six_statements_in_2010_sub_statements(log_dir: Path) -> None:
    """The premise, in the server's own log: six statements, one session, numbered 1 to
    6; the INSERT's 2,000 foreign-key checks and each other statement's second line
    are sub-statements of them."""
    lines = audit_lines(log_dir)
    subs = {(s, n, sub) for s, n, sub in lines}  # the REFRESH logs its ,1 once per relation
    assert {(s, n) for s, n, _ in subs} == {(lines[0][0], n) for n in range(1, 7)}
    per_statement = pl.DataFrame(list(subs), schema=["s", "n", "sub"], orient="row")
    counts = per_statement.group_by("n").agg(pl.len(), pl.col("sub").max()).sort("n")
    assert counts.rows() == [(1, 1, 1), (2, 2, 2), (3, 2, 2), (4, 2001, 2001), (5, 2, 2), (6, 2, 2)]
    assert len(subs) == 2010


def statements_scored(out: Path, account: str) -> tuple[int, int]:
    """The account's statements and exports in ``score``'s output, summed over its
    windows (each window's own, the 5-minute horizon)."""
    windows = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [w["features"] for w in windows if w["account"] == account]
    assert mine
    return sum(f["statements_5m"] for f in mine), sum(f["exports_5m"] for f in mine)


def test_score_counts_each_client_statement_once(
    log_dir: Path, output: str, tmp_path: Path
) -> None:
    """``trovewatch score`` shows the loader's six statements (and its one export), not
    2,010: not the INSERT's 2,000 foreign-key checks, nor the second line of the
    EXECUTE, the COPY, the function's caller or the REFRESH."""
    out = tmp_path / "scored.ndjson"
    args = ["score", "--model-dir", str(MODEL), "--quarantine", str(tmp_path / "q")]
    assert main([*args, "--out", str(out), str(log_dir / OUTPUTS[output])]) == 0
    assert statements_scored(out, "loader") == (len(SENT), 1)


# Where a read of ``serve`` ends: after the first of these lines of the loader's, the
# rest of its statement in the next read.
CUTS = {
    "EXECUTE: its read, then itself": "SESSION,2,1,",
    "COPY (SELECT ...) TO: the SELECT, then the COPY": "SESSION,3,1,",
    "INSERT: 1,000 of its foreign-key checks, then the rest and the INSERT": "SESSION,4,1000,",
    "function: its read, then its caller": "SESSION,5,1,",
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_serve_counts_a_statement_once_when_its_lines_come_in_two_reads(
    log_dir: Path, output: str, cut: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` reading the log as the server writes it, a read ending inside one of the
    loader's statements: the loader's statements are the six it sent, as ``score``
    counts them."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = log_dir / OUTPUTS[output]
    body = source.read_bytes()
    marker = f"AUDIT: {CUTS[cut]}".encode()
    # the loader's session begins with its PREPARE (the first one logged)
    at = body.index(b"\n", body.index(marker, body.index(b"READ,PREPARE"))) + 1
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / source.name
    service = follow(model.load(MODEL), tmp_path, [(log, body[:at]), (log, body[at:])])
    try:
        live = service.engine.open_activity().filter(pl.col(F.ACCOUNT) == "loader")
        assert live["statements"].sum() == len(SENT)
        assert live["exports"].sum() == 1
    finally:
        service.stop()


def test_the_events_keep_every_line_only_the_count_changes(log_dir: Path, output: str) -> None:
    """The events still hold each sub-statement (rows, objects, the INTERNAL checks):
    only ``statements`` counts each client statement once."""
    events, quarantine = parse(log_dir / OUTPUTS[output])
    assert quarantine.total == 0
    loader = events.filter(pl.col(S.ACCOUNT) == "loader")
    assert loader.filter(pl.col(S.CLASS) == "INTERNAL").height == 2000
    window = F.window_activity(loader.lazy(), "1d").collect().row(0, named=True)
    assert window["statements"] == len(SENT)
    assert window["rows_read"] == 100 + 300 + 100  # the EXECUTE, the COPY's SELECT, the function
