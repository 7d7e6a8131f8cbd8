from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from detector.pipeline import read_events
from detector.rejects import Quarantine
from detector.simulate import simulate
from detector.simulate.writer import Result

START = date(2026, 10, 5)


@dataclass
class Run:
    out: Path
    result: Result
    events: pl.DataFrame
    quarantine: Quarantine

    def labels(self, name: str = "labels.csv") -> pl.DataFrame:
        return read_labels(self.out / name)


def read_labels(path: Path) -> pl.DataFrame:
    return pl.read_csv(path).with_columns(
        pl.col("start").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC"),
        pl.col("end").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC"),
    )


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """40 accounts over 17 days (incidents on the last three), parsed once."""
    out = tmp_path_factory.mktemp("sim-small")
    result = simulate(out, 40, 17, 3, START)
    quarantine = Quarantine(None)
    events, _ = read_events(result.files, quarantine=quarantine)
    return Run(out, result, events, quarantine)
