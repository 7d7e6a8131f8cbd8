#!/usr/bin/env python3
"""Independent held-out population for trovewatch: a European HR/payroll SaaS on ONE
MariaDB 10.11 server, written as that server's server_audit log
(server_audit_events=CONNECT,QUERY,TABLE) and slow log (long_query_time=0,
log_slow_verbosity=query_plan), as the real server writes them.

Written by a held-out evaluator without reading trovewatch's simulator, tests, parsers or
docs/evaluation.md (only the README, the real server output in reference-logs and the
server-format sections of docs/formats-mariadb.md).

Usage:
    python3 scripts/independent_mariadb_population.py --out DIR --seed N [--tz Europe/Berlin|UTC] [--no-gzip]

then, e.g.:
    LOGS="$(ls DIR/server_audit.log* DIR/slow.log*)"
    trovewatch train --model-dir DIR/model --until 2026-10-26T00:00:00Z $LOGS
    trovewatch score --model-dir DIR/model --since 2026-10-26T00:00:00Z --out DIR/scores.ndjson $LOGS
    trovewatch evaluate --model-dir DIR/model --labels DIR/labels.csv --since 2026-10-26T00:00:00Z --train-until 2026-10-26T00:00:00Z $LOGS

Writes into DIR:
    server_audit.log, server_audit.log.01 .. .NN   (size rotation, .01 = newest rotated)
    slow.log, slow.log.1, slow.log.2.gz ...         (Debian logrotate: daily, delaycompress)
    labels.csv    incident_id,account,start,end,kind,description  (UTC ISO-8601)
    unusual.csv   unlabelled legitimate oddities of the scored week
    truth.csv     per account per UTC day: statements, reads, rows_read, bytes_sent, exports,
                  export_rows, failed, connects, failed_connects
    meta.json     dates (train_until), accounts and roles

28 days from 2026-10-05 (Mon) to 2026-11-01 (Sun), server local time zone --tz
(the server writes its local time in the audit log and the slow log's `# Time:`;
`SET timestamp=` is a Unix time). Train until 2026-10-26T00:00:00Z, score the last
7 days. Europe/Berlin leaves daylight saving time on 2026-10-25 (02:00-03:00 twice).
Deterministic by --seed.
"""

import argparse
import bisect
import csv
import datetime as dt
import gzip
import json
import math
import os
import random
from collections import defaultdict
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
START = dt.date(2026, 10, 5)
NDAYS = 28
SCORE_FROM = dt.date(2026, 10, 26)
HOLIDAYS = {
    dt.date(2026, 10, 26)
}  # public holiday (Nationalfeiertag at the Vienna office; tenants quiet)
SERVERHOST = "db-hr-prod-01"

# table: (rows, avg row bytes, columns)
TABLES = {
    "hr.employees": (
        240000,
        420,
        "id, tenant_id, personnel_no, first_name, last_name, email, birth_date, department_id, position_id, hired_on, status",
    ),
    "hr.contracts": (
        310000,
        300,
        "id, employee_id, tenant_id, kind, start_date, end_date, weekly_hours, gross_salary_cents",
    ),
    "hr.departments": (9000, 120, "id, tenant_id, name, cost_center_id, manager_id"),
    "hr.positions": (30000, 150, "id, tenant_id, title, grade"),
    "hr.addresses": (260000, 200, "id, employee_id, street, zip, city, country"),
    "hr.emergency_contacts": (180000, 160, "id, employee_id, name, phone, relation"),
    "hr.documents": (900000, 250, "id, employee_id, kind, storage_key, uploaded_at"),
    "payroll.payslips": (
        5200000,
        380,
        "id, employee_id, tenant_id, period, gross_cents, net_cents, tax_cents, social_cents, iban_masked",
    ),
    "payroll.payslip_lines": (30000000, 90, "id, payslip_id, component_id, amount_cents"),
    "payroll.salary_components": (1200, 100, "id, code, label, taxable"),
    "payroll.tax_data": (240000, 200, "employee_id, tax_id, tax_class, church_tax, allowances"),
    "payroll.social_security": (
        240000,
        180,
        "employee_id, ssn, health_insurer, contribution_group",
    ),
    "payroll.payroll_runs": (15000, 120, "id, tenant_id, period, status, started_at, finished_at"),
    "bank.bank_accounts": (250000, 160, "id, employee_id, iban, bic, holder_name"),
    "bank.sepa_mandates": (120000, 200, "id, tenant_id, creditor_id, iban, signed_on"),
    "bank.transfers": (
        4000000,
        150,
        "id, payroll_run_id, employee_id, iban, amount_cents, executed_at",
    ),
    "timeoff.absences": (2000000, 110, "id, employee_id, kind, from_date, to_date, status"),
    "timeoff.sick_notes": (300000, 140, "id, employee_id, from_date, to_date, doctor_ref"),
    "timeoff.balances": (240000, 80, "employee_id, year, days_total, days_taken"),
    "core.tenants": (1800, 300, "id, name, country, plan, created_at"),
    "core.users": (260000, 200, "id, tenant_id, employee_id, login, password_hash, last_login_at"),
    "core.sessions": (1000000, 150, "id, user_id, created_at, expires_at, ip"),
    "core.audit_trail": (20000000, 200, "id, tenant_id, user_id, action, entity, entity_id, at"),
    "core.feature_flags": (300, 80, "name, tenant_id, enabled"),
    "finance.invoices": (90000, 250, "id, tenant_id, period, amount_cents, status, due_on"),
    "finance.ledger": (1500000, 120, "id, account_code, tenant_id, amount_cents, booked_on, ref"),
    "finance.cost_centers": (20000, 100, "id, tenant_id, code, name"),
    "finance.tenant_billing": (1800, 200, "tenant_id, iban, vat_id, plan, seats"),
    "support.tickets": (
        400000,
        500,
        "id, tenant_id, requester_id, subject, status, priority, created_at",
    ),
    "support.ticket_comments": (2000000, 400, "id, ticket_id, author_id, body, created_at"),
    "support.kb_articles": (3000, 2000, "id, title, body, updated_at"),
    "support.macros": (200, 300, "id, name, body"),
    "benefits.plans": (4000, 200, "id, tenant_id, name, kind, employer_share_cents"),
    "benefits.enrolments": (90000, 150, "id, employee_id, plan_id, since, status"),
}
DATA_TABLES = [t for t in TABLES if not t.startswith("benefits.")]

NAMES = (
    "schmidt mueller schneider fischer weber meyer wagner becker schulz hoffmann koch richter klein "
    "wolf schroeder neumann schwarz braun zimmermann krueger hartmann lange werner krause lehmann "
    "koehler maier huber kaiser fuchs peters scholz moeller weiss jung hahn vogel friedrich keller "
    "guenther frank berger winkler roth beck lorenz baumann franke albrecht ludwig winter simon "
    "kraus vogt stein jaeger otto sommer gross seidel heinrich brandt haas schreiber graf dietrich "
    "ziegler kuhn engel pohl horn busch bergmann thomas voigt sauer arnold wolff pfeiffer"
).split()
INITIALS = "abcdefghijklmnoprstuvwz"


# hour weights (local time), 24 entries
def prof(pairs):
    w = [0.0] * 24
    for a, b, v in pairs:
        for h in range(a, b):
            w[h] = v
    return w


OFFICE = prof(
    [(7, 8, 0.3), (8, 12, 1.0), (12, 13, 0.5), (13, 17, 1.0), (17, 19, 0.35), (19, 21, 0.05)]
)
SUPPORT = prof([(7, 8, 0.5), (8, 12, 1.0), (12, 13, 0.7), (13, 18, 1.0), (18, 20, 0.4)])
WEBAPP = prof(
    [
        (0, 5, 0.04),
        (5, 7, 0.2),
        (7, 9, 0.7),
        (9, 17, 1.0),
        (17, 20, 0.6),
        (20, 23, 0.3),
        (23, 24, 0.1),
    ]
)
DBA = prof([(7, 9, 0.4), (9, 18, 1.0), (18, 22, 0.15), (22, 24, 0.03), (0, 7, 0.02)])


class Acct:
    def __init__(self, name, role, **kw):
        self.name = name
        self.role = role
        self.hosts = kw.pop("hosts")
        self.tables = kw.pop("tables")  # list of (table, weight)
        self.per_day = kw.pop("per_day")  # statements per ordinary weekday
        self.rows_mu = kw.pop("rows_mu")  # lognormal rows per read
        self.rows_sigma = kw.pop("rows_sigma", 1.0)
        self.day_sigma = kw.pop("day_sigma", 0.25)
        self.hours = kw.pop("hours", OFFICE)
        self.weekend = kw.pop("weekend", 0.03)
        self.write_frac = kw.pop("write_frac", 0.0)
        self.pool = kw.pop("pool", 0)
        self.db = kw.pop("db", None)
        self.first_day = kw.pop("first_day", START)
        self.last_day = kw.pop("last_day", None)
        self.growth = kw.pop("growth", 0.0)  # per week
        self.work_prob = kw.pop("work_prob", 0.92)  # humans: chance of working an ordinary weekday
        self.fail_rate = kw.pop("fail_rate", 0.0)
        self.login_fail = kw.pop("login_fail", 0.0)
        assert not kw, kw


def build_population(rng):
    accts = []
    used = set()

    def person(prefix):
        while True:
            n = f"{prefix}{rng.choice(INITIALS)}{rng.choice(NAMES)}"
            if n not in used:
                used.add(n)
                return n

    def office_ip():
        return f"10.40.{rng.randint(1, 12)}.{rng.randint(10, 250)}"

    # web applications (connection pools)
    apps = [
        (
            "app_portal",
            [
                "hr.employees",
                "hr.addresses",
                "timeoff.absences",
                "timeoff.balances",
                "payroll.payslips",
                "core.users",
                "core.sessions",
                "hr.documents",
            ],
            2600,
            1.2,
        ),
        (
            "app_admin",
            [
                "hr.employees",
                "hr.contracts",
                "hr.departments",
                "hr.positions",
                "core.users",
                "timeoff.absences",
                "hr.documents",
            ],
            1500,
            2.0,
        ),
        (
            "app_payroll_api",
            [
                "payroll.payslips",
                "payroll.payslip_lines",
                "payroll.salary_components",
                "payroll.tax_data",
                "hr.contracts",
            ],
            1300,
            2.2,
        ),
        (
            "app_mobile",
            [
                "hr.employees",
                "timeoff.absences",
                "timeoff.balances",
                "payroll.payslips",
                "core.sessions",
            ],
            1800,
            0.9,
        ),
        (
            "app_timeoff",
            ["timeoff.absences", "timeoff.balances", "timeoff.sick_notes", "hr.employees"],
            900,
            1.1,
        ),
        (
            "app_onboarding",
            [
                "hr.employees",
                "hr.contracts",
                "hr.addresses",
                "bank.bank_accounts",
                "payroll.tax_data",
                "payroll.social_security",
            ],
            500,
            0.7,
        ),
        ("app_docs", ["hr.documents", "hr.employees"], 700, 1.0),
        (
            "app_notify",
            ["core.users", "hr.employees", "timeoff.absences", "core.feature_flags"],
            600,
            1.5,
        ),
        ("app_billing", ["finance.invoices", "finance.tenant_billing", "core.tenants"], 300, 1.3),
        (
            "app_support_desk",
            [
                "support.tickets",
                "support.ticket_comments",
                "support.kb_articles",
                "support.macros",
                "core.tenants",
            ],
            1100,
            1.4,
        ),
    ]
    for i, (name, tabs, per_day, mu) in enumerate(apps):
        hosts = [f"10.10.{i + 1}.{11 + k}" for k in range(3)]
        accts.append(
            Acct(
                name,
                "webapp",
                hosts=hosts,
                tables=[(t, 1.0 / (j + 1)) for j, t in enumerate(tabs)],
                per_day=per_day,
                rows_mu=mu,
                rows_sigma=0.9,
                day_sigma=0.12,
                hours=WEBAPP,
                weekend=0.35,
                write_frac=0.22,
                pool=8,
                db=tabs[0].split(".")[0],
                growth=0.02,
            )
        )
    # batch / ETL (scheduled, local time)
    batch = [
        ("etl_bank_sync", ["bank.transfers", "bank.bank_accounts"], 2, 40, 3000),
        (
            "etl_datev_export",
            ["payroll.payslips", "payroll.payslip_lines", "finance.ledger"],
            1,
            30,
            60000,
        ),
        ("etl_search_index", ["hr.employees", "hr.departments", "hr.positions"], 0, 120, 2500),
        ("etl_sso_sync", ["core.users", "core.tenants"], 5, 60, 800),
        ("etl_gl_export", ["finance.ledger", "finance.cost_centers"], 3, 20, 20000),
        ("etl_audit_archive", ["core.audit_trail"], 4, 50, 9000),
        ("etl_absence_digest", ["timeoff.absences", "hr.employees"], 6, 25, 4000),
        (
            "payroll_batch",
            [
                "payroll.payroll_runs",
                "hr.contracts",
                "payroll.tax_data",
                "payroll.social_security",
                "payroll.payslips",
            ],
            1,
            60,
            3000,
        ),
    ]
    for i, (name, tabs, hour, n, rows) in enumerate(batch):
        a = Acct(
            name,
            "batch",
            hosts=[f"10.10.50.{20 + i}"],
            tables=[(t, 1.0) for t in tabs],
            per_day=n,
            rows_mu=math.log(rows),
            rows_sigma=0.35,
            day_sigma=0.08,
            hours=prof([(hour, hour + 1, 1.0)]),
            weekend=1.0,
            write_frac=0.3,
            db=tabs[0].split(".")[0],
        )
        accts.append(a)
    # the tax office export writes a file every night (the one legitimate INTO OUTFILE user)
    accts.append(
        Acct(
            "etl_tax_export",
            "batch_outfile",
            hosts=["10.10.50.40"],
            tables=[("payroll.tax_data", 1.0), ("payroll.payslips", 1.0)],
            per_day=6,
            rows_mu=math.log(5000),
            rows_sigma=0.3,
            day_sigma=0.05,
            hours=prof([(2, 3, 1.0)]),
            weekend=1.0,
            db="payroll",
        )
    )
    # nightly backup
    accts.append(
        Acct(
            "backup",
            "backup",
            hosts=["localhost"],
            tables=[],
            per_day=0,
            rows_mu=0,
            hours=prof([(1, 2, 1.0)]),
            weekend=1.0,
        )
    )
    # BI / reporting services
    bi = [
        (
            "bi_metabase",
            [
                "hr.employees",
                "hr.departments",
                "timeoff.absences",
                "payroll.payroll_runs",
                "support.tickets",
            ],
            220,
            5.5,
        ),
        (
            "bi_tableau",
            ["payroll.payslips", "finance.ledger", "finance.invoices", "hr.contracts"],
            90,
            6.5,
        ),
        (
            "rpt_finance",
            [
                "finance.ledger",
                "finance.invoices",
                "finance.cost_centers",
                "finance.tenant_billing",
            ],
            25,
            6.0,
        ),
        ("rpt_headcount", ["hr.employees", "hr.contracts", "hr.departments"], 15, 6.8),
        ("rpt_sla", ["support.tickets", "support.ticket_comments"], 30, 5.0),
    ]
    for i, (name, tabs, per_day, mu) in enumerate(bi):
        accts.append(
            Acct(
                name,
                "bi",
                hosts=[f"10.10.60.{10 + i}"],
                tables=[(t, 1.0) for t in tabs],
                per_day=per_day,
                rows_mu=mu,
                rows_sigma=1.3,
                day_sigma=0.35,
                hours=OFFICE,
                weekend=0.15,
                db=tabs[0].split(".")[0],
            )
        )
    # human analysts (people analytics, payroll analysts); some heavy-tailed
    an_tabs = [
        "hr.employees",
        "hr.contracts",
        "hr.departments",
        "payroll.payslips",
        "payroll.payroll_runs",
        "timeoff.absences",
        "timeoff.sick_notes",
        "payroll.tax_data",
    ]
    for i in range(34):
        heavy = i % 3 == 0
        tabs = rng.sample(an_tabs, rng.randint(3, 5))
        accts.append(
            Acct(
                person("an_"),
                "analyst",
                hosts=[office_ip(), f"10.80.{rng.randint(0, 3)}.{rng.randint(2, 250)}"],
                tables=[(t, rng.random() + 0.2) for t in tabs],
                per_day=rng.randint(20, 90),
                rows_mu=rng.uniform(4.0, 6.5),
                rows_sigma=1.4 if heavy else 1.0,
                day_sigma=1.1 if heavy else 0.45,
                hours=OFFICE,
                weekend=0.04,
                fail_rate=0.03,
                login_fail=0.03,
                db=tabs[0].split(".")[0],
            )
        )
    # finance staff
    fin_tabs = [
        "finance.invoices",
        "finance.ledger",
        "finance.cost_centers",
        "finance.tenant_billing",
        "core.tenants",
        "bank.sepa_mandates",
    ]
    for i in range(14):
        tabs = rng.sample(fin_tabs, rng.randint(3, 5))
        accts.append(
            Acct(
                person("fin_"),
                "finance",
                hosts=[office_ip()],
                tables=[(t, rng.random() + 0.2) for t in tabs],
                per_day=rng.randint(25, 70),
                rows_mu=rng.uniform(2.5, 4.5),
                rows_sigma=1.0,
                day_sigma=0.4,
                hours=OFFICE,
                weekend=0.02,
                fail_rate=0.02,
                login_fail=0.03,
                db="finance",
            )
        )
    # support staff
    sp_tabs = [
        "support.tickets",
        "support.ticket_comments",
        "support.kb_articles",
        "hr.employees",
        "core.users",
        "core.tenants",
        "timeoff.absences",
    ]
    for i in range(52):
        tabs = ["support.tickets", "support.ticket_comments"] + rng.sample(
            sp_tabs[2:], rng.randint(1, 4)
        )
        accts.append(
            Acct(
                person("sp_"),
                "support",
                hosts=[office_ip()],
                tables=[
                    (t, 2.0 if t.startswith("support.t") else rng.random() + 0.2) for t in tabs
                ],
                per_day=rng.randint(60, 160),
                rows_mu=rng.uniform(0.8, 2.0),
                rows_sigma=0.9,
                day_sigma=0.3,
                hours=SUPPORT,
                weekend=0.08,
                fail_rate=0.01,
                login_fail=0.02,
                db="support",
            )
        )
    # DBAs: catalogs, processlist, their own maintenance; never the data tables' contents
    for i in range(5):
        accts.append(
            Acct(
                person("dba_"),
                "dba",
                hosts=[f"10.40.200.{10 + i}", f"10.80.9.{10 + i}"],
                tables=[],
                per_day=rng.randint(20, 60),
                rows_mu=2.0,
                rows_sigma=1.0,
                day_sigma=0.7,
                hours=DBA,
                weekend=0.1,
                fail_rate=0.02,
                db=None,
            )
        )
    # new accounts in the scored week
    for i, day in enumerate([dt.date(2026, 10, 27), dt.date(2026, 10, 27), dt.date(2026, 10, 29)]):
        tabs = ["support.tickets", "support.ticket_comments", "support.kb_articles", "core.tenants"]
        accts.append(
            Acct(
                person("sp_"),
                "support",
                hosts=[office_ip()],
                tables=[(t, 1.0) for t in tabs],
                per_day=rng.randint(40, 90),
                rows_mu=1.5,
                rows_sigma=0.9,
                day_sigma=0.3,
                hours=SUPPORT,
                weekend=0.0,
                first_day=day,
                db="support",
            )
        )
    accts.append(
        Acct(
            "app_benefits",
            "webapp",
            hosts=["10.10.20.11", "10.10.20.12"],
            tables=[
                ("benefits.enrolments", 1.0),
                ("benefits.plans", 0.6),
                ("hr.employees", 0.5),
                ("hr.contracts", 0.2),
            ],
            per_day=900,
            rows_mu=1.0,
            rows_sigma=0.9,
            day_sigma=0.1,
            hours=WEBAPP,
            weekend=0.35,
            write_frac=0.2,
            pool=6,
            db="benefits",
            first_day=dt.date(2026, 10, 28),
        )
    )
    accts.append(
        Acct(
            person("an_"),
            "analyst",
            hosts=[office_ip()],
            tables=[("hr.employees", 1.0), ("hr.departments", 1.0), ("timeoff.absences", 0.5)],
            per_day=40,
            rows_mu=4.5,
            rows_sigma=1.0,
            day_sigma=0.5,
            hours=OFFICE,
            weekend=0.0,
            first_day=dt.date(2026, 10, 28),
            db="hr",
        )
    )
    # a contractor who left after two weeks (no activity in the scored week)
    accts.append(
        Acct(
            person("an_"),
            "analyst",
            hosts=[office_ip()],
            tables=[("hr.employees", 1.0), ("payroll.payslips", 1.0)],
            per_day=30,
            rows_mu=4.5,
            hours=OFFICE,
            last_day=dt.date(2026, 10, 16),
            db="hr",
        )
    )
    # operational root (logrotate's flush, monitoring)
    accts.append(
        Acct(
            "monitor",
            "monitor",
            hosts=["10.40.200.2"],
            tables=[],
            per_day=288,
            rows_mu=1.5,
            rows_sigma=0.3,
            day_sigma=0.01,
            hours=prof([(0, 24, 1.0)]),
            weekend=1.0,
            db=None,
        )
    )
    return accts


class World:
    def __init__(self, seed, tz):
        self.rng = random.Random(seed)
        self.tz = ZoneInfo(tz)
        self.stmts = []  # dicts
        self.conns = []  # dicts
        self.failed_logins = []
        self.labels = []
        self.unusual = []

    # --- time helpers
    def local(self, day, h, m=0, s=0.0):
        """a local wall-clock time on `day` as a UTC epoch float (fold=0 on the repeated hour)"""
        t = dt.datetime(day.year, day.month, day.day, tzinfo=self.tz) + dt.timedelta(
            hours=h, minutes=m, seconds=s
        )
        # walk wall clock: build from naive then localize
        naive = dt.datetime(day.year, day.month, day.day) + dt.timedelta(
            hours=h, minutes=m, seconds=s
        )
        t = naive.replace(tzinfo=self.tz)
        return t.timestamp()

    def rand_time(self, day, weights):
        h = self.rng.choices(range(24), weights=weights)[0]
        return self.local(day, h, 0, self.rng.uniform(0, 3600))

    # --- statement text
    def read_text(self, acct, table, rows, style):
        rng = self.rng
        db, t = table.split(".")
        cols = TABLES[table][2]
        alias = t[0]
        tenant = rng.randint(1, 1800)
        if style == "app":
            if rows <= 1:
                return (
                    f"SELECT {cols} FROM `{t}` WHERE id = {rng.randint(1, TABLES[table][0])}"
                    if acct.db == db
                    else f"SELECT {cols} FROM {table} WHERE id = {rng.randint(1, TABLES[table][0])}"
                )
            return (
                f"SELECT {alias}.* FROM {table} {alias} WHERE {alias}.tenant_id = {tenant} ORDER BY {alias}.id LIMIT {max(rows, 1)}"
                if "tenant_id" in cols
                else f"SELECT {cols} FROM {table} WHERE employee_id IN ({', '.join(str(rng.randint(1, 240000)) for _ in range(min(rows, 8)))})"
            )
        if style == "human":
            r = rng.random()
            if r < 0.25:
                return (
                    f"select * from {table} where tenant_id = {tenant}"
                    if "tenant_id" in cols
                    else f"select * from {table} limit {rows}"
                )
            if r < 0.45 and table != "hr.employees":
                return (
                    (
                        f"SELECT e.last_name, e.first_name, x.*\n  FROM {table} x\n  JOIN hr.employees e ON e.id = x.employee_id\n"
                        f" WHERE e.last_name LIKE 'M\\\\_ller%' OR e.last_name = 'O''Brien'\n LIMIT {rows}"
                    )
                    if "employee_id" in cols
                    else f"SELECT * FROM {table} WHERE id > {rng.randint(1, 1000)} LIMIT {rows}"
                )
            if r < 0.6:
                return (
                    f"SELECT count(*), status FROM {table} GROUP BY status"
                    if "status" in cols
                    else f"SELECT * FROM {table} ORDER BY 1 DESC LIMIT {rows}"
                )
            return (
                f"SELECT {cols} FROM {table} WHERE tenant_id IN (SELECT id FROM core.tenants WHERE country = 'AT') LIMIT {rows}"
                if "tenant_id" in cols
                else f"SELECT {cols} FROM {table} LIMIT {rows}"
            )
        if style == "bi":
            return f"/* metabase:card {rng.randint(1, 400)} */ SELECT `{db}`.`{t}`.*\nFROM `{db}`.`{t}`\nWHERE 1 = 1\nLIMIT {rows}"
        if style == "batch":
            return (
                f"SELECT {cols} FROM {table} WHERE updated_at >= NOW() - INTERVAL 1 DAY ORDER BY id LIMIT {rows}"
                if rng.random() < 0.5
                else f"SELECT {cols} FROM {table} WHERE id > {rng.randint(1, 10**6)} ORDER BY id LIMIT {rows}"
            )
        raise ValueError(style)

    # --- recording
    def conn(self, acct, host, t_open, t_close, db=None, prog=None):
        c = {
            "acct": acct.name if isinstance(acct, Acct) else acct,
            "host": host,
            "open": t_open,
            "close": t_close,
            "db": db if db is not None else "",
        }
        self.conns.append(c)
        return c

    def stmt(
        self,
        conn,
        start,
        text,
        kind,
        tables=(),
        rows=0,
        dur=None,
        affected=0,
        bytes_=None,
        retcode=0,
        export=False,
        table_records=True,
        db=None,
        insert_id=None,
        plan=None,
    ):
        """kind: read / write / misc / catalog / outfile / dump"""
        if dur is None:
            dur = 0.0002 + rows * 2e-6 * (1 + self.rng.random()) + self.rng.expovariate(2000)
        if bytes_ is None:
            if kind in ("read", "dump", "catalog"):
                avg = sum(TABLES.get(t, (0, 120))[1] for t in tables) or 120
                bytes_ = 60 + 40 * 8 + int(rows * avg * self.rng.uniform(0.85, 1.15)) + 5 * rows
            elif kind == "outfile":
                bytes_ = 52
            elif kind == "write":
                bytes_ = 52 + self.rng.randint(0, 8)
            else:
                bytes_ = 11
        s = {
            "conn": conn,
            "start": start,
            "end": start + dur,
            "dur": dur,
            "text": text,
            "kind": kind,
            "tables": list(tables),
            "rows": rows,
            "affected": affected,
            "bytes": bytes_,
            "retcode": retcode,
            "export": export,
            "table_records": table_records,
            "db": conn["db"] if db is None else db,
            "insert_id": insert_id,
            "plan": plan,
        }
        self.stmts.append(s)
        return s

    # --- a session of statements for an account
    def session(
        self, acct, host, times, style, tables=None, rows_scale=1.0, prefix_set=True, fail_rate=None
    ):
        rng = self.rng
        times = sorted(times)
        if not times:
            return
        c = self.conn(
            acct,
            host,
            times[0] - rng.uniform(0.05, 2),
            times[-1] + rng.uniform(0.5, 90),
            db=acct.db or "",
        )
        if prefix_set:
            self.stmt(c, times[0] - 0.03, "SET NAMES utf8mb4", "misc")
        tabs = tables or acct.tables
        fr = acct.fail_rate if fail_rate is None else fail_rate
        for t in times:
            table = rng.choices([x for x, _ in tabs], weights=[w for _, w in tabs])[0]
            if rng.random() < acct.write_frac:
                if rng.random() < 0.5:
                    n = 1
                    cols = TABLES[table][2].split(", ")
                    vals = ", ".join(
                        ["NULL"]
                        + [
                            str(rng.randint(1, 99999))
                            if "id" in c_ or "cents" in c_
                            else "'Jürgen'"
                            if "name" in c_
                            else "'2026-10-01'"
                            for c_ in cols[1:4]
                        ]
                    )
                    self.stmt(
                        c,
                        t,
                        f"INSERT INTO {table} ({', '.join(cols[:4])}) VALUES ({vals})",
                        "write",
                        [table],
                        affected=n,
                        insert_id=rng.randint(10**6, 9 * 10**6),
                    )
                else:
                    self.stmt(
                        c,
                        t,
                        f"UPDATE {table} SET updated_at = NOW() WHERE id = {rng.randint(1, TABLES[table][0])}",
                        "write",
                        [table],
                        affected=1,
                    )
                continue
            rows = max(
                0, int(round(rng.lognormvariate(acct.rows_mu, acct.rows_sigma) * rows_scale))
            )
            rows = min(rows, TABLES[table][0])
            if fr and rng.random() < fr:
                self.stmt(
                    c,
                    t,
                    f"SELECT * FROM {table.split('.')[1]}s WHERE id = 1",
                    "read",
                    [],
                    rows=0,
                    retcode=1146,
                )
                continue
            text = self.read_text(acct, table, rows, style)
            if "JOIN hr.employees" in text:
                tl = [table, "hr.employees"]
            elif "core.tenants" in text and table != "core.tenants":
                tl = [table, "core.tenants"]
            else:
                tl = [table]
            if text.startswith("SELECT count(*)"):
                rows = rng.randint(2, 6)
            self.stmt(c, t, text, "read", tl, rows=rows, plan="full" if rows > 1000 else None)
        return c

    def pool_day(self, acct, day, n, tables=None):
        """web application: pooled connections renewed every 30 minutes, statements spread over them"""
        rng = self.rng
        times = [self.rand_time(day, acct.hours) for _ in range(n)]
        buckets = defaultdict(list)
        for t in times:
            buckets[(int(t // 1800), rng.randrange(acct.pool))].append(t)
        for (blk, slot), ts in sorted(buckets.items()):
            host = acct.hosts[slot % len(acct.hosts)]
            self.session(acct, host, ts, "app", tables=tables, prefix_set=True, fail_rate=0.0)

    def catalog_session(self, acct, day, n):
        rng = self.rng
        host = acct.hosts[0] if rng.random() < 0.8 else acct.hosts[-1]
        times = sorted(self.rand_time(day, acct.hours) for _ in range(n))
        # split in work blocks
        for block in split_gaps(times, 1800):
            c = self.conn(acct, host, block[0] - 1, block[-1] + rng.uniform(5, 300))
            for t in block:
                r = rng.random()
                if r < 0.35:
                    self.stmt(
                        c,
                        t,
                        "SHOW FULL PROCESSLIST",
                        "misc",
                        rows=rng.randint(20, 200),
                        bytes_=rng.randint(3000, 30000),
                    )
                elif r < 0.6:
                    sch = rng.choice(["hr", "payroll", "bank", "core", "finance"])
                    self.stmt(
                        c,
                        t,
                        f"SELECT table_name, table_rows, data_length, index_length FROM information_schema.tables WHERE table_schema = '{sch}'",
                        "catalog",
                        [],
                        rows=rng.randint(4, 9),
                        bytes_=rng.randint(400, 1200),
                        table_records=False,
                    )
                elif r < 0.75:
                    self.stmt(
                        c,
                        t,
                        "SHOW ENGINE INNODB STATUS",
                        "misc",
                        rows=1,
                        bytes_=rng.randint(4000, 9000),
                    )
                elif r < 0.85:
                    self.stmt(
                        c,
                        t,
                        "SELECT user, host FROM mysql.user WHERE user LIKE 'app\\_%'",
                        "read",
                        ["mysql.user"],
                        rows=rng.randint(5, 12),
                        bytes_=600,
                    )
                elif r < 0.95:
                    tb = rng.choice(DATA_TABLES)
                    self.stmt(c, t, f"ANALYZE TABLE {tb}", "misc", [tb], rows=1, bytes_=150)
                else:
                    self.stmt(
                        c,
                        t,
                        "SELECT * FROM performance_schema.events_statements_summary_by_digest ORDER BY sum_timer_wait DESC LIMIT 20",
                        "catalog",
                        [],
                        rows=20,
                        bytes_=9000,
                        table_records=False,
                    )

    def monitor_day(self, acct, day):
        # every 5 minutes: a status probe over one connection
        t0 = self.local(day, 0, 0, 7.0)
        t1 = self.local(day + dt.timedelta(days=1), 0, 0, 7.0)
        t = t0
        while t < t1:
            c = self.conn(acct, acct.hosts[0], t, t + 0.05)
            self.stmt(c, t + 0.01, "SHOW GLOBAL STATUS", "misc", rows=560, bytes_=18000)
            self.stmt(
                c,
                t + 0.02,
                "SELECT COUNT(*) FROM information_schema.processlist",
                "catalog",
                [],
                rows=1,
                bytes_=80,
                table_records=False,
            )
            t += 300

    def dump(self, acct_name, host, t0, tables, single_tx, rows_frac=1.0):
        """mariadb-dump: text as 10.11's client sends it. single_tx: --single-transaction (SELECT has TABLE records);
        else LOCK TABLES (the TABLE records come at LOCK TABLES, the SELECT has none)"""
        rng = self.rng
        t = t0
        c = self.conn(acct_name, host, t - 0.01, 0, db="")
        a = Acct(acct_name, "x", hosts=[host], tables=[], per_day=0, rows_mu=0)

        def q(
            text,
            kind="misc",
            tabs=(),
            rows=0,
            dur=None,
            bytes_=None,
            tr=True,
            export=False,
            db=None,
        ):
            nonlocal t
            s = self.stmt(
                c,
                t,
                text,
                kind,
                tabs,
                rows=rows,
                dur=dur,
                bytes_=bytes_,
                export=export,
                table_records=tr,
                db=db,
            )
            t = s["end"] + rng.uniform(0.0003, 0.003)
            return s

        q("/*!40100 SET @@SQL_MODE='' */")
        q("/*!40103 SET TIME_ZONE='+00:00' */")
        if single_tx:
            q("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            q("START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */")
        q("SHOW VARIABLES LIKE 'gtid\\_mode'", rows=0, bytes_=120)
        q(
            "SELECT LOGFILE_GROUP_NAME, FILE_NAME, TOTAL_EXTENTS, INITIAL_SIZE, ENGINE, EXTRA FROM INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'UNDO LOG' AND FILE_NAME IS NOT NULL AND LOGFILE_GROUP_NAME IS NOT NULL GROUP BY LOGFILE_GROUP_NAME, FILE_NAME, ENGINE, TOTAL_EXTENTS, INITIAL_SIZE ORDER BY LOGFILE_GROUP_NAME",
            "catalog",
            tr=False,
            bytes_=250,
        )
        total = 0
        for sch in sorted({x.split(".")[0] for x in tables}):
            c["db"] = sch
            q(f"SHOW CREATE DATABASE IF NOT EXISTS `{sch}`", rows=1, bytes_=200, db=sch)
            q(
                "show tables",
                rows=len([x for x in tables if x.startswith(sch + ".")]),
                bytes_=300,
                db=sch,
            )
            mine = [x for x in tables if x.startswith(sch + ".")]
            if not single_tx:
                q(
                    "LOCK TABLES "
                    + ",".join(f"`{x.split('.')[1]}` READ /*!32311 LOCAL */" for x in mine),
                    "misc",
                    mine,
                    db=sch,
                )
            for x in mine:
                tn = x.split(".")[1]
                n = int(TABLES[x][0] * rows_frac)
                q(f"show table status like '{tn}'", rows=1, bytes_=900, db=sch)
                q("SET SQL_QUOTE_SHOW_CREATE=1", db=sch)
                q("SET SESSION character_set_results = 'binary'", db=sch)
                q(f"show create table `{tn}`", rows=1, bytes_=1500, db=sch)
                q("SET SESSION character_set_results = 'utf8mb4'", db=sch)
                q(f"show fields from `{tn}`", rows=len(TABLES[x][2].split(",")), bytes_=900, db=sch)
                cols = ", ".join(f"`{cn.strip()}`" for cn in TABLES[x][2].split(","))
                q(
                    f"SELECT /*!40001 SQL_NO_CACHE */ {cols} FROM `{tn}`",
                    "dump",
                    [x],
                    rows=n,
                    dur=n * 1.5e-6 + 0.01,
                    tr=single_tx,
                    export=True,
                    db=sch,
                )
                total += n
            if not single_tx:
                q("UNLOCK TABLES", db=sch)
        c["close"] = t + 0.01
        return t, total

    def truth(self):
        out = defaultdict(lambda: defaultdict(int))
        for s in self.stmts:
            day = dt.datetime.fromtimestamp(s["end"], UTC).date()
            a = s["conn"]["acct"]
            d = out[(a, day)]
            d["statements"] += 1
            if s["retcode"]:
                d["failed"] += 1
            if s["kind"] in ("read", "dump", "outfile"):
                d["reads"] += 1
                d["rows_read"] += s["rows"]
            if s["kind"] == "read" and s["tables"] == [] and s["retcode"] == 0:
                pass
            d["bytes_sent"] += s["bytes"]
            d["rows_sent_all"] += s["rows"] if s["kind"] != "write" else 0
            if s["export"]:
                d["exports"] += 1
                d["export_rows"] += s["rows"]
        for c in self.conns:
            day = dt.datetime.fromtimestamp(c["open"], UTC).date()
            out[(c["acct"], day)]["connects"] += 1
        for a, host, t in self.failed_logins:
            out[(a, dt.datetime.fromtimestamp(t, UTC).date())]["failed_connects"] += 1
        return out


def split_gaps(times, gap):
    blocks, cur = [], []
    for t in times:
        if cur and t - cur[-1] > gap:
            blocks.append(cur)
            cur = []
        cur.append(t)
    if cur:
        blocks.append(cur)
    return blocks


def days():
    return [START + dt.timedelta(days=i) for i in range(NDAYS)]


def day_factor(acct, day):
    wd = day.weekday()
    f = 1.0
    if wd >= 5:
        f *= acct.weekend
    if day in HOLIDAYS and acct.role not in ("batch", "backup", "batch_outfile", "monitor"):
        f *= 0.15 if acct.role == "webapp" else 0.02
    f *= (1 + acct.growth) ** ((day - START).days / 7)
    return f


def ordinary(w, accts):
    rng = w.rng
    for day in days():
        for a in accts:
            if day < a.first_day or (a.last_day and day > a.last_day):
                continue
            f = day_factor(a, day)
            if a.role in ("analyst", "finance", "support", "dba"):
                if f < 0.5 and rng.random() > f * 3:
                    continue
                if rng.random() > a.work_prob:
                    continue
                f = max(f, 0.6)
            n = int(a.per_day * f * rng.lognormvariate(0, a.day_sigma))
            if a.role == "webapp":
                w.pool_day(a, day, n)
            elif a.role in ("batch", "batch_outfile"):
                if a.name == "payroll_batch" and day.day == 15:
                    n *= 3  # mid-month advance payments run
                hour = a.hours.index(1.0)
                t = w.local(day, hour, rng.randint(0, 4), rng.uniform(0, 59))
                times = [t + i * rng.uniform(0.5, 6) for i in range(n)]
                c = w.session(a, a.hosts[0], times, "batch", fail_rate=0.0)
                if a.name == "etl_tax_export":
                    for k, tb in enumerate(["payroll.tax_data", "payroll.payslips"]):
                        rows = int(rng.lognormvariate(math.log(40000), 0.15))
                        fn = f"/var/lib/mysql-files/elster_{day:%Y%m%d}_{k}.csv"
                        w.stmt(
                            c,
                            times[-1] + 5 + k * 30,
                            f"SELECT {TABLES[tb][2]} INTO OUTFILE '{fn}' FIELDS TERMINATED BY ';' ENCLOSED BY '\"' LINES TERMINATED BY '\\n' FROM {tb} WHERE period = '{day:%Y-%m}'",
                            "outfile",
                            [tb],
                            rows=rows,
                            affected=rows,
                            export=True,
                        )
                        c["close"] = max(c["close"], times[-1] + 40 + k * 30)
            elif a.role == "backup":
                t = w.local(day, 1, 30, rng.uniform(0, 30))
                w.dump("backup", "localhost", t, DATA_TABLES, single_tx=True, rows_frac=1.0)
            elif a.role == "monitor":
                w.monitor_day(a, day)
            elif a.role == "dba":
                w.catalog_session(a, day, n)
            else:
                style = "bi" if a.role == "bi" else "human"
                times = [w.rand_time(day, a.hours) for _ in range(n)]
                for block in split_gaps(sorted(times), 2400):
                    host = a.hosts[0] if (len(a.hosts) == 1 or rng.random() < 0.85) else a.hosts[1]
                    if a.login_fail and rng.random() < a.login_fail:
                        w.failed_logins.append((a.name, host, block[0] - rng.uniform(3, 20)))
                    w.session(a, host, block, style)


def by_name(accts, role, k, rng, exclude=()):
    pool = [
        a
        for a in accts
        if a.role == role and a.first_day == START and a.last_day is None and a.name not in exclude
    ]
    return rng.sample(pool, k)


def utc_iso(t):
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scored_week(w, accts):
    rng = w.rng
    D = {i: SCORE_FROM + dt.timedelta(days=i) for i in range(7)}  # 0=Mon holiday .. 6=Sun
    A = {a.name: a for a in accts}
    used = set()

    def pick(role, k=1):
        r = by_name(accts, role, k, rng, exclude=used)
        for a in r:
            used.add(a.name)
        return r if k > 1 else r[0]

    inc = []
    used.add("bi_metabase")

    def label(acct, t0, t1, kind, desc):
        inc.append((acct, t0, t1, kind, desc))

    def pull(acct, host, t, table, rows, text=None, db=None, extra_tables=()):
        c = w.conn(acct, host, t - 1, t + rows * 3e-6 + 30, db=db or acct.db or "")
        w.stmt(c, t - 0.5, "SET NAMES utf8mb4", "misc")
        text = text or f"SELECT * FROM {table}"
        s = w.stmt(
            c,
            t,
            text,
            "read",
            [table, *extra_tables],
            rows=rows,
            dur=rows * 3e-6 + 0.05,
            plan="full",
        )
        c["close"] = s["end"] + rng.uniform(1, 20)
        return s

    # ---- burst_bulk
    a = A["app_portal"]
    t = w.local(D[1], 14, 12, 5)
    s = pull(
        a,
        a.hosts[1],
        t,
        "hr.employees",
        240000,
        text=f"SELECT {TABLES['hr.employees'][2]} FROM hr.employees",
    )
    label(
        a.name,
        t,
        s["end"],
        "burst_bulk",
        "web portal credentials read the whole hr.employees table in one SELECT",
    )
    an1 = pick("analyst")
    t = w.local(D[2], 10, 41, 0)
    s = pull(
        an1,
        an1.hosts[0],
        t,
        "payroll.payslips",
        410000,
        text="SELECT p.*, b.iban, b.bic\n  FROM payroll.payslips p\n  JOIN bank.bank_accounts b ON b.employee_id = p.employee_id\n WHERE p.period >= '2026-01'",
        extra_tables=("bank.bank_accounts",),
    )
    label(
        an1.name,
        t,
        s["end"],
        "burst_bulk",
        "analyst pulled 410k payslips joined with IBANs in one query",
    )
    sp1 = pick("support")
    t = w.local(D[3], 15, 5, 30)
    s = pull(sp1, sp1.hosts[0], t, "bank.bank_accounts", 250000)
    label(sp1.name, t, s["end"], "burst_bulk", "support agent read all bank accounts")
    a = A["app_mobile"]
    t = w.local(D[5], 11, 20, 0)
    s = pull(
        a,
        a.hosts[0],
        t,
        "payroll.payslips",
        180000,
        text="SELECT id, employee_id, tenant_id, period, gross_cents, net_cents, iban_masked FROM payroll.payslips WHERE period = '2026-09'",
    )
    label(a.name, t, s["end"], "burst_bulk", "mobile app credentials pulled all September payslips")

    # ---- dump_wrong_account
    t = w.local(D[2], 23, 41, 12)
    end, n = w.dump(
        "app_admin",
        "10.20.9.77",
        t,
        ["hr.employees", "hr.contracts", "hr.addresses", "core.users"],
        single_tx=False,
    )
    label(
        "app_admin",
        t,
        end,
        "dump_wrong_account",
        f"mariadb-dump (LOCK TABLES) of hr + core.users with the admin UI's credentials from 10.20.9.77 ({n} rows)",
    )
    t = w.local(D[4], 4, 10, 3)
    end, n = w.dump(
        "app_payroll_api",
        A["app_payroll_api"].hosts[0],
        t,
        ["bank.bank_accounts", "bank.sepa_mandates", "payroll.tax_data"],
        single_tx=True,
    )
    label(
        "app_payroll_api",
        t,
        end,
        "dump_wrong_account",
        f"mariadb-dump --single-transaction of bank + tax data with the payroll API's credentials from its own host ({n} rows)",
    )

    # ---- outfile_export
    an2 = pick("analyst")
    t = w.local(D[1], 16, 31, 0)
    c = w.conn(an2, an2.hosts[0], t - 2, t + 40)
    s = w.stmt(
        c,
        t,
        "SELECT id, personnel_no, first_name, last_name, email, birth_date INTO OUTFILE '/var/lib/mysql-files/emp_all.csv' FIELDS TERMINATED BY ',' FROM hr.employees",
        "outfile",
        ["hr.employees"],
        rows=240000,
        affected=240000,
        export=True,
        dur=0.9,
    )
    label(
        an2.name, t, s["end"], "outfile_export", "analyst wrote all employees to a server-side CSV"
    )
    a = A["bi_metabase"]
    t = w.local(D[3], 11, 2, 0)
    c = w.conn(a, a.hosts[0], t - 2, t + 60, db="payroll")
    s = w.stmt(
        c,
        t,
        "SELECT * INTO OUTFILE '/tmp/ps.csv' FROM payroll.payslips WHERE period >= '2026-04'",
        "outfile",
        ["payroll.payslips"],
        rows=520000,
        affected=520000,
        export=True,
        dur=2.4,
    )
    label(
        a.name,
        t,
        s["end"],
        "outfile_export",
        "BI service account exported half a year of payslips to a file",
    )
    sp2 = pick("support")
    t = w.local(D[5], 9, 3, 0)
    c = w.conn(sp2, sp2.hosts[0], t - 2, t + 30)
    s = w.stmt(
        c,
        t,
        "select iban, holder_name into outfile '/var/lib/mysql-files/x.txt' from bank.bank_accounts where id < 30000",
        "outfile",
        ["bank.bank_accounts"],
        rows=29999,
        affected=29999,
        export=True,
        dur=0.2,
    )
    label(
        sp2.name,
        t,
        s["end"],
        "outfile_export",
        "support agent exported 30k IBANs to a file (Saturday)",
    )

    # ---- slow_drip: 3-5x normal volume over several days
    for role, factor, d0, d1 in [("analyst", 4.0, 1, 4), ("support", 3.5, 2, 5), ("bi", 4.0, 1, 4)]:
        a = pick(role)
        t_first, t_last = None, None
        for di in range(d0, d1 + 1):
            day = D[di]
            n = int(a.per_day * (factor - 1) * rng.uniform(0.8, 1.2))
            times = [w.rand_time(day, a.hours) for _ in range(n)]
            for block in split_gaps(sorted(times), 2400):
                w.session(a, a.hosts[0], block, "bi" if role == "bi" else "human")
            t_first = min(times) if t_first is None else t_first
            t_last = max(times)
        label(
            a.name,
            t_first,
            t_last,
            "slow_drip",
            f"{role} read about {factor}x its usual volume each day, {D[d0]} to {D[d1]}",
        )

    # ---- enumeration: many tables, low volume
    sp3 = pick("support")
    t = w.local(D[1], 13, 2, 0)
    c = w.conn(sp3, sp3.hosts[0], t - 1, 0)
    tt = t
    for tb in DATA_TABLES:
        tt += rng.uniform(8, 40)
        w.stmt(c, tt, f"SELECT * FROM {tb} LIMIT 5", "read", [tb], rows=5)
    c["close"] = tt + 10
    label(
        sp3.name,
        t,
        tt,
        "enumeration",
        f"support agent sampled 5 rows of each of {len(DATA_TABLES)} tables",
    )
    a = A["app_notify"]
    t = w.local(D[4], 2, 33, 0)
    c = w.conn(a, a.hosts[0], t - 1, 0, db="core")
    tt = t
    w.stmt(
        c,
        tt,
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('mysql','sys','performance_schema','information_schema')",
        "catalog",
        [],
        rows=len(DATA_TABLES),
        bytes_=2400,
        table_records=False,
    )
    for tb in rng.sample(DATA_TABLES, 22):
        tt += rng.uniform(1, 4)
        w.stmt(
            c,
            tt,
            f"SELECT * FROM `{tb.split('.')[0]}`.`{tb.split('.')[1]}` LIMIT 20",
            "read",
            [tb],
            rows=20,
        )
    c["close"] = tt + 2
    label(
        a.name,
        t,
        tt,
        "enumeration",
        "notification service credentials listed the schema and sampled 22 tables at night",
    )
    an3 = pick("analyst")
    t = w.local(D[3], 10, 15, 0)
    c = w.conn(an3, an3.hosts[0], t - 1, 0)
    tt = t
    for tb in rng.sample(DATA_TABLES, 16):
        tt += rng.uniform(30, 120)
        w.stmt(c, tt, f"select count(*) from {tb}", "read", [tb], rows=1)
        tt += rng.uniform(5, 30)
        w.stmt(c, tt, f"select * from {tb} limit 10", "read", [tb], rows=10)
    c["close"] = tt + 30
    label(an3.name, t, tt, "enumeration", "analyst counted and sampled 16 tables it never used")

    # ---- offhours_new_client
    for role, di, h, host in [
        ("analyst", 3, 3, "185.220.101.34"),
        ("finance", 5, 22, "10.30.44.5"),
        ("support", 6, 5, "31.16.200.9"),
    ]:
        a = pick(role)
        t = w.local(D[di], h, rng.randint(5, 40), 0)
        n = int(a.per_day * 0.4)
        times = [t + i * rng.uniform(10, 60) for i in range(n)]
        w.session(a, host, times, "human", fail_rate=0.0)
        label(
            a.name,
            t,
            times[-1],
            "offhours_new_client",
            f"{role} used at {h:02d}h local from new client {host}, ordinary volume",
        )

    # ---- privileged_misuse
    dbas = [x for x in accts if x.role == "dba"]
    d1, d2 = rng.sample(dbas, 2)
    t = w.local(D[2], 14, 3, 0)
    c = w.conn(d1, d1.hosts[0], t - 1, 0)
    s1 = w.stmt(
        c,
        t,
        "SELECT b.holder_name, b.iban, p.net_cents FROM bank.bank_accounts b JOIN payroll.payslips p ON p.employee_id = b.employee_id WHERE p.period = '2026-09' AND p.net_cents > 900000",
        "read",
        ["bank.bank_accounts", "payroll.payslips"],
        rows=21000,
        plan="full",
    )
    c["close"] = s1["end"] + 20
    label(d1.name, t, s1["end"], "privileged_misuse", "DBA read high earners' IBANs and net pay")
    t = w.local(D[4], 19, 31, 0)
    c = w.conn(d2, d2.hosts[1], t - 1, 0)
    s1 = w.stmt(
        c, t, "SELECT * FROM hr.employees", "read", ["hr.employees"], rows=240000, plan="full"
    )
    s2 = w.stmt(
        c,
        s1["end"] + 40,
        "SELECT * FROM hr.addresses",
        "read",
        ["hr.addresses"],
        rows=260000,
        plan="full",
    )
    c["close"] = s2["end"] + 5
    label(
        d2.name,
        t,
        s2["end"],
        "privileged_misuse",
        "DBA read employees and home addresses from home VPN in the evening",
    )

    # ---- paged_pull
    a = A["app_portal"]
    t = w.local(D[3], 1, 5, 0)
    c = w.conn(a, a.hosts[0], t - 1, 0)
    tt, last = t, 0
    for k in range(2400):
        tt += rng.uniform(1.5, 6)
        w.stmt(
            c,
            tt,
            f"SELECT {TABLES['hr.employees'][2]} FROM hr.employees WHERE id > {last} ORDER BY id LIMIT 100",
            "read",
            ["hr.employees"],
            rows=100,
        )
        last += 100
    c["close"] = tt + 1
    label(
        a.name,
        t,
        tt,
        "paged_pull",
        "portal credentials paged (keyset, 100 per page) through all employees at night",
    )
    an4 = pick("analyst")
    t = w.local(D[1], 9, 12, 0)
    c = w.conn(an4, an4.hosts[0], t - 1, 0)
    tt = t
    for k in range(300):
        tt += rng.uniform(20, 50)
        w.stmt(
            c,
            tt,
            f"SELECT * FROM payroll.payslips ORDER BY id LIMIT 1000 OFFSET {k * 1000}",
            "read",
            ["payroll.payslips"],
            rows=1000,
        )
    c["close"] = tt + 5
    label(an4.name, t, tt, "paged_pull", "analyst paged 300 x 1000 payslips over about 3 hours")
    sp4 = pick("support")
    t = w.local(D[3], 8, 30, 0)
    c = w.conn(sp4, sp4.hosts[0], t - 1, 0, db="hr")
    tt = t
    for k in range(1500):
        tt += rng.uniform(8, 25)
        w.stmt(
            c,
            tt,
            f"SELECT id, first_name, last_name, email, birth_date FROM employees LIMIT 50 OFFSET {k * 50}",
            "read",
            ["hr.employees"],
            rows=50,
        )
    c["close"] = tt + 5
    label(
        sp4.name,
        t,
        tt,
        "paged_pull",
        "support agent paged 1500 x 50 employees through the working day",
    )

    # ---- legitimate oddities (unlabelled)
    un = []
    dba_m = [x for x in dbas if x not in (d1, d2)][0]
    t = w.local(D[1], 20, 5, 0)
    c = w.conn(dba_m, dba_m.hosts[0], t - 1, 0, db="hr")
    w.stmt(
        c,
        t,
        "CREATE TABLE hr.contracts_v2 LIKE hr.contracts",
        "misc",
        ["hr.contracts_v2"],
        rows=0,
        bytes_=11,
    )
    tt = t + 2
    for k in range(31):
        s = w.stmt(
            c,
            tt,
            f"INSERT INTO hr.contracts_v2 SELECT * FROM hr.contracts WHERE id > {k * 10000} AND id <= {(k + 1) * 10000}",
            "write",
            ["hr.contracts_v2", "hr.contracts"],
            affected=10000,
            dur=1.2,
        )
        tt = s["end"] + 1
    s = w.stmt(
        c,
        tt,
        "SELECT c.id, CRC32(CONCAT_WS('#', c.kind, c.start_date, c.gross_salary_cents)) AS h FROM hr.contracts c",
        "read",
        ["hr.contracts"],
        rows=310000,
        plan="full",
    )
    s = w.stmt(
        c,
        s["end"] + 2,
        "SELECT c.id, CRC32(CONCAT_WS('#', c.kind, c.start_date, c.gross_salary_cents)) AS h FROM hr.contracts_v2 c",
        "read",
        ["hr.contracts_v2"],
        rows=310000,
        plan="full",
    )
    c["close"] = s["end"] + 10
    un.append(
        (dba_m.name, t, s["end"], "migration", "planned contracts_v2 migration with checksum reads")
    )
    # planned team change: support agent moves to finance from Wednesday
    mover = pick("support")
    fin = [x for x in accts if x.role == "finance"][0]
    for di in range(2, 6):
        n = int(50 * rng.uniform(0.8, 1.2))
        times = [w.rand_time(D[di], OFFICE) for _ in range(n)]
        fa = Acct(
            mover.name,
            "finance",
            hosts=mover.hosts,
            tables=[
                ("finance.invoices", 1),
                ("finance.ledger", 1),
                ("finance.tenant_billing", 0.5),
            ],
            per_day=50,
            rows_mu=3.5,
            db="finance",
        )
        for block in split_gaps(sorted(times), 2400):
            w.session(fa, mover.hosts[0], block, "human")
    un.append(
        (
            mover.name,
            w.local(D[2], 8),
            w.local(D[5], 18),
            "team_change",
            "support agent moved to finance (invoices, ledger) from Wednesday",
        )
    )
    # month-end finance report and quarter-start
    a = A["rpt_finance"]
    t = w.local(D[4], 18, 0, 0)
    c = w.conn(a, a.hosts[0], t - 1, 0, db="finance")
    s = w.stmt(
        c,
        t,
        "SELECT l.*, cc.name FROM finance.ledger l JOIN finance.cost_centers cc ON cc.id = l.cost_center_id WHERE l.booked_on BETWEEN '2026-10-01' AND '2026-10-31'",
        "read",
        ["finance.ledger", "finance.cost_centers"],
        rows=520000,
        plan="full",
    )
    s = w.stmt(
        c,
        s["end"] + 3,
        "SELECT * FROM finance.invoices WHERE period = '2026-10'",
        "read",
        ["finance.invoices"],
        rows=15000,
        plan="full",
    )
    c["close"] = s["end"] + 5
    un.append((a.name, t, s["end"], "month_end_report", "month-end ledger report (520k rows)"))
    # monthly payroll run: Wed+Thu nights, 3x the mid-month run's reads and writes
    a = A["payroll_batch"]
    for di in (2, 3):
        t = w.local(D[di], 21, 0, 0)
        times = [t + i * rng.uniform(0.5, 3) for i in range(400)]
        c = w.session(
            Acct(
                a.name,
                "batch",
                hosts=a.hosts,
                tables=a.tables,
                per_day=0,
                rows_mu=math.log(9000),
                rows_sigma=0.3,
                write_frac=0.35,
                db="payroll",
            ),
            a.hosts[0],
            times,
            "batch",
            fail_rate=0.0,
        )
    un.append(
        (
            a.name,
            w.local(D[2], 21),
            w.local(D[3], 23),
            "payroll_run",
            "monthly payroll run, two evenings, ~3x mid-month",
        )
    )
    un.append(
        (
            "app_benefits",
            w.local(D[2], 6),
            w.local(D[6], 23),
            "new_service",
            "benefits service deployed Wednesday",
        )
    )
    for x in accts:
        if x.first_day > START:
            un.append(
                (
                    x.name,
                    w.local(x.first_day, 8),
                    w.local(x.first_day, 18),
                    "new_account",
                    "new account started",
                )
            )
    # month-end: finance humans read 2x on Thu/Fri
    for f_ in [x for x in accts if x.role == "finance" and x.name not in used][:6]:
        for di in (3, 4):
            n = int(f_.per_day * rng.uniform(0.8, 1.3))
            times = [w.rand_time(D[di], OFFICE) for _ in range(n)]
            for block in split_gaps(sorted(times), 2400):
                w.session(f_, f_.hosts[0], block, "human")
    un.append(
        (
            "fin_*",
            w.local(D[3], 8),
            w.local(D[4], 18),
            "month_end",
            "six finance staff about 2x at month end",
        )
    )
    w.labels = inc
    w.unusual = un


# ---------------- writing the server's files ----------------


def esc_audit(s):
    return s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")


def write_logs(w, out, gz=True, rotate_size=64 * 1024 * 1024):
    rng = w.rng
    tz = w.tz
    # assign connection ids by open time, query ids by statement start
    for c in w.conns:
        if not c["close"] or c["close"] < c["open"]:
            c["close"] = c["open"] + 1
    fl = [{"acct": a, "host": h, "open": t, "failed": True} for (a, h, t) in w.failed_logins]
    allc = sorted(w.conns + fl, key=lambda c: c["open"])
    for i, c in enumerate(allc):
        c["id"] = 100 + i
    w.stmts.sort(key=lambda s: s["start"])
    qid = 1000
    for s in w.stmts:
        qid += 1
        s["qid"] = qid
        c = s["conn"]
        if s["start"] < c["open"]:
            c["open"] = s["start"] - 0.01
        if s["end"] > c["close"]:
            c["close"] = s["end"] + 0.01

    # ---- audit records: (time, order, line-builder)
    ev = []
    for c in w.conns:
        ev.append((c["open"], 0, ("C", c)))
        ev.append((c["close"], 3, ("D", c)))
    for s in w.stmts:
        if s["table_records"] and s["tables"]:
            ev.append((s["start"], 1, ("T", s)))
        ev.append((s["end"], 2, ("Q", s)))
    for c in fl:
        ev.append((c["open"], 0, ("F", (c["acct"], c["host"], c["id"]))))
    ev.sort(key=lambda e: (e[0], e[1]))

    def lt(t):
        return dt.datetime.fromtimestamp(t, tz)

    def afmt(t):
        return lt(t).strftime("%Y%m%d %H:%M:%S")

    def mktab_op(s):
        if s["kind"] == "write":
            return ["WRITE"] + ["READ"] * (len(s["tables"]) - 1)
        if s["text"].startswith("CREATE"):
            return ["CREATE"]
        return ["READ"] * len(s["tables"])

    def host_of(c):
        return c["host"]

    audit_lines_files = []
    cur, cur_size = [], 0
    for t, o, (k, x) in ev:
        ts = afmt(t)
        if k == "C":
            lines = [f"{ts},{SERVERHOST},{x['acct']},{host_of(x)},{x['id']},0,CONNECT,{x['db']},,0"]
        elif k == "D":
            lines = [
                f"{ts},{SERVERHOST},{x['acct']},{host_of(x)},{x['id']},0,DISCONNECT,{x['db']},,0"
            ]
        elif k == "F":
            a, host, cid = x
            lines = [
                f"{ts},{SERVERHOST},{a},{host},{cid},0,FAILED_CONNECT,,,1045",
                f"{ts},{SERVERHOST},{a},{host},{cid},0,DISCONNECT,,,0",
            ]
        elif k == "T":
            c = x["conn"]
            lines = [
                f"{ts},{SERVERHOST},{c['acct']},{host_of(c)},{c['id']},{x['qid']},{op},{tb.split('.')[0]},{tb.split('.')[1]},"
                for op, tb in zip(mktab_op(x), x["tables"])
            ]
        else:
            c = x["conn"]
            lines = [
                f"{ts},{SERVERHOST},{c['acct']},{host_of(c)},{c['id']},{x['qid']},QUERY,{x['db']},'{esc_audit(x['text'])}',{x['retcode']}"
            ]
        for ln in lines:
            cur.append(ln)
            cur_size += len(ln.encode()) + 1
        if cur_size >= rotate_size:
            audit_lines_files.append(cur)
            cur, cur_size = [], 0
    audit_lines_files.append(cur)
    # newest is server_audit.log, rotated .01 (newest) .. .NN (oldest)
    nfiles = len(audit_lines_files)
    for i, lines in enumerate(audit_lines_files):
        age = nfiles - 1 - i
        name = "server_audit.log" if age == 0 else f"server_audit.log.{age:02d}"
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    # ---- slow log: records in end-time order, daily logrotate at ~00:00 local
    header = (
        "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1 (Debian 12). started with:\n"
        "Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\nTime\t\t    Id Command\tArgument\n"
    )
    recs = sorted(w.stmts, key=lambda s: (s["end"], s["qid"]))
    day_files = []  # list of (local date, [chunks])
    cur_day, chunks, last_sec, last_db = None, None, None, None
    for s in recs:
        le = lt(s["end"])
        d = le.date()
        if d != cur_day:
            cur_day = d
            chunks = [header]
            day_files.append((d, chunks))
            last_sec, last_db = None, None
        c = s["conn"]
        sec = int(s["end"])
        if sec != last_sec:
            chunks.append(f"# Time: {le:%y%m%d} {le.hour:2d}:{le:%M:%S}\n")
            last_sec = sec
        h = c["host"]
        if h == "localhost":
            chunks.append(f"# User@Host: {c['acct']}[{c['acct']}] @ localhost []\n")
        else:
            chunks.append(f"# User@Host: {c['acct']}[{c['acct']}] @  [{h}]\n")
        chunks.append(f"# Thread_id: {c['id']}  Schema: {s['db']}  QC_hit: No\n")
        examined = s["rows"] if s["kind"] != "write" else s["affected"]
        if s["plan"] == "full":
            examined = max(examined, s["rows"])
        rows_sent = s["rows"] if s["kind"] != "write" else 0
        affected = s["affected"] if s["kind"] in ("write", "outfile") else 0
        chunks.append(
            f"# Query_time: {s['dur']:.6f}  Lock_time: {rng.uniform(0.00002, 0.0002):.6f}  Rows_sent: {rows_sent}  Rows_examined: {examined}\n"
        )
        chunks.append(f"# Rows_affected: {affected}  Bytes_sent: {s['bytes']}\n")
        if s["plan"] == "full":
            chunks.append(
                "# Full_scan: Yes  Full_join: No  Tmp_table: No  Tmp_table_on_disk: No\n"
                "# Filesort: No  Filesort_on_disk: No  Merge_passes: 0  Priority_queue: No\n"
            )
        if s["db"] and s["db"] != last_db:
            chunks.append(f"use `{s['db']}`;\n")
            last_db = s["db"]
        st = int(s["start"])
        if s["insert_id"]:
            chunks.append(f"SET insert_id={s['insert_id']},timestamp={st};\n")
        else:
            chunks.append(f"SET timestamp={st};\n")
        text = s["text"]
        chunks.append(text + ("\n" if text.endswith(";") else ";\n"))
    n = len(day_files)
    for i, (d, chunks) in enumerate(day_files):
        age = n - 1 - i
        data = "".join(chunks)
        if age == 0:
            open(os.path.join(out, "slow.log"), "w", encoding="utf-8").write(data)
        elif age == 1 or not gz:
            open(os.path.join(out, f"slow.log.{age}"), "w", encoding="utf-8").write(data)
        else:
            with gzip.open(
                os.path.join(out, f"slow.log.{age}.gz"), "wt", encoding="utf-8", compresslevel=1
            ) as f:
                f.write(data)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tz", default="Europe/Berlin")
    ap.add_argument("--no-gzip", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    w = World(args.seed, args.tz)
    accts = build_population(w.rng)
    ordinary(w, accts)
    scored_week(w, accts)
    write_logs(w, args.out, gz=not args.no_gzip)
    with open(os.path.join(args.out, "labels.csv"), "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["incident_id", "account", "start", "end", "kind", "description"])
        for i, (a, t0, t1, k, d) in enumerate(w.labels, 1):
            # start 5 s before the first statement: the session's connection (CONNECT, SET NAMES) comes just before it
            cw.writerow([f"I{i:02d}", a, utc_iso(t0 - 5), utc_iso(t1 + 1), k, d])
    with open(os.path.join(args.out, "unusual.csv"), "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["account", "start", "end", "kind", "description"])
        for a, t0, t1, k, d in w.unusual:
            cw.writerow([a, utc_iso(t0), utc_iso(t1), k, d])
    tr = w.truth()
    keys = [
        "statements",
        "reads",
        "rows_read",
        "rows_sent_all",
        "bytes_sent",
        "exports",
        "export_rows",
        "failed",
        "connects",
        "failed_connects",
    ]
    with open(os.path.join(args.out, "truth.csv"), "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["account", "day"] + keys)
        for a, d in sorted(tr):
            cw.writerow([a, d.isoformat()] + [tr[(a, d)][k] for k in keys])
    roles = {a.name: a.role for a in accts}
    json.dump(
        {
            "seed": args.seed,
            "tz": args.tz,
            "start": START.isoformat(),
            "days": NDAYS,
            "train_until": "2026-10-26T00:00:00Z",
            "roles": roles,
            "statements": len(w.stmts),
            "connections": len(w.conns),
        },
        open(os.path.join(args.out, "meta.json"), "w"),
        indent=1,
    )
    print(
        f"{len(roles)} accounts, {len(w.stmts)} statements, {len(w.conns)} connections, {len(w.labels)} incidents -> {args.out}"
    )


if __name__ == "__main__":
    main()
