"""Syslog times read as UTC (:mod:`detector.formats.pg_syslog`), for a
``log_line_prefix`` that leaves the time to the syslog line: the traditional line's time
has no year and no zone, the RFC 3339 line's has both. The messages themselves are
tested on a real server's output through a real rsyslog
(``tests/integration/test_live_postgres_syslog.py``) and fuzzed with the other parsers
(``tests/formats/test_fuzz.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from detector.formats import pg_syslog, syslog


def utc(stamp: str, written: datetime | None = None) -> datetime | None:
    return pl.select(syslog.utc(pl.lit(stamp), written)).item()


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-12-01T14:18:13.25+05:30", datetime(2026, 12, 1, 8, 48, 13, 250000, tzinfo=UTC)),
        ("2026-12-01T14:18:13+0530", datetime(2026, 12, 1, 8, 48, 13, tzinfo=UTC)),
        ("2026-12-01T08:48:13.970123Z", datetime(2026, 12, 1, 8, 48, 13, 970123, tzinfo=UTC)),
        ("2026-12-01T02:48:13.5-06:00", datetime(2026, 12, 1, 8, 48, 13, 500000, tzinfo=UTC)),
    ],
)
def test_an_rfc3339_time_is_read_by_its_offset(stamp: str, expected: datetime) -> None:
    assert utc(stamp) == expected


def test_a_traditional_time_is_in_the_year_of_the_files_last_write() -> None:
    """A log written across New Year: December's lines are last year's."""
    written = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    assert utc("Dec 31 23:59:59", written) == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert utc("Jan  1 00:10:00", written) == datetime(2027, 1, 1, 0, 10, tzinfo=UTC)
    # a clock a little ahead of the file's time is still this year's
    assert utc("Jan  1 01:00:00", written) == datetime(2027, 1, 1, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("Dec 01 08:48:13", datetime(2026, 12, 1, 8, 48, 13, tzinfo=UTC)),  # -o short
        ("Dec 01 08:48:13.530121", datetime(2026, 12, 1, 8, 48, 13, 530121, tzinfo=UTC)),
        ("2026-12-01T08:48:13+0000", datetime(2026, 12, 1, 8, 48, 13, tzinfo=UTC)),  # short-iso
    ],
)
def test_journalctls_times_are_read(
    stamp: str, expected: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``journalctl -o short``, ``short-precise`` and ``short-iso`` print them."""
    monkeypatch.setenv("TZ", "UTC")
    assert utc(stamp, datetime(2026, 12, 31, tzinfo=UTC)) == expected


def message_lines(*parts: str) -> list[str]:
    """The stderr lines :func:`pg_syslog.unwrap` makes of one message's syslog lines."""
    lines = [
        f"Dec  1 08:48:13 db1 postgres[26401]: [9-{n}] {part}" for n, part in enumerate(parts, 1)
    ]
    frame = pl.DataFrame(
        {"line_no": range(len(lines)), "line": lines},
        schema={"line_no": pl.UInt64, "line": pl.String},
    )
    return pg_syslog.unwrap(frame)[0]["line"].to_list()


def test_a_part_is_joined_to_the_line_before_only_where_the_server_cut_it() -> None:
    """The server cuts a long line at the last space of its 900 bytes, which begins the
    next part; a part beginning with two spaces after a shorter part is no cut but a tab
    as journalctl prints it (eight spaces): the statement's next line."""
    head = "2026-12-01 08:48:13.970 UTC [26401] LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT id,"
    assert message_lines(head, "        name", "         FROM people") == [
        head, "\tname", "\t FROM people"
    ]  # fmt: skip
    assert message_lines(head, "#011name") == [head, "\tname"]  # rsyslog's escape
    long = head + " x" * 300 + "y" * 400
    at = long.rindex(" ", 0, pg_syslog.SPLIT_BYTES)  # where the server cuts: 683
    assert message_lines(long[:at], long[at:]) == [long]
    full = head + "z" * (900 - len(head))
    assert message_lines(full, "  two spaces") == [full + "  two spaces"]  # after a full part


def test_a_traditional_time_is_this_machines_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon beside the server writes its local time: Kolkata's 14:18 is 08:48 UTC;
    Chicago's 01:30 on the morning summer time ends is read as its first pass (CDT)."""
    written = datetime(2026, 12, 31, tzinfo=UTC)
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    assert utc("Dec  1 14:18:13", written) == datetime(2026, 12, 1, 8, 48, 13, tzinfo=UTC)
    monkeypatch.setenv("TZ", "America/Chicago")
    assert utc("Nov  1 01:30:00", written) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    monkeypatch.setenv("TZ", "Not/AZone")
    assert utc("Dec  1 08:48:13", written) == datetime(2026, 12, 1, 8, 48, 13, tzinfo=UTC)
