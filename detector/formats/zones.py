"""Time zones of servers' logs: the zone abbreviations PostgreSQL prints, and a server's
own zone (IANA name) when a log's times do not say theirs.

PostgreSQL writes each time in ``log_timezone`` with the zone's abbreviation
(``2026-12-01 13:44:09.757 CST``), or an offset where the zone has none (``-03``). Most
abbreviations name one offset wherever they are printed. A few name several: ``CST``
is UTC+8 in China, UTC-6 in the central United States and UTC-5 in Cuba; ``IST`` is
India, Israel or Ireland. Those are read in the server's zone when it is told
(``postgres_timezone``). Else they are read as this machine's zone reads them if it
prints them (a sidecar on its database server's machine, whose zone initdb made the
server's ``log_timezone``); else as the one zone printing them that puts a log's newest
line at its file's last write (:func:`settle`); else as China's and India's. The run
says which (:func:`described`). A name no zone prints is quarantined as ``unknown_zone``.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

# Abbreviations and their offsets in minutes, as the zone database prints them since
# 2018 (tests/formats/test_zones.py checks each against it), and SGT, which older
# releases of it printed for Singapore. Left out: those with more
# than one offset, CST, IST (and KST, UTC+8:30 in Pyongyang in 2018). Two are kept with
# their most common meaning though Asia/Manila and America/Havana print them too:
# PST (not UTC+8) and CDT (not UTC-4); told a server's zone, its own offsets come first.
ZONE_MINUTES: Final = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 60, "BST": 60, "CET": 60, "CEST": 120,
    "MET": 60, "MEST": 120, "EET": 120, "EEST": 180, "MSK": 180, "WAT": 60, "CAT": 120,
    "SAST": 120, "EAT": 180, "IDT": 180, "PKT": 300,
    "NST": -210, "NDT": -150, "AST": -240, "ADT": -180,
    "EST": -300, "EDT": -240, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600, "HDT": -540,
    "SST": -660, "WIB": 420, "WITA": 480, "WIT": 540,
    "JST": 540, "KST": 540, "HKT": 480, "SGT": 480, "AWST": 480, "ChST": 600,
    "AEST": 600, "AEDT": 660, "ACST": 570, "ACDT": 630, "NZST": 720, "NZDT": 780,
}  # fmt: skip
# Printed by zones at different offsets: read in a zone told, else guessed (:func:`guessed`),
# first as China's and India's; what else they may mean is said to the user.
AMBIGUOUS: Final = {
    "CST": (480, "UTC+8 in China, UTC-6 in the central United States, UTC-5 in Cuba"),
    "IST": (330, "UTC+5:30 in India, UTC+2 in Israel, UTC+1 in Ireland in summer"),
}


def check_timezone(name: str) -> str:
    """``name`` if it names a time zone (IANA, e.g. ``Europe/Berlin``); else ValueError.
    Asked of Polars' own zone database, the one that reads the times; "" (which Polars
    takes for no zone) is none."""
    try:
        pl.Series([datetime(2026, 1, 1)]).dt.replace_time_zone(name if name.strip() else "-")
    except pl.exceptions.PolarsError as exc:
        raise ValueError(
            f"{name!r} is not a time zone: give an IANA name such as Europe/Berlin or UTC"
        ) from exc
    return name


@cache
def abbreviations(zone: str) -> tuple[frozenset[str], str | None]:
    """The abbreviations ``zone`` has printed in the last ten years, and of them the one
    outside summer time (``CST`` of CST and CDT for America/Chicago, ``GMT`` of GMT and
    BST for Europe/London); nothing if Python's zone database does not know ``zone``."""
    try:
        info = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return frozenset(), None
    year = datetime.now(UTC).year
    names: set[str] = set()
    standard = None
    for y in range(year - 10, year + 2):
        for month in range(1, 13):
            local = datetime(y, month, 1, tzinfo=UTC).astimezone(info)
            name = local.tzname() or ""
            names.add(name)
            if not local.dst() and y >= year - 1:
                standard = name
    return frozenset(names), standard


def local_to_utc(naive: pl.Expr, abbreviation: pl.Expr, zone: str) -> pl.Expr:
    """Times written in ``zone`` (naive), on UTC. In the hour that comes twice when summer
    time ends, the abbreviation printed with each tells which pass it is (the zone's
    standard one: the second); a time in the hour skipped is null."""
    _, standard = abbreviations(zone)
    second = abbreviation == standard if standard is not None else pl.lit(False)
    ambiguous = pl.when(second).then(pl.lit("latest")).otherwise(pl.lit("earliest"))
    return naive.dt.replace_time_zone(zone, ambiguous=ambiguous, non_existent="null")


# What else they may mean: the offsets (minutes) of the zones that print them.
CANDIDATES: Final = {"CST": (480, -360, -300), "IST": (330, 120, 60)}
# A log's newest time found this far from its file's last write (the line was written
# then) settles which candidate it is: a clock a little behind, or a line written late.
SETTLE_BEFORE, SETTLE_AFTER = timedelta(minutes=1), timedelta(minutes=10)
# How each abbreviation read by a guess was read: "this machine's zone", "its log's last
# write" (settle), or not there (the usual meaning).
_WHY: dict[str, str] = {}
# A time and zone name as PostgreSQL prints them (%m, %t), in any output.
_STAMP: Final = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ([A-Z]{2,5})\b")
_TAIL_BYTES: Final = 65_536


@cache
def guessed() -> dict[str, int]:
    """The offset (minutes) each :data:`AMBIGUOUS` abbreviation is read at without a zone
    told: this machine's, where its zone prints it, else the usual one until a log's last
    write settles it (:func:`settle`). The one dict, changed by :func:`settle`."""
    local = {time.tzname[0]: -time.timezone // 60}
    if time.daylight:
        local[time.tzname[1]] = -time.altzone // 60
    _WHY.update((name, "this machine's zone") for name in AMBIGUOUS if name in local)
    return {name: local.get(name, usual) for name, (usual, _) in AMBIGUOUS.items()}


def settle(path: Path) -> None:
    """Read ``path``'s abbreviations of several zones as its last write says: a log's
    newest line was written when the file last changed, so of the zones that print the
    abbreviation, the one that puts that line at the file's last write (within
    ``SETTLE_AFTER``) is the server's. Nothing is settled by a compressed file (its time
    is when it was compressed), by a file without such a line, or where none or two
    candidates fit; nor where this machine's own zone prints the abbreviation."""
    guesses = guessed()
    if path.suffix == ".gz":
        return
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            tail, written = f.read(), datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return
    newest: dict[str, datetime] = {}
    for stamp, name in _STAMP.findall(tail):
        abbreviation = name.decode()
        if abbreviation in AMBIGUOUS and _WHY.get(abbreviation) != "this machine's zone":
            with contextlib.suppress(ValueError):
                local = datetime.fromisoformat(stamp.decode()).replace(tzinfo=UTC)
                newest[abbreviation] = max(local, newest.get(abbreviation, local))
    for abbreviation, local in newest.items():
        fits = [
            minutes
            for minutes in CANDIDATES[abbreviation]
            if -SETTLE_BEFORE <= written - (local - timedelta(minutes=minutes)) <= SETTLE_AFTER
        ]
        if len(fits) == 1:
            guesses[abbreviation] = fits[0]
            _WHY[abbreviation] = f"as {path.name}'s last write says"


def reset() -> None:
    """Forget what logs settled (:func:`settle`): a new run's guesses."""
    guessed.cache_clear()
    _WHY.clear()


def described(name: str) -> str:
    """How an :data:`AMBIGUOUS` abbreviation was read, and what else it may mean."""
    minutes = guessed()[name]
    places = AMBIGUOUS[name][1]
    hours, rest = divmod(abs(minutes), 60)
    offset = f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02}" if rest else "")
    why = f", {_WHY[name]}" if name in _WHY else ""
    return f"{name}, read as {offset}{why} ({name} is {places})"
