"""The state directory's disk fills up under a running `serve`: it says so on /readyz
and in `trovewatch_storage_writable`, stops advancing offsets instead of losing data,
and once space returns it resumes with exact totals.

The disk is a real, small tmpfs; mounting one needs root (CAP_SYS_ADMIN), so without
it the test skips with the reason.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import small_tmpfs
from tests.live.test_serve_faults import SAMPLE, TOKEN, Serve, expected_totals

unwritable = "trovewatch_storage_writable 0.0"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk", "8m") as mount:
        yield mount


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file is returned for removal."""
    filler = disk / "filler"
    try:  # the state may have filled it already: then even the open fails
        with filler.open("wb", buffering=0) as fh:  # unbuffered: nothing to flush at close
            while True:
                fh.write(b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return filler


def halves_of_a_day() -> tuple[list[bytes], list[bytes]]:
    """The sample log's lines of 2026-10-19, in two halves."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    day = [line for line in lines if b'"timestamp":"2026-10-19' in line]
    return day[: len(day) // 2], day[len(day) // 2 :]


def serving(log: Path, state: Path) -> Serve:
    """A ``serve`` of ``log`` with its state in ``state``, started and answering."""
    serve = Serve(str(log), state)
    serve.start()
    serve.wait_ready()
    return serve


def second_half_on_a_full_disk(
    serve: Serve, log: Path, first: list[bytes], second: list[bytes], tmp_path: Path, disk: Path
) -> Path:
    """Once ``serve`` has saved the first half's totals, ``disk`` filled and the second
    half appended to ``log`` (read, and its checkpoint fails); the filler is returned."""
    (tmp_path / "first").mkdir()
    read_first = expected_totals(b"".join(first), tmp_path / "first")
    assert serve.settle(read_first) == read_first
    filler = fill(disk)
    with log.open("ab") as fh:
        fh.write(b"".join(second))
    return filler


def wait_until(holds: Callable[[], bool], seconds: float, failure: str) -> None:
    """Poll ``holds`` until it is true (the service reports on its next probe, every 2 s)."""
    deadline = time.monotonic() + seconds
    while not holds():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


def test_a_full_disk_holds_offsets_and_resumes(tmp_path: Path, small_disk: Path) -> None:
    first, second = halves_of_a_day()
    day = first + second
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(first))
    serve = serving(log, small_disk / "state")
    try:
        filler = second_half_on_a_full_disk(serve, log, first, second, tmp_path, small_disk)
        base = f"http://127.0.0.1:{serve.port}"
        wait_until(lambda: unwritable in httpx.get(f"{base}/metrics").text, 30, "no metric")
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and "not writable" in ready.text
        # What was read since the last checkpoint is still to be saved: the lag says so
        # (it said 0 once the lines were read, saved or not).
        time.sleep(3)
        assert checkpoint_lag(httpx.get(f"{base}/metrics").text) >= len(b"".join(second))
        filler.unlink(missing_ok=True)
        expected = expected_totals(b"".join(day), tmp_path)
        assert serve.settle(expected) == expected
        # Readiness follows the write probe (every 2 s), which may run after the commit.
        wait_until(lambda: httpx.get(f"{base}/readyz").is_success, 15, "/readyz stayed 503")
        assert "trovewatch_storage_writable 1.0" in httpx.get(f"{base}/metrics").text
        wait_until(lambda: checkpoint_lag(httpx.get(f"{base}/metrics").text) == 0, 15, "lag")
    finally:
        serve.stop()


def checkpoint_lag(metrics: str) -> float:
    """``trovewatch_checkpoint_lag_bytes`` of the one followed source."""
    (value,) = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("trovewatch_checkpoint_lag_bytes{")
    ]
    return value


@pytest.fixture
def read_only_able(tmp_path: Path) -> Iterator[Path]:
    """A directory that can be made read-only and writable again: a bind mount, remounted
    (root only, as for the tmpfs above)."""
    source, mount = tmp_path / "disk", tmp_path / "mounted"
    source.mkdir()
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("bind-mounting a directory needs root")
    done = subprocess.run(
        ["mount", "--bind", str(source), str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(mount)], check=True)


def test_a_read_only_state_directory_holds_offsets_and_resumes_once_writable(
    tmp_path: Path, read_only_able: Path
) -> None:
    """`serve` restarted on a state directory whose file system went read-only (a running
    `serve`'s open database keeps a remount from happening: "mount point is busy") says
    so and holds its offsets; made writable again, it resumed never before: SQLite keeps
    a connection opened on a read-only file system read-only for good."""
    first, second = halves_of_a_day()
    day = first + second
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(first))
    state = read_only_able / "state"
    (tmp_path / "first").mkdir()
    read_first = expected_totals(b"".join(first), tmp_path / "first")
    serve = serving(log, state)
    try:
        assert serve.settle(read_first) == read_first
    finally:
        serve.stop()
    remount(read_only_able, "ro")
    with log.open("ab") as fh:
        fh.write(b"".join(second))
    serve.start()
    serve.wait_ready()
    try:
        base = f"http://127.0.0.1:{serve.port}"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and "not writable" in ready.text
        wait_until(lambda: unwritable in httpx.get(f"{base}/metrics").text, 30, "no metric")
        time.sleep(3)  # it has read the rest of the log by now, and cannot keep it
        assert serve.totals(sorted(read_first)) == read_first
        remount(read_only_able, "rw")
        expected = expected_totals(b"".join(day), tmp_path)
        assert serve.settle(expected) == expected
        wait_until(lambda: httpx.get(f"{base}/readyz").is_success, 15, "/readyz stayed 503")
        assert "trovewatch_storage_writable 1.0" in httpx.get(f"{base}/metrics").text
    finally:
        serve.stop()


def test_a_state_database_locked_by_another_process_holds_offsets_and_resumes(
    tmp_path: Path,
) -> None:
    """An analyst's ``sqlite3`` shell left inside ``BEGIN EXCLUSIVE`` on the state
    database (a real SQLite, another process): /readyz names the lock, how to find its
    holder and that nothing is lost; offsets held; the totals exact once it ends (before:
    "state directory ... not writable: database is locked" beside "state store is not
    writable", which sent one looking for a full or read-only disk)."""
    first, second = halves_of_a_day()
    day = first + second
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(first))
    serve = serving(log, tmp_path / "state")
    database = tmp_path / "state" / "trovewatch.db"
    try:
        (tmp_path / "first").mkdir()
        read_first = expected_totals(b"".join(first), tmp_path / "first")
        assert serve.settle(read_first) == read_first
        shell = subprocess.Popen(
            ["sqlite3", str(database)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert shell.stdin is not None
        shell.stdin.write(b"BEGIN EXCLUSIVE;\n")
        shell.stdin.flush()
        with log.open("ab") as fh:
            fh.write(b"".join(second))
        base = f"http://127.0.0.1:{serve.port}"
        wait_until(lambda: not httpx.get(f"{base}/readyz").is_success, 30, "stayed ready")
        problems = httpx.get(f"{base}/readyz").json()["problems"]
        assert any(
            p.startswith(f"state database {database} locked by another process's transaction")
            and f"`fuser {database}` names it" in p
            and "nothing lost" in p
            for p in problems
        ), problems
        assert not any("not writable" in p for p in problems), problems
        wait_until(
            lambda: checkpoint_lag(httpx.get(f"{base}/metrics").text) >= len(b"".join(second)),
            30,
            "the lines read since the lock are not counted as unsaved",
        )
        assert "trovewatch_storage_writable 0.0" in httpx.get(f"{base}/metrics").text
        problems = httpx.get(f"{base}/readyz").json()["problems"]
        assert len(problems) == 1 and problems[0].startswith("state database"), problems
        shell.stdin.write(b"ROLLBACK;\n.quit\n")
        shell.stdin.close()
        shell.wait(timeout=10)
        expected = expected_totals(b"".join(day), tmp_path)
        assert serve.settle(expected) == expected
        wait_until(lambda: httpx.get(f"{base}/readyz").is_success, 15, "/readyz stayed 503")
    finally:
        serve.stop()


def test_a_push_answered_retry_while_the_disk_is_full_is_not_kept_to_count_twice(
    tmp_path: Path, small_disk: Path
) -> None:
    """Found by hand: POST /v1/events while the state's disk was full waited 60 s, was
    answered 503 "events not yet saved; retry later", and was kept all the same: once
    space returned it was saved, and the retry counted every statement twice (499 for
    250). Now it is refused at once, nothing of it kept, and the retry counts once."""
    first, second = halves_of_a_day()
    # The next day's: events after the log's, none late (a late one waits for a newer).
    next_day = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    pushed = [
        line.replace(b'"user":"web_shop"', b'"user":"pushed_shop"')
        for line in next_day
        if b'"timestamp":"2026-10-20' in line and b'"user":"web_shop"' in line
    ]
    body = b"".join(re.sub(rb'"session_id":"', b'"session_id":"p', line) for line in pushed)
    (tmp_path / "pushed").mkdir()
    expected = expected_totals(body, tmp_path / "pushed")
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(first))
    serve = Serve(str(log), small_disk / "state")
    serve.scopes = "read+ingest"
    serve.start()
    serve.wait_ready()
    base = f"http://127.0.0.1:{serve.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        filler = second_half_on_a_full_disk(serve, log, first, second, tmp_path, small_disk)
        wait_until(lambda: "disk is full" in httpx.get(f"{base}/readyz").text, 30, "no failed save")
        began = time.monotonic()
        refused = httpx.post(f"{base}/v1/events", content=body, headers=auth, timeout=120)
        assert refused.status_code == 503
        assert time.monotonic() - began < 15, "it waited for a save that could not happen"
        assert "retry" in refused.json()["error"]
        filler.unlink(missing_ok=True)
        wait_until(lambda: httpx.get(f"{base}/readyz").is_success, 30, "/readyz stayed 503")
        again = httpx.post(f"{base}/v1/events", content=body, headers=auth, timeout=120)
        assert again.status_code == 200, again.text
        assert serve.settle(expected) == expected  # once, not twice
    finally:
        serve.stop()
