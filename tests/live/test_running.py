"""Horizon sums carried from close to close are those of summing the whole period."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from detector import features as F
from detector.live.running import Running
from tests.test_features import random_windows

FIRST = datetime(2000, 1, 1, tzinfo=UTC)  # before any window


def closes(windows: pl.DataFrame, seed: int) -> list[datetime]:
    """Close times at random: some closes take one window start, others hours or days
    of them (a service catching up)."""
    rng = np.random.default_rng(seed)
    starts = windows[F.WINDOW].unique().sort().to_list()
    cuts, i = [], 0
    while i < len(starts) - 1:
        i = min(i + int(rng.choice([1, 1, 2, 5, 40, 400])), len(starts) - 1)
        cuts.append(starts[i])
    return cuts


def carried(windows: pl.DataFrame, horizons: F.Horizons, seed: int) -> tuple[pl.DataFrame, Running]:
    """Every window's sums as a live close gets them: close after close, the history
    being the windows of earlier closes."""
    running, done, parts = Running(horizons), None, []
    for to in closes(windows, seed):
        new = windows.filter(pl.col(F.WINDOW) <= to, pl.col(F.WINDOW) > (done or FIRST))
        history = windows.filter(pl.col(F.WINDOW) <= (done or FIRST))

        def between(lo: datetime, hi: datetime, history: pl.DataFrame = history) -> pl.DataFrame:
            return history.filter(pl.col(F.WINDOW) > lo, pl.col(F.WINDOW) <= hi)

        leaving = running.leaving(between, to)
        parts.append(running.summed(new.drop("alerted"), leaving))
        running.advance(new, leaving, to)
        done = to
    return pl.concat(parts).sort(F.ACCOUNT, F.WINDOW), running


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "horizons", [F.Horizons(), F.Horizons("1m", ("10m", "1d")), F.Horizons("1h", ("1d", "1w"))]
)
def test_sums_carried_from_close_to_close_are_the_whole_periods(
    seed: int, horizons: F.Horizons
) -> None:
    windows = random_windows(seed, accounts=25, per_account=200)
    got, _ = carried(windows, horizons, seed)
    whole = F.add_horizons(windows.lazy(), horizons).collect()
    columns = [
        *F.horizon_columns(horizons, F.VOLUME),
        *(F.col_name(s, F.TODAY) for s in F.DRIP),
    ]
    assert got.height == windows.height
    assert got.select(F.ACCOUNT, F.WINDOW, *columns).equals(
        whole.select(F.ACCOUNT, F.WINDOW, *columns)
    )


@pytest.mark.parametrize("seed", [4, 5])
def test_volume_since_an_alert_is_taken_out_as_over_the_whole_period(seed: int) -> None:
    """A close's windows beside the alerted windows before them (their running totals
    0, as the engine gives them) are discounted as the whole period is."""
    horizons = F.Horizons()
    windows = random_windows(seed, accounts=25, per_account=200)
    got, _ = carried(windows, horizons, seed)
    whole = F.discount_alerted(
        F.add_horizons(windows.lazy(), horizons), pl.col("alerted"), horizons
    ).collect()
    # Each window judged beside the alerted windows of earlier closes: per close, the
    # running totals restart from the account's latest earlier alert.
    rng_closes = closes(windows, seed)
    parts, done = [], None
    for to in rng_closes:
        in_close = pl.col(F.WINDOW) <= to
        if done is not None:
            in_close = in_close & (pl.col(F.WINDOW) > done)
        new = got.filter(in_close).join(
            windows.select(F.ACCOUNT, F.WINDOW, "alerted"), on=[F.ACCOUNT, F.WINDOW]
        )
        earlier = windows.filter(pl.col("alerted"), pl.col(F.WINDOW) <= (done or FIRST))
        frame = pl.concat(
            [
                earlier.select(F.ACCOUNT, F.WINDOW, "alerted").with_columns(
                    pl.lit(0, pl.Int64).alias(f"{s}__running") for s in F.VOLUME
                ),
                new.with_columns(pl.lit(True).alias("_new")),
            ],
            how="diagonal_relaxed",
        ).sort(F.ACCOUNT, F.WINDOW)
        parts.append(
            F.discount_alerted(frame.lazy(), pl.col("alerted"), horizons)
            .filter(pl.col("_new").fill_null(False))
            .collect()
        )
        done = to
    discounted = pl.concat(parts).sort(F.ACCOUNT, F.WINDOW)
    columns = F.horizon_columns(horizons, F.VOLUME)
    assert discounted.select(F.ACCOUNT, F.WINDOW, *columns).equals(
        whole.select(F.ACCOUNT, F.WINDOW, *columns)
    )


def test_an_untrained_accounts_earlier_days_are_those_of_the_whole_period() -> None:
    """Each day's largest sums are kept as they were scored: the oldest day's do not
    shrink as the days before it leave the history."""
    horizons = F.Horizons()
    windows = random_windows(6, accounts=10, per_account=300)
    columns = F.horizon_columns(horizons)
    whole = F.add_horizons(windows.lazy(), horizons).collect()
    expected = F.earlier_days(whole.lazy(), horizons, columns).collect()
    running, done, found = Running(horizons), None, []
    for to in closes(windows, 6):
        new = windows.filter(pl.col(F.WINDOW) <= to, pl.col(F.WINDOW) > (done or FIRST))
        history = windows.filter(pl.col(F.WINDOW) <= (done or FIRST))

        def between(lo: datetime, hi: datetime, history: pl.DataFrame = history) -> pl.DataFrame:
            return history.filter(pl.col(F.WINDOW) > lo, pl.col(F.WINDOW) <= hi)

        leaving = running.leaving(between, to)
        summed = running.summed(new.drop("alerted"), leaving)
        days = summed.select(F.ACCOUNT, pl.col(F.WINDOW).dt.truncate("1d").alias("day")).unique()
        found.append(days.join(running.earlier_days(summed), on=[F.ACCOUNT, "day"]))
        running.advance(new, leaving, to)
        running.remember_days(summed)
        done = to
    got = pl.concat(found).unique([F.ACCOUNT, "day"], keep="last").sort(F.ACCOUNT, "day")
    assert got.equals(
        expected.join(got.select(F.ACCOUNT, "day"), on=[F.ACCOUNT, "day"]).sort(F.ACCOUNT, "day")
    )
    assert got.select(pl.col(f"{columns[0]}__earlier").is_not_null().any()).item()


def test_the_state_summed_again_from_the_history_is_the_state_carried() -> None:
    """After a restart the sums are summed again from the window history kept (the
    longest horizon's): the same as those carried."""
    horizons = F.Horizons()
    windows = random_windows(7, accounts=25, per_account=200).with_columns(
        (pl.int_range(pl.len()) % 13 == 0).alias("alerted")  # alerts in most histories
    )
    cuts = closes(windows, 7)
    _, running = carried(windows.filter(pl.col(F.WINDOW) <= cuts[len(cuts) // 2]), horizons, 7)
    assert running.at is not None
    kept = windows.filter(
        pl.col(F.WINDOW) <= running.at, pl.col(F.WINDOW) > running.at - F.span("3d")
    )
    again = Running.of_history(horizons, kept, running.at)
    ours, theirs = again.sums.sort(F.ACCOUNT), running.sums.sort(F.ACCOUNT)
    since = [c for c in theirs.columns if c.endswith("|since")]
    assert ours.drop(since).equals(theirs.drop(since))
    # The volume since an alert counts only while the alert is remembered (within the
    # longest horizon): for accounts with one in the history.
    alerted = pl.col(F.ACCOUNT).is_in(kept.filter("alerted")[F.ACCOUNT].implode())
    assert ours.filter(alerted).equals(theirs.filter(alerted))
    assert ours.filter(alerted).height > 5
