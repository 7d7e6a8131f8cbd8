"""Regenerate tests/fixtures/pgaudit/ from a real PostgreSQL 15 + pgAudit server.

    uv run python scripts/make_pgaudit_fixtures.py [--out tests/fixtures/pgaudit] [--only NAME ...]

Every scenario runs against a fresh throw-away cluster (scripts/pg_cluster.py) under
/tmp/trovewatch-pgaudit-fixtures/<scenario> (removed afterwards unless --keep).  The
server's own log files are copied verbatim.  ``scenario.sql`` is a transcript of
exactly what the clients sent, and ``expected.json`` holds the client-side truth
(rows counted on the client: fetched rows, ``cursor.rowcount`` for DML, output lines
for COPY TO, rows sent for COPY FROM, data lines in the pg_dump output).  Nothing in
the fixtures is written by hand except FINDINGS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_cluster import PgCluster, find_pg_bin, pgaudit_available

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "pgaudit"
WORK = Path("/tmp/trovewatch-pgaudit-fixtures")
LOG_FILES = ("postgresql.log", "postgresql.csv", "postgresql.json")
CAROL_PASSWORD = "right-password"


def free_port(start: int = 55432) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def package_version(pkg: str) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def dollar_params(text: str) -> str:
    """What the server sees: psycopg sends %s placeholders as $1, $2, ...

    (None of the parameterized queries here contain a literal %.)
    """
    parts = text.split("%s")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


# --------------------------------------------------------------------- recorder
@dataclass
class Recorder:
    """Transcript (scenario.sql) and client-side truth (expected.json)."""

    transcript: list[str] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    failed_statements: list[dict[str, Any]] = field(default_factory=list)
    failed_logins: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.transcript.extend(f"-- {line}" if line else "--" for line in text.splitlines())

    def sql(self, text: str) -> None:
        self.transcript.append(text if text.rstrip().endswith(";") else text + ";")

    def blank(self) -> None:
        self.transcript.append("")


class Session:
    """One psycopg connection whose every statement is transcribed."""

    def __init__(
        self,
        rec: Recorder,
        pg: PgCluster,
        user: str,
        dbname: str,
        app: str,
        label: str,
    ) -> None:
        self.rec, self.user, self.dbname, self.app, self.label = rec, user, dbname, app, label
        self.conn = psycopg.connect(
            pg.dsn(), user=user, dbname=dbname, application_name=app, autocommit=True
        )
        self.pid = self.conn.info.backend_pid
        rec.blank()
        rec.note(
            f"=== session {label}: connect user={user} dbname={dbname} application_name={app} "
            f"(psycopg {psycopg.__version__}, host=127.0.0.1, autocommit) backend pid={self.pid}"
        )

    def close(self) -> None:
        self.conn.close()
        self.rec.note(f"=== session {self.label}: disconnect")

    def _truth(
        self,
        statement: str,
        kind: str,
        objects: Sequence[str],
        rows: int,
        rows_source: str,
        protocol: str,
        params: Sequence[Any] | None = None,
        **more: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": len(self.rec.statements) + 1,
            "session": self.label,
            "pid": self.pid,
            "user": self.user,
            "database": self.dbname,
            "application_name": self.app,
            "protocol": protocol,
            "kind": kind,
            "statement": statement,
            "parameters": list(params) if params is not None else None,
            "objects": list(objects),
            "rows": rows,
            "rows_source": rows_source,
        }
        entry.update(more)
        self.rec.statements.append(entry)
        return entry

    def ddl(self, text: str) -> None:
        """Statements that are neither reads nor writes of table data (not in expected)."""
        self.rec.sql(text)
        self.conn.execute(text)

    def query(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        objects: Sequence[str] = (),
        kind: str = "read",
        prepare: bool | None = None,
        note: str | None = None,
    ) -> int:
        """A single statement; rows = fetched rows (SELECT/FETCH) or rowcount (DML)."""
        if note:
            self.rec.note(note)
        if params is not None:
            named = ", named prepared statement" if prepare else ""
            self.rec.note(
                f"extended protocol (Parse/Bind/Execute{named}), parameters: {list(params)!r}"
            )
        self.rec.sql(text)
        with self.conn.cursor() as cur:
            cur.execute(text, params, prepare=prepare)
            if cur.description is not None:
                fetched = len(cur.fetchall())
                rows, source = fetched, "rows fetched by the client"
            elif text.startswith("DECLARE"):
                rows, source = 0, "DECLARE returns no rows to the client"
            else:
                rows, source = cur.rowcount, "cursor.rowcount (command tag)"
        protocol = "extended" if params is not None else "simple"
        if prepare:
            protocol = "extended (named prepared statement)"
        more: dict[str, Any] = {}
        server_text = text
        if params is not None:
            server_text = dollar_params(text)
            more["client_statement"] = text
        self._truth(server_text, kind, objects, rows, source, protocol, params, **more)
        return rows

    def multi(self, text: str, parts: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Several statements in one simple-protocol Query message."""
        self.rec.note("one simple-protocol Query message holding several statements")
        self.rec.sql(text)
        with self.conn.cursor() as cur:
            cur.execute(text)
            counts = []
            while True:
                counts.append(len(cur.fetchall()) if cur.description is not None else 0)
                if not cur.nextset():
                    break
        assert len(counts) == len(parts), counts
        for (stmt, objects), n in zip(parts, counts, strict=True):
            self._truth(
                stmt,
                "read",
                objects,
                n,
                "rows fetched by the client",
                "simple (multi-statement query string)",
                query_string=text,
            )

    def copy_out(self, text: str, *, objects: Sequence[str]) -> int:
        self.rec.note("COPY ... TO STDOUT; rows = data lines received by the client")
        self.rec.sql(text)
        with self.conn.cursor() as cur:
            with cur.copy(text) as cp:
                data = b"".join(bytes(chunk) for chunk in cp)
            n = data.count(b"\n")
        self._truth(text, "read", objects, n, "data lines received by the client", "copy")
        return n

    def copy_in(self, text: str, rows: Iterable[Sequence[Any]], *, objects: Sequence[str]) -> int:
        rows = list(rows)
        self.rec.note(f"COPY ... FROM STDIN; the client sends {len(rows)} rows:")
        self.rec.sql(text)
        with self.conn.cursor() as cur:
            with cur.copy(text) as cp:
                for r in rows:
                    cp.write_row(r)
            tag = cur.rowcount
        assert tag == len(rows), (tag, len(rows))
        for r in rows:
            self.rec.transcript.append("\t".join(str(v) for v in r))
        self.rec.transcript.append("\\.")
        self._truth(text, "write", objects, len(rows), "rows sent by the client", "copy")
        return len(rows)

    def fail(self, text: str, params: Sequence[Any] | None = None) -> None:
        self.rec.note("expected to FAIL" + (f", parameters: {list(params)!r}" if params else ""))
        self.rec.sql(text)
        try:
            self.conn.execute(text, params)
        except psycopg.Error as e:
            self.rec.failed_statements.append(
                {
                    "session": self.label,
                    "pid": self.pid,
                    "user": self.user,
                    "database": self.dbname,
                    "statement": dollar_params(text) if params else text,
                    "parameters": list(params) if params is not None else None,
                    "sqlstate": e.sqlstate,
                    "error": str(e).splitlines()[0],
                }
            )
        else:
            raise AssertionError(f"statement unexpectedly succeeded: {text}")


def failed_login(
    rec: Recorder, pg: PgCluster, user: str, dbname: str, password: str | None
) -> None:
    dsn = pg.dsn(user, dbname) + " application_name=fixture-bad-login"
    if password is not None:
        dsn += f" password={password}"
    rec.blank()
    rec.note(
        f"=== failed login attempt: user={user} dbname={dbname} "
        f"password={'<wrong>' if password else '<none>'}"
    )
    try:
        psycopg.connect(dsn).close()
    except psycopg.OperationalError as e:
        rec.failed_logins.append(
            {
                "user": user,
                "database": dbname,
                "error": str(e).strip().splitlines()[-1].rpartition("failed: ")[2],
            }
        )
    else:
        raise AssertionError(f"login unexpectedly succeeded: {user}@{dbname}")


# -------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    settings: dict[str, str]
    run: Callable[[PgCluster, Recorder, Path], None]
    description: str
    init_hook: Callable[[PgCluster], None] | None = None


def allow_carol_password(pg: PgCluster) -> None:
    """pg_hba: carol must give a password (everyone else: trust) -> real auth failures."""
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text(
        "# added by make_pgaudit_fixtures.py\n"
        "host all carol 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
    )


def setup_shop(rec: Recorder, pg: PgCluster) -> None:
    admin = Session(rec, pg, "postgres", "postgres", "fixture-setup", "setup-admin")
    admin.ddl("CREATE ROLE alice LOGIN")
    admin.ddl(f"CREATE ROLE carol LOGIN PASSWORD '{CAROL_PASSWORD}'")
    admin.ddl("CREATE DATABASE shop OWNER alice")
    admin.close()
    owner = Session(rec, pg, "alice", "shop", "fixture-setup", "setup-alice")
    owner.ddl("CREATE TABLE public.customers (id int PRIMARY KEY, email text, name text)")
    owner.ddl(
        "CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, "
        "amount numeric(10,2), note text)"
    )
    owner.ddl("CREATE TABLE public.imports (id int, email text)")
    owner.ddl("CREATE TABLE public.archive (id int, email text)")
    owner.query(
        "INSERT INTO customers SELECT g, 'u' || g || '@example.com', 'Name ' || g "
        "FROM generate_series(1, 40) g",
        objects=["public.customers"],
        kind="write",
    )
    owner.query(
        "INSERT INTO orders SELECT g, 1 + (g * 7) % 40, (g * 37) % 100 + 0.5, 'order ' || g "
        "FROM generate_series(1, 60) g",
        objects=["public.orders"],
        kind="write",
    )
    owner.rec.note("the FK is added after the bulk load: RI checks are audited once per row")
    owner.ddl(
        "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_fk "
        "FOREIGN KEY (customer_id) REFERENCES public.customers"
    )
    owner.ddl("GRANT SELECT ON ALL TABLES IN SCHEMA public TO carol")
    owner.close()


MULTILINE_SQL = """SELECT id, email AS "E-mail, primary",
       'it''s, "quoted"' AS note,
       'line one
line two' AS two_lines
  FROM customers
 WHERE email LIKE 'u1%'"""


def shop_workload(pg: PgCluster, rec: Recorder, tmp: Path) -> None:
    setup_shop(rec, pg)
    s = Session(rec, pg, "alice", "shop", "fixture-app", "alice-1")
    s.query("SELECT * FROM customers WHERE id <= 25", objects=["public.customers"])
    s.query(
        "SELECT c.email, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id "
        "WHERE o.amount > 50",
        objects=["public.customers", "public.orders"],
        note="join over two tables",
    )
    s.query(
        MULTILINE_SQL,
        objects=["public.customers"],
        note="multi-line statement: commas, '' quotes, \"double quotes\", literal newline",
    )
    s.multi(
        "SELECT count(*) FROM customers; SELECT * FROM orders WHERE id <= 3",
        [
            ("SELECT count(*) FROM customers", ["public.customers"]),
            ("SELECT * FROM orders WHERE id <= 3", ["public.orders"]),
        ],
    )
    s.copy_out("COPY customers TO STDOUT", objects=["public.customers"])
    s.copy_out(
        "COPY (SELECT id, email FROM customers WHERE id % 3 = 0) TO STDOUT WITH (FORMAT csv)",
        objects=["public.customers"],
    )
    s.copy_in(
        "COPY imports (id, email) FROM STDIN",
        [(i, f"import{i}@example.com") for i in range(1, 13)],
        objects=["public.imports"],
    )
    # explicit cursor
    s.rec.note("explicit transaction with a cursor")
    s.ddl("BEGIN")
    s.query(
        "DECLARE big_orders CURSOR FOR SELECT * FROM orders WHERE amount > 10",
        objects=["public.orders"],
        note="DECLARE returns no rows itself",
    )
    s.query("FETCH 20 FROM big_orders", objects=["public.orders"])
    s.query("FETCH 20 FROM big_orders", objects=["public.orders"])
    s.query("FETCH ALL FROM big_orders", objects=["public.orders"])
    s.ddl("CLOSE big_orders")
    s.ddl("COMMIT")
    # extended protocol
    s.query(
        "SELECT * FROM customers WHERE id BETWEEN %s AND %s",
        (10, 19),
        objects=["public.customers"],
    )
    s.query(
        "SELECT id, amount FROM orders WHERE customer_id = %s AND note <> %s",
        (7, 'it\'s, "odd"'),
        objects=["public.orders"],
        prepare=True,
    )
    s.query(
        "SELECT id, amount FROM orders WHERE customer_id = %s AND note <> %s",
        (8, "plain"),
        objects=["public.orders"],
        prepare=True,
    )
    # failures
    s.fail("SELECT * FROM no_such_table")
    s.fail("SELECT * FROM customers WHERE id = %s", ("not-a-number",))
    # writes
    s.query(
        "INSERT INTO orders (id, customer_id, amount, note) "
        "SELECT 1000 + g, g, 9.99, 'bulk' FROM generate_series(1, 4) g",
        objects=["public.orders", "public.customers"],
        kind="write",
        note="each inserted row fires an FK check (an internal SELECT on customers)",
    )
    s.query(
        "UPDATE orders SET note = 'vip' WHERE amount > 90",
        objects=["public.orders"],
        kind="write",
    )
    s.query("DELETE FROM orders WHERE note = 'bulk'", objects=["public.orders"], kind="write")
    s.query(
        "UPDATE customers SET name = %s WHERE id = %s",
        ("Zoë O'Neil", 24),
        objects=["public.customers"],
        kind="write",
    )
    # CTEs
    s.query(
        "WITH totals AS (SELECT customer_id, sum(amount) AS s FROM orders GROUP BY customer_id)\n"
        "SELECT c.email, t.s FROM totals t JOIN customers c ON c.id = t.customer_id\n"
        "ORDER BY t.s DESC LIMIT 10",
        objects=["public.orders", "public.customers"],
        note="CTE",
    )
    s.query(
        "WITH moved AS (DELETE FROM imports WHERE id <= 5 RETURNING id, email)\n"
        "INSERT INTO archive SELECT * FROM moved",
        objects=["public.imports", "public.archive"],
        kind="write",
        note="writable CTE: rowcount is the INSERT's",
    )
    s.close()

    # psql, as a person would use it
    out1, out2 = tmp / "customers.csv", tmp / "orders_vip.csv"
    script = (
        f"\\copy customers TO '{out1}' WITH (FORMAT csv)\n"
        f"\\copy (SELECT o.id, c.email, o.amount FROM orders o JOIN customers c "
        f"ON c.id = o.customer_id WHERE o.note = 'vip') TO '{out2}' WITH (FORMAT csv)\n"
    )
    script_file = tmp / "psql_script.sql"
    script_file.write_text(script)
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    rec.blank()
    rec.note(
        "=== session carol-psql: "
        f"psql -X -h 127.0.0.1 -p {pg.port} -U carol -d shop -f <script below> "
        "(PGPASSWORD set, application_name=psql)"
    )
    rec.transcript.extend(script.splitlines())
    subprocess.run(
        [
            *(str(bin_dir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "carol"),
            *("-d", "shop", "-v", "ON_ERROR_STOP=1", "-f", str(script_file)),
        ],
        check=True,
        env={"PGPASSWORD": CAROL_PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    for command, out, objects in zip(
        script.splitlines(),
        (out1, out2),
        (["public.customers"], ["public.orders", "public.customers"]),
        strict=True,
    ):
        rec.statements.append(
            {
                "seq": len(rec.statements) + 1,
                "session": "carol-psql",
                "pid": None,
                "user": "carol",
                "database": "shop",
                "application_name": "psql",
                "protocol": "copy (psql \\copy)",
                "kind": "read",
                "statement": None,
                "client_command": command,
                "parameters": None,
                "objects": objects,
                "rows": out.read_text().count("\n"),
                "rows_source": "lines in the file psql wrote",
            }
        )

    failed_login(rec, pg, "carol", "shop", "wrong-password")
    failed_login(rec, pg, "mallory", "shop", None)
    failed_login(rec, pg, "alice", "no_such_db", None)


def parallel_workload(pg: PgCluster, rec: Recorder, tmp: Path) -> None:
    admin = Session(rec, pg, "postgres", "postgres", "fixture-setup", "setup-admin")
    admin.ddl("CREATE ROLE alice LOGIN")
    admin.ddl("CREATE DATABASE shop OWNER alice")
    admin.close()
    s = Session(rec, pg, "alice", "shop", "fixture-app", "alice-1")
    s.ddl("CREATE TABLE public.events (id int, kind text)")
    s.query(
        "INSERT INTO events SELECT g, 'k' || (g % 7) FROM generate_series(1, 200000) g",
        objects=["public.events"],
        kind="write",
    )
    s.ddl("ANALYZE events")
    plans: dict[str, str] = {}
    for q in ("SELECT count(*) FROM events", "SELECT * FROM events WHERE id % 10 = 0"):
        rec.note("plan, recorded in expected.json")
        rec.sql(f"EXPLAIN {q}")
        plan = "\n".join(r[0] for r in s.conn.execute(f"EXPLAIN {q}").fetchall())
        assert "Parallel Seq Scan" in plan, plan
        plans[q] = plan
    s.query("SELECT count(*) FROM events", objects=["public.events"])
    s.query("SELECT * FROM events WHERE id % 10 = 0", objects=["public.events"])
    s.close()
    rec.extra["plans"] = plans


def pg_dump_workload(pg: PgCluster, rec: Recorder, tmp: Path) -> None:
    admin = Session(rec, pg, "postgres", "postgres", "fixture-setup", "setup-admin")
    admin.ddl("CREATE ROLE alice LOGIN")
    admin.ddl("CREATE ROLE backup LOGIN")
    admin.ddl("GRANT pg_read_all_data TO backup")
    admin.ddl("CREATE DATABASE inventory OWNER alice")
    admin.close()
    s = Session(rec, pg, "alice", "inventory", "fixture-setup", "setup-alice")
    s.ddl("CREATE TABLE public.suppliers (id int PRIMARY KEY, name text)")
    s.ddl("CREATE TABLE public.items (id int PRIMARY KEY, supplier_id int, title text)")
    s.ddl("CREATE TABLE public.stock (item_id int, qty int)")
    for text, obj in (
        (
            "INSERT INTO suppliers SELECT g, 'supplier ' || g FROM generate_series(1, 7) g",
            "public.suppliers",
        ),
        (
            "INSERT INTO items SELECT g, 1 + g % 7, 'item ' || g FROM generate_series(1, 31) g",
            "public.items",
        ),
        ("INSERT INTO stock SELECT 1 + g % 31, g FROM generate_series(1, 53) g", "public.stock"),
    ):
        s.query(text, objects=[obj], kind="write")
    s.close()

    bin_dir = find_pg_bin()
    assert bin_dir is not None
    dump = tmp / "inventory.sql"
    cmd = [str(bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "backup"]
    cmd += ["-d", "inventory", "-f", str(dump)]
    rec.blank()
    rec.note("=== pg_dump as user backup (pg_read_all_data); the dump file is not kept")
    rec.note(" ".join(cmd).replace(str(dump), "inventory.sql"))
    subprocess.run(cmd, check=True, capture_output=True)
    # client-side truth: data lines per table in the dump's COPY blocks
    per_table: dict[str, int] = {}
    current: str | None = None
    for line in dump.read_text().splitlines():
        if current is None and line.startswith("COPY ") and line.endswith("FROM stdin;"):
            current = line.split()[1]
            per_table[current] = 0
        elif current is not None:
            if line == "\\.":
                current = None
            else:
                per_table[current] += 1
    for table, n in per_table.items():
        rec.statements.append(
            {
                "seq": len(rec.statements) + 1,
                "session": "pg_dump",
                "pid": None,
                "user": "backup",
                "database": "inventory",
                "application_name": "pg_dump",
                "protocol": "copy",
                "kind": "read",
                "statement": None,
                "parameters": None,
                "objects": [table],
                "rows": n,
                "rows_source": "data lines in the pg_dump output's COPY block",
            }
        )
    rec.extra["pg_dump_command"] = [*cmd[:-2], "-f", "inventory.sql"]


SHOP_SETTINGS = {"pgaudit.log": "read,write,ddl,role,misc"}

SCENARIOS = [
    Scenario(
        "rows_relation_param_on",
        {**SHOP_SETTINGS, "log_min_duration_statement": "0"},
        shop_workload,
        "pgaudit.log_rows/log_relation/log_parameter on, misc on, log_min_duration_statement=0",
        allow_carol_password,
    ),
    Scenario(
        "rows_off_relation_off_param_off",
        {
            **SHOP_SETTINGS,
            "pgaudit.log_rows": "off",
            "pgaudit.log_relation": "off",
            "pgaudit.log_parameter": "off",
        },
        shop_workload,
        "same workload as rows_relation_param_on with log_rows/log_relation/log_parameter off "
        "(and log_min_duration_statement=-1)",
        allow_carol_password,
    ),
    Scenario(
        "rows_off_relation_on",
        {**SHOP_SETTINGS, "pgaudit.log_rows": "off"},
        shop_workload,
        "same workload with log_rows off, log_relation and log_parameter on "
        "(extra combination: COPY TO and DECLARE CURSOR name their table here)",
        allow_carol_password,
    ),
    Scenario(
        "rows_on_relation_off",
        {**SHOP_SETTINGS, "pgaudit.log_relation": "off"},
        shop_workload,
        "same workload with log_rows and log_parameter on, log_relation off (extra combination)",
        allow_carol_password,
    ),
    Scenario(
        "parallel_workers",
        {
            "max_parallel_workers_per_gather": "2",
            "parallel_setup_cost": "0",
            "parallel_tuple_cost": "0",
            "min_parallel_table_scan_size": "0",
        },
        parallel_workload,
        "forced parallel seq scans over a 200k-row table",
    ),
    Scenario("pg_dump", {}, pg_dump_workload, "real pg_dump as a distinct user 'backup'"),
]

PREFIXES = {
    "default": "%m [%p] ",
    "pgbadger": "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "h": "%m [%p] %q%u@%d %h ",
    "session": "%m [%p] %c %l %q%u@%d ",
    "rds": "%t:%r:%u@%d:[%p]:",
}
SPACED_USER, SPACED_DB = "Zoë Ü", "ventes été"  # names pg_stderr must not cut at a space
# Read only with the prefix given (--log-line-prefix): no common prefix fits.
OWN_PREFIXES = {"own": "[%m] %p %q<%u@%d> %a: "}


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def server_info() -> dict[str, Any]:
    return {
        "postgresql": package_version("postgresql-15"),
        "pgaudit": package_version("postgresql-15-pgaudit"),
        "psycopg": psycopg.__version__,
    }


def run_scenario(sc: Scenario, out_root: Path, keep: bool = False) -> None:
    base = WORK / sc.name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    port = free_port()
    pg = PgCluster(base / "pg", port, sc.settings)
    rec = Recorder()
    rec.note(f"scenario {sc.name}: {sc.description}")
    rec.note(f"server settings overriding scripts/pg_cluster.py defaults: {sc.settings}")
    pg.init()
    if sc.init_hook:
        sc.init_hook(pg)
    client_dir = base / "client"  # fixed path: it appears in scenario.sql
    client_dir.mkdir()
    with pg:
        sc.run(pg, rec, client_dir)
    dest = out_root / sc.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in LOG_FILES:
        shutil.copyfile(pg.log_dir / name, dest / name)
    (dest / "scenario.sql").write_text("\n".join(rec.transcript) + "\n")
    write_json(
        dest / "expected.json",
        {
            "scenario": sc.name,
            "description": sc.description,
            "server": server_info(),
            "port": port,
            "settings": pg.effective_settings(),
            "statements": rec.statements,
            "failed_statements": rec.failed_statements,
            "failed_logins": rec.failed_logins,
            **rec.extra,
        },
    )
    if not keep:
        shutil.rmtree(base)
    print(f"{sc.name}: {len(rec.statements)} statements -> {dest}")


def run_prefixes(out_root: Path, keep: bool = False) -> None:
    name = "prefixes"
    base = WORK / name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    port = free_port()
    common = {"log_destination": "stderr"}
    pg = PgCluster(base / "pg", port, {**common, "log_filename": "setup.log"})
    rec = Recorder()
    rec.note("scenario prefixes: one server, restarted once per log_line_prefix")
    with pg:
        admin = Session(rec, pg, "postgres", "postgres", "fixture-setup", "setup-admin")
        admin.ddl("CREATE ROLE alice LOGIN")
        admin.ddl("CREATE DATABASE shop OWNER alice")
        admin.close()
        owner = Session(rec, pg, "alice", "shop", "fixture-setup", "setup-alice")
        owner.ddl("CREATE TABLE public.customers (id int PRIMARY KEY, email text)")
        owner.query(
            "INSERT INTO customers SELECT g, 'u' || g || '@example.com' "
            "FROM generate_series(1, 50) g",
            objects=["public.customers"],
            kind="write",
        )
        owner.close()
        # Names with spaces and non-ASCII letters, as the server prints them unquoted.
        admin = Session(rec, pg, "postgres", "postgres", "fixture-setup", "setup-spaced")
        admin.ddl(f'CREATE ROLE "{SPACED_USER}" LOGIN')
        admin.ddl(f'CREATE DATABASE "{SPACED_DB}" OWNER "{SPACED_USER}"')
        admin.close()
        spaced = Session(rec, pg, SPACED_USER, SPACED_DB, "fixture-setup", "setup-spaced-owner")
        spaced.ddl("CREATE TABLE public.notes AS SELECT generate_series(1, 40) AS id")
        spaced.close()
    rec.statements.clear()  # the setup lives in setup.log, which is not kept
    dest = out_root / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files: dict[str, Any] = {}
    for key, prefix in {**PREFIXES, **OWN_PREFIXES}.items():
        fname = f"stderr_{key}.log"
        pg.settings = {**common, "log_filename": fname, "log_line_prefix": prefix}
        rec.blank()
        rec.note(f"=== restart with log_line_prefix = '{prefix}' -> {fname}")
        first = len(rec.statements)
        with pg:
            s = Session(rec, pg, "alice", "shop", "fixture-app", f"alice-{key}")
            s.query(
                "SELECT id, email\n  FROM customers WHERE id <= 12",
                objects=["public.customers"],
            )
            s.fail("SELECT * FROM no_such_table")
            s.close()
            other = Session(rec, pg, SPACED_USER, SPACED_DB, "fixture app", f"spaced-{key}")
            other.query("SELECT * FROM notes WHERE id <= 7", objects=["public.notes"])
            other.close()
        shutil.copyfile(pg.log_dir / fname, dest / fname)
        files[fname] = {
            "log_line_prefix": prefix,
            "statements": rec.statements[first:],
            "failed_statements": [f for f in rec.failed_statements if f["pid"] == s.pid],
        }
    (dest / "scenario.sql").write_text("\n".join(rec.transcript) + "\n")
    write_json(
        dest / "expected.json",
        {
            "scenario": name,
            "description": "same short workload under several stderr log_line_prefix values",
            "server": server_info(),
            "port": port,
            "settings": {k: v for k, v in pg.effective_settings().items() if k != "log_filename"},
            "files": files,
        },
    )
    if not keep:
        shutil.rmtree(base)
    print(f"{name}: {len(files)} files -> {dest}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    names = [s.name for s in SCENARIOS] + ["prefixes"]
    ap.add_argument("--only", nargs="*", choices=names, help="regenerate only these")
    ap.add_argument("--keep", action="store_true", help=f"keep the scratch clusters in {WORK}")
    args = ap.parse_args(argv)
    bin_dir = find_pg_bin()
    if bin_dir is None or not pgaudit_available(bin_dir):
        print("PostgreSQL 15 with pgAudit is required", file=sys.stderr)
        return 1
    wanted = set(args.only or names)
    for sc in SCENARIOS:
        if sc.name in wanted:
            run_scenario(sc, args.out, args.keep)
    if "prefixes" in wanted:
        run_prefixes(args.out, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
