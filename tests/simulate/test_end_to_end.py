"""End to end on a simulated organisation: ``trovewatch train`` on the first two weeks,
``trovewatch score`` on the last two, through the command line.

Bulk pulls, dumps with the wrong account's credentials and COPY exports must be flagged
in a window where they happen. What happens to the other kinds, and how many ordinary
account-days are flagged, is printed (``pytest -s``), not asserted: it measures the
detector, not the simulator.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector.simulate import simulate
from detector.simulate.incidents import KINDS
from tests.simulate.conftest import read_labels

START = date(2026, 10, 5)
SPLIT = START + timedelta(days=14)
MUST_FLAG = ("burst_pull", "wrong_account_dump", "copy_export")


def _trovewatch(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _scored(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = root / "logs"
    result = simulate(out, 60, 28, 1, START)
    logs = [str(p) for p in result.files]
    model, scores = root / "model", root / "scores.ndjson"
    quarantine = str(root / "quarantine.ndjson")
    _trovewatch(
        "train",
        "--model-dir",
        str(model),
        "--until",
        SPLIT.isoformat(),
        "--quarantine",
        quarantine,
        *logs,
    )
    _trovewatch("score", "--model-dir", str(model), "--since", SPLIT.isoformat(), "--out", str(scores),
                "--quarantine", quarantine, *logs)  # fmt: skip
    windows = pl.read_ndjson(scores).with_columns(
        pl.col("window_start").str.to_datetime(time_zone="UTC"),
        pl.col("window_end").str.to_datetime(time_zone="UTC"),
    )
    return windows, read_labels(out / "labels.csv")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _scored(tmp_path_factory.mktemp("sim-e2e"))


def _hits(windows: pl.DataFrame, label: dict[str, Any]) -> pl.DataFrame:
    return windows.filter(
        pl.col("flagged"),
        pl.col("account") == label["account"],
        pl.col("window_end") > label["start"],
        pl.col("window_start") <= label["end"],
    )


@pytest.mark.parametrize("kind", MUST_FLAG)
def test_bulk_pulls_dumps_and_copy_exports_are_flagged_where_they_happen(
    scored: tuple[pl.DataFrame, pl.DataFrame], kind: str
) -> None:
    windows, labels = scored
    incidents = labels.filter(pl.col("kind") == kind)
    assert incidents.height >= 1
    for label in incidents.iter_rows(named=True):
        hits = _hits(windows, label)
        assert hits.height >= 1, (
            f"{label['incident_id']} ({kind}) by {label['account']} not flagged"
        )
        assert all(hits["reasons"].list.len() > 0)


def test_report_what_the_detector_finds(scored: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    windows, labels = scored
    found = {k: [0, 0] for k in KINDS}
    for label in labels.iter_rows(named=True):
        found[label["kind"]][1] += 1
        found[label["kind"]][0] += _hits(windows, label).height > 0
    incident_days = labels.select(
        "account", pl.date_ranges(pl.col("start").dt.date(), pl.col("end").dt.date()).alias("day")
    ).explode("day")
    days = windows.select("account", pl.col("window_start").dt.date().alias("day")).unique()
    false = (
        windows.filter(pl.col("flagged"))
        .select("account", pl.col("window_start").dt.date().alias("day"))
        .unique()
        .join(incident_days, on=["account", "day"], how="anti")
    )
    print("\nflagged incidents per kind:", {k: f"{f}/{n}" for k, (f, n) in found.items()})
    print(f"false alarms: {false.height} of {days.height} account-days "
          f"({1000 * false.height / days.height:.1f} per 1,000)")  # fmt: skip
    assert days.height > 500
