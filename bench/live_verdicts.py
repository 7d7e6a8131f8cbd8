"""Everything the live engine scores on a log, for comparing two versions of it.

Reads ``logs`` (batch parser), feeds their events to :class:`detector.live.engine.Engine`
``--step`` events at a time, closing windows after each step (and, halfway, saving a
snapshot and continuing from it in a new engine, as a restart does; with ``--prepare``
judging the next close's windows ahead after each step, as ``serve`` does), then
flushes; writes every scored row (account, window, score, flag, severity, reasons,
features, objects) to ``--out`` as Parquet, sorted. Two runs are the same when ``cmp`` of the frames'
``equals`` says so:

    uv run python bench/live_verdicts.py --model-dir models/default --since 2026-10-19 \\
        --out /tmp/after.parquet sample_logs/postgresql.json.gz
    uv run python bench/live_verdicts.py --compare /tmp/before.parquet /tmp/after.parquet
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def run(args: argparse.Namespace) -> None:
    from detector import model, pipeline, settings
    from detector.live import engine as engine_module
    from detector.live.engine import Engine

    if args.score_batch:
        engine_module.SCORE_BATCH = args.score_batch  # type: ignore[misc]
    since = datetime.fromisoformat(args.since).replace(tzinfo=UTC) if args.since else None
    events, _ = pipeline.read_events(list(args.logs), since=since)
    events = events.sort("time", maintain_order=True)
    trained = model.load(args.model_dir)
    conf = (
        settings.Settings(max_accounts=args.max_accounts)
        if args.max_accounts
        else settings.Settings()
    )
    engine = Engine(trained, conf)
    parts, evicted = [], 0
    half = events.height // 2
    for start in range(0, events.height, args.step):
        if start <= half < start + args.step:  # a restart from the saved state
            state = engine.snapshot()
            engine.saved()
            engine = Engine(trained, conf)
            engine.restore({k: v for k, v in state.items() if v is not None})
        engine.add(events[start : start + args.step])
        closed = engine.close()
        evicted += closed.evicted
        parts.append(closed.scored)
        if args.prepare:  # the next close's windows judged ahead, as serve does
            engine.prepare()
    parts.append(engine.close(wall=FAR_FUTURE).scored)
    scored = pl.concat([p for p in parts if p.height], how="vertical_relaxed").sort(
        "account", "window_start"
    )
    scored.write_parquet(args.out)
    flagged = int(scored["flagged"].sum())
    print(f"{args.out}: {scored.height:,} windows, {flagged:,} flagged, {evicted:,} evicted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="*", type=Path)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--since")
    parser.add_argument("--step", type=int, default=5_000)
    parser.add_argument("--score-batch", type=int)
    parser.add_argument("--max-accounts", type=int)
    parser.add_argument(
        "--prepare", action="store_true", help="judge each next close ahead (Engine.prepare)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        a, b = (pl.read_parquet(p) for p in args.compare)
        same = a.equals(b)
        print(f"{'same' if same else 'DIFFERENT'}: {a.height:,} and {b.height:,} rows")
        return 0 if same else 1
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
