"""Facts about the sidecar's storage (detector/live/store.py), on a real SQLite file."""

from __future__ import annotations

import io
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.live import store as store_module
from detector.live.store import Checkpoint, SqliteStore, StoreDamaged, StoreError
from tests.api.conftest import END, START, checkpoint

WEB_SHOP_PULL = "2026-10-20T03:10:00Z"  # INC-1: 50,191 rows of sales.customers
HR_PROBE = datetime(2026, 10, 19, 15, 20, tzinfo=UTC)  # INC-5, flagged in two windows


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_id(store: SqliteStore, account: str, window_start: str) -> int:
    _, items = store.alerts(limit=1000)
    return next(
        int(a["id"]) for a in items if (a["account"], a["window_start"]) == (account, window_start)
    )


def test_the_database_is_a_wal_file_in_the_state_dir(
    empty_store: SqliteStore, state_dir: Path
) -> None:
    assert empty_store.path == state_dir / "trovewatch.db"
    assert (state_dir / "trovewatch.db-wal").exists()


def test_commit_raises_one_open_alert_per_flagged_window(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    created = empty_store.commit(scored, checkpoint(1))
    flagged = scored.filter("flagged")
    assert [(a.account, a.window_start) for a in created] == [
        (r["account"], iso(r["window_start"])) for r in flagged.iter_rows(named=True)
    ]
    assert {a.status for a in created} == {"open"}
    web_shop = next(a for a in created if a.account == "web_shop")
    assert (web_shop.window_start, web_shop.severity) == (WEB_SHOP_PULL, "critical")


def test_a_window_twice_in_one_commit_is_stored_once(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    created = empty_store.commit(pl.concat([scored, scored]), checkpoint(1))
    assert len(created) == scored["flagged"].sum()  # one alert each
    assert (
        sum(
            (empty_store.account(a, 1) or {})["totals"]["windows"]
            for a in scored["account"].unique()
        )
        == scored.height
    )


def test_a_window_committed_twice_is_stored_once(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    empty_store.commit(scored, checkpoint(1))
    totals = empty_store.account("web_shop", 1)
    assert empty_store.commit(scored, checkpoint(2)) == []  # no second alert
    assert empty_store.account("web_shop", 1) == totals  # not counted twice
    assert empty_store.alerts()[0] == scored["flagged"].sum()
    assert (
        sum(
            (empty_store.account(a, 1) or {})["totals"]["windows"]
            for a in scored["account"].unique()
        )
        == scored.height
    )


def test_account_totals_are_the_sums_of_its_windows(
    store: SqliteStore, scored: pl.DataFrame
) -> None:
    mine = scored.filter(pl.col("account") == "web_shop")["features"].struct.unnest()
    detail = store.account("web_shop", limit=1000)
    assert detail is not None
    assert detail["totals"] == {
        "windows": mine.height,
        "statements": mine["statements_5m"].sum(),
        "rows_read": mine["rows_read_5m"].sum(),
        "bytes_read": None,  # pgAudit never logs bytes: unknown, not zero
        "exports": mine["exports_5m"].sum(),
    }
    assert detail["totals"]["rows_read"] > 50_191


def test_account_detail_lists_recent_windows_with_features_and_reasons(store: SqliteStore) -> None:
    detail = store.account("web_shop", limit=1000)
    assert detail is not None
    starts = [w["window_start"] for w in detail["windows"]]
    assert starts == sorted(starts, reverse=True)
    pull = next(w for w in detail["windows"] if w["window_start"] == WEB_SHOP_PULL)
    assert pull["flagged"] and pull["severity"] == "critical"
    assert pull["features"]["rows_read_5m"] == 50_191
    assert pull["objects"] == ["sales.customers"]
    assert any("50,191 rows in 5 minutes from sales.customers" in r for r in pull["reasons"])
    assert len(store.account("web_shop", limit=3)["windows"]) == 3  # type: ignore[index]
    assert store.account("nobody", 10) is None


def test_accounts_are_listed_by_their_latest_window(
    store: SqliteStore, scored: pl.DataFrame
) -> None:
    latest = scored.sort("window_start").group_by("account").last()
    total, items = store.accounts(sort="account", limit=1000)
    assert total == latest.height == 12
    assert [(i["account"], i["window_start"]) for i in items] == [
        (r["account"], iso(r["window_start"])) for r in latest.sort("account").iter_rows(named=True)
    ]


def test_accounts_sort_filter_and_pages(store: SqliteStore) -> None:
    _, by_score = store.accounts(sort="score", limit=1000)
    scores = [i["score"] for i in by_score]
    assert scores == sorted(scores, reverse=True)
    _, by_window = store.accounts(sort="window", limit=1000)
    assert [i["window_start"] for i in by_window] == sorted(
        (i["window_start"] for i in by_window), reverse=True
    )
    total, high = store.accounts(min_score=0.2, limit=1000)
    assert total == len(high) == sum(s >= 0.2 for s in scores)
    assert store.accounts(flagged=True)[0] == 0  # nobody's latest window is flagged
    assert store.accounts(severity="none")[0] == 12
    pages = [store.accounts(sort="account", limit=5, offset=o)[1] for o in (0, 5, 10)]
    assert [i["account"] for page in pages for i in page] == sorted(i["account"] for i in by_score)
    with pytest.raises(ValueError):
        store.accounts(sort="size")  # type: ignore[arg-type]


def test_alerts_filter_by_time_severity_and_status(store: SqliteStore) -> None:
    total, items = store.alerts()
    assert total == 6
    assert [i["window_start"] for i in items] == sorted(
        (i["window_start"] for i in items), reverse=True
    )
    critical = store.alerts(severity="critical")[1]
    assert {i["account"] for i in critical} == {
        "web_shop",
        "analyst_ben",
        "support_eve",
        "reporting_svc",
    }
    since = store.alerts(since=datetime(2026, 10, 21, tzinfo=UTC))[1]
    assert {i["account"] for i in since} == {"analyst_ben", "support_eve", "reporting_svc"}
    assert store.alerts(status="open")[0] == 6
    assert store.alerts(status="false_positive")[0] == 0
    assert store.alerts(limit=2, offset=5)[1][0]["account"] == "hr_app"
    one = store.alert(items[0]["id"])
    assert one == items[0] and one["reasons"]
    assert store.alert(10_000) is None


def test_feedback_sets_the_verdict_note_and_time(store: SqliteStore) -> None:
    pull = alert_id(store, "web_shop", WEB_SHOP_PULL)
    judged = store.feedback(pull, "true_positive", "confirmed with the web team")
    assert judged is not None
    assert (judged["status"], judged["note"]) == ("true_positive", "confirmed with the web team")
    assert judged["judged_at"].endswith("Z") and judged["suppressed_until"] is None
    assert store.feedback(10_000, "false_positive") is None
    with pytest.raises(ValueError):
        store.feedback(pull, "maybe")  # type: ignore[arg-type]


def test_a_suppression_silences_the_account_in_event_time(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    """hr_app's probe is flagged at 15:20 and 15:25. Judged a false positive at 15:20 with
    a 1-hour suppression, the 15:25 window committed later is raised 'suppressed'."""
    first = scored.filter(pl.col("window_start") < HR_PROBE + timedelta(minutes=5))
    rest = scored.filter(pl.col("window_start") >= HR_PROBE + timedelta(minutes=5))
    (probe,) = empty_store.commit(first, checkpoint(1))
    assert [f.account for f in empty_store.flagged(timedelta(hours=1))] == ["hr_app"]

    judged = empty_store.feedback(probe.id, "false_positive", None, timedelta(hours=1))
    assert judged is not None
    assert judged["suppressed_until"] == "2026-10-19T16:25:00Z"  # window_end + 1h
    assert empty_store.flagged(timedelta(hours=1)) == []

    created = empty_store.commit(rest, checkpoint(2))
    by_account = {(a.account, a.window_start): a.status for a in created}
    assert by_account[("hr_app", "2026-10-19T15:25:00Z")] == "suppressed"
    assert by_account[("web_shop", WEB_SHOP_PULL)] == "open"  # other accounts are not


def test_a_pattern_suppression_silences_only_windows_reading_the_same_objects(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    """The 15:20 probe judged a false positive with its objects suppressed for an hour:
    hr_app's windows reading only those objects are raised 'suppressed'; its 15:25
    window, reading other tables, and a window reading one more are raised 'open'."""
    first = scored.filter(pl.col("window_start") < HR_PROBE + timedelta(minutes=5))
    rest = scored.filter(pl.col("window_start") >= HR_PROBE + timedelta(minutes=5))
    (probe,) = empty_store.commit(first, checkpoint(1))
    probed = first.filter(pl.col("account") == "hr_app", pl.col("flagged"))["objects"][0]
    judged = empty_store.feedback(
        probe.id, "false_positive", None, timedelta(hours=1), objects_only=True
    )
    assert judged is not None and judged["suppressed_until"] == "2026-10-19T16:25:00Z"
    created = empty_store.commit(rest, checkpoint(2))
    assert {(a.account, a.window_start): a.status for a in created}[
        ("hr_app", "2026-10-19T15:25:00Z")
    ] == "open"
    later = rest.filter(pl.col("account") == "hr_app", pl.col("flagged")).head(1)

    def at(minute: int, objects: list[str]) -> pl.DataFrame:
        start = HR_PROBE.replace(minute=minute)
        return later.with_columns(
            pl.lit(start).alias("window_start"),
            pl.lit(start + timedelta(minutes=5)).alias("window_end"),
            pl.lit(objects, dtype=pl.List(pl.String)).alias("objects"),
        )

    same = empty_store.commit(at(40, probed.to_list()[:2]), checkpoint(3))
    more = empty_store.commit(at(45, [*probed.to_list()[:2], "hr.salaries"]), checkpoint(4))
    assert [a.status for a in same] == ["suppressed"]
    assert [a.status for a in more] == ["open"]


def test_a_state_database_of_schema_v1_is_migrated_and_its_suppressions_kept(
    state_dir: Path, scored: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the schema before pattern suppressions
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        SqliteStore(state_dir).close()
    with sqlite3.connect(state_dir / "trovewatch.db") as conn:  # an hour's suppression
        start = int(HR_PROBE.timestamp() * 1_000_000)
        conn.execute(
            "INSERT INTO suppressions (account, start, until, created_at) VALUES (?, ?, ?, 0)",
            ("hr_app", start, start + 3_600_000_000),
        )
    store = SqliteStore(state_dir)
    assert store_module.schema_version() == 3
    created = store.commit(scored, checkpoint(1))
    # it names no objects: it covers the whole account, as it did
    statuses = {(a.account, a.window_start): a.status for a in created}
    assert statuses[("hr_app", "2026-10-19T15:20:00Z")] == "suppressed"
    assert statuses[("hr_app", "2026-10-19T15:25:00Z")] == "suppressed"
    assert statuses[("web_shop", WEB_SHOP_PULL)] == "open"


def test_windows_saved_before_schema_v3_have_no_clients_and_new_ones_have_theirs(
    state_dir: Path, scored: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state database of schema v2 (before windows kept their clients and
    applications) is migrated; its windows come back with empty lists, the windows
    stored since with the addresses and applications their statements came from."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
        SqliteStore(state_dir).close()
    with sqlite3.connect(state_dir / "trovewatch.db") as conn:  # a window saved by v2
        conn.execute(
            "INSERT INTO windows (account, window_start, window_end, score, flagged, reasons,"
            " features, objects) VALUES ('old_app', 0, 300000000, 0.1, 0, '[]', '{}', '[]')"
        )
        conn.execute(
            "INSERT INTO totals (account, windows, statements, rows_read, exports)"
            " VALUES ('old_app', 1, 0, 0, 0)"
        )
    store = SqliteStore(state_dir)
    store.commit(scored, checkpoint(1))
    old = store.account("old_app", limit=1)
    assert old is not None
    assert (old["windows"][0]["clients"], old["windows"][0]["applications"]) == ([], [])
    pull = store.alert(alert_id(store, "web_shop", WEB_SHOP_PULL))
    assert pull is not None
    expected = scored.filter(
        pl.col("account") == "web_shop",
        pl.col("window_start") == datetime.fromisoformat(WEB_SHOP_PULL),
    ).row(0, named=True)
    assert pull["clients"] == expected["clients"] and pull["clients"]
    assert pull["applications"] == expected["applications"] and pull["applications"]


def test_a_suppression_covers_open_alerts_already_stored(store: SqliteStore) -> None:
    probe = alert_id(store, "hr_app", "2026-10-19T15:20:00Z")
    store.feedback(probe, "true_positive", "pentest", timedelta(minutes=30))
    later = store.alert(alert_id(store, "hr_app", "2026-10-19T15:25:00Z"))
    assert later is not None and later["status"] == "suppressed"


def test_flagged_accounts_are_those_alerted_within_the_hold_of_the_newest_window(
    store: SqliteStore, scored: pl.DataFrame
) -> None:
    # Newest window_end: 2026-10-24 00:00. Event time, whatever the wall clock says.
    assert store.flagged(timedelta(hours=1)) == []
    near = store.flagged(timedelta(hours=20))  # reporting_svc at 04:20 on the 23rd
    assert [(f.account, f.severity) for f in near] == [("reporting_svc", "critical")]
    week = store.flagged(timedelta(days=5))
    assert [f.account for f in week] == sorted(
        ["support_eve", "analyst_ben", "hr_app", "web_shop", "reporting_svc"],
        key=lambda a: -scored.filter(pl.col("account") == a, pl.col("flagged"))["score"].max(),  # type: ignore[operator]
    )  # highest score first; hr_app once, with its highest score
    hr_app = scored.filter(pl.col("account") == "hr_app", pl.col("flagged"))
    assert hr_app.height == 2
    assert next(f for f in week if f.account == "hr_app").score == hr_app["score"].max()
    store.feedback(alert_id(store, "support_eve", "2026-10-22T13:05:00Z"), "false_positive")
    store.feedback(alert_id(store, "web_shop", WEB_SHOP_PULL), "true_positive")
    assert "support_eve" not in [f.account for f in store.flagged(timedelta(days=5))]
    assert "web_shop" in [f.account for f in store.flagged(timedelta(days=5))]


def test_training_never_sees_a_true_positive_or_an_unjudged_flag(
    store: SqliteStore, scored: pl.DataFrame
) -> None:
    store.feedback(alert_id(store, "web_shop", WEB_SHOP_PULL), "true_positive")
    store.feedback(alert_id(store, "hr_app", "2026-10-19T15:20:00Z"), "false_positive")
    windows = store.training_windows(START, datetime(2026, 10, 24, tzinfo=UTC))
    keys = {(r["account"], iso(r["window_start"])) for r in windows.iter_rows(named=True)}
    assert ("web_shop", WEB_SHOP_PULL) not in keys  # judged an attack
    assert ("hr_app", "2026-10-19T15:20:00Z") in keys  # a false positive is normal data
    assert ("analyst_ben", "2026-10-21T22:40:00Z") not in keys  # flagged, not judged
    assert ("hr_app", "2026-10-19T15:25:00Z") not in keys
    assert windows.height == scored.height - 6 + 1
    assert windows.columns == scored.columns
    assert windows.schema["window_start"] == scored.schema["window_start"]
    assert (
        windows.filter(pl.col("account") == "hr_app", pl.col("window_start") == HR_PROBE)[
            "features"
        ]
        .struct.field("new_objects")
        .item()
        == 7  # its tables; its information_schema.tables read is CATALOG, not an object
    )
    assert store.training_windows(START, START + timedelta(hours=1)).height < 50


def test_prune_deletes_what_ended_before_the_retention_in_event_time(
    store: SqliteStore, scored: pl.DataFrame
) -> None:
    cutoff = datetime(2026, 10, 23, tzinfo=UTC)  # newest window_end (24th 00:00) - 1 day
    old = scored.filter(pl.col("window_end") < cutoff)
    totals = store.account("web_shop", 1)["totals"]  # type: ignore[index]
    assert store.prune(timedelta(days=1)) == old.height + 5  # and the 5 alerts before the 23rd
    assert store.alerts()[0] == 1  # reporting_svc's, on the 23rd
    remaining = store.training_windows(START, cutoff + timedelta(days=2))
    assert remaining["window_end"].min() >= cutoff  # type: ignore[operator]
    assert store.account("web_shop", 1)["totals"] == totals  # type: ignore[index]
    assert store.prune(timedelta(days=1)) == 0


def test_checkpoint_round_trip(empty_store: SqliteStore, scored: pl.DataFrame) -> None:
    assert empty_store.load_checkpoint() is None
    empty_store.commit(scored.head(10), checkpoint(1))
    assert empty_store.load_checkpoint() == checkpoint(1)
    empty_store.commit(scored.head(0), checkpoint(2))  # nothing closed: positions still saved
    saved = empty_store.load_checkpoint()
    assert saved is not None and saved == checkpoint(2)
    assert pl.read_parquet(io.BytesIO(saved.state["pending"]))["n"].to_list() == [2]


def test_a_failed_commit_saves_nothing(empty_store: SqliteStore, scored: pl.DataFrame) -> None:
    """The checkpoint is written first in the transaction, then the windows: a window
    that cannot be stored takes the new checkpoint and the other windows back with it."""
    day1 = scored.filter(pl.col("window_start") < datetime(2026, 10, 20, tzinfo=UTC))
    day2 = scored.filter(pl.col("window_start") >= datetime(2026, 10, 20, tzinfo=UTC))
    empty_store.commit(day1, checkpoint(1))
    before = empty_store.accounts(limit=1000)
    broken = pl.concat([day2, day2.tail(1).with_columns(pl.lit(None, pl.String).alias("account"))])
    with pytest.raises(sqlite3.IntegrityError):
        empty_store.commit(broken, checkpoint(2))
    assert empty_store.load_checkpoint() == checkpoint(1)
    assert empty_store.accounts(limit=1000) == before
    assert empty_store.alerts()[0] == 2  # hr_app's, not web_shop's of the 20th
    assert len(empty_store.commit(day2, checkpoint(2))) == 4  # and it can go on


def test_readers_see_whole_commits_while_the_engine_writes(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    hours = scored["window_start"].dt.truncate("1h")
    batches = [scored.filter(hours == h) for h in hours.unique().sort()]  # ~120 commits
    cumulative = {0}
    for n in range(1, len(batches) + 1):
        cumulative.add(sum(d.filter(~pl.col("flagged")).height for d in batches[:n]))
    seen: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n, day in enumerate(batches):
                empty_store.commit(day, checkpoint(n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive() or not seen:
        seen.append(empty_store.training_windows(START, END).height)  # one snapshot
    writer.join()
    assert not errors
    assert set(seen) <= cumulative  # never half a commit
    assert len(set(seen)) > 1  # the reads did overlap the writes
    assert empty_store.training_windows(START, END).height == max(cumulative)


def test_a_newer_schema_is_refused(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:  # a later trovewatch with one more migration
        patch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, ()])
        SqliteStore(state_dir).close()
    ours = store_module.schema_version()
    with pytest.raises(
        StoreError, match=f"schema v{ours + 1}, newer than this trovewatch's v{ours}"
    ):
        SqliteStore(state_dir)


def test_a_file_that_is_not_a_database_is_refused(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "trovewatch.db").write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(StoreError, match="not a usable trovewatch state database"):
        SqliteStore(state_dir)


def damage(database: Path) -> None:
    """Overwrite every page of ``database`` but the first (the header and the schema's
    root) with a fixed pattern, as a faulty disk or a stray write would: the file still
    opens, and SQLite finds the damage where it reads."""
    page = 4096
    size = database.stat().st_size
    assert size > 2 * page, "too small to damage past its first page"
    with database.open("r+b") as fh:
        fh.seek(page)
        fh.write(b"\xa5" * (size - page))


def test_a_damaged_database_is_named_with_what_to_do(store: SqliteStore, state_dir: Path) -> None:
    store.close()
    database = state_dir / "trovewatch.db"
    with sqlite3.connect(database) as conn:  # the committed pages into the file itself
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(database)
    damaged = SqliteStore(state_dir)  # the first page is sound: it opens
    try:
        for read in (damaged.load_checkpoint, lambda: damaged.alerts(limit=10)):
            with pytest.raises(
                StoreDamaged, match=r"trovewatch\.db is damaged .*move the file aside"
            ):
                read()
        with pytest.raises(StoreDamaged):  # a write, rolled back
            damaged.commit(pl.DataFrame(), checkpoint(2))
        assert not damaged.writable()
    finally:
        damaged.close()


def test_reopening_keeps_everything(store: SqliteStore, state_dir: Path) -> None:
    before = store.alerts(limit=1000), store.load_checkpoint()
    store.close()
    reopened = SqliteStore(state_dir)
    assert (reopened.alerts(limit=1000), reopened.load_checkpoint()) == before
    reopened.close()


def test_writable_is_false_once_the_state_dir_is_gone(store: SqliteStore, state_dir: Path) -> None:
    assert store.writable()
    shutil.rmtree(state_dir)  # e.g. the volume was unmounted or the directory deleted
    assert not store.writable()


def test_a_checkpoint_of_changes_keeps_the_state_it_does_not_name(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    """The engine saves only what changed: named blobs are replaced, ``None`` deletes
    one, and the others stay as they were; positions are replaced whole."""
    base = Checkpoint(
        sources={"a": 1}, state={"meta": b"m1", "history.1": b"h1", "open.2": b"o2"}, saved_at=1.0
    )
    empty_store.commit(scored.head(0), base)
    change = Checkpoint(
        sources={"a": 2},
        state={"meta": b"m2", "open.2": None, "open.3": b"o3"},
        saved_at=2.0,
        replace=False,
    )
    empty_store.commit(scored.head(0), change)
    saved = empty_store.load_checkpoint()
    assert saved is not None
    assert saved.sources == {"a": 2}
    assert dict(saved.state) == {"meta": b"m2", "history.1": b"h1", "open.3": b"o3"}


def test_a_checkpoint_loaded_with_its_history_deferred_names_it_and_reads_it_back(
    empty_store: SqliteStore, scored: pl.DataFrame
) -> None:
    """A restart leaves the window history (days of it) in the database: loaded with
    ``defer``, the checkpoint names those blobs without their data, each read back alone."""
    state = {"meta": b"m", "history.1": b"h1", "history.2": b"h2", "historyish": b"x"}
    empty_store.commit(scored.head(0), Checkpoint(sources={}, state=state, saved_at=1.0))
    saved = empty_store.load_checkpoint(defer="history.")
    assert saved is not None
    assert dict(saved.state) == {"meta": b"m", "historyish": b"x"}
    assert sorted(saved.deferred) == ["history.1", "history.2"]
    assert [empty_store.checkpoint_blob(n) for n in sorted(saved.deferred)] == [b"h1", b"h2"]
    whole = empty_store.load_checkpoint()
    assert whole is not None and dict(whole.state) == state and whole.deferred == ()
