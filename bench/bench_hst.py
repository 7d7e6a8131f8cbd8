"""trovewatch beside its streaming peer, River's HalfSpaceTrees, on the same features in
the same run: events per second from log to scored windows.

    uv run python bench/bench_hst.py            # after bench_score.py made the data

Both read the log with trovewatch's parser into the same per-account window features
(:mod:`detector.partials`, as ``score`` builds them), timed once. Then trovewatch scores the
windows (isolation forest, relative features, reasons) and HalfSpaceTrees scores and
learns each window in time order, as it would live (``detector.evaluate.baselines``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from detector import ingest, model, partials, pipeline, settings
from detector.evaluate.baselines import HalfSpaceTrees

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    log, model_dir = DATA / f"pg{args.lines}.json", DATA / f"model{args.lines}"
    if not log.exists() or not model_dir.exists():
        raise SystemExit(f"run bench/bench_score.py --lines {args.lines} first")
    trained = model.load(model_dir)
    conf = settings.load()

    start = time.perf_counter()
    summary = pipeline.Summary()
    every = trained.horizons.base
    parts = [partials.partial(events, every) for events in ingest.event_batches([log], summary)]
    activity = partials.to_activity(partials.merge_all(parts), every, trained.profile.known)
    features = time.perf_counter() - start
    events = sum(summary.events.values())

    start = time.perf_counter()
    pipeline.score_windows(activity, trained, conf)
    ours = time.perf_counter() - start

    start = time.perf_counter()
    HalfSpaceTrees().fit(activity)  # scores, then learns, every window in time order
    hst = time.perf_counter() - start

    print(f"{args.lines:,} lines, {events:,} events, {activity.height:,} account-windows")
    print(f"parse and window features (shared): {features:.1f} s\n")
    print(f"{'scorer':<36}{'scoring s':>10}{'total s':>9}{'events/s':>11}{'windows/s':>11}")
    for name, seconds in (("trovewatch (isolation forest)", ours), ("River HalfSpaceTrees", hst)):
        total = features + seconds
        print(
            f"{name:<36}{seconds:>10.1f}{total:>9.1f}{events / total:>11,.0f}"
            f"{activity.height / seconds:>11,.0f}"
        )


if __name__ == "__main__":
    main()
