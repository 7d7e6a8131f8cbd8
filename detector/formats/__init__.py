"""Log formats: each turns chunks of a file's lines into events (see ``base.Format``).

``detect`` picks a format from a file's first lines; ``get`` builds one by name.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb, snowflake, syslog
from detector.formats.aws_das import AwsDas
from detector.formats.base import Format, Parsed
from detector.formats.mapped import MappedFormat, Mapping, MappingError
from detector.formats.mariadb_audit import MariadbAudit
from detector.formats.mariadb_slow import MariadbSlow
from detector.formats.mariadb_syslog import MariadbAuditSyslog
from detector.formats.mongodb_audit import MongodbAudit
from detector.formats.mssql_audit import MssqlAuditCsv, MssqlAuditJson
from detector.formats.mysql_audit import MysqlAudit
from detector.formats.percona_audit import PerconaAudit
from detector.formats.pg_csvlog import PgCsvlog
from detector.formats.pg_jsonlog import PgJsonlog
from detector.formats.pg_stderr import PgStderr
from detector.formats.pg_syslog import PgSyslog
from detector.reader import HEAD_SCAN_BYTES, NotALogError, head_lines, head_of, not_text

# The csv module refuses a field over 131,072 characters: a statement that long (an IN
# list of thousands of ids) in a csvlog or an exported audit CSV would stop a run. Lines
# are bounded where they are read (the 256 KiB head, chunks, max_line_bytes in serve).
csv.field_size_limit(2**31 - 1)  # the most a C long holds everywhere


@dataclass(frozen=True)
class Told:
    """What a log does not say of itself and its server's settings do: PostgreSQL's
    ``log_line_prefix`` (stderr) and ``log_timezone`` (where the abbreviation it prints
    names several zones), the time zone of a MariaDB server's clock (its audit log's
    times)."""

    log_line_prefix: str | None = None
    mariadb_timezone: str | None = None
    postgres_timezone: str | None = None


# Every native format by name, most specific first: detection tries them in this order.
_NATIVE: Final[dict[str, Callable[[Told], Format]]] = {
    "pgaudit-jsonlog": lambda told: PgJsonlog(told.postgres_timezone),
    "pgaudit-csvlog": lambda told: PgCsvlog(told.postgres_timezone),
    # Before stderr: a permissive prefix (``%q%u@%d ``) fits a syslog line's head too.
    "pgaudit-syslog": lambda told: PgSyslog(told.log_line_prefix, told.postgres_timezone),
    "mariadb-audit-syslog": lambda told: MariadbAuditSyslog(),
    "pgaudit-stderr": lambda told: PgStderr(told.log_line_prefix, told.postgres_timezone),
    "mariadb-audit": lambda told: MariadbAudit(told.mariadb_timezone),
    "mariadb-slow": lambda told: MariadbSlow(),
    "snowflake-query-history": lambda told: snowflake.QueryHistory(),
    "snowflake-access-history": lambda told: snowflake.AccessHistory(),
    "mysql-audit": lambda told: MysqlAudit(),
    "percona-audit": lambda told: PerconaAudit(),
    "aws-das": lambda told: AwsDas(),
    "mssql-audit-csv": lambda told: MssqlAuditCsv(),
    "mssql-audit-json": lambda told: MssqlAuditJson(),
    "mongodb-audit": lambda told: MongodbAudit(),
}
NATIVE: Final = tuple(_NATIVE)
CHOICES: Final = ("auto", *NATIVE, "mapped")
# PostgreSQL's outputs of the same events, richest first: one server's logs in two of
# them are the same statements twice (MariaDB's audit and slow logs complement each other).
PG_OUTPUTS: Final = ("pgaudit-jsonlog", "pgaudit-csvlog", "pgaudit-stderr", "pgaudit-syslog")
# Formats whose files complement each other (one server's or account's logs): when a run
# reads both, their events are joined into one per statement.
# The join is told whether events are filed as the live engine files them (MariaDB
# slow-log records at their end, see ``detector.live.engine``); a batch read has put a
# MariaDB audit log's times on UTC already (``ingest.read_events``: ``mariadb.on_utc``),
# the live engine's join sets the clock of what it closes.
JOINS: Final[tuple[tuple[frozenset[str], Callable[[pl.DataFrame, bool], pl.DataFrame]], ...]] = (
    (
        frozenset({mariadb.AUDIT, mariadb.SLOW}),
        lambda events, live: mariadb.join_slow(events, slow_at_end=live, on_utc=not live),
    ),
    (
        frozenset({snowflake.QUERY_HISTORY, snowflake.ACCESS_HISTORY}),
        lambda events, live: snowflake.join_access(events),
    ),
)

__all__ = [
    "CHOICES",
    "JOINS",
    "Format",
    "MappingError",
    "Parsed",
    "Told",
    "detect",
    "get",
    "join",
    "native",
]


def native(name: str, told: Told = Told()) -> Format:
    """A native format by name (``NATIVE``), told what its server's settings say."""
    return _NATIVE[name](told)


def join(events: pl.DataFrame, *, live: bool = False) -> pl.DataFrame:
    """``events`` with the records of complementary formats (``JOINS``) joined;
    ``live`` for events filed by the live engine."""
    present = set(events[S.SOURCE_FORMAT].unique().to_list())
    for names, joined in JOINS:
        if names <= present:
            events = joined(events, live)
    return mariadb.settle(events)


def get(
    name: str,
    path: Path,
    *,
    mapping: Path | None = None,
    told: Told = Told(),
) -> Format:
    """The format for ``path``: ``name`` if given, else detected from its first lines.

    Raises :class:`NotALogError` when ``auto`` recognises nothing, and
    :class:`MappingError` for a bad mapping file.
    """
    if mapping is not None or name == "mapped":
        if mapping is None:
            raise MappingError("--format mapped needs --mapping FILE")
        return MappedFormat(Mapping.load(mapping))
    head = head_lines(path)
    if name == "auto":
        if (why := not_text(path)) is not None:
            raise NotALogError(f"{path}: {why}")
        try:
            name = detect(path, head, told.log_line_prefix)
        except NotALogError:
            if not syslog.shaped(head):
                raise
            name, head = _in_shared_syslog(path, told, SYSLOG_CARRIED)
    elif name in SYSLOG_CARRIED and syslog.shaped(head) and not native(name, told).sniff(head):
        # Named, the file is read as that format whatever its head: set by the database's
        # lines where the head is other programs' (a file too short to tell: its own).
        with contextlib.suppress(OtherProgramsOnly):
            head = _in_shared_syslog(path, told, (name,))[1]
    return configured(name, head, told)


def configured(name: str, head: list[str], told: Told = Told()) -> Format:
    """The native format ``name``, set by ``head`` where it learns from a file's first
    lines (a ``log_line_prefix``, a CSV header)."""
    fmt = native(name, told)
    configure = getattr(fmt, "configure", None)
    if configure is not None:
        configure(head)
    return fmt


# Formats a syslog daemon files, in /var/log/syslog or /var/log/messages among every
# other program's lines, or in a file of their own.
SYSLOG_CARRIED: Final = ("pgaudit-syslog", "mariadb-audit-syslog")
HEAD_LINES: Final = 20
# Lines of a shared syslog file looked through for a database's (with HEAD_SCAN_BYTES:
# about 16 MiB).
SHARED_SCAN_LINES: Final = 200_000


def in_shared_syslog(
    lines: list[str], told: Told = Told(), names: tuple[str, ...] = SYSLOG_CARRIED
) -> tuple[str, list[str]] | None:
    """The format (one of ``names``) and head of the first program among syslog
    ``lines`` whose own lines are a database's: a file the daemon shares (``/var/log/syslog``
    begins with cron's, the kernel's, rsyslogd's lines, the database's come later)."""
    for head in syslog.heads_by_program(lines, HEAD_LINES).values():
        for name in names:
            if native(name, told).sniff(head):
                return name, head
    return None


class OtherProgramsOnly(NotALogError):
    """A file of syslog lines none of whose programs reads as a database's: other
    programs' only (/var/log/syslog just after its rotation, before the database has
    written), or too few of the database's to tell."""


def _in_shared_syslog(path: Path, told: Told, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """:func:`in_shared_syslog` of ``path``'s first 16 MiB, or :class:`OtherProgramsOnly`."""
    lines = head_lines(path, SHARED_SCAN_LINES, HEAD_SCAN_BYTES)
    found = in_shared_syslog(lines, told, names)
    if found is None:
        programs = ", ".join(syslog.heads_by_program(lines, 1))
        raise OtherProgramsOnly(
            f"{path}: syslog lines, but no program's in its first {len(lines):,} lines read "
            f"as {' or '.join(names)} (programs: {programs}); serve reads a database's lines "
            "filed there later from then on"
        )
    return found


def shared_syslog_data(
    data: bytes, head: list[str], told: Told = Told()
) -> tuple[str, list[str]] | None:
    """:func:`in_shared_syslog` of a stream's first bytes (standard input, a pushed
    body), when its ``head`` is syslog lines."""
    if not syslog.shaped(head):
        return None
    lines = head_of(io.BytesIO(data), SHARED_SCAN_LINES, HEAD_SCAN_BYTES)
    return in_shared_syslog(lines, told)


# How to tell trovewatch what a log is when it cannot tell: on the command line; a pushed
# body (POST /v1/events) says it in its request.
TELL_ON_THE_COMMAND_LINE: Final = "use --format, --log-line-prefix or --mapping"


def detect(
    path: Path,
    head: list[str],
    log_line_prefix: str | None = None,
    tell: str = TELL_ON_THE_COMMAND_LINE,
) -> str:
    """The name of the native format whose shape the first lines of ``path`` have
    (stderr lines with ``log_line_prefix`` when given, else with a common prefix); when
    none, :class:`NotALogError`, ending with ``tell``: how to name the format."""
    if not any(s.strip() for s in head):
        raise NotALogError(f"{path}: empty, nothing to read")
    for name in NATIVE:
        if native(name, Told(log_line_prefix)).sniff(head):
            return name
    first = next(s for s in head if s.strip())
    raise NotALogError(
        f"{path}: not an audit log in a format trovewatch knows ({', '.join(NATIVE)}); "
        f"first line: {first[:80]!r}; {tell}"
    )
