"""MongoDB audit log facts, checked on records quoted from MongoDB's, Percona's and
others' published examples (tests/fixtures/mongodb-audit, sources in its README), and on
workloads built here from those documented record shapes; then fuzzed.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats.mongodb_audit import NAME, QUERY_CHARS, MongodbAudit
from detector.pipeline import read_events
from detector.reader import head_lines
from detector.rejects import Quarantine, Reason
from tests.conftest import FIXTURES, parse
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    assert_no_other_format_sniffs,
    foreign_logs,
    garbage_text,
    insertions,
    json_lines,
    one,
    parse_chunks,
    read_bytes,
    with_inserted,
)

HERE = FIXTURES / "mongodb-audit"
MANUAL = HERE / "manual-setauditconfig.log"
PERCONA = HERE / "percona-authcheck-insert.log"
GUARDIUM = HERE / "guardium-authcheck-find.log"
ATLAS_50 = HERE / "otel-atlas-5.0.log"
ATLAS_42 = HERE / "otel-atlas-4.2.log"
FEDERATION = HERE / "atlas-data-federation-authenticate.log"
OURS = sorted(HERE.glob("*.log"))


def events_of(*lines: str | dict[str, Any]) -> pl.DataFrame:
    frame, quarantine = read_lines(*lines)
    assert quarantine.total == 0, dict(quarantine.counts)
    return frame


def read_lines(*lines: str | dict[str, Any]) -> tuple[pl.DataFrame, Quarantine]:
    events, quarantine, _ = read_bytes(json_lines(*lines), NAME)
    return events, quarantine


# Records built from the documented shapes ("mongo Schema Audit Messages" in the MongoDB
# manual: atype, ts, uuid, local, remote, users, roles, param, result), with values of
# our own where a test needs them.
def record(
    atype: str,
    param: dict[str, Any],
    *,
    result: int = 0,
    user: str | None = "alice",
    uuid: str = "ngwRt5CRTZqgE4TsfleoqQ==",
    ip: str = "10.0.0.7",
    ts: Any = "2024-05-06T10:00:00.000+00:00",
) -> dict[str, Any]:
    return {
        "atype": atype,
        "ts": {"$date": ts},
        "uuid": {"$binary": uuid, "$type": "04"},
        "local": {"ip": "10.0.0.1", "port": 27017},
        "remote": {"ip": ip, "port": 51930},
        "users": [] if user is None else [{"user": user, "db": "admin"}],
        "roles": [] if user is None else [{"role": "readWrite", "db": "shop"}],
        "param": param,
        "result": result,
    }


def find(ns: str = "shop.customers", **kw: Any) -> dict[str, Any]:
    db, coll = ns.split(".", 1)
    return record(
        "authCheck", {"command": "find", "ns": ns, "args": {"find": coll, "$db": db}}, **kw
    )


def client_metadata(
    app: str, uuid: str, ts: str = "2024-05-06T09:59:59.000+00:00"
) -> dict[str, Any]:
    """The documented clientMetadata shape (param.localEndpoint, param.clientMetadata
    with driver, os, platform, application.name), as in the real Atlas 5.0 record."""
    meta = {
        "localEndpoint": {"ip": "10.0.0.1", "port": 27017},
        "clientMetadata": {
            "driver": {"name": "mongo-go-driver", "version": "v1.7.2+prerelease"},
            "os": {"type": "linux", "architecture": "amd64"},
            "platform": "go1.18.2",
            "application": {"name": app},
        },
    }
    return record("clientMetadata", meta, user=None, uuid=uuid, ts=ts)


# -- detection ---------------------------------------------------------------------------


def test_autodetected() -> None:
    for path in OURS:
        assert formats.detect(path, head_lines(path)) == NAME, path


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_sniff_claims_every_fixture(path: Path) -> None:
    assert MongodbAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", foreign_logs(HERE.name), ids=str)
def test_sniff_claims_no_other_log(path: Path) -> None:
    assert not MongodbAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_no_other_format_claims_a_mongodb_audit_log(path: Path) -> None:
    assert_no_other_format_sniffs(path, NAME)


def test_sniff_refuses_ocsf_and_the_server_log() -> None:
    # MongoDB's own diagnostic log (JSON since 4.4) and the OCSF audit schema are JSON
    # lines too, without "atype" first.
    server_log = (
        '{"t":{"$date":"2022-09-11T18:53:37.727+00:00"},"s":"I",  "c":"SHARDING", "id":20997,'
        '   "ctx":"conn9957","msg":"Refreshed RWC defaults","attr":{"newDefaults":{}}}'
    )
    ocsf = (
        '{ "activity_id" : 1, "category_uid" : 3, "class_uid" : 3002, "time" : 1710715316123,'
        ' "severity_id" : 1, "type_uid" : 300201 }'
    )
    assert not MongodbAudit().sniff([server_log, server_log])
    assert not MongodbAudit().sniff([ocsf])


# -- facts on the vendors' records ---------------------------------------------------------


def test_percona_insert_is_a_write_of_its_collection_with_no_volume() -> None:
    frame, quarantine = parse(PERCONA, NAME)
    assert quarantine.total == 0
    ev = one(frame)
    assert ev[S.ACCOUNT] == "admin@admin"
    assert ev[S.CLIENT_IP] == "127.0.0.1"
    assert ev[S.DATABASE] == "audit_authz_insert"
    assert ev[S.OBJECTS] == ["audit_authz_insert.foo"]
    assert (ev[S.CLASS], ev[S.COMMAND]) == ("WRITE", "insert")
    assert ev[S.SUCCESS] is True and ev[S.EXPORT] is False
    # The log carries no volume and no duration: unknown, never 0.
    assert ev[S.ROWS] is None and ev[S.BYTES] is None and ev[S.DURATION_MS] is None
    # "-04:00" is applied: 06:28 local is 10:28 UTC.
    assert ev[S.TIME] == datetime(2024, 3, 13, 10, 28, 4, 631000, tzinfo=UTC)
    assert json.loads(ev[S.QUERY])["insert"] == "foo"
    assert (ev[S.DB_SYSTEM], ev[S.SOURCE_FORMAT]) == ("mongodb", NAME)
    assert ev[S.SESSION] == "127.0.0.1:52128"  # no uuid before 5.0: the client's address
    assert ev[S.STATEMENT_ID] is None


def test_manual_examples_ddl_and_find() -> None:
    frame, quarantine = parse(MANUAL, NAME)
    assert quarantine.total == 0
    assert frame[S.COMMAND].to_list() == ["dropCollection", "createCollection", "find"]
    assert frame[S.CLASS].to_list() == ["DDL", "DDL", "READ"]
    assert frame[S.OBJECTS].to_list() == [["sales.inventory"]] * 3
    assert frame[S.DATABASE].to_list() == ["sales"] * 3
    # Authentication was off on that server: no user, so no account.
    assert frame[S.ACCOUNT].to_list() == [None] * 3
    assert frame[S.SESSION].to_list() == [
        "0gle4/pSQli+LUcz43ykag==", "RKU/YLizS6K9se2GUU7ZVQ==", "ngwRt5CRTZqgE4TsfleoqQ==",
    ]  # fmt: skip
    found = frame.row(2, named=True)
    assert found[S.TIME] == datetime(2021, 8, 9, 15, 28, 10, 788000, tzinfo=UTC)
    assert json.loads(found[S.QUERY])["filter"] == {"widget": 1}
    assert frame.row(1, named=True)[S.QUERY] == "createCollection sales.inventory"


def test_guardium_find_by_a_named_user_with_an_old_style_offset() -> None:
    ev = one(parse(GUARDIUM, NAME)[0])
    assert (ev[S.ACCOUNT], ev[S.CLIENT_IP]) == ("realAdmin@admin", "9.148.202.94")
    assert (ev[S.CLASS], ev[S.OBJECTS]) == ("READ", ["admin.USERS"])
    assert ev[S.TIME] == datetime(2020, 6, 11, 13, 44, 11, 70000, tzinfo=UTC)  # "-0400"


@pytest.mark.parametrize(("path", "context"), [(ATLAS_50, 3), (ATLAS_42, 3), (FEDERATION, 1)])
def test_logins_logouts_and_client_metadata_are_context(path: Path, context: int) -> None:
    quarantine = Quarantine(None)
    events, summary = read_events([path], format_name=NAME, quarantine=quarantine)
    assert events.height == 0 and quarantine.total == 0
    assert summary.context == context


# -- facts on workloads built from the documented shapes ------------------------------------


def test_refused_login_names_the_account_tried() -> None:
    # users is empty when authentication fails; param names who tried (documented result 18).
    ev = one(events_of(record("authenticate", {"user": "eve", "db": "test", "mechanism": "SCRAM-SHA-256"},
                               result=18, user=None)))  # fmt: skip
    assert (ev[S.CLASS], ev[S.SUCCESS], ev[S.ACCOUNT]) == ("CONNECT", False, "eve@test")
    assert ev[S.COMMAND] == "authenticate"
    assert ev[S.QUERY] == "authenticate eve@test (SCRAM-SHA-256)"


def test_unauthorized_command_is_an_error_on_its_collection() -> None:
    ev = one(events_of(find("hr.salaries", result=13)))
    assert (ev[S.CLASS], ev[S.SUCCESS], ev[S.OBJECTS]) == ("ERROR", False, ["hr.salaries"])
    # Even a command whose success is context counts when it is refused.
    refused = record("authCheck", {"command": "endSessions", "ns": "admin"}, result=13)
    assert one(events_of(refused))[S.CLASS] == "ERROR"
    assert events_of(record("authCheck", {"command": "endSessions", "ns": "admin"})).height == 0


@pytest.mark.parametrize(
    ("command", "klass"),
    [("aggregate", "READ"), ("getMore", "READ"), ("count", "READ"), ("distinct", "READ"),
     ("update", "WRITE"), ("delete", "WRITE"), ("findAndModify", "WRITE"), ("findandmodify", "WRITE"),
     ("createIndexes", "DDL"), ("drop", "DDL"), ("createUser", "ROLE"), ("grantRolesToUser", "ROLE"),
     ("listCollections", "MISC")],
)  # fmt: skip
def test_commands_are_classed(command: str, klass: str) -> None:
    ev = one(events_of(record("authCheck", {"command": command, "ns": "shop.customers"})))
    assert (ev[S.CLASS], ev[S.COMMAND]) == (klass, command)


def test_server_records_of_ddl_and_user_changes() -> None:
    frame = events_of(
        record("createIndex", {"ns": "shop.orders", "indexName": "a_1", "indexSpec": {"a": 1},
                               "indexBuildState": "IndexBuildStarted"}),
        record("createIndex", {"ns": "shop.orders", "indexName": "a_1", "indexSpec": {"a": 1},
                               "indexBuildState": "IndexBuildSucceeded"}),
        record("createIndex", {"ns": "shop.orders", "indexName": "b_1", "indexSpec": {"b": 1},
                               "indexBuildState": "IndexBuildAborted"}, result=276),
        record("renameCollection", {"old": "shop.orders", "new": "shop.orders_2024"}),
        record("createUser", {"user": "bob", "db": "shop", "roles": [{"role": "read", "db": "shop"}]}),
        record("dropDatabase", {"ns": "scratch"}),
    )  # fmt: skip
    assert frame[S.CLASS].to_list() == ["DDL", "ERROR", "DDL", "ROLE", "DDL"]
    assert frame[S.OBJECTS].to_list() == [
        ["shop.orders"], ["shop.orders"], ["shop.orders", "shop.orders_2024"], [], [],
    ]  # fmt: skip
    assert frame[S.QUERY].to_list()[3] == "createUser bob@shop"
    assert frame[S.DATABASE].to_list() == ["shop", "shop", "shop", "shop", "scratch"]


def test_internal_records_are_context() -> None:
    internal = record("createCollection", {"ns": "config.system.sessions"}, user=None)
    internal["remote"] = {"isSystemUser": True}
    internal["local"] = {"isSystemUser": True}
    frame, quarantine = read_lines(internal)
    assert frame.height == 0 and quarantine.total == 0


def test_extended_json_forms_of_time_and_numbers() -> None:
    # Canonical Extended JSON: the date as milliseconds, numbers wrapped.
    canonical = find(ts={"$numberLong": "1628522890788"})
    canonical["result"] = {"$numberInt": "13"}
    canonical["remote"]["port"] = {"$numberInt": "51930"}
    ev = one(events_of(canonical))
    assert ev[S.TIME] == datetime(2021, 8, 9, 15, 28, 10, 788000, tzinfo=UTC)
    assert (ev[S.CLASS], ev[S.SUCCESS]) == ("ERROR", False)
    zulu = one(events_of(find(ts="2021-08-09T15:28:10.788Z")))
    assert zulu[S.TIME] == ev[S.TIME]


def test_long_and_deep_arguments_are_kept_as_text() -> None:
    big = find()
    big["param"]["args"]["filter"] = {"email": "x" * 10_000}
    assert len(one(events_of(big))[S.QUERY]) == QUERY_CHARS
    deep: Any = 1
    for _ in range(150):  # deeper than MongoDB's 100 levels, and than serde's limit of 128
        deep = {"$and": [deep]}
    nested = find()
    nested["param"]["args"]["filter"] = deep
    ev = one(events_of(nested))
    assert ev[S.OBJECTS] == ["shop.customers"] and ev[S.QUERY].startswith('{"find": "customers"')


def mongodump_workload() -> list[dict[str, Any]]:
    """A nightly mongodump among normal reads (built from the documented shapes): the
    dump's connection declares application "mongodump" (the name mongo-tools gives the
    driver) and reads every collection; the shell's connection reads one document."""
    dump, shell = "KXMtAMh9TOOSl9aQBW1Zkg==", "pWSwWRZvR9CgNsvcDYhiwg=="
    return [
        client_metadata("MongoDB Shell", shell),
        client_metadata("mongodump", dump),
        find("shop.customers", uuid=shell, user="analyst"),
        *(find(f"shop.{c}", uuid=dump, user="backup", ts=f"2024-05-06T10:00:0{i}.000+00:00")
          for i, c in enumerate(["customers", "orders", "payments"])),
        record("authCheck", {"command": "listCollections", "ns": "shop.$cmd"}, uuid=dump, user="backup"),
    ]  # fmt: skip


def test_mongodump_reads_are_exports_and_name_their_application() -> None:
    frame = events_of(*mongodump_workload())
    dump = frame.filter(pl.col(S.ACCOUNT) == "backup@admin")
    assert dump.filter(pl.col(S.EXPORT))[S.OBJECTS].to_list() == [
        ["shop.customers"], ["shop.orders"], ["shop.payments"],
    ]  # fmt: skip
    assert set(dump[S.APPLICATION]) == {"mongodump"}
    # listCollections reads no documents: not an export, and "$cmd" is no collection.
    listing = one(dump.filter(~pl.col(S.EXPORT)))
    assert (listing[S.CLASS], listing[S.OBJECTS]) == ("MISC", [])
    shell = one(frame.filter(pl.col(S.ACCOUNT) == "analyst@admin"))
    assert (shell[S.APPLICATION], shell[S.EXPORT]) == ("MongoDB Shell", False)


def test_pre_5_0_records_have_no_application() -> None:
    ev = one(parse(GUARDIUM, NAME)[0])
    assert ev[S.APPLICATION] is None and ev[S.EXPORT] is False


def parse_in_chunks(path: Path, chunk_bytes: int) -> pl.DataFrame:
    events = parse_chunks(MongodbAudit(), path, chunk_bytes, join=False).events
    return events.sort(S.TIME, maintain_order=True)


def test_same_events_in_one_chunk_or_many() -> None:
    lines = [json.dumps(r) for r in mongodump_workload()] + MANUAL.read_text().splitlines()
    with tempfile.TemporaryDirectory(prefix="trovewatch-mongodb-") as tmp:
        path = Path(tmp) / "audit.json"
        path.write_text("\n".join(lines) + "\n")
        whole = parse_in_chunks(path, 1 << 20)
        # The client metadata and the dump's reads end up in different chunks.
        for size in (700, 1500, 4000):
            assert parse_in_chunks(path, size).equals(whole), size
        assert whole.filter(pl.col(S.EXPORT)).height == 3
        events, _ = parse(path, NAME)
    assert events.sort(S.TIME, maintain_order=True).equals(whole)


def test_read_events_end_to_end_with_auto_detection() -> None:
    events, quarantine = parse(MANUAL, "auto")
    assert events.height == 3 and quarantine.total == 0
    assert events.schema == S.EVENT_SCHEMA
    assert set(events[S.SOURCE_FORMAT]) == {NAME}


# -- rejects ------------------------------------------------------------------------------


def test_each_unusable_line_is_quarantined_with_its_reason() -> None:
    good = json.dumps(find())
    frame, quarantine = read_lines(
        good,
        '{"t":{"$date":"2022-09-11T18:53:37.727+00:00"},"s":"I","c":"SHARDING","msg":"x"}',
        json.dumps(record("authCheck", {"ns": "shop.customers"})),  # no command
        json.dumps({k: v for k, v in find().items() if k != "ts"}),  # no time
        json.dumps(find(ts="yesterday")),
        json.dumps(find(ts={"$numberLong": "99999999999999999999"})),
        good[: len(good) // 2],  # cut short
        "not json at all",
        json.dumps({**find(), "users": "alice"}),  # users must be a list
        "",
        "[1, 2, 3]",
    )
    assert frame.height == 1
    assert dict(quarantine.counts) == {
        Reason.UNRECOGNISED.value: 1,
        Reason.NOT_AUDIT.value: 2,
        Reason.BAD_FIELD.value: 3,
        Reason.TRUNCATED.value: 1,
        Reason.INVALID_JSON.value: 2,
    }


def test_giant_line_is_too_long() -> None:
    giant = find()
    giant["param"]["args"]["filter"] = {"x": "y" * 1_100_000}
    frame, quarantine = read_lines(json.dumps(giant), json.dumps(find()))
    assert frame.height == 1 and dict(quarantine.counts) == {Reason.TOO_LONG.value: 1}


# -- fuzz -----------------------------------------------------------------------------------

CLEAN = [json.dumps(r) for r in mongodump_workload()] + MANUAL.read_text().splitlines()
TORTURE = [
    "{", "}", '"atype"', '{"atype":', "[", "]", "\\", '\\"', ",", ":", "\x00", "\ufffd",
    '{"$date":', '{"$numberLong":"', "x" * 3000, "null", "true", '"', "\n",
]  # fmt: skip


def check(data: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and quarantined lines of ``data`` read as a mongodb-audit file."""
    events, _, rows = read_bytes(data, NAME)
    return events, rows


@FUZZ
@given(data=RANDOM_BYTES)
def test_random_bytes_never_crash(data: bytes) -> None:
    check(data)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len("\n".join(CLEAN))))
def test_truncated_files_never_crash(cut: int) -> None:
    events, _ = check("\n".join(CLEAN).encode()[:cut])
    assert events.height <= len(CLEAN)


GARBAGE = st.one_of(
    garbage_text(TORTURE),
    st.sampled_from(CLEAN).flatmap(
        lambda s: st.integers(1, len(s) - 1).map(lambda i: s[:i])  # a record cut short
    ),
).filter(lambda s: s.strip() != "")


@FUZZ
@given(inserts=insertions(GARBAGE, 0, len(CLEAN)))
def test_garbage_lines_are_all_quarantined_and_real_records_kept(
    inserts: list[tuple[int, str]],
) -> None:
    lines = with_inserted(CLEAN, inserts)
    events, rows = check(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    clean, _ = check(("\n".join(CLEAN) + "\n").encode())
    # Every garbage line (a cut-short record is never a whole JSON object) is in the
    # quarantine, and every real record keeps its event, and garbage adds none.
    assert rows.height == len(inserts)
    assert events.equals(clean)


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=3000),
    opener=st.sampled_from(['{"a":', "[", '{"$and":[']),
)
def test_deep_nesting_never_crashes(depth: int, opener: str) -> None:
    closer = {'{"a":': "}", "[": "]", '{"$and":[': "]}"}[opener]
    args = opener * depth + "1" + closer * depth
    line = json.dumps(find()).replace('{"find": "customers", "$db": "shop"}', args)
    events, rows = check((line + "\n" + json.dumps(find()) + "\n").encode())
    assert events.height + rows.height == 2
    if depth <= 500:  # well past MongoDB's own limit of 100 levels: still read
        assert events.height == 2


def test_invalid_utf8_is_one_rejected_line_or_kept_as_replacement() -> None:
    good = json.dumps(find()).encode()
    bad = good.replace(b"customers", b"cust\xff\xfeomers", 1)
    events, rows = check(good + b"\n" + bad + b"\n\xc3\n")
    assert events.height == 2  # the bytes became U+FFFD inside a string: still a record
    assert rows["reason"].to_list() == [Reason.INVALID_JSON.value]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    field=st.sampled_from(["atype", "ts", "uuid", "remote", "users", "param", "result"]),
    value=JSON_VALUES,
)
def test_any_value_in_any_field_is_kept_or_quarantined_once(field: str, value: Any) -> None:
    mutated = find()
    mutated[field] = value
    events, rows = check((json.dumps(mutated) + "\n" + json.dumps(find()) + "\n").encode())
    # The intact record is an event; the mutated one an event, context or one reject.
    assert rows["line"].to_list() in ([], [1])
    assert 1 <= events.height <= 2 and events.height + rows.height <= 2
