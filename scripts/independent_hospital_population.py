#!/usr/bin/env python3
"""A fourth independently written population: a US hospital's EHR database.

Written without reading trovewatch's simulator or the other independent generators,
from the README, docs/evaluation.md, ../shared/FORMATS.md and the real PostgreSQL 15 +
pgAudit 1.7.0 csvlog in ../shared/reference-logs.

One PostgreSQL 15 + pgAudit 1.7 server, ``log_destination = 'csvlog'``,
``log_timezone = 'America/Chicago'`` (times printed with CDT / CST, as PostgreSQL
prints them), pgaudit.log = 'read,write,ddl,role', log_relation = on, log_rows = on,
log_parameter = off, log_catalog at its default (on), log_connections and
log_disconnections on, no duration lines. Files rotated at local midnight
(``postgresql-YYYY-MM-DD_000000.csv``, named by the local date as PostgreSQL names
them), all but the last two gzipped; each file's mtime is its last line's time (as the
server and gzip leave them).

Three weeks, 2026-10-18 00:00 CDT to 2026-11-08 00:00 CST, across the end of US
daylight saving time (2026-11-01 02:00 CDT -> 01:00 CST): train on the first two
weeks (until 2026-11-01T05:00:00Z, local midnight), score the third.

About 300 accounts: EHR web application pools, HL7 interface engine, billing batch,
nightly pg_dump backup, a reporting service, clinicians on a 3-shift rota (days,
evenings, nights, weekends; some rotating), pharmacists, billing and scheduling
clerks, researchers/analysts with heavy-tailed days, DBAs (one on call each week).
Unlabelled: Election Day (2026-11-03) as an office holiday, a month-end billing close
run on the first business day of November, a one-off migration by a DBA, a nurse
transferred from the emergency department to oncology, a new patient-portal service
arriving mid-training. 24 labelled incidents (3 of each of 8 kinds) in the scored week,
in ``labels.csv`` (incident_id,account,start,end,kind,description; UTC).

Also written: ``unusual.csv`` (the unlabelled events), ``truth.csv`` (rows read and
statements per account per UTC day, counting each statement once, for checking the
parser).

    python3 scripts/independent_hospital_population.py --out out/hosp --seed 1
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import os
import random
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

CHI = ZoneInfo("America/Chicago")
START_DAY = date(2026, 10, 18)  # a Sunday
DAYS = 21
DST_END = datetime(2026, 11, 1, 7, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # 02:00 CDT
DB = "ehr"
HOLIDAY = date(2026, 11, 3)  # Election Day: office staff off
SCORED_FROM = date(2026, 11, 1)


def local(d: date, hour: float) -> float:
    """Epoch of a local wall-clock time (hour may be >= 24 or fractional)."""
    naive = datetime(d.year, d.month, d.day) + timedelta(hours=hour)
    return naive.replace(tzinfo=CHI).timestamp()


def tz_of(t: float) -> tuple[int, str]:
    return (-5 * 3600, "CDT") if t < DST_END else (-6 * 3600, "CST")


def fmt_ms(t: float) -> str:
    off, name = tz_of(t)
    s = int(t)
    ms = int((t - s) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s + off)) + f".{ms:03d} {name}"


def fmt_s(t: float) -> str:
    off, name = tz_of(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(t) + off)) + f" {name}"


def local_date(t: float) -> date:
    off, _ = tz_of(t)
    return datetime.utcfromtimestamp(int(t) + off).date()


def utc_iso(t: float) -> str:
    return datetime.utcfromtimestamp(int(t)).strftime("%Y-%m-%dT%H:%M:%SZ")


def csvq(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def audit_field(s: str) -> str:
    # pgAudit quotes the statement when it holds a comma, quote or line break
    if any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


# ---------------------------------------------------------------- schema
TABLES = {
    "clinical.patients": 1_450_000,
    "clinical.encounters": 6_200_000,
    "clinical.orders": 9_000_000,
    "clinical.results": 25_000_000,
    "clinical.medications": 4_000_000,
    "clinical.notes": 3_100_000,
    "clinical.vitals": 30_000_000,
    "clinical.allergies": 900_000,
    "clinical.problems": 2_500_000,
    "clinical.diagnoses": 5_000_000,
    "clinical.imaging_reports": 700_000,
    "clinical.care_team": 300_000,
    "ed.triage": 400_000,
    "ed.tracking_board": 20_000,
    "icu.flowsheets": 3_000_000,
    "oncology.chemo_regimens": 60_000,
    "oncology.tumor_registry": 40_000,
    "surgery.cases": 250_000,
    "surgery.anesthesia_records": 240_000,
    "labor.deliveries": 30_000,
    "billing.claims": 3_000_000,
    "billing.charges": 12_000_000,
    "billing.payments": 2_600_000,
    "billing.invoices": 2_800_000,
    "billing.insurance_plans": 4_000,
    "billing.remittances": 1_900_000,
    "billing.patient_coverage": 1_600_000,
    "hl7.inbound_messages": 40_000_000,
    "hl7.outbound_messages": 30_000_000,
    "hl7.acks": 60_000_000,
    "scheduling.appointments": 3_500_000,
    "scheduling.providers": 3_000,
    "scheduling.rooms": 900,
    "pharmacy.dispenses": 5_000_000,
    "pharmacy.formulary": 12_000,
    "pharmacy.inventory": 30_000,
    "research.cohorts": 2_000,
    "research.cohort_members": 800_000,
    "research.deid_extracts": 4_000_000,
    "research.irb_protocols": 600,
    "admin.users": 4_000,
    "admin.departments": 120,
    "admin.audit_settings": 50,
    "audit.access_log": 80_000_000,
    "portal.notifications": 2_000_000,
    "portal.accounts": 600_000,
    "clinical.notes_v2": 0,
}
COLS = {t: "id, patient_id, created_at, updated_at, payload" for t in TABLES}
COLS["clinical.patients"] = "id, mrn, first_name, last_name, dob, sex, address, phone, ssn_last4"

UNIT_TABLES = {
    "ed": ["ed.triage", "ed.tracking_board"],
    "icu": ["icu.flowsheets"],
    "oncology": ["oncology.chemo_regimens", "oncology.tumor_registry"],
    "surgery": ["surgery.cases", "surgery.anesthesia_records"],
    "labor": ["labor.deliveries"],
    "medsurg": [],
}
UNIT_SUBNET = {"ed": 31, "icu": 32, "oncology": 33, "surgery": 34, "labor": 35, "medsurg": 36}

CLIN_Q = [  # (template, tables, rows lo, hi, weight)
    ("SELECT * FROM clinical.patients WHERE mrn = $1", ["clinical.patients"], 1, 1, 10),
    (
        "SELECT e.*, p.last_name FROM clinical.encounters e JOIN clinical.patients p ON p.id = e.patient_id WHERE e.patient_id = $1 ORDER BY e.admitted_at DESC",
        ["clinical.encounters", "clinical.patients"],
        1,
        12,
        6,
    ),
    (
        "SELECT * FROM clinical.results WHERE encounter_id = $1 ORDER BY resulted_at DESC",
        ["clinical.results"],
        3,
        60,
        8,
    ),
    (
        "SELECT * FROM clinical.vitals WHERE encounter_id = $1 AND taken_at > now() - interval '24 hours'",
        ["clinical.vitals"],
        4,
        40,
        8,
    ),
    (
        "SELECT * FROM clinical.medications WHERE encounter_id = $1 AND active",
        ["clinical.medications"],
        2,
        18,
        6,
    ),
    (
        "SELECT * FROM clinical.orders WHERE encounter_id = $1 AND status <> 'cancelled'",
        ["clinical.orders"],
        1,
        25,
        5,
    ),
    (
        "SELECT id, author_id, note_type, created_at, body FROM clinical.notes WHERE encounter_id = $1 ORDER BY created_at DESC LIMIT 20",
        ["clinical.notes"],
        1,
        20,
        5,
    ),
    ("SELECT * FROM clinical.allergies WHERE patient_id = $1", ["clinical.allergies"], 0, 4, 3),
    (
        "SELECT * FROM clinical.problems WHERE patient_id = $1 AND resolved_at IS NULL",
        ["clinical.problems"],
        0,
        9,
        2,
    ),
    ("SELECT * FROM clinical.care_team WHERE encounter_id = $1", ["clinical.care_team"], 1, 6, 2),
]
CLIN_W = [
    "INSERT INTO clinical.notes (encounter_id, author_id, note_type, body) VALUES ($1, $2, $3, $4)",
    "INSERT INTO clinical.vitals (encounter_id, taken_at, kind, value) VALUES ($1, $2, $3, $4)",
    "UPDATE clinical.orders SET status = $1, updated_at = now() WHERE id = $2",
]


class Writer:
    def __init__(self, out: str):
        self.out = out
        self.buf: dict[date, list] = defaultdict(list)
        self.seq = 0
        self.pid = 21000
        self.files: list[str] = []
        self.lines = 0

    def add(self, t: float, line: str) -> None:
        self.seq += 1
        self.buf[local_date(t)].append((t, self.seq, line))

    def flush_before(self, d: date | None) -> None:
        for k in sorted(self.buf):
            if d is not None and k >= d:
                continue
            rows = sorted(self.buf.pop(k))
            path = os.path.join(self.out, f"postgresql-{k.isoformat()}_000000.csv")
            with open(path, "w", encoding="utf-8", newline="") as f:
                for _, _, line in rows:
                    f.write(line)
                    f.write("\n")
            last = rows[-1][0]
            os.utime(path, (last, last))
            self.files.append(path)
            self.lines += len(rows)


class Session:
    """One backend: connection lines, AUDIT lines, disconnection."""

    def __init__(
        self, w: Writer, rng: random.Random, user: str, t0: float, host: str, app: str, truth
    ):
        self.w, self.rng, self.user, self.host, self.app = w, rng, user, host, app
        w.pid += rng.randint(1, 40)
        if w.pid > 4_000_000:
            w.pid = 21000
        self.pid = w.pid
        self.port = rng.randint(33000, 60999)
        self.t0 = t0
        self.t = t0
        self.sid = f"{int(t0):x}.{self.pid:x}"
        self.sstart = fmt_s(t0)
        self.ln = 0
        self.stmt = 0
        self.vx = 0
        self.backend = rng.randint(3, 40)
        self.truth = truth
        self.conn = "[local]" if host == "[local]" else f"{host}:{self.port}"
        self._line(
            t0,
            None,
            None,
            '""',
            "",
            "0",
            "LOG,00000",
            f"connection received: host={host}"
            + ("" if host == "[local]" else f" port={self.port}"),
            app_field='""',
            backend="not initialized",
        )
        t1 = t0 + rng.uniform(0.001, 0.02)
        self.vx += 1
        self._line(
            t1,
            user,
            DB,
            '"authentication"',
            f"{self.backend}/{self.vx}",
            "0",
            "LOG,00000",
            f"connection authorized: user={user} database={DB} application_name={app}",
            app_field='""',
        )
        self.t = t1

    def _line(
        self,
        t,
        user,
        db,
        tag,
        vxid,
        txid,
        sev,
        msg,
        app_field=None,
        backend="client backend",
        tail=",,,,,,,,",
    ):
        self.ln += 1
        u = csvq(user) if user else ""
        d = csvq(db) if db else ""
        a = app_field if app_field is not None else csvq(self.app)
        line = (
            f"{fmt_ms(t)},{u},{d},{self.pid},{csvq(self.conn)},{self.sid},{self.ln},{tag},"
            f"{self.sstart},{vxid},{txid},{sev},{csvq(msg)}{tail},{a},{csvq(backend)},,0"
        )
        self.w.add(t, line)

    def stmt_at(
        self, t: float, text: str, rels, rows: int, cls: str = "READ", cmd: str | None = None
    ):
        """rels: list of relation names ([] = no object). One AUDIT line per relation."""
        self.stmt += 1
        self.vx += 1
        cmd = cmd or text.split()[0].upper()
        if cmd == "WITH":
            cmd = "SELECT"
        tag = csvq(cmd if cmd != "DECLARE" else "DECLARE CURSOR")
        txid = "0" if cls == "READ" else str(800000 + self.stmt + self.pid)
        body = audit_field(text)
        if not rels:
            rels = [None]
        for r in rels:
            obj = f"TABLE,{r}" if r else ","
            msg = f"AUDIT: SESSION,{self.stmt},1,{cls},{cmd},{obj},{body},<not logged>,{rows}"
            self._line(t, self.user, DB, tag, f"{self.backend}/{self.vx}", txid, "LOG,00000", msg)
        if self.truth is not None:
            day = datetime.utcfromtimestamp(int(t)).date()
            k = (self.user, day)
            tr = self.truth[k]
            tr[1] += 1
            if cls == "READ" and any(r and not r.startswith("pg_catalog.") for r in rels):
                tr[0] += rows
        self.t = max(self.t, t)

    def error_at(self, t: float, text: str, msg: str, code: str = "42501"):
        self.vx += 1
        self.ln += 1
        line = (
            f"{fmt_ms(t)},{csvq(self.user)},{csvq(DB)},{self.pid},{csvq(self.conn)},{self.sid},{self.ln},"
            f"{csvq(text.split()[0].upper())},{self.sstart},{self.backend}/{self.vx},0,ERROR,{code},{csvq(msg)}"
            f',,,,,,{csvq(text)},,,{csvq(self.app)},"client backend",,0'
        )
        self.w.add(t, line)
        self.t = max(self.t, t)

    def close(self, t: float | None = None):
        t = max(t or self.t, self.t) + self.rng.uniform(0.001, 0.5)
        dur = t - self.t0
        h, rem = divmod(dur, 3600)
        m, s = divmod(rem, 60)
        hostpart = (
            "host=[local]" if self.host == "[local]" else f"host={self.host} port={self.port}"
        )
        self._line(
            t,
            self.user,
            DB,
            '"idle"',
            "",
            "0",
            "LOG,00000",
            f"disconnection: session time: {int(h)}:{int(m):02d}:{s:06.3f} user={self.user} "
            f"database={DB} {hostpart}",
        )


# ---------------------------------------------------------------- the organisation
def build_accounts(rng: random.Random):
    acc = {}
    for i in range(1, 9):
        acc[f"ehr_web_{i:02d}"] = dict(
            role="web",
            hosts=[f"10.20.1.{10 + i}", f"10.20.1.{30 + i}"],
            app="PostgreSQL JDBC Driver",
            scale=rng.uniform(0.7, 1.3),
        )
    acc["hl7_inbound"] = dict(role="hl7in", hosts=["10.20.4.21"], app="Rhapsody-HL7")
    acc["hl7_outbound"] = dict(role="hl7out", hosts=["10.20.4.22"], app="Rhapsody-HL7")
    acc["billing_batch"] = dict(role="billbatch", hosts=["10.20.6.5"], app="billing-nightly")
    acc["backup_svc"] = dict(role="backup", hosts=["10.10.0.50"], app="pg_dump")
    acc["report_svc"] = dict(role="report", hosts=["10.20.7.9"], app="ssrs-reports")
    acc["pacs_svc"] = dict(role="pacs", hosts=["10.20.8.3"], app="pacs-bridge")
    acc["portal_notify_svc"] = dict(
        role="portal", hosts=["10.20.9.14"], app="portal-notify", first=date(2026, 10, 29)
    )
    first = [
        "amy",
        "ben",
        "carla",
        "dev",
        "elena",
        "farid",
        "grace",
        "hank",
        "ines",
        "jamal",
        "kim",
        "luis",
        "maya",
        "nora",
        "omar",
        "priya",
        "quinn",
        "rosa",
        "sam",
        "tara",
        "uma",
        "victor",
        "wen",
        "xena",
        "yusuf",
        "zoe",
    ]
    last = [
        "adams",
        "baker",
        "chen",
        "diaz",
        "evans",
        "fox",
        "garcia",
        "hill",
        "ito",
        "jones",
        "khan",
        "lopez",
        "moore",
        "nguyen",
        "owens",
        "patel",
        "reyes",
        "smith",
        "tran",
        "walsh",
        "young",
    ]
    used = set()

    def name(prefix):
        while True:
            n = f"{prefix}_{rng.choice(first)[0]}{rng.choice(last)}"
            if n not in used:
                used.add(n)
                return n

    units = list(UNIT_TABLES)
    for i in range(208):
        prefix = rng.choice(["rn", "rn", "rn", "md", "np"])
        n = name(prefix)
        unit = rng.choice(units)
        shift = rng.choices(["day", "evening", "night"], [0.5, 0.25, 0.25])[0]
        ws = [f"10.30.{UNIT_SUBNET[unit]}.{rng.randint(10, 60)}" for _ in range(3)]
        acc[n] = dict(
            role="clin",
            unit=unit,
            shift=shift,
            rotating=rng.random() < 0.15,
            ws=ws,
            app="EpicLike Hyperspace",
            scale=math.exp(rng.gauss(0, 0.35)),
            weekend=rng.random() < 0.6,
        )
    for i in range(8):
        n = name("rph")
        acc[n] = dict(
            role="pharm",
            shift=rng.choice(["day", "evening", "night"]),
            rotating=False,
            ws=[f"10.30.40.{rng.randint(10, 40)}" for _ in range(2)],
            app="EpicLike Willow",
            scale=math.exp(rng.gauss(0, 0.3)),
            weekend=True,
        )
    for i in range(20):
        n = name("bill")
        acc[n] = dict(
            role="billclerk",
            ws=[f"10.40.2.{rng.randint(10, 200)}"],
            app="EpicLike Resolute",
            scale=math.exp(rng.gauss(0, 0.4)),
        )
    for i in range(15):
        n = name("sched")
        acc[n] = dict(
            role="sched",
            ws=[f"10.40.3.{rng.randint(10, 200)}"],
            app="EpicLike Cadence",
            scale=math.exp(rng.gauss(0, 0.4)),
            saturday=rng.random() < 0.4,
        )
    proj_pool = [
        "research.cohorts",
        "research.cohort_members",
        "research.deid_extracts",
        "clinical.encounters",
        "clinical.results",
        "clinical.diagnoses",
        "clinical.medications",
        "clinical.problems",
        "oncology.tumor_registry",
        "icu.flowsheets",
        "surgery.cases",
        "billing.charges",
    ]
    for i in range(25):
        n = name("res")
        tabs = ["research.cohorts", "research.deid_extracts"] + rng.sample(
            proj_pool[2:], rng.randint(2, 5)
        )
        acc[n] = dict(
            role="research",
            ws=[f"10.50.1.{rng.randint(10, 250)}"],
            app=rng.choice(["DBeaver 24.2.0 - Main", "psql", "RStudio", "pgAdmin 4 - DB:ehr"]),
            tables=sorted(set(tabs)),
            median=math.exp(rng.gauss(math.log(6000), 0.7)),
            evening=rng.random() < 0.3,
        )
    for i in range(4):
        n = name("dba")
        acc[n] = dict(role="dba", ws=[f"10.10.5.{20 + i}"], app="psql", oncall_week=i % 3)
    return acc


def diurnal(h: float) -> float:
    """Relative activity of the EHR at local hour h (0..24)."""
    return (
        0.25
        + 0.75 * math.exp(-((h - 13.0) ** 2) / 18.0)
        + 0.15 * math.exp(-((h - 20.0) ** 2) / 4.0)
    )


class Gen:
    def __init__(self, out: str, seed: int):
        self.rng = random.Random(seed)
        self.out = out
        self.w = Writer(out)
        self.truth = defaultdict(lambda: [0, 0])
        self.acc = build_accounts(self.rng)
        self.labels: list[list] = []
        self.unusual: list[list] = []
        self.extra: dict[tuple[str, date], list] = defaultdict(list)  # injected per-day work
        self.rota = {}

    # -- helpers
    def sess(self, user, t0, host, app):
        return Session(self.w, self.rng, user, t0, host, app, self.truth)

    def clin_stmt(self, s: Session, t: float, unit_tabs, scale=1.0, extra_q=None):
        r = self.rng
        if r.random() < 0.12:
            s.stmt_at(
                t,
                r.choice(CLIN_W),
                [r.choice(["clinical.notes", "clinical.vitals", "clinical.orders"])],
                1,
                cls="WRITE",
            )
            return
        if unit_tabs and r.random() < 0.18:
            tb = r.choice(unit_tabs)
            s.stmt_at(t, f"SELECT * FROM {tb} WHERE encounter_id = $1", [tb], r.randint(1, 30))
            return
        q = r.choices(CLIN_Q, [x[4] for x in CLIN_Q])[0]
        s.stmt_at(t, q[0], q[1], int(r.randint(q[2], q[3]) * scale))

    def day_kind(self, d: date) -> str:
        return "weekend" if d.weekday() >= 5 else "weekday"

    # -- roles
    def web(self, n, a, d):
        r = self.rng
        for hour in range(24):
            t_h = local(d, hour)
            t_e = local(d, hour + 1)
            lam = 180 * a["scale"] * diurnal(hour + 0.5) * (0.7 if d.weekday() >= 5 else 1.0)
            if d == HOLIDAY:
                lam *= 0.85
            k = max(0, int(r.gauss(lam, math.sqrt(lam))))
            s = self.sess(n, t_h + r.uniform(0, 20), r.choice(a["hosts"]), a["app"])
            ts = sorted(r.uniform(s.t, t_e - 5) for _ in range(k))
            for t in ts:
                q = r.choices(CLIN_Q, [x[4] for x in CLIN_Q])[0]
                if r.random() < 0.1:
                    s.stmt_at(
                        t,
                        "SELECT a.*, p.mrn FROM scheduling.appointments a JOIN clinical.patients p ON p.id = a.patient_id WHERE a.patient_id = $1",
                        ["scheduling.appointments", "clinical.patients"],
                        r.randint(0, 8),
                    )
                elif r.random() < 0.08:
                    s.stmt_at(
                        t,
                        "INSERT INTO audit.access_log (user_id, patient_id, action, at) VALUES ($1, $2, $3, now())",
                        ["audit.access_log"],
                        1,
                        cls="WRITE",
                    )
                else:
                    s.stmt_at(t, q[0], q[1], r.randint(q[2], q[3]))
            s.close(t_e - r.uniform(0, 3))

    def hl7(self, n, a, d):
        r = self.rng
        inbound = a["role"] == "hl7in"
        for hour in range(24):
            t_h, t_e = local(d, hour), local(d, hour + 1)
            lam = 70 * diurnal(hour + 0.5)
            k = max(0, int(r.gauss(lam, math.sqrt(lam))))
            s = self.sess(n, t_h + r.uniform(0, 5), a["hosts"][0], a["app"])
            for t in sorted(r.uniform(s.t, t_e - 3) for _ in range(k)):
                if inbound:
                    s.stmt_at(
                        t,
                        "INSERT INTO hl7.inbound_messages (msg_type, control_id, received_at, body) VALUES ($1, $2, now(), $3)",
                        ["hl7.inbound_messages"],
                        1,
                        cls="WRITE",
                    )
                    s.stmt_at(
                        t + 0.01,
                        "SELECT id, mrn FROM clinical.patients WHERE mrn = $1",
                        ["clinical.patients"],
                        1,
                    )
                    if r.random() < 0.5:
                        s.stmt_at(
                            t + 0.02,
                            "UPDATE clinical.results SET value = $1, status = $2 WHERE order_id = $3 AND code = $4",
                            ["clinical.results"],
                            r.randint(1, 3),
                            cls="WRITE",
                        )
                else:
                    s.stmt_at(
                        t,
                        "SELECT * FROM clinical.orders WHERE status = 'signed' AND sent_at IS NULL LIMIT 50",
                        ["clinical.orders"],
                        r.randint(0, 12),
                    )
                    s.stmt_at(
                        t + 0.01,
                        "INSERT INTO hl7.outbound_messages (msg_type, control_id, body) VALUES ($1, $2, $3)",
                        ["hl7.outbound_messages"],
                        1,
                        cls="WRITE",
                    )
            s.close(t_e - 1)

    def billbatch(self, n, a, d, month_end=False):
        r = self.rng
        t = local(d, 1.5 + r.uniform(0, 0.05))
        s = self.sess(n, t, a["hosts"][0], a["app"])
        t += 1
        big = 8 if month_end else 1
        for i in range(r.randint(35, 50) * (3 if month_end else 1)):
            t += r.uniform(2, 15)
            s.stmt_at(
                t,
                "SELECT c.* FROM billing.charges c WHERE c.posted_at >= $1 AND c.posted_at < $2 AND c.batch_id IS NULL ORDER BY c.id LIMIT 5000",
                ["billing.charges"],
                int(r.randint(300, 900) * big),
            )
            s.stmt_at(
                t + 0.3,
                "SELECT cov.* FROM billing.patient_coverage cov JOIN billing.insurance_plans ip ON ip.id = cov.plan_id WHERE cov.patient_id = ANY($1)",
                ["billing.patient_coverage", "billing.insurance_plans"],
                int(r.randint(100, 400) * big),
            )
            s.stmt_at(
                t + 0.8,
                "INSERT INTO billing.claims (patient_id, payer_id, amount, status) SELECT $1, $2, $3, 'new'",
                ["billing.claims"],
                r.randint(50, 300),
                cls="WRITE",
            )
        if month_end:
            for tb, rows in [
                ("billing.claims", 410_000),
                ("billing.remittances", 260_000),
                ("billing.payments", 300_000),
            ]:
                t += r.uniform(60, 300)
                s.stmt_at(
                    t,
                    f"SELECT * FROM {tb} WHERE period = date_trunc('month', now() - interval '1 day')",
                    [tb],
                    rows,
                )
        s.close(t + 5)

    def backup(self, n, a, d):
        self.pg_dump(n, local(d, 2.0 + self.rng.uniform(0, 0.01)), a["hosts"][0], list(TABLES))

    def pg_dump(self, n, t, host, tables):
        r = self.rng
        s = self.sess(n, t, host, "pg_dump")
        t += 0.02
        s.stmt_at(t, "SELECT pg_catalog.set_config('search_path', '', false);", [], 1)
        for cat in [
            "pg_catalog.pg_namespace",
            "pg_catalog.pg_class",
            "pg_catalog.pg_attribute",
            "pg_catalog.pg_type",
            "pg_catalog.pg_proc",
            "pg_catalog.pg_constraint",
            "pg_catalog.pg_index",
        ]:
            t += r.uniform(0.01, 0.2)
            s.stmt_at(t, f"SELECT oid, * FROM {cat} ORDER BY oid", [cat], r.randint(50, 5000))
        for tb in tables:
            t += max(0.05, TABLES[tb] / 400_000.0) * r.uniform(0.8, 1.2)
            s.stmt_at(t, f"COPY {tb} ({COLS[tb]}) TO stdout;", [], 0, cmd="COPY")
        s.close(t + 0.5)
        return t + 1

    def report(self, n, a, d):
        r = self.rng
        for hour in range(24):
            t = local(d, hour + 5 / 60 + r.uniform(0, 0.01))
            s = self.sess(n, t, a["hosts"][0], a["app"])
            for q, tb, rows in [
                (
                    "SELECT unit, count(*) FROM clinical.encounters WHERE discharged_at IS NULL GROUP BY unit",
                    ["clinical.encounters"],
                    8,
                ),
                (
                    "SELECT * FROM ed.tracking_board WHERE status <> 'left'",
                    ["ed.tracking_board"],
                    r.randint(20, 90),
                ),
                (
                    "SELECT room_id, count(*) FROM scheduling.appointments WHERE starts_at::date = current_date GROUP BY room_id",
                    ["scheduling.appointments"],
                    r.randint(100, 300),
                ),
            ]:
                t += r.uniform(0.5, 3)
                s.stmt_at(t, q, tb, rows)
            if hour == 6:
                t += 5
                s.stmt_at(
                    t,
                    "SELECT e.*, d.code FROM clinical.encounters e JOIN clinical.diagnoses d ON d.encounter_id = e.id WHERE e.discharged_at >= current_date - 1",
                    ["clinical.encounters", "clinical.diagnoses"],
                    r.randint(2500, 4200) if d.weekday() < 5 else r.randint(1500, 2500),
                )
            s.close(t + 1)

    def pacs(self, n, a, d):
        r = self.rng
        for hour in range(6, 22):
            t = local(d, hour + r.uniform(0, 0.2))
            s = self.sess(n, t, a["hosts"][0], a["app"])
            for _ in range(r.randint(10, 40)):
                t += r.uniform(10, 80)
                s.stmt_at(
                    t,
                    "SELECT * FROM clinical.imaging_reports WHERE accession = $1",
                    ["clinical.imaging_reports"],
                    1,
                )
                if r.random() < 0.5:
                    s.stmt_at(
                        t + 0.1,
                        "UPDATE clinical.imaging_reports SET status = $1 WHERE accession = $2",
                        ["clinical.imaging_reports"],
                        1,
                        cls="WRITE",
                    )
            s.close(t + 2)

    def portal(self, n, a, d):
        r = self.rng
        if d < a["first"]:
            return
        for hour in range(6, 22):
            t = local(d, hour + r.uniform(0, 0.05))
            s = self.sess(n, t, a["hosts"][0], a["app"])
            for _ in range(12):
                t += r.uniform(240, 300)
                s.stmt_at(
                    t,
                    "SELECT a.id, a.patient_id, a.starts_at FROM scheduling.appointments a WHERE a.starts_at BETWEEN now() + interval '23 hours' AND now() + interval '24 hours' AND NOT a.reminded",
                    ["scheduling.appointments"],
                    r.randint(5, 60),
                )
                s.stmt_at(
                    t + 0.2,
                    "INSERT INTO portal.notifications (patient_id, kind, body) VALUES ($1, 'reminder', $2)",
                    ["portal.notifications"],
                    1,
                    cls="WRITE",
                )
            s.close(t + 1)

    def shift_of(self, n, a, d):
        """None, or the shift this person works on local date d."""
        r = self.rng
        key = (n, d)
        if key in self.rota:
            return self.rota[key]
        week = (d - START_DAY).days // 7
        wk = (n, "week", week)
        if wk not in self.rota:
            days_worked = r.choice([4, 4, 5, 5, 5, 3])
            pool = list(range(7)) if a.get("weekend", True) else [1, 2, 3, 4, 5]  # 0 = Sunday
            if len(pool) < days_worked:
                days_worked = len(pool)
            chosen = set(r.sample(pool, days_worked))
            shift = a["shift"]
            if a.get("rotating"):
                shift = r.choice(["day", "evening", "night"])
            self.rota[wk] = (chosen, shift)
        chosen, shift = self.rota[wk]
        dow = (d.weekday() + 1) % 7
        res = shift if dow in chosen else None
        self.rota[key] = res
        return res

    def clin(self, n, a, d):
        r = self.rng
        shift = self.shift_of(n, a, d)
        if shift is None:
            return
        start = {"day": 7.0, "evening": 15.0, "night": 23.0}[shift] + r.uniform(-0.3, 0.2)
        end = start + 8.4 + r.uniform(0, 0.6)
        unit = a.get("unit", "pharmacy")
        if n in self.transfer and d >= self.transfer[n][0]:
            unit = self.transfer[n][1]
        unit_tabs = (
            UNIT_TABLES[unit]
            if a["role"] == "clin"
            else ["pharmacy.dispenses", "pharmacy.formulary", "pharmacy.inventory"]
        )
        ws = a["ws"] if unit == a.get("unit", "pharmacy") else self.transfer[n][2]
        n_sess = r.randint(2, 5)
        bounds = sorted(r.uniform(start, end) for _ in range(n_sess * 2))
        drip = self.extra.get((n, d))
        for i in range(n_sess):
            h0, h1 = bounds[2 * i], bounds[2 * i + 1]
            host = r.choices(
                ws
                + [
                    f"10.30.{UNIT_SUBNET.get(unit, 40)}.{r.randint(10, 60)}",
                    f"10.30.90.{r.randint(1, 24)}",
                ],
                [5, 3, 2][: len(ws)] + [0.4, 0.4],
            )[0]
            t0 = local(d, h0)
            s = self.sess(n, t0, host, a["app"])
            k = max(1, int(r.gauss(22, 8) * a["scale"] * (h1 - h0)))
            t1 = local(d, h1)
            for t in sorted(r.uniform(t0 + 1, t1) for _ in range(k)):
                self.clin_stmt(s, t, unit_tabs)
            if drip:
                for fn in drip:
                    fn(s, t0, t1, 1 / n_sess)
            s.close(t1)

    def office(self, n, a, d, tables_q, lam, hours=(8.0, 17.0)):
        r = self.rng
        if d == HOLIDAY or d.weekday() == 6 or (d.weekday() == 5 and not a.get("saturday")):
            return
        if r.random() < 0.06 and not self.extra.get((n, d)):  # PTO
            return
        s_start, s_end = hours[0] + r.uniform(-0.5, 0.7), hours[1] + r.uniform(-0.5, 0.8)
        drip = self.extra.get((n, d))
        for h0, h1 in [(s_start, 12.0 + r.uniform(-0.3, 0.3)), (12.8 + r.uniform(0, 0.5), s_end)]:
            t0, t1 = local(d, h0), local(d, h1)
            s = self.sess(n, t0, a["ws"][0], a["app"])
            k = max(1, int(r.gauss(lam, lam / 4) * a["scale"] * (h1 - h0)))
            for t in sorted(r.uniform(t0 + 1, t1) for _ in range(k)):
                q = r.choice(tables_q)
                s.stmt_at(t, q[0], q[1], r.randint(q[2], q[3]))
            if drip:
                for fn in drip:
                    fn(s, t0, t1, 0.5)
            s.close(t1)

    def research(self, n, a, d):
        r = self.rng
        wd = d.weekday()
        if (d == HOLIDAY or wd >= 5 or r.random() < 0.12) and not self.extra.get((n, d)):
            if not (wd >= 5 and r.random() < 0.08):
                return
        total = min(a["median"] * math.exp(r.gauss(0, 1.1)), 400_000)
        k = max(3, int(r.gauss(30, 12)))
        per = [r.expovariate(1) for _ in range(k)]
        sm = sum(per)
        h0 = 9 + r.uniform(-1, 1.5)
        h1 = min(h0 + r.uniform(3, 8), 19)
        sessions = [(h0, h1)]
        if a["evening"] and r.random() < 0.3:
            sessions.append((20 + r.uniform(0, 1.5), 22.5 + r.uniform(0, 1)))
        drip = self.extra.get((n, d))
        for s0, s1 in sessions:
            host = a["ws"][0]
            if s0 >= 20 or r.random() < 0.1:
                host = f"10.99.{r.randint(0, 15)}.{r.randint(2, 250)}"  # VPN pool
            t0, t1 = local(d, s0), local(d, s1)
            s = self.sess(n, t0, host, a["app"])
            for i, t in enumerate(sorted(r.uniform(t0 + 5, t1) for _ in range(k // len(sessions)))):
                tb = r.choice(a["tables"])
                rows = int(total * per[i] / sm)
                s.stmt_at(t, f"SELECT * FROM {tb} WHERE cohort_id = $1", [tb], rows)
            if drip:
                for fn in drip:
                    fn(s, t0, t1, 1 / len(sessions))
            s.close(t1)

    def dba(self, n, a, d):
        r = self.rng
        week = (d - START_DAY).days // 7
        oncall = week == a["oncall_week"]
        cat = [
            (
                "SELECT pid, usename, state, query FROM pg_catalog.pg_stat_activity",
                ["pg_catalog.pg_stat_activity"],
                20,
                200,
            ),
            ("SELECT * FROM pg_catalog.pg_locks WHERE NOT granted", ["pg_catalog.pg_locks"], 0, 10),
            (
                "SELECT relname, n_dead_tup FROM pg_catalog.pg_stat_user_tables ORDER BY n_dead_tup DESC LIMIT 20",
                ["pg_catalog.pg_stat_user_tables"],
                20,
                20,
            ),
            ("SELECT * FROM admin.users WHERE username = $1", ["admin.users"], 1, 1),
            ("SELECT * FROM admin.departments", ["admin.departments"], 120, 120),
            ("SELECT * FROM admin.audit_settings", ["admin.audit_settings"], 50, 50),
        ]
        if d.weekday() < 5 and d != HOLIDAY and r.random() > 0.05:
            t0, t1 = local(d, 8.5 + r.uniform(-0.5, 0.5)), local(d, 17 + r.uniform(-0.5, 1))
            host = a["ws"][0] if r.random() < 0.8 else "[local]"
            s = self.sess(n, t0, host, "psql")
            for t in sorted(r.uniform(t0, t1) for _ in range(r.randint(15, 60))):
                q = r.choice(cat)
                s.stmt_at(t, q[0], q[1], r.randint(q[2], q[3]))
            if r.random() < 0.15:
                s.stmt_at(
                    t1 - 60,
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tmp ON admin.users (last_login)",
                    [],
                    0,
                    cls="DDL",
                    cmd="CREATE INDEX",
                )
            s.close(t1)
        if oncall and r.random() < 0.35:
            h = r.choice([0.5, 1.5, 3.0, 22.5, 23.2])
            t0 = local(d, h)
            s = self.sess(n, t0, f"10.99.{r.randint(0, 15)}.{r.randint(2, 250)}", "psql")
            for t in sorted(r.uniform(t0, t0 + 1200) for _ in range(r.randint(4, 15))):
                q = r.choice(cat[:3])
                s.stmt_at(t, q[0], q[1], r.randint(q[2], q[3]))
            s.close(t0 + 1300)

    # -- the run
    def run(self):
        r = self.rng
        names = sorted(self.acc)
        clin = [n for n in names if self.acc[n]["role"] == "clin"]
        # team change: an ED nurse moves to oncology on 2026-11-03 (unlabelled)
        ed = [
            n
            for n in clin
            if self.acc[n]["unit"] == "ed"
            and self.acc[n]["shift"] == "day"
            and not self.acc[n]["rotating"]
            and self.acc[n]["weekend"]
        ]  # not among the weekday-only day staff the incidents use
        mover = ed[0]
        self.transfer = {
            mover: (date(2026, 11, 3), "oncology", [f"10.30.33.{x}" for x in (71, 72, 73)])
        }
        self.unusual.append(
            [mover, "2026-11-03", "team change: ED -> oncology (new tables, new workstations)"]
        )
        self.unusual.append(
            ["portal_notify_svc", "2026-10-29", "new service (arrives in training)"]
        )
        self.unusual.append(
            [
                "billing_batch",
                "2026-11-02",
                "month-end billing close: 3x statements, 8x rows, 3 full-period reads",
            ]
        )
        self.unusual.append(["(office roles)", HOLIDAY.isoformat(), "Election Day: office holiday"])
        self.plan_incidents(names, clin)
        for i in range(DAYS):
            d = START_DAY + timedelta(days=i)
            for n in names:
                a = self.acc[n]
                role = a["role"]
                if role == "web":
                    self.web(n, a, d)
                elif role in ("hl7in", "hl7out"):
                    self.hl7(n, a, d)
                elif role == "billbatch":
                    self.billbatch(n, a, d, month_end=(d == date(2026, 11, 2)))
                elif role == "backup":
                    self.backup(n, a, d)
                elif role == "report":
                    self.report(n, a, d)
                elif role == "pacs":
                    self.pacs(n, a, d)
                elif role == "portal":
                    self.portal(n, a, d)
                elif role in ("clin", "pharm"):
                    self.clin(n, a, d)
                elif role == "billclerk":
                    self.office(
                        n,
                        a,
                        d,
                        [
                            (
                                "SELECT * FROM billing.claims WHERE patient_id = $1 ORDER BY created_at DESC",
                                ["billing.claims"],
                                1,
                                25,
                            ),
                            (
                                "SELECT * FROM billing.charges WHERE encounter_id = $1",
                                ["billing.charges"],
                                2,
                                60,
                            ),
                            (
                                "SELECT p.* FROM billing.payments p WHERE p.claim_id = $1",
                                ["billing.payments"],
                                0,
                                6,
                            ),
                            (
                                "SELECT cov.*, ip.name FROM billing.patient_coverage cov JOIN billing.insurance_plans ip ON ip.id = cov.plan_id WHERE cov.patient_id = $1",
                                ["billing.patient_coverage", "billing.insurance_plans"],
                                1,
                                3,
                            ),
                            (
                                "SELECT id, mrn, first_name, last_name, dob FROM clinical.patients WHERE mrn = $1",
                                ["clinical.patients"],
                                1,
                                1,
                            ),
                            (
                                "UPDATE billing.claims SET status = $1 WHERE id = $2",
                                ["billing.claims"],
                                1,
                                1,
                            ),
                        ],
                        14,
                    )
                elif role == "sched":
                    self.office(
                        n,
                        a,
                        d,
                        [
                            (
                                "SELECT * FROM scheduling.appointments WHERE provider_id = $1 AND starts_at::date = $2",
                                ["scheduling.appointments"],
                                5,
                                40,
                            ),
                            (
                                "SELECT * FROM scheduling.providers WHERE department_id = $1",
                                ["scheduling.providers"],
                                3,
                                30,
                            ),
                            (
                                "SELECT * FROM scheduling.rooms WHERE building = $1",
                                ["scheduling.rooms"],
                                5,
                                40,
                            ),
                            (
                                "SELECT id, mrn, first_name, last_name, dob, phone FROM clinical.patients WHERE last_name ILIKE $1 LIMIT 25",
                                ["clinical.patients"],
                                1,
                                25,
                            ),
                            (
                                "INSERT INTO scheduling.appointments (patient_id, provider_id, room_id, starts_at) VALUES ($1, $2, $3, $4)",
                                ["scheduling.appointments"],
                                1,
                                1,
                            ),
                        ],
                        16,
                        hours=(7.0, 18.0),
                    )
                elif role == "research":
                    self.research(n, a, d)
                elif role == "dba":
                    self.dba(n, a, d)
            for fn in self.day_events.get(d, []):
                fn()
            self.w.flush_before(d - timedelta(days=1))
            print(f"{d}: {self.w.lines:,} lines written", flush=True)
        self.w.flush_before(None)

    # -- incidents and one-offs
    def label(self, kind, acct, t0, t1, desc):
        self.labels.append(
            [f"H{len(self.labels) + 1:02d}", acct, utc_iso(t0), utc_iso(t1 + 1), kind, desc]
        )

    def plan_incidents(self, names, clin):
        r = self.rng
        A = self.acc
        self.day_events = defaultdict(list)
        byrole = defaultdict(list)
        for n in names:
            byrole[A[n]["role"]].append(n)
        day_clin = [
            n
            for n in clin
            if A[n]["shift"] == "day" and not A[n]["rotating"] and not A[n].get("weekend")
        ]
        night_clin = [n for n in clin if A[n]["shift"] == "night" and not A[n]["rotating"]]
        res = byrole["research"]
        bills = byrole["billclerk"]
        scheds = byrole["sched"]
        dbas = byrole["dba"]
        D = lambda m, dd: date(2026, m, dd)

        def ev(d):
            def deco(fn):
                self.day_events[d].append(fn)
                return fn

            return deco

        # ---- burst pulls
        @ev(D(11, 2))
        def _():
            t = local(D(11, 2), 2 + 40 / 60)
            s = self.sess("ehr_web_03", t, "10.20.9.77", "psql")
            s.stmt_at(t + 3, "SELECT * FROM clinical.patients", ["clinical.patients"], 1_450_000)
            s.stmt_at(
                t + 95,
                "SELECT * FROM clinical.encounters WHERE admitted_at > now() - interval '2 years'",
                ["clinical.encounters"],
                810_000,
            )
            s.close(t + 160)
            self.label(
                "burst_pull",
                "ehr_web_03",
                t + 3,
                t + 160,
                "web pool credentials from psql on a new host: 2.26M rows of patients and encounters",
            )

        @ev(D(11, 4))
        def _():
            t = local(D(11, 4), 13 + 10 / 60)
            s = self.sess("report_svc", t, "10.20.7.9", "ssrs-reports")
            s.stmt_at(
                t + 2,
                "SELECT n.*, p.mrn, p.last_name FROM clinical.notes n JOIN clinical.patients p ON p.id = n.patient_id",
                ["clinical.notes", "clinical.patients"],
                920_000,
            )
            s.close(t + 120)
            self.label(
                "burst_pull",
                "report_svc",
                t + 2,
                t + 120,
                "reporting service reads 920k notes joined to patients",
            )

        ra = res[3]

        @ev(D(11, 6))
        def _():
            t = local(D(11, 6), 10 + 20 / 60)
            s = self.sess(ra, t, A[ra]["ws"][0], A[ra]["app"])
            s.stmt_at(
                t + 4,
                "SELECT p.*, d.* FROM clinical.patients p JOIN clinical.diagnoses d ON d.patient_id = p.id",
                ["clinical.patients", "clinical.diagnoses"],
                2_100_000,
            )
            s.close(t + 300)
            self.label(
                "burst_pull",
                ra,
                t + 4,
                t + 300,
                "analyst pulls 2.1M identified patient+diagnosis rows from usual laptop and tool",
            )

        # ---- COPY ... TO by accounts that never export
        b1 = bills[2]

        @ev(D(11, 3))
        def _():
            t = local(D(11, 3), 11.0)  # Election Day, an office holiday
            s = self.sess(b1, t, A[b1]["ws"][0], "psql")
            s.stmt_at(t + 5, "COPY billing.claims TO STDOUT WITH CSV HEADER", [], 0, cmd="COPY")
            s.stmt_at(t + 40, "COPY clinical.patients TO STDOUT WITH CSV HEADER", [], 0, cmd="COPY")
            s.close(t + 90)
            self.label(
                "copy_export",
                b1,
                t + 5,
                t + 90,
                "billing clerk COPY claims and patients TO STDOUT from psql on a holiday",
            )

        @ev(D(11, 5))
        def _():
            t = local(D(11, 5), 3.25)
            s = self.sess("hl7_inbound", t, "10.20.4.21", "Rhapsody-HL7")
            q = "COPY (SELECT r.*, p.mrn FROM clinical.results r JOIN clinical.patients p ON p.id = r.patient_id WHERE r.resulted_at > now() - interval '90 days') TO STDOUT"
            s.stmt += 1
            s.vx += 1
            for rel in ["clinical.results", "clinical.patients"]:
                s._line(
                    t + 2,
                    s.user,
                    DB,
                    '"COPY"',
                    f"{s.backend}/{s.vx}",
                    "0",
                    "LOG,00000",
                    f"AUDIT: SESSION,{s.stmt},1,READ,SELECT,TABLE,{rel},{audit_field(q)},<not logged>,251000",
                )
            s._line(
                t + 2.1,
                s.user,
                DB,
                '"COPY"',
                f"{s.backend}/{s.vx}",
                "0",
                "LOG,00000",
                f"AUDIT: SESSION,{s.stmt},2,READ,COPY,,,{audit_field(q)},<not logged>,0",
            )
            self.truth[("hl7_inbound", datetime.utcfromtimestamp(int(t)).date())][0] += 251000
            self.truth[("hl7_inbound", datetime.utcfromtimestamp(int(t)).date())][1] += 1
            s.close(t + 60)
            self.label(
                "copy_export",
                "hl7_inbound",
                t + 2,
                t + 60,
                "interface engine account COPY (SELECT results+patients) TO STDOUT, 251k rows",
            )

        c1 = day_clin[1]

        @ev(D(11, 6))
        def _():
            t = local(D(11, 6), 14.0)
            s = self.sess(c1, t, A[c1]["ws"][0], "psql")
            s.stmt_at(
                t + 8,
                "COPY clinical.patients (id, mrn, first_name, last_name, dob, address, phone) TO STDOUT",
                [],
                0,
                cmd="COPY",
            )
            s.close(t + 50)
            self.label(
                "copy_export",
                c1,
                t + 8,
                t + 50,
                "clinician COPY clinical.patients TO STDOUT from psql on their unit workstation",
            )

        # ---- pg_dump with the wrong account
        @ev(D(11, 1))
        def _():
            t = (
                local(D(11, 1), 0) + 2 * 3600 + 20 * 60
            )  # 01:20 CST: the repeated hour's second pass
            assert fmt_s(t).endswith("01:20:00 CST"), fmt_s(t)
            t_end = self.pg_dump("ehr_web_06", t, "10.20.1.16", list(TABLES))
            self.label(
                "wrong_account_dump",
                "ehr_web_06",
                t,
                t_end,
                "pg_dump with a web pool's credentials from its app server, at 01:20 CST (the repeated hour)",
            )

        r2 = res[7]

        @ev(D(11, 5))
        def _():
            t = local(D(11, 5), 19.5)
            tabs = [x for x in TABLES if x.startswith("research.")] + [
                "clinical.patients",
                "clinical.diagnoses",
            ]
            t_end = self.pg_dump(r2, t, A[r2]["ws"][0], tabs)
            self.label(
                "wrong_account_dump",
                r2,
                t,
                t_end,
                "pg_dump -t research.* -t patients -t diagnoses by an analyst",
            )

        @ev(D(11, 7))
        def _():
            t = local(D(11, 7), 4.0)
            t_end = self.pg_dump("portal_notify_svc", t, "10.20.9.14", list(TABLES))
            self.label(
                "wrong_account_dump",
                "portal_notify_svc",
                t,
                t_end,
                "pg_dump of the whole database with the new portal service's credentials",
            )

        # ---- slow drips (in usual sessions, extra reads of a usual table)
        def drip(acct, days, table, text, per_day, start_label):
            first_t = [None]
            last_t = [None]
            for d in days:

                def fn(s, t0, t1, frac, d=d):
                    n_calls = max(1, round(per_day * frac / 200))
                    for i in range(n_calls):
                        t = t0 + (t1 - t0) * (i + 0.5) / n_calls
                        s.stmt_at(t, text, [table], 200)
                        if first_t[0] is None or t < first_t[0]:
                            first_t[0] = t
                        last_t[0] = max(last_t[0] or t, t)

                self.extra[(acct, d)].append(fn)
            return first_t, last_t

        drips = []
        b2 = bills[5]
        drips.append(
            (
                b2,
                drip(
                    b2,
                    [D(11, 2), D(11, 4), D(11, 5), D(11, 6)],
                    "billing.patient_coverage",
                    "SELECT * FROM billing.patient_coverage WHERE patient_id > $1 ORDER BY patient_id LIMIT 200",
                    2600,
                    None,
                ),
                "billing clerk reads ~2,600 extra coverage rows a day (about 3x its usual day), 200 at a time, 4 days",
            )
        )
        c2 = [n for n in day_clin if n != c1][3]
        # the clinician's days in the scored week
        cdays = [D(11, d) for d in range(1, 8) if self.shift_of(c2, A[c2], D(11, d))][:3]
        drips.append(
            (
                c2,
                drip(
                    c2,
                    cdays,
                    "clinical.patients",
                    "SELECT id, mrn, first_name, last_name, dob, address, phone FROM clinical.patients WHERE id > $1 ORDER BY id LIMIT 200",
                    4000,
                    None,
                ),
                f"day nurse reads ~4,000 extra patient demographics a shift on {len(cdays)} shifts (about 3x usual)",
            )
        )
        r3 = res[11]
        per = int(A[r3]["median"] * 2.5)
        drips.append(
            (
                r3,
                drip(
                    r3,
                    [D(11, 2), D(11, 4), D(11, 5), D(11, 6)],
                    "research.deid_extracts",
                    "SELECT * FROM research.deid_extracts WHERE extract_id = $1 AND batch > $2 LIMIT 200",
                    per,
                    None,
                ),
                f"analyst reads ~{per:,} extra de-identified extract rows a day (about 3.5x its median day), 4 days",
            )
        )
        self.drips = drips
        # forced attendance for drip days of office roles is implied (office() runs unless PTO)

        # ---- enumeration
        def enumerate_(acct, d, hour, host, app, n_tabs, label):
            def fn():
                t = local(d, hour)
                s = self.sess(acct, t, host, app)
                tabs = r.sample(sorted(TABLES), n_tabs)
                t += 3
                t_first = t
                for i, tb in enumerate(tabs):
                    t += r.uniform(2, 12)
                    q = f"SELECT * FROM {tb} LIMIT {r.randint(1, 10)}"
                    if i % 4 == 3:
                        s.error_at(t, q, f"permission denied for table {tb.split('.')[1]}")
                    else:
                        s.stmt_at(t, q, [tb], r.randint(1, 10))
                s.close(t + 2)
                self.label("enumeration", acct, t_first, t + 2, label)

            self.day_events[d].append(fn)

        s1 = scheds[1]
        enumerate_(
            s1,
            D(11, 2),
            15.5,
            A[s1]["ws"][0],
            "psql",
            26,
            "scheduling clerk probes 26 tables with LIMIT, some refused",
        )
        enumerate_(
            "hl7_outbound",
            D(11, 4),
            2 + 10 / 60,
            "10.20.4.22",
            "Rhapsody-HL7",
            30,
            "interface account probes 30 tables at night",
        )
        nc = night_clin[2]
        enumerate_(
            nc,
            D(11, 6),
            3.0,
            A[nc]["ws"][0],
            A[nc]["app"],
            22,
            "night nurse's account probes 22 tables during its shift",
        )

        # ---- off hours, new client address, usual tables
        def offhours(acct, t, host, label, unit_tabs, k=40):
            s = self.sess(acct, t, host, A[acct]["app"])
            t1 = t + 1500
            for tt in sorted(r.uniform(t + 2, t1) for _ in range(k)):
                if unit_tabs is None:
                    q = r.choice(
                        [
                            (
                                "SELECT * FROM billing.claims WHERE patient_id = $1 ORDER BY created_at DESC",
                                ["billing.claims"],
                                1,
                                25,
                            ),
                            (
                                "SELECT id, mrn, first_name, last_name, dob FROM clinical.patients WHERE mrn = $1",
                                ["clinical.patients"],
                                1,
                                1,
                            ),
                        ]
                    )
                    s.stmt_at(tt, q[0], q[1], r.randint(q[2], q[3]))
                elif unit_tabs == "research":
                    tb = r.choice(A[acct]["tables"])
                    s.stmt_at(
                        tt, f"SELECT * FROM {tb} WHERE cohort_id = $1", [tb], r.randint(20, 300)
                    )
                else:
                    self.clin_stmt(s, tt, unit_tabs)
            s.close(t1)
            self.label("off_hours_new_client", acct, t, t1, label)

        o1 = day_clin[5]

        @ev(D(11, 1))
        def _():
            t = local(D(11, 1), 0) + 2 * 3600 + 25 * 60  # 01:25 CST, second pass of the hour
            offhours(
                o1,
                t,
                "10.99.14.201",
                "day-shift clinician's account at 01:25 CST (repeated hour) from a VPN address",
                UNIT_TABLES[A[o1]["unit"]],
            )

        o2 = bills[9]

        @ev(D(11, 4))
        def _():
            offhours(
                o2,
                local(D(11, 4), 23 + 40 / 60),
                "10.99.7.33",
                "billing clerk at 23:40 from a VPN address",
                None,
            )

        o3 = [x for x in res if not A[x]["evening"]][2]

        @ev(D(11, 7))
        def _():
            offhours(
                o3,
                local(D(11, 7), 3.5),
                "73.158.20.4",
                "analyst (no evening work) on a Saturday at 03:30 from an outside address",
                "research",
            )

        # ---- privileged misuse: DBAs read data tables they never read
        def priv(acct, d, hour, reads, label, host=None):
            def fn():
                t = local(d, hour)
                s = self.sess(acct, t, host or A[acct]["ws"][0], "psql")
                t_first = t + 5
                for q, tabs, rows in reads:
                    t += r.uniform(20, 120)
                    s.stmt_at(t, q, tabs, rows)
                s.close(t + 10)
                self.label("privileged_misuse", acct, t_first, t + 10, label)

            self.day_events[d].append(fn)

        priv(
            dbas[0],
            D(11, 2),
            11.0,
            [
                (
                    "SELECT * FROM clinical.notes WHERE created_at > now() - interval '30 days'",
                    ["clinical.notes"],
                    41_000,
                ),
                (
                    "SELECT id, mrn, first_name, last_name, dob, ssn_last4 FROM clinical.patients WHERE id = ANY($1)",
                    ["clinical.patients"],
                    19_500,
                ),
            ],
            "DBA reads 41k notes and 19.5k patients",
        )
        priv(
            dbas[1],
            D(11, 5),
            16.0,
            [
                (
                    "SELECT * FROM billing.payments WHERE paid_at > now() - interval '60 days'",
                    ["billing.payments"],
                    62_000,
                )
            ],
            "DBA reads 62k payments",
        )
        priv(
            dbas[2],
            D(11, 7),
            2.0,
            [
                (
                    "SELECT p.*, d.code FROM clinical.patients p JOIN clinical.diagnoses d ON d.patient_id = p.id WHERE d.code LIKE 'F%'",
                    ["clinical.patients", "clinical.diagnoses"],
                    48_000,
                )
            ],
            "on-call DBA at 02:00 reads 48k mental-health diagnoses with patients",
            host="10.99.2.18",
        )

        # ---- paged pulls
        def paged(acct, d, hour, host, app, q_tmpl, tabs, page, n_pages, label, span=780):
            def fn():
                t = local(d, hour)
                s = self.sess(acct, t, host, app)
                t_first = t + 2
                for i in range(n_pages):
                    tt = t + 2 + span * i / n_pages
                    s.stmt_at(tt, q_tmpl.format(off=i * page, page=page), tabs, page)
                s.close(t + span + 5)
                self.label("paged_pull", acct, t_first, t + span + 5, label)

            self.day_events[d].append(fn)

        paged(
            "ehr_web_02",
            D(11, 3),
            4.0,
            "10.20.1.12",
            "PostgreSQL JDBC Driver",
            "SELECT * FROM clinical.patients ORDER BY id LIMIT {page} OFFSET {off}",
            ["clinical.patients"],
            500,
            200,
            "web pool credentials page through 100k patients, LIMIT 500 OFFSET n, from its own app server",
        )
        p2 = res[15]
        paged(
            p2,
            D(11, 4),
            20.0,
            A[p2]["ws"][0],
            A[p2]["app"],
            "SELECT * FROM clinical.results WHERE id > {off} ORDER BY id LIMIT {page}",
            ["clinical.results"],
            1000,
            150,
            "analyst keyset-pages 150k results rows in the evening",
        )
        s2 = scheds[6]
        paged(
            s2,
            D(11, 6),
            12.0,
            A[s2]["ws"][0],
            A[s2]["app"],
            "SELECT a.*, p.mrn, p.first_name, p.last_name, p.phone FROM scheduling.appointments a JOIN clinical.patients p ON p.id = a.patient_id ORDER BY a.id LIMIT {page} OFFSET {off}",
            ["scheduling.appointments", "clinical.patients"],
            400,
            300,
            "scheduling clerk pages 120k appointments with patients' phones",
            span=900,
        )

        # ---- unlabelled one-off migration by a DBA (Thursday night change window)
        mig = dbas[3]

        def migration():
            d = D(11, 5)
            t = local(d, 22.0)
            s = self.sess(mig, t, A[mig]["ws"][0], "migrate_notes.py")
            for i in range(62):
                t += r.uniform(60, 150)
                s.stmt_at(
                    t,
                    f"SELECT * FROM clinical.notes WHERE id >= {i * 50000} AND id < {(i + 1) * 50000}",
                    ["clinical.notes"],
                    50000,
                )
                s.stmt_at(
                    t + 20,
                    "INSERT INTO clinical.notes_v2 SELECT * FROM unnest($1)",
                    ["clinical.notes_v2"],
                    50000,
                    cls="WRITE",
                )
            s.close(t + 30)
            self.unusual.append(
                [
                    mig,
                    "2026-11-05",
                    "one-off migration: 3.1M rows of clinical.notes read in 62 chunks, 22:00-01:00 local, app migrate_notes.py",
                ]
            )

        self.day_events[D(11, 5)].append(migration)

    def finish(self):
        for acct, (first_t, last_t), desc in self.drips:
            if first_t[0] is None:
                continue
            self.label("slow_drip", acct, first_t[0], last_t[0], desc)
        self.labels.sort(key=lambda x: x[2])
        for i, l in enumerate(self.labels):
            l[0] = f"H{i + 1:02d}"
        with open(os.path.join(self.out, "labels.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["incident_id", "account", "start", "end", "kind", "description"])
            wr.writerows(self.labels)
        with open(os.path.join(self.out, "unusual.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["account", "local_date", "description"])
            wr.writerows(self.unusual)
        with open(os.path.join(self.out, "truth.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["account", "utc_day", "rows_read", "statements"])
            for (a, d), (rows, n) in sorted(self.truth.items()):
                wr.writerow([a, d.isoformat(), rows, n])
        # rotate: all but the last two files gzipped, keeping their mtimes (as gzip does)
        files = sorted(self.w.files)
        for p in files[:-2]:
            st = os.stat(p)
            with (
                open(p, "rb") as fi,
                gzip.GzipFile(p + ".gz", "wb", compresslevel=3, mtime=int(st.st_mtime)) as fo,
            ):
                while True:
                    b = fi.read(1 << 20)
                    if not b:
                        break
                    fo.write(b)
            os.utime(p + ".gz", (st.st_mtime, st.st_mtime))
            os.remove(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/hosp")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logs = os.path.join(args.out, "logs")
    os.makedirs(logs, exist_ok=True)
    for f in os.listdir(logs):
        os.remove(os.path.join(logs, f))
    g = Gen(logs, args.seed)
    g.run()
    g.finish()
    for name in ("labels.csv", "unusual.csv", "truth.csv"):
        os.replace(os.path.join(logs, name), os.path.join(args.out, name))
    print(f"{len(g.acc)} accounts, {g.w.lines:,} lines, {len(g.labels)} incidents -> {args.out}")


if __name__ == "__main__":
    main()
