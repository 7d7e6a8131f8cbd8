"""Source and format stages: log files in, events out, with a summary.

The whole-file fast path is tried first where a format has one; otherwise, or when the
file is not clean, the file is read in record-aligned chunks with exact rejects.

:func:`read_events` returns every event of the input in one frame. :func:`event_batches`
gives the same events of PostgreSQL logs batch by batch, so that ``score`` need not hold
them all, however long the log.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, cast

import polars as pl

from detector import formats
from detector import schema as S
from detector.features import begins_statement
from detector.formats import mariadb, mariadb_audit, pg_cursors, pg_reads, zones
from detector.formats.pg_jsonlog import NotClean
from detector.formats.pg_sessions import Servers
from detector.reader import UNREADABLE, NotALogError, head_lines, last_written, read_chunks
from detector.rejects import Quarantine, QuarantineError, Reason


@dataclass
class Summary:
    """What a run read: events per format, context lines, rejects by reason, time span.

    An event here is a statement the client ran, counted once however many lines
    (relations, sub-statements) its log gives it, as the statements feature counts."""

    files: int = 0
    events: Counter[str] = field(default_factory=Counter)
    context: int = 0
    cut: int = 0  # events kept with their statement text cut (records over 1 MB)
    guessed: Counter[str] = field(default_factory=Counter)  # Parsed.guessed, summed
    outside: int = 0  # events left out by since/until
    history: int = 0  # of the events, those before since read as history (history_from)
    rejected: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    windows: int = 0
    flagged: int = 0
    left_out: list[Path] = field(default_factory=list)  # another output of one server
    # MariaDB audited statements, and of them those without a slow-log record (so without
    # volume), when both logs were read
    audited: int = 0
    unvolumed: int = 0
    # How far ahead of UTC a MariaDB audit log's clock was found (seconds; one offset
    # per side of a change to or from summer time), by the slow log's: its times were
    # set right by it.
    audit_ahead: list[int] = field(default_factory=list)
    # Per format: lines of reads (class READ), and of those the lines the log gives the
    # rows of: none of either is a setting of the server hiding the volume.
    reads: Counter[str] = field(default_factory=Counter)
    counted_reads: Counter[str] = field(default_factory=Counter)

    def paragraph(self) -> str:
        per_format = ", ".join(f"{n:,} {f}" for f, n in sorted(self.events.items())) or "none"
        rejected = sum(self.rejected.values())
        reasons = ", ".join(f"{n:,} {r}" for r, n in sorted(self.rejected.items()))
        span = (
            f"from {self.first:%Y-%m-%d %H:%M:%S} to {self.last:%Y-%m-%d %H:%M:%S} UTC"
            if self.first and self.last
            else "no time span (no events)"
        )
        outside = f", {self.outside:,} more outside --since/--until" if self.outside else ""
        if self.history:
            outside = f"; {self.history:,} of them before --since, read as history{outside}"
        text = (
            f"Read {self.files} file(s): {sum(self.events.values()):,} audit events ({per_format}{outside}), "
            f"{self.context:,} context lines (connections, durations, server messages), "
            f"{rejected:,} lines rejected{f' ({reasons})' if reasons else ''}; events span {span}."
        )
        if unplaced := self.rejected.get(Reason.UNKNOWN_ZONE, 0):
            text += (
                f" {unplaced:,} line(s) were timed in a zone abbreviation not known: give the"
                " server's log_timezone (SHOW log_timezone) with --postgres-timezone."
            )
        if self.guessed:
            read = "; ".join(
                f"{n:,} timed in {zones.described(name)}"
                for name, n in sorted(self.guessed.items())
            )
            text += (
                " Line(s) timed in a zone abbreviation several zones print were read by a"
                f" guess: {read}. If the server is elsewhere, give its log_timezone (SHOW"
                " log_timezone) with --postgres-timezone."
            )
        if self.cut:
            text += (
                f" {self.cut:,} statement(s) longer than 1 MB kept with their text cut"
                " (account, objects, class and rows whole)."
            )
        if self.left_out:
            names = ", ".join(p.name for p in self.left_out[:3])
            more = f" and {len(self.left_out) - 3} more" if len(self.left_out) > 3 else ""
            text += (
                f" Left out {len(self.left_out)} file(s), the same PostgreSQL server's "
                f"statements in a poorer output beside them: {names}{more}."
            )
        if self.unvolumed:
            text += (
                f" {self.unvolumed:,} of {self.audited:,} audited MariaDB statements have no"
                " slow-log record, so their rows and bytes are unknown and the windows'"
                " volumes leave them out (statements inside stored procedures never have"
                " one; more are left out by a long_query_time above 0, log_slow_rate_limit,"
                " log_slow_filter, log_slow_min_examined_row_limit or"
                " log_slow_admin_statements = OFF)."
            )
        if self.audit_ahead:
            offsets = " and ".join(zones.offset_name(s // 60) for s in self.audit_ahead)
            text += (
                f" The MariaDB audit log's times were the server's local time ({offsets};"
                " the log names no zone): they were set right by the slow log's, which are"
                " UTC. To read the audit log without the slow log, give --mariadb-timezone."
            )
        text += "".join(f" {said}" for said in self.blind_spots())
        if self.windows:
            text += f" Scored {self.windows:,} account-windows, {self.flagged:,} flagged."
        return text

    def count_reads(self, name: str, events: pl.DataFrame) -> None:
        """Count the reads among ``events`` of format ``name``, and those whose rows the
        log gives (:meth:`blind_spot`)."""
        read = (pl.col(S.CLASS) == "READ") & ~pl.col(S.EXPORT)  # pgAudit logs no export's rows
        counted = read & pl.col(S.ROWS).is_not_null()
        reads, known = events.select(read.sum().alias("r"), counted.sum().alias("c")).row(0)
        self.reads[name] += reads
        self.counted_reads[name] += known

    def blind_spots(self) -> list[str]:
        """:meth:`blind_spot` of each format with ``BLIND_AFTER`` statements or more."""
        return [
            said
            for name, statements in sorted(self.events.items())
            if statements >= BLIND_AFTER and (said := self.blind_spot(name)) is not None
        ]

    def blind_spot(self, name: str) -> str | None:
        """What the statements of format ``name`` read so far cannot show about reads,
        with the server setting that would show it: no read at all (``pgaudit.log``
        without ``read``), or no read's rows (``pgaudit.log_rows`` off, MariaDB's audit
        log read without its slow log). None when they show both."""
        family = _family(name)
        if not self.reads[name]:
            return (
                f"No read among the {self.events[name]:,} {name} statements: if the database "
                f"was read meanwhile, {_NO_READS.get(family, _NO_READS[''])}, so a bulk read "
                "or an export is not in this log at all."
            )
        if self.counted_reads[name] or (
            family == "mariadb-audit" and self.counted_reads[mariadb.SLOW]
        ):
            return None
        return (
            f"None of the {name} reads gives its rows ({_NO_ROWS.get(family, _NO_ROWS[''])}): "
            "a bulk read is judged by its statements, objects and exports only, not by how "
            "much it read."
        )


# Statements of a format from which a run's paragraph says what its settings hide.
BLIND_AFTER: Final = 20
_NO_READS: Final = {
    "pgaudit": "pgaudit.log lacks read (SELECT and COPY ... TO are its READ class)",
    "": "the audit settings leave reads out",
}
_NO_ROWS: Final = {
    "pgaudit": "set pgaudit.log_rows = on",
    "mariadb-audit": "give its slow log too, with long_query_time = 0",
    "": "this log does not carry a row count",
}


def _family(name: str) -> str:
    """``pgaudit`` for any pgAudit output, ``mariadb-audit`` for MariaDB's audit log in a
    file or through syslog, else the name."""
    if name.startswith("pgaudit-"):
        return "pgaudit"
    return "mariadb-audit" if name.startswith("mariadb-audit") else name


def files_to_read(
    paths: Sequence[Path], format_name: str = "auto", told: formats.Told = formats.Told()
) -> tuple[list[Path], list[Path]]:
    """``paths`` split into the files to read, in the order to read them, and those left
    out (:func:`one_output_per_server`); each directory's PostgreSQL logs read oldest
    first (:func:`in_time_order`). Each file's format is detected once, for both; with
    another format given by name, the files are read as given."""
    if format_name != "auto" and format_name not in formats.PG_OUTPUTS:
        return list(paths), []  # (``mapped`` needs its mapping to be detected)
    found: dict[Path, str | None] = {}
    for path in paths:
        try:
            found[path] = formats.get(format_name, path, told=told).name
        except (NotALogError, OSError):
            found[path] = None  # read, and refused, as before
    kept, left_out = (
        one_output_per_server(paths, found) if format_name == "auto" else (list(paths), [])
    )
    ordered = in_time_order(kept, found)
    if told.postgres_timezone is None:  # CST, IST: the logs' last writes may say which
        for path in ordered:
            if found.get(path) in formats.PG_OUTPUTS:
                zones.settle(path)
    return ordered, left_out


def one_output_per_server(
    paths: Sequence[Path], found: Mapping[Path, str | None]
) -> tuple[list[Path], list[Path]]:
    """``paths`` (of formats ``found``) split into the files to read and those left out:
    PostgreSQL writes the same statements to each of its outputs (stderr, csvlog,
    jsonlog), so of the files of one directory only those of the richest output there
    are read (jsonlog, then csvlog, then stderr), as ``serve`` does."""
    richest: dict[Path, str] = {}
    for name in reversed(formats.PG_OUTPUTS):  # poorest first: the richest is set last
        for path in paths:
            if found[path] == name:
                richest[path.parent] = name
    poorer = {p for p in paths if found[p] in formats.PG_OUTPUTS and richest[p.parent] != found[p]}
    return [p for p in paths if p not in poorer], [p for p in paths if p in poorer]


# A PostgreSQL log line's time as %m and %t print it, and csvlog and jsonlog hold it (and
# a syslog line's RFC 3339 time, where the prefix prints none).
_FIRST_TIME: Final = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?")


def in_time_order(paths: Sequence[Path], found: Mapping[Path, str | None]) -> list[Path]:
    """``paths`` (of formats ``found``) with each directory's PostgreSQL logs in the
    order they were written.

    A server's sessions go on from one of its files to the next, so its files must be
    read oldest first; the shell sorts ``postgresql-%a.log`` (Mon, Sat, Sun, ...) by name,
    not time. The files of one directory are ordered by the time of their first line
    (read from the file's head: cheap), the name breaking ties; files whose head shows
    no time (a prefix printing only ``%n``, a syslog line's time without a year) come
    before those that do, by their last write (``syslog.log.1`` before ``syslog.log``;
    gzip keeps a file's time), then by name. The PostgreSQL logs of a directory take the
    places its PostgreSQL logs had in ``paths``; other files stay where they were."""
    first = {p: _first_time(p) for p in paths if found[p] in formats.PG_OUTPUTS}

    def _time(path: Path) -> tuple[str, float, str]:
        written = None if first[path] else last_written(path)
        return first[path], written.timestamp() if written else 0.0, path.name

    # Each directory's PostgreSQL logs take the places its logs had, in time order.
    ordered = {
        d: iter(sorted((p for p in paths if p.parent == d and p in first), key=_time))
        for d in {p.parent for p in paths}
    }
    return [next(ordered[p.parent]) if p in first else p for p in paths]


def _first_time(path: Path) -> str:
    """The time on the first line of ``path`` that shows one, as written but with a space
    between date and time ("" if none)."""
    try:
        head = head_lines(path)
    except NotALogError:
        return ""
    for line in head:
        match = _FIRST_TIME.search(line)
        if match:
            return match.group().replace("T", " ")
    return ""


def read_events(
    paths: Sequence[Path],
    *,
    format_name: str = "auto",
    mapping: Path | None = None,
    told: formats.Told = formats.Told(),
    quarantine: Quarantine | None = None,
    on_file: Callable[[str], None] = lambda name: None,
    since: datetime | None = None,
    until: datetime | None = None,
    history_from: datetime | None = None,
) -> tuple[pl.DataFrame, Summary]:
    """Parse every file into one events frame sorted by time, and say what was read.

    ``since``/``until`` (UTC, inclusive/exclusive) keep only events in that period, so
    one log can be split into a training period and a period to score. With
    ``history_from`` (before ``since``) the events from then on are kept too, as history
    for the period's horizons, counted in ``Summary.history``.

    Each directory's PostgreSQL logs are read oldest first (:func:`in_time_order`), as
    one log: sessions, statements (a rotation between a statement's lines) and cursors
    go on from one file to the next. The formats are ``told`` what their servers'
    settings say (a MariaDB audit log's times are read in ``told.mariadb_timezone``).
    Unparsable lines go to ``quarantine``; a file that
    is not a log raises :class:`detector.reader.NotALogError`.
    """
    quarantine = quarantine or Quarantine(None)
    paths, left_out = files_to_read(paths, format_name, told)
    summary = Summary(files=len(paths), left_out=left_out)
    frames: list[pl.DataFrame] = []
    servers = Servers()
    names: set[str] = set()
    last = _last_of_each_server(paths)
    # A server's PostgreSQL logs, read so far: put together once its last one is read
    held: dict[Path, list[tuple[formats.Format, pl.DataFrame]]] = {}
    # A MariaDB server's logs, read so far: its audit log's times may be its local clock,
    # known only once the slow log's are beside them (mariadb.on_utc), so they are kept
    # by since/until after that, and until then within a time zone's reach of it.
    unclocked: list[pl.DataFrame] = []
    for i, path in enumerate(paths):
        on_file(f"reading {path.name}")
        try:
            fmt = file_format(path, format_name, told, servers, mapping)
            events = _read_file(fmt, path, quarantine, summary)
        except QuarantineError:
            raise
        except UNREADABLE as exc:  # a truncated or corrupt compressed file
            raise NotALogError(f"{path}: cannot be read to its end ({exc})") from exc
        names.add(mariadb.LOG_OF_FORMAT.get(fmt.name, fmt.name))
        if fmt.name in formats.PG_OUTPUTS:
            held.setdefault(path.parent, []).append((fmt, events))
        elif fmt.name in mariadb.LOG_OF_FORMAT:
            events = _statements(fmt, events)
            unclocked.append(_within_reach(events, since, until, summary, history_from))
        else:
            events = _statements(fmt, events)
            frames.append(_keep(events, since, until, summary, fmt.name, history_from))
        if last[path.parent] == i and path.parent in held:
            # A rotation may fall between a statement's lines, or a cursor's DECLARE and
            # FETCH: the server's files are one log, as event_batches reads them.
            files = held.pop(path.parent)
            fmt = files[-1][0]
            events = _statements(fmt, pl.concat([events for _, events in files]))
            frames.append(_keep(events, since, until, summary, fmt.name, history_from))
    summary.rejected = Counter(quarantine.counts)
    if unclocked:
        # MariaDB's audit log rotates by size (1 MB by default): a statement the rotation
        # cut in two is one statement too.
        found, summary.audit_ahead = mariadb.on_utc(mariadb_audit.rejoin(pl.concat(unclocked)))
        log = pl.col(S.SOURCE_FORMAT)
        frames += [
            _keep(found.filter(log == name), since, until, summary, name, history_from)
            for name in mariadb.LOGS
            if name in names
        ]
    events = pl.concat(frames) if frames else S.empty()
    # One MariaDB server's audit and slow logs, one Snowflake account's query and access
    # histories: one event per statement, with what each of its records knows.
    events = formats.join(events)
    events = events.sort(S.TIME, maintain_order=True)
    if {mariadb.AUDIT, mariadb.SLOW} <= names:
        summary.audited, summary.unvolumed = mariadb.without_volume(events)
    if events.height:
        summary.first, summary.last = events[S.TIME].min(), events[S.TIME].max()  # type: ignore[assignment]
    return events, summary


def file_format(
    path: Path,
    format_name: str,
    told: formats.Told,
    servers: Servers,
    mapping: Path | None = None,
) -> formats.Format:
    """The format reading ``path``: for PostgreSQL's stderr, one that goes on with the
    sessions left open by the files of its directory read before (``servers``): a
    server's sessions outlive its log files' rotations."""
    fmt = formats.get(format_name, path, mapping=mapping, told=told)
    servers.attach(fmt, str(path.parent))
    return fmt


def _last_of_each_server(paths: Sequence[Path]) -> dict[Path, int]:
    """The index in ``paths`` of each server's last file: the files of a directory are
    one server's (as for :class:`detector.formats.pg_sessions.Servers`)."""
    return {path.parent: i for i, path in enumerate(paths)}


def _read_file(
    fmt: formats.Format, path: Path, quarantine: Quarantine, summary: Summary
) -> pl.DataFrame:
    """All events of one file as parsed, chunk after chunk (:func:`_statements` makes
    them statements); rejects quarantined, context counted."""
    parts = []
    for parsed in _parse_file(fmt, path):
        parts.append(parsed.events)
        summary.context += parsed.context
        summary.cut += parsed.cut
        summary.guessed.update(parsed.guessed)
        quarantine.add(str(path), parsed.rejects)
    return pl.concat(parts) if parts else S.empty()


def _statements(fmt: formats.Format, events: pl.DataFrame) -> pl.DataFrame:
    """The parsed ``events`` of a log (of format ``fmt``), whole: one event per statement
    (:func:`merge_split_statements`), and the format's whole-log step (``finish``)."""
    events = merge_split_statements(events)
    finish = getattr(fmt, "finish", None)
    return events if finish is None else finish(events)


def merge_split_statements(events: pl.DataFrame, *, outer: bool = True) -> pl.DataFrame:
    """One event per statement even where a chunk boundary (or a rotation) split its
    log lines.

    Within one log, events with the same session and statement id are one statement
    (pgAudit logs a statement once per relation): their objects are merged and the
    first event's rows, counted once, are kept; of a statement's nested reads only the
    outermost counts its rows (:func:`detector.formats.pg_reads.count_outer_reads`).
    MariaDB's audit log has a rule of its own (:func:`detector.formats.mariadb_audit.rejoin`):
    a statement's TABLE records and its QUERY record parsed apart, their session known
    with or without its login. With ``outer`` false, nested reads are left for a later
    call (the live engine's statements whose lines may go on in its next read).
    """
    events = mariadb_audit.rejoin(events)
    key = [S.SESSION, S.STATEMENT_ID]
    split = (
        pl.struct(key).is_duplicated()
        & pl.col(S.STATEMENT_ID).is_not_null()
        & pl.col(S.SOURCE_FORMAT).ne_missing(mariadb.AUDIT)
    )
    twice = events.filter(split)
    outer_reads = pg_reads.count_outer_reads if outer else (lambda frame: frame)
    if twice.is_empty():
        return outer_reads(events)
    merged = twice.group_by(key, maintain_order=True).agg(
        pl.all().exclude(S.OBJECTS).first(),
        pl.col(S.OBJECTS).explode().drop_nulls().unique(maintain_order=True),
    )
    return outer_reads(
        pl.concat([events.filter(~split), merged.select(events.columns)]).sort(
            S.TIME, maintain_order=True
        )
    )


def _parse_file(fmt: formats.Format, path: Path) -> Iterator[formats.Parsed]:
    """Every chunk of ``path`` parsed: by the format's whole-file fast path when it has
    one and the file is clean, else chunk by chunk with exact rejects and line numbers."""
    fast = getattr(fmt, "fast_batches", None)
    if fast is not None:
        try:
            done = list(fast(path))
        except (pl.exceptions.PolarsError, NotClean):
            pass
        else:
            yield from done
            return
    for chunk in read_chunks(path, getattr(fmt, "record_start", None)):
        yield fmt.parse(chunk)


# The formats event_batches reads; the others keep whole-file steps (joins of two logs,
# records put back together) that need every event at once.
STREAMED_FORMATS: Final = frozenset(formats.PG_OUTPUTS)
PARSERS: Final = 2  # chunks parsed at once: one per core of a small server
# Chunks of 16 MiB: less memory and fewer page faults than the whole-file reader's 64 MiB.
STREAM_CHUNK_BYTES = 16 * 1024 * 1024


def streamable(paths: Sequence[Path], format_name: str, told: formats.Told) -> bool:
    """True when every file is a PostgreSQL log, so :func:`event_batches` can read them."""
    return all(formats.get(format_name, path, told=told).name in STREAMED_FORMATS for path in paths)


def event_batches(
    paths: Sequence[Path],
    summary: Summary,
    *,
    format_name: str = "auto",
    told: formats.Told = formats.Told(),
    quarantine: Quarantine | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    history_from: datetime | None = None,
    hold: timedelta = timedelta(minutes=5),
    on_file: Callable[[str], None] = lambda name: None,
) -> Iterator[pl.DataFrame]:
    """The events :func:`read_events` gives for PostgreSQL logs, batch by batch as the
    files are read, so that only a few chunks' events are in memory at once.

    Together the batches hold the same events as :func:`read_events`' frame (in file
    order, not sorted by time): statements whose lines fell in two chunks, or two files
    of a server (a directory), are merged and each ``FETCH`` gets its cursor's objects
    before an event is given out, which is once its server's log has gone ``hold`` past
    it (the lines of one statement are logged together).
    ``summary`` is filled in as the files are read.
    """
    quarantine = quarantine or Quarantine(None)
    paths, summary.left_out = files_to_read(paths, format_name, told)
    summary.files = len(paths)
    servers = Servers()
    last = _last_of_each_server(paths)
    # Each server's statements go on from one of its files to the next: a rotation may
    # fall between a statement's lines, or a cursor's DECLARE and FETCH.
    held: dict[Path, _Statements] = {}
    for i, path in enumerate(paths):
        on_file(f"reading {path.name}")
        fmt = file_format(path, format_name, told, servers)
        statements = held.setdefault(path.parent, _Statements(hold))
        try:
            for parsed in _parse_stream(fmt, path):
                summary.context += parsed.context
                summary.cut += parsed.cut
                summary.guessed.update(parsed.guessed)
                quarantine.add(str(path), parsed.rejects)
                for ready in statements.add(parsed.events):
                    yield _keep(ready, since, until, summary, fmt.name, history_from)
        except QuarantineError:
            raise
        except UNREADABLE as exc:  # a truncated or corrupt compressed file
            raise NotALogError(f"{path}: cannot be read to its end ({exc})") from exc
        if last[path.parent] == i:
            for ready in held.pop(path.parent).close():
                yield _keep(ready, since, until, summary, fmt.name, history_from)
    summary.rejected = Counter(quarantine.counts)


def _in_period(
    since: datetime | None,
    until: datetime | None,
    history_from: datetime | None,
    margin: timedelta = timedelta(0),
) -> pl.Expr:
    """Events from ``since`` (or ``history_from``, if earlier) to ``until``, each end
    widened by ``margin``; any time where an end is not given."""
    start = since if since is None or history_from is None else min(since, history_from)
    within = pl.lit(True)
    if start is not None:
        within &= pl.col(S.TIME) >= start - margin
    if until is not None:
        within &= pl.col(S.TIME) < until + margin
    return within


def _within_reach(
    events: pl.DataFrame,
    since: datetime | None,
    until: datetime | None,
    summary: Summary,
    history_from: datetime | None = None,
) -> pl.DataFrame:
    """``events`` that may fall within since/until (from ``history_from`` if given) once
    their clock is known: within a time zone's offset from UTC of it
    (:data:`detector.formats.mariadb.MAX_OFFSET`). The others are counted outside."""
    kept = events.filter(_in_period(since, until, history_from, mariadb.MAX_OFFSET))
    begins = begins_statement()
    summary.outside += events.filter(begins).height - kept.filter(begins).height
    return kept


def _keep(
    events: pl.DataFrame,
    since: datetime | None,
    until: datetime | None,
    summary: Summary,
    name: str,
    history_from: datetime | None = None,
) -> pl.DataFrame:
    """``events`` within since/until (from ``history_from`` if given), counted in
    ``summary`` by statement: ``COPY (SELECT ...) TO`` is one, not its two lines."""
    kept = events.filter(_in_period(since, until, history_from))
    begins = begins_statement()
    statements = kept.filter(begins).height
    summary.outside += events.filter(begins).height - statements
    summary.events[name] += statements
    summary.count_reads(name, kept)
    if since is not None and history_from is not None and history_from < since:
        summary.history += kept.filter(begins & (pl.col(S.TIME) < since)).height
    if kept.height:
        first, last = kept[S.TIME].min(), kept[S.TIME].max()
        summary.first = min(summary.first or first, first)  # type: ignore[type-var,assignment]
        summary.last = max(summary.last or last, last)  # type: ignore[type-var,assignment]
    return kept


def _parse_stream(fmt: formats.Format, path: Path) -> Iterator[formats.Parsed]:
    """Every chunk of ``path`` parsed (exact rejects and line numbers), in order.

    ``PARSERS`` chunks are parsed at once, in threads (Polars releases the GIL), and
    at most one more is read ahead: memory is bounded by the chunk size, not the file.
    """
    chunks = read_chunks(path, getattr(fmt, "record_start", None), STREAM_CHUNK_BYTES)
    # A format carrying state from chunk to chunk (stderr sessions) parses each alone in
    # the threads, and carries in file order here.
    parse = getattr(fmt, "parse_alone", fmt.parse)
    carry: Callable[[formats.Parsed], formats.Parsed] = getattr(fmt, "carry", lambda p: p)
    with ThreadPoolExecutor(max_workers=PARSERS) as pool:
        parsing: deque[Future[formats.Parsed]] = deque()
        for chunk in chunks:
            parsing.append(pool.submit(parse, chunk))
            if len(parsing) > PARSERS:
                yield carry(parsing.popleft().result())
        while parsing:
            yield carry(parsing.popleft().result())


class _Statements:
    """One server's events with its statements whole: the lines of a statement that the
    parser's batches, or a rotation to the server's next file, split are merged
    (:func:`merge_split_statements`) and each ``FETCH`` gets its cursor's objects
    (:func:`detector.formats.pgaudit.finish`), as for the whole log at once. Events are
    given out once the log has gone ``hold`` past them."""

    def __init__(self, hold: timedelta) -> None:
        self.hold = hold
        self.pending: pl.DataFrame | None = None
        self.cursors = pg_cursors.no_cursors()

    def add(self, events: pl.DataFrame) -> Iterator[pl.DataFrame]:
        if events.is_empty():
            return
        both = events if self.pending is None else pl.concat([self.pending, events])
        # Nested reads are told from their callers once given out: the pending events'
        # statements may go on in the next chunk (a CALL's line after its reads).
        both = merge_split_statements(both, outer=False)
        cut = cast(datetime, both[S.TIME].max()) - self.hold
        old = pl.col(S.TIME) < cut
        ready, self.pending = both.filter(old), both.filter(~old)
        if ready.height:
            yield self._finish(ready)

    def close(self) -> Iterator[pl.DataFrame]:
        if self.pending is not None and self.pending.height:
            yield self._finish(self.pending)
        self.pending = None

    def _finish(self, events: pl.DataFrame) -> pl.DataFrame:
        events = pg_reads.count_outer_reads(events)
        self.cursors = pg_cursors.declared_cursors(events, self.cursors)
        return pg_cursors.fetch_objects(events, self.cursors)
