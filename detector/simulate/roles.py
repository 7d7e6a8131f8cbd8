"""The kinds of database accounts in the simulated organisation, and their rhythms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import IntEnum
from typing import Final

import numpy as np


class Role(IntEnum):
    WEB = 0
    BATCH = 1
    BACKUP = 2
    ANALYST = 3
    DBA = 4
    CASE_OFFICER = 5
    REPORTING = 6


# Relative activity per hour of day (UTC)
# People work by day: nobody looks a record up at 3 am (what does is an incident).
OFFICE: Final = (0, 0, 0, 0, 0, 0, 0.3, 2, 7, 11, 11, 10, 6, 8, 10, 9, 7, 4, 2, 1, 0.5, 0.2, 0, 0)  # fmt: skip
ONLINE: Final = (
    35, 25, 20, 18, 18, 22, 35, 55, 75, 90, 100, 100, 95, 95, 95, 90, 85, 85, 90, 95, 90, 75, 60, 45
)  # fmt: skip
DASHBOARDS: Final = (5, 5, 30, 5, 5, 5, 10, 40, 60, 60, 60, 60, 50, 60, 60, 60, 50, 30, 10, 5, 5, 5, 5, 5)  # fmt: skip
ON_CALL: Final = (0.1, 0, 0, 0, 0, 0, 0.5, 2, 7, 11, 11, 10, 6, 8, 10, 9, 7, 4, 2, 1.5, 1.2, 1, 0.6, 0.3)  # fmt: skip


@dataclass(frozen=True)
class RoleSpec:
    prefix: str
    share: float  # of all accounts
    minimum: int
    statements: float  # median statements per active day (per run for scheduled jobs)
    spread: float  # sigma of the account-to-account lognormal spread of that rate
    hours: tuple[float, ...] = ONLINE
    weekend: float = 1.0  # activity on Saturdays and Sundays, relative
    holiday: float = 1.0
    people: bool = False  # vacations, sick days, mistyped passwords, hour shifts
    block_s: int = 3600  # sessions last about this long
    slots: tuple[int, int] = (1, 1)  # concurrent sessions (connection pool size), range
    growth: float = 0.0  # per week
    apps: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    templates: dict[str, float] = field(default_factory=dict)


SPECS: Final[dict[Role, RoleSpec]] = {
    Role.WEB: RoleSpec(
        "web", 0.05, 2, 3000, 0.8, ONLINE, 0.8, 0.8, False, 3600, (3, 8), 0.01,
        ("PostgreSQL JDBC Driver", "node-postgres", "{domain}-web", "{domain}-api"),
        ("shop", "shop", "shop", "crm", "hr", "cases", "ops", "finance"),
        {"w_get": 40, "w_list": 18, "w_join": 12, "w_search": 6, "w_update": 8, "w_insert": 5, "w_ping": 6},
    ),
    Role.BATCH: RoleSpec(
        "job", 0.05, 1, 150, 0.5, (), 1.0, 1.0, False, 0, (1, 1), 0.005,
        ("airflow-worker", "etl-runner", "cron-{domain}"),
        ("shop", "crm", "finance", "ops", "hr", "cases"),
        {"b_extract": 30, "b_chunk": 25, "b_agg": 20, "b_mark": 15, "b_purge": 5},
    ),
    Role.BACKUP: RoleSpec("backup", 0.003, 1, 0, 0.0, (), apps=("pg_dump",)),
    Role.ANALYST: RoleSpec(
        "an", 0.14, 1, 120, 0.6, OFFICE, 0.03, 0.02, True, 10800, (1, 2), 0.0,
        ("DBeaver 24.2.0 - SQLEditor <corp>", "DataGrip 2024.2.3", "psql", "pgAdmin 4 - DB:corp"),
        ("shop", "shop", "crm", "finance", "ops", "hr"),
        {"a_sample": 25, "a_month": 15, "a_top": 25, "a_join": 15, "a_count": 15, "a_typo": 2},
    ),
    Role.DBA: RoleSpec(
        "dba", 0.03, 2, 40, 0.5, ON_CALL, 0.05, 0.05, True, 7200, (1, 2), 0.0,
        ("psql", "pgAdmin 4 - DB:corp"),
        ("ops", "platform", "audit"),
        {"x_count": 35, "x_peek": 30, "x_jobs": 25, "x_index": 2, "x_grant": 2},
    ),
    Role.CASE_OFFICER: RoleSpec(
        "co", 0.0, 1, 220, 0.5, OFFICE, 0.02, 0.01, True, 14400, (1, 1), 0.0,
        ("CaseTracker/3.1",), ("cases",),
        {"c_case": 40, "c_related": 35, "c_worklist": 10, "c_note": 8, "c_status": 4},
    ),
    Role.REPORTING: RoleSpec(
        "rpt", 0.04, 1, 600, 0.5, DASHBOARDS, 0.4, 0.5, False, 3600, (1, 3), 0.01,
        ("reporting-svc", "superset"), ("shop", "cases", "ops", "finance"),
        {"r_range": 40, "r_rollup": 35, "r_scan": 4, "r_cursor": 1},
    ),
}  # fmt: skip

FIRST: Final = (
    "anna", "ben", "clara", "david", "eva", "felix", "greta", "hugo", "ida", "jonas", "karla",
    "lukas", "mia", "noah", "olga", "paul", "quinn", "rosa", "sven", "tara", "uwe", "vera",
    "willem", "xenia", "yusuf", "zoe", "marta", "piet", "lena", "omar",
)  # fmt: skip
LAST: Final = (
    "schmidt", "muller", "janssen", "dubois", "rossi", "garcia", "nowak", "novak", "berg",
    "larsen", "peeters", "murphy", "fischer", "weber", "martin", "bernard", "visser", "bakker",
    "romano", "lopez", "kowalski", "lindqvist", "hansen", "keller",
)  # fmt: skip
JOB_NAMES: Final = {
    "shop": ("etl_orders", "billing_job"), "crm": ("crm_sync",), "finance": ("ledger_close",),
    "ops": ("inventory_sync",), "hr": ("payroll_job",), "cases": ("case_stats_job",),
}  # fmt: skip


def holidays(first: date, days: int) -> set[int]:
    """Indexes of the period's public holidays (fixed dates and the Easter ones)."""
    found = set()
    for year in {first.year, (first + timedelta(days=days)).year}:
        easter = _easter(year)
        dates = [
            date(year, m, d)
            for m, d in ((1, 1), (5, 1), (10, 3), (12, 24), (12, 25), (12, 26), (12, 31))
        ]
        dates += [
            easter - timedelta(days=2),
            easter + timedelta(days=1),
            easter + timedelta(days=39),
        ]
        found |= {(d - first).days for d in dates if 0 <= (d - first).days < days}
    return found  # fmt: skip


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def role_counts(accounts: int) -> dict[Role, int]:
    """How many accounts each role has; case officers take what the others leave."""
    counts = {r: max(s.minimum, round(s.share * accounts)) for r, s in SPECS.items()}
    counts[Role.CASE_OFFICER] = 0
    counts[Role.CASE_OFFICER] = max(1, accounts - sum(counts.values()))
    while sum(counts.values()) > accounts:  # a tiny population: trim the largest role
        biggest = max((r for r in counts if counts[r] > 1), key=lambda r: counts[r])
        counts[biggest] -= 1
    return counts


def hour_cdf(weights: tuple[float, ...], shift: int = 0) -> np.ndarray:
    """Cumulative distribution over the 24 hours, shifted by ``shift`` hours."""
    w = np.roll(np.asarray(weights, dtype=np.float64), shift)
    cdf: np.ndarray = np.cumsum(w) / w.sum()
    return cdf
