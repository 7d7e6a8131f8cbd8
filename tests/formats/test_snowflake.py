"""Snowflake ``ACCOUNT_USAGE.QUERY_HISTORY`` and ``ACCESS_HISTORY`` exports.

The fixtures (tests/fixtures/snowflake, see its README) are small exports built from the
documented columns; their object arrays are the documentation's own examples. Bigger or
odder exports are built in the tests from the same columns, and say so.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats.snowflake import (
    ACCESS_HISTORY,
    QUERY_HISTORY,
    AccessHistory,
    QueryHistory,
    join_access,
)
from detector.formats.snowflake_export import utc_time
from detector.pipeline import read_events
from detector.reader import head_lines
from detector.rejects import Quarantine
from tests.conftest import FIXTURES, parse
from tests.formats.common import (
    NOT_LOGS,
    RANDOM_BYTES,
    assert_no_other_format_sniffs,
    foreign_logs,
    fuzz_settings,
    garbage_bytes,
    insertions,
    parse_chunks,
    read_bytes,
    read_clean,
    with_inserted,
)

SNOWFLAKE = FIXTURES / "snowflake"
QH_CSV = SNOWFLAKE / "query_history.csv"
QH_NDJSON = SNOWFLAKE / "query_history.ndjson"
AH_CSV = SNOWFLAKE / "access_history.csv"
AH_NDJSON = SNOWFLAKE / "access_history.ndjson"
FILES = {
    QH_CSV: QUERY_HISTORY,
    QH_NDJSON: QUERY_HISTORY,
    AH_CSV: ACCESS_HISTORY,
    AH_NDJSON: ACCESS_HISTORY,
}
DOCS_SAMPLE_ID = "a0fda135-d678-4184-942b-c3411ae8d1ce"


def qid(n: int) -> str:
    return f"01b2c3d4-0000-4a5b-0000-0000000000{n:02d}"


def fmt(name: str) -> QueryHistory | AccessHistory:
    return QueryHistory() if name == QUERY_HISTORY else AccessHistory()


def events(path: Path) -> pl.DataFrame:
    return read_clean(path, FILES[path])


def one(frame: pl.DataFrame, uid: str) -> dict[str, object]:
    got = frame.filter(pl.col(S.STATEMENT_ID) == uid)
    assert got.height == 1, got
    return got.row(0, named=True)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def export(tmp_path: Path, name: str, columns: list[str], rows: list[list[object]]) -> Path:
    """A CSV export as ``COPY INTO ... FIELD_OPTIONALLY_ENCLOSED_BY = '"' HEADER = TRUE``
    writes it: strings quoted (quotes doubled), numbers bare, nulls ``\\N``."""

    def field(v: object) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, int | float):
            return str(v)
        text = v if isinstance(v, str) else json.dumps(v)
        return '"' + text.replace('"', '""') + '"'

    path = tmp_path / name
    path.write_text("\n".join([",".join(columns), *(",".join(map(field, r)) for r in rows)]) + "\n")
    return path


# ---------------------------------------------------------------------------------------
# Detection


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: p.name)
def test_each_export_is_sniffed_by_its_own_format_only(path: Path) -> None:
    head = head_lines(path)
    assert fmt(FILES[path]).sniff(head)
    other = ACCESS_HISTORY if FILES[path] == QUERY_HISTORY else QUERY_HISTORY
    assert not fmt(other).sniff(head)
    assert_no_other_format_sniffs(path, FILES[path])


FOREIGN_LOGS = foreign_logs(SNOWFLAKE.name, NOT_LOGS | {".sql"})  # (not the SQL scripts)


@pytest.mark.parametrize("path", FOREIGN_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_snowflake_format_claims_another_log(path: Path) -> None:
    head = head_lines(path)
    assert not QueryHistory().sniff(head)
    assert not AccessHistory().sniff(head)


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: p.name)
def test_autodetected(path: Path) -> None:
    # Fails until detector/formats/__init__.py lists the two formats in NATIVE.
    assert formats.detect(path, head_lines(path)) == FILES[path]


# ---------------------------------------------------------------------------------------
# QUERY_HISTORY


def test_csv_and_ndjson_exports_give_the_same_events() -> None:
    assert events(QH_CSV).equals(events(QH_NDJSON))
    assert events(AH_CSV).equals(events(AH_NDJSON))


def test_a_select_is_a_read_with_its_account_rows_bytes_and_duration() -> None:
    select = one(events(QH_CSV), qid(2))
    assert select[S.ACCOUNT] == "JSMITH"
    assert select[S.DB_SYSTEM] == "snowflake" and select[S.SOURCE_FORMAT] == QUERY_HISTORY
    assert select[S.DATABASE] == "TEST_DB"
    assert select[S.CLASS] == "READ" and select[S.COMMAND] == "SELECT"
    assert select[S.QUERY] == "select * from T1;"
    assert select[S.ROWS] == 1  # ROWS_PRODUCED
    assert select[S.BYTES] == 64  # BYTES_WRITTEN_TO_RESULT
    assert select[S.DURATION_MS] == 812.0  # TOTAL_ELAPSED_TIME
    assert select[S.SUCCESS] is True and select[S.EXPORT] is False
    assert select[S.SESSION] == "2005284000001"
    # START_TIME 09:00:05.000 -0800 (TIMESTAMP_LTZ in the session's zone) is 17:00:05 UTC.
    assert select[S.TIME] == at("2024-03-05T17:00:05+00:00")
    # The view names no objects and no client: the table from the text, no address.
    assert select[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1"]
    assert select[S.CLIENT_IP] is None and select[S.APPLICATION] is None


def test_writes_count_the_rows_they_inserted_updated_and_deleted(tmp_path: Path) -> None:
    # A MERGE built from the documented columns: 10 inserted, 5 updated, 2 deleted.
    path = export(
        tmp_path,
        "qh.csv",
        ["QUERY_ID", "USER_NAME", "START_TIME", "QUERY_TYPE", "ROWS_PRODUCED", "ROWS_INSERTED",
         "ROWS_UPDATED", "ROWS_DELETED", "BYTES_WRITTEN_TO_RESULT"],
        [[qid(1), "ETL", "2024-03-05 10:00:00.000 +0000", "MERGE", 17, 10, 5, 2, 60]],
    )  # fmt: skip
    merge = one(read_clean(path, QUERY_HISTORY), qid(1))
    assert merge[S.CLASS] == "WRITE" and merge[S.ROWS] == 17
    insert = one(events(QH_CSV), qid(3))
    assert insert[S.CLASS] == "WRITE" and insert[S.ROWS] == 1 and insert[S.OBJECTS] == []
    ctas = one(events(QH_CSV), qid(5))
    assert ctas[S.CLASS] == "DDL" and ctas[S.ROWS] == 1  # CREATE TABLE AS SELECT: rows inserted


def test_an_unload_is_an_export_of_its_rows_unloaded(tmp_path: Path) -> None:
    unload = one(events(QH_CSV), qid(6))
    assert unload[S.COMMAND] == "UNLOAD" and unload[S.CLASS] == "READ"
    assert unload[S.EXPORT] is True
    assert unload[S.ROWS] == 1  # ROWS_UNLOADED
    # The files' size is not in the view (OUTBOUND_DATA_TRANSFER_BYTES = 0: same region).
    assert unload[S.BYTES] is None
    assert unload[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1"]
    # An unload to another region or cloud: the bytes transferred are its bytes.
    path = export(
        tmp_path,
        "qh.csv",
        ["QUERY_ID", "USER_NAME", "START_TIME", "QUERY_TYPE", "QUERY_TEXT", "ROWS_UNLOADED",
         "BYTES_WRITTEN_TO_RESULT", "OUTBOUND_DATA_TRANSFER_BYTES"],
        [[qid(1), "MALLORY", "2024-03-05 10:00:00.000 +0000", "UNLOAD",
          "copy into 's3://elsewhere/dump/' from customers", 2_500_000, 61, 734_003_200]],
    )  # fmt: skip
    far = one(read_clean(path, QUERY_HISTORY), qid(1))
    assert far[S.EXPORT] is True and far[S.ROWS] == 2_500_000 and far[S.BYTES] == 734_003_200


def test_a_failed_statement_is_an_error_naming_the_table_it_tried() -> None:
    failed = one(events(QH_CSV), qid(7))
    assert failed[S.CLASS] == "ERROR" and failed[S.SUCCESS] is False
    assert failed[S.COMMAND] == "SELECT"
    assert failed[S.QUERY] == "select *\nfrom T9\nwhere id = 1;"  # a quoted field over 3 lines
    assert failed[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T9"]


def test_query_types_give_classes_and_file_statements_no_rows() -> None:
    frame = events(QH_CSV)
    assert one(frame, qid(1))[S.CLASS] == "MISC"  # USE
    assert one(frame, qid(4))[S.CLASS] == "WRITE"  # COPY into a table
    grant = one(frame, qid(8))
    assert grant[S.CLASS] == "ROLE" and grant[S.ACCOUNT] == "SECURITYADMIN_USER"
    get = one(frame, qid(9))  # GET: staged files downloaded to the client
    assert get[S.CLASS] == "READ" and get[S.EXPORT] is True
    assert get[S.ROWS] is None and get[S.BYTES] is None  # its result rows are files


def test_names_in_the_text_are_spelt_as_snowflake_stores_them() -> None:
    select = one(events(QH_CSV), qid(10))
    assert select[S.OBJECTS] == ["test_db.PUBLIC.Customers", "TEST_DB.TEST_SCHEMA.ORDERS"]
    assert select[S.ROWS] == 40 and select[S.BYTES] == 1200


def test_any_column_subset_and_order_in_lower_case(tmp_path: Path) -> None:
    path = export(
        tmp_path,
        "qh.csv",
        ["start_time", "user_name", "query_id"],
        [["2024-03-05T10:00:00Z", "BOB", qid(1)]],
    )
    got = one(read_clean(path, QUERY_HISTORY), qid(1))
    assert got[S.ACCOUNT] == "BOB" and got[S.TIME] == at("2024-03-05T10:00:00+00:00")
    # Columns the export left out are unknown, never zero.
    assert got[S.ROWS] is None and got[S.BYTES] is None and got[S.DURATION_MS] is None
    assert got[S.SUCCESS] is True and got[S.CLASS] == "MISC"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2022-01-25 16:17:47.388 +0000", "2022-01-25T16:17:47.388"),  # the docs' own example
        ("2024-03-05 09:00:05.000 -0800", "2024-03-05T17:00:05"),
        ("2024-03-05 22:30:05.123456789 +0530", "2024-03-05T17:00:05.123456"),
        ("2024-03-05T17:00:05.5Z", "2024-03-05T17:00:05.5"),
        ("2024-03-05T09:00:05-08:00", "2024-03-05T17:00:05"),
        ("2024-03-05 17:00:05.000", "2024-03-05T17:00:05"),  # no offset: UTC
        ("2024-03-05 09:00:05 -08", "2024-03-05T17:00:05"),
    ],
)
def test_exported_times_are_converted_to_utc(text: str, utc: str) -> None:
    got = pl.select(utc_time(pl.lit(text))).item()
    assert got == datetime.fromisoformat(utc).replace(tzinfo=UTC)


def test_unusable_rows_are_quarantined_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "qh.csv"
    path.write_text(
        "QUERY_ID,USER_NAME,START_TIME,ROWS_PRODUCED\n"
        f'"{qid(1)}","BOB","2024-03-05 10:00:00.000 +0000",5\n'
        "not a record at all\n"  # line 3
        f'"{qid(2)}","BOB"\n'  # line 4: cut short
        f'"{qid(3)}","BOB","yesterday",5\n'  # line 5
        f'"{qid(4)}","BOB","2024-03-05 10:00:01.000 +0000",many\n'  # line 6
        f'"{qid(5)}","BOB","2024-03-05 10:00:02.000 +0000","unclosed\n'  # line 7
    )
    frame, quarantine = parse(path, QUERY_HISTORY)
    assert frame[S.STATEMENT_ID].to_list() == [qid(1)]
    assert frame[S.ROWS].to_list() == [5]
    assert dict(quarantine.counts) == {"unrecognised": 1, "truncated": 2, "bad_field": 2}


def test_ndjson_objects_lacking_the_required_columns_are_not_audit(tmp_path: Path) -> None:
    path = tmp_path / "qh.ndjson"
    good = {"QUERY_ID": qid(1), "USER_NAME": "BOB", "START_TIME": "2024-03-05 10:00:00.000 +0000"}
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({"QUERY_ID": qid(2), "START_TIME": "2024-03-05 10:00:00.000 +0000"}),
                json.dumps({**good, "QUERY_ID": "42"}),
                json.dumps({**good, "QUERY_TEXT": {"not": "text"}}),
                "{not json",
            ]
        )
        + "\n"
    )
    frame, quarantine = parse(path, QUERY_HISTORY)
    assert frame.height == 1
    assert dict(quarantine.counts) == {"not_audit": 1, "bad_field": 2, "invalid_json": 1}


# ---------------------------------------------------------------------------------------
# ACCESS_HISTORY


def test_access_rows_name_the_base_objects_read_and_the_objects_written() -> None:
    frame = events(AH_CSV)
    select = one(frame, qid(2))
    assert select[S.CLASS] == "READ" and select[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1"]
    assert select[S.ACCOUNT] == "JSMITH" and select[S.SOURCE_FORMAT] == ACCESS_HISTORY
    assert select[S.ROWS] is None and select[S.BYTES] is None and select[S.DURATION_MS] is None
    insert = one(frame, qid(3))  # insert into T6 select * from T1
    assert insert[S.CLASS] == "WRITE"
    assert insert[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1", "TEST_DB.TEST_SCHEMA.T6"]
    load = one(frame, qid(4))  # copy into T1 from @S1
    assert load[S.CLASS] == "WRITE" and load[S.EXPORT] is False
    assert load[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.S1", "TEST_DB.TEST_SCHEMA.T1"]
    unload = one(frame, qid(6))  # copy into @S2 from T1: only a stage is written
    assert unload[S.CLASS] == "READ" and unload[S.EXPORT] is True
    assert unload[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1", "TEST_DB.TEST_SCHEMA.S2"]


def test_the_documented_sample_row_reads_a_table_through_a_function() -> None:
    sample = one(events(AH_CSV), DOCS_SAMPLE_ID)  # pretty-printed JSON over 20 lines a field
    assert sample[S.TIME] == at("2022-01-25T16:17:47.388+00:00")
    assert sample[S.ACCOUNT] == "JSMITH"
    # GOVERNANCE.FUNCTIONS.RETURN_SUM is a function, not data.
    assert sample[S.OBJECTS] == ["GOVERNANCE.TABLES.T1"] and sample[S.CLASS] == "READ"


def test_a_ddl_only_row_names_the_object_it_changed(tmp_path: Path) -> None:
    # OBJECT_MODIFIED_BY_DDL with the documented fields of its object.
    ddl = {"objectDomain": "TAG", "objectName": "governance.tags.pii", "objectId": "1",
           "operationType": "CREATE", "properties": {}}  # fmt: skip
    path = export(
        tmp_path,
        "ah.csv",
        ["QUERY_ID", "QUERY_START_TIME", "USER_NAME", "DIRECT_OBJECTS_ACCESSED",
         "BASE_OBJECTS_ACCESSED", "OBJECTS_MODIFIED", "OBJECT_MODIFIED_BY_DDL"],
        [[qid(1), "2024-03-05 10:00:00.000 +0000", "GOV", [], [], [], ddl]],
    )  # fmt: skip
    got = one(read_clean(path, ACCESS_HISTORY), qid(1))
    assert got[S.CLASS] == "DDL" and got[S.COMMAND] == "CREATE"
    assert got[S.OBJECTS] == ["governance.tags.pii"]


def test_object_json_that_is_not_an_array_of_objects_is_a_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "ah.csv"
    path.write_text(
        "QUERY_ID,QUERY_START_TIME,USER_NAME,BASE_OBJECTS_ACCESSED\n"
        f'"{qid(1)}","2024-03-05 10:00:00.000 +0000","BOB","[]"\n'
        f'"{qid(2)}","2024-03-05 10:00:00.000 +0000","BOB","[{{""objectName"": 1}}"\n'
        f'"{qid(3)}","2024-03-05 10:00:00.000 +0000","BOB","{{""objectName"": ""X""}}"\n'
    )
    frame, quarantine = parse(path, ACCESS_HISTORY)
    assert frame[S.STATEMENT_ID].to_list() == [qid(1)]
    assert dict(quarantine.counts) == {"bad_field": 2}


# ---------------------------------------------------------------------------------------
# The two views together


def both() -> pl.DataFrame:
    return join_access(pl.concat([events(QH_CSV), events(AH_NDJSON)]))


def test_join_gives_each_statement_the_objects_of_its_access_row() -> None:
    joined = both()
    statements = joined.filter(pl.col(S.SOURCE_FORMAT) == QUERY_HISTORY)
    assert statements.height == 10
    insert = one(statements, qid(3))
    assert insert[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1", "TEST_DB.TEST_SCHEMA.T6"]
    assert insert[S.ROWS] == 1 and insert[S.DURATION_MS] == 1250.0  # volume kept
    load = one(statements, qid(4))
    assert load[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.S1", "TEST_DB.TEST_SCHEMA.T1"]
    unload = one(statements, qid(6))
    assert unload[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T1", "TEST_DB.TEST_SCHEMA.S2"]
    assert unload[S.EXPORT] is True and unload[S.ROWS] == 1
    # A failed statement has no access row: it keeps the table its text names.
    assert one(statements, qid(7))[S.OBJECTS] == ["TEST_DB.TEST_SCHEMA.T9"]


def test_join_drops_matched_access_rows_and_keeps_the_others() -> None:
    joined = both()
    left = joined.filter(pl.col(S.SOURCE_FORMAT) == ACCESS_HISTORY)
    assert left[S.STATEMENT_ID].to_list() == [DOCS_SAMPLE_ID]
    assert joined.height == 11
    # One statement, one event: no query id twice.
    assert joined[S.STATEMENT_ID].is_unique().all()


def test_join_leaves_events_of_one_view_alone() -> None:
    only = events(QH_CSV)
    assert join_access(only).equals(only)
    access = events(AH_CSV)
    assert join_access(access).equals(access)


def test_join_finds_access_rows_wherever_they_are_in_the_frame() -> None:
    frame = pl.concat([events(AH_CSV), events(QH_NDJSON)]).sample(
        fraction=1.0, shuffle=True, seed=7
    )
    joined = join_access(frame).sort(S.TIME, S.STATEMENT_ID)
    assert joined.equals(both().sort(S.TIME, S.STATEMENT_ID))


# ---------------------------------------------------------------------------------------
# Chunking


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: p.name)
@pytest.mark.parametrize("chunk_bytes", [200, 700])
def test_the_same_events_in_one_chunk_or_many(path: Path, chunk_bytes: int) -> None:
    few = parse_chunks(fmt(FILES[path]), path, join=False)
    many = parse_chunks(fmt(FILES[path]), path, chunk_bytes, join=False)
    assert many.chunks > few.chunks
    assert few.rejects.is_empty() and many.rejects.is_empty()
    sort = [S.TIME, S.STATEMENT_ID]
    expected = few.events.sort(sort)
    assert expected.height == (10 if FILES[path] == QUERY_HISTORY else 6)
    assert many.events.sort(sort).equals(expected)


# ---------------------------------------------------------------------------------------
# Hostile input: never an exception, every rejected line quarantined with a known reason.

# One tmp_path for export(), rewritten per example.
FUZZ = fuzz_settings(20, HealthCheck.function_scoped_fixture)
TORTURE = [
    b'"', b'""', b",", b",,,", b"\\N", b"\\", b"[", b"]", b"{", b"}", b'{"', b"\xff\xfe",
    b"\x00", b"\xc3", b"x" * 3000, b"\t", b"01b2c3d4", b"-0800",
]  # fmt: skip


def check(data: bytes, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and quarantined lines of ``data`` read as ``name``."""
    frame, _, rows = read_bytes(data, name)
    return frame, rows


GARBAGE = garbage_bytes(TORTURE).filter(
    lambda b: any(chr(c).isalnum() for c in b) and not b.startswith((b'"01b2', b"01b2"))
)


def _records(path: Path) -> list[bytes]:
    """The file's records (a CSV record may span lines), header first for CSV."""
    lines = path.read_bytes().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith((b'"01b2', b'"a0fd', b"{"))]
    bounds = [*starts, len(lines)]
    head = [b"\n".join(lines[: starts[0]])] if starts[0] else []
    return head + [b"\n".join(lines[a:b]) for a, b in pairwise(bounds)]


@FUZZ
@given(data=RANDOM_BYTES, name=st.sampled_from([QUERY_HISTORY, ACCESS_HISTORY]))
def test_random_bytes_never_crash(data: bytes, name: str) -> None:
    check(data, name)


@FUZZ
@given(path=st.sampled_from(sorted(FILES)), cut=st.floats(min_value=0, max_value=1))
def test_truncated_exports_never_crash(path: Path, cut: float) -> None:
    data = path.read_bytes()
    frame, _ = check(data[: int(len(data) * cut)], FILES[path])
    assert frame.height <= events(path).height


@FUZZ
@given(path=st.sampled_from(sorted(FILES)), inserts=insertions(GARBAGE, 1, 11, max_size=6))
def test_garbage_lines_are_all_quarantined_and_records_kept(
    path: Path, inserts: list[tuple[int, bytes]]
) -> None:
    records = with_inserted(_records(path), inserts)  # past the last record: at the end
    frame, rows = check(b"\n".join(records) + b"\n", FILES[path])
    assert rows.height == len(inserts)
    assert frame.equals(events(path))


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(['"', '""', ",", "\n", "\\N", "\\", "a", " ", "€", "[", "{", "'"]),
        min_size=1,
        max_size=30,
    ).map("".join)
)
def test_csv_quoting_torture_in_a_query_text(text: str, tmp_path: Path) -> None:
    path = export(
        tmp_path, "qh.csv", ["QUERY_ID", "QUERY_TEXT", "USER_NAME", "START_TIME"],
        [[qid(1), text, "BOB", "2024-03-05 10:00:00.000 +0000"]],
    )  # fmt: skip
    frame, rows = check(path.read_bytes(), QUERY_HISTORY)
    assert rows.height == 0
    assert frame[S.QUERY].to_list() == [None if text == "\\N" else text]


@FUZZ
@given(field=st.lists(st.sampled_from(TORTURE), min_size=1, max_size=8).map(b"".join))
def test_unquoted_junk_in_a_field_never_crashes(field: bytes) -> None:
    line = b'"' + qid(1).encode() + b'",' + field + b',"BOB","2024-03-05 10:00:00.000 +0000"'
    data = b"QUERY_ID,QUERY_TEXT,USER_NAME,START_TIME\n" + line + b"\n"
    frame, rows = check(data, QUERY_HISTORY)
    assert frame.height + rows.height >= 1


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: p.name)
def test_a_giant_line_is_quarantined_as_too_long(path: Path) -> None:
    if path.suffix == ".csv":
        giant = f'"{qid(99)}","'.encode() + b"x" * 1_100_000 + b'","BOB"'
    else:
        giant = b'{"QUERY_ID":"' + qid(99).encode() + b'","QUERY_TEXT":"' + b"x" * 1_100_000 + b'"}'
    records = _records(path)
    records.insert(2, giant)
    frame, rows = check(b"\n".join(records) + b"\n", FILES[path])
    assert rows["reason"].to_list() == ["too_long"]
    assert frame.equals(events(path))


@pytest.mark.parametrize("depth", [64, 2_000, 100_000])
@pytest.mark.parametrize("path", [QH_NDJSON, AH_NDJSON, AH_CSV], ids=lambda p: p.name)
def test_deeply_nested_json_is_quarantined(path: Path, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    if path.suffix == ".csv":
        bad = f'"{qid(99)}","2024-03-05 10:00:00.000 +0000","BOB","{nested}","{nested}","[]"'
    else:
        bad = json.dumps({"QUERY_ID": qid(99), "START_TIME": "2024-03-05 10:00:00.000 +0000",
                          "QUERY_START_TIME": "2024-03-05 10:00:00.000 +0000",
                          "USER_NAME": "BOB"})[:-1]  # fmt: skip
        column = "QUERY_TEXT" if FILES[path] == QUERY_HISTORY else "BASE_OBJECTS_ACCESSED"
        bad += f',"{column}":{nested}}}'
    records = _records(path)
    records.insert(2, bad.encode())
    started = time.monotonic()
    frame, rows = check(b"\n".join(records) + b"\n", FILES[path])
    assert time.monotonic() - started < 20
    assert rows.height == 1 and rows["reason"][0] in ("bad_field", "invalid_json")
    assert frame.equals(events(path))


def test_invalid_utf8_in_a_record_is_read_or_quarantined() -> None:
    records = _records(QH_CSV)
    records.insert(
        3, records[2].replace(b"select", b"sel\xff\xfect").replace(b"000000000002", b"000000000077")
    )
    frame, rows = check(b"\n".join(records) + b"\n", QUERY_HISTORY)
    assert rows.height == 0
    assert (
        one(frame, "01b2c3d4-0000-4a5b-0000-000000000077")[S.QUERY]
        == "sel\ufffd\ufffdct * from T1;"
    )


def test_exports_joined_with_cat_repeat_their_header_as_context(tmp_path: Path) -> None:
    # COPY INTO writes several files, each with its header.
    part = QH_CSV.read_bytes()
    path = tmp_path / "qh.csv"
    path.write_bytes(part + part.replace(b"-0000000000", b"-0000000001"))
    quarantine = Quarantine(None)
    frame, summary = read_events([path], format_name=QUERY_HISTORY, quarantine=quarantine)
    assert quarantine.total == 0 and summary.context == 1
    assert frame.height == 20
