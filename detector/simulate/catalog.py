"""Statements the simulated clients send, and the log lines each one becomes.

A *template* is a kind of statement ("look one row up by id", "COPY a table to stdout");
a *combo* is a template bound to its relations. Every combo is rendered once, in Python,
into the fixed pieces of its log lines (AUDIT lines, one per relation, a ``duration:``
line, an ``ERROR`` line); per statement only numbers are filled in, column-wise. The line
shapes follow real PostgreSQL 15 + pgAudit 1.7 output with ``pgaudit.log =
'read,write,ddl,role'``, ``log_rows``, ``log_relation`` on and ``log_parameter`` off
(``tests/fixtures/pgaudit/FINDINGS.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
import polars as pl

from detector.simulate.tables import BY_NAME, JOINS


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
    ps: str = ""  # command tag, when it is not the command
    params: int = 0  # $n parameters (extended protocol)
    in_txn: bool = False  # runs inside the session's open transaction (pg_dump)
    error: tuple[str, str] = ("", "")  # SQLSTATE and message, for ERROR


_S, _X = Shape.S_READ, Shape.X_READ
PREPARE_ACLS: Final = (
    "PREPARE getColumnACLs(pg_catalog.oid) AS\nSELECT at.attname, at.attacl, '{}' AS acldefault, "
    "pip.privtype, pip.initprivs FROM pg_catalog.pg_attribute at LEFT JOIN pg_catalog.pg_init_privs "
    "pip ON (at.attrelid = pip.objoid AND pip.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass "
    "AND at.attnum = pip.objsubid) WHERE at.attrelid = $1 AND NOT at.attisdropped AND (at.attacl IS "
    "NOT NULL OR pip.initprivs IS NOT NULL) ORDER BY at.attnum"
)

TEMPLATES: Final[dict[str, Template]] = {
    # web applications (extended protocol, one parameter)
    "w_get": Template(_X, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE id = $1", Rows.ONE, Num.ID, params=1),
    "w_list": Template(_X, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE {fk} = $1 ORDER BY id DESC LIMIT 50", Rows.PAGE, Num.ID, params=1),
    "w_join": Template(_X, "READ", "SELECT", "SELECT a.id, a.{label}, b.* FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id = $1", Rows.FEW, Num.ID, params=1),
    "w_search": Template(_X, "READ", "SELECT", "SELECT id, {label} FROM {t} WHERE {label} ILIKE $1 ORDER BY id LIMIT 20", Rows.PAGE, Num.ID, params=1),
    "w_update": Template(Shape.X_WRITE, "WRITE", "UPDATE", "UPDATE {t} SET {label} = $1 WHERE id = $2", Rows.ONE, Num.ID, params=2),
    "w_insert": Template(Shape.X_WRITE, "WRITE", "INSERT", "INSERT INTO {t} ({cols}) VALUES ({params})", Rows.ONE, Num.ID, params=9),
    "w_ping": Template(Shape.BARE, "READ", "SELECT", "SELECT 1"),
    # batch jobs (simple protocol, numbers inline)
    "b_extract": Template(_S, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE created_at >= now() - interval '{n} hours'", Rows.BATCH, Num.HOURS),
    "b_chunk": Template(_S, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE id > {n} ORDER BY id LIMIT 5000", Rows.BATCH, Num.ID),
    "b_agg": Template(_S, "READ", "SELECT", "SELECT {label}, count(*), max(id) FROM {t} WHERE created_at >= current_date - {n} GROUP BY {label}", Rows.AGG, Num.DAYS),
    "b_mark": Template(Shape.S_WRITE, "WRITE", "UPDATE", "UPDATE {t} SET {label} = 'processed' WHERE id <= {n} AND {label} = 'new'", Rows.BATCH, Num.ID),
    "b_purge": Template(Shape.S_WRITE, "WRITE", "DELETE", "DELETE FROM {t} WHERE created_at < now() - interval '{n} days'", Rows.BATCH, Num.DAYS),
    # nightly backups: pg_dump's own statements (log_catalog = off hides its catalog queries)
    "d_search_path": Template(Shape.BARE, "READ", "SELECT", "SELECT pg_catalog.set_config('search_path', '', false);", export=True),
    "d_recovery": Template(Shape.BARE, "READ", "SELECT", "SELECT pg_catalog.pg_is_in_recovery()", export=True),
    "d_schemas": Template(Shape.BARE, "READ", "SELECT", "SELECT pg_catalog.current_schemas(false)", export=True, in_txn=True),
    "d_prepare": Template(Shape.BARE, "READ", "PREPARE", PREPARE_ACLS, Rows.ZERO, export=True, in_txn=True),
    "d_copy": Template(Shape.COPY_TABLE, "READ", "COPY", "COPY {t} ({cols}) TO stdout;", Rows.FULL, export=True, in_txn=True),
    # analysts (DBeaver, DataGrip, psql: simple protocol)
    "a_sample": Template(_S, "READ", "SELECT", "SELECT * FROM {t} LIMIT {n}", Rows.NUM, Num.LIMIT),
    "a_month": Template(_S, "READ", "SELECT", "SELECT date_trunc('month', created_at) AS month, count(*) FROM {t} GROUP BY 1 ORDER BY 1", Rows.AGG),
    "a_top": Template(_S, "READ", "SELECT", "SELECT {label}, count(*) FROM {t} WHERE created_at >= current_date - {n} GROUP BY {label} ORDER BY 2 DESC", Rows.AGG, Num.DAYS),
    "a_join": Template(_S, "READ", "SELECT", "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.id < {n}", Rows.SAMPLE, Num.ID),
    "a_count": Template(_S, "READ", "SELECT", "SELECT count(*) FROM {t};"),
    "a_copy": Template(Shape.COPY_QUERY, "READ", "SELECT", "COPY  ( SELECT * FROM {t} WHERE created_at >= current_date - {n} ) TO STDOUT WITH (FORMAT csv, HEADER)", Rows.SAMPLE, Num.DAYS, export=True),
    "a_typo": Template(Shape.ERROR, "ERROR", "SELECT", "SELECT * FROM {t} LIMIT 100", error=("42P01", 'relation "{t}" does not exist')),
    # DBAs (psql)
    "x_count": Template(_S, "READ", "SELECT", "SELECT count(*) FROM {t};"),
    "x_peek": Template(_S, "READ", "SELECT", "SELECT * FROM {t} ORDER BY 1 DESC LIMIT {n};", Rows.NUM, Num.LIMIT),
    "x_jobs": Template(_S, "READ", "SELECT", "SELECT * FROM ops.jobs WHERE state = 'failed' AND finished_at > now() - interval '{n} hours';", Rows.FEW, Num.HOURS),
    "x_index": Template(Shape.BARE, "DDL", "CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS {short}_created_idx ON {t} (created_at);", Rows.ZERO),
    "x_grant": Template(Shape.BARE, "ROLE", "GRANT", "GRANT SELECT ON {t} TO reporting_ro;", Rows.ZERO),
    # case officers (CaseTracker: extended protocol)
    "c_case": Template(_X, "READ", "SELECT", "SELECT id, reference, status, officer_id, created_at FROM {t} WHERE id = $1", Rows.ONE, Num.ID, params=1),
    "c_related": Template(_X, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE case_id = $1 ORDER BY created_at DESC LIMIT 50", Rows.FEW, Num.ID, params=1),
    "c_worklist": Template(_X, "READ", "SELECT", "SELECT a.case_id, c.reference, c.status FROM {t} a JOIN {t2} c ON c.id = a.case_id WHERE a.officer_id = $1 AND a.active", Rows.AGG, Num.ID, params=1),
    "c_note": Template(Shape.X_WRITE, "WRITE", "INSERT", "INSERT INTO {t} (case_id, author_id, body) VALUES ($1, $2, $3)", Rows.ONE, Num.ID, params=3),
    "c_status": Template(Shape.X_WRITE, "WRITE", "UPDATE", "UPDATE {t} SET status = $1, created_at = created_at WHERE id = $2", Rows.ONE, Num.ID, params=2),
    # reporting services
    "r_range": Template(_S, "READ", "SELECT", "SELECT * FROM {t} WHERE id > (SELECT max(id) FROM {t}) - {n} ORDER BY id", Rows.NUM, Num.LIMIT),
    "r_rollup": Template(_S, "READ", "SELECT", "SELECT b.{label2}, count(*) AS n FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.created_at >= current_date - {n} GROUP BY 1", Rows.AGG, Num.DAYS),
    "r_scan": Template(_S, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE created_at >= current_date - {n}", Rows.LARGE, Num.DAYS),
    "r_cursor": Template(Shape.BARE, "READ", "DECLARE CURSOR", "DECLARE export_cur CURSOR FOR SELECT * FROM {t}", Rows.LARGE, export=True),
    # incidents and unusual jobs
    "i_all": Template(_S, "READ", "SELECT", "SELECT * FROM {t}", Rows.FULL),
    "i_all_psql": Template(_S, "READ", "SELECT", "SELECT * FROM {t};", Rows.FULL),
    "i_copy": Template(Shape.COPY_TABLE, "READ", "COPY", "COPY  {t} TO STDOUT WITH (FORMAT csv)", Rows.FULL, export=True),
    "i_copy_query": Template(Shape.COPY_QUERY, "READ", "SELECT", "COPY  ( SELECT {cols} FROM {t} ) TO STDOUT WITH (FORMAT csv)", Rows.FULL, export=True),
    "i_probe": Template(_S, "READ", "SELECT", "SELECT * FROM {t} LIMIT {n}", Rows.NUM, Num.SET),
    "i_denied": Template(Shape.ERROR, "ERROR", "SELECT", "SELECT * FROM {t} LIMIT 5", error=("42501", "permission denied for table {short}")),
    "i_offset": Template(_S, "READ", "SELECT", "SELECT * FROM {t} ORDER BY id LIMIT 500 OFFSET {n}", Rows.NUM, Num.SET),
    "i_keyset": Template(_X, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE id > $1 ORDER BY id LIMIT 1000", Rows.NUM, Num.SET, params=1),
    "i_drip": Template(_X, "READ", "SELECT", "SELECT {cols} FROM {t} WHERE id >= $1 ORDER BY id LIMIT 200", Rows.NUM, Num.SET, params=1),
    "i_quarter": Template(_S, "READ", "SELECT", "SELECT a.*, b.{label2} FROM {t} a JOIN {t2} b ON b.{fk} = a.id WHERE a.created_at >= date_trunc('quarter', current_date) - interval '3 months'", Rows.NUM, Num.SET),
    "i_migrate": Template(_S, "READ", "SELECT", "SELECT * FROM {t} WHERE id > {n} ORDER BY id LIMIT 10000", Rows.NUM, Num.SET),
    "i_migrate_ddl": Template(Shape.BARE, "DDL", "CREATE TABLE", "CREATE TABLE {t}_v2 (LIKE {t} INCLUDING ALL);", Rows.ZERO),
    "login_fail": Template(Shape.LOGIN_FAIL, "CONNECT", "LOGIN", ""),
}  # fmt: skip

# pgAudit's classes as codes, for per-account truths
CLASS_CODES: Final = {"READ": 0, "WRITE": 1, "DDL": 2, "ROLE": 3, "ERROR": 4, "CONNECT": 5}
# Line roles of a statement
AUDIT, COPY_LINE, DUR_STMT, DUR_EXEC, ERROR_LINE = range(5)
NOT_LOGGED: Final = "<not logged>"


def _json(text: str) -> str:
    """``text`` as the inside of a JSON string (PostgreSQL's jsonlog escapes, UTF-8 kept)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _csv_needs_quotes(text: str) -> bool:
    return any(c in text for c in '",\r\n')


@dataclass(frozen=True)
class Piece:
    """The fixed parts of one log line of a combo; see :func:`lines.statement_lines`."""

    role: int
    p0: str
    p1: str
    p2: str
    v3: int  # 0 nothing, 1 the statement's logged rows, 2 a literal 0
    ps: str
    pre: str = ""
    q0: str = ""
    post_n: bool = False
    q1: str = ""
    severity: str = "LOG"
    vxid_zero: bool = False


class Catalog:
    """Combos, numbered in the order they are first asked for (deterministic)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, tuple[str, ...]], int] = {}
        self.keys: list[tuple[str, tuple[str, ...]]] = []

    def combo(self, key: str, *relations: str) -> int:
        ident = (key, relations)
        if ident not in self._ids:
            TEMPLATES[key]  # noqa: B018 - fail early on an unknown template
            self._ids[ident] = len(self.keys)
            self.keys.append(ident)
        return self._ids[ident]

    def text(self, combo: int, n: int | None = None) -> str:
        return statement_text(self.keys[combo], n)

    def freeze(self) -> Frozen:
        return Frozen(self.keys)


def _fill(text: str, relations: tuple[str, ...]) -> str:
    t = relations[0] if relations else ""
    t2 = relations[1] if len(relations) > 1 else ""
    table = BY_NAME.get(t)
    columns = table.columns if table else ("id",)
    if t2:
        fk = next((c for parent, child, c in JOINS if parent == t and child == t2), "id")
    else:
        fk = next((c for c in columns if c.endswith("_id")), "id")
    return (
        text.replace("{t2}", t2)
        .replace("{t}", t)
        .replace("{short}", t.split(".")[-1])
        .replace("{cols}", ", ".join(columns))
        .replace("{fk}", fk)
        .replace("{label2}", BY_NAME[t2].label if t2 in BY_NAME else "id")
        .replace("{label}", table.label if table else "id")
        .replace("{params}", ", ".join(f"${i + 1}" for i in range(len(columns))))
    )


def statement_text(ident: tuple[str, tuple[str, ...]], n: int | None = None) -> str:
    """The statement's text, with ``n`` where its template puts a number in the text."""
    head, tail = _split(ident)
    return head + (str(n) if n is not None and "{n}" in TEMPLATES[ident[0]].text else "") + tail


def logs_rows(tpl: Template) -> bool:
    """Whether the statement's AUDIT line carries the rows it read or wrote (else 0)."""
    if tpl.shape == Shape.BARE:
        return tpl.command == "SELECT"
    return tpl.shape not in (Shape.COPY_TABLE, Shape.ERROR, Shape.LOGIN_FAIL)


def _split(ident: tuple[str, tuple[str, ...]]) -> tuple[str, str]:
    """The statement text before and after its number."""
    text = _fill(TEMPLATES[ident[0]].text, ident[1])
    head, _, tail = text.partition("{n}")
    return head, tail


def _pieces(ident: tuple[str, tuple[str, ...]]) -> list[Piece]:
    tpl = TEMPLATES[ident[0]]
    relations = ident[1]
    if tpl.shape == Shape.LOGIN_FAIL:
        return []
    head, tail = _split(ident)
    whole = head + tail
    ps = tpl.ps or tpl.command
    if tpl.shape == Shape.ERROR:
        state, message = tpl.error
        t = relations[0]
        message = message.replace("{t}", t).replace("{short}", t.split(".")[-1])
        post = f',"statement":"{_json(whole)}"'
        if state == "42P01":
            post += f',"cursor_position":{whole.find(t) + 1}'
        return [Piece(ERROR_LINE, _json(message), "", "", 0, ps, pre=f',"state_code":"{state}"',
                      q0=post, severity="ERROR")]  # fmt: skip
    quote = '"' if _csv_needs_quotes(whole) else ""
    csv_head = _json(quote + head.replace('"', '""'))
    csv_tail = _json(tail.replace('"', '""') + quote) + f",{NOT_LOGGED},"
    audit: list[Piece] = []
    if tpl.shape in (Shape.S_READ, Shape.X_READ, Shape.S_WRITE, Shape.X_WRITE, Shape.COPY_QUERY):
        cmd = "SELECT" if tpl.shape == Shape.COPY_QUERY else tpl.command
        for rel in relations:
            p1 = f",1,{tpl.cls},{cmd},TABLE,{rel},{csv_head}"
            audit.append(
                Piece(
                    AUDIT,
                    "AUDIT: SESSION,",
                    p1,
                    csv_tail,
                    1,
                    "COPY" if tpl.shape == Shape.COPY_QUERY else ps,
                )
            )
        if tpl.shape == Shape.COPY_QUERY:
            p1 = f",2,READ,COPY,,,{csv_head}"
            audit.append(Piece(COPY_LINE, "AUDIT: SESSION,", p1, csv_tail, 2, "COPY"))
    else:  # one line naming no relation
        logged = 1 if logs_rows(tpl) else 2
        audit.append(
            Piece(
                AUDIT,
                "AUDIT: SESSION,",
                f",1,{tpl.cls},{tpl.command},,,{csv_head}",
                csv_tail,
                logged,
                ps,
            )
        )
    if tpl.shape == Shape.X_READ:
        detail = ',"detail":"parameters: $1 = \'' if tpl.params == 1 else ""
        duration = Piece(
            DUR_EXEC,
            "duration: ",
            " ms  execute <unnamed>: " + _json(head),
            _json(tail),
            0,
            ps,
            q0=detail,
            post_n=bool(detail),
            q1="'\"" if detail else "",
        )
        return [duration, *audit]
    if tpl.shape == Shape.X_WRITE:
        return [
            *audit,
            Piece(
                DUR_EXEC, "duration: ", " ms  execute <unnamed>: " + _json(head), _json(tail), 0, ps
            ),
        ]
    duration = Piece(
        DUR_STMT,
        "duration: ",
        " ms  statement: " + _json(head),
        _json(tail),
        0,
        ps,
        vxid_zero=not tpl.in_txn,
    )
    return [*audit, duration]  # fmt: skip


class Frozen:
    """A finished catalog as arrays (per combo) and one frame of line pieces."""

    def __init__(self, keys: list[tuple[str, tuple[str, ...]]]) -> None:
        self.keys = keys
        tpls = [TEMPLATES[k] for k, _ in keys]

        def arr(values: list[int] | list[bool], dtype: type = np.int64) -> np.ndarray:
            return np.asarray(values, dtype=dtype)

        self.shape = arr([t.shape for t in tpls])
        self.rows_mode = arr([t.rows for t in tpls])
        self.num_mode = arr([t.num for t in tpls])
        self.table_rows = arr([BY_NAME[r[0]].rows if r and r[0] in BY_NAME else 0 for _, r in keys])
        self.cls = arr([CLASS_CODES[t.cls] for t in tpls])
        self.export = arr([t.export for t in tpls], bool)
        self.in_txn = arr([t.in_txn for t in tpls], bool)
        self.is_write = self.cls == CLASS_CODES["WRITE"]
        self.audited = ~np.isin(self.shape, [Shape.ERROR, Shape.LOGIN_FAIL])
        # what the log says: COPY and cursors log 0 rows, whatever they moved
        self.logs_rows = arr([logs_rows(t) for t in tpls], bool)
        self.events = np.where(self.shape == Shape.COPY_QUERY, 2, 1)
        # statements with several parameters are kept fast: their duration line would list them
        self.fast = arr([t.params > 1 for t in tpls], bool)
        pieces = [_pieces(k) for k in keys]
        self.n_pieces = arr([len(p) for p in pieces])
        self.piece_offset = np.concatenate([[0], np.cumsum(self.n_pieces)[:-1]]).astype(np.int64)
        flat = [p for ps in pieces for p in ps]
        self.pieces = pl.DataFrame(
            {
                "role": [p.role for p in flat],
                "p0": [p.p0 for p in flat],
                "p1": [p.p1 for p in flat],
                "p2": [p.p2 for p in flat],
                "v3": [p.v3 for p in flat],
                "ps": [p.ps for p in flat],
                "pre": [p.pre for p in flat],
                "q0": [p.q0 for p in flat],
                "post_n": [p.post_n for p in flat],
                "q1": [p.q1 for p in flat],
                "severity": [p.severity for p in flat],
                "vxid_zero": [p.vxid_zero for p in flat],
            },
            schema_overrides={"role": pl.Int8, "v3": pl.Int8},
        )

    def text(self, combo: int, n: int | None = None) -> str:
        return statement_text(self.keys[combo], n)
