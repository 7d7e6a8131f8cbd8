"""``simulate --format csvlog|stderr`` writes the same records as its jsonlog, as the real
server writes them to those destinations: trovewatch reads the same events from each."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector import schema as S
from detector.pipeline import read_events
from detector.rejects import Quarantine
from detector.simulate import simulate
from tests.simulate.conftest import START


def events(out: Path, fmt: str) -> pl.DataFrame:
    result = simulate(out, 20, 16, 11, START, fmt=fmt)  # incidents on the last two days
    quarantine = Quarantine(None)
    parsed, _ = read_events(result.files, quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    assert {p.suffix for p in result.files} == {{"csvlog": ".csv", "stderr": ".log"}[fmt]}
    assert parsed[S.SOURCE_FORMAT].unique().to_list() == [f"pgaudit-{fmt}"]
    return parsed.drop(S.SOURCE_FORMAT)


@pytest.fixture(scope="module")
def jsonlog(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    result = simulate(tmp_path_factory.mktemp("json"), 20, 16, 11, START)
    parsed, _ = read_events(result.files)
    return parsed.drop(S.SOURCE_FORMAT)


def test_csvlog_holds_every_event_of_the_jsonlog(jsonlog: pl.DataFrame, tmp_path: Path) -> None:
    parsed = events(tmp_path, "csvlog")
    assert jsonlog.height > 50_000 and jsonlog[S.EXPORT].any() and (~jsonlog[S.SUCCESS]).any()
    assert parsed.equals(jsonlog)


def test_stderr_holds_every_event_of_the_jsonlog(jsonlog: pl.DataFrame, tmp_path: Path) -> None:
    # log_line_prefix '%m [%p] %q%u@%d %r %a ' has no session id (%c): sessions are told
    # apart by process id, so only their names differ, one for one.
    parsed = events(tmp_path, "stderr")
    assert parsed.drop(S.SESSION).equals(jsonlog.drop(S.SESSION))
    pairs = pl.DataFrame({"json": jsonlog[S.SESSION], "stderr": parsed[S.SESSION]}).unique()
    assert pairs.height == pairs["json"].n_unique() == pairs["stderr"].n_unique()
