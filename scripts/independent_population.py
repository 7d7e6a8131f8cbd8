#!/usr/bin/env python3
"""Independent held-out generator of PostgreSQL 15 + pgAudit 1.7.0 jsonlog audit logs.

Organisation: a national police + custody-health records system, local time UTC+8
(workday 01:00-10:00 UTC).  pgaudit.log = 'read,write,ddl,role,misc', log_rows = on,
log_relation = on, log_parameter = off, log_catalog = on (pgAudit's default),
log_connections/log_disconnections on, jsonlog, log_timezone UTC.

Days 1-14 (2026-10-12 .. 2026-10-25) training, days 15-21 (2026-10-26 .. 2026-11-01) scored.
Labelled incidents only in days 15-21.

Writes logs/postgresql-YYYY-MM-DD.json.gz, labels.csv, truth_counts.json (per-account
audit lines / statements / rows written, for checking the parser).
"""

import csv
import datetime as dt
import gzip
import json
import math
import os
import random
import sys
from collections import defaultdict

OUT = os.environ.get("OUTDIR") or os.path.dirname(os.path.abspath(__file__))
R = random.Random(int(os.environ.get("SEED", "8812")))
UTC = dt.timezone.utc
D0 = dt.datetime(2026, 10, 12, tzinfo=UTC)  # Monday, day 1
NDAYS = 21
T0 = D0.timestamp()
DAY = 86400.0
HOLIDAYS = {dt.date(2026, 10, 16), dt.date(2026, 10, 28)}  # local (UTC+8) public holidays
DB = "crimsdb"

LINES = []  # (ts, seq, json)
SEQ = [0]
TRUTH = defaultdict(lambda: {"audit_lines": 0, "statements": 0, "rows": 0, "sessions": 0})
DAYROWS = defaultdict(int)  # (user, day index) -> rows read


def train_median_daily(user):
    v = sorted(DAYROWS[(user, d)] for d in range(14) if DAYROWS[(user, d)] > 0)
    return v[len(v) // 2] if v else 1000


def day_date(d):
    return (D0 + dt.timedelta(days=d)).date()


def is_workday(d):
    dd = day_date(d)
    return dd.weekday() < 5 and dd not in HOLIDAYS


def fmt_ts(t):
    x = dt.datetime.fromtimestamp(t, UTC)
    return x.strftime("%Y-%m-%d %H:%M:%S") + ".%03d UTC" % (x.microsecond // 1000)


def fmt_start(t):
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(t):
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csvq(s):
    if any(c in s for c in ',"\r\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def emit(t, obj):
    SEQ[0] += 1
    LINES.append((t, SEQ[0], json.dumps(obj, separators=(",", ":"))))


PIDS = [20000]


class Sess:
    def __init__(self, user, host, app, t, db=DB):
        PIDS[0] += R.randint(1, 40)
        if PIDS[0] > 4000000:
            PIDS[0] = 20000
        self.pid = PIDS[0]
        self.user, self.host, self.app, self.db = user, host, app, db
        self.port = None if host == "[local]" else R.randint(32768, 60999)
        self.start = t
        self.sid = "%x.%x" % (int(t), self.pid)
        self.line = 0
        self.stmt = 0
        self.backend = R.randint(3, 180)
        self.lxid = R.randint(1, 5000)
        self.last = t
        self.closed = False
        TRUTH[user]["sessions"] += 1
        self._base(
            "connection received: host=%s%s"
            % (host, "" if self.port is None else " port=%d" % self.port),
            t,
            conn=True,
        )
        t2 = t + R.uniform(0.001, 0.02)
        self.lxid += 1
        o = self._hdr(t2, "authentication", vxid="%d/%d" % (self.backend, self.lxid))
        o["txid"] = 0
        o["error_severity"] = "LOG"
        o["message"] = "connection authorized: user=%s database=%s application_name=%s" % (
            user,
            self.db,
            app,
        )
        o["backend_type"] = "client backend"
        o["query_id"] = 0
        emit(t2, o)
        self.last = t2

    def _hdr(self, t, ps, vxid=None, anon=False):
        self.line += 1
        o = {"timestamp": fmt_ts(t)}
        if not anon:
            o["user"] = self.user
            o["dbname"] = self.db
        o["pid"] = self.pid
        o["remote_host"] = self.host
        if self.port is not None:
            o["remote_port"] = self.port
        o["session_id"] = self.sid
        o["line_num"] = self.line
        o["ps"] = ps
        o["session_start"] = fmt_start(self.start)
        if vxid:
            o["vxid"] = vxid
        return o

    def _base(self, msg, t, conn=False):
        o = self._hdr(t, "", anon=True)
        o["txid"] = 0
        o["error_severity"] = "LOG"
        o["message"] = msg
        o["backend_type"] = "not initialized"
        o["query_id"] = 0
        emit(t, o)

    def audit(self, t, parts, statement, rows, write=False, ps=None, parallel=0):
        """parts: list of (substatement_index, class, command, objtype, objname, rows_for_line).
        One statement id; rows counted once per (stmt, sub)."""
        if t < self.last:
            t = self.last + 0.0005
        self.stmt += 1
        self.lxid += 1
        vx = "%d/%d" % (self.backend, self.lxid)
        txid = R.randint(900000, 9000000) if write else 0
        seen = set()
        for sub, cls, cmd, otype, oname, r in parts:
            o = self._hdr(t, ps or cmd, vxid=vx)
            o["txid"] = txid
            o["error_severity"] = "LOG"
            o["message"] = "AUDIT: SESSION,%d,%d,%s,%s,%s,%s,%s,<not logged>,%d" % (
                self.stmt,
                sub,
                cls,
                cmd,
                otype,
                oname,
                csvq(statement),
                r,
            )
            o["application_name"] = self.app
            o["backend_type"] = "client backend"
            o["query_id"] = 0
            emit(t, o)
            TRUTH[self.user]["audit_lines"] += 1
            if (sub) not in seen:
                seen.add(sub)
                if cls == "READ":
                    TRUTH[self.user]["rows"] += r
                    DAYROWS[(self.user, int((t - T0) // DAY))] += r
        TRUTH[self.user]["statements"] += 1
        # parallel workers: partial counts, no user/db
        for w in range(parallel):
            wpid = self.pid + 1 + w
            o = {
                "timestamp": fmt_ts(t - 0.01),
                "pid": wpid,
                "session_id": "%x.%x" % (int(t), wpid),
                "line_num": 1,
                "ps": "SELECT",
                "session_start": fmt_start(t - 1),
                "vxid": "%d/%d" % (self.backend + 40 + w, 1),
                "txid": 0,
                "error_severity": "LOG",
                "message": "AUDIT: SESSION,1,1,READ,SELECT,%s,%s,%s,<not logged>,%d"
                % (
                    parts[0][3],
                    parts[0][4],
                    csvq(statement),
                    max(0, parts[0][5] // (parallel + 1)),
                ),
                "application_name": self.app,
                "backend_type": "parallel worker",
                "leader_pid": self.pid,
                "query_id": 0,
            }
            emit(t - 0.01, o)
        self.last = t
        return t

    def error(self, t, statement, msg='syntax error at or near "FORM"', code="42601", ps="idle"):
        if t < self.last:
            t = self.last + 0.0005
        self.lxid += 1
        o = self._hdr(t, ps, vxid="%d/%d" % (self.backend, self.lxid))
        o["txid"] = 0
        o["error_severity"] = "ERROR"
        o["state_code"] = code
        o["message"] = msg
        o["statement"] = statement
        o["application_name"] = self.app
        o["backend_type"] = "client backend"
        o["query_id"] = 0
        emit(t, o)
        self.last = t

    def close(self, t):
        if self.closed:
            return
        if t < self.last:
            t = self.last + 0.001
        self.closed = True
        o = self._hdr(t, "idle")
        o["txid"] = 0
        o["error_severity"] = "LOG"
        d = t - self.start
        h = int(d // 3600)
        m = int((d % 3600) // 60)
        s = d % 60
        o["message"] = (
            "disconnection: session time: %d:%02d:%06.3f user=%s database=%s host=%s%s"
            % (
                h,
                m,
                s,
                self.user,
                self.db,
                self.host,
                "" if self.port is None else " port=%d" % self.port,
            )
        )
        o["application_name"] = self.app
        o["backend_type"] = "client backend"
        o["query_id"] = 0
        emit(t, o)


# --------------------------------------------------------------------- schema
TABLES = {
    "records.persons": 4200000,
    "records.person_aliases": 1100000,
    "records.addresses": 6000000,
    "records.cases": 2500000,
    "records.case_notes": 18000000,
    "records.case_parties": 7000000,
    "records.case_documents": 9000000,
    "records.incidents": 3100000,
    "records.offences": 900000,
    "records.warrants": 120000,
    "records.custody_records": 800000,
    "records.evidence_items": 5000000,
    "records.vehicles": 2200000,
    "records.firearms_licences": 300000,
    "records.officers": 25000,
    "records.units": 400,
    "records.court_hearings": 1400000,
    "records.bail_conditions": 260000,
    "records.intel_reports": 700000,
    "records.missing_persons": 45000,
    "records.anpr_hits": 60000000,
    "health.patients": 3800000,
    "health.visits": 22000000,
    "health.prescriptions": 30000000,
    "health.lab_results": 40000000,
    "health.diagnoses": 15000000,
    "health.mental_health_notes": 2000000,
    "health.practitioners": 60000,
    "health.custody_medical": 500000,
    "health.referrals": 1200000,
    "ref.offence_codes": 2100,
    "ref.icd10_codes": 71000,
    "ref.postcodes": 41000,
    "ref.stations": 900,
    "ops.job_runs": 200000,
    "ops.outbox": 50000,
    "ops.app_audit": 60000000,
    "ops.notifications": 3000000,
    "ops.document_index": 9000000,
    "ops.user_prefs": 90000,
    "ops.feature_flags": 120,
    "stats.daily_counts": 400000,
    "stats.monthly_summary": 30000,
    "stats.unit_kpis": 80000,
    "stats.health_kpis": 50000,
}
COLS = {
    "records.persons": "id, family_name, given_name, dob, sex, national_id, nationality, created_at, updated_at",
    "records.addresses": "id, person_id, line1, line2, city, postcode, valid_from, valid_to",
    "records.cases": "id, case_no, unit_id, status, opened_at, closed_at, lead_officer_id, summary",
    "records.case_notes": "id, case_id, author_id, created_at, body",
    "health.patients": "id, person_id, mrn, family_name, given_name, dob, gp_id, blood_group",
}
CATALOG_VIEWS = [
    "pg_catalog.pg_stat_activity",
    "pg_catalog.pg_stat_database",
    "pg_catalog.pg_locks",
    "pg_catalog.pg_stat_user_tables",
    "pg_catalog.pg_stat_replication",
    "pg_catalog.pg_stat_bgwriter",
    "pg_catalog.pg_stat_statements",
]


def cols(t):
    return COLS.get(t, "*")


def lognorm(med, sigma, lo=0, hi=None):
    v = int(round(med * math.exp(R.gauss(0, sigma))))
    v = max(lo, v)
    if hi is not None:
        v = min(hi, v)
    return v


def otype(name):
    if name.startswith("pg_catalog.") or name.startswith("information_schema."):
        return "VIEW"
    return "TABLE"


def select(s, t, rels, stmt, rows, parallel=0):
    parts = [(1, "READ", "SELECT", otype(r), r, rows) for r in rels]
    return s.audit(t, parts, stmt, rows, parallel=parallel)


def write(s, t, cmd, rel, stmt, rows, readrels=()):
    parts = [(1, "WRITE", cmd, "TABLE", rel, rows)] + [
        (1, "READ", "SELECT", "TABLE", r, rows) for r in readrels
    ]
    return s.audit(t, parts, stmt, rows, write=True, ps=cmd)


def misc(s, t, cmd, stmt):
    return s.audit(t, [(1, "MISC", cmd, "", "", 0)], stmt, 0, ps=cmd)


def copy_table(s, t, rel, stmt=None):
    st = stmt or "COPY %s TO STDOUT;" % rel
    return s.audit(t, [(1, "READ", "COPY", "", "", 0)], st, 0, ps="COPY")


def copy_query(s, t, rels, query, rows):
    st = "COPY (%s) TO STDOUT WITH (FORMAT csv, HEADER)" % query
    parts = [(1, "READ", "SELECT", "TABLE", r, rows) for r in rels] + [
        (2, "READ", "COPY", "", "", 0)
    ]
    return s.audit(t, parts, st, rows, ps="COPY")


# ------------------------------------------------------------- activity model
def local_activity(h):
    """relative activity by local hour (UTC+8) for public/web traffic"""
    curve = [
        0.15,
        0.1,
        0.08,
        0.06,
        0.06,
        0.1,
        0.25,
        0.55,
        0.85,
        1.0,
        1.0,
        0.95,
        0.7,
        0.85,
        1.0,
        1.0,
        0.95,
        0.85,
        0.7,
        0.6,
        0.5,
        0.4,
        0.3,
        0.2,
    ]
    return curve[int(h) % 24]


def poisson_times(start, end, rate_per_hour_fn):
    """non-homogeneous Poisson process by thinning; rate fn of absolute t (per hour)"""
    out = []
    t = start
    maxr = (
        max(rate_per_hour_fn(start + i * 600) for i in range(int((end - start) / 600) + 1)) + 1e-9
    )
    while True:
        t += R.expovariate(maxr / 3600.0)
        if t >= end:
            break
        if R.random() * maxr <= rate_per_hour_fn(t):
            out.append(t)
    return out


class Pool:
    """connection pool of an app: sessions recycled every ~maxlife"""

    def __init__(self, user, hosts, app, size, maxlife):
        self.user, self.hosts, self.app, self.size, self.maxlife = user, hosts, app, size, maxlife
        self.slots = {}

    def get(self, t):
        h = R.choice(self.hosts)
        k = (h, R.randrange(self.size))
        s = self.slots.get(k)
        if s is None or t > s.expire:
            if s is not None:
                s.close(min(t - 0.01, s.expire))
            s = Sess(self.user, h, self.app, t - R.uniform(0.005, 0.05))
            s.expire = t + self.maxlife * R.uniform(0.6, 1.2)
            self.slots[k] = s
        return s

    def fresh(self, t):
        return Sess(self.user, R.choice(self.hosts), self.app, t - R.uniform(0.005, 0.05))

    def close_all(self, t):
        for s in self.slots.values():
            s.close(max(t, s.last + 1))
        self.slots = {}


def ip(prefix):
    return "%s.%d" % (prefix, R.randint(10, 250))


# ------------------------------------------------------------------- accounts
ACCOUNTS = {}  # name -> dict(role=..., ...)
INCIDENT_EXTRA = defaultdict(list)  # account -> list of callables(day)

WEB_TEMPLATES = [
    ("SELECT {c} FROM records.persons WHERE id = $1", ["records.persons"], 1, 0.0),
    (
        "SELECT p.id, p.family_name, p.given_name, a.city FROM records.persons p JOIN records.addresses a ON a.person_id = p.id WHERE p.national_id = $1",
        ["records.persons", "records.addresses"],
        2,
        0.6,
    ),
    (
        "SELECT id, case_no, status, opened_at FROM records.cases WHERE id = $1",
        ["records.cases"],
        1,
        0.0,
    ),
    (
        "SELECT n.id, n.created_at, n.body FROM records.case_notes n WHERE n.case_id = $1 ORDER BY n.created_at DESC LIMIT 50",
        ["records.case_notes"],
        12,
        0.9,
    ),
    (
        "SELECT c.id, c.case_no, cp.role FROM records.case_parties cp JOIN records.cases c ON c.id = cp.case_id WHERE cp.person_id = $1",
        ["records.case_parties", "records.cases"],
        3,
        0.8,
    ),
    (
        "SELECT id, plate, make, model, owner_id FROM records.vehicles WHERE plate = $1",
        ["records.vehicles"],
        1,
        0.2,
    ),
    (
        "SELECT id, status, issued_at FROM records.warrants WHERE person_id = $1 AND status = 'ACTIVE'",
        ["records.warrants"],
        0,
        0.0,
    ),
    (
        "SELECT id, licence_no, expires_on FROM records.firearms_licences WHERE person_id = $1",
        ["records.firearms_licences"],
        1,
        0.0,
    ),
    (
        "SELECT id, hearing_at, court FROM records.court_hearings WHERE case_id = $1 ORDER BY hearing_at",
        ["records.court_hearings"],
        2,
        0.7,
    ),
    (
        "SELECT d.id, d.title, d.mime FROM records.case_documents d WHERE d.case_id = $1",
        ["records.case_documents"],
        4,
        0.8,
    ),
    (
        "SELECT id, doc_key, indexed_at FROM ops.document_index WHERE doc_key = $1",
        ["ops.document_index"],
        1,
        0.0,
    ),
    (
        "SELECT id, mrn, family_name, given_name, dob FROM health.patients WHERE mrn = $1",
        ["health.patients"],
        1,
        0.0,
    ),
    (
        "SELECT v.id, v.visit_at, v.reason FROM health.visits v WHERE v.patient_id = $1 ORDER BY v.visit_at DESC LIMIT 20",
        ["health.visits"],
        6,
        0.8,
    ),
    (
        "SELECT id, drug, dose, start_date FROM health.prescriptions WHERE patient_id = $1 AND end_date IS NULL",
        ["health.prescriptions"],
        3,
        0.7,
    ),
    (
        "SELECT id, test_code, value, taken_at FROM health.lab_results WHERE patient_id = $1 AND taken_at > now() - interval '90 days'",
        ["health.lab_results"],
        8,
        1.0,
    ),
    (
        "SELECT id, custody_no, booked_at, released_at FROM records.custody_records WHERE person_id = $1",
        ["records.custody_records"],
        1,
        0.6,
    ),
    ("SELECT id, station_code, name FROM ref.stations WHERE id = $1", ["ref.stations"], 1, 0.0),
    (
        "SELECT code, description FROM ref.offence_codes WHERE code = ANY($1)",
        ["ref.offence_codes"],
        3,
        0.5,
    ),
    (
        "SELECT id, reported_at, kind, location FROM records.incidents WHERE id = $1",
        ["records.incidents"],
        1,
        0.0,
    ),
    (
        "SELECT id, family_name, given_name, dob FROM records.persons WHERE family_name = $1 AND dob = $2 LIMIT 25",
        ["records.persons"],
        3,
        1.0,
    ),
    (
        "SELECT id, last_seen_at, status FROM records.missing_persons WHERE person_id = $1",
        ["records.missing_persons"],
        0,
        0.0,
    ),
    (
        "SELECT id, intel_grade, summary FROM records.intel_reports WHERE subject_id = $1",
        ["records.intel_reports"],
        1,
        0.9,
    ),
    (
        "SELECT id, booked_at, findings FROM health.custody_medical WHERE custody_id = $1",
        ["health.custody_medical"],
        1,
        0.3,
    ),
]


def add(name, role, **kw):
    kw["role"] = role
    ACCOUNTS[name] = kw
    return kw


def build_accounts():
    webapps = [
        ("svc_case_api", "case-api", [2, 3, 4, 8, 9, 19]),
        ("svc_person_lookup", "person-lookup", [0, 1, 19, 6, 15]),
        ("svc_mobile_api", "PostgreSQL JDBC Driver", [0, 5, 6, 7, 18, 2]),
        ("svc_public_portal", "public-portal", [18, 16, 2]),
        ("svc_health_api", "health-api", [11, 12, 13, 14]),
        ("svc_warrant_api", "warrant-svc", [6, 0, 1]),
        ("svc_vehicle_api", "vehicle-svc", [5, 0]),
        ("svc_court_api", "court-svc", [8, 2, 4]),
        ("svc_docs_api", "docs-svc", [9, 10]),
        ("svc_firearms_api", "PostgreSQL JDBC Driver", [7, 0, 1]),
        ("svc_custody_api", "custody-svc", [15, 22, 0, 17]),
        ("svc_intel_api", "intel-svc", [21, 0, 4, 20]),
        ("svc_gp_portal", "gp-portal", [11, 12, 13]),
        ("svc_lab_api", "lab-svc", [14, 11]),
    ]
    for i, (n, app, tpl) in enumerate(webapps):
        hosts = ["10.20.%d.%d" % (i + 1, 11 + k) for k in range(R.choice([2, 3, 4]))]
        add(
            n,
            "web",
            app=app,
            hosts=hosts,
            tpl=tpl,
            peak=R.choice([60, 100, 150, 250, 400]),
            pool=R.choice([6, 10, 16]),
            start=0,
            end=NDAYS,
        )
    mqs = [
        ("svc_mq_notify", "ops.notifications", [0]),
        ("svc_mq_custody_sync", "records.custody_records", [15]),
        ("svc_mq_lab_ingest", "health.lab_results", [11]),
        ("svc_mq_court_feed", "records.court_hearings", [2]),
        ("svc_mq_alerts", "ops.notifications", [6, 0]),
        ("svc_mq_docs_index", "ops.document_index", [9]),
        ("svc_mq_gp_feed", "health.visits", [11]),
        ("svc_mq_anpr", "records.anpr_hits", [5]),
    ]
    for i, (n, target, tpl) in enumerate(mqs):
        add(
            n,
            "mq",
            app="mq-consumer/" + n[7:],
            hosts=["10.30.%d.21" % (i + 1), "10.30.%d.22" % (i + 1)],
            target=target,
            tpl=tpl,
            every=R.choice([90, 120, 180, 240]),
            start=0,
            end=NDAYS,
        )
    ACCOUNTS["svc_mq_notify"]["end"] = 17  # replaced by svc_notify_v2 on day 18 (index 17)
    add(
        "svc_notify_v2",
        "mq",
        app="notify-v2",
        hosts=["10.30.9.31", "10.30.9.32"],
        target="ops.notifications",
        tpl=[0],
        every=30,
        start=17,
        end=NDAYS,
    )
    # nightly ETL (02:00-05:00 local = 18:00-21:00 UTC)
    add(
        "etl_warehouse",
        "etl",
        app="airflow-worker",
        hosts=["10.40.1.15"],
        hour=18.0,
        export=True,
        tables=[
            "records.cases",
            "records.case_parties",
            "records.incidents",
            "records.offences",
            "records.persons",
            "records.addresses",
            "records.custody_records",
            "records.court_hearings",
            "records.vehicles",
            "records.warrants",
            "records.evidence_items",
        ],
        start=0,
        end=NDAYS,
    )
    add(
        "etl_stats",
        "etl",
        app="python-etl",
        hosts=["10.40.1.16"],
        hour=20.5,
        export=False,
        tables=[
            "records.cases",
            "records.incidents",
            "records.offences",
            "stats.daily_counts",
            "records.custody_records",
        ],
        start=0,
        end=NDAYS,
    )
    add(
        "etl_court_sync",
        "etl",
        app="court-sync",
        hosts=["10.40.2.20"],
        hour=21.0,
        export=False,
        tables=["records.court_hearings", "records.cases", "records.bail_conditions"],
        start=0,
        end=NDAYS,
    )
    add(
        "etl_gp_extract",
        "etl",
        app="airflow-worker",
        hosts=["10.40.1.15"],
        hour=17.0,
        export=True,
        tables=["health.visits", "health.prescriptions", "health.referrals", "health.patients"],
        start=0,
        end=NDAYS,
    )
    add("backup_pgdump", "backup", app="pg_dump", hosts=["[local]"], start=0, end=NDAYS)
    # people
    surnames = [
        "wang",
        "li",
        "zhang",
        "liu",
        "chen",
        "yang",
        "huang",
        "zhao",
        "wu",
        "zhou",
        "xu",
        "sun",
        "ma",
        "zhu",
        "hu",
        "guo",
        "he",
        "lin",
        "luo",
        "gao",
        "tan",
        "ng",
        "lim",
        "tan",
        "goh",
        "ong",
        "teo",
        "koh",
        "chua",
        "lee",
        "kumar",
        "raj",
        "singh",
        "abdullah",
        "ismail",
        "rahman",
        "nair",
        "das",
    ]
    used = set()

    def uname(prefix):
        while True:
            n = "%s_%s_%s%s" % (
                prefix,
                R.choice(surnames),
                chr(97 + R.randrange(26)),
                chr(97 + R.randrange(26)),
            )
            if n not in used:
                used.add(n)
                return n

    police_sets = [
        [
            "records.persons",
            "records.cases",
            "records.case_notes",
            "records.case_parties",
            "records.addresses",
        ],
        ["records.persons", "records.custody_records", "records.cases", "records.bail_conditions"],
        ["records.vehicles", "records.persons", "records.incidents", "records.offences"],
        ["records.warrants", "records.persons", "records.court_hearings", "records.cases"],
        ["records.evidence_items", "records.cases", "records.case_documents", "records.case_notes"],
    ]
    health_sets = [
        ["health.patients", "health.visits", "health.prescriptions", "health.custody_medical"],
        ["health.patients", "health.lab_results", "health.referrals", "health.diagnoses"],
    ]
    for i in range(72):
        n = uname("o" if i % 2 else "c")
        unit = R.randrange(len(police_sets))
        add(
            n,
            "clerk",
            app=R.choice(["CaseDesk 7.3", "CaseDesk 7.3", "CaseDesk 7.4"]),
            hosts=["10.60.%d.%d" % (1 + unit, R.randint(10, 250))],
            tables=police_sets[unit] + ["ref.offence_codes", "ref.stations"],
            act=R.choice([60, 100, 150, 220]),
            start=0,
            end=NDAYS,
            absent=R.choice([0.03, 0.06, 0.1]),
        )
    for i in range(14):
        n = uname("h")
        unit = R.randrange(len(health_sets))
        add(
            n,
            "clerk",
            app="MediRec 2.1",
            hosts=["10.62.%d.%d" % (1 + unit, R.randint(10, 250))],
            tables=health_sets[unit] + ["ref.icd10_codes", "health.practitioners"],
            act=R.choice([60, 100, 150]),
            start=0,
            end=NDAYS,
            absent=R.choice([0.03, 0.06]),
        )
    # new people: 3 join day 8 (training), 2 join day 16 (scored)
    for st in (7, 7, 7, 15, 15):
        n = uname("c")
        unit = R.randrange(len(police_sets))
        add(
            n,
            "clerk",
            app="CaseDesk 7.4",
            hosts=["10.60.%d.%d" % (1 + unit, R.randint(10, 250))],
            tables=police_sets[unit] + ["ref.offence_codes"],
            act=R.choice([60, 100]),
            start=st,
            end=NDAYS,
            absent=0.03,
            newcomer=True,
        )
    apps_an = [
        "DBeaver 24.1.5 - Main <crimsdb>",
        "psql",
        "pgAdmin 4 - CONN:7731942",
        "DBeaver 24.1.5 - SQLEditor <Script-3.sql>",
    ]
    all_data = [t for t in TABLES if t.startswith(("records.", "stats.", "ref."))]
    for i in range(12):
        n = uname("a")
        k = R.randint(6, 12)
        tabs = R.sample(all_data, k)
        if i < 3:
            tabs += ["health.visits", "health.diagnoses", "health.patients"]
        add(
            n,
            "analyst",
            apps=R.sample(apps_an, 2),
            hosts=["10.70.1.%d" % R.randint(10, 250)],
            tables=tabs,
            act=R.choice([15, 30, 50]),
            start=0,
            end=NDAYS,
            present=R.choice([0.5, 0.7, 0.9]),
            big=R.choice([0.02, 0.05, 0.1]),
        )
    n = uname("a")
    add(
        n,
        "analyst",
        apps=["DBeaver 24.1.5 - Main <crimsdb>"],
        hosts=["10.70.1.%d" % R.randint(10, 250)],
        tables=R.sample(all_data, 8),
        act=30,
        start=16,
        end=NDAYS,
        present=0.9,
        big=0.05,
        newcomer=True,
    )
    for n in ["dba_huang", "dba_ng", "dba_kumar", "dba_oncall"]:
        add(
            n,
            "dba",
            apps=["psql", "pgAdmin 4 - CONN:1029384"],
            hosts=["10.80.0.%d" % R.randint(10, 60), "[local]"],
            start=0,
            end=NDAYS,
            oncall=(n == "dba_oncall"),
        )
    add(
        "svc_report_daily",
        "report",
        app="JasperReports Server 8.2",
        hosts=["10.50.1.10"],
        kind="daily",
        start=0,
        end=NDAYS,
    )
    add(
        "svc_report_hourly",
        "report",
        app="JasperReports Server 8.2",
        hosts=["10.50.1.10"],
        kind="hourly",
        start=0,
        end=NDAYS,
    )
    add(
        "svc_metabase",
        "report",
        app="Metabase v0.50.12",
        hosts=["10.50.2.10", "10.50.2.11"],
        kind="dash",
        start=0,
        end=NDAYS,
    )
    add(
        "svc_report_health",
        "report",
        app="JasperReports Server 8.2",
        hosts=["10.50.1.10"],
        kind="health",
        start=0,
        end=NDAYS,
    )
    add(
        "svc_report_court",
        "report",
        app="court-weekly",
        hosts=["10.50.3.10"],
        kind="weekly",
        start=0,
        end=NDAYS,
    )
    add(
        "svc_report_monthly",
        "report",
        app="JasperReports Server 8.2",
        hosts=["10.50.1.10"],
        kind="monthly",
        start=0,
        end=NDAYS,
    )
    add(
        "mon_exporter",
        "monitor",
        app="postgres_exporter",
        hosts=["10.90.0.5"],
        every=60,
        q=6,
        start=0,
        end=NDAYS,
    )
    add(
        "mon_zabbix",
        "monitor",
        app="zabbix-agent2",
        hosts=["10.90.0.6"],
        every=60,
        q=3,
        start=0,
        end=NDAYS,
    )
    add(
        "mon_pgwatch",
        "monitor",
        app="pgwatch3",
        hosts=["10.90.0.7"],
        every=300,
        q=10,
        start=0,
        end=NDAYS,
    )
    add(
        "mon_lbcheck",
        "monitor",
        app="haproxy-check",
        hosts=["10.90.0.2", "10.90.0.3"],
        every=30,
        q=1,
        start=0,
        end=NDAYS,
    )


# ------------------------------------------------------------------ behaviours
def web_stmt(sess, t, tpl_idx, scale=1.0):
    st, rels, med, sig = WEB_TEMPLATES[tpl_idx]
    rows = lognorm(med, sig, 0) if sig > 0 else med
    st = st.replace("{c}", "id, family_name, given_name, dob, sex, national_id")
    return select(sess, t, rels, st, rows)


def gen_web(name, a):
    pool = Pool(name, a["hosts"], a["app"], a["pool"], 3600 * 0.75)
    extra_tpl = None
    for d in range(a["start"], a["end"]):
        wd = is_workday(d)
        base = T0 + d * DAY
        fac = 1.0 if wd else 0.45
        bursts = [
            (base + R.uniform(0, DAY), R.uniform(300, 900), R.uniform(3, 6))
            for _ in range(R.randint(1, 4))
        ]

        def rate(t):
            h = ((t - base) / 3600 + 8) % 24
            r = a["peak"] * local_activity(h) * fac
            for bs, bl, bf in bursts:
                if bs <= t < bs + bl:
                    r *= bf
            return r

        tpls = list(a["tpl"])
        if name == "svc_case_api" and d >= 18:  # release: new documents tab
            tpls += [9]
        for t in poisson_times(base, base + DAY, rate):
            s = pool.get(t)
            web_stmt(s, t, R.choice(tpls))
            if R.random() < 0.05:
                write(
                    s,
                    t + 0.003,
                    "INSERT",
                    "ops.app_audit",
                    "INSERT INTO ops.app_audit (actor, action, ref, at) VALUES ($1, $2, $3, now())",
                    1,
                )
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, pool)
    pool.close_all(T0 + a["end"] * DAY - 1)


def gen_mq(name, a):
    pool = Pool(name, a["hosts"], a["app"], 2, 3600 * 20)
    for d in range(a["start"], a["end"]):
        base = T0 + d * DAY
        t = base + R.uniform(0, a["every"])
        while t < base + DAY:
            s = pool.get(t)
            h = ((t - base) / 3600 + 8) % 24
            n = min(100, lognorm(max(1, 12 * local_activity(h)), 0.8, 0))
            select(
                s,
                t,
                ["ops.outbox"],
                "SELECT id, topic, payload FROM ops.outbox WHERE topic = $1 AND status = 'PENDING' ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
                n,
            )
            tt = t + 0.01
            for _ in range(min(n, 2)):
                tt = web_stmt(s, tt + R.uniform(0.002, 0.02), R.choice(a["tpl"]))
            if n:
                write(
                    s,
                    tt + 0.01,
                    "INSERT",
                    a["target"],
                    "INSERT INTO %s SELECT * FROM jsonb_populate_recordset(NULL::%s, $1)"
                    % (a["target"], a["target"]),
                    n,
                )
                write(
                    s,
                    tt + 0.02,
                    "UPDATE",
                    "ops.outbox",
                    "UPDATE ops.outbox SET status = 'DONE' WHERE id = ANY($1)",
                    n,
                )
            t += a["every"] * R.uniform(0.7, 1.3)
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, pool)
    pool.close_all(T0 + a["end"] * DAY - 1)


def gen_etl(name, a):
    for d in range(a["start"], a["end"]):
        base = T0 + d * DAY
        t = base + a["hour"] * 3600 + R.uniform(-300, 900)
        if name == "etl_stats" and d >= 18:  # schedule moved 2h later from day 19
            t += 7200
        s = Sess(name, a["hosts"][0], a["app"], t)
        t += 0.5
        misc(s, t, "SET", "SET statement_timeout = 0")
        tables = list(a["tables"])
        if (
            name == "etl_warehouse" and d >= 19
        ):  # three new tables added to the warehouse feed on day 20
            tables += [
                "records.bail_conditions",
                "records.missing_persons",
                "records.firearms_licences",
            ]
        mult = 1.0 if is_workday(d - 1) else 0.4
        for tb in tables:
            rows = lognorm(max(50, TABLES[tb] * 0.004 * mult), 0.5, 0)
            if a["export"]:
                t = copy_query(
                    s,
                    t + R.uniform(1, 5),
                    [tb],
                    "SELECT * FROM %s WHERE updated_at >= '%s'" % (tb, day_date(d - 1).isoformat()),
                    rows,
                )
            else:
                t = select(
                    s,
                    t + R.uniform(1, 5),
                    [tb],
                    "SELECT * FROM %s WHERE updated_at >= $1" % tb,
                    rows,
                )
            t += rows / 20000.0
            if name in ("etl_stats", "etl_court_sync"):
                write(
                    s,
                    t + 1,
                    "INSERT",
                    "stats.daily_counts" if name == "etl_stats" else "records.court_hearings",
                    "INSERT INTO stats.daily_counts SELECT * FROM tmp_load"
                    if name == "etl_stats"
                    else "INSERT INTO records.court_hearings (case_id, hearing_at, court) SELECT case_id, hearing_at, court FROM staging ON CONFLICT DO NOTHING",
                    lognorm(300, 0.5),
                )
                t += 2
        write(
            s,
            t + 1,
            "INSERT",
            "ops.job_runs",
            "INSERT INTO ops.job_runs (job, started_at, finished_at, status) VALUES ($1, $2, now(), 'OK')",
            1,
        )
        s.close(t + 2)


DUMP_TABLES = sorted(TABLES)


def pg_dump_session(user, host, t, tables, app="pg_dump", speed=400000.0):
    s = Sess(user, host, app, t)
    t += 0.05
    for st in [
        "SET DATESTYLE = ISO",
        "SET INTERVALSTYLE = POSTGRES",
        "SET extra_float_digits TO 3",
        "SET synchronize_seqscans TO off",
        "SET statement_timeout = 0",
        "SET lock_timeout = 0",
        "SET idle_in_transaction_session_timeout = 0",
        "SET row_security = off",
    ]:
        t = misc(s, t + 0.001, "SET", st)
    t = misc(s, t + 0.001, "BEGIN", "BEGIN")
    t = misc(s, t + 0.001, "SET", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    for v in [
        "pg_catalog.pg_class",
        "pg_catalog.pg_namespace",
        "pg_catalog.pg_attribute",
        "pg_catalog.pg_type",
        "pg_catalog.pg_proc",
        "pg_catalog.pg_extension",
        "pg_catalog.pg_constraint",
        "pg_catalog.pg_index",
    ]:
        t = s.audit(
            t + 0.01,
            [(1, "READ", "SELECT", "TABLE", v, R.randint(20, 3000))],
            "SELECT c.tableoid, c.oid, c.relname FROM %s c" % v,
            0,
            ps="SELECT",
        )
    for tb in tables:
        t = misc(s, t + 0.001, "LOCK TABLE", "LOCK TABLE %s IN ACCESS SHARE MODE" % tb)
    for tb in tables:
        c = COLS.get(tb, "id, created_at, updated_at, payload")
        t = copy_table(s, t + 0.01, tb, "COPY %s (%s) TO stdout;" % (tb, c))
        t += TABLES[tb] / speed
    t = misc(s, t + 0.01, "COMMIT", "COMMIT")
    s.close(t + 0.05)
    return t


def gen_backup(name, a):
    for d in range(a["start"], a["end"]):
        t = T0 + d * DAY + 19 * 3600 + R.uniform(0, 120)
        pg_dump_session(name, "[local]", t, DUMP_TABLES)


def clerk_day(name, a, d, s_hosts=None, tables=None, app=None):
    base = T0 + d * DAY
    arrive = base + R.uniform(0.5, 1.75) * 3600
    lunch_s = base + R.uniform(3.9, 4.3) * 3600
    lunch_e = lunch_s + R.uniform(0.75, 1.4) * 3600
    leave = base + R.uniform(9.4, 10.8) * 3600
    host = (s_hosts or a["hosts"])[0]
    app = app or a["app"]
    tables = tables or a["tables"]
    n = lognorm(a["act"], 0.35, 5)
    span = (lunch_s - arrive) + (leave - lunch_e)
    times = sorted(arrive + R.uniform(0, span) for _ in range(n))
    times = [x if x < lunch_s else x + (lunch_e - lunch_s) for x in times]
    s = Sess(name, host, app, arrive - 1)
    after_lunch = False
    for t in times:
        if not after_lunch and t > lunch_e:
            s.close(lunch_s + 60)
            s = Sess(name, host, app, lunch_e - R.uniform(1, 300))
            after_lunch = True
        r = R.random()
        tb = R.choice(tables)
        if r < 0.45:
            select(s, t, [tb], "SELECT * FROM %s WHERE id = $1" % tb, 1)
        elif r < 0.75:
            select(
                s,
                t,
                [tb],
                "SELECT id, summary FROM %s WHERE search_vector @@ plainto_tsquery($1) LIMIT 50"
                % tb
                if not tb.startswith("ref.")
                else "SELECT * FROM %s ORDER BY 1" % tb,
                lognorm(12, 1.0, 0, 50) if not tb.startswith("ref.") else lognorm(300, 0.3),
            )
        elif r < 0.88:
            t2 = R.choice(tables)
            select(
                s,
                t,
                sorted({tb, t2}),
                "SELECT x.*, y.id AS ref_id FROM %s x JOIN %s y ON y.id = x.id WHERE x.owner_unit = $1"
                % (tb, t2),
                lognorm(40, 0.9, 0, 400),
            )
        elif r < 0.97:
            write(
                s,
                t,
                "INSERT" if R.random() < 0.6 else "UPDATE",
                tb,
                "UPDATE %s SET updated_at = now(), status = $1 WHERE id = $2" % tb,
                1,
            )
        elif r < 0.99:
            select(
                s,
                t,
                [tb],
                "SELECT * FROM %s WHERE unit_id = $1 AND created_at >= date_trunc('month', now())"
                % tb,
                lognorm(900, 0.6, 100, 4000),
            )
        else:
            s.error(
                t,
                "SELECT * FROM %s WHERE id = $1 FOR UPDATE NOWAIT" % tb,
                'could not obtain lock on row in relation "%s"' % tb.split(".")[1],
                "55P03",
                "SELECT",
            )
    s.close(leave)


def gen_clerk(name, a):
    for d in range(a["start"], a["end"]):
        if not is_workday(d) or R.random() < a["absent"]:
            pass
        else:
            if a.get("transfer") and d >= a["transfer"]:  # legit transfer to health unit
                clerk_day(
                    name,
                    a,
                    d,
                    s_hosts=["10.62.2.%d" % (int(a["hosts"][0].split(".")[-1]))],
                    tables=[
                        "health.patients",
                        "health.lab_results",
                        "health.referrals",
                        "health.diagnoses",
                        "ref.icd10_codes",
                    ],
                    app="MediRec 2.1",
                )
            else:
                clerk_day(name, a, d)
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, None)


def analyst_query(s, t, a, tables=None):
    tables = tables or a["tables"]
    tb = R.choice(tables)
    r = R.random()
    if r < a["big"]:
        rows = lognorm(150000, 1.0, 20000, min(TABLES[tb], 3000000))
        par = 2 if rows > 200000 else 0
        return select(
            s, t, [tb], "SELECT * FROM %s WHERE created_at >= '2026-01-01'" % tb, rows, parallel=par
        )
    elif r < 0.5:
        return select(
            s,
            t,
            [tb],
            "SELECT date_trunc('week', created_at) wk, count(*) FROM %s GROUP BY 1 ORDER BY 1" % tb,
            lognorm(40, 0.8, 1, 600),
        )
    elif r < 0.8:
        t2 = R.choice(tables)
        return select(
            s,
            t,
            sorted({tb, t2}),
            "SELECT a.*, b.* FROM %s a JOIN %s b USING (id) WHERE a.created_at > now() - interval '30 days' LIMIT 5000"
            % (tb, t2),
            lognorm(800, 1.1, 0, 5000),
        )
    elif r < 0.95:
        return select(s, t, [tb], "SELECT * FROM %s LIMIT 200" % tb, 200)
    else:
        s.error(t, "SELECT * FORM %s" % tb)
        return t


def gen_analyst(name, a):
    for d in range(a["start"], a["end"]):
        base = T0 + d * DAY
        if is_workday(d) and R.random() < a["present"]:
            act = a["act"]
            if a.get("project") and d >= a["project"]:
                act *= 2.5
            nsess = R.randint(1, 4)
            for _ in range(nsess):
                st = base + R.uniform(1.0, 10.5) * 3600
                if R.random() < 0.05:
                    st = base + R.uniform(11, 14) * 3600  # occasional evening (local)
                s = Sess(name, a["hosts"][0], R.choice(a["apps"]), st)
                t = st + 5
                for _ in range(lognorm(act / nsess, 0.6, 1)):
                    t = analyst_query(s, t + R.expovariate(1 / 90.0), a)
                s.close(t + R.uniform(10, 900))
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, None)


def dba_catalog(s, t):
    v = R.choice(CATALOG_VIEWS)
    return select(s, t, [v], "SELECT * FROM %s" % v, lognorm(60, 1.0, 1, 5000))


def gen_dba(name, a):
    for d in range(a["start"], a["end"]):
        base = T0 + d * DAY
        days = []
        if is_workday(d) and R.random() < 0.8:
            days.append(base + R.uniform(1.2, 9.5) * 3600)
            if R.random() < 0.5:
                days.append(base + R.uniform(1.2, 9.5) * 3600)
        if a["oncall"] and R.random() < 0.5:
            days.append(base + R.uniform(10, 24) * 3600)  # on-call at any hour
        for st in days:
            host = a["hosts"][1] if R.random() < 0.25 else a["hosts"][0]
            s = Sess(name, host, R.choice(a["apps"]), st)
            t = st + 3
            for _ in range(lognorm(25, 0.6, 3)):
                t += R.expovariate(1 / 40.0)
                r = R.random()
                if r < 0.6:
                    t = dba_catalog(s, t)
                elif r < 0.7:
                    tb = R.choice(
                        [
                            "ops.app_audit",
                            "ops.notifications",
                            "ops.job_runs",
                            "records.case_notes",
                            "health.lab_results",
                        ]
                    )
                    t = misc(s, t, "VACUUM", "VACUUM (ANALYZE) %s" % tb)
                    t += R.uniform(5, 120)
                elif r < 0.85:
                    tb = R.choice(
                        ["ops.app_audit", "ops.job_runs", "ops.outbox", "ops.notifications"]
                    )
                    rows = lognorm(
                        2000, 1.5, 1, 2000000
                    )  # large reads of ops tables are normal for DBAs
                    t = select(
                        s,
                        t,
                        [tb],
                        "SELECT * FROM %s WHERE created_at < now() - interval '400 days' ORDER BY id"
                        % tb,
                        rows,
                    )
                elif r < 0.95:
                    tb = R.choice(
                        ["records.cases", "records.persons", "health.visits", "ops.app_audit"]
                    )
                    t = select(s, t, [tb], "SELECT count(*) FROM %s" % tb, 1)
                elif r < 0.98:
                    t = s.audit(
                        t,
                        [
                            (
                                1,
                                "DDL",
                                "CREATE INDEX",
                                "INDEX",
                                "ops.app_audit_at_idx%d" % R.randint(1, 9),
                                0,
                            ),
                            (1, "DDL", "CREATE INDEX", "TABLE", "ops.app_audit", 0),
                        ],
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS app_audit_at_idx ON ops.app_audit (at)",
                        0,
                        ps="CREATE INDEX",
                    )
                else:
                    t = s.audit(
                        t,
                        [(1, "ROLE", "GRANT", "TABLE", "stats.unit_kpis", 0)],
                        "GRANT SELECT ON stats.unit_kpis TO svc_metabase;",
                        0,
                        ps="GRANT",
                    )
            s.close(t + R.uniform(5, 600))
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, None)


REPORT_TABLES = [
    "stats.daily_counts",
    "stats.unit_kpis",
    "stats.monthly_summary",
    "records.cases",
    "records.incidents",
]


def report_run(name, a, t, tables, scale):
    s = Sess(name, a["hosts"][R.randrange(len(a["hosts"]))], a["app"], t)
    t += 1
    for tb in tables:
        rows = lognorm(scale * (1 if tb.startswith("stats.") else 2), 0.4, 1)
        t = select(
            s,
            t + R.uniform(0.5, 20),
            [tb],
            "SELECT unit_id, kind, sum(n) FROM %s WHERE day BETWEEN $1 AND $2 GROUP BY ROLLUP (unit_id, kind)"
            % tb,
            rows,
        )
    s.close(t + 2)


def gen_report(name, a):
    k = a["kind"]
    for d in range(a["start"], a["end"]):
        base = T0 + d * DAY
        dd = day_date(d)
        nxt = day_date(d + 1)
        month_end = nxt.month != dd.month or (
            dd.weekday() == 4 and (dd + dt.timedelta(days=3)).month != dd.month
        )
        if k == "daily":
            sc = 1500 * (4 if month_end else 1)
            report_run(
                name, a, base + 23 * 3600 - 8 * 3600 + R.uniform(0, 300) - 0, REPORT_TABLES, sc
            )  # 07:00 local
        elif k == "hourly":
            for h in range(24):
                report_run(
                    name,
                    a,
                    base + h * 3600 + R.uniform(60, 240),
                    ["stats.daily_counts", "stats.unit_kpis"],
                    60,
                )
        elif k == "dash":
            if is_workday(d):
                for t in poisson_times(base + 1 * 3600, base + 10 * 3600, lambda t: 20):
                    report_run(
                        name,
                        a,
                        t,
                        R.sample(
                            [
                                "stats.daily_counts",
                                "stats.unit_kpis",
                                "stats.health_kpis",
                                "records.cases",
                            ],
                            2,
                        ),
                        200,
                    )
        elif k == "health":
            report_run(
                name,
                a,
                base + 22 * 3600 + R.uniform(0, 600),
                ["stats.health_kpis", "health.visits", "health.referrals"],
                800,
            )
        elif k == "weekly":
            if dd.weekday() == 0:
                report_run(
                    name,
                    a,
                    base + 21 * 3600,
                    ["records.court_hearings", "records.cases", "records.bail_conditions"],
                    5000,
                )
        elif k == "monthly":
            if dd.day == 1 or (dd.weekday() < 5 and month_end):
                report_run(
                    name,
                    a,
                    base + 16 * 3600 + R.uniform(0, 600),
                    REPORT_TABLES + ["records.custody_records", "records.offences"],
                    20000,
                )
            # otherwise idle: only a connectivity check daily
            s = Sess(name, a["hosts"][0], a["app"], base + 2 * 3600 + R.uniform(0, 60))
            select(s, s.start + 0.2, [], "SELECT 1", 1) if False else misc(
                s, s.start + 0.2, "SET", "SET application_name = 'JasperReports Server 8.2'"
            )
            s.close(s.start + 1)
        for f in INCIDENT_EXTRA.get(name, []):
            f(d, None)


MON_Q = [
    (
        "pg_catalog.pg_stat_database",
        "SELECT datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned FROM pg_stat_database",
        4,
    ),
    (
        "pg_catalog.pg_stat_activity",
        "SELECT state, count(*) FROM pg_stat_activity GROUP BY state",
        4,
    ),
    (
        "pg_catalog.pg_stat_replication",
        "SELECT application_name, state, sync_state, replay_lag FROM pg_stat_replication",
        2,
    ),
    ("pg_catalog.pg_stat_bgwriter", "SELECT * FROM pg_stat_bgwriter", 1),
    ("pg_catalog.pg_locks", "SELECT mode, count(*) FROM pg_locks GROUP BY mode", 6),
    (
        "pg_catalog.pg_stat_user_tables",
        "SELECT relname, seq_scan, idx_scan, n_live_tup, n_dead_tup FROM pg_stat_user_tables",
        46,
    ),
    (
        "pg_catalog.pg_stat_statements",
        "SELECT queryid, calls, total_exec_time FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 100",
        100,
    ),
    ("pg_catalog.pg_database", "SELECT datname, pg_database_size(datname) FROM pg_database", 4),
    ("pg_catalog.pg_stat_archiver", "SELECT * FROM pg_stat_archiver", 1),
    ("pg_catalog.pg_settings", "SELECT name, setting FROM pg_settings WHERE name = ANY($1)", 12),
]


def gen_monitor(name, a):
    hosts = a["hosts"]
    qs = {
        "mon_exporter": MON_Q[:6],
        "mon_zabbix": [MON_Q[1], MON_Q[4], MON_Q[8]],
        "mon_pgwatch": MON_Q,
        "mon_lbcheck": None,
    }[name]
    s = None
    t = T0 + a["start"] * DAY + R.uniform(0, a["every"])
    end = T0 + a["end"] * DAY
    sess_end = 0
    while t < end:
        if s is None or t > sess_end:
            if s is not None:
                s.close(t - 0.5)
            s = Sess(name, R.choice(hosts), a["app"], t - 0.05)
            sess_end = t + (R.uniform(3, 8) * 3600 if name != "mon_lbcheck" else 0)
        if qs is None:
            select(s, t, [], "SELECT 1", 1) if False else s.audit(
                t, [(1, "READ", "SELECT", "", "", 1)], "SELECT 1", 1, ps="SELECT"
            )
        else:
            tt = t
            for v, q, rows in qs:
                tt = select(s, tt + R.uniform(0.001, 0.01), [v], q, max(1, rows + R.randint(-1, 2)))
        t += a["every"] * R.uniform(0.98, 1.02)
    if s:
        s.close(end - 1)


GEN = {
    "web": gen_web,
    "mq": gen_mq,
    "etl": gen_etl,
    "backup": gen_backup,
    "clerk": gen_clerk,
    "analyst": gen_analyst,
    "dba": gen_dba,
    "report": gen_report,
    "monitor": gen_monitor,
}


# ------------------------------------------------------------------ incidents
LABELS = []


def label(acct, start, end, kind, desc):
    LABELS.append(("INC%02d" % (len(LABELS) + 1), acct, iso(start), iso(end), kind, desc))


def at(day, hh, mm=0, ss=0):
    return T0 + day * DAY + hh * 3600 + mm * 60 + ss


def pick(role, pred=lambda n, a: True, exclude=set()):
    c = sorted(
        n
        for n, a in ACCOUNTS.items()
        if a["role"] == role
        and a["start"] == 0
        and a["end"] == NDAYS
        and not a.get("newcomer")
        and n not in exclude
        and pred(n, a)
    )
    return R.choice(c)


def plan_incidents():
    used = set()

    def once(name, day, fn):
        def f(d, pool, _day=day, _fn=fn):
            if d == _day:
                _fn(pool)

        INCIDENT_EXTRA[name].append(f)
        used.add(name)

    # ---- burst bulk pulls with an app's credentials (days are 0-based: 14 = day 15)
    def bulk(acct, day, hh, mm, rels_rows, desc):
        t0 = at(day, hh, mm, 7)

        def fn(pool, t0=t0):
            s = pool.fresh(t0)
            t = t0
            for tb, rows in rels_rows:
                t = select(s, t + 0.5, [tb], "SELECT * FROM %s" % tb, rows)
                t += rows / 60000.0
            s.close(t + 1)
            label(acct, t0, t, "burst_bulk", desc)

        once(acct, day, fn)

    bulk(
        "svc_person_lookup",
        15,
        3,
        12,
        [("records.persons", 4200000)],
        "SELECT * of records.persons (4.2M rows) through the app pool during work hours",
    )
    bulk(
        "svc_mobile_api",
        17,
        14,
        40,
        [("records.warrants", 120000)],
        "SELECT * of records.warrants (120k rows) at 22:40 local through the app pool",
    )
    bulk(
        "svc_firearms_api",
        19,
        6,
        5,
        [("records.firearms_licences", 300000), ("records.addresses", 90000)],
        "SELECT * of firearms_licences (300k) + partial addresses (90k) during work hours",
    )

    # ---- COPY/pg_dump with the wrong account
    def f_c1(pool):
        t0 = at(15, 16, 20, 3)
        t = pg_dump_session(
            "svc_report_daily",
            "10.70.1.201",
            t0,
            ["records.persons", "records.addresses", "records.cases", "records.case_notes"],
            speed=300000.0,
        )
        label(
            "svc_report_daily",
            t0,
            t,
            "copy_export",
            "pg_dump -t persons/addresses/cases/case_notes with the reporting service's credentials from an analyst workstation",
        )

    once("svc_report_daily", 15, f_c1)
    c2 = pick("clerk", exclude=used)

    def f_c2(pool, c2=c2):
        a = ACCOUNTS[c2]
        t0 = at(17, 6, 31, 40)
        s = Sess(c2, a["hosts"][0], "psql", t0)
        t = copy_table(s, t0 + 3, "records.case_notes", "COPY records.case_notes TO STDOUT;")
        t = copy_table(s, t + 420, "records.persons", "COPY records.persons TO STDOUT;")
        s.close(t + 200)
        label(
            c2,
            t0,
            t + 200,
            "copy_export",
            "COPY case_notes and persons TO STDOUT with a clerk's credentials (psql from the clerk's desktop)",
        )

    once(c2, 17, f_c2)

    def f_c3(pool):
        t0 = at(18, 19, 45, 12)
        s = Sess("svc_mq_gp_feed", "10.30.7.21", "psql", t0)
        t = copy_query(
            s,
            t0 + 2,
            ["health.patients", "health.diagnoses"],
            "SELECT p.*, d.* FROM health.patients p JOIN health.diagnoses d ON d.patient_id = p.id WHERE d.code LIKE 'F%'",
            640000,
        )
        s.close(t + 95)
        label(
            "svc_mq_gp_feed",
            t0,
            t + 95,
            "copy_export",
            "COPY (SELECT patients JOIN diagnoses) TO STDOUT, 640k rows, with the GP-feed consumer's credentials",
        )

    once("svc_mq_gp_feed", 18, f_c3)

    # ---- slow drips (2-4 days, a few x normal daily volume, normal-looking queries)
    d1 = pick("clerk", lambda n, a: a["act"] >= 100, exclude=used)

    def drip_clerk(acct, days, factor):
        a = ACCOUNTS[acct]
        st = {}

        def mk(day):
            def fn(pool, day=day):
                per_day = st.setdefault("per_day", int(factor * train_median_daily(acct)))
                base = T0 + day * DAY
                s = Sess(acct, a["hosts"][0], a["app"], base + 1.6 * 3600)
                t = s.start + 2
                got = 0
                first = None
                while got < per_day:
                    t += R.uniform(30, 80)
                    if 4.2 * 3600 < t - base < 5.2 * 3600:
                        t = base + 5.3 * 3600
                    n = R.randint(30, 50)
                    select(
                        s,
                        t,
                        ["records.persons"],
                        "SELECT id, summary FROM records.persons WHERE search_vector @@ plainto_tsquery($1) LIMIT 50",
                        n,
                    )
                    first = first or t
                    got += n
                s.close(t + 30)
                st.setdefault("s", first)
                st["e"] = t
                if day == days[-1]:
                    label(
                        acct,
                        st["s"],
                        st["e"],
                        "slow_drip",
                        "extra person searches ~%d rows/day (%.1fx its training median day of %d) over %d days from the clerk's own desktop/app"
                        % (per_day, factor, train_median_daily(acct), len(days)),
                    )

            return fn

        for dd in days:
            once(acct, dd, mk(dd))

    drip_clerk(d1, [14, 15, 16], 3.0)
    d2 = pick("analyst", lambda n, a: a["act"] >= 30, exclude=used)

    def drip_an(acct, days, factor):
        a = ACCOUNTS[acct]
        st = {}

        def mk(day):
            def fn(pool, day=day):
                per_day = st.setdefault("per_day", int(factor * train_median_daily(acct)))
                base = T0 + day * DAY
                s = Sess(acct, a["hosts"][0], a["apps"][0], base + 2 * 3600)
                t = s.start + 2
                got = 0
                while got < per_day:
                    t += R.uniform(120, 400)
                    n = R.randint(max(50, per_day // 40), max(100, per_day // 15))
                    tb = R.choice(a["tables"])
                    select(s, t, [tb], "SELECT * FROM %s WHERE id BETWEEN $1 AND $2" % tb, n)
                    st.setdefault("s", t)
                    got += n
                s.close(t + 60)
                st["e"] = t
                if day == days[-1]:
                    label(
                        acct,
                        st["s"],
                        st["e"],
                        "slow_drip",
                        "analyst pulls ~%d extra rows/day (%.1fx its training median day of %d) of its own tables in chunks over %d days"
                        % (per_day, factor, train_median_daily(acct), len(days)),
                    )

            return fn

        for dd in days:
            once(acct, dd, mk(dd))

    drip_an(d2, [15, 16, 17, 18], 3.0)

    def drip_mq(acct, days, factor):
        st = {}

        def mk(day):
            def fn(pool, day=day):
                per_hour = st.setdefault("per_hour", int(factor * train_median_daily(acct) / 24))
                base = T0 + day * DAY
                for h in range(24):
                    t = base + h * 3600 + R.uniform(0, 600)
                    n = 0
                    s = pool.fresh(t)
                    while n < per_hour:
                        r = R.randint(20, 60)
                        select(
                            s,
                            t,
                            ["records.vehicles"],
                            "SELECT id, plate, make, model, owner_id FROM records.vehicles WHERE plate = ANY($1)",
                            r,
                        )
                        st.setdefault("s", t)
                        st["e"] = t
                        n += r
                        t += R.uniform(20, 90)
                    s.close(t)
                if day == days[-1]:
                    label(
                        acct,
                        st["s"],
                        st["e"],
                        "slow_drip",
                        "ANPR consumer credentials used for extra vehicle lookups ~%d rows/hour (%.1fx its training median day of %d) over %d days"
                        % (per_hour, factor, train_median_daily(acct), len(days)),
                    )

            return fn

        for dd in days:
            once(acct, dd, mk(dd))

    drip_mq("svc_mq_anpr", [18, 19, 20], 2.5)

    # ---- enumeration
    alltabs = sorted(TABLES)

    def enum(acct, day, hh, mm, ntab, host, app, gap, desc, pool_use=False):
        a = ACCOUNTS[acct]

        def fn(pool):
            t0 = at(day, hh, mm, 11)
            s = (
                pool.fresh(t0)
                if pool_use
                else Sess(acct, host or a["hosts"][0], app or a.get("app") or a["apps"][0], t0)
            )
            t = select(
                s,
                t0 + 1,
                ["information_schema.tables"],
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema')",
                len(TABLES),
            )
            for tb in R.sample(alltabs, ntab):
                t = select(
                    s,
                    t + R.uniform(gap * 0.5, gap * 1.5),
                    [tb],
                    "SELECT * FROM %s LIMIT 5" % tb,
                    min(5, TABLES[tb]),
                )
            s.close(t + 5)
            label(acct, t0, t, "enumeration", desc)

        once(acct, day, fn)

    e1 = pick("clerk", exclude=used)
    enum(
        e1,
        16,
        7,
        10,
        32,
        None,
        None,
        25,
        "information_schema + SELECT * LIMIT 5 over 32 tables from the clerk's desktop/app",
    )
    enum(
        "svc_docs_api",
        18,
        18,
        30,
        44,
        None,
        None,
        4,
        "44 tables, LIMIT 5 each, at 02:30 local through the docs-svc pool",
        pool_use=True,
    )
    e3 = pick("analyst", exclude=used)
    enum(
        e3, 17, 2, 0, 26, None, None, 60, "analyst sampling 26 tables (most never read) at LIMIT 5"
    )

    # ---- off-hours from a new client address / application
    f1 = pick("clerk", exclude=used)

    def offh(acct, day, hh, mm, host, app, nq, tables, desc):
        def fn(pool):
            t0 = at(day, hh, mm, 33)
            s = Sess(acct, host, app, t0)
            t = t0
            for _ in range(nq):
                tb = R.choice(tables)
                t = select(
                    s,
                    t + R.uniform(20, 90),
                    [tb],
                    "SELECT * FROM %s WHERE family_name ILIKE $1 LIMIT 50" % tb,
                    R.randint(5, 50),
                )
            s.close(t + 40)
            label(acct, t0, t + 40, "offhours_new_client", desc)

        once(acct, day, fn)

    offh(
        f1,
        16,
        15,
        30,
        "172.20.44.9",
        "psql",
        20,
        ACCOUNTS[f1]["tables"][:3],
        "clerk account at 23:30 local from a VPN address with psql, ~20 ordinary-sized queries of its own tables",
    )
    f2 = pick("analyst", exclude=used)
    offh(
        f2,
        20,
        19,
        10,
        "203.0.113.77",
        ACCOUNTS[f2]["apps"][0],
        30,
        ACCOUNTS[f2]["tables"],
        "analyst account on Sunday 03:10 local from an external address, its usual app, its own tables",
    )
    offh(
        "svc_report_hourly",
        19,
        20,
        5,
        "10.99.3.14",
        "psql",
        25,
        ["stats.daily_counts", "stats.unit_kpis", "records.cases"],
        "reporting service credentials from an unknown host with psql at 04:05 local",
    )

    # ---- DBA reading data tables it never reads
    def dba_read(acct, day, hh, mm, reads, desc):
        a = ACCOUNTS[acct]

        def fn(pool):
            t0 = at(day, hh, mm, 2)
            s = Sess(acct, a["hosts"][0], "psql", t0)
            t = t0
            t = dba_catalog(s, t + 5)
            for tb, rows in reads:
                t = select(
                    s,
                    t + R.uniform(30, 120),
                    [tb],
                    "SELECT * FROM %s WHERE id > $1 ORDER BY id LIMIT %d" % (tb, rows),
                    rows,
                )
            s.close(t + 60)
            label(acct, t0, t + 60, "dba_data_read", desc)

        once(acct, day, fn)

    dba_read(
        "dba_ng",
        15,
        9,
        10,
        [("health.mental_health_notes", 3000), ("health.diagnoses", 12000)],
        "DBA reads mental-health notes (3k) and diagnoses (12k)",
    )
    dba_read(
        "dba_oncall",
        17,
        17,
        40,
        [("records.persons", 25000), ("records.addresses", 25000), ("records.intel_reports", 4000)],
        "on-call DBA at 01:40 local reads persons/addresses/intel (54k rows)",
    )
    dba_read(
        "dba_kumar",
        19,
        3,
        0,
        [("records.warrants", 8000), ("records.custody_records", 12000)],
        "DBA reads warrants and custody records (20k rows) during work hours",
    )

    # ---- paged pulls over 10-20 minutes
    def paged(acct, day, hh, mm, tb, page, gap, minutes, style, desc, pool_use):
        a = ACCOUNTS[acct]

        def fn(pool):
            t0 = at(day, hh, mm, 19)
            s = (
                pool.fresh(t0)
                if pool_use
                else Sess(acct, a["hosts"][0], a.get("app") or a["apps"][0], t0)
            )
            t = t0
            k = 0
            while t < t0 + minutes * 60:
                if style == "offset":
                    st = "SELECT %s FROM %s ORDER BY id LIMIT %d OFFSET $1" % (cols(tb), tb, page)
                else:
                    st = "SELECT %s FROM %s WHERE id > $1 ORDER BY id LIMIT %d" % (
                        cols(tb),
                        tb,
                        page,
                    )
                t = select(s, t, [tb], st, page)
                k += 1
                t += R.uniform(gap * 0.6, gap * 1.4)
            s.close(t + 10)
            label(acct, t0, t, "paged_pull", desc + " (%d pages of %d)" % (k, page))

        once(acct, day, fn)

    paged(
        "svc_case_api",
        14,
        13,
        5,
        "records.case_notes",
        500,
        1.5,
        15,
        "offset",
        "LIMIT/OFFSET walk of case_notes at 21:05 local through the case-api pool",
        True,
    )
    h2 = pick("clerk", exclude=used)
    paged(
        h2,
        18,
        3,
        40,
        "records.persons",
        100,
        2.0,
        18,
        "keyset",
        "keyset walk of persons from the clerk's desktop/app in work hours",
        False,
    )
    paged(
        "svc_gp_portal",
        20,
        1,
        20,
        "health.patients",
        200,
        1.0,
        18,
        "offset",
        "LIMIT/OFFSET walk of patients on a Sunday morning through the gp-portal pool",
        True,
    )

    # legit behaviour changes (not labelled)
    tr = pick("clerk", exclude=used)
    ACCOUNTS[tr]["transfer"] = 16
    pr = pick("analyst", exclude=used)
    ACCOUNTS[pr]["project"] = 15
    return {"transfer": tr, "project": pr}


def main():
    build_accounts()
    legit = plan_incidents()
    for n in sorted(ACCOUNTS):
        a = ACCOUNTS[n]
        GEN[a["role"]](n, a)
        print("generated", n, a["role"], len(LINES), file=sys.stderr)
    LINES.sort()
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    files = {}
    for t, _, line in LINES:
        day = dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
        f = files.get(day)
        if f is None:
            f = files[day] = gzip.open(
                os.path.join(OUT, "logs", "postgresql-%s.json.gz" % day), "wt", compresslevel=3
            )
        f.write(line)
        f.write("\n")
    for f in files.values():
        f.close()
    LABELS.sort(key=lambda x: x[2])
    with open(os.path.join(OUT, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "account", "start", "end", "kind", "description"])
        for i, l in enumerate(LABELS):
            w.writerow(l)
    with open(os.path.join(OUT, "accounts.json"), "w") as f:
        json.dump(
            {
                n: {
                    k: v
                    for k, v in a.items()
                    if k
                    in (
                        "role",
                        "app",
                        "apps",
                        "hosts",
                        "start",
                        "end",
                        "transfer",
                        "project",
                        "newcomer",
                    )
                }
                for n, a in ACCOUNTS.items()
            },
            f,
            indent=1,
        )
    with open(os.path.join(OUT, "truth_counts.json"), "w") as f:
        json.dump(
            {"total_lines": len(LINES), "accounts": TRUTH, "legit_changes": legit}, f, indent=1
        )
    print("lines", len(LINES), "accounts", len(ACCOUNTS), "labels", len(LABELS), file=sys.stderr)


if __name__ == "__main__":
    main()
