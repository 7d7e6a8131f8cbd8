"""Batch ``score`` throughput and peak memory at 1, 10 and 50 million lines of jsonlog,
each in its own process, with the model of ``bench_score.py`` (2 million lines).

    uv run python bench/bench_scaling.py                     # 1M, 10M, 50M lines
    uv run python bench/bench_scaling.py --lines 1000000 10000000

Longer logs span proportionally more days (3 days per 2 million lines), so each day and
account-window looks like the model's training: the number of account-windows grows
with the log, the work per window does not. The 50-million-line log is about 23 GB.
"""

from __future__ import annotations

import argparse
import os
import platform

from bench_score import ensure_data, ensure_model, run, score_command

BASE_LINES = 2_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    args = parser.parse_args()
    model = ensure_model(BASE_LINES)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n"
    )
    print(f"{'lines':>12}{'GB':>7}{'seconds':>9}{'lines/s':>12}{'peak RSS MB':>13}")
    for lines in args.lines:
        log = ensure_data(lines, days=3.0 * lines / BASE_LINES)
        seconds, rss = run(score_command(model, log))
        size = log.stat().st_size / 1e9
        print(f"{lines:>12,}{size:>7.1f}{seconds:>9.1f}{lines / seconds:>12,.0f}{rss:>13,.0f}")


if __name__ == "__main__":
    main()
