"""Feature functions on tiny hand-made event frames whose right answer is visible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from detector import features as F
from detector import schema as S


def ev(
    minute: int,
    account: str,
    rows: int | None,
    objects: list[str],
    *,
    cls: str = "READ",
    export: bool = False,
    success: bool = True,
    stmt: str = "1.1",
    day: int = 5,
) -> dict[str, object]:
    return {
        S.TIME: datetime(2026, 10, day, 9, minute, tzinfo=UTC),
        S.ACCOUNT: account,
        S.ROWS: rows,
        S.OBJECTS: objects,
        S.CLASS: cls,
        S.EXPORT: export,
        S.SUCCESS: success,
        S.SESSION: "s1",
        S.STATEMENT_ID: stmt,
        S.CLIENT_IP: "10.0.0.1",
        S.APPLICATION: "app",
    }


def frame(*rows: dict[str, object]) -> pl.LazyFrame:
    return S.conform(pl.DataFrame(list(rows)).lazy())


def test_window_sums_read_rows_per_account_and_ignores_writes() -> None:
    out = F.window_activity(
        frame(
            ev(0, "a", 10, ["s.t"]),
            ev(1, "a", 5, ["s.u"]),
            ev(2, "a", 99, ["s.t"], cls="WRITE"),
            ev(3, "b", 7, ["s.t"]),
            ev(7, "a", 1, ["s.t"]),
        ),
        "5m",
    ).collect()
    a = out.filter(pl.col("account") == "a").sort("window_start")
    assert a["rows_read"].to_list() == [15, 1]
    assert a["statements"].to_list() == [3, 1]
    assert a["objects"].to_list() == [2, 1]
    assert out.filter(pl.col("account") == "b")["rows_read"].to_list() == [7]


def test_rows_are_null_when_no_read_logged_a_count() -> None:
    out = F.window_activity(
        frame(ev(0, "a", None, ["s.t"]), ev(1, "a", None, ["s.t"])), "5m"
    ).collect()
    assert out["rows_read"].to_list() == [None]


def test_export_counted_once_per_statement_across_substatements() -> None:
    # COPY (SELECT ...) TO logs the SELECT as 7.1 and the COPY as 7.2: one export statement.
    out = F.window_activity(
        frame(
            ev(0, "a", 100, ["s.t"], export=True, stmt="7.1"),
            ev(0, "a", None, ["s.t"], export=True, stmt="7.2"),
        ),
        "5m",
    ).collect()
    assert out["exports"].to_list() == [1]
    assert out["rows_read"].to_list() == [100]


def test_new_objects_are_those_not_known_and_first_seen_in_the_window() -> None:
    known = pl.DataFrame({"account": ["a"], "kind": ["object"], "value": ["s.t"]}).lazy()
    out = (
        F.window_activity(
            frame(ev(0, "a", 1, ["s.t", "s.new"]), ev(6, "a", 1, ["s.new", "s.other"])), "5m", known
        )
        .collect()
        .sort("window_start")
    )
    assert out["new_objects_list"].to_list() == [["s.new"], ["s.other"]]


def test_failed_statements_are_counted_separately() -> None:
    out = F.window_activity(
        frame(ev(0, "a", None, ["s.t"], cls="ERROR", success=False), ev(1, "a", 3, ["s.t"])), "5m"
    ).collect()
    assert out["failed"].to_list() == [1]
    assert out["statements"].to_list() == [1]


def test_horizons_sum_trailing_windows_per_account() -> None:
    windows = F.window_activity(
        frame(
            ev(0, "a", 10, ["t"]),
            ev(30, "a", 20, ["t"]),
            ev(0, "a", 40, ["t"], day=6),
            ev(5, "b", 1000, ["t"]),
        ),
        "5m",
    )
    out = F.add_horizons(windows, F.Horizons("5m", ("1h", "1d"))).collect()
    a = out.filter(pl.col("account") == "a").sort("window_start")
    assert a["rows_read_1h"].to_list() == [10, 30, 40]
    # Day 6 09:00: the trailing 24 hours hold day 5 09:30 (20 rows) but not 09:00 (10).
    assert a["rows_read_1d"].to_list() == [10, 30, 60]
    assert out.filter(pl.col("account") == "b")["rows_read_1h"].to_list() == [1000]


def test_relative_features_compare_with_own_history_and_fall_back_to_peers() -> None:
    h = F.Horizons("5m", ())
    windows = F.add_horizons(
        F.window_activity(frame(ev(0, "known", 800, ["t"]), ev(0, "newbie", 800, ["t"])), "5m"), h
    )
    cols = F.horizon_columns(h)
    account_max = pl.DataFrame(
        {"account": ["known"], "has_history": [True], **{c: [0] for c in cols}}
    ).with_columns(pl.lit(99).alias("rows_read_5m"))
    peer_ref = pl.DataFrame({"peer_group": ["*"], **{c: [0] for c in cols}}).with_columns(
        pl.lit(7).alias("rows_read_5m")
    )
    hours = pl.DataFrame(
        {"account": ["known", "*"], "hour": [9, 9], "share": [0.5, 0.2]},
        schema_overrides={"hour": pl.Int8},
    )
    peers = pl.DataFrame({"account": ["known"], "peer_group": ["*"]})
    out = F.add_relative(
        windows, h, account_max.lazy(), peer_ref.lazy(), hours.lazy(), peers.lazy()
    ).collect()
    known = out.filter(pl.col("account") == "known").row(0, named=True)
    newbie = out.filter(pl.col("account") == "newbie").row(0, named=True)
    assert round(known["rows_read_5m_vs_own"], 6) == round(__import__("math").log2(801 / 100), 6)
    assert round(known["rows_read_5m_vs_peers"], 6) == round(__import__("math").log2(801 / 8), 6)
    # No history: compared with its peers for both.
    assert newbie["rows_read_5m_vs_own"] == newbie["rows_read_5m_vs_peers"]
    assert round(known["hour_rarity"], 6) == round(-__import__("math").log10(0.5), 6)


def test_horizon_sums_start_again_after_an_alert() -> None:
    # a: 100, 50 (alerted), 60, 70 rows in four windows; b the same, never alerted.
    h = F.Horizons("5m", ("1h",))
    rows = [(m, n) for m, n in zip((0, 5, 10, 15), (100, 50, 60, 70), strict=True)]
    events = frame(*[ev(m, acc, n, ["t"]) for acc in ("a", "b") for m, n in rows])
    windows = F.add_horizons(F.window_activity(events, "5m"), h)
    alerted = (pl.col("account") == "a") & (pl.col("window_start").dt.minute() == 5)
    out = F.discount_alerted(windows, alerted, h).collect()
    by = {a: out.filter(pl.col("account") == a)["rows_read_1h"].to_list() for a in "ab"}
    assert by["b"] == [100, 150, 210, 280]
    # what the alert showed (everything up to it) is not counted again after it
    assert by["a"] == [100, 150, 60, 130]


def test_the_objects_an_alert_did_not_show_are_news_for_3_days() -> None:
    """Alerts on account a at day 0 (tables x, y) and, from an older trovewatch's state,
    on account b (objects not kept: they showed everything)."""
    day = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    rows = [
        ("a", day, ["x", "y"], ["x"], True),
        ("a", day + timedelta(hours=1), ["x"], [], False),  # shown: no news
        ("a", day + timedelta(days=1), ["y", "z"], ["y"], False),  # z is news; y's export not
        ("a", day + timedelta(days=2), ["x", "z"], ["z"], False),  # z exported: news
        ("a", day + timedelta(days=3, minutes=5), ["x"], [], False),  # the alert is 3 days old
        ("b", day, None, [], True),
        ("b", day + timedelta(days=1), ["w"], ["w"], False),
        ("c", day, ["v"], ["v"], False),  # no alert at all: everything unshown
    ]
    windows = pl.DataFrame(
        rows,
        schema={
            "account": pl.String,
            "window_start": pl.Datetime("us", "UTC"),
            "objects_list": pl.List(pl.String),
            "export_objects_list": pl.List(pl.String),
            "alerted": pl.Boolean,
        },
        orient="row",
    )
    h = F.Horizons("5m", ("1h", "1d", "3d"))
    out = F.unshown_objects(windows.lazy(), pl.col("alerted"), h).collect()
    assert out[F.UNSHOWN].to_list() == [["x", "y"], [], ["z"], ["z"], ["x"], [], [], ["v"]]
    assert out[F.UNSHOWN_EXPORTS].to_list() == [["x"], [], [], ["z"], [], [], [], ["v"]]


def random_windows(seed: int, accounts: int = 40, per_account: int = 300) -> pl.DataFrame:
    """Windows of several accounts at uneven gaps (minutes to days), some volume unknown."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1, 23, 55, tzinfo=UTC)
    names, starts = [], []
    for a in range(accounts):
        gaps = rng.choice([5, 5, 10, 60, 600, 1440 * 2], size=per_account).cumsum()
        names += [f"acct{a:03d}"] * per_account
        starts += [start + timedelta(minutes=int(m)) for m in gaps]
    n = len(names)
    volume = {
        v: pl.Series(v, rng.integers(0, 10**6, n)).set(pl.Series(rng.random(n) < 0.2), None)
        for v in F.VOLUME
    }
    return pl.DataFrame(
        {F.ACCOUNT: names, F.WINDOW: starts, **volume, "alerted": rng.random(n) < 0.02}
    ).sort(F.ACCOUNT, F.WINDOW)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    "horizons", [F.Horizons(), F.Horizons("1m", ("10m", "1d")), F.Horizons("1h", ("1d", "1w"))]
)
def test_horizon_sums_are_each_accounts_trailing_sums(seed: int, horizons: F.Horizons) -> None:
    windows = random_windows(seed)
    out = F.add_horizons(windows.lazy(), horizons).collect()
    for signal in F.VOLUME:
        for h in horizons.longer:
            trailing = pl.col(signal).rolling_sum_by(F.WINDOW, window_size=h, min_samples=1)
            any_known = (
                pl.col(signal).is_not_null().cast(pl.Int32).rolling_sum_by(F.WINDOW, window_size=h)
            )
            expected = windows.select(
                pl.when(any_known > 0).then(trailing).over(F.ACCOUNT)
            ).to_series()
            assert out[F.col_name(signal, h)].equals(expected, check_names=False)
    for signal in F.DRIP:
        day = [F.ACCOUNT, pl.col(F.WINDOW).dt.date()]
        known = pl.col(signal).is_not_null().cum_sum()
        expected = windows.select(
            pl.when(known > 0).then(pl.col(signal).fill_null(0).cum_sum()).over(day)
        ).to_series()
        assert out[F.col_name(signal, F.TODAY)].equals(expected, check_names=False)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    "horizons",
    [
        F.Horizons(),
        F.Horizons("1h", ("1d", "1w")),
        F.Horizons("5m", ("36h",)),
        F.Horizons("5m", ()),
    ],
)
def test_earlier_days_are_each_accounts_largest_days_before_within_the_longest_horizon(
    seed: int, horizons: F.Horizons
) -> None:
    """An untrained account is judged against its own days before the window's (never
    the day itself), as far back as the longest horizon, unknown volume left out."""
    windows = random_windows(seed, per_account=100)
    columns = list(F.VOLUME)
    out = F.earlier_days(windows.lazy(), horizons, columns).collect()
    back = horizons.longer[-1] if horizons.longer else horizons.base
    days = (
        windows.group_by(F.ACCOUNT, pl.col(F.WINDOW).dt.truncate("1d").alias("day"))
        .agg(pl.col(c).max() for c in columns)
        .sort(F.ACCOUNT, "day")
    )
    expected = days.select(
        F.ACCOUNT,
        "day",
        *(
            pl.col(c).rolling_max_by("day", window_size=back, closed="left").over(F.ACCOUNT)
            for c in columns
        ),
    )
    assert out.equals(expected.rename({c: f"{c}__earlier" for c in columns}))
    found = out.select(pl.col(f"{c}__earlier").is_not_null().any() for c in columns).row(0)
    assert all(found) == bool(horizons.longer)  # no earlier day within 5 minutes
