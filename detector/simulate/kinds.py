"""What each kind of incident, and each unusual-but-legitimate job, does.

A planner gets the account's profile and the day, and fills in the incident's
statements (seconds after its start, combo, number, rows) and its description; where the
MariaDB rendering (:mod:`detector.simulate.dialect`) shows the incident otherwise, its
MariaDB description too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from detector.simulate import activity
from detector.simulate import tables as T
from detector.simulate.catalog import Frozen
from detector.simulate.population import Population, Profile
from detector.simulate.roles import SPECS, Role

PEOPLE: Final = (Role.ANALYST, Role.CASE_OFFICER)


@dataclass
class Statement:
    """One planned statement: seconds after the incident's start on its day, combo, number, rows."""

    offset_s: float
    combo: int
    n: int
    rows: int


@dataclass
class Incident:
    number: int  # its tag in the statements: > 0 labelled, < 0 an unusual job
    kind: str
    profile: Profile
    day_starts: dict[int, float]  # day -> seconds of day it starts
    ip: int
    app: int
    description: str = ""
    # In the MariaDB rendering's terms, when they differ: mariadb-dump and INTO OUTFILE
    # for pg_dump and COPY, no client program (neither MariaDB log names it).
    mariadb_description: str = ""
    statements: dict[int, list[Statement]] = field(default_factory=dict)
    dump: bool = False  # a whole pg_dump run
    ordinary_session: bool = False  # hides in the account's ordinary sessions

    @property
    def labelled(self) -> bool:
        return self.number > 0

    @property
    def day(self) -> int:
        return min(self.day_starts)


@dataclass
class Ctx:
    pop: Population
    ordinary: Frozen  # the catalog of ordinary work, to draw rows like the account's own
    rng: np.random.Generator

    def name(self, inc: Incident) -> str:
        return self.pop.accounts[inc.profile.account]

    def reads(self, p: Profile) -> set[str]:
        return {r for c in p.combos for r in self.pop.catalog.keys[c][1]}

    def sensitive(self, p: Profile) -> list[str]:
        mine = [t for t in T.SENSITIVE if T.BY_NAME[t].domain == p.domain]
        return mine or list(T.SENSITIVE)

    def one(self, choices: list[str]) -> str:
        return choices[int(self.rng.integers(len(choices)))]


def burst_pull(c: Ctx, inc: Incident) -> None:
    big = [t for t in c.sensitive(inc.profile) if T.BY_NAME[t].rows >= 200_000] or [
        "sales.customers"
    ]
    table = c.one(big)
    rows = T.BY_NAME[table].rows
    if c.rng.random() < 0.5:
        inc.app = c.pop.app("psql")
    inc.statements[inc.day] = [Statement(0, c.pop.catalog.combo("i_all", table), 0, rows)]
    pulled = f"{c.name(inc)} (web application) read all {rows:,} rows of {table} with one SELECT * "
    inc.description = f"{pulled}from {c.pop.ips[inc.ip]} ({c.pop.apps[inc.app]})"
    inc.mariadb_description = f"{pulled}from {c.pop.ips[inc.ip]}"


def wrong_account_dump(c: Ctx, inc: Incident) -> None:
    inc.dump = True
    hour = float(c.rng.choice([12.5, 13.0, 20.0, 22.5]))
    inc.day_starts[inc.day] = hour * 3600 + float(c.rng.uniform(0, 1800))
    who = (
        f"with {c.name(inc)}'s credentials from {c.pop.ips[inc.ip]}; only the backup account dumps"
    )
    inc.description = (
        f"pg_dump of the whole database ({len(T.TABLES)} tables, COPY ... TO stdout) {who}"
    )
    inc.mariadb_description = (
        f"mariadb-dump --single-transaction of every database ({len(T.TABLES)} tables, "
        f"SELECT /*!40001 SQL_NO_CACHE */ ... FROM each) {who}"
    )


def copy_export(c: Ctx, inc: Incident) -> None:
    sensitive = c.sensitive(inc.profile)
    a, b = (str(t) for t in c.rng.choice(sensitive, size=2, replace=len(sensitive) < 2))
    inc.app = c.pop.app("psql")
    inc.statements[inc.day] = [
        Statement(0, c.pop.catalog.combo("i_copy", a), 0, T.BY_NAME[a].rows),
        Statement(
            float(c.rng.uniform(20, 90)),
            c.pop.catalog.combo("i_copy_query", b),
            0,
            T.BY_NAME[b].rows,
        ),
    ]
    inc.description = (
        f"{c.name(inc)} exported {a} (COPY TO STDOUT) and all rows of {b} (COPY (SELECT ...) TO "
        "STDOUT) with psql; the account never exports"
    )
    inc.mariadb_description = (
        f"{c.name(inc)} exported {a} (SELECT * ... INTO OUTFILE) and all rows of {b} (SELECT "
        "col, ... INTO OUTFILE) to files on the server; the account never exports"
    )


def slow_drip(c: Ctx, inc: Incident) -> None:
    p, rng = inc.profile, c.rng
    days = list(range(inc.day, min(c.pop.days, inc.day + int(rng.integers(3, 6)))))
    mine = c.reads(p)
    table = next((t for t in c.sensitive(p) if t in mine), c.sensitive(p)[0])
    per_day = int(max(2_000, 2.5 * _daily_rows(c.ordinary, p, rng)) // 200)
    inc.ordinary_session = True
    inc.day_starts = dict.fromkeys(days, 0.0)
    combo = c.pop.catalog.combo("i_drip", table)
    first_id = int(rng.integers(1, max(2, T.BY_NAME[table].rows // 2)))
    weights = np.roll(np.asarray(SPECS[p.role].hours or (1.0,) * 24, dtype=np.float64), p.shift)
    cdf = np.cumsum(weights) / weights.sum()
    for j, d in enumerate(days):
        hours = np.minimum(np.searchsorted(cdf, rng.random(per_day), side="right"), 23)
        offsets = np.sort((hours + rng.random(per_day)) * 3600)
        ids = first_id + 200 * (j * per_day + np.arange(per_day))
        inc.statements[d] = [
            Statement(float(o), combo, int(i), 200) for o, i in zip(offsets, ids, strict=True)
        ]
    inc.description = (
        f"{c.name(inc)} read {per_day * 200:,} extra rows of {table} a day for {len(days)} days, "
        "200 at a time in its usual sessions (about 2.5x its usual daily volume)"
    )


def enumeration(c: Ctx, inc: Incident) -> None:
    mine, rng = c.reads(inc.profile), c.rng
    others = [t for t in T.TABLES if t.name not in mine]
    k = min(len(others), int(rng.integers(15, 31)))
    picked = [others[i] for i in rng.choice(len(others), size=k, replace=False)]
    at = np.cumsum(rng.uniform(5, 60, k))
    stmts = []
    for t, o in zip(picked, at, strict=True):
        if rng.random() < 0.2:
            stmts.append(Statement(float(o), c.pop.catalog.combo("i_denied", t.name), 0, 0))
        else:
            n = int(rng.choice([1, 5, 10]))
            stmts.append(
                Statement(float(o), c.pop.catalog.combo("i_probe", t.name), n, min(n, t.rows))
            )
    inc.statements[inc.day] = stmts
    inc.description = (
        f"{c.name(inc)} probed {k} tables it never reads ({', '.join(t.name for t in picked[:4])}, "
        f"...) with LIMIT 1-10 within {at[-1] / 60:.0f} minutes; some were refused"
    )


def off_hours_new_client(c: Ctx, inc: Incident) -> None:
    p, rng, pop = inc.profile, c.rng, c.pop
    start = float(rng.uniform(0.5, 4.5)) * 3600
    inc.day_starts[inc.day] = start
    inc.ip = pop.ip(f"{rng.choice(['198.51.100', '203.0.113'])}.{int(rng.integers(2, 250))}")
    tools = [
        a for a in ("psql", "pgcli", "DBeaver 24.2.0 - Main <corp>") if pop.app(a) not in p.apps
    ]
    inc.app = pop.app(c.one(tools))
    k = int(rng.integers(20, 80))
    combos = np.array(p.combos)[
        np.searchsorted(np.cumsum(p.weights), rng.random(k) * 0.999999, side="right")
    ]
    n, rows, _ = activity.fill(c.ordinary, combos, np.full(k, 3.0 * p.appetite), rng)
    at = np.cumsum(rng.uniform(3, 60, k))
    inc.statements[inc.day] = [
        Statement(float(o), int(s), int(x), int(r))
        for o, s, x, r in zip(at, combos, n, rows, strict=True)
    ]
    when = f"{c.name(inc)} used at {int(start // 3600):02d}:{int(start % 3600 // 60):02d}"
    usual = f"{k} statements on its usual tables"
    inc.description = (
        f"{when} from a new address {pop.ips[inc.ip]} with {pop.apps[inc.app]}: {usual}"
    )
    inc.mariadb_description = f"{when} from a new address {pop.ips[inc.ip]}: {usual}"


def privileged_misuse(c: Ctx, inc: Incident) -> None:
    rng, mine = c.rng, c.reads(inc.profile)
    targets = [t for t in T.SENSITIVE if t not in mine]
    k = min(len(targets), int(rng.integers(2, 6)))
    picked = [str(t) for t in rng.choice(targets, size=k, replace=False)]
    inc.day_starts[inc.day] = float(rng.uniform(9, 17)) * 3600
    inc.app = c.pop.app("psql")
    stmts = []
    for t, o in zip(picked, np.cumsum(rng.uniform(10, 120, k)), strict=True):
        rows = T.BY_NAME[t].rows
        if rows <= 200_000:
            stmts.append(Statement(float(o), c.pop.catalog.combo("i_all_psql", t), 0, rows))
        else:
            n = int(rng.choice([10_000, 20_000, 50_000]))
            stmts.append(Statement(float(o), c.pop.catalog.combo("i_probe", t), n, n))
    inc.statements[inc.day] = stmts
    inc.description = (
        f"DBA account {c.name(inc)} read data tables it never reads: {', '.join(picked)} "
        f"({sum(s.rows for s in stmts):,} rows)"
    )


def paged_pull(c: Ctx, inc: Incident) -> None:
    rng = c.rng
    big = [t for t in c.sensitive(inc.profile) if T.BY_NAME[t].rows >= 400_000] or [
        "sales.customers"
    ]
    table = c.one(big)
    keyset = bool(rng.random() < 0.5)
    size = 1000 if keyset else 500
    pages = int(rng.integers(100_000, 400_000)) // size
    at = np.cumsum(rng.uniform(0.5, 6, pages))
    combo = c.pop.catalog.combo("i_keyset" if keyset else "i_offset", table)
    inc.statements[inc.day] = [Statement(float(o), combo, j * size, size) for j, o in enumerate(at)]
    inc.description = (
        f"{c.name(inc)} paged through {table}: {pages} queries of {size} rows "
        f"({'keyset' if keyset else 'LIMIT/OFFSET'}), {pages * size:,} rows in {at[-1] / 60:.0f} minutes"
    )


def quarter_end_report(c: Ctx, inc: Incident) -> None:
    rng = c.rng
    inc.day_starts[inc.day] = float(rng.uniform(9, 16)) * 3600
    joins = [j for j in T.JOINS if T.BY_NAME[j[0]].rows >= 100_000 and T.BY_NAME[j[1]].dated]
    parent, child, _ = joins[int(rng.integers(len(joins)))]
    k = int(rng.integers(3, 7))
    rows = rng.integers(100_000, 600_000, k)
    combo = c.pop.catalog.combo("i_quarter", parent, child)
    at = np.cumsum(rng.uniform(30, 300, k))
    inc.statements[inc.day] = [
        Statement(float(o), combo, 0, int(r)) for o, r in zip(at, rows, strict=True)
    ]
    total = int(rows.sum())
    inc.description = f"quarter-end report by {c.name(inc)}: {k} queries over {parent} and {child}, {total:,} rows"


def one_off_migration(c: Ctx, inc: Incident) -> None:
    rng = c.rng
    inc.day_starts[inc.day] = float(rng.uniform(0, 5)) * 3600
    table = c.one([t.name for t in T.TABLES if 500_000 <= t.rows <= 10_000_000])
    chunks = int(rng.integers(50, 200))
    copy = c.pop.catalog.combo("i_migrate", table)
    stmts = [Statement(0, c.pop.catalog.combo("i_migrate_ddl", table), 0, 0)]
    stmts += [
        Statement(float(o), copy, j * 10_000, 10_000)
        for j, o in enumerate(np.cumsum(rng.uniform(0.5, 3, chunks)))
    ]
    inc.statements[inc.day] = stmts
    copied = f"{table} copied to {table}_v2 in {chunks} chunks of 10,000 rows"
    inc.description = f"one-off migration by {c.name(inc)}: {copied}"


def _daily_rows(frozen: Frozen, p: Profile, rng: np.random.Generator) -> float:
    """The rows the profile reads on an ordinary working day, on average."""
    picks = np.searchsorted(np.cumsum(p.weights), rng.random(4000) * 0.999999, side="right")
    combos = np.array(p.combos)[picks]
    _, rows, _ = activity.fill(frozen, combos, np.full(len(combos), p.appetite), rng)
    return float((rows * (frozen.cls[combos] == 0)).mean() * p.rate)


Planner = Callable[[Ctx, Incident], None]
# kind -> (who may do it, in order of preference; whether they must never export; planner)
KINDS: Final[dict[str, tuple[tuple[Role, ...], bool, Planner]]] = {
    "burst_pull": ((Role.WEB,), False, burst_pull),
    "wrong_account_dump": ((*PEOPLE, Role.WEB), True, wrong_account_dump),
    "copy_export": (PEOPLE, True, copy_export),
    "slow_drip": ((Role.CASE_OFFICER, Role.ANALYST, Role.WEB), False, slow_drip),
    "enumeration": ((Role.WEB, *PEOPLE, Role.REPORTING), False, enumeration),
    "off_hours_new_client": (PEOPLE, False, off_hours_new_client),
    "privileged_misuse": ((Role.DBA,), False, privileged_misuse),
    "paged_pull": ((Role.WEB, Role.REPORTING, Role.BATCH), False, paged_pull),
}
UNUSUAL: Final[dict[str, tuple[tuple[Role, ...], bool, Planner]]] = {
    "quarter_end_report": ((Role.REPORTING, Role.ANALYST), False, quarter_end_report),
    "one_off_migration": ((Role.BATCH, Role.DBA), False, one_off_migration),
}
