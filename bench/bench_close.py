"""How long a close of ``serve``'s windows takes with days of window history held.

At each close the live engine scores the closing accounts' windows. Their 1-hour, 1-day
and 3-day sums come from the sums carried from the last close (``detector.live.running``),
less the windows leaving each horizon: its cost follows the closing and leaving windows,
not the history (3 days: one segment per close, 864 of them). This fills an engine with
``--segments`` closes' history of ``--accounts`` accounts active in every window (with
the bundled model), then times one close of a window of each account (wall and CPU
seconds: on shared cores the CPU time is the steadier figure). The accounts are new to
the model (each judged against its own earlier days too), or with ``--trained`` known to
it, as most of a server's accounts are. It also times summing the state again
from the history, which a restart does. With ``--prepare`` the windows are judged ahead
(``Engine.prepare``, timed apart), as ``serve`` judges them half the lateness past their
end, and the close times what is left: taking the verdicts in.

    uv run python bench/bench_close.py --segments 864 --accounts 5000 [--trained]
    uv run python bench/bench_close.py --segments 288 --accounts 100000 --trained
    uv run python bench/bench_close.py --segments 864 --accounts 5000 --trained --saved /tmp/tw
    uv run python bench/bench_close.py --segments 288 --accounts 5000 --trained --prepare

With ``--saved DIR`` the history is saved to a state database in ``DIR`` (as ``serve``'s
checkpoints save it) and released from memory: the close reads back the segments whose
windows leave a horizon. The memory the history and the carried sums hold, and the
process's RSS, are printed after the close. Then a restart from that database is timed,
with the peak memory it adds: as ``serve`` restarts (the history left in the database,
each segment read once for its window starts, the sums as saved), and as it restarted
before 2026-11-30 (every blob loaded, the history held, the sums summed from it).
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from detector import features as F
from detector import model, partials, settings
from detector.live.engine import HISTORY_SCHEMA, Engine
from detector.profile import Profile

MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def segments(count: int, accounts: int) -> list[pl.DataFrame]:
    """``count`` closes' history segments, each of ``accounts`` accounts."""
    names = pl.Series(F.ACCOUNT, [f"acct_{i:06d}" for i in range(accounts)])
    rng = np.random.default_rng(1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        pl.DataFrame(
            {
                F.ACCOUNT: names,
                F.WINDOW: [start + timedelta(minutes=5 * i)] * accounts,
                **{v: rng.integers(0, 1000, accounts) for v in F.VOLUME},
                "alerted": [False] * accounts,
            }
        ).cast(HISTORY_SCHEMA)
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=864, help="closes held (864: 3 days)")
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument(
        "--trained", action="store_true", help="the accounts are known to the model"
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="judge the closing windows ahead first (Engine.prepare, as serve does), then "
        "time the close that takes their verdicts",
    )
    parser.add_argument(
        "--saved",
        type=Path,
        help="save the history to a state database in this directory, as serve's "
        "checkpoints do, and read it back from there (held in memory otherwise)",
    )
    args = parser.parse_args()
    history = segments(args.segments, args.accounts)
    accounts = history[0][F.ACCOUNT]
    trained = model.load(MODEL)
    if args.trained:
        _as_trained(trained.profile, accounts)
    engine = Engine(trained, settings.Settings())
    for segment in history:
        engine._add_segment("history", segment)
    newest = history[-1][F.WINDOW][0]
    del history  # held by the engine only
    window = newest + engine.base
    engine.closed_until = window
    restored = _carried(engine, newest, args.trained)
    if args.saved is not None:
        _save(engine, args.saved)
    engine._fold(_closing(accounts, window))
    engine.newest = window + timedelta(minutes=1)
    wall: datetime | None = window + timedelta(hours=1)  # closes the window: all are in
    if args.prepare:  # event time half the lateness past the window's end, as serve does
        engine.newest = window + engine.base + engine.lateness / 2
        began, cpu = time.perf_counter(), time.process_time()
        assert engine.prepare()
        print(
            f"judged ahead (Engine.prepare) {time.perf_counter() - began:.2f} s "
            f"({time.process_time() - cpu:.2f} CPU s)"
        )
        # then the lateness past it: the close at the cutoff judged ahead
        engine.newest, wall = window + engine.base + engine.lateness, None
    began, cpu = time.perf_counter(), time.process_time()
    scored = engine.close(wall=wall).scored
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    held = sum(s.rows.estimated_size() for s in engine.history if s.rows is not None) / 1e6
    carried = engine.running.sums.estimated_size() / 1e6 if hasattr(engine, "running") else 0
    print(
        f"after the close: history in memory {held:.0f} MB, carried sums {carried:.1f} MB "
        f"(Polars' estimates); RSS {_rss_mb():.0f} MB"
    )
    kind = "known to the model" if args.trained else "new to the model"
    print(
        f"{args.segments} segments x {args.accounts:,} accounts ({kind}): one close of "
        f"{scored.height:,} windows ({scored['flagged'].sum():,} flagged) {took:.2f} s "
        f"({cpu:.2f} CPU s)"
        + (
            ""
            if restored is None
            else f"; the state summed again from the {args.segments * args.accounts:,} "
            f"history rows (a restart) {restored:.2f} s"
        )
    )
    if args.saved is not None:
        _restart(engine, trained, args.saved)


def _save(engine: Engine, directory: Path) -> None:
    """Save the engine's state to a real state database (``serve``'s store) and let it
    read its history back from there, releasing it from memory."""
    from detector.live.store import Checkpoint, SqliteStore

    store = SqliteStore(directory)
    snapshot = engine.snapshot()
    store.commit(pl.DataFrame(), Checkpoint(sources={}, state=snapshot, saved_at=time.time()))
    engine._read_saved = store.checkpoint_blob
    engine.saved()
    gc.collect()


def _restart(engine: Engine, trained: model.TrainedModel, directory: Path) -> None:
    """Save the close, then restore a fresh engine from the state database both ways
    (see the module's docstring), printing the seconds and the peak memory each adds."""
    from detector.live.engine import HISTORY_PREFIX
    from detector.live.store import Checkpoint, SqliteStore

    store = SqliteStore(directory)
    change = Checkpoint(sources={}, state=engine.snapshot(), saved_at=time.time(), replace=False)
    store.commit(pl.DataFrame(), change)
    engine.saved()
    for way in ("as serve restarts", "as before 2026-11-30"):
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here
        rss = _rss_mb()
        began = time.perf_counter()
        if way == "as serve restarts":
            saved = store.load_checkpoint(defer=HISTORY_PREFIX)
            assert saved is not None
            resumed = Engine(trained, settings.Settings(), saved=store.checkpoint_blob)
            resumed.restore(saved.state, deferred=saved.deferred)
        else:
            saved = store.load_checkpoint()
            assert saved is not None
            resumed = Engine(trained, settings.Settings())
            resumed.restore({n: d for n, d in saved.state.items() if n != "sums"})
        took = time.perf_counter() - began
        assert resumed.running.sums.height == engine.running.sums.height
        print(
            f"restart {way}: {took:.2f} s, peak +{max(0.0, _peak_mb() - rss):.0f} MB, "
            f"held after it +{max(0.0, _rss_mb() - rss):.0f} MB"
        )
        del saved, resumed


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _carried(engine: Engine, newest: datetime, trained: bool) -> float | None:
    """Sum the state carried from close to close again from the history, as a restart
    does, and return the seconds it took (None for a trovewatch before it, which kept
    no such state: the same script times its closes). Untrained accounts' largest sums
    per day are summed again as well, as the closes before would have kept them."""
    try:
        from detector.live.running import Running
    except ImportError:
        return None
    began = time.perf_counter()
    engine.running = Running.of_history(engine.horizons, engine._history(), newest)
    took = time.perf_counter() - began
    if not trained:
        engine._days_from_history(pl.lit(True))
    return took


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
