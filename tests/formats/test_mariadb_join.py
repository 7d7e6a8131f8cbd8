"""How each audited MariaDB statement finds its slow-log record
(``detector/formats/mariadb.py: join_slow``), on logs shaped as MariaDB 10.11 writes them
(``tests/fixtures/mariadb-simulate``): one reporting connection running the same
statement again and again. Both logs are read whole (``score``), and also filed as the
live engine files them (slow records at their end) and joined as it joins them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import pytest

from detector import formats
from detector import schema as S
from detector.live.engine import _kept
from detector.pipeline import read_events
from detector.rejects import Quarantine

QUERY = (
    "SELECT id, sku, title, category, price, created_at FROM sales.products "
    "WHERE created_at >= current_date - INTERVAL 25 DAY"
)
CONNECT = "20261012 11:01:28,db1,rpt_shop,10.40.0.2,2316,0,CONNECT,sales,,0"
SLOW_HEADER = (
    "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n"
    "Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\n"
    "Time\t\t    Id Command\tArgument\n"
)
EPOCH_11_15 = 1791803700  # 2026-10-12 11:15:00 UTC


@dataclass(frozen=True)
class Run:
    """One run of QUERY: when it started and ended (seconds after 11:15:00), its rows."""

    start: float
    end: float
    rows: int
    audited: bool = True  # the audit log has it
    slow: bool = True  # the slow log has it (long_query_time, row limits may skip it)


def _clock(seconds: float) -> str:
    return f"11:15:{int(seconds):02d}"


def audit_log(runs: list[Run]) -> str:
    """The connection's CONNECT, each run's TABLE and QUERY records (written when it
    ended, to the second), and its DISCONNECT."""
    lines = [CONNECT]
    for query_id, run in enumerate(runs, start=131089):
        if run.audited:
            head = f"20261012 {_clock(run.end)},db1,rpt_shop,10.40.0.2,2316,{query_id}"
            lines += [f"{head},READ,sales,products,", f"{head},QUERY,sales,'{QUERY}',0"]
    lines.append(
        f"20261012 {_clock(runs[-1].end + 1)},db1,rpt_shop,10.40.0.2,2316,0,DISCONNECT,sales,,0"
    )
    return "\n".join(lines) + "\n"


def slow_log(runs: list[Run]) -> str:
    """Records in the order the statements ended, ``# Time:`` when that second changes,
    ``SET timestamp=`` the start's whole second."""
    records, last = [SLOW_HEADER], None
    for run in (r for r in runs if r.slow):
        if _clock(run.end) != last:
            records.append(f"# Time: 261012 {_clock(run.end)}\n")
            last = _clock(run.end)
        records.append(
            "# User@Host: rpt_shop[rpt_shop] @  [10.40.0.2]\n"
            "# Thread_id: 2316  Schema: sales  QC_hit: No\n"
            f"# Query_time: {run.end - run.start:.6f}  Lock_time: 0.000108  "
            f"Rows_sent: {run.rows}  Rows_examined: {run.rows}\n"
            f"# Rows_affected: 0  Bytes_sent: {66 * run.rows + 4}\n"
            "# Full_scan: Yes  Full_join: No  Tmp_table: No  Tmp_table_on_disk: No\n"
            "# Filesort: No  Filesort_on_disk: No  Merge_passes: 0  Priority_queue: No\n"
            f"SET timestamp={EPOCH_11_15 + int(run.start)};\n{QUERY};\n"
        )
    return "".join(records)


def statements(runs: list[Run], tmp_path: Path, live: bool) -> pl.DataFrame:
    """The statements trovewatch counts from both logs, in time order (audited ones in
    query id order), as ``score`` reads them or as the live engine joins them."""
    audit, slow = tmp_path / "server_audit.log", tmp_path / "slow.log"
    audit.write_text(audit_log(runs))
    slow.write_text(slow_log(runs))
    quarantine = Quarantine(None)
    if live:  # two sources, each record filed as the engine files it, joined at close
        parts = [read_events([path], quarantine=quarantine)[0] for path in (audit, slow)]
        held = _kept(pl.concat(parts)).sort(S.TIME, maintain_order=True)
        events = formats.join(held, live=True)
    else:
        events, _ = read_events([audit, slow], quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events.filter(pl.col(S.CLASS) != "CONNECT").sort(
        S.TIME, pl.col(S.STATEMENT_ID).cast(pl.Int64), maintain_order=True
    )


LIVE = pytest.mark.parametrize("live", [False, True], ids=["score", "live"])


@LIVE
@pytest.mark.parametrize(
    "runs",
    [
        # The audit log puts the two runs in different seconds; the slow log's ends
        # (start second + Query_time: 41.075, 41.178) share one.
        [Run(41.20, 41.275103, 48000), Run(41.90, 42.078092, 47993)],
        # The other way round: the audit log's ends share second 59, the slow log's
        # (58.150, 59.120) do not.
        [Run(58.90, 59.050010, 29286), Run(59.10, 59.120040, 28213)],
    ],
    ids=["audit-seconds-differ", "slow-seconds-differ"],
)
def test_a_statement_run_twice_a_second_apart_counts_each_run_once_with_its_own_rows(
    runs: list[Run], tmp_path: Path, live: bool
) -> None:
    got = statements(runs, tmp_path, live)
    assert got[S.SOURCE_FORMAT].to_list() == ["mariadb-audit"] * 2  # no run counted twice
    assert got[S.ROWS].to_list() == [run.rows for run in runs]
    assert got[S.BYTES].to_list() == [66 * run.rows + 4 for run in runs]
    assert got[S.OBJECTS].to_list() == [["sales.products"]] * 2


@LIVE
@pytest.mark.parametrize("missed", ["slow", "audited"])
def test_a_run_one_log_missed_leaves_the_other_runs_with_their_own_rows(
    missed: str, tmp_path: Path, live: bool
) -> None:
    """A report polled every second; one log missed the second run (the slow log's
    ``long_query_time`` or row limits, the audit log's filters). Pairing in order
    resynchronises: the runs after it keep their own rows, and every run counts once."""
    runs = [Run(second + 0.1, second + 0.13, 1000 + second) for second in range(5)]
    runs[1] = replace(runs[1], **{missed: False})
    got = statements(runs, tmp_path, live)
    assert got.height == len(runs)
    assert got[S.ROWS].to_list() == [
        None if missed == "slow" and k == 1 else run.rows for k, run in enumerate(runs)
    ]
    assert got[S.SOURCE_FORMAT].to_list() == [
        "mariadb-slow" if missed == "audited" and k == 1 else "mariadb-audit"
        for k in range(len(runs))
    ]
