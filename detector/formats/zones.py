"""Time zones of servers' logs: the zone abbreviations PostgreSQL prints, and a server's
own zone (IANA name) when a log's times do not say theirs.

PostgreSQL writes each time in ``log_timezone`` with the zone's abbreviation
(``2026-12-01 13:44:09.757 CST``), or an offset where the zone has none (``-03``). Most
abbreviations name one offset wherever they are printed. A few name several: ``CST``
is UTC+8 in China, UTC-6 in the central United States and UTC-5 in Cuba; ``IST`` is
India, Israel or Ireland. Those are read in the server's zone when it is told
(``postgres_timezone``). Else, where the logs also print the summer-time abbreviation
of one of those zones (``CDT``: a server in Chicago prints CST in winter and CDT in
summer, as no server in China does; ``IDT``: Israel), in that zone; else as this
machine's zone reads them if it prints them (a sidecar on its database server's
machine, whose zone initdb made the server's ``log_timezone``); else as the one zone
printing them that puts a log's newest line at its file's last write (:func:`settle`);
else as China's and India's. The run says which (:func:`described`). A name no zone
prints is quarantined as ``unknown_zone``.
"""

from __future__ import annotations

import contextlib
import gzip
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
# Printed by zones at different offsets: each zone's offset (minutes) and where it is.
# Read in a zone told, else by a guess (:func:`guessed`), the first when nothing says which.
AMBIGUOUS: Final = {
    "CST": ((480, "China"), (-360, "the central United States"), (-300, "Cuba")),
    "IST": ((330, "India"), (120, "Israel"), (60, "Ireland in summer")),
}

# Abbreviations printed beside an AMBIGUOUS one by one of its zones only, and the offset
# that zone gives the ambiguous one: a log printing CDT is on US Central time (CDT as
# ZONE_MINUTES reads it), so its CST is UTC-6 (not China's UTC+8: 14 h apart); one
# printing IDT is Israel's, its IST UTC+2. (GMT beside IST would say Ireland, but GMT is
# printed by many zones, a London server's too: not taken.)
COMPANIONS: Final = {"CDT": ("CST", -360), "IDT": ("IST", 120)}


def offset_name(minutes: int) -> str:
    """An offset from UTC as time zones are named: ``UTC+8``, ``UTC-3:30``."""
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02}" if rest else "")


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


# A log's newest time found this far from its file's last write (the line was written
# then) settles which zone it is in: a clock a little behind, or a line written late.
SETTLE_BEFORE, SETTLE_AFTER = timedelta(minutes=1), timedelta(minutes=10)
# A time and zone name as PostgreSQL prints them (%m, %t), in any output.
_STAMP: Final = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ([A-Z]{2,5})\b")
_TAIL_BYTES: Final = 65_536
# What logs' last writes settled (:func:`settle`): offset, and which log said so.
_SETTLED: dict[str, tuple[int, str]] = {}
# What logs' other abbreviations said (:data:`COMPANIONS`): offset, and which log.
_BESIDE: dict[str, tuple[int, str]] = {}


@cache
def _machine() -> dict[str, int]:
    """The :data:`AMBIGUOUS` abbreviations this machine's zone prints, at its offsets."""
    local = {time.tzname[0]: -time.timezone // 60}
    if time.daylight:
        local[time.tzname[1]] = -time.altzone // 60
    return {name: minutes for name, minutes in local.items() if name in AMBIGUOUS}


def _reading(name: str) -> tuple[int, str]:
    """How an :data:`AMBIGUOUS` abbreviation is read without a zone told: its offset and
    why. The zone a log's other abbreviations name first (:data:`COMPANIONS`), then this
    machine's zone, then what a log's last write settled, else the first zone that
    prints it."""
    if name in _BESIDE:
        return _BESIDE[name]
    if name in _machine():
        return _machine()[name], ", as this machine's zone reads it"
    return _SETTLED.get(name, (AMBIGUOUS[name][0][0], ""))


def guessed() -> dict[str, int]:
    """The offset (minutes) each :data:`AMBIGUOUS` abbreviation is read at without a zone
    told (:func:`_reading`)."""
    return {name: _reading(name)[0] for name in AMBIGUOUS}


def settle(path: Path) -> None:
    """Read ``path``'s abbreviations of several zones as its last write says: a log's
    newest line was written when the file last changed, so of the zones that print the
    abbreviation, the one that puts that line at the file's last write (within
    ``SETTLE_AFTER``) is the server's. Nothing is settled by a compressed file (its time
    is when it was compressed), by a file without such a line, or where none or two
    zones fit; nor where this machine's own zone prints the abbreviation.

    Before that, the file's first and last lines are looked at for an abbreviation only
    one of those zones prints beside it (:data:`COMPANIONS`: CDT, IDT), compressed files
    too; found, it says the zone for the run, whatever the last write says."""
    _look_beside(path)
    if path.suffix == ".gz":
        return
    try:
        with path.open("rb") as f:
            stat = path.stat()
            f.seek(max(0, stat.st_size - _TAIL_BYTES))
            tail, written = f.read(), datetime.fromtimestamp(stat.st_mtime, UTC)
    except OSError:
        return
    _note_beside(tail, path)
    newest: dict[str, datetime] = {}
    for stamp, name in _STAMP.findall(tail):
        abbreviation = name.decode()
        if abbreviation in AMBIGUOUS and abbreviation not in _machine():
            with contextlib.suppress(ValueError):
                local = datetime.fromisoformat(stamp.decode()).replace(tzinfo=UTC)
                newest[abbreviation] = max(local, newest.get(abbreviation, local))
    for abbreviation, local in newest.items():
        fits = [
            minutes
            for minutes, _ in AMBIGUOUS[abbreviation]
            if -SETTLE_BEFORE <= written - (local - timedelta(minutes=minutes)) <= SETTLE_AFTER
        ]
        if len(fits) == 1:
            _SETTLED[abbreviation] = (fits[0], f", as {path.name}'s last write says")


def _look_beside(path: Path) -> None:
    """Note the zone a :data:`COMPANIONS` abbreviation in ``path``'s first
    ``_TAIL_BYTES`` says (:func:`settle` looks at a plain file's last ones)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            head = f.read(_TAIL_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile):
        return
    _note_beside(head, path)


def _note_beside(data: bytes, path: Path) -> None:
    """Note the zone the first :data:`COMPANIONS` abbreviation in ``data`` says."""
    for _, name in _STAMP.findall(data):
        found = COMPANIONS.get(name.decode())
        if found is not None and found[0] not in _BESIDE:
            ambiguous, minutes = found
            _BESIDE[ambiguous] = (minutes, f", as the {name.decode()} times in {path.name} say")


def reset() -> None:
    """Forget what logs settled (:func:`settle`): a new run's guesses."""
    _SETTLED.clear()
    _BESIDE.clear()


def described(name: str) -> str:
    """How an :data:`AMBIGUOUS` abbreviation was read, and what else it may mean."""
    minutes, why = _reading(name)
    places = ", ".join(f"{offset_name(m)} in {where}" for m, where in AMBIGUOUS[name])
    return f"{name}, read as {offset_name(minutes)}{why} ({name} is {places})"
