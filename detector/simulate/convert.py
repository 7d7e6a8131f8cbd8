"""The simulator's jsonlog lines as PostgreSQL 15 writes the same records to csvlog or to
stderr (``log_line_prefix = '%m [%p] %q%u@%d %r %a '``).

Shapes are those of the real server's output in ``tests/fixtures/reference``: csvlog's 26
columns, text quoted (``""`` inside) when the server quotes it, ``00000`` as the state of
a LOG line; stderr's ``[unknown]`` for a user, database or application not known yet, an
error's position as `` at character N``, its DETAIL and STATEMENT as lines of their own
with the same prefix, and continuation lines of a multi-line message indented by a tab.
Whole blocks at a time, as Polars columns.
"""

from __future__ import annotations

import io
from typing import Final

import polars as pl

FORMATS: Final = ("jsonlog", "csvlog", "stderr")
SUFFIX: Final = {"jsonlog": ".json", "csvlog": ".csv", "stderr": ".log"}
STDERR_PREFIX: Final = "%m [%p] %q%u@%d %r %a "

_TEXT: Final = (
    "timestamp", "user", "dbname", "remote_host", "session_id", "ps", "session_start",
    "vxid", "error_severity", "state_code", "message", "detail", "statement",
    "application_name", "backend_type",
)  # fmt: skip
_INT: Final = ("pid", "remote_port", "line_num", "txid", "cursor_position", "query_id")
SCHEMA: Final = pl.Schema({**dict.fromkeys(_TEXT, pl.String()), **dict.fromkeys(_INT, pl.Int64())})


def render(block: bytes, fmt: str) -> bytes:
    """``block`` (newline-terminated jsonlog lines) in ``fmt``; jsonlog as it is."""
    if fmt == "jsonlog":
        return block
    records = pl.read_ndjson(io.BytesIO(block), schema=SCHEMA)
    text = _csvlog() if fmt == "csvlog" else _stderr()
    out = io.BytesIO()
    records.select(text.alias("line")).write_csv(out, include_header=False, quote_style="never")
    return out.getvalue()


def _quoted(value: pl.Expr) -> pl.Expr:
    return pl.lit('"') + value.str.replace_all('"', '""', literal=True) + pl.lit('"')


def _csvlog() -> pl.Expr:
    def maybe(name: str) -> pl.Expr:  # quoted when there is a value, empty when not
        return _quoted(pl.col(name)).fill_null("")

    def plain(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String).fill_null("")

    host = pl.col("remote_host") + ":" + pl.col("remote_port").cast(pl.String)
    columns = [
        plain("timestamp"), maybe("user"), maybe("dbname"), plain("pid"),
        _quoted(host).fill_null(""), plain("session_id"), plain("line_num"), maybe("ps"),
        plain("session_start"), plain("vxid"), plain("txid"), plain("error_severity"),
        pl.col("state_code").fill_null("00000"), maybe("message"), maybe("detail"),
        pl.lit(""), pl.lit(""), pl.lit(""), pl.lit(""),  # hint, internal query and position, context
        maybe("statement"), plain("cursor_position"), pl.lit(""),  # location
        _quoted(pl.col("application_name").fill_null("")), maybe("backend_type"),
        pl.lit(""), plain("query_id"),  # leader_pid
    ]  # fmt: skip
    return pl.concat_str(columns, separator=",")


def _stderr() -> pl.Expr:
    def known(name: str) -> pl.Expr:
        return pl.col(name).fill_null("[unknown]")

    session = (
        pl.lit(" ") + known("user") + "@" + known("dbname") + " " + pl.col("remote_host")
        + "(" + pl.col("remote_port").cast(pl.String) + ") " + known("application_name")
    )  # fmt: skip
    # %q: a process without a session (the postmaster, background workers) stops there
    prefix = (
        pl.col("timestamp") + " [" + pl.col("pid").cast(pl.String) + "]"
        + session.fill_null("") + " "
    )  # fmt: skip

    def line(label: pl.Expr, text: pl.Expr) -> pl.Expr:
        return prefix + label + ":  " + text.str.replace_all("\n", "\n\t", literal=True)

    at = pl.lit(" at character ") + pl.col("cursor_position").cast(pl.String)
    message = pl.col("message") + at.fill_null("")
    lines = pl.concat_list(
        line(pl.col("error_severity"), message),
        line(pl.lit("DETAIL"), pl.col("detail")),
        line(pl.lit("STATEMENT"), pl.col("statement")),
    )
    return lines.list.drop_nulls().list.join("\n")
