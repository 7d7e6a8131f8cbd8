"""Source and format stages: log files in, one events frame out, with a summary.

The whole-file fast path is tried first where a format has one; otherwise, or when the
file is not clean, the file is read in record-aligned chunks with exact rejects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from detector import formats
from detector import schema as S
from detector.formats.pg_jsonlog import NotClean
from detector.reader import NotALogError, read_chunks
from detector.rejects import Quarantine


@dataclass
class Summary:
    """What a run read: events per format, context lines, rejects by reason, time span."""

    files: int = 0
    events: Counter[str] = field(default_factory=Counter)
    context: int = 0
    outside: int = 0  # events left out by since/until
    rejected: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    windows: int = 0
    flagged: int = 0

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
        text = (
            f"Read {self.files} file(s): {sum(self.events.values()):,} audit events ({per_format}{outside}), "
            f"{self.context:,} context lines (connections, durations, server messages), "
            f"{rejected:,} lines rejected{f' ({reasons})' if reasons else ''}; events span {span}."
        )
        if self.windows:
            text += f" Scored {self.windows:,} account-windows, {self.flagged:,} flagged."
        return text


def read_events(
    paths: Sequence[Path],
    *,
    format_name: str = "auto",
    mapping: Path | None = None,
    log_line_prefix: str | None = None,
    quarantine: Quarantine | None = None,
    on_file: Callable[[str], None] = lambda name: None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pl.DataFrame, Summary]:
    """Parse every file into one events frame sorted by time, and say what was read.

    ``since``/``until`` (UTC, inclusive/exclusive) keep only events in that period, so
    one log can be split into a training period and a period to score.

    Unparsable lines go to ``quarantine``; a file that is not a log raises
    :class:`detector.reader.NotALogError`.
    """
    quarantine = quarantine or Quarantine(None)
    summary = Summary(files=len(paths))
    frames: list[pl.DataFrame] = []
    for path in paths:
        on_file(f"reading {path.name}")
        try:
            events, name = _read_file(
                path, format_name, mapping, log_line_prefix, quarantine, summary
            )
        except (OSError, EOFError) as exc:  # a truncated or corrupt compressed file
            raise NotALogError(f"{path}: cannot be read to its end ({exc})") from exc
        parsed_events = events.height
        if since is not None:
            events = events.filter(pl.col(S.TIME) >= since)
        if until is not None:
            events = events.filter(pl.col(S.TIME) < until)
        summary.outside += parsed_events - events.height
        summary.events[name] += events.height
        frames.append(events)
    summary.rejected = Counter(quarantine.counts)
    events = pl.concat(frames) if frames else S.empty()
    # One MariaDB server's audit and slow logs, one Snowflake account's query and access
    # histories: one event per statement, with what each of its records knows.
    events = formats.join(events)
    events = events.sort(S.TIME, maintain_order=True)
    if events.height:
        summary.first, summary.last = events[S.TIME].min(), events[S.TIME].max()  # type: ignore[assignment]
    return events, summary


def _read_file(
    path: Path,
    format_name: str,
    mapping: Path | None,
    log_line_prefix: str | None,
    quarantine: Quarantine,
    summary: Summary,
) -> tuple[pl.DataFrame, str]:
    """All events of one file and its format's name; rejects quarantined, context counted."""
    fmt = formats.get(format_name, path, mapping=mapping, log_line_prefix=log_line_prefix)
    parts = []
    for parsed in _parse_file(fmt, path):
        parts.append(parsed.events)
        summary.context += parsed.context
        quarantine.add(str(path), parsed.rejects)
    events = merge_split_statements(pl.concat(parts)) if parts else S.empty()
    finish = getattr(fmt, "finish", None)
    if finish is not None:
        events = finish(events)
    return events, fmt.name


def merge_split_statements(events: pl.DataFrame) -> pl.DataFrame:
    """One event per statement even where a chunk boundary split its log lines.

    Within one file, events with the same session and statement id are one statement
    (pgAudit logs a statement once per relation): their objects are merged and the
    first event's rows, counted once, are kept.
    """
    key = [S.SESSION, S.STATEMENT_ID]
    split = pl.struct(key).is_duplicated() & pl.col(S.STATEMENT_ID).is_not_null()
    twice = events.filter(split)
    if twice.is_empty():
        return events
    merged = twice.group_by(key, maintain_order=True).agg(
        pl.all().exclude(S.OBJECTS).first(),
        pl.col(S.OBJECTS).explode().drop_nulls().unique(maintain_order=True),
    )
    return pl.concat([events.filter(~split), merged.select(events.columns)]).sort(
        S.TIME, maintain_order=True
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
