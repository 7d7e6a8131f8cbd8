"""What each kind of account reads and writes: its statements over its tables, weighted."""

from __future__ import annotations

import numpy as np

from detector.simulate import tables as T
from detector.simulate.catalog import Catalog
from detector.simulate.roles import SPECS, Role

MAX_COMBOS = 32


def _zipf(n: int, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** 0.9
    return np.asarray(rng.permutation(w))


def repertoire(
    catalog: Catalog, role: Role, domain: str, rng: np.random.Generator
) -> tuple[list[int], list[float]]:
    """The statements an account of ``role`` sends, with their relative frequencies."""
    spec = SPECS[role]
    tpl = spec.templates
    pairs: list[tuple[int, float]] = []
    if role == Role.BACKUP:
        return [], []
    if role == Role.CASE_OFFICER:
        pairs.append((catalog.combo("c_case", "cases.case_files"), tpl["c_case"]))
        related = (
            "cases.parties",
            "cases.documents",
            "cases.case_notes",
            "cases.hearings",
            "cases.evidence",
        )
        for t, w in zip(related, (1.0, 0.8, 0.9, 0.4, 0.2), strict=True):
            pairs.append((catalog.combo("c_related", t), tpl["c_related"] * w))
        pairs.append(
            (
                catalog.combo("c_worklist", "cases.assignments", "cases.case_files"),
                tpl["c_worklist"],
            )
        )
        pairs.append((catalog.combo("c_note", "cases.case_notes"), tpl["c_note"]))
        pairs.append((catalog.combo("c_status", "cases.case_files"), tpl["c_status"]))
        return _normalised(pairs)
    pool = T.in_domain(domain) if domain else []
    if role == Role.WEB and domain == "shop":
        pool += [T.BY_NAME["public.users"], T.BY_NAME["public.sessions"]]
    if role == Role.ANALYST:
        pool += [t for t in T.in_domain("reporting") if t.name != "reporting.case_stats"]
    if role == Role.DBA:
        pool = [*T.in_domain("ops"), *T.in_domain("platform"), *T.in_domain("audit")]
    if role == Role.REPORTING:
        pool = [
            T.BY_NAME[n]
            for n in (
                "reporting.daily_sales",
                "reporting.monthly_kpis",
                "reporting.inventory_snapshot",
            )
        ]
        pool += T.in_domain(domain)
    k = min(len(pool), int(rng.integers(4, 10)))
    chosen = [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
    table_w = dict(zip([t.name for t in chosen], _zipf(k, rng), strict=True))
    names = set(table_w)
    joins = T.joins_within(names)
    for key, w in tpl.items():
        if key in ("w_join", "a_join", "r_rollup"):
            for parent, child, _ in joins:
                pairs.append(
                    (catalog.combo(key, parent, child), w * table_w[parent] * table_w[child] ** 0.5)
                )
        elif key == "w_ping":
            pairs.append((catalog.combo(key), w))
        elif key == "x_jobs":
            pairs.append((catalog.combo(key, "ops.jobs"), w))
        elif key == "a_typo":
            t = chosen[0].name
            pairs.append((catalog.combo(key, t[:-1] if t.endswith("s") else t + "s"), w))
        elif key == "r_cursor":
            pairs.append((catalog.combo(key, "reporting.customer_ltv"), w))
        else:
            for t in chosen:
                if _fits(key, t):
                    rels = (t.name, t.name) if key == "r_range" else (t.name,)
                    pairs.append((catalog.combo(key, *rels), w * table_w[t.name]))
    if role == Role.ANALYST and rng.random() < 0.3:  # exports results with psql's \copy
        t = next((t for t in chosen if t.dated), chosen[0])
        pairs.append((catalog.combo("a_copy", t.name), 3.0))
    pairs.sort(key=lambda cw: -cw[1])
    return _normalised(pairs[:MAX_COMBOS])  # fmt: skip


def _fits(key: str, t: T.Table) -> bool:
    """Whether template ``key`` makes sense on table ``t``."""
    if key in ("b_extract", "b_agg", "b_purge", "a_month", "a_top", "r_scan", "x_index"):
        return t.dated
    if key in ("w_list",):
        return any(c.endswith("_id") for c in t.columns)
    if key in ("w_insert", "w_update", "b_mark"):
        return t.domain != "reporting" and t.rows < 50_000_000
    if key == "r_range":
        return t.domain == "reporting"
    if key == "x_peek":
        return t.rows < 100_000
    return True


def _normalised(pairs: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    total = sum(w for _, w in pairs)
    return [c for c, _ in pairs], [w / total for _, w in pairs]
