#!/usr/bin/env python3
"""Make realistic sample audit logs with a REAL PostgreSQL 15 + pgAudit server.

    uv run python scripts/make_sample_logs.py --out sample_logs --seed 7

The script starts a throw-away cluster (``scripts/pg_cluster.py``) under libfaketime,
loads a small organisation database ``corp`` and replays three weeks of its life,
2026-10-05 (Monday) 00:00 UTC to 2026-10-25 24:00 UTC, in a few minutes: the
server's clock is moved forward (``PgCluster.set_clock``) before each activity, so
every log line carries the simulated time.  All statements really run, through
psycopg 3 and the real ``psql`` and ``pg_dump`` binaries.

Output (in ``--out``):

* ``postgresql.log.gz``, ``postgresql.csv.gz``, ``postgresql.json.gz``: the stderr,
  csvlog and jsonlog outputs of the same run (prefix ``%m [%p] %q%u@%d %r %a``).
* ``labels.csv``: ``incident_id,account,start,end,kind,description`` (ISO-8601 UTC).

What is in the logs:

* The schema is loaded on Sunday 2026-10-04 20:00 by ``postgres`` (application
  ``schema-migrate``); that load (DDL, GRANTs and bulk INSERTs) is logged too.
* Days 1-14 (2026-10-05 .. 2026-10-18) are ordinary work only: the training period.
  Ordinary work includes a nightly ``pg_dump`` of the whole database by ``backup``
  at 02:30, and one legitimate bigger-than-usual job: ``analyst_anna``'s quarterly
  report on Tuesday 2026-10-13 around 10:30 (~20k rows from ``sales.orders``).
  ``dba_carl`` grants ``pg_read_all_data`` to ``hr_app`` on 2026-10-14 (a logged
  ROLE statement; the misconfiguration that the enumeration incident later uses).
* Days 15-21 (2026-10-19 .. 2026-10-25) are ordinary work plus the five labelled
  incidents (one per kind, each by an account that never does such a thing).

Timestamps are deterministic for a given seed up to the real run time of each
statement (milliseconds); PIDs and client ports are whatever the server gives.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
N_DAYS = 21
TRAIN_DAYS = 14
SETUP_AT = datetime(2026, 10, 4, 20, 0, tzinfo=UTC)
DB = "corp"
SIZE_LIMIT = 10 * 1024 * 1024

# ----------------------------------------------------------------------------- accounts
APP = {
    "web_shop": "shop-web",
    "web_admin": "shop-admin",
    "etl_nightly": "etl-nightly",
    "backup": "pg_dump",  # set by pg_dump itself
    "analyst_anna": "DBeaver 24.2.0 - SQLEditor <corp>",
    "analyst_ben": "DataGrip 2024.2.3",
    "reporting_svc": "reporting-svc",
    "dba_carl": "psql",  # the real psql
    "hr_app": "hr-portal",
    "case_officer_dina": "CaseTracker/3.1",
    "support_eve": "support-desk",
    "billing_job": "billing-runner",
}

CATEGORIES = [
    "books", "games", "garden", "kitchen", "toys", "audio", "phones",
    "laptops", "office", "sports", "beauty", "pet",
]  # fmt: skip
COUNTRIES = ["DE"] * 6 + ["FR"] * 3 + ["NL"] * 2 + ["AT"] * 2 + [
    "BE", "PL", "IT", "ES", "SE", "DK", "CH", "IE",
]  # fmt: skip
SMALL_COUNTRIES = ["NL", "AT", "BE", "PL", "IT", "ES", "SE", "DK", "CH", "IE"]
FIRST = [
    "Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas",
    "Karla", "Lukas", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara",
    "Uwe", "Vera", "Willem", "Xenia", "Yusuf", "Zoe", "Marta", "Piet", "Lena", "Omar",
]  # fmt: skip
LAST = [
    "Schmidt", "Muller", "Janssen", "Dubois", "Rossi", "Garcia", "Nowak", "Novak",
    "Berg", "Larsen", "Peeters", "Murphy", "Fischer", "Weber", "Martin", "Bernard",
    "Visser", "Bakker", "Romano", "Lopez", "Kowalski", "Lindqvist", "Hansen", "Keller",
]  # fmt: skip
CITIES = [
    "Berlin", "Hamburg", "Munich", "Cologne", "Paris", "Lyon", "Amsterdam", "Rotterdam",
    "Vienna", "Graz", "Brussels", "Ghent", "Warsaw", "Krakow", "Milan", "Rome", "Madrid",
    "Valencia", "Stockholm", "Copenhagen", "Zurich", "Dublin", "Leipzig", "Utrecht",
]  # fmt: skip

PRODUCT_ADJ = ["Classic", "Deluxe", "Smart", "Mini", "Pro", "Eco", "Travel", "Family"]
PRODUCT_NOUN = [
    "lamp",
    "kettle",
    "speaker",
    "novel",
    "puzzle",
    "racket",
    "case",
    "charger",
    "chair",
    "brush",
    "blender",
    "ball",
]
STREETS = [
    "Main St",
    "Station Rd",
    "Park Ave",
    "Mill Lane",
    "Church St",
    "Market Sq",
    "Lindenweg",
    "Rue Haute",
]
DEPARTMENTS = [
    "Sales",
    "Finance",
    "IT",
    "Logistics",
    "Support",
    "Legal",
    "Marketing",
    "Procurement",
    "Warehouse",
    "Engineering",
]
TITLES = ["Clerk", "Engineer", "Analyst", "Manager", "Specialist", "Driver", "Agent", "Lead"]
TICKET_SUBJECTS = [
    "Where is my order",
    "Refund request",
    "Wrong item delivered",
    "Cannot log in",
    "Change delivery address",
    "Invoice copy",
    "Damaged parcel",
    "Card declined",
]
CASE_SUMMARIES = [
    "chargeback pattern",
    "account takeover",
    "refund abuse",
    "reseller fraud",
    "identity mismatch",
    "insider complaint",
]
NOTE_TEXTS = [
    "called customer",
    "requested documents",
    "escalated to legal",
    "bank confirmed chargeback",
    "no further action",
    "linked to case",
]


def sql_array(values: Sequence[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def pick(values: Sequence[str]) -> str:
    """SQL expression choosing one of values at random (per row)."""
    return f"({sql_array(values)})[1 + floor(random() * {len(values)})::int]"


# ----------------------------------------------------------------------------- schema
def setup_statements(seed: int) -> tuple[list[str], list[str]]:
    """(statements run in db postgres, statements run in db corp)."""
    roles = [
        "CREATE ROLE analytics NOLOGIN",
        *[f"CREATE ROLE {u} LOGIN" for u in APP if u != "dba_carl"],
        "CREATE ROLE dba_carl LOGIN SUPERUSER",
        "GRANT analytics TO analyst_anna, analyst_ben",
        "GRANT pg_read_all_data TO backup",
        f"CREATE DATABASE {DB}",
    ]
    first, last = pick(FIRST), pick(LAST)
    s = [
        f"SELECT setseed({(seed % 1000) / 1000.0})",
        "CREATE SCHEMA sales",
        "CREATE SCHEMA hr",
        "CREATE SCHEMA ops",
        "CREATE SCHEMA reporting",
        "CREATE SCHEMA audit",
        # ---- sales
        """CREATE TABLE sales.products (
    product_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    category text NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    active boolean NOT NULL DEFAULT true
)""",
        f"""INSERT INTO sales.products (product_id, sku, name, category, unit_price, active)
SELECT g, 'SKU-' || lpad(g::text, 6, '0'),
       {pick(PRODUCT_ADJ)}
         || ' ' || {pick(PRODUCT_NOUN)} || ' ' || g,
       {pick(CATEGORIES)}, round((4 + random() * 496)::numeric, 2), random() < 0.93
FROM generate_series(1, 2000) g""",
        """CREATE TABLE sales.customers (
    customer_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL UNIQUE,
    phone text,
    street text,
    city text,
    country char(2) NOT NULL,
    birth_date date,
    created_at timestamptz NOT NULL,
    marketing_opt_in boolean NOT NULL DEFAULT false,
    last_login timestamptz
)""",
        f"""INSERT INTO sales.customers (customer_id, full_name, email, phone, street, city,
    country, birth_date, created_at, marketing_opt_in, last_login)
SELECT g, n.f || ' ' || n.l,
       lower(n.f) || '.' || lower(n.l) || g || '@'
         || {pick(["example.com", "mail.test", "post.test", "inbox.test"])},
       '+49 ' || (150000000 + floor(random() * 49999999))::bigint,
       (1 + floor(random() * 180))::int || ' ' || {pick(STREETS)},
       {pick(CITIES)}, {pick(COUNTRIES)},
       date '1950-01-01' + floor(random() * 20000)::int,
       timestamptz '2023-01-01 00:00+00' + random() * interval '1372 days',
       random() < 0.35,
       timestamptz '2026-06-01 00:00+00' + random() * interval '125 days'
FROM generate_series(1, 50000) g,
     LATERAL (SELECT {first} AS f, {last} AS l WHERE g > 0) n""",
        "ALTER TABLE sales.customers ALTER COLUMN customer_id RESTART WITH 50001",
        """CREATE TABLE sales.orders (
    order_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    ordered_at timestamptz NOT NULL,
    status text NOT NULL,
    total_amount numeric(12,2) NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR',
    shipping_city text,
    payment_method text NOT NULL
)""",
        f"""INSERT INTO sales.orders (order_id, customer_id, ordered_at, status, total_amount,
    currency, shipping_city, payment_method)
SELECT g, 1 + floor(random() * 50000)::bigint,
       timestamptz '2025-10-05 00:00+00' + random() * interval '365 days',
       {pick(["delivered"] * 14 + ["shipped", "cancelled", "returned"])},
       round((5 + random() * random() * 600)::numeric, 2), 'EUR', {pick(CITIES)},
       {pick(["card"] * 6 + ["paypal"] * 3 + ["invoice"])}
FROM generate_series(1, 200000) g""",
        "ALTER TABLE sales.orders ALTER COLUMN order_id RESTART WITH 200001",
        "CREATE INDEX orders_customer_idx ON sales.orders (customer_id)",
        "CREATE INDEX orders_ordered_at_idx ON sales.orders (ordered_at)",
        """CREATE TABLE sales.order_items (
    order_item_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL,
    product_id integer NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(10,2) NOT NULL
)""",
        """INSERT INTO sales.order_items (order_id, product_id, quantity, unit_price)
SELECT o, 1 + floor(random() * 2000)::int, 1 + floor(random() * random() * 4)::int,
       round((4 + random() * 300)::numeric, 2)
FROM generate_series(1, 200000) o,
     generate_series(1, CASE WHEN o % 3 = 0 THEN 2 ELSE 1 END) k""",
        "CREATE INDEX order_items_order_idx ON sales.order_items (order_id)",
        """CREATE TABLE sales.cards (
    card_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    brand text NOT NULL,
    pan_token text NOT NULL,
    last4 char(4) NOT NULL,
    exp_month smallint NOT NULL,
    exp_year smallint NOT NULL,
    billing_zip text,
    created_at timestamptz NOT NULL
)""",
        f"""INSERT INTO sales.cards (card_id, customer_id, brand, pan_token, last4, exp_month,
    exp_year, billing_zip, created_at)
SELECT g, g, {pick(["VISA", "VISA", "MASTERCARD", "MASTERCARD", "AMEX", "MAESTRO"])},
       'tok_' || md5('card' || g || random()::text),
       lpad(floor(random() * 10000)::int::text, 4, '0'),
       1 + floor(random() * 12)::int, 2026 + floor(random() * 5)::int,
       lpad(floor(random() * 99999)::int::text, 5, '0'),
       timestamptz '2023-01-01 00:00+00' + random() * interval '1372 days'
FROM generate_series(1, 50000) g""",
        "ALTER TABLE sales.cards ALTER COLUMN card_id RESTART WITH 50001",
        "CREATE INDEX cards_customer_idx ON sales.cards (customer_id)",
        """CREATE TABLE sales.payments (
    payment_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL,
    card_id bigint NOT NULL,
    amount numeric(12,2) NOT NULL,
    captured_at timestamptz NOT NULL,
    status text NOT NULL
)""",
        """INSERT INTO sales.payments (order_id, card_id, amount, captured_at, status)
SELECT order_id, customer_id, total_amount, ordered_at + interval '4 minutes', 'captured'
FROM sales.orders WHERE payment_method = 'card' ORDER BY order_id""",
        "CREATE INDEX payments_order_idx ON sales.payments (order_id)",
        # ---- hr
        """CREATE TABLE hr.departments (
    department_id integer PRIMARY KEY,
    name text NOT NULL,
    cost_center text NOT NULL
)""",
        f"""INSERT INTO hr.departments
SELECT g, {pick(DEPARTMENTS)} || ' ' || g, 'CC-' || (4000 + g)
FROM generate_series(1, 30) g""",
        """CREATE TABLE hr.employees (
    employee_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text NOT NULL,
    department_id integer NOT NULL,
    title text,
    hire_date date NOT NULL,
    manager_id integer,
    phone text,
    national_id text,
    home_city text
)""",
        f"""INSERT INTO hr.employees (employee_id, first_name, last_name, email, department_id,
    title, hire_date, manager_id, phone, national_id, home_city)
SELECT g, n.f, n.l, lower(n.f) || '.' || lower(n.l) || '.' || g || '@corp.test',
       1 + (g % 30), {pick(TITLES)},
       date '2008-01-01' + floor(random() * 6800)::int,
       CASE WHEN g > 30 THEN 1 + (g % 30) END,
       '+49 30 ' || (1000000 + floor(random() * 8999999))::int,
       upper(substr(md5('nid' || g || random()::text), 1, 11)), {pick(CITIES)}
FROM generate_series(1, 2000) g,
     LATERAL (SELECT {first} AS f, {last} AS l WHERE g > 0) n""",
        "ALTER TABLE hr.employees ALTER COLUMN employee_id RESTART WITH 2001",
        """CREATE TABLE hr.salaries (
    salary_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    employee_id integer NOT NULL,
    effective_from date NOT NULL,
    base_salary numeric(10,2) NOT NULL,
    bonus numeric(10,2) NOT NULL DEFAULT 0,
    currency char(3) NOT NULL DEFAULT 'EUR'
)""",
        """INSERT INTO hr.salaries (employee_id, effective_from, base_salary, bonus)
SELECT e, make_date(2024 + k, 1, 1), round((32000 + random() * 70000)::numeric, -2),
       round((random() * 6000)::numeric, -2)
FROM generate_series(1, 2000) e, generate_series(0, 2) k""",
        "CREATE INDEX salaries_employee_idx ON hr.salaries (employee_id)",
        """CREATE TABLE hr.leave_requests (
    request_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    employee_id integer NOT NULL,
    starts_on date NOT NULL,
    ends_on date NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL
)""",
        f"""INSERT INTO hr.leave_requests (employee_id, starts_on, ends_on, kind, status,
    created_at)
SELECT 1 + floor(random() * 2000)::int, d, d + floor(random() * 10)::int,
       {pick(["vacation", "vacation", "vacation", "sick", "parental", "training"])},
       {pick(["approved"] * 8 + ["rejected", "pending"])}, d - 20
FROM (SELECT date '2025-01-01' + floor(random() * 640)::int AS d
      FROM generate_series(1, 4000)) s""",
        # ---- ops
        """CREATE TABLE ops.tickets (
    ticket_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    status text NOT NULL,
    priority text NOT NULL,
    channel text NOT NULL,
    subject text NOT NULL,
    body text,
    assigned_to text
)""",
        f"""INSERT INTO ops.tickets (ticket_id, customer_id, opened_at, closed_at, status,
    priority, channel, subject, body, assigned_to)
SELECT g, 1 + floor(random() * 50000)::bigint, t.o,
       CASE WHEN g < 29500 THEN t.o + random() * interval '6 days' END,
       CASE WHEN g < 29500 THEN 'closed' ELSE {pick(["open", "pending"])} END,
       {pick(["low", "normal", "normal", "normal", "high", "urgent"])},
       {pick(["email", "email", "phone", "chat", "web"])},
       {pick(TICKET_SUBJECTS)} || ' #' || g,
       repeat(md5(g::text), 2),
       {pick(["support_eve", "support_tom", "support_ina", "support_raj"])}
FROM generate_series(1, 30000) g,
     LATERAL (SELECT timestamptz '2024-06-01 00:00+00' + g * interval '15 minutes'
                     + random() * interval '10 minutes' AS o) t""",
        "ALTER TABLE ops.tickets ALTER COLUMN ticket_id RESTART WITH 30001",
        # ---- reporting
        """CREATE TABLE reporting.daily_sales (
    day date PRIMARY KEY,
    orders integer NOT NULL,
    revenue numeric(14,2) NOT NULL,
    avg_basket numeric(10,2) NOT NULL,
    new_customers integer NOT NULL,
    refreshed_at timestamptz NOT NULL
)""",
        """INSERT INTO reporting.daily_sales
SELECT o.day, o.n, o.revenue, o.avg_basket, coalesce(c.n, 0), o.day + interval '25 hours'
FROM (SELECT (ordered_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n,
             sum(total_amount) AS revenue, round(avg(total_amount), 2) AS avg_basket
      FROM sales.orders GROUP BY 1) o
LEFT JOIN (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
           FROM sales.customers GROUP BY 1) c USING (day)""",
        """CREATE TABLE reporting.kpi_monthly (
    month date NOT NULL,
    metric text NOT NULL,
    value numeric(16,2) NOT NULL,
    PRIMARY KEY (month, metric)
)""",
        """INSERT INTO reporting.kpi_monthly
SELECT date_trunc('month', day)::date, m.metric,
       CASE m.metric WHEN 'orders' THEN sum(orders) WHEN 'revenue' THEN sum(revenue)
                     WHEN 'new_customers' THEN sum(new_customers)
                     ELSE round(avg(avg_basket), 2) END
FROM reporting.daily_sales,
     (VALUES ('orders'), ('revenue'), ('new_customers'), ('avg_basket')) m(metric)
GROUP BY 1, 2""",
        # ---- audit (internal investigations)
        """CREATE TABLE audit.cases (
    case_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    opened_at timestamptz NOT NULL,
    status text NOT NULL,
    subject_customer_id bigint,
    officer text NOT NULL,
    summary text
)""",
        f"""INSERT INTO audit.cases (case_id, opened_at, status, subject_customer_id, officer,
    summary)
SELECT g, timestamptz '2025-01-01 00:00+00' + g * interval '15 hours',
       CASE WHEN g < 930 THEN 'closed' ELSE 'open' END, 1 + floor(random() * 50000)::bigint,
       {pick(["case_officer_dina", "case_officer_mark", "case_officer_sue"])},
       {pick(CASE_SUMMARIES)}
FROM generate_series(1, 1000) g""",
        "ALTER TABLE audit.cases ALTER COLUMN case_id RESTART WITH 1001",
        """CREATE TABLE audit.case_notes (
    note_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    case_id integer NOT NULL,
    author text NOT NULL,
    created_at timestamptz NOT NULL,
    note text NOT NULL
)""",
        f"""INSERT INTO audit.case_notes (case_id, author, created_at, note)
SELECT c, {pick(["case_officer_dina", "case_officer_mark", "case_officer_sue"])},
       timestamptz '2025-01-01 00:00+00' + c * interval '15 hours' + k * interval '1 day',
       {pick(NOTE_TEXTS)}
         || ': ' || md5(c::text || k::text)
FROM generate_series(1, 1000) c, generate_series(1, 1 + (c * 7) % 12) k""",
        "CREATE INDEX case_notes_case_idx ON audit.case_notes (case_id)",
        # ---- privileges
        "GRANT USAGE ON SCHEMA sales, hr, ops, reporting, audit TO PUBLIC",
        "GRANT SELECT, INSERT, UPDATE ON sales.customers, sales.orders, sales.order_items"
        " TO web_shop",
        "GRANT SELECT ON sales.products, sales.cards TO web_shop",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA sales TO web_shop, billing_job",
        "GRANT SELECT, UPDATE ON sales.orders, sales.customers, sales.products TO web_admin",
        "GRANT SELECT ON sales.order_items TO web_admin",
        "GRANT SELECT ON sales.orders, sales.order_items, sales.customers TO etl_nightly",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA reporting TO etl_nightly",
        "GRANT SELECT ON ALL TABLES IN SCHEMA sales, reporting TO analytics",
        "GRANT SELECT ON ops.tickets TO analytics",
        "GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO reporting_svc",
        "GRANT SELECT ON sales.orders TO reporting_svc",
        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA hr TO hr_app",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA hr TO hr_app",
        "GRANT SELECT, INSERT ON audit.cases, audit.case_notes TO case_officer_dina",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA audit TO case_officer_dina",
        "GRANT SELECT ON ALL TABLES IN SCHEMA sales, ops TO support_eve",
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA sales TO support_eve",
        "GRANT INSERT, UPDATE ON ops.tickets TO support_eve",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA ops TO support_eve",
        "GRANT SELECT ON sales.cards, sales.orders TO billing_job",
        "GRANT INSERT ON sales.payments TO billing_job",
        "GRANT UPDATE ON sales.orders TO billing_job",
        "VACUUM ANALYZE",
    ]
    return roles, s


# ----------------------------------------------------------------------------- steps
@dataclass
class Sql:
    sql: str
    params: Sequence[Any] | None = None
    expect_error: bool = False


@dataclass
class Tx:
    stmts: list[Sql]


@dataclass
class CursorRead:
    """BEGIN; DECLARE (psycopg named cursor); FETCH FORWARD page ...; CLOSE; COMMIT."""

    name: str
    sql: str
    params: Sequence[Any] | None = None
    page: int = 100
    max_pages: int | None = None


@dataclass
class Call:
    """Custom psycopg work: fn(conn) -> rows."""

    fn: Callable[[Any], int]
    what: str = ""


Step = Sql | Tx | CursorRead | Call


@dataclass(order=True)
class Event:
    t: datetime
    seq: int
    op: str = field(compare=False)
    key: str = field(compare=False, default="")
    arg: Any = field(compare=False, default=None)
    incident: str | None = field(compare=False, default=None)


@dataclass
class Incident:
    incident_id: str
    account: str
    kind: str
    description: str
    app: str
    start: datetime | None = None
    end: datetime | None = None
    pids: set[int] = field(default_factory=set)


class Plan:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seq = 0
        self._keys: Counter[str] = Counter()

    def add(
        self, t: datetime, op: str, key: str = "", arg: Any = None, incident: str | None = None
    ) -> None:
        self.events.append(Event(t, self._seq, op, key, arg, incident))
        self._seq += 1

    def new_key(self, user: str) -> str:
        self._keys[user] += 1
        return f"{user}#{self._keys[user]}"

    def session(
        self,
        user: str,
        start: datetime,
        steps: Iterable[tuple[float, Step]],
        *,
        rng: random.Random,
        app: str | None = None,
        kind: str = "pg",
        incident: str | None = None,
        linger: tuple[float, float] = (0.5, 20.0),
    ) -> datetime:
        """Open a session at start; each step runs dt seconds after the previous one."""
        key = self.new_key(user)
        self.add(start, "open", key, (user, app if app is not None else APP[user], kind))
        t = start
        for dt, step in steps:
            t += timedelta(seconds=dt)
            self.add(t, "step", key, step, incident)
        end = t + timedelta(seconds=rng.uniform(*linger))
        self.add(end, "close", key)
        return end


class Pool:
    """A client-side connection pool: slots open lazily, close when idle or too old."""

    def __init__(
        self,
        plan: Plan,
        user: str,
        rng: random.Random,
        slots: int,
        idle_s: float = 600.0,
        life_s: tuple[float, float] = (2400.0, 9000.0),
    ) -> None:
        self.plan, self.user, self.rng = plan, user, rng
        self.idle_s, self.life_s = idle_s, life_s
        self.state: list[tuple[str, datetime, datetime] | None] = [None] * slots

    def use(self, t: datetime, step: Step) -> None:
        # like real pools: mostly reuse the most recently used live connection
        live = [
            (st[1], i)
            for i, st in enumerate(self.state)
            if st is not None and (t - st[1]).total_seconds() <= self.idle_s and t <= st[2]
        ]
        i = (
            max(live)[1]
            if live and self.rng.random() < 0.8
            else self.rng.randrange(len(self.state))
        )
        st = self.state[i]
        if st is not None:
            key, last, expires = st
            if (t - last).total_seconds() > self.idle_s:
                self.plan.add(last + timedelta(seconds=self.idle_s), "close", key)
                st = None
            elif t > expires:
                self.plan.add(t - timedelta(seconds=1.5), "close", key)
                st = None
        if st is None:
            key = self.plan.new_key(self.user)
            self.plan.add(
                t - timedelta(seconds=self.rng.uniform(0.05, 0.9)),
                "open",
                key,
                (self.user, APP[self.user], "pg"),
            )
            expires = t + timedelta(seconds=self.rng.uniform(*self.life_s))
        else:
            key, _, expires = st
        self.plan.add(t, "step", key, step)
        self.state[i] = (key, t, expires)

    def finish(self) -> None:
        for st in self.state:
            if st is not None:
                self.plan.add(st[1] + timedelta(seconds=self.idle_s), "close", st[0])
        self.state = [None] * len(self.state)


# ----------------------------------------------------------------------------- helpers
def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 60:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def day_at(day: datetime, hours: float) -> datetime:
    return day + timedelta(seconds=hours * 3600)


def rand_between(rng: random.Random, day: datetime, h0: float, h1: float) -> datetime:
    return day + timedelta(seconds=rng.uniform(h0 * 3600, h1 * 3600))


def office_start(rng: random.Random, day: datetime, h0: float = 9.0, h1: float = 17.5) -> datetime:
    """A random time in office hours, with a lunch dip."""
    while True:
        t = rand_between(rng, day, h0, h1)
        h = t.hour + t.minute / 60
        if not (12.0 <= h < 13.0) or rng.random() < 0.3:
            return t


def is_weekend(day: datetime) -> bool:
    return day.weekday() >= 5


def gaps(rng: random.Random, n: int, lo: float, hi: float) -> list[float]:
    return [rng.uniform(lo, hi) for _ in range(n)]


# ----------------------------------------------------------------------------- accounts
class Ids:
    """Client-side counters for rows the apps insert."""

    def __init__(self) -> None:
        self.signup = 0


def shop_step(rng: random.Random, ids: Ids) -> Step:
    r = rng.random()
    cid = rng.randint(1, 50000)
    if r < 0.26:
        return Sql(
            "SELECT product_id, sku, name, category, unit_price FROM sales.products"
            " WHERE product_id = %s AND active",
            [rng.randint(1, 2000)],
        )
    if r < 0.44:
        return Sql(
            "SELECT product_id, name, unit_price FROM sales.products"
            " WHERE category = %s AND active ORDER BY name LIMIT %s",
            [rng.choice(CATEGORIES), rng.choice([8, 12, 20, 20])],
        )
    if r < 0.58:
        return Sql(
            "SELECT customer_id, full_name, email, city, country, marketing_opt_in"
            " FROM sales.customers WHERE customer_id = %s",
            [cid],
        )
    if r < 0.72:
        return Sql(
            "SELECT order_id, ordered_at, status, total_amount FROM sales.orders"
            " WHERE customer_id = %s ORDER BY ordered_at DESC LIMIT 20",
            [cid],
        )
    if r < 0.80:
        return Sql(
            "SELECT oi.product_id, p.name, oi.quantity, oi.unit_price"
            " FROM sales.order_items oi JOIN sales.products p USING (product_id)"
            " WHERE oi.order_id = %s",
            [rng.randint(1, 200000)],
        )
    if r < 0.87:
        return Sql("UPDATE sales.customers SET last_login = now() WHERE customer_id = %s", [cid])
    if r < 0.90:
        return Sql(
            "SELECT card_id, brand, last4, exp_month, exp_year FROM sales.cards"
            " WHERE customer_id = %s",
            [cid],
        )
    if r < 0.985:
        items = [
            (rng.randint(1, 2000), rng.choice([1, 1, 1, 2, 3]), round(rng.uniform(4, 300), 2))
            for _ in range(rng.choice([1, 1, 2, 3]))
        ]
        total = round(sum(q * p for _, q, p in items), 2)
        method = rng.choice(["card", "card", "card", "paypal", "invoice"])
        city = rng.choice(CITIES)

        def place_order(conn: Any) -> int:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO sales.orders (customer_id, ordered_at, status, total_amount,"
                    " currency, shipping_city, payment_method)"
                    " VALUES (%s, now(), 'new', %s, 'EUR', %s, %s) RETURNING order_id",
                    [cid, total, city, method],
                )
                row = cur.fetchone()
                assert row is not None
                order_id = row[0]
                values = ", ".join(["(%s, %s, %s, %s)"] * len(items))
                params: list[Any] = []
                for pid, q, p in items:
                    params += [order_id, pid, q, p]
                cur.execute(
                    "INSERT INTO sales.order_items (order_id, product_id, quantity, unit_price)"
                    f" VALUES {values}",
                    params,
                )
            return 1 + len(items)

        return Call(place_order, "place order")
    ids.signup += 1
    n = ids.signup
    f, last = rng.choice(FIRST), rng.choice(LAST)
    return Sql(
        "INSERT INTO sales.customers (full_name, email, phone, city, country, created_at,"
        " marketing_opt_in) VALUES (%s, %s, %s, %s, %s, now(), %s) RETURNING customer_id",
        [
            f"{f} {last}",
            f"{f.lower()}.{last.lower()}.n{n}@example.com",
            f"+49 15{rng.randint(10000000, 99999999)}",
            rng.choice(CITIES),
            rng.choice(COUNTRIES),
            rng.random() < 0.3,
        ],
    )


# hourly weights of the web shop (UTC): quiet nights, busier evenings
SHOP_WEEKDAY = [4, 3, 2, 2, 2, 3, 5, 8, 11, 13, 14, 15,
                16, 15, 14, 14, 15, 17, 22, 26, 28, 25, 18, 9]  # fmt: skip
SHOP_WEEKEND = [6, 4, 3, 2, 2, 2, 3, 5, 8, 12, 15, 17,
                18, 17, 16, 16, 16, 17, 20, 22, 23, 20, 15, 9]  # fmt: skip


def plan_web_shop(plan: Plan, rng: random.Random, days: int, scale: float, ids: Ids) -> None:
    pool = Pool(plan, "web_shop", rng, slots=4, idle_s=1800, life_s=(3600, 4 * 3600))
    for d in range(days):
        day = START + timedelta(days=d)
        weekend = is_weekend(day)
        weights = SHOP_WEEKEND if weekend else SHOP_WEEKDAY
        total = (600 if weekend else 850) * scale * rng.uniform(0.85, 1.15)
        norm = total / sum(weights)
        for h in range(24):
            n = poisson(rng, weights[h] * norm)
            for t in sorted(rand_between(rng, day, h, h + 1) for _ in range(n)):
                pool.use(t, shop_step(rng, ids))
    pool.finish()


def admin_step(rng: random.Random) -> Step:
    r = rng.random()
    if r < 0.3:
        return Sql(
            "SELECT o.order_id, o.ordered_at, o.status, o.total_amount, c.full_name, c.email"
            " FROM sales.orders o JOIN sales.customers c USING (customer_id)"
            " WHERE o.order_id = %s",
            [rng.randint(1, 200000)],
        )
    if r < 0.5:
        return Sql(
            "UPDATE sales.orders SET status = %s WHERE order_id = %s",
            [rng.choice(["shipped", "delivered", "cancelled", "returned"]),
             rng.randint(150000, 200000)],
        )  # fmt: skip
    if r < 0.7:
        f = rng.choice(FIRST).lower()
        return Sql(
            "SELECT customer_id, full_name, email, city FROM sales.customers"
            " WHERE email LIKE %s ORDER BY customer_id LIMIT 20",
            [f"{f}.{rng.choice(LAST).lower()}{rng.randint(1, 49)}%"],
        )
    if r < 0.8:
        return Sql(
            "UPDATE sales.products SET unit_price = %s WHERE product_id = %s",
            [round(rng.uniform(4, 400), 2), rng.randint(1, 2000)],
        )
    return Sql(
        "SELECT order_id, customer_id, ordered_at, total_amount, payment_method"
        " FROM sales.orders WHERE status = 'new' ORDER BY ordered_at LIMIT 50"
    )


def plan_web_admin(plan: Plan, rng: random.Random, days: int, scale: float) -> None:
    pool = Pool(plan, "web_admin", rng, slots=2, idle_s=1800)
    for d in range(days):
        day = START + timedelta(days=d)
        n = poisson(rng, (8 if is_weekend(day) else 55) * scale)
        h0, h1 = (9.0, 14.0) if is_weekend(day) else (7.5, 19.0)
        for t in sorted(rand_between(rng, day, h0, h1) for _ in range(n)):
            pool.use(t, admin_step(rng))
    pool.finish()


def hr_step(rng: random.Random) -> Step:
    r = rng.random()
    emp = rng.randint(1, 2000)
    if r < 0.35:
        return Sql(
            "SELECT employee_id, first_name, last_name, email, department_id, title, hire_date,"
            " manager_id, phone FROM hr.employees WHERE employee_id = %s",
            [emp],
        )
    if r < 0.5:
        return Sql(
            "SELECT effective_from, base_salary, bonus, currency FROM hr.salaries"
            " WHERE employee_id = %s ORDER BY effective_from",
            [emp],
        )
    if r < 0.62:
        return Sql(
            "SELECT employee_id, first_name, last_name, title FROM hr.employees"
            " WHERE department_id = %s AND manager_id IS NOT NULL ORDER BY last_name LIMIT 25",
            [rng.randint(1, 30)],
        )
    if r < 0.74:
        return Sql(
            "SELECT r.request_id, r.employee_id, r.starts_on, r.ends_on, r.kind"
            " FROM hr.leave_requests r JOIN hr.employees e USING (employee_id)"
            " WHERE r.status = 'pending' AND e.manager_id = %s",
            [rng.randint(1, 30)],
        )
    if r < 0.84:
        start = START + timedelta(days=rng.randint(10, 90))
        return Sql(
            "INSERT INTO hr.leave_requests (employee_id, starts_on, ends_on, kind, status,"
            " created_at) VALUES (%s, %s, %s, %s, 'pending', now())",
            [emp, start.date(), (start + timedelta(days=rng.randint(0, 9))).date(),
             rng.choice(["vacation", "vacation", "sick", "training"])],
        )  # fmt: skip
    if r < 0.92:
        return Sql(
            "UPDATE hr.employees SET phone = %s WHERE employee_id = %s",
            [f"+49 30 {rng.randint(1000000, 9999999)}", emp],
        )
    if r < 0.96:
        return Sql(
            "UPDATE hr.leave_requests SET status = %s WHERE request_id = %s",
            [rng.choice(["approved", "approved", "rejected"]), rng.randint(1, 4000)],
        )
    return Sql("SELECT department_id, name, cost_center FROM hr.departments ORDER BY name")


def plan_hr_app(plan: Plan, rng: random.Random, days: int, scale: float) -> None:
    pool = Pool(plan, "hr_app", rng, slots=2, idle_s=1800)
    for d in range(days):
        day = START + timedelta(days=d)
        if is_weekend(day):
            continue
        n = poisson(rng, 70 * scale)
        for t in sorted(office_start(rng, day, 8.0, 18.0) for _ in range(n)):
            pool.use(t, hr_step(rng))
    pool.finish()


def plan_support_eve(plan: Plan, rng: random.Random, days: int, scale: float) -> None:
    for d in range(days):
        day = START + timedelta(days=d)
        if is_weekend(day):
            continue
        for _ in range(poisson(rng, 10 * scale)):
            cid = rng.randint(1, 50000)
            tid = rng.randint(1, 30000)
            steps: list[tuple[float, Step]] = [
                (rng.uniform(0.5, 3), Sql(
                    "SELECT ticket_id, customer_id, opened_at, status, priority, subject, body"
                    " FROM ops.tickets WHERE ticket_id = %s", [tid])),
                (rng.uniform(5, 60), Sql(
                    "SELECT customer_id, full_name, email, phone, city, country"
                    " FROM sales.customers WHERE customer_id = %s", [cid])),
            ]  # fmt: skip
            if rng.random() < 0.6:
                steps.append((rng.uniform(5, 90), Sql(
                    "SELECT order_id, ordered_at, status, total_amount FROM sales.orders"
                    " WHERE customer_id = %s ORDER BY ordered_at DESC LIMIT 10",
                    [cid])))  # fmt: skip
            if rng.random() < 0.4:
                steps.append((rng.uniform(5, 60), Sql(
                    "SELECT ticket_id, opened_at, status, subject FROM ops.tickets"
                    " WHERE customer_id = %s ORDER BY opened_at DESC", [cid])))  # fmt: skip
            if rng.random() < 0.15:
                steps.append((rng.uniform(5, 60), Sql(
                    "SELECT brand, last4, exp_month, exp_year FROM sales.cards"
                    " WHERE customer_id = %s", [cid])))  # fmt: skip
            if rng.random() < 0.2:
                steps.append((rng.uniform(20, 240), Sql(
                    "INSERT INTO ops.tickets (customer_id, opened_at, status, priority, channel,"
                    " subject, assigned_to) VALUES (%s, now(), 'open', 'normal', 'phone', %s,"
                    " 'support_eve') RETURNING ticket_id",
                    [cid, rng.choice(["Callback requested", "Refund follow-up",
                                      "Address change"])])))  # fmt: skip
            steps.append((rng.uniform(20, 300), Sql(
                "UPDATE ops.tickets SET status = %s, assigned_to = 'support_eve'"
                " WHERE ticket_id = %s",
                [rng.choice(["pending", "closed", "closed"]), tid])))  # fmt: skip
            plan.session("support_eve", office_start(rng, day, 8.5, 17.0), steps, rng=rng)


def plan_dina(plan: Plan, rng: random.Random, days: int, scale: float) -> None:
    for d in range(days):
        day = START + timedelta(days=d)
        if is_weekend(day):
            continue
        for _ in range(poisson(rng, 5 * scale)):
            case = rng.randint(1, 1000)
            steps: list[tuple[float, Step]] = [
                (rng.uniform(0.5, 2), Sql(
                    "SELECT case_id, opened_at, status, subject_customer_id, officer, summary"
                    " FROM audit.cases WHERE case_id = %s", [case])),
            ]  # fmt: skip
            if rng.random() < 0.3:
                steps.append((rng.uniform(3, 30), CursorRead(
                    "case_notes_cur",
                    "SELECT note_id, author, created_at, note FROM audit.case_notes"
                    " WHERE case_id BETWEEN %s AND %s ORDER BY case_id, created_at",
                    [case, case + rng.randint(0, 4)], page=50,
                    max_pages=rng.randint(1, 2))))  # fmt: skip
            else:
                steps.append((rng.uniform(3, 30), Sql(
                    "SELECT note_id, author, created_at, note FROM audit.case_notes"
                    " WHERE case_id = %s ORDER BY created_at", [case])))  # fmt: skip
            if rng.random() < 0.45:
                steps.append((rng.uniform(60, 600), Sql(
                    "INSERT INTO audit.case_notes (case_id, author, created_at, note)"
                    " VALUES (%s, 'case_officer_dina', now(), %s)",
                    [case, rng.choice(["called customer", "requested documents",
                                       "no further action", "escalated to legal"])])))  # fmt: skip
            plan.session("case_officer_dina", office_start(rng, day), steps, rng=rng)


ANALYST_TYPOS = [
    "SELECT country, count(*)\nFROM sales.customer\nGROUP BY country",
    "SELECT cuntry, count(*)\nFROM sales.customers\nGROUP BY 1",
    "SELECT date_trunc('month', ordered_at) m, sum(total)\nFROM sales.orders\nGROUP BY 1",
]


def analyst_query(rng: random.Random, day: datetime) -> Sql:
    r = rng.random()
    if r < 0.05:
        return Sql(rng.choice(ANALYST_TYPOS), None, expect_error=True)
    if r < 0.18:
        return Sql(
            "SELECT c.country, count(*) AS orders, sum(o.total_amount) AS revenue\n"
            "FROM sales.orders o\n  JOIN sales.customers c USING (customer_id)\n"
            "WHERE o.ordered_at >= %s\nGROUP BY c.country\nORDER BY revenue DESC",
            [day - timedelta(days=rng.choice([30, 60, 90]))],
        )
    if r < 0.30:
        return Sql(
            "SELECT date_trunc('month', ordered_at) AS month, count(*) AS orders,\n"
            "       sum(total_amount) AS revenue, avg(total_amount) AS basket\n"
            "FROM sales.orders\nWHERE ordered_at >= %s\nGROUP BY 1\nORDER BY 1",
            [day - timedelta(days=rng.choice([180, 365]))],
        )
    if r < 0.40:
        return Sql(
            "SELECT p.category, p.name, sum(oi.quantity) AS units\n"
            "FROM sales.order_items oi\n  JOIN sales.products p USING (product_id)\n"
            "GROUP BY p.category, p.name\nORDER BY units DESC\nLIMIT %s",
            [rng.choice([20, 50, 100, 200])],
        )
    if r < 0.48:
        return Sql(
            "SELECT date_trunc('month', created_at) AS cohort, count(*) AS customers,\n"
            "       avg(marketing_opt_in::int) AS opt_in\nFROM sales.customers\nGROUP BY 1\n"
            "ORDER BY 1"
        )
    if r < 0.60:
        return Sql(
            "SELECT o.order_id, o.ordered_at, o.total_amount, o.payment_method, c.country\n"
            "FROM sales.orders o\n  JOIN sales.customers c USING (customer_id)\n"
            "WHERE c.country = %s AND o.ordered_at >= %s",
            [rng.choice(SMALL_COUNTRIES), day - timedelta(days=rng.randint(20, 40))],
        )
    if r < 0.68:
        return Sql(
            "SELECT status, priority, count(*)\nFROM ops.tickets\nGROUP BY 1, 2\nORDER BY 1, 2"
        )
    if r < 0.78:
        return Sql(
            "SELECT day, orders, revenue, avg_basket, new_customers\n"
            "FROM reporting.daily_sales\nWHERE day >= %s\nORDER BY day",
            [(day - timedelta(days=rng.choice([30, 60, 90]))).date()],
        )
    if r < 0.86:
        lo = rng.randint(1, 190000)
        return Sql(
            "SELECT order_id, count(*) AS lines, sum(quantity) AS units\n"
            "FROM sales.order_items\nWHERE order_id BETWEEN %s AND %s\nGROUP BY order_id",
            [lo, lo + rng.choice([500, 1000, 2000, 3000])],
        )
    if r < 0.93:
        month = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=30 * rng.randint(0, 44))
        return Sql(
            "SELECT customer_id, country, created_at, marketing_opt_in\nFROM sales.customers\n"
            "WHERE created_at >= %s AND created_at < %s",
            [month, month + timedelta(days=rng.choice([14, 30, 60]))],
        )
    return Sql(
        "SELECT payment_method, count(*) AS orders, avg(total_amount) AS basket\n"
        "FROM sales.orders\nWHERE ordered_at >= %s\nGROUP BY 1",
        [day - timedelta(days=rng.choice([7, 30, 90]))],
    )


def plan_analyst(plan: Plan, rng: random.Random, user: str, days: int, scale: float) -> None:
    absent = {rng.randint(0, days - 1)}  # one day off
    for d in range(days):
        day = START + timedelta(days=d)
        if is_weekend(day) or d in absent:
            continue
        for _ in range(max(1, poisson(rng, 2.5 * scale))):
            n = rng.randint(3, 10)
            steps: list[tuple[float, Step]] = [
                (rng.uniform(2, 20) if i == 0 else rng.uniform(20, 360), analyst_query(rng, day))
                for i in range(n)
            ]
            plan.session(user, office_start(rng, day), steps, rng=rng, linger=(5, 900))


def plan_anna_quarterly(plan: Plan, rng: random.Random, days: int) -> str | None:
    day = START + timedelta(days=8)  # Tuesday 2026-10-13
    if days <= 8:
        return None
    start = day_at(day, 10.5) + timedelta(seconds=rng.uniform(0, 300))
    steps: list[tuple[float, Step]] = [
        (4.0, Sql(
            "-- Q3 report: order detail incl. last week of August\n"
            "SELECT o.order_id, o.ordered_at, o.customer_id, c.country, o.status,\n"
            "       o.total_amount, o.payment_method, o.shipping_city\n"
            "FROM sales.orders o\n  JOIN sales.customers c USING (customer_id)\n"
            "WHERE o.ordered_at >= %s AND o.ordered_at < %s\nORDER BY o.ordered_at",
            [datetime(2026, 8, 26, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)])),
        (240.0, Sql(
            "SELECT date_trunc('day', o.ordered_at) AS day, p.category,\n"
            "       sum(oi.quantity) AS units,\n"
            "       sum(oi.quantity * oi.unit_price) AS revenue\n"
            "FROM sales.orders o\n  JOIN sales.order_items oi USING (order_id)\n"
            "  JOIN sales.products p USING (product_id)\n"
            "WHERE o.ordered_at >= %s AND o.ordered_at < %s\nGROUP BY 1, 2\nORDER BY 1, 2",
            [datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)])),
        (300.0, Sql(
            "SELECT month, metric, value\nFROM reporting.kpi_monthly\nWHERE month >= %s\n"
            "ORDER BY month, metric", [datetime(2025, 10, 1, tzinfo=UTC).date()])),
    ]  # fmt: skip
    plan.session("analyst_anna", start, steps, rng=rng, linger=(60, 600))
    return iso(start)


def plan_etl(plan: Plan, rng: random.Random, days: int) -> None:
    for d in range(days):
        day = START + timedelta(days=d)
        prev, cur = day - timedelta(days=1), day
        steps: list[tuple[float, Step]] = [
            (0.3, Sql(
                "SELECT order_id, customer_id, status, total_amount, payment_method"
                " FROM sales.orders WHERE ordered_at >= %s AND ordered_at < %s", [prev, cur])),
            (rng.uniform(1, 4), Sql(
                "SELECT oi.order_id, oi.product_id, oi.quantity, oi.unit_price"
                " FROM sales.order_items oi JOIN sales.orders o USING (order_id)"
                " WHERE o.ordered_at >= %s AND o.ordered_at < %s", [prev, cur])),
            (rng.uniform(1, 4), Tx([
                Sql("DELETE FROM reporting.daily_sales WHERE day = %s", [prev.date()]),
                Sql("INSERT INTO reporting.daily_sales (day, orders, revenue, avg_basket,"
                    " new_customers, refreshed_at)"
                    " SELECT %s, count(*), coalesce(sum(total_amount), 0),"
                    " coalesce(round(avg(total_amount), 2), 0),"
                    " (SELECT count(*) FROM sales.customers"
                    "  WHERE created_at >= %s AND created_at < %s), now()"
                    " FROM sales.orders WHERE ordered_at >= %s AND ordered_at < %s",
                    [prev.date(), prev, cur, prev, cur]),
            ])),
        ]  # fmt: skip
        if day.weekday() == 0:
            steps.append((rng.uniform(1, 3), Sql(
                "INSERT INTO reporting.kpi_monthly (month, metric, value)"
                " SELECT date_trunc('month', day)::date, 'revenue', sum(revenue)"
                " FROM reporting.daily_sales WHERE day >= %s GROUP BY 1"
                " ON CONFLICT (month, metric) DO UPDATE SET value = EXCLUDED.value",
                [datetime(2026, 10, 1, tzinfo=UTC).date()])))  # fmt: skip
        plan.session("etl_nightly", day_at(day, 1.0) + timedelta(seconds=rng.uniform(2, 90)),
                     steps, rng=rng, linger=(0.1, 1.0))  # fmt: skip


def plan_reporting(plan: Plan, rng: random.Random, days: int) -> None:
    for d in range(days):
        day = START + timedelta(days=d)
        for h in range(24):
            steps: list[tuple[float, Step]] = [
                (0.2, Sql(
                    "SELECT day, orders, revenue, avg_basket FROM reporting.daily_sales"
                    " WHERE day >= current_date - 30 ORDER BY day")),
                (rng.uniform(0.2, 2), Sql(
                    "SELECT month, metric, value FROM reporting.kpi_monthly"
                    " WHERE month >= date_trunc('month', now()) - interval '12 months'"
                    " ORDER BY month, metric")),
            ]  # fmt: skip
            if h == 6:
                steps.append((rng.uniform(0.5, 3), Sql(
                    "SELECT date_trunc('hour', ordered_at) AS hour, count(*), sum(total_amount)"
                    " FROM sales.orders WHERE ordered_at >= current_date - 1"
                    " AND ordered_at < current_date GROUP BY 1 ORDER BY 1")))  # fmt: skip
            start = day_at(day, h + 5 / 60) + timedelta(seconds=rng.uniform(0, 40))
            plan.session("reporting_svc", start, steps, rng=rng, linger=(0.05, 0.5))


def plan_billing(plan: Plan, rng: random.Random, days: int) -> None:
    cursor = 1
    for d in range(days):
        day = START + timedelta(days=d)
        for h in (0, 4, 8, 12, 16, 20):
            n = rng.randint(200, 500)
            lo, hi = cursor, min(50000, cursor + n - 1)
            cursor = 1 if hi >= 50000 else hi + 1
            steps: list[tuple[float, Step]] = [
                (0.3, Sql(
                    "SELECT card_id, customer_id, brand, pan_token, exp_month, exp_year"
                    " FROM sales.cards WHERE card_id BETWEEN %s AND %s"
                    " AND (exp_year, exp_month) >= (%s, %s)",
                    [lo, hi, day.year, day.month])),
                (rng.uniform(1, 5), Tx([
                    Sql("INSERT INTO sales.payments"
                        " (order_id, card_id, amount, captured_at, status)"
                        " SELECT o.order_id, c.card_id, o.total_amount, now(), 'captured'"
                        " FROM sales.orders o JOIN sales.cards c ON c.customer_id = o.customer_id"
                        " WHERE o.status = 'new' AND o.payment_method = 'card'"),
                    Sql("UPDATE sales.orders SET status = 'paid'"
                        " WHERE status = 'new' AND payment_method = 'card'"),
                ])),
            ]  # fmt: skip
            start = day_at(day, h + 0.25) + timedelta(seconds=rng.uniform(0, 60))
            plan.session("billing_job", start, steps, rng=rng, linger=(0.1, 1.0))


def plan_backup(plan: Plan, rng: random.Random, days: int) -> None:
    for d in range(days):
        day = START + timedelta(days=d)
        plan.add(
            day_at(day, 2.5) + timedelta(seconds=rng.uniform(0, 20)),
            "pg_dump",
            "backup",
            ("backup", ["--no-owner"]),
        )


DBA_SESSIONS: list[tuple[int, float, list[str]]] = [
    (1, 10.2, [
        "SELECT count(*) FROM sales.orders;",
        "SELECT relname, n_live_tup FROM pg_stat_user_tables ORDER BY n_live_tup DESC LIMIT 10;",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS tickets_customer_idx"
        " ON ops.tickets (customer_id);",
        "SELECT ticket_id, status, priority FROM ops.tickets WHERE customer_id = 4711;",
    ]),
    (3, 17.6, [
        "SELECT department_id, name FROM hr.departments ORDER BY department_id LIMIT 5;",
        "VACUUM (ANALYZE) sales.orders;",
        "SELECT pg_size_pretty(pg_total_relation_size('sales.orders'));",
    ]),
    (5, 8.1, [
        "SELECT count(*) FROM sales.orders WHERE ordered_at >= now() - interval '1 day';",
        "SELECT count(*) FROM sales.payments WHERE captured_at >= now() - interval '1 day';",
    ]),
    (7, 9.7, [
        "ALTER TABLE ops.tickets ADD COLUMN sla_due timestamptz;",
        "UPDATE ops.tickets SET sla_due = opened_at + interval '48 hours'"
        " WHERE status IN ('open', 'pending');",
        "SELECT count(*) FROM ops.tickets WHERE sla_due IS NOT NULL;",
    ]),
    (9, 19.3, [
        "CREATE TABLE ops.maintenance_windows (id integer GENERATED ALWAYS AS IDENTITY"
        " PRIMARY KEY, starts_at timestamptz NOT NULL, ends_at timestamptz NOT NULL, note text);",
        "INSERT INTO ops.maintenance_windows (starts_at, ends_at, note)"
        " VALUES ('2026-10-17 22:00+00', '2026-10-18 02:00+00', 'storage firmware update');",
        "GRANT SELECT ON ops.maintenance_windows TO support_eve, analytics;",
        "-- ticket HR-4411: payroll export needs to read the other schemas\n"
        "GRANT pg_read_all_data TO hr_app;",
        "SELECT * FROM ops.maintenance_windows;",
    ]),
    (11, 14.1, [
        "SELECT order_id, status, total_amount FROM sales.orders WHERE order_id = 123456;",
        "SELECT count(*) FROM sales.cards WHERE exp_year = 2026;",
    ]),
    (15, 11.0, [
        "REINDEX INDEX CONCURRENTLY sales.orders_customer_idx;",
        "SELECT count(*) FROM sales.order_items;",
        "SELECT * FROM ops.maintenance_windows ORDER BY starts_at DESC LIMIT 3;",
    ]),
    (17, 16.75, [
        "ANALYZE sales.payments;",
        "SELECT status, count(*) FROM sales.orders WHERE ordered_at >= now() - interval '7 days'"
        " GROUP BY 1;",
    ]),
]  # fmt: skip


def plan_dba(plan: Plan, rng: random.Random, days: int) -> None:
    for d, hour, stmts in DBA_SESSIONS:
        if d >= days:
            continue
        day = START + timedelta(days=d)
        start = day_at(day, hour) + timedelta(seconds=rng.uniform(0, 240))
        steps: list[tuple[float, Step]] = [
            (rng.uniform(3, 15) if i == 0 else rng.uniform(15, 200), Sql(s))
            for i, s in enumerate(stmts)
        ]
        plan.session("dba_carl", start, steps, rng=rng, kind="psql", linger=(10, 300))


# ----------------------------------------------------------------------------- incidents
def plan_incidents(plan: Plan, rng: random.Random, days: int) -> list[Incident]:
    incidents: list[Incident] = []

    def when(day_index: int, h: int, m: int) -> datetime | None:
        if day_index >= days:
            return None
        return START + timedelta(days=day_index, hours=h, minutes=m, seconds=rng.uniform(0, 30))

    # 5. enumeration: Monday 2026-10-19 ~15:20, hr_app reads a few rows of many foreign tables
    t = when(14, 15, 20)
    if t:
        inc = Incident(
            "INC-5", "hr_app", "enumeration",
            "hr_app credentials (application hr-portal, separate session) list the tables via"
            " information_schema and read 1-5 rows from a dozen sales/audit/ops/reporting"
            " tables it never touches, within ~10 minutes; two probes fail (no such table)",
            APP["hr_app"],
        )  # fmt: skip
        probes = [
            ("SELECT table_schema, table_name FROM information_schema.tables"
             " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
             " ORDER BY 1, 2", False),
            ("SELECT * FROM sales.customers LIMIT 5", False),
            ("SELECT * FROM sales.cards LIMIT 3", False),
            ("SELECT * FROM sales.credit_cards LIMIT 5", True),
            ("SELECT * FROM sales.payments LIMIT 2", False),
            ("SELECT * FROM sales.orders LIMIT 5", False),
            ("SELECT * FROM audit.cases LIMIT 3", False),
            ("SELECT * FROM audit.case_notes LIMIT 5", False),
            ("SELECT * FROM ops.tickets LIMIT 1", False),
            ("SELECT * FROM public.users LIMIT 5", True),
            ("SELECT * FROM reporting.daily_sales LIMIT 4", False),
            ("SELECT * FROM reporting.kpi_monthly LIMIT 2", False),
            ("SELECT * FROM sales.order_items LIMIT 3", False),
            ("SELECT * FROM sales.products LIMIT 1", False),
        ]  # fmt: skip
        steps: list[tuple[float, Step]] = [
            (rng.uniform(1, 3) if i == 0 else rng.uniform(15, 55), Sql(s, None, expect_error=e))
            for i, (s, e) in enumerate(probes)
        ]
        plan.session("hr_app", t, steps, rng=rng, incident=inc.incident_id, linger=(5, 30))
        incidents.append(inc)

    # 1. bulk_select: Tuesday 2026-10-20 03:10, web_shop credentials from psql
    t = when(15, 3, 10)
    if t:
        inc = Incident(
            "INC-1",
            "web_shop",
            "bulk_select",
            "web_shop credentials used from psql at night: count, sample, then"
            " SELECT * FROM sales.customers (all 50k rows)",
            "psql",
        )
        # one psql session: \dt (catalog only, not audited, not part of the label), then
        # a count, a sample and the full read
        key = plan.new_key("web_shop")
        plan.add(t - timedelta(seconds=rng.uniform(15, 25)), "open", key,
                 ("web_shop", "psql", "psql"))  # fmt: skip
        plan.add(t - timedelta(seconds=rng.uniform(5, 10)), "step", key, Sql("\\dt sales.*"))
        tt = t
        for i, s in enumerate([
            "SELECT count(*) FROM sales.customers;",
            "SELECT * FROM sales.customers LIMIT 5;",
            "SELECT * FROM sales.customers;",
        ]):  # fmt: skip
            tt += timedelta(seconds=0 if i == 0 else rng.uniform(10, 40))
            plan.add(tt, "step", key, Sql(s), inc.incident_id)
        plan.add(tt + timedelta(seconds=rng.uniform(5, 30)), "close", key)
        incidents.append(inc)

    # 2. copy_export: Wednesday 2026-10-21 22:40, analyst_ben COPYs cards and customers out
    t = when(16, 22, 40)
    if t:
        inc = Incident(
            "INC-2",
            "analyst_ben",
            "copy_export",
            "analyst_ben at 22:40 from psql: COPY sales.cards TO STDOUT, then"
            " COPY (SELECT ... FROM sales.customers) TO STDOUT (all rows of both)",
            "psql",
        )
        steps = [
            (0.0, Sql("COPY sales.cards TO STDOUT;")),
            (rng.uniform(20, 60), Sql(
                "COPY (SELECT customer_id, full_name, email, phone, street, city, country,"
                " birth_date FROM sales.customers) TO STDOUT WITH (FORMAT csv, HEADER);")),
        ]  # fmt: skip
        plan.session("analyst_ben", t, steps, rng=rng, kind="psql", app="psql",
                     incident=inc.incident_id, linger=(3, 20))  # fmt: skip
        incidents.append(inc)

    # 3. dump_wrong_account: Thursday 2026-10-22 13:05, pg_dump of schema sales by support_eve
    t = when(17, 13, 5)
    if t:
        inc = Incident(
            "INC-3",
            "support_eve",
            "dump_wrong_account",
            "real pg_dump -n sales run with support_eve's credentials at lunch time"
            " (the nightly dump by backup is normal; this one is not)",
            "pg_dump",
        )
        plan.add(t, "pg_dump", "support_eve", ("support_eve", ["-n", "sales"]), inc.incident_id)
        incidents.append(inc)

    # 4. cursor_pull: Friday 2026-10-23 04:20, reporting_svc pages through all of sales.orders
    t = when(18, 4, 20)
    if t:
        inc = Incident(
            "INC-4",
            "reporting_svc",
            "cursor_pull",
            "reporting_svc declares a cursor over all of sales.orders and FETCHes it in pages"
            " of 1000 at 04:20 (pgAudit logs only the DECLARE CURSOR, with 0 rows)",
            APP["reporting_svc"],
        )
        steps = [
            (0.0, CursorRead("c_orders", "SELECT * FROM sales.orders", None, page=1000)),
        ]
        plan.session("reporting_svc", t - timedelta(seconds=0.5), steps, rng=rng,
                     incident=inc.incident_id, linger=(0.5, 2))  # fmt: skip
        incidents.append(inc)
    incidents.sort(key=lambda i: i.incident_id)
    return incidents


# ----------------------------------------------------------------------------- execution
class SimClock:
    """Our view of the server's faked wall clock (offset read back from the faketime file)."""

    def __init__(self, pg: Any, faketime_file: Path) -> None:
        self.pg = pg
        self.file = faketime_file
        self.offset = 0.0
        self.sets = 0

    def _read_offset(self, fallback: float) -> float:
        try:
            text = self.file.read_text().strip()
        except OSError:
            return fallback
        m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)s?", text)
        return float(m.group(1)) if m else fallback

    def set(self, when: datetime) -> None:
        self.pg.set_clock(when)
        self.offset = self._read_offset(when.timestamp() - time.time())
        self.sets += 1

    def now_ts(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ts(), UTC)

    def advance_to(self, when: datetime) -> None:
        """Jump forward to `when`; never backwards (late events just run now)."""
        before = self.now_ts()
        if when.timestamp() > before + 1.0:
            self.set(when)
            if self.now_ts() < before:
                raise RuntimeError("server clock would go backwards")


class PsqlSession:
    """A real interactive psql process; each statement is followed by an \\echo marker."""

    def __init__(self, psql: Path, port: int, user: str, app: str | None, err: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if app and app != "psql":
            env["PGAPPNAME"] = app
        self.proc = subprocess.Popen(
            [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0",
             "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", DB],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
        )  # fmt: skip
        self._n = 0
        self.run("")  # wait until connected

    def run(self, sql: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._n += 1
        marker = f"__trovewatch_{self._n}__".encode()
        payload = (sql.rstrip() + "\n" if sql else "") + f"\\echo {marker.decode()}\n"
        self.proc.stdin.write(payload.encode())
        self.proc.stdin.flush()
        for lines, line in enumerate(self.proc.stdout):
            if line.rstrip(b"\n") == marker:
                return lines
        raise RuntimeError(f"psql exited (code {self.proc.wait()}) while running {sql!r}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(b"\\q\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Backends:
    """Counts the server's client backends (children of the postmaster) through /proc.

    A client's close() returns before its backend has logged "disconnection"; waiting
    for the backend to exit before the next clock jump keeps the log in time order.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pm = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.children = Path(f"/proc/{self.pm}/task/{self.pm}/children")
        self.warned = False

    def _pids(self) -> list[str]:
        try:
            return self.children.read_text().split()
        except OSError:  # no CONFIG_PROC_CHILDREN: scan /proc
            out = []
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        stat = Path(f"/proc/{p}/stat").read_text()
                    except OSError:
                        continue
                    if stat.rsplit(")", 1)[1].split()[1] == str(self.pm):
                        out.append(p)
            return out

    def count(self) -> int:
        n = 0
        for p in self._pids():
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"postgres: ") and b"127.0.0.1(" in cmd:
                n += 1
        return n

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() > n:
            if time.monotonic() > deadline:
                if not self.warned:
                    print("warning: a backend did not exit in time; log order may suffer",
                          file=sys.stderr)  # fmt: skip
                    self.warned = True
                return
            time.sleep(0.001)


class Runner:
    def __init__(
        self, pg: Any, clock: SimClock, bin_dir: Path, tmp: Path, incidents: list[Incident]
    ) -> None:
        import psycopg

        self.psycopg = psycopg
        self.pg, self.clock, self.bin_dir = pg, clock, bin_dir
        self.sessions: dict[str, tuple[str, Any, str]] = {}
        self.incidents = {i.incident_id: i for i in incidents}
        self.stats: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.psql_err = open(tmp / "psql.stderr", "ab")  # noqa: SIM115
        self.dump_secs: list[float] = []
        data_dir = getattr(pg, "data_dir", None) or Path(pg.base_dir) / "data"
        self.backends = Backends(Path(data_dir))

    def run(self, events: list[Event], progress: bool = True) -> None:
        events.sort()
        t_real = time.monotonic()
        last_day = None
        for ev in events:
            self.clock.advance_to(ev.t)
            if progress and ev.t.date() != last_day:
                last_day = ev.t.date()
                print(f"  {last_day} ({time.monotonic() - t_real:6.1f} s real)", file=sys.stderr)
            self.dispatch(ev)
        for key in list(self.sessions):
            self._close(key)

    def _record(self, ev: Event, t0: datetime, pid: int | None) -> None:
        if ev.incident is None:
            return
        inc = self.incidents[ev.incident]
        t1 = self.clock.now()
        inc.start = t0 if inc.start is None else min(inc.start, t0)
        inc.end = t1 if inc.end is None else max(inc.end, t1)
        if pid:
            inc.pids.add(pid)

    def dispatch(self, ev: Event) -> None:
        if ev.op == "open":
            user, app, kind = ev.arg
            if kind == "psql":
                conn: Any = PsqlSession(
                    self.bin_dir / "psql", self.pg.port, user, app, self.psql_err
                )
            else:
                conn = self.psycopg.connect(
                    self.pg.dsn(user, DB), application_name=app, autocommit=True
                )
            self.sessions[ev.key] = (kind, conn, user)
            self.stats["sessions"] += 1
        elif ev.op == "close":
            self._close(ev.key)
        elif ev.op == "step":
            kind, conn, user = self.sessions[ev.key]
            t0 = self.clock.now()
            n = self._step(kind, conn, user, ev.arg)
            self.rows[user] += n
            self._record(ev, t0, None if kind == "psql" else conn.info.backend_pid)
        elif ev.op == "pg_dump":
            user, extra = ev.arg
            t0 = self.clock.now()
            self._pg_dump(user, extra)
            self._record(ev, t0, None)
        else:
            raise ValueError(ev.op)

    def _close(self, key: str) -> None:
        entry = self.sessions.pop(key, None)
        if entry is not None:
            entry[1].close()
            self.backends.wait_for(len(self.sessions))

    def _exec(self, cur: Any, s: Sql, user: str) -> int:
        try:
            cur.execute(s.sql, s.params)
            self.stats["statements"] += 1
            return len(cur.fetchall()) if cur.description else max(cur.rowcount, 0)
        except self.psycopg.Error as e:
            self.stats["errors"] += 1
            if not s.expect_error:
                self.unexpected.append(f"{user}: {s.sql[:80]!r}: {e}")
            return 0

    def _step(self, kind: str, conn: Any, user: str, step: Step) -> int:
        if kind == "psql":
            assert isinstance(step, Sql)
            self.stats["statements"] += 1
            return int(conn.run(step.sql))
        if isinstance(step, Sql):
            with conn.cursor() as cur:
                return self._exec(cur, step, user)
        if isinstance(step, Tx):
            n = 0
            with conn.transaction(), conn.cursor() as cur:
                for s in step.stmts:
                    n += self._exec(cur, s, user)
            return n
        if isinstance(step, CursorRead):
            n = 0
            with conn.transaction(), conn.cursor(name=step.name) as cur:
                cur.execute(step.sql, step.params)
                self.stats["statements"] += 1
                pages = 0
                while step.max_pages is None or pages < step.max_pages:
                    batch = cur.fetchmany(step.page)
                    pages += 1
                    n += len(batch)
                    if len(batch) < step.page:
                        break
            return n
        if isinstance(step, Call):
            self.stats["statements"] += 1
            return step.fn(conn)
        raise TypeError(step)

    def _pg_dump(self, user: str, extra: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        t = time.monotonic()
        res = subprocess.run(
            [str(self.bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg.port),
             "-U", user, "-d", DB, "-f", os.devnull, *extra],
            env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.backends.wait_for(len(self.sessions))
        self.dump_secs.append(time.monotonic() - t)
        self.stats["pg_dump runs"] += 1
        if res.returncode != 0:
            raise RuntimeError(f"pg_dump as {user} failed ({res.returncode}):\n{res.stderr}")


def run_setup(pg: Any, seed: int) -> None:
    import psycopg

    roles, corp = setup_statements(seed)
    with psycopg.connect(pg.dsn(), autocommit=True, application_name="schema-migrate") as c:
        for s in roles:
            c.execute(s)
    with psycopg.connect(pg.dsn("postgres", DB), autocommit=True,
                         application_name="schema-migrate") as c:  # fmt: skip
        for s in corp:
            c.execute(s)


# ----------------------------------------------------------------------------- log parsing
STDERR_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC) \[(\d+)\] ")
SEVERITY = re.compile(r" (LOG|ERROR|STATEMENT|FATAL|WARNING|DETAIL|HINT|CONTEXT|PANIC):  ")


@dataclass
class Rec:
    ts: str
    pid: int
    severity: str
    message: str
    user: str = ""
    app: str = ""
    backend: str = ""


def parse_json(path: Path) -> list[Rec]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(Rec(
                d["timestamp"], int(d["pid"]), d.get("error_severity", ""), d.get("message", ""),
                d.get("user", ""), d.get("application_name", ""), d.get("backend_type", ""),
            ))  # fmt: skip
    return out


def parse_csv(path: Path) -> list[Rec]:
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            out.append(Rec(row[0], int(row[3]), row[11], row[13], row[1], row[22], row[23]))
    return out


def parse_stderr(path: Path) -> list[Rec]:
    out: list[Rec] = []
    with path.open(encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = STDERR_START.match(line)
            if m:
                sev = SEVERITY.search(line, m.end() - 1)
                if sev is None:
                    out.append(Rec(m.group(1), int(m.group(2)), "?", line[m.end() :]))
                else:
                    out.append(Rec(m.group(1), int(m.group(2)), sev.group(1), line[sev.end() :]))
            elif out and line.startswith("\t"):
                out[-1].message += "\n" + line[1:]
            elif out:
                out[-1].message += "\n" + line
    return out


def audit_keys(recs: Iterable[Rec]) -> Counter[tuple[str, int, str]]:
    return Counter((r.ts, r.pid, r.message) for r in recs if r.message.startswith("AUDIT: "))


def parse_ts(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)


def audit_fields(message: str) -> list[str]:
    return next(csv.reader(io.StringIO(message[len("AUDIT: ") :])))


# ----------------------------------------------------------------------------- main
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_prereqs() -> Path:
    try:
        import pg_cluster
        import psycopg  # noqa: F401
    except ImportError as e:
        sys.exit(f"error: {e} (run with `uv run python`; psycopg is a dev dependency)")
    bin_dir = pg_cluster.find_pg_bin()
    if bin_dir is None:
        sys.exit("error: PostgreSQL 15 not found: apt-get install postgresql-15 "
                 "(or set TROVEWATCH_PG_BIN)")  # fmt: skip
    if not pg_cluster.pgaudit_available(bin_dir):
        sys.exit("error: pgAudit not found: apt-get install postgresql-15-pgaudit")
    if getattr(pg_cluster, "LIBFAKETIME", None) is None:
        sys.exit("error: libfaketime not found: apt-get install libfaketime")
    for tool in ("psql", "pg_dump"):
        if not (bin_dir / tool).is_file():
            sys.exit(f"error: {bin_dir / tool} missing: apt-get install postgresql-client-15")
    return bin_dir


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=Path("sample_logs"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=N_DAYS, help="simulate fewer days (testing)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply ordinary activity")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the cluster's temp dir")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a postgresql.conf setting of the server, e.g. \"lc_messages='zh_CN.UTF-8'\"",
    )
    args = ap.parse_args(argv)
    settings = dict(kv.partition("=")[::2] for kv in args.set)
    if not 1 <= args.days <= N_DAYS:
        ap.error(f"--days must be 1..{N_DAYS}")

    bin_dir = check_prereqs()
    from pg_cluster import PgCluster

    t_start = time.monotonic()
    seed = args.seed

    def rng_for(name: str) -> random.Random:
        return random.Random(f"trovewatch:{seed}:{name}")

    # ---- build the whole schedule first, then run it in time order
    plan = Plan()
    ids = Ids()
    plan_web_shop(plan, rng_for("web_shop"), args.days, args.scale, ids)
    plan_web_admin(plan, rng_for("web_admin"), args.days, args.scale)
    plan_hr_app(plan, rng_for("hr_app"), args.days, args.scale)
    plan_support_eve(plan, rng_for("support_eve"), args.days, args.scale)
    plan_dina(plan, rng_for("dina"), args.days, args.scale)
    plan_analyst(plan, rng_for("anna"), "analyst_anna", args.days, args.scale)
    plan_analyst(plan, rng_for("ben"), "analyst_ben", args.days, args.scale)
    quarterly = plan_anna_quarterly(plan, rng_for("anna_q3"), args.days)
    plan_etl(plan, rng_for("etl"), args.days)
    plan_reporting(plan, rng_for("reporting"), args.days)
    plan_billing(plan, rng_for("billing"), args.days)
    plan_backup(plan, rng_for("backup"), args.days)
    plan_dba(plan, rng_for("dba"), args.days)
    incidents = plan_incidents(plan, rng_for("incidents"), args.days)
    n_steps = sum(1 for e in plan.events if e.op == "step")
    print(f"schedule: {len(plan.events)} events, {n_steps} statement steps, "
          f"{len(incidents)} incidents", file=sys.stderr)  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="trovewatch-samples-"))
    port = args.port or free_port()
    faketime = tmp / "faketime.rc"
    pg = PgCluster(tmp / "pg", port, settings, faketime_file=faketime)
    clock = SimClock(pg, faketime)
    runner: Runner | None = None
    try:
        # initdb ran on the real clock, so the first start would log "database system was
        # shut down at <today>": start and stop once under the fake clock, drop those logs
        clock.set(SETUP_AT - timedelta(minutes=7))
        pg.start()
        pg.stop()
        for f in pg.log_dir.iterdir():
            f.unlink()
        clock.set(SETUP_AT)
        pg.start()
        print(f"cluster up on port {port} in {tmp}; loading schema ...", file=sys.stderr)
        t_setup = time.monotonic()
        run_setup(pg, seed)
        print(f"  loaded in {time.monotonic() - t_setup:.1f} s", file=sys.stderr)
        runner = Runner(pg, clock, bin_dir, tmp, incidents)
        runner.run(plan.events)
    except BaseException:
        print(f"failed; cluster files and logs kept in {tmp}", file=sys.stderr)
        raise
    finally:
        if runner is not None:
            runner.psql_err.close()
        pg.stop()
    t_run = time.monotonic() - t_start

    # ---- write outputs
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in ("postgresql.log", "postgresql.csv", "postgresql.json"):
        src = pg.log_dir / name
        dst = args.out / (name + ".gz")
        with (
            src.open("rb") as fi,
            dst.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as fo,
        ):
            shutil.copyfileobj(fi, fo)
        sizes[name] = (src.stat().st_size, dst.stat().st_size)
    for inc in incidents:
        if inc.start is None or inc.end is None:
            raise RuntimeError(f"{inc.incident_id} never ran")
    with (args.out / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["incident_id", "account", "start", "end", "kind", "description"])
        for inc in incidents:
            assert inc.start is not None and inc.end is not None
            start = inc.start.replace(microsecond=0)
            end = inc.end.replace(microsecond=0) + timedelta(seconds=1)
            w.writerow([inc.incident_id, inc.account, iso(start), iso(end), inc.kind,
                        inc.description])  # fmt: skip

    if settings:  # the checks read the default settings' logs: UTC, English
        print(f"wrote {args.out}; not verified (--set {' '.join(args.set)})", file=sys.stderr)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0

    # ---- verify
    problems = verify(pg.log_dir, incidents, args.days)
    assert runner is not None
    problems += [f"unexpected SQL error: {u}" for u in runner.unexpected]
    total_gz = sum(gz for _, gz in sizes.values())
    if total_gz > SIZE_LIMIT:
        problems.append(f"compressed output {total_gz} bytes > {SIZE_LIMIT}")

    summary(pg.log_dir, runner, incidents, sizes, t_run, clock, quarterly)
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  - " + p)
        return 1
    print("\nverification: OK")
    return 0


def verify(log_dir: Path, incidents: list[Incident], days: int) -> list[str]:
    problems: list[str] = []
    js = parse_json(log_dir / "postgresql.json")
    cs = parse_csv(log_dir / "postgresql.csv")
    se = parse_stderr(log_dir / "postgresql.log")
    kj, kc, ks = audit_keys(js), audit_keys(cs), audit_keys(se)
    if kj != kc:
        problems.append(f"jsonlog vs csvlog AUDIT records differ ({len(kj)} vs {len(kc)})")
    if kj != ks:
        problems.append(f"jsonlog vs stderr AUDIT records differ ({sum(kj.values())} vs "
                        f"{sum(ks.values())}); e.g. {list((kj - ks).items())[:1]}")  # fmt: skip
    # time order: file order must be (nearly) monotonic, and span the simulated days
    worst = 0.0
    prev = None
    for r in js:
        t = parse_ts(r.ts)
        if prev is not None:
            worst = max(worst, (prev - t).total_seconds())
            prev = max(prev, t)
        else:
            prev = t
    if worst > 1.0:
        problems.append(f"log time goes back by up to {worst:.3f} s")
    audit_ts = [parse_ts(r.ts) for r in js if r.message.startswith("AUDIT: ")]
    end = START + timedelta(days=days)
    if min(audit_ts) < SETUP_AT or max(audit_ts) > end + timedelta(hours=1):
        problems.append(f"AUDIT timestamps outside {SETUP_AT}..{end}")
    per_day = Counter(t.date() for t in audit_ts if t >= START)
    for d in range(days):
        if per_day[(START + timedelta(days=d)).date()] == 0:
            problems.append(f"no AUDIT records on day {d + 1}")
    # incidents: their sessions' records are inside the labelled window
    for inc in incidents:
        assert inc.start is not None and inc.end is not None
        lo = inc.start.replace(microsecond=0)
        hi = inc.end.replace(microsecond=0) + timedelta(seconds=1)
        mine = [
            r for r in js
            if r.user == inc.account and r.app == inc.app
            and (r.pid in inc.pids if inc.pids else lo - timedelta(minutes=5) <= parse_ts(r.ts)
                 <= hi + timedelta(minutes=5))
            and r.severity in ("LOG", "ERROR") and not r.message.startswith(
                ("connection", "disconnection"))
        ]  # fmt: skip
        if not any(r.message.startswith("AUDIT: ") for r in mine):
            problems.append(f"{inc.incident_id}: no AUDIT record found")
        outside = [r for r in mine if not lo <= parse_ts(r.ts) <= hi]
        if outside:
            problems.append(f"{inc.incident_id}: {len(outside)} records outside the label window")
    return problems


def summary(
    log_dir: Path,
    runner: Runner,
    incidents: list[Incident],
    sizes: dict[str, tuple[int, int]],
    t_run: float,
    clock: SimClock,
    quarterly: str | None,
) -> None:
    js = parse_json(log_dir / "postgresql.json")
    stmts: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    sessions: Counter[str] = Counter()
    seen: set[tuple[int, str, str]] = set()
    n_parallel = 0
    per_day: Counter[str] = Counter()
    for r in js:
        if r.message.startswith("connection authorized: user="):
            sessions[r.message.split("user=")[1].split()[0]] += 1
        if not r.message.startswith("AUDIT: "):
            continue
        if r.backend == "parallel worker":
            n_parallel += 1
            continue
        f = audit_fields(r.message)
        k = (r.pid, f[1], f[2])
        if k in seen:
            continue
        seen.add(k)
        stmts[r.user] += 1
        per_day[r.ts[:10]] += 1
        if len(f) >= 10 and f[-1].isdigit():
            rows[r.user] += int(f[-1])
    print(f"\nreal run time: {t_run:.0f} s ({clock.sets} clock moves; "
          f"pg_dump runs {len(runner.dump_secs)}, {sum(runner.dump_secs):.0f} s)")  # fmt: skip
    print("files:")
    for name, (raw, gz) in sizes.items():
        print(f"  {name:18s} {raw / 1e6:8.1f} MB raw  {gz / 1e6:6.2f} MB gz")
    print(f"  total gz: {sum(gz for _, gz in sizes.values()) / 1e6:.2f} MB; "
          f"{len(js)} log records, {sum(1 for r in js if r.message.startswith('AUDIT: '))} AUDIT "
          f"({n_parallel} from parallel workers)")  # fmt: skip
    print(f"client-side: {runner.stats['statements']} statements, {runner.stats['sessions']} "
          f"sessions, {runner.stats['errors']} failed statements (expected)")  # fmt: skip
    print("per account (audited statements / rows per pgAudit / sessions):")
    for user in sorted(set(stmts) | set(sessions)):
        print(f"  {user or '(none)':18s} {stmts[user]:6d} {rows[user]:10d} {sessions[user]:6d}")
    days = sorted(d for d in per_day if d >= START.date().isoformat())
    print("audited statements per day: " + " ".join(f"{d[5:]}:{per_day[d]}" for d in days))
    if quarterly:
        print(f"benign big job: analyst_anna quarterly report starting {quarterly}")
    print("incidents:")
    for inc in incidents:
        assert inc.start is not None and inc.end is not None
        print(f"  {inc.incident_id} {inc.kind:19s} {inc.account:14s} {iso(inc.start)} .. "
              f"{iso(inc.end)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
