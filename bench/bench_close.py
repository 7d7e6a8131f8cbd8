"""What a close of ``serve``'s windows spends gathering each batch's window history.

At each close the live engine scores the closing accounts ``SCORE_BATCH`` at a time, each
batch with its accounts' history over the longest horizon (3 days: one segment per close,
864 of them). This times :func:`detector.live.engine.history_batches` on synthetic
segments, beside the way it was done before (every segment filtered for every batch),
then scores one batch's closing windows against its history
(:func:`detector.pipeline.score_windows` with ``prior``, the bundled model), as a close
does for each batch. The accounts are new to the model (each judged against its own
earlier days too, from every window of its history), or with ``--trained`` known to it,
as most of a server's accounts are.

    uv run python bench/bench_close.py --segments 288 --accounts 100000
    uv run python bench/bench_close.py --segments 864 --accounts 5000   # 3 days, one batch
    uv run python bench/bench_close.py --segments 864 --accounts 5000 --trained

Prints the times and checks that both ways give every history row once.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from detector import features as F
from detector import model, partials, pipeline, settings
from detector.live.engine import HISTORY_SCHEMA, SCORE_BATCH, _compact, _full, history_batches
from detector.profile import Profile

MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def segments(count: int, accounts: int) -> list[pl.DataFrame]:
    """``count`` closes' history segments, each of ``accounts`` accounts, as held."""
    names = pl.Series(F.ACCOUNT, [f"acct_{i:06d}" for i in range(accounts)])
    rng = np.random.default_rng(1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        _compact(
            pl.DataFrame(
                {
                    F.ACCOUNT: names,
                    F.WINDOW: [start + timedelta(minutes=5 * i)] * accounts,
                    **{v: rng.integers(0, 1000, accounts) for v in F.VOLUME},
                    "alerted": rng.random(accounts) < 0.001,
                }
            )
            .cast(HISTORY_SCHEMA)
            .sort(F.ACCOUNT)
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=288, help="closes held (288: a day)")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--trained", action="store_true", help="the accounts are known to the model"
    )
    args = parser.parse_args()
    history = segments(args.segments, args.accounts)
    accounts = history[0][F.ACCOUNT].sort()
    total = args.segments * args.accounts

    began = time.perf_counter()
    rows = 0
    for start in range(0, accounts.len(), SCORE_BATCH):
        ours = pl.col(F.ACCOUNT).is_in(accounts.slice(start, SCORE_BATCH).implode())
        rows += pl.concat([_full(s.filter(ours)) for s in history]).height
    filtered = time.perf_counter() - began
    assert rows == total

    began = time.perf_counter()
    rows = sum(h.height for _, h in history_batches(history, accounts, SCORE_BATCH))
    sliced = time.perf_counter() - began
    assert rows == total

    batches = -(-accounts.len() // SCORE_BATCH)
    print(
        f"{args.segments} segments x {args.accounts:,} accounts, {batches} batches of "
        f"{SCORE_BATCH:,}: every segment filtered per batch {filtered:.2f} s, "
        f"history_batches {sliced:.2f} s"
    )
    batch, prior = next(history_batches(history, accounts, SCORE_BATCH))
    closing = _closing(batch, history[-1][F.WINDOW][0] + timedelta(minutes=5))
    trained = model.load(MODEL)
    if args.trained:
        _as_trained(trained.profile, batch)
    activity = partials.to_activity(closing, trained.horizons.base, trained.profile.known)
    began = time.perf_counter()
    scored = pipeline.score_windows(activity, trained, settings.Settings(), prior=prior)
    print(
        f"scoring one batch's {scored.height:,} closing windows against its "
        f"{prior.height:,} history rows: {time.perf_counter() - began:.2f} s"
    )


def _as_trained(profile: Profile, accounts: pl.Series) -> None:
    """Make ``accounts`` known to the model's profile, with its first account's largest."""
    largest = profile.account_max
    known = largest.head(1).select(pl.exclude(F.ACCOUNT).repeat_by(accounts.len()).explode())
    added = known.with_columns(accounts.alias(F.ACCOUNT)).select(largest.columns)
    object.__setattr__(profile, "account_max", pl.concat([largest, added]))


def _closing(accounts: pl.Series, window: datetime) -> pl.DataFrame:
    """Partials of one window per account: a read of one table."""
    n = accounts.len()
    return pl.DataFrame(
        {
            F.ACCOUNT: accounts,
            F.WINDOW: [window] * n,
            "statements": [10] * n,
            "failed": [0] * n,
            "rows_read": [100] * n,
            "bytes_read": [None] * n,
            "export_rows": [None] * n,
            "export_keys": [[]] * n,
            "uncounted_export_keys": [[]] * n,
            "counted_export_keys": [[]] * n,
            "objects_list": [["public.t"]] * n,
            "export_objects_list": [[]] * n,
            "clients_list": [[]] * n,
            "apps_list": [[]] * n,
            "last_time": [window] * n,
        },
        schema=partials.SCHEMA,
    )


if __name__ == "__main__":
    main()
