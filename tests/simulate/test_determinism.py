from __future__ import annotations

from pathlib import Path

from detector.simulate import simulate
from tests.simulate.conftest import START


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    a = simulate(tmp_path / "a", 20, 4, 11, START, warmup=2, compress=True)
    b = simulate(tmp_path / "b", 20, 4, 11, START, warmup=2, compress=True)
    assert a.lines == b.lines and a.labels == b.labels > 0
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")


def test_another_seed_gives_other_output(tmp_path: Path) -> None:
    simulate(tmp_path / "a", 20, 4, 11, START, warmup=2)
    simulate(tmp_path / "b", 20, 4, 12, START, warmup=2)
    a, b = _contents(tmp_path / "a"), _contents(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(".json") or name == "labels.csv":
            assert a[name] != b[name], name
