"""The simulated clients' statements as they would send them to MariaDB 10.11.

Every template of :mod:`detector.simulate.templates` gets its MariaDB text: numbers
inline (Connector/J and mysqlclient prepare on the client side, so ``$1`` becomes the
value), ``INTERVAL n HOUR`` for ``interval 'n hours'``, ``LIKE`` for ``ILIKE``,
``date_format`` for ``date_trunc``, no trailing ``;`` (the ``mariadb`` client strips it).
Where PostgreSQL has no MariaDB equivalent the nearest one is used:

* ``COPY t TO STDOUT`` and ``COPY (SELECT ...) TO STDOUT`` (psql's ``\\copy``):
  ``SELECT ... INTO OUTFILE``, one statement that writes the rows to a file on the
  server (pgAudit logs a ``COPY (SELECT ...)`` as two events, its SELECT and its COPY);
* ``pg_dump``: ``mariadb-dump --single-transaction`` of the same databases (schemas
  become databases), with the statements the real 10.11 client sends, in its order:
  its preamble, then per table ``show create table``, the column query, the
  ``SELECT /*!40001 SQL_NO_CACHE */ `col`, ... FROM `table``` that reads it, the
  trigger query and ``ROLLBACK TO SAVEPOINT sp`` (checked on a real server, see
  ``docs/formats-mariadb.md``);
* ``DECLARE ... CURSOR FOR SELECT * FROM t`` (a reporting service's export): MariaDB has
  no SQL cursor outside stored programs; a client streams the same ``SELECT * FROM t``
  (Connector/J's ``setFetchSize(Integer.MIN_VALUE)``), which is not an export;
* ``CREATE INDEX CONCURRENTLY`` and ``CREATE TABLE ... (LIKE ... INCLUDING ALL)``: their
  plain MariaDB forms.

A statement becomes one or more *pieces* (MariaDB statements); one of them, the *main*
piece, carries the simulated statement's rows and duration. Each piece names the TABLE
records the ``server_audit`` plugin writes before its QUERY record (READ, WRITE, CREATE,
ALTER with ``db,table``), as the real server does: a GRANT writes ``mysql.tables_priv``
and ``mysql.global_priv``, ``CREATE INDEX`` alters and reads its table, a failed
statement has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from detector.simulate import tables as T
from detector.simulate.catalog import _fill
from detector.simulate.templates import CLASS_CODES, TEMPLATES

# Error numbers the real server puts in the audit log's retcode
ER_NO_SUCH_TABLE: Final = 1146
ER_TABLEACCESS_DENIED: Final = 1142
ER_ACCESS_DENIED: Final = 1045  # a refused login (FAILED_CONNECT)
OUTFILE_DIR: Final = "/var/lib/mysql-files"

_SINCE_DAYS = "WHERE created_at >= current_date - INTERVAL {n} DAY"
# key -> MariaDB text of the main piece (placeholders as in templates; {values} below)
TEXTS: Final[dict[str, str]] = {
    "w_get": "SELECT {cols} FROM {t} WHERE id = {n}",
    "w_list": "SELECT {cols} FROM {t} WHERE {fk} = {n} ORDER BY id DESC LIMIT 50",
    "w_join": "SELECT a.id, a.{label}, b.* FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id = {n}",
    "w_search": "SELECT id, {label} FROM {t} WHERE {label} LIKE '%{n}%' ORDER BY id LIMIT 20",
    "w_update": "UPDATE {t} SET {label} = 'updated' WHERE id = {n}",
    "w_insert": "INSERT INTO {t} ({cols}) VALUES ({values})",
    "w_ping": "SELECT 1",
    "b_extract": "SELECT {cols} FROM {t} WHERE created_at >= now() - INTERVAL {n} HOUR",
    "b_chunk": "SELECT {cols} FROM {t} WHERE id > {n} ORDER BY id LIMIT 5000",
    "b_agg": f"SELECT {{label}}, count(*), max(id) FROM {{t}} {_SINCE_DAYS} GROUP BY {{label}}",
    "b_mark": "UPDATE {t} SET {label} = 'processed' WHERE id <= {n} AND {label} = 'new'",
    "b_purge": "DELETE FROM {t} WHERE created_at < now() - INTERVAL {n} DAY",
    "a_sample": "SELECT * FROM {t} LIMIT {n}",
    "a_month": "SELECT date_format(created_at, '%Y-%m-01') AS month, count(*) FROM {t} "
    "GROUP BY 1 ORDER BY 1",
    "a_top": f"SELECT {{label}}, count(*) FROM {{t}} {_SINCE_DAYS} GROUP BY {{label}} ORDER BY 2 DESC",
    "a_join": "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id < {n}",
    "a_count": "SELECT count(*) FROM {t}",
    "a_copy": f"SELECT * FROM {{t}} {_SINCE_DAYS} INTO OUTFILE '{OUTFILE_DIR}/{{short}}.csv' "
    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'",
    "a_typo": "SELECT * FROM {t} LIMIT 100",
    "x_count": "SELECT count(*) FROM {t}",
    "x_peek": "SELECT * FROM {t} ORDER BY 1 DESC LIMIT {n}",
    "x_jobs": "SELECT * FROM ops.jobs WHERE state = 'failed' AND finished_at > now() - INTERVAL {n} HOUR",
    "x_index": "CREATE INDEX IF NOT EXISTS {short}_created_idx ON {t} (created_at)",
    "x_grant": "GRANT SELECT ON {t} TO reporting_ro",
    "c_case": "SELECT id, reference, status, officer_id, created_at FROM {t} WHERE id = {n}",
    "c_related": "SELECT {cols} FROM {t} WHERE case_id = {n} ORDER BY created_at DESC LIMIT 50",
    "c_worklist": "SELECT a.case_id, c.reference, c.status FROM {t} a JOIN {t2} c ON c.id = a.case_id "
    "WHERE a.officer_id = {n} AND a.active",
    "c_note": "INSERT INTO {t} (case_id, author_id, body) VALUES ({n}, 1042, 'Called the party, follow-up booked')",
    "c_status": "UPDATE {t} SET status = 'open', created_at = created_at WHERE id = {n}",
    "r_range": "SELECT * FROM {t} WHERE id > (SELECT max(id) FROM {t}) - {n} ORDER BY id",
    "r_rollup": "SELECT b.{label2}, count(*) AS n FROM {t} a JOIN {t2} b ON b.{fk} = a.id "
    "WHERE a.created_at >= current_date - INTERVAL {n} DAY GROUP BY 1",
    "r_scan": f"SELECT {{cols}} FROM {{t}} {_SINCE_DAYS}",
    "r_cursor": "SELECT * FROM {t}",
    "i_all": "SELECT * FROM {t}",
    "i_all_psql": "SELECT * FROM {t}",
    "i_copy": f"SELECT * FROM {{t}} INTO OUTFILE '{OUTFILE_DIR}/{{short}}.csv' FIELDS TERMINATED BY ','",
    "i_copy_query": f"SELECT {{cols}} FROM {{t}} INTO OUTFILE '{OUTFILE_DIR}/{{short}}_all.csv' "
    "FIELDS TERMINATED BY ','",
    "i_probe": "SELECT * FROM {t} LIMIT {n}",
    "i_denied": "SELECT * FROM {t} LIMIT 5",
    "i_offset": "SELECT * FROM {t} ORDER BY id LIMIT 500 OFFSET {n}",
    "i_keyset": "SELECT {cols} FROM {t} WHERE id > {n} ORDER BY id LIMIT 1000",
    "i_drip": "SELECT {cols} FROM {t} WHERE id >= {n} ORDER BY id LIMIT 200",
    "i_quarter": "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.created_at >= "
    "makedate(year(current_date), 1) + INTERVAL quarter(current_date) - 1 QUARTER - INTERVAL 3 MONTH",
    "i_migrate": "SELECT * FROM {t} WHERE id > {n} ORDER BY id LIMIT 10000",
    "i_migrate_ddl": "CREATE TABLE {t}_v2 LIKE {t}",
}  # fmt: skip
ERRORS: Final = {"a_typo": ER_NO_SUCH_TABLE, "i_denied": ER_TABLEACCESS_DENIED}

# mariadb-dump 10.11 --single-transaction, as the real client sends it (pg_dump's
# preamble statements map to its preamble, one group each)
_SCHEMAS = sorted({t.name.split(".")[0] for t in T.TABLES})
_IN = ",".join(f"'{s}'" for s in _SCHEMAS)
DUMP_PREAMBLE: Final[dict[str, tuple[str, ...]]] = {
    "d_search_path": (
        "/*!40100 SET @@SQL_MODE='' */",
        "/*!40103 SET TIME_ZONE='+00:00' */",
        "/*M!100100 SET @@MAX_STATEMENT_TIME=0.000000 */",
        "/*M!100100 SET WAIT_TIMEOUT=DEFAULT */",
    ),
    "d_recovery": (
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */",
        "UNLOCK TABLES",
    ),
    "d_schemas": (
        "set optimizer_switch='semijoin=off'",
        "SELECT LOGFILE_GROUP_NAME, FILE_NAME, TOTAL_EXTENTS, INITIAL_SIZE, ENGINE, EXTRA FROM "
        "INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'UNDO LOG' AND FILE_NAME IS NOT NULL AND "
        "LOGFILE_GROUP_NAME IS NOT NULL AND LOGFILE_GROUP_NAME IN (SELECT DISTINCT "
        "LOGFILE_GROUP_NAME FROM INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'DATAFILE' AND "
        "TABLESPACE_NAME IN (SELECT DISTINCT TABLESPACE_NAME FROM INFORMATION_SCHEMA.PARTITIONS "
        f"WHERE TABLE_SCHEMA IN ({_IN}))) GROUP BY LOGFILE_GROUP_NAME, FILE_NAME, ENGINE, "
        "TOTAL_EXTENTS, INITIAL_SIZE ORDER BY LOGFILE_GROUP_NAME",
        "SELECT DISTINCT TABLESPACE_NAME, FILE_NAME, LOGFILE_GROUP_NAME, EXTENT_SIZE, "
        "INITIAL_SIZE, ENGINE FROM INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'DATAFILE' AND "
        "TABLESPACE_NAME IN (SELECT DISTINCT TABLESPACE_NAME FROM INFORMATION_SCHEMA.PARTITIONS "
        f"WHERE TABLE_SCHEMA IN ({_IN})) ORDER BY TABLESPACE_NAME, LOGFILE_GROUP_NAME",
        "set optimizer_switch=default",
    ),
    "d_prepare": ("SAVEPOINT sp",),
}


def dump_table(table: str) -> list[tuple[str, int]]:
    """mariadb-dump's statements for one table, in order, each with the rows it returns
    (-1: the table's rows, the main piece), run in the table's database."""
    db, name = table.split(".", 1)
    t = T.BY_NAME[table]
    first = min(x.name for x in T.TABLES if x.name.startswith(db + ".")) == table
    columns = ", ".join(f"`{c}`" for c in t.columns)
    opening = [(f"SHOW CREATE DATABASE IF NOT EXISTS `{db}`", 1), ("SHOW FULL TABLES", 0)]
    return [
        *(opening if first else []),
        ("SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = "
         f"DATABASE() AND table_name = '{name}'", 1),
        ("SET SQL_QUOTE_SHOW_CREATE=1", 0),
        ("SET SESSION character_set_results = 'binary'", 0),
        (f"show create table `{name}`", 1),
        ("SET SESSION character_set_results = 'utf8mb4'", 0),
        ("select column_name, extra, generation_expression, data_type from "
         f"information_schema.columns where table_schema=database() and table_name='{name}' "
         "order by ordinal_position", len(t.columns)),
        (f"SELECT /*!40001 SQL_NO_CACHE */ {columns} FROM `{name}`", -1),
        ("SET SESSION character_set_results = 'binary'", 0),
        ("select @@collation_database", 1),
        ("SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = "
         f"DATABASE() AND EVENT_OBJECT_TABLE = '{name}'", 0),
        ("SET SESSION character_set_results = 'utf8mb4'", 0),
        ("ROLLBACK TO SAVEPOINT sp", 0),
    ]  # fmt: skip


@dataclass(frozen=True)
class Piece:
    """One MariaDB statement of a simulated statement."""

    head: str  # text before the statement's number
    tail: str  # text after it
    has_n: bool  # the statement's number is in the text
    tables: str  # TABLE records, "OP,db,table" joined by "\n" ("" for none)
    main: bool  # carries the statement's rows and duration
    rows: int  # rows a non-main piece returns
    write: bool  # rows are Rows_affected, not Rows_sent
    error: int  # retcode (0: ran)
    plan: int  # 0: no query_plan lines, 1: a full scan, 2: a full scan with GROUP BY
    db: str | None  # the database it runs in; None: the session's
    columns: int  # columns of its result, for Bytes_sent
    cls: str = "MISC"  # READ, WRITE, DDL, ROLE, ... as pgAudit would class it
    export: bool = False  # mariadb-dump's read of a table, INTO OUTFILE


def _values(columns: tuple[str, ...]) -> str:
    return ", ".join(["{n}", *(f"'{c}-v'" for c in columns[1:])])


def _plan(text: str) -> int:
    if not text.startswith("SELECT") or "INTO OUTFILE" in text:
        return 1 if "INTO OUTFILE" in text else 0
    if "GROUP BY" in text:
        return 2
    point = (" WHERE id = " in text) or (" WHERE id > " in text) or (" WHERE id >= " in text)
    return 0 if point and " JOIN " not in text else 1


def pieces(key: str, relations: tuple[str, ...]) -> list[Piece]:
    """The MariaDB statements of combo ``(key, relations)``; none for a refused login."""
    tpl = TEMPLATES[key]
    if key == "login_fail":
        return []
    if key in DUMP_PREAMBLE:
        return [
            Piece(s, "", False, "", False, 0, False, 0, 0, "", 0, cls=_dump_class(s))
            for s in DUMP_PREAMBLE[key]
        ]
    if key == "d_copy":
        (table,) = relations
        db, name = table.split(".", 1)
        return [
            Piece(s, "", False, f"READ,{db},{name}" if rows < 0 else "", rows < 0, max(rows, 0),
                  False, 0, 0 if rows >= 0 else 1, db, len(T.BY_NAME[table].columns),
                  cls=_dump_class(s), export=rows < 0)
            for s, rows in dump_table(table)
        ]  # fmt: skip
    t = relations[0] if relations else ""
    columns = T.BY_NAME[t].columns if t in T.BY_NAME else ("id",)
    text = _fill(TEXTS[key].replace("{values}", _values(columns)), relations)
    head, _, tail = text.partition("{n}")
    error = ERRORS.get(key, 0)
    cls = CLASS_CODES[tpl.cls]
    records: list[str] = []
    if not error:
        split = [r.split(".", 1) for r in relations]
        if key == "x_grant":
            records = ["WRITE,mysql,tables_priv", "WRITE,mysql,global_priv"]
        elif key == "x_index":
            records = [f"ALTER,{d},{n}" for d, n in split] + [f"READ,{d},{n}" for d, n in split]
        elif key == "i_migrate_ddl":
            records = [f"CREATE,{d},{n}_v2" for d, n in split]
        elif cls == CLASS_CODES["WRITE"]:
            records = [f"WRITE,{d},{n}" for d, n in split]
        else:
            records = [f"READ,{d},{n}" for d, n in split]
    width = len(columns) if "*" in text or "{cols}" in TEXTS[key] else 2
    return [
        Piece(head, tail, "{n}" in text, "\n".join(records), True, 0, cls == CLASS_CODES["WRITE"], error,
              0 if error else _plan(text), None, width, cls=tpl.cls, export="INTO OUTFILE" in text)
    ]  # fmt: skip


def _dump_class(text: str) -> str:
    """mariadb-dump's statements are reads (SELECT), CATALOG (SHOW, and its queries of
    ``information_schema`` alone, as trovewatch classes them) or MISC (SET, SAVEPOINT,
    ...)."""
    word = text.split(" ", 1)[0].upper()
    if word == "SHOW":
        return "CATALOG"
    if word != "SELECT":
        return "MISC"
    return "CATALOG" if "information_schema." in text.lower() else "READ"


class Dialect:
    """A frozen catalog's MariaDB pieces: per combo ``n_pieces``/``piece_offset`` and the
    session database its first relation suggests, and one frame of pieces."""

    def __init__(self, keys: list[tuple[str, tuple[str, ...]]]) -> None:
        per_combo = [pieces(k, r) for k, r in keys]
        self.n_pieces = np.array([len(p) for p in per_combo], dtype=np.int64)
        self.piece_offset = np.concatenate([[0], np.cumsum(self.n_pieces)[:-1]]).astype(np.int64)
        # the index of the main piece within its combo (0 when it has none)
        self.main = np.array(
            [next((i for i, x in enumerate(p) if x.main), 0) for p in per_combo], dtype=np.int64
        )
        self.schema = [r[0].split(".", 1)[0] if r and r[0] in T.BY_NAME else "" for _, r in keys]
        flat = [p for ps in per_combo for p in ps]
        self.pieces = pl.DataFrame(
            {
                "head": [p.head for p in flat],
                "tail": [p.tail for p in flat],
                "has_n": [p.has_n for p in flat],
                "tables": [p.tables for p in flat],
                "main": [p.main for p in flat],
                "fixed_rows": [p.rows for p in flat],
                "write": [p.write for p in flat],
                "error": [p.error for p in flat],
                "plan": [p.plan for p in flat],
                "piece_db": [p.db for p in flat],
                "width": [p.columns for p in flat],
                "cls": [p.cls for p in flat],
                "export": [p.export for p in flat],
            },
            schema_overrides={"plan": pl.Int8, "error": pl.Int32, "width": pl.Int32,
                              "fixed_rows": pl.Int64, "piece_db": pl.String},
        )  # fmt: skip
