"""Where ``serve``'s ingest process keeps its memory, stage by stage.

Runs the real ingest loop (``detector.live.service.Service.step``: follow, parse, engine,
SQLite checkpoints; not the API process) in this process over a jsonlog written
beforehand (by a child process, so its pool is not in the figures): ``--windows``
5-minute windows of event time in which each of ``--accounts`` accounts runs
``--per-account`` statements (``bench_live``'s record shapes). Every window but the
last is closed by the next one's events, as in a live run.

    uv run python bench/bench_memory.py --accounts 100000 --per-account 20 --windows 3

By default the model (bench_score's, of 500,000 lines) knows only 500 of the
accounts, and ``serve`` keeps rows per object only for the (account, object) pairs its
profile knows. ``--train-windows N`` trains one that knows them all instead: on ``N``
windows of the same log (same accounts, statements and objects) a day before the measured
run, made once per size in bench/data/ and reused:

    uv run python bench/bench_memory.py --accounts 100000 --per-account 10 --windows 2 \\
        --train-windows 3

``--judging`` adds the peak during each step of judging a close (features, the forest,
reasons) and of taking its verdicts in.

Prints RSS (VmRSS) after each start-up stage (interpreter, imports, model, service),
then per loop stage the RSS after it and the peak during it (VmHWM, reset before each
stage through /proc/self/clear_refs), and, at each close, the sizes of the engine's
state by Polars' estimate (open partials, held events, history, discovered values)
and of the checkpoint's Parquet blobs. ``LazyFree`` is memory the allocator has given
back with MADV_FREE: counted in RSS until the kernel needs it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WINDOW_S = 300
DAY_S = 86_400


def status() -> dict[str, float]:
    """VmRSS, VmHWM (and LazyFree, from smaps_rollup) in MB."""
    text = Path("/proc/self/status").read_text()
    out = {k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]
    rollup = Path("/proc/self/smaps_rollup").read_text()
    found = re.search(r"LazyFree:\s+(\d+) kB", rollup)
    out["LazyFree"] = int(found.group(1)) / 1024 if found else 0.0
    return out


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def write_log(path: Path, accounts: int, per_account: int, windows: int, start: float) -> None:
    """``windows`` windows of ``accounts`` x ``per_account`` statements, each window's
    lines stamped evenly over its 300 s of event time; then one line 40 s into the next
    window (past the lateness) so that the last full window closes too."""
    sys.path.insert(0, str(HERE))
    from datetime import UTC, datetime

    from bench_live import LAP, STAMP, pool

    blob, ends = pool(accounts, accounts * per_account, seed=1)
    block = 2000
    with path.open("wb") as out:
        for w in range(windows):
            current = blob.replace(LAP, b"%04d" % w)
            at = 0
            for i in range(0, len(ends), block):
                end = ends[min(i + block, len(ends)) - 1]
                t = start + w * WINDOW_S + (i / len(ends)) * WINDOW_S
                stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                out.write(current[at:end].replace(STAMP, stamp.encode() + b" UTC"))
                at = end
        t = start + windows * WINDOW_S + 40
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        last = blob[: ends[0]].replace(LAP, b"9999").replace(STAMP, stamp.encode() + b" UTC")
        out.write(last)


class Stages:
    """Peak and end RSS of each wrapped call, summed per stage name."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.log: list[str] = []

    def wrap(self, obj: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(obj, name)

        def measured(*args: Any, **kwargs: Any) -> Any:
            reset_peak()
            began = time.perf_counter()
            result = inner(*args, **kwargs)
            took = time.perf_counter() - began
            s = status()
            self.peak[label] = max(self.peak.get(label, 0.0), s["VmHWM"])
            self.calls[label] = self.calls.get(label, 0) + 1
            self.seconds[label] = self.seconds.get(label, 0.0) + took
            if took > 1.0:
                self.log.append(
                    f"  {label:<10} {took:6.1f} s  peak {s['VmHWM']:6.0f} MB  "
                    f"after {s['VmRSS']:6.0f} MB (LazyFree {s['LazyFree']:.0f})"
                )
                print(self.log[-1], flush=True)
            return result

        setattr(obj, name, measured)


def write_apart(log: Path, start: float, accounts: int, per_account: int, windows: int) -> None:
    """:func:`write_log` in a process of its own, whose memory is not the measured one's."""
    subprocess.run(
        [
            *(sys.executable, __file__, "--write", str(log), "--start", str(start)),
            *("--accounts", str(accounts), "--per-account", str(per_account)),
            *("--windows", str(windows)),
        ],
        check=True,
    )


def ensure_trained(accounts: int, per_account: int, windows: int) -> Path:
    """A model trained on ``windows`` windows of this bench's log, ending a day before
    now: it knows every account and (account, object) pair the measured log has. Made once
    (bench/data/), again if this trovewatch would not load it; trained in a child process."""
    sys.path.insert(0, str(HERE))
    from bench_score import DATA, _loadable

    model = DATA / f"memory-model-{accounts}x{per_account}x{windows}"
    if _loadable(model):
        return model
    shutil.rmtree(model, ignore_errors=True)
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trovewatch-mem-train-") as tmp:
        log = Path(tmp) / "postgresql.json"
        start = (time.time() // WINDOW_S - windows - 1) * WINDOW_S - DAY_S
        began = time.perf_counter()
        write_apart(log, start, accounts, per_account, windows)
        written = time.perf_counter() - began
        train = [sys.executable, "-m", "detector", "train", "--model-dir", str(model)]
        subprocess.run([*train, "--quarantine", "/dev/null", str(log)], check=True)
        print(
            f"model: trained on {log.stat().st_size / 1e6:,.0f} MB, {windows} windows "
            f"(written in {written:.0f} s, trained in {time.perf_counter() - began - written:.0f} s)",
            file=sys.stderr,
        )
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--per-account", type=int, default=20, help="statements per window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--judging",
        action="store_true",
        help="also each step of judging a close's windows and taking them in (its peak "
        "during each call; a step's peak includes the steps it calls)",
    )
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument(
        "--model", type=Path, help="default: bench_score's model of 500,000 lines, made if missing"
    )
    parser.add_argument(
        "--train-windows",
        type=int,
        metavar="N",
        help="instead of --model: one that knows every account, trained on N windows of this log",
    )
    args = parser.parse_args()
    if args.write:
        write_log(args.write, args.accounts, args.per_account, args.windows, args.start)
        return 0
    if args.model is None:  # made apart, so that this process's first figures stay clean
        made = "import bench_score; print(bench_score.ensure_model(500_000))"
        if args.train_windows:
            sizes = f"{args.accounts}, {args.per_account}, {args.train_windows}"
            made = f"import bench_memory; print(bench_memory.ensure_trained({sizes}))"
        run = subprocess.run(
            [sys.executable, "-c", made], cwd=HERE, check=True, stdout=subprocess.PIPE
        )
        args.model = Path(run.stdout.decode().split()[-1])

    rows: list[tuple[str, dict[str, float]]] = [("interpreter", status())]
    tmp = Path(tempfile.mkdtemp(prefix="trovewatch-live-mem-"))
    try:
        log = tmp / "postgresql.json"
        # Event time ends about now: windows close on event time, the wall clock is not
        # needed; a start on a window boundary keeps every window whole.
        start = (time.time() // WINDOW_S - args.windows - 1) * WINDOW_S
        began = time.perf_counter()
        write_apart(log, start, args.accounts, args.per_account, args.windows)
        size = log.stat().st_size
        print(
            f"log: {size / 1e6:,.0f} MB, {args.windows} windows x {args.accounts:,} accounts "
            f"x {args.per_account} statements (written in {time.perf_counter() - began:.0f} s); "
            f"load average {os.getloadavg()}",
            flush=True,
        )

        import numpy  # noqa: F401
        import polars as pl

        rows.append(("+ polars, numpy", status()))
        from api import server  # noqa: F401  (what `serve` imports: uvicorn, the service)

        rows.append(("+ api.server (serve's imports)", status()))
        from detector import model
        from detector.live.service import Service
        from detector.settings import Settings

        trained = model.load(args.model)
        rows.append(("+ model loaded", status()))
        settings = Settings(state_dir=tmp / "state", follow=[str(log)])
        service = Service(trained, settings, [str(log)], args.model)
        rows.append(("+ Service (store, sources)", status()))
        print("\nstart-up                          RSS MB")
        for name, s in rows:
            print(f"  {name:<32} {s['VmRSS']:6.0f}")

        stages = Stages()
        engine = service.engine
        stages.wrap(engine, "add", "add")
        stages.wrap(engine, "close", "close")
        stages.wrap(engine, "prepare", "prepare")
        stages.wrap(engine, "snapshot", "snapshot")
        blobs: list[int] = []
        measured_snapshot = engine.snapshot

        def snapshot() -> dict[str, bytes | None]:
            state = measured_snapshot()
            blobs.append(sum(len(b) for b in state.values() if b is not None))
            return state

        engine.snapshot = snapshot
        stages.wrap(service.store, "commit", "commit")
        for source in service.sources:
            stages.wrap(source, "poll", "poll")
        stages.wrap(service, "_parse", "parse")
        if args.judging:
            wrap_judging(stages)

        print("\nloop (printed: calls over 1 s)", flush=True)
        closes = 0
        loop_began = time.perf_counter()
        windows_seen = 0
        while True:
            before = service.metrics.windows._value.get()
            busy = service.step()
            scored = service.metrics.windows._value.get() - before
            if scored:
                closes += 1
                windows_seen += int(scored)
                describe(engine, service, closes, int(scored), pl)
                print(f"  checkpoint blobs: largest {max(blobs) / 1e6:.1f} MB", flush=True)
            if not busy and closes >= args.windows:
                break
            if not busy and time.perf_counter() - loop_began > 3600:
                break
        print(f"\nloop: {time.perf_counter() - loop_began:.0f} s; load average {os.getloadavg()}")
        print("stage       calls  seconds  peak RSS during (MB)")
        for label in stages.peak:
            print(
                f"  {label:<10} {stages.calls[label]:5d} {stages.seconds[label]:8.1f}  "
                f"{stages.peak[label]:6.0f}"
            )
        s = status()
        print(f"end: RSS {s['VmRSS']:.0f} MB, LazyFree {s['LazyFree']:.0f} MB")
        service.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def wrap_judging(stages: Stages) -> None:
    """Wrap the steps of ``Engine._judge`` and ``Engine._take_in`` (where they are looked
    up when called: the engine module's names, the classes' methods)."""
    from detector import explain, pipeline
    from detector.live import engine, running

    steps: list[tuple[Any, str]] = [
        (engine.partials, "to_activity"),
        (running.Running, "summed"),
        (engine.F, "object_today"),
        (running.Running, "earlier_days"),
        (engine, "judge_windows"),
        (pipeline, "model_frame"),
        (explain.Judge, "__call__"),
        (engine, "alert_levels"),
        (engine, "_history_rows"),
        (engine.F, "object_days"),
        (running.Running, "advance"),
        (engine.Engine, "_carry_object_days"),
        (engine.Engine, "_remember"),
    ]
    for owner, name in steps:
        stages.wrap(owner, name, "judge" if name == "__call__" else name.strip("_"))


def describe(engine: Any, service: Any, closes: int, scored: int, pl: Any) -> None:
    """The engine's state by Polars' estimate, after a close."""
    mb = 1 / 1e6
    frames = len(engine._open.frames)
    opened = engine._open.merged()
    in_memory = [s.rows for s in engine.history if s.rows is not None]  # the rest saved, not held
    history = sum(h.estimated_size() for h in in_memory)
    history_rows = sum(h.height for h in in_memory)
    discovered = sum(d.estimated_size() for d in engine.discovered)
    discovered_rows = sum(d.height for d in engine.discovered)
    s = status()
    print(
        f"close {closes}: {scored:,} windows scored; RSS {s['VmRSS']:.0f} MB "
        f"(LazyFree {s['LazyFree']:.0f}); open partials {opened.height:,} rows "
        f"{opened.estimated_size() * mb:.1f} MB in {frames} frames; "
        f"held {engine.held.height:,} events {engine.held.estimated_size() * mb:.1f} MB; "
        f"history {history_rows:,} rows {history * mb:.1f} MB in {len(engine.history)} "
        f"segments; carried sums {engine.running.sums.height:,} accounts "
        f"{engine.running.sums.estimated_size() * mb:.1f} MB; "
        f"discovered {discovered_rows:,} values {discovered * mb:.1f} MB; "
        f"profile known {engine.trained.profile.known.estimated_size() * mb:.1f} MB",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
