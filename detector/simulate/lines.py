"""A day's statements as PostgreSQL 15 jsonlog lines, in time order, chunk by chunk.

Each statement becomes the lines of its combo (``catalog.Frozen.pieces``): AUDIT lines
(one per relation), its ``duration:`` line when it ran for ``log_min_duration_statement``
or longer, or its ``ERROR``. Keys and their order are those of the real server's
jsonlog (``tests/fixtures/reference``); keys with empty values are left out, as
PostgreSQL does. No Python loop runs per line: lines are numbered, sorted and rendered
as Polars columns, ``CHUNK`` lines at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Final

import numpy as np
import polars as pl

from detector.simulate import sessions as S
from detector.simulate.activity import Statements
from detector.simulate.catalog import AUDIT, COPY_LINE, DUR_EXEC, DUR_STMT, ERROR_LINE, Frozen
from detector.simulate.templates import TEMPLATES, Shape

LOG_MIN_DURATION_US: Final = 250_000  # log_min_duration_statement = 250 (ms)
CHUNK: Final = 50_000
GAP: Final = 8  # microseconds between the ends of two statements of one backend


def render_day(
    st: pl.DataFrame, sessions: pl.DataFrame, frozen: Frozen
) -> Iterator[tuple[bytes, int]]:
    """The day's log as blocks of bytes (newline-terminated lines) and their line counts,
    from its statements and sessions (:func:`day_statements`)."""
    which, piece = _expand(st, frozen)
    sess = st["sess"].to_numpy()[which]
    t = st["t"].to_numpy()[which] + (piece - frozen.piece_offset[st["combo"].to_numpy()[which]])
    # line numbers: 1-3 are the connection lines, statement lines follow in order
    first = (
        np.r_[0, np.flatnonzero(sess[1:] != sess[:-1]) + 1] if len(sess) else np.zeros(0, np.int64)
    )
    line_num = np.arange(len(sess)) - np.repeat(first, np.diff(np.r_[first, len(sess)])) + 4
    counts = pl.DataFrame({"sess": sess[first], "n": np.diff(np.r_[first, len(sess)])})
    conn = S.lines(sessions, counts)
    table = pl.concat(
        [
            pl.DataFrame({"t": t, "sess": sess, "kind": np.zeros(len(t), np.int8),
                          "line_num": line_num, "row": np.arange(len(t))}),
            conn.select("t", "sess", "kind", pl.lit(0, pl.Int64).alias("line_num"),
                        pl.int_range(pl.len()).alias("row")),
        ],
        how="vertical_relaxed",
    ).sort("t", "sess", "kind", "line_num")  # fmt: skip
    values = st.select("n", "rows", "dur", "write", "logs_rows", "n_text", "stmt_no", "lxid", "xid")
    frag = sessions.select("a", "ss", "vb", "c")
    for start in range(0, table.height, CHUNK):
        chunk = table.slice(start, CHUNK).with_row_index("pos")
        mine = chunk.filter(pl.col("kind") == 0)
        idx = mine["row"].to_numpy()
        parts = [
            mine.select("pos", "t", "line_num"),
            values[which[idx]],
            frozen.pieces[piece[idx]],
            frag[sess[idx]],
        ]
        rendered = pl.concat(parts, how="horizontal").select("pos", _statement_text().alias("text"))
        others = chunk.filter(pl.col("kind") != 0)
        connection = others.select("pos", conn["text"].gather(others["row"]).alias("text"))
        out = pl.concat([rendered, connection]).sort("pos").select("text")
        buf = io.BytesIO()
        out.write_csv(buf, include_header=False, quote_style="never")
        yield buf.getvalue(), out.height


def day_statements(
    stmts: Statements,
    frozen: Frozen,
    accounts: list[str],
    ips: list[str],
    apps: list[str],
    day: int,
    day_us: int,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The day's statements numbered within their sessions (:func:`_numbered`), and the
    sessions (:func:`detector.simulate.sessions.build`): what either rendering of the day
    (:func:`render_day`, :func:`detector.simulate.mariadb_lines.render_day`) starts
    from, so that the jsonlog and MariaDB logs of a seed hold the same statements at the
    same microseconds."""
    st = _statements(stmts, frozen, day)
    sessions = S.build(st, accounts, ips, apps, day_us, day, rng)
    return _numbered(st, sessions), sessions


def _statements(stmts: Statements, frozen: Frozen, day: int) -> pl.DataFrame:
    """The day's statements in time order, with what their lines need from the catalog."""
    combo = stmts["combo"]
    n_in_text = np.array(["{n}" in TEMPLATES[k].text for k, _ in frozen.keys], dtype=bool)
    st = pl.DataFrame(
        {c: stmts[c] for c in ("account", "skey", "t", "dur", "ip", "app", "combo", "n", "rows")}
    )
    st = st.with_columns(
        pl.Series("login_fail", frozen.shape[combo] == Shape.LOGIN_FAIL),
        pl.Series("dump", frozen.export[combo] & frozen.in_txn[combo]),
        pl.Series("audited", frozen.audited[combo]),
        pl.Series("incr", ~frozen.in_txn[combo]),
        pl.Series("write", frozen.is_write[combo]),
        pl.Series("logs_rows", frozen.logs_rows[combo]),
        pl.Series("n_text", n_in_text[combo]),
    ).sort("t", "account", "skey", "combo", "n")
    # transaction ids are handed out in time order to the statements that write
    return st.with_columns((1000 + day * 5_000_000 + pl.col("write").cum_sum()).alias("xid"))


def _numbered(st: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Statements grouped by session, in order, with their pgAudit statement number and
    local transaction id; a backend runs one statement at a time, so each is made to end
    at least ``GAP`` microseconds after the one before."""
    st = st.join(
        sessions.select("account", "skey", "sess", "lx"),
        on=["account", "skey"],
        maintain_order="left",
    )
    i = pl.int_range(pl.len()).over("sess")
    return st.sort("sess", "t", "combo", "n").with_columns(
        ((pl.col("t") - GAP * i).cum_max().over("sess") + GAP * i).alias("t"),
        pl.col("audited").cum_sum().over("sess").alias("stmt_no"),
        (
            pl.col("lx")
            + pl.col("incr").cum_sum().over("sess")
            + 9 * (~pl.col("incr")).cast(pl.Int64)
        ).alias("lxid"),
    )


def _expand(st: pl.DataFrame, frozen: Frozen) -> tuple[np.ndarray, np.ndarray]:
    """(statement row, piece) of every line, in session order; duration lines only for
    statements that ran for ``log_min_duration_statement`` or longer."""
    combo = st["combo"].to_numpy()
    count = frozen.n_pieces[combo]
    which = np.repeat(np.arange(st.height), count)
    k = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    piece = frozen.piece_offset[combo][which] + k
    role = frozen.pieces["role"].to_numpy()[piece]
    slow = st["dur"].to_numpy()[which] >= LOG_MIN_DURATION_US
    keep = ~np.isin(role, [DUR_STMT, DUR_EXEC]) | slow
    return which[keep], piece[keep]


def _statement_text() -> pl.Expr:
    """A statement line as the server writes it (see the module docstring)."""
    role = pl.col("role")
    n = pl.col("n").cast(pl.String)
    ms = pl.concat_str(
        (pl.col("dur") // 1000).cast(pl.String),
        pl.lit("."),
        (pl.col("dur") % 1000).cast(pl.String).str.zfill(3),
    )
    v1 = (
        pl.when(role.is_in([DUR_STMT, DUR_EXEC]))
        .then(ms)
        .when(role == ERROR_LINE)
        .then(pl.lit(""))
        .otherwise(pl.col("stmt_no").cast(pl.String))
    )
    v2 = (
        pl.when(pl.col("n_text") & role.is_in([AUDIT, COPY_LINE, DUR_STMT]))
        .then(n)
        .otherwise(pl.lit(""))
    )
    logged = pl.when(pl.col("logs_rows")).then(pl.col("rows")).otherwise(0).cast(pl.String)
    v3 = (
        pl.when(pl.col("v3") == 1)
        .then(logged)
        .when(pl.col("v3") == 2)
        .then(pl.lit("0"))
        .otherwise(pl.lit(""))
    )
    post = pl.when(pl.col("post_n")).then(n).otherwise(pl.lit(""))
    lxid = pl.when(pl.col("vxid_zero")).then(pl.lit("0")).otherwise(pl.col("lxid").cast(pl.String))
    txid = (
        pl.when(pl.col("write") & role.is_in([AUDIT, DUR_EXEC]))
        .then(pl.col("xid").cast(pl.String))
        .otherwise(pl.lit("0"))
    )
    return pl.concat_str(
        pl.lit('{"timestamp":"'), S.timestamp(pl.col("t")), pl.lit('"'), "a", pl.col("line_num").cast(pl.String),
        pl.lit(',"ps":"'), "ps", pl.lit('","session_start":"'), "ss", pl.lit('","vxid":"'), "vb", pl.lit("/"), lxid,
        pl.lit('","txid":'), txid, pl.lit(',"error_severity":"'), "severity", pl.lit('"'), "pre",
        pl.lit(',"message":"'), "p0", v1, "p1", v2, "p2", v3, pl.lit('"'), "q0", post, "q1", "c",
    )  # fmt: skip
