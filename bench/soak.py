"""Soak: ``trovewatch serve`` follows a log written in real time at a steady rate for a
long while, with rename rotation every few minutes and ``kill -9`` at random moments.
At the end the per-account totals must equal what was written, and memory must show no
growth trend.

    uv run python bench/soak.py                       # 30 minutes, 2,000 lines/s
    uv run python bench/soak.py --minutes 5 --rate 5000

The lines are pgAudit jsonlog records (bench/make_jsonlog.py) stamped with the wall
clock as they are written, so windows close in real time and the latency histogram
means what it says. Prints totals checked, RSS samples and their slope, and the p50/p99
of ``trovewatch_score_latency_seconds``. Exit code 1 if a total differs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
from bench_score import PY, ensure_data, ensure_model
from bench_serve import free_port, metric, rss_mb

from detector import pipeline
from detector import schema as S

TOKEN = "soak-token-0123456789"
STAMP = re.compile(rb'"timestamp":"[^"]*"')
SESSION = re.compile(rb'"session_id":"([^"]*)"')


class Serve:
    def __init__(self, model: Path, pattern: str, state: Path) -> None:
        self.port = free_port()
        self.cmd = [PY, "-m", "detector", "serve", "--model-dir", str(model)]
        self.cmd += ["--follow", pattern, "--state-dir", str(state), "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (state.parent / "serve.log").open("ab")

    def start(self) -> None:
        env = {**os.environ, "TROVEWATCH_API_TOKENS": f"{TOKEN}:read"}
        self.proc = subprocess.Popen(self.cmd, env=env, stderr=self.log)
        while metric(self.port, "trovewatch_storage_writable") != 1.0:
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def stamped(pool: list[bytes], i: int, stamp: str) -> bytes:
    """Line ``i`` of the endless stream: the pool's line, stamped now; each pass over the
    pool gets its own session ids, so no statement repeats an earlier one's key."""
    line = STAMP.sub(f'"timestamp":"{stamp}"'.encode(), pool[i % len(pool)])
    lap = i // len(pool)
    return SESSION.sub(lambda m: b'"session_id":"%s.%d"' % (m[1], lap), line) if lap else line


def written_totals(truth: Path) -> dict[str, tuple[int, int]]:
    events, _ = pipeline.read_events([truth])
    totals = events.group_by(S.ACCOUNT).agg(
        pl.col(S.SUCCESS).sum(), pl.col(S.ROWS).filter(pl.col(S.CLASS) == "READ").sum()
    )
    return {a: (int(n), int(r)) for a, n, r in totals.iter_rows() if a is not None}


def served_totals(port: int, accounts: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        for account in accounts:
            got = api.get(f"http://127.0.0.1:{port}/v1/accounts/{account}")
            if got.status_code == 200:
                t = got.json()["totals"]
                out[account] = (t["statements"], t["rows_read"] or 0)
    return out


def quantile(port: int, q: float) -> float | None:
    """A quantile of the score latency histogram, from one scrape (bucket upper bound)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    buckets = [
        (float(le), float(n))
        for le, n in re.findall(
            r'trovewatch_score_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', text
        )
    ]
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, n in buckets if n >= q * total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=2000, help="lines per second")
    parser.add_argument("--rotate-every", type=float, default=180, help="seconds")
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where to keep it all (default: a temp dir)")
    args = parser.parse_args()
    pool_log = ensure_data(500_000)  # the lines to stamp and write, and their model
    model = ensure_model(500_000)
    pool = pool_log.read_bytes().splitlines(keepends=True)
    rng = random.Random(args.seed)
    duration = args.minutes * 60
    kills = sorted(rng.uniform(0.1, 0.9) * duration for _ in range(args.kills))
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="trovewatch-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"logs, state and serve's stderr (serve.log) in {tmp}")
    logs, truth = Path(tmp) / "log", Path(tmp) / "written.json"
    logs.mkdir()
    live = logs / "postgresql.json"
    live.touch()
    serve = Serve(model, str(logs / "postgresql.json*"), Path(tmp) / "state")
    serve.start()
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    last_rotation, n, rotations = start, 0, 0
    try:
        with truth.open("ab") as copy:
            while (elapsed := time.monotonic() - start) < duration:
                due = int(elapsed * args.rate) - n
                stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
                block = b"".join(stamped(pool, n + i, stamp) for i in range(due))
                with live.open("ab") as fh:
                    fh.write(block)
                copy.write(block)
                n += due
                if kills and elapsed >= kills[0]:
                    kills.pop(0)
                    serve.kill()
                    serve.start()
                    print(f"{elapsed:7.0f} s  kill -9 and restart", flush=True)
                if time.monotonic() - last_rotation >= args.rotate_every:
                    rotations += 1
                    live.rename(logs / f"postgresql.json.{rotations}")
                    live.touch()
                    last_rotation = time.monotonic()
                if not rss or elapsed - rss[-1][0] >= 10:
                    assert serve.proc is not None
                    rss.append((elapsed, rss_mb(serve.proc.pid)))
                    print(f"{elapsed:7.0f} s  {n:,} lines  RSS {rss[-1][1]:,.0f} MB", flush=True)
                time.sleep(0.1)
        expected = written_totals(truth)
        # The last window closes once the wall clock is past its end plus the
        # lateness: up to one window (5 min) and 30 s after the last line.
        deadline = time.monotonic() + 420
        got: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            got = served_totals(serve.port, sorted(expected))
            if got == expected:
                break
            time.sleep(2)
        p50, p99 = quantile(serve.port, 0.5), quantile(serve.port, 0.99)
    finally:
        serve.stop()
    wrong = {a for a in expected if got.get(a) != expected[a]}
    for account in sorted(wrong)[:5]:
        print(f"{account}: written {expected[account]}, served {got.get(account)}")
    xs = [t / 60 for t, _ in rss[1:]]  # skip the start-up sample
    ys = [m for _, m in rss[1:]]
    slope = 0.0
    if len(xs) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / max(
            sum((x - mx) ** 2 for x in xs), 1e-9
        )
    print(
        f"\n{n:,} lines in {args.minutes:g} min at {args.rate:,}/s, {rotations} rotations, "
        f"{args.kills} kill -9"
    )
    print(f"accounts with exact totals: {len(expected) - len(wrong)}/{len(expected)}")
    print(
        f"RSS: first {ys[0] if ys else 0:,.0f} MB, last {ys[-1] if ys else 0:,.0f} MB, "
        f"slope {slope:+.1f} MB/min"
    )
    print(f"score latency after a window could close: p50 <= {p50} s, p99 <= {p99} s")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
