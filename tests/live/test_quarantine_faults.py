"""Rejected lines under a running `serve` killed with SIGKILL: their quarantine copy is on
disk, and the positions past them are saved, as those of lines that hold events are.

Found by hand (garbage appended to a followed log, then ``kill -9``): the quarantine file
stayed empty for good, though ``trovewatch_lines_rejected_total`` had counted the lines;
and a read of nothing but rejected lines was never checkpointed, so
``trovewatch_checkpoint_lag_bytes`` stayed up and a restart read, counted and
quarantined them again.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import pytest

from detector.rejects import REJECT_SCHEMA, Quarantine, QuarantineError
from tests.conftest import small_tmpfs
from tests.live.test_serve_faults import SAMPLE, Serve

GARBAGE = b"".join(b"garbage line %03d, not a log record\n" % i for i in range(3))


def a_log_being_followed(tmp_path: Path) -> tuple[Path, Serve]:
    """A jsonlog (its first records) followed by a ``serve`` that has read and saved them
    and closed their windows: what is appended next is all there is to read."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(gzip.decompress(SAMPLE.read_bytes()).splitlines(True)[:30]))
    serve = Serve(str(log), tmp_path / "state")
    serve.start()
    try:
        serve.wait_ready()
        wait_until(lambda: lag(serve.port) == 0, 30, "the first records were not saved")
        time.sleep(3)  # quiet past the lateness (1 s): their windows closed and saved
    except BaseException:
        serve.stop()
        raise
    return log, serve


def metric(port: int, name: str) -> float | None:
    """The value of the series ``name`` (with its labels, if any) on /metrics."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def lag(port: int) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("trovewatch_checkpoint_lag_bytes{")
    ]
    return values[0] if values else None


def wait_until(holds: Callable[[], bool], seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not holds():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


REJECTED = 'trovewatch_lines_rejected_total{reason="invalid_json"}'


def test_quarantined_lines_are_on_disk_when_serve_is_killed(tmp_path: Path) -> None:
    log, serve = a_log_being_followed(tmp_path)
    try:
        with log.open("ab") as fh:
            fh.write(GARBAGE)
        wait_until(lambda: metric(serve.port, REJECTED) == 3, 30, "not counted")
        time.sleep(1)  # past a checkpoint
        serve.kill()
        kept = (tmp_path / "state" / "quarantine.ndjson").read_text().splitlines()
        assert [json.loads(line)["raw"] for line in kept] == GARBAGE.decode().splitlines()
    finally:
        serve.stop()


def test_lines_that_are_only_rejected_are_checkpointed_and_not_read_again(
    tmp_path: Path,
) -> None:
    log, serve = a_log_being_followed(tmp_path)
    try:
        with log.open("ab") as fh:
            fh.write(GARBAGE)
        wait_until(lambda: metric(serve.port, REJECTED) == 3, 30, "not counted")
        # The positions past them are saved, as after lines that hold events.
        wait_until(lambda: lag(serve.port) == 0, 10, f"lag stayed at {lag(serve.port)}")
        serve.kill()
        serve.start()
        serve.wait_ready()
        time.sleep(3)  # a restart reads from the saved positions: nothing of the garbage
        assert metric(serve.port, REJECTED) == 0
        assert lag(serve.port) == 0
        serve.stop()
        kept = (tmp_path / "state" / "quarantine.ndjson").read_text().splitlines()
        assert len(kept) == 3  # each once
    finally:
        serve.stop()


def test_a_full_disk_leaves_the_quarantine_whole_lines_only(tmp_path: Path) -> None:
    """Found by hand (a flood of garbage into a followed log, the state directory on a
    2 MB tmpfs): the quarantine file ended in a record cut where the disk filled, and
    the first record written once space returned was glued to it."""
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        quarantine = Quarantine(disk / "quarantine.ndjson", max_bytes=1_000_000)
        quarantine.add("log", garbage(0, 10))
        filler = disk / "filler"
        with pytest.raises(OSError), filler.open("wb", buffering=0) as fh:
            while True:  # to the last byte
                fh.write(b"\0" * 4096)
        with pytest.raises(QuarantineError):
            quarantine.add("log", garbage(10, 400))  # a few KiB fit, not all of it
        filler.unlink()
        quarantine.add("log", garbage(400, 410))
        quarantine.close()
        kept = [json.loads(line)["line"] for line in (disk / "quarantine.ndjson").open()]
        assert kept[:10] == list(range(10)) and kept[-10:] == list(range(400, 410))
        assert quarantine.total == 410  # every line counted all the same


def garbage(first: int, end: int) -> pl.DataFrame:
    """Rejects of the lines ``first`` to ``end`` (excluded), as a parser reports them."""
    return pl.DataFrame(
        {
            "line_no": list(range(first, end)),
            "reason": ["invalid_json"] * (end - first),
            "line": [f"garbage {n:05d} " + "x" * 60 for n in range(first, end)],
        },
        schema=REJECT_SCHEMA,
    )
