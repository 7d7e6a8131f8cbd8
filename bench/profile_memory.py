"""Where ``serve``'s ingest process spends its memory, by nested stage.

Runs the real ingest loop (``Service.step``) over ``bench_memory.py``'s log (written
once to ``--log`` and reused), and attributes RSS to stages: a thread samples VmRSS every
few milliseconds and each sample counts towards every stage running at the time, so a
stage's figure is the highest RSS while it ran (``peak``) and how far that was above
the RSS when it began (``+``). Stages nest (``close > _score > _judge > judge_windows >
model_frame``; ``prepare > _judge``: the next close judged ahead). At each close it also
prints the estimated sizes (Polars' ``estimated_size``) of the frames a batch builds.

    uv run python bench/profile_memory.py --accounts 100000 --per-account 10 --windows 2

Not a benchmark of speed: the wrappers and the sampler cost a little.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def breakdown(label: str) -> None:
    """RSS by kind of mapping: the C heap (glibc's main arena), other anonymous memory
    (glibc's thread arenas, jemalloc's extents, Python's arenas, NumPy's large arrays),
    and files (shared libraries)."""
    kinds: dict[str, float] = {}
    lazy = 0.0
    name = ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = head[5] if len(head) > 5 else "[anon]"
                if name.startswith("/"):
                    name = "files"
            elif head[0] == "Rss:":
                kinds[name] = kinds.get(name, 0.0) + int(head[1]) / 1024
            elif head[0] == "LazyFree:":
                lazy += int(head[1]) / 1024
    shown = ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]) if v >= 1
    )
    print(f"  [{label}] RSS {rss_mb():.0f} MB: {shown}; LazyFree {lazy:.0f}", flush=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Sampler:
    """Peak RSS of each running stage, from a thread sampling every ``every`` s."""

    def __init__(self, every: float = 0.003) -> None:
        self.stack: list[str] = []
        self.peak: dict[str, float] = {}
        self.rise: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._current: dict[int, float] = {}  # depth -> peak since the stage began
        self._every = every
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop:
            r = rss_mb()
            for depth in range(len(self.stack)):
                if r > self._current.get(depth, 0.0):
                    self._current[depth] = r
            time.sleep(self._every)

    @contextmanager
    def stage(self, label: str) -> Any:
        path = " > ".join([*self.stack, label])
        depth = len(self.stack)
        start = rss_mb()
        self._current[depth] = start
        self.stack.append(label)
        began = time.perf_counter()
        try:
            yield
        finally:
            end = rss_mb()
            peak = max(self._current.get(depth, start), end)
            self.stack.pop()
            self._current.pop(depth, None)
            self.peak[path] = max(self.peak.get(path, 0.0), peak)
            self.rise[path] = max(self.rise.get(path, 0.0), peak - start)
            self.seconds[path] = self.seconds.get(path, 0.0) + time.perf_counter() - began
            self.calls[path] = self.calls.get(path, 0) + 1

    def wrap(self, owner: Any, name: str, label: str | None = None, sizes: bool = False) -> None:
        inner: Callable[..., Any] = getattr(owner, name)
        tag = label or name

        def measured(*args: Any, **kwargs: Any) -> Any:
            with self.stage(tag):
                result = inner(*args, **kwargs)
            if sizes:
                note_size(tag, result)
            return result

        setattr(owner, name, measured)


SIZES: dict[str, float] = {}


def note_size(tag: str, result: Any) -> None:
    import numpy as np
    import polars as pl

    items = result if isinstance(result, tuple) else (result,)
    for i, item in enumerate(items):
        key = tag if len(items) == 1 else f"{tag}[{i}]"
        if isinstance(item, pl.DataFrame):
            size = item.estimated_size() / 2**20
        elif isinstance(item, np.ndarray):
            size = item.nbytes / 2**20
        else:
            continue
        SIZES[key] = max(SIZES.get(key, 0.0), size)


def probe(eng: Any) -> None:
    """The RSS each piece of the engine's state really holds: dropped one at a time."""
    import ctypes
    import gc

    from detector import partials

    def settle(label: str) -> None:
        gc.collect()
        ctypes.CDLL(None).malloc_trim(0)
        time.sleep(3)  # jemalloc's decay
        breakdown(label)

    settle("probe: as is")
    eng.discovered = []
    settle("probe: discovered dropped")
    eng.history = []
    settle("probe: history dropped")
    eng._open = partials.Fold(8)
    eng._fresh = []
    settle("probe: open partials dropped")
    eng.held = eng.held.clear()
    settle("probe: held dropped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--log", type=Path, default=Path("/tmp/trovewatch-profile-memory.json"))
    parser.add_argument(
        "--probe",
        type=int,
        help="at this read after the first close, "
        "drop the engine's state piece by piece and print the RSS each freed",
    )
    parser.add_argument("--model", type=Path, default=HERE / "data" / "model500000")
    args = parser.parse_args()
    window_s = 300
    start = (time.time() // window_s - args.windows - 1) * window_s
    if not args.log.exists():
        from bench_memory import write_apart

        write_apart(args.log, start, args.accounts, args.per_account, args.windows)
    import tempfile

    import polars as pl  # noqa: F401

    from api import server  # noqa: F401
    from detector import model, partials, pipeline
    from detector.live import engine as E
    from detector.live.service import Service
    from detector.settings import Settings

    trained = model.load(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="trovewatch-profile-mem-"))
    settings = Settings(state_dir=tmp / "state", follow=[str(args.log)])
    service = Service(trained, settings, [str(args.log)], args.model)
    from detector.live.service import release_freed_memory

    release_freed_memory()
    print(f"idle: RSS {rss_mb():.0f} MB; load average {os.getloadavg()}", flush=True)
    breakdown("idle")
    s = Sampler()
    eng = service.engine
    # top level
    for source in service.sources:
        s.wrap(source, "poll")
    s.wrap(service, "_parse", "parse")
    s.wrap(eng, "add")
    s.wrap(eng, "close")
    s.wrap(eng, "prepare")
    s.wrap(eng, "snapshot")
    s.wrap(service.store, "commit")
    # inside add
    s.wrap(E, "merge_split_statements", "merge_split_statements")
    s.wrap(partials, "partial", sizes=True)
    s.wrap(eng._open, "add", "Fold.add")
    # inside close
    s.wrap(eng._open, "take", "Fold.take", sizes=True)
    s.wrap(eng, "_score", sizes=True)
    s.wrap(eng, "_judge", sizes=True)
    s.wrap(eng, "_known", "known")
    s.wrap(partials, "to_activity", sizes=True)
    s.wrap(E, "judge_windows", sizes=True)
    s.wrap(pipeline, "model_frame", sizes=True)
    s.wrap(pipeline, "matrix", sizes=True)
    s.wrap(trained.detector, "score", "forest.score", sizes=True)
    s.wrap(trained.detector, "attribution", "forest.attribution", sizes=True)
    s.wrap(E, "_history_rows", sizes=True)
    s.wrap(E, "_new_values", sizes=True)
    s.wrap(eng, "_remember")
    s.wrap(eng, "_evict")
    for stage in ("summed", "advance", "earlier_days", "remember_days"):
        s.wrap(eng.running, stage, f"running.{stage}")

    closes = 0
    reads = 1
    began = time.perf_counter()
    while True:
        before = service.metrics.windows._value.get()
        busy = service.step()
        if service.metrics.windows._value.get() > before:
            closes += 1
            print(f"close {closes}: RSS {rss_mb():.0f} MB", flush=True)
            breakdown(f"after close {closes}")
        elif reads % 40 == 0:
            breakdown(f"read {reads}")
        if args.probe and closes == 1 and reads >= args.probe:
            probe(eng)
            return 0
        reads += 1
        if not busy and closes >= args.windows:
            break
    print(f"\nloop {time.perf_counter() - began:.0f} s; load average {os.getloadavg()}")
    print(f"{'stage':<64} {'calls':>6} {'s':>7} {'peak':>6} {'+max':>6}")
    for path in sorted(s.peak, key=lambda p: p.split(" > ")):
        indent = "  " * path.count(" > ")
        name = indent + path.split(" > ")[-1]
        print(
            f"{name:<64} {s.calls[path]:6d} {s.seconds[path]:7.1f} {s.peak[path]:6.0f} "
            f"{s.rise[path]:6.0f}"
        )
    print("\nlargest result of each (estimated MB)")
    for key, size in SIZES.items():
        print(f"  {key:<30} {size:8.1f}")
    eng_sizes = {
        "open partials": eng._open.merged().estimated_size(),
        "held": eng.held.estimated_size(),
        "history": sum(s.rows.estimated_size() for s in eng.history if s.rows is not None),
        "discovered": sum(d.estimated_size() for d in eng.discovered),
        "levels": eng.levels.estimated_size(),
    }
    for key, size in eng_sizes.items():
        print(f"  state {key:<24} {size / 2**20:8.1f}")
    breakdown("end")
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    breakdown("end, after gc and malloc_trim")
    service.store.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
