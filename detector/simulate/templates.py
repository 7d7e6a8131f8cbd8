"""Templates of the statements the simulated clients send: their text, how pgAudit
logs them (class, command, one line per relation or none), how many rows they move and
what number they carry. ``catalog`` turns them into log line pieces."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final


class Shape(IntEnum):
    S_READ = 0  # simple protocol: AUDIT per relation, then duration
    X_READ = 1  # extended protocol: execute duration, then AUDIT per relation
    S_WRITE = 2
    X_WRITE = 3
    COPY_TABLE = 4  # COPY t TO: one bare AUDIT COPY line, 0 rows
    COPY_QUERY = 5  # COPY (SELECT ...) TO: SELECT per relation (rows), then COPY (0)
    BARE = 6  # one AUDIT line naming no relation: SELECT 1, DECLARE CURSOR, DDL, GRANT
    ERROR = 7  # a failed statement: no AUDIT line, one ERROR record
    LOGIN_FAIL = 8  # a refused login: the session's FATAL record


class Rows(IntEnum):
    """How many rows a statement reads or writes (see ``activity.draw_rows``)."""

    ZERO = 0
    ONE = 1
    FEW = 2
    PAGE = 3
    AGG = 4
    SAMPLE = 5
    BATCH = 6
    LARGE = 7
    FULL = 8  # the whole table
    NUM = 9  # the statement's number (its LIMIT)


class Num(IntEnum):
    """The number a statement carries, in its text or as its parameter ``$1``."""

    NONE = 0
    ID = 1  # a row id of the table
    DAYS = 2
    HOURS = 3
    LIMIT = 4
    SET = 5  # chosen by whoever adds the statement (incidents)


@dataclass(frozen=True)
class Template:
    shape: Shape
    cls: str  # pgAudit class
    command: str  # pgAudit command
    text: str  # {t} {t2} {fk} {cols} {label} {short} {n}
    rows: Rows = Rows.ONE
    num: Num = Num.NONE
    export: bool = False  # the parser's is_export (COPY ... TO, cursors, dump tools)
    catalog: bool = False  # reads the server's catalogs alone: CATALOG, not an export
    ps: str = ""  # command tag, when it is not the command
    params: int = 0  # $n parameters (extended protocol)
    in_txn: bool = False  # runs inside the session's open transaction (pg_dump)
    error: tuple[str, str] = ("", "")  # SQLSTATE and message, for ERROR


PREPARE_ACLS: Final = (
    "PREPARE getColumnACLs(pg_catalog.oid) AS\nSELECT at.attname, at.attacl, '{}' AS acldefault, "
    "pip.privtype, pip.initprivs FROM pg_catalog.pg_attribute at LEFT JOIN pg_catalog.pg_init_privs "
    "pip ON (at.attrelid = pip.objoid AND pip.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass "
    "AND at.attnum = pip.objsubid) WHERE at.attrelid = $1 AND NOT at.attisdropped AND (at.attacl IS "
    "NOT NULL OR pip.initprivs IS NOT NULL) ORDER BY at.attnum"
)


def _read(text: str, rows: Rows = Rows.ONE, num: Num = Num.NONE, **more: Any) -> Template:
    """A SELECT sent with the simple protocol (numbers in the text)."""
    return Template(Shape.S_READ, "READ", "SELECT", text, rows, num, **more)


def _lookup(text: str, rows: Rows = Rows.ONE) -> Template:
    """A SELECT sent with the extended protocol, its number as parameter ``$1``."""
    return Template(Shape.X_READ, "READ", "SELECT", text, rows, Num.ID, params=1)


def _write(command: str, text: str, rows: Rows = Rows.ONE, num: Num = Num.ID) -> Template:
    """A write: extended protocol if it has parameters, else simple."""
    params = text.count("$") + (9 if "{params}" in text else 0)
    shape = Shape.X_WRITE if params else Shape.S_WRITE
    return Template(shape, "WRITE", command, text, rows, num, params=params)


def _bare(cls: str, command: str, text: str, rows: Rows = Rows.ONE, **more: Any) -> Template:
    """A statement whose AUDIT line names no relation."""
    return Template(Shape.BARE, cls, command, text, rows, **more)


_SINCE = "WHERE created_at >= current_date - {n}"
TEMPLATES: Final[dict[str, Template]] = {
    # web applications: extended protocol (JDBC, node-postgres), one row at a time
    "w_get": _lookup("SELECT {cols} FROM {t} WHERE id = $1"),
    "w_list": _lookup(
        "SELECT {cols} FROM {t} WHERE {fk} = $1 ORDER BY id DESC LIMIT 50", Rows.PAGE
    ),
    "w_join": _lookup(
        "SELECT a.id, a.{label}, b.* FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id = $1",
        Rows.FEW,
    ),
    "w_search": _lookup(
        "SELECT id, {label} FROM {t} WHERE {label} ILIKE $1 ORDER BY id LIMIT 20", Rows.PAGE
    ),
    "w_update": _write("UPDATE", "UPDATE {t} SET {label} = $1 WHERE id = $2"),
    "w_insert": _write("INSERT", "INSERT INTO {t} ({cols}) VALUES ({params})"),
    "w_ping": _bare("READ", "SELECT", "SELECT 1"),
    # batch jobs: simple protocol, numbers in the text
    "b_extract": _read(
        "SELECT {cols} FROM {t} WHERE created_at >= now() - interval '{n} hours'",
        Rows.BATCH,
        Num.HOURS,
    ),
    "b_chunk": _read(
        "SELECT {cols} FROM {t} WHERE id > {n} ORDER BY id LIMIT 5000", Rows.BATCH, Num.ID
    ),
    "b_agg": _read(
        f"SELECT {{label}}, count(*), max(id) FROM {{t}} {_SINCE} GROUP BY {{label}}",
        Rows.AGG,
        Num.DAYS,
    ),
    "b_mark": _write(
        "UPDATE",
        "UPDATE {t} SET {label} = 'processed' WHERE id <= {n} AND {label} = 'new'",
        Rows.BATCH,
    ),
    "b_purge": _write(
        "DELETE",
        "DELETE FROM {t} WHERE created_at < now() - interval '{n} days'",
        Rows.BATCH,
        Num.DAYS,
    ),
    # nightly backups: pg_dump's own statements (log_catalog = off hides its catalog queries)
    # (its SELECTs of functions alone read the server's state: CATALOG, no rows read)
    "d_search_path": _bare(
        "READ",
        "SELECT",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        export=True,
        catalog=True,
    ),
    "d_recovery": _bare(
        "READ", "SELECT", "SELECT pg_catalog.pg_is_in_recovery()", export=True, catalog=True
    ),
    "d_schemas": _bare(
        "READ",
        "SELECT",
        "SELECT pg_catalog.current_schemas(false)",
        export=True,
        in_txn=True,
        catalog=True,
    ),
    "d_prepare": _bare(
        "READ", "PREPARE", PREPARE_ACLS, Rows.ZERO, export=True, in_txn=True, catalog=True
    ),
    "d_copy": Template(
        Shape.COPY_TABLE,
        "READ",
        "COPY",
        "COPY {t} ({cols}) TO stdout;",
        Rows.FULL,
        export=True,
        in_txn=True,
    ),
    # analysts: DBeaver, DataGrip, pgAdmin, psql (simple protocol)
    "a_sample": _read("SELECT * FROM {t} LIMIT {n}", Rows.NUM, Num.LIMIT),
    "a_month": _read(
        "SELECT date_trunc('month', created_at) AS month, count(*) FROM {t} GROUP BY 1 ORDER BY 1",
        Rows.AGG,
    ),
    "a_top": _read(
        f"SELECT {{label}}, count(*) FROM {{t}} {_SINCE} GROUP BY {{label}} ORDER BY 2 DESC",
        Rows.AGG,
        Num.DAYS,
    ),
    "a_join": _read(
        "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id < {n}",
        Rows.SAMPLE,
        Num.ID,
    ),
    "a_count": _read("SELECT count(*) FROM {t};"),
    "a_copy": Template(
        Shape.COPY_QUERY,
        "READ",
        "SELECT",
        f"COPY (SELECT * FROM {{t}} {_SINCE}) TO STDOUT WITH (FORMAT csv, HEADER)",
        Rows.SAMPLE,
        Num.DAYS,
        export=True,
    ),
    "a_typo": Template(
        Shape.ERROR,
        "ERROR",
        "SELECT",
        "SELECT * FROM {t} LIMIT 100",
        error=("42P01", 'relation "{t}" does not exist'),
    ),
    # DBAs (psql)
    "x_count": _read("SELECT count(*) FROM {t};"),
    "x_peek": _read("SELECT * FROM {t} ORDER BY 1 DESC LIMIT {n};", Rows.NUM, Num.LIMIT),
    "x_jobs": _read(
        "SELECT * FROM ops.jobs WHERE state = 'failed' AND finished_at > now() - interval '{n} hours';",
        Rows.FEW,
        Num.HOURS,
    ),
    "x_index": _bare(
        "DDL",
        "CREATE INDEX",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {short}_created_idx ON {t} (created_at);",
        Rows.ZERO,
    ),
    "x_grant": _bare("ROLE", "GRANT", "GRANT SELECT ON {t} TO reporting_ro;", Rows.ZERO),
    # case officers: CaseTracker (extended protocol), one case at a time
    "c_case": _lookup(
        "SELECT id, reference, status, officer_id, created_at FROM {t} WHERE id = $1"
    ),
    "c_related": _lookup(
        "SELECT {cols} FROM {t} WHERE case_id = $1 ORDER BY created_at DESC LIMIT 50", Rows.FEW
    ),
    "c_worklist": _lookup(
        "SELECT a.case_id, c.reference, c.status FROM {t} a JOIN {t2} c ON c.id = a.case_id "
        "WHERE a.officer_id = $1 AND a.active",
        Rows.AGG,
    ),
    "c_note": _write("INSERT", "INSERT INTO {t} (case_id, author_id, body) VALUES ($1, $2, $3)"),
    "c_status": _write(
        "UPDATE", "UPDATE {t} SET status = $1, created_at = created_at WHERE id = $2"
    ),
    # reporting services
    "r_range": _read(
        "SELECT * FROM {t} WHERE id > (SELECT max(id) FROM {t}) - {n} ORDER BY id",
        Rows.NUM,
        Num.LIMIT,
    ),
    "r_rollup": _read(
        "SELECT b.{label2}, count(*) AS n FROM {t} a JOIN {t2} b ON b.{fk} = a.id "
        "WHERE a.created_at >= current_date - {n} GROUP BY 1",
        Rows.AGG,
        Num.DAYS,
    ),
    "r_scan": _read(f"SELECT {{cols}} FROM {{t}} {_SINCE}", Rows.LARGE, Num.DAYS),
    "r_cursor": _bare(
        "READ",
        "DECLARE CURSOR",
        "DECLARE export_cur CURSOR FOR SELECT * FROM {t}",
        Rows.LARGE,
        export=True,
    ),
    # incidents and unusual jobs
    "i_all": _read("SELECT * FROM {t}", Rows.FULL),
    "i_all_psql": _read("SELECT * FROM {t};", Rows.FULL),
    "i_copy": Template(
        Shape.COPY_TABLE,
        "READ",
        "COPY",
        "COPY  {t} TO STDOUT WITH (FORMAT csv)",
        Rows.FULL,
        export=True,
    ),
    "i_copy_query": Template(
        Shape.COPY_QUERY,
        "READ",
        "SELECT",
        "COPY  ( SELECT {cols} FROM {t} ) TO STDOUT WITH (FORMAT csv)",
        Rows.FULL,
        export=True,
    ),
    "i_probe": _read("SELECT * FROM {t} LIMIT {n}", Rows.NUM, Num.SET),
    "i_denied": Template(
        Shape.ERROR,
        "ERROR",
        "SELECT",
        "SELECT * FROM {t} LIMIT 5",
        error=("42501", "permission denied for table {short}"),
    ),
    "i_offset": _read("SELECT * FROM {t} ORDER BY id LIMIT 500 OFFSET {n}", Rows.NUM, Num.SET),
    "i_keyset": Template(
        Shape.X_READ,
        "READ",
        "SELECT",
        "SELECT {cols} FROM {t} WHERE id > $1 ORDER BY id LIMIT 1000",
        Rows.NUM,
        Num.SET,
        params=1,
    ),
    "i_drip": Template(
        Shape.X_READ,
        "READ",
        "SELECT",
        "SELECT {cols} FROM {t} WHERE id >= $1 ORDER BY id LIMIT 200",
        Rows.NUM,
        Num.SET,
        params=1,
    ),
    "i_quarter": _read(
        "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id "
        "WHERE a.created_at >= date_trunc('quarter', current_date) - interval '3 months'",
        Rows.NUM,
        Num.SET,
    ),
    "i_migrate": _read(
        "SELECT * FROM {t} WHERE id > {n} ORDER BY id LIMIT 10000", Rows.NUM, Num.SET
    ),
    "i_migrate_ddl": _bare(
        "DDL", "CREATE TABLE", "CREATE TABLE {t}_v2 (LIKE {t} INCLUDING ALL);", Rows.ZERO
    ),
    "login_fail": Template(Shape.LOGIN_FAIL, "CONNECT", "LOGIN", ""),
}


# pgAudit's classes as codes, for per-account truths
CLASS_CODES: Final = {"READ": 0, "WRITE": 1, "DDL": 2, "ROLE": 3, "ERROR": 4, "CONNECT": 5}
