from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from detector.simulate import simulate
from tests.simulate.conftest import START


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    """Also across processes with other string hashes (set orders must not leak in)."""
    a = simulate(tmp_path / "a", 20, 4, 11, START, warmup=2, compress=True)
    args = ["--accounts", "20", "--days", "4", "--seed", "11", "--start", START.isoformat()]
    args += ["--warmup-days", "2", "--gzip", "--out", str(tmp_path / "b")]
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run(
        [sys.executable, "-m", "detector.simulate", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert a.labels > 0 and f"{a.lines:,} lines" in done.stderr
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")


def test_another_seed_gives_other_output(tmp_path: Path) -> None:
    simulate(tmp_path / "a", 20, 4, 11, START, warmup=2)
    simulate(tmp_path / "b", 20, 4, 12, START, warmup=2)
    a, b = _contents(tmp_path / "a"), _contents(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(".json") or name == "labels.csv":
            assert a[name] != b[name], name
