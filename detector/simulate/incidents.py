"""Labelled incidents, and big-but-legitimate jobs that are not incidents: when, by whom.

Incidents are planned once, after the warm-up days, so that a model can be trained on
the days before; each day, the incidents under way add their statements. Every incident
runs in a session of its own unless it hides in the account's ordinary sessions (a slow
drip). Unusual jobs (a quarter-end report, a one-off migration) may fall on any day,
training days included, and are never labelled. What each kind does: :mod:`kinds`.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from detector.simulate import activity
from detector.simulate.activity import SPECIAL_SESSION, Statements
from detector.simulate.catalog import Frozen
from detector.simulate.kinds import KINDS as PLANNERS
from detector.simulate.kinds import UNUSUAL as UNUSUAL_PLANNERS
from detector.simulate.kinds import Ctx, Incident, Planner
from detector.simulate.population import Population, Profile
from detector.simulate.roles import SPECS, Role

WARMUP_DAYS: Final = 14
KINDS: Final = tuple(PLANNERS)
UNUSUAL: Final = tuple(UNUSUAL_PLANNERS)


class Spans:
    """First and last log time (microseconds) of each incident's statements."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}

    def add(self, stmts: Statements) -> None:
        tagged = stmts["tag"] != 0
        if not tagged.any():
            return
        tags, t = stmts["tag"][tagged], stmts["t"][tagged]
        order = np.lexsort((t, tags))
        tags, t = tags[order], t[order]
        first = np.flatnonzero(np.r_[True, tags[1:] != tags[:-1]])
        last = np.r_[first[1:] - 1, len(tags) - 1]
        for tag, lo, hi in zip(
            tags[first].tolist(), t[first].tolist(), t[last].tolist(), strict=True
        ):
            self.first[tag] = min(self.first.get(tag, lo), lo)
            self.last[tag] = max(self.last.get(tag, hi), hi)


def plan(pop: Population, seed: int, warmup: int, per_kind: int | None) -> list[Incident]:
    """``per_kind`` incidents of each kind (default: one per 40 accounts) on days from
    ``warmup`` on, each by another account, and a few unusual jobs on any day."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    ctx = Ctx(pop, pop.catalog.freeze(), rng)
    steady = [
        p for p in pop.profiles if p.start == 0 and p.end == pop.days and p.role != Role.BACKUP
    ]
    exporters = pop.exporters()
    used: set[int] = set()
    out: list[Incident] = []
    per_kind = max(1, round(len(pop.accounts) / 40)) if per_kind is None else per_kind
    if pop.days > warmup:
        for _ in range(per_kind):
            for roles, no_export, planner in PLANNERS.values():
                p = _pick(steady, roles, used, rng, exporters if no_export else set())
                if p is not None:
                    day = int(rng.integers(warmup, pop.days))
                    out.append(_planned(ctx, planner, len(out) + 1, p, day))
    for i in range(max(2, round(len(pop.accounts) / 25))):
        roles, _, planner = list(UNUSUAL_PLANNERS.values())[i % len(UNUSUAL_PLANNERS)]
        p = _pick(steady, roles, used, rng, set())
        if p is not None:
            out.append(_planned(ctx, planner, -(i + 1), p, int(rng.integers(0, pop.days))))
    return out


def _planned(ctx: Ctx, planner: Planner, number: int, p: Profile, day: int) -> Incident:
    kind = planner.__name__
    start = float(ctx.rng.uniform(0, 23.5)) * 3600
    inc = Incident(number, kind, p, {day: start}, p.ips[0], p.apps[0])
    planner(ctx, inc)
    return inc


def _pick(
    steady: list[Profile],
    roles: tuple[Role, ...],
    used: set[int],
    rng: np.random.Generator,
    exclude: set[int],
) -> Profile | None:
    """An account of one of ``roles`` (any role if none is left) not yet used."""
    blocked = used | exclude
    for allowed in (roles, tuple(Role)):
        pool = [p for p in steady if p.role in allowed and p.account not in blocked]
        if pool:
            chosen = pool[int(rng.integers(len(pool)))]
            used.add(chosen.account)
            return chosen
    return None


def materialize(
    incidents: list[Incident], pop: Population, frozen: Frozen, day: int, rng: np.random.Generator
) -> list[Statements]:
    """The statements the incidents and unusual jobs under way on ``day`` add."""
    parts: list[Statements] = []
    day_us = activity.day_start_us(pop, day)
    index = {id(p): i for i, p in enumerate(pop.profiles)}
    for inc in incidents:
        if day not in inc.day_starts:
            continue
        p = inc.profile
        profile = index[id(p)]
        at = day_us + int(inc.day_starts[day] * 1e6)
        skey = SPECIAL_SESSION + abs(inc.number)
        if inc.dump:
            parts.append(
                activity.dump_run(
                    pop,
                    frozen,
                    profile,
                    day,
                    rng,
                    at=at,
                    account=p.account,
                    ip=inc.ip,
                    tag=inc.number,
                    skey=skey,
                )
            )
            continue
        planned = inc.statements.get(day, [])
        if not planned:
            continue
        size = len(planned)
        combo = np.array([s.combo for s in planned], dtype=np.int64)
        rows = np.array([s.rows for s in planned], dtype=np.int64)
        dur = activity.duration(frozen, combo, rows, rng)
        t = at + (np.array([s.offset_s for s in planned]) * 1e6).astype(np.int64) + dur
        if inc.ordinary_session:  # the account's ordinary session of the hour
            skey_col = (t - day_us) // (max(SPECS[p.role].block_s, 1) * 1_000_000) * 16
        else:
            skey_col = np.full(size, skey, dtype=np.int64)

        def full(value: int, size: int = size) -> np.ndarray:
            return np.full(size, value, dtype=np.int64)

        parts.append(
            {
                "profile": full(profile),
                "account": full(p.account),
                "t": t,
                "skey": skey_col,
                "ip": full(inc.ip),
                "app": full(inc.app),
                "combo": combo,
                "n": np.array([s.n for s in planned], dtype=np.int64),
                "rows": rows,
                "dur": dur,
                "tag": full(inc.number),
            }
        )
    return parts


def write_labels(
    out: Path,
    incidents: list[Incident],
    spans: Spans,
    accounts: list[str],
    *,
    mariadb: bool = False,
) -> None:
    """``labels.csv`` (incidents) and ``unusual.csv`` (legitimate unusual jobs), in time
    order; start and end are the first and last of its log lines, to the second. With
    ``mariadb``, descriptions in the MariaDB rendering's terms."""
    for path, labelled, prefix in (
        (out / "labels.csv", True, "INC"),
        (out / "unusual.csv", False, "JOB"),
    ):
        done = [i for i in incidents if i.labelled == labelled and i.number in spans.first]
        done.sort(key=lambda i: (spans.first[i.number], i.number))
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["incident_id", "account", "start", "end", "kind", "description"])
            for k, i in enumerate(done, start=1):
                start = spans.first[i.number] // 1_000_000
                end = -(-spans.last[i.number] // 1_000_000)
                w.writerow(
                    [
                        f"{prefix}-{k:03d}",
                        accounts[i.profile.account],
                        _iso(start),
                        _iso(end),
                        i.kind,
                        (mariadb and i.mariadb_description) or i.description,
                    ]
                )


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
