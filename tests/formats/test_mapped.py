"""Generic NDJSON/CSV exports through a TOML mapping: the worked example loads without code."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector import schema as S
from detector.formats.mapped import MappingError
from tests.conftest import parse

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"
MAPPING = EXAMPLES / "snowflake-query-history.toml"


def test_worked_example_maps_every_field() -> None:
    events, quarantine = parse(EXAMPLES / "snowflake-query-history.ndjson", mapping=MAPPING)
    assert quarantine.total == 0
    unload = events.filter(pl.col(S.COMMAND) == "UNLOAD").row(0, named=True)
    assert unload[S.ACCOUNT] == "WEB_SHOP"
    assert unload[S.ROWS] == 48_211_007
    assert unload[S.BYTES] is None  # null in the export stays unknown, not 0
    assert unload[S.EXPORT] is True
    assert unload[S.CLASS] == "READ"
    assert unload[S.OBJECTS] == ["CORP.SALES.CUSTOMERS"]
    # -07:00 offset converted to UTC
    assert unload[S.TIME].isoformat() == "2026-10-06T06:40:10.500000+00:00"
    assert events[S.SUCCESS].to_list().count(False) == 1
    assert set(events[S.DB_SYSTEM]) == {"snowflake"}


def test_csv_export_through_a_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        'format = "csv"\nsystem = "sqlserver"\n[fields]\ntime = "event_time"\n'
        'account = "server_principal_name"\nclient_ip = "client_ip"\nobjects = "object_name"\n'
        'command = "action_name"\nrows = "response_rows"\nduration_ms = "duration_milliseconds"\n'
        '[options]\nread_commands = ["SELECT"]\n'
    )
    data = tmp_path / "audit.csv"
    data.write_text(
        "event_time,server_principal_name,client_ip,object_name,action_name,response_rows,duration_milliseconds\n"
        '2026-10-05 09:00:00,app,10.0.0.5,"dbo.customers",SELECT,120,3\n'
        "not a time,app,10.0.0.5,dbo.customers,SELECT,1,1\n"
        "2026-10-05 09:01:00,,10.0.0.5,dbo.customers,SELECT,1,1\n"
    )
    events, quarantine = parse(data, mapping=mapping)
    assert events.height == 1
    assert events.row(0, named=True)[S.ROWS] == 120
    assert events.row(0, named=True)[S.CLASS] == "READ"
    assert dict(quarantine.counts) == {"bad_field": 1, "not_audit": 1}


def test_mapping_without_required_fields_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text('format = "ndjson"\n[fields]\ntime = "t"\n')
    with pytest.raises(MappingError, match="account"):
        parse(EXAMPLES / "snowflake-query-history.ndjson", mapping=mapping)
