"""What the two SQL Server / Azure SQL audit formats share: the audit record's fields,
their mapping to the event schema, T-SQL text helpers, and the whole-file step that
folds object-level records into their batch.

Both exports carry the same record (``sys.fn_get_audit_file`` columns; Event Hubs and
Log Analytics use the same names, the latter with type suffixes). See
``docs/formats-mssql.md`` and the field table of Microsoft's "SQL Database audit log
format" page.

Rows are counted once per statement. The batch records (``BCM`` BATCH COMPLETED, ``RCM``
RPC COMPLETED, from ``BATCH_COMPLETED_GROUP``) are written when the batch has run and
carry ``response_rows``, ``affected_rows`` and ``duration_milliseconds``. Object-level
records (``SL``, ``IN``, ``UP``, ``DL``, ``EX``, ``CR``... from
``SCHEMA_OBJECT_ACCESS_GROUP`` or a database audit specification) are permission checks
fired before the statement runs ("for events other than login and batch, [succeeded]
only reports whether the permission check succeeded"): they name the object but cannot
know the rows, so their rows are null, never 0. Where both are audited, :func:`finish`
folds each object-level record into the next batch record of its session, which then
has the objects (from the log) and the rows (from the batch), once.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.rejects import Reason, rejects

DB_SYSTEM: Final = "mssql"
CSV: Final = "mssql-audit-csv"
JSON: Final = "mssql-audit-json"

# The record's fields, as ``sys.fn_get_audit_file`` names them, and the names Event Hubs
# / Log Analytics (``AzureDiagnostics``) give them where they differ ("Audit log fields").
FIELDS: Final = (
    "event_time", "sequence_number", "action_id", "action_name", "succeeded",
    "session_id", "server_principal_name", "session_server_principal_name",
    "database_principal_name", "server_instance_name", "database_name", "schema_name",
    "object_name", "statement", "client_ip", "application_name", "host_name",
    "duration_milliseconds", "response_rows", "affected_rows", "connection_id",
    "sequence_group_id", "class_type",
)  # fmt: skip
SUFFIXED: Final = {
    "event_time": "event_time_t",
    "sequence_number": "sequence_number_d",
    "session_id": "session_id_d",
    "duration_milliseconds": "duration_milliseconds_d",
    "response_rows": "response_rows_d",
    "affected_rows": "affected_rows_d",
    "sequence_group_id": "sequence_group_id_g",
    **{
        f: f + "_s"
        for f in FIELDS
        if f not in ("event_time", "sequence_number", "session_id", "duration_milliseconds",
                     "response_rows", "affected_rows", "sequence_group_id", "host_name",
                     "connection_id")
    },
}  # fmt: skip
PRINCIPALS: Final = (
    "server_principal_name",
    "session_server_principal_name",
    "database_principal_name",
)

BATCH: Final = ("BCM", "RCM")  # BATCH COMPLETED, RPC COMPLETED
REFUSED_LOGINS: Final = ("LGIF", "DBAF")  # LOGIN FAILED, DATABASE AUTHENTICATION FAILED
# Successful logins and logouts, and the server's own records: context, not events.
CONTEXT: Final = ("LGIS", "DBAS", "LGO", "DBL", "SVSR", "SVSD", "SVPD", "SVCN", "AUSC")
CONTEXT_NAMES: Final = ("BATCH STARTED", "RPC STARTED")  # started and completed: count once
# Action ids (sys.dm_audit_actions) and the statement each is checked for.
ACTIONS: Final = {
    "SL": "SELECT", "IN": "INSERT", "UP": "UPDATE", "DL": "DELETE", "EX": "EXECUTE",
    "RC": "RECEIVE", "SN": "SEND", "RF": "REFERENCES", "CR": "CREATE", "AL": "ALTER",
    "DR": "DROP", "TRO": "TRANSFER", "TO": "TAKE OWNERSHIP", "G": "GRANT",
    "GWG": "GRANT WITH GRANT", "D": "DENY", "DWC": "DENY WITH CASCADE", "R": "REVOKE",
    "RWC": "REVOKE WITH CASCADE", "RWG": "REVOKE WITH GRANT", "APRL": "ADD MEMBER",
    "DPRL": "DROP MEMBER", "IMP": "IMPERSONATE", "BA": "BACKUP", "BAL": "BACKUP LOG",
    "RS": "RESTORE", "DBCC": "DBCC", "CP": "CHECKPOINT", "VDST": "VIEW DATABASE STATE",
    "VSST": "VIEW SERVER STATE", "LGIF": "LOGIN FAILED", "DBAF": "DATABASE AUTHENTICATION FAILED",
}  # fmt: skip
_ACTION_CLASS: Final = {
    **dict.fromkeys(["SL", "RC"], "READ"),
    **dict.fromkeys(["IN", "UP", "DL"], "WRITE"),
    "EX": "FUNCTION",
    **dict.fromkeys(["CR", "AL", "DR", "TRO"], "DDL"),
    **dict.fromkeys(["TO", "G", "GWG", "D", "DWC", "R", "RWC", "RWG", "APRL", "DPRL", "IMP",
                     "PWC", "PWCS", "PWR", "PWRS", "PWU", "PWMC", "USLG", "USAF", "CCLG",
                     "CMLG", "LGDA", "LGEA", "LGNM", "LGDB"], "ROLE"),
}  # fmt: skip
_WORD_CLASS: Final = {
    **dict.fromkeys(["SELECT", "WITH", "READTEXT", "RECEIVE"], "READ"),
    **dict.fromkeys(["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "BULK", "WRITETEXT",
                     "UPDATETEXT"], "WRITE"),
    **dict.fromkeys(["CREATE", "ALTER", "DROP"], "DDL"),
    **dict.fromkeys(["GRANT", "REVOKE", "DENY"], "ROLE"),
    **dict.fromkeys(["EXEC", "EXECUTE"], "FUNCTION"),
}  # fmt: skip

# Leading comments, blanks and session settings before a batch's first real statement.
_LEADING: Final = (
    r"^(?:\s+|/\*(?:[^*]|\*+[^*/])*\*+/|--[^\n]*(?:\n|$)|;"
    r"|(?i:SET|USE|DECLARE|PRINT)\b[^;\n]*(?:;|\n|$))*"
)
# A parameterised statement sent as ``sp_executesql`` / ``sp_prepexec``: its text is the
# first N'...' literal starting with a statement keyword.
_WRAPPED: Final = (
    r"(?is)^\s*EXEC(?:UTE)?\s+(?:sys\.)?sp_(?:executesql|prepexec|prepare)\b"
    r".*?N'(\s*(?:SELECT|INSERT|UPDATE|DELETE|MERGE|WITH)\b.*)$"
)
_ROLE_DDL: Final = (
    r"(?i)^(?:CREATE|ALTER|DROP)\s+(?:USER|LOGIN|ROLE|SERVER\s+ROLE|APPLICATION\s+ROLE)\b"
    r"|^EXEC(?:UTE)?\s+(?:sys\.)?sp_(?:addrolemember|droprolemember|addsrvrolemember|addlogin"
    r"|adduser|grantdbaccess|changedbowner)\b"
)
_PART: Final = r'(?:\[[^\]\n]+\]|"[^"\n]+"|[A-Za-z_][\w@$]*)'
_NAME: Final = rf"{_PART}(?:\s*\.\s*{_PART}?){{0,3}}"
_NAMED_AFTER: Final = (
    r"(?i)\b(?:FROM|JOIN|INTO|UPDATE|MERGE(?:\s+INTO)?|USING|DELETE(?:\s+FROM)?|TABLE)\s+"
)
_NOT_TABLES: Final = ["SELECT", "OPENROWSET", "OPENQUERY", "OPENDATASOURCE", "OPENJSON", "OPENXML",
                      "VALUES", "UNNEST", "TABLE", "DUAL", "OUTFILE"]  # fmt: skip
# Bulk moves out of the database: CREATE EXTERNAL TABLE AS SELECT to storage, INSERT into
# OPENROWSET/OPENDATASOURCE/OPENQUERY (a file or another server), bcp out/queryout run
# through xp_cmdshell, and a server file read whole with OPENROWSET(BULK ...) and sent to
# the client as one row. SELECT ... INTO a new table is found by is_export itself.
_EXPORTS: Final = (
    r"(?is)\bCREATE\s+EXTERNAL\s+TABLE\b.*\bAS\s+SELECT\b"
    r"|\bINSERT\s+(?:INTO\s+)?OPEN(?:ROWSET|DATASOURCE|QUERY)\s*\("
    r"|\bbcp\b.*\b(?:out|queryout)\b"
    r"|\bOPENROWSET\s*\(\s*BULK\b"
)
_IMPORT: Final = r"(?is)^\s*(?:INSERT\b.*?\bOPENROWSET\s*\(\s*BULK|BULK\s+INSERT)\b"


def blank_to_null(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``columns`` stripped, with empty strings and SSMS's ``NULL`` as null."""
    return frame.with_columns(
        pl.when(pl.col(c).str.strip_chars().is_in(["", "NULL"]))
        .then(None)
        .otherwise(pl.col(c))
        .alias(c)
        for c in columns
    )


def parse_time(text: pl.Expr) -> pl.Expr:
    """UTC time from ``datetime2`` text (``2024-01-15 10:30:00.1234567``, taken as UTC as
    ``sys.fn_get_audit_file`` returns it), ISO 8601 with ``Z`` or an offset, or US
    month-first time as a Log Analytics portal export (``1/22/2019, 9:21:19.734 PM``) or
    PowerShell's ``Export-Csv`` (``1/22/2019 9:21:19 PM``) writes it; null if none fits."""
    s = text.str.strip_chars()
    iso = (
        s.str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T")
        .str.replace(r"\s*Z$", "+00:00")
        .str.replace(r"\s*([+-]\d\d):?(\d\d)$", "$1:$2")
    )
    iso = pl.when(iso.str.contains(r"[+-]\d\d:\d\d$")).then(iso).otherwise(iso + "+00:00")
    parsed = iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)
    # US month-first, with a comma (Log Analytics portal) or without (Export-Csv, en-US).
    us = s.str.replace(r"^(\d{1,2}/\d{1,2}/\d{4}),? ", "$1 ")
    portal = us.str.to_datetime("%m/%d/%Y %I:%M:%S%.f %p", time_unit="us", strict=False)
    return pl.coalesce(parsed.dt.convert_time_zone("UTC"), portal.dt.replace_time_zone("UTC"))


def _count(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


def body(text: pl.Expr) -> pl.Expr:
    """The statement a batch runs: the text inside ``sp_executesql`` when it is one, after
    leading comments and ``SET``/``USE``/``DECLARE`` lines."""
    inner = text.str.extract(_WRAPPED, 1).str.replace_all("''", "'", literal=True)
    return pl.coalesce(inner, text).str.replace(_LEADING, "")


def first_word(text: pl.Expr) -> pl.Expr:
    """The statement's first keyword, upper case; null if none."""
    return body(text).str.extract(r"^([A-Za-z]+)", 1).str.to_uppercase()


def statement_class(text: pl.Expr) -> pl.Expr:
    """READ, WRITE, DDL, ROLE, FUNCTION or MISC from a batch's text (its first statement,
    as pgAudit classes statements: ``CREATE USER`` and ``GRANT`` are ROLE)."""
    main = body(text)
    word = first_word(text)
    by_word = word.replace_strict(_WORD_CLASS, default="MISC", return_dtype=pl.String)
    writes_cte = (word == "WITH") & main.str.contains(r"(?i)\)\s*(?:INSERT|UPDATE|DELETE|MERGE)\b")
    return (
        pl.when(main.str.contains(_ROLE_DDL))
        .then(pl.lit("ROLE"))
        .when(writes_cte)
        .then(pl.lit("WRITE"))
        .otherwise(by_word)
    )


def is_export(text: pl.Expr) -> pl.Expr:
    """True for statements that move data out in bulk: ``SELECT ... INTO`` a new table
    (not a ``#temp`` one) and the statements of ``_EXPORTS``; bulk imports are not."""
    main = body(text)
    into = main.str.find(r"(?i)\bINTO\s")
    before_from = into < main.str.find(r"(?i)\bFROM\b").fill_null(1 << 62)
    target = main.str.extract(r"(?i)\bINTO\s+(\S)", 1)
    select_into = (first_word(text) == "SELECT") & before_from & (target != "#")
    hit = select_into.fill_null(False) | (
        text.str.contains(_EXPORTS) & ~main.str.contains(_IMPORT)
    ).fill_null(False)
    return hit


def with_relations(events: pl.DataFrame, where: pl.Expr) -> pl.DataFrame:
    """``events`` whose objects, on the rows selected by ``where``, are the tables their
    text names after FROM, JOIN, INTO, UPDATE, MERGE, USING, DELETE, TABLE, as
    ``database.schema.table``: brackets removed, a two-part name given the event's
    database, a bare name the schema ``dbo`` (SQL Server's default schema; the text
    cannot say which default a user has). Temporary tables and table variables are left
    out; a four-part (linked server) name is kept whole."""
    rows = events.with_row_index("_r")
    names = (
        rows.filter(where)
        .select(
            "_r",
            S.DATABASE,
            body(pl.col(S.QUERY)).str.extract_all(_NAMED_AFTER + _NAME).alias("_n"),
        )
        .explode("_n")
        .with_columns(
            pl.col("_n")
            .str.replace(_NAMED_AFTER, "")
            .str.replace_all(r"\s*\.\s*", ".")
            .str.replace_all(r"[\[\]\"]", "")
        )
        .filter(
            ~pl.col("_n").str.to_uppercase().is_in(_NOT_TABLES)
            & ~pl.col("_n").str.contains(r"^[#@]")
        )
    )
    parts = pl.col("_n").str.count_matches(".", literal=True) + 1
    db = pl.coalesce(S.DATABASE, pl.lit(""))
    full = (
        pl.when(parts == 1)
        .then(db + ".dbo." + pl.col("_n"))
        .when(parts == 2)
        .then(db + "." + pl.col("_n"))
        .otherwise(pl.col("_n"))
        .str.strip_prefix(".")
    )
    found = names.group_by("_r").agg(full.unique(maintain_order=True).alias("_found"))
    return (
        rows.join(found, on="_r", how="left", maintain_order="left")
        .with_columns(
            pl.when(where)
            .then(pl.coalesce("_found", S.OBJECTS))
            .otherwise(pl.col(S.OBJECTS))
            .alias(S.OBJECTS)
        )
        .drop("_r", "_found")
    )


def to_events(records: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Events, rejects and the context count from audit records.

    ``records`` has ``line_no``, ``line``, every name of ``FIELDS`` (strings, null when
    absent) and ``_time`` (a fallback time) and ``_server`` (the server when the record
    does not name it).
    """
    records = blank_to_null(records, [*FIELDS, "_time", "_server"]).with_columns(
        pl.col("action_id").str.strip_chars().str.to_uppercase(),
        pl.col("action_name").str.strip_chars().str.to_uppercase(),
    )
    principal = pl.coalesce(*PRINCIPALS)
    missing = pl.col("action_id").is_null() | principal.is_null()
    missing |= pl.col("event_time").is_null() & pl.col("_time").is_null()
    not_audit = rejects(records, missing, Reason.NOT_AUDIT)
    records = records.filter(~missing).with_columns(
        pl.coalesce(parse_time(pl.col("event_time")), parse_time(pl.col("_time"))).alias(S.TIME)
    )
    bad_time = rejects(records, pl.col(S.TIME).is_null(), Reason.BAD_FIELD)
    records = _join_pieces(records.filter(pl.col(S.TIME).is_not_null()))
    action = pl.col("action_id")
    context = action.is_in(CONTEXT) | pl.col("action_name").is_in(CONTEXT_NAMES).fill_null(False)
    context |= pl.col("_piece")  # a piece of a record whose start is not in this chunk
    n_context = records.filter(context).height
    events = _map(records.filter(~context), source)
    found = pl.concat([not_audit, bad_time]).unique("line_no", keep="first").sort("line_no")
    return events, found, n_context


def _join_pieces(records: pl.DataFrame) -> pl.DataFrame:
    """One record per audit record: SQL Server writes a record too large for its buffer
    as pieces (``sequence_number`` 1, 2, ...); the statement is the pieces' texts joined.
    ``_piece`` marks pieces whose first piece is not in ``records``."""
    seq = _count(pl.col("sequence_number")).fill_null(1)
    key = pl.concat_str(
        pl.coalesce("sequence_group_id", pl.col("session_id")), "event_time", "action_id",
        separator="|", ignore_nulls=True,
    )  # fmt: skip
    records = records.with_columns(seq.alias("_seq"), key.alias("_key"))
    later = records.filter(pl.col("_seq") > 1)
    if later.is_empty():
        return records.with_columns(pl.lit(False).alias("_piece"))
    tails = later.sort("_seq").group_by("_key").agg(pl.col("statement").str.join("").alias("_tail"))
    first = records.filter(pl.col("_seq") <= 1).join(
        tails, on="_key", how="left", maintain_order="left"
    )
    first = first.with_columns(
        pl.concat_str("statement", "_tail", ignore_nulls=True).alias("statement"),
        pl.lit(False).alias("_piece"),
    ).drop("_tail")
    orphans = later.join(first.select("_key"), on="_key", how="anti")
    return pl.concat([first, orphans.with_columns(pl.lit(True).alias("_piece"))])


def _map(records: pl.DataFrame, source: str) -> pl.DataFrame:
    """Events from audit records that are not context (see the module docstring)."""
    action = pl.col("action_id")
    text = pl.col("statement")
    batch = action.is_in(BATCH)
    refused = action.is_in(REFUSED_LOGINS)
    failed = (
        pl.col("succeeded")
        .str.strip_chars()
        .str.to_lowercase()
        .is_in(["0", "false"])
        .fill_null(False)
    )
    by_action = action.replace_strict(_ACTION_CLASS, default="MISC", return_dtype=pl.String)
    by_action = (
        pl.when(action.is_in(["CR", "AL", "DR"]) & body(text).str.contains(_ROLE_DDL))
        .then(pl.lit("ROLE"))
        .otherwise(by_action)
    )
    kind = pl.when(batch).then(statement_class(text).fill_null("MISC")).otherwise(by_action)
    cls = (
        pl.when(refused).then(pl.lit("CONNECT")).when(failed).then(pl.lit("ERROR")).otherwise(kind)
    )
    command = (
        pl.when(refused)
        .then(pl.lit("LOGIN"))
        .when(batch)
        .then(first_word(text))
        .otherwise(
            pl.coalesce(
                pl.col("action_name"),
                action.replace_strict(ACTIONS, default=None, return_dtype=pl.String),
                action,
            )
        )
    )
    response, affected = _count(pl.col("response_rows")), _count(pl.col("affected_rows"))
    rows = (
        pl.when(kind == "WRITE")
        .then(pl.coalesce(affected, response))
        .otherwise(pl.max_horizontal(response, affected))
    )
    named = pl.col("schema_name").is_not_null() & pl.col("object_name").is_not_null()
    obj = pl.concat_str(
        pl.coalesce("database_name", pl.lit("")), "schema_name", "object_name", separator="."
    ).str.strip_prefix(".")
    server = pl.coalesce("server_instance_name", "_server")
    session = pl.coalesce(
        pl.col("connection_id"),
        pl.concat_str(pl.coalesce(server, pl.lit("")), "session_id", separator="/"),
    )
    events = records.select(
        S.TIME,
        pl.coalesce(*PRINCIPALS).alias(S.ACCOUNT),
        pl.coalesce("client_ip", "host_name").alias(S.CLIENT_IP),
        pl.col("application_name").alias(S.APPLICATION),
        pl.col("database_name").alias(S.DATABASE),
        pl.when(named & ~batch)
        .then(pl.concat_list(obj))
        .otherwise(pl.lit([], pl.List(pl.String)))
        .alias(S.OBJECTS),
        cls.alias(S.CLASS),
        command.alias(S.COMMAND),
        text.alias(S.QUERY),
        pl.when(batch).then(rows).otherwise(None).alias(S.ROWS),
        pl.when(batch)
        .then(pl.col("duration_milliseconds").cast(pl.Float64, strict=False))
        .otherwise(None)
        .alias(S.DURATION_MS),
        (~failed & ~refused).alias(S.SUCCESS),
        (~refused & is_export(text)).fill_null(False).alias(S.EXPORT),
        session.alias(S.SESSION),
        # Batch records identify their statement (one batch completes at a time in a
        # session); object-level records are null, which finish() relies on.
        pl.when(batch)
        .then(pl.concat_str("event_time", "action_id", separator="/"))
        .otherwise(None)
        .alias(S.STATEMENT_ID),
        pl.lit(DB_SYSTEM).alias(S.DB_SYSTEM),
        pl.lit(source).alias(S.SOURCE_FORMAT),
    )
    # Batch records name no table: the tables from the text (finish() puts the log's own
    # object names in their place when object-level records were audited too).
    reads_or_writes = pl.col(S.CLASS).is_in(["READ", "WRITE", "ERROR"]) | pl.col(S.EXPORT)
    events = with_relations(events, _batch() & reads_or_writes)
    return S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect()


def _batch() -> pl.Expr:
    """True for events from batch records: they alone have a statement id."""
    return pl.col(S.STATEMENT_ID).is_not_null()


def finish(events: pl.DataFrame) -> pl.DataFrame:
    """Whole-file step: each object-level event (a permission check, statement id null)
    is folded into the next batch event of its session, which takes its objects; the
    batch's rows are kept, so they are counted once. Object-level events with no batch
    record after them (``BATCH_COMPLETED_GROUP`` not audited) stay as they are."""
    if events.is_empty():
        return events
    events = events.sort(S.TIME, maintain_order=True).with_row_index("_i")
    is_batch = _batch()
    check = ~is_batch & (pl.col(S.CLASS) != "CONNECT") & pl.col(S.SESSION).is_not_null()
    batches = events.filter(is_batch & pl.col(S.SESSION).is_not_null()).select(
        S.SESSION, S.TIME, pl.col("_i").alias("_batch")
    )
    checks = events.filter(check).select("_i", S.SESSION, S.TIME, S.OBJECTS)
    if batches.is_empty() or checks.is_empty():
        return events.drop("_i")
    owner = checks.join_asof(
        batches, on=S.TIME, by=S.SESSION, strategy="forward", check_sortedness=False
    ).filter(pl.col("_batch").is_not_null())
    folded = (
        owner.explode(S.OBJECTS)
        .group_by("_batch")
        .agg(pl.col(S.OBJECTS).drop_nulls().unique(maintain_order=True).alias("_objects"))
    )
    union = _union(folded, events.select("_i", S.OBJECTS))
    return (
        events.filter(~pl.col("_i").is_in(owner["_i"].implode()))
        .join(union, on="_i", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_union", S.OBJECTS).alias(S.OBJECTS))
        .select(S.EVENT_SCHEMA.names())
    )


def _union(logged: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """``_union`` per batch ``_i``: the objects the log named (``logged``: ``_batch``,
    ``_objects``), then those of the batch's text whose table the log did not name (the
    text's schema is a guess, the log's is not)."""
    table = pl.col("_name").str.extract(r"([^.]*)$", 1).alias("_table")
    named = logged.select(pl.col("_batch").alias("_i"), pl.col("_objects").alias("_name")).explode(
        "_name"
    )
    named = named.drop_nulls("_name").with_columns(table)
    text = (
        events.join(named.select("_i").unique(), on="_i", how="semi")
        .select("_i", pl.col(S.OBJECTS).alias("_name"))
        .explode("_name")
        .drop_nulls("_name")
        .with_columns(table)
        .join(named, on=["_i", "_table"], how="anti")
    )
    return (
        pl.concat([named.select("_i", "_name"), text.select("_i", "_name")])
        .group_by("_i", maintain_order=True)
        .agg(pl.col("_name").unique(maintain_order=True).alias("_union"))
    )
