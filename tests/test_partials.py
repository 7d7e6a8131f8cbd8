"""Partial aggregates, merged, give exactly the window activity of all the events."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import reduce
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import features as F
from detector import model, partials, pipeline
from detector import schema as S

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REAL_LOGS = {
    # pgAudit jsonlog (three weeks, 50 accounts): rows, exports, new objects and clients
    "pgaudit": [ROOT / "sample_logs" / "postgresql.json.gz"],
    # MariaDB audit + slow log, joined: rows and bytes from the slow log
    "mariadb": [
        FIXTURES / "reference" / "mariadb10.11" / "server_audit.log",
        FIXTURES / "reference" / "mariadb10.11" / "slow.log",
    ],
    # Snowflake query + access history, joined
    "snowflake": [
        FIXTURES / "snowflake" / "query_history.ndjson",
        FIXTURES / "snowflake" / "access_history.ndjson",
    ],
    # MongoDB: no volume at all (rows and bytes unknown)
    "mongodb": sorted((FIXTURES / "mongodb-audit").glob("*.log")),
}


@pytest.fixture(scope="module")
def known() -> pl.DataFrame:
    return model.load(ROOT / "models" / "default").profile.known


@pytest.fixture(scope="module", params=sorted(REAL_LOGS))
def events(request: pytest.FixtureRequest) -> pl.DataFrame:
    read, _ = pipeline.read_events(REAL_LOGS[request.param])
    assert read.height > 0
    return read


def activity(events: pl.DataFrame, known: pl.DataFrame | None, every: str = "5m") -> pl.DataFrame:
    lazy_known = None if known is None else known.lazy()
    return F.window_activity(events.lazy(), every, lazy_known).collect()


def test_whole_log_in_one_piece(events: pl.DataFrame, known: pl.DataFrame) -> None:
    got = partials.to_activity(partials.partial(events, "5m"), "5m", known)
    assert got.equals(activity(events, known))


@pytest.mark.parametrize("every", ["5m", "1h"])
@pytest.mark.parametrize("history", ["profile", "none"])
def test_chunks_merged_in_any_order(
    events: pl.DataFrame, known: pl.DataFrame, every: str, history: str
) -> None:
    """Chunks of a few hundred events, merged from the last to the first, pairwise; with
    the model's profile as what is known, and with nothing known (every value is new in
    the first window that holds it)."""
    known = known if history == "profile" else known.clear()
    step = max(events.height // 37, 1)
    parts = [partials.partial(events[i : i + step], every) for i in range(0, events.height, step)]
    merged = reduce(lambda a, b: partials.merge(b, a), parts, partials.empty())
    assert partials.to_activity(merged, every, known).equals(activity(events, known, every))


def test_a_period_read_in_many_batches_equals_window_activity_of_all(
    events: pl.DataFrame, known: pl.DataFrame
) -> None:
    """``score`` and ``train`` fold a log's batches as they come, FOLD_AFTER at a time,
    into stretches merged again at the end: 37 batches (four folds and some left over)
    give what the whole log gives."""
    n = events.height
    batches = [events[i * n // 37 : (i + 1) * n // 37] for i in range(37)]
    assert len(batches) > 4 * pipeline.FOLD_AFTER
    period = pipeline.Period.of(batches, "5m")
    assert partials.to_activity(period.partials, "5m", known).equals(activity(events, known))


# Hypothesis settings of the split-and-merge properties below: each example aggregates
# and merges a few thousand real events.
SPLITS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def pgaudit() -> pl.DataFrame:
    read, _ = pipeline.read_events(REAL_LOGS["pgaudit"], since=datetime(2026, 10, 19, tzinfo=UTC))
    return read.head(6000)


@SPLITS
@given(data=st.data())
def test_any_split_of_the_events_merged_equals_window_activity_of_all(
    pgaudit: pl.DataFrame, known: pl.DataFrame, data: st.DataObject
) -> None:
    """The property the live engine and chunked scoring rely on: events dealt into any
    number of pieces (not in time order, not contiguous), each aggregated, the pieces
    merged in any grouping, give window_activity of all the events."""
    n = pgaudit.height
    pieces = data.draw(st.integers(1, 6), label="pieces")
    owner = data.draw(st.lists(st.integers(0, pieces - 1), min_size=n, max_size=n), label="deal")
    dealt = pgaudit.with_columns(pl.Series("_piece", owner))
    parts = [
        partials.partial(dealt.filter(pl.col("_piece") == i).drop("_piece"), "5m")
        for i in range(pieces)
    ]
    order = data.draw(st.permutations(range(pieces)), label="order")
    split_at = data.draw(st.integers(0, pieces), label="grouping")
    if data.draw(st.booleans(), label="nothing known"):
        known = known.clear()
    left = partials.merge_all(parts[i] for i in order[:split_at])
    right = partials.merge_all(parts[i] for i in order[split_at:])
    got = partials.to_activity(partials.merge(right, left), "5m", known)
    assert got.equals(activity(pgaudit, known))


@SPLITS
@given(data=st.data())
def test_a_fold_of_any_split_equals_window_activity_of_all(
    pgaudit: pl.DataFrame, known: pl.DataFrame, data: st.DataObject
) -> None:
    """The live engine's open windows: pieces folded in one at a time (kept in groups of
    accounts, each merged every few pieces) give window_activity of all the events; the
    windows a close takes out are those before its cutoff, and with the windows kept they
    are all the events' windows."""
    n = pgaudit.height
    pieces = data.draw(st.integers(1, 12), label="pieces")
    owner = data.draw(st.lists(st.integers(0, pieces - 1), min_size=n, max_size=n), label="deal")
    dealt = pgaudit.with_columns(pl.Series("_piece", owner))
    fold = partials.Fold(merge_after=data.draw(st.integers(1, 4), label="merge after"))
    for i in range(pieces):
        fold.add(partials.partial(dealt.filter(pl.col("_piece") == i).drop("_piece"), "5m"))
    merged = fold.merged()
    assert merged.select(partials.KEYS).is_unique().all()
    assert partials.to_activity(merged, "5m", known).equals(activity(pgaudit, known))

    windows = merged[F.WINDOW].unique().sort()
    cutoff = windows[data.draw(st.integers(0, windows.len() - 1), label="cutoff")]
    taken = fold.take(pl.col(F.WINDOW) < cutoff)
    kept = fold.merged()
    assert (taken[F.WINDOW] < cutoff).all() and (kept[F.WINDOW] >= cutoff).all()
    got = partials.to_activity(partials.merge(taken, kept), "5m", known)
    assert got.equals(activity(pgaudit, known))


def event(
    minute: int,
    *,
    objects: list[str] | None = None,
    rows: int | None = None,
    export: bool = False,
    client: str | None = "10.0.0.1",
    success: bool = True,
    statement: str = "1.1",
) -> dict[str, object]:
    return {
        S.TIME: datetime(2026, 11, 2, 9, minute, tzinfo=UTC),
        S.ACCOUNT: "ann",
        S.CLIENT_IP: client,
        S.APPLICATION: "psql",
        S.OBJECTS: objects or [],
        S.CLASS: "READ",
        S.ROWS: rows,
        S.BYTES: None,
        S.SUCCESS: success,
        S.EXPORT: export,
        S.SESSION: "s1",
        S.STATEMENT_ID: statement,
        S.SOURCE_FORMAT: "pgaudit-jsonlog",
    }


def frame(*rows: dict[str, object]) -> pl.DataFrame:
    schema = {c: S.EVENT_SCHEMA[c] for c in rows[0]}
    return pl.DataFrame(list(rows), schema=schema)


def test_a_table_read_in_two_pieces_counts_once_and_is_new_in_its_first_window() -> None:
    first = frame(event(1, objects=["public.t"], rows=10), event(7, objects=["public.t"], rows=5))
    second = frame(event(3, objects=["public.t", "public.u"], rows=None, statement="2.1"))
    got = partials.to_activity(
        partials.merge(partials.partial(second, "5m"), partials.partial(first, "5m")), "5m"
    )
    assert got.select("window_start", "rows_read", "statements", "objects").rows() == [
        (datetime(2026, 11, 2, 9, 0, tzinfo=UTC), 10, 2, 2),  # unknown rows are not zero
        (datetime(2026, 11, 2, 9, 5, tzinfo=UTC), 5, 1, 1),
    ]
    assert got["new_objects_list"].to_list() == [["public.t", "public.u"], []]


def test_volume_no_piece_carried_stays_unknown_and_an_export_counts_once() -> None:
    a = frame(event(1, objects=["public.t"], export=True, statement="4.1"))
    b = frame(event(2, objects=["public.u"], export=True, statement="4.2"))  # same statement 4
    got = partials.to_activity(
        partials.merge(partials.partial(a, "5m"), partials.partial(b, "5m")), "5m"
    )
    assert got["rows_read"].to_list() == [None]
    assert got["exports"].to_list() == [1]
    assert got["export_objects_list"].to_list() == [["public.t", "public.u"]]


def test_exports_whose_rows_the_log_does_not_give_are_counted_apart() -> None:
    """pgAudit logs 0 rows for a dump's COPY ... TO (unknown) but real rows for its
    catalog reads: a reason must not call the catalog's few rows the dump's volume."""
    dump = frame(
        event(1, objects=["public.t"], export=True, statement="4.1"),  # COPY t TO: unknown
        event(2, objects=["pg_catalog.pg_class"], rows=4, export=True, statement="5.1"),
    )
    later = frame(event(3, objects=["public.u"], export=True, statement="6.1"))
    # COPY (SELECT ...) TO: the SELECT (7.1) counts the rows, the COPY (7.2) logs 0
    select = frame(event(4, objects=["public.v"], rows=77, export=True, statement="7.1"))
    copy = frame(event(4, objects=[], export=True, statement="7.2"))
    pieces = [dump, later, select, copy]
    got = partials.to_activity(
        partials.merge_all(partials.partial(p, "5m") for p in reversed(pieces)), "5m"
    )
    assert got.select("exports", "uncounted_exports", "export_rows").rows() == [(4, 2, 81)]
    assert got.equals(activity(pl.concat(pieces), None))


def test_partials_an_older_trovewatch_saved_are_read_with_no_uncounted_exports() -> None:
    """``serve`` restores its open windows from a checkpoint an older version wrote."""
    saved = partials.partial(frame(event(1, objects=["public.t"], export=True)), "5m")
    older = saved.drop("uncounted_export_keys", "counted_export_keys")
    restored = partials.conform(older)
    assert restored.schema == partials.SCHEMA
    assert restored["uncounted_export_keys"].to_list() == [[]]
    assert partials.to_activity(restored, "5m")["exports"].to_list() == [1]


def test_a_statement_counts_once_whichever_piece_or_window_holds_its_sub_statements() -> None:
    """pgAudit's ``EXECUTE``: its prepared statement's read (9.1), then itself (9.2, MISC),
    here across a window boundary and in two pieces; the table owner's INSERT: its
    foreign-key checks (10.1, 10.2: INTERNAL), then the INSERT (10.3). Each counts once,
    where its first line is, however the pieces are merged."""
    execute = frame(
        event(4, objects=["public.t"], rows=3, statement="9.1"),
        event(6, statement="9.2") | {S.CLASS: "MISC"},
    )
    checks = [event(7, statement=f"10.{n}") | {S.CLASS: "INTERNAL"} for n in (1, 2)]
    insert = frame(*checks, event(7, rows=2, statement="10.3") | {S.CLASS: "WRITE"})
    pieces = [execute[:1], insert[1:], execute[1:], insert[:1]]
    got = partials.to_activity(partials.merge_all(partials.partial(p, "5m") for p in pieces), "5m")
    assert got.select("window_start", "statements", "rows_read").rows() == [
        (datetime(2026, 11, 2, 9, 0, tzinfo=UTC), 1, 3),
        (datetime(2026, 11, 2, 9, 5, tzinfo=UTC), 1, None),
    ]
    assert got.equals(activity(pl.concat(pieces), None))


@pytest.mark.parametrize("name", ["mariadb", "snowflake", "mongodb"])
def test_formats_without_sub_statements_count_every_successful_event(name: str) -> None:
    """Only pgAudit numbers sub-statements: elsewhere each successful event is a
    statement, as before."""
    events, _ = pipeline.read_events(REAL_LOGS[name])
    got = partials.to_activity(partials.partial(events, "5m"), "5m")
    accounts = events.filter(pl.col(S.ACCOUNT).is_not_null())
    assert got["statements"].sum() == accounts[S.SUCCESS].sum() > 0
