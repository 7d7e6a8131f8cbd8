"""The sidecar: sources -> formats -> engine -> store, in one loop thread.

The loop reads a bounded batch from every source, parses it, adds the events to the
engine, scores the windows that closed, and every ``checkpoint_interval`` seconds (or
whenever windows were scored) saves in ONE SQLite transaction: the scored windows and
their alerts, every source's position, and the engine's state. A position is saved
only together with the state that holds its events, so after ``kill -9`` the service
resumes from the last checkpoint and no event is lost or counted twice.

When the state directory cannot be written (disk full, read-only), the loop keeps the
scored windows in memory, stops reading (positions do not advance), reports it on
``/readyz`` and in ``trovewatch_storage_writable``, and retries until it works again.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import io
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl
from prometheus_client import generate_latest

from detector import carried, formats, model
from detector import schema as S
from detector.features import span
from detector.formats import Format, mariadb, pg_sessions, syslog, zones
from detector.formats.pg_sessions import Servers
from detector.ingest import Summary
from detector.live.engine import HISTORY_PREFIX, Engine
from detector.live.follow import Read
from detector.live.metrics import Flagged, Metrics
from detector.live.retraining import Retrainer
from detector.live.sources import (
    Archives,
    Files,
    Source,
    Stdin,
    open_sources,
    source_key,
    unlistable,
)
from detector.live.store import (
    Checkpoint,
    SqliteStore,
    StoreError,
    is_locked,
    lock_problem,
)
from detector.model import ModelError
from detector.reader import (
    Chunk,
    NotALogError,
    head_lines,
    head_of,
    looks_binary,
    not_text,
    not_text_data,
)
from detector.rejects import Quarantine, Reason
from detector.settings import Settings

log = logging.getLogger("trovewatch")

PUSH_FORMATS = ("auto", *formats.NATIVE)
# The formats POST /v1/events may name (api.models.FormatName; others are detected only,
# with format=auto): naming one of the others is refused (422) before it gets here.
TELL_IN_THE_REQUEST: Final = (
    f"name it in the request: ?format= one of {', '.join(formats.PG_OUTPUTS)}"
)
READ_BUDGET = 16 << 20  # bytes per loop iteration, over all sources
PROBE_INTERVAL = 2.0  # seconds between write probes of the state directory
GAUGE_INTERVAL = 5.0  # seconds between counts of open windows and accounts
STOP_WAIT = 30.0  # seconds a stop waits for the step in progress (a close) to end
# Seconds one pass of the ingest loop may run before /readyz calls it stuck. A pass reads
# at most READ_BUDGET, parses it, closes windows and saves: seconds at most, a close of
# 100,000 accounts included. Minutes mean it waits on something that does not answer (a
# hung network file system, a disk that stopped).
STUCK_AFTER = 120.0
# After an unexpected error the loop goes back to the last checkpoint in FAILED_WAIT s,
# twice that after a second error in a row, and so on up to FAILED_WAIT_MOST; from
# FAILED_NOT_READY errors in a row /readyz says so (a line of the log it cannot get past).
FAILED_WAIT = 1.0
FAILED_WAIT_MOST = 60.0
FAILED_NOT_READY = 3
# Statements of a format after which serve says if none is a read, or no read has rows.
BLIND_AFTER = 1000


def stream_format(
    data: bytes, name: str, told: formats.Told, tell: str = formats.TELL_ON_THE_COMMAND_LINE
) -> Format:
    """The native format of lines that are not a file (stdin, a pushed body): ``name``,
    or detected from the first lines when it is ``auto``. Raises ``NotALogError``, which
    ends with ``tell`` when no format fits."""
    head = head_of(io.BytesIO(data))
    if name == "auto":
        if not any(line.strip() for line in head):
            raise NotALogError("empty: no log lines")
        if (why := not_text_data(data)) is not None:
            raise NotALogError(why)
        try:
            name = formats.detect(Path("input"), head, told.log_line_prefix, tell)
        except NotALogError as exc:
            found = formats.shared_syslog_data(data, head, told)
            if found is None:
                raise NotALogError(str(exc).removeprefix("input: ")) from exc
            name, head = found
    return formats.configured(name, head, told)


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Polars' allocator returns its own within about a second, but what
    NumPy, scikit-learn, SQLite and Python's larger objects free stays in glibc's heap:
    the unpickled model's buffers (about 27 MB) and a close's SQLite rows."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class _Skipped:
    """The format of a file whose events are read from a sibling in another format."""

    name = "skipped"


_SKIPPED: Any = _Skipped()


class _Awaiting:
    """The format of a file of other programs' syslog lines (a shared /var/log/syslog
    just after its rotation), until a database's lines come: those read meanwhile are
    no database's, passed over; the read that brings the first sets the format."""

    name = "awaiting"


_AWAITING: Any = _Awaiting()


class Busy(TimeoutError):
    """Push ingest could not be queued in time: the service is behind (HTTP 503)."""


@dataclass
class _Push:
    data: bytes
    fmt: Format
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)
    # Taken by the ingest loop (its events in the engine), or withdrawn by the request
    # that gave up waiting first: never both, so a body answered "retry" is never kept.
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken: bool = False
    withdrawn: bool = False


class Service:
    """The running sidecar. Implements what the API needs (``api.app.Service``)."""

    def __init__(
        self,
        trained: model.TrainedModel,
        settings: Settings,
        follow: Sequence[str],
        model_dir: Path,
    ) -> None:
        self.settings = settings
        self._told = settings.told()
        self._zones_guessed: set[str] = set()  # abbreviations read by a guess, said
        self.trained = trained
        self.model_dir = model_dir
        self.metrics = Metrics()
        self.store = SqliteStore(settings.state_dir, base_window=trained.horizons.base)
        self.quarantine = Quarantine(
            settings.state_dir / "quarantine.ndjson", max_bytes=settings.quarantine_max_bytes
        )
        self._formats: dict[str, Format | None] = {}
        # stderr logs' open sessions, per directory: saved in each checkpoint, they go on
        # from a file to the next one of its server, and across restarts.
        self._servers = Servers(saving=True)
        self._directories: dict[Path, str | None] = {}
        self.follow = list(follow)
        self.sources: list[Source] = []
        self._open(self.store.load_checkpoint(defer=HISTORY_PREFIX))
        self._pushes: queue.Queue[_Push] = queue.Queue(maxsize=8)
        self._waiting: list[_Push] = []
        self._unsaved: list[pl.DataFrame] = []
        # Bytes read since the last saved checkpoint, by source label: read, yet to be
        # read again after a crash (``trovewatch_checkpoint_lag_bytes``).
        self._unsaved_bytes: Counter[str] = Counter()
        self._storage_error: str | None = None
        self._quarantine_error: str | None = None  # the last said, until a write succeeds
        self._unlisted: Counter[str] = Counter()  # 1: a source's directory cannot be listed
        self._refused: str | None = None  # the model does not fit the logs: why
        self._evidence = carried.Evidence()
        self._probe_ok = True
        self._last_probe = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The pass of the ingest loop in progress: since when (None between passes), and
        # what it is doing now, for /readyz when it takes too long.
        self._pass_began: float | None = None
        self._doing = "starting"
        # The first statements of each format, for what the server's settings hide.
        self._seen = Summary()
        self._blind_looked: set[str] = set()
        # Passes that failed in a row (an unexpected error), and the last error.
        self._failures = 0
        self._failed: str | None = None
        self._last_checkpoint = 0.0
        self._last_prune = 0.0
        self._last_gauges = -GAUGE_INTERVAL
        # Quiet is counted from start-up, not from the epoch: a restart is no sign that
        # the writers are quiet (the rest of a statement may follow what was read).
        self._last_data = time.monotonic()
        self._dirty = False
        self._show_model()
        self.retrainer = Retrainer(settings, self.store, self._followed_files)
        self._newest_window_end: datetime | None = None
        self._retrain_failures = 0
        self.metrics.storage_ok.set(1)
        self.metrics.accounts_cap.set(settings.max_accounts)
        self._flagged_unread: str | None = None  # why /metrics could not name them
        self.metrics.watch_flagged(self._flagged, settings.flagged_cap)
        self.metrics.pass_seconds.set_function(self._pass_seconds)
        release_freed_memory()  # what loading the model and the checkpoint left

    def _flagged(self) -> list[Flagged] | None:
        """The accounts flagged now, for /metrics; None when the store cannot say (the
        scrape then serves every other metric, storage_writable among them)."""
        try:
            flagged = self.store.flagged(span(self.settings.flag_hold))
        except (sqlite3.Error, OSError, StoreError) as exc:
            if str(exc) != self._flagged_unread:  # once, not at every scrape
                log.warning("flagged accounts left out of /metrics: %s", exc)
            self._flagged_unread = str(exc)
            return None
        self._flagged_unread = None
        return flagged

    def _show_model(self) -> None:
        trained_end = self.trained.manifest.training.get("end")
        if trained_end:
            self.metrics.model_trained.set(datetime.fromisoformat(trained_end).timestamp())
        self.metrics.model_loaded.set(time.time())

    def _followed_files(self) -> list[Path]:
        """The files the follow globs match now, rotated ones included (for retraining)."""
        return sorted(
            {Path(p) for pattern in self.follow if pattern != "-" for p in glob.glob(pattern)}
        )

    def _retrain(self) -> None:
        """Swap in a model retraining published since the last step; start the next
        retraining when it is due (on the period ending at the newest scored window)."""
        done = self.retrainer.take()
        if done is not None:
            successor, path = done
            if successor.horizons != self.trained.horizons:
                log.warning("retrained model %s has other horizons; not swapped in", path)
            else:
                self.trained, self.model_dir = successor, path
                self.engine.use(successor)
                self._show_model()
                self.metrics.retrains.labels("published").inc()
                log.info("now scoring with the retrained model %s", path)
        self.retrainer.maybe_start(self.trained, self._newest_window_end)
        failed = self.retrainer.outcomes["failed"]
        if failed > self._retrain_failures:
            self.metrics.retrains.labels("failed").inc(failed - self._retrain_failures)
            self._retrain_failures = failed

    # -- what the API asks ---------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {**asdict(self.trained.manifest), "directory": str(self.model_dir)}

    def exposition(self) -> bytes:
        return generate_latest(self.metrics.registry)

    def problems(self) -> list[str]:
        # dict.fromkeys: a glob is two sources (plain files, .gz archives) with one problem
        found = list(dict.fromkeys(p for s in self.sources for p in s.problems()))
        if self._storage_error is None and not self._probe_ok:
            if self.store.replaced():
                found.append(
                    f"state database {self.store.path} removed or replaced while running: "
                    "nothing is saved; restart trovewatch (it starts afresh from a new file)"
                )
            elif (locked := self.store.lock_problem()) is not None:
                found.append(locked)
            else:
                found.append(
                    f"state directory {self.settings.state_dir} not writable (write probe)"
                )
        if self._storage_error:
            found.append(self._storage_error)
        if self._quarantine_error is not None:
            found.append(
                f"cannot write the quarantine file: {self._quarantine_error}; rejected lines "
                "are counted (trovewatch_lines_rejected_total) but their copies are lost "
                "until it can be written again (free space, its permissions)"
            )
        if self._refused:
            found.append(f"reading held: {self._refused}")
        if not self.alive():
            found.append("the ingest loop has stopped")
        if self._failures >= FAILED_NOT_READY:
            found.append(
                f"the ingest loop failed {self._failures} times in a row, the last with "
                f"{self._failed}; it goes back to the last checkpoint and tries again, less "
                "often each time (nothing is lost, but nothing is scored either): the log "
                "has the traceback"
            )
        running = self._pass_seconds()
        if running >= STUCK_AFTER:
            found.append(
                f"the ingest loop has been {self._doing} for {running:.0f} s (a pass takes "
                "seconds at most): nothing is read or scored meanwhile. Something it waits on "
                "does not answer (a hung network file system, a stopped disk?); if it does "
                "not move on, restart trovewatch: it resumes from the last checkpoint"
            )
        return found

    def _look_for_blind_spots(self, format_name: str, frame: pl.DataFrame, begun: int) -> None:
        """Say once per format, in the log, what its first BLIND_AFTER statements show
        the server's settings hide: every read, or every read's rows."""
        if format_name in self._blind_looked:
            return
        self._seen.events[format_name] += begun
        self._seen.count_reads(format_name, frame)
        if self._seen.events[format_name] >= BLIND_AFTER:
            self._blind_looked.add(format_name)
            if (said := self._seen.blind_spot(format_name)) is not None:
                log.warning("%s", said)

    def alive(self) -> bool:
        """False once the ingest loop has ended without being stopped."""
        thread = self._thread
        return thread is None or thread.is_alive() or self._stop.is_set()

    def _pass_seconds(self) -> float:
        """How long the ingest loop's pass in progress has run; 0 between passes."""
        began = self._pass_began
        return 0.0 if began is None else time.monotonic() - began

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        """Parse pushed log lines and return their counts once the events are saved."""
        if self._refused:
            raise ValueError(f"not accepted: {self._refused}")
        if format not in PUSH_FORMATS:
            raise ValueError(f"unknown format {format!r}; one of {', '.join(PUSH_FORMATS)}")
        try:
            fmt = stream_format(body, format, self._told, TELL_IN_THE_REQUEST)
        except NotALogError as exc:
            raise ValueError(str(exc)) from exc
        if (storage := self._storage_error) is not None:  # it would wait for nothing
            raise Busy(f"not taken, the state cannot be saved: {storage}; retry later")
        item = _Push(body if body.endswith(b"\n") else body + b"\n", fmt)
        try:
            self._pushes.put(item, timeout=10)
        except queue.Full as exc:
            raise Busy("ingest queue full; retry later") from exc
        if not item.done.wait(timeout=60):
            # Before: "retry later" whatever became of it, and the body, taken once the
            # state could be written again, was counted twice with the retry.
            with item.lock:
                if not item.taken:
                    item.withdrawn = True
                    raise Busy("not taken in time, and withdrawn: nothing of it is kept; retry")
            raise Busy(
                "taken but not yet saved (is the state directory writable?): it is saved "
                "with the next checkpoint, unless trovewatch stops before; sent again, it "
                "would count twice"
            )
        if "retry" in item.result:
            raise Busy(item.result["retry"])
        if "error" in item.result:
            raise ValueError(f"not accepted: {item.result['error']}")
        return item.result

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trovewatch-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT)
            if self._thread.is_alive():
                # Its state is halfway through a step (lines read, their events not yet
                # in a window): saving it would lose them. The last checkpoint stands,
                # as after kill -9; the process ends with the thread.
                log.warning(
                    "the ingest loop did not stop within %g s; not saving its state: "
                    "the next start resumes from the last checkpoint",
                    STOP_WAIT,
                )
                return
        self._checkpoint(force=True)
        for source in self.sources:
            source.close()
        self.quarantine.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._pass_began = time.monotonic()
            try:
                busy = self.step()
                self._failures = 0
                self._failed = None
            except StoreError as exc:  # a damaged database: held until it is replaced
                self._storage_failed(exc)
                self._again_after_error(exc)
                busy = False
            except Exception as exc:
                self._failures += 1
                self._failed = f"{type(exc).__name__}: {exc}"
                self.metrics.ingest_errors.inc()
                # The storage is a usual cause (its directory removed mid-commit): probed
                # now, so /readyz says it before the next pass, which may be a minute off.
                self._probe_storage()
                wait = min(FAILED_WAIT * 2 ** (self._failures - 1), FAILED_WAIT_MOST)
                log.exception(
                    "ingest loop error (%d in a row); resuming from the last checkpoint in %g s",
                    self._failures,
                    wait,
                )
                self._again_after_error(exc, wait)
                busy = False
            if not busy:
                self._idle(self.settings.poll_interval)

    def _idle(self, seconds: float) -> None:
        self._pass_began = None
        self._doing = "waiting"
        self._stop.wait(seconds)

    def _again_after_error(self, exc: Exception, wait: float = FAILED_WAIT) -> None:
        """Back to the last checkpoint after ``wait`` s; a failure there too is said and
        counted, and the next pass begins from wherever it left the state."""
        self._idle(wait)
        self._pass_began = time.monotonic()
        self._doing = "reading the last checkpoint back"
        try:
            self._recover()
        except Exception:
            log.exception("cannot go back to the last checkpoint after %s", exc)
            self.metrics.ingest_errors.inc()

    def _open(self, saved: Checkpoint | None, stdin: Stdin | None = None) -> None:
        """Engine state and sources as of ``saved`` (from scratch when None)."""
        self.engine = Engine(self.trained, self.settings, saved=self.store.checkpoint_blob)
        state = dict(saved.state) if saved is not None else {}
        self._servers.load(state)
        state = {name: data for name, data in state.items() if not pg_sessions.is_saved(name)}
        if state:
            try:
                self.engine.restore(state, deferred=saved.deferred if saved is not None else ())
            except (pl.exceptions.PolarsError, KeyError) as exc:  # ValueError: another model's
                raise StoreError(
                    f"its saved window state cannot be read, the database is damaged "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        self.sources = open_sources(
            self.follow,
            saved.sources if saved is not None else {},
            max_line_bytes=self.settings.max_line_bytes,
            record_start=self._record_start,
            keep_long=self._keeps_long,
            stdin=stdin,
        )

    def _refuse(self, why: str) -> None:
        """The logs carry other fields than the model's training logs: score none of
        them. Back to the last checkpoint, and hold there (reads stop, /readyz fails)
        until trovewatch is restarted with a model trained on logs like these."""
        log.error("%s", why)
        self._refused = why
        self.metrics.model_refuses.set(1)
        for item in self._waiting:
            item.result = {"error": why}
            item.done.set()
        self._waiting = []
        self._recover()

    def _recover(self) -> None:
        """After an unexpected error mid-step, go back to the last checkpoint, exactly as
        a restart would: what was read since is read again, nothing counted twice.
        (Standard input cannot be re-read: it goes on from where it is.)"""
        try:
            saved = self.store.load_checkpoint(defer=HISTORY_PREFIX)
        except StoreError as exc:
            self._storage_failed(exc)
            return
        except Exception:  # storage trouble: tried again at the next error
            log.exception("cannot read the last checkpoint")
            return
        stdin = next((s for s in self.sources if isinstance(s, Stdin)), None)
        for source in self.sources:
            source.close()
        self._open(saved, stdin)
        self._unsaved = []
        self._unsaved_bytes.clear()
        self._dirty = False
        # Pushed bodies not yet saved went with the state: a push cannot be read again,
        # so their requests are told to send them again (before: answered 200 at the
        # next checkpoint, their events gone).
        for item in self._waiting:
            item.result = {
                "retry": "not saved: the ingest loop went back to its last "
                "checkpoint after an error; nothing of it is kept, send it again"
            }
            item.done.set()
        self._waiting = []

    def step(self) -> bool:
        """One pass: read, parse, close windows, maybe checkpoint. True if it read data."""
        read_any = False
        # While storage fails or the model refuses the logs, positions must not move on.
        if self._storage_error is None and self._refused is None:
            frames: list[tuple[str, str, str, pl.DataFrame]] = []  # source, label, format
            # Sources caught up first, then by what they have left to read, each an even
            # share of the budget the ones before it left: an idle one (a glob's .gz
            # archives, most of the time) leaves its share to one that is behind, whose
            # reads are then fewer and larger (a read costs time of its own, whatever its
            # size: half-size reads made catching up at 100,000 lines/s slower).
            left = READ_BUDGET
            ordered = sorted(self.sources, key=lambda s: (not s.caught_up(), s.lag_bytes()))
            for n, source in enumerate(ordered):
                self._doing = f"reading {source.label}"
                for read in source.poll(max(left, 0) // (len(ordered) - n)):
                    left -= len(read.data)
                    self._unsaved_bytes[source.label] += max(read.end - read.start, len(read.data))
                    # Positions moved: saved at the next checkpoint even when the lines
                    # held no event (only rejects or server messages), or they would be
                    # read, counted and quarantined again after a restart, and the lag
                    # would stay up for good.
                    self._dirty = True
                    self._doing = f"parsing what it read of {read.source}"
                    events = self._parse(read, source.label)
                    fmt = self._format(read.source)
                    name = fmt.name if fmt is not None else "-"
                    frames.append((read.source, source.label, name, events))
                    read_any = True
            for *_, frame in frames:  # the followed logs' (a pushed body is checked alone)
                self._evidence.add(frame)
            while True:
                try:
                    item = self._pushes.get_nowait()
                except queue.Empty:
                    break
                with item.lock:
                    if item.withdrawn:  # its request gave up waiting and said so
                        continue
                    item.taken = True
                self._waiting.append(item)  # answered at the checkpoint, or by _recover
                chunk = Chunk("push", item.data, 1)
                parsed = self._parse_chunk(chunk, item.fmt, "push", result=item.result)
                read_any = True
                try:  # a body unlike the training logs is refused alone: reads go on
                    carried.check(carried.Evidence().add(parsed), self.trained.manifest.training)
                except ModelError as exc:
                    self._waiting.remove(item)
                    item.result = {"error": str(exc)}
                    item.done.set()
                    continue
                frames.append(("push", "push", item.fmt.name, parsed))
            try:
                carried.check(self._evidence, self.trained.manifest.training)
            except ModelError as exc:
                self._refuse(str(exc))
                return read_any
            # A MariaDB slow log's reads first: the audit log's clock is set by the
            # statements both logs hold (Engine._on_audit_clock).
            frames.sort(key=lambda f: f[2] != mariadb.SLOW)
            for name, label, format_name, frame in frames:
                if frame.height:
                    # A statement whose lines two reads split counts once, as it scores.
                    begun = self.engine.add(frame, source=name, wall=datetime.now(UTC))
                    self.metrics.events.labels(label, format_name).inc(begun)
                    self._dirty = True
                    self._look_for_blind_spots(format_name, frame, begun)
        now = time.monotonic()
        if read_any:
            self._last_data = now
        # The wall clock closes windows only once every source is caught up and has been
        # quiet for the allowed lateness: then nothing older is on its way (a quiet
        # database's last windows get scored, and a replayed old log is scored to its end).
        quiet = now - self._last_data >= self.engine.lateness.total_seconds()
        caught_up = quiet and all(s.caught_up() for s in self.sources)
        behind = set().union(*(s.behind() for s in self.sources))
        self._doing = "closing windows"
        closed = self.engine.close(datetime.now(UTC) if caught_up else None, behind=behind)
        if closed.late_events:
            self.metrics.late.inc(closed.late_events)
        if closed.unvolumed:
            self.metrics.unvolumed.inc(closed.unvolumed)
        if closed.future:
            self.metrics.future.inc(closed.future)
            log.warning(
                "%d event(s) timed more than %s past this machine's clock (a server clock gone "
                "wrong?): counted at the newest sane event time",
                closed.future,
                self.settings.max_clock_skew,
            )
        if closed.evicted:
            self.metrics.evicted.inc(closed.evicted)
        if closed.overflow:
            self.metrics.overflow.inc(closed.overflow)
        if closed.scored.height:
            newest = closed.scored["window_end"].max()
            if isinstance(newest, datetime):
                self._newest_window_end = max(newest, self._newest_window_end or newest)
            self._unsaved.append(closed.scored)
            self._dirty = True
        self._doing = f"saving to the state database {self.store.path}"
        self._checkpoint(force=bool(self._unsaved) or bool(self._waiting))
        if closed.scored.height and not self._unsaved:  # scored and saved
            release_freed_memory()
        # The next close's windows judged once their events are in, while late ones may
        # still come: at their cutoff they are then only saved (Engine.prepare).
        self._doing = "judging windows ahead of their close"
        self.engine.prepare()
        self._doing = "checking on retraining"
        self._retrain()
        self._doing = f"probing the state directory {self.settings.state_dir}"
        probing = time.monotonic() - self._last_probe >= PROBE_INTERVAL
        if probing:
            # Commits can go on in a full disk's existing WAL pages; a fresh write shows
            # the trouble before they fail.
            self._probe_storage()
        if self.engine.audit_ahead is not None:
            self.metrics.audit_clock_ahead.set(self.engine.audit_ahead)
        for source in self.sources:
            self._doing = f"measuring {source.label}'s files"
            lag = source.lag_bytes() + self._unsaved_bytes[source.label]
            self.metrics.checkpoint_lag.labels(source.label).set(lag)
            if isinstance(source, Archives):
                damaged = len(source.damaged())
                self.metrics.archives_damaged.labels(source.label).set(damaged)
            if isinstance(source, Files):
                if probing:  # a directory that cannot be listed hides its files: one more
                    self._unlisted[source.label] = unlistable(source.pattern) is not None
                unreadable = len(source.follower.unreadable) + self._unlisted[source.label]
                self.metrics.files_unreadable.labels(source.label).set(unreadable)
        return read_any

    def _record_start(self, path: str) -> Any:
        fmt = self._format(path)
        return getattr(fmt, "record_start", None) if fmt is not None else None

    def _keeps_long(self, path: str) -> bool:
        """True for PostgreSQL logs: a too-long line there is an AUDIT record whose head
        and end say who read what and how many rows (the statement text is cut)."""
        fmt = self._format(path)
        return fmt is not None and fmt.name in formats.PG_OUTPUTS

    def _format(self, path: str) -> Format | None:
        """The format of a followed file, detected once from its first lines (None:
        not a log this service can read; its lines are quarantined as unrecognised).

        PostgreSQL writes the same events to each of its outputs (stderr, csvlog,
        jsonlog). When a glob matches several in one directory, only the richest is
        read (jsonlog, then csvlog, then stderr); the others are skipped, with a
        warning, so that no statement is counted twice.
        """
        if path in self._formats:
            return self._formats[path]
        if path == "stdin":
            return None  # detected from its first read, in _parse
        try:
            if Path(path).stat().st_size == 0:
                return None  # nothing to detect from yet; asked again when it has data
            if self.settings.format == "auto" and (why := not_text(Path(path))) is not None:
                raise NotALogError(f"{path}: {why}")
            fmt: Format | None = formats.get(self.settings.format, Path(path), told=self._told)
            self._settle_zone(path, fmt)
        except formats.OtherProgramsOnly as exc:
            log.info("%s", exc)
            fmt = _AWAITING
        except (NotALogError, OSError) as exc:
            log.warning("%s", exc)
            fmt = None
        if (
            fmt is not None
            and self.settings.format == "auto"
            and fmt.name in formats.PG_OUTPUTS
            and self._directory_format(Path(path).parent) not in (None, fmt.name)
        ):
            log.warning(
                "%s: skipped: the same events are read from the %s files in %s",
                path,
                self._directory_format(Path(path).parent),
                Path(path).parent,
            )
            fmt = _SKIPPED
        self._read_as(path, fmt)
        return fmt

    def _settle_zone(self, path: str, fmt: Format | None) -> None:
        """A PostgreSQL log's times in CST or IST: its last write may say which zone."""
        if fmt and fmt.name in formats.PG_OUTPUTS and self._told.postgres_timezone is None:
            zones.settle(Path(path))

    def _read_as(self, path: str, fmt: Format | None) -> None:
        """``path`` read as ``fmt`` from now on (None, skipped, awaiting or a format)."""
        self._servers.attach(fmt, str(Path(path).parent))  # they go on in its next file
        self._formats[path] = fmt

    def _database_in(self, path: str, chunk: Chunk) -> Any:
        """The format of a file awaiting a database's syslog lines, set by the first
        read that has some (``_AWAITING`` while it has none)."""
        lines = chunk.lines.select(pl.col("line").fill_null(""))
        programs = lines.with_columns(syslog.program(pl.col("line")).alias("program"))
        heads = programs.drop_nulls("program").group_by("program", maintain_order=True)
        head = heads.head(formats.HEAD_LINES)["line"].to_list()
        names = (
            formats.SYSLOG_CARRIED if self.settings.format == "auto" else (self.settings.format,)
        )
        found = formats.in_shared_syslog(head, self._told, names)
        if found is None:
            return _AWAITING
        fmt = formats.configured(*found, self._told)
        self._settle_zone(path, fmt)
        log.info("%s: %s lines from line %d on", path, fmt.name, chunk.first_line)
        self._read_as(path, fmt)
        return fmt

    def _detect_stream(self, data: bytes) -> Format | None:
        """The format of a stream (stdin) from its first lines."""
        try:
            fmt = stream_format(data, self.settings.format, self._told)
        except NotALogError as exc:
            log.warning("stdin: %s", exc)
            return None
        self._servers.attach(fmt, "stdin")  # restored from the checkpoint, as a file's are
        return fmt

    def _directory_format(self, directory: Path) -> str | None:
        """The richest PostgreSQL output among the followed files of ``directory``."""
        if directory not in self._directories:
            found = set()
            for pattern in self.settings.follow:
                for sibling in glob.glob(pattern):
                    path = Path(sibling)
                    if path.parent != directory or not path.is_file() or looks_binary(path):
                        continue
                    try:
                        found.add(formats.detect(path, head_lines(path)))
                    except NotALogError:
                        continue
            ranked = [name for name in formats.PG_OUTPUTS if name in found]
            self._directories[directory] = ranked[0] if ranked else None
        return self._directories[directory]

    def _parse(self, read: Read, label: str) -> pl.DataFrame:
        chunk = Chunk(read.source, read.data, read.first_line, _n_lines=read.n_lines)
        if read.too_long:
            self._reject(
                read.source,
                pl.DataFrame(
                    {
                        "line_no": [n for n, _ in read.too_long],
                        "reason": [Reason.TOO_LONG.value] * len(read.too_long),
                        "line": [b.decode("utf-8", "replace") for _, b in read.too_long],
                    },
                    schema={"line_no": pl.UInt64, "reason": pl.String, "line": pl.String},
                ),
            )
        self.metrics.lines.labels(label).inc(
            (chunk.n_lines if read.data else 0) + len(read.too_long) + len(read.cut)
        )
        self.metrics.last_read.labels(label).set(time.time())
        if read.cut:  # lines over max_line_bytes, cut: parsed after the lines before them
            frames = [self._parse_data(read, chunk, label)] if read.data else []
            fmt = self._format(read.source)
            for number, line in read.cut:
                cut = Chunk(read.source, line, number)
                if fmt is None or fmt is _SKIPPED or fmt is _AWAITING:
                    self._parse_data(read, cut, label)  # quarantined or skipped
                else:
                    frames.append(self._parse_chunk(cut, fmt, label))
            return pl.concat(frames, how="vertical_relaxed") if frames else S.empty()
        if not read.data:
            return S.empty()
        return self._parse_data(read, chunk, label)

    def _parse_data(self, read: Read, chunk: Chunk, label: str) -> pl.DataFrame:
        """Events of ``chunk``, the lines of ``read`` (quarantined when the file is not a
        log this service reads)."""
        if read.source == "stdin" and "stdin" not in self._formats:
            self._formats["stdin"] = self._detect_stream(read.data)
        fmt = self._format(read.source)
        if fmt is _AWAITING:
            fmt = self._database_in(read.source, chunk)
        if fmt is _SKIPPED or fmt is _AWAITING:
            return S.empty()
        if fmt is None:
            self._reject(
                read.source,
                chunk.lines.select(
                    "line_no", pl.lit(Reason.UNRECOGNISED.value).alias("reason"), "line"
                ),
            )
            return S.empty()
        return self._parse_chunk(chunk, fmt, label)

    def _parse_chunk(
        self, chunk: Chunk, fmt: Format, label: str, result: dict[str, Any] | None = None
    ) -> pl.DataFrame:
        try:
            parsed = fmt.parse(chunk)
        except Exception:
            log.exception("%s: parser failed; lines quarantined", chunk.path)
            rejects = chunk.lines.select(
                "line_no", pl.lit(Reason.UNRECOGNISED.value).alias("reason"), "line"
            )
            self._reject(chunk.path, rejects)
            return S.empty()
        events = parsed.events
        finish = getattr(fmt, "finish", None)
        if finish is not None and events.height:
            events = finish(events)
        self._reject(chunk.path, parsed.rejects)
        if parsed.cut:
            self.metrics.cut.inc(parsed.cut)
            log.warning(
                "%s: %d statement(s) longer than 1 MB kept with their text cut",
                chunk.path,
                parsed.cut,
            )
        for name, n in parsed.guessed.items():
            if name not in self._zones_guessed:  # said once
                self._zones_guessed.add(name)
                log.warning(
                    "%s: times read by a guess, %s; set postgres_timezone (SHOW log_timezone)",
                    chunk.path,
                    zones.described(name),
                )
            self.metrics.zone_guessed.labels(name).inc(n)
        if events.height:
            newest = events[S.TIME].max()
            if isinstance(newest, datetime):
                self.metrics.last_event.labels(label).set(newest.timestamp())
        if result is not None:
            result.update(
                lines=chunk.n_lines,
                events=events.height,
                context=parsed.context,
                cut=parsed.cut,
                rejected=dict(parsed.rejects.group_by("reason").len().iter_rows()),
                format=fmt.name,
            )
        return events

    def _reject(self, source: str, rejects: pl.DataFrame) -> None:
        if rejects.height:
            try:
                self.quarantine.add(source, rejects)
            except OSError as exc:  # counted all the same; the copy of the lines is lost
                if str(exc) != self._quarantine_error:  # once, not at every bad line's read
                    log.error("cannot write the quarantine file: %s", exc)
                self._quarantine_error = str(exc)
                self.metrics.quarantine_ok.set(0)
            else:
                self._quarantine_error = None
                self.metrics.quarantine_ok.set(1)
            for reason, n in rejects.group_by("reason").len().iter_rows():
                self.metrics.rejected.labels(reason).inc(n)

    def _checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        due = self._dirty and now - self._last_checkpoint >= self.settings.checkpoint_interval
        if not (force or due):
            return
        scored = (
            pl.concat(self._unsaved, how="vertical_relaxed") if self._unsaved else pl.DataFrame()
        )
        state = {**self.engine.snapshot(), **self._servers.snapshot()}
        checkpoint = Checkpoint(
            sources={source_key(s): s.positions() for s in self.sources},
            state=state,
            saved_at=time.time(),
            replace=False,
        )
        started = time.perf_counter()
        try:
            alerts = self.store.commit(scored, checkpoint)
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._storage_failed(exc)
            return
        self.engine.saved()
        self._servers.saved()
        self._storage_error = None
        self._show_storage()
        self.metrics.checkpoint_time.set(time.time())
        if now - self._last_gauges >= GAUGE_INTERVAL:  # O(accounts): not per checkpoint
            self._last_gauges = now
            self.metrics.open_windows.set(self.engine.open_windows)
            self.metrics.accounts.set(self.engine.accounts)
        self._last_checkpoint = now
        self._dirty = False
        self._unsaved = []
        self._unsaved_bytes.clear()
        for item in self._waiting:
            item.done.set()
        self._waiting = []
        if scored.height:
            self._observe(scored, time.perf_counter() - started)
        for alert in alerts:
            if alert.status == "open":
                self.metrics.alerts.labels(alert.severity).inc()
        if now - self._last_prune > 600:
            self._last_prune = now
            try:
                self.store.prune(span(self.settings.retention))
            except (sqlite3.Error, OSError, StoreError) as exc:  # tried again in 10 minutes
                log.error(
                    "cannot delete windows older than the retention from %s: %s",
                    self.settings.state_dir,
                    exc,
                )

    def _storage_failed(self, exc: Exception) -> None:
        """Hold positions (reads stop) while the state cannot be saved, and say why on
        /readyz and once in the log (not at every try)."""
        if isinstance(exc, StoreError):  # a damaged database: its message says what to do
            problem = str(exc)
        elif is_locked(exc):
            problem = lock_problem(self.store.path)
        else:
            problem = f"state directory {self.settings.state_dir} not writable: {exc}"
        if problem != self._storage_error:
            log.error("cannot save: %s; holding positions", problem)
        self._storage_error = problem
        self._show_storage()

    def _probe_storage(self) -> None:
        self._last_probe = time.monotonic()
        self._probe_ok = self.store.writable()
        self._show_storage()

    def _show_storage(self) -> None:
        ok = self._storage_error is None and self._probe_ok
        self.metrics.storage_ok.set(1 if ok else 0)

    def _observe(self, scored: pl.DataFrame, took: float) -> None:
        self.metrics.windows.inc(scored.height)
        self.metrics.scoring.observe(took)
        now = datetime.now(UTC)
        for end in scored["window_end"]:
            delay = now - (end + self.engine.lateness)
            self.metrics.latency.observe(max(delay, timedelta(0)).total_seconds())
