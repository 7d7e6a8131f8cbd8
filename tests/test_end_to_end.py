"""End to end on the bundled sample logs (a real PostgreSQL 15 + pgAudit workload):
train on the two ordinary weeks, score the third, in each of the three outputs.

Every labelled incident must be flagged in a window where it happened, and no
unlabelled account-day may be flagged: the nightly backup's dump included.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from detector import pipeline, settings
from detector import schema as S
from tests.conftest import OUTPUTS

SAMPLE = Path(__file__).parents[1] / "sample_logs"
SPLIT = datetime.fromisoformat("2026-10-19T00:00:00+00:00")


@cache
def scored(output: str) -> pl.DataFrame:
    path = SAMPLE / f"{OUTPUTS[output]}.gz"
    conf = settings.load()
    train_events, _ = pipeline.read_events([path], until=SPLIT)
    trained = pipeline.train(train_events, conf)
    events, _ = pipeline.read_events([path], since=SPLIT)
    return pipeline.score(events, trained, conf)


def labels() -> pl.DataFrame:
    return pl.read_csv(SAMPLE / "labels.csv", try_parse_dates=True).with_columns(
        pl.col("start").dt.replace_time_zone("UTC"), pl.col("end").dt.replace_time_zone("UTC")
    )


@pytest.mark.parametrize("incident", labels()["incident_id"].to_list())
def test_every_incident_is_flagged_where_it_happened(incident: str, output: str) -> None:
    label = labels().filter(pl.col("incident_id") == incident).row(0, named=True)
    hits = scored(output).filter(
        pl.col("flagged"),
        pl.col("account") == label["account"],
        pl.col("window_end") > label["start"],
        pl.col("window_start") <= label["end"],
    )
    assert hits.height >= 1, f"{incident} ({label['kind']}) by {label['account']} not flagged"
    assert all(hits["reasons"].list.len() > 0)


def test_no_unlabelled_account_day_is_flagged(output: str) -> None:
    days = labels().select("account", pl.col("start").dt.date().alias("day"))
    flagged = (
        scored(output)
        .filter(pl.col("flagged"))
        .with_columns(pl.col("window_start").dt.date().alias("day"))
    )
    false_alarms = flagged.join(days, on=["account", "day"], how="anti")
    assert false_alarms.is_empty(), false_alarms.select(
        "account", "window_start", "score", "reasons"
    ).to_dicts()


def test_the_nightly_backup_is_scored_but_not_flagged(output: str) -> None:
    backup = scored(output).filter(pl.col("account") == "backup")
    assert backup.height >= 7
    assert not backup["flagged"].any()


def test_three_outputs_give_the_same_verdicts() -> None:
    verdicts = [
        scored(o)
        .filter(pl.col("flagged"))
        .select("account", "window_start")
        .sort("account", "window_start")
        for o in sorted(OUTPUTS)
    ]
    for other in verdicts[1:]:
        assert other.equals(verdicts[0])


@cache
def trained_on_json() -> tuple[object, pl.DataFrame]:
    path = SAMPLE / "postgresql.json.gz"
    train_events, _ = pipeline.read_events([path], until=SPLIT)
    events, _ = pipeline.read_events([path], since=SPLIT)
    return pipeline.train(train_events, settings.load()), events


def test_a_pull_far_beyond_the_account_and_its_peers_trips_the_guardrail() -> None:
    # One web-app statement returning 5,000 rows from a table it reads 1-20 rows of at a
    # time: the guardrail flags it whatever the model's score, and says why.
    trained, events = trained_on_json()
    ordinary = events.filter(pl.col(S.ACCOUNT) == "web_shop", pl.col(S.CLASS) == "READ").row(
        0, named=True
    )
    when = datetime.fromisoformat("2026-10-24T11:02:00+00:00")
    pull = pl.DataFrame(
        [{**ordinary, S.TIME: when, S.ROWS: 5_000, S.STATEMENT_ID: "999999.1"}],
        schema=events.schema,
    )
    scored = pipeline.score(pl.concat([events, pull]).sort(S.TIME), trained, settings.load())  # type: ignore[arg-type]
    window = scored.filter(
        pl.col("account") == "web_shop", pl.col("window_start") == when.replace(minute=0)
    )
    assert window["flagged"].to_list() == [True]
    assert window["severity"].to_list() == ["critical"]
    assert any("guardrail" in r for r in window["reasons"][0])
    assert any(r.startswith("read 5,") for r in window["reasons"][0])


def attribution(reasons: list[str]) -> list[str]:
    """The features named by a flagged window's "made of:" line, largest share first."""
    line = next(r for r in reasons if "made of: " in r)
    return [part.rsplit(" ", 1)[0] for part in line.split("made of: ")[1].split(", ")]


@pytest.mark.parametrize(
    ("incident", "first"),
    [
        ("INC-1", "volume vs its own history"),  # the web app's bulk SELECT
        ("INC-4", "exports vs its own history"),  # a cursor pull: export, rows unknown
        ("INC-5", "objects new to it"),  # enumeration of tables never read
    ],
)
def test_the_model_names_what_made_each_incident_unusual(incident: str, first: str) -> None:
    label = labels().filter(pl.col("incident_id") == incident).row(0, named=True)
    hit = scored("jsonlog").filter(
        pl.col("flagged"),
        pl.col("account") == label["account"],
        pl.col("window_end") > label["start"],
        pl.col("window_start") <= label["end"],
    )
    assert attribution(hit["reasons"][0].to_list())[0] == first


def test_a_slow_drip_is_flagged_once_its_day_passes_twice_the_accounts_largest() -> None:
    """A batch job that reads three times its usual rows for a day, a little more in
    each of its usual runs: no window looks odd, the day does."""
    path = SAMPLE / "postgresql.json.gz"
    conf = settings.load()
    trained = pipeline.train(pipeline.read_events([path], until=SPLIT)[0], conf)
    events, _ = pipeline.read_events([path], since=SPLIT)
    day = pl.col(S.TIME).dt.date() == datetime(2026, 10, 21).date()
    drip = (pl.col(S.ACCOUNT) == "billing_job") & (pl.col(S.CLASS) == "READ") & day
    dripped = events.with_columns(
        pl.when(drip).then(pl.col(S.ROWS) * 3).otherwise(pl.col(S.ROWS)).alias(S.ROWS)
    )
    before = pipeline.score(events, trained, conf).filter(pl.col("flagged"))
    after = pipeline.score(dripped, trained, conf).filter(pl.col("flagged"))
    assert "billing_job" not in before["account"].to_list()
    hits = after.filter(pl.col("account") == "billing_job")
    assert hits.height >= 1, after.select("account", "window_start").to_dicts()
    reasons = [r for rs in hits["reasons"].to_list() for r in rs]
    # The day's sum, and this window's part of it with its tables.
    assert any(
        re.search(r" rows in (1 day|3 days), [\d,]+ of them in these 5 minutes from \w", r)
        for r in reasons
    ), reasons
    # The rule that flagged it is named, with the day's reads against the account's own.
    drip_lines = [r for r in reasons if r.startswith("slow drip: ")]
    assert drip_lines, reasons
    assert re.search(
        r"rows of [\w.]+ read today \(UTC\), \d+\.\dx this account's largest day of it",
        drip_lines[0],
    ), drip_lines
    others = after.filter(pl.col("account") != "billing_job").select("account", "window_start")
    assert others.equals(before.select("account", "window_start"))


def test_a_burst_is_not_called_a_slow_drip() -> None:
    """A pull that trips the guardrail also takes its day past twice the account's
    largest; its reasons say guardrail, not slow drip (web_shop's and analyst_ben's
    pulls in the sample)."""
    flagged = scored("jsonlog").filter(pl.col("flagged"))
    reasons = flagged["reasons"].to_list()
    bursts = [rs for rs in reasons if any(r.startswith("guardrail: over") for r in rs)]
    assert len(bursts) >= 2
    assert not any(r.startswith("slow drip: ") for rs in bursts for r in rs)
