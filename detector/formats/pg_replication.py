"""Replication-protocol commands, as PostgreSQL logs them with ``log_replication_commands``.

pgAudit audits SQL the executor runs; a replication connection's own commands never reach
it. A ``pg_basebackup`` (``BASE_BACKUP``: a copy of every table of every database) or a
logical stream (``pg_recvlogical``, a ``CREATE SUBSCRIPTION`` elsewhere pulling a
publication: ``START_REPLICATION SLOT s LOGICAL``) leaves no AUDIT line. With
``log_replication_commands = on`` the server writes, in its walsender process::

    LOG:  replication connection authorized: user=rep_user application_name=pg_basebackup
    LOG:  received replication command: BASE_BACKUP ( LABEL 'pg_basebackup base backup', ...)
    LOG:  received replication command: START_REPLICATION SLOT "exfil" LOGICAL 0/0
    LOG:  received replication command: START_REPLICATION SLOT "sub1" LOGICAL 0/0
          (proto_version '3', publication_names '"pub_all"')     <- one line in the log

Each command is one event of its session's account, application and client (no row
count: the protocol logs none). What it copied is named by an object of its own, in
parentheses as no table's name is written:

* ``BASE_BACKUP``: ``(cluster)``, every table of every database (an export);
* ``START_REPLICATION ... LOGICAL`` with ``publication_names``: ``(publication <name>)``
  for each; without (``pg_recvlogical``'s ``test_decoding``): ``(database <name>)``, every
  change to its tables (an export);
* ``START_REPLICATION`` of WAL (physical): ``(cluster WAL)``, every change to every
  database (an export), except ``pg_basebackup``'s own stream of the WAL its backup needs
  (``-X stream``: part of the ``BASE_BACKUP`` already counted);
* anything else (``IDENTIFY_SYSTEM``, ``CREATE_REPLICATION_SLOT``, ``SHOW``, ...): a MISC
  statement, no export.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S

RECEIVED: Final = "received replication command: "
# The session's connection line of a walsender: no ``database=`` (a logical one's is in
# the prefix's %d or the record's dbname).
AUTHORIZED: Final = "replication connection authorized: "
CLUSTER: Final = "(cluster)"
CLUSTER_WAL: Final = "(cluster WAL)"
BACKUP_TOOL: Final = "pg_basebackup"

_LOGICAL: Final = r"(?i)^START_REPLICATION\s+SLOT\s+\S+\s+LOGICAL\b"
# pgoutput's option, as a subscription's worker writes it (``publication_names
# '"pub_a","pub_b"'``: names quoted as identifiers) or pg_recvlogical -o does
# (``"publication_names" 'pub_a'``).
_PUBLICATIONS: Final = r"(?i)\bpublication_names\"?\s+'((?:[^']|'')*)'"


def database_object(name: pl.Expr) -> pl.Expr:
    """``(database <name>)``: every change to a database's tables, as a logical stream
    without publications (or a slot's changes read through SQL) copies them."""
    return pl.format("(database {})", name.fill_null("?"))


def is_command(message: pl.Expr) -> pl.Expr:
    """True for a ``received replication command:`` message."""
    return message.str.starts_with(RECEIVED)


def events(records: pl.DataFrame) -> pl.DataFrame:
    """One event per replication command of ``records`` (records frame, with ``time``,
    their sessions' attributes filled): :data:`schema.EVENT_SCHEMA` columns but
    ``db.system.name`` and ``source_format``, plus ``line_no``."""
    text = pl.col("message").str.strip_prefix(RECEIVED).str.strip_chars()
    command = text.str.extract(r"^([A-Za-z_]+)", 1).str.to_uppercase()
    app = pl.col("application_name")
    start = command == "START_REPLICATION"
    logical = start & text.str.contains(_LOGICAL)
    physical = start & ~logical & app.ne_missing(BACKUP_TOOL)
    backup = command == "BASE_BACKUP"
    # '"pub_a","Pub b"' -> ["pub_a", "Pub b"]
    names = (
        text.str.extract(_PUBLICATIONS, 1)
        .str.replace_all("''", "'", literal=True)
        .str.split(",")
        .list.eval(
            pl.element()
            .str.strip_chars()
            .str.strip_prefix('"')
            .str.strip_suffix('"')
            .str.replace_all('""', '"', literal=True)
        )
    )
    published = names.list.eval(pl.format("(publication {})", pl.element()))
    database = database_object(pl.col("dbname"))
    no_objects = pl.lit([], dtype=pl.List(pl.String))
    objects = (
        pl.when(backup)
        .then(pl.concat_list(pl.lit(CLUSTER)))
        .when(physical)
        .then(pl.concat_list(pl.lit(CLUSTER_WAL)))
        .when(logical & (names.list.len() > 0))
        .then(published)
        .when(logical)
        .then(pl.concat_list(database))
        .otherwise(no_objects)
    )
    export = backup | physical | logical
    return records.select(
        pl.col(S.TIME),
        pl.col("line_no"),
        pl.col("user").alias(S.ACCOUNT),
        pl.col("remote_host").alias(S.CLIENT_IP),
        app.alias(S.APPLICATION),
        # a physical connection is to no database: the log writes "" (or [unknown])
        pl.col("dbname").replace("", None).alias(S.DATABASE),
        objects.alias(S.OBJECTS),
        # data read out of the server, by the session's account
        pl.when(export).then(pl.lit("READ")).otherwise(pl.lit("MISC")).alias(S.CLASS),
        command.fill_null("REPLICATION").alias(S.COMMAND),
        text.alias(S.QUERY),
        pl.lit(None, pl.Int64).alias(S.ROWS),  # the protocol logs no row count
        pl.lit(True).alias(S.SUCCESS),
        export.alias(S.EXPORT),
        pl.col("session_id").alias(S.SESSION),
    )
