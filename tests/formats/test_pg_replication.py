"""Replication commands to events (``detector.formats.pg_replication``), on the messages
a real PostgreSQL 15.18 writes with ``log_replication_commands = on``."""

from __future__ import annotations

import polars as pl
import pytest

from detector import schema as S
from detector.formats.pgaudit import RECORD_COLUMNS, to_events

# (application, database, message), as the server wrote them: pg_basebackup -X stream
# (two connections), pg_receivewal, pg_recvlogical with test_decoding and with pgoutput,
# and a subscription's worker.
BASEBACKUP = [
    "received replication command: SHOW data_directory_mode",
    "received replication command: IDENTIFY_SYSTEM",
    "received replication command: BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,"
    "  CHECKPOINT 'fast',  WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
]
BASEBACKUP_WAL = [
    'received replication command: CREATE_REPLICATION_SLOT "pg_basebackup_24475" TEMPORARY'
    " PHYSICAL ( RESERVE_WAL)",
    'received replication command: START_REPLICATION SLOT "pg_basebackup_24475" 0/2000000'
    " TIMELINE 1",
]


def _events(app: str, database: str, messages: list[str]) -> pl.DataFrame:
    n = len(messages) + 1
    records = pl.DataFrame(
        {
            "line_no": range(1, n + 1),
            "ts": [f"2026-11-30 11:24:{i:02d}.000 UTC" for i in range(n)],
            "user": ["rep_user"] * n,
            "dbname": [database] * n,
            "pid": [24470] * n,
            "remote_host": ["10.0.0.5"] * n,
            "application_name": [None] + [app] * (n - 1),
            "session_id": ["6b0d5ce0.5f96"] * n,
            "backend_type": ["walsender"] * n,
            "leader_pid": [None] * n,
            "severity": ["LOG"] * n,
            "message": [
                f"replication connection authorized: user=rep_user application_name={app}",
                *messages,
            ],
            "statement": [None] * n,
        },
        schema=RECORD_COLUMNS,
    )
    parsed = to_events(records, "pgaudit-jsonlog")
    assert parsed.context == 1  # the connection line
    return parsed.events


def _exports(events: pl.DataFrame) -> list[tuple[object, ...]]:
    return events.filter(S.EXPORT).select(S.COMMAND, S.OBJECTS, S.CLASS, S.ROWS).rows()


def test_a_base_backup_is_one_export_of_the_cluster_its_wal_stream_none() -> None:
    events = _events("pg_basebackup", "", BASEBACKUP + BASEBACKUP_WAL)
    assert _exports(events) == [("BASE_BACKUP", ["(cluster)"], "READ", None)]
    assert events[S.CLASS].to_list() == ["MISC", "MISC", "READ", "MISC", "MISC"]
    assert set(events[S.ACCOUNT]) == {"rep_user"} and set(events[S.CLIENT_IP]) == {"10.0.0.5"}
    assert events[S.DATABASE].null_count() == events.height  # to no database


def test_a_wal_stream_of_another_tool_is_an_export_of_the_cluster_wal() -> None:
    events = _events(
        "pg_receivewal",
        "",
        ["received replication command: START_REPLICATION 0/1000000 TIMELINE 1"],
    )
    assert _exports(events) == [("START_REPLICATION", ["(cluster WAL)"], "READ", None)]


@pytest.mark.parametrize(
    ("command", "objects"),
    [
        ('START_REPLICATION SLOT "exfil" LOGICAL 0/0', ["(database shop)"]),
        (
            'START_REPLICATION SLOT "po" LOGICAL 0/0 ("proto_version" \'1\','
            " \"publication_names\" 'pub_all')",
            ["(publication pub_all)"],
        ),
        (
            "START_REPLICATION SLOT \"sub1\" LOGICAL 0/0 (proto_version '3',"
            ' publication_names \'"pub_all","Pub B"\')',
            ["(publication pub_all)", "(publication Pub B)"],
        ),
    ],
)
def test_a_logical_stream_is_an_export_of_its_publications_or_else_its_database(
    command: str, objects: list[str]
) -> None:
    events = _events(
        "pg_recvlogical",
        "shop",
        [
            'received replication command: CREATE_REPLICATION_SLOT "exfil" LOGICAL "test_decoding"'
            " ( SNAPSHOT 'nothing')",
            f"received replication command: {command}",
        ],
    )
    assert _exports(events) == [("START_REPLICATION", objects, "READ", None)]
    assert events.filter(~pl.col(S.EXPORT))[S.COMMAND].to_list() == ["CREATE_REPLICATION_SLOT"]
