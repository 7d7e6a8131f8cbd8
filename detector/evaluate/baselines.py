"""Baselines a user might pick instead of trovewatch, each scoring the same account-windows.

Every baseline has two verbs, ``fit(train)`` and ``score(windows)``, over frames of
:func:`detector.features.window_activity` rows; scores are floats and **higher means
more anomalous**, always. After ``fit``, ``threshold_`` is the score at which a window
is flagged by default:

- the static per-account threshold flags ``z >= k`` (its own definition);
- the learned ones flag what scores at least their training windows' 99.9th percentile,
  the point trovewatch's own calibration puts at its default threshold (0.5), so every
  method gets the same false-alarm budget on the training period.

The learned baselines see the raw per-window counts of :data:`RAW_COUNTS` only: no
relative features, no history, no peers. River and PyOD are optional (the ``eval``
extra); :func:`available` says whether a baseline can run here.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol, Self

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.features import ACCOUNT, WINDOW

RAW_COUNTS: Final = ("rows_read", "statements", "objects", "exports", "failed")
TRAINING_QUANTILE: Final = 0.999
EXTRA_HINT: Final = "not installed (uv sync --extra eval)"

Scores = npt.NDArray[np.float64]


class Baseline(Protocol):
    name: str
    threshold_: float

    def fit(self, train: pl.DataFrame) -> Self: ...

    def score(self, windows: pl.DataFrame) -> Scores: ...


def raw_counts(windows: pl.DataFrame) -> Scores:
    """The :data:`RAW_COUNTS` of each window as a float matrix; unknown (null) counts as 0."""
    return windows.select(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in RAW_COUNTS).to_numpy()


def _in_time_order(windows: pl.DataFrame) -> npt.NDArray[np.int64]:
    """Row positions of ``windows`` by window start, then account: a stream's order."""
    order = windows.with_row_index("_row").sort(WINDOW, ACCOUNT)["_row"]
    return np.asarray(order.to_numpy(), dtype=np.int64)


@contextmanager
def _quiet() -> Iterator[None]:
    """SciPy warns of precision loss in the skewness of a constant column (no failures,
    no exports in training): ECOD handles it, the user need not read it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _high_quantile(scores: Scores) -> float:
    finite = scores[np.isfinite(scores)]
    return float(np.quantile(finite, TRAINING_QUANTILE)) if finite.size else float("inf")


class StaticThreshold:
    """Per-account volume threshold: ``z = (rows_read - mean) / sd`` of the account's
    rows read per active window in training; flagged at ``z >= k``.

    Accounts unseen in training get the median account's mean and sd; ``sd`` is at
    least 1 row, so an account that always read the same count is not flagged for one
    row more.
    """

    def __init__(self, k: float = 3.0) -> None:
        self.k = k
        self.name = f"static rows z-score (k={k:g})"

    def fit(self, train: pl.DataFrame) -> Self:
        rows = pl.col("rows_read").cast(pl.Float64).fill_null(0.0)
        self.stats_ = train.group_by(ACCOUNT).agg(
            rows.mean().alias("mean"), rows.std(ddof=0).fill_null(0.0).alias("sd")
        )
        self.fallback_ = (
            float(self.stats_["mean"].median() or 0.0),  # type: ignore[arg-type]
            float(self.stats_["sd"].median() or 0.0),  # type: ignore[arg-type]
        )
        self.threshold_ = self.k
        return self

    def score(self, windows: pl.DataFrame) -> Scores:
        mean, sd = self.fallback_
        z = (
            windows.select(ACCOUNT, "rows_read")
            .join(self.stats_, on=ACCOUNT, how="left", maintain_order="left")
            .select(
                (
                    (
                        pl.col("rows_read").cast(pl.Float64).fill_null(0.0)
                        - pl.col("mean").fill_null(mean)
                    )
                    / pl.col("sd").fill_null(sd).clip(lower_bound=1.0)
                ).alias("z")
            )
        )
        return np.asarray(z["z"].to_numpy(), dtype=np.float64)


class RawIsolationForest:
    """scikit-learn's IsolationForest (its defaults) on the raw counts.

    The score is the negated ``score_samples``: scikit-learn's points the other way.
    """

    name = "isolation forest, raw counts"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, train: pl.DataFrame) -> Self:
        from sklearn.ensemble import IsolationForest  # seconds to import: only when fitted

        features = raw_counts(train)
        self.forest_ = IsolationForest(random_state=self.random_state).fit(features)
        self.threshold_ = _high_quantile(self.score(train))
        return self

    def score(self, windows: pl.DataFrame) -> Scores:
        if windows.is_empty():
            return np.zeros(0)
        return np.asarray(-self.forest_.score_samples(raw_counts(windows)), dtype=np.float64)


class HalfSpaceTrees:
    """River's streaming HalfSpaceTrees on the raw counts, each feature's limits from
    training. It learns as it goes: every window is scored, then learned, in time
    order, through training and through the evaluated period, as it would run live.
    """

    name = "half-space trees (River)"
    module = "river"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: pl.DataFrame) -> Self:
        from river import anomaly

        features = raw_counts(train)
        highs = features.max(axis=0) if len(features) else np.ones(len(RAW_COUNTS))
        self.limits_: dict[Hashable, tuple[float, float]] = {
            c: (0.0, max(float(h), 1.0)) for c, h in zip(RAW_COUNTS, highs, strict=True)
        }
        self.model_: Any = anomaly.HalfSpaceTrees(limits=self.limits_, seed=self.seed)
        scores = self._stream(features, _in_time_order(train))
        # Scores are 0 until the first reference window is full: leave those out.
        warm = scores[_in_time_order(train)][self.model_.window_size :]
        self.threshold_ = _high_quantile(warm if warm.size else scores)
        return self

    def score(self, windows: pl.DataFrame) -> Scores:
        return self._stream(raw_counts(windows), _in_time_order(windows))

    def _stream(self, features: Scores, order: npt.NDArray[np.int64]) -> Scores:
        scores = np.zeros(len(features))
        for i in order:
            x = dict(zip(RAW_COUNTS, features[i].tolist(), strict=True))
            scores[i] = self.model_.score_one(x)
            self.model_.learn_one(x)
        return scores


class ECOD:
    """PyOD's ECOD (empirical cumulative distribution outlier detection) on the raw
    counts; parameter-free. Scores are its ``decision_function``."""

    name = "ECOD (PyOD)"
    module = "pyod"

    def fit(self, train: pl.DataFrame) -> Self:
        from pyod.models.ecod import ECOD as PyodECOD

        with _quiet():
            self.model_: Any = PyodECOD().fit(raw_counts(train))
        self.threshold_ = _high_quantile(np.asarray(self.model_.decision_scores_, dtype=np.float64))
        return self

    def score(self, windows: pl.DataFrame) -> Scores:
        if windows.is_empty():
            return np.zeros(0)
        with _quiet():
            scores = self.model_.decision_function(raw_counts(windows))
        return np.asarray(scores, dtype=np.float64)


def all_baselines(k: float = 3.0, seed: int = 0) -> list[Baseline]:
    """Every baseline, in report order."""
    return [StaticThreshold(k), RawIsolationForest(seed), HalfSpaceTrees(seed), ECOD()]


def available(baseline: Baseline) -> bool:
    """False when the baseline's optional library (the ``eval`` extra) is not installed."""
    module = getattr(baseline, "module", None)
    return module is None or importlib.util.find_spec(module) is not None


def run(baseline: Baseline, train: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Fit on ``train`` and score ``windows``: ``account, window_start, window_end,
    score, flagged`` in the order of ``windows``."""
    if train.is_empty():
        raise ValueError("no account-windows in the training period to fit the baselines on")
    fitted = baseline.fit(train)
    scores = fitted.score(windows)
    return windows.select(ACCOUNT, WINDOW, "window_end").with_columns(
        pl.Series("score", scores, dtype=pl.Float64),
        pl.Series("flagged", scores >= fitted.threshold_, dtype=pl.Boolean),
    )
