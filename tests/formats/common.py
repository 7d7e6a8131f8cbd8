"""What the format tests share: Hypothesis settings, reading bytes with a checked
quarantine, garbage strategies, the logs a format must not claim, chunked parsing.

Format-specific facts (fixtures, record builders, torture pieces, expected counts) stay in
each format's test file; only the machinery is here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import polars as pl
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats import Told
from detector.ingest import merge_split_statements
from detector.pipeline import read_events
from detector.reader import GZIP_MAGIC, Chunk, head_lines, read_chunks
from detector.rejects import Quarantine, Reason
from tests.conftest import FIXTURES, parse

T = TypeVar("T")

REASONS = frozenset(r.value for r in Reason)
REFERENCE_LOGS = Path("/work/shared/reference-logs")
# Documentation, configuration and scripts next to the logs: not logs to sniff.
NOT_LOGS = frozenset({".md", ".py", ".conf", ".cnf", ".toml", ".yaml", ".yml"})


# -- Hypothesis ---------------------------------------------------------------------------


def fuzz_settings(max_examples: int = 25, *also_suppress: HealthCheck) -> settings:
    """Settings for a fuzz property: ``max_examples`` examples, each allowed 5 s (a hang or a
    quadratic blow-up fails, not just waits), no example database, the same examples every
    time on CI. No shrinking: on a failure it would re-run the parser thousands of times;
    the failing example is printed as found. ``also_suppress``: health checks a file needs
    silenced on top of ``too_slow`` and ``data_too_large``."""
    return settings(
        max_examples=max_examples,
        deadline=5_000,
        database=None,
        derandomize=os.environ.get("CI") == "true",
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *also_suppress],
    )


FUZZ = fuzz_settings()


def not_gzip(data: bytes) -> bool:
    """Whether ``data`` lacks gzip magic: a file with it that does not decompress is the
    documented ``NotALogError`` refusal (tested in test_fuzz.py), not a file to fuzz."""
    return not data.startswith(GZIP_MAGIC)


RANDOM_BYTES = st.binary(max_size=3000).filter(not_gzip)


def garbage_bytes(torture: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """One line of garbage: random bytes, or pieces of ``torture`` run together (no
    ``\\n``; a test filters out what its format would rightly read as a record)."""
    return st.one_of(
        st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b" ")),
        st.lists(st.sampled_from(torture), min_size=1, max_size=6).map(b"".join),
    )


def garbage_text(torture: Sequence[str]) -> st.SearchStrategy[str]:
    """:func:`garbage_bytes` as text: random text, or pieces of ``torture`` run together,
    with ``\\n`` and ``\\r`` made spaces in both."""

    def one_line(s: str) -> str:
        return s.replace("\n", " ").replace("\r", " ")

    return st.one_of(
        st.text(min_size=1, max_size=200).map(one_line),
        st.lists(st.sampled_from(torture), min_size=1, max_size=6).map("".join).map(one_line),
    )


def insertions(
    garbage: st.SearchStrategy[T], first: int, last: int, max_size: int = 8
) -> st.SearchStrategy[list[tuple[int, T]]]:
    """1 to ``max_size`` garbage lines, each with the index (``first`` to ``last``) of the
    line it goes before."""
    at = st.integers(min_value=first, max_value=last)
    return st.lists(st.tuples(at, garbage), min_size=1, max_size=max_size)


def with_inserted(lines: Iterable[T], inserts: Iterable[tuple[int, T]]) -> list[T]:
    """``lines`` with each ``(index, junk)`` put before the line that was at ``index``
    (after the last line if ``index`` is past the end)."""
    out = list(lines)
    for at, junk in sorted(inserts, key=lambda t: -t[0]):
        out.insert(at, junk)
    return out


# -- reading ------------------------------------------------------------------------------


def assert_rejects_well_formed(rows: pl.DataFrame, data: bytes, line: str = "line") -> None:
    """Every rejected line of ``data`` in ``rows`` (a quarantine file's records, or a
    parser's rejects with ``line="line_no"``) is there once, with a reason from ``Reason``
    and a line number inside ``data``."""
    if rows.is_empty():
        return
    assert set(rows["reason"]) <= REASONS, set(rows["reason"]) - REASONS
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    assert rows[line].min() >= 1 and rows[line].max() <= n_lines  # type: ignore[operator]
    assert rows[line].is_unique().all(), rows


class Read(NamedTuple):
    events: pl.DataFrame
    quarantine: Quarantine
    rows: pl.DataFrame  # the quarantine file's records: file, line, reason, raw


NO_ROWS = pl.DataFrame(
    schema={"file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String}
)


def read_bytes(data: bytes, format_name: str, mariadb_timezone: str | None = None) -> Read:
    """``data`` read as a file of ``format_name`` with a quarantine file: no exception,
    events of the event schema, and every rejected line in the quarantine once, with a
    known reason and its own line number."""
    with tempfile.TemporaryDirectory(prefix="trovewatch-formats-") as tmp:
        path, qpath = Path(tmp) / "input.log", Path(tmp) / "quarantine.ndjson"
        path.write_bytes(data)
        quarantine = Quarantine(qpath)
        try:
            events, _ = read_events(
                [path],
                format_name=format_name,
                quarantine=quarantine,
                told=Told(mariadb_timezone=mariadb_timezone),
            )
        finally:
            quarantine.close()
        rows = pl.read_ndjson(qpath) if qpath.exists() and qpath.stat().st_size else NO_ROWS
    assert events.schema == S.EVENT_SCHEMA
    assert_rejects_well_formed(rows, data)
    return Read(events, quarantine, rows)


def json_lines(*records: str | dict[str, Any]) -> bytes:
    """One record a line: a string as it is, a dict as JSON."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def read_clean(path: Path, format_name: str) -> pl.DataFrame:
    """The events of ``path``, which has no rejected line."""
    events, quarantine = parse(path, format_name)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events


def one(frame: pl.DataFrame, **where: object) -> dict[str, Any]:
    """The one row of ``frame`` whose columns have the values ``where`` (any: its only row)."""
    got = frame.filter(*(pl.col(k) == v for k, v in where.items()))
    assert got.height == 1, got
    return got.row(0, named=True)


# -- sniffing -----------------------------------------------------------------------------


def foreign_logs(own: str, skip: Collection[str] = NOT_LOGS) -> list[Path]:
    """Every file of the reference logs and of the fixtures but tests/fixtures/``own``,
    less those with a suffix in ``skip``: logs some other format reads."""
    roots = [REFERENCE_LOGS, *(p for p in FIXTURES.iterdir() if p.is_dir() and p.name != own)]
    found = (p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())
    return sorted(p for p in found if p.suffix not in skip)


def assert_no_other_format_sniffs(path: Path, *ours: str) -> None:
    """No native format but ``ours`` claims ``path`` by its first lines."""
    head = head_lines(path)
    for name in formats.NATIVE:
        if name not in ours:
            assert not formats.native(name).sniff(head), (name, path.name)


# -- chunks -------------------------------------------------------------------------------


class Chunked(NamedTuple):
    events: pl.DataFrame
    rejects: pl.DataFrame  # the parser's rejects: line_no, reason, line
    context: int
    chunks: int


def parse_chunks(
    fmt: Any, path: Path, chunk_bytes: int | None = None, *, join: bool = True
) -> Chunked:
    """``path`` parsed by ``fmt`` chunk by chunk (of ``chunk_bytes``, else the reader's
    size), configured by its head and cut where ``fmt`` lets records start, as
    ``read_events`` does. ``join``: statements split between chunks merged and the
    format's ``finish`` applied, as ``read_events`` does; without it the events are the
    chunks' own, so a record cut in two shows as two events."""
    configure = getattr(fmt, "configure", None)
    if configure is not None:
        configure(head_lines(path))
    start = getattr(fmt, "record_start", None)
    chunks = (
        read_chunks(path, start) if chunk_bytes is None else read_chunks(path, start, chunk_bytes)
    )
    parsed = [fmt.parse(c) for c in chunks]
    if not parsed:
        return Chunked(S.empty(), pl.DataFrame(), 0, 0)
    events = pl.concat([p.events for p in parsed])
    finish = getattr(fmt, "finish", None)
    if join:
        events = merge_split_statements(events)
        events = events if finish is None else finish(events)
    rejects = pl.concat([p.rejects for p in parsed])
    return Chunked(events, rejects, sum(p.context for p in parsed), len(parsed))


def parse_cut(fmt: Any, name: str, text: str, cuts: Sequence[int]) -> pl.DataFrame:
    """Events of ``text`` parsed by ``fmt`` as chunks (or live reads) cut before the given
    line indexes, statements split between them merged as the readers merge them."""
    lines = text.splitlines(keepends=True)
    parts, start = [], 0
    for cut in [*cuts, len(lines)]:
        data = "".join(lines[start:cut]).encode()
        parts.append(fmt.parse(Chunk(name, data, start + 1)).events)
        start = cut
    return merge_split_statements(pl.concat(parts))


# A text of only these is blank to the parsers (Polars' and Rust's whitespace): Unicode
# White_Space. (Python's str.strip also takes U+001C..U+001F: a line of those is
# garbage, quarantined.)
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
