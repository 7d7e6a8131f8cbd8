#!/usr/bin/env python3
"""Held-out workload generator #2: "Parcelly", a mid-size US e-commerce/SaaS company.

PostgreSQL 15 + pgAudit 1.7 (pgaudit.log = 'read, write', log_rows on by default,
log_relation on, log_parameter off, log_catalog on (default)), stderr output with
Debian's log_line_prefix '%m [%p] %q%u@%d ' and log_timezone = 'America/New_York'
(so timestamps print as EDT/EST, with the DST change on 2026-11-01 02:00 local).
Daily files postgresql-YYYY-MM-DD.log (local date). 28 days: 2026-11-01 .. 2026-11-28 local.
Train: before 2026-11-22 00:00 local (= 05:00Z). Score: 2026-11-22 .. 2026-11-28 (Thanksgiving
on Thu 26th, Black Friday on 27th).

Usage: python gen.py --out DIR [--seed N] [--no-rows]
Writes DIR/logs/*.log, DIR/labels.csv, DIR/truth_rows.csv (per account, per UTC day,
log-visible rows read & read statements), DIR/unusual.csv (legit unusual events), DIR/accounts.csv.
Standard library only. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

TZ = ZoneInfo("America/New_York")
UTC = timezone.utc
START_LOCAL = datetime(2026, 11, 1, 0, 0, tzinfo=TZ)
DAYS = 28
SCORE_FROM_LOCAL = datetime(2026, 11, 22, 0, 0, tzinfo=TZ)
THANKSGIVING = datetime(2026, 11, 26).date()
BLACK_FRIDAY = datetime(2026, 11, 27).date()
DB = "parcelly"

# ---------------------------------------------------------------- tables
TABLES = {
    "shop.customers": 1_900_000,
    "shop.addresses": 2_400_000,
    "shop.orders": 6_000_000,
    "shop.order_items": 15_000_000,
    "shop.payments": 5_800_000,
    "shop.products": 40_000,
    "shop.product_variants": 160_000,
    "shop.inventory": 160_000,
    "shop.carts": 300_000,
    "shop.cart_items": 900_000,
    "shop.reviews": 700_000,
    "shop.coupons": 12_000,
    "shop.gift_cards": 80_000,
    "shop.shipments": 5_500_000,
    "shop.returns": 200_000,
    "auth.users": 1_950_000,
    "auth.sessions": 3_000_000,
    "auth.password_resets": 90_000,
    "auth.api_keys": 4_000,
    "auth.oauth_tokens": 600_000,
    "billing.invoices": 700_000,
    "billing.refunds": 150_000,
    "billing.payouts": 30_000,
    "billing.tax_rates": 3_000,
    "billing.subscriptions": 120_000,
    "support.tickets": 400_000,
    "support.ticket_messages": 2_200_000,
    "support.macros": 800,
    "marketing.campaigns": 2_000,
    "marketing.email_events": 40_000_000,
    "marketing.segments": 300,
    "marketing.segment_members": 3_000_000,
    "analytics.daily_sales": 20_000,
    "analytics.funnel_events": 80_000_000,
    "analytics.cohorts": 5_000,
    "analytics.kpi_snapshots": 9_000,
    "ops.feature_flags": 400,
    "ops.job_runs": 500_000,
    "ops.audit_trail": 9_000_000,
    "fraud.signals": 1_200_000,
    "fraud.rules": 500,
    "loyalty.accounts": 900_000,
    "loyalty.ledger": 7_000_000,
    "search.index_queue": 50_000,
}
CATALOG = [
    "pg_catalog.pg_class",
    "pg_catalog.pg_namespace",
    "pg_catalog.pg_attribute",
    "pg_catalog.pg_type",
    "pg_catalog.pg_index",
    "pg_catalog.pg_stat_activity",
    "pg_catalog.pg_stat_user_tables",
    "pg_catalog.pg_locks",
    "pg_catalog.pg_settings",
]
COLS = {t: "id, created_at, updated_at, data" for t in TABLES}


def short(t):
    return t.split(".")[1]


# ---------------------------------------------------------------- statements
@dataclass
class Stmt:
    t: datetime  # UTC
    kind: str  # select | write | copy_to | copy_query | declare | catalog
    tables: list
    rows: int
    text: str
    cmd: str = "SELECT"
    slow_ms: float = 0.0  # > 0: a duration line (log_min_duration_statement = 500)
    fail: str = ""  # error message: not audited, ERROR+STATEMENT lines


@dataclass
class Session:
    account: str
    start: datetime
    end: datetime
    ip: str
    app: str
    stmts: list = field(default_factory=list)
    db: str = DB
    failed_login: bool = False
    ssl: bool = False
    pid: int = 0


def sel(t, tables, rows, text=None, slow=0.0):
    if text is None:
        if len(tables) == 1:
            text = f"SELECT {COLS[tables[0]]} FROM {tables[0]} WHERE id = $1"
        else:
            a, b = tables[0], tables[1]
            text = (
                f"SELECT a.*, b.id FROM {a} a JOIN {b} b ON b.{short(a)[:-1]}_id = a.id "
                f"WHERE a.id = ANY($1) LIMIT 200"
            )
    return Stmt(t, "select", list(tables), int(rows), text, "SELECT", slow)


def write(t, table, rows, cmd="INSERT"):
    if cmd == "INSERT":
        text = f"INSERT INTO {table} (id, created_at, data) VALUES ($1, now(), $2)"
    else:
        text = f"UPDATE {table} SET data = $2, updated_at = now() WHERE id = $1"
    return Stmt(t, "write", [table], int(rows), text, cmd)


# ---------------------------------------------------------------- rhythms
def local(dt):
    return dt.astimezone(TZ)


def is_workday(d):
    return d.weekday() < 5 and d != THANKSGIVING


OFFICE = [
    0,
    0,
    0,
    0,
    0,
    0,
    0.05,
    0.3,
    0.9,
    1,
    1,
    0.9,
    0.6,
    0.9,
    1,
    1,
    0.8,
    0.5,
    0.2,
    0.1,
    0.05,
    0.02,
    0,
    0,
]
CONSUMER = [
    0.35,
    0.22,
    0.14,
    0.1,
    0.08,
    0.1,
    0.2,
    0.35,
    0.5,
    0.6,
    0.7,
    0.75,
    0.85,
    0.85,
    0.8,
    0.8,
    0.8,
    0.85,
    0.9,
    1.0,
    1.0,
    0.95,
    0.8,
    0.55,
]
FLAT = [1.0] * 24


def shift_curve(start_h, end_h):
    c = [0.0] * 24
    h = start_h
    while h != end_h:
        c[h] = 1.0
        h = (h + 1) % 24
    return c


# ---------------------------------------------------------------- accounts
@dataclass
class Account:
    name: str
    role: str
    ips: list
    apps: list
    curve: list
    per_day: float  # statements per active day (mean)
    tables: list  # (weight, [tables], rows_mu, rows_sigma)
    weekend: float = 0.2  # activity factor on weekend days
    holiday: float = 0.2
    writes: float = 0.0  # share of statements that are writes
    pool: int = 0  # >0: long-lived pooled sessions
    active_from: datetime | None = None
    active_to: datetime | None = None
    day_sigma: float = 0.35
    attend: float = 1.0  # probability of working on a workday
    ssl: bool = False


def lognorm(rng, mu, sigma, cap):
    return max(1, min(cap, int(math.exp(rng.gauss(mu, sigma)))))


def build_accounts(rng):
    A = []
    app_ips = [f"10.20.1.{i}" for i in range(11, 19)]
    # --- web application pools
    A.append(
        Account(
            "web_storefront",
            "web",
            app_ips,
            ["storefront"],
            CONSUMER,
            9000,
            [
                (5, ["shop.products"], 2.5, 1.0),
                (3, ["shop.product_variants", "shop.inventory"], 2.0, 0.8),
                (2, ["shop.carts", "shop.cart_items"], 1.2, 0.6),
                (1, ["shop.reviews"], 2.3, 0.7),
                (1, ["auth.sessions"], 0, 0.1),
                (0.5, ["shop.customers"], 0, 0.1),
            ],
            weekend=1.15,
            holiday=1.3,
            writes=0.15,
            pool=12,
            ssl=True,
        )
    )
    A.append(
        Account(
            "web_checkout",
            "web",
            app_ips,
            ["checkout"],
            CONSUMER,
            2500,
            [
                (3, ["shop.carts", "shop.cart_items"], 1.2, 0.6),
                (2, ["shop.customers", "shop.addresses"], 0.5, 0.4),
                (1, ["shop.coupons"], 0, 0.1),
                (1, ["billing.tax_rates"], 0.3, 0.3),
                (1, ["shop.inventory"], 1, 0.5),
            ],
            weekend=1.15,
            holiday=1.2,
            writes=0.3,
            pool=8,
            ssl=True,
        )
    )
    A.append(
        Account(
            "web_admin",
            "web",
            ["10.20.2.21", "10.20.2.22"],
            ["parcelly-admin"],
            OFFICE,
            1400,
            [
                (3, ["shop.orders", "shop.order_items"], 1.5, 0.8),
                (2, ["shop.customers"], 0.3, 0.5),
                (1, ["auth.users"], 0, 0.2),
                (1, ["shop.shipments"], 0.5, 0.5),
                (1, ["billing.refunds"], 0.3, 0.5),
                (1, ["shop.products"], 2.0, 1.0),
            ],
            weekend=0.25,
            holiday=0.2,
            writes=0.2,
            pool=3,
        )
    )
    # --- microservices (k8s pod ips)
    svc = [
        (
            "svc_orders",
            [
                (3, ["shop.orders"], 0.5, 0.5),
                (2, ["shop.order_items"], 1.2, 0.5),
                (1, ["shop.customers"], 0, 0.1),
            ],
            3000,
            0.4,
        ),
        (
            "svc_inventory",
            [(4, ["shop.inventory"], 1.5, 0.8), (1, ["shop.product_variants"], 1.5, 0.8)],
            2200,
            0.35,
        ),
        (
            "svc_payments",
            [
                (3, ["shop.payments"], 0.2, 0.3),
                (1, ["billing.invoices"], 0.2, 0.3),
                (1, ["shop.orders"], 0, 0.1),
            ],
            1500,
            0.45,
        ),
        (
            "svc_shipping",
            [
                (3, ["shop.shipments"], 0.8, 0.6),
                (2, ["shop.addresses"], 0, 0.2),
                (1, ["shop.orders"], 0.3, 0.4),
            ],
            1300,
            0.35,
        ),
        (
            "svc_catalog",
            [(4, ["shop.products"], 3.0, 1.0), (2, ["shop.product_variants"], 2.5, 0.8)],
            1800,
            0.1,
        ),
        (
            "svc_search_indexer",
            [
                (4, ["search.index_queue"], 3.5, 0.6),
                (2, ["shop.products"], 3.0, 0.8),
                (1, ["shop.product_variants"], 3.0, 0.8),
            ],
            900,
            0.2,
        ),
        (
            "svc_recommend",
            [(3, ["shop.order_items"], 3.0, 0.8), (2, ["shop.products"], 2.5, 0.6)],
            500,
            0.05,
        ),
        (
            "svc_notifications",
            [
                (3, ["shop.customers"], 0.3, 0.4),
                (2, ["shop.orders"], 0.3, 0.4),
                (2, ["shop.shipments"], 0.3, 0.4),
                (1, ["marketing.campaigns"], 0.5, 0.5),
            ],
            1600,
            0.3,
        ),
        (
            "svc_auth",
            [
                (5, ["auth.users"], 0, 0.05),
                (3, ["auth.sessions"], 0, 0.05),
                (1, ["auth.oauth_tokens"], 0, 0.1),
            ],
            4000,
            0.3,
        ),
        (
            "svc_pricing",
            [
                (3, ["shop.products"], 2.0, 0.8),
                (2, ["shop.coupons"], 1.0, 0.6),
                (1, ["billing.tax_rates"], 2.0, 0.5),
            ],
            1200,
            0.05,
        ),
        (
            "svc_reviews",
            [(4, ["shop.reviews"], 2.0, 0.8), (1, ["shop.products"], 0, 0.2)],
            700,
            0.2,
        ),
        (
            "svc_loyalty",
            [(3, ["loyalty.accounts"], 0, 0.2), (3, ["loyalty.ledger"], 1.5, 0.7)],
            900,
            0.35,
        ),
        (
            "svc_fraud",
            [
                (3, ["fraud.signals"], 1.5, 0.7),
                (2, ["fraud.rules"], 4.0, 0.3),
                (1, ["shop.payments"], 1.0, 0.6),
                (1, ["shop.customers"], 0, 0.2),
            ],
            1400,
            0.25,
        ),
        (
            "svc_support_sync",
            [(3, ["support.tickets"], 1.0, 0.6), (2, ["support.ticket_messages"], 1.5, 0.7)],
            600,
            0.3,
        ),
        (
            "svc_subscriptions",
            [(3, ["billing.subscriptions"], 1.0, 0.8), (1, ["billing.invoices"], 0.5, 0.5)],
            500,
            0.3,
        ),
        (
            "svc_returns",
            [
                (3, ["shop.returns"], 0.5, 0.5),
                (1, ["shop.orders"], 0, 0.2),
                (1, ["billing.refunds"], 0, 0.2),
            ],
            300,
            0.3,
        ),
    ]
    for i, (n, tabs, per_day, wr) in enumerate(svc):
        ips = [f"10.20.{4 + i // 8}.{30 + (i * 7) % 200 + k}" for k in range(3)]
        A.append(
            Account(
                n,
                "service",
                ips,
                [n.replace("svc_", "") + "-svc"],
                CONSUMER,
                per_day,
                tabs,
                weekend=1.05,
                holiday=1.1,
                writes=wr,
                pool=4,
                day_sigma=0.15,
            )
        )
    # new service mid-training
    A.append(
        Account(
            "svc_giftcards",
            "service",
            ["10.20.6.41", "10.20.6.42"],
            ["giftcards-svc"],
            CONSUMER,
            400,
            [(3, ["shop.gift_cards"], 0, 0.2), (1, ["shop.customers"], 0, 0.1)],
            weekend=1.05,
            holiday=1.1,
            writes=0.3,
            pool=2,
            day_sigma=0.15,
            active_from=datetime(2026, 11, 12, 10, tzinfo=TZ),
        )
    )
    # new service arriving in the scored week (Black Friday promo engine)
    A.append(
        Account(
            "svc_promo_engine",
            "service",
            ["10.20.6.51", "10.20.6.52"],
            ["promo-engine"],
            CONSUMER,
            800,
            [
                (3, ["shop.coupons"], 1.0, 0.5),
                (2, ["marketing.campaigns"], 1.0, 0.5),
                (1, ["shop.products"], 2.0, 0.8),
            ],
            weekend=1.05,
            holiday=1.2,
            writes=0.2,
            pool=2,
            day_sigma=0.15,
            active_from=datetime(2026, 11, 24, 9, tzinfo=TZ),
        )
    )
    # --- BI
    A.append(
        Account(
            "bi_metabase",
            "bi",
            ["10.40.0.10"],
            ["Metabase v0.48.3 [a1b2]"],
            OFFICE,
            500,
            [
                (3, ["analytics.daily_sales"], 5.0, 1.2),
                (2, ["shop.orders", "shop.order_items"], 6.0, 1.5),
                (1, ["marketing.email_events"], 6.0, 1.5),
                (1, ["analytics.kpi_snapshots"], 4, 1),
            ],
            weekend=0.15,
            holiday=0.1,
            day_sigma=0.5,
        )
    )
    A.append(
        Account(
            "bi_looker",
            "bi",
            ["10.40.0.12"],
            ["Looker"],
            OFFICE,
            250,
            [
                (3, ["analytics.daily_sales"], 5.0, 1.0),
                (2, ["analytics.cohorts"], 4.0, 1.0),
                (1, ["analytics.funnel_events"], 7, 1.5),
            ],
            weekend=0.3,
            holiday=0.3,
            day_sigma=0.5,
        )
    )
    # --- humans
    first = [
        "alex",
        "maria",
        "james",
        "priya",
        "chen",
        "fatima",
        "john",
        "olga",
        "raj",
        "li",
        "sara",
        "tom",
        "ana",
        "kofi",
        "yuki",
        "omar",
        "eva",
        "noah",
        "mia",
        "luca",
        "zoe",
        "ivan",
        "nina",
        "ben",
        "aisha",
        "leo",
        "ines",
        "paul",
        "rosa",
        "sam",
        "tara",
        "hugo",
        "lena",
        "dan",
        "ruth",
        "amir",
        "kate",
        "ali",
        "jade",
        "max",
    ]
    last = [
        "kowalski",
        "chen",
        "gupta",
        "singh",
        "okafor",
        "rivera",
        "novak",
        "wright",
        "osei",
        "fernandes",
        "oleary",
        "smith",
        "nguyen",
        "garcia",
        "muller",
        "rossi",
        "kim",
        "ahmed",
        "silva",
        "jensen",
    ]
    used = set()

    def person():
        while True:
            n = f"{rng.choice(first)[0]}.{rng.choice(last)}"
            if n not in used:
                used.add(n)
                return n

    vpn = lambda: f"10.8.{rng.randrange(0, 4)}.{rng.randrange(2, 250)}"
    an_tabs = [
        ["analytics.daily_sales"],
        ["analytics.cohorts"],
        ["shop.orders"],
        ["shop.order_items", "shop.products"],
        ["marketing.email_events"],
        ["marketing.segment_members"],
        ["analytics.funnel_events"],
        ["shop.customers"],
        ["billing.invoices"],
        ["loyalty.ledger"],
        ["shop.returns"],
        ["billing.subscriptions"],
    ]
    for k in range(36):
        nm = person()
        tabs = rng.sample(an_tabs, rng.randint(3, 6))
        tl = [(rng.uniform(0.5, 3), t, rng.uniform(2.0, 6.5), rng.uniform(0.8, 1.8)) for t in tabs]
        A.append(
            Account(
                nm,
                "analyst",
                [vpn(), vpn()],
                rng.sample(
                    [
                        "DBeaver 23.2.0 - SQLEditor <Script-3>",
                        "psql",
                        "JupyterHub",
                        "DataGrip 2023.3",
                    ],
                    2,
                ),
                OFFICE,
                rng.uniform(30, 200),
                tl,
                weekend=0.05,
                holiday=0.03,
                attend=0.85,
                day_sigma=0.8,
            )
        )
    sup_tabs = [
        (4, ["shop.customers"], 0, 0.3),
        (4, ["shop.orders", "shop.order_items"], 1.0, 0.6),
        (2, ["shop.shipments"], 0.5, 0.5),
        (2, ["support.tickets"], 0.5, 0.5),
        (2, ["support.ticket_messages"], 1.5, 0.6),
        (1, ["billing.refunds"], 0, 0.3),
        (1, ["shop.returns"], 0, 0.3),
        (1, ["support.macros"], 2, 0.5),
    ]
    shifts = [(shift_curve(8, 17), 32), (shift_curve(3, 11), 10), (shift_curve(19, 3), 10)]
    for curve, n in shifts:
        for k in range(n):
            nm = "sup_" + person().replace(".", "")
            A.append(
                Account(
                    nm,
                    "support",
                    ["10.30.0.5", "10.30.0.6"],
                    ["retool"],
                    curve,
                    rng.uniform(80, 220),
                    sup_tabs,
                    weekend=0.35,
                    holiday=0.3,
                    attend=0.8,
                    day_sigma=0.3,
                )
            )
    # developers with read-only prod access
    dev_tabs = [
        ["shop.orders"],
        ["shop.products"],
        ["ops.job_runs"],
        ["ops.feature_flags"],
        ["shop.inventory"],
        ["search.index_queue"],
        ["shop.carts"],
        ["loyalty.accounts"],
        ["fraud.rules"],
        ["shop.shipments"],
    ]
    for k in range(22):
        nm = "dev_" + person().replace(".", "")
        tabs = rng.sample(dev_tabs, rng.randint(2, 4))
        tl = [(rng.uniform(0.5, 2), t, rng.uniform(0.5, 3.5), 1.0) for t in tabs]
        A.append(
            Account(
                nm,
                "dev",
                [vpn()],
                ["psql", rng.choice(["DBeaver 23.2.0 - Main", "pgAdmin 4 - DB:parcelly"])],
                OFFICE,
                rng.uniform(5, 40),
                tl,
                weekend=0.03,
                holiday=0.0,
                attend=0.45,
                day_sigma=0.8,
            )
        )
    # DBAs: catalog mostly
    for nm in ["dba_oleary", "dba_fernandes", "dba_kim", "dba_rossi"]:
        A.append(
            Account(
                nm,
                "dba",
                [vpn(), "10.20.9.2"],
                ["psql", "pgAdmin 4 - DB:parcelly"],
                OFFICE,
                rng.uniform(40, 120),
                [
                    (5, ["pg_catalog.pg_stat_activity"], 2.5, 0.5),
                    (3, ["pg_catalog.pg_stat_user_tables"], 3.5, 0.5),
                    (2, ["pg_catalog.pg_locks"], 2.0, 0.5),
                    (1, ["ops.job_runs"], 1.5, 0.8),
                    (1, ["pg_catalog.pg_settings"], 5.5, 0.1),
                ],
                weekend=0.1,
                holiday=0.05,
                attend=0.8,
                day_sigma=0.5,
            )
        )
    # finance / marketing humans via psql/Excel
    for k in range(8):
        nm = "fin_" + person().replace(".", "")
        A.append(
            Account(
                nm,
                "finance",
                [vpn()],
                ["Microsoft Excel", "psql"],
                OFFICE,
                rng.uniform(10, 60),
                [
                    (3, ["billing.invoices"], 3.0, 1.2),
                    (2, ["billing.refunds"], 2.5, 1.0),
                    (1, ["billing.payouts"], 2.0, 1.0),
                    (1, ["analytics.daily_sales"], 3, 1),
                ],
                weekend=0.02,
                holiday=0.0,
                attend=0.8,
                day_sigma=0.6,
            )
        )
    return A


# batch jobs are generated separately (names only for the roles list)
BATCH = [
    "etl_dwh_nightly",
    "etl_airflow",
    "backup_svc",
    "rpt_daily_sales",
    "rpt_weekly_finance",
    "rpt_monthly_recon",
    "mkt_segment_builder",
    "replicator_check",
]


# ---------------------------------------------------------------- generation
class Gen:
    def __init__(self, seed, rows_on=True):
        self.seed = seed
        self.rng = random.Random(seed)
        self.rows_on = rows_on
        self.sessions: list[Session] = []
        self.labels = []
        self.unusual = []
        self.accounts = build_accounts(random.Random(seed * 7 + 1))
        self.acct = {a.name: a for a in self.accounts}

    def arng(self, *key):
        h = hashlib.sha256(("|".join(map(str, (self.seed,) + key))).encode()).digest()
        return random.Random(int.from_bytes(h[:8], "big"))

    def days(self):
        for i in range(DAYS):
            d = (START_LOCAL + timedelta(days=i)).date()
            yield d

    def at(self, d, h, m=0, s=0.0):
        """local date + local hour -> UTC datetime"""
        base = datetime(d.year, d.month, d.day, tzinfo=TZ)
        naive = datetime(d.year, d.month, d.day) + timedelta(hours=h, minutes=m, seconds=s)
        return naive.replace(tzinfo=TZ).astimezone(UTC)

    # -------------------------------------------------------- regular accounts
    def day_factor(self, a: Account, d, r):
        if d == THANKSGIVING:
            f = a.holiday
        elif d.weekday() >= 5:
            f = a.weekend
        else:
            f = 1.0
        if a.role in ("web", "service") and d == BLACK_FRIDAY:
            f *= (
                2.6
                if a.name
                in (
                    "web_storefront",
                    "web_checkout",
                    "svc_orders",
                    "svc_payments",
                    "svc_inventory",
                    "svc_fraud",
                    "svc_notifications",
                    "svc_pricing",
                    "svc_promo_engine",
                )
                else 1.3
            )
        if a.role in ("web", "service") and d in (
            BLACK_FRIDAY - timedelta(days=1),
            BLACK_FRIDAY + timedelta(days=1),
        ):
            f *= 1.3
        if (
            a.role in ("analyst", "support", "dev", "dba", "finance")
            and d.weekday() < 5
            and d != THANKSGIVING
        ):
            if r.random() > a.attend:
                return 0.0
        elif a.role in ("analyst", "support", "dev", "dba", "finance"):
            if r.random() > f * 3:
                return 0.0
            f = max(f, 0.3)
        return f * math.exp(r.gauss(0, a.day_sigma) - a.day_sigma**2 / 2)

    def gen_regular(self, a: Account):
        for d in self.days():
            r = self.arng(a.name, d.isoformat())
            day_start = self.at(d, 0)
            day_end = self.at(d + timedelta(days=1), 0)
            if a.active_from and day_end <= a.active_from.astimezone(UTC):
                continue
            f = self.day_factor(a, d, r)
            if f <= 0:
                continue
            n = int(a.per_day * f)
            if n <= 0:
                continue
            curve = a.curve
            if a.role == "support" and d.weekday() >= 5:
                curve = a.curve
            weights = curve
            tot = sum(weights)
            times = []
            for _ in range(n):
                h = r.choices(range(24), weights=weights)[0]
                t = self.at(d, h, 0, r.uniform(0, 3600))
                if a.active_from and t < a.active_from.astimezone(UTC):
                    continue
                times.append(t)
            times.sort()
            if a.pool:
                self.pooled(a, d, times, r)
            else:
                self.human_sessions(a, d, times, r)

    def make_stmt(self, a, t, r, tabspec=None):
        tl = a.tables if tabspec is None else tabspec
        if a.writes and r.random() < a.writes and tabspec is None:
            w, tabs, mu, sg = r.choices(tl, weights=[x[0] for x in tl])[0]
            tb = tabs[0]
            if tb.startswith("pg_catalog"):
                tb = "ops.job_runs"
            return write(t, tb, r.choice([1, 1, 1, 2, 5]), r.choice(["INSERT", "UPDATE"]))
        w, tabs, mu, sg = r.choices(tl, weights=[x[0] for x in tl])[0]
        if tabs[0].startswith("pg_catalog"):
            return Stmt(
                t,
                "catalog",
                tabs,
                lognorm(r, mu, sg, 5000),
                f"SELECT * FROM {tabs[0]} ORDER BY 1",
                "SELECT",
            )
        rows = lognorm(r, mu, sg, TABLES[tabs[0]])
        if r.random() < 0.02:
            rows = 0
        if a.role in ("analyst", "bi", "finance"):
            text = self.analyst_text(tabs, r)
            slow = 500 + rows / 200 if rows > 20000 else 0
            return sel(t, tabs, rows, text, slow)
        return sel(t, tabs, rows)

    def analyst_text(self, tabs, r):
        a = tabs[0]
        k = r.randrange(5)
        if k == 0:
            return (
                f"SELECT * FROM {a} WHERE created_at >= now() - interval '{r.randint(1, 90)} days'"
            )
        if k == 1:
            return (
                f"SELECT date_trunc('day', created_at) AS d, count(*), sum(amount)\nFROM {a}\n"
                f"WHERE created_at > '2026-{r.randint(1, 10):02d}-01'\nGROUP BY 1\nORDER BY 1"
            )
        if k == 2 and len(tabs) > 1:
            return f"SELECT x.*, y.name\n  FROM {tabs[0]} x\n  JOIN {tabs[1]} y ON y.id = x.product_id\n WHERE x.status = 'shipped'"
        if k == 3:
            return f'-- ad hoc, "quarterly" check\nSELECT status, count(*) FROM {a} GROUP BY status'
        return f"select * from {a} limit {r.choice([100, 1000, 5000, 50000])}"

    def pooled(self, a, d, times, r):
        # pool of long-lived sessions, recycled every ~3-6 h (max lifetime)
        if not times:
            return
        day_start = self.at(d, 0)
        sess_by_slot = {}
        seg = timedelta(hours=r.choice([3, 4, 6]))
        for t in times:
            k = r.randrange(a.pool)
            segi = int((t - day_start) / seg)
            key = (k, segi)
            s = sess_by_slot.get(key)
            if s is None:
                st = day_start + seg * segi + timedelta(seconds=r.uniform(0, 60) + k)
                st = min(st, t - timedelta(seconds=1))
                s = Session(
                    a.name, st, day_start + seg * (segi + 1), r.choice(a.ips), a.apps[0], ssl=a.ssl
                )
                sess_by_slot[key] = s
                self.sessions.append(s)
            st = self.make_stmt(a, t, r)
            if r.random() < 0.0015:
                st.fail = r.choice(
                    [
                        'duplicate key value violates unique constraint "orders_pkey"',
                        "canceling statement due to statement timeout",
                        "could not serialize access due to concurrent update",
                    ]
                )
            s.stmts.append(st)
        for s in sess_by_slot.values():
            s.end = max(s.end, s.stmts[-1].t + timedelta(seconds=1))

    def human_sessions(self, a, d, times, r):
        # group statement times into sessions (gap > 25 min => new session)
        cur = None
        for t in times:
            if cur is None or (t - cur.stmts[-1].t) > timedelta(minutes=25):
                ip = a.ips[0] if r.random() < 0.8 else a.ips[-1]
                app = a.apps[0] if r.random() < 0.75 else a.apps[-1]
                if r.random() < 0.03:  # typo'd password first
                    self.sessions.append(
                        Session(
                            a.name,
                            t - timedelta(seconds=20),
                            t - timedelta(seconds=20),
                            ip,
                            app,
                            failed_login=True,
                        )
                    )
                cur = Session(a.name, t - timedelta(seconds=r.uniform(1, 30)), t, ip, app)
                self.sessions.append(cur)
                if a.role in ("analyst", "dev", "dba") and app != "psql":
                    # GUI clients introspect the catalog on connect (log_catalog = on)
                    for j, ct in enumerate(CATALOG[:3]):
                        cur.stmts.append(
                            Stmt(
                                cur.start + timedelta(milliseconds=200 + 30 * j),
                                "catalog",
                                [ct],
                                r.randint(10, 400),
                                f"SELECT oid, * FROM {ct}",
                                "SELECT",
                            )
                        )
            st = self.make_stmt(a, t, r)
            if r.random() < 0.01:
                st.fail = r.choice(
                    [
                        'column "amount" does not exist',
                        'syntax error at or near "FORM"',
                        "canceling statement due to statement timeout",
                    ]
                )
            cur.stmts.append(st)
            cur.end = t + timedelta(seconds=r.uniform(5, 300))

    # -------------------------------------------------------- batch jobs
    def session(self, account, start, ip, app, ssl=False):
        s = Session(account, start, start, ip, app, ssl=ssl)
        self.sessions.append(s)
        return s

    def close(self, s, extra=5):
        s.end = (s.stmts[-1].t if s.stmts else s.start) + timedelta(seconds=extra)

    def pg_dump(self, account, start, ip, tables, r, app="pg_dump"):
        s = self.session(account, start, ip, app)
        t = start + timedelta(seconds=0.2)
        s.stmts.append(
            Stmt(t, "select", [], 1, "SELECT pg_catalog.set_config('search_path', '', false);")
        )
        for j, ct in enumerate(CATALOG[:5]):
            t += timedelta(milliseconds=40)
            s.stmts.append(
                Stmt(
                    t,
                    "catalog",
                    [ct],
                    r.randint(50, 3000),
                    f"SELECT c.tableoid, c.oid, c.relname, c.relacl FROM {ct} c WHERE c.relkind = 'r'",
                    "SELECT",
                )
            )
        for tb in tables:
            t += timedelta(seconds=max(0.05, TABLES[tb] / 400000 * r.uniform(0.7, 1.3)))
            s.stmts.append(
                Stmt(
                    t,
                    "copy_to",
                    [tb],
                    0,
                    f"COPY {tb} ({COLS[tb]}) TO stdout;",
                    "COPY",
                    slow_ms=TABLES[tb] / 300,
                )
            )
        self.close(s)
        return s

    def gen_batch(self):
        for d in self.days():
            r = self.arng("batch", d.isoformat())
            # nightly backup: full pg_dump 01:00 local
            self.pg_dump(
                "backup_svc", self.at(d, 1, 0, r.uniform(0, 30)), "10.20.9.5", list(TABLES), r
            )
            # nightly DWH extract: incremental COPY (SELECT ...) TO STDOUT of the day's changes, 02:15
            s = self.session(
                "etl_dwh_nightly",
                self.at(d, 2, 15, r.uniform(0, 60)),
                "10.40.1.20",
                "airbyte-postgres",
            )
            t = s.start
            for tb in [
                "shop.orders",
                "shop.order_items",
                "shop.payments",
                "shop.shipments",
                "shop.customers",
                "billing.invoices",
                "billing.refunds",
                "shop.returns",
                "loyalty.ledger",
                "support.tickets",
            ]:
                t += timedelta(seconds=r.uniform(5, 40))
                n = int(
                    TABLES[tb]
                    * r.uniform(0.004, 0.008)
                    * (2.5 if d == BLACK_FRIDAY + timedelta(days=1) else 1)
                )
                s.stmts.append(
                    Stmt(
                        t,
                        "copy_query",
                        [tb],
                        n,
                        f"COPY (SELECT * FROM {tb} WHERE updated_at >= '{d - timedelta(days=1)}') TO STDOUT WITH (FORMAT binary)",
                        "COPY",
                        slow_ms=n / 50,
                    )
                )
            self.close(s)
            # airflow: hourly small syncs
            for h in range(24):
                s = self.session(
                    "etl_airflow", self.at(d, h, 5, r.uniform(0, 60)), "10.40.1.21", "airflow"
                )
                t = s.start
                for tb in ["ops.job_runs", "marketing.campaigns", "analytics.kpi_snapshots"]:
                    t += timedelta(seconds=r.uniform(0.5, 3))
                    s.stmts.append(
                        sel(t, [tb], r.randint(5, 300), f"SELECT * FROM {tb} WHERE updated_at > $1")
                    )
                t += timedelta(seconds=1)
                s.stmts.append(write(t, "analytics.kpi_snapshots", r.randint(1, 20)))
                self.close(s)
            # daily sales report 06:30 local, every day
            s = self.session(
                "rpt_daily_sales", self.at(d, 6, 30, r.uniform(0, 60)), "10.40.1.22", "cron-reports"
            )
            t = s.start
            for tb, n in [
                ("shop.orders", 25000),
                ("shop.order_items", 60000),
                ("billing.refunds", 800),
            ]:
                t += timedelta(seconds=r.uniform(2, 20))
                mult = 3.0 if d == BLACK_FRIDAY + timedelta(days=1) else 1.0
                s.stmts.append(
                    sel(
                        t,
                        [tb],
                        int(n * r.uniform(0.8, 1.2) * mult),
                        f"SELECT * FROM {tb} WHERE created_at >= current_date - 1 AND created_at < current_date",
                        slow=2000,
                    )
                )
            self.close(s)
            # weekly finance Monday 07:00
            if d.weekday() == 0:
                s = self.session(
                    "rpt_weekly_finance",
                    self.at(d, 7, 0, r.uniform(0, 60)),
                    "10.40.1.22",
                    "cron-reports",
                )
                t = s.start
                for tb, n in [
                    ("billing.invoices", 35000),
                    ("billing.refunds", 7000),
                    ("billing.payouts", 700),
                    ("shop.payments", 180000),
                ]:
                    t += timedelta(seconds=r.uniform(5, 30))
                    s.stmts.append(
                        sel(
                            t,
                            [tb],
                            int(n * r.uniform(0.85, 1.15)),
                            f"SELECT * FROM {tb} WHERE created_at >= current_date - 7",
                            slow=4000,
                        )
                    )
                self.close(s)
            # monthly reconciliation: first business day (Mon 2 Nov), big
            if d == datetime(2026, 11, 2).date():
                s = self.session(
                    "rpt_monthly_recon", self.at(d, 5, 0, 12), "10.40.1.22", "cron-reports"
                )
                t = s.start
                for tb, n in [
                    ("shop.payments", 1_450_000),
                    ("billing.invoices", 150_000),
                    ("billing.refunds", 30_000),
                    ("billing.payouts", 3_000),
                    ("shop.orders", 1_500_000),
                ]:
                    for part in range(10):
                        t += timedelta(seconds=r.uniform(20, 60))
                        s.stmts.append(
                            sel(
                                t,
                                [tb],
                                n // 10,
                                f"SELECT * FROM {tb} WHERE created_at >= date_trunc('month', now() - interval '1 month') AND id % 10 = {part}",
                                slow=9000,
                            )
                        )
                self.close(s)
                self.unusual.append(
                    ("rpt_monthly_recon", s.start, s.end, "monthly reconciliation (training)")
                )
            # marketing segment builder: Tue/Thu 04:00 reads email_events + segment_members in pages (legit paging)
            if d.weekday() in (1, 3):
                s = self.session(
                    "mkt_segment_builder",
                    self.at(d, 4, 0, r.uniform(0, 60)),
                    "10.40.1.23",
                    "segment-builder",
                )
                t = s.start
                for p in range(r.randint(80, 120)):
                    t += timedelta(seconds=r.uniform(3, 8))
                    s.stmts.append(
                        sel(
                            t,
                            ["marketing.email_events"],
                            5000,
                            f"SELECT customer_id, event, ts FROM marketing.email_events WHERE id > $1 ORDER BY id LIMIT 5000",
                        )
                    )
                for p in range(20):
                    t += timedelta(seconds=r.uniform(1, 3))
                    s.stmts.append(write(t, "marketing.segment_members", 2000, "INSERT"))
                self.close(s)
            # replication health check every 10 minutes, catalog only
            for h in range(24):
                s = self.session(
                    "replicator_check",
                    self.at(d, h, 1, r.uniform(0, 30)),
                    "10.20.9.6",
                    "pg_monitor",
                )
                for m in range(6):
                    s.stmts.append(
                        Stmt(
                            s.start + timedelta(minutes=10 * m, seconds=0.1),
                            "catalog",
                            ["pg_catalog.pg_stat_activity"],
                            r.randint(30, 200),
                            "SELECT * FROM pg_catalog.pg_stat_activity",
                            "SELECT",
                        )
                    )
                self.close(s)
        # Black Friday+2: svc_inventory full reconcile, legit (unlabelled): 160k rows x 2 at 05:00 local
        d = BLACK_FRIDAY
        r = self.arng("bf-inventory")
        s = self.session("svc_inventory", self.at(d, 5, 0, 5), "10.20.4.44", "inventory-svc")
        t = s.start
        for p in range(32):
            t += timedelta(seconds=r.uniform(5, 12))
            s.stmts.append(
                sel(
                    t,
                    ["shop.inventory", "shop.product_variants"],
                    10000,
                    "SELECT i.*, v.sku FROM shop.inventory i JOIN shop.product_variants v ON v.id = i.variant_id WHERE i.id > $1 ORDER BY i.id LIMIT 10000",
                )
            )
        self.close(s)
        self.unusual.append(
            ("svc_inventory", s.start, s.end, "Black Friday full inventory reconcile (legit)")
        )

    # -------------------------------------------------------- planned changes
    def changes(self):
        # team change in training: an analyst moves to finance analytics on Mon 16 Nov
        an = [a for a in self.accounts if a.role == "analyst"]
        mover = an[3]
        self.mover_training = mover.name
        # rewrite: generate their sessions as before until the 16th, then finance tables
        mover.active_to = datetime(2026, 11, 16, tzinfo=TZ)
        fin = Account(
            mover.name,
            "analyst",
            mover.ips,
            mover.apps,
            OFFICE,
            mover.per_day,
            [
                (3, ["billing.invoices"], 4.0, 1.2),
                (2, ["billing.refunds"], 3.0, 1.0),
                (1, ["billing.payouts"], 2.0, 1.0),
                (1, ["analytics.daily_sales"], 3, 1),
            ],
            weekend=0.05,
            holiday=0.03,
            attend=0.85,
            day_sigma=0.8,
            active_from=datetime(2026, 11, 16, tzinfo=TZ),
        )
        self.extra_accounts = [fin]
        # team change in the scored week: a support agent becomes a fraud analyst on Mon 23 Nov
        sup = [a for a in self.accounts if a.role == "support"][5]
        self.mover_scored = sup.name
        sup.active_to = datetime(2026, 11, 23, tzinfo=TZ)
        fr = Account(
            sup.name,
            "support",
            sup.ips + [f"10.8.2.{77}"],
            ["retool", "DBeaver 23.2.0 - SQLEditor <Script-1>"],
            OFFICE,
            150,
            [
                (3, ["fraud.signals"], 2.5, 1.0),
                (2, ["shop.payments"], 1.5, 0.8),
                (2, ["shop.customers"], 0.5, 0.5),
                (1, ["fraud.rules"], 4, 0.3),
            ],
            weekend=0.1,
            holiday=0.1,
            attend=0.9,
            day_sigma=0.4,
            active_from=datetime(2026, 11, 23, tzinfo=TZ),
        )
        self.extra_accounts.append(fr)
        self.unusual.append(
            (
                mover.name,
                datetime(2026, 11, 16, tzinfo=TZ),
                None,
                "team change marketing->finance analytics (training)",
            )
        )
        self.unusual.append(
            (
                sup.name,
                datetime(2026, 11, 23, tzinfo=TZ),
                None,
                "team change support->fraud analyst (scored week)",
            )
        )
        # deploy in the scored week: svc_catalog v2 on Tue 24 Nov 10:00 batches reads (fewer, bigger) and joins inventory
        cat = self.acct["svc_catalog"]
        cat.active_to = datetime(2026, 11, 24, 10, tzinfo=TZ)
        c2 = Account(
            "svc_catalog",
            "service",
            cat.ips,
            cat.apps,
            CONSUMER,
            600,
            [
                (4, ["shop.products", "shop.product_variants"], 4.5, 0.8),
                (2, ["shop.inventory"], 3.5, 0.8),
                (1, ["shop.reviews"], 3.0, 0.6),
            ],
            weekend=1.05,
            holiday=1.1,
            writes=0.05,
            pool=4,
            day_sigma=0.15,
            active_from=datetime(2026, 11, 24, 10, tzinfo=TZ),
        )
        self.extra_accounts.append(c2)
        self.unusual.append(
            (
                "svc_catalog",
                c2.active_from,
                None,
                "deploy v2: batched reads, joins inventory+reviews (scored week)",
            )
        )
        self.unusual.append(
            (
                "web_*/svc_*",
                datetime(2026, 11, 27, tzinfo=TZ),
                datetime(2026, 11, 28, tzinfo=TZ),
                "Black Friday traffic x2.6",
            )
        )
        self.unusual.append(
            (
                "*",
                datetime(2026, 11, 26, tzinfo=TZ),
                datetime(2026, 11, 27, tzinfo=TZ),
                "Thanksgiving holiday",
            )
        )
        self.unusual.append(
            (
                "etl_dwh_nightly",
                datetime(2026, 11, 28, 2, tzinfo=TZ),
                datetime(2026, 11, 28, 3, tzinfo=TZ),
                "post-Black-Friday incremental extract x2.5 (legit)",
            )
        )
        self.unusual.append(
            (
                "rpt_daily_sales",
                datetime(2026, 11, 28, 6, tzinfo=TZ),
                datetime(2026, 11, 28, 7, tzinfo=TZ),
                "post-Black-Friday daily sales report x3 (legit)",
            )
        )
        self.unusual.append(
            (
                "svc_inventory",
                datetime(2026, 11, 27, 5, tzinfo=TZ),
                datetime(2026, 11, 27, 5, 5, tzinfo=TZ),
                "BF reconcile runs from pod IP 10.20.4.44, an address svc_inventory never used (k8s pod IP reuse)",
            )
        )

    def gen_all_regular(self):
        for a in self.accounts + self.extra_accounts:
            before = len(self.sessions)
            self.gen_regular(a)
            # cut to [active_from, active_to)
            if a.active_to or a.active_from:
                lo = (
                    a.active_from.astimezone(UTC)
                    if a.active_from
                    else datetime.min.replace(tzinfo=UTC)
                )
                hi = (
                    a.active_to.astimezone(UTC) if a.active_to else datetime.max.replace(tzinfo=UTC)
                )
                new = self.sessions[before:]
                del self.sessions[before:]
                for s in new:
                    s.stmts = [x for x in s.stmts if lo <= x.t < hi]
                    if s.stmts or (s.failed_login and lo <= s.start < hi):
                        if s.stmts:
                            s.start = max(s.start, lo)
                            if s.start > s.stmts[0].t:
                                s.start = s.stmts[0].t - timedelta(seconds=0.5)
                        self.sessions.append(s)

    # -------------------------------------------------------- incidents
    def label(self, iid, account, start, end, kind, desc):
        self.labels.append((iid, account, start.astimezone(UTC), end.astimezone(UTC), kind, desc))

    def incidents(self):
        r = self.arng("incidents")
        A = self.acct
        an = [
            a.name
            for a in self.accounts
            if a.role == "analyst" and a.name not in (self.mover_training,)
        ]
        sups = [
            a.name for a in self.accounts if a.role == "support" and a.name != self.mover_scored
        ]
        devs = [a.name for a in self.accounts if a.role == "dev"]
        D = lambda day: datetime(2026, 11, day).date()
        ctr = [0]

        def nid():
            ctr[0] += 1
            return f"H{ctr[0]:02d}"

        # 1 burst: analyst SELECT * FROM shop.customers (never reads it), Tue 14:10
        acc = next(x for x in an if all("shop.customers" not in t[1] for t in A[x].tables))
        s = self.session(acc, self.at(D(24), 14, 10, 3), A[acc].ips[0], A[acc].apps[0])
        s.stmts.append(
            sel(
                s.start + timedelta(seconds=4),
                ["shop.customers"],
                1_900_000,
                "SELECT * FROM shop.customers",
                slow=48000,
            )
        )
        self.close(s, 60)
        self.label(
            nid(),
            acc,
            s.start,
            s.end,
            "burst_pull",
            "analyst SELECT * FROM shop.customers, 1.9M rows",
        )
        # 2 burst: svc_reviews creds pull customer emails 250k at 03:12 Wed from its own pod ip
        s = self.session(
            "svc_reviews",
            self.at(D(25), 3, 12, 10),
            A["svc_reviews"].ips[1],
            A["svc_reviews"].apps[0],
        )
        for k in range(3):
            s.stmts.append(
                sel(
                    s.start + timedelta(seconds=20 + 40 * k),
                    ["shop.customers"],
                    83_000,
                    f"SELECT id, email, phone FROM shop.customers WHERE id % 3 = {k}",
                    slow=3000,
                )
            )
        self.close(s)
        self.label(
            nid(),
            "svc_reviews",
            s.start,
            s.end,
            "burst_pull",
            "svc_reviews creds: 249k customer emails in 2 min",
        )
        # 3 burst: web_admin via admin panel SQLi: auth.users 900k at 22:40 Mon (reads auth.users normally, 1 row)
        s = self.session(
            "web_admin", self.at(D(23), 22, 40, 1), A["web_admin"].ips[0], "parcelly-admin"
        )
        s.stmts.append(
            sel(
                s.start + timedelta(seconds=2),
                ["auth.users"],
                950_000,
                "SELECT id, email, password_hash FROM auth.users WHERE id = 1 OR 1=1",
                slow=22000,
            )
        )
        self.close(s)
        self.label(
            nid(),
            "web_admin",
            s.start,
            s.end,
            "burst_pull",
            "SQL injection through admin panel: auth.users 950k",
        )
        # 4 dump: pg_dump with svc_inventory creds from a new address, Sun 01:30
        s = self.pg_dump("svc_inventory", self.at(D(22), 1, 30, 7), "10.20.5.77", list(TABLES), r)
        self.label(
            nid(),
            "svc_inventory",
            s.start,
            s.end,
            "dump_wrong_account",
            "pg_dump of whole db with svc_inventory creds",
        )
        # 5 dump: bi_metabase creds, pg_dump of billing + customers from the metabase host, Wed 12:20
        s = self.pg_dump(
            "bi_metabase",
            self.at(D(25), 12, 20, 7),
            "10.40.0.10",
            [
                "billing.invoices",
                "billing.payouts",
                "billing.subscriptions",
                "shop.customers",
                "shop.addresses",
            ],
            r,
        )
        self.label(
            nid(),
            "bi_metabase",
            s.start,
            s.end,
            "dump_wrong_account",
            "pg_dump -n billing -t customers with metabase creds",
        )
        # 6 copy: support agent COPY shop.customers TO STDOUT via psql (new app) at 16:00 Tue
        acc = sups[2]
        s = self.session(acc, self.at(D(24), 16, 0, 9), A[acc].ips[0], "psql")
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=5),
                "copy_to",
                ["shop.customers"],
                0,
                "COPY shop.customers TO STDOUT WITH CSV HEADER",
                "COPY",
                slow_ms=30000,
            )
        )
        self.close(s, 40)
        self.label(
            nid(),
            acc,
            s.start,
            s.end,
            "copy_to_export",
            "support agent copies customers table via psql",
        )
        # 7 copy: etl_dwh_nightly (exports every night) copies auth.users + billing.payouts whole at its usual time
        s = self.session(
            "etl_dwh_nightly", self.at(D(26), 2, 40, 2), "10.40.1.20", "airbyte-postgres"
        )
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=3),
                "copy_to",
                ["auth.users"],
                0,
                "COPY auth.users TO STDOUT WITH (FORMAT binary)",
                "COPY",
                9000,
            )
        )
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=15),
                "copy_to",
                ["auth.api_keys"],
                0,
                "COPY auth.api_keys TO STDOUT WITH (FORMAT binary)",
                "COPY",
                100,
            )
        )
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=20),
                "copy_to",
                ["billing.payouts"],
                0,
                "COPY billing.payouts TO STDOUT WITH (FORMAT binary)",
                "COPY",
                300,
            )
        )
        self.close(s)
        self.label(
            nid(),
            "etl_dwh_nightly",
            s.start,
            s.end,
            "copy_to_export",
            "ETL creds copy auth.users, api_keys, payouts whole",
        )
        # 8 copy: dev COPY (SELECT payments join customers) TO STDOUT 400k at 11:00 Fri? -> Mon 23 11:00
        acc = devs[0]
        s = self.session(acc, self.at(D(23), 11, 0, 30), A[acc].ips[0], "psql")
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=6),
                "copy_query",
                ["shop.payments", "shop.customers"],
                400_000,
                "COPY (SELECT p.*, c.email FROM shop.payments p JOIN shop.customers c ON c.id = p.customer_id WHERE p.created_at > '2026-06-01') TO STDOUT WITH CSV",
                "COPY",
                12000,
            )
        )
        self.close(s, 30)
        self.label(
            nid(),
            acc,
            s.start,
            s.end,
            "copy_to_export",
            "dev COPY (SELECT payments+customers) TO STDOUT 400k",
        )
        # 9 slow drip: analyst reads ~3x normal daily volume of her usual tables, Mon-Fri office hours
        acc = an[7]
        self.drip(nid(), acc, D(23), 5, 3.0, r, human=True)
        # 10 slow drip: svc_notifications extra customer email reads 24/7 from Mon 10:00, 4 days, 4x
        self.drip(
            nid(),
            "svc_notifications",
            D(23),
            4,
            4.0,
            r,
            human=False,
            table="shop.customers",
            hour0=10,
        )
        # 11 slow drip: support agent: 5x normal lookups of customers+addresses (small each), 4 shift days
        acc = sups[9]
        self.drip(nid(), acc, D(23), 4, 5.0, r, human=True, table="shop.customers")
        # 12 enumeration: dev reads LIMIT 5 from 35 tables in 20 min, 15:00 Tue
        acc = devs[3]
        s = self.session(acc, self.at(D(24), 15, 0, 2), A[acc].ips[0], A[acc].apps[0])
        t = s.start
        for tb in r.sample(sorted(TABLES), 35):
            t += timedelta(seconds=r.uniform(10, 50))
            s.stmts.append(sel(t, [tb], 5, f"SELECT * FROM {tb} LIMIT 5"))
        self.close(s)
        self.label(nid(), acc, s.start, s.end, "enumeration", "dev samples 35 tables LIMIT 5")
        # 13 enumeration: svc_search_indexer creds, information_schema + LIMIT 1 from 40 tables at 04:00 Fri
        s = self.session(
            "svc_search_indexer",
            self.at(D(27), 4, 0, 40),
            A["svc_search_indexer"].ips[0],
            A["svc_search_indexer"].apps[0],
        )
        t = s.start
        s.stmts.append(
            Stmt(
                t + timedelta(seconds=1),
                "catalog",
                ["information_schema.tables"],
                46,
                "SELECT table_schema, table_name FROM information_schema.tables",
                "SELECT",
            )
        )
        t += timedelta(seconds=2)
        for tb in sorted(TABLES)[:40]:
            t += timedelta(seconds=r.uniform(2, 6))
            s.stmts.append(sel(t, [tb], 1, f"SELECT * FROM {tb} LIMIT 1"))
        self.close(s)
        self.label(
            nid(),
            "svc_search_indexer",
            s.start,
            s.end,
            "enumeration",
            "indexer creds enumerate 40 tables",
        )
        # 14 off-hours new client: analyst account at 03:20 Sat from new VPN address with new app, usual tables, moderate
        acc = an[11]
        s = self.session(acc, self.at(D(28), 3, 20, 5), "10.8.7.201", "DataGrip 2024.1")
        t = s.start
        for k in range(12):
            t += timedelta(seconds=r.uniform(20, 90))
            w, tabs, mu, sg = r.choice(A[acc].tables)
            s.stmts.append(
                sel(t, tabs, lognorm(r, mu, 0.3, 20000), f"SELECT * FROM {tabs[0]} LIMIT 2000")
            )
        self.close(s)
        self.label(
            nid(),
            acc,
            s.start,
            s.end,
            "offhours_new_client",
            "analyst creds at 03:20 from new address + DataGrip",
        )
        # 15 off-hours new client: svc_payments creds from unknown host with psql at 02:05 Sun, reads payouts
        s = self.session("svc_payments", self.at(D(22), 2, 5, 0), "10.99.3.14", "psql")
        t = s.start
        for tb, n in [("shop.payments", 200), ("billing.invoices", 150), ("billing.payouts", 300)]:
            t += timedelta(seconds=r.uniform(30, 120))
            s.stmts.append(
                sel(t, [tb], n, f"SELECT * FROM {tb} ORDER BY created_at DESC LIMIT {n}")
            )
        self.close(s)
        self.label(
            nid(),
            "svc_payments",
            s.start,
            s.end,
            "offhours_new_client",
            "svc_payments creds from unknown host via psql",
        )
        # 16 off-hours new client: US support agent at 23:30 Wed from a new address with python, customers lookups
        acc = sups[14]
        s = self.session(acc, self.at(D(25), 23, 30, 0), "10.8.9.14", "python-psycopg 3.1")
        t = s.start
        for k in range(40):
            t += timedelta(seconds=r.uniform(5, 20))
            s.stmts.append(sel(t, ["shop.customers"], r.randint(1, 3)))
        self.close(s)
        self.label(
            nid(),
            acc,
            s.start,
            s.end,
            "offhours_new_client",
            "support creds at 23:30 from new address via python",
        )
        # 17 privileged misuse: DBA reads payouts + api_keys at 10:30 Tue
        s = self.session("dba_oleary", self.at(D(24), 10, 30, 0), A["dba_oleary"].ips[0], "psql")
        t = s.start
        for tb, n in [("billing.payouts", 5200), ("auth.api_keys", 4000), ("billing.payouts", 900)]:
            t += timedelta(seconds=r.uniform(30, 90))
            s.stmts.append(sel(t, [tb], n, f"SELECT * FROM {tb}"))
        self.close(s)
        self.label(
            nid(),
            "dba_oleary",
            s.start,
            s.end,
            "privileged_misuse",
            "DBA reads payouts and api_keys",
        )
        # 18 privileged misuse: DBA reads ticket messages + password resets 20k at 15:10 Wed
        s = self.session(
            "dba_fernandes", self.at(D(25), 15, 10, 0), A["dba_fernandes"].ips[0], "psql"
        )
        t = s.start
        for tb, n in [("support.ticket_messages", 12000), ("auth.password_resets", 8000)]:
            t += timedelta(seconds=r.uniform(30, 90))
            s.stmts.append(
                sel(t, [tb], n, f"SELECT * FROM {tb} WHERE created_at > now() - interval '30 days'")
            )
        self.close(s)
        self.label(
            nid(),
            "dba_fernandes",
            s.start,
            s.end,
            "privileged_misuse",
            "DBA reads support messages and password resets",
        )
        # 19 paged pull: svc_shipping creds keyset-page shop.customers 500/query, 600 queries 01:00-03:00 Thu
        s = self.session(
            "svc_shipping",
            self.at(D(26), 1, 0, 0),
            A["svc_shipping"].ips[0],
            A["svc_shipping"].apps[0],
        )
        t = s.start
        for k in range(600):
            t += timedelta(seconds=r.uniform(8, 16))
            s.stmts.append(
                sel(
                    t,
                    ["shop.customers"],
                    500,
                    "SELECT id, email, name, phone FROM shop.customers WHERE id > $1 ORDER BY id LIMIT 500",
                )
            )
        self.close(s)
        self.label(
            nid(),
            "svc_shipping",
            s.start,
            s.end,
            "paged_pull",
            "svc_shipping creds page 300k customers 500 at a time",
        )
        # 20 paged pull: analyst via Jupyter, orders+customers 1000 x 300 over an afternoon Fri (BF)
        acc = an[15]
        s = self.session(acc, self.at(D(27), 13, 0, 0), A[acc].ips[0], A[acc].apps[0])
        t = s.start
        for k in range(300):
            t += timedelta(seconds=r.uniform(20, 50))
            s.stmts.append(
                sel(
                    t,
                    ["shop.orders", "shop.customers"],
                    1000,
                    f"SELECT o.*, c.email FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id ORDER BY o.id OFFSET {k * 1000} LIMIT 1000",
                )
            )
        self.close(s)
        self.label(nid(), acc, s.start, s.end, "paged_pull", "analyst pages 300k orders+customers")
        # 21 paged pull via cursor: svc_recommend DECLARE CURSOR on customers (FETCH not audited) 03:00 Sat
        s = self.session(
            "svc_recommend",
            self.at(D(28), 3, 0, 0),
            A["svc_recommend"].ips[0],
            A["svc_recommend"].apps[0],
        )
        s.stmts.append(
            Stmt(
                s.start + timedelta(seconds=1),
                "declare",
                ["shop.customers"],
                0,
                "DECLARE c1 NO SCROLL CURSOR WITH HOLD FOR SELECT id, email, phone FROM shop.customers",
                "DECLARE CURSOR",
            )
        )
        self.close(s, 1800)
        self.label(
            nid(),
            "svc_recommend",
            s.start,
            s.end,
            "paged_pull",
            "svc_recommend creds cursor over customers (FETCH unaudited)",
        )

    def drip(self, iid, acc, day0, ndays, factor, r, human, table=None, hour0=None):
        a = self.acct[acc]
        start = end = None
        for i in range(ndays):
            d = day0 + timedelta(days=i)
            if human and not is_workday(d):
                continue
            # baseline daily rows of this account (median day): approximate by per_day * E[rows]
            for k in range(int(a.per_day * (factor - 1) * (0.5 if table else 1.0))):
                h = r.choices(range(24), weights=a.curve)[0]
                if hour0 is not None and i == 0 and h < hour0:
                    h = r.randrange(hour0, 24)
                t = self.at(d, h, 0, r.uniform(0, 3600))
                if table:
                    spec = [(1, [table], 1.5 if human else 0.5, 0.5)]
                else:
                    spec = a.tables
                st = self.make_stmt(a, t, r, tabspec=spec)
                s = Session(
                    acc,
                    t - timedelta(seconds=2),
                    t + timedelta(seconds=3),
                    r.choice(a.ips),
                    a.apps[0],
                )
                s.stmts.append(st)
                self.sessions.append(s)
                start = t if start is None or t < start else start
                end = t if end is None or t > end else end
        self.label(
            iid,
            acc,
            start - timedelta(seconds=3),
            end + timedelta(seconds=3),
            "slow_drip",
            f"{acc} reads ~{factor}x its normal volume for {ndays} days",
        )

    # -------------------------------------------------------- output
    def run(self):
        self.changes()
        self.gen_all_regular()
        self.gen_batch()
        self.incidents()

    def assign_pids(self):
        self.sessions.sort(key=lambda s: (s.start, s.account))
        busy = {}
        nxt = 2000
        import heapq

        heap = []
        active = set()
        for s in self.sessions:
            while heap and heap[0][0] <= s.start:
                _, p = heapq.heappop(heap)
                active.discard(p)
            while True:
                nxt += self.rng.randint(1, 9)
                if nxt > 4194304 // 128:  # pid_max 32768
                    nxt = 300 + nxt % 1000
                if nxt not in active:
                    break
            s.pid = nxt
            active.add(nxt)
            heapq.heappush(heap, (s.end + timedelta(seconds=1), nxt))


def fmt_ts(t):
    l = t.astimezone(TZ)
    return f"{l:%Y-%m-%d %H:%M:%S}.{l.microsecond // 1000:03d} {l.tzname()}"


def csvq(s):
    if any(c in s for c in '",\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def tabs_ml(s):
    return s.replace("\n", "\n\t")


def write_logs(g: Gen, out):
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    g.assign_pids()
    lines = []  # (utc time, seq, text)
    seq = 0
    truth = defaultdict(
        lambda: [0, 0, 0, 0, 0]
    )  # (account, utc 5-min window) -> rows, read stmts, exports, audited stmts, failed
    rng = random.Random(g.seed * 31 + 5)

    def emit(t, text):
        nonlocal seq
        seq += 1
        lines.append((t, seq, text))

    for s in g.sessions:
        p = s.pid
        pre = lambda t: f"{fmt_ts(t)} [{p}] {s.account}@{s.db} "
        port = 30000 + (p * 7) % 30000
        emit(
            s.start,
            f"{fmt_ts(s.start)} [{p}] [unknown]@[unknown] LOG:  connection received: host={s.ip} port={port}",
        )
        t1 = s.start + timedelta(milliseconds=3)
        if s.failed_login:
            emit(t1, pre(t1) + f'FATAL:  password authentication failed for user "{s.account}"')
            emit(
                t1,
                pre(t1)
                + f'DETAIL:  Connection matched pg_hba.conf line 104: "host all all 10.0.0.0/8 scram-sha-256"',
            )
            continue
        ssl = (
            " SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
            if s.ssl
            else ""
        )
        emit(
            t1,
            pre(t1)
            + f"LOG:  connection authorized: user={s.account} database={s.db} application_name={s.app}{ssl}",
        )
        sid = 0
        for st in sorted(s.stmts, key=lambda x: x.t):
            t = st.t
            if st.fail:
                truth[
                    (
                        s.account,
                        t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                    )
                ][4] += 1
                emit(t, pre(t) + f"ERROR:  {st.fail}")
                emit(t, pre(t) + f"STATEMENT:  {tabs_ml(st.text)}")
                continue
            sid += 1
            q = tabs_ml(csvq(st.text))
            R = (lambda n: f",{n}") if g.rows_on else (lambda n: "")
            head = pre(t) + f"LOG:  AUDIT: SESSION,{sid},"
            day = t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            truth[(s.account, day)][3] += 1
            if st.kind in ("select", "catalog"):
                cls = "READ"
                objs = st.tables or [None]
                for ob in objs:
                    otype = (
                        (
                            "VIEW"
                            if ob
                            and (
                                "pg_stat" in ob
                                or ob.startswith("information_schema")
                                or ob == "pg_catalog.pg_settings"
                                or ob == "pg_catalog.pg_locks"
                            )
                            else "TABLE"
                        )
                        if ob
                        else ""
                    )
                    emit(
                        t, head + f"1,{cls},SELECT,{otype},{ob or ''},{q},<not logged>{R(st.rows)}"
                    )
                if st.kind == "select" and st.tables:
                    truth[(s.account, day)][0] += st.rows
                    truth[(s.account, day)][1] += 1
            elif st.kind == "write":
                emit(
                    t, head + f"1,WRITE,{st.cmd},TABLE,{st.tables[0]},{q},<not logged>{R(st.rows)}"
                )
            elif st.kind == "copy_to":
                if g.rows_on:
                    emit(t, head + f"1,READ,COPY,,,{q},<not logged>,0")
                else:
                    emit(t, head + f"1,READ,SELECT,TABLE,{st.tables[0]},{q},<not logged>")
                truth[(s.account, day)][2] += 1
            elif st.kind == "copy_query":
                for ob in st.tables:
                    emit(t, head + f"1,READ,SELECT,TABLE,{ob},{q},<not logged>{R(st.rows)}")
                emit(t, head + f"2,READ,COPY,,,{q},<not logged>{R(0)}")
                truth[(s.account, day)][0] += st.rows
                truth[(s.account, day)][1] += 1
                truth[(s.account, day)][2] += 1
            elif st.kind == "declare":
                if g.rows_on:
                    emit(t, head + f"1,READ,DECLARE CURSOR,,,{q},<not logged>,0")
                else:
                    emit(t, head + f"1,READ,SELECT,TABLE,{st.tables[0]},{q},<not logged>")
                    emit(t, head + f"2,READ,DECLARE CURSOR,,,{q},<not logged>")
                truth[(s.account, day)][2] += 1
            if st.slow_ms >= 500:
                te = t + timedelta(microseconds=300)
                emit(
                    te,
                    pre(te) + f"LOG:  duration: {st.slow_ms:.3f} ms  statement: {tabs_ml(st.text)}",
                )
        dur = s.end - s.start
        hh, rem = divmod(int(dur.total_seconds()), 3600)
        mm, ss = divmod(rem, 60)
        emit(
            s.end,
            pre(s.end)
            + f"LOG:  disconnection: session time: {hh}:{mm:02d}:{ss:02d}.{rng.randint(0, 999):03d} user={s.account} database={s.db} host={s.ip} port={port}",
        )
    # server background lines
    t = START_LOCAL.astimezone(UTC)
    endt = (START_LOCAL + timedelta(days=DAYS)).astimezone(UTC)
    while t < endt:
        emit(t, f"{fmt_ts(t)} [812] LOG:  checkpoint starting: time")
        t2 = t + timedelta(seconds=rng.uniform(20, 200))
        emit(
            t2,
            f"{fmt_ts(t2)} [812] LOG:  checkpoint complete: wrote {rng.randint(100, 9000)} buffers ({rng.uniform(0.1, 5):.1f}%); 0 WAL file(s) added, 0 removed, {rng.randint(0, 9)} recycled; write={rng.uniform(1, 200):.3f} s, sync=0.004 s, total={rng.uniform(1, 200):.3f} s; sync files=41, longest=0.002 s, average=0.001 s; distance=51234 kB, estimate=60213 kB",
        )
        if rng.random() < 0.3:
            tv = t + timedelta(seconds=rng.uniform(0, 290))
            tb = rng.choice(list(TABLES))
            emit(
                tv,
                f'{fmt_ts(tv)} [{rng.randint(20000, 30000)}] LOG:  automatic vacuum of table "{DB}.{tb}": index scans: 1\n\tpages: 0 removed, 4423 remain, 3 scanned (0.07% of total)\n\ttuples: 12 removed, 301211 remain, 0 are dead but not yet removable',
            )
        t += timedelta(minutes=5)
    lines.sort(key=lambda x: (x[0], x[1]))
    files = {}
    for t, _, text in lines:
        d = t.astimezone(TZ).date().isoformat()
        f = files.get(d)
        if f is None:
            f = files[d] = open(os.path.join(out, "logs", f"postgresql-{d}.log"), "w")
        f.write(text + "\n")
    for f in files.values():
        f.close()
    with open(os.path.join(out, "truth_rows.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "account",
                "window_start",
                "rows_read",
                "read_statements",
                "export_statements",
                "audited_statements",
                "failed_statements",
            ]
        )
        for (acc, day), v in sorted(truth.items()):
            w.writerow([acc, day, *v])
    return len(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-rows", action="store_true", help="pgaudit.log_rows = off")
    a = ap.parse_args()
    g = Gen(a.seed, rows_on=not a.no_rows)
    g.run()
    n = write_logs(g, a.out)
    with open(os.path.join(a.out, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "account", "start", "end", "kind", "description"])
        for iid, acc, s, e, k, desc in g.labels:
            w.writerow(
                [
                    iid,
                    acc,
                    s.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    e.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    k,
                    desc,
                ]
            )
    with open(os.path.join(a.out, "unusual.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "start", "end", "description"])
        for acc, s, e, desc in g.unusual:
            w.writerow(
                [
                    acc,
                    s.astimezone(UTC).isoformat(),
                    e.astimezone(UTC).isoformat() if e else "",
                    desc,
                ]
            )
    with open(os.path.join(a.out, "accounts.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "role"])
        seen = set()
        for x in [(y.name, y.role) for y in g.accounts] + BATCH_ACCTS:
            if x[0] not in seen:
                seen.add(x[0])
                w.writerow(x)
    print(
        f"{len(g.sessions)} sessions, {n} lines, {len(g.labels)} incidents, seed {a.seed}, rows {'on' if g.rows_on else 'off'}"
    )


BATCH_ACCTS = [(b, "batch") for b in BATCH]

if __name__ == "__main__":
    main()
