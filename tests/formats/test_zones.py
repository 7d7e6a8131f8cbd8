"""The zone abbreviations PostgreSQL prints, against the zone database it prints them from.

A line timed ``13:44:09 CST`` is UTC+8 only if the server is in China: the table of
abbreviations read without a zone told (``zones.ZONE_MINUTES``) must hold none that a
zone prints with another offset, save the two it documents (PST, CDT); those that name
several offsets must be the ones read by a guess the run names (``zones.AMBIGUOUS``).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import polars as pl
import pytest

from detector.formats import zones
from detector.formats.pgaudit import parse_time, unknown_zone

# Kept with their usual meaning, though Asia/Manila prints PST at UTC+8 and
# America/Havana CDT at UTC-4 (the zones module says so).
DOCUMENTED = {"PST", "CDT"}


def printed() -> dict[str, dict[int, set[str]]]:
    """Every alphabetic abbreviation the zone database prints from 2019 to 2027, with
    each offset (minutes) it prints it at and the zones that do."""
    found: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    start = datetime(2019, 1, 1, tzinfo=UTC)
    for name in available_timezones():
        zone = ZoneInfo(name)
        for week in range(0, 9 * 52):
            local = (start + timedelta(weeks=week)).astimezone(zone)
            abbreviation = local.tzname() or ""
            offset = local.utcoffset()
            if abbreviation[:1].isalpha() and offset is not None:
                found[abbreviation][int(offset.total_seconds() // 60)].add(name)
    return found


@pytest.fixture(scope="module")
def database() -> dict[str, dict[int, set[str]]]:
    return printed()


def test_every_abbreviation_read_without_a_zone_means_one_offset_where_it_is_printed(
    database: dict[str, dict[int, set[str]]],
) -> None:
    for abbreviation, minutes in zones.ZONE_MINUTES.items():
        offsets = database.get(abbreviation, {})
        others = {m: sorted(z)[:3] for m, z in offsets.items() if m != minutes}
        if abbreviation not in DOCUMENTED:
            assert not others, f"{abbreviation} is {minutes} min in the table, also {others}"
        if offsets:  # ("Z" and some old names are not printed by any zone now)
            assert minutes in offsets, f"{abbreviation}: no zone prints it at {minutes} min"


def test_the_abbreviations_of_several_offsets_are_refused_without_a_zone(
    database: dict[str, dict[int, set[str]]],
) -> None:
    several = {a for a, offsets in database.items() if len(offsets) > 1}
    assert several - DOCUMENTED == set(zones.AMBIGUOUS)
    assert not set(zones.AMBIGUOUS) & set(zones.ZONE_MINUTES)


def read(stamps: list[str], timezone: str | None = None) -> list[datetime | None]:
    frame = pl.DataFrame({"ts": stamps})
    return frame.select(parse_time(pl.col("ts"), timezone).alias("ts"))["ts"].to_list()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_told_zone_reads_its_own_abbreviations_by_its_rules() -> None:
    assert read(["2026-12-01 13:44:09.757 CST"], "Asia/Shanghai") == [
        utc(2026, 12, 1, 5, 44, 9, 757000)
    ]
    assert read(["2026-12-01 13:44:09 CST"], "America/Chicago") == [utc(2026, 12, 1, 19, 44, 9)]
    assert read(["2026-12-01 11:14:12.989 IST"], "Asia/Kolkata") == [
        utc(2026, 12, 1, 5, 44, 12, 989000)
    ]
    assert read(["2026-12-01 07:44:12 IST"], "Asia/Jerusalem") == [utc(2026, 12, 1, 5, 44, 12)]
    # Manila's PST is its own (UTC+8), not the Pacific's the table has.
    assert read(["2026-12-01 13:44:09 PST"], "Asia/Manila") == [utc(2026, 12, 1, 5, 44, 9)]


def test_the_hour_that_comes_twice_is_told_apart_by_the_abbreviation() -> None:
    stamps = ["2026-11-01 01:20:00 CDT", "2026-11-01 01:20:00 CST", "2026-11-01 01:59:59 CST"]
    assert read(stamps, "America/Chicago") == [
        utc(2026, 11, 1, 6, 20),
        utc(2026, 11, 1, 7, 20),
        utc(2026, 11, 1, 7, 59, 59),
    ]
    london = ["2026-10-25 01:30:00 BST", "2026-10-25 01:30:00 GMT"]
    assert read(london, "Europe/London") == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]
    assert read(london) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]


def test_times_that_say_their_offset_keep_it_whatever_zone_is_told() -> None:
    stamps = ["2026-12-01 05:44:09 UTC", "2026-12-01 02:44:09 -03", "2026-12-01 11:14:09 +0530"]
    expected = [utc(2026, 12, 1, 5, 44, 9)] * 3
    assert read(stamps, "Asia/Shanghai") == expected
    assert read(stamps) == expected


def test_without_a_zone_an_abbreviation_of_several_offsets_is_read_by_the_guess_said() -> None:
    """CST and IST as this machine's zone reads them, or China's and India's; a name no
    zone prints is unknown, never guessed."""
    stamps = ["2026-12-01 13:44:09 CST", "2026-12-01 11:14:12 IST", "2026-12-01 13:44:09 XYZ"]
    guessed = zones.guessed()
    assert read(stamps) == [
        utc(2026, 12, 1, 13, 44, 9) - timedelta(minutes=guessed["CST"]),
        utc(2026, 12, 1, 11, 14, 12) - timedelta(minutes=guessed["IST"]),
        None,
    ]
    flagged = pl.DataFrame({"ts": [*stamps, "2026-13-01 00:00:00 UTC", "garbage"]}).select(
        unknown_zone(pl.col("ts")).alias("ts")
    )
    assert flagged["ts"].to_list() == [False, False, True, False, False]


def test_the_guess_is_this_machines_zone_where_it_prints_the_abbreviation() -> None:
    """A sidecar on its database server's machine: initdb gave the server the machine's
    zone. Run in a fresh interpreter under TZ, as the zone is read once."""
    code = (
        "from detector.formats import zones;"
        "print(zones.guessed()['CST'], zones.guessed()['IST'], zones.described('CST'))"
    )
    for tz, expected, mine in [("America/Chicago", "-360 330", True),
                               ("Asia/Shanghai", "480 330", True),
                               ("Europe/Dublin", "480 60", False),
                               ("UTC", "480 330", False)]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "TZ": tz},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.startswith(expected + " "), (tz, done.stdout)
        assert ("this machine's zone" in done.stdout) == mine, (tz, done.stdout)


@pytest.mark.parametrize(
    ("written", "settled"),
    [
        (datetime(2026, 12, 1, 16, 0, 5, tzinfo=UTC), -360),  # Chicago's CST
        (datetime(2026, 12, 1, 15, 0, 5, tzinfo=UTC), -300),  # Havana's
        (datetime(2026, 12, 1, 2, 0, 5, tzinfo=UTC), 480),  # China's
        (datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC), None),  # copied later: the guess
    ],
)
def test_a_logs_last_write_settles_which_zone_its_abbreviation_is(
    tmp_path: Path, written: datetime, settled: int | None
) -> None:
    if "CST" in time.tzname:
        pytest.skip("this machine's zone prints CST: its own reading wins")
    log = tmp_path / "postgresql.json"
    log.write_text(
        '{"timestamp":"2026-12-01 09:58:00.000 CST","session_start":"2026-12-01 08:00:00 CST"}\n'
        '{"timestamp":"2026-12-01 10:00:00.000 CST","session_start":"2026-12-01 08:00:00 CST"}\n'
    )
    os.utime(log, (written.timestamp(), written.timestamp()))
    guess = zones.guessed()["CST"]
    zones.settle(log)
    assert zones.guessed()["CST"] == (guess if settled is None else settled)
    assert ("last write says" in zones.described("CST")) == (settled is not None)
    zones.reset()
    packed = tmp_path / "postgresql.json.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    os.utime(packed, (written.timestamp(), written.timestamp()))
    zones.settle(packed)  # a compressed file's time is when it was compressed
    assert zones.guessed()["CST"] == guess


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(
    ("beside", "ambiguous", "offset"), [("CDT", "CST", -360), ("IDT", "IST", 120)]
)
def test_a_summer_abbreviation_in_the_logs_says_which_zone_the_winter_one_is(
    tmp_path: Path, beside: str, ambiguous: str, offset: int, packed: bool
) -> None:
    """A US Central server's logs print CDT until summer time ends and CST after; copied
    (the last write no longer the newest line's), its CST was read as China's, 14 h off.
    The CDT beside it says which zone it is, in a compressed file too."""
    if ambiguous in time.tzname:
        pytest.skip(f"this machine's zone prints {ambiguous}")
    summer = tmp_path / ("postgresql-2026-10-31.json" + (".gz" if packed else ""))
    text = f'{{"timestamp":"2026-10-31 23:59:00.000 {beside}"}}\n'.encode()
    summer.write_bytes(gzip.compress(text) if packed else text)
    winter = tmp_path / "postgresql-2026-11-02.json"
    winter.write_text(f'{{"timestamp":"2026-11-02 10:00:01.000 {ambiguous}"}}\n')
    guess = zones.guessed()[ambiguous]
    zones.settle(winter)  # copied now: its last write says nothing
    assert zones.guessed()[ambiguous] == guess != offset
    zones.settle(summer)
    assert zones.guessed()[ambiguous] == offset
    assert f"as the {beside} times in {summer.name} say" in zones.described(ambiguous)
    zones.reset()
    assert zones.guessed()[ambiguous] == guess
