"""The simulated organisation behaves like one: roles, newcomers, a role change, nightly
backups, quiet weekends and holidays for people, and apps that never sleep."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from detector import schema as S
from detector.pipeline import read_events
from detector.simulate import simulate
from detector.simulate.roles import Role, holidays
from detector.simulate.tables import TABLES
from tests.simulate.conftest import Run


def _accounts(run: Run) -> pl.DataFrame:
    return pl.read_csv(run.out / "accounts.csv", try_parse_dates=True)


def test_every_role_is_there_and_names_are_unique(small: Run) -> None:
    accounts = _accounts(small)
    assert set(accounts["role"]) == {r.name.lower() for r in Role}
    assert accounts["account"].is_unique().all() and accounts.height == 40
    config = (small.out / "trovewatch.toml").read_text()
    assert config.count(" = ") == 40 and "[roles]" in config


def test_new_accounts_appear_on_their_first_day(small: Run) -> None:
    late = _accounts(small).filter(pl.col("first_day") > date(2026, 10, 5))
    assert late.height >= 1
    for account, first in late.select("account", "first_day").iter_rows():
        mine = small.events.filter(pl.col(S.ACCOUNT) == account)
        assert mine.height > 0 and mine[S.TIME].min().date() >= first  # type: ignore[union-attr]


def test_a_role_change_changes_what_the_account_reads(small: Run) -> None:
    changed = _accounts(small).filter(pl.col("role_change_day").is_not_null())
    assert changed.height >= 1
    account, day = changed.select("account", "role_change_day").row(0)
    mine = small.events.filter(pl.col(S.ACCOUNT) == account, pl.col(S.CLASS) == "READ")
    day_of = mine[S.TIME].dt.date()
    before = set(mine.filter(day_of < day)[S.OBJECTS].explode())
    after = set(mine.filter(day_of >= day)[S.OBJECTS].explode())
    assert before and after and after - before


def test_the_backup_dumps_every_table_every_night(small: Run) -> None:
    backup = _accounts(small).filter(pl.col("role") == "backup")["account"].item()
    dumps = small.events.filter(pl.col(S.ACCOUNT) == backup, pl.col(S.COMMAND) == "COPY")
    assert (dumps[S.APPLICATION] == "pg_dump").all() and dumps[S.EXPORT].all()
    per_night = dumps.group_by(pl.col(S.TIME).dt.date()).agg(pl.col(S.OBJECTS).explode().n_unique())
    assert per_night.height == 17 and (per_night[S.OBJECTS] == len(TABLES)).all()


def test_people_rest_on_weekends_and_holidays_and_apps_do_not(tmp_path: Path) -> None:
    start = date(2026, 12, 21)  # Monday; the 24th to 26th are holidays, the 26th-27th a weekend
    assert {3, 4, 5} <= holidays(start, 8)
    result = simulate(tmp_path, 30, 8, 2, start)
    events, _ = read_events(result.files)
    roles = pl.read_csv(tmp_path / "accounts.csv").select("account", "role")
    per_day = (
        events.join(roles, left_on=S.ACCOUNT, right_on="account")
        .group_by(pl.col(S.TIME).dt.date().alias("day"), "role")
        .len()
    )

    def count(day: int, role: str) -> int:
        hit = per_day.filter(pl.col("day") == date(2026, 12, 21 + day), pl.col("role") == role)
        return int(hit["len"].sum())

    assert count(4, "case_officer") < count(1, "case_officer") / 10  # Christmas Day
    assert count(6, "case_officer") < count(1, "case_officer") / 10  # Sunday
    assert count(4, "web") > count(1, "web") / 2
