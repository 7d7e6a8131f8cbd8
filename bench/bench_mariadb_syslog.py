"""Reading MariaDB's audit log through syslog against reading the audit file, beside
each other: the same records, from the real held-out 10.11 capture
(``tests/fixtures/mariadb-heldout/server_audit.log``) repeated to ``--lines``, written
once as the file has them and once as rsyslog files them (traditional lines).

    uv run python bench/bench_mariadb_syslog.py [--lines 1000000] [--repeat 2]

Prints each read's events, lines quarantined and lines per second (``read_events``:
parsing, statements put back together, on UTC).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from detector.pipeline import read_events
from detector.rejects import Quarantine

SOURCE = Path(__file__).parents[1] / "tests" / "fixtures" / "mariadb-heldout" / "server_audit.log"
RECORD = re.compile(r"^(\d{8}) (\d\d:\d\d:\d\d),(.*)$")


def write_both(directory: Path, lines: int) -> tuple[Path, Path]:
    """The audit file and its syslog twin of ``lines`` records each."""
    records = [
        found
        for line in SOURCE.read_text(encoding="utf-8", errors="replace").splitlines()
        if (found := RECORD.match(line))
    ]
    audit, syslog = directory / "server_audit.log", directory / "audit.syslog"
    with audit.open("w") as to_file, syslog.open("w") as to_syslog:
        for n in range(lines):
            found = records[n % len(records)]
            to_file.write(found.group(0) + "\n")
            to_syslog.write(
                f"Dec  1 {found.group(2)} vm mysql-server_auditing:  {found.group(3)}\n"
            )
    return audit, syslog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trovewatch-bench-") as tmp:
        paths = write_both(Path(tmp), args.lines)
        for _ in range(args.repeat):
            for path in paths:
                quarantine = Quarantine(None)
                began = time.perf_counter()
                events, _ = read_events([path], quarantine=quarantine)
                took = time.perf_counter() - began
                print(
                    f"{path.name:18} {events.height:>9,} events {quarantine.total:>3} quarantined"
                    f" {took:6.2f} s {args.lines / took:>10,.0f} lines/s"
                )


if __name__ == "__main__":
    main()
