"""Where `score` spends its time on the benchmark log, stage by stage, in one process.

    uv run python bench/profile_score.py            # after bench/bench_score.py made the data

The stages run one after the other here; `trovewatch score` overlaps the model load with
parsing and parses two chunks at once, so its wall time is less than their sum.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from detector import carried, ingest, model, partials, pipeline, settings

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    log, model_dir = DATA / f"pg{args.lines}.json", DATA / f"model{args.lines}"
    if not log.exists() or not model_dir.exists():
        raise SystemExit(f"run bench/bench_score.py --lines {args.lines} first")
    cpu = os.times()
    start = time.perf_counter()
    trained = model.load(model_dir)
    loaded = time.perf_counter()
    every = trained.horizons.base
    batches = list(ingest.event_batches([log], pipeline.Summary()))
    parsed = time.perf_counter()
    evidence = carried.Evidence()
    parts = []
    for events in batches:
        evidence.add(events)
        parts.append(partials.partial(events, every))
    activity = partials.to_activity(partials.merge_all(parts), every, trained.profile.known)
    aggregated = time.perf_counter()
    scored = pipeline.score_windows(activity, trained, settings.load())
    done = time.perf_counter()
    pipeline.write_ndjson(scored, Path("/dev/null"))
    written = time.perf_counter()
    used = os.times()
    n_events = sum(b.height for b in batches)
    print(f"load model                        {loaded - start:6.2f} s")
    print(f"parse to events                   {parsed - loaded:6.2f} s  ({n_events:,} events)")
    print(f"partial aggregates -> windows     {aggregated - parsed:6.2f} s")
    print(
        f"features + score                  {done - aggregated:6.2f} s  ({scored.height:,} windows)"
    )
    print(f"write NDJSON                      {written - done:6.2f} s")
    print(f"CPU: {used.user - cpu.user:.1f} s user, {used.system - cpu.system:.1f} s system")


if __name__ == "__main__":
    main()
