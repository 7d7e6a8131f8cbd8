"""One day of ordinary work, drawn column-wise: one row per statement.

A day's statements are a dict of equal-length arrays (:data:`COLUMNS`): who (profile,
account), when (``t``, microseconds since the epoch, when the statement finished), in
which session (``skey``, unique within the account and day), from where (``ip``, ``app``:
ids into the population's tables), what (``combo``), its number (``n``), the rows it
really moved (``rows``), how long it ran (``dur``, microseconds) and a ``tag`` (0 for
ordinary work, an incident's number, or minus an unusual job's number).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np

from detector.simulate.catalog import Frozen
from detector.simulate.population import Population
from detector.simulate.templates import Num, Rows, Shape

COLUMNS: Final = (
    "profile",
    "account",
    "t",
    "skey",
    "ip",
    "app",
    "combo",
    "n",
    "rows",
    "dur",
    "tag",
)
Statements = dict[str, np.ndarray]

# Session keys by origin, so that no two kinds of session of an account share one.
RUN_SESSION: Final = 10_000
LOGIN_SESSION: Final = 20_000
SPECIAL_SESSION: Final = 1_000_000

# Rows per statement by mode: median and spread (lognormal), scaled by the account's appetite.
_MEDIAN: Final = {Rows.FEW: 4, Rows.AGG: 12, Rows.SAMPLE: 300, Rows.BATCH: 3000, Rows.LARGE: 40_000}
_SIGMA: Final = {Rows.FEW: 0.8, Rows.AGG: 1.0, Rows.SAMPLE: 1.2, Rows.BATCH: 0.9, Rows.LARGE: 0.8}
LIMITS: Final = np.array([10, 50, 100, 100, 200, 500, 1000])
DAY_US: Final = 86_400 * 1_000_000


def day_start_us(pop: Population, day: int) -> int:
    start = datetime(pop.start.year, pop.start.month, pop.start.day, tzinfo=UTC) + timedelta(
        days=day
    )
    return int(start.timestamp()) * 1_000_000


def empty() -> Statements:
    return {c: np.zeros(0, dtype=np.int64) for c in COLUMNS}


def concat(parts: list[Statements]) -> Statements:
    return {c: np.concatenate([p[c] for p in parts]).astype(np.int64) for c in COLUMNS}


def fill(
    frozen: Frozen, combo: np.ndarray, appetite: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numbers, rows and durations (microseconds) for statements of ``combo``."""
    size = len(combo)
    mode, num = frozen.rows_mode[combo], frozen.num_mode[combo]
    table = frozen.table_rows[combo]
    n = np.zeros(size, dtype=np.int64)
    ids = (rng.random(size) * np.maximum(table, 1)).astype(np.int64) + 1
    n = np.where(num == Num.ID, ids, n)
    n = np.where(num == Num.DAYS, rng.integers(1, 91, size), n)
    n = np.where(num == Num.HOURS, rng.integers(1, 49, size), n)
    n = np.where(num == Num.LIMIT, LIMITS[rng.integers(0, len(LIMITS), size)], n)
    z = rng.normal(0.0, 1.0, size)
    rows = np.ones(size)
    for m, median in _MEDIAN.items():
        drawn = np.exp(np.log(median) + _SIGMA[m] * z) * appetite
        rows = np.where(mode == m, drawn, rows)
    rows = np.where(mode == Rows.ZERO, 0, rows)
    rows = np.where(mode == Rows.PAGE, rng.integers(0, 51, size), rows)
    rows = np.where(mode == Rows.FULL, table, rows)
    rows = np.where(mode == Rows.NUM, n, rows)
    rows = np.where(mode == Rows.ONE, rng.random(size) > 0.02, rows)  # a miss now and then
    rows = np.round(rows).astype(np.int64)
    rows = np.where(table > 0, np.minimum(rows, table), rows)
    rows = np.where(mode == Rows.ONE, np.minimum(rows, 1), rows)
    return n, rows, duration(frozen, combo, rows, rng)


def duration(
    frozen: Frozen, combo: np.ndarray, rows: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Server-side duration in microseconds: a fixed cost plus a cost per row."""
    shape = frozen.shape[combo]
    per_row = np.where(np.isin(shape, [Shape.COPY_TABLE, Shape.COPY_QUERY]), 1.2, 2.5)
    us = (60 + per_row * rows) * np.exp(rng.normal(0.0, 0.6, len(combo)))
    us = np.where(shape == Shape.BARE, np.minimum(us, 150_000), us)  # cursors are only declared
    us = np.where(frozen.fast[combo], np.minimum(us, 200_000), us)
    out: np.ndarray = us.astype(np.int64) + 10
    return out


def _pick(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from each row's cumulative distribution ``cdf[rows]``."""
    width = cdf.shape[1]
    flat = (cdf + np.arange(len(cdf))[:, None]).ravel()
    idx = np.searchsorted(flat, rows + u, side="right") - rows * width
    picked: np.ndarray = np.minimum(idx, width - 1)
    return picked


def ordinary(
    pop: Population, prof: dict[str, np.ndarray], frozen: Frozen, day: int, rng: np.random.Generator
) -> Statements:
    """Everything the population does on ``day`` besides incidents and unusual jobs."""
    n_prof = len(prof["account"])
    weekday = (pop.start + timedelta(days=day)).weekday()
    active = (prof["start"] <= day) & (day < prof["end"]) & ~pop.absent[:, day]
    factor = np.exp(rng.normal(0.0, 0.15, n_prof)) * (1 + prof["growth"]) ** (day / 7)
    if weekday >= 5:
        factor *= prof["weekend"]
    if day in pop.holidays:
        factor *= prof["holiday"]
    lam = prof["rate"] * factor * np.maximum(prof["n_runs"], 1) * active * ~prof["dump"]
    counts = rng.poisson(lam)
    p = np.repeat(np.arange(n_prof), counts)
    size = len(p)
    slot = (rng.random(size) * prof["slots"][p]).astype(np.int64)
    hour = _pick(prof["hour_cdf"], p, rng.random(size))
    tod = (hour + rng.random(size)) * 3600.0
    block = (tod // np.maximum(prof["block"][p], 1)).astype(np.int64)
    skey = block * 16 + slot
    runs = prof["n_runs"][p] > 0
    run = (rng.random(size) * np.maximum(prof["n_runs"][p], 1)).astype(np.int64)
    delay = rng.integers(0, 90, n_prof)  # cron and scheduler jitter, seconds
    run_tod = prof["runs"][p, run] + delay[p] + rng.random(size) * prof["run_len"][p]
    tod = np.where(runs, run_tod, tod) % 86_400
    skey = np.where(runs, RUN_SESSION + run, skey)
    remote = (
        np.where(rng.random(n_prof) < prof["vpn"], 1, 0) % prof["n_ips"]
    )  # where people work today
    ip_col = np.where(prof["people"][p], remote[p], slot % prof["n_ips"][p])
    combo = prof["combos"][p, _pick(prof["cum"], p, rng.random(size))]
    n, rows, dur = fill(frozen, combo, prof["appetite"][p], rng)
    out: Statements = {
        "profile": p,
        "account": prof["account"][p],
        "t": day_start_us(pop, day) + (tod * 1e6).astype(np.int64),
        "skey": skey,
        "ip": prof["ips"][p, ip_col],
        "app": prof["apps"][p, (skey * 7 + day) % prof["n_apps"][p]],
        "combo": combo,
        "n": n,
        "rows": rows,
        "dur": dur,
        "tag": np.zeros(size, dtype=np.int64),
    }
    parts = [out, _failed_logins(pop, prof, frozen, day, out, remote, rng)]
    parts += [
        dump_run(pop, frozen, int(i), day, rng) for i in np.flatnonzero(prof["dump"] & active)
    ]
    return concat(parts)  # fmt: skip


def _failed_logins(
    pop: Population,
    prof: dict[str, np.ndarray],
    frozen: Frozen,
    day: int,
    stmts: Statements,
    remote: np.ndarray,
    rng: np.random.Generator,
) -> Statements:
    """People mistype their password now and then, a little before they start work."""
    p = stmts["profile"]
    if not len(p):
        return empty()
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])  # p is sorted
    first_t = np.minimum.reduceat(stmts["t"], starts)
    who = p[starts]
    pick = prof["people"][who] & (rng.random(len(who)) < 0.03)
    who, first_t = who[pick], first_t[pick]
    size = len(who)
    combo = np.full(size, pop.catalog.combo("login_fail"), dtype=np.int64)
    return {
        "profile": who,
        "account": prof["account"][who],
        "t": np.maximum(
            first_t - rng.integers(5_000_000, 60_000_000, size), day_start_us(pop, day)
        ),
        "skey": np.full(size, LOGIN_SESSION),
        "ip": prof["ips"][who, remote[who]],
        "app": prof["apps"][who, 0],
        "combo": combo,
        "n": np.zeros(size, dtype=np.int64),
        "rows": np.zeros(size, dtype=np.int64),
        "dur": np.zeros(size, dtype=np.int64),
        "tag": np.zeros(size, dtype=np.int64),
    }


def dump_run(
    pop: Population,
    frozen: Frozen,
    profile: int,
    day: int,
    rng: np.random.Generator,
    at: int | None = None,
    account: int | None = None,
    ip: int | None = None,
    tag: int = 0,
    skey: int = RUN_SESSION,
) -> Statements:
    """A whole-database ``pg_dump``: its preamble, then ``COPY ... TO stdout`` of every table,
    one after the other. ``at`` (microseconds) defaults to the profile's nightly run."""
    p = pop.profiles[profile]
    combo = np.array(pop.dump, dtype=np.int64)
    size = len(combo)
    n, rows, dur = fill(frozen, combo, np.ones(size), rng)
    if at is None:
        at = day_start_us(pop, day) + (p.runs[0] + int(rng.integers(0, 90))) * 1_000_000
    gaps = rng.integers(200, 3_000, size)  # client round trips between statements
    t = at + np.cumsum(dur + gaps)
    return {
        "profile": np.full(size, profile, dtype=np.int64),
        "account": np.full(size, p.account if account is None else account, dtype=np.int64),
        "t": t,
        "skey": np.full(size, skey, dtype=np.int64),
        "ip": np.full(size, p.ips[0] if ip is None else ip, dtype=np.int64),
        "app": np.full(size, pop.app("pg_dump"), dtype=np.int64),
        "combo": combo,
        "n": n,
        "rows": rows,
        "dur": dur,
        "tag": np.full(size, tag, dtype=np.int64),
    }
