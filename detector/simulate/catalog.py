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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from detector.simulate.tables import BY_NAME, JOINS
from detector.simulate.templates import CLASS_CODES, TEMPLATES, Shape, Template

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
            TEMPLATES[key]  # fail early on an unknown template
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

        def arr(values: Sequence[int], dtype: type = np.int64) -> np.ndarray:
            return np.asarray(values, dtype=dtype)

        self.shape = arr([t.shape for t in tpls])
        self.rows_mode = arr([t.rows for t in tpls])
        self.num_mode = arr([t.num for t in tpls])
        self.table_rows = arr([BY_NAME[r[0]].rows if r and r[0] in BY_NAME else 0 for _, r in keys])
        self.cls = arr([CLASS_CODES[t.cls] for t in tpls])
        self.export = arr([t.export for t in tpls], bool)
        self.catalog = arr([t.catalog for t in tpls], bool)
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
