"""Every incident kind is labelled, and is in the log at its labelled time, by its account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from detector import schema as S
from detector.simulate.incidents import KINDS, UNUSUAL, WARMUP_DAYS
from detector.simulate.tables import SENSITIVE
from tests.simulate.conftest import START, Run


def test_labels_have_the_columns_and_every_kind(small: Run) -> None:
    header = (small.out / "labels.csv").read_text().splitlines()[0]
    assert header == "incident_id,account,start,end,kind,description"
    labels = small.labels()
    assert set(labels["kind"]) == set(KINDS)
    assert labels["incident_id"].is_unique().all()
    assert (labels["start"] <= labels["end"]).all()
    assert labels["description"].str.len_chars().min() > 20  # type: ignore[operator]


def test_no_incident_in_the_warm_up_days(small: Run) -> None:
    first = pl.datetime(START.year, START.month, START.day, time_zone="UTC") + timedelta(
        days=WARMUP_DAYS
    )
    assert small.labels().filter(pl.col("start") < first).is_empty()


def test_unusual_jobs_are_listed_apart_and_not_labelled(small: Run) -> None:
    unusual = small.labels("unusual.csv")
    assert set(unusual["kind"]) == set(UNUSUAL)
    assert unusual.join(small.labels(), on=["account", "start"]).is_empty()


def _during(run: Run, label: dict[str, Any]) -> pl.DataFrame:
    """The account's events from the label's start to its end (inclusive, to the second)."""
    end = label["end"] + timedelta(seconds=1)
    return run.events.filter(
        pl.col(S.ACCOUNT) == label["account"],
        pl.col(S.TIME) >= label["start"],
        pl.col(S.TIME) < end,
    )


def _before(run: Run, label: dict[str, Any]) -> pl.DataFrame:
    return run.events.filter(pl.col(S.ACCOUNT) == label["account"], pl.col(S.TIME) < label["start"])


@pytest.mark.parametrize("kind", KINDS)
def test_each_incident_is_in_the_log_at_its_time_with_its_account(small: Run, kind: str) -> None:
    label = small.labels().filter(pl.col("kind") == kind).row(0, named=True)
    during, before = _during(small, label), _before(small, label)
    assert during.height >= 1
    read = during.filter(pl.col(S.CLASS) == "READ")
    objects = set(read[S.OBJECTS].explode().drop_nulls())
    known = set(before.filter(pl.col(S.CLASS) == "READ")[S.OBJECTS].explode().drop_nulls())
    if kind == "burst_pull":
        assert read[S.ROWS].max() >= 200_000  # type: ignore[operator]
    elif kind == "wrong_account_dump":
        dump = during.filter(pl.col(S.APPLICATION) == "pg_dump", pl.col(S.EXPORT))
        assert dump.height >= 50 and not before[S.EXPORT].any()
    elif kind == "copy_export":
        assert during.filter(pl.col(S.EXPORT), pl.col(S.QUERY).str.starts_with("COPY")).height >= 2
        assert not before[S.EXPORT].any()
    elif kind == "slow_drip":
        drip = during.filter(pl.col(S.QUERY).str.ends_with("LIMIT 200"))
        assert drip.height >= 10
        assert drip[S.TIME].dt.date().n_unique() >= 2  # over several days
    elif kind == "enumeration":
        new = objects - known
        probes = read.filter(pl.col(S.OBJECTS).list.eval(pl.element().is_in(list(new))).list.any())
        assert len(new) >= 10 and probes[S.ROWS].max() <= 10  # type: ignore[operator]
    elif kind == "off_hours_new_client":
        assert set(during[S.CLIENT_IP]).isdisjoint(set(before[S.CLIENT_IP]))
        assert set(during[S.APPLICATION]).isdisjoint(set(before[S.APPLICATION]))
        assert during[S.TIME].dt.hour().max() < 6  # type: ignore[operator]
    elif kind == "privileged_misuse":
        accounts = pl.read_csv(small.out / "accounts.csv")
        assert accounts.filter(pl.col("account") == label["account"])["role"].item() == "dba"
        new = objects - known
        assert new and new <= set(SENSITIVE)
    elif kind == "paged_pull":
        assert read.height >= 100 and read[S.ROWS].sum() >= 100_000
        assert read[S.ROWS].max() <= 1000  # type: ignore[operator]
