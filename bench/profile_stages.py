"""CPU seconds of each stage of ``score``, one after the other on one Polars thread.

    POLARS_MAX_THREADS=1 uv run python bench/profile_stages.py --format jsonlog   # csvlog, stderr

The run is ``score``'s (bench/data/pg2000000.<format>, the model of bench_score.py), but
sequential: chunks are read, then parsed one by one, then merged and aggregated, then
scored. Named steps inside the parse are timed by wrapping the module functions that do
them; each line's figure is its own time, without the steps it calls that have their
own line. Total CPU is the process's, so the lines add up to about it.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SUFFIX = {"jsonlog": "json", "csvlog": "csv", "stderr": "log"}
OWN: defaultdict[str, float] = defaultdict(float)
_stack: list[list[float]] = []


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _stack.append([0.0])
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.process_time() - start
            children = _stack.pop()[0]
            OWN[name] += spent - children
            if _stack:
                _stack[-1][0] += spent

    return wrapper


def wrap(module: Any, names: list[str], prefix: str = "") -> None:
    for name in names:
        if hasattr(module, name):
            wrapped = timed(prefix + name, getattr(module, name))
            if isinstance(inspect.getattr_static(module, name), staticmethod):
                wrapped = staticmethod(wrapped)
            setattr(module, name, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=SUFFIX, default="jsonlog")
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--chunks", type=int, help="only the file's first CHUNKS chunks")
    args = parser.parse_args()
    log, model_dir = DATA / f"pg{args.lines}.{SUFFIX[args.format]}", DATA / f"model{args.lines}"
    if not log.exists() or not model_dir.exists():
        raise SystemExit(f"run bench/bench_score.py --format {args.format} first")

    imp = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; import detector.cli; t = os.times(); print(t.user + t.system)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    t0 = os.times()
    from detector import carried, formats, ingest, model, partials, pipeline, settings
    from detector.formats import pg_csvlog, pg_cursors, pg_jsonlog, pg_stderr, pgaudit
    from detector.reader import head_lines, read_chunks

    wrap(
        pgaudit,
        [
            "audit_fields",
            "_audit_statements",
            "_with_durations",
            "_parse_times",
            "_fill_session_attributes",
            "_failures",
            "rejects",
            "missing_fields",
        ],
    )
    wrap(pg_jsonlog.PgJsonlog, ["_decode", "_records_to_events"], "jsonlog.")
    wrap(pg_csvlog, ["_one_line_records", "_segmented", "_read_csv", "with_raw_lines"], "csvlog.")
    wrap(pg_stderr, ["_join_continuations", "_sessions", "with_raw_lines"], "stderr.")
    wrap(pgaudit, ["to_events"])
    wrap(ingest, ["merge_split_statements"])
    wrap(pg_cursors, ["declared_cursors", "fetch_objects"])
    t_import = sum(os.times()[:2]) - sum(t0[:2])

    cpu = time.process_time
    stages: dict[str, float] = {}
    c = cpu()
    trained = model.load(model_dir)
    stages["model load"] = cpu() - c
    fmt = formats.get("auto", log)
    if hasattr(fmt, "configure"):
        fmt.configure(head_lines(log))
    size = ingest.STREAM_CHUNK_BYTES
    c = cpu()
    chunks = list(
        itertools.islice(read_chunks(log, getattr(fmt, "record_start", None), size), args.chunks)
    )
    stages["read chunks"] = cpu() - c
    c = cpu()
    parsed = [fmt.parse(chunk) for chunk in chunks]
    stages["parse (all steps)"] = cpu() - c
    del chunks
    c = cpu()
    statements = ingest._Statements(timedelta(minutes=5))
    batches = []
    for p in parsed:
        batches.extend(statements.add(p.events))
    batches.extend(statements.close())
    stages["statement merge, cursors"] = cpu() - c
    every = trained.horizons.base
    c = cpu()
    evidence = carried.Evidence()
    parts = []
    for events in batches:
        evidence.add(events)
        parts.append(partials.partial(events, every))
    stages["partial aggregates"] = cpu() - c
    c = cpu()
    activity = partials.to_activity(partials.merge_all(parts), every, trained.profile.known.lazy())
    stages["partials to windows"] = cpu() - c
    c = cpu()
    scored = pipeline.score_windows(activity, trained, settings.load())
    stages["features, forest, reasons"] = cpu() - c
    c = cpu()
    pipeline.write_ndjson(scored, Path("/dev/null"))
    stages["NDJSON out"] = cpu() - c

    total = os.times()
    print(
        f"{args.format}: {sum(b.height for b in batches):,} events, {scored.height:,} windows, "
        f"POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', '-')}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'import detector.cli (own process)':<40}{float(imp.stdout):7.2f}")
    print(f"{'  (the same imports, in this process)':<40}{t_import:7.2f}")
    for name, s in stages.items():
        print(f"{name:<40}{s:7.2f}")
        if name.startswith("parse"):
            for step, own in sorted(OWN.items(), key=lambda kv: -kv[1]):
                if step not in ("merge_split_statements", "declared_cursors", "fetch_objects"):
                    print(f"    {step:<36}{own:7.2f}")
    print(f"{'CPU total (this process)':<40}{total.user + total.system - t0.user - t0.system:7.2f}")


if __name__ == "__main__":
    main()
