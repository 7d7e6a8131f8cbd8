"""A database's syslog lines in the file the daemon shares among programs
(``/var/log/syslog`` on Debian, ``/var/log/messages`` on Red Hat), which begins with
other programs' lines: rsyslogd's own after a rotation, cron's, the kernel's. The
database's lines are a real PostgreSQL 15 + pgAudit's and a real MariaDB 10.11's through
a real rsyslog (``tests/fixtures/*-syslog/README.md``); the other programs' lines are
written here in each file's own line format."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from detector import formats, pipeline
from detector import schema as S
from detector.live.service import stream_format
from detector.reader import NotALogError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SYSLOG_LOGS = [
    FIXTURES / "pgaudit-syslog" / "postgresql.syslog",
    FIXTURES / "pgaudit-syslog" / "postgresql-rfc3339.syslog",
    FIXTURES / "mariadb-audit-syslog" / "server_audit.syslog",
    FIXTURES / "mariadb-audit-syslog" / "server_audit-rfc3339.syslog",
    FIXTURES / "mariadb-audit-syslog" / "server_audit-rfc5424.syslog",
]
OTHERS = [
    ("rsyslogd", 712, '[origin software="rsyslogd" swVersion="8.2302.0"] rsyslogd was HUPed'),
    ("CRON", 30311, "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
    ("systemd", 1, "Started session-57.scope - Session 57 of User admin."),
    ("kernel", None, "[88211.441235] audit: type=1400 audit(1764579339.112:90): apparmor"),
    ("sshd", 30417, "Accepted publickey for admin from 10.0.4.20 port 52114 ssh2"),
]


def other_programs(log: Path, n: int) -> str:
    """``n`` lines of other programs, each as ``log``'s first line has its time and host."""
    first = log.read_text().splitlines()[0]
    if first.startswith("<"):  # RFC 5424: <pri>1 time host program procid msgid sd msg
        stamp = re.match(r"<\d+>1 (\S+ \S+) ", first)
        assert stamp is not None
        lines = [f"<30>1 {stamp[1]} {p} {pid or '-'} - - {m}" for p, pid, m in OTHERS]
    else:
        head = re.match(r"(.*?\S+) \S+?(?:\[\d+\])?: ", first)
        assert head is not None
        lines = [f"{head[1]} {p}{f'[{pid}]' if pid else ''}: {m}" for p, pid, m in OTHERS]
    return "".join(f"{lines[i % len(lines)]}\n" for i in range(n))


def events_of(path: Path, format_name: str = "auto") -> tuple[pl.DataFrame, dict[str, int]]:
    """The events read from ``path``, and its lines rejected by reason (the MariaDB
    fixture holds a record the daemon cut)."""
    events, summary = pipeline.read_events([path], format_name=format_name)
    return events.sort(S.TIME, S.STATEMENT_ID), dict(summary.rejected)


@pytest.mark.parametrize("log", SYSLOG_LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize("others", [25, 5_000])
def test_a_databases_lines_after_other_programs_give_the_events_of_its_own_file(
    log: Path, others: int, tmp_path: Path
) -> None:
    """The shared file whose first 25 (or 5,000) lines are other programs' gives every
    event of the database's own file, detected or named (before: "not an audit log",
    and named, no statement read: the prefix was learned from cron's lines)."""
    shared = tmp_path / "syslog"
    shared.write_text(other_programs(log, others) + log.read_text())
    own, rejected = events_of(log)
    assert own.height > 0
    assert formats.get("auto", shared).name == formats.get("auto", log).name
    for named in ("auto", formats.get("auto", log).name):
        events, rejected_there = events_of(shared, named)
        assert events.equals(own) and rejected_there == rejected
    # a pushed body, or standard input, the same
    assert stream_format(shared.read_bytes(), "auto", formats.Told()).name == (
        formats.get("auto", log).name
    )


def test_a_shared_file_of_other_programs_only_names_them(tmp_path: Path) -> None:
    shared = tmp_path / "syslog"
    shared.write_text(other_programs(SYSLOG_LOGS[0], 40))
    with pytest.raises(formats.OtherProgramsOnly) as refused:
        formats.get("auto", shared)
    assert "(programs: rsyslogd, CRON, systemd, kernel, sshd)" in str(refused.value)
    assert isinstance(refused.value, NotALogError)


@pytest.mark.parametrize("log", SYSLOG_LOGS, ids=lambda p: p.name)
def test_a_named_syslog_format_reads_a_file_too_short_to_tell(log: Path, tmp_path: Path) -> None:
    """A file of the database's first line alone, cut (the daemon mid-write), too short
    for its format to be told from it: named, it is read as that format, whatever the
    search among programs finds (it found none, and refused the file for a while)."""
    short = tmp_path / "syslog"
    first = log.read_text().splitlines()[0]
    short.write_text(first[: len(first) // 2])
    name = formats.get("auto", log).name
    assert formats.get(name, short).name == name
    events_of(short, name)
