"""Live scoring: events in, in any order close to time order; each account-window scored
once, when it closes in event time.

The engine holds three frames, all of which go into every checkpoint:

* ``pending``: the events of windows still open, reduced to the columns the features
  need. A window closes when the watermark (the newest event time seen, less the
  allowed lateness) passes its end, or, once every source is caught up, when the wall
  clock less the lateness does: a quiet database still gets its last windows scored,
  and a replayed old log is scored to its end.
* ``history``: closed windows' volume signals over the longest horizon, with whether
  each raised an alert; new windows' 1-hour, 1-day and 3-day sums come from it.
* ``discovered``: objects, clients and applications first used by an account since
  training (the model's profile knows the earlier ones), so "new" means new once.

An event for a window already scored is not dropped: it is counted in the account's
first open window, and in ``trovewatch_late_events_total``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from detector import features as F
from detector import formats, model
from detector import schema as S
from detector.formats import mariadb
from detector.ingest import merge_split_statements
from detector.pipeline import score_windows
from detector.settings import Settings

# The event columns the window features read, and what joins MariaDB's audit and slow
# records (source, duration, and for MariaDB only, the start of the text); the rest of
# the query text is not kept.
KEPT: Final = (
    S.TIME,
    S.ACCOUNT,
    S.CLIENT_IP,
    S.APPLICATION,
    S.OBJECTS,
    S.CLASS,
    S.ROWS,
    S.BYTES,
    S.SUCCESS,
    S.EXPORT,
    S.SESSION,
    S.STATEMENT_ID,
    S.QUERY,
    S.DURATION_MS,
    S.SOURCE_FORMAT,
)
PENDING_SCHEMA: Final = pl.Schema({c: S.EVENT_SCHEMA[c] for c in KEPT})
HISTORY_SCHEMA: Final = pl.Schema(
    {
        F.ACCOUNT: pl.String(),
        F.WINDOW: pl.Datetime("us", "UTC"),
        **{signal: pl.Int64() for signal in F.VOLUME},
        "alerted": pl.Boolean(),
    }
)
KNOWN_SCHEMA: Final = pl.Schema({F.ACCOUNT: pl.String(), "kind": pl.String(), "value": pl.String()})


@dataclass(frozen=True)
class Closed:
    """What one call to :meth:`Engine.close` scored."""

    scored: pl.DataFrame  # the ``score`` output's rows
    late_events: int


class Engine:
    """Per-account window state and scoring, with nothing about files or storage."""

    def __init__(self, trained: model.TrainedModel, settings: Settings) -> None:
        self.trained = trained
        self.settings = settings
        self.horizons = trained.horizons
        self.base = F.span(self.horizons.base)
        self.lateness = F.span(settings.lateness)
        self.keep = max(F.span(h) for h in self.horizons.all)
        self.pending = pl.DataFrame(schema=PENDING_SCHEMA)
        self.history = pl.DataFrame(schema=HISTORY_SCHEMA)
        self.discovered = pl.DataFrame(schema=KNOWN_SCHEMA)
        self.newest: datetime | None = None  # newest event time seen
        self.newest_of: dict[str, datetime] = {}  # ... per input (file, stdin, push)
        self.closed_until: datetime | None = None  # windows ending by then are scored
        self.late = 0  # late events not yet reported by close()

    # -- ingest ------------------------------------------------------------------------

    def add(self, events: pl.DataFrame, source: str = "-") -> None:
        """Take parsed events (the event schema) of one input into the open windows."""
        events = _kept(events.filter(pl.col(S.ACCOUNT).is_not_null()))
        if events.is_empty():
            return
        newest = events[S.TIME].max()
        assert isinstance(newest, datetime)
        self.newest = newest if self.newest is None else max(self.newest, newest)
        self.newest_of[source] = max(newest, self.newest_of.get(source, newest))
        if self.closed_until is not None:
            late = pl.col(S.TIME) < self.closed_until
            self.late += events.filter(late).height
            events = events.with_columns(
                pl.when(late)
                .then(pl.lit(self.closed_until))
                .otherwise(pl.col(S.TIME))
                .alias(S.TIME)
            )
        self.pending = pl.concat([self.pending, events])

    # -- closing windows ---------------------------------------------------------------

    def cutoff(self, wall: datetime | None, behind: Collection[str] = ()) -> datetime | None:
        """Windows ending at or before this are complete: the newest event time less
        the lateness, where the newest is the oldest of the inputs still ``behind`` (with
        records not read yet) if any: MariaDB's audit and slow logs, read at different
        speeds while catching up, must both have passed a window before it closes.
        ``wall`` (now, UTC) is given only when every source is caught up and quiet: then
        the wall clock less the lateness closes windows too, but never past the newest
        event's window (a replayed old log must not close today's)."""
        if self.newest is None:
            return None
        lagging = [self.newest_of[name] for name in behind if name in self.newest_of]
        cut = _floor(min(lagging, default=self.newest) - self.lateness, self.base)
        if wall is not None:
            cut = max(cut, min(_floor(wall - self.lateness, self.base), self._window_end()))
        return cut

    def _window_end(self) -> datetime:
        assert self.newest is not None
        return _floor(self.newest, self.base) + self.base

    def close(self, wall: datetime | None = None, behind: Collection[str] = ()) -> Closed:
        """Score every window the cutoff has passed; keep the rest open."""
        cutoff = self.cutoff(wall, behind)
        late, self.late = self.late, 0
        if cutoff is None or (self.closed_until is not None and cutoff <= self.closed_until):
            return Closed(pl.DataFrame(), late)
        self.closed_until = cutoff
        due = pl.col(S.TIME) < cutoff
        closing = self.pending.filter(due).sort(S.TIME, maintain_order=True)
        self.pending = self.pending.filter(~due)
        if closing.is_empty():
            return Closed(pl.DataFrame(), late)
        scored = self._score(closing)
        return Closed(scored, late)

    def _score(self, events: pl.DataFrame) -> pl.DataFrame:
        events = merge_split_statements(events)
        events = formats.join(events, live=True)
        known = pl.concat([self.trained.profile.known, self.discovered], how="vertical_relaxed")
        activity = F.window_activity(events.lazy(), self.horizons.base, known.lazy()).collect()
        scored = score_windows(activity, self.trained, self.settings, prior=self.history)
        self._remember(activity, scored)
        return scored

    def _remember(self, activity: pl.DataFrame, scored: pl.DataFrame) -> None:
        """Add the newly scored windows to the history, and their new values to what
        each account is known to use; forget history past the longest horizon."""
        flags = scored.select(F.ACCOUNT, F.WINDOW, pl.col("flagged").alias("alerted"))
        windows = activity.join(flags, on=[F.ACCOUNT, F.WINDOW], how="left").select(
            HISTORY_SCHEMA.names()
        )
        assert self.closed_until is not None
        horizon_start = self.closed_until - self.keep
        self.history = (
            pl.concat([self.history, windows.cast(HISTORY_SCHEMA)])
            .filter(pl.col(F.WINDOW) >= horizon_start)
            .sort(F.ACCOUNT, F.WINDOW)
        )
        new_values = [
            activity.select(F.ACCOUNT, pl.lit(kind).alias("kind"), pl.col(column).alias("value"))
            .explode("value")
            .drop_nulls("value")
            for kind, column in (
                ("object", "new_objects_list"),
                ("client", "new_clients_list"),
                ("app", "new_apps_list"),
            )
        ]
        self.discovered = pl.concat([self.discovered, *new_values]).unique(maintain_order=True)

    # -- state -------------------------------------------------------------------------

    @property
    def open_windows(self) -> int:
        if self.pending.is_empty():
            return 0
        return int(
            self.pending.select(
                pl.struct(S.ACCOUNT, pl.col(S.TIME).dt.truncate(self.horizons.base)).n_unique()
            ).item()
        )

    @property
    def accounts(self) -> int:
        return pl.concat(
            [
                self.pending.select(pl.col(S.ACCOUNT).alias("a")),
                self.history.select(pl.col(F.ACCOUNT).alias("a")),
            ]
        )["a"].n_unique()

    def snapshot(self) -> dict[str, bytes]:
        """The whole state as bytes (Parquet frames and a JSON header), for a checkpoint."""
        meta = {
            "newest": None if self.newest is None else self.newest.isoformat(),
            "closed_until": None if self.closed_until is None else self.closed_until.isoformat(),
            "base": self.horizons.base,
        }
        return {
            "meta": json.dumps(meta).encode(),
            "pending": _parquet(self.pending),
            "history": _parquet(self.history),
            "discovered": _parquet(self.discovered),
        }

    def restore(self, state: dict[str, bytes]) -> None:
        """Continue from a :meth:`snapshot`. State saved for another model's windows is
        refused: its windows and novelty would not mean the same."""
        meta = json.loads(state["meta"])
        if meta.get("base") != self.horizons.base:
            raise ValueError(
                f"the saved state has {meta.get('base')} windows, the model {self.horizons.base}"
            )
        self.newest = _time(meta["newest"])
        self.closed_until = _time(meta["closed_until"])
        pending = pl.read_parquet(io.BytesIO(state["pending"]))
        self.pending = S.conform(pending.lazy()).select(KEPT).collect()  # older states lack some
        self.history = pl.read_parquet(io.BytesIO(state["history"]))
        self.discovered = pl.read_parquet(io.BytesIO(state["discovered"]))


def _kept(events: pl.DataFrame) -> pl.DataFrame:
    """The columns of ``events`` the engine keeps. A MariaDB slow-log record is filed at
    its end, as its audit record is (a long dump's two records close in one window), and
    only MariaDB statements keep the start of their text, to be paired by it."""
    is_mariadb = pl.col(S.SOURCE_FORMAT).is_in([mariadb.AUDIT, mariadb.SLOW])
    is_slow = pl.col(S.SOURCE_FORMAT) == mariadb.SLOW
    return events.select(KEPT).with_columns(
        pl.when(is_slow)
        .then(mariadb.slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)))
        .otherwise(pl.col(S.TIME))
        .alias(S.TIME),
        pl.when(is_mariadb).then(mariadb.join_text(pl.col(S.QUERY))).alias(S.QUERY),
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="lz4", statistics=False)
    return buffer.getvalue()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step
