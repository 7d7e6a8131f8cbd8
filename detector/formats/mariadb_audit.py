"""MariaDB's ``server_audit`` plugin log (``server_audit_output_type = file``).

One line per record: ``timestamp,serverhost,username,host,connectionid,queryid,
operation,database,object,retcode``, for example (real 10.11 output)::

    20261128 06:56:10,vm,bob,127.0.0.1,4,6,READ,shop,customers,
    20261128 06:56:10,vm,bob,127.0.0.1,4,6,QUERY,shop,'SELECT * FROM customers',0

It is not CSV: a QUERY's text is in single quotes with ``'``, ``\\``, newline and
carriage return escaped as ``\\'``, ``\\\\``, ``\\n``, ``\\r``. From 12.0 the host may
be ``host:port``. The timestamp is the server's local time without a zone; it is read as
UTC here, and put right by the slow log's clock when both logs are read
(:func:`detector.formats.mariadb.audit_clock`).

A statement's TABLE records (READ, WRITE, CREATE, ALTER, DROP, RENAME) come before its
QUERY record with the same (connection, query id): they become one event with the
tables as its objects. CONNECT and DISCONNECT are context; FAILED_CONNECT (or a CONNECT
with a non-zero code) is a refused login. The log has no volume: rows and bytes are null.

A chunk (or a live read) may end between a statement's TABLE records and its QUERY
record, and a connection's CONNECT is usually in an earlier chunk than its statements:
:func:`rejoin` puts such a statement's pieces back together.
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

# The user name is written as it is, commas included (``zoë,1,127.0.0.1,10,37,READ,...``
# on 10.11): it is the shortest run of text after which the host, the two ids and the
# operation fit. Host names and addresses have no comma.
# A record from the server's name (a host name: no comma, no space) on, what the plugin
# sends to syslog (which times it): its fields up to the operation, and all of them.
RECORD_HEAD: Final = r"[^, ]*,.*?,[^,]*,\d+,\d+,[A-Z_]+,"
_HEAD: Final = r"\d{8} \d\d:\d\d:\d\d," + RECORD_HEAD
RECORD: Final = (
    r"(?P<server>[^, ]*),(?P<user>.*?),(?P<host>[^,]*),"
    r"(?P<conn>\d+),(?P<qid>\d+),(?P<op>[A-Z_]+),(?P<db>[^,]*),(?P<object>.*),(?P<rc>-?\d*)$"
)
LINE_RE: Final = r"^(?P<ts>\d{8} \d\d:\d\d:\d\d)," + RECORD
_QUOTED: Final = r"^'(?:[^'\\]|\\.)*'$"
TABLE_OPS: Final = ("READ", "WRITE", "CREATE", "ALTER", "DROP", "RENAME")
CONNECTION_OPS: Final = ("CONNECT", "DISCONNECT", "FAILED_CONNECT", "CHANGEUSER", "PROXY_CONNECT")
# Tables the server reads itself when it opens a table (engine-independent statistics):
# not what the statement asked for, unless its text names them.
_SERVER_READS: Final = ["mysql.table_stats", "mysql.column_stats", "mysql.index_stats"]
RECORD_START: Final = re.compile(rb"\d{8} ")
_LOGIN: Final = r"/(\d{8}T\d{6})$"  # the login time at the end of a session.uid


def bad_query() -> pl.Expr:
    """True for a QUERY record whose text is not closed: cut short."""
    return (pl.col("op") == "QUERY") & ~pl.col("object").str.contains(_QUOTED)


def unescape(quoted: pl.Expr) -> pl.Expr:
    """A quoted QUERY field's text: outer quotes removed, ``\\'``, ``\\n``, ``\\r``,
    ``\\t`` and ``\\\\`` undone (a backslash pair first, so ``\\\\n`` stays ``\\n``)."""
    inner = quoted.str.slice(1, quoted.str.len_chars() - 2)
    placeholder = "\x00"
    return (
        inner.str.replace_all(r"\\", placeholder, literal=True)
        .str.replace_all(r"\'", "'", literal=True)
        .str.replace_all(r"\n", "\n", literal=True)
        .str.replace_all(r"\r", "\r", literal=True)
        .str.replace_all(r"\t", "\t", literal=True)
        .str.replace_all(placeholder, "\\", literal=True)
    )


def client_host(host: pl.Expr) -> pl.Expr:
    """The client without the ``:port`` MariaDB 12 appends (``[v6]:port`` too); an
    unbracketed IPv6 address is left whole."""
    plain = host.str.extract(r"^([^:\[\]]+):\d+$", 1)
    bracketed = host.str.extract(r"^\[([^\]]+)\]:\d+$", 1)
    return pl.coalesce(plain, bracketed, host).replace("", None)


class MariadbAudit:
    """``--format mariadb-audit``: its times read in ``timezone`` (an IANA name, the
    server's own: ``--mariadb-timezone``), or as UTC."""

    name = mariadb.AUDIT
    record_start = RECORD_START

    def __init__(self, timezone: str | None = None) -> None:
        self.timezone = timezone

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        if not lines:
            return False
        hits = sum(1 for s in lines if re.match(_HEAD, s))
        return hits * 2 >= len(lines) and bool(re.match(_HEAD, lines[0]))

    def parse(self, chunk: Chunk) -> Parsed:
        lines, too_long = split_too_long(chunk.lines)
        records, found, others = self.records(lines, chunk)
        records = _sessions(records)
        statements = _statements(records)
        logins = _refused_logins(records)
        events = pl.concat([statements, logins], how="diagonal_relaxed").with_columns(
            pl.lit(mariadb.DB_SYSTEM).alias(S.DB_SYSTEM),
            pl.lit(mariadb.AUDIT).alias(S.SOURCE_FORMAT),
        )
        op = pl.col("op")
        other = ~op.is_in([*TABLE_OPS, "QUERY"]) & ~pl.col("line_no").is_in(
            logins["line_no"].implode()
        )
        return Parsed(
            events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=pl.concat([too_long, found]).sort("line_no"),
            context=records.filter(other).height + others,
        )

    def records(self, lines: pl.DataFrame, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """The records of ``lines`` (the chunk's, none too long) with their fields and
        ``time`` (UTC); the lines rejected; the count of lines that are no record and
        belong to no other log (none, in a file of the audit log's own)."""
        blank = pl.col("line").str.strip_chars() == ""
        fields = pl.col("line").str.extract_groups(LINE_RE)
        records = lines.filter(~blank).with_columns(fields.alias("_f")).unnest("_f")
        matched = pl.col("ts").is_not_null()
        # A line with a record's head but no ``,retcode`` end (or an unclosed query) was
        # cut short; anything else is not a line of this log.
        looks = pl.col("line").str.contains("^" + _HEAD)
        truncated = rejects(records, (~matched & looks) | (matched & bad_query()), Reason.TRUNCATED)
        unrecognised = rejects(records, ~matched & ~looks, Reason.UNRECOGNISED)
        records = records.filter(matched & ~bad_query())
        records = records.with_columns(
            local_to_utc(
                pl.col("ts").str.to_datetime("%Y%m%d %H:%M:%S", time_unit="us", strict=False),
                self.timezone,
            ).alias(S.TIME)
        )
        bad_time = rejects(records, pl.col(S.TIME).is_null(), Reason.BAD_FIELD)
        records = records.filter(pl.col(S.TIME).is_not_null())
        return records, pl.concat([truncated, unrecognised, bad_time]), 0


def _sessions(records: pl.DataFrame) -> pl.DataFrame:
    """``records`` with ``session.uid``: ``server/connection/login time``, or
    ``server/connection`` when the connection's CONNECT record is not in this chunk.

    Connection and query ids start again when the server restarts, so the time of the
    connection's CONNECT record tells two sessions apart where it is known.
    """
    login = pl.col("op").is_in(["CONNECT", "FAILED_CONNECT", "CHANGEUSER"])
    since = (
        pl.when(login)
        .then(pl.col("ts").str.replace(" ", "T", literal=True).str.replace_all(":", ""))
        .forward_fill()
        .over("server", "conn")
    )
    base = pl.col("server") + "/" + pl.col("conn")
    return records.with_columns(
        pl.when(since.is_not_null()).then(base + "/" + since).otherwise(base).alias(S.SESSION)
    )


def local_to_utc(local: pl.Expr, timezone: str | None) -> pl.Expr:
    """Times the server wrote by its clock, with no zone, on UTC: read in ``timezone``,
    or taken as UTC if it is None. ``local`` must be in the order the log has them.

    When summer time ends, an hour's times come twice: those after the clock went back
    (a time over a minute before one earlier in the read) are the second. A time
    in the hour skipped when it begins (a server not told of the change) is taken as
    the time it would be without the change."""
    if timezone is None:
        return local.dt.replace_time_zone("UTC")
    back = local < local.cum_max().shift(1) - pl.duration(minutes=1)
    repeated = back.fill_null(False).cast(pl.UInt32).cum_sum() > 0
    ambiguous = pl.when(repeated).then(pl.lit("latest")).otherwise(pl.lit("earliest"))
    hour = pl.duration(hours=1)
    zoned = local.dt.replace_time_zone(timezone, ambiguous=ambiguous, non_existent="null")
    skipped = (local - hour).dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    return pl.coalesce(zoned, skipped + hour).dt.convert_time_zone("UTC")


def connection(session: pl.Expr) -> pl.Expr:
    """A ``session.uid`` without its login time, which only the records parsed with
    their connection's CONNECT know: the server and connection id."""
    return session.str.replace(_LOGIN, "")


def rejoin(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with each statement of this log one event, however chunks or reads
    split its records: the pieces parsed apart (TABLE records without their QUERY, then
    the QUERY event) are merged into the QUERY event. Other rows are left as they are.

    A statement's pieces have the same server, connection and query id; the login time
    in ``session.uid`` is known only to a piece parsed with its connection's CONNECT.
    Query ids start again when the server restarts, so a statement ends with its QUERY
    piece, and a piece whose known login time differs from the one before starts
    another. The merged event is the QUERY piece (its time, text, class, outcome), with
    the session with its login time if a piece knew it, and the tables of every piece
    (less the server's own statistics reads, unless the text names them). Where the
    QUERY piece had no TABLE record of its own, its tables named in the text stay too
    (the same tables, but for names the server does not open, such as a CTE's).
    """
    session = pl.col(S.SESSION)
    rows = events.with_row_index("_r")
    pieces = rows.filter(mariadb.audit_statement()).with_columns(
        connection(session).alias("_conn"),
        session.str.extract(_LOGIN, 1).alias("_login"),
        pl.col(S.QUERY).is_not_null().alias("_text"),
    )
    key = ["_conn", S.STATEMENT_ID]
    if not pieces.select(pl.struct(key).is_duplicated().any()).item():
        return events
    # In the order they were logged: TABLE records before the QUERY of the same second.
    pieces = pieces.sort(*key, S.TIME, "_text", "_r")
    login, before = pl.col("_login"), pl.col("_login").forward_fill().shift(1)
    starts = pl.col("_text").shift(1).fill_null(False) | (login != before).fill_null(False)
    pieces = pieces.with_columns(starts.cum_sum().over(key).alias("_n"))
    statement = [*key, "_n"]
    split = pieces.filter(pl.len().over(statement) > 1)
    if split.is_empty():
        return events
    merged = split.group_by(statement, maintain_order=True).agg(
        pl.all()
        .exclude(S.OBJECTS, S.SESSION)
        .sort_by("_text", descending=True, maintain_order=True)
        .first(),
        session.sort_by(login.is_null(), maintain_order=True).first(),
        pl.col(S.OBJECTS).explode().drop_nulls().unique(maintain_order=True),
    )
    server_reads = pl.element().is_in(_SERVER_READS)
    names_stats = pl.col(S.QUERY).str.contains("_stats", literal=True).fill_null(True)
    merged = merged.with_columns(
        pl.when(names_stats)
        .then(pl.col(S.OBJECTS))
        .otherwise(pl.col(S.OBJECTS).list.eval(pl.element().filter(~server_reads)))
        .alias(S.OBJECTS)
    )
    gone = split["_r"].implode()
    return (
        pl.concat([rows.filter(~pl.col("_r").is_in(gone)), merged.select(rows.columns)])
        .sort("_r")
        .select(events.columns)
    )


def _who(records: pl.DataFrame) -> pl.DataFrame:
    return records.with_columns(
        pl.col("user").replace("", None).alias(S.ACCOUNT),
        client_host(pl.col("host")).alias(S.CLIENT_IP),
        pl.col("db").replace("", None).alias(S.DATABASE),
    )


def _statements(records: pl.DataFrame) -> pl.DataFrame:
    """One event per (server, connection, query id): its QUERY record with the tables of
    its TABLE records. TABLE records whose QUERY is not in this chunk (or not logged,
    ``server_audit_events = TABLE``) give an event without text."""
    key = [S.SESSION, "qid"]
    op = pl.col("op")
    tables = (
        records.filter(op.is_in(TABLE_OPS))
        .group_by(key, maintain_order=True)
        .agg(
            (pl.col("db") + "." + pl.col("object")).unique(maintain_order=True).alias("_tables"),
            pl.col(S.TIME).first().alias("_t"),
            pl.col("op").first().alias("_op"),
            pl.col("user").first(),
            pl.col("host").first(),
            pl.col("db").first(),
            pl.col("line_no").first(),
        )
    )
    queries = records.filter(op == "QUERY")
    joined = queries.join(tables.select(*key, "_tables"), on=key, how="left", maintain_order="left")
    orphans = tables.join(queries, on=key, how="anti").rename({"_t": S.TIME})
    text = mariadb.mask_passwords(unescape(pl.col("object")))
    rc = pl.col("rc").cast(pl.Int64, strict=False).fill_null(0)
    events = _who(joined).with_columns(text.alias(S.QUERY))
    query = pl.col(S.QUERY)
    names_stats = query.str.contains("_stats", literal=True)
    tables_named = (
        pl.when(names_stats)
        .then(pl.col("_tables"))
        .otherwise(
            pl.col("_tables").list.eval(pl.element().filter(~pl.element().is_in(_SERVER_READS)))
        )
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    failed = rc != 0
    events = events.with_columns(
        tables_named.alias(S.OBJECTS),
        *mariadb.outcome(query, failed),
        pl.col("qid").alias(S.STATEMENT_ID),
    )
    # Failed statements and statements with no TABLE record (TABLE events off): the
    # tables from the text. Reads only, as pgAudit does for unnamed objects.
    unnamed = (pl.col(S.OBJECTS).list.len() == 0) & pl.col(S.CLASS).is_in(["READ", "ERROR"])
    events = mariadb.with_relations(events, unnamed)
    orphan_events = _who(orphans).select(
        S.TIME,
        S.ACCOUNT,
        S.CLIENT_IP,
        S.DATABASE,
        S.SESSION,
        pl.col("_tables").alias(S.OBJECTS),
        pl.when(pl.col("_op") == "READ")
        .then(pl.lit("READ"))
        .when(pl.col("_op") == "WRITE")
        .then(pl.lit("WRITE"))
        .otherwise(pl.lit("DDL"))
        .alias(S.CLASS),
        pl.lit(True).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
        pl.col("qid").alias(S.STATEMENT_ID),
    )
    return pl.concat([events, orphan_events], how="diagonal_relaxed")


def _refused_logins(records: pl.DataFrame) -> pl.DataFrame:
    """FAILED_CONNECT records (or a CONNECT with a non-zero code): refused logins."""
    rc = pl.col("rc").cast(pl.Int64, strict=False).fill_null(0)
    op = pl.col("op")
    refused = (op == "FAILED_CONNECT") | ((op == "CONNECT") & (rc != 0))
    return _who(records.filter(refused)).select(
        "line_no",
        S.TIME,
        S.ACCOUNT,
        S.CLIENT_IP,
        S.DATABASE,
        S.SESSION,
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.lit("CONNECT").alias(S.CLASS),
        pl.lit("LOGIN").alias(S.COMMAND),
        ("login refused, error " + pl.col("rc")).alias(S.QUERY),
        pl.lit(False).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
    )
