"""What the two MariaDB formats share: classes and objects from statement text, and the
join of the ``server_audit`` log with the slow query log.

The audit log names accounts, objects (its TABLE events), failures and refused logins
but carries no volume; the slow query log at ``long_query_time = 0`` carries rows, bytes
and durations but no failures. :func:`join_slow` gives each audited statement the volume
of its slow-log record. See ``docs/formats-mariadb.md``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, NamedTuple

import polars as pl

from detector import schema as S

DB_SYSTEM: Final = "mariadb"
AUDIT: Final = "mariadb-audit"
SLOW: Final = "mariadb-slow"
AUDIT_SYSLOG: Final = "mariadb-audit-syslog"  # the audit log through syslog
# audit time (end, whole seconds) vs slow-log start + duration
JOIN_TOLERANCE: Final = timedelta(seconds=2)
_NO_PAIRS: Final = pl.DataFrame(schema={"_a": pl.UInt32, "_s": pl.UInt32})  # audit, slow rows
LOGS: Final = (AUDIT, SLOW)  # what events' source.format says
# The log each MariaDB format reads: its events' source.format.
LOG_OF_FORMAT: Final = {AUDIT: AUDIT, AUDIT_SYSLOG: AUDIT, SLOW: SLOW}
# The slow log's line before a statement's text: ``SET timestamp=T;`` (its start, UTC).
# MySQL puts the statement's AUTO_INCREMENT values first:
# ``SET last_insert_id=N,insert_id=N,timestamp=T;``.
MARKER: Final = r"^SET (?:[a-z_]+=\d+,)*timestamp=\d+;$"

# Comments a client may put before the first keyword (``/*!40101 ...*/`` is executable,
# but what it runs is a SET: MISC either way).
_LEADING: Final = r"^(?:\s+|/\*(?:[^*]|\*+[^*/])*\*+/|#[^\n]*(?:\n|$)|--[ \t][^\n]*(?:\n|$))*"
_WORD_CLASS: Final = {
    **dict.fromkeys(["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH", "TABLE",
                     "VALUES", "HANDLER", "CHECKSUM"], "READ"),
    **dict.fromkeys(["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "TRUNCATE"], "WRITE"),
    **dict.fromkeys(["CREATE", "ALTER", "DROP", "RENAME"], "DDL"),
    **dict.fromkeys(["GRANT", "REVOKE"], "ROLE"),
    **dict.fromkeys(["CALL", "DO"], "FUNCTION"),
}  # fmt: skip
_ROLE_DDL: Final = (
    r"(?i)^(?:CREATE|DROP|ALTER|RENAME)\s+(?:OR\s+REPLACE\s+)?(?:USER|ROLE)\b"
    r"|^SET\s+(?:PASSWORD|ROLE|DEFAULT\s+ROLE)\b"
)
# Statements that describe the server, a table or a plan, and send no table's rows.
METADATA: Final = ["SHOW", "DESCRIBE", "DESC", "EXPLAIN"]
# mariadb-dump reads every table with this hint; INTO OUTFILE/DUMPFILE writes rows to a
# file on the server.
DUMP_HINT: Final = "/*!40001 SQL_NO_CACHE */"
_OUTFILE: Final = r"(?i)\bINTO\s+(?:OUTFILE|DUMPFILE)\s"
# The binary log streamed to a replica or ``mariadb-binlog --read-from-remote-server``:
# every change to every database. The stream itself is no statement; each such client
# first sets the checksum it wants (once per connection; MySQL 8.0.26 and later name it
# ``@source_binlog_checksum``).
CLUSTER_BINLOG: Final = "(cluster binlog)"
# Statements that move data out naming no table, and the object each reads out.
_NAMELESS_EXPORTS: Final = {
    # a file of the server's (the FILE privilege): one row of the whole file
    r"(?i)\bLOAD_FILE\s*\(": S.SERVER_FILES,
    r"(?i)^SET\s+@(?:master|source)_binlog_checksum\s*=": CLUSTER_BINLOG,
}
_NAMELESS_MAYBE: Final = r"(?i)load_file|binlog_checksum"  # in every pattern above

_IDENT: Final = r"(?:`(?:[^`]|``)+`|[A-Za-z_$][\w$]*)"
_RELATION: Final = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_NOT_TABLES: Final = ["OUTFILE", "DUMPFILE", "DUAL", "SELECT", "TABLE", "LATERAL"]


# A password typed into a statement, as the audit plugin masks it (``IDENTIFIED BY *****``,
# ``PASSWORD(*****)``); the slow log writes it in clear. The plugin (10.11.19) masks a
# password with a doubled quote only up to it (``BY 'se''cret'`` -> ``BY *****'cret'``):
# the rest is masked too.
_SECRET: Final = r"""(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")"""
_PASSWORD: Final = rf"(?i)(\bIDENTIFIED\s+BY\s+|\bPASSWORD\s*\(\s*)(?:\*{{5}})?{_SECRET}"


def audit_statement() -> pl.Expr:
    """An audit log's record of a statement (QUERY or TABLE): not a connection's."""
    return (pl.col(S.SOURCE_FORMAT) == AUDIT) & pl.col(S.STATEMENT_ID).is_not_null()


def mask_passwords(text: pl.Expr) -> pl.Expr:
    """``text`` with the passwords of ``IDENTIFIED BY '...'`` and ``PASSWORD('...')``
    replaced by ``*****``, as the ``server_audit`` plugin writes them (and what its mask
    left of a password with a doubled quote): a password never enters the events, and
    both logs give such a statement the same text."""
    has = text.str.contains(r"(?i)IDENTIFIED|PASSWORD")
    return pl.when(has).then(text.str.replace_all(_PASSWORD, "${1}*****")).otherwise(text)


def body(text: pl.Expr) -> pl.Expr:
    """The statement without the comments and blanks before its first keyword."""
    return text.str.replace(_LEADING, "")


def first_word(text: pl.Expr) -> pl.Expr:
    """The statement's first keyword, upper case (``db.operation.name``); null if none."""
    return body(text).str.extract(r"^([A-Za-z]+)", 1).str.to_uppercase()


def statement_class(text: pl.Expr) -> pl.Expr:
    """READ, WRITE, DDL, ROLE, FUNCTION or MISC, from the statement's first words, the
    way pgAudit classes statements (``CREATE USER`` and ``GRANT`` are ROLE)."""
    word = first_word(text)
    by_word = word.replace_strict(_WORD_CLASS, default="MISC", return_dtype=pl.String)
    # (a binary log client's SET: the stream it starts reads every change)
    return (
        pl.when(body(text).str.contains(_ROLE_DDL))
        .then(pl.lit("ROLE"))
        .when(nameless_export(text).is_not_null())
        .then(pl.lit("READ"))
        .otherwise(by_word)
    )


def outcome(text: pl.Expr, failed: pl.Expr, command: pl.Expr | None = None) -> list[pl.Expr]:
    """The columns a statement's text and failure decide: command (its first keyword,
    else ``command``), class (ERROR when it failed), success and export."""
    word = first_word(text) if command is None else pl.coalesce(first_word(text), command)
    return [
        word.alias(S.COMMAND),
        pl.when(failed).then(pl.lit("ERROR")).otherwise(statement_class(text)).alias(S.CLASS),
        (~failed).alias(S.SUCCESS),
        is_export(text).alias(S.EXPORT),
    ]


def writes_file(text: pl.Expr) -> pl.Expr:
    """True for ``SELECT ... INTO OUTFILE`` / ``DUMPFILE`` (not for the ``EXECUTE
    IMMEDIATE`` running one: both logs have the statement it runs as one of its own)."""
    wrapped = first_word(text) == "EXECUTE"
    into = text.str.contains(r"(?i)INTO") & text.str.contains(_OUTFILE)
    return (into & ~wrapped.fill_null(False)).fill_null(False)


def nameless_export(text: pl.Expr) -> pl.Expr:
    """What a statement that moves data out naming no table reads out (seen on a real
    MariaDB 10.11): ``(server files)`` for ``LOAD_FILE(...)`` (the slow log's
    ``Bytes_sent`` is the file's size, its one row no count), :data:`CLUSTER_BINLOG` for
    a binary log client's first ``SET``; null for any other statement."""
    found = pl.lit(None, pl.String)
    # The patterns (and the comments skipped before a first word) only where a cheap test
    # passes: a tenth of the time over the usual statements, which hold neither.
    maybe = text.str.contains(_NAMELESS_MAYBE)
    statement = body(pl.when(maybe).then(text).otherwise(pl.lit("")))
    for pattern, read_out in reversed(_NAMELESS_EXPORTS.items()):
        found = pl.when(statement.str.contains(pattern)).then(pl.lit(read_out)).otherwise(found)
    return found


def is_export(text: pl.Expr) -> pl.Expr:
    """True for statements that move data out in bulk: mariadb-dump's reads, ``SELECT
    ... INTO OUTFILE`` / ``DUMPFILE`` (:func:`writes_file`), and what
    :func:`nameless_export` names."""
    dump = body(text).str.starts_with("SELECT " + DUMP_HINT)
    nameless = nameless_export(text).is_not_null()
    return (dump.fill_null(False) | writes_file(text) | nameless).fill_null(False)


# The words a table name follows; ``OPTIMIZE``/``ANALYZE``/``CHECK``/``REPAIR TABLE t``
# name their first table, as the audit log's TABLE records do, and ``HANDLER t ...`` its.
_BEFORE_TABLE: Final = (
    r"(?:FROM|JOIN|INTO(?:\s+TABLE)?|UPDATE|REPLACE(?:\s+INTO)?|^HANDLER"
    r"|(?:OPTIMIZE|ANALYZE|CHECK|REPAIR)\s+(?:(?:NO_WRITE_TO_BINLOG|LOCAL)\s+)?TABLE)"
)
# ``HANDLER t READ ...`` sends rows, but 10.11 logs them as ``Rows_sent: 0`` (and
# ``Rows_examined: 0``): seen with 801 rows sent by three reads.
_HANDLER_READ: Final = rf"(?i)^HANDLER\s+{_RELATION}\s+READ\b"


def handler_read(text: pl.Expr) -> pl.Expr:
    """True for ``HANDLER t READ ...``: a read of ``t`` whose rows no log counts."""
    return body(text).str.contains(_HANDLER_READ).fill_null(False)


def _tables_named(text: pl.Expr) -> pl.Expr:
    """The table names after FROM, JOIN, INTO, UPDATE, REPLACE (and the admin statements'
    TABLE, a leading HANDLER), as written (no quotes)."""
    found = text.str.extract_all(rf"(?i)\b{_BEFORE_TABLE}\s+{_RELATION}")
    name = (
        pl.element()
        .str.replace(rf"(?i)^{_BEFORE_TABLE}\s+", "")
        .str.replace_all(r"\s*\.\s*", ".")
        .str.replace_all("`", "")
    )
    return found.list.eval(name).list.eval(
        pl.element().filter(~pl.element().str.to_uppercase().is_in(_NOT_TABLES))
    )


def with_relations(events: pl.DataFrame, where: pl.Expr) -> pl.DataFrame:
    """``events`` whose objects, on the rows selected by ``where``, are the tables their
    text names (``db.table``; unqualified names get the row's database, and stay bare
    when it has none), and what :func:`nameless_export` reads out."""
    rows = events.with_row_index("_r")
    names = (
        rows.filter(where)
        .select("_r", S.DATABASE, _tables_named(pl.col(S.QUERY)).alias("_n"))
        .explode("_n")
    )
    bare = ~pl.col("_n").str.contains(".", literal=True) & pl.col(S.DATABASE).is_not_null()
    found = names.group_by("_r").agg(
        pl.when(bare)
        .then(pl.col(S.DATABASE) + "." + pl.col("_n"))
        .otherwise(pl.col("_n"))
        .drop_nulls()
        .unique(maintain_order=True)
        .alias("_found")
    )
    read_out = pl.when(where).then(nameless_export(pl.col(S.QUERY)))
    return (
        rows.join(found, on="_r", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_found", S.OBJECTS).alias(S.OBJECTS))
        .with_columns(
            pl.when(read_out.is_not_null())
            .then(pl.concat_list(S.OBJECTS, read_out).list.unique(maintain_order=True))
            .otherwise(pl.col(S.OBJECTS))
            .alias(S.OBJECTS)
        )
        .drop("_r", "_found")
    )


def settle(events: pl.DataFrame) -> pl.DataFrame:
    """MariaDB statements classed by what they read, once the slow log's volume is on them.

    * A ``CALL`` of a stored procedure that sent rows is a read of them: MariaDB 10.11's
      slow log has one record for the ``CALL`` (``Rows_sent``, ``Bytes_sent``: what left
      the server) and none for the procedure's statements (``log_slow_disabled_statements
      = sp``); the audit log names ``mysql.proc`` for it (the server reading the
      procedure's definition) and the procedure's statements as QUERY records with their
      tables. The ``CALL`` becomes a READ with the volume; its objects are the
      statements'.
    * A read of the server's catalogs alone (``information_schema``, ``mysql``, ...) is
      CATALOG, as for pgAudit (:data:`detector.schema.CATALOG_SCHEMAS`); so are ``SHOW``,
      ``DESCRIBE`` and ``EXPLAIN`` (:data:`METADATA`).
    """
    mine = pl.col(S.SOURCE_FORMAT).is_in([AUDIT, SLOW])
    needed = {S.SOURCE_FORMAT, S.CLASS, S.ROWS, S.OBJECTS}
    if not needed <= set(events.columns) or not events.select(mine.any()).item():
        return events
    # FUNCTION is CALL or DO (statement_class); DO sends no rows.
    call_read = mine & (pl.col(S.CLASS) == "FUNCTION") & (pl.col(S.ROWS) > 0).fill_null(False)
    objects = pl.col(S.OBJECTS)
    catalogs_only = (objects.list.len() > 0) & objects.list.eval(
        S.is_catalog(pl.element(), "mysql")
    ).list.all()
    # What the server says of itself (SHOW GLOBAL STATUS: hundreds of counters a call,
    # a monitor's every minute), of a table's columns or of a query's plan: no table's
    # rows. (Their objects, if any, are the tables described.)
    metadata = pl.col(S.COMMAND).is_in(METADATA) if S.COMMAND in events.columns else pl.lit(False)
    catalog = mine & (pl.col(S.CLASS) == "READ") & (catalogs_only | metadata)
    events = _procedure_exports(events)
    return events.with_columns(
        pl.when(call_read)
        .then(objects.list.eval(pl.element().filter(~S.is_catalog(pl.element(), "mysql"))))
        .otherwise(objects)
        .alias(S.OBJECTS),
        pl.when(call_read)
        .then(pl.lit("READ"))
        .when(catalog)
        .then(pl.lit("CATALOG"))
        .otherwise(pl.col(S.CLASS))
        .alias(S.CLASS),
    )


def _procedure_exports(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with a ``CALL`` that wrote rows (class WRITE: Rows_sent 0, Rows_affected
    N) made an export of them when the audit log shows an export among its procedure's
    statements (``SELECT ... INTO OUTFILE``: 10.11 logs the rows written as the CALL's
    Rows_affected and gives the statement no slow record). A procedure's statements are
    the audited statements of the CALL's connection logged before its QUERY record with
    a larger query id. That statement is then no second export."""
    needed = {S.COMMAND, S.SESSION, S.STATEMENT_ID, S.EXPORT}
    if not needed <= set(events.columns):
        return events
    rows = events.with_row_index("_r")
    audited = audit_statement()
    qid = pl.col(S.STATEMENT_ID).cast(pl.Int64, strict=False)
    calls = rows.filter(
        audited & (pl.col(S.COMMAND) == "CALL") & (pl.col(S.CLASS) == "WRITE")
    ).select("_r", S.SESSION, qid.alias("_q"))
    if calls.is_empty():
        return events
    inner = rows.filter(audited & pl.col(S.EXPORT) & (pl.col(S.COMMAND) != "CALL")).select(
        pl.col("_r").alias("_e"), S.SESSION, qid.alias("_qe"), pl.col(S.OBJECTS).alias("_o")
    )
    found = (
        calls.join(inner, on=S.SESSION)
        .filter((pl.col("_qe") > pl.col("_q")) & (pl.col("_e") < pl.col("_r")))
        # the CALL logged next after the statement is the one running it
        .sort("_r")
        .unique("_e", keep="first")
    )
    if found.is_empty():
        return events
    tables = found.group_by("_r").agg(pl.col("_o").explode().drop_nulls().unique().sort())
    inner_exports = found["_e"].implode()
    rows = rows.join(tables, on="_r", how="left", maintain_order="left")
    is_call = pl.col("_o").is_not_null()
    return rows.with_columns(
        pl.when(is_call).then(pl.lit("READ")).otherwise(pl.col(S.CLASS)).alias(S.CLASS),
        pl.when(is_call).then(pl.col("_o")).otherwise(pl.col(S.OBJECTS)).alias(S.OBJECTS),
        pl.when(is_call)
        .then(pl.lit(True))
        .when(pl.col("_r").is_in(inner_exports))
        .then(pl.lit(False))
        .otherwise(pl.col(S.EXPORT))
        .alias(S.EXPORT),
    ).drop("_r", "_o")


def without_volume(events: pl.DataFrame) -> tuple[int, int]:
    """Audited statements in ``events`` (joined with the slow log), and how many of them
    found no slow-log record, so carry no rows or bytes (a ``long_query_time`` above 0,
    ``log_slow_rate_limit``, filters, statements inside procedures)."""
    if S.STATEMENT_ID not in events.columns:
        return 0, 0
    audited = events.filter(audit_statement())
    return audited.height, audited.filter(pl.col(S.ROWS).is_null()).height


def thread_of(session: pl.Expr) -> pl.Expr:
    """The connection (thread) id in a MariaDB ``session.uid`` (``server/id/login`` from
    the audit log, ``id`` from the slow log)."""
    return session.str.extract(r"^(?:[^/]*/)?(\d+)", 1).cast(pl.Int64, strict=False)


def slow_end(start: pl.Expr, duration_ms: pl.Expr) -> pl.Expr:
    """When a slow-log statement ended: its start (``SET timestamp``) + ``Query_time``."""
    return start + _duration(duration_ms)


def _duration(ms: pl.Expr) -> pl.Expr:
    return pl.duration(microseconds=(ms.fill_null(0) * 1000).cast(pl.Int64))


def join_text(text: pl.Expr) -> pl.Expr:
    """A statement's text as both logs can agree on it: blanks collapsed, no trailing
    ``;``, and only its start (the audit plugin cuts queries at
    ``server_audit_query_log_limit``, 1024 bytes by default)."""
    return text.str.replace_all(r"\s+", " ").str.strip_chars(" ;").str.slice(0, 200)


def join_slow(
    events: pl.DataFrame, *, slow_at_end: bool = False, on_utc: bool = False
) -> pl.DataFrame:
    """Audit statements with rows, bytes and duration from their slow-log records.

    The audit log's clock is set by the slow log's first (:func:`audit_clock`), unless
    ``on_utc`` says its times already are (``score`` sets it as it reads, before it
    keeps the period: :func:`on_utc`).

    A slow-log record belongs to an audited statement with the same connection (thread)
    id and statement text whose audit time is within :data:`JOIN_TOLERANCE` of its end
    (start + ``Query_time``; its own time if ``slow_at_end``: the live engine files slow
    records at their end, so that both records of a long statement close in the same
    window). Both logs list one connection's statements in the order they ran, so the
    runs of one statement in one connection are paired in order: the k-th audit record
    with the k-th slow record of a stretch where both logs have as many runs of it (a
    stretch ends where neither log has a run for more than the tolerance). A stretch
    where one log missed runs (the slow log's ``long_query_time`` or row limits, the
    audit log's filters) is paired by nearest time instead, and a slow record claimed by
    two audit statements goes to the nearer one; this is repeated until no unpaired
    slow record has an unpaired audit statement of its connection and text within the
    tolerance. Slow records that found their statement are dropped (the audit event now
    carries their volume); unmatched events of both logs are kept as they are.

    Two more rounds pair what the text cannot:

    * an audit text cut by ``server_audit_query_log_limit`` (below the 200 characters
      compared) is paired, the same way, with the slow records of its connection whose
      text starts with it;
    * a statement the audit log gives by its TABLE records alone (``server_audit_events``
      without QUERY, or QUERY_DDL/QUERY_DML only) is paired with the slow record of its
      connection that names the same tables and started within the tolerance of the
      tables' opening; the event takes the slow record's text, command, class and
      export too.
    """
    paired = _paired(events, slow_at_end, on_utc)
    if paired is None:
        return events
    rows, slow, found, _ = paired
    taken = [c for c in (S.QUERY, S.COMMAND, S.CLASS, S.EXPORT) if c in events.columns]
    pairs = found.join(
        slow.select(
            pl.col("_r").alias("_s"),
            pl.col(S.ROWS).alias("_rows"),
            pl.col(S.BYTES).alias("_bytes"),
            pl.col(S.DURATION_MS).alias("_ms"),
            pl.col(S.OBJECTS).alias("_objects"),
            *(pl.col(c).alias(f"_{c}") for c in taken),
        ),
        on="_s",
    )
    text_less = pl.col(S.QUERY).is_null() & pl.col("_s").is_not_null()
    # A CALL's class is what its slow record says it did (sent rows or changed them).
    call = (pl.col(S.COMMAND) == "CALL") & (pl.col(f"_{S.CLASS}") == "WRITE")
    call = call.fill_null(False) if S.COMMAND in events.columns else pl.lit(False)
    joined = rows.join(
        pairs.rename({"_a": "_r"}), on="_r", how="left", maintain_order="left"
    ).with_columns(
        pl.coalesce(S.ROWS, "_rows").alias(S.ROWS),
        pl.coalesce(S.BYTES, "_bytes").alias(S.BYTES),
        pl.coalesce(S.DURATION_MS, "_ms").alias(S.DURATION_MS),
        pl.when(pl.col(S.OBJECTS).list.len() == 0)
        .then(pl.col("_objects"))
        .otherwise(pl.col(S.OBJECTS))
        .fill_null(pl.col(S.OBJECTS))
        .alias(S.OBJECTS),
        # What the text decides, for TABLE records that had none (the live engine holds
        # fewer columns than the schema's).
        *(pl.when(text_less).then(pl.col(f"_{c}")).otherwise(pl.col(c)).alias(c) for c in taken),
    )
    if S.CLASS in taken:
        # So is a write's that sent back the rows it changed (``DELETE ... RETURNING``).
        sent_back = (pl.col(S.CLASS) == "WRITE") & (pl.col(f"_{S.CLASS}") == "READ")
        joined = joined.with_columns(
            pl.when(call & (pl.col(S.CLASS) == "FUNCTION"))
            .then(pl.lit("WRITE"))
            .when(sent_back.fill_null(False))
            .then(pl.lit("READ"))
            .otherwise(pl.col(S.CLASS))
            .alias(S.CLASS)
        )
    used = pairs["_s"].implode()
    is_slow = pl.col(S.SOURCE_FORMAT) == SLOW
    return joined.filter(~(is_slow & pl.col("_r").is_in(used))).select(events.columns)


def slow_pairs(events: pl.DataFrame, *, slow_at_end: bool = False) -> pl.DataFrame | None:
    """The pairs :func:`join_slow` makes, as row numbers in ``events``: ``_a`` the audit
    statement's, ``_s`` its slow record's; None if it sets the audit log's clock by the
    slow log's to make them (the audit log's times are not UTC)."""
    paired = _paired(events, slow_at_end)
    if paired is None:
        return _NO_PAIRS
    return None if paired.clocked else paired.pairs


class _Paired(NamedTuple):
    rows: pl.DataFrame  # the events numbered (``_r``), the audit log's times on UTC
    slow: pl.DataFrame  # their slow records
    pairs: pl.DataFrame  # ``_a``, ``_s``
    clocked: bool  # the audit log's clock was set by the slow log's


def _paired(events: pl.DataFrame, slow_at_end: bool, on_utc: bool = False) -> _Paired | None:
    """The pairs of :func:`join_slow` among ``events``; None if either log has none."""
    is_audit = audit_statement()
    is_slow = pl.col(S.SOURCE_FORMAT) == SLOW
    rows = events.with_row_index("_r")
    audit = rows.filter(is_audit)
    slow = rows.filter(is_slow)
    if audit.is_empty() or slow.is_empty():
        return None
    if slow_at_end:
        end, start = pl.col(S.TIME), pl.col(S.TIME) - _duration(pl.col(S.DURATION_MS))
    else:
        end, start = slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)), pl.col(S.TIME)
    clock = None if on_utc else audit_clock(audit, slow, end)
    if clock is not None:
        rows = _on_utc(rows, clock)
        audit = rows.filter(is_audit)
    forged = _forged(audit, slow)
    if not forged.is_empty():
        rows = rows.filter(~pl.col("_r").is_in(forged.implode()))
        slow = slow.filter(~pl.col("_r").is_in(forged.implode()))
    keyed = [pl.col("_thread").is_not_null(), pl.col("_text").is_not_null()]
    thread = thread_of(pl.col(S.SESSION)).alias("_thread")
    # Times: the audit record's (the end, whole seconds), and the slow record's end to
    # the second, so a pair is 0 or 1 s apart. Order: the audit log's time and line; the
    # slow log's start (whole seconds, ``SET timestamp``) and record.

    def audit_side(records: pl.Expr, key: pl.Expr) -> pl.DataFrame:
        """The audit records ``records`` selects, keyed by ``key``, timed at their end."""
        return audit.filter(records).select(
            pl.col("_r").alias("_a"),
            pl.col(S.TIME).alias("_t"),
            pl.col(S.TIME).alias("_order"),
            thread,
            key.alias("_text"),
        )

    left = audit_side(pl.col(S.QUERY).is_not_null(), join_text(pl.col(S.QUERY)))
    right = slow.select(
        pl.col("_r").alias("_s"),
        end.dt.truncate("1s").alias("_t"),
        start.alias("_order"),
        thread,
        join_text(pl.col(S.QUERY)).alias("_text"),
        start.dt.truncate("1s").alias("_start"),
        _tables_key(pl.col(S.OBJECTS)).alias("_tables"),
    )
    found = _pair(left.filter(keyed), right.drop("_start", "_tables").filter(keyed))
    left = left.join(found, on="_a", how="anti")
    right = right.join(found, on="_s", how="anti")
    cut = _pair(left.filter(keyed), _by_prefix(left.filter(keyed), right).filter(keyed))
    right = right.join(cut, on="_s", how="anti")
    left = left.join(cut, on="_a", how="anti")
    # The start of a statement whose text held a record header after a ';' line: the
    # slow log's record ends there (the rest was read as forged records, dropped above).
    split = audit.filter(_holds_header(pl.col(S.QUERY))).select(pl.col("_r").alias("_a"))
    cut = pl.concat([cut, _pair(*_by_start(left.join(split, on="_a"), right))])
    right = right.join(cut, on="_s", how="anti")
    # TABLE records alone: the tables are the key, their opening (the start) the time.
    tables_only = audit_side(pl.col(S.QUERY).is_null(), _tables_key(pl.col(S.OBJECTS)))
    by_tables = _pair(
        tables_only.filter(keyed),
        right.select(
            "_s",
            pl.col("_start").alias("_t"),
            "_order",
            "_thread",
            pl.col("_tables").alias("_text"),
        ).filter(keyed),
    )
    return _Paired(rows, slow, pl.concat([found, cut, by_tables]), clock is not None)


# The audit log's clock is the server's local time: UTC offsets are whole quarter hours.
QUARTER: Final = 900
MAX_OFFSET: Final = timedelta(hours=14)  # the furthest a time zone is from UTC
CLOCK_PAIRS: Final = 10  # statements in both logs that set the live service's clock


def audit_clock(audit: pl.DataFrame, slow: pl.DataFrame, end: pl.Expr) -> pl.DataFrame | None:
    """How far the audit log's clock runs ahead of UTC, hour by hour of its own time
    (``_hour``, ``_ahead`` in seconds), from the statements both logs hold
    (:func:`clock_hours`); None when it runs on UTC (or the logs share no statement to
    tell)."""
    hours = clock_hours(audit, slow, end)
    if hours.is_empty() or (hours["_ahead"] == 0).all():
        return None
    return hours.drop("_n")


def on_utc(events: pl.DataFrame) -> tuple[pl.DataFrame, list[int]]:
    """``events`` (read by ``score``/``train``) with a MariaDB audit log's times put on
    UTC by the slow log's clock (:func:`audit_clock`), and the offsets found (seconds,
    ascending; none when the clock is UTC or cannot be told): the join's clock
    (:func:`join_slow`), set before since/until select the audit records, by UTC."""
    audit = events.filter(pl.col(S.SOURCE_FORMAT) == AUDIT)
    slow = events.filter(pl.col(S.SOURCE_FORMAT) == SLOW)
    if audit.is_empty() or slow.is_empty():
        return events, []
    clock = audit_clock(audit, slow, slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)))
    if clock is None:
        return events, []
    return _on_utc(events, clock), sorted(set(clock["_ahead"].to_list()))


def audit_ahead(audit: pl.DataFrame, slow: pl.DataFrame, end: pl.Expr) -> int | None:
    """How many seconds the audit log's clock runs ahead of UTC in the latest hour whose
    statements tell it (:func:`clock_hours`) with :data:`CLOCK_PAIRS` statements at
    least, None if none does: the live service's clock, set as the logs are read. (The
    two logs, read apart, may hold different hours: a statement text run once on a
    reused connection id a day apart would otherwise set the clock by itself.)"""
    hours = clock_hours(audit, slow, end).filter(pl.col("_n") >= CLOCK_PAIRS)
    return None if hours.is_empty() else int(hours["_ahead"][-1])


def clock_hours(audit: pl.DataFrame, slow: pl.DataFrame, end: pl.Expr) -> pl.DataFrame:
    """How far the audit log's clock runs ahead of UTC, hour by hour of its own time
    (``_hour``, ``_ahead`` in seconds, and ``_n`` statements telling it), for the hours
    whose statements tell it, within what a time zone can be (:data:`MAX_OFFSET`).

    The audit plugin writes the server's local time with no zone (a server in Shanghai
    writes 08:00 at 00:00 UTC); the slow log's ``SET timestamp`` is UTC. A statement run
    once in its connection is in both logs, its audit time (its end) within a second or
    two of the slow record's end (``end``): the gap, rounded to a quarter hour, is the
    offset. Per hour of audit time, the most common offset of that hour's statements
    (half of them at least), so a change to or from summer time moves it that hour. (The
    hour a clock set back writes twice holds both offsets: the statements of one of them
    go unpaired, their times an hour off.)"""
    key = ["_thread", "_text"]

    def once(frame: pl.DataFrame, at: pl.Expr) -> pl.DataFrame:
        return (
            frame.filter(pl.col(S.QUERY).is_not_null())
            .select(
                thread_of(pl.col(S.SESSION)).alias("_thread"),
                join_text(pl.col(S.QUERY)).alias("_text"),
                at.alias("_t"),
            )
            .filter(pl.len().over(key) == 1)
        )

    gap = (pl.col("_t") - pl.col("_t_slow")).dt.total_seconds(fractional=True)
    quarters = (gap / QUARTER).round() * QUARTER
    pairs = (
        once(audit, pl.col(S.TIME))
        .join(once(slow, end), on=key, suffix="_slow")
        .filter(
            ((gap - quarters).abs() <= JOIN_TOLERANCE.total_seconds())
            & (quarters.abs() <= MAX_OFFSET.total_seconds())
        )
        .select(pl.col("_t").dt.truncate("1h").alias("_hour"), quarters.alias("_ahead"))
    )
    return (
        pairs.group_by("_hour", "_ahead")
        .agg(pl.len().alias("_n"))
        .with_columns(pl.col("_n").sum().over("_hour").alias("_all"))
        .filter(pl.col("_n") * 2 >= pl.col("_all"))
        .sort("_hour", "_n", descending=[False, True])
        .unique("_hour", keep="first", maintain_order=True)
        .select("_hour", pl.col("_ahead").cast(pl.Int64), "_n")
    )


def _on_utc(rows: pl.DataFrame, clock: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with the audit log's times put on UTC by ``clock`` (:func:`audit_clock`):
    each hour of audit time by its own offset, or the nearest hour's where its
    statements told none."""
    hour = pl.col(S.TIME).dt.truncate("1h").alias("_hour")
    audited = pl.col(S.SOURCE_FORMAT) == AUDIT
    offsets = (
        rows.filter(audited)
        .select(hour.unique().sort())
        .join_asof(clock, on="_hour", strategy="nearest")
    )
    return (
        rows.with_columns(hour)
        .join(offsets, on="_hour", how="left", maintain_order="left")
        .with_columns(
            pl.when(audited)
            .then(pl.col(S.TIME) - pl.duration(seconds=pl.col("_ahead")))
            .otherwise(pl.col(S.TIME))
            .alias(S.TIME)
        )
        .drop("_hour", "_ahead")
    )


def _holds_header(text: pl.Expr) -> pl.Expr:
    """True for a statement text holding a line that starts a slow-log record."""
    return text.str.contains("\n# User@Host: ", literal=True).fill_null(False)


def _squeeze(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(r"\s+", " ").str.strip_chars(" ;")


def _forged(audit: pl.DataFrame, slow: pl.DataFrame) -> pl.Series:
    """The ``_r`` of slow-log records that are text of an audited statement: a string
    literal holding ``;`` at a line's end, then lines like a record's header, makes the
    slow log (which writes statements raw) read as holding a record that no statement
    made (``tests/fixtures/mariadb-heldout/semicolon``). The audit log escapes newlines,
    so it has the statement whole: a slow record whose text starts on the line after a
    ``SET timestamp=N;`` line of an audited statement's text, and is in that text, is
    that statement's text, not a record. Only texts holding a ``# User@Host:`` line are
    looked into."""
    hosts = audit.filter(_holds_header(pl.col(S.QUERY))).select(pl.col(S.QUERY).alias("_host"))
    none = pl.Series("_r", [], dtype=pl.UInt32)
    if hosts.is_empty():
        return none
    line = pl.col("_line")
    after_marker = (
        hosts.with_row_index("_h")
        .with_columns(pl.col("_host").str.split("\n").alias("_line"))
        .explode("_line")
        .filter(line.shift(1).over("_h").str.contains(MARKER).fill_null(False))
        .select("_host", line.str.strip_chars().alias("_first"))
        .unique()
    )
    first = pl.col(S.QUERY).str.split("\n").list.first().str.strip_chars()
    return (
        slow.select("_r", S.QUERY, first.alias("_first"))
        .join(after_marker, on="_first")
        .filter(_squeeze(pl.col("_host")).str.contains(_squeeze(pl.col(S.QUERY)), literal=True))
        .get_column("_r")
        .unique()
    )


def _by_start(left: pl.DataFrame, right: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``left`` (audit) and ``right`` (slow) keyed so that a slow record whose text is
    the start of an audit text of its connection has that audit text's key."""
    key = (
        right.select("_s", "_thread", "_text")
        .join(left.select("_thread", pl.col("_text").alias("_full")), on="_thread")
        .filter(pl.col("_full").str.starts_with(pl.col("_text")))
        .unique("_s", keep="first")
        .select("_s", "_full")
    )
    keyed = (
        right.join(key, on="_s")
        .with_columns(pl.col("_full").alias("_text"))
        .select("_s", "_t", "_order", "_thread", "_text")
    )
    return left, keyed


def _tables_key(objects: pl.Expr) -> pl.Expr:
    """A statement's tables as one string (sorted, the server's catalogs left out), to
    pair TABLE records with the slow record naming them; null when it names none."""
    names = objects.list.eval(pl.element().filter(~S.is_catalog(pl.element(), "mysql"))).list.sort()
    return pl.when(names.list.len() > 0).then(names.list.join(","))


def _pair(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``_a``, ``_s`` pairs of audit (``left``) and slow (``right``) records with the same
    ``_thread`` and ``_text`` key: in order where both logs have as many runs, then by
    nearest time, round after round (see :func:`join_slow`)."""
    if left.is_empty() or right.is_empty():
        return _NO_PAIRS
    found = [_in_order(left, right)]
    while True:
        left = left.join(found[-1], on="_a", how="anti")
        right = right.join(found[-1], on="_s", how="anti")
        if left.is_empty() or right.is_empty():
            break
        # Nearest in time, runs of a statement in one second told apart by their rank in
        # that second; when no rank matches (a run's second differs between the logs),
        # by time alone. Each round pairs at least one record, or none is left to pair.
        nearest = _nearest(left, right, ["_thread", "_text", "_k"])
        if nearest.is_empty():
            nearest = _nearest(left, right, ["_thread", "_text"])
        if nearest.is_empty():
            break
        found.append(nearest)
    return pl.concat(found)


def _by_prefix(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """The slow records (``right``) whose text starts with an unpaired audit text of
    their connection (``left``: cut by ``server_audit_query_log_limit``), keyed by the
    longest such text; the others are left out."""
    keys = left.select("_thread", pl.col("_text").alias("_key")).unique()
    longer = pl.col("_key").str.len_chars() < pl.col("_text").str.len_chars()
    best = (
        right.select("_s", "_thread", "_text")
        .join(keys, on="_thread")
        .filter(longer & pl.col("_text").str.starts_with(pl.col("_key")))
        .sort(pl.col("_key").str.len_chars(), descending=True)
        .unique("_s", keep="first")
        .select("_s", "_key")
    )
    return (
        right.join(best, on="_s")
        .with_columns(pl.col("_key").alias("_text"))
        .select("_s", "_t", "_order", "_thread", "_text")
    )


def _in_order(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``_a``, ``_s`` pairs: the k-th run of a statement in a connection in the audit log
    with its k-th in the slow log, within stretches where both logs have as many runs
    (records of both within the tolerance of the one before); pairs further apart than
    the tolerance are left out."""
    both = pl.concat(
        [
            left.select(pl.col("_a").alias("_r"), pl.lit(True).alias("_audit"), pl.exclude("_a")),
            right.select(pl.col("_s").alias("_r"), pl.lit(False).alias("_audit"), pl.exclude("_s")),
        ]
    ).sort("_thread", "_text", "_t")
    starts = (
        pl.col("_thread").ne_missing(pl.col("_thread").shift())
        | pl.col("_text").ne_missing(pl.col("_text").shift())
        | (pl.col("_t") - pl.col("_t").shift() > JOIN_TOLERANCE)
    ).fill_null(True)
    ranked = (
        both.with_columns(starts.cum_sum().alias("_stretch"))
        .filter(pl.col("_audit").sum().over("_stretch") * 2 == pl.len().over("_stretch"))
        .sort("_stretch", "_audit", "_order", "_r")
        .with_columns(pl.int_range(pl.len()).over("_stretch", "_audit").alias("_k"))
    )
    side = ranked.select("_stretch", "_k", "_r", "_t")
    return (
        side.filter(ranked["_audit"])
        .join(side.filter(~ranked["_audit"]), on=["_stretch", "_k"], suffix="_slow")
        .filter((pl.col("_t") - pl.col("_t_slow")).abs() <= JOIN_TOLERANCE)
        .select(pl.col("_r").alias("_a"), pl.col("_r_slow").alias("_s"))
    )


def _nearest(left: pl.DataFrame, right: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``_a``, ``_s`` pairs: each audit record's nearest slow record with the same ``by``
    within the tolerance, a slow record claimed twice going to the nearer (then the
    earlier) audit record. ``_k`` is a record's rank among its connection's runs of the
    statement in the same second of its own log."""
    second = pl.col("_t").dt.truncate("1s")
    rank = pl.int_range(pl.len()).over("_thread", "_text", second).alias("_k")
    return (
        left.sort("_order", "_a")
        .with_columns(rank)
        .sort("_t")
        .join_asof(
            right.sort("_order", "_s").with_columns(rank, pl.col("_t").alias("_t_slow")).sort("_t"),
            on="_t",
            by=by,
            strategy="nearest",
            tolerance=JOIN_TOLERANCE,
            check_sortedness=False,
        )
        .filter(pl.col("_s").is_not_null())
        .sort((pl.col("_t") - pl.col("_t_slow")).abs(), "_a")
        .unique("_s", keep="first", maintain_order=True)
        .select("_a", "_s")
    )
