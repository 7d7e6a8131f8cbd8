"""Write a large PostgreSQL log with pgAudit records, shaped like real server output:
jsonlog (the default), csvlog, stderr or syslog, the same records in each.

The record shapes are copied from real PostgreSQL 15 + pgAudit 1.7 output (see
/work/shared/reference-logs and tests/fixtures/pgaudit): AUDIT records with rows and one
line per relation, COPY exports, connection lines and ``duration:`` lines; stderr with
``log_line_prefix = '%m [%p] %q%u@%d %r %a '``. Deterministic by seed; written as it is
generated, so 50 million lines need no more memory than 2,000.

    uv run python bench/make_jsonlog.py --lines 2000000 --out bench/data/pg2m.json
    uv run python bench/make_jsonlog.py --format csvlog --lines 2000000 --out bench/data/pg2m.csv
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

TABLES = [
    f"{schema}.{name}"
    for schema in ("sales", "hr", "ops", "audit")
    for name in ("customers", "orders", "cards", "tickets", "notes", "items")
]


Record = tuple[datetime, str, int, str, str]  # time, user, pid, session id, message


def generate(
    n_lines: int, accounts: int, seed: int, start: datetime, days: float = 3.0
) -> Iterator[Record]:
    """``n_lines`` log records in time order, spread over about ``days`` days (a little
    less: a statement's relation lines share one time)."""
    rng = random.Random(seed)
    written = 0
    t = start
    pid = 1000
    step = timedelta(seconds=days * 86400 / n_lines)
    sessions: list[tuple[int, str, str, int]] = []  # pid, user, session id, next statement id
    while written < n_lines:
        t += step
        if not sessions or rng.random() < 0.02:
            pid += 1
            user = f"user{rng.randrange(accounts):04d}"
            sid = f"{int(t.timestamp()):x}.{pid:x}"
            sessions.append((pid, user, sid, 1))
            if len(sessions) > 50:
                sessions.pop(0)
            auth = f"connection authorized: user={user} database=corp application_name=app"
            yield t, user, pid, sid, auth
            written += 1
            continue
        i = rng.randrange(len(sessions))
        pid_, user, sid, stmt = sessions[i]
        sessions[i] = (pid_, user, sid, stmt + 1)
        for message in _messages(rng, stmt):
            yield t, user, pid_, sid, message
            written += 1


def _messages(rng: random.Random, stmt: int) -> list[str]:
    """The log messages of one statement: AUDIT lines (one per relation) or a duration."""
    kind = rng.random()
    if kind < 0.75:
        tables = rng.sample(TABLES, rng.choice((1, 1, 1, 2, 3)))
        rows = rng.choice((1, 1, 3, 20, 200, 5000))
        query = f"SELECT * FROM {tables[0]} WHERE id <= {rows};"
        # One line per relation, each with the whole statement's rows, as pgAudit logs it.
        return [
            f"AUDIT: SESSION,{stmt},1,READ,SELECT,TABLE,{t},{query},<none>,{rows}" for t in tables
        ]
    if kind < 0.80:
        table = rng.choice(TABLES)
        return [f"AUDIT: SESSION,{stmt},1,READ,COPY,,,COPY {table} TO STDOUT;,<none>,0"]
    if kind < 0.90:
        table = rng.choice(TABLES)
        query = f"\"UPDATE {table} SET note = ''a, b'' WHERE id = {rng.randrange(10**6)};\""
        return [f"AUDIT: SESSION,{stmt},1,WRITE,UPDATE,TABLE,{table},{query},<none>,1"]
    return [f"duration: {rng.random() * 10:.3f} ms  statement: SELECT 1;"]


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"


def jsonlog(t: datetime, user: str, pid: int, sid: str, message: str) -> str:
    return json.dumps(
        {
            "timestamp": _stamp(t),
            "user": user,
            "dbname": "corp",
            "pid": pid,
            "remote_host": "10.1.2.3",
            "remote_port": 40000 + pid % 20000,
            "session_id": sid,
            "line_num": 1,
            "ps": "SELECT",
            "session_start": t.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "vxid": "3/1",
            "txid": 0,
            "error_severity": "LOG",
            "message": message,
            "application_name": "app",
            "backend_type": "client backend",
            "query_id": 0,
        },
        separators=(",", ":"),
    )


def csvlog(t: datetime, user: str, pid: int, sid: str, message: str) -> str:
    """PostgreSQL 15's 26 csvlog columns, quoted as the server quotes them."""
    quoted = '"' + message.replace('"', '""') + '"'
    return (
        f'{_stamp(t)},"{user}","corp",{pid},"10.1.2.3:{40000 + pid % 20000}",{sid},1,"SELECT",'
        f'{t.strftime("%Y-%m-%d %H:%M:%S UTC")},3/1,0,LOG,00000,{quoted},,,,,,,,,"app",'
        '"client backend",,0'
    )


def stderr(t: datetime, user: str, pid: int, sid: str, message: str) -> str:
    """A stderr line with ``log_line_prefix = '%m [%p] %q%u@%d %r %a '``."""
    return f"{_stamp(t)} [{pid}] {user}@corp 10.1.2.3({40000 + pid % 20000}) app LOG:  {message}"


def syslog() -> Callable[[datetime, str, int, str, str], str]:
    """stderr's lines as rsyslog files them with ``log_destination = 'syslog'``
    (traditional lines): each a message of one line, numbered per process."""
    numbers: collections.Counter[int] = collections.Counter()

    def line(t: datetime, user: str, pid: int, sid: str, message: str) -> str:
        numbers[pid] += 1
        stamp = f"{t:%b} {t.day:2d} {t:%H:%M:%S}"
        return (
            f"{stamp} db1 postgres[{pid}]: [{numbers[pid]}-1] {stderr(t, user, pid, sid, message)}"
        )

    return line


FORMATS: dict[str, Callable[[datetime, str, int, str, str], str]] = {
    "jsonlog": jsonlog,
    "csvlog": csvlog,
    "stderr": stderr,
    "syslog": syslog(),
}


def write(records: Iterator[Record], line: Callable[..., str], out: Path) -> None:
    """``records`` as lines of ``out``, written in blocks as they are made."""
    with out.open("w") as fh:
        while block := list(itertools.islice(records, 100_000)):
            fh.write("".join(line(*r) + "\n" for r in block))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2026-10-05T00:00:00")
    parser.add_argument(
        "--days",
        type=float,
        default=3.0,
        help="days the log spans (default 3; scale it with --lines to keep the activity per day)",
    )
    parser.add_argument("--format", choices=FORMATS, default="jsonlog")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = generate(args.lines, args.accounts, args.seed, start, args.days)
    write(itertools.islice(records, args.lines), FORMATS[args.format], args.out)
    print(f"wrote {args.lines:,} lines of {args.format} to {args.out}")


if __name__ == "__main__":
    main()
