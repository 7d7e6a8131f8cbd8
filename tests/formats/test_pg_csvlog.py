"""csvlog read in one call where each line is a whole record: the same as segmenting."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector.formats import pg_csvlog
from detector.formats.pg_csvlog import PgCsvlog
from detector.reader import read_chunks
from tests.conftest import PG_SCENARIOS, REFERENCE_PG


def _parse_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fmt = PgCsvlog()
    fast = [fmt.parse(c) for c in read_chunks(path)]
    monkeypatch.setattr(pg_csvlog, "_one_line_records", lambda chunk: None)
    exact = [fmt.parse(c) for c in read_chunks(path)]
    return fast, exact


@pytest.mark.parametrize(
    "path",
    [REFERENCE_PG / "postgresql.csv", *sorted(PG_SCENARIOS.glob("*/postgresql.csv"))],
    ids=lambda p: p.parent.name,
)
def test_one_call_read_gives_the_events_of_segmenting(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, exact = _parse_both(path, monkeypatch)
    for a, b in zip(fast, exact, strict=True):
        assert a.events.equals(b.events)  # type: ignore[attr-defined]
        assert a.rejects.equals(b.rejects)  # type: ignore[attr-defined]


def test_a_truncated_last_record_is_still_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = (REFERENCE_PG / "postgresql.csv").read_text().splitlines(keepends=True)
    assert all(line.count("\n") == 1 for line in lines[:30])
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(lines[:30]) + lines[30][: lines[30].index('"') + 5])
    fast, exact = _parse_both(cut, monkeypatch)
    reasons = [r for p in fast for r in p.rejects["reason"].to_list()]  # type: ignore[attr-defined]
    assert reasons == ["truncated"]
    for a, b in zip(fast, exact, strict=True):
        assert a.events.equals(b.events)  # type: ignore[attr-defined]
        assert a.rejects.equals(b.rejects)  # type: ignore[attr-defined]


def test_a_csvlog_file_is_read_in_chunks_not_whole() -> None:
    path = REFERENCE_PG / "postgresql.csv"
    chunks = list(read_chunks(path, PgCsvlog.record_start, chunk_bytes=4096))
    assert len(chunks) >= 5  # 20 kB in 4 kB reads
    assert all(c.data.startswith(b"2026-") for c in chunks)  # cut before a record's first line
    assert b"".join(c.data for c in chunks) == path.read_bytes()


def test_records_whose_quotes_are_not_doubled_are_rejected_alone(tmp_path: Path) -> None:
    # A writer that forgets to double the quotes inside a field (`"relation "x" does not
    # exist"`): those records are quarantined, and the others read as if they were not there.
    lines = (REFERENCE_PG / "postgresql.csv").read_text().splitlines(keepends=True)
    broken = {i for i, line in enumerate(lines) if '""' in line}
    assert len(broken) >= 5 and len(lines) - len(broken) >= 50
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(line.replace('""', '"') for line in lines))
    without = tmp_path / "without.csv"
    without.write_text("".join(line for i, line in enumerate(lines) if i not in broken))
    fmt = PgCsvlog()
    found = [fmt.parse(c) for c in read_chunks(bad)]
    expected = [fmt.parse(c) for c in read_chunks(without)]
    rejected = {n for p in found for n in p.rejects["line_no"].to_list()}
    assert rejected and rejected <= {i + 1 for i in broken}  # (some still read as one row)
    assert {r for p in found for r in p.rejects["reason"].to_list()} == {"truncated"}
    events = pl.concat(p.events for p in found)
    others = pl.concat(p.events for p in expected)
    keys = [c for c, t in others.schema.items() if not isinstance(t, pl.List)]
    missing = others.join(events, on=keys, how="anti", nulls_equal=True)
    assert others.height > 0 and missing.is_empty(), missing


def test_a_file_beginning_with_a_multi_line_record_is_csvlog() -> None:
    """A rotation may start a file with a record whose statement takes several lines
    (a multi-line statement's second AUDIT record): the file is still csvlog, and a
    server's stderr log, whose lines hold commas too, is not."""
    lines = (PG_SCENARIOS / "rows_relation_param_on" / "postgresql.csv").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if "AUDIT" in line and line.count(",") < 22]
    assert starts, "no multi-line AUDIT record in the fixture"
    assert PgCsvlog().sniff(lines[starts[0] : starts[0] + 20])
    stderr = (PG_SCENARIOS / "rows_relation_param_on" / "postgresql.log").read_text()
    audit = [line for line in stderr.splitlines() if "AUDIT" in line]
    assert not any(PgCsvlog().sniff([line]) for line in audit)
