"""MySQL Enterprise Audit's JSON log (``audit_log_format = JSON``) and Percona Server's
``audit_log_filter`` JSON, which share one record shape.

The file is a JSON array: ``[`` on its first line, records separated by ``,`` and ``]``
written when the file is closed. MySQL writes a record per line; Percona's ``JSON``
pretty-prints each record over many lines and its ``JSONL`` writes one per line. Both are
read: a record starts at a line beginning with ``{`` and ends on the line where its braces
balance. Timestamps are UTC (``YYYY-MM-DD hh:mm:ss``).

* ``general``/``status`` records are statements: failed (ERROR) when ``status`` != 0,
  with rows, bytes and duration from ``query_statistics`` when a filter prints it.
* ``table_access`` records (read, insert, update, delete) name one table each and come
  before their statement's ``general``/``status`` record on the same connection: they
  become that statement's objects. (A statement cut from its tables by a chunk boundary
  is put back together by :meth:`MysqlAudit.finish`.)
* A ``connection``/``connect`` with ``status`` != 0 is a refused login. Everything else
  (logins, logouts, ``audit``, ``command``, ``query``, ``general``/``log`` ...) is context.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb
from detector.formats.base import Parsed
from detector.formats.jsonlines import decode_lines
from detector.reader import Chunk
from detector.rejects import Reason, rejects, split_too_long, with_raw_lines

NAME: Final = "mysql-audit"
DB_SYSTEM: Final = "mysql"
_TEXT: Final = pl.String
RECORD: Final = pl.Struct(
    {
        "timestamp": _TEXT,
        "id": _TEXT,
        "class": _TEXT,
        "event": _TEXT,
        "connection_id": _TEXT,
        "account": pl.Struct({"user": _TEXT, "host": _TEXT}),
        "login": pl.Struct({"user": _TEXT, "ip": _TEXT}),
        "general_data": pl.Struct(
            {"command": _TEXT, "sql_command": _TEXT, "query": _TEXT, "status": _TEXT}
        ),
        "table_access_data": pl.Struct({"db": _TEXT, "table": _TEXT, "query": _TEXT}),
        "connection_data": pl.Struct(
            {
                "status": _TEXT,
                "db": _TEXT,
                "connection_attributes": pl.Struct({"program_name": _TEXT}),
            }
        ),
        "query_statistics": pl.Struct({"rows_sent": _TEXT, "bytes_sent": _TEXT}),
    }
)  # every scalar as text: Percona prints the statistics as strings, MySQL as numbers
_STRING: Final = r'"[^"\\]*(?:\\.[^"\\]*)*"'
# ``query_time`` is seconds when printed as a double, microseconds as a longlong.
_QUERY_TIME: Final = r'"query_time"\s*:\s*"?(-?[0-9][0-9.eE+-]*)'
_CLASSES: Final = "audit|general|connection|table_access|command|query|parse|message"
_HEAD_TIME: Final = re.compile(r'"timestamp"\s*:\s*"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"')
_HEAD_CLASS: Final = re.compile(rf'"class"\s*:\s*"(?:{_CLASSES}|stored_program)"')
_WRITES: Final = ["insert", "update", "delete"]
_STATEMENT_COMMANDS: Final = ["query", "execute"]  # not Prepare, Quit, Init DB, Ping ...


def account_name(user: pl.Expr) -> pl.Expr:
    """The account in a user field: ``priv_user`` of the general log's ``priv_user[user] @
    host [ip]`` form (Percona writes it so), else the field itself; null when empty."""
    return user.str.replace(r"^([^\[]*)\[[^\]]*\] @ .*$", "$1").str.strip_chars().replace("", None)


def number(text: pl.Expr) -> pl.Expr:
    """A count printed as a number or a string (``"3"``, ``3``, ``3.0``); null otherwise."""
    return text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


def assemble(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The records of a JSON-array log, whether one per line or pretty-printed.

    Returns ``records`` (``line_no`` of a record's first line, ``line``: its text without
    the ``,`` separator), ``members`` (``line_no``, ``line`` and ``first``: each line of a
    record and the record's first line) and rejects: ``too_long`` lines, ``truncated``
    records (braces never balance), ``invalid_json`` for lines outside any record. Blank
    lines and the array's ``[`` and ``]`` are dropped.
    """
    lines, too_long = split_too_long(lines)
    body = pl.col("line").str.strip_chars()
    lines = lines.filter(body != "")
    b = body.str.replace(r"^\[\s*\{", "{")  # "[" may share a line with the first record
    text = pl.col("_b").str.replace(r"\s*,\s*$", "").str.replace(r"\}\s*\]$", "}")
    lines = lines.with_columns(
        b.alias("_b"), b.is_in(["[", "]"]).alias("_wrap"), b.str.starts_with("{").alias("_open")
    ).with_columns(text.alias("_text"))
    whole = pl.col("_open") & pl.col("_text").str.ends_with("}")
    if lines.select((pl.col("_wrap") | whole).all()).item():  # MySQL's and Percona JSONL's shape
        records = lines.filter(~pl.col("_wrap"))
        members = records.select("line_no", "line", pl.col("line_no").alias("first"))
        return records.select("line_no", pl.col("_text").alias("line")), members, too_long
    bare = pl.col("_b").str.replace_all(_STRING, "")
    depth = bare.str.count_matches(r"\{") - bare.str.count_matches(r"\}")
    lines = lines.with_columns(depth.alias("_d"), pl.col("_open").cum_sum().alias("_g"))
    lines = lines.with_columns(
        pl.col("_d").cum_sum().over("_g").alias("_bal"),
        pl.int_range(pl.len()).over("_g").alias("_i"),
    )
    lines = lines.with_columns(
        pl.when(pl.col("_bal") <= 0).then(pl.col("_i")).min().over("_g").alias("_end"),
        pl.col("_open").first().over("_g").alias("_opened"),
        (pl.col("_i") == pl.len().over("_g") - 1).alias("_last"),
    )
    in_record = pl.col("_opened") & (pl.col("_i") <= pl.col("_end"))
    unclosed = pl.col("_opened") & pl.col("_end").is_null()
    found = pl.concat(
        [
            too_long,
            # (the array's "]" after a record cut short is not part of it)
            rejects(lines, unclosed & ~(pl.col("_wrap") & pl.col("_last")), Reason.TRUNCATED),
            rejects(lines, ~pl.col("_wrap") & ~in_record & ~unclosed, Reason.INVALID_JSON),
        ]
    )
    members = lines.filter(in_record).select(
        "line_no", "line", pl.col("line_no").first().over("_g").alias("first")
    )
    records = (
        lines.filter(in_record)
        .group_by("_g", maintain_order=True)
        .agg(pl.col("line_no").first(), pl.col("_b").str.join(" "))
        .select("line_no", text.alias("line"))
    )
    return records, members, found


def spread(found: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """Rejects of whole records (keyed by a record's first line) as rejects of each of
    its lines, with their own text."""
    return members.join(
        found.select(pl.col("line_no").alias("first"), "reason"), on="first", how="inner"
    ).select("line_no", "reason", "line")


def _time(text: pl.Expr) -> pl.Expr:
    parsed = [
        text.str.to_datetime(f, time_unit="us", strict=False)
        for f in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
    ]
    return pl.coalesce(parsed).dt.replace_time_zone("UTC")


def _fields(decoded: pl.DataFrame) -> pl.DataFrame:
    """One row per record: its fields flattened, with the connection's default database
    (from its connect record, then ``USE``) and client program carried forward."""
    general = pl.col("general_data")
    table = pl.col("table_access_data")
    conn = pl.col("connection_data")
    token = pl.col("line").str.extract(_QUERY_TIME, 1)
    seconds = token.str.contains(r"[.eE]")
    records = decoded.select(
        "line_no",
        _time(pl.col("timestamp")).alias(S.TIME),
        pl.col("class").alias("_class"),
        pl.col("event").alias("_event"),
        pl.col("connection_id").alias(S.SESSION),
        pl.col("id").alias("_id"),
        pl.coalesce(
            account_name(pl.col("account").struct.field("user")),
            account_name(pl.col("login").struct.field("user")),
        ).alias(S.ACCOUNT),
        pl.col("login").struct.field("ip").replace("", None).alias("_ip"),
        pl.col("account").struct.field("host").replace("", None).alias("_host"),
        general.struct.field("command").str.to_lowercase().alias("_command"),
        general.struct.field("sql_command").alias("_sql_command"),
        general.struct.field("query").alias(S.QUERY),
        number(general.struct.field("status")).fill_null(0).alias("_status"),
        table.struct.field("db").replace("", None).alias("_table_db"),
        table.struct.field("table").alias("_table"),
        table.struct.field("query").str.strip_chars().alias("_table_query"),
        number(conn.struct.field("status")).fill_null(0).alias("_login_status"),
        conn.struct.field("db").alias("_connect_db"),
        conn.struct.field("connection_attributes").struct.field("program_name").alias("_program"),
        number(pl.col("query_statistics").struct.field("rows_sent")).alias("_rows"),
        number(pl.col("query_statistics").struct.field("bytes_sent")).alias(S.BYTES),
        pl.when(seconds)
        .then(token.cast(pl.Float64, strict=False) * 1000)
        .otherwise(token.cast(pl.Float64, strict=False) / 1000)
        .alias(S.DURATION_MS),
    )
    # The client is login.ip; else (socket clients) the account's host, unless that is
    # a wildcard (``%``, ``10.0.0.%``), which is not where the client is.
    host = pl.when(pl.col("_host").str.contains(r"[%_]")).then(None).otherwise(pl.col("_host"))
    startup = (pl.col("_class") == "audit") & pl.col("_event").fill_null("startup").eq("startup")
    records = records.with_columns(
        pl.coalesce(pl.col("_ip"), host).alias(S.CLIENT_IP),
        startup.cum_sum().alias("_epoch"),  # connection ids start again with the server
    )
    key = ["_epoch", S.SESSION]
    connect = (pl.col("_class") == "connection") & pl.col("_event").is_in(
        ["connect", "change_user"]
    )
    status = (pl.col("_class") == "general") & (pl.col("_event") == "status")
    used = pl.col(S.QUERY).str.extract(r"(?i)^\s*USE\s+`?([^`\s;]+)", 1)
    changed = status & (pl.col("_status") == 0) & used.is_not_null()
    return records.with_columns(
        pl.when(connect)
        .then(pl.col("_connect_db").fill_null(""))
        .when(changed)
        .then(used)
        .forward_fill()
        .over(key)
        .replace("", None)
        .alias(S.DATABASE),
        pl.when(connect)
        .then(pl.col("_program").fill_null(""))
        .forward_fill()
        .over(key)
        .replace("", None)
        .alias(S.APPLICATION),
        # The statement a table_access record belongs to: the next status record on its
        # connection, i.e. the number of status records before it.
        (status.cast(pl.Int64).cum_sum() - status.cast(pl.Int64)).over(key).alias("_n"),
    )


_JOIN: Final = ["_epoch", S.SESSION, "_n", "_text"]


def _statement_rows(fields: pl.DataFrame) -> pl.DataFrame:
    status = (pl.col("_class") == "general") & (pl.col("_event") == "status")
    statement = (
        status
        & (pl.col(S.QUERY).str.strip_chars() != "")
        & (pl.col("_command").is_in(_STATEMENT_COMMANDS) | pl.col("_command").is_null())
    )
    return fields.filter(statement).with_columns(pl.col(S.QUERY).str.strip_chars().alias("_text"))


def _table_groups(fields: pl.DataFrame) -> pl.DataFrame:
    """The table_access records of each statement: its tables (``db.table``) in order."""
    name = (
        pl.when(pl.col("_table_db").is_not_null())
        .then(pl.col("_table_db") + "." + pl.col("_table"))
        .otherwise(pl.col("_table"))
    )
    firsts = [S.TIME, "line_no", S.ACCOUNT, S.CLIENT_IP, S.DATABASE, S.APPLICATION, "_table_db"]
    return (
        fields.filter(pl.col("_class") == "table_access")
        .with_columns(pl.col("_table_query").alias("_text"))
        .group_by(_JOIN, maintain_order=True)
        .agg(
            name.drop_nulls().unique(maintain_order=True).alias("_tables"),
            pl.col("_event").is_in(_WRITES).any().alias("_writes"),
            *(pl.col(c).first() for c in firsts),
        )
    )


def _statements(fields: pl.DataFrame) -> pl.DataFrame:
    """One event per statement (general status record), its table_access tables as objects."""
    rows = _statement_rows(fields)
    tables = _table_groups(fields).select(*_JOIN, "_tables")
    joined = rows.join(tables, on=_JOIN, how="left", maintain_order="left")
    query = pl.col(S.QUERY)
    failed = pl.col("_status") != 0
    return joined.with_columns(
        pl.col("_tables").fill_null(pl.lit([], dtype=pl.List(pl.String))).alias(S.OBJECTS),
        *mariadb.outcome(query, failed, pl.col("_sql_command").str.to_uppercase()),
    ).with_columns(
        # Rows a write changed are not in the log (rows_sent is 0 for it): unknown.
        pl.when(pl.col(S.CLASS) == "WRITE").then(None).otherwise(pl.col("_rows")).alias(S.ROWS),
        (pl.col(S.TIME).dt.epoch("s").cast(pl.String) + pl.col("_id").fill_null("")).alias(
            S.STATEMENT_ID
        ),  # timestamp/id pairs are unique in the log
    )


def _tables(fields: pl.DataFrame) -> pl.DataFrame:
    """Table accesses whose status record is not in this chunk (or not logged): an event
    of their own, without statement id, for :func:`finish` to join to its statement."""
    groups = _table_groups(fields)
    rows = _statement_rows(fields).select(_JOIN)
    orphans = groups.join(rows, on=_JOIN, how="anti")
    text = pl.col("_text")
    return orphans.select(
        "line_no",
        S.TIME,
        S.ACCOUNT,
        S.CLIENT_IP,
        pl.coalesce(S.DATABASE, "_table_db").alias(S.DATABASE),
        S.APPLICATION,
        S.SESSION,
        pl.col("_tables").alias(S.OBJECTS),
        pl.when(pl.col("_writes")).then(pl.lit("WRITE")).otherwise(pl.lit("READ")).alias(S.CLASS),
        mariadb.first_word(text).alias(S.COMMAND),
        text.alias(S.QUERY),
        pl.lit(True).alias(S.SUCCESS),
        mariadb.is_export(text).alias(S.EXPORT),
    )


def _refused(fields: pl.DataFrame) -> pl.DataFrame:
    """``connect`` records with a non-zero status: refused logins."""
    refused = (
        (pl.col("_class") == "connection")
        & (pl.col("_event") == "connect")
        & (pl.col("_login_status") != 0)
    )
    return fields.filter(refused).select(
        "line_no",
        S.TIME,
        S.ACCOUNT,
        S.CLIENT_IP,
        pl.col("_connect_db").replace("", None).alias(S.DATABASE),
        S.SESSION,
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.lit("CONNECT").alias(S.CLASS),
        pl.lit("LOGIN").alias(S.COMMAND),
        ("login refused, error " + pl.col("_login_status").cast(pl.String)).alias(S.QUERY),
        pl.lit(False).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
    )


def finish(events: pl.DataFrame) -> pl.DataFrame:
    """Whole-file step: table accesses parsed without their statement (a chunk boundary
    fell between them) join the session's next statement when it has the same text; then
    statements with no table named get the tables their text names (READ, WRITE, ERROR)."""
    mine = pl.col(S.SOURCE_FORMAT) == NAME
    has_id = pl.col(S.STATEMENT_ID).is_not_null()
    orphan = mine & ~has_id & (pl.col(S.CLASS) != "CONNECT")
    rows = events.with_row_index("_r").sort(S.SESSION, S.TIME, "_r")
    nxt = pl.when(mine & has_id).then(pl.col("_r")).backward_fill().over(S.SESSION)
    rows = rows.with_columns(nxt.alias("_next"), pl.col(S.QUERY).str.strip_chars().alias("_t"))
    targets = rows.filter(mine & has_id).select(
        pl.col("_r").alias("_next"), pl.col("_t").alias("_nt")
    )
    matched = rows.filter(orphan).join(targets, on="_next").filter(pl.col("_t") == pl.col("_nt"))
    more = matched.group_by("_next").agg(pl.col(S.OBJECTS).explode().alias("_more"))
    out = (
        rows.filter(~pl.col("_r").is_in(matched["_r"].implode()))
        .join(more, left_on="_r", right_on="_next", how="left")
        .with_columns(
            pl.when(pl.col("_more").is_not_null())
            .then(
                pl.concat_list("_more", S.OBJECTS)
                .list.drop_nulls()
                .list.unique(maintain_order=True)
            )
            .otherwise(pl.col(S.OBJECTS))
            .alias(S.OBJECTS)
        )
        .sort("_r")
        .select(events.columns)
    )
    unnamed = (
        mine
        & (pl.col(S.OBJECTS).list.len() == 0)
        & pl.col(S.CLASS).is_in(["READ", "WRITE", "ERROR"])
    )
    return mariadb.with_relations(out, unnamed).sort(S.TIME, maintain_order=True)


class MysqlAudit:
    """``--format mysql-audit``."""

    name = NAME
    record_start = re.compile(rb"[ \t]*\{")  # a record never starts mid-record

    def sniff(self, head: list[str]) -> bool:
        lines = [s.strip() for s in head if s.strip()]
        text = "\n".join(lines)
        return (
            bool(lines)
            and lines[0][:1] in ("[", "{")
            and '"id"' in text
            and bool(_HEAD_TIME.search(text) and _HEAD_CLASS.search(text))
        )

    def parse(self, chunk: Chunk) -> Parsed:
        records, members, found = assemble(chunk.lines)
        decoded, bad = decode_lines(records, RECORD)
        lacking = pl.col("class").is_null() | pl.col("timestamp").is_null()
        no_fields = rejects(decoded, lacking, Reason.NOT_AUDIT)
        fields = _fields(decoded.filter(~lacking).sort("line_no"))  # connections in order
        bad_time = rejects(fields, pl.col(S.TIME).is_null(), Reason.BAD_FIELD)
        fields = fields.filter(pl.col(S.TIME).is_not_null())
        statements, tables, logins = _statements(fields), _tables(fields), _refused(fields)
        events = pl.concat([statements, tables, logins], how="diagonal_relaxed").with_columns(
            pl.lit(DB_SYSTEM).alias(S.DB_SYSTEM), pl.lit(self.name).alias(S.SOURCE_FORMAT)
        )
        used = pl.concat([statements["line_no"], tables["line_no"], logins["line_no"]])
        context = fields.filter(
            ~pl.col("line_no").is_in(used.implode()) & (pl.col("_class") != "table_access")
        ).height
        whole = pl.concat([bad, no_fields, bad_time])
        return Parsed(
            events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=with_raw_lines(
                pl.concat([found, spread(whole, members)]).sort("line_no"), lambda: chunk.lines
            ),
            context=context,
        )

    finish = staticmethod(finish)
