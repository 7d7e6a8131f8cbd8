"""Retraining: what a successor model learns from, how fast it may learn, its lineage,
and how it is published. The population is made here, small and visible: a dozen
accounts reading about 100 rows at a time in office hours, and one that ramps up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detector import features as F
from detector import model, pipeline, retrain, settings
from detector import schema as S

START = datetime(2026, 9, 1, tzinfo=UTC)
ACCOUNTS = [f"app_{i}" for i in range(12)]


def day_of_events(day: int, rows_of: dict[str, float], seed: int) -> pl.DataFrame:
    """One day: each account reads ``rows_of[account]`` rows (+-10%) every 30 minutes
    from 08:00 to 17:30, from its own table, its own address and tool."""
    rng = np.random.default_rng(seed * 1000 + day)
    slots = [START + timedelta(days=day, hours=8, minutes=30 * k, seconds=7) for k in range(20)]
    rows = []
    for a, account in enumerate(sorted(rows_of)):
        noise = rng.uniform(0.9, 1.1, len(slots))
        for k, (at, f) in enumerate(zip(slots, noise, strict=True)):
            rows.append(
                {
                    S.TIME: at,
                    S.ACCOUNT: account,
                    S.ROWS: int(rows_of[account] * f),
                    S.OBJECTS: [f"shop.t{a % 3}"],
                    S.CLASS: "READ",
                    S.COMMAND: "SELECT",
                    S.EXPORT: False,
                    S.SUCCESS: True,
                    S.SESSION: f"{account}-{day}",
                    S.STATEMENT_ID: f"{k + 1}.1",
                    S.CLIENT_IP: f"10.0.0.{a + 1}",
                    S.APPLICATION: "app",
                    S.SOURCE_FORMAT: "pgaudit-jsonlog",
                }
            )
    return S.conform(pl.DataFrame(rows).lazy()).collect()


def population(days: range, ramp_from: int | None = None, rate: float = 1.5) -> pl.DataFrame:
    """Ordinary accounts every day; ``ramp`` reads 100 rows a time until ``ramp_from``,
    then ``rate`` times more each day."""
    frames = []
    for day in days:
        ramp = 100.0 if ramp_from is None else 100.0 * rate ** max(day - ramp_from + 1, 0)
        frames.append(day_of_events(day, {**dict.fromkeys(ACCOUNTS, 100.0), "ramp": ramp}, 0))
    return pl.concat(frames).sort(S.TIME)


CONF = settings.load(trees=50)
PERIOD = 14


def between(events: pl.DataFrame, first_day: int, end_day: int) -> pl.DataFrame:
    return events.filter(
        pl.col(S.TIME).is_between(
            START + timedelta(days=first_day), START + timedelta(days=end_day), closed="left"
        )
    )


def of(events: pl.DataFrame) -> pipeline.Period:
    """The training period of ``events``, as retraining reads it from logs."""
    return pipeline.Period.of([events], CONF.horizon_spec.base)


def score_day(events: pl.DataFrame, trained: model.TrainedModel, day: int) -> pl.DataFrame:
    """The day's windows, scored with the 3 days before it in their horizons, as ``serve``
    scores them."""
    scored = pipeline.score(between(events, day - 3, day + 1), trained, CONF)
    return scored.filter(pl.col("window_start") >= START + timedelta(days=day))


def test_an_attacker_ramping_up_cannot_teach_retraining_the_ramp() -> None:
    # Trained on 14 ordinary days, then retrained every day on the last 14 days, never on
    # flagged windows. From day 14 "ramp" reads 1.3x more each day: never 2x a day, so no
    # drip rule fires on a model that learns each day as it comes. Held back to the
    # guardrail's pace (10x per 14 days, 1.18x a day), what the model learns falls ever
    # further behind the ramp, which is flagged on most days once it is well ahead.
    days = 14
    events = population(range(PERIOD + days), ramp_from=PERIOD, rate=1.3)
    first = pipeline.train(between(events, 0, PERIOD), CONF, name="first")

    def run(held_back: bool) -> tuple[list[int], model.TrainedModel]:
        current = first
        # what a store holds: the parent's verdicts on its training days, as if served
        scored_days = [
            score_day(events, first, day).select("account", "window_start", "flagged", "score")
            for day in range(PERIOD)
        ]
        flagged = []
        for day in range(PERIOD, PERIOD + days):
            scored = score_day(events, current, day)
            flagged.append(scored.filter(pl.col("account") == "ramp", pl.col("flagged")).height)
            scored_days.append(scored.select("account", "window_start", "flagged", "score"))
            allowed = pl.concat(scored_days[-PERIOD:]).filter(~pl.col("flagged"))
            period = between(events, day + 1 - PERIOD, day + 1)
            if held_back:
                current = retrain.retrain(of(period), allowed, current, CONF, name=f"day{day}")
            else:
                chosen, _ = retrain.learnable(of(period), allowed, CONF.threshold)
                current = pipeline.train_period(chosen, CONF, name=f"day{day}")
        return flagged, current

    def learned_day(trained: model.TrainedModel) -> int:
        return int(
            trained.profile.account_max.filter(pl.col("account") == "ramp")["rows_read_1d"].item()
        )

    held, held_model = run(held_back=True)
    plain, plain_model = run(held_back=False)
    pace = retrain.growth_allowed(
        first.manifest, START + timedelta(days=PERIOD + days), CONF
    )  # about 10x over 14 days
    assert learned_day(held_model) <= learned_day(first) * pace
    assert learned_day(plain_model) > 2 * learned_day(first) * pace  # faster: the ramp learned
    # in the ramp's second week, held back it is flagged on most days, plainly on few
    held_days = sum(1 for n in held[-7:] if n)
    plain_days = sum(1 for n in plain[-7:] if n)
    assert held_days >= 5 and held_days >= 2 * plain_days, f"{held} {plain}"


def test_retraining_learns_no_flagged_window_and_names_its_lineage(tmp_path: Path) -> None:
    events = population(range(PERIOD + 1))
    model.save(pipeline.train(between(events, 0, PERIOD), CONF, name="first"), tmp_path / "first")
    parent = model.load(tmp_path / "first")
    # Day 14: app_0 reads 50x its usual in one window, and it is flagged.
    pull = (
        events.filter(pl.col(S.ACCOUNT) == "app_0")
        .head(1)
        .with_columns(
            pl.lit(START + timedelta(days=PERIOD, hours=10, minutes=2)).alias(S.TIME),
            pl.lit(5_000, pl.Int64).alias(S.ROWS),
            pl.lit("99.1").alias(S.STATEMENT_ID),
        )
    )
    events = pl.concat([events, pull]).sort(S.TIME)
    # What a store would hold had serve scored days 1-14 with the parent.
    scored = pipeline.score(between(events, 1, PERIOD + 1), parent, CONF)
    pulled = scored.filter(pl.col("account") == "app_0", pl.col("flagged"))
    assert pulled["window_start"].to_list() == [START + timedelta(days=PERIOD, hours=10)]
    allowed = scored.filter(~pl.col("flagged")).select(
        "account", "window_start", "flagged", "score"
    )

    successor = retrain.retrain(of(between(events, 1, PERIOD + 1)), allowed, parent, CONF, "second")
    learned = successor.profile.account_max.filter(pl.col("account") == "app_0")
    assert learned["rows_read_5m"].item() < 200  # its ordinary 100 rows, not the pull
    assert (
        score_day(events, successor, PERIOD)
        .filter(pl.col("account") == "app_0", pl.col("flagged"))["window_start"]
        .to_list()
        == pulled["window_start"].to_list()
    )
    assert successor.manifest.training["retraining"]["windows_left_out"] >= 1
    lineage = successor.manifest.training["lineage"]
    assert lineage[0]["name"] == "first"
    assert lineage[0]["manifest_sha256"] == retrain.identity(parent.manifest)
    assert retrain.descends_from(successor, parent.manifest)
    assert not retrain.descends_from(parent, successor.manifest)
    third = retrain.retrain(of(between(events, 1, PERIOD + 1)), allowed, successor, CONF, "third")
    assert [a["name"] for a in third.manifest.training["lineage"]] == ["second", "first"]


def test_publishing_is_atomic_and_loadable(tmp_path: Path) -> None:
    events = population(range(4))
    trained = pipeline.train(events, CONF, name="m1")
    models = tmp_path / "models"
    assert retrain.current(models) is None
    path = retrain.publish(trained, models)
    assert retrain.current(models) == path
    assert model.load(path).manifest.name == "m1"
    assert sorted(p.name for p in models.iterdir()) == ["current", "m1"]  # no partial left
    with pytest.raises(model.ModelError, match="exists already"):
        retrain.publish(trained, models)
    assert retrain.current(models) == path


def test_growth_allowed_is_the_guardrail_per_period_at_a_steady_rate() -> None:
    parent = model.Manifest(
        name="p",
        schema_version=0,
        feature_version=0,
        features=[],
        horizons={},
        libraries={},
        training={"end": "2026-09-01T00:00:00+00:00"},
        calibration={},
    )
    conf = settings.load()
    at = datetime(2026, 9, 1, tzinfo=UTC)
    assert retrain.growth_allowed(parent, at, conf) == pytest.approx(1.0)
    assert retrain.growth_allowed(parent, at + timedelta(days=14), conf) == pytest.approx(10.0)
    assert retrain.growth_allowed(parent, at + timedelta(days=1), conf) == pytest.approx(
        10 ** (1 / 14)
    )
    assert F.span(conf.retrain_period) == timedelta(days=14)


def test_a_retrained_model_keeps_idle_accounts_and_what_was_known() -> None:
    # app_11 works in the parent's period only; in the next two weeks it is idle.
    events = population(range(2 * PERIOD))
    events = events.filter(
        (pl.col(S.ACCOUNT) != "app_11") | (pl.col(S.TIME) < START + timedelta(days=PERIOD))
    )
    parent = pipeline.train(between(events, 0, PERIOD), CONF, name="first")
    later = between(events, PERIOD, 2 * PERIOD)
    allowed = pipeline.score(later, parent, CONF).select(
        "account", "window_start", "flagged", "score"
    )
    successor = retrain.retrain(
        of(later), allowed.filter(~pl.col("flagged")), parent, CONF, "second"
    )
    before = parent.profile.account_max.filter(pl.col("account") == "app_11")
    after = successor.profile.account_max.filter(pl.col("account") == "app_11")
    assert after.select(before.columns).equals(before)  # back tomorrow: not a stranger
    known = successor.profile.known.filter(pl.col("account") == "app_11")
    assert known.height == 3  # its table, its address, its tool
    assert known.equals(parent.profile.known.filter(pl.col("account") == "app_11"))
    hours = parent.profile.hours.filter(pl.col("account") == "app_11")
    assert hours.height > 0  # the hours it works (the rest are not kept)
    assert successor.profile.hours.filter(pl.col("account") == "app_11").equals(hours)
    weekdays = parent.profile.weekdays.filter(pl.col("account") == "app_11").sort("weekday")
    assert weekdays.height >= 5  # its quiet days are kept too
    assert (
        successor.profile.weekdays.filter(pl.col("account") == "app_11")
        .sort("weekday")
        .equals(weekdays)
    )
    # and its largest day of each table (the object drip's bound)
    tables = parent.profile.object_days.filter(pl.col("account") == "app_11")
    assert tables.height == 1 and tables["rows"].item() > 0
    assert successor.profile.object_days.filter(pl.col("account") == "app_11").equals(tables)


def test_an_analysts_false_positive_is_learned_at_once_an_unjudged_jump_is_not() -> None:
    # From day 14, app_3 (a new role, say) reads 20x what it did: flagged. Judged a false
    # positive, the jump is learned in full by the next model; unjudged, it is not learned.
    events = population(range(PERIOD + 1))
    jump = (pl.col(S.ACCOUNT) == "app_3") & (pl.col(S.TIME) >= START + timedelta(days=PERIOD))
    events = events.with_columns(
        pl.when(jump).then(pl.col(S.ROWS) * 20).otherwise(pl.col(S.ROWS)).alias(S.ROWS)
    )
    parent = pipeline.train(between(events, 0, PERIOD), CONF, name="first")
    scored = pipeline.score(between(events, 1, PERIOD + 1), parent, CONF)
    jumped = scored.filter(pl.col("account") == "app_3", pl.col("flagged"))
    assert jumped.height
    judged_fp = scored  # the store keeps flagged windows judged false positives
    unjudged = scored.filter(~pl.col("flagged"))
    period = between(events, 1, PERIOD + 1)

    def learned(allowed: pl.DataFrame) -> int:
        successor = retrain.retrain(of(period), allowed, parent, CONF, "second")
        account = successor.profile.account_max.filter(pl.col("account") == "app_3")
        return int(account["rows_read_5m"].item())

    largest_jump = int(jumped["features"].struct.field("rows_read_5m").max())  # type: ignore[arg-type]
    assert learned(judged_fp) >= largest_jump
    assert learned(unjudged) < largest_jump


def test_a_model_trained_with_another_window_is_retrained_with_that_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --window 10m`, then `retrain` (or serve's daily retraining): retraining
    used the settings' 5m window, so it failed every time (unable to find column
    "rows_read_5m") or, with other horizons in the settings, published a model that serve
    would not swap in and would start with next time."""
    from detector.cli import main
    from detector.live.store import Checkpoint, SqliteStore

    sample = Path(__file__).parents[1] / "sample_logs" / "postgresql.json.gz"
    model_dir, state = tmp_path / "model", tmp_path / "state"
    quarantine = str(tmp_path / "q.ndjson")
    trained = ["train", "--model-dir", str(model_dir), "--window", "10m", "--quarantine",
               quarantine, "--until", "2026-10-19", str(sample)]  # fmt: skip
    assert main(trained) == 0, capsys.readouterr().err
    store = SqliteStore(state, base_window="10m")  # serve's verdicts on the next week
    events, _ = pipeline.read_events(
        [sample], since=datetime(2026, 10, 19, tzinfo=UTC), until=datetime(2026, 10, 26, tzinfo=UTC)
    )
    store.commit(pipeline.score(events, model.load(model_dir), CONF), Checkpoint({}, {}, 0.0))
    store.close()
    successor = ["retrain", "--model-dir", str(model_dir), "--state-dir", str(state),
                 "--until", "2026-10-26", str(sample)]  # fmt: skip
    assert main(successor) == 0, capsys.readouterr().err
    published = retrain.current(state / "models")
    assert published is not None
    assert model.load(published).horizons == model.load(model_dir).horizons
    assert model.load(published).horizons.base == "10m"
