"""``serve``'s scheduled retraining, in a process of its own.

Every ``retrain_every`` of wall-clock time, a successor of the model in use is trained on
the last ``retrain_period`` (event time) of the followed logs with :mod:`detector.retrain`
(only windows the store allows; no faster than the guardrail allows), published under
``STATE_DIR/models/`` and loaded back from disk, hashes checked. The service swaps it in
between two steps (:meth:`Retrainer.take`): scoring never waits for training, and never
sees half a model. A failed retraining keeps the model in use and says why.

The training runs in a child process at a lower CPU priority (``nice`` +10), watched by
a thread: reading two weeks of logs and fitting the forest would otherwise take the
ingest thread's interpreter lock, grow the sidecar's heap for good (glibc keeps what
Python frees) and import scikit-learn into it (3-4 s, about 90 MB); the sidecar only
loads the published model.

On start, ``serve`` uses the newest published model when it descends from the model it
was given (:func:`resume`): a restart does not forget what retraining learned, and a new
``--model-dir`` is never overridden by an older lineage.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

import polars as pl

from detector import features as F
from detector import ingest, model, pipeline, retrain
from detector.live.store import SqliteStore
from detector.settings import Settings

log = logging.getLogger("trovewatch.retraining")
MODELS: str = "models"
NICENESS: int = 10  # the training process's priority below the sidecar's
PR_SET_PDEATHSIG: int = 1  # prctl(2): the signal a process gets when its parent dies


# What a retraining needs: settings, the parent model, the windows it may learn from,
# the log files, and the period (since, until).
Job = tuple[Settings, model.TrainedModel, pl.DataFrame, list[Path], datetime, datetime]


def models_dir(settings: Settings) -> Path:
    return settings.state_dir / MODELS


def resume(given: model.TrainedModel, settings: Settings) -> tuple[model.TrainedModel, Path | None]:
    """The newest retrained model descending from ``given``, and its directory; else
    ``given`` and None. A published model that fails to load is reported and skipped."""
    path = retrain.current(models_dir(settings))
    if path is None:
        return given, None
    try:
        successor = model.load(path)
    except model.ModelError as exc:
        log.warning("not resuming the retrained model: %s", exc)
        return given, None
    if not retrain.descends_from(successor, given.manifest):
        log.warning(
            "%s does not descend from the model given (%s); using the model given",
            path,
            given.manifest.name,
        )
        return given, None
    return successor, path


class Retrainer:
    """Starts a retraining when one is due; hands over the published result once."""

    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        paths: Callable[[], Sequence[Path]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.paths = paths
        self.clock = clock
        self.every = F.span(settings.retrain_every).total_seconds()
        self.period = F.span(settings.retrain_period)
        self._last = clock()
        self._thread: threading.Thread | None = None
        self._done: tuple[model.TrainedModel, Path] | None = None
        self.last_error: str | None = None
        self.outcomes: dict[str, int] = {"published": 0, "failed": 0}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def maybe_start(self, parent: model.TrainedModel, until: datetime | None) -> bool:
        """Start retraining on the period ending at ``until`` (the newest scored window's
        end) if the schedule says so and none is running. True if one started."""
        if self.every <= 0 or until is None or self.running:
            return False
        if self.clock() - self._last < self.every:
            return False
        self._last = self.clock()
        self._thread = threading.Thread(
            target=self.run, args=(parent, until), name="trovewatch-retrain", daemon=True
        )
        self._thread.start()
        return True

    def run(self, parent: model.TrainedModel, until: datetime) -> Path | None:
        """One retraining, in a child process watched by the calling thread; the published
        directory, or None (the reason logged and in ``last_error``)."""
        try:
            path = self.publish(parent, until, apart=True)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.outcomes["failed"] += 1
            log.warning("retraining failed; the model in use stays: %s", self.last_error)
            return None
        self.last_error = None
        self.outcomes["published"] += 1
        log.info("retrained model published: %s", path)
        return path

    def publish(self, parent: model.TrainedModel, until: datetime, apart: bool = False) -> Path:
        """One retraining: the published directory. The training runs in the calling
        thread, or with ``apart`` in a child process (:func:`_train_apart`). Raises what
        went wrong (``trovewatch retrain`` reports it as every command does)."""
        name = f"retrained-{until:%Y%m%dT%H%M%SZ}"
        if (models_dir(self.settings) / name).exists():  # before hours of work, not after
            raise model.ModelError(
                f"{models_dir(self.settings) / name}: a model retrained up to "
                f"{until:%Y-%m-%d %H:%M:%S} UTC exists already; retrain up to another time"
            )
        since = until - self.period
        # a file last written before the period holds none of its events
        stats = {p: p.stat() for p in self.paths()}
        paths = [p for p, st in stats.items() if st.st_mtime >= since.timestamp()]
        size = sum(stats[p].st_size for p in paths)
        fmt, told = self.settings.format, self.settings.told()
        # PostgreSQL logs are streamed (memory follows the account-windows); the
        # other formats' records are joined across whole files, read into memory.
        if size > self.settings.retrain_max_bytes and not ingest.streamable(paths, fmt, told):
            raise model.ModelError(
                f"the period's logs are {size / 1e9:.1f} GB, over retrain_max_bytes "
                f"({self.settings.retrain_max_bytes / 1e9:.1f} GB): training reads logs "
                "of this format into memory; raise it where there is memory for them "
                "(e.g. for `trovewatch retrain` on a larger machine)"
            )
        allowed = self.store.training_windows(since, until)
        job: Job = (self.settings, parent, allowed, paths, since, until)
        path = _train_apart(job, name) if apart else _train(*job, name)
        self._done = (model.load(path), path)
        return path

    def take(self) -> tuple[model.TrainedModel, Path] | None:
        """The newly published model and its directory, once; None if there is none."""
        done, self._done = self._done, None
        return done


def _train(
    settings: Settings,
    parent: model.TrainedModel,
    allowed: pl.DataFrame,
    paths: list[Path],
    since: datetime,
    until: datetime,
    name: str,
) -> Path:
    """Train ``parent``'s successor on ``paths``' events from ``since`` to ``until`` (only
    the ``allowed`` windows) and publish it: its directory."""
    period, _ = pipeline.read_period(
        paths,
        parent.horizons.base,  # the parent's window, not the settings' (see retrain)
        format_name=settings.format,
        told=settings.told(),
        since=since,
        until=until,
    )
    successor = retrain.retrain(period, allowed, parent, settings, name)
    return retrain.publish(successor, models_dir(settings))


def _train_apart(
    job: Job,
    name: str,
) -> Path:
    """:func:`_train` in a child process (*spawn*: nothing of the sidecar's threads or
    state is copied); what it raises is raised here. The child is a daemon, so stopping
    ``serve`` stops it, and on Linux it is killed with ``serve`` (``kill -9`` included)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_train_child, args=(send, job, name), name="trovewatch-retrain", daemon=True
    )
    child.start()
    send.close()
    try:
        succeeded, outcome = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeError(
            f"the retraining process ended with exit code {child.exitcode} before it "
            "published a model (killed, or out of memory?)"
        ) from None
    child.join()
    if not succeeded:
        raise outcome
    return Path(outcome)


def _train_child(
    send: Connection,
    job: Job,
    name: str,
) -> None:
    """The retraining process: below the sidecar's priority, gone with it; it sends back
    (True, the published directory) or (False, what went wrong)."""
    os.nice(NICENESS)
    if sys.platform == "linux":  # die with the parent, however it ends
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        outcome: tuple[bool, object] = (True, str(_train(*job, name)))
    except Exception as exc:
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        outcome = (False, exc)
    with contextlib.suppress(BrokenPipeError):  # serve is gone: nobody waits for the model
        send.send(outcome)
