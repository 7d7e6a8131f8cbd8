"""Faults of `serve`'s state directory.

The state database is damaged under a running `serve` (a faulty disk, a stray write):
it says so on /readyz, naming the file and what to do, keeps serving /metrics with
`trovewatch_storage_writable 0`, and holds its offsets. Started again on the damaged
file it refuses in one line with exit code 74; with the file moved aside, as the
message says, it reads the log again from its start and ends with exact totals.

The state directory removed under it is named on /readyz. A second `serve` started on
the same state directory is refused in one line while the first runs, and starts once
the first is gone, by `kill -9` too.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.test_store import damage
from tests.live.test_disk_full import (
    checkpoint_lag,
    halves_of_a_day,
    serving,
    unwritable,
    wait_until,
)
from tests.live.test_serve_faults import ROOT, SAMPLE, Serve, expected_totals

EXIT_IO = 74


def first_lines(tmp_path: Path, n: int) -> Path:
    """A log of the sample log's first ``n`` lines."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(gzip.decompress(SAMPLE.read_bytes()).splitlines(True)[:n]))
    return log


def serve_once(log: Path, state: Path, port: int) -> subprocess.CompletedProcess[str]:
    """``serve`` run in the foreground, for a refusal: its exit code and what it said."""
    cmd = [sys.executable, "-m", "detector", "serve", "--follow", str(log)]
    cmd += ["--state-dir", str(state), "--port", str(port)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_damaged_state_database_is_reported_held_and_refused_until_moved_aside(
    tmp_path: Path,
) -> None:
    first, second = halves_of_a_day()
    day = first + second
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(first))
    state = tmp_path / "state"
    database = state / "trovewatch.db"
    serve = serving(log, state)
    base = f"http://127.0.0.1:{serve.port}"
    try:
        (tmp_path / "first").mkdir()
        read_first = expected_totals(b"".join(first), tmp_path / "first")
        assert serve.settle(read_first) == read_first
        with sqlite3.connect(database) as conn:  # the committed pages into the file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        damage(database)
        with log.open("ab") as fh:
            fh.write(b"".join(second))

        def says_damaged() -> bool:
            ready = httpx.get(f"{base}/readyz")
            return ready.status_code == 503 and "trovewatch.db is damaged" in ready.text

        wait_until(says_damaged, 30, "/readyz did not name the damaged database")
        assert "move the file aside" in httpx.get(f"{base}/readyz").text
        # Prometheus still gets its scrape, and the metric says storage failed.
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and unwritable in metrics.text
        # Nothing read since the damage is taken as saved: the offsets are held.
        time.sleep(3)
        assert checkpoint_lag(httpx.get(f"{base}/metrics").text) >= len(b"".join(second))
    finally:
        serve.stop()

    refused = serve_once(log, state, serve.port)
    assert refused.returncode == EXIT_IO
    assert "Traceback" not in refused.stderr
    (message,) = [line for line in refused.stderr.splitlines() if "error" in line]
    assert f"{database} is damaged" in message and "move the file aside" in message

    for name in ("trovewatch.db", "trovewatch.db-wal", "trovewatch.db-shm"):
        if (state / name).exists():
            (state / name).rename(tmp_path / f"{name}.damaged")
    again = serving(log, state)
    try:
        expected = expected_totals(b"".join(day), tmp_path)
        assert again.settle(expected) == expected
    finally:
        again.stop()


def test_a_state_directory_removed_under_serve_is_named_on_readyz(tmp_path: Path) -> None:
    log = first_lines(tmp_path, 2000)
    state = tmp_path / "state"
    serve = serving(log, state)
    base = f"http://127.0.0.1:{serve.port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/readyz").is_success, 30, "never ready")
        shutil.rmtree(state)

        def says_removed() -> bool:
            ready = httpx.get(f"{base}/readyz")
            return ready.status_code == 503 and "removed or replaced while running" in ready.text

        wait_until(says_removed, 30, "/readyz did not say the state database was removed")
        assert f"{state / 'trovewatch.db'}" in httpx.get(f"{base}/readyz").text
        assert unwritable in httpx.get(f"{base}/metrics").text
    finally:
        serve.stop()


def test_a_second_serve_on_the_same_state_directory_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    log = first_lines(tmp_path, 2000)
    state = tmp_path / "state"
    first = serving(log, state)
    second = Serve(str(log), state)
    try:
        refused = serve_once(log, state, second.port)
        assert refused.returncode == 2
        assert first.proc is not None
        assert refused.stderr.strip() == (
            f"trovewatch: error: state directory {state} is in use by another trovewatch "
            f"serve (pid {first.proc.pid}); stop it, or give this one another --state-dir"
        )
        assert first.proc.poll() is None  # the first goes on
        first.kill()
        second.start()
        second.wait_ready()
        assert second.proc is not None and second.proc.poll() is None
    finally:
        first.stop()
        second.stop()
