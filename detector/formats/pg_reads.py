"""What a statement audited by pgAudit moved: its class, whether it is an export, its
rows and its objects (:func:`classify`), and which of a statement's nested reads count
their rows (:func:`count_outer_reads`). Everything here is whole-column Polars expressions.

Counting rules real pgAudit 1.7 logs need (see ``tests/fixtures/pgaudit/FINDINGS.md``):

* ``COPY`` (to and from), ``DECLARE CURSOR`` and ``FETCH`` log 0 rows (and often no object)
  although they move data out; so do dump tools, which read with ``COPY ... TO``.
  Their row count is unknown (null), they are marked ``is_export``, and the objects
  are taken from the statement text (a ``FETCH`` gets the objects of its cursor).
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
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.formats.pg_replication import database_object
from detector.formats.pg_text import COPY_TO, LEADING, has_ctes, own_statements, relations_in

DUMP_TOOLS: Final = ("pg_dump", "pg_dumpall", "pg_basebackup")


def classify(first: pl.DataFrame) -> pl.DataFrame:
    """Events from ``first``, the first AUDIT line of each (session, statement,
    sub-statement) with the events' columns, pgAudit's class (``a_class``), whether it
    read only catalogs and sequences (``_cat``) and whether it wrote a foreign table
    (``_foreign``): each classed by what it moved.

    Returns one event per row of ``first`` (those whose objects are taken from their text
    last), with ``a_class``, ``_cat`` and ``_foreign`` gone and in their stead: the class
    (``INTERNAL`` for the server's own foreign-key checks, ``CATALOG`` for reads of the
    server's catalogs or state, ``READ`` for a write that returned its rows or sent what
    it read to another server, else pgAudit's), ``is_export`` (``COPY ... TO``, cursors,
    dump tools, data server functions hand out, reads written to a foreign table), rows
    (null where the count logged is no count of rows moved)
    and objects (from the text where the log named none). Each text is cut to its own
    statement of a string of several, the string as logged kept in ``_logged``
    (:func:`own_statements`).
    """
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
    is_copy_to = copy_text.str.contains(COPY_TO) | copy_out
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
        .str.extract(_HANDED_OUT_CALL, 1)
        .str.to_lowercase()
    )
    # what holds the data of a function whose rows are no count (null: a slot's changes)
    unsized = handed_out.replace_strict(_HANDED_OUT, default=None, return_dtype=pl.String)
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
    # ``INSERT INTO remote_t SELECT ... FROM t`` (postgres_fdw): the rows read are written
    # to another server, as many as pgAudit counts for the write. Not a write's own
    # values (``INSERT INTO remote_t VALUES ...``): what the client sent.
    sent_out = pl.when("_foreign").then(text).otherwise(pl.lit("")).str.contains(r"(?i)\bSELECT\b")
    export = is_copy_to | is_cursor | is_dump | handed_out.is_not_null() | sent_out
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
    events = first.with_columns(
        pl.when(internal)
        .then(pl.lit("INTERNAL"))
        .when(catalog)
        .then(pl.lit("CATALOG"))
        .when(returned.fill_null(False) | sent_out)
        .then(pl.lit("READ"))
        .otherwise(pl.col("a_class"))
        .alias(S.CLASS),
        export.alias(S.EXPORT),
        pl.when((uncounted & (pl.col(S.ROWS) == 0)) | unsized.is_not_null())
        .then(None)
        .otherwise(pl.col(S.ROWS))
        .alias(S.ROWS),
        pl.when(handed_out.is_not_null())
        .then(pl.concat_list(pl.coalesce(unsized, database_object(pl.col(S.DATABASE)))))
        .otherwise(pl.col(S.OBJECTS))
        .alias(S.OBJECTS),
    ).drop("a_class", "_head", "_cat", "_foreign")
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
#   ``pg_catalog.pg_largeobject`` (``schema.LARGE_OBJECTS``), the table their contents
#   live in;
# * the server's files (``pg_read_file``, ``pg_read_binary_file``: the data directory's
#   tables as files, too): an export of ``(server files)`` (``schema.SERVER_FILES``),
#   its volume unknown.
_SLOT_CHANGES: Final = tuple(
    f"pg_logical_slot_{verb}_{kind}changes" for verb in ("get", "peek") for kind in ("", "binary_")
)
# Each function, and the object its data is named by where its rows are no count
# (null: a slot's changes, ``(database <name>)`` with the rows counted).
_HANDED_OUT: Final[dict[str, str | None]] = {
    **dict.fromkeys(_SLOT_CHANGES, None),
    **dict.fromkeys(("lo_get", "loread", "lo_export"), S.LARGE_OBJECTS),
    **dict.fromkeys(("pg_read_file", "pg_read_binary_file"), S.SERVER_FILES),
}
_HANDED_OUT_CALL: Final = rf"(?i)\b({'|'.join(_HANDED_OUT)})\s*\("


# libpq's ALWAYS_SECURE_SEARCH_PATH_SQL, sent by its tools before anything else.
_SECURE_SEARCH_PATH: Final = r"^SELECT pg_catalog\.set_config\('search_path', '', false\);?$"
# The text and parameters of every statement under ``pgaudit.log_statement = off``.
NOT_LOGGED: Final = "<not logged>"
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
