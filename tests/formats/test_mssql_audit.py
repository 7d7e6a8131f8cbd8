"""SQL Server / Azure SQL audit facts, on the fixtures of tests/fixtures/mssql-audit (the
documented ``sys.fn_get_audit_file`` columns, the documented Event Hubs / Log Analytics
names, and one real Event Hubs record; sources in its README), and on workloads built
here from those documented shapes; then fuzzed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats import mssql
from detector.formats.mssql_audit import MssqlAuditCsv, MssqlAuditJson
from detector.pipeline import read_events
from detector.reader import head_lines
from detector.rejects import Quarantine, Reason
from tests.conftest import FIXTURES
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    assert_no_other_format_sniffs,
    foreign_logs,
    garbage_text,
    insertions,
    one,
    parse_chunks,
    read_bytes,
    with_inserted,
)

HERE = FIXTURES / "mssql-audit"
COLUMNS = (HERE / "fn_get_audit_file.columns.csv").read_text().strip().split(",")
EVENTHUB = HERE / "eventhub-record.json"
RECORD: dict[str, Any] = json.loads(EVENTHUB.read_text())
LA_NAMES = {  # "Name (blob)" -> "Name (Event Hubs/Log Analytics)", as documented
    r["name_blob"]: r["name_event_hubs_log_analytics"]
    for r in csv.DictReader((HERE / "audit-log-fields.csv").open())
}
OURS = {mssql.CSV: MssqlAuditCsv, mssql.JSON: MssqlAuditJson}


def read(path: Path, format_name: str = "auto") -> tuple[pl.DataFrame, Quarantine, int]:
    """Events, quarantine and context count of ``path``, end to end."""
    quarantine = Quarantine(None)
    events, summary = read_events([path], format_name=format_name, quarantine=quarantine)
    return events, quarantine, summary.context


# -- building exports from the documented shapes ---------------------------------------

SESSION = {
    "sequence_number": "1", "succeeded": "1", "session_id": "57",
    "server_principal_name": "alice", "session_server_principal_name": "alice",
    "database_principal_name": "dbo", "server_instance_name": "shopsrv",
    "database_name": "shop", "client_ip": "10.0.0.5", "application_name": "reporting",
    "connection_id": "6F1A4D2C-0000-4000-8000-000000000057",
}  # fmt: skip


def rec(time: str, action: str, **fields: str) -> dict[str, str]:
    """One audit record of alice's session at ``2024-01-15 <time>``."""
    return {**SESSION, "event_time": f"2024-01-15 {time}", "action_id": action, **fields}


def statement(
    time: str,
    text: str,
    *,
    table: str = "",
    schema: str = "dbo",
    action: str = "SL",
    rows: int = 0,
    affected: int = 0,
    ms: int = 1,
    ok: bool = True,
) -> list[dict[str, str]]:
    """A statement as Azure SQL audits it with BATCH_COMPLETED_GROUP and
    SCHEMA_OBJECT_ACCESS_GROUP on: the object-level permission check (when ``table``),
    then the batch record with its volume."""
    ran = {"succeeded": "1" if ok else "0"}
    check = [rec(time + "00", action, schema_name=schema, object_name=table, statement=text,
                 class_type="U", **ran)] if table else []  # fmt: skip
    done = rec(time + "90", "BCM", statement=text, response_rows=str(rows),
               affected_rows=str(affected), duration_milliseconds=str(ms), **ran)  # fmt: skip
    return [*check, done]


def to_csv(records: list[dict[str, str]], columns: list[str] = COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow([r.get(c, "") for c in columns])
    return out.getvalue()


def workload() -> list[dict[str, str]]:
    """alice's session: a login, normal reads, a bulk pull of all customers, a write, a
    failed read, an export to a new table; mallory's refused login."""
    return [
        rec("10:00:00.0000000", "DBAS"),
        *statement("10:00:01.00000", "SELECT id, total FROM dbo.orders WHERE id = 7",
                   table="orders", rows=1, affected=1, ms=2),
        *statement("10:00:02.00000", "SELECT * FROM dbo.customers", table="customers",
                   rows=10_000, affected=10_000, ms=120),
        *statement("10:00:03.00000", "UPDATE dbo.orders SET status = 'x' WHERE id < 5",
                   table="orders", action="UP", rows=0, affected=4, ms=3),
        *statement("10:00:04.00000", "SELECT * FROM dbo.secrets", table="secrets", ok=False),
        *statement("10:00:05.00000", "SELECT * INTO dbo.customers_copy FROM dbo.customers",
                   rows=0, affected=10_000, ms=300),
        rec("10:00:06.0000000", "LGO"),
        {**SESSION, "event_time": "2024-01-15 10:00:07.0000000", "action_id": "LGIF",
         "succeeded": "0", "session_id": "61", "server_principal_name": "mallory",
         "session_server_principal_name": "mallory", "database_principal_name": "",
         "client_ip": "203.0.113.9", "connection_id": "", "database_name": "master",
         "statement": "Login failed for user 'mallory'."},
    ]  # fmt: skip


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "audit.csv"
    path.write_text(to_csv(workload()))
    return path


def write(tmp_path: Path, text: str, name: str = "audit.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def la_row(properties: dict[str, Any]) -> dict[str, Any]:
    """A Log Analytics ``AzureDiagnostics`` row of a record, named by the documented
    table (fields without a Log Analytics name are left out, as there)."""
    row = {"TimeGenerated": "2024-01-15T10:00:09.5Z", "Category": "SQLSecurityAuditEvents",
           "LogicalServerName_s": "shopsrv"}  # fmt: skip
    for name, value in properties.items():
        la = LA_NAMES.get(name, "N/A")
        if la != "N/A":
            row[la] = value
    return row


# -- detection --------------------------------------------------------------------------


def test_autodetected(export: Path, tmp_path: Path) -> None:
    assert formats.detect(export, head_lines(export)) == mssql.CSV
    assert formats.detect(EVENTHUB, head_lines(EVENTHUB)) == mssql.JSON


def test_sniff_claims_both_exports(export: Path) -> None:
    assert MssqlAuditCsv().sniff(head_lines(export))
    assert MssqlAuditJson().sniff(head_lines(EVENTHUB))
    assert MssqlAuditJson().sniff([json.dumps({"records": [RECORD, RECORD]})])
    assert MssqlAuditJson().sniff([json.dumps(la_row(RECORD["properties"]))])
    assert not MssqlAuditCsv().sniff(head_lines(EVENTHUB))
    assert not MssqlAuditJson().sniff(head_lines(export))


@pytest.mark.parametrize("path", foreign_logs(HERE.name), ids=str)
def test_sniff_claims_no_other_log(path: Path) -> None:
    head = head_lines(path)
    assert not MssqlAuditCsv().sniff(head)
    assert not MssqlAuditJson().sniff(head)


def test_no_other_format_claims_ours(export: Path) -> None:
    for path in (export, EVENTHUB):
        assert_no_other_format_sniffs(path, *OURS)


def test_a_csv_without_a_principal_column_is_not_ours(tmp_path: Path) -> None:
    path = write(tmp_path, "event_time,action_id,statement\n2024-01-15 10:00:00,SL,SELECT 1\n")
    assert not MssqlAuditCsv().sniff(head_lines(path))


# -- the vendor record ------------------------------------------------------------------


def test_the_real_eventhub_record_is_a_login_and_so_context() -> None:
    # DBAS, DATABASE AUTHENTICATION SUCCEEDED: a successful login, counted, not an event.
    events, quarantine, context = read(EVENTHUB)
    assert (events.height, quarantine.total, context) == (0, 0, 1)


def test_the_record_in_its_event_hubs_envelope(tmp_path: Path) -> None:
    refused = {**RECORD, "properties": {**RECORD["properties"], "action_id": "DBAF",
               "action_name": "DATABASE AUTHENTICATION FAILED", "succeeded": "false"}}  # fmt: skip
    path = write(tmp_path, json.dumps({"records": [RECORD, refused]}) + "\n", "eh.json")
    events, quarantine, context = read(path)
    assert (events.height, quarantine.total, context) == (1, 0, 1)
    login = events.row(0, named=True)
    assert login[S.CLASS] == "CONNECT" and login[S.SUCCESS] is False
    assert login[S.ACCOUNT] == "kkuzmin" and login[S.CLIENT_IP] == "104.40.130.216"
    assert login[S.APPLICATION] == "Azure SQL Query Editor"
    assert login[S.DATABASE] == "kktestsql" and login[S.SESSION] == "kktest-sql-us/127"
    # event_time (when the login happened), not the envelope's later "time".
    assert login[S.TIME].isoformat() == "2019-01-22T21:21:19.734000+00:00"
    assert login[S.ROWS] is None and login[S.BYTES] is None and login[S.OBJECTS] == []


def test_log_analytics_names_are_the_documented_ones() -> None:
    for blob, la in LA_NAMES.items():
        if blob in mssql.FIELDS:
            assert mssql.SUFFIXED.get(blob, "N/A") == la, blob


def test_a_log_analytics_row_of_a_batch(tmp_path: Path) -> None:
    props = {**RECORD["properties"], "action_id": "BCM", "action_name": "BATCH COMPLETED",
             "statement": "SELECT * FROM dbo.customers", "response_rows": 10000.0,
             "affected_rows": 10000.0, "duration_milliseconds": 120.0}  # fmt: skip
    path = write(tmp_path, json.dumps(la_row(props)) + "\n", "la.json")
    events, quarantine, _ = read(path)
    assert quarantine.total == 0
    batch = one(events)
    assert (batch[S.CLASS], batch[S.COMMAND], batch[S.ROWS]) == ("READ", "SELECT", 10_000)
    assert batch[S.DURATION_MS] == 120.0 and batch[S.BYTES] is None
    assert batch[S.OBJECTS] == ["kktestsql.dbo.customers"]
    assert batch[S.ACCOUNT] == "kkuzmin" and batch[S.SESSION] == "kktest-sql-us/127"
    assert batch[S.SOURCE_FORMAT] == mssql.JSON and batch[S.DB_SYSTEM] == "mssql"


def test_a_log_analytics_csv_export_and_flat_json(tmp_path: Path, export: Path) -> None:
    full, _, _ = read(export)
    keep = [S.TIME, S.ACCOUNT, S.OBJECTS, S.CLASS, S.ROWS, S.SUCCESS]
    la_columns = [LA_NAMES[c] + (" [UTC]" if c == "event_time" else "")
                  for c in COLUMNS if LA_NAMES.get(c, "N/A") != "N/A"]  # fmt: skip
    la = [{LA_NAMES[k] + (" [UTC]" if k == "event_time" else ""): v for k, v in r.items()
           if LA_NAMES.get(k, "N/A") != "N/A"} for r in workload()]  # fmt: skip
    events, quarantine, _ = read(write(tmp_path, to_csv(la, la_columns), "la.csv"))
    assert quarantine.total == 0 and events.select(keep).equals(full.select(keep))
    flat = "\n".join(json.dumps(r) for r in workload()) + "\n"
    events, quarantine, _ = read(write(tmp_path, flat, "flat.json"))
    assert quarantine.total == 0 and events.select(keep).equals(full.select(keep))


def test_other_diagnostic_categories_are_context(tmp_path: Path) -> None:
    errors = {"time": "2024-01-15T10:00:00Z", "category": "Errors", "properties": {"message": "x"}}
    path = write(tmp_path, json.dumps({"records": [RECORD, errors]}) + "\n", "eh.json")
    events, quarantine, context = read(path, mssql.JSON)
    assert (events.height, quarantine.total, context) == (0, 0, 2)


# -- facts on a fn_get_audit_file export -------------------------------------------------


def test_a_bulk_read_counts_its_rows_once_on_its_table(export: Path) -> None:
    events, quarantine, _ = read(export)
    assert quarantine.total == 0
    pull = one(events, **{S.QUERY: "SELECT * FROM dbo.customers"})
    assert pull[S.ACCOUNT] == "alice" and pull[S.CLIENT_IP] == "10.0.0.5"
    assert pull[S.APPLICATION] == "reporting" and pull[S.DATABASE] == "shop"
    assert pull[S.OBJECTS] == ["shop.dbo.customers"]
    assert (pull[S.CLASS], pull[S.COMMAND]) == ("READ", "SELECT")
    assert (pull[S.ROWS], pull[S.BYTES], pull[S.DURATION_MS]) == (10_000, None, 120.0)
    assert pull[S.SUCCESS] is True and pull[S.EXPORT] is False
    assert pull[S.SESSION] == SESSION["connection_id"]
    assert pull[S.TIME].isoformat() == "2024-01-15T10:00:02.000009+00:00"
    # The object-level SL record and the batch record are one statement: one event.
    assert events.filter(pl.col(S.QUERY) == "SELECT * FROM dbo.customers").height == 1


def test_a_write_counts_affected_rows(export: Path) -> None:
    events, _, _ = read(export)
    update = one(events, **{S.COMMAND: "UPDATE"})
    assert (update[S.CLASS], update[S.ROWS], update[S.OBJECTS]) == ("WRITE", 4, ["shop.dbo.orders"])


def test_a_failed_statement_is_an_error_on_its_table(export: Path) -> None:
    events, _, _ = read(export)
    failed = one(events, **{S.QUERY: "SELECT * FROM dbo.secrets"})
    assert (failed[S.CLASS], failed[S.SUCCESS]) == ("ERROR", False)
    assert failed[S.OBJECTS] == ["shop.dbo.secrets"]


def test_select_into_a_new_table_is_an_export_of_its_rows(export: Path) -> None:
    events, _, _ = read(export)
    copy = one(events, **{S.EXPORT: True})
    assert copy[S.QUERY].startswith("SELECT * INTO dbo.customers_copy")
    assert copy[S.ROWS] == 10_000  # affected_rows: nothing went to the client
    assert copy[S.OBJECTS] == ["shop.dbo.customers_copy", "shop.dbo.customers"]


def test_the_logs_object_names_come_first_and_the_texts_fill_in(tmp_path: Path) -> None:
    # The SL record names sales.customers; the text's bare "customers" would have been
    # guessed dbo.customers, and the new table is only in the text.
    text = "SELECT * INTO reports.snapshot FROM customers"
    records = statement("10:00:01.00000", text, table="customers", schema="sales", affected=7)
    events, quarantine, _ = read(write(tmp_path, to_csv(records)))
    assert quarantine.total == 0
    got = one(events)
    assert got[S.OBJECTS] == ["shop.sales.customers", "shop.reports.snapshot"]
    assert got[S.EXPORT] is True and got[S.ROWS] == 7


def test_logins_and_logouts_are_context_and_a_refused_login_is_connect(export: Path) -> None:
    events, _, context = read(export)
    assert context == 2  # DBAS and LGO
    refused = one(events, **{S.CLASS: "CONNECT"})
    assert refused[S.ACCOUNT] == "mallory" and refused[S.CLIENT_IP] == "203.0.113.9"
    assert refused[S.SUCCESS] is False and refused[S.COMMAND] == "LOGIN"
    assert refused[S.SESSION] == "shopsrv/61"
    assert events.height == 6


def test_rows_are_summed_once_over_the_export(export: Path) -> None:
    events, _, _ = read(export)
    assert events[S.ROWS].sum() == 1 + 10_000 + 4 + 0 + 10_000


def test_without_batch_auditing_object_records_are_the_events_with_unknown_rows(
    tmp_path: Path,
) -> None:
    only_checks = [r for r in workload() if r["action_id"] != "BCM"]
    events, quarantine, _ = read(write(tmp_path, to_csv(only_checks)))
    assert quarantine.total == 0
    pull = one(events, **{S.QUERY: "SELECT * FROM dbo.customers"})
    assert (pull[S.CLASS], pull[S.COMMAND], pull[S.OBJECTS]) == (
        "READ",
        "SELECT",
        ["shop.dbo.customers"],
    )
    assert pull[S.ROWS] is None and pull[S.DURATION_MS] is None  # a permission check: unknown
    assert events[S.ROWS].null_count() == events.height


def test_sql_server_exports_without_azure_volume_columns_have_null_rows(tmp_path: Path) -> None:
    # SQL Server (not Azure) returns no response_rows / affected_rows / duration.
    boxed = [
        c for c in COLUMNS if c not in ("response_rows", "affected_rows", "duration_milliseconds")
    ]
    events, quarantine, _ = read(write(tmp_path, to_csv(workload(), boxed)))
    assert quarantine.total == 0 and events.height == 6
    assert events[S.ROWS].null_count() == events.height
    assert events[S.DURATION_MS].null_count() == events.height


def test_columns_in_another_order_or_a_subset(tmp_path: Path, export: Path) -> None:
    subset = ["statement", "server_principal_name", "affected_rows", "action_id", "response_rows",
              "database_name", "event_time", "schema_name", "object_name", "succeeded", "session_id"]  # fmt: skip
    events, quarantine, _ = read(write(tmp_path, to_csv(workload(), subset), "subset.csv"))
    full, _, _ = read(export)
    assert quarantine.total == 0
    keep = [S.TIME, S.ACCOUNT, S.DATABASE, S.OBJECTS, S.CLASS, S.ROWS, S.SUCCESS, S.EXPORT]
    assert events.select(keep).equals(full.select(keep))
    assert events[S.CLIENT_IP].null_count() == events.height  # not in this export


def test_a_multi_line_statement_is_one_record(tmp_path: Path) -> None:
    text = 'SELECT c.id,\n       c.email, "x, y"\nFROM sales.customers AS c\nJOIN [sales].[orders] o ON o.cid = c.id'
    records = statement("10:00:01.00000", text, rows=42, affected=42)
    events, quarantine, _ = read(write(tmp_path, to_csv(records)))
    assert quarantine.total == 0
    got = one(events)
    assert got[S.QUERY] == text and got[S.ROWS] == 42
    assert got[S.OBJECTS] == ["shop.sales.customers", "shop.sales.orders"]


def test_a_long_record_in_pieces_is_one_statement(tmp_path: Path) -> None:
    # SQL Server writes a record too big for its buffer as pieces numbered 1, 2, ...
    first = rec("10:00:01.0000000", "BCM", statement="SELECT * FROM dbo.cus",
                sequence_group_id="0xAB", response_rows="5")  # fmt: skip
    second = {**first, "sequence_number": "2", "statement": "tomers WHERE 1 = 1"}
    events, quarantine, context = read(write(tmp_path, to_csv([first, second])))
    assert quarantine.total == 0 and context == 0
    got = one(events)
    assert got[S.QUERY] == "SELECT * FROM dbo.customers WHERE 1 = 1"
    assert got[S.OBJECTS] == ["shop.dbo.customers"] and got[S.ROWS] == 5


@pytest.mark.parametrize(
    ("text", "klass", "command", "exported"),
    [
        ("exec sp_executesql N'SELECT * FROM dbo.t WHERE id = @p0',N'@p0 int',@p0=1", "READ", "SELECT", False),
        ("SET NOCOUNT ON;\nSELECT * FROM dbo.t", "READ", "SELECT", False),
        ("WITH x AS (SELECT 1 AS a) DELETE FROM dbo.t WHERE id IN (SELECT a FROM x)", "WRITE", "WITH", False),
        ("MERGE INTO dbo.t USING dbo.s ON t.id = s.id WHEN MATCHED THEN DELETE;", "WRITE", "MERGE", False),
        ("CREATE TABLE dbo.t (id int)", "DDL", "CREATE", False),
        ("CREATE USER bob FOR LOGIN bob", "ROLE", "CREATE", False),
        ("GRANT SELECT ON dbo.t TO bob", "ROLE", "GRANT", False),
        ("EXEC dbo.monthly_report @month = 1", "FUNCTION", "EXEC", False),
        ("BEGIN TRAN", "MISC", "BEGIN", False),
        ("SELECT * INTO #tmp FROM dbo.t", "READ", "SELECT", False),
        ("EXEC xp_cmdshell 'bcp \"SELECT * FROM shop.dbo.t\" queryout C:\\t.dat -c -T'", "FUNCTION", "EXEC", True),
        ("SELECT BulkColumn FROM OPENROWSET(BULK 'C:\\secrets.txt', SINGLE_CLOB) AS f", "READ", "SELECT", True),
        ("BULK INSERT dbo.t FROM 'C:\\in.csv'", "WRITE", "BULK", False),
        ("CREATE EXTERNAL TABLE ext.t WITH (LOCATION = '/out/') AS SELECT * FROM dbo.t", "DDL", "CREATE", True),
    ],
)  # fmt: skip
def test_batches_are_classed_from_their_text(
    tmp_path: Path, text: str, klass: str, command: str, exported: bool
) -> None:
    events, quarantine, _ = read(write(tmp_path, to_csv(statement("10:00:01.00000", text))))
    assert quarantine.total == 0
    got = one(events)
    assert (got[S.CLASS], got[S.COMMAND], got[S.EXPORT]) == (klass, command, exported)


def test_sqlcmd_and_export_csv_decorations(tmp_path: Path) -> None:
    # Export-Csv's "#TYPE" line and quoted header, a BOM; sqlcmd's dashes and footer.
    body = to_csv(workload()).splitlines()
    header = ",".join(f'"{c}"' for c in COLUMNS)
    dashes = ",".join("-" * len(c) for c in COLUMNS)
    text = (
        "\ufeff#TYPE System.Data.DataRow\n"
        + "\n".join([header, dashes, *body[1:], "(13 rows affected)"])
        + "\n"
    )
    events, quarantine, context = read(write(tmp_path, text))
    assert quarantine.total == 0 and events.height == 6 and context == 2 + 2


def test_ssms_null_and_a_log_analytics_portal_time(tmp_path: Path) -> None:
    rows = [rec("10:00:01", "BCM", statement="SELECT 1", response_rows="1", schema_name="NULL")]
    rows[0]["event_time"] = "1/15/2024, 10:00:01.250 AM"
    events, quarantine, _ = read(write(tmp_path, to_csv(rows)))
    assert quarantine.total == 0
    assert one(events)[S.TIME].isoformat() == "2024-01-15T10:00:01.250000+00:00"
    rows[0]["event_time"] = "1/15/2024 10:00:01 PM"  # Export-Csv, en-US culture
    events, quarantine, _ = read(write(tmp_path, to_csv(rows), "ps.csv"))
    assert quarantine.total == 0
    assert one(events)[S.TIME].isoformat() == "2024-01-15T22:00:01+00:00"


# -- chunks -------------------------------------------------------------------------------


def in_chunks(
    fmt: MssqlAuditCsv | MssqlAuditJson, path: Path, chunk_bytes: int
) -> tuple[pl.DataFrame, int]:
    """The events of ``path`` read in chunks, the way ``read_events`` joins them; and
    how many chunks. None of them rejects a line."""
    got = parse_chunks(fmt, path, chunk_bytes)
    assert got.rejects.is_empty()
    return got.events, got.chunks


def busy_workload() -> list[dict[str, str]]:
    """Two interleaved sessions, multi-line statements, object-level records before each
    batch: built from the documented record, so chunks fall anywhere."""
    out: list[dict[str, str]] = []
    for i in range(30):
        t = f"10:{i:02d}:01.00000"
        text = f"SELECT *\nFROM dbo.customers\nWHERE id > {i}"
        out += statement(t, text, table="customers", rows=i, affected=i)
        other = [{**r, "session_id": "58", "connection_id": "C-58", "server_principal_name": "bob"}
                 for r in statement(f"10:{i:02d}:01.50000", "DELETE FROM dbo.orders", table="orders",
                                    action="DL", affected=1)]  # fmt: skip
        out += other
    return out


@pytest.mark.parametrize("chunk_bytes", [300, 1_000])
def test_the_same_events_in_one_chunk_or_many(tmp_path: Path, chunk_bytes: int) -> None:
    path = write(tmp_path, to_csv(busy_workload()))
    whole, one_chunk = in_chunks(MssqlAuditCsv(), path, 1 << 24)
    many, n = in_chunks(MssqlAuditCsv(), path, chunk_bytes)
    assert one_chunk <= 2 and n > 5  # the last record is its own chunk at the end
    assert whole.height == 60 and whole[S.ROWS].sum() == sum(range(30)) + 30
    assert many.equals(whole)
    events, quarantine, _ = read(path)
    assert quarantine.total == 0 and events.sort(S.TIME).equals(whole.sort(S.TIME))


@pytest.mark.parametrize("chunk_bytes", [700, 3_000])
def test_the_same_json_events_in_one_chunk_or_many(tmp_path: Path, chunk_bytes: int) -> None:
    records = [{**RECORD, "properties": {**RECORD["properties"], **r}} for r in busy_workload()]
    lines = [json.dumps({"records": records[i : i + 3]}) for i in range(0, len(records), 3)]
    path = write(tmp_path, "\n".join(lines) + "\n", "eh.json")
    whole, _ = in_chunks(MssqlAuditJson(), path, 1 << 24)
    many, n = in_chunks(MssqlAuditJson(), path, chunk_bytes)
    assert n > 5 and whole.height == 60
    assert many.equals(whole)


# -- unusable lines -------------------------------------------------------------------------


def test_each_unusable_csv_record_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    good = to_csv(workload()).splitlines()
    cut = good[3][: len(good[3]) // 2]  # a record cut short
    no_time = "yesterday" + good[2][good[2].index(",") :]
    no_principal = ",".join(["2024-01-15 10:00:00", "1", "SL"] + [""] * (len(COLUMNS) - 3))
    # (A line after an unclosed quote that does not start a record is read as part of
    # the cut record: it is quarantined with it, under the cut record's line number.)
    lines = [*good[:3], no_time, "garbage", cut, no_principal, *good[3:]]
    events, quarantine, _ = read(write(tmp_path, "\n".join(lines) + "\n"), mssql.CSV)
    full, _, _ = read(write(tmp_path, to_csv(workload()), "clean.csv"), mssql.CSV)
    assert dict(quarantine.counts) == {"truncated": 2, "bad_field": 1, "not_audit": 1}
    assert events.equals(full)


def test_each_unusable_json_line_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    line = EVENTHUB.read_text().strip()
    no_action = json.dumps({**RECORD, "properties": {**RECORD["properties"], "action_id": ""}})
    bad_time = json.dumps(
        {**RECORD, "time": "x", "properties": {**RECORD["properties"], "event_time": "x"}}
    )
    mistyped = json.dumps({**RECORD, "properties": ["not", "an", "object"]})
    lines = [line, "not json", line[:100], no_action, bad_time, mistyped, "", line]
    events, quarantine, context = read(
        write(tmp_path, "\n".join(lines) + "\n", "eh.json"), mssql.JSON
    )
    assert dict(quarantine.counts) == {"invalid_json": 2, "not_audit": 1, "bad_field": 2}
    assert (events.height, context) == (0, 2)


def test_records_polars_cannot_read_are_read_one_by_one(
    tmp_path: Path, export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, _, _ = read(export)

    def refuse(*args: Any, **kwargs: Any) -> pl.DataFrame:
        raise pl.exceptions.ComputeError("as if the CSV reader had failed")

    monkeypatch.setattr("detector.formats.mssql_audit.pl.read_csv", refuse)
    events, quarantine, _ = read(export)
    assert quarantine.total == 0 and events.equals(full)


def test_giant_lines_are_too_long(tmp_path: Path) -> None:
    giant = json.dumps(
        {**RECORD, "properties": {**RECORD["properties"], "statement": "x" * 1_100_000}}
    )
    path = write(tmp_path, EVENTHUB.read_text().strip() + "\n" + giant + "\n", "eh.json")
    _, quarantine, context = read(path, mssql.JSON)
    assert dict(quarantine.counts) == {"too_long": 1} and context == 1
    row = rec("10:00:01.0000000", "BCM", statement="SELECT '" + "x" * 1_100_000 + "'")
    _, quarantine, _ = read(write(tmp_path, to_csv([*workload(), row])), mssql.CSV)
    assert dict(quarantine.counts) == {"too_long": 1}


# -- fuzz -------------------------------------------------------------------------------------

CLEAN_CSV = to_csv(workload())
CLEAN_JSON = "\n".join(
    json.dumps({"records": [{**RECORD, "properties": {**RECORD["properties"], **r}}]})
    for r in workload()
)
TORTURE = ['"', '""', ",", ",,,", "\\", "NULL", "{", "}", '{"records":', "[", "]", "\xff",
           "2024-01-15 10:00:00", "\r", "x" * 3000, "null", "true"]  # fmt: skip


def check(data: bytes, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and quarantined lines of ``data`` read as ``name``."""
    events, _, rows = read_bytes(data, name)
    return events, rows


@FUZZ
@given(data=RANDOM_BYTES, name=st.sampled_from(sorted(OURS)))
def test_random_bytes_never_crash(data: bytes, name: str) -> None:
    check(data, name)


@FUZZ
@given(data=st.binary(max_size=2000), name=st.sampled_from(sorted(OURS)))
def test_random_bytes_after_a_good_head_never_crash(data: bytes, name: str) -> None:
    head = CLEAN_CSV if name == mssql.CSV else CLEAN_JSON + "\n"
    check(head.encode() + data, name)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(CLEAN_CSV)), name=st.sampled_from(sorted(OURS)))
def test_truncated_files_never_crash(cut: int, name: str) -> None:
    clean = CLEAN_CSV if name == mssql.CSV else CLEAN_JSON
    events, _ = check(clean.encode()[:cut], name)
    assert events.height <= 6


# Up to 6 garbage lines, each with the index of the workload record (not the first) it goes
# before: a line index in the JSON lines, one more in the CSV (its header comes first).
INSERTS = insertions(
    garbage_text(TORTURE).filter(lambda s: s.strip() != ""), 1, len(workload()), max_size=6
)


@FUZZ
@given(inserts=INSERTS)
def test_json_garbage_lines_are_all_quarantined_and_real_records_kept(
    inserts: list[tuple[int, str]],
) -> None:
    lines = with_inserted(CLEAN_JSON.splitlines(), inserts)
    events, rows = check(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), mssql.JSON)
    clean, _ = check((CLEAN_JSON + "\n").encode(), mssql.JSON)
    assert rows.height == len(inserts)
    assert events.equals(clean)


@FUZZ
@given(inserts=INSERTS)
def test_csv_garbage_never_costs_more_than_its_neighbours(inserts: list[tuple[int, str]]) -> None:
    # A stray quote may swallow the lines after it up to the next record's first line;
    # the records before it and from the next record start on are kept.
    lines = with_inserted(CLEAN_CSV.splitlines(), [(at + 1, junk) for at, junk in inserts])
    events, rows = check(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), mssql.CSV)
    clean, _ = check(CLEAN_CSV.encode(), mssql.CSV)
    assert rows.height >= 1
    assert events.height <= clean.height
    if not any('"' in junk or junk.lstrip().startswith("2024-") for _, junk in inserts):
        assert events.equals(clean)


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(['"', '""', ",", "\n", "a", " ", "'", "\\", "NULL"]), max_size=40
    ).map("".join)
)
def test_csv_quoting_torture_in_a_statement(text: str) -> None:
    data = to_csv([*statement("10:00:01.00000", "SELECT " + text + " FROM dbo.t"), *workload()])
    events, rows = check(data.encode(), mssql.CSV)
    assert rows.height == 0
    assert events.filter(pl.col(S.QUERY) == "SELECT " + text + " FROM dbo.t").height == 1


@FUZZ
@given(depth=st.integers(min_value=1, max_value=3000), opener=st.sampled_from(['{"a":', "["]))
def test_deep_json_nesting_never_crashes(depth: int, opener: str) -> None:
    closer = "}" if opener.startswith("{") else "]"
    nested = json.dumps({**RECORD, "properties": {**RECORD["properties"], "extra": "X"}})
    nested = nested.replace('"X"', opener * depth + "1" + closer * depth)
    events, rows = check((nested + "\n" + CLEAN_JSON + "\n").encode(), mssql.JSON)
    clean, _ = check((CLEAN_JSON + "\n").encode(), mssql.JSON)
    assert rows.height <= 1  # too deep for a JSON parser: quarantined; else a login
    assert events.equals(clean)


def test_invalid_utf8_is_one_rejected_line_or_kept_as_replacement() -> None:
    good = CLEAN_JSON.splitlines()[3].encode()  # an object-level SL record of customers
    bad = good.replace(b"customers", b"cust\xff\xfeomers", 1)
    events, rows = check(good + b"\n" + bad + b"\n\xc3\n", mssql.JSON)
    assert events.height == 2  # the bytes became U+FFFD inside a string: still a record
    assert rows["reason"].to_list() == [Reason.INVALID_JSON.value]
