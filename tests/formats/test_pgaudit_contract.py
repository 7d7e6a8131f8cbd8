"""Every pgAudit scenario recorded from a real server (tests/fixtures/pgaudit, made by
scripts/make_pgaudit_fixtures.py), through every PostgreSQL output, against the truth
the client saw (expected.json)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from detector import schema as S
from detector.formats import Told
from detector.formats.pg_stderr import COMMON_PREFIXES
from detector.reader import NotALogError
from tests.conftest import OUTPUTS, PG_SCENARIOS, parse

SCENARIOS = sorted(p.name for p in PG_SCENARIOS.iterdir() if (p / "postgresql.json").exists())
EXPORTING = ("COPY", "DECLARE", "FETCH")


def expected(scenario: str) -> dict[str, Any]:
    return json.loads((PG_SCENARIOS / scenario / "expected.json").read_text())  # type: ignore[no-any-return]


def events(scenario: str, output: str) -> pl.DataFrame:
    frame, quarantine = parse(PG_SCENARIOS / scenario / OUTPUTS[output])
    assert quarantine.total == 0, dict(quarantine.counts)
    return frame


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_outputs_agree(scenario: str) -> None:
    frames = [events(scenario, o).drop(S.SOURCE_FORMAT, S.SESSION) for o in sorted(OUTPUTS)]
    assert frames[0].height > 0
    for other in frames[1:]:
        assert other.equals(frames[0])


def _reads(scenario: str) -> list[dict[str, Any]]:
    return [
        s
        for s in expected(scenario)["statements"]
        if s["kind"] == "read"
        and s["statement"]
        and not s["statement"].lstrip().upper().startswith(EXPORTING)
        and "multi-statement" not in s["protocol"]
    ]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if _reads(s)])
def test_rows_read_match_the_client_exactly_or_are_unknown(scenario: str, output: str) -> None:
    ev = events(scenario, output).filter(pl.col(S.CLASS) == "READ", ~pl.col(S.EXPORT))
    log_rows = expected(scenario)["settings"]["pgaudit.log_rows"] == "on"
    reads = _reads(scenario)
    for statement in {s["statement"] for s in reads}:
        want = [s["rows"] for s in reads if s["statement"] == statement]
        got = ev.filter(pl.col(S.QUERY).str.strip_suffix(";") == statement.rstrip(";"))
        got = got.filter(pl.col(S.ACCOUNT) == reads[0]["user"])
        # Statements reading several relations are one event each time they ran.
        assert got.height == len(want), statement
        assert got[S.ROWS].to_list() == (want if log_rows else [None] * len(want)), statement


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_read_are_named_even_without_log_relation(scenario: str, output: str) -> None:
    ev = events(scenario, output).filter(pl.col(S.CLASS) == "READ")
    for s in _reads(scenario):
        got = ev.filter(pl.col(S.QUERY).str.strip_suffix(";") == s["statement"].rstrip(";"))
        named = {o for objs in got[S.OBJECTS].to_list() for o in objs}
        assert set(s["objects"]) <= named, s["statement"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exports_are_marked_and_name_their_table(scenario: str, output: str) -> None:
    copies = [
        s
        for s in expected(scenario)["statements"]
        if s["kind"] == "read" and s["protocol"] == "copy" and s["statement"]
    ]
    ev = events(scenario, output).filter(pl.col(S.EXPORT))
    for s in copies:
        got = ev.filter(pl.col(S.QUERY).str.contains(s["statement"][:20], literal=True))
        assert got.height >= 1, s["statement"]
        assert set(s["objects"]) <= {o for objs in got[S.OBJECTS].to_list() for o in objs}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_failed_statements_are_failures(scenario: str, output: str) -> None:
    failed = expected(scenario).get("failed_statements") or []
    ev = events(scenario, output).filter(~pl.col(S.SUCCESS), pl.col(S.CLASS) == "ERROR")
    assert sorted(ev[S.QUERY].str.strip_suffix(";").to_list()) == sorted(
        f["statement"].rstrip(";") for f in failed
    )


def test_parallel_workers_do_not_add_partial_rows(output: str) -> None:
    ev = events("parallel_workers", output)
    want = [s for s in expected("parallel_workers")["statements"] if s["kind"] == "read"]
    assert ev[S.ACCOUNT].null_count() == 0  # workers carry no user: they must not become events
    for s in want:
        got = ev.filter(pl.col(S.QUERY).str.strip_suffix(";") == s["statement"].rstrip(";"))
        assert got[S.ROWS].to_list() == [s["rows"]]


def test_pg_dump_exports_every_table(output: str) -> None:
    ev = events("pg_dump", output).filter(pl.col(S.EXPORT))
    tables = {
        o for s in expected("pg_dump")["statements"] if s["kind"] == "read" for o in s["objects"]
    }
    assert set(ev[S.APPLICATION]) == {"pg_dump"}
    assert tables <= {o for objs in ev[S.OBJECTS].to_list() for o in objs}


PREFIX_FILES = expected("prefixes")["files"]
OWN_PREFIX = "stderr_own.log"  # a prefix no common one fits: read with the prefix given


@pytest.mark.parametrize("log_file", sorted(f for f in PREFIX_FILES if f != OWN_PREFIX))
def test_common_stderr_prefixes_are_recognised(log_file: str) -> None:
    ev, quarantine = parse(PG_SCENARIOS / "prefixes" / log_file)
    assert quarantine.total == 0
    reads = ev.filter(pl.col(S.CLASS) == "READ")
    truth = PREFIX_FILES[log_file]["statements"]
    assert reads[S.ROWS].to_list() == [s["rows"] for s in truth]
    # Prefixes without %u/%d: the account and database come from the connection lines.
    # Names may hold spaces ("Zoë Ü" in "ventes été").
    assert reads[S.ACCOUNT].to_list() == [s["user"] for s in truth]
    assert reads[S.DATABASE].to_list() == [s["database"] for s in truth]
    assert reads[S.APPLICATION].to_list() == [s["application_name"] for s in truth]
    assert ev.filter(~pl.col(S.SUCCESS)).height >= 1


def test_a_prefix_of_ones_own_is_read_when_given_without_a_format() -> None:
    """``--log-line-prefix`` alone (``--format auto``) reads a stderr log whose prefix is
    no common one; without it the file is not recognised."""
    path, prefix = PG_SCENARIOS / "prefixes" / OWN_PREFIX, PREFIX_FILES[OWN_PREFIX]
    assert prefix["log_line_prefix"] not in COMMON_PREFIXES
    with pytest.raises(NotALogError):
        parse(path)
    ev, quarantine = parse(path, told=Told(log_line_prefix=prefix["log_line_prefix"]))
    assert quarantine.total == 0
    reads = ev.filter(pl.col(S.CLASS) == "READ")
    assert reads[S.ROWS].to_list() == [s["rows"] for s in prefix["statements"]]
    assert reads[S.ACCOUNT].to_list() == [s["user"] for s in prefix["statements"]]
    assert reads[S.APPLICATION].to_list() == [s["application_name"] for s in prefix["statements"]]
    assert ev.filter(~pl.col(S.SUCCESS)).height == 1


def test_foreign_key_checks_are_not_counted_as_reads(output: str) -> None:
    ev = events("rows_relation_param_on", output)
    checks = ev.filter(pl.col(S.QUERY).str.contains("FOR KEY SHARE OF", literal=True))
    assert checks.height > 0
    assert set(checks[S.CLASS]) == {"INTERNAL"}
