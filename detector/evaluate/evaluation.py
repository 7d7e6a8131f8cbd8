"""One evaluation: trovewatch and the baselines on the same account-windows, measured.

:func:`compare` takes trovewatch's scored windows and, when the logs were given, the
training and evaluated periods' window activity; it fits the baselines, aligns every
method on trovewatch's windows and measures each with :func:`metrics.measure`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from detector.evaluate import baselines, metrics
from detector.features import ACCOUNT, WINDOW

TROVEWATCH = "trovewatch"
KEY = [ACCOUNT, WINDOW]


@dataclass
class Method:
    """One method's scored windows and figures; ``note`` says why it did not run."""

    name: str
    threshold: float | None = None
    scored: pl.DataFrame | None = None
    metrics: metrics.MethodMetrics | None = None
    note: str = ""


@dataclass
class Evaluation:
    """Everything the report shows."""

    labels: pl.DataFrame  # the incidents in the evaluated period
    left_out: int  # labelled incidents outside it
    window: timedelta
    period: tuple[datetime, datetime]  # first window start, last window end
    windows: int
    accounts: int
    positives: int  # account-windows overlapping an incident of their account
    training: tuple[datetime, datetime] | None = None  # the baselines' training windows
    training_windows: int = 0
    methods: list[Method] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def align(universe: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """``scored`` on exactly the windows of ``universe`` (account, window_start,
    window_end): a window the method did not score ranks lowest and is not flagged."""
    return (
        universe.select(ACCOUNT, WINDOW, "window_end")
        .join(scored.select(*KEY, "score", "flagged"), on=KEY, how="left", maintain_order="left")
        .with_columns(pl.col("score").fill_null(float("-inf")), pl.col("flagged").fill_null(False))
    )


def compare(
    trovewatch: pl.DataFrame,
    labels: pl.DataFrame,
    window: timedelta,
    *,
    threshold: float | None = None,
    train: pl.DataFrame | None = None,
    evaluated: pl.DataFrame | None = None,
    k: float = 3.0,
    seed: int = 0,
    slow_kinds: str = metrics.SLOW_KINDS,
) -> Evaluation:
    """Measure trovewatch's ``scored`` windows and every baseline's on the same windows.

    ``train`` and ``evaluated`` are :func:`detector.features.window_activity` rows of the
    training and evaluated periods; without them the baselines are reported as not run.
    """
    universe = trovewatch.select(ACCOUNT, WINDOW, "window_end", "score", "flagged").sort(KEY)
    result = Evaluation(
        labels=labels,
        left_out=0,
        window=window,
        period=(universe[WINDOW].min(), universe["window_end"].max()),  # type: ignore[arg-type]
        windows=universe.height,
        accounts=universe[ACCOUNT].n_unique(),
        positives=int(metrics.with_positives(universe, labels)["positive"].sum()),
    )
    result.methods.append(Method(TROVEWATCH, threshold, universe))
    if train is not None and evaluated is not None and train.height:
        result.training = (train[WINDOW].min(), train["window_end"].max())  # type: ignore[assignment]
        result.training_windows = train.height
        unscored = evaluated.join(universe, on=KEY, how="anti").height
        missing = universe.join(evaluated, on=KEY, how="anti").height
        if unscored or missing:
            result.notes.append(
                f"the logs and the scores disagree on {unscored + missing:,} account-windows "
                f"({missing:,} scored but not in the logs); baselines rank those lowest"
            )
    for baseline in baselines.all_baselines(k, seed):
        method = Method(baseline.name)
        if not baselines.available(baseline):
            method.note = baselines.EXTRA_HINT
        elif train is None or evaluated is None:
            method.note = "needs the logs: give LOG... and --train-until"
        elif train.is_empty():
            method.note = "no account-windows before --train-until to fit on"
        else:
            scored = baselines.run(baseline, train, evaluated)
            method.threshold = baseline.threshold_
            method.scored = align(universe, scored)
        result.methods.append(method)
    for method in result.methods:
        if method.scored is not None:
            method.metrics = metrics.measure(method.scored, labels, window, slow_kinds)
    return result
