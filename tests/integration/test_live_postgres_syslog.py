"""PostgreSQL logging through syslog (``log_destination = 'syslog'``), on a real
PostgreSQL 15 + pgAudit whose messages a real rsyslog files: the syslog file gives the
same events, account by account and statement by statement, as the server's stderr log
of the same statements.

What the syslog path does to a message, and what these workloads make it do:

* statements of several lines (each further line its own syslog line, ``#011`` for the
  tab), failed statements (their ``STATEMENT:`` follower a line of its own);
* statements over 900 bytes, cut by the server into parts: at spaces (a long ``IN``
  list), inside a word (a literal with no space), between multi-byte characters;
* four sessions writing such statements at once, so that their lines interleave;
* rsyslog's traditional lines (no year), RFC 3339 lines and RFC 5424 lines;
* ``syslog_split_messages = off`` (a message on one line, newlines as ``#012``);
* other programs' lines in the same file (``/var/log/syslog``): context, not rejects.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from pg_cluster import PgCluster

from detector import carried, ingest, model
from detector import features as F
from detector import schema as S
from detector.formats import Told
from detector.formats.pg_syslog import SETTLED_LINES, PgSyslog
from detector.reader import read_chunks
from tests.conftest import parse
from tests.integration.conftest import MODEL, cli, follow, pg_cluster, wait_for, wait_for_logs

pytestmark = pytest.mark.postgres

TABLE_ROWS = 500


STATEMENTS = [
    "SELECT * FROM people WHERE id < 100",
    "SELECT id,\n       name\n  FROM people\n WHERE id < 10",
    # over 900 bytes: cut at a space, inside a word, between two-byte characters
    "SELECT * FROM people WHERE id IN (" + ", ".join(map(str, range(400))) + ")",
    "SELECT * FROM people WHERE name <> '" + "z" * 1500 + "'",
    "SELECT count(*) FROM people WHERE note <> '" + "é" * 700 + "'",
    "SELECT * FROM people\nWHERE note IN ('" + "', '".join(["x" * 60] * 40) + "')\nLIMIT 7",
]


def workload(pg: PgCluster, marker: str) -> None:
    quiet = "-c pgaudit.log=none"
    with psycopg.connect(pg.dsn(), autocommit=True, options=quiet) as admin:
        admin.execute(
            "CREATE TABLE people AS SELECT g AS id, 'name ' || g AS name,"
            f" repeat('x', 60) AS note FROM generate_series(1, {TABLE_ROWS}) g"
        )
        for role in ("clerk", "analyst", "web", "batch"):
            admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute(f"GRANT SELECT ON people TO {role}")

    def session(role: str, rounds: int) -> None:
        with psycopg.connect(pg.dsn(user=role), autocommit=True) as conn:
            for _ in range(rounds):
                for statement in STATEMENTS:
                    conn.execute(statement).fetchall()
            with conn.cursor() as cur, cur.copy("COPY people TO STDOUT") as copy:
                for _ in copy:
                    pass
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT *\n  FROM no_such_table")

    threads = [
        threading.Thread(target=session, args=(role, 5))
        for role in ("clerk", "analyst", "web", "batch")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"SELECT '{marker}'")


def syslog_server(facility: str, **settings: str) -> dict[str, str]:
    return {
        "log_destination": "'stderr,csvlog,jsonlog,syslog'",
        "syslog_facility": facility,
        "syslog_ident": "postgres",
        **settings,
    }


def events_of(path: Path, told: Told = Told()) -> tuple[pl.DataFrame, int]:
    """The events of ``path`` but their source format, in one order (the sessions'
    statements of one millisecond come in the order their lines were written), and the
    lines rejected."""
    events, quarantine = parse(path, told=told)
    order = [S.TIME, S.SESSION, S.STATEMENT_ID]
    return events.drop(S.SOURCE_FORMAT).sort(order), quarantine.total


def assert_reads_as(syslog: Path, stderr_log: Path) -> None:
    """``syslog`` gives the events of ``stderr_log`` (the same server's), none rejected."""
    expected, _ = events_of(stderr_log)
    got, rejected = events_of(syslog)
    assert rejected == 0
    assert got.equals(expected), f"{syslog.name}'s events differ from the stderr log's"


@pytest.fixture(scope="module")
def logged(
    rsyslog: Path, server_dir: Callable[[str], Path]
) -> Iterator[Callable[[str, dict[str, str]], tuple[Path, Path]]]:
    """Run the workload on a server logging to stderr and syslog (``facility``); the
    stderr log, and the directory and facility of its syslog files."""
    done: dict[str, tuple[Path, Path]] = {}

    def run(facility: str, settings: dict[str, str]) -> tuple[Path, Path]:
        if facility not in done:
            with pg_cluster(server_dir("pg"), syslog_server(facility, **settings)) as pg:
                marker = f"end of {facility}"
                workload(pg, marker)
                wait_for_logs(pg.log_dir, marker)
                wait_for(rsyslog / f"{facility}.log", marker)
                wait_for(rsyslog / f"{facility}.iso.log", marker)
                wait_for(rsyslog / f"{facility}.5424.log", marker)
                done[facility] = (pg.log_dir / "postgresql.log", rsyslog)
        return done[facility]

    yield run


def interleaved(path: Path) -> int:
    """Lines of ``path`` that go on a message after another message's line."""
    count, last = 0, None
    for line in path.read_text(errors="replace").splitlines():
        found = re.search(r"(?:\[(\d+)\]:| (\d+) - -) +\[(\d+)-(\d+)\] ", line)
        if found is None:
            continue
        pid, procid, seq, part = found.groups()
        pid = pid or procid
        count += int(part) > 1 and last != (pid, seq)
        last = (pid, seq)
    return count


@pytest.mark.parametrize(
    "suffix", [".log", ".iso.log", ".5424.log"], ids=["traditional", "rfc3339", "rfc5424"]
)
def test_the_syslog_file_gives_the_events_of_the_stderr_log(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], suffix: str
) -> None:
    stderr_log, directory = logged("local0", {})
    expected, rejected = events_of(stderr_log)
    assert rejected == 0
    # the workload's: every role's statements, the long ones among them
    assert set(expected[S.ACCOUNT]) >= {"clerk", "analyst", "web", "batch"}
    long_ones = expected.filter(pl.col(S.QUERY).str.len_bytes() > 900)
    assert long_ones.height == 4 * 5 * 4  # four sessions, five rounds, four long statements
    assert_reads_as(directory / f"local0{suffix}", stderr_log)
    assert interleaved(directory / f"local0{suffix}") > 0, "the sessions' lines did not mix"


def test_unsplit_messages_give_the_events_of_the_stderr_log(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]],
) -> None:
    stderr_log, directory = logged("local1", {"syslog_split_messages": "off"})
    assert_reads_as(directory / "local1.log", stderr_log)


UNNUMBERED = {
    "local5": {"syslog_sequence_numbers": "off"},
    "local6": {"syslog_sequence_numbers": "off", "syslog_split_messages": "off"},
}


@pytest.mark.parametrize(
    "suffix", [".log", ".iso.log", ".5424.log"], ids=["traditional", "rfc3339", "rfc5424"]
)
@pytest.mark.parametrize("facility", sorted(UNNUMBERED), ids=["split", "unsplit"])
def test_messages_without_sequence_numbers_give_the_events_of_the_stderr_log(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]],
    facility: str,
    suffix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``syslog_sequence_numbers = off``: a message of one line has no number, the lines
    of one of several are numbered ``[1]``, ``[2]``... (with ``syslog_split_messages``
    off too, no line has a number). Read whole, and in chunks of 16 KiB: cut only where
    no message of several lines is unfinished."""
    stderr_log, directory = logged(facility, UNNUMBERED[facility])
    path = directory / f"{facility}{suffix}"
    text = path.read_text()
    assert "[1] " in text if facility == "local5" else "[1] " not in text
    assert not re.search(r"\[\d+-\d+\] ", text)
    assert_reads_as(path, stderr_log)
    monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", 16384)
    assert len(list(read_chunks(path, chunk_bytes=16384))) >= 5
    assert_reads_as(path, stderr_log)


def test_other_programs_lines_are_context_not_rejects(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], tmp_path: Path
) -> None:
    """A shared /var/log/syslog: cron's and sshd's lines between PostgreSQL's."""
    stderr_log, directory = logged("local0", {})
    for tag, text in (
        ("CRON", "(root) CMD (run-parts /etc/cron.hourly)"),
        ("sshd", "Accepted publickey for ops"),
    ):
        subprocess.run(["logger", "-p", "local0.info", "-t", tag, text], check=True)
    subprocess.run(["logger", "-p", "local0.info", "-t", "marker", "others written"], check=True)
    wait_for(directory / "local0.log", "others written")
    mixed = tmp_path / "syslog"
    shutil.copy(directory / "local0.log", mixed)
    assert_reads_as(mixed, stderr_log)


OTHER_PROGRAMS = (
    ("rsyslogd", '[origin software="rsyslogd"] rsyslogd was HUPed'),
    ("CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
    ("systemd", "Started session-57.scope - Session 57 of User admin."),
    ("sshd", "Accepted publickey for ops from 10.0.4.20 port 52114 ssh2"),
)


@pytest.mark.parametrize(
    "suffix", [".log", ".iso.log", ".5424.log"], ids=["traditional", "rfc3339", "rfc5424"]
)
def test_a_shared_file_that_begins_with_other_programs_lines_gives_the_events_of_the_stderr_log(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], tmp_path: Path, suffix: str
) -> None:
    """/var/log/syslog just after its rotation: 200 lines of rsyslogd, cron, systemd and
    sshd first (more than detection's head), then PostgreSQL's. ``score`` finds the
    format by PostgreSQL's lines and gives the stderr log's events (before: "not an audit
    log"; named with --format, no statement: the prefix was learned from cron's lines)."""
    stderr_log, directory = logged("local0", {})
    for n in range(50):
        for tag, text in OTHER_PROGRAMS:
            subprocess.run(["logger", "-p", "local0.info", "-t", tag, f"{text} {n}"], check=True)
    subprocess.run(["logger", "-p", "local0.info", "-t", "marker", "head written"], check=True)
    path = directory / f"local0{suffix}"
    wait_for(path, "head written")
    lines = path.read_text().splitlines(keepends=True)
    other = [line for line in lines if re.search(r" (?:rsyslogd|CRON|systemd|sshd|marker)\b", line)]
    assert len(other) >= 200
    shared = tmp_path / "syslog"
    shared.write_text("".join(other + [line for line in lines if line not in other]))
    assert_reads_as(shared, stderr_log)
    out = tmp_path / "scores.ndjson"
    done = cli("score", "--out", out, shared)
    assert "pgaudit-syslog" in done.stderr and "0 lines rejected" in done.stderr


def test_score_reads_a_syslog_file_without_being_told_its_format(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], tmp_path: Path
) -> None:
    _, directory = logged("local0", {})
    out = tmp_path / "scores.ndjson"
    done = cli("score", "--out", out, directory / "local0.log")
    assert "pgaudit-syslog" in done.stderr and "0 lines rejected" in done.stderr
    accounts = set(pl.read_ndjson(out)["account"])
    assert {"clerk", "analyst", "web", "batch"} <= accounts


def message_boundaries(body: bytes) -> list[int]:
    """Offsets in ``body`` (syslog lines) before which no message is unfinished."""
    lines = body.splitlines(keepends=True)
    spans: dict[bytes, list[int]] = {}  # each message's first and last line
    for number, line in enumerate(lines):
        found = re.search(rb"\[(\d+)\]: \[(\d+)-\d+\] ", line)
        if found:
            spans.setdefault(found.group(1) + b"-" + found.group(2), [number, number])[1] = number
    open_at = [0] * (len(lines) + 1)  # messages begun before line n and not ended
    for first, last in spans.values():
        for n in range(first + 1, last + 1):
            open_at[n] += 1
    offsets = [0, *itertools.accumulate(len(line) for line in lines)]
    return [offsets[n] for n in range(1, len(lines)) if open_at[n] == 0]


def test_serve_following_the_syslog_file_counts_what_the_stderr_log_says(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` reads the syslog file as the daemon appends it (three reads, each ending
    where no message is unfinished), and its open windows hold each account's statements
    and rows read as the stderr log's events give them."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    stderr_log, directory = logged("local0", {})
    body = (directory / "local0.log").read_bytes()
    clean = message_boundaries(body)
    cuts = [0, clean[len(clean) // 3], clean[2 * len(clean) // 3], len(body)]
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "postgresql-syslog.log"
    writes = [(log, body[a:b]) for a, b in itertools.pairwise(cuts)]
    service = follow(model.load(MODEL), tmp_path, writes)
    try:
        live = (
            service.engine.open_activity()
            .group_by(F.ACCOUNT)
            .agg(pl.col("statements", "rows_read").sum())
            .sort(F.ACCOUNT)
        )
    finally:
        service.stop()
    expected, _ = events_of(stderr_log)
    counted = (
        expected.filter(pl.col(S.SUCCESS))
        .group_by(pl.col(S.ACCOUNT).alias(F.ACCOUNT))
        .agg(pl.len().alias("statements"), pl.col(S.ROWS).sum().alias("rows_read"))
        .sort(F.ACCOUNT)
    )
    assert live.select(F.ACCOUNT, "statements", "rows_read").equals(
        counted.cast({"statements": pl.Int64, "rows_read": pl.Int64})
    )


def test_chunks_end_where_no_message_is_unfinished(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four sessions writing long and multi-line statements at once: their messages'
    lines mix. Reads and chunks are cut only where no message is unfinished (every line
    start of the file is judged so), and the file read in chunks of 16 KiB gives the
    stderr log's events."""
    stderr_log, directory = logged("local0", {})
    path = directory / "local0.log"
    body = path.read_bytes()
    starts = [0, *(m.end() for m in re.finditer(rb"\n", body[:-1]))]
    clean = set(message_boundaries(body)) | {0}
    judged = {pos for pos in starts if PgSyslog.record_start.match(body, pos)}
    # ... and at least SETTLED_LINES lines after (its next line may be on its way)
    settled = set(starts[: len(starts) - SETTLED_LINES])
    assert judged == clean & settled
    assert len(clean) < len(starts) - 10  # the lines did mix
    monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", 16384)
    assert len(list(read_chunks(path, PgSyslog.record_start, 16384))) >= 5
    assert_reads_as(path, stderr_log)


@pytest.mark.parametrize(
    "suffix", [".log", ".iso.log", ".5424.log"], ids=["traditional", "rfc3339", "rfc5424"]
)
@pytest.mark.parametrize(
    "prefix",
    ["user=%u,db=%d,app=%a,client=%h ", "%q%u@%d ", ""],
    ids=["pgbadger", "user@db", "none"],
)
def test_a_prefix_without_time_or_process_takes_them_from_the_syslog_line(
    logged: Callable[[str, dict[str, str]], tuple[Path, Path]], prefix: str, suffix: str
) -> None:
    """pgBadger's prefix for syslog (and others) leave the time and the process id to
    the syslog line: the statements, rows, clients and applications are those the
    server's jsonlog gives, at the syslog line's time (the second the daemon got it)."""
    facility = {"user=%u,db=%d,app=%a,client=%h ": "local2", "%q%u@%d ": "local3", "": "local4"}[
        prefix
    ]
    stderr_log, directory = logged(facility, {"log_line_prefix": prefix or "''"})
    jsonlog = stderr_log.with_name("postgresql.json")
    expected, _ = events_of(jsonlog)
    got, rejected = events_of(directory / f"{facility}{suffix}")
    assert rejected == 0
    order = [S.ACCOUNT, S.STATEMENT_ID, S.QUERY]
    same = [c for c in expected.columns if c not in (S.TIME, S.SESSION)]
    assert got.select(same).sort(order).equals(expected.select(same).sort(order))
    late = got.sort(order)[S.TIME].dt.epoch("ms") - expected.sort(order)[S.TIME].dt.epoch("ms")
    assert late.min() > -1500 and late.max() < 2000  # the second the daemon got it
    # told the prefix (--log-line-prefix), the file is recognised and read the same
    told, rejected = events_of(directory / f"{facility}{suffix}", Told(log_line_prefix=prefix))
    assert rejected == 0 and told.equals(got)
