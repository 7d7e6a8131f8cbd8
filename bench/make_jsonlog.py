"""Write a large PostgreSQL jsonlog with pgAudit records, shaped like real server output.

The record shapes are copied from real PostgreSQL 15 + pgAudit 1.7 output (see
tests/fixtures/reference): AUDIT records with rows and one line per relation, COPY and
cursor exports, connection lines and ``duration:`` lines. Deterministic by seed.

    uv run python bench/make_jsonlog.py --lines 2000000 --out bench/data/pg2m.json
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

TABLES = [
    f"{schema}.{name}"
    for schema in ("sales", "hr", "ops", "audit")
    for name in ("customers", "orders", "cards", "tickets", "notes", "items")
]


def generate(n_lines: int, accounts: int, seed: int, start: datetime) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = []
    t = start
    pid = 1000
    step = timedelta(seconds=3 * 86400 / n_lines)
    sessions: list[tuple[int, str, str, int]] = []  # pid, user, session id, next statement id
    while len(lines) < n_lines:
        t += step
        if not sessions or rng.random() < 0.02:
            pid += 1
            user = f"user{rng.randrange(accounts):04d}"
            sid = f"{int(t.timestamp()):x}.{pid:x}"
            sessions.append((pid, user, sid, 1))
            if len(sessions) > 50:
                sessions.pop(0)
            auth = f"connection authorized: user={user} database=corp application_name=app"
            lines.append(_line(t, user, pid, sid, auth))
            continue
        i = rng.randrange(len(sessions))
        pid_, user, sid, stmt = sessions[i]
        sessions[i] = (pid_, user, sid, stmt + 1)
        lines.extend(_line(t, user, pid_, sid, message) for message in _messages(rng, stmt))
    return lines[:n_lines]


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


def _line(t: datetime, user: str, pid: int, sid: str, message: str) -> str:
    return json.dumps(
        {
            "timestamp": t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2026-10-05T00:00:00")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(generate(args.lines, args.accounts, args.seed, start)) + "\n")
    print(f"wrote {args.lines:,} lines to {args.out}")


if __name__ == "__main__":
    main()
