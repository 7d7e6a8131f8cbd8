"""What a close of ``serve``'s windows spends gathering each batch's window history.

At each close the live engine scores the closing accounts ``SCORE_BATCH`` at a time, each
batch with its accounts' history over the longest horizon (3 days: one segment per close,
864 of them). This times :func:`detector.live.engine.history_batches` on synthetic
segments, beside the way it was done before (every segment filtered for every batch).

    uv run python bench/bench_close.py --segments 288 --accounts 100000

Prints both times and checks that both give every history row once.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from detector import features as F
from detector.live.engine import HISTORY_SCHEMA, SCORE_BATCH, _compact, _full, history_batches


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
                    "alerted": [False] * accounts,
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


if __name__ == "__main__":
    main()
