"""Who uses the database: accounts, their roles, tables, clients, applications, rhythms.

An account has one *profile* (what it does) per period: a role change gives it a second
profile from the day of the change. Everything is drawn once, from the seed, into arrays
indexed by profile so that each day's work can be drawn column-wise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from detector.simulate import tables as T
from detector.simulate.catalog import Catalog
from detector.simulate.repertoire import MAX_COMBOS, repertoire
from detector.simulate.roles import (
    FIRST,
    JOB_NAMES,
    LAST,
    SPECS,
    Role,
    holidays,
    hour_cdf,
    role_counts,
)
from detector.simulate.templates import TEMPLATES

MAX_IPS = 4
MAX_APPS = 2
MAX_RUNS = 4


@dataclass
class Profile:
    account: int
    role: Role
    start: int  # first day (index) of this profile
    end: int  # day after its last
    rate: float
    appetite: float  # scales the rows of its statements
    shift: int  # hours its day starts early or late
    ips: list[int]
    apps: list[int]
    combos: list[int]
    weights: list[float]
    domain: str = ""
    runs: list[int] = field(default_factory=list)  # seconds of day (scheduled jobs)
    run_len: int = 0  # seconds
    weekend: float = 1.0
    slots: int = 1
    vpn: float = 0.0  # chance of working from the second address on a day


@dataclass
class Population:
    start: date
    days: int
    accounts: list[str]
    roles: list[Role]  # each account's first role
    ips: Interned
    apps: Interned
    catalog: Catalog
    profiles: list[Profile]
    holidays: set[int]
    absent: np.ndarray  # (profiles, days) bool: vacation or sick
    dump: list[int]  # pg_dump's statements, in order
    role_changes: list[tuple[int, int, Role, Role]] = field(default_factory=list)

    def ip(self, address: str) -> int:
        """The id of a client address, added if new."""
        return self.ips(address)

    def app(self, name: str) -> int:
        return self.apps(name)

    def profile_on(self, account: int, day: int) -> Profile | None:
        for p in self.profiles:
            if p.account == account and p.start <= day < p.end:
                return p
        return None

    def exporters(self) -> set[int]:
        """Accounts whose ordinary work includes exports (COPY ... TO, cursors, dumps)."""
        frozen_export = {c for c in range(len(self.catalog.keys)) if _is_export(self.catalog, c)}
        return {
            p.account
            for p in self.profiles
            if frozen_export & set(p.combos) or p.role == Role.BACKUP
        }


def _is_export(catalog: Catalog, combo: int) -> bool:
    return TEMPLATES[catalog.keys[combo][0]].export


class Interned:
    """Strings numbered in the order they are first seen."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._ids: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        if value not in self._ids:
            self._ids[value] = len(self.values)
            self.values.append(value)
        return self._ids[value]

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> str:
        return self.values[i]


class _Addresses:
    """Unique client addresses, handed out per subnet."""

    def __init__(self, ips: Interned) -> None:
        self.ips = ips
        self.next: dict[str, int] = {}

    def take(self, subnet: str) -> int:
        k = self.next.get(subnet, 0)
        self.next[subnet] = k + 1
        if subnet.count(".") == 1:
            return self.ips(f"{subnet}.{k // 250}.{k % 250 + 2}")
        return self.ips(f"{subnet}.{k % 250 + 2}")


def build(accounts: int, days: int, start: date, seed: int) -> Population:
    """The population, deterministic for a seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    pop = Population(
        start,
        days,
        [],
        [],
        Interned(),
        Interned(),
        Catalog(),
        [],
        holidays(start, days),
        np.zeros(0),
        [],
    )
    addresses = _Addresses(pop.ips)
    counts = role_counts(accounts)
    order = [r for r in Role for _ in range(counts[r])]
    names: set[str] = set()
    for role in order:
        account = len(pop.accounts)
        profile = _profile(pop, role, account, rng, addresses)
        pop.accounts.append(_name(role, profile.domain, rng, names))
        pop.roles.append(role)
        pop.profiles.append(profile)
    _arrivals(pop, rng)
    _role_changes(pop, rng, addresses)
    pop.dump = [
        pop.catalog.combo(k)
        for k in ("d_search_path", "d_recovery", "d_search_path", "d_schemas", "d_prepare")
    ]
    pop.dump += [
        pop.catalog.combo("d_copy", t.name) for t in sorted(T.TABLES, key=lambda t: t.name)
    ]
    pop.catalog.combo("login_fail")
    pop.absent = _absences(pop, rng)
    return pop  # fmt: skip


def _name(role: Role, domain: str, rng: np.random.Generator, taken: set[str]) -> str:
    spec = SPECS[role]
    if role in (Role.ANALYST, Role.DBA, Role.CASE_OFFICER):
        base = f"{spec.prefix}_{rng.choice(FIRST)[0]}{rng.choice(LAST)}"
    elif role == Role.BATCH:
        base = str(rng.choice(JOB_NAMES[domain]))
    elif role == Role.BACKUP:
        base = "backup"
    elif role == Role.WEB:
        base = f"{spec.prefix}_{domain}"
    else:
        base = f"{spec.prefix}_{domain}"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name


def _profile(
    pop: Population, role: Role, account: int, rng: np.random.Generator, addresses: _Addresses
) -> Profile:
    spec = SPECS[role]
    domain = str(rng.choice(spec.domains)) if spec.domains else ""
    rate = (
        float(spec.statements * np.exp(rng.normal(0, spec.spread)))
        if spec.spread
        else spec.statements
    )
    p = Profile(
        account,
        role,
        0,
        pop.days,
        rate,
        float(np.exp(rng.normal(0, 0.4))),
        0,
        [],
        [],
        [],
        [],
        domain,
    )
    p.slots = int(rng.integers(spec.slots[0], spec.slots[1] + 1))
    p.weekend = spec.weekend
    if spec.people:
        p.shift = int(rng.choice([-1, 0, 0, 1]))
        subnet = {Role.ANALYST: "10.60", Role.DBA: "10.10", Role.CASE_OFFICER: "10.70"}[role]
        p.ips = [addresses.take(subnet)]
        if rng.random() < 0.4:
            p.ips.append(addresses.take("10.8"))
            p.vpn = float(rng.uniform(0.1, 0.4))
    elif role == Role.WEB:
        p.ips = [addresses.take("10.20") for _ in range(int(rng.integers(2, MAX_IPS + 1)))]
    elif role == Role.BACKUP:
        p.ips = [addresses.take("10.30.250")]
    else:
        p.ips = [addresses.take("10.40" if role == Role.REPORTING else "10.30")]
    apps = [a.replace("{domain}", domain) for a in spec.apps]
    n_apps = 1 if role != Role.ANALYST else int(rng.integers(1, MAX_APPS + 1))
    p.apps = [pop.app(str(a)) for a in rng.choice(apps, size=n_apps, replace=False)]
    if role in (Role.BATCH, Role.BACKUP):
        n_runs = 1 if role == Role.BACKUP else int(rng.integers(1, MAX_RUNS + 1))
        first = (
            int(rng.integers(0, 6 * 3600))
            if role == Role.BATCH
            else int(rng.integers(3600, 3 * 3600))
        )
        every = int(rng.choice([3600, 3 * 3600, 6 * 3600]))
        p.runs = [(first + k * every) % 86400 // 60 * 60 for k in range(n_runs)]
        p.run_len = int(rng.integers(5, 30)) * 60
        if role == Role.BATCH and rng.random() < 0.3:
            p.weekend = 0.0  # weekday-only job
    combos, weights = repertoire(pop.catalog, role, domain, rng)
    p.combos, p.weights = combos, weights
    return p


def _arrivals(pop: Population, rng: np.random.Generator) -> None:
    """A few accounts start mid-period (new hires, new services)."""
    if pop.days < 4:
        return
    n = max(1, round(0.04 * len(pop.accounts)))
    eligible = [p for p in pop.profiles if p.role not in (Role.BACKUP, Role.DBA)]
    for p in rng.choice(len(eligible), size=min(n, len(eligible)), replace=False):
        eligible[int(p)].start = int(rng.integers(1, pop.days - 1))


def _role_changes(pop: Population, rng: np.random.Generator, addresses: _Addresses) -> None:
    """One account in about sixty changes job: a case officer moves to analysis, an analyst to
    database administration. Same person, same desk: same addresses."""
    if pop.days < 6:
        return
    n = max(1, round(len(pop.accounts) / 60))
    movers = [
        p for p in pop.profiles if p.role in (Role.CASE_OFFICER, Role.ANALYST) and p.start == 0
    ]
    for i in rng.choice(len(movers), size=min(n, len(movers)), replace=False):
        old = movers[int(i)]
        new_role = Role.ANALYST if old.role == Role.CASE_OFFICER else Role.DBA
        new = _profile(pop, new_role, old.account, rng, addresses)
        day = int(rng.integers(pop.days // 3, 2 * pop.days // 3 + 1))
        new.start, new.end, old.end = day, pop.days, day
        new.ips, new.vpn = old.ips, old.vpn
        pop.profiles.append(new)
        pop.role_changes.append((old.account, day, old.role, new_role))


def _absences(pop: Population, rng: np.random.Generator) -> np.ndarray:
    """(profiles, days): people on vacation (a block of days) or sick (a day here and there)."""
    absent = np.zeros((len(pop.profiles), pop.days), dtype=bool)
    people = np.array([SPECS[p.role].people for p in pop.profiles])
    absent |= (rng.random(absent.shape) < 0.02) & people[:, None]
    for i in np.flatnonzero(people & (rng.random(len(pop.profiles)) < 0.3)):
        first = int(rng.integers(0, pop.days))
        absent[i, first : first + int(rng.integers(3, 11))] = True
    return absent


def arrays(pop: Population) -> dict[str, np.ndarray]:
    """The profiles as column arrays (padded where a profile has a list)."""
    ps = pop.profiles
    n = len(ps)
    out: dict[str, np.ndarray] = {
        "account": np.array([p.account for p in ps], dtype=np.int64),
        "role": np.array([int(p.role) for p in ps], dtype=np.int64),
        "start": np.array([p.start for p in ps], dtype=np.int64),
        "end": np.array([p.end for p in ps], dtype=np.int64),
        "rate": np.array([p.rate for p in ps]),
        "appetite": np.array([p.appetite for p in ps]),
        "weekend": np.array([p.weekend for p in ps]),
        "holiday": np.array([SPECS[p.role].holiday for p in ps]),
        "growth": np.array([SPECS[p.role].growth for p in ps]),
        "block": np.array([SPECS[p.role].block_s for p in ps], dtype=np.int64),
        "slots": np.array([p.slots for p in ps], dtype=np.int64),
        "vpn": np.array([p.vpn for p in ps]),
        "n_ips": np.array([len(p.ips) for p in ps], dtype=np.int64),
        "n_apps": np.array([len(p.apps) for p in ps], dtype=np.int64),
        "n_runs": np.array([len(p.runs) for p in ps], dtype=np.int64),
        "run_len": np.array([p.run_len for p in ps], dtype=np.int64),
        "dump": np.array([p.role == Role.BACKUP for p in ps]),
        "people": np.array([SPECS[p.role].people for p in ps]),
    }
    out["ips"] = _padded([p.ips for p in ps], MAX_IPS)
    out["apps"] = _padded([p.apps for p in ps], MAX_APPS)
    out["runs"] = _padded([p.runs for p in ps], MAX_RUNS)
    out["combos"] = _padded([p.combos for p in ps], MAX_COMBOS)
    cum = np.ones((n, MAX_COMBOS))
    for i, p in enumerate(ps):
        cum[i, : len(p.weights)] = np.cumsum(p.weights)
    cum[:, -1] = 1.0  # no statement falls past the last combo through rounding
    out["cum"] = np.minimum(cum, 1.0)
    hours = [hour_cdf(SPECS[p.role].hours or (1.0,) * 24, p.shift) for p in ps]
    out["hour_cdf"] = np.stack(hours) if hours else np.zeros((0, 24))
    return out


def _padded(lists: list[list[int]], width: int) -> np.ndarray:
    """Rows of ``lists`` padded to ``width`` with their last value (0 if empty)."""
    out = np.zeros((len(lists), width), dtype=np.int64)
    for i, values in enumerate(lists):
        if values:
            out[i, : len(values)] = values[:width]
            out[i, len(values) :] = values[-1]
    return out
