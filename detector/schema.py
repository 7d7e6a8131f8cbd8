"""The normalized event schema: one row per audited statement (or failed statement).

Every format module turns its input into a frame with exactly these columns, in this
order, with these types. Column names follow OpenTelemetry's ``db.*`` semantic
conventions and OCSF Datastore Activity (class 6005) where one of them has a name for
the field; the rest use plain names.

A field that a format does not carry is **null, never zero**: pgAudit never logs bytes,
so ``query_info.bytes`` is null for it; with ``pgaudit.log_rows = off`` the row count is
null. Features treat null as "unknown", not as "nothing moved".

| column                        | type              | source name / meaning                                   |
|-------------------------------|-------------------|---------------------------------------------------------|
| ``time``                      | Datetime(us, UTC) | OCSF ``time``: when the statement was logged             |
| ``actor.user.name``           | String            | OCSF: the database account (role) that ran it; never holds a NUL (see :func:`conform`) |
| ``src_endpoint.ip``           | String            | OCSF: client address (host name if the server logs names)|
| ``actor.app_name``            | String            | OCSF: client application (``application_name``)          |
| ``db.system.name``            | String            | OTel: ``postgresql``, ``mariadb``, ...                   |
| ``db.namespace``              | String            | OTel: database name                                     |
| ``db.collection.names``       | List(String)      | OTel ``db.collection.name``, all objects the statement touched, schema-qualified |
| ``activity_name``             | String            | OCSF activity / pgAudit class: READ, WRITE, DDL, ROLE, MISC, FUNCTION; ERROR (failed statement), CONNECT (refused login), INTERNAL (server-run foreign-key checks), CATALOG (a read of the server's catalogs only, :data:`CATALOG_SCHEMAS` of its server, or of sequences' state: pg_dump's, or a dump's SELECT of functions only: ``set_config``) |
| ``db.operation.name``         | String            | OTel: command, e.g. ``SELECT``, ``COPY``, ``FETCH``       |
| ``db.query.text``             | String            | OTel: statement text (as logged)                         |
| ``db.response.returned_rows`` | Int64             | OTel: rows read or written by the statement, counted once|
| ``query_info.bytes``          | Int64             | OCSF: bytes sent to the client                           |
| ``duration_ms``               | Float64           | server-side duration in milliseconds (pgAudit: from the statement's ``duration:`` line) |
| ``is_success``                | Boolean           | false for statements that failed (ERROR) or logins refused |
| ``is_export``                 | Boolean           | statement moves data out in bulk in a way rows may not show: ``COPY ... TO``, cursors and ``FETCH``, dump tools, base backups and replication streams (their objects ``(cluster)``, ``(cluster WAL)``, ``(publication <name>)``, ``(database <name>)``: :mod:`detector.formats.pg_replication`), a logical slot's changes, large objects and the server's files read through SQL functions (``(database <name>)``, ``pg_catalog.pg_largeobject``, ``(server files)``: ``pg_reads._HANDED_OUT``), reads written to a foreign table (``pg_reads.classify``); MySQL's and MariaDB's ``INTO OUTFILE``, ``LOAD_FILE`` and binary log streams (``mariadb.nameless_export``) |
| ``session.uid``               | String            | OCSF: server session identifier                          |
| ``query_info.uid``            | String            | OCSF: statement identifier within the session (``stmt.substmt`` for pgAudit) |
| ``source_format``             | String            | which parser produced the row, e.g. ``pgaudit-jsonlog``  |
"""

from __future__ import annotations

from typing import Final, Literal

import polars as pl

TIME: Final = "time"
ACCOUNT: Final = "actor.user.name"
CLIENT_IP: Final = "src_endpoint.ip"
APPLICATION: Final = "actor.app_name"
DB_SYSTEM: Final = "db.system.name"
DATABASE: Final = "db.namespace"
OBJECTS: Final = "db.collection.names"
CLASS: Final = "activity_name"
COMMAND: Final = "db.operation.name"
QUERY: Final = "db.query.text"
ROWS: Final = "db.response.returned_rows"
BYTES: Final = "query_info.bytes"
DURATION_MS: Final = "duration_ms"
SUCCESS: Final = "is_success"
EXPORT: Final = "is_export"
SESSION: Final = "session.uid"
STATEMENT_ID: Final = "query_info.uid"
SOURCE_FORMAT: Final = "source_format"

SCHEMA_VERSION: Final = 1
NUL: Final = "\x00"  # in no account name (see conform)
# The object of a read of the database server's own files (PostgreSQL's
# ``pg_read_file``, MySQL's and MariaDB's ``LOAD_FILE``): no table's, and an export.
SERVER_FILES: Final = "(server files)"
# PostgreSQL's table of large objects' contents (2 KB a row): data, not catalog.
LARGE_OBJECTS: Final = "pg_catalog.pg_largeobject"

# The servers' own catalogs, by server family: a schema that is one server's catalog
# is an ordinary user schema on another (``sys`` on PostgreSQL: Oracle migrations,
# pgloader's copies of MySQL databases). A read of them alone (psql's ``\d``, an ORM's
# introspection, pg_dump's hundred catalog queries with pgAudit's default
# ``log_catalog = on``) is classed CATALOG: a statement, but no data read, no object read
# and no export.
CATALOG_SCHEMAS: Final = {
    # and pg_toast_temp_N, temporary tables' TOAST (pg_temp_N, temporary tables
    # themselves, are data)
    "postgresql": ("pg_catalog", "information_schema", "pg_toast"),
    # MariaDB's audit log writes ``INFORMATION_SCHEMA``: any case. The others are
    # database names, case-sensitive on Linux (``lower_case_table_names = 0``, the
    # default): a user database ``Mysql`` is a user's.
    "mysql": ("mysql", "information_schema", "performance_schema", "sys"),
}
# Tables of the catalogs that hold data, not the server's description of it: reading
# them is data worth seeing. MySQL's secrets (password hashes, a FEDERATED server's
# password); PostgreSQL's large objects (their contents, 2 KB a row).
DATA_TABLES: Final = {
    "postgresql": (LARGE_OBJECTS,),
    "mysql": ("mysql.user", "mysql.global_priv", "mysql.servers"),
}
# Every family's, to list the catalogs after the tables in a report.
CATALOG_PREFIXES: Final = tuple(
    sorted({f"{schema}." for family in CATALOG_SCHEMAS.values() for schema in family})
)
# MySQL's and MariaDB's catalog databases but information_schema, named as written.
_MYSQL_DATABASES: Final = [s for s in CATALOG_SCHEMAS["mysql"] if s != "information_schema"]
_CATALOG_RE: Final = {
    # As PostgreSQL writes names: unquoted lower-case; a user's "PG_CATALOG" is quoted.
    "postgresql": rf"^(?:{'|'.join(CATALOG_SCHEMAS['postgresql'])}|pg_toast_temp_\d+)\.",
    "mysql": rf"^(?:(?i:information_schema)|{'|'.join(_MYSQL_DATABASES)})\.",
}


def is_catalog(name: pl.Expr, family: Literal["postgresql", "mysql"]) -> pl.Expr:
    """True where ``name`` (a schema-qualified object, as the server's log writes it) is
    in one of the ``family``'s catalogs (:data:`CATALOG_SCHEMAS`; for MySQL and MariaDB,
    names as written but ``information_schema``), less :data:`DATA_TABLES`."""
    # one pattern: a tenth of the time of lower-casing and testing each prefix
    return name.str.contains(_CATALOG_RE[family]) & ~name.is_in(DATA_TABLES[family])


_COLUMNS: Final[dict[str, pl.DataType]] = {
    TIME: pl.Datetime("us", "UTC"),
    ACCOUNT: pl.String(),
    CLIENT_IP: pl.String(),
    APPLICATION: pl.String(),
    DB_SYSTEM: pl.String(),
    DATABASE: pl.String(),
    OBJECTS: pl.List(pl.String),
    CLASS: pl.String(),
    COMMAND: pl.String(),
    QUERY: pl.String(),
    ROWS: pl.Int64(),
    BYTES: pl.Int64(),
    DURATION_MS: pl.Float64(),
    SUCCESS: pl.Boolean(),
    EXPORT: pl.Boolean(),
    SESSION: pl.String(),
    STATEMENT_ID: pl.String(),
    SOURCE_FORMAT: pl.String(),
}
EVENT_SCHEMA: Final = pl.Schema(_COLUMNS)


def conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Return ``frame`` with exactly the schema's columns, in order and cast to its types.

    Columns the frame lacks are added as nulls: a field a format does not carry is unknown.
    A NUL in an account name becomes U+FFFD, as bytes that are not UTF-8 do: no database
    lets a name hold one (PostgreSQL's and MySQL's protocols end names with it), so it is
    damage, and a name with a NUL is free for what no account may be called (the live
    engine's overflow account).
    """
    present = set(frame.collect_schema().names())

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        value = (pl.col(name) if name in present else pl.lit(None)).cast(dtype)
        if name == ACCOUNT:
            value = value.str.replace_all(NUL, "\ufffd", literal=True)
        return value.alias(name)

    return frame.select([column(name, dtype) for name, dtype in EVENT_SCHEMA.items()])


def empty() -> pl.DataFrame:
    """An events frame with no rows."""
    return pl.DataFrame(schema=EVENT_SCHEMA)
