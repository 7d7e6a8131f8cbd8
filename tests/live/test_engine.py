"""The live engine scores exactly what the batch pipeline scores, however events arrive."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import features as F
from detector import formats, model, pipeline, settings
from detector import schema as S
from detector.formats import mariadb
from detector.formats.mariadb_audit import RECORD_START
from detector.live import engine as engine_module
from detector.live.engine import HISTORY_PREFIX, KEPT, Engine
from detector.live.follow import Follower
from detector.reader import Chunk
from detector.rejects import Quarantine
from tests.conftest import FIXTURES, REFERENCE_PG, audit_log_ahead, mariadb_windows_cut_at

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained() -> model.TrainedModel:
    return model.load(ROOT / "models" / "default")


@pytest.fixture(scope="module")
def week3() -> pl.DataFrame:
    """The sample logs' third week: after the bundled model's training period."""
    events, _ = pipeline.read_events([SAMPLE], since=datetime(2026, 10, 19, tzinfo=UTC))
    return events


def verdicts(scored: pl.DataFrame) -> pl.DataFrame:
    return scored.select("account", "window_start", "flagged", "severity", "score").sort(
        "account", "window_start"
    )


def stream(engine: Engine, events: pl.DataFrame, step: int) -> pl.DataFrame:
    """Feed ``events`` in slices of ``step``, closing windows after each, then flush."""
    parts = []
    for start in range(0, events.height, step):
        engine.add(events[start : start + step])
        parts.append(engine.close().scored)
    parts.append(engine.close(wall=FAR_FUTURE).scored)
    return pl.concat([p for p in parts if p.height])


def feed(engine: Engine, events: pl.DataFrame, step: int) -> tuple[pl.DataFrame, int, int]:
    """Feed ``events`` in slices of ``step``, closing windows after each, then flush: the
    scored windows, the events counted under the overflow account, and the most accounts
    with open windows at once."""
    parts, overflow, most_open = [], 0, 0
    for start in range(0, events.height, step):
        engine.add(events[start : start + step])
        most_open = max(most_open, engine._open_accounts().n_unique())
        closed = engine.close()
        parts.append(closed.scored)
        overflow += closed.overflow
    closed = engine.close(wall=FAR_FUTURE)
    scored = pl.concat([*(p for p in parts if p.height), closed.scored])
    return scored, overflow + closed.overflow, most_open


def per_account(scored: pl.DataFrame) -> pl.DataFrame:
    """Each account's statements and the objects it read, over all its windows."""
    return (
        scored.group_by("account")
        .agg(
            pl.col("features").struct.field("statements_5m").sum(),
            pl.col("objects").explode().drop_nulls().unique().sort(),
        )
        .sort("account")
    )


@pytest.mark.parametrize("step", [997, 20_000])
def test_streaming_gives_the_batch_verdicts(
    trained: model.TrainedModel, week3: pl.DataFrame, step: int
) -> None:
    conf = settings.Settings()
    batch = pipeline.score(week3, trained, conf)
    live = stream(Engine(trained, conf), week3, step)
    assert live.height == batch.height
    joined = verdicts(batch).join(verdicts(live), on=["account", "window_start"], suffix="_live")
    assert joined.height == batch.height
    assert (joined["flagged"] == joined["flagged_live"]).all()
    assert (joined["score"] - joined["score_live"]).abs().max() < 1e-3  # type: ignore[operator]
    flagged = set(live.filter("flagged")["account"])
    assert {"web_shop", "analyst_ben", "support_eve", "reporting_svc", "hr_app"} <= flagged


def test_a_restored_snapshot_continues_where_it_stopped(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """A checkpoint mid-stream, restored into a fresh engine (as after kill -9), scores
    the rest as if nothing had happened."""
    conf = settings.Settings()
    half = week3.height // 2
    whole = stream(Engine(trained, conf), week3, 5_000)

    first = Engine(trained, conf)
    before = stream_no_flush(first, week3[:half], 5_000)
    resumed = Engine(trained, conf)
    resumed.restore(first.snapshot())
    after = stream(resumed, week3[half:], 5_000)
    both = pl.concat([before, after])
    assert verdicts(both).equals(verdicts(whole))


def stream_no_flush(engine: Engine, events: pl.DataFrame, step: int) -> pl.DataFrame:
    parts = [pl.DataFrame()]
    for start in range(0, events.height, step):
        engine.add(events[start : start + step])
        parts.append(engine.close().scored)
    return pl.concat([p for p in parts if p.height])


def test_late_events_count_in_the_next_open_window(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    conf = settings.Settings(lateness="0s")
    engine = Engine(trained, conf)
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    early, rest = day[:100], day[100:]
    engine.add(rest)
    scored = engine.close().scored
    assert engine.closed_until is not None
    engine.add(early)  # all of them older than the windows already scored
    late = engine.close(wall=FAR_FUTURE)
    assert late.late_events == early.filter(pl.col(S.TIME) < engine_cutoff(scored)).height
    total = pl.concat([scored, late.scored])
    rows = total.select(pl.col("features").struct.field("statements_5m").sum()).item()
    assert rows == day.filter(pl.col(S.SUCCESS)).height  # nothing lost, nothing twice


def test_late_events_after_a_quiet_close_are_scored_by_the_wall_clock(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Found by hand: events arriving late after the wall clock had closed every window
    of a quiet database (a slow source's, a push of older lines) were moved to the next
    window, past the newest event's, where the wall clock's close stops: never scored,
    never in the totals, until some newer event came."""
    conf = settings.Settings(lateness="0s")
    engine = Engine(trained, conf)
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    early, rest = day[:100], day[100:]
    engine.add(rest)
    scored = engine.close(wall=FAR_FUTURE).scored  # quiet: every window closed
    engine.add(early)
    late = engine.close(wall=FAR_FUTURE)  # still quiet: nothing newer comes
    assert late.late_events == early.height
    assert late.scored.height, "the late events' window was never closed"
    total = pl.concat([scored, late.scored])
    rows = total.select(pl.col("features").struct.field("statements_5m").sum()).item()
    assert rows == day.filter(pl.col(S.SUCCESS)).height  # nothing lost, nothing twice


def engine_cutoff(scored: pl.DataFrame) -> datetime:
    end = scored["window_end"].max()
    assert isinstance(end, datetime)
    return end


def test_windows_wait_for_the_lateness_allowed(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    conf = settings.Settings(lateness="2m")
    engine = Engine(trained, conf)
    first = week3[S.TIME][0]
    window_end = first.replace(minute=first.minute - first.minute % 5, second=0, microsecond=0)
    window_end += timedelta(minutes=5)
    until = week3.filter(pl.col(S.TIME) < window_end + timedelta(minutes=1, seconds=59))
    engine.add(until)
    assert engine.close().scored.height == 0  # 1m59s past the end: still open
    engine.add(week3.filter(pl.col(S.TIME) >= window_end + timedelta(minutes=2)).head(1))
    closed = engine.close().scored
    assert closed.height > 0
    assert (closed["window_end"] <= window_end).all()


def test_the_wall_clock_never_closes_windows_ahead_of_the_events(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Started on an old log (or a server whose clock is behind), the wall clock must
    not close today's windows: the old events would all count as late."""
    engine = Engine(trained, settings.Settings(lateness="1s"))
    assert engine.close(wall=FAR_FUTURE).scored.height == 0  # nothing read yet
    first = week3.head(500)
    engine.add(first)
    closed = engine.close(wall=FAR_FUTURE)
    assert closed.late_events == 0
    assert engine.closed_until is not None
    assert engine.closed_until <= first[S.TIME].max() + timedelta(minutes=5)
    later = week3.filter(pl.col(S.TIME) >= engine.closed_until).head(500)
    engine.add(later)
    assert engine.close(wall=FAR_FUTURE).late_events == 0  # the next events are not late


def test_windows_wait_for_every_input_still_behind(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Two inputs read at different speeds (MariaDB's audit and slow logs while
    catching up): a window closes once the one behind has passed it too, so none of
    its events arrive late, and the verdicts are those of one input read in order."""
    conf = settings.Settings(lateness="0s")
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    web_shop = pl.col(S.ACCOUNT) == "web_shop"
    noon = datetime(2026, 10, 19, 12, tzinfo=UTC)
    engine = Engine(trained, conf)
    engine.add(day.filter(~web_shop), source="fast")  # the whole day
    engine.add(day.filter(web_shop, pl.col(S.TIME) < noon), source="slow")  # its morning
    morning = engine.close(behind={"slow"})
    assert morning.scored["window_end"].max() <= noon  # type: ignore[operator]
    engine.add(day.filter(web_shop, pl.col(S.TIME) >= noon), source="slow")
    rest = engine.close(wall=FAR_FUTURE)
    assert rest.late_events == 0
    in_order = Engine(trained, conf)
    in_order.add(day)
    expected = in_order.close(wall=FAR_FUTURE).scored
    got = pl.concat([morning.scored, rest.scored])
    assert verdicts(got).equals(verdicts(expected))


def test_complementary_logs_read_apart_are_joined_as_score_joins_them(
    trained: model.TrainedModel,
) -> None:
    """Snowflake's query and access histories, added as two inputs: each statement once,
    with the access history's objects, as the batch reader gives it."""
    fixtures = ROOT / "tests" / "fixtures" / "snowflake"
    queries, _ = pipeline.read_events([fixtures / "query_history.ndjson"])
    access, _ = pipeline.read_events([fixtures / "access_history.ndjson"])
    joined, _ = pipeline.read_events(
        [fixtures / "query_history.ndjson", fixtures / "access_history.ndjson"]
    )
    assert joined.height < queries.height + access.height  # the batch reader joined them
    conf = settings.Settings()
    engine = Engine(trained, conf)
    engine.add(queries, source="query_history")
    engine.add(access, source="access_history")
    live = engine.close(wall=FAR_FUTURE).scored
    # The bundled model would refuse these logs' fields in `score` (its field check); the
    # windows are compared past it.
    activity = F.window_activity(joined.lazy(), "5m", trained.profile.known.lazy()).collect()
    batch = pipeline.score_windows(activity, trained, conf)
    assert per_account(live).equals(per_account(batch))


def checkpoint_through(store: dict[str, bytes], engine: Engine) -> set[str]:
    """Save the engine's changes as the store saves a checkpoint (named blobs replaced,
    ``None`` deleted), tell the engine they are saved; return the names written."""
    written = set()
    for name, data in engine.snapshot().items():
        if data is None:
            store.pop(name, None)
        else:
            store[name] = data
            written.add(name)
    engine.saved()
    return written


def test_checkpoints_of_only_the_changes_restore_the_whole_state(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Each checkpoint writes what changed: while no window closes, only the new events'
    partials (never the history); restored from all of them, after many checkpoints and
    closes, a fresh engine scores the rest as if nothing had happened."""
    conf = settings.Settings()
    half = week3.height // 2
    whole = stream(Engine(trained, conf), week3, 300)
    first = Engine(trained, conf)
    saved: dict[str, bytes] = {}
    parts = []
    for start in range(0, half, 300):
        chunk = week3[start : min(start + 300, half)]
        first.add(chunk[:150])
        written = checkpoint_through(saved, first)  # nothing closed since the last one
        assert written <= {"meta", "held", "continued"} | {
            n for n in written if n.startswith("open.")
        }
        first.add(chunk[150:])
        parts.append(first.close().scored)
        checkpoint_through(saved, first)
    assert any(n.startswith("history.") for n in saved)
    resumed = Engine(trained, conf)
    resumed.restore(saved)
    parts.append(stream(resumed, week3[half:], 300))
    assert verdicts(pl.concat([p for p in parts if p.height])).equals(verdicts(whole))


def test_saved_window_history_is_read_back_not_held_with_the_same_verdicts(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Given the saved checkpoint to read from, the engine holds no saved history segment
    in memory: a close reads back those whose windows leave a horizon. Its verdicts are
    those of an engine holding everything, over a week of closes."""
    conf = settings.Settings()
    whole = stream(Engine(trained, conf), week3, 300)
    saved: dict[str, bytes] = {}
    engine = Engine(trained, conf, saved=saved.get)
    parts = []
    for start in range(0, week3.height, 300):
        engine.add(week3[start : start + 300])
        parts.append(engine.close().scored)
        checkpoint_through(saved, engine)
        assert all(segment.rows is None for segment in engine.history)
    parts.append(engine.close(wall=FAR_FUTURE).scored)
    assert engine.history[-1].newest - engine.history[0].oldest > timedelta(days=2)
    assert verdicts(pl.concat([p for p in parts if p.height])).equals(verdicts(whole))


def test_a_restart_holds_no_window_history_and_takes_the_sums_as_saved(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """Restored with its window history left to be read back (as serve restarts), the
    engine holds none of it and takes the horizon sums saved at the last close, not
    summed again from days of history; it then scores the rest as if nothing happened."""
    conf = settings.Settings()
    half = week3.height // 2
    whole = stream(Engine(trained, conf), week3, 300)
    saved: dict[str, bytes] = {}
    first = Engine(trained, conf, saved=saved.get)
    parts = []
    for start in range(0, half, 300):
        first.add(week3[start : min(start + 300, half)])
        parts.append(first.close().scored)
        checkpoint_through(saved, first)
    history = [name for name in saved if name.startswith(HISTORY_PREFIX)]
    assert len(history) > 5 and "sums" in saved
    read: list[str] = []
    resumed = Engine(trained, conf, saved=lambda name: read.append(name) or saved.get(name))
    resumed.restore({n: d for n, d in saved.items() if n not in history}, deferred=history)
    assert all(segment.rows is None for segment in resumed.history)
    assert resumed.history == first.history  # names, oldest and newest windows
    assert resumed.running.at == first.running.at
    assert resumed.running.sums.equals(first.running.sums)
    assert sorted(read) == sorted(history)  # each once, for its window starts
    # New names go on after the deferred segments': none is written over.
    alone = Engine(trained, conf, saved=saved.get)
    alone.restore({"meta": saved["meta"], "sums": saved["sums"]}, deferred=history)
    assert next(alone._seq) > max(int(name.partition(".")[2]) for name in history)
    parts.append(stream(resumed, week3[half:], 300))
    assert verdicts(pl.concat([p for p in parts if p.height])).equals(verdicts(whole))


def test_an_account_a_retrained_model_no_longer_knows_keeps_its_earlier_days(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """A retrained model that was not trained on an account (it went quiet in the new
    training period) judges it against its own earlier days: swapped in, the engine
    sums that account's days again from the window history it holds."""
    engine = Engine(trained, settings.Settings())
    stream_no_flush(engine, week3[: week3.height // 2], 1_000)
    account = "analyst_ben"
    assert account not in engine.running.days[F.ACCOUNT].to_list()  # trained: none kept
    largest = trained.profile.account_max.filter(pl.col(F.ACCOUNT) != account)
    successor = model.TrainedModel(
        trained.detector, trained.profile.with_account_max(largest), trained.manifest
    )
    engine.use(successor)
    days = engine.running.days.filter(pl.col(F.ACCOUNT) == account)
    history = engine._history(accounts=pl.col(F.ACCOUNT) == account)
    assert days[F.WINDOW].to_list() == history[F.WINDOW].dt.truncate("1d").unique().sort().to_list()
    column = F.col_name("rows_read", "1d")
    assert (
        days[column].max()
        == F.add_horizons(history.lazy(), trained.horizons).collect()[column].max()
    )


def test_an_older_snapshot_with_events_is_restored(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """A state database of the trovewatch before partials (open windows kept as events,
    ``pending``; one ``history`` and one ``discovered`` frame) is continued without loss,
    and saved in the new form from the next checkpoint on."""
    conf = settings.Settings()
    half = week3.height // 2
    whole = stream(Engine(trained, conf), week3, 5_000)
    first = Engine(trained, conf)
    before = stream_no_flush(first, week3[:half], 5_000)
    assert first.closed_until is not None
    old_meta = {
        "newest": first.newest.isoformat() if first.newest else None,
        "closed_until": first.closed_until.isoformat(),
        "base": "5m",
    }
    pending = week3[:half].filter(pl.col(S.TIME) >= first.closed_until).select(KEPT)
    old = {
        "meta": json.dumps(old_meta).encode(),
        "pending": parquet(pending),
        "history": parquet(pl.concat([s.rows for s in first.history if s.rows is not None])),
        "discovered": parquet(pl.concat(first.discovered)),
    }
    resumed = Engine(trained, conf)
    resumed.restore(old)
    changes = resumed.snapshot()
    assert changes["pending"] is None and changes["held"] is not None  # the new form
    after = stream(resumed, week3[half:], 5_000)
    assert verdicts(pl.concat([before, after])).equals(verdicts(whole))


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_open_windows_keep_aggregates_not_events(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """A day of events read with nothing closing: the engine keeps no event but the
    sessions' latest statements of the last read's final 2 s (the next read may continue
    them)."""
    engine = Engine(trained, settings.Settings(lateness="3650d"))
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    for start in range(0, day.height, 2_000):
        engine.add(day[start : start + 2_000])
    last_read = day[(day.height - 1) // 2_000 * 2_000 :]
    final = last_read.filter(pl.col(S.TIME) >= last_read[S.TIME].max() - timedelta(seconds=2))
    assert engine.held.height <= final.height < 10
    assert engine.open_activity()["statements"].sum() == day[S.SUCCESS].sum()


def test_a_statement_split_between_two_reads_counts_once(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """pgAudit logs a statement once per relation; a read may end between its lines.
    The two halves, added apart, count as the one statement batch scoring sees."""
    conf = settings.Settings()
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    multi = pl.col(S.OBJECTS).list.len() >= 2
    assert day.filter(multi).height > 20
    heads = day.with_columns(
        pl.when(multi).then(pl.col(S.OBJECTS).list.head(1)).otherwise(pl.col(S.OBJECTS))
    )
    tails = day.filter(multi).with_columns(pl.col(S.OBJECTS).list.slice(1))
    # Each read ends after the first relation line of a statement naming several; the
    # next read starts with the rest of it.
    ends = day.with_row_index().filter(multi)["index"].to_list()
    engine = Engine(trained, conf)
    parts = []
    start = 0
    for cut, end in enumerate(ends):
        read = heads[start : end + 1]
        if cut:
            read = pl.concat([tails[cut - 1], read])
        engine.add(read)
        parts.append(engine.close().scored)
        start = end + 1
    engine.add(pl.concat([tails[-1], day[start:]]))
    parts.append(engine.close(wall=FAR_FUTURE).scored)
    live = pl.concat([p for p in parts if p.height])
    batch = stream(Engine(trained, conf), day, 1_000)
    assert verdicts(live).equals(verdicts(batch))
    objects = pl.col("objects").list.len().sum()
    assert live.select(objects).item() == batch.select(objects).item()


def test_a_flood_of_account_names_stays_within_max_accounts(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """5,000 distinct account names, each active once, over a day: the accounts with
    state never pass the cap once their windows close, the least recently active go
    first, every event is still scored once, and the accounts the model knows keep
    their history."""
    cap = 300
    day = week3.filter(pl.col(S.TIME) < datetime(2026, 10, 20, tzinfo=UTC))
    flood = day.sample(5_000, with_replacement=True, seed=1).with_columns(
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.ACCOUNT),
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.SESSION),
    )
    events = pl.concat([day, flood]).sort(S.TIME)
    engine = Engine(trained, settings.Settings(max_accounts=cap))
    evicted, statements, tracked, names = 0, 0, [], set()
    for start in range(0, events.height, 500):
        engine.add(events[start : start + 500])
        closed = engine.close()
        evicted += closed.evicted
        statements += (
            closed.scored.select(pl.col("features").struct.field("statements_5m").sum()).item() or 0
        )
        names |= set(closed.scored["account"]) if closed.scored.height else set()
        tracked.append(engine.accounts)
    closed = engine.close(wall=FAR_FUTURE)
    evicted += closed.evicted
    statements += (
        closed.scored.select(pl.col("features").struct.field("statements_5m").sum()).item() or 0
    )
    names |= set(closed.scored["account"]) if closed.scored.height else set()
    assert max(tracked) <= cap + 500  # at most one read's new accounts above the cap
    assert engine.accounts <= cap
    # each name with windows of its own (not folded into OVERFLOW) past the cap was evicted
    assert evicted >= len(names) - cap
    assert len(names) > 2 * cap
    assert statements == events[S.SUCCESS].sum()  # nothing lost or counted twice
    kept = set(engine._history()[F.ACCOUNT].to_list())
    assert set(day[S.ACCOUNT].unique()) <= kept  # the real accounts were not the ones dropped


def test_a_flood_of_names_within_one_window_is_counted_together_past_max_accounts(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """5,000 new account names within one 5-minute window, beside the real accounts,
    with a cap of 300: no more than 300 accounts hold open windows (memory is bounded
    while the window is open, not only once it closes); the names past the cap are
    counted together under OVERFLOW, which is flagged and says why; the real accounts
    keep their own windows; every statement is scored once."""
    cap = 300
    hour = week3.filter(
        pl.col(S.TIME).is_between(
            datetime(2026, 10, 20, 10, tzinfo=UTC), datetime(2026, 10, 20, 11, tzinfo=UTC)
        )
    )
    in_window = datetime(2026, 10, 20, 10, 30, tzinfo=UTC)
    flood = hour.sample(5_000, with_replacement=True, seed=2).with_columns(
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.ACCOUNT),
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.SESSION),
        (pl.lit(in_window) + pl.duration(milliseconds=pl.int_range(pl.len()) * 50)).alias(S.TIME),
    )
    events = pl.concat([hour, flood]).sort(S.TIME)
    engine = Engine(trained, settings.Settings(max_accounts=cap))
    scored, overflow, most_open = feed(engine, events, 500)

    real = set(hour[S.ACCOUNT].unique())
    assert most_open <= cap + len(real)  # the real accounts are always let in
    statements = scored.select(pl.col("features").struct.field("statements_5m").sum()).item()
    assert statements == events[S.SUCCESS].sum()  # nothing lost or counted twice
    folded = scored.filter(pl.col("account") == engine_module.OVERFLOW)
    assert 0 < overflow <= flood.height
    assert real <= set(scored["account"])  # each real account kept its own windows
    alone = {a for a in scored["account"] if a.startswith("flood_")}
    assert 0 < len(alone) <= cap  # the first names, while there was room
    rest = flood.filter(~pl.col(S.ACCOUNT).is_in(list(alone)))
    assert overflow == rest.height
    assert folded.select(pl.col("features").struct.field("statements_5m").sum()).item() == (
        rest[S.SUCCESS].sum()
    )
    assert folded["flagged"].all()
    assert folded["severity"].is_in(["high", "critical"]).all()
    assert all(rs[0].endswith("a flood of new names") for rs in folded["reasons"].to_list())


def test_a_real_account_named_like_the_overflow_bucket_keeps_its_own_windows(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """A role may be named "(overflow)" (PostgreSQL's quoted names, MariaDB's user
    names: both servers log it as it is). When a flood of new names is folded together
    past max_accounts in the window it is active in, its windows still count its own
    statements only and are not flagged as the flood; the flood has a bucket of its own."""
    cap = 50
    hour = week3.filter(
        pl.col(S.TIME).is_between(
            datetime(2026, 10, 20, 10, tzinfo=UTC), datetime(2026, 10, 20, 11, tzinfo=UTC)
        )
    )
    named = pl.col(S.ACCOUNT) == "web_admin"  # active before and during the flood's window
    assert hour.filter(named, pl.col(S.TIME).dt.minute().is_between(30, 34)).height > 0
    hour = hour.with_columns(
        pl.when(named).then(pl.lit("(overflow)")).otherwise(pl.col(S.ACCOUNT)).alias(S.ACCOUNT)
    )
    flood = hour.sample(1_000, with_replacement=True, seed=3).with_columns(
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.ACCOUNT),
        (pl.lit("flood_") + pl.int_range(pl.len()).cast(pl.String)).alias(S.SESSION),
        (
            pl.lit(datetime(2026, 10, 20, 10, 30, tzinfo=UTC))
            + pl.duration(milliseconds=pl.int_range(pl.len()) * 200)
        ).alias(S.TIME),
    )
    events = pl.concat([hour, flood]).sort(S.TIME)
    engine = Engine(trained, settings.Settings(max_accounts=cap))
    scored, overflow, _ = feed(engine, events, 200)
    statements = pl.col("features").struct.field("statements_5m")

    real = scored.filter(pl.col("account") == "(overflow)")
    own = hour.filter(pl.col(S.ACCOUNT) == "(overflow)")
    assert real.select(statements.sum()).item() == own[S.SUCCESS].sum()
    assert not any("flood of new names" in r for rs in real["reasons"].to_list() for r in rs)
    bucket = scored.filter(pl.col("account") == engine_module.OVERFLOW)
    assert overflow > 0 and bucket.height and bucket["flagged"].all()
    assert scored.select(statements.sum()).item() == events[S.SUCCESS].sum()  # each once


def test_an_evicted_account_that_returns_sums_only_its_windows_since_after_more_evictions(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """With max_accounts 2, an account reading 1,000 rows at 10:00 is evicted, then 2 more
    accounts are (more than the cap since it). Back at 10:40 and 11:05 with 5 rows each,
    its 1-hour sum at 11:05 is those 10 rows: its 10:00 window, dropped at the eviction,
    is not taken out of the sums as it leaves the hour (before: -990), and its windows
    say that its history is incomplete."""
    template = week3.filter(pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0).row(0, named=True)
    day = datetime(2026, 10, 21, tzinfo=UTC)
    engine = Engine(trained, settings.Settings(max_accounts=2))

    def close_after(reads: list[tuple[str, timedelta, int]]) -> pl.DataFrame:
        rows = [
            {**template, S.ACCOUNT: who, S.SESSION: f"{who}{at}", S.TIME: day + at, S.ROWS: n}
            for who, at, n in reads
        ]
        engine.add(pl.DataFrame(rows, schema=week3.schema))
        last = max(at for _, at, _ in reads)
        return engine.close(wall=day + last + timedelta(minutes=10)).scored

    h, m = timedelta(hours=1), timedelta(minutes=1)
    close_after([("victim", 10 * h, 1_000)])
    close_after([("a1", 10 * h + 10 * m, 1), ("a2", 10 * h + 10 * m, 1)])  # victim, a1 go
    close_after([("b1", 10 * h + 20 * m, 1), ("b2", 10 * h + 20 * m, 1)])  # a2, b1 go
    close_after([("victim", 10 * h + 40 * m, 5)])
    back = close_after([("victim", 11 * h + 5 * m, 5)]).row(0, named=True)
    assert back["account"] == "victim"
    assert back["features"]["rows_read_1h"] == 5 + 5
    assert back["features"]["rows_read_1d"] == 5 + 5
    assert "victim" in engine.evicted[F.ACCOUNT].to_list()  # its flagged windows say so


def test_evicted_names_forgotten_past_the_longest_horizon_stay_forgotten_after_a_restart(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """An evicted account's name is kept for the longest horizon (3 days), then dropped:
    the checkpoints say so too, so a restart does not bring it back (before: the saved
    list was written only at an eviction, and kept the names dropped since)."""
    template = week3.filter(pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0).row(0, named=True)
    day = datetime(2026, 10, 21, tzinfo=UTC)
    engine = Engine(trained, settings.Settings(max_accounts=2))
    saved: dict[str, bytes] = {}
    for at, names in [
        (timedelta(hours=10), ["gone1", "gone2", "gone3"]),
        (timedelta(days=4), ["later1", "later2"]),
    ]:
        rows = [
            {**template, S.ACCOUNT: who, S.SESSION: who, S.TIME: day + at, S.ROWS: 1}
            for who in names
        ]
        engine.add(pl.DataFrame(rows, schema=week3.schema))
        engine.close(wall=day + at + timedelta(minutes=10))
        checkpoint_through(saved, engine)
        if at < timedelta(days=1):
            assert engine.evicted.height > 0
    assert not {"gone1", "gone2", "gone3"} & set(engine.evicted[F.ACCOUNT])
    resumed = Engine(trained, settings.Settings(max_accounts=2))
    resumed.restore(saved)
    assert resumed.evicted.sort(F.ACCOUNT).equals(engine.evicted.sort(F.ACCOUNT))


def test_no_log_line_names_the_overflow_bucket() -> None:
    """The bucket's name starts with a NUL, which no account name holds (PostgreSQL's and
    MariaDB's protocols end names with one). A log line naming it anyway, damaged or
    forged, is read with U+FFFD for the NUL: an account of its own, not the bucket."""
    reference = ROOT / "tests" / "fixtures" / "reference"
    lines = (reference / "postgres15-pgaudit1.7.0" / "postgresql.json").read_text().splitlines()
    record = json.loads(next(line for line in lines if "AUDIT: SESSION" in line))
    pg = json.dumps(record | {"user": engine_module.OVERFLOW}) + "\n"
    audit = (reference / "mariadb10.11" / "server_audit.log").read_bytes().splitlines()
    maria = next(line for line in audit if b",4,6,QUERY," in line) + b"\n"
    for name, data in (
        ("pgaudit-jsonlog", pg.encode()),
        ("mariadb-audit", maria.replace(b",vm,bob,", b",vm,\x00(overflow),")),
    ):
        events = formats.native(name).parse(Chunk("log", data, 1)).events
        assert events[S.ACCOUNT].to_list() == ["\ufffd(overflow)"], name


def test_closing_windows_scored_a_few_accounts_at_a_time_give_the_batch_verdicts(
    trained: model.TrainedModel, week3: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close is scored in batches of accounts (bounded memory for 100,000 accounts);
    batches of 2 accounts give the verdicts of scoring all at once."""
    monkeypatch.setattr(engine_module, "SCORE_BATCH", 2)
    conf = settings.Settings()
    assert week3[S.ACCOUNT].n_unique() >= 2 * 5
    batch = pipeline.score(week3, trained, conf)
    live = stream(Engine(trained, conf), week3, 20_000)
    joined = verdicts(batch).join(verdicts(live), on=["account", "window_start"], suffix="_live")
    assert joined.height == batch.height == live.height
    assert (joined["flagged"] == joined["flagged_live"]).all()
    assert (joined["score"] - joined["score_live"]).abs().max() < 1e-3  # type: ignore[operator]


def _audit_line(n: int, table: str) -> str:
    """A pgAudit jsonlog line of statement ``n`` (one per relation it reads; a COPY of the
    table to the client without one), all at one millisecond, as a busy session logs."""
    if table.startswith("COPY "):
        audit = f"{n},1,READ,COPY,,,{table} TO STDOUT;,<none>,0"
    else:
        audit = f"{n},1,READ,SELECT,TABLE,{table},SELECT * FROM t{n};,<none>,5"
    return json.dumps(
        {
            "timestamp": "2026-10-21 10:00:00.123 UTC",
            "user": "web_shop",
            "dbname": "shop",
            "pid": 4242,
            "remote_host": "10.0.0.9",
            "session_id": "6ac54933.1092",
            "line_num": 1,
            "ps": "SELECT",
            "error_severity": "LOG",
            "message": f"AUDIT: SESSION,{audit}",
            "application_name": "shop-api",
            "backend_type": "client backend",
        }
    )


def test_a_statement_split_between_reads_counts_once_when_its_session_shares_a_millisecond(
    trained: model.TrainedModel,
) -> None:
    # A COPY, then a statement reading three tables whose first line ends the first read.
    # Events of one read need not be in line order (the parser puts exports together), so
    # "latest" is every statement at the session's latest time.
    lines = [_audit_line(1, "s.a"), _audit_line(2, "COPY s.a")]
    lines += [_audit_line(3, t) for t in ("s.a", "s.b", "s.c")]
    fmt = formats.native("pgaudit-jsonlog")
    engine = Engine(trained, settings.load())
    for first, part in ((1, lines[:3]), (4, lines[3:])):
        parsed = fmt.parse(Chunk("log", "".join(f"{s}\n" for s in part).encode(), first))
        engine.add(fmt.finish(parsed.events))
    window = engine.close(wall=FAR_FUTURE).scored.row(0, named=True)
    assert window["features"]["statements_5m"] == 3
    assert window["objects"] == ["s.a", "s.b", "s.c"]


def test_a_busy_session_has_only_its_latest_statement_held_between_reads(
    trained: model.TrainedModel,
) -> None:
    """A session logging 50 statements within a second: the next read may continue only
    its latest, so only that one stays an event; the other 49 are in the open windows.
    (All 50 were held, and merged again at every read, while a window expression nested
    in another took each statement for its session's latest: serve read 4x slower.)"""
    lines = [
        _audit_line(n, t).replace("10:00:00.123", f"10:00:00.{n * 15:03d}")
        for n in range(1, 51)
        for t in (("s.a", "s.b") if n == 50 else ("s.a",))
    ]
    fmt = formats.native("pgaudit-jsonlog")
    engine = Engine(trained, settings.load())
    parsed = fmt.parse(Chunk("log", "".join(f"{s}\n" for s in lines).encode(), 1))
    engine.add(fmt.finish(parsed.events))
    assert engine.held[S.STATEMENT_ID].unique().to_list() == ["50.1"]
    assert engine.open_activity()["statements"].sum() == 50


def test_the_rest_of_a_statement_after_its_window_closed_adds_no_statement(
    trained: model.TrainedModel,
) -> None:
    """The first of a statement's three lines is read, its writer pauses past the
    lateness, the window closes with it; the other two lines then arrive late (after a
    checkpoint and restore too): they add their tables, not a second statement or its
    rows again."""
    lines = [_audit_line(1, "s.a"), *(_audit_line(2, t) for t in ("s.a", "s.b", "s.c"))]
    fmt = formats.native("pgaudit-jsonlog")
    first = Engine(trained, settings.load())
    part = fmt.parse(Chunk("log", "".join(f"{s}\n" for s in lines[:2]).encode(), 1))
    first.add(fmt.finish(part.events))
    closed = first.close(wall=FAR_FUTURE).scored.row(0, named=True)
    assert closed["features"]["statements_5m"] == 2
    resumed = Engine(trained, settings.load())
    resumed.restore(first.snapshot())
    later = _audit_line(3, "s.d").replace("10:00:00.123", "10:07:00.000")
    part = fmt.parse(Chunk("log", "".join(f"{s}\n" for s in [*lines[2:], later]).encode(), 3))
    resumed.add(fmt.finish(part.events))
    window = resumed.close(wall=FAR_FUTURE).scored.row(0, named=True)
    assert window["window_start"] == datetime(2026, 10, 21, 10, 5, tzinfo=UTC)
    assert window["features"]["statements_5m"] == 1  # statement 3 only
    assert window["features"]["rows_read_5m"] == 5
    assert sorted(window["objects"]) == ["s.b", "s.c", "s.d"]


def test_a_statements_second_line_after_its_window_closed_adds_no_statement(
    trained: model.TrainedModel,
) -> None:
    """A real PostgreSQL 15 + pgAudit 1.7 log (tests/fixtures/reference): alice's ``COPY
    (SELECT ...) TO STDOUT`` is logged as its SELECT (``7,1``), then the COPY (``7,2``).
    A read ends between the two and the window closes (its writer paused past the
    lateness); the COPY's line comes in the next read, late. Each account's statements,
    closed and open windows together, are those the server logged, one per (session,
    statement id) (before, the COPY's line counted a second statement)."""
    log = REFERENCE_PG / "postgresql.json"
    lines = log.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "AUDIT: SESSION,7,1,READ,SELECT" in line) + 1
    assert "AUDIT: SESSION,7,2,READ,COPY" in lines[at]
    fmt = formats.native("pgaudit-jsonlog")
    engine = Engine(trained, settings.load())
    closed = []
    for first, part in ((1, lines[:at]), (at + 1, lines[at:])):
        parsed = fmt.parse(Chunk(str(log), "".join(part).encode(), first))
        engine.add(fmt.finish(parsed.events))
        closed.append(engine.close(wall=FAR_FUTURE))
    assert closed[0].scored.height and closed[1].late_events  # the COPY's line came late
    statements = pl.col("features").struct.field("statements_5m").alias("statements")
    windows = [
        *(c.scored.select("account", statements) for c in closed if c.scored.height),
        engine.open_activity().select("account", "statements"),
    ]
    got = pl.concat(windows, how="vertical_relaxed").group_by("account").agg(pl.sum("statements"))
    # The server's statements, read without trovewatch: (session, statement id) per user.
    logged: dict[str, set[tuple[str, str]]] = {}
    for line in lines:
        record = json.loads(line)
        audit = re.match(r"AUDIT: (?:SESSION|OBJECT),(\d+),", record["message"])
        if audit and record.get("user"):
            logged.setdefault(record["user"], set()).add((record["session_id"], audit[1]))
    assert dict(got.sort("account").iter_rows()) == {u: len(s) for u, s in sorted(logged.items())}


def test_a_mariadb_statement_whose_query_record_comes_in_the_next_read_counts_once(
    trained: model.TrainedModel, tmp_path: Path
) -> None:
    """A followed MariaDB audit log often ends on a QUERY line, the rest written later.
    The follower holds that line back (it may still grow), so the statement's TABLE
    records come in one read, with its connection's CONNECT, and its QUERY record in
    the next, without it: the engine counts it once, with its tables, as ``score``
    does on the whole log (real 10.11 output)."""
    audit = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11" / "server_audit.log"
    lines = audit.read_bytes().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if b",4,5,QUERY," in line) + 1  # INSERT
    log = tmp_path / "server_audit.log"
    log.write_bytes(b"".join(lines[:end]))
    fmt = formats.native("mariadb-audit")
    clock = [0.0]
    follower = Follower([str(log)], record_start=lambda path: RECORD_START, clock=lambda: clock[0])
    engine = Engine(trained, settings.Settings())
    ends = []

    def follow() -> None:
        for read in follower.poll():
            ends.append(read.data.splitlines()[-1])
            engine.add(fmt.parse(Chunk(read.source, read.data, read.first_line)).events)

    follow()
    with log.open("ab") as fh:
        fh.write(b"".join(lines[end:]))
    follow()
    clock[0] += follower.idle_flush + 1  # the file is quiet: its last record is released
    follow()
    assert ends[0].endswith(b",4,5,READ,mysql,index_stats,")  # the INSERT's QUERY came later
    live = engine.close(wall=FAR_FUTURE).scored
    # The bundled model would refuse this log's fields in `score` (its field check); the
    # windows are compared past it.
    whole, _ = pipeline.read_events([audit])
    activity = F.window_activity(whole.lazy(), "5m", trained.profile.known.lazy()).collect()
    batch = pipeline.score_windows(activity, trained, settings.Settings())
    assert per_account(live).row(0)[:2] == ("bob", 7)  # bob's 7 statements that succeeded
    assert per_account(live).equals(per_account(batch))


@pytest.mark.parametrize("another_table", [False, True])
def test_alerted_levels_hold_back_the_same_repeats_live_and_after_a_restart(
    trained: model.TrainedModel, week3: pl.DataFrame, another_table: bool
) -> None:
    """A pull alerted on, then the same pull again within 3 days: the batch run alerts
    once; so does the engine, also when it restarts from a checkpoint in between. The
    same volume of another table the account reads (the leak going on, table by table)
    alerts again, in both, naming that table."""
    conf = settings.Settings()
    reads = week3.filter(pl.col(S.ACCOUNT) == "analyst_ben", pl.col(S.ROWS) > 0)
    template = reads.row(0, named=True)
    known = trained.profile.known.filter(
        pl.col(F.ACCOUNT) == "analyst_ben", pl.col("kind") == "object"
    )["value"]
    other = next(o for o in known.sort() if o not in template[S.OBJECTS])
    first = datetime(2026, 10, 21, 10, 2, tzinfo=UTC)
    pulls = [(first, 400_000), (first + timedelta(hours=30), 390_000)]
    second_objects = [other] if another_table else template[S.OBJECTS]
    extra = pl.DataFrame(
        [
            {
                **template,
                S.TIME: at,
                S.STATEMENT_ID: f"{900000 + n}.1",
                S.ROWS: rows,
                S.OBJECTS: second_objects if n else template[S.OBJECTS],
            }
            for n, (at, rows) in enumerate(pulls)
        ],
        schema=week3.schema,
    )
    events = pl.concat([week3, extra]).sort(S.TIME)
    batch = pipeline.score(events, trained, conf)

    def pull_flags(scored: pl.DataFrame) -> list[bool]:
        return [
            scored.filter(
                pl.col("account") == "analyst_ben", pl.col("window_start") == at.replace(minute=0)
            )["flagged"].item()
            for at, _ in pulls
        ]

    assert pull_flags(batch) == [True, another_table]
    second = batch.filter(
        pl.col("account") == "analyst_ben", pl.col("window_start") == pulls[1][0].replace(minute=0)
    )["reasons"].item()
    assert any(r.startswith(f"reads {other}, which no alert") for r in second) == another_table
    cut = events.filter(pl.col(S.TIME) < first + timedelta(hours=12)).height
    before_restart = Engine(trained, conf)
    before = stream_no_flush(before_restart, events[:cut], 5_000)
    saved = before_restart.snapshot()
    resumed = Engine(trained, conf)
    resumed.restore(saved)
    live = pl.concat([before, stream(resumed, events[cut:], 5_000)])
    assert pull_flags(live) == [True, another_table]
    assert (
        verdicts(live)
        .select("account", "window_start", "flagged")
        .equals(verdicts(batch).select("account", "window_start", "flagged"))
    )
    # The state of a trovewatch that kept no alert's objects: they count as showing
    # every table, so the other table's pull is held back as before, and nothing fails.
    older = dict(saved)
    levels = pl.read_parquet(io.BytesIO(saved["levels"] or b"")).drop("objects_list")
    older["levels"] = parquet(levels)
    upgraded = Engine(trained, conf)
    upgraded.restore(older)
    assert upgraded.levels["objects_list"].null_count() == upgraded.levels.height > 0
    after = stream(upgraded, events[cut:], 5_000)
    assert not after.filter(
        pl.col("account") == "analyst_ben", pl.col("window_start") == pulls[1][0].replace(minute=0)
    )["flagged"].item()


def test_a_repeat_is_measured_against_the_sums_its_alert_showed(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """The engine carries sums from close to close and keeps no window's sums: an alert
    of 2 days ago is remembered by the sums it was alerted with (``levels``). A pull of
    400,000 rows is no news after an alert at 500,000 over each horizon, and is after
    one at 1,000."""
    conf = settings.Settings()
    at = datetime(2026, 10, 23, 10, 2, tzinfo=UTC)
    reads = week3.filter(pl.col(S.ACCOUNT) == "analyst_ben", pl.col(S.ROWS) > 0)
    pull = pl.DataFrame(
        [{**reads.row(0, named=True), S.TIME: at, S.STATEMENT_ID: "900001.1", S.ROWS: 400_000}],
        schema=week3.schema,
    )

    def flagged(level: int) -> bool:
        engine = Engine(trained, conf)
        alert = {
            F.ACCOUNT: "analyst_ben",
            F.WINDOW: datetime(2026, 10, 21, 12, 0, tzinfo=UTC),
            **{c: level for c in pipeline.alert_level_columns(trained.horizons)},
            "objects_list": reads.row(0, named=True)[S.OBJECTS],  # the alert showed them
        }
        engine.levels = pl.DataFrame([alert]).cast(engine.levels.schema)
        engine.add(pull)
        scored = engine.close(wall=at + timedelta(hours=1)).scored
        assert scored.height == 1
        return bool(scored["flagged"].item())

    assert flagged(1_000)
    assert not flagged(500_000)


def test_a_drip_on_a_quiet_day_is_flagged_live_where_batch_flags_it(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """The quiet-day drip rule (``tests/test_verdicts.py``) in ``serve``: web_admin's
    largest day's worth read again on a Sunday, 50 rows at a time, is flagged by the live
    engine in the window batch flags, with the same reason."""
    conf = settings.Settings()
    web_admin = pl.col(S.ACCOUNT) == "web_admin"
    template = week3.filter(web_admin, pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0).row(
        0, named=True
    )
    sunday = datetime(2026, 10, 25, 10, tzinfo=UTC)
    drip = pl.DataFrame(
        [
            {
                **template,
                S.TIME: sunday + timedelta(minutes=15 * i),
                S.STATEMENT_ID: f"{900000 + i}.1",
                S.ROWS: 50,
            }
            for i in range(20)
        ],
        schema=week3.schema,
    )
    events = pl.concat([week3, drip]).sort(S.TIME)

    def flagged(scored: pl.DataFrame) -> pl.DataFrame:
        return scored.filter(pl.col("account") == "web_admin", pl.col("flagged")).select(
            "window_start", "reasons"
        )

    batch = flagged(pipeline.score(events, trained, conf))
    live = flagged(stream(Engine(trained, conf), events, 5_000))
    assert batch.height == 1, batch.to_dicts()
    assert live.equals(batch), (live.to_dicts(), batch.to_dicts())
    assert any("a Sunday, a quiet day for it" in r for r in live["reasons"][0])


def test_score_since_judges_its_windows_as_serve_does_with_the_days_before(
    trained: model.TrainedModel,
) -> None:
    """``score --since`` reads the days before ``--since`` as history: its windows have
    the 1-day and 3-day sums, and the alerts, of a ``serve`` that was following the log
    all along (before, its sums started at ``--since``: a drip that began the day before
    counted from ``--since`` on, and yesterday's alerted volume was news again)."""
    conf = settings.Settings()
    since = datetime(2026, 10, 22, tzinfo=UTC)
    start = pipeline.history_from(since, trained.horizons)
    assert start == datetime(2026, 10, 16, tzinfo=UTC)
    events, _ = pipeline.read_events([SAMPLE], since=start)
    live = stream(Engine(trained, conf), events, 20_000).filter(pl.col("window_start") >= since)
    batch, summary = pipeline.score_logs(
        [SAMPLE], ROOT / "models" / "default", conf, Quarantine(None), since=since
    )
    assert since <= batch["window_start"].min() < since + timedelta(hours=1)  # type: ignore[operator]
    # statements, as the summary counts them (the sample's COPY (SELECT ...) TO is one)
    before = events.filter((pl.col(S.TIME) < since) & F.begins_statement())
    assert summary.history == before.height > 0
    assert "before --since, read as history" in summary.paragraph()

    def sums(scored: pl.DataFrame) -> pl.DataFrame:
        days = [pl.col("features").struct.field(c) for c in ("rows_read_1d", "rows_read_3d")]
        return scored.select(*verdicts(scored).columns, *days).sort("account", "window_start")

    assert sums(batch).equals(sums(live))
    first = sums(batch).group_by("account").first()
    assert (first["rows_read_1d"] > 0).sum() > first.height / 2  # yesterday's reads count
    assert batch["flagged"].sum() > 0


def stream_prepared(engine: Engine, events: pl.DataFrame, step: int) -> tuple[pl.DataFrame, int]:
    """:func:`stream`, judging the next close's windows ahead after each read as ``serve``
    does (``Engine.prepare``): the scored windows, and how many closes judged their
    windows themselves."""
    judged_at_close = 0
    judge = engine._judge

    def close(wall: datetime | None = None) -> pl.DataFrame:
        nonlocal judged_at_close
        calls = []
        engine._judge = lambda *args: calls.append(1) or judge(*args)  # type: ignore[method-assign]
        scored = engine.close(wall=wall).scored
        engine._judge = judge  # type: ignore[method-assign]
        judged_at_close += bool(calls)
        return scored

    parts = []
    for start in range(0, events.height, step):
        engine.add(events[start : start + step])
        parts.append(close())
        engine.prepare()
    parts.append(close(wall=FAR_FUTURE))
    return pl.concat([p for p in parts if p.height]), judged_at_close


def test_windows_judged_ahead_of_their_close_get_the_verdicts_judged_at_the_close(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """``serve`` judges a close's windows once their events are in, half the lateness
    before their cutoff: the same scores, flags, reasons and features as judged at the
    close, and the state after them the same (the later windows' verdicts too)."""
    conf = settings.Settings()
    at_close = stream(Engine(trained, conf), week3, 997)
    ahead, judged_at_close = stream_prepared(Engine(trained, conf), week3, 997)
    order = ["account", "window_start"]
    assert ahead.sort(order).equals(at_close.sort(order))
    assert ahead.filter("flagged").height >= 5
    closes = at_close["window_end"].n_unique()
    assert judged_at_close < closes / 10  # nearly every close took the verdicts judged ahead


def test_an_event_after_its_window_was_judged_ahead_still_counts(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """An event that comes within the lateness, after its window was judged ahead, is
    in the window's verdict: the close judges it again."""
    conf = settings.Settings()
    window_end = datetime(2026, 10, 19, 8, 5, tzinfo=UTC)
    day = week3.filter(pl.col(S.TIME) < window_end + timedelta(minutes=5))
    # Read up to 28 s past the window's end (the log has two events past 15 s, half the
    # lateness), the window's last statement held back to come after it was judged.
    read = pl.col(S.TIME) < window_end + timedelta(seconds=28)
    inside = pl.col(S.TIME).is_between(window_end - timedelta(minutes=5), window_end, "left")
    straggler = day.filter(inside & pl.col(S.SUCCESS) & pl.col(S.ACCOUNT).is_not_null()).tail(1)
    assert straggler.height == 1
    first = day.filter(read).join(straggler, on=day.columns, how="anti", nulls_equal=True)
    expected = stream(Engine(trained, conf), day, 10**9)
    engine = Engine(trained, conf)
    engine.add(first)
    closes = [engine.close().scored]  # the windows before
    assert engine.prepare()
    engine.add(straggler)  # within the lateness: not late, in its window
    engine.add(day.filter(~read))  # past the lateness: the window closes
    closes.append(engine.close().scored)
    assert engine.closed_until == window_end
    closes.append(engine.close(wall=FAR_FUTURE).scored)
    scored = pl.concat([c for c in closes if c.height])
    order = ["account", "window_start"]
    assert scored.sort(order).equals(expected.sort(order))
    assert engine.late == 0


def test_a_copy_of_a_select_begins_one_statement_as_score_counts_it(
    trained: model.TrainedModel,
) -> None:
    """``COPY (SELECT ...) TO STDOUT`` run once: pgAudit logs its SELECT and the COPY as
    two lines (7.1 and 7.2, real pgAudit 1.7 output). ``trovewatch_events_total`` counts
    what ``Engine.add`` says began: one statement, as ``score``'s summary (was: 2)."""
    copy = [
        line
        for line in (REFERENCE_PG / "postgresql.json").read_text().splitlines(keepends=True)
        if "COPY (SELECT" in line
    ]
    fmt = formats.native("pgaudit-jsonlog")
    events = fmt.parse(Chunk("postgresql.json", "".join(copy).encode(), 1)).events
    assert events.height == 2
    assert Engine(trained, settings.Settings()).add(events) == 1


def test_a_local_time_audit_logs_clock_is_kept_across_a_restart(
    trained: model.TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real 10.11 logs, the audit log's times written 8 h ahead (a server on Shanghai
    time): the slow log's first record sets the clock, and the audit records held when
    the service stops are on UTC. Restarted from the checkpoint, the next connection's
    audit records, then its slow records, which tell the same clock again: the records
    held from before are not moved again. The windows are those of the same logs
    written on UTC."""
    reference = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11"
    utc = (reference / "server_audit.log").read_bytes()
    local = audit_log_ahead(utc, hours=8)
    slow = (reference / "slow.log").read_bytes()
    second = slow.index(b"# User@Host:", slow.index(b"# User@Host:") + 1)
    connection_8 = re.search(rb"(?m)^[\d :]{17},vm,bob,[^,]*,8,", local)
    assert connection_8 is not None
    restart = connection_8.start()

    def events(name: str, data: bytes) -> pl.DataFrame:
        return formats.native(name).parse(Chunk(name, data, 1)).events

    conf = settings.Settings()
    # One statement in both logs does not set the clock (a text run once on a reused
    # connection id hours apart would): these logs hold three.
    alone = Engine(trained, conf)
    alone.add(events("mariadb-slow", slow[:second]), source="slow.log")
    alone.add(events("mariadb-audit", local[:restart]), source="server_audit.log")
    assert alone.audit_ahead is None
    monkeypatch.setattr(mariadb, "CLOCK_PAIRS", 1)
    first = Engine(trained, conf)
    first.add(events("mariadb-slow", slow[:second]), source="slow.log")
    first.add(events("mariadb-audit", local[:restart]), source="server_audit.log")
    assert first.audit_ahead == 8 * 3600
    resumed = Engine(trained, conf)
    resumed.restore(first.snapshot())
    resumed.add(events("mariadb-audit", local[restart:]), source="server_audit.log")
    resumed.add(events("mariadb-slow", slow[second:]), source="slow.log")
    # Event time stays on UTC: the next connection's records, at 06:58 UTC, do not take
    # it 8 h on (which would close every window before its slow records are in).
    assert resumed.newest is not None
    assert resumed.newest.replace(second=0, microsecond=0) == datetime(
        2026, 11, 28, 6, 58, tzinfo=UTC
    )
    closes = [resumed.close().scored, resumed.close(wall=FAR_FUTURE).scored]
    restarted = pl.concat([scored for scored in closes if scored.height])

    on_utc = Engine(trained, conf)
    on_utc.add(events("mariadb-slow", slow), source="slow.log")
    on_utc.add(events("mariadb-audit", utc), source="server_audit.log")
    expected = on_utc.close(wall=FAR_FUTURE).scored
    assert on_utc.audit_ahead in (None, 0)

    def windows(scored: pl.DataFrame) -> list[tuple[Any, ...]]:
        feature = pl.col("features").struct.field
        return (
            scored.select(
                "account", "window_start", feature("statements_5m"), feature("rows_read_5m")
            )
            .sort("account", "window_start")
            .rows()
        )

    assert windows(restarted) == windows(expected)
    assert ("bob", 5000 + 2) in [(a, rows) for a, _, _, rows in windows(restarted)]  # its reads


def test_an_audit_log_alone_written_ahead_of_the_wall_clock_is_put_on_utc(
    trained: model.TrainedModel,
) -> None:
    """The audit log alone (no slow log to set its clock by) of a server on Shanghai
    time, read as it is written: its records, 8 h ahead of the wall clock, are on local
    time, not from the future: put on UTC, none held back as future events. A line dated
    2099 (a server clock gone wrong) is still held back."""
    reference = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11"

    def audit(hours: int) -> pl.DataFrame:
        local = audit_log_ahead((reference / "server_audit.log").read_bytes(), hours)
        return formats.native("mariadb-audit").parse(Chunk("a", local, 1)).events

    written = datetime(2026, 11, 28, 6, 59, tzinfo=UTC)  # the log's last record, UTC
    engine = Engine(trained, settings.Settings())
    engine.add(audit(8), source="server_audit.log", wall=written)
    scored = engine.close(wall=FAR_FUTURE)
    assert scored.future == 0
    starts = scored.scored["window_start"]
    assert starts.min() == datetime(2026, 11, 28, 6, 55, tzinfo=UTC)
    assert starts.max() == datetime(2026, 11, 28, 6, 55, tzinfo=UTC)

    wrong = Engine(trained, settings.Settings())
    wrong.add(audit(24 * 365 * 73), source="server_audit.log", wall=written)
    assert wrong.audit_ahead is None
    assert wrong.close(wall=FAR_FUTURE).future > 0


def test_a_close_just_after_a_mariadb_statements_audit_record_files_it_once_as_score_does(
    trained: model.TrainedModel,
) -> None:
    """The audit log times a statement by its end, to the second; the slow log by its
    start, to the second, plus its duration, so that its record (filed at that end) is
    often a few milliseconds after the audit record's second. A close whose cutoff falls
    between them used to close the audit record without its volume and file the slow
    record in the next window: the statement counted twice, its rows a window late. With
    a cutoff just after each second the audit log names (real 10.11 output, several
    workloads), every window counts what ``score`` counts."""
    logs = FIXTURES / "mariadb-heldout"
    audit = formats.native("mariadb-audit")
    records = audit.parse(Chunk("a", (logs / "server_audit.log").read_bytes(), 1)).events
    seconds = records[S.TIME].unique().sort()
    assert len(seconds) > 10
    for second in seconds:
        cut = second + timedelta(microseconds=1)
        live, batch, late = mariadb_windows_cut_at(
            trained, logs / "server_audit.log", logs / "slow.log", cut
        )
        assert live.equals(batch), f"cut at {cut}:\n{live}\n{batch}"
        assert late == 0, cut


def test_a_drip_from_one_table_is_flagged_live_where_batch_flags_it_across_a_restart(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """The object drip (``tests/test_verdicts.py``) in ``serve``: web_admin reads 3.2
    times its largest day of one table in training on a Wednesday, a little at a time.
    The live engine flags it in the window batch flags, with the same reason, though it
    was stopped and restored from its snapshot halfway through the day: the day's rows
    per table so far are part of the saved state."""
    conf = settings.Settings()
    web_admin = pl.col(S.ACCOUNT) == "web_admin"
    template = week3.filter(web_admin, pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0).row(
        0, named=True
    )
    (table,) = template[S.OBJECTS]
    largest = trained.profile.object_days.filter(
        pl.col("account") == "web_admin", pl.col("object") == table
    )["rows"].item()
    wednesday = datetime(2026, 10, 21, 8, tzinfo=UTC)
    drip = pl.DataFrame(
        [
            {
                **template,
                S.TIME: wednesday + timedelta(minutes=15 * i),
                S.STATEMENT_ID: f"{900000 + i}.1",
                S.ROWS: int(3.2 * largest) // 20 + 1,
            }
            for i in range(20)
        ],
        schema=week3.schema,
    )
    events = pl.concat([week3, drip]).sort(S.TIME)

    def flagged(scored: pl.DataFrame) -> pl.DataFrame:
        return scored.filter(
            pl.col("account") == "web_admin",
            pl.col("flagged"),
            pl.col("window_start").dt.date() == wednesday.date(),
        ).select("window_start", "reasons")

    batch = flagged(pipeline.score(events, trained, conf))
    assert batch.height == 1, batch.to_dicts()
    (reason,) = [r for r in batch["reasons"][0] if r.startswith("slow drip: ")]
    assert f" of {table} read today (UTC), " in reason, reason
    assert f"largest day of it in training ({largest:,})" in reason, reason

    halfway = events[S.TIME].search_sorted(wednesday + timedelta(hours=2, minutes=40))
    first = Engine(trained, conf)
    before = stream_no_flush(first, events[:halfway], 5_000)
    resumed = Engine(trained, conf)
    resumed.restore(first.snapshot())
    after = stream(resumed, events[halfway:], 5_000)
    live = flagged(pl.concat([before, after]))
    assert live.equals(batch), (live.to_dicts(), batch.to_dicts())


def test_rows_per_table_are_kept_only_for_tables_the_model_knows_the_account_read(
    trained: model.TrainedModel, week3: pl.DataFrame
) -> None:
    """The rows per table ``serve`` keeps, in its open windows and in the day's sums it
    carries from close to close, are kept only where a drip can be judged: tables the
    model knows the account's largest day of. A new account's reads (a flood of new
    names, say) and a known account's reads of a new table add nothing to that state;
    web_admin's reads of its own table do."""
    template = week3.filter(
        pl.col(S.ACCOUNT) == "web_admin", pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0
    ).row(0, named=True)
    (table,) = template[S.OBJECTS]
    end = week3[S.TIME].max()
    reads = [
        ("newcomer_01", table),
        ("web_admin", "public.never_read_before"),
        ("web_admin", table),
    ]
    extra = pl.DataFrame(
        [
            {
                **template,
                S.TIME: end + timedelta(minutes=1 + i),
                S.STATEMENT_ID: f"{910000 + i}.1",
                S.ACCOUNT: account,
                S.OBJECTS: [obj],
                S.ROWS: 5_000,
            }
            for i, (account, obj) in enumerate(reads * 3)
        ],
        schema=week3.schema,
    )
    known = trained.profile.object_days.select("account", "object")
    engine = Engine(trained, settings.Settings())
    stream_no_flush(engine, pl.concat([week3, extra]).sort(S.TIME), 5_000)

    opened = (
        engine.open_activity()
        .select("account", F.OBJECT_ROWS)
        .explode(F.OBJECT_ROWS)
        .unnest(F.OBJECT_ROWS)
        .drop_nulls("object")
    )
    assert opened.filter(pl.col("account") == "web_admin", pl.col("object") == table).height
    assert opened.join(known, on=["account", "object"], how="anti").is_empty(), opened

    engine.close(wall=FAR_FUTURE)
    carried = engine.object_days.filter(pl.col("day") == end.date())
    assert carried.filter(pl.col("account") == "web_admin", pl.col("object") == table).height
    assert carried.join(known, on=["account", "object"], how="anti").is_empty(), carried
