"""From scores to verdicts: the volume guardrail, flags, severities and reasons.

Thresholding wraps the detector rather than living inside it. A window is flagged when

* the **guardrail** fires. Its volume in some horizon is at least ``guardrail_min_rows``
  and ``guardrail_factor`` times beyond either the largest the account *and all* its
  peers ever did in training (so a poisoned history cannot teach the model a 23-TB
  pull), or both the account's own largest and its typical peer's largest. Or it
  exports data although the account never did (a new account never did).
  This holds whatever the model says; or
* its score reaches the threshold **and** the window has a reason in database terms (a
  window nobody can explain is not an alert): a strong signal (volume or statements
  ``reason_factor`` times the account's largest, an export by an account that does not
  export, ``reason_factor`` objects it never read within an hour, new failures), or two
  weak ones together (an object it never read, a new client address, a new application,
  an hour it is rarely active: each alone is ordinary work, e.g. people work late); or
* a slow drip, in the window that crosses its bound: a day's rows of one table past
  ``object_drip_factor`` times the account's largest day of it on a day past
  ``object_drip_day`` times its largest day, or past ``drip_factor`` times on a day past
  ``drip_factor`` times;
  3 days' reads past ``drip_factor`` times its largest 3 days; or, on a day of the week
  it hardly reads (a quiet day: ``quiet_day_share``), the day's reads past its largest
  day at all.

Reasons are written only for flagged windows (few), in plain Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector import schema as S
from detector.features import (
    ACCOUNT,
    ALERT_LEVELS,
    DRIP,
    HOUR_RARITY_CAP,
    OBJECT_TODAY,
    TODAY,
    UNSHOWN,
    UNSHOWN_EXPORTS,
    WINDOW,
    Horizons,
    col_name,
    horizon_columns,
    span,
    weekday_columns,
)
from detector.formats.mariadb import CLUSTER_BINLOG
from detector.formats.pg_replication import CLUSTER, CLUSTER_WAL
from detector.profile import HISTORY_DAYS, LEARNED, POPULATION, WEEKDAY, Profile, usual_hours
from detector.settings import Settings

EXPORT_WORDS = "COPY ... TO, cursor FETCH, dump or INTO OUTFILE"
UNITS = {"rows_read": "rows", "bytes_read": "bytes"}  # the volumes reasons name, in words
# The model's features (``features.model_features``) as an analyst reads them.
FEATURE_WORDS = {
    "volume_vs_own": "volume vs its own history",
    "volume_vs_peers": "volume vs its peers",
    "exports_vs_own": "exports vs its own history",
    "exports_vs_peers": "exports vs its peers",
    "statements_vs_own": "statements vs its own history",
    "objects_vs_own": "objects read vs its own history",
    "failed_vs_own": "failed statements vs its own history",
    "new_objects_log": "objects new to it",
    "new_objects_day_log": "objects new to it today",
    "new_client_seen": "a new client address",
    "new_app_seen": "a new application",
    "hour_rarity": "the hour",
}
SHOWN_SHARE = 0.05  # features with a smaller share are left out of the attribution line
# Shares of the model's anomaly per feature (rows x features), for the flagged windows.
Attribute = Callable[[pl.DataFrame], tuple[list[str], npt.NDArray[np.float64]]]
OFF_HOURS_RARITY = 2.0  # -log10 of the share of the account's windows in that hour: 1%
# Per window, the objects that flagged an object drip (Judge._object_drips).
OBJECT_DRIP = "_object_drip"
OBJECT_DRIP_TYPE = pl.List(
    pl.Struct({"object": pl.String(), "today": pl.Int64(), "largest": pl.Int64()})
)


def object_drip_bounds(settings: Settings) -> list[tuple[float, float]]:
    """The object drip's bounds (:meth:`Judge._object_drips`) as (a table's factor on its
    largest day, the account's day's factor on its largest day): a table far past its
    largest day on a day somewhat past the account's, or somewhat past it on a day far
    past (a job's credentials reading a little more of every table it reads)."""
    bounds = [(settings.drip_factor, settings.drip_factor)]
    if settings.object_drip_factor > 0:
        bounds.append((settings.object_drip_factor, settings.object_drip_day))
    return bounds


def heavy_days(profile: Profile, settings: Settings) -> pl.DataFrame:
    """(account, rows): the calendar day's rows past which an account's day can hold an
    object drip (:meth:`Judge._object_drips`), for ``features.object_today``'s
    ``heavy``: the lowest day's factor of its bounds times the account's largest day."""
    lowest = min(day for _, day in object_drip_bounds(settings))
    day = col_name("rows_read", TODAY)
    return (
        profile.weekdays.group_by(ACCOUNT)
        .agg(pl.col(day).max())
        .drop_nulls(day)
        .select(ACCOUNT, (lowest * pl.col(day)).alias("rows"))
    )


def rare_hour(start: datetime, rarity: float, span: tuple[int, int] | None) -> str:
    """The reason for a window at an hour rare for its account: its share of the
    account's training windows within an hour of it, and the span of hours holding 95% of
    them (``profile.usual_hours``). A rare hour can lie inside that span (a shift's quiet
    hour, the gap between two shifts), so the span is not called what it is outside of
    then (before: "21:35 UTC is outside its usual 13:00-04:00 UTC")."""
    at = f"{start:%H:%M} UTC"
    if span is None:
        return f"{at} is outside its peers' usual hours"
    share = "under 0.1%" if rarity >= HOUR_RARITY_CAP else f"{10**-rarity:.1%}"
    first, last = span[0], (span[1] + 1) % 24
    usual = f"{first:02d}:00-{last:02d}:00 UTC"
    of_it = f"{share} of its windows in training were within an hour of it"
    if (start.hour - span[0]) % 24 <= (span[1] - span[0]) % 24:
        return f"{at} is a rare hour for it: {of_it}, though its usual {usual} hold 95% of them"
    return f"{at} is outside its usual {usual} ({of_it})"


@dataclass(frozen=True)
class Judge:
    profile: Profile
    horizons: Horizons
    settings: Settings
    volume_logged: bool = True  # False: the training logs carried no rows or bytes at all

    @cached_property
    def _training_period(self) -> timedelta:
        """How long training ran: from the first window of its longest-seen account to
        the end of its last window."""
        days = self.profile.account_max[HISTORY_DAYS].max()
        if not isinstance(days, int | float):
            return timedelta(0)
        return timedelta(days=float(days)) + span(self.horizons.base)

    @cached_property
    def _judged(self) -> list[str]:
        """The horizons volumes are judged over against the accounts' largest in
        training: those training held at least two of, and the base window. Trained on 12
        hours, an account's "largest day" is a part of one, and an ordinary next day
        reads twice or ten times it."""
        period = self._training_period
        base = self.horizons.base
        return [h for h in self.horizons.all if h == base or 2 * span(h) <= period]

    def __call__(
        self,
        feats: pl.DataFrame,
        scores: npt.NDArray[np.float64],
        with_reasons: bool = True,
        attribute: Attribute | None = None,
    ) -> pl.DataFrame:
        """``feats`` with ``score``, ``guardrail``, ``flagged``, ``severity`` and ``reasons``
        (empty lists unless ``with_reasons``). ``attribute`` gives the model's features
        and each flagged window's shares of them, for the reasons' attribution line."""
        s = self.settings
        levels = [f"{c}__alerted" for c in horizon_columns(self.horizons, ALERT_LEVELS)]
        frame = self._with_references(
            feats.with_columns(pl.Series("score", scores, dtype=pl.Float64)).with_columns(
                *(pl.lit(None, pl.Int64).alias(c) for c in levels if c not in feats.columns),
                *(
                    (pl.col(c) if c in feats.columns else pl.lit(None))
                    .fill_null(pl.lit([], dtype=pl.List(pl.String)))
                    .alias(c)
                    for c in (UNSHOWN, UNSHOWN_EXPORTS)
                ),
            )
        )
        frame = self._object_drips(frame)
        volumes = [(v, h) for v in ("rows_read", "bytes_read") for h in self._judged]

        def guard_bound(value: pl.Expr, c: str) -> pl.Expr:
            # An account without history has no largest of its own to be 10x beyond:
            # only beyond every peer's largest is it past the guardrail (the model still
            # judges it against its peers).
            f = s.guardrail_factor
            own = (value > f * pl.col(f"{c}__own")) & (value > f * pl.col(f"{c}__peertypical"))
            return (value >= s.guardrail_min_rows) & (
                (value > f * pl.col(f"{c}__ceiling")) | (pl.col("has_history") & own)
            )

        def own_bound(value: pl.Expr, c: str) -> pl.Expr:
            return (value + 1) >= s.reason_factor * (pl.col(f"{c}__own") + 1)

        def drip_bound(value: pl.Expr, c: str) -> pl.Expr:
            return (
                pl.col("has_history")
                & (value >= s.guardrail_min_rows)
                & (value >= s.drip_factor * pl.col(f"{c}__own"))
            )

        def spread(signal: str, horizon: str) -> pl.Expr:
            # A drip is reads past the account's largest *before* the window that takes
            # them past drip_factor: when the rest of the day was within its largest, that
            # window alone made the excess, a burst, which the guardrail and the volume
            # reasons judge (before, an analyst's one big query on an ordinary day was a
            # "slow drip").
            return self._before(signal, horizon) >= pl.col(f"{col_name(signal, horizon)}__own")

        def quiet_bound(value: pl.Expr, c: str) -> pl.Expr:
            # c: a calendar day's sum; __dayown: the account's largest calendar day.
            own = pl.col(f"{c}__dayown")
            quiet = (pl.col(f"{c}__weekday") <= s.quiet_day_share * own).fill_null(False)
            return pl.col("has_history") & quiet & (value >= s.guardrail_min_rows) & (value > own)

        # An account with no history has never exported either: a dump by a brand-new
        # account is worth a look even when its peers dump every night.
        never_exports = pl.col("exports__own_max") == 0
        # An export is news once: not again while an alert of the account's that showed
        # an export is within the longest horizon (features.alerted_levels), unless it
        # exports tables those alerts did not show (features.unshown_objects).
        export_shown = (
            pl.col(f"{col_name('exports', self.horizons.base)}__alerted").fill_null(0) > 0
        ) & (pl.col(UNSHOWN_EXPORTS).list.len() == 0)
        guard_export = (pl.col("exports") > 0) & never_exports & ~export_shown
        # Tables it never read, in a window of real volume: a DBA reading 15,000 rows of
        # patients' notes reads no more than its own maintenance reads and names one or
        # two new tables, each alone ordinary; together, with the forest's score, a reason.
        # Where the log gives no volume (pgaudit.log_rows off, MariaDB's audit log alone)
        # the volume cannot be known: the tables and the score are all there is (before,
        # a SELECT * of a table new to the account, a DBA reading patients' data and a
        # paged pull of another service's table scored 0.69-0.82 and were not flagged).
        new_at_volume = (
            pl.col("has_history") & (pl.col("new_objects") > 0) & self._real_volume()
        ).fill_null(False)
        strong = [
            pl.any_horizontal(
                self.crossed(v, h, own_bound)
                for v in ("rows_read", "bytes_read", "statements")
                for h in self._judged
            ),
            (pl.col("exports") > 0)
            & ~export_shown
            & (
                never_exports
                | own_bound(pl.col("exports"), col_name("exports", self.horizons.base))
            ),
            pl.col("has_history")
            & pl.any_horizontal(
                self.crossed("new_objects", h, lambda value, c: value >= s.reason_factor)
                for h in self.horizons.all[:2]
            ),
            new_at_volume,
            (pl.col("failed") >= 3)
            & own_bound(pl.col("failed"), col_name("failed", self.horizons.base)),
        ]
        # Weak signals, each common in ordinary work (a table read for the first time, a
        # new laptop, a new tool, a late evening), are a reason only two together.
        weak = [
            pl.col("has_history") & (pl.col("new_objects") > 0),
            pl.col("has_history") & (pl.col("new_clients") > 0),
            pl.col("has_history") & (pl.col("new_apps") > 0),
            pl.col("hour_rarity") >= OFF_HOURS_RARITY,
        ]
        signals = [*strong, pl.sum_horizontal(w.cast(pl.Int8) for w in weak) >= 2]
        # Used from a new client address or application at an hour it is rarely active:
        # the classic stolen-credentials session, flagged whatever the score, since the
        # forest cannot score a combination its training never showed it.
        stranger = (weak[1] | weak[2]) & weak[3]
        # A slow drip: 3 days' reads past drip_factor times the account's own largest 3
        # days, though no window of it looks odd by itself; a day's reads of a table far
        # past its largest day of it (:meth:`_object_drips`); on a day
        # of the week the account hardly reads, past its largest at all (a drip started
        # on a Sunday would otherwise wait for Monday's work to take it past 2x).
        # Which rule and sum flagged a drip (a horizon longer than a day past drip_factor,
        # the calendar day on a quiet day, or an object's day), for its reason:
        # "rows_read|3d", "rows_read|today" or OBJECT_DRIP.
        # A day's reads are judged per object (the object drip, :meth:`_object_drips`):
        # the account's whole day past twice its largest, whatever it read, flagged
        # analysts' and services' heavy days (44 of 85 false alerts on nine populations)
        # and caught drips of 2.5-3x an account's usual day from one of its tables late
        # or not at all.
        drip_at = pl.coalesce(
            *(
                pl.when(self.crossed(v, h, bound) & condition).then(pl.lit(f"{v}|{h}"))
                for v in DRIP
                for h, bound, condition in [
                    *(
                        (h, drip_bound, spread(v, h))
                        for h in self._judged
                        if span(h) > timedelta(days=1)
                    ),
                    (TODAY, quiet_bound, pl.lit(True)),
                ]
            ),
            pl.when(pl.col(OBJECT_DRIP).list.len() > 0).then(pl.lit(OBJECT_DRIP)),
        )
        # Which volume and horizon tripped the guardrail (the first, shortest horizon
        # first), for its reason: "rows_read|1h".
        guard_at = pl.coalesce(
            pl.when(self.crossed(v, h, guard_bound)).then(pl.lit(f"{v}|{h}")) for v, h in volumes
        )
        frame = frame.with_columns(
            (guard_at.is_not_null() | guard_export).alias("guardrail"),
            guard_at.alias("_guard_at"),
            drip_at.is_not_null().alias("drip"),
            drip_at.alias("_drip_at"),
            stranger.alias("_stranger"),
            self._news().alias("_news"),
            pl.any_horizontal(signals).alias("_has_reason"),
        )
        frame = frame.with_columns(
            (
                pl.col("guardrail")
                | pl.col("drip")
                | pl.col("_stranger")
                | ((pl.col("score") >= s.threshold) & pl.col("_has_reason"))
            ).alias("flagged")
        )
        bands = sorted(s.severity_bands.items(), key=lambda kv: kv[1], reverse=True)
        severity: Any = pl.when(pl.col("guardrail")).then(pl.lit("critical"))
        # A slow drip or a stranger's session is at least medium, whatever the score:
        # decided before the bands under medium (before, a drip scoring 0.55 was "low"
        # and one scoring 0.3 "medium").
        medium = s.severity_bands.get("medium", 1.0)
        for name, low in [b for b in bands if b[1] >= medium]:
            severity = severity.when(pl.col("score") >= low).then(pl.lit(name))
        severity = severity.when(pl.col("drip") | pl.col("_stranger")).then(pl.lit("medium"))
        for name, low in [b for b in bands if b[1] < medium]:
            severity = severity.when(pl.col("score") >= low).then(pl.lit(name))
        frame = frame.with_columns(
            pl.when(pl.col("flagged"))
            .then(severity.otherwise(pl.lit(bands[-1][0])))
            .otherwise(pl.lit("none"))
            .alias("severity")
        )
        flagged = frame.filter(pl.col("flagged") & with_reasons)
        names, shares = (
            attribute(flagged) if attribute is not None else ([], np.zeros((flagged.height, 0)))
        )
        # The usual hours of the accounts whose reasons name them only: worked out for
        # every account of a profile of 100,000, they took 7.7 s for each batch.
        rare = flagged.filter(pl.col("has_history") & (pl.col("hour_rarity") >= OFF_HOURS_RARITY))
        usual = usual_hours(self.profile, rare[ACCOUNT].unique())
        rows = flagged.select(self._reason_columns()).iter_rows(named=True)
        texts = pl.DataFrame(
            {
                ACCOUNT: flagged[ACCOUNT],
                "window_start": flagged["window_start"],
                "reasons": pl.Series(
                    [
                        self.reasons(r, _attribution(names, s), usual)
                        for r, s in zip(rows, shares, strict=True)
                    ],
                    dtype=pl.List(pl.String),
                ),
            }
        )
        return (
            frame.drop(
                "_has_reason",
                "_stranger",
                "_news",
                "_guard_at",
                "_drip_at",
                "_young",
                OBJECT_DRIP,
                UNSHOWN,
                UNSHOWN_EXPORTS,
            )
            .join(texts, on=[ACCOUNT, "window_start"], how="left", maintain_order="left")
            .with_columns(pl.col("reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        )

    def _object_drips(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with :data:`OBJECT_DRIP`, for the window in which a calendar day
        (UTC) first holds, for some object: the account's rows from it reach
        ``object_drip_factor`` times its largest day of that object in training on a day
        it reads more than ``object_drip_day`` times its largest day in all, or
        ``drip_factor`` times on a day past ``drip_factor`` times (and
        ``guardrail_min_rows`` rows); having passed that largest day before the window (a
        little at a time: a burst in one window is judged by the guardrail and the volume
        reasons). The list holds the objects past a bound: object, rows today, largest
        day, most rows first. Empty for accounts without history, objects they never read
        in training (new objects are judged as such) and logs without row counts."""
        s = self.settings
        none = pl.lit([], dtype=OBJECT_DRIP_TYPE)
        today = col_name("rows_read", TODAY)
        day_own = pl.col(f"{today}__dayown")
        before_window = pl.col(today) - pl.col(col_name("rows_read", self.horizons.base)).fill_null(
            0
        )
        bounds = object_drip_bounds(s)
        lowest = min(day for _, day in bounds)
        busy = frame.filter(
            pl.col("has_history")
            & (pl.col(OBJECT_TODAY).list.len() > 0)
            & (pl.col(today) > lowest * day_own).fill_null(False)
        )
        largest = self.profile.object_days.rename({"rows": "largest"})
        # As for the account's volumes, what an alert within the longest horizon showed
        # is no news: a drip from an object it showed (or the same pull the next day)
        # does not alert again; from another object, it does.
        alerted = pl.col(f"{col_name('rows_read', self.horizons.base)}__alerted").is_not_null()
        objects = (
            busy.select(
                ACCOUNT,
                WINDOW,
                OBJECT_TODAY,
                *(
                    (pl.col(today) > day * day_own).fill_null(False).alias(f"_over{k}")
                    for k, (_, day) in enumerate(bounds)
                ),
                *(
                    (before_window > day * day_own).fill_null(False).alias(f"_was_over{k}")
                    for k, (_, day) in enumerate(bounds)
                ),
                alerted.alias("_alerted"),
                UNSHOWN,
            )
            .explode(OBJECT_TODAY)
            .unnest(OBJECT_TODAY)
            .join(largest, on=[ACCOUNT, "object"], how="inner")
            .filter(
                (pl.col("largest") > 0)
                & (~pl.col("_alerted") | pl.col(UNSHOWN).list.contains(pl.col("object")))
            )
        )

        def bound(table: float) -> pl.Expr:
            return pl.max_horizontal(pl.lit(s.guardrail_min_rows), table * pl.col("largest"))

        # a little at a time: past its largest day before this window (a burst in one
        # window is judged by the guardrail and the volume reasons)
        spread = pl.col("before") >= pl.col("largest")
        objects = objects.with_columns(
            pl.any_horizontal(
                pl.col(f"_over{k}") & (pl.col("today") >= bound(table)) & spread
                for k, (table, _) in enumerate(bounds)
            ).alias("_past"),
            pl.any_horizontal(
                pl.col(f"_was_over{k}") & (pl.col("before") >= bound(table))
                for k, (table, _) in enumerate(bounds)
            ).alias("_was_past"),
        )
        crossed = (
            objects.sort("today", "object", descending=[True, False])
            .group_by(ACCOUNT, WINDOW, maintain_order=True)
            .agg(
                pl.col("_was_past").any().alias("_before"),
                pl.struct("object", "today", "largest").filter("_past").alias(OBJECT_DRIP),
            )
            .filter(~pl.col("_before") & (pl.col(OBJECT_DRIP).list.len() > 0))
            .drop("_before")
        )
        return frame.join(
            crossed, on=[ACCOUNT, WINDOW], how="left", maintain_order="left"
        ).with_columns(pl.col(OBJECT_DRIP).fill_null(none))

    def _real_volume(self) -> pl.Expr:
        """The window reads at least ``guardrail_min_rows`` rows, or the log gives no
        volume to tell (the tables and the score are all there is then)."""
        if not self.volume_logged:
            return pl.lit(True)
        return pl.col(col_name("rows_read", self.horizons.base)) >= self.settings.guardrail_min_rows

    def _news(self) -> pl.Expr:
        """A window of real volume reading objects the account's alerts within the
        longest horizon did not show (features.unshown_objects): its volume is news
        again at any level."""
        return (pl.col(UNSHOWN).list.len() > 0) & self._real_volume().fill_null(False)

    def _before(self, signal: str, horizon: str) -> pl.Expr:
        """The horizon's sum of ``signal`` without this window's own."""
        total = pl.col(col_name(signal, horizon)).fill_null(0)
        return total - pl.col(col_name(signal, self.horizons.base)).fill_null(0)

    def crossed(
        self, signal: str, horizon: str, bound: Callable[[pl.Expr, str], pl.Expr]
    ) -> pl.Expr:
        """True where this window takes ``signal`` over ``horizon`` past ``bound``.

        The horizon's sum must be past the bound *without* this window's share not: a
        pull is flagged in the window where it happens, not in every window of the next
        day whose 24-hour sum still contains it.
        """
        c = col_name(signal, horizon)
        total = pl.col(c).fill_null(0)
        crossing = bound(total, c)
        if horizon != self.horizons.base:
            crossing = crossing & ~bound(self._before(signal, horizon), c)
        # Not again at a level alerted on lately, nor a little past it (a role change
        # reads 1% more the next day: realert_factor). The calendar day (TODAY) keeps no
        # alerted level: it crosses its bound once a day at most.
        if signal in ALERT_LEVELS and horizon in self.horizons.all:
            alerted = pl.col(f"{c}__alerted")
            again = (total > alerted) & (total >= self.settings.realert_factor * alerted)
            # A table no alert showed makes a burst of real volume news again at any
            # level; not a day's sum: a drip alerted on is being looked into whatever it
            # reads next (news again on day-long sums, support accounts' later days
            # alerted once more), nor a few hundred rows of a table (a role change's).
            news = self._news() if span(horizon) < timedelta(days=1) else pl.lit(False)
            crossing = crossing & (again.fill_null(True) | news)
        return crossing

    def _with_references(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Join each window's own and peer ceilings (largest values seen in training)."""
        cols = horizon_columns(self.horizons)
        # An account that arrived during training and was seen for less than
        # settled_after has too little of its own to be judged by alone (one that came
        # on training's last weekend would otherwise be 5x "its largest" on its first
        # Monday): its largest counts as at least its typical peer's, as a new account's
        # does. Accounts there from training's first day are not (a one-week training
        # period is short for all of them alike).
        period = self._training_period.total_seconds() / 86_400
        settled = min(span(self.settings.settled_after).total_seconds() / 86_400, period - 1)
        own = self.profile.account_max.select(
            ACCOUNT,
            (pl.col(HISTORY_DAYS) < settled).alias("_young"),
            *[pl.col(c).alias(f"{c}__own") for c in cols],
        )
        peer = self.profile.peer_max.select(
            "peer_group", *[pl.col(c).alias(f"{c}__peermax") for c in cols]
        )
        typical = self.profile.peer_ref.select(
            "peer_group", *[pl.col(c).alias(f"{c}__peertypical") for c in cols]
        )
        days = weekday_columns()
        # only these windows' accounts' days: a live close judges a few thousand accounts
        # at a time against a profile of up to 100,000
        weekdays = self.profile.weekdays.join(
            frame.select(ACCOUNT).unique(), on=ACCOUNT, how="semi"
        )
        weekday = weekdays.select(
            ACCOUNT, WEEKDAY, *[pl.col(c).alias(f"{c}__weekday") for c in days]
        )
        day_own = weekdays.group_by(ACCOUNT).agg(
            pl.col(c).max().alias(f"{c}__dayown") for c in days
        )
        frame = (
            frame.join(own, on=ACCOUNT, how="left")
            .join(peer, on="peer_group", how="left")
            .join(typical, on="peer_group", how="left")
            .join(
                weekday,
                left_on=[ACCOUNT, pl.col(WINDOW).dt.weekday()],
                right_on=[ACCOUNT, WEEKDAY],
                how="left",
            )
            .join(day_own, on=ACCOUNT, how="left")
        )
        export_cols = [col_name("exports", h) for h in self.horizons.all]
        frame = frame.with_columns(
            pl.col(f"{c}__{kind}").fill_null(0) for c in cols for kind in ("peermax", "peertypical")
        )

        # An account training never saw is measured against its typical peer, as its
        # relative features are (``features.add_relative``), not against nothing; and
        # against what it did on its own earlier days, once it has some: a new account
        # is alerted on when it goes beyond its peers (or first exports), then only when
        # it goes beyond itself, not every day it does what it did the day before.
        def newcomer(c: str) -> pl.Expr:
            typical = pl.col(f"{c}__peertypical")
            if f"{c}__earlier" not in frame.columns:
                return typical
            return pl.max_horizontal(typical, pl.col(f"{c}__earlier").fill_null(0))

        young = pl.col("has_history") & pl.col("_young").fill_null(False)
        frame = frame.with_columns(
            pl.when(young)
            .then(pl.max_horizontal(pl.col(f"{c}__own").fill_null(0), f"{c}__peertypical"))
            .when(pl.col("has_history"))
            .then(pl.col(f"{c}__own").fill_null(0))
            .otherwise(newcomer(c))
            .alias(f"{c}__own")
            for c in cols
        )
        return frame.with_columns(
            *[pl.max_horizontal(f"{c}__own", f"{c}__peermax").alias(f"{c}__ceiling") for c in cols],
            pl.max_horizontal(pl.col(f"{c}__own") for c in export_cols).alias("exports__own_max"),
        )

    def _reason_columns(self) -> list[str]:
        cols = [
            ACCOUNT,
            "window_start",
            "peer_group",
            "flagged",
            "guardrail",
            "drip",
            "_guard_at",
            "_drip_at",
            "_young",
            OBJECT_DRIP,
            "score",
            "has_history",
            "hour",
            "hour_rarity",
            "objects_list",
            "export_objects_list",
            "export_rows",
            "uncounted_exports",
            "new_objects_list",
            "new_clients_list",
            "new_apps_list",
            "exports",
            "exports__own_max",
            UNSHOWN,
            "_news",
            f"{col_name('statements', self.horizons.base)}__alerted",
        ]
        for c in horizon_columns(self.horizons):
            cols += [c, f"{c}__own", f"{c}__peermax", f"{c}__peertypical"]
        return cols + [x for c in weekday_columns() for x in (c, f"{c}__weekday", f"{c}__dayown")]

    def reasons(
        self,
        row: dict[str, Any],
        attribution: str | None,
        usual: Mapping[str, tuple[int, int]],
    ) -> list[str]:
        """Plain-language reasons for one flagged window, with numbers.

        Each names what happened in database terms and how far it is from this
        account's training history and its peers'. The last line is the model's score,
        with ``attribution`` (which features made it) when given. ``usual`` holds the
        usual hours (:func:`detector.profile.usual_hours`) of the accounts whose windows
        are at a rare hour.
        """
        out: list[str] = []
        base = self.horizons.base

        def base_and_own(signal: str) -> tuple[Any, Any]:
            # The base window's count (0 where the log has none) and the account's largest.
            c = col_name(signal, base)
            return row[c] or 0, row[f"{c}__own"]

        for signal, unit in UNITS.items():
            found = self._volume_reason(row, unit, signal)
            if found is not None:
                out.append(found)
        if not self.volume_logged and row["objects_list"]:
            out.append(
                f"volume unknown: the log gives no row or byte counts for the reads of "
                f"{_names(row['objects_list'])}; judged on statements, objects, clients and hours"
            )
        elif not out and row[col_name("rows_read", base)] is not None:
            # Flagged for something else: the volume still goes in, as context.
            c = col_name("rows_read", base)
            history = (
                f"{self._own_words(row, base)}: {_num(row[f'{c}__own'])}"
                if row["has_history"]
                else "a new account"
            )
            # A dump's COPY ... TO logs no rows: what was counted is not what was read.
            uncounted = (
                f", not counting its {row['uncounted_exports']} export statement(s), whose "
                "rows the log does not give"
                if row["uncounted_exports"]
                else ""
            )
            out.append(
                f"read {_amount(row[c], 'rows')} in {_span(base)} from {_names(row['objects_list'])}"
                f"{uncounted} ({history}; a typical peer's: {_num(row[f'{c}__peertypical'])})"
            )
        if row["exports"]:
            # Against its largest 5 minutes (before, "0.3x its usual" against its
            # largest 3 days read as less than usual for a night's ordinary 10 tables).
            own = row[f"{col_name('exports', base)}__own"]
            habit = (
                # the unit said: after "123,700 rows;" a bare "(11)" read as rows
                f"{_times(row['exports'], own)} {self._own_words(row, base)} "
                f"({_num(own)} export statement(s))"
                if row["exports__own_max"]
                else "this account never exported data in training"
                if row["has_history"]
                else "a new account: neither its typical peer in training nor it on "
                "earlier days exported data"
            )
            copied, handed = _replicated(row), _handed_out(row)
            if row["export_rows"] is None and handed:
                exported = "size not logged (a row is a whole object or file)"
            elif row["export_rows"] is None:
                exported = "row count not logged"
            elif row["uncounted_exports"]:
                exported = (
                    f"row count not logged for {row['uncounted_exports']} of them, "
                    f"{_amount(row['export_rows'], 'rows')} in the others"
                )
            else:
                exported = _amount(row["export_rows"], "rows")
            words = f"base backup, replication stream, {EXPORT_WORDS}" if copied else EXPORT_WORDS
            words = f"{words}, server function" if handed else words
            out.append(
                f"{row['exports']} export statement(s) ({words}) of "
                f"{_names(row['export_objects_list'])}{copied}{handed}; {exported}; {habit}"
            )
        if row["has_history"] and row["new_objects_list"]:
            rows = row[col_name("rows_read", base)] or 0
            volume = (
                f"; {_amount(rows, 'rows')} read in these {_span(base)}"
                if rows >= self.settings.guardrail_min_rows
                else ""
            )
            out.append(
                f"{len(row['new_objects_list'])} object(s) never read before by this account: "
                f"{_names(row['new_objects_list'])}{volume}"
            )
        objects, own_objects = base_and_own("objects")
        if row["has_history"] and objects > max(own_objects, 1):
            out.append(
                f"{objects} distinct objects read in {_span(base)}; "
                f"{self._reference_words(row, 'most')}: {_num(own_objects)}"
            )
        if row["has_history"] and row["new_clients_list"]:
            out.append(f"new client address for this account: {', '.join(row['new_clients_list'])}")
        if row["has_history"] and row["new_apps_list"]:
            out.append(f"new application for this account: {', '.join(row['new_apps_list'])}")
        if row["hour_rarity"] >= OFF_HOURS_RARITY:
            span = usual.get(row[ACCOUNT]) if row["has_history"] else None
            out.append(rare_hour(row["window_start"], row["hour_rarity"], span))
        failed, own_failed = base_and_own("failed")
        if failed > own_failed:
            out.append(
                f"{failed} failed statement(s) in {_span(base)}; "
                f"{self._reference_words(row, 'most')}: {_num(own_failed)}"
            )
        found = self._statements_reason(row)
        if found is not None:
            out.append(found)
        # Why the same volume alerts again so soon: the leak goes on, table by table
        # (only where that rule may decide: a window of real volume; not a few rows).
        if row["_news"] and row[f"{col_name('statements', base)}__alerted"] is not None:
            out.append(
                f"reads {_names(row[UNSHOWN])}, which no alert on this account in the last "
                f"{_span(self.horizons.all[-1])} showed: not a repeat of what was alerted"
            )
        if row["guardrail"]:
            out.append(self._guardrail_reason(row))
        if row["drip"] and not row["guardrail"]:  # a burst crosses the day's bound too
            out.append(self._drip_reason(row))
        score = f"anomaly score {row['score']:.2f} (flag threshold {self.settings.threshold:g})"
        out.append(f"{score}; {attribution}" if attribution else score)
        return out

    def _own_words(self, row: dict[str, Any], h: str) -> str:
        """What an account's volume over horizon ``h`` is compared with."""
        return self._reference_words(row, f"largest {_span(h)}")

    def _reference_words(self, row: dict[str, Any], what: str) -> str:
        """What the account's own reference (``<signal>__own``) is, in words: its own
        ``what`` in training, the larger of that and its typical peer's (a young
        account), or its typical peer's or its own on earlier days (a new account)."""
        if not row["has_history"]:
            return f"its typical peer's {what} or its own on earlier days"
        if row["_young"]:
            return (
                f"this account's {what} in training or its typical peer's, the larger "
                f"(under {_span(self.settings.settled_after)} of history of its own)"
            )
        return f"this account's {what} in training"

    def _guardrail_reason(self, row: dict[str, Any]) -> str:
        """What tripped the guardrail: the volume and horizon it crossed in this window,
        against the references it crossed, or an export by an account that never does."""
        if row["_guard_at"] is None:
            return "guardrail: data exported by an account that never exports"
        signal, h = row["_guard_at"].split("|")
        c = col_name(signal, h)
        value, own, peer = row[c], row[f"{c}__own"], row[f"{c}__peermax"]
        unit = UNITS[signal]
        read = f"{_amount(value, unit)} read in {_span(h)}"
        f = self.settings.guardrail_factor
        if value > f * max(own, peer):
            return (
                f"guardrail: over {f:g}x the largest {_span(h)} of this account and all its "
                f"peers in training ({_num(max(own, peer))}): {read}"
            )
        typical = row[f"{c}__peertypical"]
        return (
            f"guardrail: over {f:g}x {self._own_words(row, h)} ({_num(own)}) and its typical "
            f"peer's ({_num(typical)}): {read}"
        )

    def _furthest(
        self, row: dict[str, Any], signal: str, factor: Callable[[float, str], float]
    ) -> str | None:
        """The horizon over which this window took ``signal`` furthest past ``factor``
        times the account's own largest (a longer horizon only where this window's share
        took it past), or None: the crossing the strong signal of :meth:`__call__` saw."""
        base_value = row[col_name(signal, self.horizons.base)] or 0
        if not base_value:
            return None

        def ratio(value: float, h: str) -> float:
            return float((value + 1) / (row[f"{col_name(signal, h)}__own"] + 1))

        crossed = [
            (ratio(value, h), h)
            for h in self._judged
            for value in [row[col_name(signal, h)] or 0]
            if ratio(value, h) >= factor(value, h)
            and (h == self.horizons.base or ratio(value - base_value, h) < factor(value, h))
        ]
        return max(crossed)[1] if crossed else None

    def _statements_reason(self, row: dict[str, Any]) -> str | None:
        """The statements this window took furthest past the account's most, if any: "50
        statements in 5 minutes", or "123 statements in 1 day, 3 of them in these 5
        minutes" (before, only the 5 minutes were said, and a day's flag had no reason)."""
        h = self._furthest(row, "statements", lambda value, h: self.settings.reason_factor)
        if h is None:
            return None
        c, base = col_name("statements", h), self.horizons.base
        value, own = row[c], row[f"{c}__own"]
        if not own:
            return None
        if h == base:
            part, most = "", "most"
        else:
            part = f", {row[col_name('statements', base)]:,} of them in these {_span(base)}"
            most = f"most in {_span(h)}"
        return (
            f"{value:,} statements in {_span(h)}{part}; {_times(value, own)} "
            f"{self._reference_words(row, most)}"
        )

    def _volume_reason(self, row: dict[str, Any], unit: str, signal: str) -> str | None:
        """The volume this window took furthest past the account's own largest, if any."""
        base_value = row[col_name(signal, self.horizons.base)] or 0

        def factor(value: float, h: str) -> float:
            # a day or more: the slow-drip bound, if lower, for volumes a drip is judged
            # at (guardrail_min_rows, as the rule): 14 rows are not "2.1x" news
            s = self.settings
            drip = span(h) >= timedelta(days=1) and value >= s.guardrail_min_rows
            return min(s.reason_factor, s.drip_factor) if drip else s.reason_factor

        h = self._furthest(row, signal, factor)
        if h is None:
            return None
        c = col_name(signal, h)
        value, own, peer, typical = (
            row[c],
            row[f"{c}__own"],
            row[f"{c}__peermax"],
            row[f"{c}__peertypical"],
        )
        history = (
            f"{_times(value, own)} {self._own_words(row, h)} ({_num(own)})"
            if row["has_history"]
            else f"a new account; {_times(value, own)} its typical peer's largest or its own "
            f"on earlier days ({_num(own)})"
            if own > typical
            else "a new account with no history"
        )
        # The window names its own tables: over a longer horizon, only its part of the sum
        # is theirs (a DBA's day of maintenance reads, then 15,000 rows of patients' notes).
        base = self.horizons.base
        read = (
            f"read {_amount(value, unit)} in {_span(h)} from {_names(row['objects_list'])}"
            if h == base
            else f"read {_amount(value, unit)} in {_span(h)}, {_num(base_value)} of them in "
            f"these {_span(base)} from {_names(row['objects_list'])}"
        )
        text = (
            f"{read}; {history}; "
            f"{_times(value, typical)} a typical peer's largest ({_num(typical)}), "
            f"{_times(value, peer)} any peer's largest ({_num(peer)}){self._peers(row)}"
        )
        return text

    def _drip_reason(self, row: dict[str, Any]) -> str:
        """What flagged the slow drip (``_drip_at``, as :meth:`__call__` decided): a day or
        more past ``drip_factor`` times the account's largest, or, on a quiet day, the
        calendar day past its largest calendar day."""
        if row["_drip_at"] == OBJECT_DRIP:
            return self._object_drip_reason(row)
        signal, h = row["_drip_at"].split("|")
        c = col_name(signal, h)
        unit = UNITS[signal]
        value = row[c] or 0
        if h != TODAY:
            own = row[f"{c}__own"] or 0
            return (
                f"slow drip: {_amount(value, unit)} read in the last {_span(h)}, "
                f"{_times(value, own)} {self._own_words(row, h)} ({_num(own)}); "
                f"flagged in the window that took it past {self.settings.drip_factor:g}x"
            )
        own, usual, day = row[f"{c}__dayown"] or 0, row[f"{c}__weekday"], row[WINDOW]
        return (
            f"slow drip: {_amount(value, unit)} read today (UTC), a {day:%A}, a quiet day for it: "
            f"{_times(value, own)} its largest day in training ({_num(own)}), "
            f"{_times(value, usual)} its largest {day:%A} ({_num(usual)}); flagged in the "
            "window that took it past its largest day"
        )

    def _object_drip_reason(self, row: dict[str, Any]) -> str:
        """A day's reads of tables past their bound (:meth:`_object_drips`): each
        table's day against its largest, and the account's day against its largest."""
        objects = "; ".join(
            f"{_amount(d['today'], 'rows')} of {d['object']} read today (UTC), "
            f"{_times(d['today'], d['largest'])} this account's largest day of it in "
            f"training ({_num(d['largest'])})"
            for d in row[OBJECT_DRIP][:3]
        )
        more = len(row[OBJECT_DRIP]) - 3
        c = col_name("rows_read", TODAY)
        value, own = row[c] or 0, row[f"{c}__dayown"] or 0
        return (
            f"slow drip: {objects}{f'; and {more} more object(s)' if more > 0 else ''}; "
            f"{_amount(value, 'rows')} read today in all, {_times(value, own)} its largest "
            f"day in training ({_num(own)}); flagged in the first window past "
            f"{self.settings.object_drip_factor:g}x a table's largest day on a day past "
            f"{self.settings.object_drip_day:g}x the account's, or {self.settings.drip_factor:g}x on a day "
            f"past {self.settings.drip_factor:g}x"
        )

    def _peers(self, row: dict[str, Any]) -> str:
        """Who the peers are, unless they are all accounts: ``; peers: role batch``."""
        group = row["peer_group"]
        if group == POPULATION:
            return ""
        if group.startswith(LEARNED):
            members = [m for m in self.profile.members(group) if m != row[ACCOUNT]]
            return (
                f"; peers (reading tables like {group.removeprefix(LEARNED)}'s): {_names(members)}"
            )
        return f"; peers: role {group}"


def _attribution(names: list[str], shares: npt.NDArray[np.float64]) -> str | None:
    """``made of: volume vs its own history 61%, the hour 22%`` (largest first)."""
    shown = sorted(
        ((share, name) for name, share in zip(names, shares, strict=True) if share >= SHOWN_SHARE),
        reverse=True,
    )
    if not shown:
        return None
    parts = ", ".join(f"{FEATURE_WORDS.get(name, name)} {share:.0%}" for share, name in shown)
    return f"made of: {parts}"


def _num(value: float | int | None) -> str:
    return f"{int(value or 0):,}"


def _amount(value: float | int | None, unit: str) -> str:
    """``1 row``, ``1,234 rows``, ``1 byte``: a count with its unit (plural, as in
    :data:`UNITS`), singular for one."""
    return f"{_num(value)} {unit.removesuffix('s') if int(value or 0) == 1 else unit}"


def _times(value: float, reference: float | None) -> str:
    ratio = (value + 1) / ((reference or 0) + 1)
    if ratio < 0.1:  # not "0.0x any peer's largest"
        return "under 0.1x"
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _span(horizon: str) -> str:
    units = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
    n, unit = int(horizon[:-1]), units[horizon[-1]]
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _replicated(row: dict[str, Any]) -> str:
    """What a window's replication exports copied, in words (``: a base backup of the
    whole cluster ... by rep_user from pg_basebackup at 10.0.0.5``), or ``""``.

    Their objects (:mod:`detector.formats.pg_replication`) name what they copied; the
    application and client are named where they are new to the account (the usual case
    for a stolen credential; otherwise its other reasons say nothing of them).
    """
    objects = row["export_objects_list"] or []
    what = [REPLICATED[name] for name in REPLICATED if name in objects] + [
        f"a logical replication stream of {kind} {name[len(kind) + 2 : -1]}"
        f" ({'every change to its tables' if kind == 'database' else 'its tables'})"
        for name in objects
        for kind in ("publication", "database")
        if name.startswith(f"({kind} ")
    ]
    if not what:
        return ""
    new_apps, new_clients = row.get("new_apps_list") or [], row.get("new_clients_list") or []
    source = (f" from {', '.join(new_apps)}" if new_apps else "") + (
        f" at {', '.join(new_clients)}" if new_clients else ""
    )
    return f": {' and '.join(what)} by {row[ACCOUNT]}{source}"


def _handed_out(row: dict[str, Any]) -> str:
    """What a window's exports through server functions read out, in words (``: files of
    the database server ...``), or ``""`` (:data:`HANDED_OUT`)."""
    objects = row["export_objects_list"] or []
    what = [words for name, words in HANDED_OUT.items() if name in objects]
    return f": {' and '.join(what)}" if what else ""


# Objects only exports through server functions name, and what they hold.
HANDED_OUT = {
    S.SERVER_FILES: "files of the database server read out through SQL (pg_read_file, LOAD_FILE)",
    S.LARGE_OBJECTS: "large objects' contents (lo_get, loread, lo_export)",
}


REPLICATED = {
    CLUSTER: "a base backup of the whole cluster (every table of every database)",
    CLUSTER_WAL: "a stream of the whole cluster's WAL (every change to every database)",
    CLUSTER_BINLOG: "a stream of the server's binary log (every change to every database)",
}


def _names(items: list[str] | None, limit: int = 5) -> str:
    # The server's own catalogs after the account's tables, where a format still names
    # both (a statement reading catalogs alone is CATALOG, not a read: schema.py).
    items = sorted(items or [], key=lambda name: name.lower().startswith(S.CATALOG_PREFIXES))
    if not items:
        return "objects not named in the log"
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
