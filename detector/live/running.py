"""Horizon sums carried from one close to the next.

A window's sum of a signal over a horizon (1 hour, 1 day, 3 days) is the sum of its
account's windows that start within the horizon before it, itself included; its sum
"today" is that of its calendar day (UTC) so far (:func:`detector.features.add_horizons`,
over a whole period). A live close needs them only for its new windows. Taking them from
days of window history at each close made a close's cost grow with the history: a close
of 5,000 accounts at 3 days took 8-9 s, 17-19 s for accounts the model never saw
(``bench/bench_close.py``; now 1-2.4 s).

:class:`Running` holds, per account, each sum and its count of known values (unknown
volume is null, and stays null only if it is null over the whole horizon) as of a time
``at``: the windows that start in ``(at - horizon, at]``. A close takes its new windows'
sums from it, adding the new windows before each and taking out the windows that left
each horizon in between (from the window history: a close's worth per horizon), then
moves ``at`` on. Its cost follows the windows closing and leaving, not the history.
It folds a close in a group of accounts at a time (:data:`SHARDS`): over all 100,000
accounts of a close at once the fold raised the close's peak by 150-190 MB
(``bench/bench_memory.py --accounts 100000 --per-account 20 --windows 3``: 896 MB
before, 796 MB after).

It also holds, per account, each signal's volume since the account's latest alert
(:func:`detector.features.discount_alerted` takes what an alert showed out of later
sums), and, for accounts the model never saw, the largest sums of each of their days
(their own earlier days: :func:`detector.features.earlier_days`) as they were when
scored. A day's sums then do not shrink as the days before it leave the window history;
nor do they in a batch run, which sums every window over the whole period.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from detector import features as F

# History rows (account, window start, the volume signals, ``alerted``) of windows that
# start in (lo, hi].
Between = Callable[[datetime, datetime], pl.DataFrame]

TODAY: Final = F.TODAY
LAST: Final = "last"  # an account's newest window start (the account cap's order)
SHARDS: Final = 8  # groups of accounts whose sums are folded in one at a time


def _total(signal: str, horizon: str) -> str:
    return f"{signal}|{horizon}"


def _known(signal: str, horizon: str) -> str:
    return f"{signal}|{horizon}|known"


def _since(signal: str) -> str:
    return f"{signal}|since"


class Running:
    """Per-account horizon sums as of ``at``, the volume since each account's latest
    alert and its newest window, and untrained accounts' largest sums per day (see the
    module's docstring). ``sums`` holds a row for each account with a window within a
    horizon: the accounts with window history. They are kept in :data:`SHARDS` groups of
    accounts (by a hash of the name), each folded in on its own at a close, so that a
    close never holds more than one group's working copy beside the sums; the known
    counts are Int32 (a count of windows within a few days). The sums are saved at each
    close and taken back at a restart (:meth:`restore`); a state saved without them is
    summed again from the history (:meth:`of_history`)."""

    def __init__(self, horizons: F.Horizons) -> None:
        self.horizons = horizons
        self.spans = {h: F.span(h) for h in horizons.longer}
        self.at: datetime | None = None
        self._shards = [pl.DataFrame(schema=self._schema()) for _ in range(SHARDS)]
        self.days = pl.DataFrame(schema=self._days_schema())

    @property
    def sums(self) -> pl.DataFrame:
        """The sums held (see the class's docstring), in groups of accounts: one frame
        in several chunks, not copied."""
        return pl.concat(self._shards)

    def _pairs(self) -> list[tuple[str, str]]:
        """(signal, horizon) of every sum held: the volume signals over each longer
        horizon, the drip volumes today."""
        return [(s, h) for s in F.VOLUME for h in self.horizons.longer] + [
            (s, TODAY) for s in F.DRIP
        ]

    def _schema(self) -> pl.Schema:
        # A count of windows within a few days fits Int32: the state is 20% smaller.
        sums = {
            name: dtype
            for s, h in self._pairs()
            for name, dtype in ((_total(s, h), pl.Int64()), (_known(s, h), pl.Int32()))
        }
        return pl.Schema(
            {
                F.ACCOUNT: pl.String(),
                **sums,
                **{_since(s): pl.Int64() for s in F.VOLUME},
                LAST: pl.Datetime("us", "UTC"),
            }
        )

    def _days_schema(self) -> pl.Schema:
        return pl.Schema(
            {
                F.ACCOUNT: pl.String(),
                F.WINDOW: pl.Datetime("us", "UTC"),
                **{c: pl.Int64() for c in F.horizon_columns(self.horizons)},
            }
        )

    # -- a close's new windows ---------------------------------------------------------

    def leaving(self, between: Between, to: datetime) -> dict[str, pl.DataFrame]:
        """Per horizon, the history rows that leave it as ``at`` moves on to ``to``:
        those starting in ``(at - horizon, to - horizon]`` (none before the first close:
        there is no history yet)."""
        if self.at is None:
            return {h: _no_rows() for h in self.horizons.longer}
        return {h: between(self.at - d, to - d) for h, d in self.spans.items()}

    def summed(self, new: pl.DataFrame, leaving: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
        """``new`` windows (account, window start, the volume signals; all after ``at``)
        sorted by account and window start, with the columns :func:`add_horizons` gives
        (each signal's sum over each horizon, the drip volumes' sums today) and each
        signal's volume since the account's latest alert before ``at``, up to and with
        the window (``<signal>__running``, nulls as 0; see ``discount_alerted``).

        ``leaving`` (of :meth:`leaving`, for a ``to`` no earlier than the newest window)
        may hold other accounts' rows too."""
        new = new.sort(F.ACCOUNT, F.WINDOW)
        accounts = new[F.ACCOUNT].unique().implode()
        work = new.join(self.sums, on=F.ACCOUNT, how="left", maintain_order="left").with_columns(
            pl.exclude(*new.columns, LAST).fill_null(0)
        )
        exprs: list[pl.Expr] = [
            pl.col(s).alias(F.col_name(s, self.horizons.base)) for s in F.VOLUME
        ]
        for h, d in self.spans.items():
            rows = pl.concat([leaving[h], new], how="diagonal_relaxed")
            moved = _moved(new, rows.filter(pl.col(F.ACCOUNT).is_in(accounts)), d)
            work = work.with_columns(moved.rename({c: f"{c}|{h}|moved" for c in moved.columns}))
            exprs.extend(
                _known_only(
                    pl.col(_total(s, h)) + pl.col(f"{s}|t|{h}|moved"),
                    pl.col(_known(s, h)) + pl.col(f"{s}|k|{h}|moved"),
                ).alias(F.col_name(s, h))
                for s in F.VOLUME
            )
        day = pl.col(F.WINDOW).dt.truncate("1d")
        same_day = pl.lit(False) if self.at is None else day == _day(self.at)
        account_starts = _starts(pl.col(F.ACCOUNT))
        day_starts = account_starts | _starts(day)
        for s in F.DRIP:
            held_total = pl.when(same_day).then(pl.col(_total(s, TODAY))).otherwise(0)
            held_known = pl.when(same_day).then(pl.col(_known(s, TODAY))).otherwise(0)
            total = _cum_sum_within(pl.col(s).fill_null(0), day_starts) + held_total
            known = _cum_sum_within(pl.col(s).is_not_null().cast(pl.Int64), day_starts)
            exprs.append(_known_only(total, known + held_known).alias(F.col_name(s, TODAY)))
        exprs.extend(
            (_cum_sum_within(pl.col(s).fill_null(0), account_starts) + pl.col(_since(s))).alias(
                f"{s}__running"
            )
            for s in F.VOLUME
        )
        return work.select(*new.columns, *exprs)

    # -- moving on ---------------------------------------------------------------------

    def advance(self, new: pl.DataFrame, leaving: Mapping[str, pl.DataFrame], to: datetime) -> None:
        """Fold in a close's new windows (every account's: account, window start, the
        volume signals, ``alerted``; all after ``at``, none after ``to``) and take out
        the ``leaving`` rows (of :meth:`leaving` for ``to``): the sums are then those as
        of ``to``. Accounts left with no window within any horizon are dropped.

        Each horizon gains the new windows still within it at ``to``, today those of
        ``to``'s day. One group-by over the held sums and the changes, a group of
        accounts (:data:`SHARDS`) at a time: over all 100,000 accounts at once it added
        150-190 MB to the peak of a close."""
        new_day = self.at is None or _day(self.at) != _day(to)
        new_shard = _shard(new)
        leaving_shard = {h: _shard(rows) for h, rows in leaving.items()}
        for i in range(SHARDS):
            self._shards[i] = self._fold(
                self._shards[i],
                new.filter(new_shard == i),
                {h: rows.filter(leaving_shard[h] == i) for h, rows in leaving.items()},
                to,
                new_day,
            )
        self.at = to

    def _fold(
        self,
        held: pl.DataFrame,
        new: pl.DataFrame,
        removed: Mapping[str, pl.DataFrame],
        to: datetime,
        new_day: bool,
    ) -> pl.DataFrame:
        """One group of accounts' sums as of ``to`` (see :meth:`advance`): ``held``, their
        sums as of ``at``; ``new``, their new windows; ``removed``, per horizon, their
        rows leaving it."""
        day = _day(to)
        if new_day:  # today's sums start again
            held = held.with_columns(
                pl.lit(0, self._schema()[name]).alias(name)
                for s in F.DRIP
                for name in (_total(s, TODAY), _known(s, TODAY))
            )
        within = {h: pl.col(F.WINDOW) > to - d for h, d in self.spans.items()}
        within[TODAY] = pl.col(F.WINDOW) >= day
        latest = (
            new.filter(pl.col("alerted").fill_null(False))
            .group_by(F.ACCOUNT)
            .agg(pl.col(F.WINDOW).max().alias("_latest"))
        )
        after_alert = pl.col("_latest").is_null() | (pl.col(F.WINDOW) > pl.col("_latest"))
        added = (
            new.join(latest, on=F.ACCOUNT, how="left")
            .group_by(F.ACCOUNT)
            .agg(
                *(
                    expr
                    for s, h in self._pairs()
                    for expr in _sum_and_known(pl.col(s).filter(within[h]), s, h)
                ),
                *(
                    pl.col(s)
                    .fill_null(0)
                    .cast(pl.Int64)
                    .filter(after_alert)
                    .sum()
                    .alias(f"_new_{s}")
                    for s in F.VOLUME
                ),
                pl.col("_latest").first().is_not_null().alias("_reset"),
                pl.col(F.WINDOW).max().alias(LAST),
            )
        )
        taken = [
            rows.group_by(F.ACCOUNT).agg(
                -expr for s in F.VOLUME for expr in _sum_and_known(pl.col(s), s, h)
            )
            for h, rows in removed.items()
            if rows.height
        ]
        reset = pl.col("_reset").fill_null(False).any()
        return (
            pl.concat([held, added, *taken], how="diagonal_relaxed")
            .group_by(F.ACCOUNT)
            .agg(
                *(pl.col(c).sum() for s, h in self._pairs() for c in (_total(s, h), _known(s, h))),
                # after an alert among the new windows, only the volume after it
                *(
                    (
                        pl.col(f"_new_{s}").sum()
                        + pl.when(reset).then(0).otherwise(pl.col(_since(s)).sum())
                    ).alias(_since(s))
                    for s in F.VOLUME
                ),
                pl.col(LAST).max(),
            )
            .filter(pl.any_horizontal(pl.col(_known(s, h)) > 0 for s, h in self._pairs()))
            .select(self._schema().names())
            .cast(self._schema())
        )

    def remember_days(self, summed: pl.DataFrame) -> None:
        """Keep the largest sums of each day of the ``summed`` windows (of accounts the
        model never saw, with the columns of :meth:`summed`); forget the days no later
        window looks back to."""
        columns = F.horizon_columns(self.horizons)
        days = pl.concat(
            [
                self.days,
                summed.select(F.ACCOUNT, pl.col(F.WINDOW).dt.truncate("1d"), *columns),
            ],
            how="vertical_relaxed",
        )
        back = max(self.spans.values(), default=F.span(self.horizons.base))
        oldest = None if self.at is None else _day(self.at) - back
        self.days = (
            days.group_by(F.ACCOUNT, F.WINDOW)
            .agg(pl.col(c).max() for c in columns)
            .filter(pl.lit(oldest is None) | (pl.col(F.WINDOW) >= oldest))
            .sort(F.ACCOUNT, F.WINDOW)
            .cast(self._days_schema())
        )

    def earlier_days(self, summed: pl.DataFrame) -> pl.DataFrame:
        """Per account and day of the ``summed`` windows, the largest sums of its earlier
        days within the longest horizon (:func:`detector.features.earlier_days`)."""
        columns = F.horizon_columns(self.horizons)
        accounts = summed[F.ACCOUNT].unique().implode()
        both = pl.concat(
            [self.days.filter(pl.col(F.ACCOUNT).is_in(accounts)), summed.select(self.days.columns)],
            how="vertical_relaxed",
        )
        return F.earlier_days(both.lazy(), self.horizons, columns).collect()

    def restore(self, sums: pl.DataFrame, at: datetime | None) -> None:
        """Take back the sums saved at a close (:attr:`sums` as they were, an older
        schema's counts cast), as of ``at``."""
        sums = sums.select(self._schema().names()).cast(self._schema())
        shard = _shard(sums)
        self._shards = [sums.filter(shard == i) for i in range(SHARDS)]
        self.at = at

    def forget(self, accounts: pl.Series) -> None:
        """Drop these accounts' state (their window history was dropped)."""
        gone = ~pl.col(F.ACCOUNT).is_in(accounts.implode())
        self._shards = [shard.filter(gone) for shard in self._shards]
        self.days = self.days.filter(gone)

    @classmethod
    def of_history(cls, horizons: F.Horizons, history: pl.DataFrame, at: datetime) -> Running:
        """The state as of ``at`` of a window history (rows as :meth:`advance` takes
        them, none after ``at``): as if each close had been folded in. Untrained accounts'
        largest sums per day are not in the history; see :meth:`remember_days`."""
        running = cls(horizons)
        running.advance(history, {}, at)
        return running


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _no_rows() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            F.ACCOUNT: pl.String(),
            F.WINDOW: pl.Datetime("us", "UTC"),
            **dict.fromkeys(F.VOLUME, pl.Int64()),
        }
    )


def _known_only(total: pl.Expr, known: pl.Expr) -> pl.Expr:
    """A sum, null where none of its values was known."""
    return pl.when(known > 0).then(total)


def _sum_and_known(values: pl.Expr, signal: str, horizon: str) -> tuple[pl.Expr, pl.Expr]:
    """The sum of ``values`` (nulls as 0) and the count of those known, as the state's
    columns of ``signal`` over ``horizon``."""
    return (
        values.fill_null(0).cast(pl.Int64).sum().alias(_total(signal, horizon)),
        values.is_not_null().cast(pl.Int32).sum().alias(_known(signal, horizon)),
    )


def _moved(new: pl.DataFrame, leaving: pl.DataFrame, shift: timedelta) -> pl.DataFrame:
    """Per row of ``new`` (sorted by account, window start), what its account's sum over
    a horizon of ``shift`` gained since ``at``: its new windows up to it, less the rows of
    ``leaving`` that are ``shift`` or more before it (``<signal>|t``, and the known counts
    ``<signal>|k``)."""

    def signed(rows: pl.DataFrame, at: pl.Expr, sign: int, order: int) -> pl.DataFrame:
        return rows.select(
            F.ACCOUNT,
            at.alias("_at"),
            pl.lit(order, pl.Int8).alias("_order"),  # at the same time, leave first
            *((pl.col(s).fill_null(0).cast(pl.Int64) * sign).alias(f"{s}|t") for s in F.VOLUME),
            *((pl.col(s).is_not_null().cast(pl.Int64) * sign).alias(f"{s}|k") for s in F.VOLUME),
        )

    columns = [f"{s}|{kind}" for s in F.VOLUME for kind in ("t", "k")]
    return (
        pl.concat(
            [
                signed(leaving, pl.col(F.WINDOW) + shift, -1, 0),
                signed(new, pl.col(F.WINDOW), 1, 1),
            ]
        )
        .sort(F.ACCOUNT, "_at", "_order")
        .with_columns(_cum_sum_within(pl.col(c), _starts(pl.col(F.ACCOUNT))) for c in columns)
        .filter(pl.col("_order") == 1)
        .select(columns)
    )


def _starts(key: pl.Expr) -> pl.Expr:
    """True on each row whose ``key`` differs from the row before: where a run begins."""
    return (key != key.shift(1)).fill_null(True)


def _cum_sum_within(values: pl.Expr, starts: pl.Expr) -> pl.Expr:
    """The running sum of ``values`` (no nulls) within each run of rows that ``starts``
    begins, in row order: the running sum of them all less what it was before the run.
    ``cum_sum().over(key)`` gives the same over rows sorted by ``key``, but it sums each
    group apart, about 1 µs a group and column: 72 ms for a close's 5,000 accounts and
    the 14 columns of :func:`_moved`, 16 ms this way."""
    total = values.cum_sum()
    return total - pl.when(starts).then(total - values).forward_fill()


def _shard(rows: pl.DataFrame) -> pl.Series:
    """The group of accounts (of :data:`SHARDS`, by a hash of the name) of each row."""
    return rows[F.ACCOUNT].hash() % SHARDS
