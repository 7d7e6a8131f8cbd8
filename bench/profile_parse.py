"""CPU seconds of the parse alone (lines to events), per format, on one Polars thread.

    POLARS_MAX_THREADS=1 uv run python bench/profile_parse.py            # after bench_score.py made the data
    POLARS_MAX_THREADS=1 uv run python bench/profile_parse.py --chunks 8 --format stderr

Wall times on a shared 2-core machine move with the other jobs on it; the CPU time of
one thread doing the same work moves much less, so this is the figure to compare two
versions of a parser with. Best of three passes over the first ``--chunks`` 16 MiB
chunks of ``bench/data/pg2000000.<format>``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from detector import formats
from detector.reader import head_lines, read_chunks

DATA = Path(__file__).resolve().parent / "data"
SUFFIX = {"jsonlog": "json", "csvlog": "csv", "stderr": "log"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--format", choices=[*SUFFIX, "all"], default="all")
    args = parser.parse_args()
    for name in SUFFIX if args.format == "all" else [args.format]:
        path = DATA / f"pg{args.lines}.{SUFFIX[name]}"
        if not path.exists():
            raise SystemExit(f"run bench/bench_score.py --format {name} first")
        fmt = formats.get("auto", path)
        configure = getattr(fmt, "configure", None)
        if configure is not None:
            configure(head_lines(path))
        start = getattr(fmt, "record_start", None)
        chunks = list(itertools.islice(read_chunks(path, start, 16 << 20), args.chunks))
        best = float("inf")
        for _ in range(3):
            for chunk in chunks:  # parse from the bytes each time, as a run does
                chunk._lines = chunk._text = None
            used = time.process_time()
            for chunk in chunks:
                fmt.parse(chunk)
            best = min(best, time.process_time() - used)
        lines = sum(c.n_lines for c in chunks)
        print(f"{name:<8} {lines:>9,} lines  {best:6.2f} CPU s  {lines / best:>9,.0f} lines/s")


if __name__ == "__main__":
    main()
