"""``trovewatch simulate``: write a population's log, day by day, and its labels.

Output in ``--out``:

* ``postgresql-YYYY-MM-DD.json`` (``.json.gz`` with ``--gzip``): one file per day, as a
  server with ``log_filename = 'postgresql-%Y-%m-%d'`` rotates them; with ``--format
  csvlog`` or ``stderr`` the same records as ``.csv`` or ``.log`` (``convert``).
* with ``--format mariadb`` instead: ``server_audit-YYYY-MM-DD.log`` and
  ``slow-YYYY-MM-DD.log``, the same statements as a MariaDB 10.11 server's audit log and
  slow query log, rotated daily (``mariadb_lines``, ``dialect``).
* ``labels.csv``: ``incident_id,account,start,end,kind,description`` (ISO-8601 UTC).
* ``unusual.csv``: big but legitimate jobs (same columns; not incidents, not labels).
* ``totals.csv``: per account, the events, rows and exports a parser should count (from the
  jsonlog as pgAudit logs them; with ``--format mariadb`` from both MariaDB logs).
* ``accounts.csv`` and ``trovewatch.toml`` (``[roles]``: peer groups by role).

Each day is drawn, rendered and written before the next, so memory holds one day.
Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from detector.simulate import activity, convert, incidents, lines, mariadb_lines, population
from detector.simulate.dialect import Dialect
from detector.simulate.roles import Role
from detector.simulate.truth import Totals

DEFAULT_START = date(2026, 10, 5)  # a Monday
LOG_GLOBS = ("postgresql-????-??-??.*", "server_audit-????-??-??.*", "slow-????-??-??.*")
FORMATS = (*convert.FORMATS, "mariadb")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _count(text: str) -> int:
    """A whole number, 0 or more (numpy's generator takes no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="directory to write the logs and labels to"
    )
    parser.add_argument(
        "--accounts", type=int, default=50, help="database accounts (default: %(default)s)"
    )
    parser.add_argument(
        "--days", type=int, default=21, help="days of activity (default: %(default)s)"
    )
    parser.add_argument("--seed", type=_count, default=1, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--start",
        type=_day,
        default=DEFAULT_START,
        help="first day, YYYY-MM-DD (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup-days",
        type=_count,
        default=incidents.WARMUP_DAYS,
        help="no incident in the first this many days (default: %(default)s)",
    )
    parser.add_argument(
        "--incidents",
        type=_count,
        default=None,
        help="incidents of each kind (default: one per 40 accounts, at least one)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="jsonlog",
        help="PostgreSQL's log_destination to write (default: %(default)s; stderr with "
        f"log_line_prefix = '{convert.STDERR_PREFIX.replace('%', '%%')}'), or mariadb: a MariaDB 10.11 "
        "server's server_audit and slow query logs",
    )
    parser.add_argument("--gzip", action="store_true", help="write .gz files")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the logs of an earlier run in --out"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")  # fmt: skip


@dataclass
class Result:
    """What a run wrote: line and statement counts, its duration, the day files in order,
    the number of labelled incidents, and per-account totals (as ``totals.csv``)."""

    lines: int
    statements: int
    seconds: float
    files: list[Path]
    labels: int
    totals: pl.DataFrame


def run(args: argparse.Namespace) -> int:
    """The ``simulate`` command; returns the exit code."""
    if args.accounts < 10 or args.days < 1:
        print("trovewatch: error: simulate needs --accounts >= 10 and --days >= 1", file=sys.stderr)
        return 2
    earlier = sorted(p for g in LOG_GLOBS for p in args.out.glob(g)) if args.out.is_dir() else []
    if earlier and not args.overwrite:
        print(
            f"trovewatch: error: {args.out} already holds logs ({earlier[0].name}, ...); "
            "choose another --out or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    for path in earlier:
        path.unlink()
    result = simulate(
        args.out, args.accounts, args.days, args.seed, args.start,
        warmup=args.warmup_days, per_kind=args.incidents, compress=args.gzip,
        progress=not args.no_progress, fmt=args.format,
    )  # fmt: skip
    rate = result.lines / result.seconds if result.seconds else 0.0
    print(
        f"Wrote {result.lines:,} lines ({result.statements:,} statements) for {args.accounts:,} accounts "
        f"x {args.days} days to {args.out} in {result.seconds:.1f} s ({rate:,.0f} lines/s); "
        f"{result.labels} labelled incidents in {args.out / 'labels.csv'}.",
        file=sys.stderr,
    )
    asked = None if args.incidents is None else args.incidents * len(incidents.KINDS)
    if asked is not None and result.labels < asked:
        print(
            f"Only {result.labels} of the {asked} incidents asked for fit: each needs an "
            "account of its kind and a day after the warm-up; give more --accounts or --days.",
            file=sys.stderr,
        )
    return 0


def simulate(
    out: Path,
    accounts: int,
    days: int,
    seed: int,
    start: date,
    *,
    warmup: int = incidents.WARMUP_DAYS,
    per_kind: int | None = None,
    compress: bool = False,
    progress: bool = False,
    fmt: str = "jsonlog",
) -> Result:
    """Write the logs and sidecar files into ``out``; see the module docstring."""
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pop = population.build(accounts, days, start, seed)
    plan = incidents.plan(pop, seed, warmup, per_kind)
    frozen = pop.catalog.freeze()
    prof = population.arrays(pop)
    totals = Totals(len(pop.accounts))
    spans = incidents.Spans()
    files: list[Path] = []
    n_lines = n_stmts = 0
    bar = _bar(days, progress)
    mariadb = fmt == "mariadb"
    dialect = Dialect(frozen.keys) if mariadb else None
    counters = mariadb_lines.Counters()
    suffix = ".gz" if compress else ""
    with _Writer() as writer, _Writer() as slow_writer:
        for day in range(days):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2, day]))
            day_us = activity.day_start_us(pop, day)
            parts = [activity.ordinary(pop, prof, frozen, day, rng)]
            parts += incidents.materialize(plan, pop, frozen, day, rng)
            stmts = activity.concat(parts)
            stmts["t"] = np.clip(
                stmts["t"], day_us + stmts["dur"] + 20_000, day_us + activity.DAY_US - 5_000
            )
            if dialect is None:
                totals.add(stmts, frozen)
            spans.add(stmts)
            date_text = f"{start + timedelta(days=day):%Y-%m-%d}"
            st, sessions = lines.day_statements(
                stmts, frozen, pop.accounts, pop.ips.values, pop.apps.values, day, day_us, rng
            )
            if dialect is not None:
                audit, slow = (
                    out / f"{log}-{date_text}.log{suffix}" for log in ("server_audit", "slow")
                )
                files += [audit, slow]
                writer.open(audit, compress)
                slow_writer.open(slow, compress)
                audit_block, slow_block, count, counted = mariadb_lines.render_day(
                    st, sessions, dialect, rng, counters
                )
                totals.add_counted(counted, pop.accounts)
                writer.put(audit_block)
                slow_writer.put(mariadb_lines.SLOW_HEADER + slow_block)
                n_lines += count + 3
                n_stmts += len(stmts["t"])
                bar(n_lines, time.perf_counter() - began)
                continue
            name = f"postgresql-{date_text}{convert.SUFFIX[fmt]}{suffix}"
            files.append(out / name)
            writer.open(out / name, compress)
            for block, count in lines.render_day(st, sessions, frozen):
                writer.put(convert.render(block, fmt))
                n_lines += count
            n_stmts += len(stmts["t"])
            bar(n_lines, time.perf_counter() - began)
    incidents.write_labels(out, plan, spans, pop.accounts, mariadb=mariadb)
    frame = totals.frame(pop.accounts)
    frame.write_csv(out / "totals.csv")
    _write_accounts(out, pop)
    labelled = sum(1 for i in plan if i.labelled)
    return Result(n_lines, n_stmts, time.perf_counter() - began, files, labelled, frame)


def _bar(days: int, progress: bool) -> Callable[[int, float], None]:
    if not progress or not sys.stderr.isatty():
        return lambda lines, seconds: None
    from tqdm import tqdm

    bar = tqdm(total=days, unit="day", file=sys.stderr, desc="simulate")

    def step(lines: int, seconds: float) -> None:
        bar.update()
        bar.set_postfix(lines=f"{lines:,}", rate=f"{lines / max(seconds, 1e-9):,.0f}/s")
        if bar.n == bar.total:
            bar.close()

    return step


def _write_accounts(out: Path, pop: population.Population) -> None:
    changes = {a: (day, new) for a, day, _, new in pop.role_changes}
    first = {p.account: p.start for p in sorted(pop.profiles, key=lambda p: -p.start)}
    with open(out / "accounts.csv", "w", encoding="utf-8") as f:
        f.write("account,role,first_day,new_role,role_change_day\n")
        for i, name in enumerate(pop.accounts):
            day, new = changes.get(i, (None, None))
            when = "" if day is None else (pop.start + timedelta(days=day)).isoformat()
            f.write(f"{name},{pop.roles[i].name.lower()},{(pop.start + timedelta(days=first[i])).isoformat()},"
                    f"{'' if new is None else Role(new).name.lower()},{when}\n")  # fmt: skip
    with open(out / "trovewatch.toml", "w", encoding="utf-8") as f:
        f.write("# peer groups of the simulated accounts, by their first role\n[roles]\n")
        f.writelines(
            f'{name} = "{pop.roles[i].name.lower()}"\n' for i, name in enumerate(pop.accounts)
        )


class _Writer:
    """Writes (and compresses) blocks in a thread, so drawing the next ones overlaps it.

    Messages: ``(path, compress, b"")`` opens a file (closing the one before),
    ``(None, False, block)`` writes to it, ``None`` closes it and stops.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Path | None, bool, bytes] | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error

    def open(self, path: Path, compress: bool) -> None:
        self._check()
        self._queue.put((path, compress, b""))

    def put(self, block: bytes) -> None:
        self._check()
        self._queue.put((None, False, block))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        files: list[
            io.BufferedIOBase
        ] = []  # the open file, and under it the raw file if compressed
        try:
            while (message := self._queue.get()) is not None:
                path, compress, block = message
                if path is None:
                    files[0].write(block)
                    continue
                for f in files:
                    f.close()
                raw = open(path, "wb")  # noqa: SIM115 - closed at the next open or at the end
                files = [raw]
                if compress:
                    files.insert(
                        0,
                        gzip.GzipFile(
                            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=2
                        ),
                    )
            for f in files:
                f.close()
        except BaseException as exc:  # surfaced in the main thread
            self._error = exc
            while self._queue.get() is not None:  # keep draining so the producer never blocks
                pass
