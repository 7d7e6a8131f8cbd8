"""Detection-quality metrics: pure functions over Polars frames, no I/O.

Two frames go in:

- ``labels``: one row per incident: ``incident_id``, ``account``, ``start``, ``end``
  (UTC datetimes), ``kind``.
- ``scored``: one row per account-window of one method: ``account``, ``window_start``,
  ``window_end`` (UTC datetimes), ``score`` (float, higher = more anomalous) and
  ``flagged`` (bool, the method's verdict at its default threshold).

An incident is **detected** when a flagged window of its account overlaps its
detection interval: ``[start, end + window]`` (the pull's last rows may land in the
next window), or, for slow drips, ``[start, start + 24 h]``. A **window is positive**
when its account has an incident overlapping ``[window_start, window_end)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

ACCOUNT: Final = "account"
START: Final = "window_start"
END: Final = "window_end"
SLOW_DEADLINE: Final = timedelta(hours=24)
# Kinds whose name says drip or slow are slow drips: detected within 24 h of their start.
SLOW_KINDS: Final = r"(?i)drip|slow"


def detection_intervals(
    labels: pl.DataFrame, window: timedelta, slow_kinds: str = SLOW_KINDS
) -> pl.DataFrame:
    """``labels`` with ``slow`` (bool) and ``until``: the end of each detection interval.

    ``until`` is ``end + window``, or ``start + 24 h`` for kinds matching ``slow_kinds``.
    """
    slow = pl.col("kind").str.contains(slow_kinds)
    return labels.with_columns(slow.alias("slow")).with_columns(
        pl.when(pl.col("slow"))
        .then(pl.col("start") + SLOW_DEADLINE)
        .otherwise(pl.col("end") + window)
        .alias("until")
    )


def detections(
    scored: pl.DataFrame, labels: pl.DataFrame, window: timedelta, slow_kinds: str = SLOW_KINDS
) -> pl.DataFrame:
    """One row per incident: ``incident_id, account, kind, start, end, until, detected,
    first_alert_end, time_to_detect``.

    ``first_alert_end`` is the end of the earliest flagged window of the incident's
    account overlapping its detection interval; ``time_to_detect`` (a duration) runs
    from the incident's start to it. Both are null when the incident was missed.
    """
    intervals = detection_intervals(labels, window, slow_kinds)
    hits = (
        intervals.select("incident_id", ACCOUNT, "start", "until")
        .join(scored.filter(pl.col("flagged")).select(ACCOUNT, START, END), on=ACCOUNT)
        .filter(pl.col(END) > pl.col("start"), pl.col(START) <= pl.col("until"))
        .group_by("incident_id")
        .agg(pl.col(END).min().alias("first_alert_end"))
    )
    return (
        intervals.join(hits, on="incident_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("first_alert_end").is_not_null().alias("detected"),
            (pl.col("first_alert_end") - pl.col("start")).alias("time_to_detect"),
        )
        .select(
            "incident_id",
            ACCOUNT,
            "kind",
            "start",
            "end",
            "until",
            "detected",
            "first_alert_end",
            "time_to_detect",
        )
    )


def recall_by_kind(found: pl.DataFrame) -> pl.DataFrame:
    """From :func:`detections`: ``kind, incidents, detected, recall`` per kind (sorted),
    then one row of kind ``all``. Recall is a fraction in 0..1, null without incidents."""
    per_kind = (
        found.group_by("kind")
        .agg(pl.len().alias("incidents"), pl.col("detected").sum().alias("detected"))
        .sort("kind")
    )
    overall = pl.DataFrame(
        {"kind": ["all"], "incidents": [found.height], "detected": [int(found["detected"].sum())]},
        schema=per_kind.schema,
    )
    return pl.concat([per_kind, overall]).with_columns(
        pl.when(pl.col("incidents") > 0)
        .then(pl.col("detected") / pl.col("incidents"))
        .alias("recall")
    )


def median_time_to_detect(found: pl.DataFrame) -> timedelta | None:
    """The median time to detect over detected incidents; None when none was detected."""
    ttd = found["time_to_detect"].drop_nulls()
    if ttd.is_empty():
        return None
    median = ttd.dt.total_microseconds().median()
    return None if median is None else timedelta(microseconds=float(median))  # type: ignore[arg-type]


def labelled_days(
    labels: pl.DataFrame, window: timedelta, slow_kinds: str = SLOW_KINDS
) -> pl.DataFrame:
    """``account, day``: every UTC day from an incident's start to the later of its end
    and its detection interval's end. A flag on these days is not a false alert."""
    intervals = detection_intervals(labels, window, slow_kinds)
    return (
        intervals.select(
            ACCOUNT,
            pl.date_ranges(
                pl.col("start").dt.date(), pl.max_horizontal("end", "until").dt.date()
            ).alias("day"),
        )
        .explode("day")
        .unique()
    )


@dataclass(frozen=True)
class FalseAlerts:
    """Flags outside any labelled account-day."""

    account_days: int  # account-days with at least one scored window: the denominator
    false_account_days: int  # unlabelled account-days with at least one flagged window
    false_windows: int  # flagged windows on unlabelled account-days

    @property
    def per_1000(self) -> float | None:
        """False-alert account-days per 1,000 account-days; None without account-days."""
        if not self.account_days:
            return None
        return 1000.0 * self.false_account_days / self.account_days


def false_alerts(
    scored: pl.DataFrame, labels: pl.DataFrame, window: timedelta, slow_kinds: str = SLOW_KINDS
) -> FalseAlerts:
    """Count the account-days flagged without a label (see :func:`labelled_days`).

    The denominator is every account-day with a scored (active) window.
    """
    days = scored.select(ACCOUNT, pl.col(START).dt.date().alias("day"), "flagged")
    unlabelled = days.join(
        labelled_days(labels, window, slow_kinds), on=[ACCOUNT, "day"], how="anti"
    )
    false_flags = unlabelled.filter(pl.col("flagged"))
    return FalseAlerts(
        account_days=days.select(ACCOUNT, "day").unique().height,
        false_account_days=false_flags.select(ACCOUNT, "day").unique().height,
        false_windows=false_flags.height,
    )


def with_positives(scored: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """``scored`` with ``positive``: its account has an incident overlapping the window
    (``start < window_end`` and ``end >= window_start``)."""
    keyed = scored.with_row_index("_row")
    hits = (
        keyed.select("_row", ACCOUNT, START, END)
        .join(labels.select(ACCOUNT, "start", "end"), on=ACCOUNT)
        .filter(pl.col("start") < pl.col(END), pl.col("end") >= pl.col(START))
        .select("_row")
        .unique()
        .with_columns(pl.lit(True).alias("positive"))
    )
    return (
        keyed.join(hits, on="_row", how="left", maintain_order="left")
        .with_columns(pl.col("positive").fill_null(False))
        .drop("_row")
    )


def pr_curve(scored: pl.DataFrame) -> pl.DataFrame:
    """Precision and recall at every distinct score, highest first.

    ``scored`` needs ``score`` and ``positive``; with ``flagged``, the method's flagged
    windows rank above its others, then by score: the curve passes through the method's
    own verdicts (trovewatch flags some windows by rule, a guardrail or a slow drip,
    whatever their score; a baseline flags by its score, so its order is its score's).
    Returns ``threshold, precision, recall``: flagging every window ranked at or above
    one scoring ``threshold``. Empty when there are no positives. NaN scores rank lowest.
    """
    positives = int(scored["positive"].sum())
    if positives == 0:
        return pl.DataFrame(
            schema={"threshold": pl.Float64, "precision": pl.Float64, "recall": pl.Float64}
        )
    flagged = pl.col("flagged") if "flagged" in scored.columns else pl.lit(False)
    return (
        scored.select(
            flagged.fill_null(False).alias("_flagged"),
            pl.col("score").cast(pl.Float64).fill_nan(float("-inf")),
            "positive",
        )
        .group_by("_flagged", "score")
        .agg(pl.col("positive").sum().alias("tp"), pl.len().alias("n"))
        .sort("_flagged", "score", descending=True)
        .select(
            pl.col("score").alias("threshold"),
            (pl.col("tp").cum_sum() / pl.col("n").cum_sum()).alias("precision"),
            (pl.col("tp").cum_sum() / positives).alias("recall"),
        )
    )


def average_precision(curve: pl.DataFrame) -> float | None:
    """Area under the PR curve as a step function: sum over thresholds of
    ``(recall_n - recall_{n-1}) * precision_n`` (scikit-learn's
    ``average_precision_score``). None when the curve is empty (no positives)."""
    if curve.is_empty():
        return None
    steps = curve.select(
        ((pl.col("recall") - pl.col("recall").shift(1, fill_value=0.0)) * pl.col("precision")).sum()
    )
    return float(steps.item())


def alerts_per_day(scored: pl.DataFrame) -> pl.DataFrame:
    """``day, flagged_windows, flagged_accounts``: alert volume per UTC day with activity."""
    return (
        scored.group_by(pl.col(START).dt.date().alias("day"))
        .agg(
            pl.col("flagged").sum().alias("flagged_windows"),
            pl.col(ACCOUNT).filter(pl.col("flagged")).n_unique().alias("flagged_accounts"),
        )
        .sort("day")
    )


@dataclass(frozen=True)
class MethodMetrics:
    """Every figure of one method over one evaluation."""

    detections: pl.DataFrame  # per incident, from :func:`detections`
    recall: pl.DataFrame  # per kind, from :func:`recall_by_kind`
    median_ttd: timedelta | None
    false_alerts: FalseAlerts
    curve: pl.DataFrame  # from :func:`pr_curve`
    pr_auc: float | None
    per_day: pl.DataFrame  # from :func:`alerts_per_day`
    flagged_windows: int


def measure(
    scored: pl.DataFrame, labels: pl.DataFrame, window: timedelta, slow_kinds: str = SLOW_KINDS
) -> MethodMetrics:
    """All of the above for one method's ``scored`` windows."""
    found = detections(scored, labels, window, slow_kinds)
    curve = pr_curve(with_positives(scored, labels))
    return MethodMetrics(
        detections=found,
        recall=recall_by_kind(found),
        median_ttd=median_time_to_detect(found),
        false_alerts=false_alerts(scored, labels, window, slow_kinds),
        curve=curve,
        pr_auc=average_precision(curve),
        per_day=alerts_per_day(scored),
        flagged_windows=int(scored["flagged"].sum()),
    )
