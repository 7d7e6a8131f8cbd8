"""What is enough to flag a window, on the bundled sample logs (a real PostgreSQL 15 +
pgAudit workload) with one statement added: weak signals need each other, strong ones
stand alone; and how peers are learned when no role map is given."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from detector import features as F
from detector import model, partials, pipeline, profile, settings
from detector import schema as S
from detector.explain import Judge, heavy_days, rare_hour
from detector.formats.mariadb import CLUSTER_BINLOG
from tests.test_end_to_end import SAMPLE, SPLIT, trained_on_json

DAY = datetime.fromisoformat("2026-10-21T00:00:00+00:00")  # a Wednesday of the scored week


def ordinary(account: str) -> dict[str, Any]:
    """One of the account's own reads from the scored week, as a template."""
    _, events = trained_on_json()
    reads = events.filter(
        pl.col(S.ACCOUNT) == account, pl.col(S.CLASS) == "READ", pl.col(S.ROWS) > 0
    )
    return reads.row(0, named=True)


def verdict(*added: dict[str, Any]) -> dict[str, Any]:
    """The window of the first added statement, scored with the scored week's events."""
    trained, events = trained_on_json()
    extra = pl.DataFrame(list(added), schema=events.schema)
    scored = pipeline.score(pl.concat([events, extra]).sort(S.TIME), trained, settings.load())  # type: ignore[arg-type]
    start = added[0][S.TIME].replace(minute=added[0][S.TIME].minute // 5 * 5, second=0)
    return scored.filter(
        pl.col("account") == added[0][S.ACCOUNT], pl.col("window_start") == start
    ).row(0, named=True)


def statement(template: dict[str, Any], at: datetime, n: int, **changes: Any) -> dict[str, Any]:
    return {**template, S.TIME: at, S.STATEMENT_ID: f"{900000 + n}.1", **changes}


def test_a_new_client_address_alone_in_usual_hours_is_not_an_alert() -> None:
    template = ordinary("analyst_ben")
    usual = DAY.replace(hour=template[S.TIME].hour, minute=31)
    found = verdict(statement(template, usual, 1, **{S.CLIENT_IP: "10.99.7.7"}))
    assert found["features"]["new_clients"] == 1
    assert not found["flagged"], found["reasons"]


def test_usual_hours_span_midnight_from_the_hours_kept() -> None:
    # a night shift, 22:00-02:00: the profile keeps only the hours it works (smoothed
    # over +-1 hour: 21-02), and its usual span wraps past midnight
    night = [22, 23, 0, 1]
    windows = pl.DataFrame(
        {
            F.ACCOUNT: ["night_owl"] * 8 + ["day_clerk"] * 2,
            "hour": [h for h in night for _ in range(2)] + [9, 10],
        },
        schema={F.ACCOUNT: pl.String, "hour": pl.Int8},
    )
    trained, _ = trained_on_json()
    night_profile = replace(trained.profile, hours=profile._hour_shares(windows))
    kept = night_profile.hours.filter(pl.col(F.ACCOUNT) == "night_owl")
    assert sorted(kept["hour"].to_list()) == [0, 1, 2, 21, 22, 23]
    assert profile.usual_hours(night_profile, ["night_owl"]) == {"night_owl": (21, 2)}
    assert profile.usual_hours(night_profile, ["day_clerk"]) == {"day_clerk": (8, 11)}


def test_a_rare_hour_inside_the_usual_span_is_not_called_outside_it() -> None:
    """Two shifts, 13:00-20:00 and 23:00-04:00 UTC: the span holding 95% of the windows is
    12:00-05:00 (hours smoothed over +-1 hour), and 21:00 is rare though inside it. The reason gives the hour's share
    and does not call it outside that span (it said "21:35 UTC is outside its usual
    13:00-04:00 UTC"); an hour past the span is outside it, and says its share."""
    windows = pl.DataFrame(
        {
            F.ACCOUNT: "two_shifts",
            "hour": [h for h in [*range(13, 20), 23, 0, 1, 2, 3] for _ in range(40)] + [21],
        },
        schema={F.ACCOUNT: pl.String, "hour": pl.Int8},
    )
    trained, _ = trained_on_json()
    shifts = replace(trained.profile, hours=profile._hour_shares(windows))
    span = profile.usual_hours(shifts, ["two_shifts"])["two_shifts"]
    assert span == (12, 4)  # hours are smoothed over +-1 hour
    share = shifts.hours.filter(pl.col(F.ACCOUNT) == "two_shifts", pl.col("hour") == 21)[
        "share"
    ].item()
    assert -np.log10(share) >= 2.0  # a rare hour (under 1%): the reason is given
    inside = rare_hour(datetime(2026, 11, 2, 21, 35, tzinfo=UTC), -np.log10(share), span)
    assert inside == (
        f"21:35 UTC is a rare hour for it: {share:.1%} of its windows in training were within "
        "an hour of it, though its usual 12:00-05:00 UTC hold 95% of them"
    )
    outside = rare_hour(datetime(2026, 11, 2, 7, 5, tzinfo=UTC), 3.0, span)
    assert outside == (
        "07:05 UTC is outside its usual 12:00-05:00 UTC (under 0.1% of its windows in "
        "training were within an hour of it)"
    )


def test_a_new_client_address_at_an_hour_the_account_never_works_is_an_alert() -> None:
    template = ordinary("analyst_ben")
    night = DAY.replace(hour=3, minute=31)
    found = verdict(
        statement(template, night, 1, **{S.CLIENT_IP: "10.99.7.7"}),
        statement(template, night + timedelta(seconds=40), 2, **{S.CLIENT_IP: "10.99.7.7"}),
    )
    assert found["flagged"], found["score"]
    assert any("new client address for this account: 10.99.7.7" in r for r in found["reasons"])
    assert any("is outside its usual" in r for r in found["reasons"])
    # flagged for who and when, the reasons still say how much it read, against what
    volume = found["reasons"][0]
    assert volume.startswith(f"read {found['features']['rows_read_5m']:,} rows in 5 minutes from ")
    assert "this account's largest 5 minutes in training: " in volume


def test_a_few_rows_are_not_called_a_volume_past_the_accounts_largest_day() -> None:
    """An account that reads little (dba_carl: 6 rows on its largest day) flagged for a
    new client at night with 12 rows: its reasons give those rows as context, not as
    "2.1x this account's largest 1 day", which only volumes a drip is judged at
    (``guardrail_min_rows``) or ``reason_factor`` times its largest are."""
    template = ordinary("dba_carl")
    night = DAY.replace(hour=3, minute=31)
    found = verdict(statement(template, night, 1, **{S.CLIENT_IP: "10.99.7.7", S.ROWS: 12}))
    assert found["flagged"], found["score"]
    assert found["reasons"][0].startswith(
        "read 12 rows in 5 minutes from sales.order_items (this account's largest 5 minutes"
    ), found["reasons"]
    assert not any("x this account's largest" in r for r in found["reasons"])


def test_one_row_is_said_as_one_row() -> None:
    """ "read 1 row in 5 minutes", not "1 rows"."""
    template = ordinary("dba_carl")
    night = DAY.replace(hour=3, minute=31)
    found = verdict(statement(template, night, 1, **{S.CLIENT_IP: "10.99.7.7", S.ROWS: 1}))
    assert found["flagged"], found["score"]
    assert found["reasons"][0].startswith("read 1 row in 5 minutes from "), found["reasons"]
    assert not any(re.search(r"\b1 rows\b", r) for r in found["reasons"])


def test_counts_of_objects_are_said_as_counts() -> None:
    """ "4 distinct objects read in 5 minutes; this account's most in training: 2", not
    "2.0": the reference is a count of objects."""
    template = ordinary("dba_carl")
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    found = verdict(
        *(
            statement(template, at + timedelta(seconds=10 * i), i, **{S.OBJECTS: [t], S.ROWS: 5})
            for i, t in enumerate(tables_unread_by("dba_carl")[:4])
        )
    )
    line = next(r for r in found["reasons"] if " distinct objects read in " in r)
    assert re.fullmatch(r"4 distinct objects read in 5 minutes; .* in training: \d+", line), line


def test_reasons_name_the_accounts_tables_before_the_servers_catalogs() -> None:
    """A dump with pgAudit's ``log_catalog`` on reads dozens of pg_catalog tables beside
    the data: the reasons name the data's table first, not five catalogs "and 1 more"."""
    template = ordinary("dba_carl")
    night = DAY.replace(hour=3, minute=31)
    table = tables_unread_by("dba_carl")[-1]
    catalogs = [f"pg_catalog.pg_{name}" for name in ("am", "amop", "attrdef", "class", "index")]
    found = verdict(
        *(
            statement(template, night + timedelta(seconds=i), i, **{S.OBJECTS: [t], S.ROWS: 3})
            for i, t in enumerate([*catalogs, table])
        )
    )
    assert found["flagged"], found["score"]
    new = next(r for r in found["reasons"] if "never read before" in r)
    assert new.split(": ", 1)[1].startswith(table), new


def tables_unread_by(account: str) -> list[str]:
    """Tables other accounts read in training and this one never did."""
    trained, _ = trained_on_json()
    objects = trained.profile.known.filter(pl.col("kind") == "object")
    own = set(objects.filter(pl.col(F.ACCOUNT) == account)["value"])
    unread = [t for t in objects["value"].unique().sort() if t not in own]
    assert len(unread) >= 3, unread
    return unread


def test_one_table_never_read_before_is_ordinary_three_in_minutes_are_not() -> None:
    template = ordinary("analyst_ben")
    unread = tables_unread_by("analyst_ben")
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    one = verdict(statement(template, at, 1, **{S.OBJECTS: [unread[0]], S.ROWS: 5}))
    assert one["features"]["new_objects"] == 1
    assert not one["flagged"], one["reasons"]
    three = verdict(
        *(
            statement(template, at + timedelta(seconds=20 * i), i, **{S.OBJECTS: [t], S.ROWS: 5})
            for i, t in enumerate(unread[:3])
        )
    )
    assert three["flagged"], three["score"]
    assert any("3 object(s) never read before" in r for r in three["reasons"])


def model_windows(
    trained: model.TrainedModel, events: pl.DataFrame, added: list[dict[str, Any]]
) -> pl.DataFrame:
    """The windows ``trained`` judges of ``events`` with the ``added`` statements, as
    ``pipeline.model_frame`` gives them to the Judge (before the forest scores them)."""
    h = trained.horizons
    extra = pl.DataFrame(added, schema=events.schema)
    activity = F.window_activity(
        pl.concat([events, extra]).sort(S.TIME).lazy(), h.base, trained.profile.known.lazy()
    )
    conf = settings.load()
    heavy = heavy_days(trained.profile, conf)
    return pipeline.model_frame(
        F.object_today(F.add_horizons(activity, h), conf.guardrail_min_rows, heavy),
        trained.profile,
        h,
    )


def judged_at(score: float, *added: dict[str, Any]) -> dict[str, Any]:
    """The window of the first added statement, judged as if the model gave ``score``."""
    trained, events = trained_on_json()
    frame = model_windows(trained, events, list(added))
    start = added[0][S.TIME].replace(minute=added[0][S.TIME].minute // 5 * 5, second=0)
    row = frame.filter(pl.col("account") == added[0][S.ACCOUNT], pl.col("window_start") == start)
    judged = Judge(trained.profile, trained.horizons, settings.load())(row, np.array([score]))
    return judged.row(0, named=True)


def test_a_high_score_needs_a_strong_signal_or_two_weak_ones() -> None:
    template = ordinary("analyst_ben")
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    unread = tables_unread_by("analyst_ben")
    one_weak = judged_at(0.9, statement(template, at, 1, **{S.OBJECTS: [unread[0]], S.ROWS: 5}))
    assert not one_weak["flagged"]
    two_weak = judged_at(
        0.9, statement(template, at, 1, **{S.OBJECTS: [unread[0]], S.CLIENT_IP: "10.99.7.7"})
    )
    assert two_weak["flagged"]
    strong = judged_at(0.9, statement(template, at, 1, **{S.ROWS: 100_000}))
    assert strong["flagged"]
    assert not judged_at(0.4, statement(template, at, 1, **{S.ROWS: 500}))["flagged"]


def test_tables_never_read_in_a_window_of_volume_are_a_reason_with_the_score() -> None:
    """A privileged account reading data it never reads, as much as it reads of its own
    tables: analyst_ben's largest 5 minutes in training are thousands of rows, so 1,500
    rows of a table it never read is no volume reason, and the new table alone is a weak
    sign; together, with the forest's score over the threshold, they flag the window and
    say both. Five rows of that table, or the forest's score under the threshold, do not."""
    template = ordinary("analyst_ben")
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    table = tables_unread_by("analyst_ben")[0]
    conf = settings.load()
    read = statement(template, at, 1, **{S.OBJECTS: [table], S.ROWS: 1_500})
    found = judged_at(0.9, read)
    assert found["rows_read_5m_vs_own"] < 1  # under 2x its own largest
    assert found["flagged"], found["reasons"]
    assert any(
        r
        == f"1 object(s) never read before by this account: {table}; 1,500 rows read in these 5 minutes"
        for r in found["reasons"]
    ), found["reasons"]
    assert conf.guardrail_min_rows <= 1_500
    assert not judged_at(0.9, {**read, S.ROWS: 5})["flagged"]
    assert not judged_at(conf.threshold - 0.1, read)["flagged"]


def test_a_quiet_day_of_the_week_needs_two_of_them_in_training() -> None:
    """The quiet-day drip rule compares a day with the account's largest of that day of
    the week: an account that arrived in training's second week has seen each day of the
    week once, which says nothing about how quiet it usually is. web_admin's quiet
    Sunday (the drip test below) is forgotten when its first week is cut out of
    training, and kept for the accounts that were there both weeks."""
    path = SAMPLE / "postgresql.json.gz"
    train_events, _ = pipeline.read_events([path], until=SPLIT)
    arrived = datetime(2026, 10, 12, tzinfo=UTC)  # a Monday, a week before the split
    late = train_events.filter((pl.col(S.ACCOUNT) != "web_admin") | (pl.col(S.TIME) >= arrived))
    weekdays = pipeline.train(late, settings.load()).profile.weekdays
    assert weekdays.filter(pl.col(F.ACCOUNT) == "web_admin").is_empty()
    full = weekdays.filter(pl.col(F.ACCOUNT) == "web_shop")
    assert sorted(full[profile.WEEKDAY].to_list()) == list(range(1, 8))


def test_a_new_accounts_first_address_and_tool_are_not_signs_by_themselves() -> None:
    windows = pl.DataFrame(
        {"has_history": [True, False], "new_clients": [1, 1], "new_apps": [2, 1]}
    ).with_columns(
        pl.lit(0).alias(c)
        for c in ("new_objects", "new_objects_1d")
        # every relative column add_model_inputs reads, as ordinary values
    )
    h = F.Horizons("5m", ("1d",))
    for signal in ("rows_read", "bytes_read", "exports", "statements", "objects", "failed"):
        for horizon in h.all:
            for versus in ("own", "peers"):
                windows = windows.with_columns(pl.lit(0.0).alias(f"{signal}_{horizon}_vs_{versus}"))
    out = F.add_model_inputs(windows.lazy(), h).collect()
    assert out["new_client_seen"].to_list() == [1.0, 0.0]
    assert out["new_app_seen"].to_list() == [1.0, 0.0]


def test_learned_peers_are_the_accounts_reading_the_same_tables() -> None:
    trained, _ = trained_on_json()
    train_events, _ = pipeline.read_events([SAMPLE / "postgresql.json.gz"], until=SPLIT)
    h = trained.horizons
    windows = F.add_horizons(F.window_activity(train_events.lazy(), h.base), h).collect()
    known = partials.known(partials.partial(train_events, h.base))
    learned = profile.learn(windows, known, h, learned_peers=2)
    objects = learned.known.filter(pl.col("kind") == "object")
    reads = {
        a: set(objects.filter(pl.col(F.ACCOUNT) == a)["value"]) for a in objects[F.ACCOUNT].unique()
    }

    def jaccard(a: str, b: str) -> float:
        return len(reads[a] & reads[b]) / len(reads[a] | reads[b])

    for account in ("web_shop", "hr_app", "case_officer_dina"):
        group = learned.peers.filter(pl.col(F.ACCOUNT) == account)["peer_group"].item()
        assert group == f"{profile.LEARNED}{account}"
        members = set(learned.members(group)) - {account}
        # at most 2, and only accounts reading some table it reads
        assert 1 <= len(members) <= 2
        assert all(jaccard(account, m) > 0 for m in members)
        # no account outside the group reads tables more like this account's
        outside = min(jaccard(account, m) for m in members)
        assert all(jaccard(account, o) <= outside for o in set(reads) - members - {account})

    # A newcomer is placed by what it reads: reading exactly hr_app's tables, it gets
    # the group of an account whose reads are just as alike (hr_app's when unique).
    newcomer = pl.DataFrame(
        {
            F.ACCOUNT: ["newcomer"],
            F.WINDOW: [DAY],
            "objects_list": [sorted(reads["hr_app"])],
        }
    )
    placed = learned.place(newcomer.lazy())
    nearest = placed["peer_group"].item().removeprefix(profile.LEARNED)
    assert jaccard(nearest, "hr_app") == 1.0


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"roles": {"web_shop": "web", "hr_app": "web", "web_admin": "web"}}, "; peers: role web"),
        ({"learned_peers": 3}, "; peers (reading tables like web_shop's): "),
        ({}, None),
    ],
)
def test_a_volume_reason_names_the_peers_it_compares_with(
    conf: dict[str, Any], named: str | None
) -> None:
    train_events, _ = pipeline.read_events([SAMPLE / "postgresql.json.gz"], until=SPLIT)
    trained = pipeline.train(train_events, settings.load(**conf))
    _, events = trained_on_json()
    template = ordinary("web_shop")
    at = DAY.replace(hour=11, minute=2)
    # 4x the 50,191-row pull web_shop alerted on the day before: alerts again (realert_factor)
    pull = pl.DataFrame([statement(template, at, 1, **{S.ROWS: 200_000})], schema=events.schema)
    scored = pipeline.score(pl.concat([events, pull]).sort(S.TIME), trained, settings.load(**conf))
    window = scored.filter(
        pl.col("account") == "web_shop", pl.col("window_start") == at.replace(minute=0)
    ).row(0, named=True)
    volume = next(r for r in window["reasons"] if r.startswith("read 200,"))
    if named is None:
        assert "peers" not in volume.split("any peer's largest")[1]
    else:
        assert named in volume


def test_a_new_account_is_alerted_when_beyond_its_peers_then_only_beyond_itself() -> None:
    # "newcomer" arrives in the scored week and reads 250,000 rows at 10:00 every day,
    # past 10x any peer's largest (19,943); on the fourth day, 3,000,000.
    trained, events = trained_on_json()
    template = {**ordinary("web_shop"), S.ACCOUNT: "newcomer", S.OBJECTS: ["sales.orders"]}
    days = [DAY + timedelta(days=d, hours=10, minutes=2) for d in range(4)]
    reads = [
        statement(template, at, i, **{S.ROWS: 3_000_000 if i == 3 else 250_000})
        for i, at in enumerate(days)
    ]
    extra = pl.DataFrame(reads, schema=events.schema)
    scored = pipeline.score(pl.concat([events, extra]).sort(S.TIME), trained, settings.load())
    mine = scored.filter(pl.col("account") == "newcomer").sort("window_start")
    assert mine["flagged"].to_list() == [True, False, False, True]
    first, last = mine["reasons"][0].to_list(), mine["reasons"][3].to_list()
    assert "a new account with no history" in first[0]
    assert "its typical peer's largest or its own on earlier days (250,000)" in last[0]


def test_a_volume_already_alerted_on_alerts_again_only_beyond_it_or_days_later() -> None:
    """An account that takes on new work (a role change) alerts the first time it reads at
    its new volume, not each time it does so again over the next days; reading beyond what
    was alerted, or at it again after the longest horizon (3 days), alerts again."""
    trained, events = trained_on_json()
    template = ordinary("analyst_ben")
    own = trained.profile.account_max.filter(pl.col(F.ACCOUNT) == "analyst_ben")  # type: ignore[attr-defined]
    rows = 200 * int(own["rows_read_1d"].item())  # far beyond its day, and its 5 minutes
    pulls = {
        "first": (DAY.replace(hour=10, minute=2), rows),
        "same day, a little less": (DAY.replace(hour=15, minute=2), rows * 9 // 10),
        "next day, the same": (DAY.replace(hour=10, minute=2) + timedelta(days=1), rows),
        "next day, three times it": (DAY.replace(hour=15, minute=2) + timedelta(days=1), 3 * rows),
        "5 days on, the first again": (DAY.replace(hour=10, minute=2) + timedelta(days=5), rows),
    }
    added = [
        statement(template, at, n, **{S.ROWS: volume})
        for n, (at, volume) in enumerate(pulls.values())
    ]
    extra = pl.DataFrame(added, schema=events.schema)
    scored = pipeline.score(pl.concat([events, extra]).sort(S.TIME), trained, settings.load())  # type: ignore[arg-type]
    flagged = {
        name: scored.filter(
            pl.col("account") == "analyst_ben",
            pl.col("window_start") == at.replace(minute=0),
        )["flagged"].item()
        for name, (at, _) in pulls.items()
    }
    assert flagged == {
        "first": True,
        "same day, a little less": False,
        "next day, the same": False,
        "next day, three times it": True,
        "5 days on, the first again": True,
    }


def test_an_export_by_an_account_that_never_exports_alerts_once_in_three_days() -> None:
    """An account that never exported starts exporting (a new duty, or stolen
    credentials): its first export alerts; the next ones of the same table within 3
    days of that alert are no news, one of another table is; one after that alerts
    again."""
    trained, events = trained_on_json()
    own = trained.profile.account_max.filter(pl.col(F.ACCOUNT) == "hr_app")  # type: ignore[attr-defined]
    assert own.select(pl.max_horizontal(pl.col("^exports_.*$"))).item() == 0
    template = ordinary("hr_app")
    known = trained.profile.known.filter(  # type: ignore[attr-defined]
        pl.col(F.ACCOUNT) == "hr_app", pl.col("kind") == "object"
    )["value"]
    other = next(o for o in known.sort() if o not in template[S.OBJECTS])

    def copy(table: str) -> dict[str, Any]:
        return {
            S.EXPORT: True,
            S.ROWS: 3,
            S.QUERY: f"COPY {table} TO STDOUT",
            S.COMMAND: "COPY",
            S.OBJECTS: [table],
        }

    exports = {
        "first": DAY.replace(hour=10, minute=2),
        "the same afternoon": DAY.replace(hour=15, minute=2),
        "another table the next day": DAY.replace(hour=12, minute=2) + timedelta(days=1),
        "two days on": DAY.replace(hour=11, minute=2) + timedelta(days=2),
        "four days on": DAY.replace(hour=10, minute=2) + timedelta(days=4),
    }
    added = [
        statement(template, at, n, **copy(other if "another" in name else template[S.OBJECTS][0]))
        for n, (name, at) in enumerate(exports.items())
    ]
    extra = pl.DataFrame(added, schema=events.schema)
    scored = pipeline.score(pl.concat([events, extra]).sort(S.TIME), trained, settings.load())  # type: ignore[arg-type]
    flagged = {
        name: scored.filter(
            pl.col("account") == "hr_app", pl.col("window_start") == at.replace(minute=0)
        )["flagged"].item()
        for name, at in exports.items()
    }
    assert flagged == {
        "first": True,
        "the same afternoon": False,
        "another table the next day": True,
        "two days on": False,
        "four days on": True,
    }


@pytest.mark.parametrize(
    ("query", "read_out", "words"),
    [
        (
            "SELECT pg_read_binary_file('base/16384/16402')",
            S.SERVER_FILES,
            "files of the database server read out through SQL (pg_read_file, LOAD_FILE)",
        ),
        ("SELECT lo_get(16392)", S.LARGE_OBJECTS, "large objects' contents (lo_get, loread"),
    ],
)
def test_data_a_server_function_hands_out_is_said_in_database_terms(
    query: str, read_out: str, words: str
) -> None:
    """An application's credentials reading the server's files (its tables' files, here)
    or large objects through SQL: an export, flagged, and said as what it read out."""
    template = ordinary("hr_app")
    read = statement(
        template, DAY.replace(hour=11, minute=2), 1,
        **{S.QUERY: query, S.OBJECTS: [read_out], S.EXPORT: True, S.ROWS: None},
    )  # fmt: skip
    judged = verdict(read)
    assert judged["flagged"]
    said = "\n".join(judged["reasons"])
    assert (
        f"export statement(s) (COPY ... TO, cursor FETCH, dump or INTO OUTFILE, server function) of {read_out}: {words}"
        in said
    ), said
    assert "size not logged (a row is a whole object or file)" in said, said


def test_a_binary_log_stream_is_said_as_every_change_to_every_database() -> None:
    """An application's credentials streaming a MySQL or MariaDB binary log (a rogue
    replica, ``mariadb-binlog --read-from-remote-server``): flagged, and said as what
    such a stream holds, as PostgreSQL's WAL stream is."""
    template = ordinary("hr_app")
    stream = statement(
        template, DAY.replace(hour=11, minute=2), 1,
        **{S.QUERY: "SET @master_binlog_checksum='NONE'", S.COMMAND: "SET",
           S.OBJECTS: [CLUSTER_BINLOG], S.EXPORT: True, S.ROWS: None},
    )  # fmt: skip
    judged = verdict(stream)
    assert judged["flagged"]
    said = "\n".join(judged["reasons"])
    assert (
        "of (cluster binlog): a stream of the server's binary log (every change to every "
        "database) by hr_app" in said
    ), said


def test_a_few_rows_of_other_tables_after_an_alert_are_not_called_the_leak_going_on() -> None:
    """hr_app, alerted at 15:20 on the sample logs' first scored day for reading 7 tables
    new to it (24 rows), reads 4 more at 15:25 (10 rows): flagged again for those, but
    not said to be a pull going on table by table. That reason is for windows of real
    volume, which alone may alert again at an alerted level."""
    trained, events = trained_on_json()
    scored = pipeline.score(events, trained, settings.load())  # type: ignore[arg-type]
    hr_app = scored.filter(pl.col("account") == "hr_app", pl.col("flagged")).sort("window_start")
    first, second = hr_app.head(2).iter_rows(named=True)
    assert second["window_start"] - first["window_start"] == timedelta(minutes=5)
    assert any("never read before by this account" in r for r in second["reasons"])
    assert not any("which no alert on this account" in r for r in second["reasons"]), second


def test_a_days_reads_past_its_largest_are_a_drip_on_a_day_the_account_hardly_works() -> None:
    """web_admin reads up to 715 rows in a calendar day in training, but at most 6 on a
    Sunday (a quiet day for it: under a tenth) and 155 on a Saturday (not). Its largest
    day's worth again, a few rows at a time in its usual hours, is a slow drip on a
    Sunday, and nothing on the Saturday before (the day then stays under twice its
    largest)."""
    trained, events = trained_on_json()
    conf = settings.load()
    c = "rows_read_today"
    mine = pl.col(F.ACCOUNT) == "web_admin"
    by_day = dict(trained.profile.weekdays.filter(mine).select(profile.WEEKDAY, c).iter_rows())
    own = max(by_day.values())
    assert by_day[7] <= conf.quiet_day_share * own < by_day[6]  # Sunday quiet, Saturday not
    template = ordinary("web_admin")
    extra = max(own, conf.guardrail_min_rows)

    def drip(day: datetime) -> list[dict[str, Any]]:
        """``extra`` rows in 20 reads, one every 15 minutes from 10:00."""
        return [
            statement(
                template, day + timedelta(hours=10, minutes=15 * i), i, **{S.ROWS: extra // 20}
            )
            for i in range(20)
        ]

    def flagged(added: list[dict[str, Any]]) -> pl.DataFrame:
        extra_events = pl.DataFrame(added, schema=events.schema)
        scored = pipeline.score(pl.concat([events, extra_events]).sort(S.TIME), trained, conf)  # type: ignore[arg-type]
        return scored.filter(mine, pl.col("flagged"))

    saturday, sunday = datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC)
    assert flagged([]).is_empty()
    assert flagged(drip(saturday)).is_empty()
    hits = flagged(drip(sunday))
    assert hits.height == 1, hits.select("window_start", "reasons").to_dicts()
    assert hits["window_start"][0].date() == sunday.date()
    drip_line = next(r for r in hits["reasons"][0] if r.startswith("slow drip: "))
    assert re.search(
        r"rows read today \(UTC\), a Sunday, a quiet day for it: 1\.\dx its largest day", drip_line
    ), drip_line


def test_one_big_read_on_an_ordinary_day_is_no_slow_drip() -> None:
    """A slow drip is a day's reads of a table past 3 times the account's largest day of
    it, a little at a time. The same rows read at once, on a day otherwise within its
    largest, are one window's burst, which the guardrail and the volume reasons judge:
    before, an analyst's one big query was also called a "slow drip" (2.5x its largest
    day, 664,121 of 1,097,173 rows in one window, on an independently written
    population)."""
    trained, events = trained_on_json()
    conf = settings.load()
    account = "web_admin"
    mine = pl.col(F.ACCOUNT) == account
    template = ordinary(account)
    (table,) = template[S.OBJECTS]
    largest = trained.profile.object_days.filter(mine, pl.col("object") == table)["rows"].item()
    day_own = trained.profile.account_max.filter(mine)[F.col_name("rows_read", "1d")].item()
    rows = max(3 * largest, day_own) + 20  # alone, a day past 3x its largest of the table
    assert rows >= conf.guardrail_min_rows
    day = DAY.replace(hour=9)  # a Wednesday: not a quiet day for it

    def drips(reads: list[dict[str, Any]]) -> list[datetime]:
        """The windows of the day flagged as a drip by the day's reads (not 3 days')."""
        frame = model_windows(trained, events, reads).filter(mine)
        judged = Judge(trained.profile, trained.horizons, conf)(frame, np.zeros(frame.height))
        by_day = pl.col("reasons").list.eval(pl.element().str.contains("read today")).list.any()
        return judged.filter(
            pl.col("drip"), by_day, pl.col("window_start") < day + timedelta(days=1)
        )["window_start"].to_list()

    spread = [
        statement(template, day + timedelta(minutes=15 * i), i, **{S.ROWS: rows // 20})
        for i in range(20)
    ]
    at_once = [statement(template, day + timedelta(hours=2, minutes=1), 1, **{S.ROWS: rows})]
    assert drips(spread), "the same rows over the day are a drip"
    assert drips(at_once) == []


def test_the_guardrail_names_the_horizon_and_volume_that_tripped_it() -> None:
    """hr_app reads at most 60 rows in 5 minutes and 151 in an hour in training. Four reads
    of 400 rows, 5 minutes apart, never reach the 5-minute guardrail (1,000 rows) but the
    fourth takes the hour past 10x its largest hour. Judged with a low score (so no earlier
    window is an alert that would restart its sums), that window trips the guardrail, and
    the reason gives that hour's numbers, not the 5-minute ratio the volume line shows."""
    trained, _ = trained_on_json()
    own = trained.profile.account_max.filter(pl.col(F.ACCOUNT) == "hr_app")["rows_read_1h"].item()
    assert own * 10 < 1_600 and settings.load().guardrail_min_rows > 400
    template = ordinary("hr_app")
    at = DAY.replace(hour=10, minute=1)
    reads = [
        statement(template, at + timedelta(minutes=5 * i), i, **{S.ROWS: 400}) for i in range(4)
    ]
    found = judged_at(0.0, *reversed(reads))  # the window of the last read
    assert found["guardrail"] and found["severity"] == "critical"
    hour = found["rows_read_1h"]
    assert hour >= 1_600 and found["rows_read_1h"] - found["rows_read_5m"] <= 10 * own
    line = next(r for r in found["reasons"] if r.startswith("guardrail: "))
    assert line == (
        f"guardrail: over 10x this account's largest 1 hour in training ({own}) and its "
        f"typical peer's (151): {hour:,} rows read in 1 hour"
    )


def test_an_account_new_in_trainings_last_days_is_held_to_its_peers_too() -> None:
    """co_late is seen in training only on its last weekend, reading a row at a time. On
    the Monday after, it reads as case_officer_dina does every day. Held to its own two
    quiet days alone it would be many times "its largest"; with under settled_after
    (7 days) of its own history its largest counts as at least its typical peer's, and
    an ordinary day is no alert. With settled_after 0s it is."""
    path = SAMPLE / "postgresql.json.gz"
    train_events, _ = pipeline.read_events([path], until=SPLIT)
    events, _ = pipeline.read_events([path], since=SPLIT)
    dina = pl.col(S.ACCOUNT) == "case_officer_dina"
    template = train_events.filter(dina, pl.col(S.CLASS) == "READ").row(0, named=True)
    weekend = [
        statement(
            template,
            SPLIT - timedelta(days=2) + timedelta(hours=h),
            h,
            **{S.ACCOUNT: "co_late", S.ROWS: 1},
        )
        for h in (10, 14)
    ]
    train_late = pl.concat([train_events, pl.DataFrame(weekend, schema=train_events.schema)])
    # Its reads; dina's exports (cursor fetches) would be news from an account whose
    # history has none.
    monday = events.filter(
        dina, ~pl.col(S.EXPORT), pl.col(S.TIME) < SPLIT + timedelta(days=1)
    ).with_columns(pl.lit("co_late").alias(S.ACCOUNT))
    assert monday.height >= 10
    scored_late = pl.concat([events, monday]).sort(S.TIME)

    def flagged(settled_after: str) -> pl.DataFrame:
        conf = settings.load().model_copy(update={"settled_after": settled_after})
        trained = pipeline.train(train_late.sort(S.TIME), conf)
        scored = pipeline.score(scored_late, trained, conf)
        return scored.filter(pl.col("account") == "co_late", pl.col("flagged"))

    assert flagged("7d").is_empty()
    alone = flagged("0s")
    assert alone.height >= 1
    assert any("this account's largest" in r for rs in alone["reasons"] for r in rs)


def test_a_short_training_period_leaves_no_account_young() -> None:
    """Trained on one week only (the sample's second), every account was there from its
    first day: none is held to its peers for a short history, so the verdicts are those
    of settled_after 0s."""
    path = SAMPLE / "postgresql.json.gz"
    week2, _ = pipeline.read_events([path], since=SPLIT - timedelta(days=7), until=SPLIT)
    events, _ = pipeline.read_events([path], since=SPLIT)

    def verdicts(settled_after: str) -> pl.DataFrame:
        conf = settings.load().model_copy(update={"settled_after": settled_after})
        scored = pipeline.score(events, pipeline.train(week2, conf), conf)
        return scored.select("account", "window_start", "flagged", "reasons")

    short = verdicts("7d")
    assert short.equals(verdicts("0s"))
    assert short["flagged"].sum() >= 5


def test_volumes_are_judged_only_over_horizons_training_held_twice() -> None:
    """Trained on 12 hours of logs, each account's largest day in training is at most
    half a day: by the next morning every account that works day and night has read
    twice that, on an ordinary day, and ten times it in a few days. No drip, guardrail or
    volume reason is judged over a day (nor over 3 days) then; over 5 minutes and an
    hour they still are (before: web_shop's ordinary next evening was a slow drip, three
    windows of it)."""
    path = SAMPLE / "postgresql.json.gz"
    start = SPLIT - timedelta(days=3)
    half_day, _ = pipeline.read_events([path], since=start, until=start + timedelta(hours=12))
    events, _ = pipeline.read_events([path], since=start, until=start + timedelta(days=2))
    conf = settings.load()
    trained = pipeline.train(half_day, conf)
    scored = pipeline.score(events, trained, conf)
    assert drips(scored) == []
    reasons = [r for rs in scored["reasons"].to_list() for r in rs]
    assert not [r for r in reasons if re.search(r"largest (?:1 day|3 days)", r)]
    assert any("largest 5 minutes in training" in r for r in reasons)
    # Trained on the two weeks before, the same days hold no drip either: a drip above
    # would be the short training's, not the days'.
    before, _ = pipeline.read_events([path], until=start)
    assert drips(pipeline.score(events, pipeline.train(before, conf), conf)) == []


def drips(scored: pl.DataFrame) -> list[tuple[str, datetime]]:
    """The windows ``scored`` flagged as slow drips."""
    drip = pl.col("reasons").list.eval(pl.element().str.starts_with("slow drip:")).list.any()
    return list(scored.filter(drip).select("account", "window_start").iter_rows())


def test_horizons_without_a_day_still_judge() -> None:
    """With ``horizons = ["1h"]`` there is no trailing day for the 2x drip rule: it is off
    (the quiet-day rule sums calendar days, whatever the horizons); the others judge as
    before (web_shop's night pull is flagged)."""
    path = SAMPLE / "postgresql.json.gz"
    conf = settings.load().model_copy(update={"horizons": ["1h"]})
    trained = pipeline.train(pipeline.read_events([path], until=SPLIT)[0], conf)
    scored = pipeline.score(pipeline.read_events([path], since=SPLIT)[0], trained, conf)
    pull = scored.filter(
        pl.col("account") == "web_shop",
        pl.col("window_start") == datetime(2026, 10, 20, 3, 10, tzinfo=UTC),
    )
    assert pull["flagged"].to_list() == [True]
    reasons = [r for rs in scored.filter(pl.col("flagged"))["reasons"].to_list() for r in rs]
    assert reasons and not any(" in the last 1 day" in r for r in reasons)


def test_a_new_accounts_reasons_do_not_speak_of_its_training() -> None:
    """A new account's statements are compared with its typical peer's most (it has no
    training of its own), and its reasons say so."""
    template = {**ordinary("web_shop"), S.ACCOUNT: "newbie"}
    at = DAY.replace(hour=11, minute=1)
    burst = [statement(template, at + timedelta(seconds=5 * i), i) for i in range(40)]
    found = judged_at(0.9, *burst)
    assert not found["has_history"] and found["flagged"]
    line = next(r for r in found["reasons"] if " statements in 5 minutes; " in r)
    assert line.endswith("its typical peer's most or its own on earlier days"), line
    assert not any("in training" in r for r in found["reasons"] if "this account" in r)


def test_a_new_accounts_export_reason_does_not_speak_of_its_training() -> None:
    """An account training never saw that exports (``COPY ... TO``) is told from its peers
    and its own earlier days, not from a training history it does not have."""
    template = {**ordinary("web_shop"), S.ACCOUNT: "newbie"}
    table = template[S.OBJECTS][0]
    at = DAY.replace(hour=11, minute=1)
    copy = statement(
        template,
        at,
        1,
        **{
            S.COMMAND: "COPY",
            S.QUERY: f"COPY {table} TO STDOUT",
            S.EXPORT: True,
            S.ROWS: None,
        },
    )
    found = judged_at(0.9, copy)
    assert not found["has_history"] and found["flagged"]
    line = next(r for r in found["reasons"] if " export statement(s) " in r)
    assert line.endswith(
        "a new account: neither its typical peer in training nor it on earlier days exported data"
    ), line
    assert not any("in training" in r for r in found["reasons"] if "this account" in r)


def test_a_dumps_reasons_do_not_call_its_counted_rows_its_volume() -> None:
    """pgAudit logs 0 rows (unknown) for a dump's ``COPY ... TO`` and real rows for the
    reads beside it: the reasons say the exports' rows are not in the log, instead of
    presenting the few counted rows as what the dump read."""
    template = ordinary("billing_job")
    at = DAY.replace(hour=10, minute=31)
    tables = tables_unread_by("billing_job")[:3]
    dump = {S.EXPORT: True, S.ROWS: None, S.COMMAND: "COPY", S.APPLICATION: "pg_dump"}
    found = verdict(
        *(
            statement(
                template,
                at + timedelta(seconds=n),
                n,
                **dump,
                **{S.OBJECTS: [t], S.QUERY: f"COPY {t} TO stdout;"},
            )
            for n, t in enumerate(tables)
        ),
        # its catalog read, counted (an export too: everything pg_dump reads is)
        statement(template, at + timedelta(seconds=9), 9, **{**dump, S.ROWS: 4}),
    )
    assert found["flagged"]
    export_line = next(r for r in found["reasons"] if r[0].isdigit() and "export" in r)
    assert export_line.startswith("4 export statement(s)"), export_line
    assert "row count not logged for 3 of them, 4 rows in the others" in export_line
    read_line = next(r for r in found["reasons"] if r.startswith("read "))
    assert "not counting its 3 export statement(s), whose rows the log does not give" in read_line


def test_statements_past_the_accounts_largest_day_are_named_as_the_reason() -> None:
    """A flag's reason names what flagged it: 123 one-row statements over three and a
    half hours, 3 every 5 minutes (under analyst_ben's largest 5 minutes, 4, and its
    largest hour, 17), take its day past 3x its largest day (40). With the forest's
    score over the threshold that is a strong sign; before, the reasons only said the
    window read 1 row and gave the score."""
    template = ordinary("analyst_ben")
    start = DAY.replace(hour=template[S.TIME].hour, minute=0)
    added = [
        statement(template, start + timedelta(minutes=5 * w, seconds=s), 3 * w + s, **{S.ROWS: 1})
        for w in range(41)
        for s in range(3)
    ]
    trained, events = trained_on_json()
    mine = (
        model_windows(trained, events, added)
        .filter(
            pl.col("account") == "analyst_ben",
            pl.col("window_start").is_between(start, added[-1][S.TIME]),
        )
        .sort("window_start")
    )
    judged = Judge(trained.profile, trained.horizons, settings.load())(
        mine, np.full(mine.height, 0.9)
    )
    flagged = judged.filter(pl.col("flagged"))
    assert flagged.height >= 1
    for reasons in flagged["reasons"].to_list():
        said = [r for r in reasons if re.search(r"^\d[\d,]* statements in 1 (day|hour), ", r)]
        assert said and "of them in these 5 minutes; " in said[0], reasons


def test_an_export_reason_compares_the_window_with_the_accounts_largest_window() -> None:
    """case_officer_dina exported at most once in 5 minutes in training, 5 times in 3
    days. Five COPYs in one window are set beside its largest 5 minutes (3.0x, the +1
    smoothed ratio of every reason), in export statements: after the rows exported, a
    bare "(1)" read as rows. Before, the reason said "1.0x its usual" (its largest 3
    days), and a nightly job's usual 10 tables read "0.3x"."""
    template = ordinary("case_officer_dina")
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    table = template[S.OBJECTS][0]
    copy = {S.EXPORT: True, S.ROWS: None, S.COMMAND: "COPY", S.OBJECTS: [table]}
    found = judged_at(
        0.9, *(statement(template, at + timedelta(seconds=n), n, **copy) for n in range(5))
    )
    assert found["flagged"], found["reasons"]
    line = next(r for r in found["reasons"] if " export statement(s) " in r)
    assert line.startswith("5 export statement(s)"), line
    assert line.endswith(
        "3.0x this account's largest 5 minutes in training (1 export statement(s))"
    ), line


@pytest.mark.parametrize(("score", "severity"), [(0.3, "medium"), (0.55, "medium"), (0.9, "high")])
def test_a_slow_drip_is_at_least_medium_whatever_its_score(score: float, severity: str) -> None:
    """The README's promise: a drip (or a stranger's session) is at least ``medium``.
    Before, a drip scoring 0.55 fell in the ``low`` band first, and one scoring 0.3 was
    ``medium``: the higher score, the lower severity."""
    trained, events = trained_on_json()
    template = ordinary("web_admin")
    sunday = datetime(2026, 10, 25, tzinfo=UTC)  # a quiet day for web_admin (test above)
    reads = [
        statement(template, sunday + timedelta(hours=10, minutes=15 * i), i, **{S.ROWS: 60})
        for i in range(20)
    ]
    frame = model_windows(trained, events, reads).filter(
        pl.col("account") == "web_admin", pl.col("window_start").dt.date() == sunday.date()
    )
    judge = Judge(trained.profile, trained.horizons, settings.load())
    judged = judge(frame, np.full(frame.height, score))
    drips = judged.filter(pl.col("drip"))
    assert drips.height == 1
    assert drips["severity"].to_list() == [severity]


@pytest.mark.parametrize(("factor", "again"), [(1.5, False), (1.0, True)])
def test_a_volume_a_little_past_the_alerted_one_is_no_new_alert(factor: float, again: bool) -> None:
    """A role change reads 20% more the day after its alert: no news at the default
    ``realert_factor`` (1.5), an alert again at 1 (any growth, the rule before)."""
    trained, events = trained_on_json()
    template = ordinary("analyst_ben")
    own = trained.profile.account_max.filter(pl.col(F.ACCOUNT) == "analyst_ben")  # type: ignore[attr-defined]
    rows = 200 * int(own["rows_read_1d"].item())
    first, next_day = (
        DAY.replace(hour=10, minute=2),
        DAY.replace(hour=10, minute=2) + timedelta(days=1),
    )
    added = [
        statement(template, first, 0, **{S.ROWS: rows}),
        statement(template, next_day, 1, **{S.ROWS: rows * 6 // 5}),
    ]
    conf = settings.load().model_copy(update={"realert_factor": factor})
    scored = pipeline.score(
        pl.concat([events, pl.DataFrame(added, schema=events.schema)]).sort(S.TIME), trained, conf
    )
    mine = scored.filter(pl.col("account") == "analyst_ben")
    at = {
        w: mine.filter(pl.col("window_start") == w.replace(minute=0))["flagged"].item()
        for w in (first, next_day)
    }
    assert at == {first: True, next_day: again}


def test_a_days_rows_of_one_table_far_past_its_largest_are_a_drip_only_on_a_heavy_day() -> None:
    """analyst_anna's largest day of sales.order_items in training is 4,656 rows, of all
    its tables 32,419. Reading 15,000 rows of order_items on a Tuesday (not a quiet day
    for it), 750 at a time, is 3.2x its largest day of that table: on a day of 15,000
    rows in all (under 1.5x its largest day) it is work moved from one table to another,
    no drip; on a day of 51,000 (with 36,000 rows of sales.customers, under 3x its
    largest day of them) it is one, and the reason names the table and both days; with
    ``object_drip_day`` at 2, it is not. Before, the rule was the day in all past twice
    the largest day: neither day was a drip."""
    trained, events = trained_on_json()
    conf = settings.load()
    account = "analyst_anna"
    mine = pl.col(F.ACCOUNT) == account
    largest = dict(trained.profile.object_days.filter(mine).select("object", "rows").iter_rows())
    day_own = trained.profile.weekdays.filter(mine)["rows_read_today"].max()
    assert (largest["sales.order_items"], largest["sales.customers"], day_own) == (
        4_656,
        27_540,
        32_419,
    )
    reads = events.filter(pl.col(S.ACCOUNT) == account, pl.col(S.CLASS) == "READ")
    template = reads.filter(pl.col(S.OBJECTS) == ["sales.order_items"]).row(0, named=True)
    customers = reads.filter(pl.col(S.OBJECTS) == ["sales.customers"]).row(0, named=True)
    tuesday = datetime(2026, 10, 20, tzinfo=UTC)
    assert reads.filter(pl.col(S.TIME).dt.date() == tuesday.date()).is_empty()
    items = [
        statement(
            template, tuesday.replace(hour=12) + timedelta(minutes=15 * i), i, **{S.ROWS: 750}
        )
        for i in range(20)
    ]
    other = [
        statement(
            customers,
            tuesday.replace(hour=8) + timedelta(minutes=10 * i),
            100 + i,
            **{S.ROWS: 1_800},
        )
        for i in range(20)
    ]

    def drips(
        added: list[dict[str, Any]], conf: settings.Settings = conf
    ) -> list[tuple[datetime, list[str]]]:
        frame = model_windows(trained, events, added).filter(mine)
        judged = Judge(trained.profile, trained.horizons, conf)(frame, np.zeros(frame.height))
        found = judged.filter(pl.col("drip"), pl.col(F.WINDOW).dt.date() == tuesday.date())
        return list(zip(found[F.WINDOW].to_list(), found["reasons"].to_list(), strict=True))

    assert drips(items) == []
    ((at, reasons),) = drips(items + other)
    assert at == tuesday.replace(hour=16, minute=30)  # the 19th read: 14,250 rows, 3.06x
    (drip,) = [r for r in reasons if r.startswith("slow drip: ")]
    assert drip.startswith(
        "slow drip: 14,250 rows of sales.order_items read today (UTC), 3.1x this account's "
        "largest day of it in training (4,656); 50,250 rows read today in all, 1.6x its "
        "largest day in training (32,419); flagged in the first window past 3x a table's "
        "largest day on a day past 1.5x the account's, or 2x on a day past 2x"
    ), drip
    # object_drip_day says how heavy the day must be: at 2, a day of 1.6x is no drip
    assert drips(items + other, conf.model_copy(update={"object_drip_day": 2.0})) == []
