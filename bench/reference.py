"""Plain-Python reference for the benchmark: the same counting as trovewatch's batch
path, written the obvious way with ``json``, ``csv`` and dicts, one line at a time.

Per (account, 5-minute window): rows read (each statement counted once however many
relations it logged), statements, distinct objects, export statements, failed
statements. Prints NDJSON, one object per account-window.

    python bench/reference.py FILE.json > out.ndjson
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from datetime import datetime


def main(path: str) -> None:
    windows: dict[tuple[str, str], dict[str, object]] = defaultdict(
        lambda: {"rows": 0, "statements": 0, "objects": set(), "exports": 0, "failed": 0}
    )
    seen: set[tuple[str, str, str]] = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = record.get("message", "")
            user = record.get("user")
            if not user:
                continue
            ts = datetime.strptime(record["timestamp"][:19], "%Y-%m-%d %H:%M:%S")
            window = ts.replace(minute=ts.minute - ts.minute % 5, second=0).isoformat()
            acc = windows[(user, window)]
            if record.get("error_severity") == "ERROR":
                acc["failed"] += 1  # type: ignore[operator]
                continue
            if not message.startswith("AUDIT: "):
                continue
            fields = next(csv.reader([message[7:]]))
            key = (record.get("session_id", ""), fields[1], fields[2])
            objects = acc["objects"]
            if fields[6]:
                objects.add(fields[6])  # type: ignore[attr-defined]
            if key in seen:
                continue
            seen.add(key)
            acc["statements"] += 1  # type: ignore[operator]
            statement = fields[7].lstrip().upper()
            if fields[4] in ("DECLARE CURSOR", "FETCH") or (
                statement.startswith("COPY") and " TO " in statement
            ):
                acc["exports"] += 1  # type: ignore[operator]
            elif fields[3] == "READ" and len(fields) > 9 and fields[9].isdigit():
                acc["rows"] += int(fields[9])  # type: ignore[call-overload]
    out = sys.stdout
    for (user, window), acc in windows.items():
        acc["objects"] = len(acc["objects"])  # type: ignore[arg-type]
        out.write(json.dumps({"account": user, "window_start": window, **acc}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
