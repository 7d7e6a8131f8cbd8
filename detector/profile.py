"""What training learns about each account and its peers, for the relative features.

A :class:`Profile` is a handful of small frames, stored as Parquet beside the model
(Parquet holds data only; loading it runs no code).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.features import ACCOUNT, WINDOW, Horizons, horizon_columns, weekday_columns
from detector.features import object_days as object_days_of

POPULATION: Final = "*"
# Accounts not in the role map get learned peers: the accounts whose read objects are most
# like their own (Jaccard). Group ``like:<account>`` is the account and its nearest few.
LEARNED: Final = "like:"
TABLES: Final = (
    "account_max",
    "peer_ref",
    "peer_max",
    "hours",
    "known",
    "peers",
    "weekdays",
    "object_days",
)
# The leading columns each table is sorted by when saved (same training, same bytes).
_SORT_BY: Final = {"hours": 2, "known": 3, "weekdays": 2, "object_days": 2}
WEEKDAY: Final = "weekday"  # 1 = Monday ... 7 = Sunday, of the window's start (UTC)
# Days from the account's first window in training to the training's last window.
HISTORY_DAYS: Final = "history_days"


@dataclass(frozen=True)
class Profile:
    # account, has_history, history_days, <signal>_<horizon>: largest in training
    account_max: pl.DataFrame
    peer_ref: pl.DataFrame  # peer_group, <signal>_<horizon>: median account's largest; members
    peer_max: pl.DataFrame  # peer_group, <signal>_<horizon>: any account's largest
    hours: pl.DataFrame  # account ('*' = population), hour, share (smoothed over +-1 hour)
    known: pl.DataFrame  # account, kind (object/client/app), value
    peers: pl.DataFrame  # account, peer_group
    # account, weekday, <signal>_today: its largest calendar day (UTC) in training on
    # that day of the week (only the weekdays it was active on; unknown volume: null)
    weekdays: pl.DataFrame
    # account, object, rows: its largest calendar day (UTC) of rows from the object in
    # training (objects it read with a row count logged)
    object_days: pl.DataFrame

    def save(self, directory: Path) -> dict[str, Path]:
        """Write each table as ``profile_<name>.parquet``; return the paths by name.

        Rows are sorted first, so the same training gives the same bytes (and hashes).
        """
        paths = {}
        for name in TABLES:
            path = directory / f"profile_{name}.parquet"
            table: pl.DataFrame = getattr(self, name)
            table.sort(table.columns[: _SORT_BY.get(name, 1)]).write_parquet(path)
            paths[name] = path
        return paths

    @classmethod
    def load(cls, directory: Path) -> Profile:
        tables = {n: pl.scan_parquet(directory / f"profile_{n}.parquet") for n in TABLES}
        # Models trained before hours were kept sparse (_hour_shares) hold every hour.
        tables["hours"] = tables["hours"].filter(pl.col("share") > 0)
        return cls(**{n: table.collect() for n, table in tables.items()})

    @property
    def accounts(self) -> int:
        return self.account_max.height

    @property
    def trained(self) -> pl.Series:
        """The accounts training saw (or carried from a parent): those with a largest of
        their own; every other account is new to the model."""
        return self.account_max[ACCOUNT]

    @cached_property
    def _readers(self) -> _Readers:
        return _Readers(self.known)

    def place(self, windows: pl.LazyFrame) -> pl.DataFrame:
        """Peer groups of the windows of accounts training never saw, each placed by the
        objects it reads: the group of the known account whose reads are most like
        that window's (``like:<account>`` or its role). Columns account, window_start,
        peer_group; windows reading nothing anyone read are left out (population)."""
        empty = pl.DataFrame(
            schema={ACCOUNT: pl.String, WINDOW: pl.Datetime("us", "UTC"), "peer_group": pl.String}
        )
        if self.peers.filter(pl.col("peer_group") != POPULATION).is_empty():
            return empty  # one group: nowhere else to place anyone
        newcomers = (
            windows.join(self.account_max.lazy().select(ACCOUNT), on=ACCOUNT, how="anti")
            .select(ACCOUNT, WINDOW, "objects_list")
            .collect()
        )
        nearest = self._readers.nearest(newcomers["objects_list"])
        placed = newcomers.select(ACCOUNT, WINDOW).with_columns(
            pl.Series("nearest", nearest, dtype=pl.String)
        )
        return (
            placed.drop_nulls("nearest")
            .join(self.peers.rename({ACCOUNT: "nearest"}), on="nearest", how="inner")
            .select(ACCOUNT, WINDOW, "peer_group")
        )

    def with_account_max(self, account_max: pl.DataFrame) -> Profile:
        """This profile with other per-account largest values, and its peer groups'
        references recomputed from them (same memberships)."""
        memberships = (
            self.peer_ref.select("peer_group", pl.col("members").alias(ACCOUNT))
            .explode(ACCOUNT)
            .drop_nulls(ACCOUNT)
        )
        peer_ref, peer_max = _peer_tables(account_max, memberships)
        return replace(self, account_max=account_max, peer_ref=peer_ref, peer_max=peer_max)

    def carried_from(self, parent: Profile) -> Profile:
        """This profile plus what ``parent`` knew that it does not: the objects, clients
        and applications accounts used before (they are not new again), and the accounts
        idle in this profile's period, with their largest values and hours, so they do
        not come back as strangers. Carried accounts keep their parent's peer group
        where this profile has it, else the population's."""
        idle = parent.account_max.join(self.account_max.select(ACCOUNT), on=ACCOUNT, how="anti")
        groups = self.peer_ref["peer_group"].implode()
        carried_peers = parent.peers.join(
            idle.select(ACCOUNT), on=ACCOUNT, how="semi"
        ).with_columns(
            pl.when(pl.col("peer_group").is_in(groups))
            .then(pl.col("peer_group"))
            .otherwise(pl.lit(POPULATION))
            .alias("peer_group")
        )
        return replace(
            self,
            account_max=pl.concat([self.account_max, idle], how="vertical_relaxed"),
            hours=pl.concat(
                [self.hours, parent.hours.join(idle.select(ACCOUNT), on=ACCOUNT, how="semi")]
            ),
            known=pl.concat([self.known, parent.known]).unique().sort(ACCOUNT, "kind", "value"),
            peers=pl.concat([self.peers, carried_peers]),
            weekdays=pl.concat(
                [self.weekdays, parent.weekdays.join(idle.select(ACCOUNT), on=ACCOUNT, how="semi")],
                how="vertical_relaxed",
            ),
            object_days=pl.concat(
                [
                    self.object_days,
                    parent.object_days.join(idle.select(ACCOUNT), on=ACCOUNT, how="semi"),
                ],
                how="vertical_relaxed",
            ),
        )

    def members(self, group: str) -> list[str]:
        """The accounts of a peer group, when training recorded them (learned groups)."""
        if "members" not in self.peer_ref.columns:
            return []
        found = self.peer_ref.filter(pl.col("peer_group") == group)["members"]
        return list(found[0]) if found.len() and found[0] is not None else []


def learn(
    windows: pl.DataFrame,
    known: pl.DataFrame,
    horizons: Horizons,
    roles: dict[str, str] | None = None,
    learned_peers: int = 0,
) -> Profile:
    """Learn the profile from training windows (with horizons) and what the accounts
    were seen using (``known``: :func:`detector.partials.known` of the training period).

    ``roles`` maps accounts to peer groups. Each account not in it is compared with the
    ``learned_peers`` accounts whose read objects are most like its own (group
    ``like:<account>``), or, with 0 or when it read nothing, with the population ``*``.
    """
    cols = horizon_columns(horizons)
    end = windows[WINDOW].max()
    account_max = windows.group_by(ACCOUNT).agg(
        pl.lit(True).alias("has_history"),
        ((pl.lit(end) - pl.col(WINDOW).min()).dt.total_seconds() / 86_400).alias(HISTORY_DAYS),
        *[pl.col(c).max().fill_null(0) for c in cols],
    )
    roles = roles or {}
    learned = _Readers(known).groups(
        [a for a in account_max[ACCOUNT].sort().to_list() if a not in roles], learned_peers
    )
    peers = pl.DataFrame({ACCOUNT: account_max[ACCOUNT]}).with_columns(
        pl.col(ACCOUNT)
        .replace_strict(
            {**{a: f"{LEARNED}{a}" for a in learned["owner"].to_list()}, **roles},
            default=POPULATION,
            return_dtype=pl.String,
        )
        .alias("peer_group")
    )
    memberships = pl.concat(
        [
            peers,
            peers.with_columns(pl.lit(POPULATION).alias("peer_group")),
            learned.select(
                pl.col("member").alias(ACCOUNT), (LEARNED + pl.col("owner")).alias("peer_group")
            ),
        ]
    ).unique()
    peer_ref, peer_max = _peer_tables(account_max, memberships)
    hours = _hour_shares(windows)
    weekdays = _weekday_days(windows)
    object_days = (
        object_days_of(windows.lazy())
        .group_by(ACCOUNT, "object")
        .agg(pl.col("rows").max())
        .collect()
    )
    return Profile(account_max, peer_ref, peer_max, hours, known, peers, weekdays, object_days)


def _peer_tables(
    account_max: pl.DataFrame, memberships: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per peer group, the median and the largest of its members' largest values."""
    cols = [c for c in account_max.columns if c not in (ACCOUNT, "has_history", HISTORY_DAYS)]
    groups = account_max.join(memberships, on=ACCOUNT)
    peer_ref = groups.group_by("peer_group").agg(
        *[pl.col(c).median() for c in cols],
        pl.col(ACCOUNT).sort().alias("members"),
    )
    peer_max = groups.group_by("peer_group").agg(pl.col(c).max() for c in cols)
    return peer_ref, peer_max


def _weekday_days(windows: pl.DataFrame) -> pl.DataFrame:
    """Each account's largest calendar day (UTC) per day of the week it was active on,
    for the days of the week that came at least twice between its first window and the
    end of training: one sample (a week of training, or an account that arrived in the
    second) says nothing about how quiet that day of the week usually is for it. A
    partial first day counts: the largest of two is the other one's."""
    last = pl.lit(windows[WINDOW].max()).dt.date() if windows.height else pl.lit(None, pl.Date)
    spans = windows.group_by(ACCOUNT).agg(pl.col(WINDOW).min().dt.date().alias("_from"))
    spans = spans.with_columns(((last - pl.col("_from")).dt.total_days() + 1).alias("_n"))
    weekday = pl.col(WINDOW).dt.weekday().alias(WEEKDAY)
    largest = windows.group_by(ACCOUNT, weekday).agg(pl.col(c).max() for c in weekday_columns())
    # Days of the week w in [from, last]: n // 7 whole weeks, plus one if w comes within
    # the n % 7 days left over from ``from``'s own day of the week.
    later = (pl.col(WEEKDAY).cast(pl.Int64) - pl.col("_from").dt.weekday().cast(pl.Int64)) % 7
    seen = pl.col("_n") // 7 + (later < pl.col("_n") % 7).cast(pl.Int64)
    return largest.join(spans, on=ACCOUNT, how="left").filter(seen >= 2).drop("_from", "_n")


class _Readers:
    """Which objects each known account reads, as rows of a boolean matrix, and the
    nearest accounts by Jaccard similarity of those sets (scikit-learn, brute force)."""

    def __init__(self, known: pl.DataFrame) -> None:
        # imported here, not with the module: scikit-learn takes seconds to import, and
        # every command imports this module
        from sklearn.neighbors import NearestNeighbors

        objects = known.filter(pl.col("kind") == "object")
        self.accounts = objects[ACCOUNT].unique().sort()
        self.vocabulary = objects["value"].unique().sort()
        self.matrix = self._rows(
            objects.join(self._index(self.accounts, "row"), left_on=ACCOUNT, right_on="value"),
            len(self.accounts),
        )
        self.model = (
            NearestNeighbors(metric="jaccard").fit(self.matrix) if len(self.accounts) else None
        )

    @staticmethod
    def _index(values: pl.Series, name: str) -> pl.DataFrame:
        return pl.DataFrame({"value": values, name: np.arange(len(values))})

    def _rows(self, pairs: pl.DataFrame, height: int) -> npt.NDArray[np.bool_]:
        """Dense boolean rows from (row, value) pairs; values outside the vocabulary are
        dropped (no known account reads them: they change no similarity's order)."""
        from scipy import sparse

        cells = pairs.join(self._index(self.vocabulary, "col"), on="value", how="inner")
        rows: npt.NDArray[np.bool_] = (
            sparse.csr_matrix(
                (
                    np.ones(cells.height, dtype=bool),
                    (cells["row"].to_numpy(), cells["col"].to_numpy()),
                ),
                shape=(height, len(self.vocabulary)),
            )
            .toarray()
            .astype(bool)
        )
        return rows

    def groups(self, owners: list[str], k: int) -> pl.DataFrame:
        """(owner, member): each owner and the ``k`` accounts nearest to it that read at
        least one object it reads. Owners that read nothing are left out."""
        if self.model is None or k == 0:
            return pl.DataFrame(schema={"owner": pl.String, "member": pl.String})
        rows = self._index(self.accounts, "row").filter(pl.col("value").is_in(owners))
        k = min(k + 1, len(self.accounts))  # the nearest is usually itself
        distance, index = self.model.kneighbors(self.matrix[rows["row"].to_numpy()], k)
        names = self.accounts.to_numpy()
        near = pl.DataFrame(
            {
                "owner": np.repeat(rows["value"].to_numpy(), k),
                "member": names[index.ravel()],
                "distance": distance.ravel(),
            }
        ).filter(pl.col("distance") < 1.0)
        return (
            pl.concat(
                [
                    near.select("owner", "member"),
                    rows.select(pl.col("value").alias("owner"), pl.col("value").alias("member")),
                ]
            )
            .unique()
            .sort("owner", "member")
        )

    def nearest(self, object_lists: pl.Series) -> list[str | None]:
        """For each list of objects, the known account whose reads are most like it;
        None when no known account reads any of them."""
        if self.model is None or object_lists.len() == 0:
            return [None] * object_lists.len()
        pairs = (
            pl.DataFrame({"value": object_lists})
            .with_row_index("row")
            .explode("value")
            .drop_nulls("value")
        )
        vectors = self._rows(pairs.with_columns(pl.col("row").cast(pl.Int64)), object_lists.len())
        distance, index = self.model.kneighbors(vectors, 1)
        found = (distance[:, 0] < 1.0) & vectors.any(axis=1)
        names = self.accounts.to_numpy().astype(object)
        chosen = names[index[:, 0]]
        chosen[~found] = None
        return list(chosen)


def _hour_shares(windows: pl.DataFrame) -> pl.DataFrame:
    """Share of each account's active windows per hour of day, smoothed over +-1 hour.

    Smoothing keeps 08:55 and 09:05 alike; the population row (account ``*``) is the
    mean of the accounts' shares, so every account weighs the same.
    """
    counts = windows.group_by(ACCOUNT, "hour").agg(pl.len().alias("n"))
    grid = (
        windows.select(ACCOUNT)
        .unique()
        .join(pl.DataFrame({"hour": list(range(24))}, schema={"hour": pl.Int8}), how="cross")
    )
    dense = (
        grid.join(
            counts.with_columns(pl.col("hour").cast(pl.Int8)), on=[ACCOUNT, "hour"], how="left"
        )
        .with_columns(pl.col("n").fill_null(0))
        .sort(ACCOUNT, "hour")
    )
    share = pl.col("n") / pl.col("n").sum().over(ACCOUNT)
    dense = dense.with_columns(share.alias("raw"))
    prev = pl.col("raw").shift(1).over(ACCOUNT).fill_null(pl.col("raw").last().over(ACCOUNT))
    nxt = pl.col("raw").shift(-1).over(ACCOUNT).fill_null(pl.col("raw").first().over(ACCOUNT))
    smoothed = dense.with_columns(
        pl.max_horizontal(pl.col("raw"), prev, nxt).alias("share")
    ).select(ACCOUNT, "hour", "share")
    population = (
        smoothed.group_by("hour")
        .agg(pl.col("share").mean())
        .with_columns(pl.lit(POPULATION).alias(ACCOUNT))
        .select(ACCOUNT, "hour", "share")
    )
    # Hours without activity are left out (a share of 0 where joined): 24 rows for each
    # of 100,000 accounts took 46 MB, most of them zeros.
    return (
        pl.concat([smoothed, population])
        .filter(pl.col("share") > 0)
        .with_columns(pl.col("hour").cast(pl.Int8))
        .sort(ACCOUNT, "hour")
    )


def usual_hours(profile: Profile, accounts: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Each of ``accounts``' usual hours as (first, last) hour of the shortest circular
    span holding 95% of its training activity (none for accounts training never saw)."""
    spans = {}
    wanted = pl.Series(ACCOUNT, list(accounts), dtype=pl.String)
    hours = profile.hours.filter(pl.col(ACCOUNT).is_in(wanted.implode()))
    for account, active, by_hour in hours.group_by(ACCOUNT).agg("hour", "share").iter_rows():
        shares = [0.0] * 24  # hours without activity are not kept
        for hour, share in zip(active, by_hour, strict=True):
            shares[hour] = share
        total = sum(shares) or 1.0
        spans[account] = next(
            (
                (start, (start + length - 1) % 24)
                for length in range(1, 25)
                for start in range(24)
                if sum(shares[(start + k) % 24] for k in range(length)) >= 0.95 * total
            ),
            (0, 23),
        )
    return spans


__all__ = [
    "HISTORY_DAYS",
    "LEARNED",
    "POPULATION",
    "WEEKDAY",
    "WINDOW",
    "Profile",
    "learn",
    "usual_hours",
]
