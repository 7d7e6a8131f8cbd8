"""``serve``'s parse of each read, alone: pgAudit jsonlog reads of 50,000 lines.

Eight reads of ``bench_live.py``'s lines (5,000 accounts in turn, each 20 ms block of
2,000 lines stamped alike, as its writer stamps them) are parsed as ``serve`` parses a
read (the format's ``parse``, then ``finish``), ``--passes`` times. Prints lines/s per
pass (the first warms up) and a digest of the events, which must not change when only
the speed does.

    uv run python bench/bench_parse_reads.py --passes 3
"""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import UTC, datetime, timedelta

from bench_live import LAP, STAMP, pool

from detector.formats import native
from detector.reader import Chunk

READ, BLOCK, READS = 50_000, 2_000, 8


def reads() -> list[bytes]:
    blob, ends = pool(5_000, READ * READS, seed=1)
    lines = blob.replace(LAP, b"0000")
    now = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    out, line, at = [], 0, 0
    for _ in range(READS):
        blocks = []
        for _ in range(READ // BLOCK):
            end = ends[line + BLOCK - 1]
            stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3].encode() + b" UTC"
            blocks.append(lines[at:end].replace(STAMP, stamp))
            line, at, now = line + BLOCK, end, now + timedelta(milliseconds=20)
        out.append(b"".join(blocks))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    data = reads()
    fmt = native("pgaudit-jsonlog")
    digest = hashlib.sha256()
    for n in range(args.passes):
        began = time.perf_counter()
        for i, read in enumerate(data):
            events = fmt.finish(fmt.parse(Chunk("read", read, 1 + i * READ)).events)
            if n == 0:
                digest.update(repr(events.to_dicts()).encode())
        took = time.perf_counter() - began
        print(f"pass {n + 1}: {READ * READS / took:,.0f} lines/s", flush=True)
    print(f"events digest {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
