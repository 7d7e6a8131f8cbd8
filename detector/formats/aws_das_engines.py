"""What DAS events mean, engine by engine: statements, failures, refused logins, rows.

The four engines fill the same event fields with different things (from the AWS
field tables, ``docs/formats-aws-das.md``):

* **Aurora PostgreSQL** is pgAudit underneath: a statement touching several objects is
  one event per object with the same ``statementId``/``substatementId``, each carrying
  the statement's ``rowCount``. ``rowCount`` is the rows the statement *returned* (0 for
  INSERT/UPDATE): it is kept for reads only. ``exitCode`` is a SQLSTATE on errors.
* **Aurora MySQL** logs a statement as one ``MAIN`` event (the SQL text) and ``AUX``
  events (one per object), same ``statementId``, in any order. ``rowCount`` is the rows
  a DML statement affected or retrieved.
* **RDS for Oracle** (unified audit): ``objectType`` holds the object's *schema*;
  ``rowCount`` is always null; ``exitCode`` is the ORA error number (0 = success).
* **RDS for SQL Server** (SQL Server Audit): ``exitCode`` is ``succeeded`` (1 = the
  permission check passed, 0 = it failed); ``rowCount`` is ``affected_rows``. Object
  access events are written at the permission check, before the statement runs, so their
  counts are not counts: rows (and duration) are kept only for completed batches.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb
from detector.formats.pg_reads import DUMP_TOOLS
from detector.formats.pg_text import relations_in
from detector.formats.pgaudit import parse_time as pg_time

_CLASSES: Final = ["READ", "WRITE", "DDL", "ROLE", "MISC", "FUNCTION"]
_CONNECTION: Final = [
    "CONNECT", "DISCONNECT", "FAILED_CONNECT", "CHANGEUSER", "LOGON", "LOGOFF",
    "LOGOFF BY CLEANUP", "LOGIN SUCCEEDED", "LOGIN FAILED", "LOGOUT",
]  # fmt: skip
_COMPLETED: Final = ["BATCH COMPLETED", "RPC COMPLETED"]
_MYSQL_DUMPS: Final = ["mysqldump", "mysqlpump", "mariadb-dump"]
# SQL Server securables that are not data: a statement "on" them touched no table.
_MSSQL_NOT_DATA: Final = (
    r"^(?:SCHEMA|DATABASE|SERVER|USER|SQL USER|WINDOWS USER|WINDOWS GROUP)$"
    r"|LOGIN|ROLE|AUDIT|CERTIFICATE|CREDENTIAL|ENDPOINT"
)
_PRINCIPAL: Final = r"LOGIN|ROLE|USER$"
_COPY_TO: Final = r"(?i)^\s*COPY\b.*(?:\)\s*TO\s|\s+TO\s+(?:STDOUT|'|PROGRAM))"
ORPHAN: Final = "aux:"  # query_info.uid prefix of MySQL AUX events whose MAIN was not seen


def parse_time(ts: pl.Expr) -> pl.Expr:
    """A DAS time (``2019-10-30 00:39:49.990579+00``; Oracle's has no zone and is UTC;
    SQL Server's has 7 fractional digits) as UTC; ISO ``T``/``Z`` forms too."""
    iso = ts.str.replace(r"^(\d{4}-\d\d-\d\d)T", "$1 ").str.replace(r"Z$", "+00")
    return pg_time(iso)


def _text(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().replace("", None)


def _engine() -> pl.Expr:
    """``db.system.name`` from ``serverType`` (or the protocol or service name)."""
    said = pl.concat_str(
        [pl.col("serverType"), pl.col("dbProtocol"), pl.col("serviceName")],
        separator=" ",
        ignore_nulls=True,
    ).str.to_lowercase()
    return (
        pl.when(said.str.contains("postgres"))
        .then(pl.lit("postgresql"))
        .when(said.str.contains("mysql"))
        .then(pl.lit("mysql"))
        .when(said.str.contains("oracle"))
        .then(pl.lit("oracle"))
        .when(said.str.contains(r"sql ?server"))
        .then(pl.lit("mssql"))
    )


def _failed() -> pl.Expr:
    """The event reports a failure (its engine's reading of ``exitCode``/``errorMessage``)."""
    code = _text("exitCode")
    error = _text("errorMessage").is_not_null()
    nonzero = code.is_not_null() & ~code.is_in(["0", "00000"])
    return (
        pl.when(pl.col("_engine") == "mssql")
        .then(code == "0")
        .otherwise(error | nonzero)
        .fill_null(False)
    )


def to_events(records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Statements and refused logins from record events (``line_no``, ``_instance``,
    the event fields, ``time``); and how many were successful connections (context)."""
    engine = pl.col("_engine")
    mysql_pid = pl.when(engine == "mysql").then(_text("pid"))
    records = records.with_columns(_engine().alias("_engine")).with_columns(
        pl.concat_str(
            [_text("_instance"), _text("sessionId"), mysql_pid], separator="/", ignore_nulls=True
        )
        .replace("", None)
        .alias(S.SESSION),
        pl.col("command").str.strip_chars().str.to_uppercase().alias("_cmd"),
        _failed().alias("_failed"),
    )
    cmd = pl.col("_cmd")
    connection = cmd.is_in(_CONNECTION) | (
        (engine == "postgresql") & (pl.col("class") == "CONNECT")
    )
    refused = (
        (cmd == "FAILED_CONNECT")
        | (cmd == "LOGIN FAILED")
        | (cmd.is_in(["CONNECT", "LOGON", "LOGIN SUCCEEDED"]) & pl.col("_failed"))
    )
    connection = connection.fill_null(False)
    conn = records.filter(connection)
    logins = _refused_logins(conn.filter(refused.fill_null(False)))
    statements = _statements(records.filter(~connection))
    return statements, logins, conn.height - logins.height


def _who() -> list[pl.Expr]:
    return [
        pl.col(S.TIME),
        _text("dbUserName").alias(S.ACCOUNT),
        _text("remoteHost").alias(S.CLIENT_IP),
        _text("clientApplication").alias(S.APPLICATION),
        _text("databaseName").alias(S.DATABASE),
        pl.col("_engine").alias(S.DB_SYSTEM),
        pl.col(S.SESSION),
    ]


def _refused_logins(conn: pl.DataFrame) -> pl.DataFrame:
    reason = pl.coalesce(
        _text("errorMessage"),
        _text("commandText"),
        pl.lit("login refused, error ") + _text("exitCode"),
    )
    return conn.select(
        *_who(),
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.lit("CONNECT").alias(S.CLASS),
        pl.lit("LOGIN").alias(S.COMMAND),
        reason.alias(S.QUERY),
        pl.lit(False).alias(S.SUCCESS),
        pl.lit(False).alias(S.EXPORT),
    )


def _objects(rows: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Per statement (``key``), the objects its events name: ``schema.object`` where the
    engine gives the schema (Oracle's ``objectType``, SQL Server's ``schema_name``), and
    MySQL's comma-separated names within ``databaseName``."""
    engine, name = pl.col("_engine"), pl.col("_name")
    schema_name = pl.col("engineNativeAuditFields").struct.field("schema_name")
    names = (
        rows.select(
            *key,
            "_engine",
            _text("databaseName").alias("_db"),
            _text("objectType").alias("_type"),
            schema_name.str.strip_chars().replace("", None).alias("_schema"),
            pl.when(engine == "mysql")
            .then(_text("objectName").str.split(","))
            .otherwise(pl.concat_list(_text("objectName")))
            .alias("_name"),
        )
        .explode("_name")
        .with_columns(name.str.strip_chars().replace("", None))
    )
    qualified = (
        pl.when(name.is_null())
        .then(None)
        .when((engine == "mysql") & ~name.str.contains(".", literal=True))
        .then(pl.coalesce(pl.col("_db") + "." + name, name))
        .when(engine == "oracle")
        .then(pl.coalesce(pl.col("_type") + "." + name, name))
        .when((engine == "mssql") & pl.col("_type").str.contains(_MSSQL_NOT_DATA).fill_null(False))
        .then(None)
        .when(engine == "mssql")
        .then(pl.coalesce(pl.col("_schema") + "." + name, name))
        .otherwise(name)
    )
    return (
        names.with_columns(qualified.alias("_obj"))
        .group_by(key)
        .agg(pl.col("_obj").drop_nulls().unique().alias(S.OBJECTS))
    )


def _statements(records: pl.DataFrame) -> pl.DataFrame:
    """One event per statement: the events with the same session and statement id
    (PostgreSQL: and sub-statement id) folded, objects unioned, the first (MySQL: the
    ``MAIN``) event's fields and row count kept once."""
    engine = pl.col("_engine")
    pg, mysql, mssql = engine == "postgresql", engine == "mysql", engine == "mssql"
    uid = pl.when(pg).then(_text("statementId") + "." + _text("substatementId"))
    rows = records.with_row_index("_i").with_columns(
        uid.otherwise(_text("statementId")).alias(S.STATEMENT_ID),
        (mysql & (pl.col("class") == "AUX")).fill_null(False).alias("_aux"),
    )
    rows = rows.with_columns(
        pl.coalesce(S.STATEMENT_ID, pl.lit("#") + pl.col("_i").cast(pl.String)).alias("_g")
    )
    key = [S.SESSION, "_g"]
    part = _text("substatementId").cast(pl.Int64, strict=False)
    folded = (
        rows.sort("_aux", "_i")
        .group_by(key, maintain_order=True)
        .agg(
            pl.all().exclude(key).first(),
            (~pl.col("_aux")).any().alias("_main"),
            pl.col("commandText").sort_by(part).str.join("").alias("_joined"),
        )
        .join(_objects(rows, key), on=key, how="left", maintain_order="left")
    )
    main, cmd = pl.col("_main"), pl.col("_cmd")
    completed = mssql & cmd.is_in(_COMPLETED)
    text = (
        pl.when(mssql)
        .then(pl.col("_joined"))
        .when(mysql & ~main)
        .then(None)  # an AUX event's text is only its object's name
        .otherwise(pl.col("commandText"))
    )
    folded = folded.with_columns(text.replace("", None).alias(S.QUERY))
    query = pl.col(S.QUERY)
    by_text = pg | (mysql & main) | completed
    command = pl.when((mysql & main) | completed).then(mariadb.first_word(query)).otherwise(cmd)
    basis = pl.when(by_text).then(query).otherwise(cmd)
    word = mariadb.first_word(basis)
    raw_class = pl.col("class")
    cls = (
        pl.when(pg & raw_class.is_in(_CLASSES))
        .then(raw_class)
        .when(mysql & ~main & cmd.is_in(["READ", "WRITE"]))
        .then(cmd)
        .when(word.is_in(["EXECUTE", "EXEC"]))
        .then(pl.lit("FUNCTION"))
        .when(word == "MERGE")
        .then(pl.lit("WRITE"))
        .when(
            mssql
            & cmd.is_in(["CREATE", "ALTER", "DROP"])
            & _text("objectType").str.contains(_PRINCIPAL)
        )
        .then(pl.lit("ROLE"))
        .when(mssql & (cmd == "DENY"))
        .then(pl.lit("ROLE"))
        .otherwise(mariadb.statement_class(basis))
    )
    failed = pl.col("_failed")
    folded = folded.with_columns(
        command.alias(S.COMMAND),
        pl.when(failed).then(pl.lit("ERROR")).otherwise(cls).alias(S.CLASS),
        (~failed).alias(S.SUCCESS),
        pl.col(S.OBJECTS).fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    folded = folded.with_columns(_export().alias(S.EXPORT))
    folded = folded.with_columns(_rows().alias(S.ROWS), _duration().alias(S.DURATION_MS))
    orphan = mysql & ~main
    events = folded.select(
        *_who(),
        S.OBJECTS,
        S.CLASS,
        S.COMMAND,
        S.QUERY,
        S.ROWS,
        S.DURATION_MS,
        S.SUCCESS,
        S.EXPORT,
        pl.when(orphan)
        .then(ORPHAN + pl.col(S.STATEMENT_ID))
        .otherwise(pl.col(S.STATEMENT_ID))
        .alias(S.STATEMENT_ID),
        "_engine",
    )
    return _with_text_relations(events).drop("_engine")


def _export() -> pl.Expr:
    """Bulk moves out: COPY ... TO, cursors and dump tools (PostgreSQL), SELECT INTO
    OUTFILE and dump tools (MySQL), Data Pump exports (Oracle), BACKUP (SQL Server)."""
    engine, query, cmd = pl.col("_engine"), pl.col(S.QUERY), pl.col("_cmd")
    app, read = _text("clientApplication"), pl.col(S.CLASS) == "READ"
    pg = (
        query.str.contains(_COPY_TO)
        | pl.col(S.COMMAND).is_in(["DECLARE CURSOR", "FETCH"])
        | (mariadb.first_word(query) == "FETCH")
        | (app.is_in(DUMP_TOOLS) & read)
    )
    mysql = mariadb.is_export(query) | (app.is_in(_MYSQL_DUMPS) & read)
    oracle = (pl.col("class") == "Datapump") & cmd.str.contains("EXPORT")
    mssql = (cmd == "BACKUP") | (mariadb.first_word(query) == "BACKUP")
    return (
        pl.when(engine == "postgresql")
        .then(pg)
        .when(engine == "mysql")
        .then(mysql)
        .when(engine == "oracle")
        .then(oracle)
        .when(engine == "mssql")
        .then(mssql)
        .otherwise(False)
        .fill_null(False)
    )


def _rows() -> pl.Expr:
    """``rowCount`` where it counts rows read or written by the statement; else null."""
    engine, cls = pl.col("_engine"), pl.col(S.CLASS)
    count = _text("rowCount").cast(pl.Int64, strict=False)
    returned = pl.col("engineNativeAuditFields").struct.field("response_rows")
    returned = returned.str.strip_chars().cast(pl.Int64, strict=False)
    pg = (cls == "READ") & ~pl.col(S.EXPORT) & (pl.col(S.COMMAND) != "COPY").fill_null(True)
    return (
        pl.when((engine == "postgresql") & pg)
        .then(count)
        .when((engine == "mysql") & pl.col("_main") & cls.is_in(["READ", "WRITE"]))
        .then(count)
        .when((engine == "mssql") & pl.col("_cmd").is_in(_COMPLETED) & (cls == "READ"))
        .then(pl.coalesce(returned, count))
        .when((engine == "mssql") & pl.col("_cmd").is_in(_COMPLETED) & (cls == "WRITE"))
        .then(count)
    )


def _duration() -> pl.Expr:
    """Milliseconds: ``logTime - startTime`` (PostgreSQL), ``endTime - startTime``
    (MySQL), ``duration_milliseconds`` of a completed batch (SQL Server)."""
    engine = pl.col("_engine")
    start, end = parse_time(pl.col("startTime")), parse_time(pl.col("endTime"))
    native = pl.col("engineNativeAuditFields").struct.field("duration_milliseconds")
    ms = (
        pl.when(engine == "postgresql")
        .then((pl.col(S.TIME) - start).dt.total_microseconds() / 1000)
        .when(engine == "mysql")
        .then((end - start).dt.total_microseconds() / 1000)
        .when((engine == "mssql") & pl.col("_cmd").is_in(_COMPLETED))
        .then(native.str.strip_chars().cast(pl.Float64, strict=False))
    )
    return pl.when(ms >= 0).then(ms.round(3))


def _with_text_relations(events: pl.DataFrame) -> pl.DataFrame:
    """Objects from the statement text where the stream named none: failed statements,
    and PostgreSQL's ``COPY t TO`` and cursors (as pgAudit, reads only)."""
    unnamed = (pl.col(S.OBJECTS).list.len() == 0) & (
        pl.col(S.CLASS).is_in(["READ", "ERROR"]) | pl.col(S.EXPORT)
    )
    pg = unnamed & (pl.col("_engine") == "postgresql")
    events = events.with_columns(
        pl.when(pg)
        .then(relations_in(pl.col(S.QUERY)))
        .otherwise(pl.col(S.OBJECTS))
        .alias(S.OBJECTS)
    )
    events = mariadb.with_relations(events, unnamed & (pl.col("_engine") == "mysql"))
    return events.with_columns(pl.col(S.OBJECTS).fill_null([]).list.sort())
