"""Each baseline scores what a user of it would expect, higher meaning more anomalous."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from detector.evaluate import baselines

START = datetime(2026, 10, 5, tzinfo=UTC)


def activity(rows: list[tuple[str, int, int]], first: datetime = START) -> pl.DataFrame:
    """(account, rows read, statements) per 5-minute window, one window per row."""
    starts = [first + timedelta(minutes=5 * i) for i in range(len(rows))]
    return pl.DataFrame(
        {
            "account": [a for a, _, _ in rows],
            "window_start": starts,
            "window_end": [s + timedelta(minutes=5) for s in starts],
            "rows_read": [r for _, r, _ in rows],
            "statements": [n for _, _, n in rows],
            "objects": [1] * len(rows),
            "exports": [0] * len(rows),
            "failed": [0] * len(rows),
        }
    )


def test_static_threshold_is_a_z_score_of_the_accounts_rows_read() -> None:
    train = activity([("web", 10, 1), ("web", 20, 1), ("web", 30, 1), ("ben", 100, 1)])
    static = baselines.StaticThreshold(k=3).fit(train)
    # web: mean 20, sd sqrt(200/3) = 8.165; ben: one window, sd 0 -> at least 1 row
    scores = static.score(activity([("web", 50, 1), ("web", 20, 1), ("ben", 102, 1)]))
    assert scores.tolist() == pytest.approx([30 / (200 / 3) ** 0.5, 0.0, 2.0])
    assert static.threshold_ == 3


def test_static_threshold_compares_an_unseen_account_with_the_median_account() -> None:
    train = activity([("a", 10, 1), ("a", 30, 1), ("b", 0, 1), ("b", 40, 1), ("c", 5, 1)])
    static = baselines.StaticThreshold().fit(train)
    # means 20, 20, 5 -> 20; sds 10, 20, 0 -> 10
    assert static.score(activity([("new", 50, 1)])).tolist() == pytest.approx([3.0])


def ordinary(n: int = 2000) -> pl.DataFrame:
    """Two weeks of a web app: about 10 rows and 3 statements per window, with noise."""
    rng = np.random.default_rng(0)
    return activity(
        [
            ("web", int(r), int(s))
            for r, s in zip(rng.poisson(10, n), rng.poisson(3, n), strict=True)
        ]
    )


NEEDS = {"half-space trees (River)": "river", "ECOD (PyOD)": "pyod"}


@pytest.mark.parametrize("make", baselines.all_baselines(), ids=lambda b: b.name)
def test_a_bulk_pull_scores_above_the_default_threshold_and_ordinary_work_below(
    make: baselines.Baseline,
) -> None:
    if make.name in NEEDS:
        pytest.importorskip(NEEDS[make.name])
    later = START + timedelta(days=30)
    new = activity([("web", 8, 2), ("web", 50_000, 40), ("web", 12, 3)], first=later)
    scored = baselines.run(make, ordinary(), new)
    assert scored["flagged"].to_list() == [False, True, False]
    assert scored["score"][1] > max(scored["score"][0], scored["score"][2])
    assert scored.columns == ["account", "window_start", "window_end", "score", "flagged"]


def test_the_optional_baselines_are_known_to_be_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "river" else real(name, *a)
    )
    available = {b.name: baselines.available(b) for b in baselines.all_baselines()}
    assert available["half-space trees (River)"] is False
    assert available["static rows z-score (k=3)"] is True
    assert available["isolation forest, raw counts"] is True
