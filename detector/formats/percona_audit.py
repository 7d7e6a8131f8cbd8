"""Percona Server's ``audit_log`` plugin with ``audit_log_format = JSON`` (5.7, 8.0, 8.4).

One record per line, for example (Percona's manual)::

    {"audit_record":{"name":"Query","record":"13149_2021-06-30T15:03:11",
     "timestamp":"2021-06-30T15:07:58 UTC","command_class":"show_databases",
     "connection_id":"2","status":0,"sqltext":"show databases",
     "user":"root[root] @ localhost []","host":"localhost","os_user":"","ip":"","db":""}}

``Query`` and ``Execute`` records are statements (ERROR when ``status`` != 0); a
``Connect`` with a non-zero ``status`` is a refused login; ``Connect``, ``Quit``,
``Audit``, ``Prepare`` ... are context. The log has no volume and names no tables: rows
and bytes are null, objects come from the statement text. Timestamps are UTC.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb
from detector.formats.base import Parsed
from detector.formats.jsonlines import decode_lines
from detector.formats.mysql_audit import DB_SYSTEM, account_name, number
from detector.reader import Chunk
from detector.rejects import Reason, rejects, split_too_long, with_raw_lines

NAME: Final = "percona-audit"
_FIELDS: Final = (
    "name", "record", "timestamp", "command_class", "connection_id", "status", "sqltext",
    "user", "priv_user", "host", "ip", "db",
)  # fmt: skip
RECORD: Final = pl.Struct({"audit_record": pl.Struct(dict.fromkeys(_FIELDS, pl.String))})
_HEAD: Final = re.compile(r'^\s*\{\s*"audit_record"\s*:\s*\{')
_STATEMENTS: Final = ["Query", "Execute"]


class PerconaAudit:
    """``--format percona-audit``."""

    name = NAME

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        return bool(lines) and all(_HEAD.match(s) for s in lines[:5])

    def parse(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines
        lines, too_long = split_too_long(lines)
        decoded, bad = decode_lines(lines, RECORD)
        records = decoded.select("line_no", pl.col("audit_record").struct.unnest())
        lacking = pl.col("name").is_null() | pl.col("timestamp").is_null()
        no_fields = rejects(records, lacking, Reason.NOT_AUDIT)
        stamp = pl.col("timestamp")
        records = records.filter(~lacking).with_columns(
            pl.coalesce(
                stamp.str.to_datetime(f, time_unit="us", strict=False)
                for f in ("%Y-%m-%dT%H:%M:%S UTC", "%Y-%m-%dT%H:%M:%SZ")
            )
            .dt.replace_time_zone("UTC")
            .alias(S.TIME)
        )
        bad_time = rejects(records, pl.col(S.TIME).is_null(), Reason.BAD_FIELD)
        records = _who(records.filter(pl.col(S.TIME).is_not_null()))
        status = number(pl.col("status")).fill_null(0)
        is_statement = pl.col("name").is_in(_STATEMENTS) & (
            pl.col("sqltext").str.strip_chars() != ""
        )
        refused = (pl.col("name") == "Connect") & (status != 0)
        events = pl.concat(
            [_statements(records.filter(is_statement)), _refused(records.filter(refused))],
            how="diagonal_relaxed",
        ).with_columns(
            pl.lit(DB_SYSTEM).alias(S.DB_SYSTEM), pl.lit(self.name).alias(S.SOURCE_FORMAT)
        )
        found = pl.concat([too_long, bad, no_fields, bad_time]).sort("line_no")
        return Parsed(
            events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=with_raw_lines(found, lambda: chunk.lines),
            context=records.filter(~is_statement.fill_null(False) & ~refused).height,
        )


def _who(records: pl.DataFrame) -> pl.DataFrame:
    # Connection records name the account in ``priv_user`` (empty when the login failed:
    # then the name the client gave); statements in ``user`` as ``priv_user[user] @ host [ip]``.
    return records.with_columns(
        pl.coalesce(account_name(pl.col("priv_user")), account_name(pl.col("user"))).alias(
            S.ACCOUNT
        ),
        pl.coalesce(pl.col("ip").replace("", None), pl.col("host").replace("", None)).alias(
            S.CLIENT_IP
        ),
        pl.col("db").replace("", None).alias(S.DATABASE),
        pl.col("connection_id").alias(S.SESSION),
    )


def _statements(records: pl.DataFrame) -> pl.DataFrame:
    query = pl.col("sqltext")
    failed = number(pl.col("status")).fill_null(0) != 0
    events = records.with_columns(
        query.alias(S.QUERY),
        *mariadb.outcome(query, failed, pl.col("command_class").str.to_uppercase()),
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.col("record").alias(S.STATEMENT_ID),  # "<sequence>_<file opened>": unique in the file
    )
    return mariadb.with_relations(events, pl.col(S.CLASS).is_in(["READ", "WRITE", "ERROR"]))


def _refused(records: pl.DataFrame) -> pl.DataFrame:
    return records.with_columns(
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.lit("CONNECT").alias(S.CLASS),
        pl.lit("LOGIN").alias(S.COMMAND),
        ("login refused, error " + number(pl.col("status")).cast(pl.String)).alias(S.QUERY),
        pl.lit(False).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
    )
