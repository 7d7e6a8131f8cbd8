"""`trovewatch serve` follows a real PostgreSQL 15 + pgAudit log while an exfiltration
runs: the accounts are flagged in the API and named by the flagged-account metric within
seconds, and nobody else is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.conftest import free_port, require_postgres

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from make_sample_logs import DB, run_setup
from pg_cluster import PgCluster

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-admin-token"
# From the last exfiltrating statement to both alerts in the API and the metric:
# lateness (2 s) + quiet period + checkpoint, with room for a slow CI machine.
ALERT_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def cluster(server_dir: Callable[[str], Path]) -> Iterator[PgCluster]:
    require_postgres()
    base = server_dir("serve-pg")
    pg = PgCluster(
        base / "pg",
        port=free_port(),
        settings={"pgaudit.log": "'read,write,ddl,role,misc'"},
        faketime_file=base / "faketime.rc",
    )
    # A Monday after the bundled model's training period, in office hours.
    pg.set_clock(datetime(2026, 10, 26, 8, 0))
    pg.start()
    try:
        run_setup(pg, seed=7)
        yield pg
    finally:
        pg.stop()


def start_serve(log: Path, state: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TROVEWATCH_API_TOKENS": f"{TOKEN}:admin",
        "TROVEWATCH_LATENESS": "2s",
        "TROVEWATCH_CHECKPOINT_INTERVAL": "0.5",
    }
    cmd = [sys.executable, "-m", "detector", "serve", "--follow", str(log)]
    cmd += ["--state-dir", str(state), "--port", str(port)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE)


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_exfiltration_is_flagged_in_the_api_and_metrics(cluster: PgCluster, tmp_path: Path) -> None:
    port = free_port()
    serve = start_serve(cluster.log_dir / "postgresql.json", tmp_path / "state", port)
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        last: list[str] = [""]

        def ready() -> bool:
            try:
                response = api.get("/readyz")
            except httpx.TransportError:
                assert serve.poll() is None, serve.stderr.read().decode() if serve.stderr else ""
                return False
            last[0] = response.text
            return response.status_code == 200

        try:
            wait_until(ready, 60, "serve ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /readyz: {last[0]}") from None
        # Ordinary work first, at ordinary hours: nobody is flagged for it.
        cluster.set_clock(datetime(2026, 10, 27, 10, 0))
        with psycopg.connect(cluster.dsn("web_shop", DB), application_name="shop-web") as c:
            for customer in (11, 12, 13):
                c.execute("SELECT * FROM sales.customers WHERE customer_id = %s", (customer,))
        # The pull: the web application's credentials read every customer, and an
        # account that never exports copies the card table out.
        cluster.set_clock(datetime(2026, 10, 27, 14, 2))
        with psycopg.connect(cluster.dsn("web_shop", DB)) as c:
            pulled = len(c.execute("SELECT * FROM sales.customers").fetchall())
        with (
            psycopg.connect(cluster.dsn("support_eve", DB)) as c,
            c.cursor().copy("COPY sales.customers TO STDOUT") as copy,
        ):
            copied = sum(len(block) for block in copy)
        assert pulled > 10_000 and copied > 0
        done = time.monotonic()

        def alerted() -> set[str] | None:
            items = api.get("/v1/alerts", params={"limit": 100}).json()["items"]
            accounts = {a["account"] for a in items}
            return accounts if {"web_shop", "support_eve"} <= accounts else None

        accounts = wait_until(alerted, ALERT_WITHIN_S, "alerts for web_shop and support_eve")
        in_api = time.monotonic() - done

        def named() -> str | None:
            text = api.get("/metrics").text
            ok = all(f'trovewatch_flagged_account{{account="{a}"' in text for a in accounts)
            return text if ok else None

        metrics = wait_until(named, ALERT_WITHIN_S - in_api, "flagged-account metric")
        assert accounts == {"web_shop", "support_eve"}, "nobody else is flagged"
        alerts = api.get("/v1/alerts", params={"limit": 100}).json()["items"]
        reasons = " ".join(r for a in alerts for r in a["reasons"])
        assert "sales.customers" in reasons
        detail = api.get("/v1/accounts/web_shop").json()
        assert detail["totals"]["rows_read"] >= pulled

        promtool = shutil.which("promtool")
        if promtool is None and os.environ.get("CI") == "true":
            pytest.fail("promtool not installed (Debian package prometheus); required in CI")
        if promtool is not None:
            check = subprocess.run(
                [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        api.close()
