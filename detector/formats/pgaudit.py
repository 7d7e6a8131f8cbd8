"""pgAudit records, whichever of PostgreSQL's three log outputs carried them.

Each output module (``pg_stderr``, ``pg_csvlog``, ``pg_jsonlog``) turns its lines into a
*records* frame with the columns of :data:`RECORD_COLUMNS`; :func:`to_events` turns
records into normalized events. Everything here is whole-column Polars expressions.

Counting rules real pgAudit 1.7 logs need (see ``tests/fixtures/pgaudit/FINDINGS.md``):

* With ``pgaudit.log_relation = on`` one statement is logged once per relation, each
  line carrying the whole statement's row count: rows are counted once per
  (session, statement id, sub-statement id), and the relations are collected.
* Parallel workers log their own partial AUDIT lines with no user (and their own
  statement numbers); the leader logs the statement with the full row count, so worker
  lines are context, not events.
* Failed statements are not audited; they are the ``ERROR`` records (with the
  statement from the ``STATEMENT`` line or the record's statement field).
* ``PREPARE p AS SELECT ...`` is audited as a 0-row READ (WRITE for an ``INSERT``)
  naming no object; each ``EXECUTE p`` as the prepared statement's READ (its rows, its
  tables; the text is the ``PREPARE``'s) then a MISC ``EXECUTE``. The ``PREPARE`` reads
  nothing: it is classed ``MISC``, a statement but no read, its text's tables no
  objects read.

What a statement moved (its class, whether it is an export, its rows and objects, nested
reads) is decided by :mod:`detector.formats.pg_reads`; what its text says (its relations,
its own statement of a string of several) by :mod:`detector.formats.pg_text`; the objects
a ``FETCH`` reads by :mod:`detector.formats.pg_cursors`.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.features import begins_statement
from detector.formats import pg_messages, pg_replication, zones
from detector.formats.base import Parsed
from detector.formats.pg_cursors import declared_cursors, fetch_objects, no_cursors
from detector.formats.pg_reads import classify
from detector.formats.pg_text import cut_statement, has_ctes, is_cut, relations_in
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

_MILLIS_UTC: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-5][0-9]\.[0-9]{3}$"
_TS_RE: Final = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*(\S*)$"


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
    :data:`pg_text.QUERY_KEPT` characters and a marker (:func:`cut_statement`): the account,
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
    """One event per (session, statement, sub-statement) from its AUDIT lines, classed by
    what it moved (:func:`pg_reads.classify`)."""
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
    # A write to a foreign table (postgres_fdw, ...) sends its rows to another server.
    foreign = (pl.col("a_class") == "WRITE") & (pl.col("a_object_type") == "FOREIGN TABLE")
    audit = audit.select(
        *used,
        obj.alias("_obj"),
        state.fill_null(False).alias("_cat"),
        foreign.fill_null(False).alias("_foreign"),
    )
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
    if audit["_foreign"].any():  # any of the statement's lines (its target's)
        written = audit.group_by(key, maintain_order=True).agg(pl.col("_foreign").any())
        first = first.drop("_foreign").with_columns(written["_foreign"])
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
        "_foreign",
    )
    return classify(first)


def finish(events: pl.DataFrame) -> pl.DataFrame:
    """Whole-log step: give each ``FETCH`` the objects its cursor was declared over, in
    the same session (the ``DECLARE`` may be in another chunk, or an earlier file of
    the server: ``ingest`` reads a server's files as one log)."""
    return fetch_objects(events, declared_cursors(events, no_cursors()))


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
