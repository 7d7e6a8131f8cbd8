"""Fuzzing the MariaDB parsers (audit file, audit through syslog, slow log) with damage
built from real 10.11 output: random bytes,
truncated records, giant lines, invalid UTF-8, quote and escape torture. No crash, every
rejected line quarantined with a reason from ``Reason``, and (for the one-line-per-record
audit log) real records keep their events while garbage lines are all quarantined."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detector import schema as S
from detector.formats import syslog
from detector.rejects import Reason
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    WHITE_SPACE,
    garbage_bytes,
    insertions,
    not_gzip,
    read_bytes,
    with_inserted,
)
from tests.formats.test_mariadb_reference import AUDIT, SLOW

SYSLOG = Path(__file__).parents[1] / "fixtures" / "mariadb-audit-syslog" / "server_audit.syslog"
SOURCES = {"mariadb-audit": AUDIT, "mariadb-audit-syslog": SYSLOG, "mariadb-slow": SLOW}
AUDIT_LINES = AUDIT.read_bytes().splitlines()
SYSLOG_LINES = SYSLOG.read_bytes().splitlines()
SLOW_LINES = SLOW.read_bytes().splitlines()
TORTURE = [
    b"'", b"\\'", b"\\", b"\\\\'", b"\\n", b",", b",,,", b"'\\", b"\xff\xfe", b"\x00",
    b"\xc3", b"x" * 5000, b"# User@Host: ", b"SET timestamp=;", b"# Time: ",
]  # fmt: skip


GARBAGE = garbage_bytes(TORTURE).filter(lambda b: b.strip() != b"" and not b[:9].isdigit())


@FUZZ
@given(data=RANDOM_BYTES, name=st.sampled_from(sorted(SOURCES)))
def test_random_bytes_never_crash(data: bytes, name: str) -> None:
    read_bytes(data, name)


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=len(SLOW.read_bytes())),
    name=st.sampled_from(sorted(SOURCES)),
)
def test_truncated_files_never_crash(cut: int, name: str) -> None:
    source = SOURCES[name]
    events = read_bytes(source.read_bytes()[:cut], name).events
    whole = read_bytes(source.read_bytes(), name).events
    assert events.height <= whole.height  # a statement cut short is still one


# Garbage that is no syslog line (another program's would be context, not a reject).
SYSLOG_GARBAGE = GARBAGE.filter(
    lambda b: not re.match(syslog.ANY_LINE, b.decode("utf-8", "replace"))
)
GARBAGE_INTO = {"mariadb-audit": (AUDIT, GARBAGE), "mariadb-audit-syslog": (SYSLOG, SYSLOG_GARBAGE)}


@FUZZ
@pytest.mark.parametrize("name", sorted(GARBAGE_INTO))
@given(data=st.data())
def test_audit_garbage_lines_are_all_quarantined_and_real_records_kept(
    name: str, data: st.DataObject
) -> None:
    """Into the real captures (the syslog one holds a record the daemon cut short)."""
    source, garbage = GARBAGE_INTO[name]
    lines = source.read_bytes().splitlines()
    inserts = data.draw(insertions(garbage, 0, len(lines)))
    joined = b"\n".join(with_inserted(lines, inserts)) + b"\n"
    assume(not_gzip(joined))  # garbage may come first
    events, quarantine, _ = read_bytes(joined, name)
    clean = read_bytes(source.read_bytes(), name)
    blank = sum(1 for _, j in inserts if not j.decode("utf-8", "replace").strip(WHITE_SPACE))
    assert quarantine.total == clean.quarantine.total + len(inserts) - blank
    assert events.drop(S.SESSION).equals(clean.events.drop(S.SESSION))


@FUZZ
@given(
    text=st.lists(st.sampled_from([b"a", b"'", b"\\'", b"\\\\", b"\\n", b",", b" ", b"\xe2\x82"]),
                  max_size=30).map(b"".join)
)  # fmt: skip
def test_audit_quoted_query_torture(text: bytes) -> None:
    line = b"20261128 06:56:10,vm,bob,127.0.0.1,4,6,QUERY,shop,'SELECT " + text + b"',0\n"
    events = read_bytes(line, "mariadb-audit").events
    assert events.height <= 1


def test_giant_lines_are_quarantined_as_too_long() -> None:
    record = b"vm,bob,127.0.0.1,4,6,QUERY,shop,'" + b"x" * 1_100_000 + b"',0"
    giant = b"20261128 06:56:10," + record
    sent = b"Dec  1 11:58:22 vm mysql-server_auditing:  " + record
    for name, lines, line in (
        ("mariadb-audit", AUDIT_LINES, giant),
        ("mariadb-audit-syslog", SYSLOG_LINES, sent),
        ("mariadb-slow", SLOW_LINES, giant),
    ):
        data = b"\n".join([*lines, line]) + b"\n"
        quarantine = read_bytes(data, name).quarantine
        assert quarantine.counts[Reason.TOO_LONG.value] == 1


def test_a_slow_record_cut_before_its_statement_is_quarantined_as_truncated() -> None:
    data = b"\n".join(SLOW_LINES[:8]) + b"\n"  # header lines of the first record only
    events, quarantine, _ = read_bytes(data, "mariadb-slow")
    assert events.height == 0
    assert quarantine.counts == {Reason.TRUNCATED.value: 4}  # its four header lines


# Where clocks change in 2026: summer time begins and ends (Europe/Berlin, America/New_York,
# Australia/Lord_Howe by half an hour), local times.
CHANGES = [
    datetime(2026, 3, 29, 2), datetime(2026, 10, 25, 2), datetime(2026, 3, 8, 2),
    datetime(2026, 11, 1, 1), datetime(2026, 4, 5, 2), datetime(2026, 10, 4, 2),
]  # fmt: skip
LOCAL_TIMES = st.one_of(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)),
    st.sampled_from(CHANGES).flatmap(
        lambda at: st.datetimes(
            min_value=at - timedelta(hours=2), max_value=at + timedelta(hours=2)
        )
    ),
)
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]
STAMP = re.compile(rb"^\d{8} \d\d:\d\d:\d\d")


@FUZZ
@given(
    times=st.lists(LOCAL_TIMES, min_size=len(AUDIT_LINES), max_size=len(AUDIT_LINES)),
    zone=st.sampled_from(ZONES),
)
def test_any_time_a_servers_clock_writes_is_read_in_its_zone_none_lost(
    times: list[datetime], zone: str
) -> None:
    """Real 10.11 records restamped with any local times (in and around the hours summer
    time skips and repeats, out of order), read with ``--mariadb-timezone``: no crash,
    no line quarantined that is not without it, and every event on UTC within 14 hours
    of the times read as UTC (the farthest a zone is from UTC)."""
    lines = [
        STAMP.sub(at.strftime("%Y%m%d %H:%M:%S").encode(), line)
        for at, line in zip(times, AUDIT_LINES, strict=True)
    ]
    data = b"\n".join(lines) + b"\n"
    as_utc = read_bytes(data, "mariadb-audit")
    zoned = read_bytes(data, "mariadb-audit", mariadb_timezone=zone)
    assert zoned.quarantine.total == as_utc.quarantine.total
    assert zoned.events.is_empty() == as_utc.events.is_empty()
    if as_utc.events.height:
        low = as_utc.events[S.TIME].min() - timedelta(hours=14)  # type: ignore[operator]
        high = as_utc.events[S.TIME].max() + timedelta(hours=14)  # type: ignore[operator]
        assert zoned.events[S.TIME].is_between(low, high).all()
