"""Real MariaDB 10.11 output of the statements ``trovewatch simulate --format mariadb``
renders, for ``tests/simulate/test_mariadb.py``: a web application's lookups, a join,
writes, a refused statement (1142), a missing table (1146), ``SELECT ... INTO OUTFILE``,
a DBA's DDL and GRANT, and ``mariadb-dump --single-transaction`` of one database.

    uv run python scripts/make_mariadb_simulate_fixtures.py   # writes tests/fixtures/mariadb-simulate/

Needs ``mariadbd`` with the server_audit plugin (Debian: ``mariadb-server``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mariadb_server import MariadbServer

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mariadb-simulate"
SETUP = """
CREATE DATABASE sales; CREATE DATABASE hr; USE sales;
CREATE TABLE sales.customers(id int primary key, email varchar(64), name varchar(64), created_at datetime);
INSERT INTO sales.customers SELECT seq, concat('u',seq,'@x.com'), concat('n',seq), now() - interval seq hour
  FROM seq_1_to_3000;
CREATE TABLE sales.orders(id int primary key, customer_id int, status varchar(16), created_at datetime);
INSERT INTO sales.orders SELECT seq, seq % 100 + 1, 'new', now() FROM seq_1_to_500;
CREATE TABLE hr.salaries(id int primary key, employee_id int, amount int);
CREATE ROLE reporting_ro;
CREATE USER 'bob'@'%' IDENTIFIED BY 'pw';
GRANT SELECT, INSERT, UPDATE, DELETE, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON sales.* TO 'bob'@'%';
GRANT FILE ON *.* TO 'bob'@'%';
CREATE USER 'dba'@'%' IDENTIFIED BY 'pw';
GRANT ALL ON *.* TO 'dba'@'%' WITH GRANT OPTION;
"""
BOB = [
    "SELECT id, email, name, created_at FROM sales.customers WHERE id = 17",
    "SELECT a.id, a.email, b.* FROM sales.customers a JOIN sales.orders b ON b.customer_id = a.id WHERE a.id = 5",
    "UPDATE sales.customers SET email = 'x@y.z' WHERE id = 3",
    "INSERT INTO sales.orders (id, customer_id, status, created_at) VALUES (9999, 1, 'new', '2026-10-05 10:00:00')",
    "SELECT * FROM sales.customers",
    "SELECT * FROM hr.salaries LIMIT 5",
    "SELECT * FROM sales.nonexist LIMIT 100",
    "SELECT * FROM sales.customers INTO OUTFILE '{dir}/customers.csv' FIELDS TERMINATED BY ','",
    "SELECT date_format(created_at, '%Y-%m-01') AS month, count(*) FROM sales.customers GROUP BY 1 ORDER BY 1",
]
DBA = (
    "CREATE INDEX IF NOT EXISTS customers_created_idx ON sales.customers (created_at); "
    "GRANT SELECT ON sales.orders TO reporting_ro; CREATE TABLE sales.orders_v2 LIKE sales.orders"
)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, MariadbServer(Path(tmp) / "srv", port=33978) as db:
        files = Path(tmp) / "files"
        files.mkdir()
        files.chmod(0o777)
        db.sql(SETUP)
        for statement in BOB:
            db.client("bob", "pw", "sales", statement.replace("{dir}", str(files)), check=False)
        db.client("dba", "pw", "sales", DBA)
        subprocess.run(
            ["mariadb-dump", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{db.port}",
             "-ubob", "-ppw", "--single-transaction", "--databases", "sales"],
            check=True, capture_output=True,
        )  # fmt: skip
        OUT.mkdir(parents=True, exist_ok=True)
        for log, name in ((db.audit_log, "server_audit.log"), (db.slow_log, "slow.log")):
            text = Path(log).read_text().replace(str(files), "/var/lib/mysql-files")
            text = text.replace(str(db.socket), "/run/mysqld/mysqld.sock")
            (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
