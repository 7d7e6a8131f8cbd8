"""MariaDB's ``server_audit`` plugin logging through syslog (``server_audit_output_type =
syslog``), as a syslog daemon files it.

The plugin sends each record without its time: ``server_audit_syslog_info`` (empty by
default), a space, then the record as the file has it from the server's name on. A real
10.11 server through rsyslog 8.2302 (``server_audit_syslog_facility = LOG_LOCAL5``)::

    Dec  1 10:42:32 vm mysql-server_auditing:  vm,bob,127.0.0.1,5,8,READ,shop,customers,
    Dec  1 10:42:32 vm mysql-server_auditing:  vm,bob,127.0.0.1,5,8,QUERY,shop,'SELECT 1',0
    2026-12-01T11:49:28.123262+00:00 vm audit-x: prod-db vm,bob,127.0.0.1,13,27,QUERY,...
    <174>1 2026-12-01T11:49:28.027141+00:00 vm mysql-server_auditing - - -   vm,root,...

No process id after the program (``server_audit_syslog_ident``, ``mysql-server_auditing``
by default). Query texts are escaped as in the file (newlines and tabs as ``\\n``,
``\\t``) and cut at ``server_audit_query_log_limit``; a record the daemon cut short
(longer than its ``maxMessageSize``, 8 KiB by rsyslog's default) is quarantined as
``truncated``.

The time is the syslog daemon's: RFC 3339 and RFC 5424 times by their offset, a
traditional one in this machine's zone (:func:`detector.formats.syslog.utc`): not the
server's local clock the file's times are in, so ``--mariadb-timezone`` has no part in
it. The records are then read as the file's are (:class:`MariadbAudit`): their events
are ``mariadb-audit`` events, joined with the slow log's as the file's are. Lines of
other programs in the same file (a shared ``/var/log/syslog``) are counted as context.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb, syslog
from detector.formats.mariadb_audit import RECORD, RECORD_HEAD, MariadbAudit, bad_query
from detector.reader import Chunk, last_written
from detector.rejects import Reason, rejects

# After the syslog line's head, ``server_audit_syslog_info`` (any text; none by default)
# and a space before the record. The server's name has no space: the first place after a
# space where a record begins is where it begins.
_INFO: Final = r" \s*(?:.*? )??"
MESSAGE_RE: Final = "^" + syslog.HEAD + _INFO + RECORD
# A line with a record's head whatever its end: one cut short.
_LOOKS: Final = "^" + syslog.HEAD + _INFO + RECORD_HEAD
DEFAULT_IDENT: Final = "mysql-server_auditing"  # server_audit_syslog_ident's default


class MariadbAuditSyslog(MariadbAudit):
    """``--format mariadb-audit-syslog``."""

    name = mariadb.AUDIT_SYSLOG
    record_start = syslog.LINE_START  # each record is one line

    def sniff(self, head: list[str]) -> bool:
        """Some of the head's lines are audit records, and most are syslog lines. (By
        Polars' regex engine, in time linear in the line: Python's backtracks through
        the info's and user's lazy runs, seconds for a 12 KB line of ``a,b a,b ...``.)"""
        lines = pl.Series([s for s in head if s.strip()], dtype=pl.String)
        ours = lines.str.contains(MESSAGE_RE).sum()
        logged = lines.str.contains(syslog.ANY_LINE).sum()
        return ours > 0 and logged * 2 >= lines.len()

    def records(self, lines: pl.DataFrame, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """The records of the syslog lines ``lines``, timed by the daemon; their lines
        that are cut short or not records of the audit plugin's programs, rejected; the
        count of other programs' lines."""
        line = pl.col("line")
        blank = line.str.strip_chars() == ""
        records = (
            lines.filter(~blank)
            .with_columns(line.str.extract_groups(MESSAGE_RE).alias("_f"))
            .unnest("_f")
        )
        matched = pl.col("stamp").is_not_null()
        # What the other lines are, looked at only for them (most lines are records).
        rest = records.filter(~matched)
        ours = records.filter(matched)["program"].unique().extend_constant(DEFAULT_IDENT, 1)
        program = syslog.program(line)
        looks = line.str.contains(_LOOKS)
        other = ~looks & ~program.is_in(ours.implode()).fill_null(True)
        truncated = pl.concat(
            [
                rejects(rest, looks, Reason.TRUNCATED),
                rejects(records, matched & bad_query(), Reason.TRUNCATED),
            ]
        )
        unrecognised = rejects(rest, ~looks & ~other, Reason.UNRECOGNISED)
        others = rest.select(other.sum()).item()
        records = records.filter(matched & ~bad_query())
        time = syslog.utc(pl.col("stamp"), last_written(chunk.path))
        records = records.with_columns(time.alias(S.TIME)).with_columns(
            # the login time that tells a connection id's sessions apart
            pl.col(S.TIME).dt.strftime("%Y%m%d %H:%M:%S").alias("ts")
        )
        bad_time = rejects(records, pl.col(S.TIME).is_null(), Reason.BAD_FIELD)
        records = records.filter(pl.col(S.TIME).is_not_null())
        return records, pl.concat([truncated, unrecognised, bad_time]), int(others)
