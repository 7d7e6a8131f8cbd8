"""pgAudit parsing facts, checked on real PostgreSQL 15 + pgAudit 1.7.0 output (the
reference logs: log_rows, log_relation and log_parameter on)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from detector import schema as S
from tests.conftest import OUTPUTS, REFERENCE_PG, parse


def events(output: str) -> pl.DataFrame:
    frame, quarantine = parse(REFERENCE_PG / OUTPUTS[output])
    assert quarantine.total == 0
    return frame


def by_query(frame: pl.DataFrame, text: str) -> pl.DataFrame:
    return frame.filter(pl.col(S.QUERY).str.contains(text, literal=True))


def test_three_outputs_give_identical_events() -> None:
    frames = [events(o).drop(S.SOURCE_FORMAT, S.SESSION) for o in sorted(OUTPUTS)]
    assert frames[0].height == 24
    for other in frames[1:]:
        assert other.equals(frames[0])


def test_format_is_detected_from_first_lines(output: str) -> None:
    assert events(output)[S.SOURCE_FORMAT].unique().to_list() == [f"pgaudit-{output}"]


def test_self_join_logged_per_relation_counts_its_rows_once(output: str) -> None:
    # pgAudit writes one line per relation reference, each with the statement's 9 rows.
    join = by_query(events(output), "JOIN customers d")
    assert join.height == 1
    assert join[S.ROWS].to_list() == [9]
    assert join[S.OBJECTS].to_list() == [["public.customers"]]


def test_select_rows_and_account_come_from_the_audit_record(output: str) -> None:
    select = by_query(events(output), "SELECT * FROM customers;").row(0, named=True)
    assert select[S.ROWS] == 5000
    assert select[S.ACCOUNT] == "alice"
    assert select[S.DATABASE] == "shop"
    assert select[S.CLIENT_IP] == "127.0.0.1"
    assert select[S.APPLICATION] == "psql"
    assert select[S.CLASS] == "READ"
    assert select[S.TIME].isoformat() == "2026-11-28T06:55:08.415000+00:00"


def test_copy_to_stdout_is_an_export_of_the_named_table_with_unknown_rows(output: str) -> None:
    # pgAudit logs READ,COPY with no object and 0 rows: the 0 is not a count.
    copy = by_query(events(output), "COPY customers TO STDOUT;").filter(
        pl.col(S.ACCOUNT) == "alice"
    )
    assert copy[S.EXPORT].to_list() == [True]
    assert copy[S.OBJECTS].to_list() == [["public.customers"]]
    assert copy[S.ROWS].to_list() == [None]


def test_copy_of_a_query_counts_the_inner_select_rows(output: str) -> None:
    copy = by_query(events(output), "COPY (SELECT * FROM customers WHERE id<=100)")
    assert copy[S.ROWS].sum() == 100
    assert copy[S.EXPORT].all()


def test_fetch_reads_the_objects_of_its_cursor(output: str) -> None:
    fetches = events(output).filter(pl.col(S.COMMAND) == "FETCH")
    assert fetches.height == 2
    assert fetches[S.OBJECTS].to_list() == [["public.customers"]] * 2
    assert fetches[S.EXPORT].all()
    assert fetches[S.ROWS].null_count() == 2


def test_failed_statement_is_an_unsuccessful_event(output: str) -> None:
    failed = events(output).filter(~pl.col(S.SUCCESS))
    assert failed[S.QUERY].to_list() == ["SELECT * FROM nonexistent;"]
    assert failed[S.ACCOUNT].to_list() == ["alice"]
    assert failed[S.OBJECTS].to_list() == [["public.nonexistent"]]


def test_rows_are_unknown_not_zero_when_log_rows_is_off(output: str) -> None:
    # The last session ran SET pgaudit.log_rows = off: its records have no rows field.
    off = events(output).filter(
        pl.col(S.ACCOUNT) == "postgres",
        pl.col(S.TIME) > pl.datetime(2026, 11, 28, 6, 55, 27, time_zone="UTC"),
    )
    assert off.height == 3
    assert off[S.ROWS].null_count() == 3


def test_parameter_field_is_not_mistaken_for_rows(output: str) -> None:
    # `...;,37,37`: parameter 37 then rows 37; extended-protocol statements via pgbench.
    bench = events(output).filter(pl.col(S.APPLICATION) == "pgbench")
    assert bench[S.ROWS].to_list() == [37, 34]


def test_bytes_are_null_because_pgaudit_never_logs_them(output: str) -> None:
    assert events(output)[S.BYTES].null_count() == 24


def test_a_giant_record_is_counted_with_its_text_cut(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = (REFERENCE_PG / "postgresql.json").read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if "AUDIT: SESSION,3,1,READ,SELECT" in line)
    giant = lines[i].replace(
        "SELECT * FROM customers;", "SELECT * FROM customers;" + " " * 1_100_000
    )
    path = tmp_path / "giant.json"
    path.write_text("".join(lines[:i]) + giant + "".join(lines[i + 1 :]))
    frame, quarantine = parse(path)
    assert dict(quarantine.counts) == {}
    assert frame.height == 24  # the giant statement is an event, as are all the others
    cut = frame.filter(pl.col(S.QUERY).str.contains("[trovewatch: statement of", literal=True))
    assert cut[S.QUERY].item().startswith("SELECT * FROM customers;")
    assert (
        cut[S.ROWS].item()
        == events("jsonlog").filter(pl.col(S.QUERY) == "SELECT * FROM customers;")[S.ROWS].item()
    )


def test_duration_comes_from_the_statement_s_own_duration_line(output: str) -> None:
    frame = events(output)
    select = frame.filter(pl.col(S.QUERY) == "SELECT * FROM customers;")
    assert select[S.DURATION_MS].to_list() == [1.253]
    # COPY (SELECT ...) TO: one statement, two sub-statements; the duration goes on the first.
    assert by_query(frame, "COPY (SELECT")[S.DURATION_MS].to_list() == [0.514, None]
    # Extended protocol logs parse/bind/execute durations before the AUDIT line: not joined.
    assert frame.filter(pl.col(S.APPLICATION) == "pgbench")[S.DURATION_MS].null_count() == 2


def test_log_timezones_are_converted_to_utc_and_ambiguous_ones_guessed() -> None:
    from detector.formats import zones
    from detector.formats.pgaudit import parse_time

    stamps = pl.DataFrame(
        {
            "ts": [
                "2026-11-28 07:55:02.403 CET",  # log_timezone = 'Europe/Berlin'
                "2026-11-28 01:55:02.403 EST",
                "2026-11-28 12:25:02.403 +0530",
                "2026-11-28 06:55:02.403 UTC",
                "2026-11-28 06:55:02.403 CST",  # China or US Central: read by a guess
            ]
        }
    )
    got = stamps.select(parse_time(pl.col("ts")).alias("utc"))["utc"].to_list()
    assert len({t.isoformat() for t in got[:4]}) == 1
    assert got[0].isoformat() == "2026-11-28T06:55:02.403000+00:00"
    guessed = timedelta(minutes=zones.guessed()["CST"])  # (tests/formats/test_zones.py)
    assert got[4] == got[3] - guessed


def test_a_client_without_an_application_name_exports_what_it_exports_and_no_more(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    # A client that sets none (psycopg, JDBC without ApplicationName): jsonlog leaves the
    # key out, and the connection line names none. Each statement is still an export or
    # not, never unknown.
    text = (REFERENCE_PG / "postgresql.json").read_text()
    assert '"application_name":"psql",' in text and " application_name=psql" in text
    path = tmp_path / "no-name.json"
    path.write_text(
        text.replace('"application_name":"psql",', "").replace(" application_name=psql", "")
    )
    frame, _ = parse(path)
    named = events("jsonlog")
    assert frame.filter(pl.col(S.APPLICATION).is_null()).height > 0
    assert frame[S.EXPORT].null_count() == 0
    assert frame[S.EXPORT].to_list() == named[S.EXPORT].to_list()
