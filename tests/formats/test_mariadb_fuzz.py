"""Fuzzing both MariaDB parsers with damage built from real 10.11 output: random bytes,
truncated records, giant lines, invalid UTF-8, quote and escape torture. No crash, every
rejected line quarantined with a reason from ``Reason``, and (for the one-line-per-record
audit log) real records keep their events while garbage lines are all quarantined."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from detector import schema as S
from detector.pipeline import read_events
from detector.rejects import Quarantine, Reason
from tests.formats.test_mariadb_reference import AUDIT, SLOW

REASONS = {r.value for r in Reason}
FUZZ = settings(
    max_examples=25,
    deadline=5_000,
    database=None,
    derandomize=os.environ.get("CI") == "true",
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
AUDIT_LINES = AUDIT.read_bytes().splitlines()
SLOW_LINES = SLOW.read_bytes().splitlines()
TORTURE = [
    b"'", b"\\'", b"\\", b"\\\\'", b"\\n", b",", b",,,", b"'\\", b"\xff\xfe", b"\x00",
    b"\xc3", b"x" * 5000, b"# User@Host: ", b"SET timestamp=;", b"# Time: ",
]  # fmt: skip


def run(data: bytes, format_name: str) -> tuple[pl.DataFrame, Quarantine, int]:
    with tempfile.TemporaryDirectory(prefix="trovewatch-mariadb-fuzz-") as tmp:
        path = Path(tmp) / "input.log"
        path.write_bytes(data)
        quarantine = Quarantine(None)
        events, _ = read_events([path], format_name=format_name, quarantine=quarantine)
        return events, quarantine, 0


def check_rejects(data: bytes, format_name: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory(prefix="trovewatch-mariadb-fuzz-") as tmp:
        path = Path(tmp) / "input.log"
        qpath = Path(tmp) / "q.ndjson"
        path.write_bytes(data)
        quarantine = Quarantine(qpath)
        events, _ = read_events([path], format_name=format_name, quarantine=quarantine)
        quarantine.close()
        if qpath.exists() and qpath.stat().st_size:
            rows = pl.read_ndjson(qpath)
            assert set(rows["reason"]) <= REASONS
            n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            assert rows["line"].min() >= 1 and rows["line"].max() <= n_lines  # type: ignore[operator]
            assert rows["line"].is_unique().all()
        assert events.schema == S.EVENT_SCHEMA
        return events


def _garbage() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b" ")),
        st.lists(st.sampled_from(TORTURE), min_size=1, max_size=6).map(b"".join),
    ).filter(lambda b: b.strip() != b"" and not b[:9].isdigit())


@FUZZ
@given(
    data=st.binary(max_size=3000).filter(lambda b: not b.startswith(b"\x1f\x8b")),
    name=st.sampled_from(["mariadb-audit", "mariadb-slow"]),
)
def test_random_bytes_never_crash(data: bytes, name: str) -> None:
    # (gzip magic that does not decompress is the documented NotALogError refusal)
    check_rejects(data, name)


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=len(SLOW.read_bytes())),
    name=st.sampled_from(["mariadb-audit", "mariadb-slow"]),
)
def test_truncated_files_never_crash(cut: int, name: str) -> None:
    source = AUDIT if name == "mariadb-audit" else SLOW
    events = check_rejects(source.read_bytes()[:cut], name)
    whole, _, _ = run(source.read_bytes(), name)
    assert events.height <= whole.height + 1


@FUZZ
@given(
    inserts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(AUDIT_LINES)), _garbage()),
        min_size=1,
        max_size=8,
    )
)
def test_audit_garbage_lines_are_all_quarantined_and_real_records_kept(
    inserts: list[tuple[int, bytes]],
) -> None:
    lines = list(AUDIT_LINES)
    for at, junk in sorted(inserts, key=lambda t: -t[0]):
        lines.insert(at, junk)
    data = b"\n".join(lines) + b"\n"
    events = check_rejects(data, "mariadb-audit")
    _, quarantine, _ = run(data, "mariadb-audit")
    blank = sum(1 for j in (j for _, j in inserts) if not j.decode("utf-8", "replace").strip())
    assert quarantine.total == len(inserts) - blank
    clean, _, _ = run(AUDIT.read_bytes(), "mariadb-audit")
    assert events.drop(S.SESSION).equals(clean.drop(S.SESSION))


@FUZZ
@given(
    text=st.lists(st.sampled_from([b"a", b"'", b"\\'", b"\\\\", b"\\n", b",", b" ", b"\xe2\x82"]),
                  max_size=30).map(b"".join)
)  # fmt: skip
def test_audit_quoted_query_torture(text: bytes) -> None:
    line = b"20261128 06:56:10,vm,bob,127.0.0.1,4,6,QUERY,shop,'SELECT " + text + b"',0\n"
    events = check_rejects(line, "mariadb-audit")
    assert events.height <= 1


def test_giant_lines_are_quarantined_as_too_long() -> None:
    giant = b"20261128 06:56:10,vm,bob,127.0.0.1,4,6,QUERY,shop,'" + b"x" * 1_100_000 + b"',0"
    for name, lines in (("mariadb-audit", AUDIT_LINES), ("mariadb-slow", SLOW_LINES)):
        data = b"\n".join([*lines, giant]) + b"\n"
        _, quarantine, _ = run(data, name)
        assert quarantine.counts[Reason.TOO_LONG.value] == 1


def test_a_slow_record_cut_before_its_statement_is_quarantined_as_truncated() -> None:
    data = b"\n".join(SLOW_LINES[:8]) + b"\n"  # header lines of the first record only
    events, quarantine, _ = run(data, "mariadb-slow")
    assert events.height == 0
    assert quarantine.counts == {Reason.TRUNCATED.value: 4}  # its four header lines
