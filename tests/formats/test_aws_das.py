"""AWS Database Activity Streams, decrypted: facts on the examples AWS documents for
Aurora PostgreSQL, Aurora MySQL, RDS for Oracle and RDS for SQL Server
(tests/fixtures/aws-das, sources in its README), and on workloads built in the tests
from those documented events (a field changed here and there, never a field invented)."""

from __future__ import annotations

import copy
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats.aws_das import NAME, AwsDas
from detector.pipeline import read_events
from detector.reader import head_lines, read_chunks
from detector.rejects import Quarantine, Reason
from tests.conftest import FIXTURES
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    assert_rejects_well_formed,
    foreign_logs,
    garbage_bytes,
    insertions,
    not_gzip,
    one,
    parse_chunks,
    with_inserted,
)

DAS = FIXTURES / "aws-das"
POSTGRES, MYSQL = DAS / "aurora-postgresql.jsonl", DAS / "aurora-mysql.jsonl"
ORACLE, SQLSERVER = DAS / "rds-oracle.jsonl", DAS / "rds-sqlserver.jsonl"
ALL = [POSTGRES, MYSQL, ORACLE, SQLSERVER]

_spec = importlib.util.spec_from_file_location("make_jsonl", DAS / "make_jsonl.py")
assert _spec is not None and _spec.loader is not None
make_jsonl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_jsonl)


def parse(path: Path, chunk_bytes: int | None = None) -> tuple[pl.DataFrame, Quarantine, int]:
    """Events, rejects and context of ``path`` read as ingest reads a file, in chunks of
    ``chunk_bytes`` if given (statements split between chunks are merged, then finished)."""
    got, quarantine = parse_chunks(AwsDas(), path, chunk_bytes), Quarantine(None)
    quarantine.add(str(path), got.rejects)
    return got.events, quarantine, got.context


def clean(path: Path) -> pl.DataFrame:
    events, quarantine, _ = parse(path)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events


def documented(name: str) -> dict[str, Any]:
    """A documented example (tests/fixtures/aws-das/vendor/<name>.json) as a dict."""
    example = make_jsonl.example(name)
    assert isinstance(example, dict)
    return example


def event_of(name: str, **changes: object) -> dict[str, Any]:
    """The (only) event of a documented example, with ``changes``."""
    record = documented(name)
    record = record.get("databaseActivityEvents", record)
    found = (
        record["databaseActivityEventList"][0] if "databaseActivityEventList" in record else record
    )
    return {**copy.deepcopy(found), **changes}


def payload(events: list[dict[str, Any]], like: str) -> str:
    """A decrypted payload line holding ``events``, with the ids of example ``like``."""
    record = documented(like)
    record = record.get("databaseActivityEvents", record)
    ids = {k: record[k] for k in ("type", "clusterId", "instanceId") if k in record}
    return json.dumps({**ids, "databaseActivityEventList": events})


def write(tmp_path: Path, lines: list[str], name: str = "das.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the fixtures are AWS's examples --------------------------------------------------


@pytest.mark.parametrize("target", sorted(make_jsonl.FILES))
def test_fixtures_are_the_documented_examples(target: str) -> None:
    lines = (DAS / target).read_text().splitlines()
    names = make_jsonl.FILES[target]
    assert [json.loads(line) for line in lines] == [make_jsonl.example(n) for n in names]


def test_two_documented_examples_are_not_json_as_printed() -> None:
    # Why make_jsonl.REPAIRS exists: the Oracle LOGON example misses a comma, the SQL
    # Server LOGIN FAILED example has stray quotes in additional_information.
    for name in make_jsonl.REPAIRS:
        with pytest.raises(json.JSONDecodeError):
            json.loads((DAS / "vendor" / f"{name}.json").read_text())


# -- sniffing ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_sniffs_every_documented_shape(path: Path) -> None:
    assert AwsDas().sniff(head_lines(path))


# Everything else, even the documentation and configuration files next to the logs.
@pytest.mark.parametrize("path", foreign_logs(DAS.name, skip=()), ids=str)
def test_does_not_claim_other_logs(path: Path) -> None:
    assert not AwsDas().sniff(head_lines(path))


def test_autodetected() -> None:
    # Fails until the lead registers AwsDas in detector.formats.
    assert formats.detect(POSTGRES, head_lines(POSTGRES)) == NAME


# -- Aurora PostgreSQL --------------------------------------------------------------------


def test_postgresql_select_is_one_read_of_ten_rows() -> None:
    events, _, context = parse(POSTGRES)
    assert events.height == 2 and context == 1  # the CONNECT record is context
    select = one(events, **{S.COMMAND: "SELECT"})
    assert select[S.ACCOUNT] == "rdsadmin" and select[S.CLIENT_IP] == "172.31.3.195"
    assert select[S.APPLICATION] == "psql" and select[S.DATABASE] == "postgres"
    assert select[S.DB_SYSTEM] == "postgresql" and select[S.SOURCE_FORMAT] == NAME
    assert select[S.OBJECTS] == ["public.my_table"] and select[S.CLASS] == "READ"
    assert select[S.ROWS] == 10 and select[S.BYTES] is None  # DAS never carries bytes
    assert select[S.DURATION_MS] == pytest.approx(20.104)  # logTime - startTime
    assert select[S.SUCCESS] and not select[S.EXPORT]
    assert select[S.SESSION] == "db-FZJTMYKCXQBUUZ6VLU7NW3ITCM/5ce73c6f.7e64"
    assert select[S.STATEMENT_ID] == "6.1"
    assert select[S.TIME].isoformat() == "2019-05-24T00:39:49.940668+00:00"
    create = one(events, **{S.COMMAND: "CREATE TABLE"})
    assert create[S.CLASS] == "DDL" and create[S.ROWS] is None


def pg(**changes: object) -> dict[str, Any]:
    return event_of("aurora-postgresql-select", **changes)


def test_postgresql_one_event_per_object_is_one_statement_counted_once(tmp_path: Path) -> None:
    # pgAudit logs a statement once per relation, each with the statement's row count.
    text = "select * from orders o join customers c on c.id = o.customer_id;"
    both = [
        pg(statementId=7, objectName=name, rowCount=500, commandText=text)
        for name in ("public.orders", "public.customers")
    ]
    events = clean(write(tmp_path, [payload(both, "aurora-postgresql-select")]))
    join = one(events, **{S.STATEMENT_ID: "7.1"})
    assert join[S.OBJECTS] == ["public.customers", "public.orders"]
    assert join[S.ROWS] == 500


def test_postgresql_failures_writes_and_exports(tmp_path: Path) -> None:
    connect = event_of("aurora-postgresql-connect")
    lines = [
        payload(
            [
                pg(statementId=8, objectName=None, objectType=None, rowCount=None,
                   commandText="select * from nope", exitCode="42P01",
                   errorMessage='relation "nope" does not exist'),
                pg(statementId=9, **{"class": "WRITE"}, command="INSERT", rowCount=0,
                   commandText="insert into my_table values (1, 'a');"),
                pg(statementId=10, command="COPY", objectName=None, objectType=None, rowCount=0,
                   commandText="COPY public.customers TO STDOUT"),
                pg(statementId=11, clientApplication="pg_dump", rowCount=0, command="COPY",
                   commandText="COPY public.my_table (id, name) TO stdout;"),
            ],
            "aurora-postgresql-select",
        ),
        payload(
            [{**connect, "errorMessage": 'password authentication failed for user "bob"',
              "exitCode": "28P01", "dbUserName": "bob"}],
            "aurora-postgresql-connect",
        ),
    ]  # fmt: skip
    events = clean(write(tmp_path, lines))
    failed = one(events, **{S.STATEMENT_ID: "8.1"})
    assert (failed[S.CLASS], failed[S.SUCCESS]) == ("ERROR", False)
    assert failed[S.OBJECTS] == ["public.nope"] and failed[S.ROWS] is None
    insert = one(events, **{S.STATEMENT_ID: "9.1"})
    assert insert[S.CLASS] == "WRITE" and insert[S.ROWS] is None  # DAS says 0 for INSERT
    copy_to = one(events, **{S.STATEMENT_ID: "10.1"})
    assert copy_to[S.EXPORT] and copy_to[S.ROWS] is None
    assert copy_to[S.OBJECTS] == ["public.customers"]
    dump = one(events, **{S.STATEMENT_ID: "11.1"})
    assert dump[S.EXPORT] and dump[S.ROWS] is None
    login = one(events, **{S.CLASS: "CONNECT"})
    assert login[S.ACCOUNT] == "bob" and login[S.SUCCESS] is False
    assert login[S.QUERY] == 'password authentication failed for user "bob"'


# -- Aurora MySQL -------------------------------------------------------------------------


def test_mysql_main_and_aux_events_are_one_statement() -> None:
    events, _, context = parse(MYSQL)
    assert events.height == 2 and context == 1  # the CONNECT record is context
    select = one(events, **{S.STATEMENT_ID: "65469218"})
    assert select[S.QUERY] == "SELECT * FROM test1 WHERE id < 28"
    assert (select[S.CLASS], select[S.COMMAND]) == ("READ", "SELECT")
    assert select[S.OBJECTS] == ["test.test1"] and select[S.DATABASE] == "test"
    assert select[S.ROWS] == 2 and select[S.BYTES] is None
    assert select[S.DURATION_MS] == pytest.approx(0.103)  # endTime - startTime
    assert select[S.ACCOUNT] == "master" and select[S.CLIENT_IP] == "localhost"
    assert select[S.DB_SYSTEM] == "mysql"
    assert select[S.TIME].isoformat() == "2020-05-22T18:29:57.986467+00:00"  # MAIN's time
    create = one(events, **{S.STATEMENT_ID: "65459278"})
    assert (create[S.CLASS], create[S.OBJECTS]) == ("DDL", ["test.test1"])
    assert create[S.ROWS] is None  # rowCount 0 on DDL is not a count


def mysql(name: str, **changes: object) -> dict[str, Any]:
    return event_of(name, **changes)


def test_mysql_failures_refused_logins_and_outfile(tmp_path: Path) -> None:
    main = "aurora-mysql-select-main"
    lines = [
        payload([mysql(main, statementId=1, commandText="SELECT * FROM nope", exitCode="1146", objectName="",
                       errorMessage="Table 'test.nope' doesn't exist", rowCount=0)], main),
        payload([mysql(main, statementId=2, rowCount=9000,
                       commandText="SELECT * FROM test1 INTO OUTFILE S3 's3://bucket/t1'")], main),
        payload([mysql("aurora-mysql-connect", command="FAILED_CONNECT", exitCode="1045",
                       dbUserName="mallory")], main),
    ]  # fmt: skip
    events = clean(write(tmp_path, lines))
    failed = one(events, **{S.STATEMENT_ID: "1"})
    assert (failed[S.CLASS], failed[S.SUCCESS], failed[S.ROWS]) == ("ERROR", False, None)
    assert failed[S.OBJECTS] == ["test.nope"]
    outfile = one(events, **{S.STATEMENT_ID: "2"})
    assert outfile[S.EXPORT] and outfile[S.ROWS] == 9000
    login = one(events, **{S.CLASS: "CONNECT"})
    assert login[S.ACCOUNT] == "mallory" and login[S.SUCCESS] is False


def test_mysql_aux_before_main_in_another_chunk_is_the_same_statement(tmp_path: Path) -> None:
    # "The messages might arrive in any order": AUX first, MAIN in the next chunk.
    lines = MYSQL.read_text().splitlines()
    path = write(tmp_path, [lines[4], *lines[:4]])
    first = next(read_chunks(path, chunk_bytes=len(lines[4]) + 1))
    assert AwsDas().parse(first).events[S.STATEMENT_ID].to_list() == ["aux:65469218"]
    whole = clean(path)
    for size in boundaries(path):
        split, quarantine, _ = parse(path, chunk_bytes=size)
        assert quarantine.total == 0 and same(split, whole), size
    select = one(whole, **{S.STATEMENT_ID: "65469218"})
    assert select[S.QUERY] == "SELECT * FROM test1 WHERE id < 28"
    assert select[S.OBJECTS] == ["test.test1"] and select[S.ROWS] == 2


def test_mysql_aux_without_main_keeps_its_object(tmp_path: Path) -> None:
    lines = MYSQL.read_text().splitlines()
    events = clean(write(tmp_path, [lines[4]]))
    alone = one(events, **{S.STATEMENT_ID: "65469218"})
    assert (alone[S.CLASS], alone[S.OBJECTS], alone[S.QUERY]) == ("READ", ["test.test1"], None)


# -- RDS for Oracle -----------------------------------------------------------------------


def test_oracle_objects_are_schema_qualified_and_rows_unknown() -> None:
    events, _, context = parse(ORACLE)
    assert events.height == 2 and context == 1  # the LOGON is context
    select = one(events, **{S.STATEMENT_ID: "44"})
    assert select[S.OBJECTS] == ["TEST.PERSONS"]  # objectType holds OBJECT_SCHEMA
    assert (select[S.CLASS], select[S.COMMAND]) == ("READ", "SELECT")
    assert select[S.ROWS] is None and select[S.BYTES] is None  # rowCount is always null
    assert select[S.ACCOUNT] == "TEST" and select[S.DB_SYSTEM] == "oracle"
    assert select[S.SESSION] == "1080639707"  # a bare event has no instanceId
    assert select[S.TIME].isoformat() == "2021-01-15T00:25:18.850375+00:00"  # UTC, no zone
    assert one(events, **{S.STATEMENT_ID: "43"})[S.CLASS] == "DDL"


def test_oracle_failures(tmp_path: Path) -> None:
    lines = [
        json.dumps(event_of("rds-oracle-connect", exitCode=1017)),
        json.dumps(event_of("rds-oracle-select", statementId=45, exitCode=942)),
    ]
    events = clean(write(tmp_path, lines))
    assert one(events, **{S.CLASS: "CONNECT"})[S.SUCCESS] is False
    assert one(events, **{S.STATEMENT_ID: "45"})[S.CLASS] == "ERROR"


# -- RDS for SQL Server -------------------------------------------------------------------


def test_sqlserver_login_failure_and_object_access() -> None:
    events, _, context = parse(SQLSERVER)
    assert events.height == 3 and context == 0
    login = one(events, **{S.CLASS: "CONNECT"})
    assert login[S.SUCCESS] is False and login[S.ACCOUNT] == "test"
    assert login[S.QUERY].startswith("Login failed for user 'test'.")
    select = one(events, **{S.COMMAND: "SELECT"})
    assert select[S.OBJECTS] == ["dbo.TestTable"] and select[S.CLASS] == "READ"
    assert select[S.SUCCESS]  # exitCode 1: the permission check passed
    # Audited at the permission check, before it ran: its rowCount 0 is not a count.
    assert select[S.ROWS] is None and select[S.DURATION_MS] is None
    create = one(events, **{S.COMMAND: "ALTER"})
    assert create[S.CLASS] == "DDL" and create[S.OBJECTS] == []  # "on" schema dbo
    assert create[S.DB_SYSTEM] == "mssql"


def test_sqlserver_denied_access_and_completed_batches(tmp_path: Path) -> None:
    select = "rds-sqlserver-select"
    native = documented(select)["databaseActivityEventList"][0]["engineNativeAuditFields"]
    batch_native = {**native, "response_rows": 5000, "duration_milliseconds": 12}
    lines = [
        payload([event_of(select, statementId="0x01", exitCode=0)], select),
        payload([event_of(select, statementId="0x02", command="BATCH COMPLETED",
                          **{"class": "BATCH"}, objectName="", objectType="",
                          engineNativeAuditFields=batch_native)], select),
    ]  # fmt: skip
    events = clean(write(tmp_path, lines))
    denied = one(events, **{S.STATEMENT_ID: "0x01"})
    assert (denied[S.CLASS], denied[S.SUCCESS]) == ("ERROR", False)
    batch = one(events, **{S.STATEMENT_ID: "0x02"})
    assert (batch[S.CLASS], batch[S.COMMAND]) == ("READ", "SELECT")
    assert (batch[S.ROWS], batch[S.DURATION_MS]) == (5000, 12.0)


# -- lines that are not events ------------------------------------------------------------


def test_heartbeats_empty_lists_and_unusable_lines(tmp_path: Path) -> None:
    select = "aurora-postgresql-select"
    good = payload([pg()], select)
    lines = [
        payload([{"type": "heartbeat"}], select),  # only "type" is documented for it
        payload([], select),
        json.dumps({**documented(select), "databaseActivityEvents": "AYADeBd...encrypted"}),
        json.dumps({"timestamp": "2026-11-28 06:55:02.403 UTC", "user": "bob"}),
        payload([pg(), pg(statementId=99, logTime="yesterday")], select),
        '{"type":"DatabaseActivityMonitoringRecord","databaseActivityEventList":[',
        good,
    ]
    events, quarantine, context = parse(write(tmp_path, lines))
    assert events.height == 1  # the good line's; the line with a bad time is dropped whole
    assert context == 2
    assert quarantine.counts == {
        Reason.NOT_AUDIT.value: 2,
        Reason.BAD_FIELD.value: 1,
        Reason.INVALID_JSON.value: 1,
    }


# -- whole files --------------------------------------------------------------------------


def boundaries(path: Path) -> list[int]:
    """Chunk sizes that cut ``path`` after each of its lines."""
    ends, at = [], 0
    for line in path.read_bytes().splitlines(keepends=True)[:-1]:
        at += len(line)
        ends.append(at)
    return ends


def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    key = [S.TIME, S.SESSION, S.STATEMENT_ID]
    return a.sort(key, nulls_last=True).equals(b.sort(key, nulls_last=True))


def workload(tmp_path: Path) -> Path:
    """Every fixture, with a MySQL AUX event before its MAIN and a PostgreSQL statement's
    two per-object events on two lines (as two Kinesis records would be)."""
    lines = [line for p in ALL for line in p.read_text().splitlines()]
    mysql_lines = MYSQL.read_text().splitlines()
    text = "select * from orders o join customers c on c.id = o.customer_id;"
    halves = [
        payload([pg(statementId=7, objectName=name, rowCount=500, commandText=text)],
                "aurora-postgresql-select")
        for name in ("public.orders", "public.customers")
    ]  # fmt: skip
    return write(tmp_path, [mysql_lines[4], *lines, halves[0], *lines[:3], halves[1]], "all.jsonl")


def test_same_events_whether_read_whole_or_in_chunks(tmp_path: Path) -> None:
    path = workload(tmp_path)
    whole = clean(path)
    join = one(whole, **{S.STATEMENT_ID: "7.1"})
    assert (join[S.OBJECTS], join[S.ROWS]) == (["public.customers", "public.orders"], 500)
    for size in boundaries(path):
        split, quarantine, _ = parse(path, chunk_bytes=size)
        assert quarantine.total == 0 and same(split, whole), size


def test_read_events_end_to_end(tmp_path: Path) -> None:
    path = workload(tmp_path)
    quarantine = Quarantine(None)
    events, summary = read_events([path], format_name=NAME, quarantine=quarantine)
    assert quarantine.total == 0 and summary.context == 4
    assert events.schema == S.EVENT_SCHEMA
    # 9 documented and the join; records delivered twice (Kinesis is at-least-once) fold.
    assert dict(summary.events) == {NAME: 10}
    assert set(events[S.DB_SYSTEM]) == {"postgresql", "mysql", "oracle", "mssql"}
    assert events[S.TIME].is_sorted()


# -- fuzzing: damage built from the documented records ----------------------------------

REAL = [line.encode() for p in ALL for line in p.read_text().splitlines()]
TORTURE = [
    b"{", b"}", b"[", b"]", b'"', b"\\", b'\\"', b":", b",", b"null", b"\xff\xfe", b"\x00",
    b"\xc3", b"x" * 5000, b'"databaseActivityEventList"', b'"logTime":"', b'"type":"heartbeat"',
    b'"databaseActivityEvents":"', b"\\ud800", b"1e999",
]  # fmt: skip


def fuzz(data: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and rejects of ``data`` read as a file; every reject checked."""
    with tempfile.TemporaryDirectory(prefix="trovewatch-aws-das-fuzz-") as tmp:
        path = Path(tmp) / "input.jsonl"
        path.write_bytes(data)
        got = parse_chunks(AwsDas(), path)
    assert got.events.schema == S.EVENT_SCHEMA
    assert_rejects_well_formed(got.rejects, data, line="line_no")
    return got.events, got.rejects


GARBAGE = garbage_bytes(TORTURE).filter(lambda b: b.decode("utf-8", "replace").strip() != "")


@FUZZ
@given(data=RANDOM_BYTES)
def test_random_bytes_never_crash(data: bytes) -> None:
    fuzz(data)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(b"\n".join(REAL))))
def test_truncated_files_never_crash(cut: int) -> None:
    events, _ = fuzz(b"\n".join(REAL)[:cut])
    assert events.height <= 9


@FUZZ
@given(inserts=insertions(GARBAGE, 0, len(REAL)))
def test_garbage_lines_are_all_quarantined_and_real_records_kept(
    inserts: list[tuple[int, bytes]],
) -> None:
    data = b"\n".join(with_inserted(REAL, inserts)) + b"\n"
    assume(not_gzip(data))  # garbage may come first
    events, rejected = fuzz(data)
    assert rejected.height == len(inserts)
    whole, _ = fuzz(b"\n".join(REAL) + b"\n")
    assert same(events, whole)


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(["a", '\\"', "\\\\", "\\n", "\\u00e9", "\\ud83d\\ude00", "'", ",", " "]),
        max_size=30,
    ).map("".join)
)
def test_statement_text_escapes(text: str) -> None:
    line = REAL[2].decode().replace("select * from my_table;", "select " + text)
    events, rejected = fuzz(line.encode() + b"\n")
    assert rejected.height == 0
    assert events[S.QUERY].to_list() == [json.loads(f'"select {text}"')]


def test_giant_deep_and_wrongly_typed_lines_are_quarantined() -> None:
    giant = REAL[2].replace(b"select * from my_table;", b"x" * 1_100_000)
    deep = b'{"databaseActivityEventList":[' + b'{"a":[' * 5000 + b"]}" * 5000 + b"]}"
    typed = (
        b'{"type":"DatabaseActivityMonitoringRecord","databaseActivityEventList":[{"logTime":{}}]}'
    )
    events, rejected = fuzz(b"\n".join([giant, deep, typed, *REAL]) + b"\n")
    assert dict(zip(rejected["line_no"], rejected["reason"], strict=True)) == {
        1: Reason.TOO_LONG.value,
        2: Reason.INVALID_JSON.value,  # nested deeper than a JSON parser goes
        3: Reason.BAD_FIELD.value,
    }
    assert events.height == 9


def test_invalid_utf8_in_a_value_keeps_the_event() -> None:
    line = REAL[2].replace(b"select * from my_table;", b"select '\xc3\x28' from my_table;")
    events, rejected = fuzz(line + b"\n")
    assert rejected.height == 0 and events[S.QUERY][0] == "select '\ufffd(' from my_table;"
