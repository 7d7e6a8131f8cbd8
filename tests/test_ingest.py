"""Reading logs: one PostgreSQL server's outputs side by side are its statements once."""

from __future__ import annotations

import itertools
import os
import re
from datetime import timedelta
from pathlib import Path

import polars as pl

from detector import ingest
from detector import schema as S
from detector.ingest import Summary, read_events
from tests.conftest import OUTPUTS, PG_SCENARIOS, REFERENCE_PG

SERVER = PG_SCENARIOS / "rows_relation_param_on"  # one real server's stderr, csvlog, jsonlog


def test_one_servers_outputs_in_one_directory_are_read_once() -> None:
    """``score /var/log/postgresql/*`` on a server logging to stderr, csvlog and jsonlog
    counts each statement once (from the jsonlog), not three times, and says so."""
    paths = sorted(SERVER / name for name in OUTPUTS.values())
    alone, _ = read_events([SERVER / "postgresql.json"])
    together, summary = read_events(paths)
    assert together.height == alone.height > 0
    assert together[S.ROWS].sum() == alone[S.ROWS].sum()
    assert set(together[S.SOURCE_FORMAT]) == {"pgaudit-jsonlog"}
    assert summary.files == 1
    assert sorted(p.name for p in summary.left_out) == ["postgresql.csv", "postgresql.log"]
    assert "Left out 2 file(s)" in summary.paragraph()
    # streamed, as train and score read PostgreSQL logs
    streamed = Summary()
    batches = list(ingest.event_batches(paths, streamed, hold=timedelta(0)))
    assert sum(b.height for b in batches) == alone.height
    assert streamed.files == 1 and len(streamed.left_out) == 2


def test_a_format_given_reads_every_file() -> None:
    """``--format`` names what the files are: nothing is left out."""
    paths = [SERVER / "postgresql.log", SERVER / "postgresql.log"]
    events, summary = read_events(paths, format_name="pgaudit-stderr")
    alone, _ = read_events([SERVER / "postgresql.log"])
    assert events.height == 2 * alone.height and not summary.left_out
    assert events.filter(pl.col(S.SOURCE_FORMAT) != "pgaudit-stderr").is_empty()


def test_each_directorys_postgresql_logs_are_read_oldest_first(tmp_path: Path) -> None:
    """Files named by weekday, given in the shell's (name) order: each directory's
    PostgreSQL logs come oldest first, by their first line's time; a directory keeps its
    places among the paths, and a file of another format stays where it was."""
    line = "{} UTC [7] LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,<none>\n"
    written = {
        "a/postgresql-Mon.log": "2026-11-30 00:00:01.000",
        "a/postgresql-Sun.log": "2026-11-29 00:00:01.000",
        "b/postgresql-Mon.log": "2026-11-23 00:00:01.000",
        "b/postgresql-Tue.log": "2026-11-24 00:00:01.000",
        "b/postgresql-Sat.log": "2026-11-22 00:00:01.000",
    }
    for name, time in written.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(line.format(time))
    other = tmp_path / "a" / "other.ndjson"
    other.write_text('{"not": "a postgresql log"}\n')
    given = (
        [tmp_path / n for n in [*written][:2]] + [other] + [tmp_path / n for n in [*written][2:]]
    )
    assert [p.relative_to(tmp_path).as_posix() for p in ingest.files_to_read(given)[0]] == [
        "a/postgresql-Sun.log",
        "a/postgresql-Mon.log",
        "a/other.ndjson",
        "b/postgresql-Sat.log",
        "b/postgresql-Mon.log",
        "b/postgresql-Tue.log",
    ]


# pgAudit's statement number, and a FETCH, on an AUDIT line of any of the three outputs
STATEMENT = re.compile(rb"AUDIT: SESSION,(\d+),\d+,(?:\w+,FETCH,)?")


def test_a_statement_cut_by_a_rotation_reads_as_in_the_log_whole(
    output: str, tmp_path: Path
) -> None:
    """A rotation may fall between any two of a statement's AUDIT lines (a join's
    relations, a read through a function and its caller's line, a COPY's query and its
    COPY) or between a cursor's DECLARE and a FETCH. Cut there, the server's two files
    read (whole, or batch by batch as ``score`` reads them) as its log read whole: each
    statement once, with its user, objects and rows (before, a statement cut in two
    counted twice, and a FETCH in the next file lost its cursor's tables)."""
    log = SERVER / OUTPUTS[output]
    lines = log.read_bytes().splitlines(keepends=True)
    whole = statements(read_events([log])[0])
    found = [(i, STATEMENT.search(line)) for i, line in enumerate(lines)]
    audit = [(i, m) for i, m in found if m is not None]
    cuts = [
        i
        for (_, before), (i, m) in itertools.pairwise(audit)
        if m[1] == before[1] or m[0].endswith(b"FETCH,")
    ]
    assert len(cuts) >= 8
    for at in cuts:
        cut = tmp_path / str(at)
        cut.mkdir()
        first, second = cut / f"postgresql-1{log.suffix}", cut / f"postgresql-2{log.suffix}"
        first.write_bytes(b"".join(lines[:at]))
        second.write_bytes(b"".join(lines[at:]))
        given = [second, first]  # read oldest first all the same
        read_whole, _ = read_events(given)
        streamed = pl.concat(list(ingest.event_batches(given, Summary())))
        assert statements(read_whole).equals(whole), at
        assert statements(streamed).equals(whole), at


def statements(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` in a fixed order, without their texts and durations: a string of
    several statements cut in two gives those after the cut the string's text from its
    first statement again (README, Limits), and a duration line after the cut is not
    joined, as where a chunk of ``score`` ends."""
    order = [S.TIME, S.SESSION, S.STATEMENT_ID]
    return events.drop(S.QUERY, S.DURATION_MS).sort(order, maintain_order=True)


def test_a_copy_of_a_select_counts_once_in_the_summary(tmp_path: Path) -> None:
    """``COPY (SELECT ...) TO STDOUT`` run once: pgAudit logs its SELECT and the COPY as
    two lines (sub-statements 7.1 and 7.2, real pgAudit 1.7 output); the run's summary
    counts the one statement the user ran, as the statements feature does (was: 2)."""
    copy = [
        line
        for line in (REFERENCE_PG / "postgresql.json").read_text().splitlines(keepends=True)
        if "COPY (SELECT" in line
    ]
    log = tmp_path / "postgresql.json"
    log.write_text("".join(copy))
    _, summary = read_events([log])
    assert dict(summary.events) == {"pgaudit-jsonlog": 1}
    assert "1 audit events (1 pgaudit-jsonlog)" in summary.paragraph()
    streamed = Summary()  # as score reads PostgreSQL logs
    list(ingest.event_batches([log], streamed, hold=timedelta(0)))
    assert dict(streamed.events) == {"pgaudit-jsonlog": 1}


def test_rotated_logs_whose_lines_show_no_year_are_read_in_the_order_written(
    tmp_path: Path,
) -> None:
    """Syslog files of a server whose prefix prints no time (the syslog line's has no
    year), rotated by logrotate and given in name order: read oldest first by their last
    writes, so the session opened in the oldest goes on in the next."""
    line = "Nov 29 10:00:0{} db1 postgres[7]: [{}-1] user=clerk,db=shop LOG:  {}\n"
    written = {  # name: (last write, a line of the session)
        "syslog.log": (3, line.format(3, 3, "AUDIT: SESSION,2,1,READ,SELECT,,,SELECT 2,<none>")),
        "syslog.log.1": (2, line.format(2, 2, "AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,<none>")),
        "syslog.log.2": (1, line.format(1, 1, "connection received: host=10.0.0.9 port=5432")),
    }
    for name, (hour, text) in written.items():
        (tmp_path / name).write_text(text)
        os.utime(tmp_path / name, (1_800_000_000 + hour * 3600,) * 2)
    given = [tmp_path / name for name in sorted(written)]
    assert [p.name for p in ingest.files_to_read(given)[0]] == [
        "syslog.log.2",
        "syslog.log.1",
        "syslog.log",
    ]
    events, _ = read_events(given)
    assert events[S.CLIENT_IP].to_list() == ["10.0.0.9", "10.0.0.9"]
