"""A day's statements as MariaDB 10.11 writes them: its ``server_audit`` log
(``server_audit_events = CONNECT,QUERY,TABLE``) and its slow query log
(``long_query_time = 0``, ``log_slow_verbosity = query_plan``).

Shapes are those of the real server's output (``tests/fixtures/reference/mariadb10.11``
and ``tests/fixtures/mariadb-simulate``):

* audit log: ``YYYYMMDD HH:MM:SS,serverhost,user,host,connection id,query id,operation,
  database,object,retcode``, local time (the server runs with ``TZ=UTC``); a session's
  ``CONNECT`` (``FAILED_CONNECT`` with 1045 for a refused login) and ``DISCONNECT``; per
  statement its TABLE records (empty retcode), then its ``QUERY`` record with the text in
  single quotes (``\\'``, ``\\\\``, ``\\n``, ``\\r``, ``\\t`` escaped) and the error
  number, when it ends; query ids count up server-wide.
* slow log: per statement, when it ends, ``# Time:`` (only when the second changed),
  ``# User@Host: user[user] @  [ip]``, ``# Thread_id: ... Schema: ... QC_hit: No``,
  ``# Query_time/Lock_time/Rows_sent/Rows_examined``, ``# Rows_affected/Bytes_sent``,
  the query-plan lines of full scans (and ``# Tmp_tables`` of a GROUP BY), ``use `db`;``
  when the database differs from the record before's, ``SET timestamp=<start>;`` and the
  text with a ``;``. Failed statements are there too, with ``Rows_sent: 0``.

Sessions and statement times are the jsonlog's (:mod:`detector.simulate.lines` and
:mod:`detector.simulate.sessions` with the same random draws), so both renderings of a
seed hold the same statements at the same microseconds. Connection and query ids carry
over from one day to the next (:class:`Counters`), as on a server that keeps running.
Whole days are rendered as Polars columns; no Python loop runs per line.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from detector.simulate.dialect import ER_ACCESS_DENIED, Dialect

SERVER_HOST: Final = "db1"
# What the server writes at the top of a slow log it opens (real 10.11 output with
# slow_query_log = ON in my.cnf: the version then ends in -log)
SLOW_HEADER: Final = (
    b"/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n"
    b"Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\n"
    b"Time\t\t    Id Command\tArgument\n"
)
PIECE_GAP_US: Final = 12  # between the statements mariadb-dump sends for one table


@dataclass
class Counters:
    """Connection (thread) and query ids, server-wide: the next of each."""

    thread: int = 31
    query: int = 120


def render_day(
    st: pl.DataFrame,
    sessions: pl.DataFrame,
    dialect: Dialect,
    rng: np.random.Generator,
    counters: Counters,
) -> tuple[bytes, bytes, int, pl.DataFrame]:
    """The day's audit log and slow log (newline-terminated), their line count, and per
    account what a reader of both logs should count (:func:`counted`), from its
    statements and sessions (:func:`detector.simulate.lines.day_statements`)."""
    sessions = _sessions(sessions, st, dialect, counters)
    pieces = _pieces(st, sessions, dialect, rng, counters)
    audit = _audit(pieces, sessions)
    slow = _slow(pieces)
    out_audit, out_slow = io.BytesIO(), io.BytesIO()
    audit.write_csv(out_audit, include_header=False, quote_style="never")
    slow.write_csv(out_slow, include_header=False, quote_style="never")
    slow_bytes = out_slow.getvalue()
    n_lines = audit.height + slow_bytes.count(b"\n")
    return out_audit.getvalue(), slow_bytes, n_lines, counted(pieces, sessions)


def counted(pieces: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Per account (``account``), what both logs hold, as ``totals.csv`` counts it
    (:mod:`detector.simulate.truth`): ``events``, one per MariaDB statement (each of
    mariadb-dump's) and refused login; ``rows_read``/``rows_written``, the rows of READ
    and WRITE statements that ran (``Rows_sent``; ``Rows_affected`` for writes);
    ``exports``, mariadb-dump's table reads and ``INTO OUTFILE``; ``failed``."""
    failed = pl.col("error") != 0
    ran_rows = pl.when(failed).then(0).otherwise(pl.col("rows"))
    statements = pieces.group_by(pl.col("user").alias("account")).agg(
        pl.len().alias("events"),
        ran_rows.filter(pl.col("cls") == "READ").sum().alias("rows_read"),
        ran_rows.filter(pl.col("cls") == "WRITE").sum().alias("rows_written"),
        pl.col("export").sum().alias("exports"),
        failed.sum().alias("failed"),
    )
    refused = (
        sessions.filter(pl.col("login_fail"))
        .group_by(pl.col("user").alias("account"))
        .agg(pl.len().alias("events"), pl.len().alias("failed"))
    )
    return (
        pl.concat([statements, refused], how="diagonal_relaxed")
        .group_by("account")
        .agg(pl.all().fill_null(0).sum().cast(pl.Int64))
    )


def _sessions(
    sessions: pl.DataFrame, st: pl.DataFrame, dialect: Dialect, counters: Counters
) -> pl.DataFrame:
    """Sessions with their connection id (in order of connection) and database: the
    schema of their first statement's first table ("" for dumps and refused logins,
    which connect without one)."""
    schema = dict(enumerate(dialect.schema))
    first = st.group_by("sess").agg(pl.col("combo").sort_by("t").first())
    sessions = (
        sessions.join(first, on="sess", how="left")
        .with_columns(pl.col("combo").replace_strict(schema, return_dtype=pl.String).alias("db"))
        .sort("conn", "sess")
        .with_columns((counters.thread + pl.int_range(pl.len())).alias("thread"))
        .with_columns(
            pl.when(pl.col("dump") | pl.col("login_fail"))
            .then(pl.lit(""))
            .otherwise(pl.col("db").fill_null(""))
            .alias("db")
        )
    )
    counters.thread += sessions.height
    return sessions.select("sess", "conn", "end", "user", "host", "login_fail", "thread", "db")


def _pieces(
    st: pl.DataFrame,
    sessions: pl.DataFrame,
    dialect: Dialect,
    rng: np.random.Generator,
    counters: Counters,
) -> pl.DataFrame:
    """One row per MariaDB statement, in the order the server finishes them, with its
    query id, times (``t`` its end, ``start``, microseconds), rows and text."""
    combo = st["combo"].to_numpy()
    count = dialect.n_pieces[combo]
    which = np.repeat(np.arange(st.height), count)
    k = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    piece = dialect.piece_offset[combo][which] + k
    main_k = dialect.main[combo][which]
    t = st["t"].to_numpy()[which]
    dur = st["dur"].to_numpy()[which]
    # mariadb-dump's other statements for a table run just before and after its SELECT
    t = np.where(k < main_k, t - dur - PIECE_GAP_US * (main_k - k), t + PIECE_GAP_US * (k - main_k))
    frame = pl.concat(
        [
            pl.DataFrame({"t": t, "k": k, "dur": dur, "lock": rng.integers(30, 130, len(t)),
                          "small": rng.integers(3, 300, len(t))}),
            st.select("sess", "n", "rows")[which],
            dialect.pieces[piece],
        ],
        how="horizontal",
    )  # fmt: skip
    frame = frame.join(
        sessions.select("sess", "thread", "user", "host", "db"), on="sess", maintain_order="left"
    ).sort("t", "thread", "k")
    main = pl.col("main")
    frame = frame.with_columns(
        (counters.query + pl.int_range(pl.len())).alias("qid"),
        pl.coalesce("piece_db", "db").alias("db"),
        pl.when(main).then("dur").otherwise("small").alias("dur"),
        pl.when(main).then("rows").otherwise("fixed_rows").alias("rows"),
        pl.when(pl.col("has_n"))
        .then(pl.col("head") + pl.col("n").cast(pl.String) + pl.col("tail"))
        .otherwise(pl.col("head"))
        .alias("text"),
    ).with_columns((pl.col("t") - pl.col("dur")).alias("start"))
    counters.query += frame.height
    out: pl.DataFrame = frame
    return out


def _escaped(text: pl.Expr) -> pl.Expr:
    """A QUERY record's object: the text in single quotes, escaped as server_audit does."""
    inner = (
        text.str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all("'", "\\'", literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all("\r", "\\r", literal=True)
        .str.replace_all("\t", "\\t", literal=True)
    )
    return pl.lit("'") + inner + pl.lit("'")


def _audit_time(us: pl.Expr) -> pl.Expr:
    return pl.from_epoch(us, "us").dt.strftime("%Y%m%d %H:%M:%S")


def _audit(pieces: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """The audit log's lines in the order the server writes them: ``line``."""

    def record(op: pl.Expr, db: pl.Expr, obj: pl.Expr, rc: pl.Expr, qid: pl.Expr) -> pl.Expr:
        return pl.concat_str(
            _audit_time(pl.col("t")), pl.lit(f",{SERVER_HOST},"), "user", pl.lit(","), "host",
            pl.lit(","), pl.col("thread").cast(pl.String), pl.lit(","), qid.cast(pl.String),
            pl.lit(","), op, pl.lit(","), db, pl.lit(","), obj, pl.lit(","), rc,
        )  # fmt: skip

    tables = (
        pieces.filter(pl.col("tables") != "")
        .select("t", "thread", "user", "host", "qid", "k", pl.col("tables").str.split("\n"))
        .explode("tables")
        .with_columns(pl.col("tables").str.split_exact(",", 2).alias("r"))
        .unnest("r")
        .select(
            "t", "thread", "k", pl.int_range(pl.len()).over("qid").alias("seq"),
            record(pl.col("field_0"), pl.col("field_1"), pl.col("field_2"), pl.lit(""),
                   pl.col("qid")).alias("line"),
        )
    )  # fmt: skip
    queries = pieces.select(
        "t", "thread", "k", pl.lit(1_000, pl.Int64).alias("seq"),
        record(pl.lit("QUERY"), pl.col("db"), _escaped(pl.col("text")),
               pl.col("error").cast(pl.String), pl.col("qid")).alias("line"),
    )  # fmt: skip
    last_db = pieces.group_by("thread").agg(pl.col("db").last().alias("last_db"))
    s = sessions.join(last_db, on="thread", how="left").with_columns(
        pl.coalesce("last_db", "db").alias("last_db")
    )
    ok, failed = s.filter(~pl.col("login_fail")), s.filter(pl.col("login_fail"))
    zero = pl.lit(0)

    def connection(
        frame: pl.DataFrame, at: str, seq: int, op: str, db: str, rc: str
    ) -> pl.DataFrame:
        return frame.with_columns(pl.col(at).alias("t")).select(
            "t", "thread", pl.lit(-1, pl.Int64).alias("k"), pl.lit(seq, pl.Int64).alias("seq"),
            record(pl.lit(op), pl.col(db) if db else pl.lit(""), pl.lit(""), pl.lit(rc), zero)
            .alias("line"),
        )  # fmt: skip

    parts = [
        tables.with_columns(pl.col("seq").cast(pl.Int64)),
        queries,
        connection(ok, "conn", 0, "CONNECT", "db", "0"),
        connection(ok, "end", 2_000, "DISCONNECT", "last_db", "0"),
        connection(failed, "conn", 0, "FAILED_CONNECT", "", str(ER_ACCESS_DENIED)),
        connection(failed, "conn", 2_000, "DISCONNECT", "", "0"),
    ]
    return pl.concat(parts).sort("t", "thread", "k", "seq").select("line")


def _seconds(us: pl.Expr) -> pl.Expr:
    """Microseconds as seconds with six decimals, as the slow log prints times."""
    return pl.concat_str(
        (us // 1_000_000).cast(pl.String),
        pl.lit("."),
        (us % 1_000_000).cast(pl.String).str.zfill(6),
    )


def _slow(pieces: pl.DataFrame) -> pl.DataFrame:
    """The slow log's records, one string each (lines joined by newlines): ``line``."""
    write, failed = pl.col("write"), pl.col("error") != 0
    rows = pl.col("rows")
    sent = pl.when(failed | write).then(0).otherwise(rows)
    examined = pl.when(failed).then(0).otherwise(rows)
    width = pl.col("width").cast(pl.Int64)
    # INTO OUTFILE: the rows written to the file are both sent and affected (real output)
    outfile = pl.col("text").str.contains(" INTO OUTFILE ", literal=True)
    affected = pl.when((write | outfile) & ~failed).then(rows).otherwise(0)
    bytes_sent = (
        pl.when(failed).then(86)
        .when(outfile).then(13)
        .when(write & pl.col("text").str.starts_with("UPDATE")).then(52)
        .when(write | (rows == 0) & ~pl.col("text").str.starts_with("SELECT")).then(11)
        .otherwise(40 + 26 * width + rows * (6 + 10 * width))
    )  # fmt: skip
    # locks are taken within the statement's time
    lock = (
        pl.when(pl.col("tables") != "")
        .then(pl.min_horizontal("lock", pl.col("dur") // 2))
        .otherwise(0)
    )
    second = pl.col("t") // 1_000_000
    new_second = second != second.shift(1)
    new_db = (pl.col("db") != pl.col("db").shift(1).fill_null("")) & (pl.col("db") != "")
    plan = pl.col("plan")
    grouped = plan == 2
    yes_no = pl.when(grouped).then(pl.lit("Yes")).otherwise(pl.lit("No"))
    record = pl.concat_str(
        pl.when(new_second.fill_null(True))
        .then(pl.lit("# Time: ") + pl.from_epoch("t", "us").dt.strftime("%y%m%d %k:%M:%S") + "\n")
        .otherwise(pl.lit("")),
        pl.lit("# User@Host: "), "user", pl.lit("["), "user", pl.lit("] @  ["), "host", pl.lit("]\n"),
        pl.lit("# Thread_id: "), pl.col("thread").cast(pl.String), pl.lit("  Schema: "), "db",
        pl.lit("  QC_hit: No\n# Query_time: "), _seconds(pl.col("dur")),
        pl.lit("  Lock_time: "), _seconds(lock), pl.lit("  Rows_sent: "), sent.cast(pl.String),
        pl.lit("  Rows_examined: "), examined.cast(pl.String),
        pl.lit("\n# Rows_affected: "), affected.cast(pl.String),
        pl.lit("  Bytes_sent: "), bytes_sent.cast(pl.String), pl.lit("\n"),
        pl.when(grouped)
        .then(pl.lit("# Tmp_tables: 1  Tmp_disk_tables: 0  Tmp_table_sizes: 1572800\n"))
        .otherwise(pl.lit("")),
        pl.when(plan > 0)
        .then(pl.lit("# Full_scan: Yes  Full_join: No  Tmp_table: ") + yes_no
              + pl.lit("  Tmp_table_on_disk: No\n# Filesort: ") + yes_no
              + pl.lit("  Filesort_on_disk: No  Merge_passes: 0  Priority_queue: No\n"))
        .otherwise(pl.lit("")),
        pl.when(new_db).then(pl.lit("use `") + pl.col("db") + pl.lit("`;\n")).otherwise(pl.lit("")),
        pl.lit("SET timestamp="), (pl.col("start") // 1_000_000).cast(pl.String),
        pl.lit(";\n"), "text", pl.lit(";"),
    )  # fmt: skip
    return pieces.select(record.alias("line"))
