"""What every log filed by a syslog daemon has in common, whichever server sent it: a
line's time, host and program, and how to read the time.

rsyslog's and syslog-ng's traditional lines (``Dec  1 08:48:13 db1 program[pid]: ...``),
lines with RFC 3339 times (rsyslog's ``RSYSLOG_FileFormat``: ``2026-12-01T08:48:13.970+00:00
db1 program[pid]: ...``) and RFC 5424 lines (``<134>1 2026-12-01T08:48:13.970+00:00 db1
program pid msgid structured-data ...``, rsyslog's ``RSYSLOG_SyslogProtocol23Format``).
journald's, as ``journalctl`` prints them: ``-o short`` (``Dec 01 08:48:13 db1
program[pid]: ...``), ``short-precise`` (with microseconds), ``short-iso``
(``2026-12-01T08:48:13+0000``) and ``short-iso-precise``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from detector.formats import zones

# A syslog line's time: traditional (no year; journalctl's ``-o short-precise`` adds
# microseconds) or RFC 3339.
STAMP: Final = (
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)"
)
# A syslog line's head up to its message: the time, the sending host, the program and
# its process id, as ``program[pid]:``, ``program:`` or, as RFC 5424 has it (a priority
# first), ``program procid msgid structured-data`` (procid ``-`` where none is sent).
HEAD: Final = (
    rf"(?:<\d+>1 )?(?P<stamp>{STAMP}) (?P<sender>\S+) (?P<program>[^\s\[\]:]+)"
    r"(?:(?:\[(?P<pid>\d+)\])?:| (?P<procid>\d+|-) \S+ (?:-|\[[^\]]*\]))"
)
# Any program's syslog line.
ANY_LINE: Final = f"^{HEAD} "
# Where a syslog line begins, on bytes: a file of one-line records is cut before any.
LINE_START: Final = re.compile(rf"(?:<\d+>1 )?(?:{STAMP}) ".encode())


_ANY_LINE_RE: Final = re.compile(ANY_LINE)


def shaped(lines: list[str]) -> bool:
    """Every line (of a file's head) a syslog line, whichever program's."""
    written = [line for line in lines if line.strip()]
    return bool(written) and all(_ANY_LINE_RE.match(line) for line in written)


def heads_by_program(lines: Iterable[str], n: int) -> dict[str, list[str]]:
    """The first ``n`` syslog lines of each program among ``lines`` (a file the daemon
    shares among programs: ``/var/log/syslog``, ``/var/log/messages``), the programs in
    the order they first appear. Lines that are no syslog line are left out."""
    heads: dict[str, list[str]] = {}
    for line in lines:
        found = _ANY_LINE_RE.match(line)
        if found is not None:
            head = heads.setdefault(found["program"], [])
            if len(head) < n:
                head.append(line)
    return heads


def program(line: pl.Expr) -> pl.Expr:
    """The program whose syslog line ``line`` is (null for no syslog line)."""
    return line.str.extract_groups(ANY_LINE).struct.field("program")


def utc(stamp: pl.Expr, written: datetime | None) -> pl.Expr:
    """Syslog times on UTC: RFC 3339 ones by their offset, traditional ones (``Dec  1
    08:48:13``) in this machine's zone (the daemon's, beside the server) and the year
    that puts them at most a day after ``written`` (the file's last write)."""
    rfc3339 = (
        stamp.str.replace(r"Z$", "+00:00")
        .str.replace(r"([+-]\d\d)(\d\d)$", "$1:$2")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)
        .dt.convert_time_zone("UTC")
    )
    latest = (written or datetime.now(UTC)).astimezone(UTC) + timedelta(days=1)
    zone = local_zone()

    def in_year(year: int) -> pl.Expr:
        naive = (pl.lit(f"{year} ") + stamp).str.to_datetime(
            "%Y %b %e %H:%M:%S%.f", time_unit="us", strict=False
        )
        return naive.dt.replace_time_zone(
            zone, ambiguous="earliest", non_existent="null"
        ).dt.convert_time_zone("UTC")

    this_year = in_year(latest.year)
    traditional = (
        pl.when(this_year > pl.lit(latest)).then(in_year(latest.year - 1)).otherwise(this_year)
    )
    return pl.when(stamp.str.contains("T", literal=True)).then(rfc3339).otherwise(traditional)


def local_zone() -> str:
    """This machine's time zone by name (``TZ``, else ``/etc/localtime``'s), else UTC."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if not name:
        target = os.path.realpath("/etc/localtime")
        name = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"
    try:
        return zones.check_timezone(name)
    except ValueError:
        return "UTC"
