"""PostgreSQL output through syslog (``log_destination = 'syslog'``) carrying pgAudit
records, as a syslog daemon files it: rsyslog's and syslog-ng's traditional lines
(``Dec  1 08:48:13 db1 postgres[26401]: [9-1] ...``) or lines with RFC 3339 times
(rsyslog's ``RSYSLOG_FileFormat``: ``2026-12-01T08:48:13.970+00:00 db1 postgres[26401]:
[9-1] ...``) or as RFC 5424 has them (``<134>1 2026-12-01T08:48:13.970+00:00 db1
postgres 26401 - -  [9-1] ...``, rsyslog's ``RSYSLOG_SyslogProtocol23Format``).

What PostgreSQL 15 sends (``write_syslog``), as a real server's output through rsyslog
shows it:

* each message is what stderr would print, ``log_line_prefix`` and all, numbered per
  process (``syslog_sequence_numbers``, on by default): ``[9-1] 2026-12-01 ... LOG:  AUDIT: ...``;
  with it off, a message's lines are numbered ``[1]``, ``[2]``... and the messages only
  by the order of their process's lines (:func:`unnumbered` tells which from the head);
* a message of several lines is sent one line at a time (``syslog_split_messages``, on by
  default): ``[12-2]``, ``[12-3]``... A statement's further lines begin with the tab that
  stderr puts there, which the daemon writes as ``#011``; a follower (``STATEMENT:``,
  ``HINT:``) begins with its own prefix;
* a line longer than 900 bytes is cut into parts, at a space where there is one (the
  space begins the next part: ``[9-2]  170, 171, ...``), else anywhere; the parts are
  joined back here as they were.

Other processes' lines may come between a message's lines. The lines are put back
together as the stderr lines they were, each message's lines one after the other, and
read by the stderr parser (:class:`detector.formats.pg_stderr.PgStderr`): the same
prefixes, sessions and events. Lines of other programs in the same file (a shared
``/var/log/syslog``) are counted as context, not read. With ``syslog_split_messages``
off, a message is one syslog line whose newlines the daemon wrote as ``#012``. A
``log_line_prefix`` without the time or the process id takes them from the syslog line
(:class:`Stamps`).

Chunks (and ``serve``'s reads) end only where no message is unfinished, as far as the
lines written so far show, with :data:`SETTLED_LINES` lines written after the cut
(:class:`MessageStart`). A message whose next line comes later than that, or whose first
line is in an earlier file than its further lines, is not read whole: its orphaned lines
are quarantined as ``truncated``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import polars as pl

from detector.formats import syslog
from detector.formats.base import Parsed
from detector.formats.pg_stderr import (
    COMMON_PREFIXES,
    PgStderr,
    guess_prefix,
    prefix_tokens,
)
from detector.formats.syslog import utc
from detector.reader import Chunk, last_written
from detector.rejects import Reason, rejects, with_raw_lines

# A syslog line of a program's message numbered as PostgreSQL numbers them: the time,
# host, program[pid]: (or, as RFC 5424 has it, with a priority first: program pid msgid
# structured-data), and [sequence-part] (or [sequence], unsplit).
_NUMBER: Final = r"\[(?P<seq>\d+)(?:-(?P<part>\d+))?\] "
_HEAD: Final = "^(?P<_syslog>" + syslog.HEAD + " {1,2}"
HEADER: Final = _HEAD + _NUMBER + ")"
# With syslog_sequence_numbers off, a message's lines are numbered [1], [2], ... (the
# number is then ``seq``), and with syslog_split_messages off too, not at all.
UNNUMBERED: Final = _HEAD + f"(?:{_NUMBER})?)"
# HEADER on bytes, for cutting chunks and reads ("^": at the position given, after a newline).
_PIECE: Final = re.compile(HEADER.encode(), re.MULTILINE)
_LOOSE_PIECE: Final = re.compile(UNNUMBERED.encode(), re.MULTILINE)
# How far after a line the lines of a message begun before it may still come: between a
# message's lines (one process's syslog calls, one after the other) come other processes'.
LOOKAHEAD: Final = 256
# Lines that must follow a cut in what is written so far: a message's next line may still
# be on its way while others' are written (serve waits for them, or for the file to stand
# still for idle_flush).
SETTLED_LINES: Final = 16


class MessageStart:
    """Where chunks and reads of syslog lines may be cut (:class:`detector.reader.
    RecordStart`): before a message's first line (or another program's line) past which
    no further line of a message begun before it comes, in the next :data:`LOOKAHEAD`
    lines, at least :data:`SETTLED_LINES` of them written. ``programs``: PostgreSQL's,
    sending without sequence numbers (a further line continues the message its process
    sent last), or None for numbered messages."""

    def __init__(self, programs: frozenset[str] | None = None) -> None:
        self._programs = None if programs is None else {p.encode() for p in programs}

    def match(self, buf: bytes, pos: int, /) -> bool:
        begun: set[tuple[bytes, ...]] = set()
        start = pos
        for seen in range(LOOKAHEAD + 1):
            piece = self._piece(buf, start)
            if piece is not None:
                key, first = piece
                if first:
                    begun.add(key)
                elif key not in begun:
                    return False  # a line of a message begun before pos
            end = buf.find(b"\n", start)
            if end < 0:
                return seen > SETTLED_LINES
            start = end + 1
        return True

    def _piece(self, buf: bytes, pos: int) -> tuple[tuple[bytes, ...], bool] | None:
        """The message of PostgreSQL's line at ``pos`` and whether it begins it."""
        if self._programs is None:
            piece = _PIECE.match(buf, pos)
            if piece is None:
                return None
            key = (piece["sender"], piece["pid"] or piece["procid"], piece["seq"])
            return key, piece["part"] in (None, b"1")
        piece = _LOOSE_PIECE.match(buf, pos)
        if piece is None or piece["program"] not in self._programs:
            return None
        return (piece["sender"], piece["pid"] or piece["procid"]), piece["seq"] in (None, b"1")


# PostgreSQL's PG_SYSLOG_LIMIT: a longer line is sent in parts of at most this many bytes.
SPLIT_BYTES: Final = 900
# A tab as journalctl's text output (-o short, short-iso) writes it.
JOURNALCTL_TAB: Final = " " * 8
# Control characters the daemon escapes as #ooo (rsyslog's default): tab, newline, CR.
_ESCAPES: Final = (("#011", "\t"), ("#012", "\n"), ("#015", "\r"))


# Prefixes set for syslog, which prints the time and process id itself (pgBadger's for
# syslog first), after the stderr ones (:data:`pg_stderr.COMMON_PREFIXES`).
SYSLOG_PREFIXES: Final = (
    *COMMON_PREFIXES,
    "user=%u,db=%d,app=%a,client=%h ",
    "db=%d,user=%u,app=%a,client=%h ",
    "user=%u,db=%d ",
    "%q%u@%d %r %a ",
    "%q%u@%d ",
    "",
)


class PgSyslog(PgStderr):
    name = "pgaudit-syslog"
    record_start = MessageStart()

    def __init__(self, log_line_prefix: str | None = None, timezone: str | None = None) -> None:
        super().__init__(log_line_prefix, timezone)
        self._told = log_line_prefix  # as the server prints it, without the stamps
        self._stamps = Stamps()
        # PostgreSQL's programs sending unnumbered messages (configure), or None
        self._programs: frozenset[str] | None = None
        if log_line_prefix is not None:
            self._prefixed(log_line_prefix)

    def sniff(self, head: list[str]) -> bool:
        """The head is PostgreSQL's syslog lines whose messages are stderr lines."""
        told = (self._told,) if self._told is not None else SYSLOG_PREFIXES
        lines = _messages(head, unnumbered(head, told) or None)
        return bool(lines) and guess_prefix(lines, told) is not None

    def configure(self, head: list[str]) -> None:
        """Learn from the file's head whether messages are numbered, and pick the prefix
        unless the user gave one."""
        told = (self._told,) if self._told is not None else SYSLOG_PREFIXES
        self._programs = unnumbered(head, told) or None
        self.record_start = MessageStart(self._programs)
        if self.log_line_prefix is None:
            found = guess_prefix(_messages(head, self._programs), SYSLOG_PREFIXES)
            self._prefixed(found or "%m [%p] ")

    def _prefixed(self, prefix: str) -> None:
        """Read messages printed with ``prefix``; one without the time (``%m``, ``%t``,
        ``%n``) or the process id (``%p``) takes them from the syslog line."""
        escapes = {token[-1] for token in prefix_tokens(prefix) if token.startswith("%")}
        self._stamps = Stamps(time=not escapes & set("mtn"), pid="p" not in escapes)
        self.log_line_prefix = self._stamps.prefix + prefix

    def parse_alone(self, chunk: Chunk) -> Parsed:
        """Events of ``chunk`` by itself, its messages read as the stderr lines they are."""
        stamps = replace(self._stamps, written=last_written(chunk.path))
        lines, orphans, others = unwrap(chunk.lines, stamps, self._programs)
        stderr = Chunk(chunk.path, b"", chunk.first_line, _lines=lines)
        parsed = super().parse_alone(stderr)
        # Quarantined as the file has them: the syslog lines, not the stderr lines.
        found = pl.concat([parsed.rejects.with_columns(line=pl.lit(None, pl.String)), orphans])
        found = found.sort("line_no")
        parsed.rejects = with_raw_lines(found, lambda: chunk.lines)
        parsed.context += others
        return parsed


@dataclass(frozen=True)
class Stamps:
    """What of the syslog line goes before each message: its time (as ``%m`` prints
    it, on UTC) and its process id (as ``[%p]``), for a ``log_line_prefix`` without them.

    A traditional syslog time has no year and no zone: it is this machine's local time
    (the daemon's, beside the server), in the year that puts it at most a day after
    ``written``, the file's last write.
    """

    time: bool = False
    pid: bool = False
    written: datetime | None = None

    @property
    def prefix(self) -> str:
        return ("%m " if self.time else "") + ("[%p] " if self.pid else "")

    def expr(self) -> pl.Expr:
        """The text to put before a message's lines, from ``_stamp`` and ``_pid``."""
        parts = []
        if self.time:
            parts.append(
                utc(pl.col("_stamp"), self.written)
                .dt.strftime("%Y-%m-%d %H:%M:%S%.6f UTC ")
                .fill_null("-")
            )
        if self.pid:
            parts.append("[" + pl.col("_pid") + "] ")
        return pl.concat_str(parts)


def unnumbered(head: list[str], prefixes: tuple[str, ...]) -> frozenset[str]:
    """The programs whose lines among a file's first are PostgreSQL's messages sent with
    ``syslog_sequence_numbers`` off; empty for numbered messages.

    PostgreSQL ends each message with a newline, so with ``syslog_split_messages`` on
    (the default) every line is numbered: ``[1]`` for a message's first line, ``[2]``...
    for its further lines, where numbered messages have ``[N-1]``, ``[N-2]``. A process's
    ``[1]`` after its ``[1]`` (or ``[2]``) tells them from the unsplit numbered
    messages' ``[N]``, which only go up. With both off, lines have no number: a program's
    lines without one whose messages are stderr lines printed with one of ``prefixes``.
    """
    found = [m for m in (re.match(UNNUMBERED, line) for line in head) if m]
    bare: dict[str, list[str]] = {}
    last: dict[tuple[str, str], int] = {}
    again: set[str] = set()
    for m in found:
        if m["seq"] is None:
            bare.setdefault(m["program"], []).append(m.string[m.end() :])
        elif m["part"] is None:
            process, number = (m["sender"], m["pid"] or m["procid"]), int(m["seq"])
            if number <= last.get(process, number - 1):
                again.add(m["program"])
            last[process] = number
    fit = {p for p, texts in bare.items() if guess_prefix(texts, prefixes) is not None}
    return frozenset(again | fit)


def _messages(head: list[str], programs: frozenset[str] | None = None) -> list[str]:
    """The stderr lines of the PostgreSQL messages among a file's first lines (syslog's),
    numbered or, by ``programs``, not (:func:`unwrap`)."""
    if programs is None:
        ours = [line for line in head if _PIECE.match(line.encode())]
    else:
        ours = [
            line for line in head if (m := re.match(UNNUMBERED, line)) and m["program"] in programs
        ]
    frame = pl.DataFrame(
        {"line_no": range(len(ours)), "line": ours},
        schema={"line_no": pl.UInt64, "line": pl.String},
    )
    return unwrap(frame, programs=programs)[0]["line"].to_list()


def unwrap(
    lines: pl.DataFrame, stamps: Stamps = Stamps(), programs: frozenset[str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """``lines`` (``line_no``, ``line``: syslog lines) as PostgreSQL's stderr lines, each
    message's lines together in the order of its first line; the lines of messages whose
    first line is not here (rejects); and the count of other programs' lines.

    ``stamps`` says what of the syslog line goes before each line (not a statement's
    further lines). Lines that are no syslog line at all are given on as they are (the
    stderr parser quarantines them). ``programs``: PostgreSQL's, when it sends its
    messages without sequence numbers (a line numbered ``[1]``, or with no number,
    begins a message; ``[2]``... go on with the message its process began last); None
    when they are numbered.
    """
    header = HEADER if programs is None else UNNUMBERED
    found = lines.with_columns(pl.col("line").str.extract_groups(header).alias("_h"))
    head = pl.col("_h").struct.field("_syslog")
    ours = head.is_not_null()
    if programs is not None:
        names = pl.Series(sorted(programs), dtype=pl.String).implode()
        mine = pl.col("_h").struct.field("program").is_in(names)
        ours = ours & mine.fill_null(False)
    rest = found.filter(~ours)
    # Another program's line; a line of PostgreSQL's own program that is not one of its
    # numbered messages (cut short, say) is garbage.
    postgres = found.filter(ours).select(pl.col("_h").struct.field("program").unique())
    program = syslog.program(pl.col("line"))
    rest = rest.with_columns(
        (~program.is_in(postgres.to_series().implode())).fill_null(False).alias("_other")
    )
    text = pl.col("line").str.strip_prefix(head)
    for escaped, char in _ESCAPES:
        text = text.str.replace_all(escaped, char, literal=True)
    field = pl.col("_h").struct.field
    process = pl.coalesce(field("pid"), field("procid"))
    if programs is None:
        part = field("part").cast(pl.Int64)
        # Unsplit messages ([N]) are one line each: keyed by their own line.
        line_no = "@" + pl.col("line_no").cast(pl.String)
        seq = pl.when(part.is_null()).then(line_no).otherwise(field("seq"))
    else:  # the message a process began last
        part = field("seq").cast(pl.Int64)
        seq = (part.fill_null(1) == 1).cum_sum().over(field("sender"), process).cast(pl.String)
    pieces = found.filter(ours).select(
        "line_no",
        field("sender").alias("_host"),
        process.alias("_pid"),
        field("stamp").alias("_stamp"),
        seq.alias("_seq"),
        part.fill_null(1).alias("_part"),
        text.alias("line"),
    )
    whole = (pl.col("_part") == 1).all() & ~pl.col("line").str.contains("\n", literal=True).any()
    if pieces.select(whole).item():  # the usual chunk: each message one line, none cut
        joined = pieces.with_columns(pl.col("line_no").alias("_first"))
        orphans = rejects(pieces, pl.lit(False), Reason.TRUNCATED)
    else:
        joined, orphans = _joined(pieces)
    if stamps.time or stamps.pid:
        line = pl.col("line")
        stamp = pl.when(line.str.starts_with("\t")).then(pl.lit("")).otherwise(stamps.expr())
        joined = joined.with_columns((stamp + line).alias("line"))
    joined = joined.select("_first", "line_no", "line")
    strangers = rest.filter(~pl.col("_other")).select(
        pl.col("line_no").alias("_first"), "line_no", "line"
    )
    if strangers.height:
        joined = pl.concat([joined, strangers]).sort("_first", maintain_order=True)
    count = rest["_other"].sum()
    # Cast: an empty piece list joins to a column of nulls.
    return joined.select("line_no", pl.col("line").cast(pl.String)), orphans, int(count)


def _joined(pieces: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The lines of messages sent in several parts (:func:`unwrap`'s ``pieces``), each
    message's together (``_first``: its first line's number), and its parts whose first
    part is not among them, as rejects."""
    message = ["_host", "_pid", "_seq"]
    pieces = pieces.with_columns(
        pl.col("line_no").min().over(message).alias("_first"),
        (pl.col("_part") == 1).any().over(message).alias("_whole"),
    )
    orphans = rejects(pieces.drop("line"), ~pl.col("_whole"), Reason.TRUNCATED)
    pieces = pieces.filter("_whole").sort("_first", "_part")
    # A later line is a part of the line before, cut there, when it begins with the space
    # the server cut at, or when the part before is as long as the server cuts (900 bytes,
    # less a character's: no space to cut at); else a line of its own: a statement's next
    # line (a tab) or a follower (its prefix). The server cuts at the last space of the
    # 900 bytes: a part after a shorter one never begins with two spaces. (A line that
    # does was a tab, which journalctl's text output writes as eight spaces.)
    line = pl.col("line")
    before = line.str.len_bytes().shift(1).over(message)
    cut = (line.str.starts_with(" ") & ~line.str.starts_with("  ")) | (before >= SPLIT_BYTES - 3)
    tab = (pl.col("_part") > 1) & ~cut & line.str.starts_with(JOURNALCTL_TAB)
    own_line = (pl.col("_part") == 1) | line.str.starts_with("\t") | ~cut
    joined = (
        pieces.with_columns(
            pl.when(tab)
            .then("\t" + line.str.strip_prefix(JOURNALCTL_TAB))
            .otherwise(line)
            .alias("line"),
            own_line.cum_sum().alias("_line"),
        )
        .group_by("_line", maintain_order=True)
        .agg(pl.col("_first", "line_no", "_stamp", "_pid").first(), line.str.join(""))
        .with_columns(line.str.split("\n"))
        .explode("line")
    )
    return joined, orphans
