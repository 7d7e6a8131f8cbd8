"""Labelled incidents, and big-but-legitimate jobs that are not incidents.

Incidents are planned once (who, when, what) after the warm-up days, so that a model can
be trained on the days before; each day, the incidents under way add their statements.
Every incident runs in a session of its own unless it hides in the account's ordinary
sessions (a slow drip). Unusual jobs (a quarter-end report, a one-off migration) may
fall on any day, training days included, and are never labelled.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from detector.simulate import activity
from detector.simulate import tables as T
from detector.simulate.activity import SPECIAL_SESSION, Statements
from detector.simulate.catalog import Frozen
from detector.simulate.population import Population, Profile
from detector.simulate.roles import SPECS, Role

WARMUP_DAYS: Final = 14
KINDS: Final = (
    "burst_pull", "wrong_account_dump", "copy_export", "slow_drip", "enumeration",
    "off_hours_new_client", "privileged_misuse", "paged_pull",
)  # fmt: skip
UNUSUAL: Final = ("quarter_end_report", "one_off_migration")
H: Final = 3_600_000_000  # an hour in microseconds


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
    description: str
    statements: dict[int, list[Statement]] = field(default_factory=dict)
    dump: bool = False
    ordinary_session: bool = False

    @property
    def labelled(self) -> bool:
        return self.number > 0


class Spans:
    """First and last log time of each incident's statements."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}

    def add(self, stmts: Statements) -> None:
        tagged = stmts["tag"] != 0
        for tag in np.unique(stmts["tag"][tagged]):
            t = stmts["t"][stmts["tag"] == tag]
            self.first[int(tag)] = min(self.first.get(int(tag), int(t.min())), int(t.min()))
            self.last[int(tag)] = max(self.last.get(int(tag), int(t.max())), int(t.max()))


def plan(pop: Population, seed: int, warmup: int, per_kind: int | None) -> list[Incident]:
    """Incidents (``per_kind`` of each kind, after ``warmup`` days) and unusual jobs."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    steady = [
        p for p in pop.profiles if p.start == 0 and p.end == pop.days and p.role != Role.BACKUP
    ]
    exporters = pop.exporters()
    used: set[int] = set()
    out: list[Incident] = []
    per_kind = max(1, round(len(pop.accounts) / 40)) if per_kind is None else per_kind
    ordinary = pop.catalog.freeze()  # the repertoires' combos, for drawing their rows
    if pop.days > warmup:
        for _ in range(per_kind):
            for kind in KINDS:
                inc = _incident(
                    pop, ordinary, kind, len(out) + 1, steady, exporters, used, warmup, rng
                )
                if inc is not None:
                    out.append(inc)
    n_unusual = max(2, round(len(pop.accounts) / 25))
    for i in range(n_unusual):
        inc = _unusual(pop, UNUSUAL[i % 2], -(i + 1), steady, used, rng)
        if inc is not None:
            out.append(inc)
    return out


def _pick(steady: list[Profile], roles: tuple[Role, ...], used: set[int], rng: np.random.Generator,
          exclude: set[int] | None = None) -> Profile | None:  # fmt: skip
    for role_set in (roles, tuple(Role)):
        pool = [
            p
            for p in steady
            if p.role in role_set and p.account not in used and p.account not in (exclude or set())
        ]
        if pool:
            chosen = pool[int(rng.integers(len(pool)))]
            used.add(chosen.account)
            return chosen
    return None


def _reads(pop: Population, p: Profile) -> set[str]:
    return {r for c in p.combos for r in pop.catalog.keys[c][1]}


def _incident(
    pop: Population, ordinary: Frozen, kind: str, number: int, steady: list[Profile], exporters: set[int],
    used: set[int], warmup: int, rng: np.random.Generator,
) -> Incident | None:  # fmt: skip
    cat = pop.catalog
    people = (Role.ANALYST, Role.CASE_OFFICER)
    roles = {
        "burst_pull": (Role.WEB,), "wrong_account_dump": (Role.ANALYST, Role.CASE_OFFICER, Role.WEB),
        "copy_export": people, "slow_drip": (Role.CASE_OFFICER, Role.ANALYST, Role.WEB),
        "enumeration": (Role.WEB, Role.ANALYST, Role.CASE_OFFICER, Role.REPORTING),
        "off_hours_new_client": people, "privileged_misuse": (Role.DBA,),
        "paged_pull": (Role.WEB, Role.REPORTING, Role.BATCH),
    }[kind]  # fmt: skip
    no_export = kind in ("wrong_account_dump", "copy_export")
    p = _pick(steady, roles, used, rng, exporters if no_export else None)
    if p is None:
        return None
    name = pop.accounts[p.account]
    day = int(rng.integers(warmup, pop.days))
    ip, app = p.ips[0], p.apps[0]
    stmts: list[Statement] = []
    mine = _reads(pop, p)
    sensitive = [t for t in T.SENSITIVE if T.BY_NAME[t].domain == p.domain] or list(T.SENSITIVE)
    start = float(rng.uniform(0, 23.5)) * 3600
    inc = Incident(number, kind, p, {day: start}, ip, app, "")
    if kind == "burst_pull":
        big = [t for t in sensitive if T.BY_NAME[t].rows >= 200_000] or ["sales.customers"]
        table = big[int(rng.integers(len(big)))]
        rows = T.BY_NAME[table].rows
        inc.app = app if rng.random() < 0.5 else pop.app("psql")
        stmts = [Statement(0, cat.combo("i_all", table), 0, rows)]
        inc.description = f"{name} (web application) read all {rows:,} rows of {table} with one SELECT * from {pop.ips[ip]} ({pop.apps[inc.app]})"
    elif kind == "wrong_account_dump":
        inc.dump = True
        inc.day_starts[day] = start = float(rng.choice([12.5, 13.0, 20.0, 22.5])) * 3600 + float(
            rng.uniform(0, 1800)
        )
        inc.description = f"pg_dump of the whole database ({len(T.TABLES)} tables, COPY ... TO stdout) with {name}'s credentials from {pop.ips[ip]}; only the backup account dumps"
    elif kind == "copy_export":
        a, b = rng.choice(sensitive, size=2, replace=len(sensitive) < 2)
        inc.app = pop.app("psql")
        stmts = [
            Statement(0, cat.combo("i_copy", str(a)), 0, T.BY_NAME[str(a)].rows),
            Statement(
                float(rng.uniform(20, 90)),
                cat.combo("i_copy_query", str(b)),
                0,
                T.BY_NAME[str(b)].rows,
            ),
        ]
        inc.description = f"{name} exported {a} (COPY TO STDOUT) and all rows of {b} (COPY (SELECT ...) TO STDOUT) with psql; the account never exports"
    elif kind == "slow_drip":
        days = list(range(day, min(pop.days, day + int(rng.integers(3, 6)))))
        table = next((t for t in sensitive if t in mine), sensitive[0])
        per_day = int(max(2_000, 2.5 * _daily_rows(ordinary, p, rng)) // 200)
        inc.ordinary_session = True
        inc.day_starts = {d: 0.0 for d in days}
        combo = cat.combo("i_drip", table)
        first_id = int(rng.integers(1, max(2, T.BY_NAME[table].rows // 2)))
        for j, d in enumerate(days):
            hours = np.searchsorted(_cdf(p), rng.random(per_day), side="right")
            offsets = np.sort((np.minimum(hours, 23) + rng.random(per_day)) * 3600)
            ids = first_id + 200 * (j * per_day + np.arange(per_day))
            inc.statements[d] = [
                Statement(float(o), combo, int(i), 200) for o, i in zip(offsets, ids, strict=True)
            ]
        inc.description = f"{name} read {per_day * 200:,} extra rows of {table} a day for {len(days)} days, 200 at a time in its usual sessions (about 2.5x its usual daily volume)"
        return inc
    elif kind == "enumeration":
        others = [t for t in T.TABLES if t.name not in mine]
        k = min(len(others), int(rng.integers(15, 31)))
        picked = [others[i] for i in rng.choice(len(others), size=k, replace=False)]
        at = np.cumsum(rng.uniform(5, 60, k))
        for t, o in zip(picked, at, strict=True):
            if rng.random() < 0.2:
                stmts.append(Statement(float(o), cat.combo("i_denied", t.name), 0, 0))
            else:
                n = int(rng.choice([1, 5, 10]))
                stmts.append(Statement(float(o), cat.combo("i_probe", t.name), n, min(n, t.rows)))
        inc.description = f"{name} probed {k} tables it never reads ({', '.join(t.name for t in picked[:4])}, ...) with LIMIT 1-10 within {at[-1] / 60:.0f} minutes; some were refused"
    elif kind == "off_hours_new_client":
        inc.day_starts[day] = start = float(rng.uniform(0.5, 4.5)) * 3600
        inc.ip = pop.ip(f"{rng.choice(['198.51.100', '203.0.113'])}.{int(rng.integers(2, 250))}")
        inc.app = pop.app(
            str(
                rng.choice(
                    [
                        a
                        for a in ("psql", "pgcli", "DBeaver 24.2.0 - Main <corp>")
                        if pop.app(a) not in p.apps
                    ]
                )
            )
        )
        k = int(rng.integers(20, 80))
        combos = np.array(p.combos)[
            np.searchsorted(np.cumsum(p.weights), rng.random(k) * 0.999999, side="right")
        ]
        n, rows, _ = activity.fill(ordinary, combos, np.full(k, 3.0 * p.appetite), rng)
        at = np.cumsum(rng.uniform(3, 60, k))
        stmts = [
            Statement(float(o), int(c), int(x), int(r))
            for o, c, x, r in zip(at, combos, n, rows, strict=True)
        ]
        inc.description = f"{name} used at {int(start // 3600):02d}:{int(start % 3600 // 60):02d} from a new address {pop.ips[inc.ip]} with {pop.apps[inc.app]}: {k} statements on its usual tables"
    elif kind == "privileged_misuse":
        targets = [t for t in T.SENSITIVE if t not in mine]
        k = min(len(targets), int(rng.integers(2, 6)))
        picked = [str(t) for t in rng.choice(targets, size=k, replace=False)]
        inc.day_starts[day] = start = float(rng.uniform(9, 17)) * 3600
        inc.app = pop.app("psql")
        at = np.cumsum(rng.uniform(10, 120, k))
        for t, o in zip(picked, at, strict=True):
            rows = T.BY_NAME[t].rows
            if rows <= 200_000:
                stmts.append(Statement(float(o), cat.combo("i_all_psql", t), 0, rows))
            else:
                n = int(rng.choice([10_000, 20_000, 50_000]))
                stmts.append(Statement(float(o), cat.combo("i_probe", t), n, n))
        inc.description = f"DBA account {name} read data tables it never reads: {', '.join(picked)} ({sum(s.rows for s in stmts):,} rows)"
    elif kind == "paged_pull":
        big = [t for t in sensitive if T.BY_NAME[t].rows >= 400_000] or ["sales.customers"]
        table = big[int(rng.integers(len(big)))]
        keyset = rng.random() < 0.5
        size = 1000 if keyset else 500
        pages = int(rng.integers(100_000, 400_000)) // size
        at = np.cumsum(rng.uniform(0.5, 6, pages))
        combo = cat.combo("i_keyset" if keyset else "i_offset", table)
        stmts = [Statement(float(o), combo, int(j * size), size) for j, o in enumerate(at)]
        inc.description = f"{name} paged through {table}: {pages} queries of {size} rows ({'keyset' if keyset else 'LIMIT/OFFSET'}), {pages * size:,} rows in {at[-1] / 60:.0f} minutes"
    inc.statements[day] = stmts
    return inc  # fmt: skip


def _unusual(pop: Population, kind: str, number: int, steady: list[Profile], used: set[int],
             rng: np.random.Generator) -> Incident | None:  # fmt: skip
    cat = pop.catalog
    roles = (
        (Role.REPORTING, Role.ANALYST) if kind == "quarter_end_report" else (Role.BATCH, Role.DBA)
    )
    p = _pick(steady, roles, used, rng)
    if p is None:
        return None
    day = int(rng.integers(0, pop.days))
    name = pop.accounts[p.account]
    if kind == "quarter_end_report":
        start = float(rng.uniform(9, 16)) * 3600
        joins = [j for j in T.JOINS if T.BY_NAME[j[0]].rows >= 100_000 and T.BY_NAME[j[1]].dated]
        parent, child, _ = joins[int(rng.integers(len(joins)))]
        k = int(rng.integers(3, 7))
        rows = rng.integers(100_000, 600_000, k)
        stmts = [
            Statement(float(o), cat.combo("i_quarter", parent, child), 0, int(r))
            for o, r in zip(np.cumsum(rng.uniform(30, 300, k)), rows, strict=True)
        ]
        text = f"quarter-end report by {name}: {k} queries over {parent} and {child}, {int(rows.sum()):,} rows"
    else:
        start = float(rng.uniform(0, 5)) * 3600
        table = str(rng.choice([t.name for t in T.TABLES if 500_000 <= t.rows <= 10_000_000]))
        chunks = int(rng.integers(50, 200))
        stmts = [Statement(0, cat.combo("i_migrate_ddl", table), 0, 0)]
        stmts += [
            Statement(float(o), cat.combo("i_migrate", table), j * 10_000, 10_000)
            for j, o in enumerate(np.cumsum(rng.uniform(0.5, 3, chunks)), start=0)
        ]
        text = f"one-off migration by {name}: {table} copied to {table}_v2 in {chunks} chunks of 10,000 rows"
    inc = Incident(number, kind, p, {day: start}, p.ips[0], p.apps[0], text, {day: stmts})
    return inc  # fmt: skip


def _cdf(p: Profile) -> np.ndarray:
    w = np.roll(np.asarray(SPECS[p.role].hours or (1.0,) * 24, dtype=np.float64), p.shift)
    return np.cumsum(w) / w.sum()


def _daily_rows(frozen: Frozen, p: Profile, rng: np.random.Generator) -> float:
    """The rows the profile reads on an ordinary working day, on average."""
    combos = np.array(p.combos)[
        np.searchsorted(np.cumsum(p.weights), rng.random(4000) * 0.999999, side="right")
    ]
    _, rows, _ = activity.fill(frozen, combos, np.full(len(combos), p.appetite), rng)
    read = frozen.cls[combos] == 0
    return float((rows * read).mean() * p.rate)


def materialize(incidents: list[Incident], pop: Population, frozen: Frozen, day: int,
                rng: np.random.Generator) -> list[Statements]:  # fmt: skip
    """The statements the incidents and unusual jobs under way on ``day`` add."""
    parts: list[Statements] = []
    day_us = activity.day_start_us(pop, day)
    for inc in incidents:
        if day not in inc.day_starts:
            continue
        p = inc.profile
        at = day_us + int(inc.day_starts[day] * 1e6)
        skey = SPECIAL_SESSION + abs(inc.number)
        if inc.dump:
            profile = pop.profiles.index(p)
            parts.append(activity.dump_run(pop, frozen, profile, day, rng, at=at, account=p.account,
                                           ip=inc.ip, tag=inc.number, skey=skey))  # fmt: skip
            continue
        planned = inc.statements.get(day, [])
        if not planned:
            continue
        combo = np.array([s.combo for s in planned], dtype=np.int64)
        rows = np.array([s.rows for s in planned], dtype=np.int64)
        dur = activity.duration(frozen, combo, rows, rng)
        t = at + (np.array([s.offset_s for s in planned]) * 1e6).astype(np.int64) + dur
        size = len(planned)
        if inc.ordinary_session:  # in the account's ordinary sessions of the hour
            skey_col = (t - day_us) // (max(SPECS[p.role].block_s, 1) * 1_000_000) * 16
        else:
            skey_col = np.full(size, skey, dtype=np.int64)
        parts.append({
            "profile": np.full(size, pop.profiles.index(p), dtype=np.int64),
            "account": np.full(size, p.account, dtype=np.int64),
            "t": t, "skey": skey_col,
            "ip": np.full(size, inc.ip, dtype=np.int64), "app": np.full(size, inc.app, dtype=np.int64),
            "combo": combo, "n": np.array([s.n for s in planned], dtype=np.int64), "rows": rows,
            "dur": dur, "tag": np.full(size, inc.number, dtype=np.int64),
        })  # fmt: skip
    return parts


def write_labels(out: Path, incidents: list[Incident], spans: Spans, accounts: list[str]) -> None:
    """``labels.csv`` (incidents) and ``unusual.csv`` (legitimate unusual jobs)."""
    for path, labelled in ((out / "labels.csv", True), (out / "unusual.csv", False)):
        rows = sorted((i for i in incidents if i.labelled == labelled and i.number in spans.first),
                      key=lambda i: (spans.first[i.number], i.number))  # fmt: skip
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["incident_id", "account", "start", "end", "kind", "description"])
            for k, i in enumerate(rows, start=1):
                w.writerow([f"{'INC' if labelled else 'JOB'}-{k:03d}", accounts[i.profile.account],
                            _iso(spans.first[i.number] // 1_000_000), _iso(-(-spans.last[i.number] // 1_000_000)),
                            i.kind, i.description])  # fmt: skip


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
