"""A real PostgreSQL 15 + pgAudit server's log cut in two at a line boundary inside one
statement's lines, as a rotation between them cuts it: ``score`` (and ``train``,
``evaluate``) read the two files as they read the log whole.

pgAudit logs a statement once per relation (same statement and sub-statement id), a
read through a function as its inner read then its caller, and a ``FETCH`` with no
relation (its cursor's ``DECLARE`` names them). The logging collector can start a new
file between any two of these lines; where exactly cannot be timed from a client, so
the server's own log is cut there, line for line what a rotation leaves: the lines
before in one file, the lines after in the next, in the same directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import schema as S
from detector.cli import main
from detector.ingest import Summary, event_batches, read_events
from tests.conftest import OUTPUTS
from tests.integration.conftest import MODEL, pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

JOIN = "SELECT * FROM desk JOIN till USING (id) JOIN safe USING (id) WHERE id <= 7 /* split-join */"
CALL = "SELECT * FROM safe_rows() /* split-call */"
FETCH = "FETCH 5 FROM split_cur"
# Where the log is cut: before the line that is the n-th of those holding the marker
# (pgAudit's AUDIT lines; the duration lines hold the text too, but come after them).
CUTS = {"join": ("split-join", 1), "function": ("split-call", -1), "cursor": (FETCH, 0)}


@pytest.fixture(scope="module")
def server_log(server_dir: Callable[[str], Path]) -> Path:
    """The log directory of a server whose clerk joins three tables, reads through a
    function and fetches from a cursor, each between ordinary reads, under the default
    ``log_line_prefix`` (no user on a statement's line: its session's connection line
    names it)."""
    settings = {
        "log_line_prefix": "%m [%p] ",
        "pgaudit.log": "read,write,ddl,role,misc,function",
        "log_min_duration_statement": "0",
    }
    with pg_cluster(server_dir("pg-split"), settings) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE clerk LOGIN")
            for table in ("desk", "till", "safe"):
                admin.execute(f"CREATE TABLE {table}(id int)")
                admin.execute(f"INSERT INTO {table} SELECT generate_series(1, 100)")
                admin.execute(f"GRANT SELECT ON {table} TO clerk")
            admin.execute(
                "CREATE FUNCTION safe_rows() RETURNS SETOF safe LANGUAGE plpgsql AS"
                " $$ BEGIN RETURN QUERY SELECT * FROM safe WHERE id <= 40; END $$"
            )
            with psycopg.connect(pg.dsn("clerk"), application_name="desk") as clerk:
                clerk.execute("SELECT * FROM desk WHERE id <= 3").fetchall()
                assert len(clerk.execute(JOIN).fetchall()) == 7
                clerk.execute("SELECT * FROM till WHERE id <= 4").fetchall()
                assert len(clerk.execute(CALL).fetchall()) == 40
                clerk.execute(
                    "DECLARE split_cur CURSOR FOR SELECT * FROM safe JOIN till USING (id)"
                )
                assert len(clerk.execute(FETCH).fetchall()) == 5
                clerk.execute("CLOSE split_cur")
                clerk.commit()
                clerk.execute("SELECT * FROM safe WHERE id <= 6").fetchall()
            admin.execute("SELECT 'end-of-split-workload'")
        wait_for_logs(pg.log_dir, "end-of-split-workload")
        return Path(pg.log_dir)


def cut(log: Path, marker: str, nth: int, into: Path) -> list[Path]:
    """``log`` written as two files of one directory ``into``, the second beginning with
    the ``nth`` line holding ``marker``: what a rotation there leaves."""
    lines = log.read_bytes().splitlines(keepends=True)
    holding = [i for i, line in enumerate(lines) if marker.encode() in line and b"AUDIT" in line]
    at = holding[nth]
    into.mkdir()
    first, second = into / f"postgresql-1{log.suffix}", into / f"postgresql-2{log.suffix}"
    first.write_bytes(b"".join(lines[:at]))
    second.write_bytes(b"".join(lines[at:]))
    return [first, second]


def statements(events: pl.DataFrame) -> list[tuple[object, ...]]:
    """The clerk's statements: command, objects, rows, in the order logged."""
    clerk = events.filter(pl.col(S.ACCOUNT) == "clerk").sort(S.TIME, S.STATEMENT_ID)
    return [
        (row[S.COMMAND], sorted(row[S.OBJECTS]), row[S.ROWS]) for row in clerk.iter_rows(named=True)
    ]


def per_account(events: pl.DataFrame) -> pl.DataFrame:
    """Statements, rows and objects per account."""
    return (
        events.group_by(S.ACCOUNT)
        .agg(
            pl.len().alias("statements"),
            pl.col(S.ROWS).sum(),
            pl.col(S.OBJECTS).explode().drop_nulls().unique().sort(),
        )
        .sort(S.ACCOUNT)
    )


@pytest.mark.parametrize("where", sorted(CUTS))
def test_a_statement_cut_by_a_rotation_counts_as_in_the_whole_log(
    server_log: Path, output: str, where: str, tmp_path: Path
) -> None:
    """The log cut inside the three-table join's relation lines, between the function's
    read and its caller's line, or between a cursor's DECLARE and its FETCH: the clerk's
    statements, rows and objects are those of the whole log, whether read whole
    (``evaluate``) or batch by batch (``score``, ``train``). Before, the join counted as
    two statements (``desk``, then ``till`` and ``safe``), the function's 40 rows twice,
    and the FETCH named no table."""
    log = server_log / OUTPUTS[output]
    files = cut(log, *CUTS[where], tmp_path / "rotated")
    whole, _ = read_events([log])
    expected = statements(whole)
    assert ("SELECT", ["public.desk", "public.safe", "public.till"], 7) in expected
    assert ("FETCH", ["public.safe", "public.till"], None) in expected
    assert sum(r for *_, r in expected if r is not None) == 3 + 7 + 4 + 40 + 6
    for reversed_order in (False, True):  # given in either order, read oldest first
        given = files[::-1] if reversed_order else files
        read_whole, _ = read_events(given)
        streamed = pl.concat(list(event_batches(given, Summary())))
        for got in (read_whole, streamed):
            assert statements(got) == expected
            assert per_account(got).equals(per_account(whole))


def test_score_of_the_cut_log_is_score_of_the_whole_log(
    server_log: Path, output: str, tmp_path: Path
) -> None:
    """``trovewatch score`` of the two files (cut inside the join, the rest of the
    workload after it) writes what it writes for the log whole, byte for byte."""
    log = server_log / OUTPUTS[output]
    files = cut(log, *CUTS["join"], tmp_path / "rotated")
    written = []
    for name, given in (("whole", [log]), ("cut", files)):
        out = tmp_path / f"{name}.ndjson"
        args = ["score", "--model-dir", str(MODEL), "--quarantine", str(tmp_path / "q")]
        assert main([*args, "--out", str(out), *map(str, given)]) == 0
        written.append(out.read_bytes())
    assert written[0] and written[0] == written[1]
