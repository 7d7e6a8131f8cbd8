"""Where `score` spends its time on the benchmark log, stage by stage, in one process.

uv run python bench/profile_score.py            # after bench/bench_score.py made the data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from detector import model, pipeline, settings

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    log, model_dir = DATA / f"pg{args.lines}.json", DATA / f"model{args.lines}"
    if not log.exists() or not model_dir.exists():
        raise SystemExit(f"run bench/bench_score.py --lines {args.lines} first")
    start = time.perf_counter()
    trained = model.load(model_dir)
    loaded = time.perf_counter()
    events, _ = pipeline.read_events([log])
    parsed = time.perf_counter()
    scored = pipeline.score(events, trained, settings.load())
    done = time.perf_counter()
    pipeline.write_ndjson(scored, Path("/dev/null"))
    written = time.perf_counter()
    print(f"load model      {loaded - start:6.2f} s")
    print(f"parse to events {parsed - loaded:6.2f} s  ({events.height:,} events)")
    print(f"features+score  {done - parsed:6.2f} s  ({scored.height:,} account-windows)")
    print(f"write NDJSON    {written - done:6.2f} s")


if __name__ == "__main__":
    main()
