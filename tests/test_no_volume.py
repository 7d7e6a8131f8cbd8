"""Logs that carry no volume at all (MongoDB's audit log, MariaDB's audit log alone,
pgAudit without log_rows): rows and bytes are unknown, and the model and the reasons
say so instead of reading "unknown" as "nothing moved".

Built from the bundled sample logs (a real PostgreSQL 15 + pgAudit workload) with the
row counts removed, as a server with ``pgaudit.log_rows = off`` would log them.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest

from detector import features as F
from detector import pipeline, settings
from detector import schema as S
from detector.explain import Judge
from detector.model import ModelError
from tests.test_end_to_end import SAMPLE, SPLIT, labels, trained_on_json
from tests.test_verdicts import DAY, model_windows, ordinary, statement, tables_unread_by

# Incidents whose signal is not volume: exports by accounts that never export, an
# enumeration of tables never read. (INC-1, a bulk SELECT, is volume and nothing else
# but a new application; without rows it is not flagged: README, Formats.)
WITHOUT_VOLUME = ["INC-2", "INC-3", "INC-4", "INC-5"]


def blind(events: pl.DataFrame) -> pl.DataFrame:
    return events.with_columns(
        pl.lit(None, pl.Int64).alias(S.ROWS), pl.lit(None, pl.Int64).alias(S.BYTES)
    )


@cache
def trained_and_scored() -> tuple[pipeline.model.TrainedModel, pl.DataFrame]:
    path = SAMPLE / "postgresql.json.gz"
    conf = settings.load()
    before, _ = pipeline.read_events([path], until=SPLIT)
    trained = pipeline.train(blind(before), conf)
    after, _ = pipeline.read_events([path], since=SPLIT)
    return trained, pipeline.score(blind(after), trained, conf)


def test_the_model_is_trained_without_volume_features_and_says_so() -> None:
    trained, _ = trained_and_scored()
    assert trained.manifest.training["volume"] == []
    assert not set(F.VOLUME_FEATURES) & set(trained.manifest.features)
    assert "new_objects_log" in trained.manifest.features


def test_unknown_volume_is_null_in_every_window_not_zero() -> None:
    _, scored = trained_and_scored()
    feats = scored["features"].struct
    for column in ("rows_read_5m", "bytes_read_5m", "rows_read_5m_vs_own", "rows_read_1d_vs_peers"):
        assert feats.field(column).null_count() == scored.height, column


def test_flagged_reads_say_their_volume_is_unknown() -> None:
    _, scored = trained_and_scored()
    flagged = scored.filter(pl.col("flagged"), pl.col("objects").list.len() > 0)
    assert flagged.height
    for reasons in flagged["reasons"].to_list():
        assert reasons[0].startswith("volume unknown: the log gives no row or byte counts")


def test_incidents_that_are_not_volume_are_still_flagged_and_nothing_else() -> None:
    _, scored = trained_and_scored()
    flagged = scored.filter(pl.col("flagged"))
    for label in labels().filter(pl.col("incident_id").is_in(WITHOUT_VOLUME)).iter_rows(named=True):
        hits = flagged.filter(
            pl.col("account") == label["account"],
            pl.col("window_end") > label["start"],
            pl.col("window_start") <= label["end"],
        )
        assert hits.height, f"{label['incident_id']} ({label['kind']}) not flagged"
    days = labels().select("account", pl.col("start").dt.date().alias("day"))
    false_alarms = flagged.with_columns(pl.col("window_start").dt.date().alias("day")).join(
        days, on=["account", "day"], how="anti"
    )
    assert false_alarms.is_empty(), false_alarms.select("account", "window_start").to_dicts()


def test_a_model_with_volume_refuses_logs_without_it() -> None:
    path = SAMPLE / "postgresql.json.gz"
    conf = settings.load()
    before, _ = pipeline.read_events([path], until=SPLIT)
    trained = pipeline.train(before, conf)
    after, _ = pipeline.read_events([path], since=SPLIT)
    with pytest.raises(
        ModelError, match=r"trained on logs with rows, .* these logs have .* rows differ"
    ):
        pipeline.score(blind(after), trained, conf)


def test_a_table_never_read_is_a_reason_when_the_volume_cannot_be_known() -> None:
    """With rows logged, a table new to the account is a reason only in a window of
    volume (tests/test_verdicts.py); without them, no window has a volume to show, and
    the new table with the forest's score over the threshold flags it (a DBA reading
    patients' data, a web application's SELECT * of a table it never read). Under the
    threshold it does not."""
    trained, _ = trained_and_scored()
    template = blind(pl.DataFrame([ordinary("analyst_ben")])).row(0, named=True)
    at = DAY.replace(hour=template[S.TIME].hour, minute=31)
    table = tables_unread_by("analyst_ben")[0]
    read = statement(template, at, 1, **{S.OBJECTS: [table]})
    _, events = trained_on_json()
    frame = model_windows(trained, blind(events), [read]).filter(
        pl.col("account") == "analyst_ben", pl.col("window_start") == at.replace(minute=30)
    )
    conf = settings.load()
    judge = Judge(trained.profile, trained.horizons, conf, volume_logged=False)
    found = judge(frame, np.array([0.9])).row(0, named=True)
    assert found["flagged"], found["reasons"]
    assert found["reasons"][0].startswith("volume unknown")
    assert f"1 object(s) never read before by this account: {table}" in found["reasons"]
    assert not judge(frame, np.array([conf.threshold - 0.1])).row(0, named=True)["flagged"]
