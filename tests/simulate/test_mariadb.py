"""``simulate --format mariadb`` writes the population as a MariaDB 10.11 server writes it
(server_audit log + slow query log), and trovewatch reads from it what it reads from
the jsonlog of the same seed, except what MariaDB cannot carry or does differently:

* ``COPY ... TO STDOUT`` becomes ``SELECT ... INTO OUTFILE``: one statement where pgAudit
  logs a ``COPY (SELECT ...)`` as two (its SELECT and its COPY), with its rows (pgAudit
  logs 0 for ``COPY t TO``);
* ``pg_dump`` becomes ``mariadb-dump --single-transaction``: its own statements (13 or so
  per table, 8 of them SET/SHOW/information_schema queries), with the rows it reads
  (pgAudit logs 0 for pg_dump's COPYs);
* a reporting service's ``DECLARE CURSOR`` becomes the plain ``SELECT * FROM
  reporting.customer_ltv`` it streams: its rows are counted (pgAudit logs 0), and it is
  not an export;
* no application name (the audit log has none), and databases are the schemas.

Everything else, per account and day: statements, rows read and the objects of reads
and writes, equal; so are classes, failures and refused logins per account. Shapes are checked against real 10.11 output
(``tests/fixtures/mariadb-simulate``, made by ``scripts/make_mariadb_simulate_fixtures.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from detector import schema as S
from detector.formats.mariadb_audit import LINE_RE
from detector.pipeline import read_events
from detector.rejects import Quarantine
from detector.simulate import simulate
from detector.simulate import tables as T
from detector.simulate.dialect import dump_table, pieces
from tests.conftest import FIXTURES
from tests.simulate.conftest import START, read_labels

REAL = FIXTURES / "mariadb-simulate"
SPLIT = "2026-10-19"  # the 20 x 16 population's incidents are on its last two days
CURSOR_READ = "SELECT * FROM reporting.customer_ltv"


@dataclass
class Rendering:
    out: Path
    files: list[Path]
    events: pl.DataFrame
    quarantine: Quarantine


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    out = tmp_path_factory.mktemp("mariadb")
    result = simulate(out, 20, 16, 11, START, fmt="mariadb")
    quarantine = Quarantine(None)
    events, _ = read_events(result.files, quarantine=quarantine)
    return Rendering(out, result.files, events, quarantine)


@pytest.fixture(scope="module")
def jsonlog_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate(tmp_path_factory.mktemp("json"), 20, 16, 11, START).files


@pytest.fixture(scope="module")
def jsonlog(jsonlog_files: list[Path]) -> pl.DataFrame:
    events, _ = read_events(jsonlog_files)
    return events


def _day(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(S.TIME).dt.date().alias("day"))


def _per_account_day(frame: pl.DataFrame) -> pl.DataFrame:
    read = pl.col(S.CLASS) == "READ"
    return (
        _day(frame)
        .group_by(S.ACCOUNT, "day")
        .agg(
            pl.len().alias("statements"),
            pl.col(S.ROWS).filter(read).sum().alias("rows_read"),
            pl.col(S.OBJECTS)
            .filter(pl.col(S.CLASS).is_in(["READ", "WRITE"]))
            .explode()
            .drop_nulls()
            .unique()
            .sort()
            .alias("objects"),
        )
        .sort(S.ACCOUNT, "day")
    )


def _pg_exceptions(events: pl.DataFrame) -> pl.Expr:
    """pg_dump's sessions, COPY ... TO (both events of a COPY (SELECT ...)), cursors."""
    dump = pl.col(S.SESSION).is_in(
        events.filter(pl.col(S.APPLICATION) == "pg_dump")[S.SESSION].unique().implode()
    )
    text = pl.col(S.QUERY)
    return dump | text.str.starts_with("COPY") | text.str.starts_with("DECLARE")


def _maria_exceptions(events: pl.DataFrame) -> pl.Expr:
    """mariadb-dump's sessions, INTO OUTFILE and the streamed read a cursor became."""
    dump = pl.col(S.SESSION).is_in(
        events.filter(pl.col(S.QUERY).str.contains("SQL_NO_CACHE", literal=True))[S.SESSION]
        .unique()
        .implode()
    )
    text = pl.col(S.QUERY)
    return dump | text.str.contains(" INTO OUTFILE ", literal=True) | (text == CURSOR_READ)


def test_the_rendering_is_read_whole_with_no_rejected_line(mariadb: Rendering) -> None:
    assert mariadb.quarantine.total == 0, dict(mariadb.quarantine.counts)
    names = sorted(p.name for p in mariadb.files)
    assert names[0] == "server_audit-2026-10-05.log" and names[-1] == "slow-2026-10-20.log"
    assert len(names) == 32
    events = mariadb.events
    assert events[S.DB_SYSTEM].unique().to_list() == ["mariadb"]
    audited = events.filter(pl.col(S.SOURCE_FORMAT) == "mariadb-audit")
    # every slow-log record found its audited statement (none is read twice, once from
    # each log), and every audited statement got its volume from it
    assert audited.height == events.height
    statements = audited.filter(pl.col(S.CLASS) != "CONNECT")
    assert statements[S.ROWS].null_count() == 0
    assert statements[S.BYTES].null_count() == 0
    assert events[S.APPLICATION].null_count() == events.height  # the audit log has none


def test_totals_are_what_trovewatch_reads_from_both_logs_per_account(
    mariadb: Rendering,
) -> None:
    """``totals.csv`` of the MariaDB rendering counts its statements (each of
    mariadb-dump's, INTO OUTFILE once with its rows), not pgAudit's."""
    cls = pl.col(S.CLASS)
    read = (
        mariadb.events.group_by(pl.col(S.ACCOUNT).alias("account"))
        .agg(
            pl.len().alias("events"),
            pl.col(S.ROWS).filter(cls == "READ").sum().alias("rows_read"),
            pl.col(S.ROWS).filter(cls == "WRITE").sum().alias("rows_written"),
            pl.col(S.EXPORT).sum().alias("exports"),
            (~pl.col(S.SUCCESS)).sum().alias("failed"),
        )
        .with_columns(pl.exclude("account").cast(pl.Int64))
    )
    totals = pl.read_csv(mariadb.out / "totals.csv")
    assert totals.height == 20 and totals["exports"].sum() > 500
    assert totals.sort("account").equals(read.select(totals.columns).sort("account"))


def test_labels_describe_the_incidents_as_the_mariadb_logs_show_them(
    mariadb: Rendering, jsonlog_files: list[Path]
) -> None:
    maria = read_labels(mariadb.out / "labels.csv")
    pg = read_labels(jsonlog_files[0].parent / "labels.csv")
    # the same incidents, by the same accounts, at the same times
    assert {"wrong_account_dump", "copy_export", "burst_pull", "off_hours_new_client"} <= set(
        maria["kind"]
    )
    assert maria.drop("description").equals(pg.drop("description"))
    said = dict(zip(maria["kind"], maria["description"], strict=True))
    assert said["wrong_account_dump"].startswith("mariadb-dump --single-transaction")
    assert "SELECT /*!40001 SQL_NO_CACHE */" in said["wrong_account_dump"]
    assert said["copy_export"].count("INTO OUTFILE") == 2
    # no PostgreSQL tool or statement, and no client program: neither log names one
    for term in ("pg_dump", "COPY", "STDOUT", "stdout", "psql", "pgcli", "DBeaver"):
        assert not maria["description"].str.contains(term, literal=True).any(), term
    assert re.search(r" from [\d.]+$", said["burst_pull"])
    # the jsonlog's labels keep pgAudit's terms
    assert dict(zip(pg["kind"], pg["description"], strict=True))["wrong_account_dump"].startswith(
        "pg_dump of the whole database"
    )


def test_per_account_and_day_the_same_statements_rows_and_objects_as_the_jsonlog(
    mariadb: Rendering, jsonlog: pl.DataFrame
) -> None:
    maria = mariadb.events
    same_pg = jsonlog.filter(~_pg_exceptions(jsonlog))
    same_maria = maria.filter(~_maria_exceptions(maria))
    audited = same_maria.filter(pl.col(S.SOURCE_FORMAT) == "mariadb-audit")
    assert same_pg.height > 200_000 and audited.height == same_pg.height
    pg, my = _per_account_day(same_pg), _per_account_day(same_maria)
    assert pg.height > 250
    assert my.equals(pg)
    # the classes, failures and refused logins too
    by_class = [S.ACCOUNT, S.CLASS, S.SUCCESS]
    assert (
        audited.group_by(by_class)
        .len()
        .sort(by_class)
        .equals(same_pg.group_by(by_class).len().sort(by_class))
    )
    assert audited.filter(pl.col(S.CLASS) == "ERROR").height > 50
    assert audited.filter(pl.col(S.CLASS) == "CONNECT").height > 0


def test_what_mariadb_renders_otherwise_keeps_the_incidents_meaning(
    mariadb: Rendering, jsonlog: pl.DataFrame
) -> None:
    maria, pg = _day(mariadb.events), _day(jsonlog)
    # every COPY ... TO is one SELECT ... INTO OUTFILE, an export of the table's rows
    outfile = maria.filter(pl.col(S.QUERY).str.contains(" INTO OUTFILE ", literal=True))
    copies = pg.filter(pl.col(S.COMMAND) == "COPY", pl.col(S.APPLICATION) != "pg_dump")
    key = [S.ACCOUNT, "day"]
    assert outfile.group_by(key).len().sort(key).equals(copies.group_by(key).len().sort(key))
    assert outfile[S.EXPORT].all() and (outfile[S.ROWS] > 0).all()
    burst = outfile.filter(pl.col(S.OBJECTS).list.first() == "sales.addresses")
    assert burst[S.ROWS].to_list() == [T.BY_NAME["sales.addresses"].rows]
    # every pg_dump run is one mariadb-dump session that reads every table whole
    dumps = maria.filter(pl.col(S.QUERY).str.contains("SQL_NO_CACHE", literal=True))
    pg_dumps = pg.filter(pl.col(S.APPLICATION) == "pg_dump")
    runs = dumps.group_by(S.SESSION, S.ACCOUNT, "day").agg(
        pl.len(), pl.col(S.ROWS).sum(), pl.col(S.OBJECTS).explode().unique().sort()
    )
    pg_runs = pg_dumps.select(S.SESSION, S.ACCOUNT, "day").unique()
    assert sorted(runs.select(S.ACCOUNT, "day").rows()) == sorted(
        pg_runs.select(S.ACCOUNT, "day").rows()
    )
    assert "web_hr" in runs[S.ACCOUNT].to_list()  # the wrong-account dump
    everything = sorted(t.name for t in T.TABLES)
    assert all(objects == everything for objects in runs[S.OBJECTS].to_list())
    assert set(runs["len"].to_list()) == {len(T.TABLES)}
    assert set(runs[S.ROWS].to_list()) == {sum(t.rows for t in T.TABLES)}
    assert dumps[S.EXPORT].all()
    # every cursor is the plain read it streams, with its rows
    cursors = pg.filter(pl.col(S.QUERY).str.starts_with("DECLARE"))
    streamed = maria.filter(
        pl.col(S.QUERY) == CURSOR_READ, pl.col(S.SOURCE_FORMAT) == "mariadb-audit"
    )
    assert streamed.group_by(key).len().sort(key).equals(cursors.group_by(key).len().sort(key))
    assert (streamed[S.ROWS] > 0).all() and not streamed[S.EXPORT].any()


def _shape(line: str) -> str:
    """A slow-log header line with its names and numbers blanked out."""
    line = re.sub(r"@Host: \S+ @  \[[^\]]*\]", "@Host: U @  [H]", line)
    line = re.sub(r"Schema: \S*", "Schema: S", line)
    return re.sub(r"\d+(?:\.\d+)?", "N", line)


def test_slow_log_headers_have_the_real_servers_shapes(mariadb: Rendering) -> None:
    real = (REAL / "slow.log").read_text().splitlines()
    reference = (FIXTURES / "reference" / "mariadb10.11" / "slow.log").read_text().splitlines()
    shapes = {_shape(x) for x in real + reference if x.startswith("# ")}
    slow = next(p for p in mariadb.files if p.name.startswith("slow-"))
    rendered = slow.read_text().splitlines()
    assert rendered[:3] == [
        *real[:1],
        "Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock",
        real[2],
    ]
    mine = {_shape(x) for x in rendered if x.startswith("# ")}
    assert len(mine) >= 6 and mine <= shapes, mine - shapes
    assert any(x.startswith("use `") for x in rendered) and any(
        x.startswith("SET timestamp=") for x in rendered
    )


def _real_audit() -> list[list[str]]:
    """The real audit log's records as their ten fields."""
    lines = (REAL / "server_audit.log").read_text().splitlines()
    return [list(m.groups()) for x in lines if (m := re.match(LINE_RE, x))]


def _records(real: list[list[str]], text: str) -> tuple[list[str], str]:
    """The TABLE records (``OP,db,table``) and retcode of the real statement ``text``."""
    quoted = "'" + text.replace("'", "\\'") + "'"
    query = next(r for r in real if r[6] == "QUERY" and r[8] == quoted)
    tables = [",".join(r[6:9]) for r in real if r[4:6] == query[4:6] and r[6] != "QUERY"]
    return [t for t in tables if ",mysql,table_stats" not in t and "_stats," not in t], query[9]


@pytest.mark.parametrize(
    ("key", "relations", "text"),
    [
        ("w_get", ("sales.customers",), None),
        ("x_grant", ("sales.orders",), "GRANT SELECT ON sales.orders TO reporting_ro"),
        ("x_index", ("sales.customers",), None),
        ("i_migrate_ddl", ("sales.orders",), "CREATE TABLE sales.orders_v2 LIKE sales.orders"),
        ("i_denied", ("hr.salaries",), "SELECT * FROM hr.salaries LIMIT 5"),
        ("a_typo", ("sales.nonexist",), "SELECT * FROM sales.nonexist LIMIT 100"),
    ],
)
def test_audit_records_are_those_the_real_server_writes(
    key: str, relations: tuple[str, ...], text: str | None
) -> None:
    (piece,) = pieces(key, relations)
    if text is None:  # statements whose text carries the simulated table's own columns
        text = {
            "w_get": "SELECT id, email, name, created_at FROM sales.customers WHERE id = 17",
            "x_index": "CREATE INDEX IF NOT EXISTS customers_created_idx ON sales.customers (created_at)",
        }[key]
    else:
        assert piece.head + piece.tail == text
    tables, retcode = _records(_real_audit(), text)
    assert (piece.tables.split("\n") if piece.tables else []) == tables
    assert str(piece.error) == retcode


def test_mariadb_dump_sends_what_the_real_client_sends_for_a_table() -> None:
    real = [r[8][1:-1].replace("\\'", "'") for r in _real_audit() if r[6] == "QUERY"]
    start = real.index(
        "SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = "
        "DATABASE() AND table_name = 'orders'"
    )
    # the real client's statements for sales.orders, up to the next table's
    sent = real[start : real.index("ROLLBACK TO SAVEPOINT sp", start) + 1]
    mine = [s for s, _ in dump_table("sales.orders")]
    columns = ", ".join(f"`{c}`" for c in T.BY_NAME["sales.orders"].columns)
    assert mine == [s.replace("`id`, `customer_id`, `status`, `created_at`", columns) for s in sent]


def _trovewatch(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_train_score_and_evaluate_run_on_it(mariadb: Rendering, tmp_path: Path) -> None:
    logs = [str(p) for p in mariadb.files]
    model, scores = tmp_path / "model", tmp_path / "scores.ndjson"
    quarantine = ["--quarantine", str(tmp_path / "quarantine.ndjson")]
    _trovewatch("train", "--model-dir", str(model), "--until", SPLIT, *quarantine, *logs)
    said = _trovewatch("score", "--model-dir", str(model), "--since", SPLIT, "--out", str(scores),
                       *quarantine, *logs)  # fmt: skip
    assert "0 lines rejected" in said and "mariadb-audit" in said
    windows = pl.read_ndjson(scores).with_columns(
        pl.col("window_start").str.to_datetime(time_zone="UTC"),
        pl.col("window_end").str.to_datetime(time_zone="UTC"),
    )
    labels = read_labels(mariadb.out / "labels.csv")
    assert labels.height == 8
    # bulk pulls, dumps and exports are flagged where they happen, in MariaDB terms too
    for label in labels.filter(
        pl.col("kind").is_in(["burst_pull", "wrong_account_dump", "copy_export"])
    ).iter_rows(named=True):
        hits = windows.filter(
            pl.col("flagged"),
            pl.col("account") == label["account"],
            pl.col("window_end") > label["start"],
            pl.col("window_start") <= label["end"],
        )
        assert hits.height >= 1, label
    report = _trovewatch("evaluate", "--labels", str(mariadb.out / "labels.csv"), "--model-dir",
                         str(model), "--train-until", SPLIT, *logs)  # fmt: skip
    header = next(x for x in report.splitlines() if x.startswith("method "))
    row = next(x for x in report.splitlines() if x.startswith("trovewatch "))
    recall = dict(zip(header.split()[1:9], row.split()[1:9], strict=True))
    assert [recall[k] for k in ("burst_pull", "copy_export", "wrong_account_dump")] == ["1/1"] * 3
