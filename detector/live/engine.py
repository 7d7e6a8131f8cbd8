"""Live scoring: events in, in any order close to time order; each account-window scored
once, when it closes in event time.

The engine keeps no events of open windows, only their partial aggregates
(:mod:`detector.partials`: sums, and sets of objects, clients, applications and export
statements), so its memory grows with the accounts active, not with the events:

* ``open``: one partial row per open (account, window). A window closes when the
  watermark (the newest event time seen, less the allowed lateness) passes its end, or,
  once every source is caught up, when the wall clock less the lateness does: a quiet
  database still gets its last windows scored, and a replayed old log is scored to its
  end.
* ``held``: the few events that must stay events until their window closes: each
  session's latest statement, with all its sub-statements, if logged in the last 2 s of
  event time read (pgAudit logs a statement once per relation, and a function's or a
  procedure's statements before its caller's or its ``CALL``'s line: a read may end
  between two of its lines, the rest arrives with the next read and is merged into it),
  and the records of logs joined
  with another log (MariaDB's audit and slow logs, Snowflake's query and access
  histories: ``formats.JOINS``), which wait for their partner until the window closes.
* ``continued``: the statements still held when their window closed (session and
  statement id). Should the rest of one arrive after all (its writer paused longer than
  the lateness), those lines add their objects to the first open window, not a second
  statement or its rows again.
* ``history``: closed windows' volume signals over the longest horizon, with whether
  each raised an alert. Kept in segments, one per close, so that a checkpoint writes
  only the new one.
* ``running`` (:class:`detector.live.running.Running`): per account, the 1-hour, 1-day,
  3-day and today's sums as of the last close, and the volume since its latest alert;
  a close takes its new windows' sums from them, less the history's windows leaving
  each horizon, so its cost does not grow with the history. Summed again from the
  history at a restart. For accounts the model never saw, the largest sums of each of
  their days (``days`` in the checkpoint).
* ``levels``: the sums each alerted window of the history was alerted with, and the
  objects it showed, so that a repeat at that level of the same objects is held back as
  in a batch run (:func:`detector.features.alerted_levels`,
  :func:`detector.features.unshown_objects`), though the history no longer holds the
  3 days before that window to sum again.
* ``discovered``: objects, clients and applications first used by an account since
  training (the model's profile knows the earlier ones), so "new" means new once.
* ``prepared``: the next close's windows judged ahead (:meth:`Engine.prepare`), once
  event time is ``PREPARE_AFTER`` (or half the lateness, if less) past their end. The
  close takes those verdicts if its windows' partials are the ones judged and no close,
  model swap or restore came between, and judges them again otherwise: its scores are
  saved within a second of the cutoff, however many accounts it closes.

An event for a window already scored is not dropped: it is counted in the account's
first open window, and in ``trovewatch_late_events_total``. An event of a live input
timed more than ``max_clock_skew`` past the wall clock (a server clock gone wrong) is
counted at the newest sane event time, so it cannot take event time with it
(``trovewatch_future_events_total``).

**Account cap** (``max_accounts``): when more accounts than that have state, the window
history and discovered values of the least recently active accounts are dropped
(accounts the model was not trained on first), down to 90% of the cap. An open window
is never dropped (its events would be lost). An evicted account that comes back starts
a new history: its horizon sums miss the dropped windows and what it had used since
training looks new again; its flagged windows say so in their reasons for the longest
horizon after the eviction. Each evicted name is kept that long, with its time, however
many there are: its dropped windows stay in the history segments until then, and are
taken out when read.

:meth:`Engine.snapshot` gives the state changed since the last checkpoint that was
saved (:meth:`Engine.saved`); :meth:`Engine.restore` reads it back, also from an older
trovewatch's snapshot (which kept the open windows' events).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from detector import features as F
from detector import formats, model, partials
from detector import schema as S
from detector.explain import heavy_days
from detector.formats import mariadb, mariadb_audit
from detector.formats.pg_reads import count_outer_reads
from detector.ingest import merge_split_statements
from detector.live.running import LAST, Running
from detector.pipeline import alert_level_columns, alert_levels, judge_windows
from detector.settings import Settings

# The event columns the window features read, and what joins MariaDB's audit and slow
# records (source, duration, and for MariaDB only, the start of the text); the rest of
# the query text is not kept. The command tells a read through a function from its
# caller when their lines come in two reads (pg_reads.count_outer_reads).
KEPT: Final = (
    S.TIME,
    S.ACCOUNT,
    S.CLIENT_IP,
    S.APPLICATION,
    S.OBJECTS,
    S.CLASS,
    S.COMMAND,
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
# A MariaDB statement as both logs give it, to set the audit log's clock by the slow log's
# (Engine._on_audit_clock): the latest CLOCK_SAMPLE of each log are kept.
CLOCK_SCHEMA: Final = pl.Schema(
    {c: S.EVENT_SCHEMA[c] for c in (S.SOURCE_FORMAT, S.SESSION, S.QUERY, S.TIME)}
)
CLOCK_SAMPLE: Final = 2_000
CONTINUED: Final = (S.SESSION, S.STATEMENT_ID, S.TIME)  # a held statement, once closed
HISTORY_SCHEMA: Final = pl.Schema(
    {
        F.ACCOUNT: pl.String(),
        F.WINDOW: pl.Datetime("us", "UTC"),
        **{signal: pl.Int64() for signal in F.VOLUME},
        "alerted": pl.Boolean(),
    }
)
CONTINUED_SCHEMA: Final = pl.Schema({c: S.EVENT_SCHEMA[c] for c in CONTINUED})
KNOWN_SCHEMA: Final = pl.Schema({F.ACCOUNT: pl.String(), "kind": pl.String(), "value": pl.String()})
EVICTED_SCHEMA: Final = pl.Schema({F.ACCOUNT: pl.String(), "evicted_at": pl.Datetime("us", "UTC")})
# Records joined with another log's: they stay events until their window closes.
JOINED: Final = sorted(set().union(*(names for names, _ in formats.JOINS)))
EVICT_TO: Final = 0.9  # evict down to this share of max_accounts: not at every close
COMPACT_AFTER: Final = 8  # a group of accounts' partial frames merged past this many (Fold)
# Event time past a window's end at which its close is judged ahead (Engine.prepare), or
# half the lateness if that is less: soon enough that the reads it pauses catch up
# before the cutoff, late enough that most of the window's events are in.
PREPARE_AFTER: Final = timedelta(seconds=5)
HOLD: Final = timedelta(seconds=2)  # a statement's lines are logged closer than this
# A MariaDB statement's audit and slow records are timed at most this far apart: the
# pairing tolerance, from the slow record's end taken to the second (mariadb.join_slow).
PAIR_REACH: Final = mariadb.JOIN_TOLERANCE + timedelta(seconds=1)
# What the rest of a statement already counted must not count again.
NOT_AGAIN: Final = (S.SUCCESS, S.ROWS, S.BYTES)
# Names of the saved window history's segments begin so (read back one at a time).
HISTORY_PREFIX: Final = "history."
SCORE_BATCH: Final = 5_000  # accounts whose closing windows are scored at once
# The account of events whose names are past max_accounts open at once (Engine._within_cap):
# "(overflow)" after a NUL, which no account name holds (``schema.conform``), so that a
# real role named "(overflow)" keeps its own windows. JSON (the API) shows it as
# OVERFLOW_SHOWN, a URL as %00(overflow).
OVERFLOW: Final = S.NUL + "(overflow)"
OVERFLOW_SHOWN: Final = json.dumps(OVERFLOW)


@dataclass(frozen=True)
class Closed:
    """What one call to :meth:`Engine.close` scored."""

    scored: pl.DataFrame  # the ``score`` output's rows
    late_events: int
    evicted: int = 0  # accounts whose history was dropped (max_accounts)
    overflow: int = 0  # events counted under OVERFLOW since the last close (max_accounts)
    future: int = 0  # events timed past the wall clock plus max_clock_skew, since the last close
    # MariaDB audited statements that found no slow-log record (no volume), once a slow
    # log has been read
    unvolumed: int = 0


class Engine:
    """Per-account window state and scoring, with nothing about files or storage."""

    def __init__(
        self,
        trained: model.TrainedModel,
        settings: Settings,
        saved: Callable[[str], bytes | None] | None = None,
    ) -> None:
        """``saved`` reads back a blob of the last saved checkpoint by name: given, history
        segments are not held in memory once saved (:meth:`saved`), only read back when
        their windows leave a horizon."""
        self.trained = trained
        self.settings = settings
        self.horizons = trained.horizons
        self.base = F.span(self.horizons.base)
        self.lateness = F.span(settings.lateness)
        self.max_skew = F.span(settings.max_clock_skew)
        self.keep = max(F.span(h) for h in self.horizons.all)
        self.max_accounts = settings.max_accounts
        self._open = partials.Fold(COMPACT_AFTER)
        self.held = pl.DataFrame(schema=PENDING_SCHEMA)
        self.continued = pl.DataFrame(schema=CONTINUED_SCHEMA)
        self.history: list[Segment] = []  # oldest first
        self._read_saved = saved
        self.running = Running(self.horizons)  # horizon sums as of the last close
        # Rows per (account, object, UTC day) of the windows closed on the newest day or
        # two, for the object drip (features.object_today): a day's sums so far, of the
        # objects the model knows the account's largest day of (Engine._partial).
        self.object_days = pl.DataFrame(schema=F.OBJECT_DAYS_SCHEMA)
        self.discovered: list[pl.DataFrame] = []
        self.evicted = pl.DataFrame(schema=EVICTED_SCHEMA)
        self.levels = self._no_levels()
        self.newest: datetime | None = None  # newest event time seen
        self.newest_of: dict[str, datetime] = {}  # ... per input (file, stdin, push)
        self.closed_until: datetime | None = None  # windows ending by then are scored
        self.late = 0  # late events not yet reported by close()
        self.overflow = 0  # events counted under OVERFLOW, not yet reported by close()
        self.future = 0  # events timed ahead of the wall clock, not yet reported by close()
        # A MariaDB slow log is read (since this start): audited statements without its
        # record then count in Closed.unvolumed.
        self.slow_seen = False
        # How far the MariaDB audit log's clock runs ahead of UTC, in seconds: it writes
        # the server's local time with no zone. Set by the statements both logs hold as
        # they are read (``told``), or, until they do, guessed from audit records timed
        # ahead of the wall clock; None while neither has.
        self.audit_ahead: int | None = None
        self.audit_clock_told = False
        self._clock_sample = pl.DataFrame(schema=CLOCK_SCHEMA)
        self._trained_accounts = trained.profile.trained
        # Checkpoint bookkeeping: state names in the database, and changes not yet saved.
        self._seq = itertools.count()
        self._stored: dict[str, str] = {}  # name -> kind ("open", "history", ...)
        self._writes: dict[str, bytes] = {}
        self._deletes: set[str] = set()
        # Open partials added since the last snapshot, merged only when it is taken; None:
        # all of the open windows, once they were rewritten.
        self._fresh: list[pl.DataFrame] | None = []
        self._discovered_names: list[str] = []  # the saved names of ``discovered``
        self._prepared: Prepared | None = None  # windows judged ahead of their close

    # -- ingest ------------------------------------------------------------------------

    def add(self, events: pl.DataFrame, source: str = "-", wall: datetime | None = None) -> int:
        """Take parsed events (the event schema) of one input into the open windows, and
        return how many of them begin a statement: the others are the rest of a
        statement an earlier ``add`` began (pgAudit logs a statement once per relation,
        and a read may end between its lines), one statement with it in the windows.
        ``wall``: now (UTC), for a live input: events timed past it are held back to the
        newest sane time (:meth:`_not_ahead_of`). A pgAudit statement's later
        sub-statements (``COPY (SELECT ...) TO``'s COPY) begin none: as ``score`` counts."""
        starts = events.filter(F.begins_statement())
        begun = starts.height - self._continuing(starts)
        events = _kept(events.filter(pl.col(S.ACCOUNT).is_not_null()))
        if events.is_empty():
            return begun
        if not self.slow_seen:
            self.slow_seen = bool(
                events.select((pl.col(S.SOURCE_FORMAT) == mariadb.SLOW).any()).item()
            )
        events = self._on_audit_clock(events, wall)
        if wall is not None:
            events = self._not_ahead_of(events, wall)
        events = self._within_cap(events)
        newest = events[S.TIME].max()
        assert isinstance(newest, datetime)
        self.newest = newest if self.newest is None else max(self.newest, newest)
        self.newest_of[source] = max(newest, self.newest_of.get(source, newest))
        events = self._rest_of_closed(events, newest)
        events, late = _not_before(events, self.closed_until)
        self.late += late
        if late and self.closed_until is not None and self.newest < self.closed_until:
            # They now count at closed_until, in a window past the newest event's, where
            # the wall clock's close stops: it must reach theirs (before: they waited for a
            # newer event, for good on a database gone quiet, scored and stored never).
            self.newest = self.closed_until
        events = pl.concat([self.held, events])
        joined = pl.col(S.SOURCE_FORMAT).is_in(JOINED)
        statements = merge_split_statements(events.filter(~joined), outer=False)
        # Each session's latest statement may go on in the next read: it stays an event,
        # if logged in the read's last moments (a statement's lines are logged together;
        # a session's older last statement is complete, and holding it would keep an
        # event per session). Latest by time, and every one of the session's statements
        # at that time: statements share a millisecond, and events need not be in the
        # order their lines were read. With all its sub-statements (a function's reads
        # before its caller, a procedure's before its CALL), whose rows count or not
        # once it is whole (pg_reads.count_outer_reads).
        # A statement is held if one of its rows is at its session's latest time and
        # that time is in the last 2 s: found from one row per session and the few rows
        # at those times, then joined back, rather than by window expressions over every
        # row. (Nested, ``.any().over(statement)`` over ``time.max().over(session)``,
        # Polars evaluates the inner one within the outer's groups: every statement of
        # the last 2 s was held and merged again at each read, 4x slower reading.)
        major = pl.col(S.STATEMENT_ID).str.extract(r"^(\d+)\.", 1)
        statement = [S.SESSION, "_statement"]
        statements = statements.with_columns(
            pl.coalesce(major, pl.col(S.STATEMENT_ID)).alias("_statement")
        )
        recent = (
            statements.group_by(S.SESSION)
            .agg(pl.col(S.TIME).max())
            .filter(pl.col(S.TIME) >= newest - HOLD)
        )
        latest = (
            statements.filter(pl.col(S.STATEMENT_ID).is_not_null())
            .join(recent, on=[S.SESSION, S.TIME], how="semi", nulls_equal=True)
            .select(*statement, pl.lit(True).alias("_latest"))
            .unique(statement)
        )
        statements = (
            statements.join(
                latest, on=statement, how="left", maintain_order="left", nulls_equal=True
            )
            .with_columns(pl.col("_latest").fill_null(False))
            .drop("_statement")
        )
        self.held = pl.concat([events.filter(joined), statements.filter("_latest").drop("_latest")])
        done = count_outer_reads(statements.filter(~pl.col("_latest")).drop("_latest"))
        self._fold(self._partial(done))
        return begun

    def _continuing(self, events: pl.DataFrame) -> int:
        """How many of ``events`` go on with a statement already taken in: one still
        held for its next lines, or one whose window closed (``continued``)."""
        if self.held.is_empty() and self.continued.is_empty():
            return 0
        key = [S.SESSION, S.STATEMENT_ID]
        taken = pl.concat(
            [
                self.held.filter(~pl.col(S.SOURCE_FORMAT).is_in(JOINED)).select(key),
                self.continued.select(key),
            ]
        ).filter(pl.col(S.STATEMENT_ID).is_not_null())
        return events.join(taken.unique(), on=key, how="semi").height

    def _on_audit_clock(self, events: pl.DataFrame, wall: datetime | None) -> pl.DataFrame:
        """``events`` with MariaDB audit records' times on UTC (the batch ``score`` sets
        them so when it joins the two logs: :func:`detector.formats.mariadb.audit_clock`).

        A server on local time (most are) writes it in the audit log with no zone, while
        the slow log's ``SET timestamp`` is UTC: filed as they are, a statement's two
        records fall in windows hours apart and are never paired (each counted twice,
        once without volume), and a server east of UTC writes audit records "from the
        future". The clock is set from the latest statements of both logs, run once in
        their connection (:data:`CLOCK_SAMPLE` of each kept), and follows a change to or
        from summer time as the statements after it are read. Until they tell it, audit
        records timed ahead of the wall clock (beyond ``max_clock_skew``) set it to their
        lead, rounded to a quarter hour; audit records still held when the statements
        first tell it are set again by it."""
        audit = pl.col(S.SOURCE_FORMAT) == mariadb.AUDIT
        slow = pl.col(S.SOURCE_FORMAT) == mariadb.SLOW
        statement = audit & pl.col(S.STATEMENT_ID).is_not_null() & pl.col(S.QUERY).is_not_null()
        mine = events.filter(statement | slow)
        if not mine.is_empty():
            sample = pl.concat([self._clock_sample, mine.select(CLOCK_SCHEMA.names())])
            audited = sample.filter(audit).tail(CLOCK_SAMPLE)
            logged = sample.filter(slow).tail(CLOCK_SAMPLE)
            self._clock_sample = pl.concat([audited, logged])
            told = mariadb.audit_ahead(audited, logged, pl.col(S.TIME))
            if told is not None:
                if not self.audit_clock_told and told != (self.audit_ahead or 0):
                    self.held = _ahead_by(self.held, (self.audit_ahead or 0) - told)
                self.audit_ahead, self.audit_clock_told = told, True
        if self.audit_ahead is None and wall is not None:
            self.audit_ahead = self._lead_on(events.filter(audit)[S.TIME], wall)
        return _ahead_by(events, -(self.audit_ahead or 0))

    def _lead_on(self, times: pl.Series, wall: datetime) -> int | None:
        """The lead on ``wall`` of audit records ``times`` mostly ahead of it (beyond
        ``max_clock_skew``) by no more than a time zone can be (14 h), rounded to a
        quarter hour; None for any others (a server clock gone wrong, a line dated 2099:
        they are held back as future events)."""
        ahead = times > wall + self.max_skew
        if times.is_empty() or ahead.sum() * 2 < times.len():
            return None
        newest = times.filter(ahead).max()
        assert isinstance(newest, datetime)
        lead = (newest - wall).total_seconds()
        if lead > mariadb.MAX_OFFSET.total_seconds():
            return None
        return round(lead / mariadb.QUARTER) * mariadb.QUARTER

    def _not_ahead_of(self, events: pl.DataFrame, wall: datetime) -> pl.DataFrame:
        """``events`` with those timed more than ``max_clock_skew`` past ``wall`` timed at
        the newest sane event time instead (this read's or an earlier one's; ``wall`` if
        there is none), their volume and objects kept.

        One line from a server clock gone wrong (or written by hand) dated 2099 would
        otherwise take the watermark there: every open window would close, and every
        true event after it would be late, counted in a window that never closes until
        2099. Counted in ``trovewatch_future_events_total``.
        """
        ahead = pl.col(S.TIME) > wall + self.max_skew
        count = int(events.select(ahead.sum()).item())
        if count == 0:
            return events
        self.future += count
        sane = events.filter(~ahead)[S.TIME].max()
        known = [t for t in (sane, self.newest) if isinstance(t, datetime)]
        at = max(known) if known else wall
        return events.with_columns(
            pl.when(ahead)
            .then(pl.lit(at, S.EVENT_SCHEMA[S.TIME]))
            .otherwise(pl.col(S.TIME))
            .alias(S.TIME)
        )

    def _within_cap(self, events: pl.DataFrame) -> pl.DataFrame:
        """``events`` with the names of accounts past ``max_accounts`` open at once
        replaced by :data:`OVERFLOW`.

        Open windows are never dropped (their events would be lost), so a flood of new
        names (a million in one window) would hold one open window per name. Past the cap,
        a name that has no open window, no history and is not in the model's training
        gets none: its events are counted together under ``OVERFLOW``, scored as one
        account (a flood of names is itself worth an alert), and in
        ``trovewatch_overflow_events_total``. Accounts with state or training keep
        their own windows.
        """
        open_rows = self._open.height + self.held.height
        if open_rows + events.height <= self.max_accounts:  # cannot be past it: cheap
            return events
        names = events[S.ACCOUNT].unique(maintain_order=True)
        opened = self._open_accounts().unique()
        with_history = self.running.sums[F.ACCOUNT]
        known = pl.concat([opened, self._trained_accounts, with_history]).implode()
        newcomers = names.filter(~names.is_in(known))
        room = max(self.max_accounts - opened.len(), 0)
        if newcomers.len() <= room:
            return events
        excess = pl.col(S.ACCOUNT).is_in(newcomers.slice(room).implode())
        self.overflow += events.filter(excess).height
        return events.with_columns(
            pl.when(excess).then(pl.lit(OVERFLOW)).otherwise(pl.col(S.ACCOUNT)).alias(S.ACCOUNT)
        )

    def _rest_of_closed(self, events: pl.DataFrame, newest: datetime) -> pl.DataFrame:
        """``events`` with the lines of statements already closed (``continued``) counted
        for their objects only: no statement, rows, bytes or export of their own."""
        if self.continued.is_empty():
            return events
        key = pl.struct(S.SESSION, S.STATEMENT_ID)
        rest = key.is_in(self.continued.select(key).to_series().implode())
        events = events.with_columns(
            *(pl.when(rest).then(None).otherwise(pl.col(c)).alias(c) for c in NOT_AGAIN),
            pl.when(rest).then(False).otherwise(pl.col(S.EXPORT)).alias(S.EXPORT),
        )
        # A statement's lines are logged together: past the hold, none of it is to come.
        self.continued = self.continued.filter(pl.col(S.TIME) >= newest - HOLD)
        return events

    def _fold(self, part: pl.DataFrame) -> None:
        self._open.add(part)
        if self._fresh is not None:
            self._fresh.append(part)

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
        overflow, self.overflow = self.overflow, 0
        future, self.future = self.future, 0
        if cutoff is None or (self.closed_until is not None and cutoff <= self.closed_until):
            return Closed(pl.DataFrame(), late, overflow=overflow, future=future)
        earlier, self.closed_until = self.closed_until, cutoff
        closing = self._open.take(pl.col(F.WINDOW) < cutoff)
        due_events, whole = self._take_due(cutoff)
        if closing.is_empty() and due_events.is_empty():
            return Closed(pl.DataFrame(), late, overflow=overflow, future=future)
        unvolumed = 0
        closed_statements = due_events.filter(
            ~pl.col(S.SOURCE_FORMAT).is_in(JOINED)
            & pl.col(S.SESSION).is_not_null()
            & pl.col(S.STATEMENT_ID).is_not_null()
        )
        self.continued = pl.concat([self.continued, closed_statements.select(CONTINUED)])
        self._rewrite_open()
        if due_events.height:
            events = merge_split_statements(due_events.sort(S.TIME, maintain_order=True))
            events = formats.join(events, live=True)
            after = pl.col(S.TIME) >= cutoff
            outside = after if earlier is None else after | (pl.col(S.TIME) < earlier)
            audit = pl.col(S.SOURCE_FORMAT) == mariadb.AUDIT
            if whole and events.filter(outside & audit).is_empty():
                # (Audit records outside the closing windows: the join set the audit
                # log's clock, which pairing the held records did not find.) A slow
                # record taken for its audit record's close that another took after all
                # waits for its own window; one held for its audit record that found none
                # goes in the first window still open (counted late).
                self.held = pl.concat([self.held, events.filter(after)])
                events, held_late = _not_before(events.filter(~after), earlier)
                late += held_late
            closing = partials.merge(closing, self._partial(events))
            if self.slow_seen:
                unvolumed = mariadb.without_volume(events)[1]
        scored = self._score(closing)
        evicted = self._evict()
        return Closed(scored, late, evicted, overflow, future, unvolumed)

    def _take_due(self, cutoff: datetime) -> tuple[pl.DataFrame, bool]:
        """Take the held events of the windows closing at ``cutoff`` out of ``held``, and
        say whether each MariaDB statement among them is whole: those timed before the
        cutoff, but with each statement's records on the side of the cutoff its audit
        QUERY record is on, where ``score`` files it. The TABLE records opened before the
        cutoff of a QUERY record after it stay held, as does a slow record that ended
        before the cutoff whose audit record came after it; the slow record that ended
        after it of an audit record before it closes now. (The slow log times a
        statement by its start, to the second, plus its duration, the audit log by its
        end: their records are seconds apart either way.) Not whole if the two logs'
        clocks disagree here (the audit log's not yet set right after a change to or
        from summer time): the join of the close sets it for what it closes, and a
        record timed past the cutoff then is filed where the join puts it."""
        before = pl.col(S.TIME) < cutoff
        if not self.held.select(mariadb.audit_statement().any()).item():
            return self._take(before), True
        held = self.held.with_row_index("_h")
        opened = _opened_before(held, before)
        # The pairs the joins of this close and the next make, in the connections with
        # records either side of the cutoff, all of theirs: the runs of a statement in
        # one connection are paired in order (mariadb.join_slow).
        mariadb_records = pl.col(S.SOURCE_FORMAT).is_in(mariadb.LOGS)
        thread = mariadb.thread_of(pl.col(S.SESSION))
        near = (pl.col(S.TIME) - cutoff).abs() <= PAIR_REACH
        threads = held.filter(mariadb_records & near).select(thread.unique()).to_series()
        crossing = thread.is_in(threads.implode()) | pl.col("_h").is_in(opened.implode())
        records = held.filter(mariadb_records & crossing)
        statements = merge_split_statements(records.sort(S.TIME, "_h"), outer=False)
        pairs = mariadb.slow_pairs(statements, slow_at_end=True)
        if pairs is None:
            return self._take(before), False
        sides = statements.select("_h", before.alias("_before"))
        crossed = (
            pairs.join(sides.with_row_index("_a"), on="_a")
            .join(sides.with_row_index("_s"), on="_s", suffix="_slow")
            .filter(pl.col("_before") != pl.col("_before_slow"))
        )
        held_back = pl.concat([opened, crossed.filter(~pl.col("_before"))["_h_slow"]])
        brought = crossed.filter("_before")["_h_slow"]
        row = pl.col("_h")
        due = (before & ~row.is_in(held_back.implode())) | row.is_in(brought.implode())
        taken = held.filter(due).drop("_h")
        self.held = held.filter(~due).drop("_h")
        return taken, True

    def _take(self, due: pl.Expr) -> pl.DataFrame:
        taken = self.held.filter(due)
        self.held = self.held.filter(~due)
        return taken

    def prepare(self) -> bool:
        """Judge the windows of the next close ahead of it, once event time is
        ``PREPARE_AFTER`` (or half the lateness, if less) past their end; return whether
        it did. Their close, at the cutoff (the lateness past their end), takes these
        verdicts if its windows are still the ones judged (no late event came for them;
        nothing the judging reads has changed since, which only a close, a model swap or
        a restore changes), and judges them again otherwise.

        A close of thousands of accounts' windows takes seconds, most of it judging
        (features, the forest, reasons): taken out of the close, the windows are scored
        and saved within a second of their cutoff, and the judging runs while late
        events may still come, not when the scores are due."""
        if self.newest is None:
            return False
        due = _floor(self.newest - min(self.lateness / 2, PREPARE_AFTER), self.base)
        cutoff = self.cutoff(None)
        if (
            (self.closed_until is not None and due <= self.closed_until)
            or (cutoff is not None and cutoff >= due)
            or (self._prepared is not None and self._prepared.cutoff == due)
        ):
            return False
        # Held events of these windows (records waiting for their partner log) are merged
        # into them at the close only: those windows are judged then.
        if not self.held.filter(pl.col(S.TIME) < due).is_empty():
            return False
        closing = self._open.merged().filter(pl.col(F.WINDOW) < due)
        if closing.is_empty():
            return False
        self._prepared = Prepared(due, closing, self._judge(closing, due - self.base))
        return True

    def _partial(self, events: pl.DataFrame) -> pl.DataFrame:
        """The partial aggregates of ``events``, their rows per object only of the objects
        the model knows the account's largest day of: no other can drip
        (explain.Judge._object_drips), and accounts new to the model (100,000 of them, or
        a flood of names) would carry theirs from read to close, and the day's sums in
        ``object_days``, for nothing."""
        judged = self.trained.profile.object_days.select(F.ACCOUNT, "object").lazy()
        return partials.partial(events, self.horizons.base, judged)

    def open_activity(self) -> pl.DataFrame:
        """The open windows as they stand (rows of ``features.window_activity``)."""
        events = formats.join(merge_split_statements(self.held.sort(S.TIME)), live=True)
        merged = partials.merge(self._open.merged(), self._partial(events))
        return partials.to_activity(merged, self.horizons.base, self._known())

    def _no_levels(self) -> pl.DataFrame:
        names = [F.ACCOUNT, F.WINDOW, *alert_level_columns(self.horizons)]
        return pl.DataFrame(
            schema={
                **{c: HISTORY_SCHEMA.get(c, pl.Int64()) for c in names},
                "objects_list": pl.List(pl.String()),
            }
        )

    def _known(self) -> pl.LazyFrame:
        return pl.concat(
            [self.trained.profile.known, *self.discovered], how="vertical_relaxed"
        ).lazy()

    def _score(self, closing: pl.DataFrame) -> pl.DataFrame:
        """Score the closing windows (judged ahead by :meth:`prepare` if they are the
        windows it judged), and take their verdicts into the state."""
        assert self.closed_until is not None
        to = self.closed_until - self.base  # the newest window start this close scores
        prepared, self._prepared = self._prepared, None
        if (
            prepared is not None
            and prepared.cutoff == self.closed_until
            and prepared.closing.equals(closing)
        ):
            judged = prepared.judged
        else:
            judged = self._judge(closing, to)
        return self._take_in(judged, to)

    def _judge(self, closing: pl.DataFrame, to: datetime) -> Judged:
        """Judge the closing windows (their newest start ``to``), ``SCORE_BATCH`` accounts
        at a time (in account order), changing no state: an account's windows are scored
        together (its horizons, what is new to it), no two accounts depend on each other,
        and a close of 100,000 accounts' windows then needs the memory of a few thousand,
        their window features included. Their horizon sums come from the sums carried
        from the last close (:class:`Running`), not from the window history."""
        known = self._known().collect()
        untrained = ~pl.col(F.ACCOUNT).is_in(self.trained.profile.trained.implode())
        leaving = self.running.leaving(self._history, to)
        accounts = closing[F.ACCOUNT].unique().sort()
        heavy = heavy_days(self.trained.profile, self.settings)
        parts, windows, new_values, levels, days, object_days = [], [], [], [], [], []
        for first in range(0, accounts.len(), SCORE_BATCH):
            ours = pl.col(F.ACCOUNT).is_in(accounts.slice(first, SCORE_BATCH).implode())
            activity = partials.to_activity(
                closing.filter(ours), self.horizons.base, known.filter(ours)
            )
            summed = self.running.summed(
                activity, {h: rows.filter(ours) for h, rows in leaving.items()}
            )
            summed = F.object_today(
                summed.sort(F.ACCOUNT, F.WINDOW).lazy(),
                self.settings.guardrail_min_rows,
                heavy,
                self.object_days.filter(ours),
            ).collect()
            own = summed.filter(untrained)
            scored = judge_windows(
                self._with_alerts(summed, ours),
                self.running.earlier_days(own),
                self.trained,
                self.settings,
            )
            parts.append(scored)
            levels.append(alert_levels(scored, self.horizons))
            windows.append(_history_rows(activity, scored))
            new_values.append(_new_values(activity))
            days.append(own.select(F.ACCOUNT, F.WINDOW, *F.horizon_columns(self.horizons)))
            object_days.append(F.object_days(activity.lazy()).collect())
        return Judged(
            scored=pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(),
            levels=pl.concat([self._no_levels(), *levels]),
            windows=pl.concat([pl.DataFrame(schema=HISTORY_SCHEMA), *windows]),
            new_values=pl.concat([pl.DataFrame(schema=KNOWN_SCHEMA), *new_values]),
            days=pl.concat(days, how="vertical_relaxed") if days else None,
            leaving=leaving,
            object_days=pl.concat([pl.DataFrame(schema=F.OBJECT_DAYS_SCHEMA), *object_days]),
        )

    def _take_in(self, judged: Judged, to: datetime) -> pl.DataFrame:
        """Take a close's verdicts into the state (alerted levels, carried sums, earlier
        days, history, discovered values); return the scored windows."""
        if judged.levels.height:
            self.levels = pl.concat([self.levels, judged.levels])
            self._writes["levels"] = b""  # written at the snapshot, once pruned
        self.running.advance(judged.windows, judged.leaving, to)
        self._writes["sums"] = b""
        self._carry_object_days(judged.object_days, to)
        if judged.days is not None:
            self.running.remember_days(judged.days)
            self._writes["days"] = b""
        self._remember(judged.windows, judged.new_values)
        return self._note_evicted(self._flag_overflow(judged.scored))

    def _carry_object_days(self, closed: pl.DataFrame, to: datetime) -> None:
        """Add a close's rows per (account, object, day) to those carried, keeping the
        days a later window can still be on (the day of ``to`` and the one before, for
        windows closing late)."""
        if closed.is_empty() and self.object_days.is_empty():
            return
        since = pl.lit(to).dt.truncate("1d") - timedelta(days=1)
        # A group of accounts at a time (as Running folds its sums): all 100,000 accounts'
        # rows at once raised a close's peak by about 350 MB (docs/evaluation.md).
        group = pl.col(F.ACCOUNT).hash() % OBJECT_DAY_GROUPS
        both = pl.concat([self.object_days, closed]).filter(pl.col("day") >= since)
        self.object_days = pl.concat(
            [
                both.filter(group == k)
                .group_by(F.ACCOUNT, "object", "day")
                .agg(pl.col("rows").sum())
                .select(F.OBJECT_DAYS_SCHEMA.names())
                for k in range(OBJECT_DAY_GROUPS)
            ]
        )
        self._writes["object_days"] = b""

    def _with_alerts(self, summed: pl.DataFrame, ours: pl.Expr) -> pl.DataFrame:
        """New windows with their sums, and their accounts' alerted windows with the sums
        they were alerted with, as :func:`detector.pipeline.judge_windows` takes them.
        An alert's running totals are 0: the new windows' are the volume since the
        account's latest alert (:meth:`Running.summed`)."""
        alerts = self.levels.filter(ours).with_columns(
            pl.lit(False).alias("_new"),
            pl.lit(True).alias("_alerted"),
            *(pl.lit(0, pl.Int64).alias(f"{s}__running") for s in F.VOLUME),
        )
        new = summed.with_columns(pl.lit(True).alias("_new"), pl.lit(False).alias("_alerted"))
        return pl.concat([alerts, new], how="diagonal_relaxed").sort(F.ACCOUNT, F.WINDOW)

    def _history(
        self,
        lo: datetime | None = None,
        hi: datetime | None = None,
        accounts: pl.Expr | None = None,
    ) -> pl.DataFrame:
        """The window history (``HISTORY_SCHEMA``), or its windows starting in ``(lo,
        hi]``, or those of ``accounts``: segments dropped from memory read back from the
        saved checkpoint (one at a time, filtered as read), rows an account had before it
        was evicted (``max_accounts``) taken out."""
        inside = pl.lit(True) if accounts is None else accounts
        if lo is not None:
            inside &= pl.col(F.WINDOW) > lo
        if hi is not None:
            inside &= pl.col(F.WINDOW) <= hi
        pieces = [
            _full(self._rows(segment).filter(inside))
            for segment in self.history
            if (lo is None or segment.newest > lo) and (hi is None or segment.oldest <= hi)
        ]
        rows = pl.concat([pl.DataFrame(schema=HISTORY_SCHEMA), *pieces])
        if self.evicted.is_empty() or rows.is_empty():
            return rows
        return (
            rows.join(self.evicted, on=F.ACCOUNT, how="left", maintain_order="left")
            .filter(pl.col("evicted_at").is_null() | (pl.col(F.WINDOW) >= pl.col("evicted_at")))
            .drop("evicted_at")
        )

    def _rows(self, segment: Segment) -> pl.DataFrame:
        """A history segment's rows, read back from the saved checkpoint if not held."""
        return self._read_back(segment.name) if segment.rows is None else segment.rows

    def _read_back(self, name: str, columns: list[str] | None = None) -> pl.DataFrame:
        """History segment ``name`` (or these columns of it) read from the saved
        checkpoint."""
        data = None if self._read_saved is None else self._read_saved(name)
        if data is None:
            raise RuntimeError(f"window history segment {name} is missing from the saved state")
        return pl.read_parquet(io.BytesIO(data), columns=columns)

    def use(self, successor: model.TrainedModel) -> None:
        """Score with ``successor`` (a retrained model, same horizons) from the next close.
        Accounts it was not trained on whose earlier days are not held yet get them from
        the window history."""
        dropped = self._trained_accounts.filter(
            ~self._trained_accounts.is_in(successor.profile.trained.implode())
            & ~self._trained_accounts.is_in(self.running.days[F.ACCOUNT].implode())
        )
        self.trained = successor
        self._trained_accounts = successor.profile.trained
        self._prepared = None
        if dropped.len():
            self._days_from_history(pl.col(F.ACCOUNT).is_in(dropped.implode()))

    def _levels_from_history(self) -> None:
        """The sums the history's alerted windows were alerted with, summed again (an
        older trovewatch's state kept none): volume since an earlier alert not counted,
        and the oldest windows' sums missing the windows before the history."""
        history = self._history().sort(F.ACCOUNT, F.WINDOW)
        summed = F.add_horizons(history.lazy(), self.horizons)
        discounted = F.discount_alerted(summed, pl.col("alerted"), self.horizons).filter("alerted")
        self.levels = (
            discounted.select(
                F.ACCOUNT,
                F.WINDOW,
                *(
                    pl.col(c).alias(f"{c}__level")
                    for c in F.horizon_columns(self.horizons, F.ALERT_LEVELS)
                ),
                pl.lit(None, pl.List(pl.String())).alias("objects_list"),  # not kept
            )
            .collect()
            .cast(self._no_levels().schema)
        )
        self._writes["levels"] = b""

    def _days_from_history(self, accounts: pl.Expr) -> None:
        """The largest sums per day of the selected accounts, summed again from the
        window history (after a restart from an older trovewatch's state, or a model
        swap): its oldest day's sums miss the windows before the history."""
        if not self.history or self.closed_until is None:
            return
        rows = self._history(accounts=accounts)
        if rows.height:
            summed = F.add_horizons(rows.sort(F.ACCOUNT, F.WINDOW).lazy(), self.horizons)
            self.running.remember_days(summed.collect())
            self._writes["days"] = b""

    def _remember(self, windows: pl.DataFrame, new_values: pl.DataFrame) -> None:
        """Add the newly scored windows to the history, and their new values to what
        each account is known to use; forget history past the longest horizon."""
        assert self.closed_until is not None
        horizon_start = self.closed_until - self.keep
        self._add_segment("history", windows)
        while self.history and self.history[0].newest < horizon_start:
            self._drop(self.history.pop(0).name)
        self._add_segment("discovered", new_values)
        if self.evicted.height and self.evicted["evicted_at"].min() < horizon_start:  # type: ignore[operator]
            self.evicted = self.evicted.filter(pl.col("evicted_at") >= horizon_start)
            self._writes["evicted"] = b""
        if self.levels.height and self.levels[F.WINDOW].min() < horizon_start:  # type: ignore[operator]
            self.levels = self.levels.filter(pl.col(F.WINDOW) >= horizon_start)
            self._writes["levels"] = b""

    def _keep(self, kind: str, name: str, frame: pl.DataFrame) -> None:
        """Hold a segment of ``kind`` saved as ``name``; history segments compact and
        sorted by account."""
        if kind == "history":
            frame = _compact(frame.sort(F.ACCOUNT, F.WINDOW))
            self.history.append(Segment(name, *_span(frame), frame))
        else:
            self.discovered.append(frame)
            self._discovered_names.append(name)

    def _add_segment(self, kind: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        name = f"{kind}.{next(self._seq):012d}"
        self._keep(kind, name, frame)
        self._writes[name] = _parquet(frame)

    # -- the account cap ---------------------------------------------------------------

    def _evict(self) -> int:
        """Drop the history of the least recently active accounts past ``max_accounts``;
        return how many accounts lost it."""
        if self.accounts <= self.max_accounts:
            return 0
        last = self.running.sums.select(F.ACCOUNT, pl.col(LAST).alias(F.WINDOW))
        trained = self.trained.profile.trained.to_frame()
        excess = self.accounts - int(self.max_accounts * EVICT_TO)
        victims = (
            last.join(
                trained.with_columns(pl.lit(True).alias("_trained")), on=F.ACCOUNT, how="left"
            )
            .sort(pl.col("_trained").fill_null(False), F.WINDOW, F.ACCOUNT)
            .head(excess)
            .select(F.ACCOUNT)
        )
        if victims.is_empty():
            return 0
        gone = victims[F.ACCOUNT].implode()
        # Their history rows stay in the segments, taken out when read (_history).
        discovered = pl.concat([pl.DataFrame(schema=KNOWN_SCHEMA), *self.discovered])
        discovered = discovered.filter(~pl.col(F.ACCOUNT).is_in(gone))
        for name in self._discovered_names:
            self._drop(name)
        self._discovered_names, self.discovered = [], []
        self.levels = self.levels.filter(~pl.col(F.ACCOUNT).is_in(gone))
        self._writes["levels"] = b""
        self.running.forget(victims[F.ACCOUNT])
        self.object_days = self.object_days.filter(~pl.col(F.ACCOUNT).is_in(gone))
        self._writes["days"] = self._writes["sums"] = self._writes["object_days"] = b""
        self._add_segment("discovered", discovered)
        assert self.closed_until is not None
        marked = victims.with_columns(pl.lit(self.closed_until).alias("evicted_at"))
        # Kept for the longest horizon (_remember), however many: a name dropped sooner
        # would let its old rows back into _history, and out of its new sums.
        self.evicted = pl.concat(
            [self.evicted.filter(~pl.col(F.ACCOUNT).is_in(gone)), marked]
        ).cast(EVICTED_SCHEMA)
        self._writes["evicted"] = b""
        return victims.height

    def _flag_overflow(self, scored: pl.DataFrame) -> pl.DataFrame:
        """Every window of :data:`OVERFLOW` is flagged (high, unless critical already) and
        says what it is."""
        if scored.is_empty():
            return scored
        overflow = pl.col(F.ACCOUNT) == OVERFLOW
        flood = pl.format(
            "{} statements in this window by account names past max_accounts ({}) open at "
            "once, counted together under the account {}: a flood of new names",
            pl.col("features").struct.field(F.col_name("statements", self.horizons.base)),
            pl.lit(f"{self.max_accounts:,}"),
            pl.lit(OVERFLOW_SHOWN),
        )
        return scored.with_columns(
            pl.when(overflow)
            .then(pl.concat_list(flood, pl.col("reasons")))
            .otherwise(pl.col("reasons"))
            .alias("reasons"),
            (pl.col("flagged") | overflow).alias("flagged"),
            pl.when(overflow & (pl.col("severity") != "critical"))
            .then(pl.lit("high"))
            .otherwise(pl.col("severity"))
            .alias("severity"),
        )

    def _note_evicted(self, scored: pl.DataFrame) -> pl.DataFrame:
        """Flagged windows of an account whose history was dropped say so."""
        if self.evicted.is_empty() or scored.is_empty():
            return scored
        note = (
            "history incomplete: this account's earlier windows were dropped at "
            "max_accounts; horizon sums and what it used before count only since it returned"
        )
        marked = pl.col(F.ACCOUNT).is_in(self.evicted[F.ACCOUNT].implode()) & pl.col("flagged")
        return scored.with_columns(
            pl.when(marked)
            .then(pl.col("reasons").list.concat(pl.lit([note], dtype=pl.List(pl.String))))
            .otherwise(pl.col("reasons"))
            .alias("reasons")
        )

    # -- state -------------------------------------------------------------------------

    def _open_accounts(self) -> pl.Series:
        return pl.concat(
            [
                *(p.select(F.ACCOUNT) for p in self._open.frames),
                self.held.select(pl.col(S.ACCOUNT).alias(F.ACCOUNT)),
            ]
        )[F.ACCOUNT]

    @property
    def open_windows(self) -> int:
        """Account-windows not yet closed."""
        frames = [p.select(*partials.KEYS) for p in self._open.frames]
        frames.append(
            self.held.select(
                pl.col(S.ACCOUNT).alias(F.ACCOUNT),
                pl.col(S.TIME).dt.truncate(self.horizons.base).alias(F.WINDOW),
            )
        )
        return pl.concat(frames).unique().height

    @property
    def accounts(self) -> int:
        """Accounts with state: open windows or window history."""
        return pl.concat([self._open_accounts(), self.running.sums[F.ACCOUNT]]).n_unique()

    def _rewrite_open(self) -> None:
        """The open windows changed other than by adding: the next checkpoint writes
        them whole and drops the earlier pieces."""
        for name in [n for n, kind in self._stored.items() if kind == "open"]:
            self._drop(name)
        for name in [n for n in self._writes if n.startswith("open.")]:
            del self._writes[name]
        self._fresh = None

    def _drop(self, name: str) -> None:
        if name in self._writes:
            del self._writes[name]
        else:
            self._deletes.add(name)

    def snapshot(self) -> dict[str, bytes | None]:
        """What changed since the last saved snapshot, as named blobs (Parquet frames and
        a JSON header) to write; ``None`` for names to delete. After a successful save,
        call :meth:`saved`."""
        # One merge of the few reads' partials since the last snapshot, not a Fold of
        # them (grouped by account at every read, merged group by group); the whole open
        # windows, after a rewrite, merged in the open Fold's groups.
        fresh = self._open.merged() if self._fresh is None else partials.merge_all(self._fresh)
        if fresh.height:
            self._writes[f"open.{next(self._seq):012d}"] = _parquet(fresh)
        self._fresh = []
        meta = {
            "version": 2,
            "newest": None if self.newest is None else self.newest.isoformat(),
            "closed_until": None if self.closed_until is None else self.closed_until.isoformat(),
            "base": self.horizons.base,
            "sums_at": None if self.running.at is None else self.running.at.isoformat(),
            "audit_ahead": self.audit_ahead,
            "audit_clock_told": self.audit_clock_told,
        }
        # Frames changed since the last snapshot (marked b""), written once, as they are now.
        for name, frame in (
            ("sums", self.running.sums),
            ("levels", self.levels),
            ("days", self.running.days),
            ("object_days", self.object_days),
            ("evicted", self.evicted),
        ):
            if name in self._writes:
                self._writes[name] = _parquet(frame)
        return {
            **{name: None for name in self._deletes},
            **self._writes,
            "meta": json.dumps(meta).encode(),
            "held": _parquet(self.held),
            "continued": _parquet(self.continued),
        }

    def saved(self) -> None:
        """The last :meth:`snapshot` is in the database."""
        for name in self._deletes:
            self._stored.pop(name, None)
        for name in self._writes:
            self._stored[name] = name.split(".", 1)[0]
        self._writes, self._deletes = {}, set()
        self._release_saved_history()

    def _release_saved_history(self) -> None:
        """Drop the saved history segments from memory, given a way to read them back:
        only their windows leaving a horizon are read, a close's worth each."""
        if self._read_saved is None:
            return
        for segment in self.history:
            if segment.name in self._stored:
                segment.rows = None

    def _restore_segment(self, name: str, data: bytes | None) -> None:
        """Take in saved history segment ``name`` (its ``data``, or read back if None):
        its span, and the segment itself only if there is no reading it back."""
        if data is None:  # its window starts only
            self.history.append(Segment(name, *_span(self._read_back(name, [F.WINDOW]))))
            return
        frame = pl.read_parquet(io.BytesIO(data))
        if self._read_saved is None:
            self._keep("history", name, frame)  # an older trovewatch's may be unsorted
        else:
            self.history.append(Segment(name, *_span(frame)))

    def restore(self, state: Mapping[str, bytes | None], deferred: Iterable[str] = ()) -> None:
        """Continue from the saved snapshots. State saved for another model's windows is
        refused: its windows and novelty would not mean the same.

        ``deferred``: names of the saved state whose data ``state`` leaves out, read back
        one at a time (the window history: :meth:`Store.load_checkpoint`). Given a way to
        read them back, no history segment is held, and the horizon sums are those saved
        (``sums``): a restart holds one segment at a time, however long the history."""
        meta = json.loads(state["meta"] or b"{}")
        self._prepared = None
        if meta.get("base") != self.horizons.base:
            raise ValueError(
                f"the saved state has {meta.get('base')} windows, the model {self.horizons.base}"
            )
        self.newest = _time(meta["newest"])
        self.closed_until = _time(meta["closed_until"])
        # The held audit records were set by this clock.
        self.audit_ahead = meta.get("audit_ahead")
        self.audit_clock_told = bool(meta.get("audit_clock_told"))
        days: pl.DataFrame | None = None
        sums: pl.DataFrame | None = None
        has_levels = "levels" in state
        deferred = set(deferred)
        for name in sorted({*state, *deferred}):
            kind = name.partition(".")[0]
            data = state.get(name)
            if name == "meta" or (data is None and name not in deferred):
                continue
            self._stored[name] = kind
            if kind == "history":  # an older trovewatch's single frame too
                self._restore_segment(name, data)
                continue
            assert data is not None, f"{name}: only history is read back"
            frame = pl.read_parquet(io.BytesIO(data))
            if name in ("pending", "held"):
                # An older trovewatch kept the open windows' events (``pending``): they
                # are held as events until their windows close, as it would have, and
                # saved as ``held`` from now on.
                self.held = pl.concat([self.held, S.conform(frame.lazy()).select(KEPT).collect()])
                if name == "pending":
                    self._deletes.add(name)
            elif kind == "open":
                self._open.add(partials.conform(frame))
            elif kind == "discovered":  # an older one's single frame too
                self._keep(kind, name, frame)
            elif kind == "evicted":
                self.evicted = frame
            elif kind == "levels":
                # An older trovewatch kept no objects: null, each alert showing them all.
                self.levels = pl.concat([self._no_levels(), frame], how="diagonal_relaxed")
            elif kind == "days":
                days = frame
            elif kind == "object_days":  # an older trovewatch kept none: from now on
                self.object_days = frame.select(F.OBJECT_DAYS_SCHEMA.names()).cast(
                    F.OBJECT_DAYS_SCHEMA
                )
            elif kind == "sums":
                sums = frame
            elif kind == "continued":
                self.continued = frame.select(CONTINUED).cast(CONTINUED_SCHEMA)
        # New names go on after every saved one, the deferred history's too.
        names = {*state, *deferred}
        numbers = [int(n.partition(".")[2]) for n in names if n.partition(".")[2].isdigit()]
        self._seq = itertools.count(max(numbers, default=-1) + 1)
        if sums is not None:  # as of the last close that scored windows
            self.running.restore(sums, _time(meta.get("sums_at")))
        elif self.closed_until is not None:  # an older trovewatch's state: from the history
            history = self._history()
            self.running = Running.of_history(self.horizons, history, self.closed_until - self.base)
            self._writes["sums"] = b""
        if days is not None:
            self.running.days = days.cast(self.running.days.schema)
        else:  # an older trovewatch's state: summed again
            self._days_from_history(~pl.col(F.ACCOUNT).is_in(self._trained_accounts.implode()))
        if not has_levels and self.history:
            self._levels_from_history()
        self._release_saved_history()


OBJECT_DAY_GROUPS: Final = 8  # groups of accounts whose rows per table are carried at a time


@dataclass(frozen=True)
class Judged:
    """A close's windows judged (:meth:`Engine._judge`), before the state takes them in."""

    scored: pl.DataFrame  # the ``score`` output's rows
    levels: pl.DataFrame  # the flagged windows' alerted sums (alert_levels)
    windows: pl.DataFrame  # their history rows (HISTORY_SCHEMA)
    new_values: pl.DataFrame  # values first used in them (KNOWN_SCHEMA)
    days: pl.DataFrame | None  # untrained accounts' sums, for their earlier days
    leaving: dict[str, pl.DataFrame]  # history rows leaving each horizon (Running.leaving)
    object_days: pl.DataFrame  # their rows per (account, object, day) (OBJECT_DAYS_SCHEMA)


@dataclass(frozen=True)
class Prepared:
    """Windows judged ahead of their close (:meth:`Engine.prepare`): the close's cutoff,
    the partials judged, and the verdicts."""

    cutoff: datetime
    closing: pl.DataFrame
    judged: Judged


@dataclass
class Segment:
    """A close's windows in the history: the name it is saved as, its oldest and newest
    window start, and its rows (None once saved: read back when needed)."""

    name: str
    oldest: datetime
    newest: datetime
    rows: pl.DataFrame | None = None


def _span(segment: pl.DataFrame) -> tuple[datetime, datetime]:
    """A history segment's oldest and newest window start."""
    oldest, newest = segment[F.WINDOW].min(), segment[F.WINDOW].max()
    assert isinstance(oldest, datetime) and isinstance(newest, datetime)
    return oldest, newest


def _history_rows(activity: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """The history rows of newly scored windows: their volume signals, and whether they
    raised an alert."""
    flags = scored.select(F.ACCOUNT, F.WINDOW, pl.col("flagged").alias("alerted"))
    return (
        activity.join(flags, on=[F.ACCOUNT, F.WINDOW], how="left")
        .select(HISTORY_SCHEMA.names())
        .cast(HISTORY_SCHEMA)
    )


def _new_values(activity: pl.DataFrame) -> pl.DataFrame:
    """(account, kind, value) first used in these windows (``KNOWN_SCHEMA``)."""
    return pl.concat(
        [
            activity.select(F.ACCOUNT, pl.lit(kind).alias("kind"), pl.col(column).alias("value"))
            .explode("value")
            .drop_nulls("value")
            for kind, column in (
                ("object", "new_objects_list"),
                ("client", "new_clients_list"),
                ("app", "new_apps_list"),
            )
        ]
    ).cast(KNOWN_SCHEMA)


def _compact(segment: pl.DataFrame) -> pl.DataFrame:
    """A history segment as held in memory: each volume signal in the smallest integer
    type its values fit (most are counts under 256), about a third of the bytes of
    Int64; :func:`_full` gives the exact values back. Saved in checkpoints as
    ``HISTORY_SCHEMA``."""
    return segment.with_columns(
        segment[signal].shrink_dtype() for signal in F.VOLUME if signal in segment.columns
    )


def _full(segment: pl.DataFrame) -> pl.DataFrame:
    """A history segment (or part of one) in ``HISTORY_SCHEMA``'s types."""
    return segment.cast(HISTORY_SCHEMA)


def _kept(events: pl.DataFrame) -> pl.DataFrame:
    """The columns of ``events`` the engine keeps. A MariaDB slow-log record is filed at
    its end, as its audit record is (a long dump's two records close in one window), and
    only MariaDB statements keep the start of their text, to be paired by it."""
    is_mariadb = pl.col(S.SOURCE_FORMAT).is_in(mariadb.LOGS)
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


def _opened_before(held: pl.DataFrame, before: pl.Expr) -> pl.Series:
    """The rows (``_h``) of ``held`` that are MariaDB TABLE records ``before`` selects of
    a statement whose QUERY record it does not: a statement opens its tables when it
    begins and is logged when it ends."""
    statement = ["_conn", S.STATEMENT_ID]
    keyed = held.filter(mariadb.audit_statement()).with_columns(
        mariadb_audit.connection(pl.col(S.SESSION)).alias("_conn")
    )
    queries = keyed.filter(pl.col(S.QUERY).is_not_null()).select(*statement, before.alias("_b"))
    return (
        keyed.filter(before & pl.col(S.QUERY).is_null())
        .join(queries.filter(~pl.col("_b")), on=statement, how="semi")
        .join(queries.filter("_b"), on=statement, how="anti")
    )["_h"]


def _not_before(events: pl.DataFrame, closed: datetime | None) -> tuple[pl.DataFrame, int]:
    """``events`` with the ones timed before ``closed`` (the windows scored) moved to it,
    the first window still open, and how many those were."""
    if closed is None:
        return events, 0
    late = pl.col(S.TIME) < closed
    moved = events.with_columns(
        pl.when(late).then(pl.lit(closed)).otherwise(pl.col(S.TIME)).alias(S.TIME)
    )
    return moved, events.filter(late).height


def _ahead_by(events: pl.DataFrame, seconds: int) -> pl.DataFrame:
    """``events`` with the MariaDB audit records' times moved on by ``seconds``."""
    if seconds == 0:
        return events
    audit = pl.col(S.SOURCE_FORMAT) == mariadb.AUDIT
    moved = pl.col(S.TIME) + pl.duration(seconds=seconds)
    return events.with_columns(pl.when(audit).then(moved).otherwise(pl.col(S.TIME)).alias(S.TIME))


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step
