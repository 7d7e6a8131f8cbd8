"""pgAudit records, whichever of PostgreSQL's three log outputs carried them.

Each output module (``pg_stderr``, ``pg_csvlog``, ``pg_jsonlog``) turns its lines into a
*records* frame with the columns of :data:`RECORD_COLUMNS`; :func:`to_events` turns
records into normalized events. Everything here is whole-column Polars expressions.

Counting rules real pgAudit 1.7 logs need (see ``tests/fixtures/pgaudit/FINDINGS.md``):

* With ``pgaudit.log_relation = on`` one statement is logged once per relation, each
  line carrying the whole statement's row count: rows are counted once per
  (session, statement id, sub-statement id), and the relations are collected.
* ``COPY`` (to and from), ``DECLARE CURSOR`` and ``FETCH`` log 0 rows (and often no object)
  although they move data out; so do dump tools, which read with ``COPY ... TO``.
  Their row count is unknown (null), they are marked ``is_export``, and the objects
  are taken from the statement text (a ``FETCH`` gets the objects of its cursor).
* Parallel workers log their own partial AUDIT lines with no user (and their own
  statement numbers); the leader logs the statement with the full row count, so worker
  lines are context, not events.
* Foreign-key checks run by the server itself are audited as 1-row READs of the
  referenced table; they are classed ``INTERNAL`` so they do not count as reads. Only
  the text PostgreSQL writes for them, told line by line (a user's own ``SELECT fk."ssn"
  FROM ONLY ...`` is a read): see ``_RI_PER_ROW``.
* ``COPY ... TO`` is pgAudit's READ ``COPY`` (``COPY ... FROM`` is WRITE). Comments
  before a statement's first word (``/* tool */ COPY t TO STDOUT``) are skipped to
  classify it and name its tables.
* With ``pgaudit.log_catalog = on`` (the default) reads of ``pg_catalog`` and
  ``information_schema`` are audited like any table's. A statement reading only them
  (or sequences' state: pg_dump reads each sequence's last value) is classed ``CATALOG``
  (a statement, not a read of data, nor an export even in a dump); one that also read
  tables names only those tables. So is a dump's ``SELECT`` of no relation
  (``set_config``, ``pg_is_in_recovery()``): a dump's exports are its COPYs and cursors.
* Failed statements are not audited; they are the ``ERROR`` records (with the
  statement from the ``STATEMENT`` line or the record's statement field).
* Several statements sent as one simple query are audited each with its own statement
  id and rows, but all with the whole string: each is classed by its own statement of
  the string (:func:`own_statements`), two ``COPY ... TO`` of one string each by its own.
* ``PREPARE p AS SELECT ...`` is audited as a 0-row READ (WRITE for an ``INSERT``)
  naming no object; each ``EXECUTE p`` as the prepared statement's READ (its rows, its
  tables; the text is the ``PREPARE``'s) then a MISC ``EXECUTE``. The ``PREPARE`` reads
  nothing: it is classed ``MISC``, a statement but no read, its text's tables no
  objects read.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.features import begins_statement
from detector.formats import pg_messages, pg_replication, zones
from detector.formats.base import Parsed
from detector.reader import CUT_MARKER_RE
from detector.rejects import MAX_LINE_CHARS, Reason, empty_rejects, rejects

RECORD_COLUMNS: Final = pl.Schema(
    {
        "line_no": pl.UInt64,
        "ts": pl.String,
        "user": pl.String,
        "dbname": pl.String,
        "pid": pl.Int64,
        "remote_host": pl.String,
        "application_name": pl.String,
        "session_id": pl.String,
        "backend_type": pl.String,
        "leader_pid": pl.Int64,
        "severity": pl.String,
        "message": pl.String,
        "statement": pl.String,
    }
)

_CSV_FIELD = r'"(?:[^"]|"")*"|[^,]*'
AUDIT_RE: Final = (
    r"(?s)^AUDIT: (?P<audit_type>[A-Z]+),(?P<stmt_id>\d+),(?P<substmt_id>\d+),"
    r"(?P<class>[A-Z]*),(?P<command>[^,]*),(?P<object_type>[^,]*),"
    rf"(?P<object_name>{_CSV_FIELD}),(?P<statement>{_CSV_FIELD}),"
    rf"(?P<parameter>{_CSV_FIELD})(?:,(?P<rows>\d+))?$"
)
_AUDIT_FIELDS: Final = [
    "audit_type", "stmt_id", "substmt_id", "class", "command",
    "object_type", "object_name", "statement", "parameter", "rows",
]  # fmt: skip

# The usual end of an AUDIT record: no parameters logged, then the row count if logged.
_PLAIN_END_WHOLE: Final = r"(,(?:<none>|<not logged>)(?:,\d+)?)$"

DUMP_TOOLS: Final = ("pg_dump", "pg_dumpall", "pg_basebackup")
_MILLIS_UTC: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-5][0-9]\.[0-9]{3}$"
_TS_RE: Final = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*(\S*)$"
# Relation names as a statement writes them: schema.table, "Quoted"."Names", table.
_IDENT: Final = r'(?:"[^"]+"|[A-Za-z_][\w$]*)'
_RELATION: Final = rf"{_IDENT}(?:\.{_IDENT})?"
# Comments and blanks before a statement's first word: tools put their name or the
# query's origin there (``/* metabase query 42 */ COPY ...``, sqlcommenter, cron scripts).
# (Nested ``/* /* */ */`` comments are not undone; pgAudit's READ ``COPY`` still tells
# such a ``COPY ... TO``.)
LEADING: Final = r"(?:\s|/\*(?s:.*?)\*/|--[^\n]*)*"


# When, where in the file, and who: the record columns every event carries.
_WHO: Final = (
    pl.col(S.TIME),
    pl.col("line_no"),
    pl.col("user").alias(S.ACCOUNT),
    pl.col("remote_host").alias(S.CLIENT_IP),
    pl.col("application_name").alias(S.APPLICATION),
    pl.col("dbname").alias(S.DATABASE),
)


_HEAD: Final = ["_type", "_stmt", "_sub", "_class", "_command", "_otype", "_tail"]


def audit_fields(audit: pl.DataFrame) -> pl.DataFrame:
    """``audit`` (with ``message``) plus the AUDIT record's fields as ``a_<field>`` columns.

    The record is CSV; its first six fields never need quoting, so they are split off
    directly. Records whose object is unquoted and that logged no parameter values (the
    usual case) are split at their known ending; the rest go through :data:`AUDIT_RE`.
    A record that fits neither has null fields (it is then rejected as truncated).
    """
    tail, end = pl.col("_tail"), pl.col("_end")
    plain = (
        pl.col("_type").str.contains(r"^[A-Z]+$")
        & pl.col("_stmt").str.contains(r"^\d+$")
        & pl.col("_sub").str.contains(r"^\d+$")
        & ~tail.str.starts_with('"')
        & end.is_not_null()
    ).fill_null(False)
    split = (
        audit.lazy()
        # "AUDIT: " has no comma: split off with the type, not copied off every message.
        .with_columns(pl.col("message").str.splitn(",", 7).struct.rename_fields(_HEAD).alias("_h"))
        .unnest("_h")
        .with_columns(pl.col("_type").str.strip_prefix("AUDIT: "))
        # One pass over the (long) tail finds its known ending; the rest is slicing.
        .with_columns(tail.str.extract(_PLAIN_END_WHOLE, 1).alias("_end"))
        .with_columns(plain.alias("_plain"))
        .collect()
    )
    # A byte offset, used as a character offset below: the same here, as an unquoted
    # object is ASCII. pgAudit names objects as quote_identifier writes them, which quotes
    # a name with any byte past ASCII (public."café"), and the quotes make pgAudit
    # CSV-quote the field ("public.""café"""): such records take AUDIT_RE's path.
    object_end = tail.str.find(",", literal=True)
    rows = end.str.strip_prefix(",<none>").str.strip_prefix(",<not logged>").str.strip_prefix(",")
    statement_len = tail.str.len_chars() - end.str.len_chars() - object_end - 1
    # The raw message is not needed past here; carrying it would copy it at every step.
    done = ["message", "statement", *_HEAD, "_end", "_plain"]
    all_plain = split["_plain"].all()
    simple = (
        (split if all_plain else split.filter(pl.col("_plain")))
        .lazy()
        .with_columns(
            pl.col("_type").alias("a_audit_type"),
            pl.col("_stmt").alias("a_stmt_id"),
            pl.col("_sub").alias("a_substmt_id"),
            pl.col("_class").alias("a_class"),
            pl.col("_command").alias("a_command"),
            pl.col("_otype").alias("a_object_type"),
            tail.str.slice(0, object_end).alias("a_object_name"),
            tail.str.slice(object_end + 1, statement_len).alias("a_statement"),
            # ``_end`` is ``,<none>`` or ``,<not logged>``, then maybe ``,<rows>``.
            pl.when(end.str.starts_with(",<none>"))
            .then(pl.lit("<none>"))
            .otherwise(pl.lit("<not logged>"))
            .alias("a_parameter"),
            pl.when(rows != "").then(rows).alias("a_rows"),
        )
        .drop(done)
        .collect()
    )
    if all_plain:
        return simple
    rest = split.filter(~pl.col("_plain")).with_columns(
        pl.col("message").str.extract_groups(AUDIT_RE).alias("_a")
    )
    rest = rest.with_columns(pl.col("_a").struct.field(f).alias(f"a_{f}") for f in _AUDIT_FIELDS)
    return pl.concat([simple, rest.drop([*done, "_a"])]).sort("line_no")


def unquote_csv(col: pl.Expr) -> pl.Expr:
    """A CSV field's value: outer quotes removed and doubled quotes undone."""
    quoted = col.str.starts_with('"') & col.str.ends_with('"') & (col.str.len_chars() >= 2)
    inner = col.str.slice(1, col.str.len_chars() - 2).str.replace_all('""', '"', literal=True)
    return pl.when(quoted).then(inner).otherwise(col)


def parse_time(ts: pl.Expr, timezone: str | None = None) -> pl.Expr:
    """PostgreSQL's ``%m``/``%t`` timestamp (``2026-11-28 06:55:02.403 UTC``) as UTC.

    Numeric offsets (``+01``, ``-0530``) and the zone abbreviations of
    :data:`zones.ZONE_MINUTES` are understood, and with ``timezone`` (the server's
    ``log_timezone``) the abbreviations that zone prints, by its rules (``CST`` in
    America/Chicago is UTC-6); without, those several zones print are guessed
    (:func:`zones.guessed`); others give null (the line is then rejected).
    """
    parts = ts.str.extract_groups(_TS_RE)
    naive = parts.struct.field("1").str.to_datetime(
        "%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False
    )
    zone = parts.struct.field("2")
    offset = zone.str.extract_groups(r"^([+-])(\d\d):?(\d\d)?$")
    minutes = offset.struct.field("2").cast(pl.Int64, strict=False) * 60 + offset.struct.field(
        "3"
    ).cast(pl.Int64, strict=False).fill_null(0)
    numeric = pl.when(offset.struct.field("1") == "-").then(-minutes).otherwise(minutes)
    known = zones.ZONE_MINUTES | zones.guessed()
    named = zone.replace_strict(known, default=None, return_dtype=pl.Int64)
    signed = pl.coalesce(numeric, named, pl.when(zone == "").then(pl.lit(0)))
    utc = (naive - pl.duration(minutes=signed)).dt.replace_time_zone("UTC")
    if timezone is None:
        return utc
    own, _ = zones.abbreviations(timezone)
    # The zone's own abbreviations by its rules, before the common meaning of one (PST
    # in Asia/Manila); any other name it does not know, by its rules too.
    in_zone = zone.is_in(list(own)) if own else named.is_null() & (zone != "")
    zoned = zones.local_to_utc(naive, zone, timezone).dt.convert_time_zone("UTC")
    return pl.when(in_zone & numeric.is_null()).then(zoned).otherwise(utc)


def unknown_zone(ts: pl.Expr) -> pl.Expr:
    """Whether a timestamp's zone is a name (not an offset) that :func:`parse_time`
    could not read: one it does not know."""
    zone = ts.str.extract(_TS_RE, 2)
    known = [*zones.ZONE_MINUTES, *zones.AMBIGUOUS]
    named = zone.str.contains(r"^[A-Za-z]") & ~zone.is_in(known)
    return named.fill_null(False)


def relations_in(text: pl.Expr, *, ctes: bool = True) -> pl.Expr:
    """Relations a statement reads, from its text: after ``FROM``/``JOIN`` (``ONLY`` or
    not, every item of a ``FROM a x, b y`` list), or ``COPY t``; not the names its
    ``WITH`` defines.

    Used only where pgAudit names no object (``COPY t TO``, cursors, failed statements).
    Unqualified names are given the ``public`` schema, the default ``search_path``. Names
    are written as pgAudit writes the objects it names (:func:`_quote_identifier`).
    Without ``ctes`` (no text has a ``WITH``: :func:`has_ctes`), the names a ``WITH``
    defines are not looked for: their steps cost ~2 ms a call, on no rows as on many.
    """
    # The items of FROM lists after their first, the first found with every FROM below.
    listed = text.str.extract_all(_FROM_LIST).list.join(" ").str.extract_all(_LISTED)
    found = pl.concat_list(
        # with a following "(", to tell a function (``FROM shop.all_customers()``)
        text.str.extract_all(rf"(?i)\b(?:FROM|JOIN)\s+{_SKIPPED}{_RELATION}\s*\(?"),
        text.str.extract_all(rf"(?i)^{LEADING}COPY\s+{_RELATION}"),
        listed,
    )
    name = (
        pl.element()
        .str.replace(rf"(?i)^{LEADING}(?:FROM|JOIN|COPY|,)\s*{_SKIPPED}", "")
        .str.strip_chars_end()
    )
    # a function's name, or a name in a function's arguments or an alias's columns
    relation = ~pl.element().str.ends_with("(") & ~pl.element().str.ends_with(")")
    relations = _qualified(found.list.eval(pl.element().filter(relation)).list.eval(name))
    if not ctes:
        return relations.list.unique(maintain_order=True)
    # ``WITH x AS (...) SELECT ... FROM x``: x is no relation. (A ``public.x`` named as
    # such in the same text is taken for it too.)
    definitions = text.str.extract_all(_CTE)
    if_cte = pl.element().str.replace(r"(?i)^(?:WITH(?:\s+RECURSIVE)?|,)\s*", "")
    defined = _qualified(definitions.list.eval(if_cte.str.extract(rf"^({_IDENT})", 1)))
    marked = pl.element().str.starts_with(NUL)
    unmarked = pl.element().filter(marked).str.strip_prefix(NUL).implode()
    without_ctes = pl.concat_list(relations, defined.list.eval(pl.lit(NUL) + pl.element()))
    return (
        pl.when(definitions.list.len() > 0)
        .then(without_ctes.list.eval(pl.element().filter(~marked & ~pl.element().is_in(unmarked))))
        .otherwise(relations)
        .list.unique(maintain_order=True)
    )


def has_ctes(frame: pl.DataFrame, text: pl.Expr) -> bool:
    """Whether any ``text`` of ``frame`` defines names by ``WITH`` (:func:`relations_in`)."""
    return bool(frame.select(text.str.contains(_CTE).any()).item())


NUL: Final = "\x00"  # marks the names a WITH defines among those a text reads
# Words between FROM or JOIN and the relation: ``FROM ONLY t`` (pg_dump --inserts' cursors,
# PostgreSQL's own foreign-key checks), ``JOIN LATERAL f(x)``.
_SKIPPED: Final = r"(?:(?:ONLY|LATERAL)\s+)?"
# An item of a FROM list: a relation or a function, then maybe an alias and its columns.
_FROM_ITEM: Final = (
    rf"{_SKIPPED}{_RELATION}(?:\s*\([^()]*\))?(?:\s+(?:AS\s+)?{_IDENT}(?:\s*\([^()]*\))?)?"
)
# A FROM list of several items (``FROM hr.people p, hr.pay y``), and its items after the first.
_FROM_LIST: Final = rf"(?i)\bFROM\s+(?:{_FROM_ITEM}\s*,\s*)+{_SKIPPED}{_RELATION}\s*[()]?"
_LISTED: Final = rf"(?i),\s*{_SKIPPED}{_RELATION}\s*[()]?"
# A name a WITH defines: ``WITH [RECURSIVE] x [(cols)] AS [NOT] [MATERIALIZED] (``, or
# the same after a comma for the next one.
_CTE: Final = (
    rf"(?i)(?:\bWITH(?:\s+RECURSIVE)?|,)\s*{_IDENT}(?:\s*\([^()]*\))?"
    r"\s+AS\s*(?:NOT\s+)?(?:MATERIALIZED\s*)?\("
)


def _qualified(names: pl.Expr) -> pl.Expr:
    """A list of relation names as written in a statement (``hr.people``, ``"Q".t``,
    ``t``) as pgAudit writes them: schema-qualified (``public`` where not) and quoted."""
    # The name's parts in one step, the quoting in the next: one expression using each
    # part several times held each part's patterns as often (~10 ms a call on no rows).
    name = pl.element()
    parts = pl.struct(
        name.str.extract(rf"^({_IDENT})", 1).alias("first"),
        name.str.extract(rf"^{_IDENT}\.({_IDENT})$", 1).alias("second"),
    )
    first, second = pl.element().struct.field("first"), pl.element().struct.field("second")
    schema = pl.when(second.is_null()).then(pl.lit("public")).otherwise(first)
    # Then the server's names, then their quoting: each step reads the one before it
    # several times, and within a list nothing is computed once for all its uses.
    server = pl.struct(
        _server_name(schema).alias("schema"),
        _server_name(pl.coalesce(second, first)).alias("table"),
    )
    in_schema, table = pl.element().struct.field("schema"), pl.element().struct.field("table")
    qualified = _quote_identifier(in_schema) + "." + _quote_identifier(table)
    return names.list.eval(parts).list.eval(server).list.eval(qualified)


_UPPER: Final = [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def _server_name(ident: pl.Expr) -> pl.Expr:
    """An identifier as written in a statement, as the server names it: unquoted, its
    ASCII letters lower-cased; quoted, as written (doubled quotes undone)."""
    quoted = ident.str.starts_with('"')
    inner = ident.str.slice(1, ident.str.len_chars() - 2).str.replace_all('""', '"', literal=True)
    lowered = ident.str.replace_many(_UPPER, [c.lower() for c in _UPPER])
    return pl.when(quoted).then(inner).otherwise(lowered)


def _quote_identifier(name: pl.Expr) -> pl.Expr:
    """A server's name as pgAudit writes it, quoted as PostgreSQL's ``quote_identifier``
    quotes it when it holds more than lower-case ASCII letters, digits and underscores
    (``"Ventes"."Clients été"``, ``shop.customers``)."""
    return (
        pl.when(name.str.contains(r"^[a-z_][a-z0-9_]*$"))
        .then(name)
        .otherwise(pl.lit('"') + name.str.replace_all('"', '""', literal=True) + pl.lit('"'))
    )


def to_events(
    records: pl.DataFrame,
    source_format: str,
    *,
    sessions_carried: bool = False,
    timezone: str | None = None,
    english: bool = False,
) -> Parsed:
    """Events and rejects (without raw lines) from a records frame (:data:`RECORD_COLUMNS`).

    Only audit records, errors, refused logins and connection lines are looked at
    closely; the rest (durations, checkpoints, ...) are context lines, counted.

    An AUDIT record longer than :data:`MAX_LINE_CHARS` bytes (a ``SELECT ... IN`` of
    200,000 ids, say) is an event like any other, its statement text cut to its first
    :data:`QUERY_KEPT` characters and a marker (:func:`cut_statement`): the account,
    objects, class and rows are all before or after the text. Other records that long
    are rejected as ``too_long`` (``duration:`` lines repeating the text are context).

    With ``sessions_carried`` (stderr, whose lines may name no user: the session's
    connection line, maybe in an earlier chunk, does), AUDIT records with no user are
    kept for :mod:`detector.formats.pg_sessions` to give them their session's user, and
    ``Parsed.sessions`` says which sessions the chunk's connection lines open.

    Times are read by :func:`parse_time` (in ``timezone``, the server's ``log_timezone``,
    if told); a record whose zone abbreviation it cannot place is ``unknown_zone``.
    Severities and connection lines in the server's language (lc_messages) are read as
    in English (:mod:`pg_messages`), unless ``english`` says they are already.
    """
    total = records.height
    if not english:
        records = records.with_columns(
            pg_messages.in_english(records["severity"]),
            pg_messages.connections_in_english(records["message"]),
        )
    msg, sev = pl.col("message"), pl.col("severity")
    # The kinds of record, tested once: each test is a pass over the messages.
    duration = msg.str.starts_with("duration: ") & msg.str.contains("  statement: ", literal=True)
    long = msg.str.len_bytes() > MAX_LINE_CHARS
    any_long = records.select(long.any()).item()
    too_long = rejects(records, pl.lit(False), Reason.TOO_LONG)
    if any_long:
        audit_record = msg.str.starts_with("AUDIT: ")
        timing = msg.str.starts_with("duration: ")
        too_long = rejects(records, long & ~audit_record & ~timing, Reason.TOO_LONG)
        # A long duration line (of a statement, or its parse, bind or execute step) only
        # repeats the statement's text: context.
        records = records.filter(~long | audit_record).with_columns(long.alias("_long"))
    records = records.with_columns(
        msg.str.starts_with("AUDIT: ").alias("_audit"),
        duration.alias("_duration"),
        # A walsender's ``received replication command:`` and ``replication connection
        # authorized:`` (log_replication_commands, log_connections), and few others: one
        # pass for both, told apart on the few rows only (:func:`_replication`).
        msg.str.starts_with("re").alias("_re"),
    )
    is_audit, is_duration = pl.col("_audit"), pl.col("_duration")
    relevant = (
        is_audit
        | is_duration
        | sev.is_in(["ERROR", "FATAL"])
        | msg.str.starts_with("connection ")
        | pl.col("_re")
    )
    if sessions_carried:  # a session's end, for pg_sessions to forget it first
        relevant = relevant | msg.str.starts_with("disconnection:")
    records = records.filter(relevant)
    times, guessed = _parse_times(records["ts"], timezone)
    records = records.with_columns(times.alias(S.TIME))
    bad_time = _untimed(records)
    records = records.filter(pl.col(S.TIME).is_not_null())
    records = _fill_session_attributes(records)

    audit = audit_fields(records.filter(is_audit))
    unread = pl.col("a_stmt_id").is_null()
    if any_long:  # a long record not read as AUDIT fields is quarantined as too long
        truncated = pl.concat(
            [
                rejects(audit, unread & ~pl.col("_long"), Reason.TRUNCATED),
                rejects(audit, unread & pl.col("_long"), Reason.TOO_LONG),
            ]
        )
        audit = audit.filter(~unread).with_columns(
            pl.when("_long")
            .then(cut_statement(pl.col("a_statement")))
            .otherwise(pl.col("a_statement"))
            .alias("a_statement")
        )
    else:
        truncated = rejects(audit, unread, Reason.TRUNCATED)
        audit = audit.filter(~unread)
    # Parallel workers log partial copies of their leader's statement with no user (csv
    # and json say backend_type "parallel worker"; stderr only lacks the user).
    worker = (pl.col("backend_type") == "parallel worker").fill_null(False)
    if not sessions_carried:
        worker = worker | pl.col("user").is_null()
    audit = audit.filter(~worker)
    statements = _with_durations(_audit_statements(audit), records.filter(is_duration))
    failures = _failures(records.filter(sev.is_in(["ERROR", "FATAL"]) & ~is_duration))
    replicated = _replication(records)
    events = pl.concat([statements, failures, replicated], how="diagonal_relaxed").with_columns(
        pl.lit("postgresql").alias(S.DB_SYSTEM), pl.lit(source_format).alias(S.SOURCE_FORMAT)
    )
    return Parsed(
        events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
        rejects=pl.concat([too_long, bad_time, truncated]),
        context=total
        - audit.height
        - failures.height
        - replicated.height
        - too_long.height
        - bad_time.height
        - truncated.height,
        # A statement's lines (its sub-statements') each carry its whole text: once each.
        cut=events.filter(begins_statement() & is_cut(pl.col(S.QUERY))).height if any_long else 0,
        guessed=guessed,
        sessions=_sessions_opened(records) if sessions_carried else None,
    )


def _replication(records: pl.DataFrame) -> pl.DataFrame:
    """Events of the replication commands of ``records`` (:mod:`pg_replication`); an
    empty frame, in one cheap test, for the usual log that has none."""
    if not records["_re"].any():
        return pl.DataFrame()
    maybe = records.filter("_re")
    return pg_replication.events(maybe.filter(pg_replication.is_command(pl.col("message"))))


def _sessions_opened(records: pl.DataFrame) -> pl.DataFrame:
    """Per process with connection lines in ``records``: how many sessions it opened
    (``connection received``), its last session, what is known of it (user, database,
    application, client) and whether it ended (``disconnection``, with
    ``log_disconnections``)."""
    message = pl.col("message")
    return (
        records.filter(
            message.str.starts_with("connection ")
            | message.str.starts_with("disconnection:")
            | message.str.starts_with(pg_replication.AUTHORIZED)
        )
        .group_by("pid", maintain_order=True)
        .agg(
            message.str.starts_with("connection received:").sum().alias("opened"),
            pl.col("session_id").last(),
            *(pl.col(c).last() for c in SESSION_ATTRIBUTES),
            message.last().str.starts_with("disconnection:").alias("closed"),
        )
    )


SESSION_ATTRIBUTES: Final = ("user", "dbname", "application_name", "remote_host")


QUERY_KEPT: Final = 65_536  # characters of a cut statement's text kept
_CUT_SAYS: Final = (
    " [trovewatch: statement of {} bytes in the log, cut to its first "
    + str(QUERY_KEPT)
    + " characters]"
)
CUT_STATEMENT_RE: Final = (
    r"\[trovewatch: statement of \d+ bytes in the log, cut to its first \d+ characters\]"
)


def cut_statement(text: pl.Expr) -> pl.Expr:
    """A statement's text (as logged, maybe CSV-quoted) cut to its first
    :data:`QUERY_KEPT` characters, then a marker giving its size in the log, bytes the
    reader cut (:data:`detector.reader.CUT_MARKER_RE`) included.

    >>> pl.select(cut_statement(pl.lit("SELECT " + "1," * 40_000))).item()[65_530:]
    ',1,1,1 [trovewatch: statement of 80007 bytes in the log, cut to its first 65536 characters]'
    """
    marker = text.str.extract(CUT_MARKER_RE, 0)
    reader_cut = text.str.extract(CUT_MARKER_RE, 1).cast(pl.Int64).fill_null(0)
    in_text = text.str.len_bytes().cast(pl.Int64)
    size = in_text - marker.str.len_bytes().cast(pl.Int64).fill_null(0) + reader_cut
    says = pl.format(_CUT_SAYS, size)
    quoted = text.str.starts_with('"') & text.str.ends_with('"')
    return pl.concat_str(
        text.str.slice(0, QUERY_KEPT),
        says,
        pl.when(quoted).then(pl.lit('"')).otherwise(pl.lit("")),
    )


def is_cut(query: pl.Expr) -> pl.Expr:
    """True for a statement text cut by :func:`cut_statement`."""
    return (query.str.len_chars() > QUERY_KEPT) & query.str.contains(CUT_STATEMENT_RE)


def _with_durations(statements: pl.DataFrame, durations: pl.DataFrame) -> pl.DataFrame:
    """Statements with ``duration_ms`` from the ``duration: ... statement:`` line that
    follows them in their session (``log_min_duration_statement``).

    A duration belongs to the last audited statement before it in the session, and only
    if it names the same statement text: a statement below the duration threshold must
    not take the next one's. It goes on the first sub-statement only.
    """
    if durations.is_empty() or statements.is_empty():
        return statements
    major = pl.col(S.STATEMENT_ID).str.extract(r"^(\d+)\.", 1).alias("_major")
    timed = durations.select(
        pl.col("session_id").alias(S.SESSION),
        "line_no",
        pl.col("message").str.extract(r"^duration: ([\d.]+) ms", 1).cast(pl.Float64).alias("_ms"),
        pl.col("message").str.replace(r"^duration: [\d.]+ ms  statement: ", "").alias("_text"),
    )
    # a statement of a string of several: the duration names the string
    logged = pl.coalesce("_logged", S.QUERY).alias(S.QUERY)
    untimed = statements.drop(S.DURATION_MS, strict=False).with_columns(
        pl.lit(None, pl.Float64).alias(S.DURATION_MS)
    )
    # Durations of statements not audited (``SELECT 1`` pings, say) name no text logged:
    # one lookup spares the sort and the fills below.
    texts = statements.select(logged)[S.QUERY].implode()
    if not timed.select(pl.col("_text").is_in(texts).any()).item():
        return untimed
    marks = (
        pl.concat(
            [
                statements.select(S.SESSION, "line_no", S.STATEMENT_ID, logged),
                timed,
            ],
            how="diagonal",
        )
        .sort("line_no")  # forward fills within each session, in line order
        .with_columns(
            pl.col(S.STATEMENT_ID).forward_fill().over(S.SESSION),
            pl.col(S.QUERY).forward_fill().over(S.SESSION),
        )
        .filter(pl.col("_ms").is_not_null() & (pl.col("_text") == pl.col(S.QUERY)))
        .with_columns(major)
        .unique([S.SESSION, "_major"], keep="first", maintain_order=True)
        .select(S.SESSION, "_major", pl.col("_ms").alias(S.DURATION_MS))
    )
    if marks.is_empty():  # each a text logged, but not just after it in its session
        return untimed
    first_sub = pl.col(S.STATEMENT_ID).str.ends_with(".1")
    return (
        statements.drop(S.DURATION_MS, strict=False)
        .with_columns(major)
        .join(marks, on=[S.SESSION, "_major"], how="left", maintain_order="left")
        .with_columns(pl.when(first_sub).then(pl.col(S.DURATION_MS)).alias(S.DURATION_MS))
        .drop("_major")
    )


def _untimed(records: pl.DataFrame) -> pl.DataFrame:
    """The records whose time did not parse, as rejects: ``unknown_zone`` where the
    zone was a name it could not place, else ``bad_field``."""
    if not records[S.TIME].null_count():
        return empty_rejects()
    untimed = records.filter(pl.col(S.TIME).is_null())
    unplaced = unknown_zone(pl.col("ts"))
    return pl.concat(
        [
            rejects(untimed, ~unplaced, Reason.BAD_FIELD),
            rejects(untimed, unplaced, Reason.UNKNOWN_ZONE),
        ]
    )


def _parse_times(ts: pl.Series, timezone: str | None) -> tuple[pl.Series, dict[str, int]]:
    """:func:`parse_time` for a column, with a fast path for the usual all-UTC log; and
    how many times of each abbreviation several zones print were read by a guess."""
    if ts.len() and ts.str.ends_with(" UTC").all():
        naive = ts.str.head(-4)
        # Polars reads a fixed-width format without chrono (a quarter of the time); it
        # must then find a digit wherever the format has one. Seconds stop at 59, as a
        # leap second is chrono's to read.
        fixed = naive.str.contains(_MILLIS_UTC).all()
        return naive.str.to_datetime(
            "%Y-%m-%d %H:%M:%S.%3f" if fixed else "%Y-%m-%d %H:%M:%S%.f",
            time_unit="us",
            strict=False,
        ).dt.replace_time_zone("UTC"), {}
    times = ts.to_frame("ts").select(parse_time(pl.col("ts"), timezone).alias("ts"))["ts"]
    told = zones.abbreviations(timezone)[0] if timezone is not None else frozenset()
    counts = {n: int(ts.str.ends_with(f" {n}").sum()) for n in set(zones.AMBIGUOUS) - told}
    return times, {name: n for name, n in counts.items() if n}


# The user (u), database (d) and application (a) a session's connection line names.
CONNECTION_AUTHORIZED: Final = (
    r"^(?:replication )?connection authorized: user=(?P<u>.*?)(?: database=(?P<d>.*?))?"
    r"(?: application_name=(?P<a>.*?))?(?: SSL enabled.*| GSS.*)?$"
)


def _fill_session_attributes(records: pl.DataFrame) -> pl.DataFrame:
    """Fill user, database, application and client of every record from its session.

    The stderr prefix may lack ``%u``/``%d``/``%a``/``%h``; the ``connection received``
    and ``connection authorized`` lines carry them, so they are spread over the session.
    """
    records = records.with_columns(
        pl.col("user").replace("[unknown]", None),
        pl.col("dbname").replace("[unknown]", None),
        pl.col("application_name").replace(["[unknown]", ""], None),
        pl.col("remote_host").replace("[local]", "local"),
    )
    needed = ["user", "dbname", "application_name", "remote_host"]
    if not records.select(pl.any_horizontal(pl.col(c).is_null() for c in needed).any()).item():
        return records
    msg = pl.col("message")
    auth = msg.str.extract_groups(CONNECTION_AUTHORIZED)

    # The unix socket, "[local]" here, is "local" in jsonlog, csvlog and %r: one name.
    host = msg.str.extract(r"^connection received: host=(\S+)", 1).replace("[local]", "local")
    filled = records.with_columns(
        auth.struct.field("u").alias("_u"),
        auth.struct.field("d").alias("_d"),
        auth.struct.field("a").alias("_a"),
        host.alias("_h"),
    ).with_columns(
        pl.col(c).fill_null(strategy="forward").over("session_id").alias(c)
        for c in ("_u", "_d", "_a", "_h")
    )
    return filled.with_columns(
        pl.coalesce(name, fill).alias(name)
        for name, fill in zip(needed, ("_u", "_d", "_a", "_h"), strict=True)
    ).drop("_u", "_d", "_a", "_h")


def _audit_statements(audit: pl.DataFrame) -> pl.DataFrame:
    """One event per (session, statement, sub-statement) from its AUDIT lines."""
    key = ["session_id", "a_stmt_id", "a_substmt_id"]
    obj, text = pl.col("a_object_name"), pl.col("a_statement")
    # Whether any object or text is CSV-quoted, in one pass over both columns.
    quoted_obj, quoted_text, temporary = audit.select(
        obj.str.starts_with('"').any(),
        text.str.starts_with('"').any(),
        obj.str.starts_with("pg_temp_").any().alias("_temporary"),
    ).row(0)
    if quoted_obj:
        obj = unquote_csv(obj)
    if temporary:
        # A temporary table lives in its backend's own schema (pg_temp_3.tmp_eu, then
        # pg_temp_7.tmp_eu in the next session): one name for it, or every session's
        # temporary table is an object the account never read before.
        obj = obj.str.replace(r"^pg_temp_\d+\.", "pg_temp.")
    obj = obj.replace("", None)
    # Only the columns read below: the filter to first lines copies each one it keeps.
    used = [S.TIME, "line_no", "user", "remote_host", "application_name", "dbname", *key]
    used += ["a_class", "a_command", "a_statement", "a_rows"]
    # A sequence's state (pg_dump reads each one's last value) is no more data than a
    # catalog: a statement reading only catalogs and sequences is a CATALOG read.
    state = S.is_catalog(obj, "postgresql").fill_null(False) | (
        pl.col("a_object_type") == "SEQUENCE"
    )
    audit = audit.select(*used, obj.alias("_obj"), state.fill_null(False).alias("_cat"))
    # One hashing of the key finds each statement's first line and collects its relations.
    # Its tables (objects not catalogs), or the catalogs it read if it read nothing else
    # (a CATALOG read): each list taken whole, as a filter by the group's own ``any``
    # goes group by group.
    grouped = (
        audit.select(*key, "_obj", "_cat").with_row_index("_at").group_by(key, maintain_order=True)
    )
    if audit["_cat"].any():
        tables = pl.when(~pl.col("_cat")).then(pl.col("_obj"))
        collected = grouped.agg(
            pl.col("_at").first(),
            tables.drop_nulls().unique(maintain_order=True).alias("_tables"),
            pl.col("_obj").drop_nulls().unique(maintain_order=True).alias("_all"),
            pl.col("_cat").any(),
        )
        only_catalogs = pl.col("_tables").list.len() == 0
        collected = collected.select(
            "_at",
            pl.when(only_catalogs).then(pl.col("_all")).otherwise(pl.col("_tables")).alias("_obj"),
            (pl.col("_cat") & only_catalogs).alias("_cat"),
        )
    else:  # the usual chunk, no catalog read: the tables are all the objects
        collected = grouped.agg(
            pl.col("_at").first(), pl.col("_obj").drop_nulls().unique(maintain_order=True)
        ).with_columns(pl.lit(False).alias("_cat"))
    # The groups come in the order of their first lines; a statement logged once per
    # relation (``log_relation``) has several.
    first = audit if collected.height == audit.height else audit[collected["_at"]]
    first = first.with_columns(collected["_obj"].alias("_objects"), collected["_cat"])
    if quoted_text:
        text = unquote_csv(text)
    first = first.select(
        *_WHO,
        pl.col("_objects").alias(S.OBJECTS),
        # pgAudit logs ``PREPARE p AS SELECT ...`` as a 0-row READ naming no object (an
        # INSERT's as a WRITE); it reads nothing: each ``EXECUTE p`` logs the read (its
        # rows, its tables).
        pl.when(pl.col("a_command") == "PREPARE")
        .then(pl.lit("MISC"))
        .otherwise(pl.col("a_class"))
        .alias("a_class"),
        pl.col("a_command").str.to_uppercase().alias(S.COMMAND),
        text.alias(S.QUERY),
        pl.col("a_rows").cast(pl.Int64, strict=False).alias(S.ROWS),
        pl.col("session_id").alias(S.SESSION),
        pl.concat_str("a_stmt_id", pl.lit("."), "a_substmt_id").alias(S.STATEMENT_ID),
        pl.lit(True).alias(S.SUCCESS),
        "_cat",
    )
    first = own_statements(first)
    query = pl.col(S.QUERY)
    # The statement's first words, upper-cased, computed once (``_head``).
    head = query.str.slice(0, 24).str.strip_chars_start().str.to_uppercase()
    first = first.with_columns(head.alias("_head"), query.alias("_text"))
    text_head, text = pl.col("_head"), pl.col("_text")
    # The text from its first word (``_text``), where comments come first: rare, so
    # only then is every text looked at again.
    commented = text_head.str.starts_with("/*") | text_head.str.starts_with("--")
    if first.select(commented.any()).item():
        skipped = query.str.replace(rf"^{LEADING}", "")
        first = first.with_columns(pl.when(commented).then(skipped).otherwise(query).alias("_text"))
        first = first.with_columns(text.str.slice(0, 24).str.to_uppercase().alias("_head"))
    # The patterns run only where the cheap test passes: most statements are neither.
    copy_text = pl.when(text_head.str.starts_with("COPY")).then(text).otherwise(pl.lit(""))
    # pgAudit classes ``COPY ... TO`` READ (``COPY ... FROM`` WRITE), whatever its text
    # says; the text tells the ``SELECT`` of a ``COPY (SELECT ...) TO``.
    copy_out = (pl.col("a_class") == "READ") & (pl.col(S.COMMAND) == "COPY")
    is_copy_to = copy_text.str.contains(_COPY_TO) | copy_out
    is_cursor = pl.col(S.COMMAND).is_in(["DECLARE CURSOR", "FETCH"]) | text_head.str.starts_with(
        "FETCH"
    )
    # Data a server function hands out (a logical slot's changes, large objects, the
    # server's files), read naming no table or only catalogs: which function, or null.
    bare_read = (pl.col("a_class") == "READ") & (
        pl.col("_cat") | (pl.col(S.OBJECTS).list.len() == 0)
    )
    handed_out = (
        pl.when(bare_read)
        .then(text)
        .otherwise(pl.lit(""))
        .str.extract(_HANDED_OUT, 1)
        .str.to_lowercase()
    )
    # A read of the server's catalogs alone (log_catalog = on, pgAudit's default): psql's
    # \d, an ORM's introspection, a dump's hundred schema queries. Not data read.
    catalog = pl.col("_cat") & (pl.col("a_class") == "READ") & handed_out.is_null()
    # (no application name: not a dump tool; null would leave the export unknown)
    dump_tool = pl.col(S.APPLICATION).is_in(DUMP_TOOLS).fill_null(False)
    is_dump = dump_tool & (pl.col("a_class") == "READ") & ~catalog
    # Referential-integrity checks that PostgreSQL runs itself (ri_triggers.c): one
    # 1-row read per inserted row. Not data leaving; classed INTERNAL, not READ. The
    # shape alone is no proof: anyone can send ``SELECT fk."ssn" FROM ONLY ...``. Nor
    # is the statement around it, told line by line: the real log numbers the checks
    # 8.1 .. 8.2000 and the INSERT 8.2001, so a chunk may end before the write (or the
    # ALTER TABLE ... FOREIGN KEY) that shows them internal. What is decided on each
    # line alone: a per-row check is parameterised (``$1``) and locks what it finds
    # (``FOR KEY SHARE OF x``), and its select list is the constant 1, so the same text
    # sent by a user returns no column of the table; a check of a whole table
    # (``SELECT fk."c" ... LEFT OUTER JOIN ONLY ...`` at ALTER TABLE) returns a row only
    # where the constraint fails, so one that returned rows is counted as a read.
    whole_table = query.str.contains(_RI_WHOLE_TABLE) & (pl.col(S.ROWS) == 0)
    internal = query.str.contains(_RI_PER_ROW) | whole_table.fill_null(False)
    export = is_copy_to | is_cursor | is_dump | handed_out.is_not_null()
    # ``UPDATE/DELETE ... RETURNING`` (also in a CTE, ``INSERT ... SELECT ... RETURNING``)
    # sends the rows it changed to the client: pgAudit logs a WRITE whose count is what the
    # client got (the top-level count, under a CTE). ``UPDATE t SET c = c RETURNING *``
    # reads a whole table out as a write: it is a READ. An ``INSERT ... VALUES ...
    # RETURNING id`` (every ORM's insert) returns only what the client sent and its keys.
    # The word in a string literal (``SET note = 'returning customer'``) is no clause.
    # (The patterns run on the few writes that hold the word, as for COPY above.)
    maybe = (pl.col("a_class") == "WRITE") & text.str.contains("(?i)returning")
    clauses = pl.when(maybe).then(text).otherwise(pl.lit("")).str.replace_all(_LITERAL, "''")
    returned = (
        pl.when(text_head.str.starts_with("INSERT"))
        .then(clauses.str.contains(_INSERT_SELECT_RETURNING))
        .otherwise(clauses.str.contains(_RETURNING))
    )
    # A logged 0 is not a count for COPY (either direction), cursors and dumps: pgAudit
    # logs 0 however much they move. Their volume is unknown. Nor is a count of large
    # objects or files (a row each, whatever its size) a count of rows.
    uncounted = export | (pl.col(S.COMMAND) == "COPY")
    unsized = handed_out.is_in(list(_UNSIZED)).fill_null(False)
    events = first.with_columns(
        pl.when(internal)
        .then(pl.lit("INTERNAL"))
        .when(catalog)
        .then(pl.lit("CATALOG"))
        .when(returned.fill_null(False))
        .then(pl.lit("READ"))
        .otherwise(pl.col("a_class"))
        .alias(S.CLASS),
        export.alias(S.EXPORT),
        pl.when((uncounted & (pl.col(S.ROWS) == 0)) | unsized)
        .then(None)
        .otherwise(pl.col(S.ROWS))
        .alias(S.ROWS),
        pl.when(handed_out.is_not_null())
        .then(pl.concat_list(_handed_out_object(handed_out)))
        .otherwise(pl.col(S.OBJECTS))
        .alias(S.OBJECTS),
    ).drop("a_class", "_head", "_cat")
    # Objects from the text only where the log named none (COPY t TO, cursors, FETCH,
    # log_relation off): a regex over every statement would cost more than the parse.
    unnamed = (pl.col(S.OBJECTS).list.len() == 0) & ((pl.col(S.CLASS) == "READ") | pl.col(S.EXPORT))
    # Nested reads are told from their caller over a statement's lines whole
    # (ingest.merge_split_statements), not per chunk: a chunk may end before a CALL's
    # line, which makes its procedure's reads count.
    events = events.with_columns(unnamed.alias("_unnamed"))
    if not events["_unnamed"].any():
        return events.drop("_unnamed", "_text")
    named, bare = events.filter(~pl.col("_unnamed")), events.filter(pl.col("_unnamed"))
    text = pl.col("_text")
    bare = bare.with_columns(relations_in(text, ctes=has_ctes(bare, text)).alias(S.OBJECTS))
    # Named by the text only, catalogs alone (a dump's catalog query with log_relation
    # off, say): no more an export than the catalog reads pgAudit names.
    objects = pl.col(S.OBJECTS)
    read = pl.col(S.CLASS) == "READ"
    catalog = (
        read
        & (objects.list.len() > 0)
        & objects.list.eval(S.is_catalog(pl.element(), "postgresql")).list.all()
    )
    # A dump's SELECT of no relation (``SELECT pg_catalog.set_config(...)``,
    # ``pg_is_in_recovery()``, each parallel worker's own): the server's state, like a
    # catalog read; its data leaves by COPY (cursors with --inserts), whatever its -j.
    # (``dump_tool`` as above.) So is the search_path every libpq replication client
    # sets first (pg_recvlogical, a subscription's workers), whatever it is named: the
    # stream is its export.
    secure_path = pl.col(S.QUERY).str.contains(_SECURE_SEARCH_PATH)
    state = (
        read
        & (objects.list.len() == 0)
        & (pl.col(S.COMMAND) == "SELECT")
        & (dump_tool | secure_path)
    )
    catalog = catalog | state
    bare = bare.with_columns(
        pl.when(catalog).then(pl.lit("CATALOG")).otherwise(pl.col(S.CLASS)).alias(S.CLASS),
        pl.when(catalog).then(pl.lit(False)).otherwise(pl.col(S.EXPORT)).alias(S.EXPORT),
    )
    return pl.concat([named, bare]).drop("_unnamed", "_text")


# Server functions that hand out data no table of the statement names (seen on a real
# PostgreSQL 15 + pgAudit 1.7: logged as a READ of no relation, or of
# pg_largeobject_metadata only, which log_catalog = off leaves out altogether):
# * a logical slot's changes, every change to the database's tables since the slot's last
#   read, a row each: the SQL form of ``pg_recvlogical``'s stream, an export of
#   ``(database <name>)`` (:mod:`detector.formats.pg_replication`) with its rows counted;
# * large objects (``lo_get``, ``loread``; ``lo_export`` writes one to a server file): a
#   row is a whole object, so their count is no volume; an export of
#   ``pg_catalog.pg_largeobject``, the table their contents live in;
# * the server's files (``pg_read_file``, ``pg_read_binary_file``: the data directory's
#   tables as files, too): an export of ``(server files)``, its volume unknown.
_HANDED_OUT: Final = (
    r"(?i)\b(pg_logical_slot_(?:get|peek)_(?:binary_)?changes|lo_get|loread|lo_export"
    r"|pg_read_(?:binary_)?file)\s*\("
)
_UNSIZED: Final = ("lo_get", "loread", "lo_export", "pg_read_file", "pg_read_binary_file")
SERVER_FILES: Final = "(server files)"


def _handed_out_object(function: pl.Expr) -> pl.Expr:
    """The object a :data:`_HANDED_OUT` function's data (its name, lower-cased) is named by."""
    return (
        pl.when(function.str.starts_with("pg_logical_slot_"))
        .then(pl.format("(database {})", pl.col(S.DATABASE).fill_null("?")))
        .when(function.str.starts_with("pg_read_"))
        .then(pl.lit(SERVER_FILES))
        .otherwise(pl.lit("pg_catalog.pg_largeobject"))
    )


# libpq's ALWAYS_SECURE_SEARCH_PATH_SQL, sent by its tools before anything else.
_SECURE_SEARCH_PATH: Final = r"^SELECT pg_catalog\.set_config\('search_path', '', false\);?$"
# One statement of a string of several: quoted literals and identifiers, dollar-quoted
# bodies, comments, and any other character but ``;``.
_PIECE_RE: Final = (
    r"(?:'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\$(?s:.*?)\$\$"
    r"|\$[A-Za-z_]\w*\$(?s:.*?)\$[A-Za-z_]\w*\$|--[^\n]*|[^;'\"]|['\"])+"
)
# The text and parameters of every statement under ``pgaudit.log_statement = off``.
NOT_LOGGED: Final = "<not logged>"
# A COPY's text that copies out: ``COPY t TO STDOUT``, ``COPY (SELECT ...) TO '/f'``.
_COPY_TO: Final = r"(?i)\)\s*TO\s|\s+TO\s+(?:STDOUT|'|PROGRAM)"
# A RETURNING clause (a word of its own: not ``returning_customer``).
_RETURNING: Final = r"(?i)\bRETURNING\s"
_INSERT_SELECT_RETURNING: Final = r"(?is)\bSELECT\b.*\bRETURNING\s"
_LITERAL: Final = r"'(?:[^']|'')*'"  # a string literal (standard_conforming_strings)
# PostgreSQL's own foreign-key check of one row (ri_triggers.c, RI_FKey_check and
# ri_restrict): ``SELECT 1 FROM ONLY "s"."t" x WHERE "id" OPERATOR(pg_catalog.=) $1 FOR
# KEY SHARE OF x``.
_RI_PER_ROW: Final = (
    r'(?s)^SELECT 1 FROM ONLY "(?:[^"]|"")+"\."(?:[^"]|"")+" x WHERE .*\$1\b.* FOR KEY SHARE OF x$'
)
# Its check of a whole table, when a foreign key is added (RI_Initial_Check) or a
# partition detached: ``SELECT fk."c" FROM ONLY "s"."t" fk LEFT OUTER JOIN ONLY ...``.
_RI_WHOLE_TABLE: Final = r'^SELECT fk\."(?:[^"]|"")+"(?:, fk\."(?:[^"]|"")+")* FROM (?:ONLY )?"'
# How a statement whose command is SELECT may begin.
_SELECT_START: Final = r"^(?:SELECT|WITH|TABLE|VALUES|\()"


def own_statements(statements: pl.DataFrame) -> pl.DataFrame:
    """``statements`` with the text of each one logged with a string of several (sent as
    one simple query: ``psql -c "COPY a TO STDOUT; COPY b TO STDOUT"``) cut to its own
    statement of the string. pgAudit logs every statement of the string with the whole
    string; what is an export, which tables a ``COPY`` or cursor names, come from the
    statement's own text. The string as logged is kept in ``_logged`` (its ``duration:``
    line names it).

    A statement (its sub-statements logged with the string share one text) is known by
    the first word of its last such sub-statement's command: ``COPY`` for ``COPY (SELECT
    ...) TO`` (its ``SELECT`` comes first), ``SELECT`` for a function's caller,
    ``EXECUTE``, ``CALL``; ``COPY FROM`` for a ``COPY`` into a table (class WRITE). The
    statements a session logged in a row with the same string (numbered one after the
    other) are one sending of it: the n-th of them with a word takes the string's n-th
    statement beginning with that word (for ``SELECT`` also ``WITH``, ``TABLE``,
    ``VALUES``), from the first again when the string was sent again. A statement of the
    string that pgAudit does not log (its class not in ``pgaudit.log``) has no line to
    count; one that begins like another command is counted with it (``WITH d AS (DELETE
    ...) INSERT ...`` with the ``SELECT``s). An ``EXECUTE``'s prepared statement keeps
    the text logged, the one it was prepared from. Decided within the chunk parsed: a
    sending whose lines a chunk boundary splits starts again from the first after it.
    Statements without a ``;`` before their end, and texts cut (:func:`cut_statement`),
    are left as they are.
    """
    query = pl.col(S.QUERY)
    semicolon = query.str.contains(r";\s*\S")
    with_logged = statements.with_columns(pl.lit(None, pl.String).alias("_logged"))
    # The usual case: no text goes on past a ``;``, nor is a cut text to be looked at.
    if not statements.select(semicolon.any()).item():
        return with_logged
    several = semicolon & ~is_cut(query)
    if not statements.select(several.any()).item():
        return with_logged
    indexed = statements.with_row_index("_row")
    ids = pl.col(S.STATEMENT_ID).str.split_exact(".", 1)
    # One row per statement logged with a string of several, in the order of its lines.
    logged = (
        indexed.filter(several)
        .select(
            "_row",
            S.SESSION,
            S.QUERY,
            ids.struct.field("field_0").cast(pl.Int64, strict=False).alias("_number"),
            ids.struct.field("field_1").cast(pl.Int64, strict=False).alias("_sub"),
            _word(pl.col(S.COMMAND).str.extract(r"^(\S+)", 1), pl.col("a_class") == "WRITE"),
        )
        .group_by(S.SESSION, "_number", S.QUERY, maintain_order=True)
        .agg("_row", pl.col("_word").sort_by("_sub").last())
    )
    # A statement logged with another string than the one before it in its session, or
    # not numbered next after it (pgAudit numbers the statements it logs), begins a
    # sending; within one, the n-th statement with each word.
    number = pl.col("_number")
    begins = (query.ne_missing(query.shift(1)) | number.ne_missing(number.shift(1) + 1)).over(
        S.SESSION
    )
    logged = logged.with_columns(begins.cum_sum().over(S.SESSION).alias("_sending"))
    logged = logged.with_columns(
        pl.int_range(pl.len()).over(S.SESSION, "_sending", "_word").alias("_nth")
    )
    # The statements of each string, by their first word; SELECT-like ones as SELECT.
    pieces = (
        logged.select(S.QUERY)
        .unique()
        .with_columns(query.str.extract_all(_PIECE_RE).alias("_piece"))
        .explode("_piece")
        .with_columns(pl.col("_piece").str.strip_chars())
        .filter(pl.col("_piece") != "")
        .filter(pl.len().over(S.QUERY) > 1)
    )
    start = pl.col("_piece").str.replace(rf"^{LEADING}", "").str.slice(0, 24).str.to_uppercase()
    pieces = pieces.with_columns(
        _word(
            pl.when(start.str.contains(_SELECT_START))
            .then(pl.lit("SELECT"))
            .otherwise(start.str.extract(r"^([A-Z_]+)", 1)),
            ~pl.col("_piece").str.contains(_COPY_TO),
        )
    ).with_columns(
        pl.int_range(pl.len()).over(S.QUERY, "_word").alias("_at"),
        pl.len().over(S.QUERY, "_word").alias("_of"),
    )
    own = (
        logged.join(pieces, on=[S.QUERY, "_word"], how="inner")
        .filter(pl.col("_nth") % pl.col("_of") == pl.col("_at"))
        .select("_row", "_piece", "_word")
        .explode("_row")
    )
    # An EXECUTE's prepared statement is logged with the text it was prepared from.
    prepared = (pl.col("_word") == "EXECUTE") & ~pl.col(S.COMMAND).str.starts_with("EXECUTE")
    piece = pl.when(~prepared).then(pl.col("_piece"))
    return (
        indexed.join(own, on="_row", how="left", maintain_order="left")
        .with_columns(piece.alias("_piece"))
        .with_columns(
            pl.when(pl.col("_piece").is_not_null()).then(query).alias("_logged"),
            pl.coalesce("_piece", query).alias(S.QUERY),
        )
        .drop("_row", "_piece", "_word")
    )


def _word(word: pl.Expr, copy_from: pl.Expr) -> pl.Expr:
    """A statement's first word (``_word``), ``COPY FROM`` for a ``COPY`` into a table
    (pgAudit's WRITE ``COPY``): one of a string's two ``COPY``s may be logged alone."""
    return (
        pl.when((word == "COPY") & copy_from)
        .then(pl.lit("COPY FROM"))
        .otherwise(word)
        .alias("_word")
    )


# Commands whose reads stay on the server, as pgAudit names them (on the statement's
# last sub-statement, after the READ that did the reading).
KEPT_ON_SERVER: Final = (
    "EXPLAIN", "CREATE TABLE AS", "SELECT INTO", "REFRESH MATERIALIZED VIEW",
    "CREATE MATERIALIZED VIEW",
)  # fmt: skip


def count_outer_reads(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with the rows of a statement's nested reads not counted again.

    A read through a function is audited twice (pgAudit 1.7): the function's own
    statement as a sub-statement with its rows, then the calling statement with the rows
    it returned, logged last (at its end, with the highest sub-statement id). A function
    called in a ``WHERE`` is audited once per call. Where a statement's last
    sub-statement (its ``COPY`` line aside) is a READ with a row count, that is the
    caller, and its READ sub-statements before it count no rows of their own: the rows
    are what left the server. The inner reads keep their objects (the caller names only
    the function). A ``CALL`` (logged last, as MISC) and a ``DO`` block (logged first)
    are no reads: all their statements' rows count. Nor are the rows a statement read
    for the server itself (:data:`KEPT_ON_SERVER`: ``EXPLAIN ANALYZE``, ``CREATE TABLE
    ... AS``, ``SELECT ... INTO``, a materialized view's refresh), logged as a READ
    with its rows then a sub-statement naming the command: the client got none of them
    (a plan, or nothing); the tables are still objects read. Decided once a statement's lines are
    all there: over whole files and batches (``ingest``), and by the live engine for
    statements it no longer holds (it keeps the commands of those it holds), since a
    chunk or a poll may end before a caller's or a ``CALL``'s line.
    """
    if S.SOURCE_FORMAT not in events.columns:
        return events
    return _outer_reads(events, pl.col(S.SOURCE_FORMAT).str.starts_with("pgaudit-"))


def _outer_reads(events: pl.DataFrame, is_pgaudit: pl.Expr) -> pl.DataFrame:
    """:func:`count_outer_reads` of the events ``is_pgaudit`` selects."""
    needed = {S.CLASS, S.COMMAND, S.ROWS, S.SESSION, S.STATEMENT_ID}
    if events.is_empty() or not needed <= set(events.columns):
        return events
    is_pgaudit = is_pgaudit.fill_null(False)
    counted = is_pgaudit & (pl.col(S.CLASS) == "READ") & pl.col(S.ROWS).is_not_null()
    nested = counted & ~pl.col(S.STATEMENT_ID).str.ends_with(".1").fill_null(True)
    command = pl.col(S.COMMAND)
    for_server = is_pgaudit & command.is_in(KEPT_ON_SERVER)
    # pgaudit.log_statement = off: no text tells a COPY (SELECT ...) TO's SELECT from a
    # plain one; the COPY line after it in the same statement does.
    untold_copy = (
        is_pgaudit & (command == "COPY") & (pl.col(S.QUERY) == NOT_LOGGED) & pl.col(S.EXPORT)
        if {S.QUERY, S.EXPORT} <= set(events.columns)
        else pl.lit(False)
    )
    any_nested, any_untold = events.select(
        (nested | for_server).any().alias("n"), untold_copy.any().alias("u")
    ).row(0)
    if not (any_nested or any_untold):
        return events  # the usual case: no statement has a second sub-statement
    parts = pl.col(S.STATEMENT_ID).str.split_exact(".", 1)
    statement = [pl.col(S.SESSION), parts.struct.field("field_0")]
    sub = parts.struct.field("field_1").cast(pl.Int64, strict=False)
    if any_untold:
        copied = untold_copy.any().over(statement)
        events = events.with_columns((pl.col(S.EXPORT) | (counted & copied)).alias(S.EXPORT))
    # COPY (SELECT ...) TO: the COPY line (no count) comes after its SELECT
    top = sub.filter(is_pgaudit & command.ne_missing("COPY")).max().over(statement)
    caller = (counted & (sub == top)).any().over(statement)
    in_do = (is_pgaudit & (command == "DO")).any().over(statement)
    kept = for_server.any().over(statement)
    inner = (counted & (((sub < top) & caller & ~in_do) | kept)).fill_null(False)
    return events.with_columns(pl.when(inner).then(None).otherwise(pl.col(S.ROWS)).alias(S.ROWS))


def finish(events: pl.DataFrame) -> pl.DataFrame:
    """Whole-log step: give each ``FETCH`` the objects its cursor was declared over, in
    the same session (the ``DECLARE`` may be in another chunk, or an earlier file of
    the server: ``ingest`` reads a server's files as one log)."""
    return fetch_objects(events, declared_cursors(events, no_cursors()))


def no_cursors() -> pl.DataFrame:
    """An empty table of declared cursors (:func:`declared_cursors`)."""
    return pl.DataFrame(
        schema={S.SESSION: pl.String, "_cursor": pl.String, "_cursor_objects": pl.List(pl.String)}
    )


def declared_cursors(events: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """The cursors ``events`` declare over objects, after those of ``earlier``: one row per
    (session, cursor), the last declaration winning."""
    declared = _declarations(events).drop("_pos")
    if declared.is_empty():
        return earlier
    return pl.concat([earlier, declared]).unique([S.SESSION, "_cursor"], keep="last")


def _declarations(events: pl.DataFrame) -> pl.DataFrame:
    """Each ``DECLARE`` over objects in ``events``: session, cursor, objects, and its
    position in ``events`` (``_pos``)."""
    return (
        events.with_row_index("_pos")
        .filter(pl.col(S.QUERY).str.contains(_DECLARE_START))
        .select(
            S.SESSION,
            pl.col(S.QUERY).str.extract(_CURSOR_NAME, 1).str.to_lowercase().alias("_cursor"),
            pl.col(S.OBJECTS).alias("_cursor_objects"),
            pl.col("_pos").cast(pl.Int64),
        )
        .filter(pl.col("_cursor_objects").list.len() > 0)
    )


def fetch_objects(events: pl.DataFrame, cursors: pl.DataFrame) -> pl.DataFrame:
    """``events`` with each ``FETCH`` (or ``MOVE``) given the objects of its cursor: of
    its session's latest ``DECLARE`` of that name before it in ``events``, else in
    ``cursors`` (:func:`declared_cursors` of the events before); none if neither has it.
    A session may declare a cursor name again once it has closed it."""
    if not events.select(pl.col(S.QUERY).str.contains(_FETCH_START).any()).item():
        return events  # the usual case; the full pattern and the join cost a pass each
    known = pl.concat(
        [cursors.with_columns(pl.lit(-1, pl.Int64).alias("_pos")), _declarations(events)]
    )
    fetch_cursor = pl.col(S.QUERY).str.extract(_FETCH_CURSOR, 1).str.to_lowercase()
    joined = (
        events.with_row_index("_pos")
        .with_columns(pl.col("_pos").cast(pl.Int64), fetch_cursor.alias("_cursor"))
        .join_asof(
            known, on="_pos", by=[S.SESSION, "_cursor"], strategy="backward", check_sortedness=False
        )
    )
    is_fetch = pl.col("_cursor").is_not_null()
    return joined.with_columns(
        pl.when(is_fetch & pl.col("_cursor_objects").is_not_null())
        .then(pl.col("_cursor_objects"))
        .when(is_fetch)
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col(S.OBJECTS))
        .alias(S.OBJECTS)
    ).drop("_pos", "_cursor", "_cursor_objects")


_FETCH_START: Final = rf"(?i)^{LEADING}(?:FETCH|MOVE)\b"
_DECLARE_START: Final = rf"(?i)^{LEADING}DECLARE\s"
_CURSOR_NAME: Final = rf"(?i)^{LEADING}DECLARE\s+({_IDENT})"
# ``FETCH [direction] [FROM | IN] cursor``: FROM and IN are optional (``FETCH 20 c``).
_DIRECTION: Final = r"(?:NEXT|PRIOR|FIRST|LAST|ALL|FORWARD|BACKWARD|ABSOLUTE|RELATIVE|[+-]?\d+)"
_FETCH_CURSOR: Final = (
    rf"(?i)^{LEADING}(?:FETCH|MOVE)\b(?:.*?\b(?:FROM|IN)\s+|\s+(?:{_DIRECTION}\s+)*)"
    rf"({_IDENT})\s*;?\s*$"
)


_REFUSED_USER: Final = r'\b(?:user|role) "((?:[^"]|"")*)"'


def _failures(records: pl.DataFrame) -> pl.DataFrame:
    """Failed statements (``ERROR``) and refused logins (``FATAL`` at authentication)."""
    sev = pl.col("severity")
    if records.height:  # (few: errors and FATALs) a refused login in the server's language
        fatal = pl.when(sev == "FATAL").then(pg_messages.refusals_in_english(pl.col("message")))
        records = records.with_columns(fatal.otherwise(pl.col("message")).alias("message"))
    login_refused = (sev == "FATAL") & pl.col("message").str.contains(
        r"authentication failed|no pg_hba\.conf entry|does not exist|not permitted to log in"
    )
    failed = records.filter((sev == "ERROR") | login_refused)
    statement = pl.col("statement")
    first_word = statement.str.extract(r"^\s*([A-Za-z]+)", 1).str.to_uppercase()
    no_objects = pl.lit([], dtype=pl.List(pl.String))
    # The usual chunk has no failure: relations_in costs milliseconds even on no rows.
    objects = (
        pl.when(sev == "ERROR")
        .then(relations_in(statement, ctes=has_ctes(failed, statement)).fill_null([]))
        .otherwise(no_objects)
        if failed.height
        else no_objects
    )
    # A login refused before it was authorized has no user in a prefix without %u
    # (PostgreSQL's default "%m [%p] ") nor a connection line; its message names it:
    # 'password authentication failed for user "bob"', 'no pg_hba.conf entry for host
    # "10.0.0.9", user "bob", database "shop"', 'role "bob" does not exist'.
    named = pl.col("message").str.extract(_REFUSED_USER, 1).str.replace_all('""', '"', literal=True)
    failed = failed.with_columns(
        pl.when(sev == "FATAL").then(pl.coalesce("user", named)).otherwise("user").alias("user")
    )
    return failed.select(
        *_WHO,
        objects.alias(S.OBJECTS),
        pl.when(sev == "ERROR").then(pl.lit("ERROR")).otherwise(pl.lit("CONNECT")).alias(S.CLASS),
        pl.when(sev == "ERROR").then(first_word).otherwise(pl.lit("LOGIN")).alias(S.COMMAND),
        statement.fill_null(pl.col("message")).alias(S.QUERY),
        pl.lit(False).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
        pl.col("session_id").alias(S.SESSION),
    )


def missing_fields(frame: pl.DataFrame, required: list[str]) -> pl.DataFrame:
    """Rejects (``not_audit``) for decoded records lacking any of ``required``."""
    missing = pl.any_horizontal(pl.col(c).is_null() for c in required)
    return rejects(frame, missing, Reason.NOT_AUDIT)
