"""MariaDB's slow query log, read at ``long_query_time = 0`` as a log of every statement.

A record (real 10.11 output, ``log_slow_verbosity = query_plan``)::

    # Time: 261128  6:56:16                 <- only when the second changed
    # User@Host: bob[bob] @  [127.0.0.1]
    # Thread_id: 7  Schema: shop  QC_hit: No
    # Query_time: 0.001228  Lock_time: 0.000072  Rows_sent: 5000  Rows_examined: 5000
    # Rows_affected: 0  Bytes_sent: 267979
    # Full_scan: Yes  Full_join: No  ...     <- query_plan lines, ignored
    use `shop`;                              <- only when the database changed
    SET timestamp=1795848976;
    SELECT * FROM customers;                 <- may span lines; the server adds the ';'

Each record is one event: rows (``Rows_sent``; ``Rows_affected`` for writes), bytes
(``Bytes_sent``: what the server sent the client), duration (``Query_time``), account,
client, database, text, and the tables the text names. ``SET timestamp`` is the
statement's start as a Unix time, so times are exact UTC. The log does not say whether
a statement failed, nor anything of refused logins: statements count as run.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb
from detector.formats.base import Parsed
from detector.reader import Chunk
from detector.rejects import Reason, rejects, split_too_long

USER_HOST: Final = "# User@Host: "
# The server writes a statement's text raw, newlines and all, so a string literal can
# hold lines that look like a record's header (``'\n# User@Host: app[app] @ ...``). It
# always ends the text with ``;`` (adding one if the statement had none), so a record
# starts only at a ``# Time:`` or ``# User@Host:`` line that follows a line ending in
# ``;``, the server's start-up lines, or a ``# Time:`` line that itself starts one
# (:func:`_record_starts`). Chunks are cut only there too.
RECORD_START: Final = re.compile(rb"(?<=;\n)# (?:Time|User@Host): ")
_TIME: Final = r"^# Time: \d{6} [ \d]\d:\d\d:\d\d$"
# What the server writes when it starts (or reopens the log): its version, ports, and a
# column header.
_STARTUP: Final = (
    r"^(?:\S+, Version: .* started with:$"
    r"|Tcp port: \d+  Unix socket: .*$"
    r"|Time\s+Id\s+Command\s+Argument$)"
)
# A row count the server writes when it has none: 10.11 logs ``Rows_sent: 1099511627775``
# (2**40 - 1) for a SELECT calling a stored function in its select list, whose client got
# 40 rows. No statement sends or changes that many rows; larger counts (``2**64 - 1``)
# do not fit an Int64 and are unknown already.
IMPOSSIBLE_ROWS: Final = 2**40 - 1
# ``priv_user[user]``, everything before `` @ host [ip]`` (names may hold brackets).
_ACCOUNTS: Final = r"(?m)^# User@Host: (.*)\] @ \S* ?\[[^\]\n]*\]$"
_HEADER_FIELDS: Final = {
    "user": r"(?m)^# User@Host: [^\[\n]*\[([^\]\n]*)\] @ ",
    "accounts": _ACCOUNTS,
    "host": r"(?m)^# User@Host: [^\n]* @ (\S*) \[",
    "ip": r"(?m)^# User@Host: [^\n]* @ \S* ?\[([^\]\n]*)\]",
    "thread": r"(?m)^# Thread_id: (\d+)",
    "schema": r"(?m)^# Thread_id: \d+\s+Schema: (\S*)",
    "query_time": r"(?m)^# Query_time: ([\d.]+)",
    "rows_sent": r"(?m)Rows_sent: (\d+)",
    "rows_affected": r"(?m)Rows_affected: (\d+)",
    "bytes_sent": r"(?m)Bytes_sent: (\d+)",
    "use": r"(?m)^use `?((?:[^`\n]|``)+?)`?;$",
}


class MariadbSlow:
    """``--format mariadb-slow``."""

    name = mariadb.SLOW
    record_start = RECORD_START

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        if not lines:
            return False
        starts_like = re.match(r"\S+, Version: .*(?:MariaDB|MySQL).* started with:$", lines[0])
        if not (starts_like or lines[0].startswith(("# Time: ", USER_HOST))):
            return False
        return any(s.startswith(USER_HOST) for s in lines) or (
            starts_like is not None and any(re.match(r"Time\s+Id\s+Command", s) for s in lines)
        )

    def parse(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines
        line = pl.col("line")
        lines, too_long = split_too_long(lines)
        start, time_line = _record_starts(line)
        marker = line.str.contains(mariadb.MARKER).cast(pl.Int64)
        between = time_line | line.str.contains(_STARTUP) | (line.str.strip_chars() == "")
        lines = lines.with_columns(start.cum_sum().alias("_rec")).with_columns(
            (marker.cum_sum().over("_rec") - marker).alias("_seen"), marker.alias("_m")
        )
        # Lines before the chunk's first record: only the between-record kinds belong.
        outside = lines.filter(pl.col("_rec") == 0)
        unrecognised = rejects(outside, ~between, Reason.UNRECOGNISED)
        inside = lines.filter(pl.col("_rec") > 0)
        is_statement = (pl.col("_seen") >= 1) & ~between
        is_header = (pl.col("_seen") == 0) & (pl.col("_m") == 0)
        recs = inside.group_by("_rec", maintain_order=True).agg(
            pl.col("line_no").first(),
            pl.col("line").filter(is_header).str.join("\n").alias("_head"),
            pl.col("line")
            .filter((pl.col("_m") == 1) & (pl.col("_seen") == 0))
            .first()
            .alias("_marker"),
            pl.col("line").filter(is_statement).str.join("\n").alias("_text"),
            pl.col("line_no").alias("_lines"),
        )
        head = pl.col("_head")
        recs = recs.with_columns(
            head.str.extract(pattern, 1).alias(f"_{name}")
            for name, pattern in _HEADER_FIELDS.items()
        ).with_columns(
            pl.col("_marker")
            .str.extract(r"timestamp=(\d+)", 1)
            .cast(pl.Int64, strict=False)
            .alias("_epoch"),
        )
        complete = (
            pl.col("_epoch").is_not_null()
            & (pl.col("_user").is_not_null() | pl.col("_accounts").is_not_null())
            & pl.col("_thread").is_not_null()
            & pl.col("_query_time").is_not_null()
            & (pl.col("_text") != "")
        )
        cut = recs.filter(~complete).select(pl.col("_lines").alias("line_no")).explode("line_no")
        truncated = rejects(
            inside.join(cut, on="line_no", how="semi"), pl.lit(True), Reason.TRUNCATED
        )
        events = _events(recs.filter(complete)).with_columns(
            pl.lit(mariadb.DB_SYSTEM).alias(S.DB_SYSTEM), pl.lit(self.name).alias(S.SOURCE_FORMAT)
        )
        found = pl.concat([too_long, unrecognised, truncated]).sort("line_no")
        between_lines = lines.filter(between & ((pl.col("_rec") == 0) | (pl.col("_seen") >= 1)))
        return Parsed(
            events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=found,
            context=between_lines.height,
        )


def _record_starts(line: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The ``# User@Host:`` lines that start a record, and the ``# Time:`` lines that
    head one, in a chunk's lines (cut only before such lines: :data:`RECORD_START`).

    A header line counts only after the end of the record before it (a line ending in
    ``;``: the server ends every statement's text with one), after the server's start-up
    lines, or first in the chunk; a ``# User@Host:`` line may follow a ``# Time:`` line
    that does. Anything else that looks like a header (written in a string literal with
    newlines, as in ``tests/fixtures/mariadb-forged``) is the statement's text. A literal
    holding ``;`` right before such lines still passes this test; with the audit log,
    which escapes newlines, :func:`detector.formats.mariadb.join_slow` drops what it
    forged.
    """
    before = line.shift(1)
    after_end = (
        before.is_null() | before.str.ends_with(";") | before.str.contains(_STARTUP)
    ).fill_null(True)
    time_line = line.str.contains(_TIME) & after_end
    after_time = before.str.contains(_TIME) & after_end.shift(1).fill_null(True)
    start = line.str.starts_with(USER_HOST) & (after_end | after_time.fill_null(False))
    return start, time_line


def _user(accounts: pl.Expr, simple: pl.Expr) -> pl.Expr:
    """The ``user`` of ``priv_user[user]``: the second half when both halves are the same
    name (``br[a]ck[br[a]ck``: brackets in it are the name's), else what is inside the
    brackets (``simple``; a ``priv_user`` that differs is the account the login matched,
    such as ``''`` for an anonymous one)."""
    n = (accounts.str.len_chars() - 1) // 2
    second = accounts.str.slice(n + 1)
    same = (accounts.str.slice(0, n) == second) & (accounts.str.slice(n, 1) == "[")
    return pl.when(same.fill_null(False)).then(second).otherwise(simple)


def _count(field: pl.Expr) -> pl.Expr:
    """A ``Rows_sent``/``Rows_affected`` field as a count; null (unknown) when the server
    wrote an impossible one (:data:`IMPOSSIBLE_ROWS`), never a volume."""
    n = field.cast(pl.Int64, strict=False)
    return pl.when(n < IMPOSSIBLE_ROWS).then(n)


def _events(recs: pl.DataFrame) -> pl.DataFrame:
    text = mariadb.mask_passwords(pl.col("_text").str.strip_suffix(";"))
    database = pl.coalesce(
        pl.col("_schema").replace("", None), pl.col("_use").str.replace_all("``", "`")
    )
    events = recs.select(
        pl.from_epoch("_epoch", time_unit="s").dt.replace_time_zone("UTC").alias(S.TIME),
        _user(pl.col("_accounts"), pl.col("_user")).replace("", None).alias(S.ACCOUNT),
        pl.coalesce(pl.col("_ip").replace("", None), pl.col("_host").replace("", None)).alias(
            S.CLIENT_IP
        ),
        database.alias(S.DATABASE),
        text.alias(S.QUERY),
        _count(pl.col("_rows_sent")).alias("_sent"),
        _count(pl.col("_rows_affected")).alias("_affected"),
        pl.col("_bytes_sent").cast(pl.Int64, strict=False).alias(S.BYTES),
        (pl.col("_query_time").cast(pl.Float64, strict=False) * 1000).alias(S.DURATION_MS),
        pl.col("_thread").alias(S.SESSION),
    )
    query = pl.col(S.QUERY)
    events = events.with_columns(
        mariadb.statement_class(query).alias(S.CLASS),
        mariadb.first_word(query).alias(S.COMMAND),
        mariadb.is_export(query).alias(S.EXPORT),
        pl.lit(True).alias(S.SUCCESS),
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
    )
    events = mariadb.with_relations(events, pl.lit(True))
    # A CALL that sent nothing but changed rows: its procedure's last statement changed
    # them, or wrote them to a file (INTO OUTFILE inside a procedure logs the rows written
    # as the CALL's Rows_affected); either way a write of them, until settle() sees an
    # export among the procedure's statements in the audit log.
    wrote = (
        (pl.col(S.COMMAND) == "CALL")
        & (pl.col("_sent") == 0).fill_null(False)
        & (pl.col("_affected") > 0).fill_null(False)
    )
    # ``DELETE ... RETURNING`` and ``INSERT``/``REPLACE ... SELECT ... RETURNING`` send the
    # rows they changed (10.11: as Rows_sent, with Rows_affected 0): a read of them. An
    # ``INSERT ... VALUES ... RETURNING id`` sends back what the client sent.
    own_values = pl.col(S.COMMAND).is_in(["INSERT", "REPLACE"]) & ~query.str.contains(
        r"(?i)\bSELECT\b"
    )
    returned = (pl.col(S.CLASS) == "WRITE") & (pl.col("_sent") > 0).fill_null(False) & ~own_values
    events = events.with_columns(
        pl.when(wrote)
        .then(pl.lit("WRITE"))
        .when(returned)
        .then(pl.lit("READ"))
        .otherwise(pl.col(S.CLASS))
        .alias(S.CLASS)
    )
    written = pl.col(S.CLASS) == "WRITE"
    # INTO OUTFILE/DUMPFILE: the rows written to the file are Rows_affected (10.11: a
    # text-protocol SELECT logs them as Rows_sent too; through the binary protocol, or
    # run by EXECUTE IMMEDIATE, Rows_sent is 0; a DUMPFILE's one row is Rows_affected 1).
    to_file = mariadb.writes_file(query)
    events = events.with_columns(mariadb.nameless_export(query).alias("_nameless"))
    nameless = pl.col("_nameless")
    return events.with_columns(
        # (a row read out is a whole file, its size the Bytes_sent; a binary log
        # client's SET sends none of the stream it starts)
        pl.when(mariadb.handler_read(query) | nameless.is_not_null())
        .then(pl.lit(None, dtype=pl.Int64))
        .when(written)
        .then(pl.col("_affected"))
        .when(to_file)
        .then(pl.max_horizontal("_sent", "_affected"))
        .otherwise(pl.col("_sent"))
        .alias(S.ROWS),
        # (the binary log client's SET got an OK packet, not the stream)
        pl.when(nameless == mariadb.CLUSTER_BINLOG)
        .then(pl.lit(None, dtype=pl.Int64))
        .otherwise(pl.col(S.BYTES))
        .alias(S.BYTES),
    ).drop("_sent", "_affected", "_nameless")
