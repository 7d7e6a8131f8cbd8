"""What training learns about each account and its peers, for the relative features.

A :class:`Profile` is a handful of small frames, stored as Parquet beside the model
(Parquet holds data only; loading it runs no code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from detector import schema as S
from detector.features import ACCOUNT, WINDOW, Horizons, horizon_columns

POPULATION: Final = "*"
TABLES: Final = ("account_max", "peer_ref", "peer_max", "hours", "known", "peers")


@dataclass(frozen=True)
class Profile:
    account_max: pl.DataFrame  # account, has_history, <signal>_<horizon>: largest in training
    peer_ref: pl.DataFrame  # peer_group, <signal>_<horizon>: median account's largest
    peer_max: pl.DataFrame  # peer_group, <signal>_<horizon>: any account's largest
    hours: pl.DataFrame  # account ('*' = population), hour, share (smoothed over +-1 hour)
    known: pl.DataFrame  # account, kind (object/client/app), value
    peers: pl.DataFrame  # account, peer_group

    def save(self, directory: Path) -> dict[str, Path]:
        """Write each table as ``profile_<name>.parquet``; return the paths by name.

        Rows are sorted first, so the same training gives the same bytes (and hashes).
        """
        paths = {}
        for name in TABLES:
            path = directory / f"profile_{name}.parquet"
            table: pl.DataFrame = getattr(self, name)
            table.sort(table.columns[: 3 if name in ("known", "hours") else 1]).write_parquet(path)
            paths[name] = path
        return paths

    @classmethod
    def load(cls, directory: Path) -> Profile:
        return cls(**{n: pl.read_parquet(directory / f"profile_{n}.parquet") for n in TABLES})

    @property
    def accounts(self) -> int:
        return self.account_max.height


def learn(
    windows: pl.DataFrame,
    events: pl.LazyFrame,
    horizons: Horizons,
    roles: dict[str, str] | None = None,
) -> Profile:
    """Learn the profile from training windows (with horizons) and the training events.

    ``roles`` maps accounts to peer groups; accounts not in it, and all accounts when it
    is not given, belong to the population group ``*``.
    """
    cols = horizon_columns(horizons)
    account_max = windows.group_by(ACCOUNT).agg(
        pl.lit(True).alias("has_history"),
        *[pl.col(c).max().fill_null(0) for c in cols],
    )
    peers = pl.DataFrame(
        {ACCOUNT: account_max[ACCOUNT]},
    ).with_columns(
        pl.col(ACCOUNT)
        .replace_strict(roles or {}, default=POPULATION, return_dtype=pl.String)
        .alias("peer_group")
    )
    with_group = account_max.join(peers, on=ACCOUNT)
    groups = pl.concat(
        [with_group, with_group.with_columns(pl.lit(POPULATION).alias("peer_group"))]
    ).unique([ACCOUNT, "peer_group"])
    peer_ref = groups.group_by("peer_group").agg(pl.col(c).median() for c in cols)
    peer_max = groups.group_by("peer_group").agg(pl.col(c).max() for c in cols)
    hours = _hour_shares(windows)
    is_read = pl.col(S.CLASS) == "READ"
    known = (
        pl.concat(
            [
                events.filter(is_read)
                .select(pl.col(S.ACCOUNT).alias(ACCOUNT), pl.col(S.OBJECTS).alias("value"))
                .explode("value")
                .with_columns(pl.lit("object").alias("kind")),
                events.select(
                    pl.col(S.ACCOUNT).alias(ACCOUNT),
                    pl.col(S.CLIENT_IP).alias("value"),
                    pl.lit("client").alias("kind"),
                ),
                events.select(
                    pl.col(S.ACCOUNT).alias(ACCOUNT),
                    pl.col(S.APPLICATION).alias("value"),
                    pl.lit("app").alias("kind"),
                ),
            ],
            how="diagonal",
        )
        .drop_nulls()
        .unique()
        .select(ACCOUNT, "kind", "value")
        .sort(ACCOUNT, "kind", "value")
        .collect()
    )
    return Profile(account_max, peer_ref, peer_max, hours, known, peers)


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
    return (
        pl.concat([smoothed, population])
        .with_columns(pl.col("hour").cast(pl.Int8))
        .sort(ACCOUNT, "hour")
    )


def usual_hours(profile: Profile) -> dict[str, tuple[int, int]]:
    """Each account's usual hours as (first, last) hour of the shortest circular span
    holding 95% of its training activity."""
    spans = {}
    for account, shares in profile.hours.sort("hour").group_by(ACCOUNT).agg("share").iter_rows():
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


__all__ = ["POPULATION", "WINDOW", "Profile", "learn", "usual_hours"]
