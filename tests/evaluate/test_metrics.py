"""The metrics on frames small enough to check by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from detector.evaluate import metrics

FIVE = timedelta(minutes=5)


def t(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-10-{text}").replace(tzinfo=UTC)


def labels(*rows: tuple[str, str, str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"incident_id": i, "account": a, "start": t(s), "end": t(e), "kind": k}
            for i, a, s, e, k in rows
        ],
        schema={
            "incident_id": pl.String,
            "account": pl.String,
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
            "kind": pl.String,
        },
    )


def windows(*rows: tuple[str, str, float, bool]) -> pl.DataFrame:
    """(account, window start 'DDTHH:MM', score, flagged) -> 5-minute scored windows."""
    return pl.DataFrame(
        [
            {
                "account": a,
                "window_start": t(s),
                "window_end": t(s) + FIVE,
                "score": score,
                "flagged": flagged,
            }
            for a, s, score, flagged in rows
        ],
        schema={
            "account": pl.String,
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
            "score": pl.Float64,
            "flagged": pl.Boolean,
        },
    )


INCIDENTS = labels(
    ("A", "web", "20T03:10:16", "20T03:11:20", "bulk_select"),
    ("B", "ben", "21T22:40:00", "21T22:41:00", "copy_export"),
    ("C", "eve", "22T13:05:00", "22T13:05:30", "copy_export"),
    ("D", "drip", "23T00:00:00", "25T00:00:00", "slow_drip"),
)


def test_an_incident_is_detected_by_a_flag_of_its_account_in_or_right_after_it() -> None:
    scored = windows(
        ("web", "20T03:10", 0.9, True),  # A: in the incident's window
        ("ben", "21T22:50", 0.9, True),  # B: starts 9 min after the end: past end + 5 min
        ("ben", "21T22:40", 0.4, False),  # B: the incident's window, not flagged
        ("web", "21T22:40", 0.9, True),  # another account at B's time does not count
        ("eve", "22T13:10", 0.9, True),  # C: the next window, within end + 5 min
        ("drip", "23T20:00", 0.9, True),  # D: 20 h after a slow drip's start
    )
    found = metrics.detections(scored, INCIDENTS, FIVE).sort("incident_id")
    assert found["detected"].to_list() == [True, False, True, True]
    # time to detect: start -> end of the first flagged window
    assert found["time_to_detect"].to_list() == [
        timedelta(minutes=4, seconds=44),  # 03:10:16 -> 03:15:00
        None,
        timedelta(minutes=10),  # 13:05 -> 13:15
        timedelta(hours=20, minutes=5),
    ]
    assert metrics.median_time_to_detect(found) == timedelta(minutes=10)


def test_a_slow_drip_flagged_after_24_hours_is_missed() -> None:
    scored = windows(("drip", "24T00:05", 0.9, True))  # 24 h 5 min after its start
    found = metrics.detections(scored, INCIDENTS, FIVE)
    assert not found.filter(pl.col("incident_id") == "D")["detected"].item()


def test_recall_per_kind_and_overall() -> None:
    scored = windows(("web", "20T03:10", 0.9, True), ("eve", "22T13:05", 0.9, True))
    recall = metrics.recall_by_kind(metrics.detections(scored, INCIDENTS, FIVE))
    assert recall.rows() == [
        ("bulk_select", 1, 1, 1.0),
        ("copy_export", 2, 1, 0.5),
        ("slow_drip", 1, 0, 0.0),
        ("all", 4, 2, 0.5),
    ]
    assert metrics.median_time_to_detect(metrics.detections(windows(), INCIDENTS, FIVE)) is None


def test_false_alerts_count_flagged_account_days_without_a_label() -> None:
    scored = windows(
        ("web", "20T03:10", 0.9, True),  # A's day: labelled
        ("web", "20T09:00", 0.9, True),  # the same labelled day: not false
        ("web", "21T09:00", 0.9, True),  # false: web, the 21st
        ("web", "21T10:00", 0.9, True),  # the same false account-day, a second window
        ("ann", "21T09:00", 0.1, False),
        ("ann", "22T09:00", 0.9, True),  # false: ann, the 22nd
        ("drip", "24T12:00", 0.9, True),  # inside the slow drip's days: labelled
        ("bob", "20T01:00", 0.1, False),
    )
    found = metrics.false_alerts(scored, INCIDENTS, FIVE)
    # account-days with activity: web 20, 21; ann 21, 22; drip 24; bob 20 -> 6
    assert (found.account_days, found.false_account_days, found.false_windows) == (6, 2, 3)
    assert found.per_1000 == pytest.approx(1000 * 2 / 6)


def test_labelled_days_run_from_start_to_the_detection_end() -> None:
    late = labels(("E", "x", "20T23:58:00", "20T23:59:00", "bulk_select"))
    days = metrics.labelled_days(late, FIVE).sort("day")["day"].to_list()
    assert days == [date(2026, 10, 20), date(2026, 10, 21)]  # 23:59 + 5 min is the next day


def test_a_window_is_positive_when_its_accounts_incident_overlaps_it() -> None:
    scored = windows(
        ("web", "20T03:05", 0.1, False),
        ("web", "20T03:10", 0.9, True),
        ("web", "20T03:15", 0.2, False),
        ("ben", "20T03:10", 0.3, False),
    )
    assert metrics.with_positives(scored, INCIDENTS)["positive"].to_list() == [
        False,
        True,
        False,
        False,
    ]


def test_pr_auc_by_hand() -> None:
    # scores 0.9+, 0.8-, 0.7+, 0.1-: precision 1 at recall 1/2, 2/3 at recall 1
    frame = pl.DataFrame({"score": [0.9, 0.8, 0.7, 0.1], "positive": [True, False, True, False]})
    curve = metrics.pr_curve(frame)
    assert curve["precision"].to_list() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert curve["recall"].to_list() == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert metrics.average_precision(curve) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_pr_auc_is_sklearns_average_precision_ties_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 12, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.1 + scores / 40
    frame = pl.DataFrame({"score": scores, "positive": positive})
    ours = metrics.average_precision(metrics.pr_curve(frame))
    assert ours == pytest.approx(average_precision_score(positive, scores))


def test_a_window_flagged_by_rule_ranks_above_unflagged_ones_whatever_its_score() -> None:
    # trovewatch flags a slow drip's window by rule at score 0.1: its curve starts there
    # (precision 1 at recall 1/2), as its alerts do; ranked by score alone it came last.
    frame = pl.DataFrame(
        {
            "score": [0.9, 0.5, 0.2, 0.1],
            "flagged": [False, False, False, True],
            "positive": [False, True, False, True],
        }
    )
    curve = metrics.pr_curve(frame)
    assert curve["precision"].to_list() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert metrics.average_precision(curve) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    by_score = metrics.pr_curve(frame.drop("flagged"))
    assert metrics.average_precision(by_score) == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)


def test_no_positive_window_gives_no_pr_auc() -> None:
    frame = pl.DataFrame({"score": [0.5, 0.2], "positive": [False, False]})
    assert metrics.average_precision(metrics.pr_curve(frame)) is None


def test_alerts_per_day() -> None:
    scored = windows(
        ("web", "20T03:10", 0.9, True),
        ("web", "20T03:15", 0.9, True),
        ("ann", "20T04:00", 0.9, True),
        ("ann", "21T04:00", 0.1, False),
    )
    assert metrics.alerts_per_day(scored).rows() == [
        (date(2026, 10, 20), 3, 2),
        (date(2026, 10, 21), 0, 0),
    ]
