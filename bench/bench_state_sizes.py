"""Bytes per account of the live engine's state, by Polars' estimate: open partial rows,
held events, closed windows' history, values discovered since training.

    uv run python bench/bench_state_sizes.py 20000        # accounts
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from datetime import UTC, datetime, timedelta

from bench_live import LAP, STAMP, pool

from detector import formats, model, settings
from detector.live.engine import Engine
from detector.reader import Chunk

t = model.load(Path(__file__).parent / "data" / "model500000")
N = int(sys.argv[1])
blob, ends = pool(N, 2 * N, seed=1)
now = datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC)
blob = blob.replace(LAP, b"0000").replace(STAMP, now.strftime("%Y-%m-%d %H:%M:%S.000 UTC").encode())
fmt = formats.native("pgaudit-jsonlog")
ev = fmt.parse(Chunk("x", blob, 1)).events
print("events", ev.height, "accounts", ev["actor.user.name"].n_unique())
e = Engine(t, settings.Settings())
for i in range(0, ev.height, 50000):
    e.add(ev[i : i + 50000])
op = e._open.merged()
held = e.held.estimated_size() / max(e.held.height, 1)
print(f"open partial rows {op.height}, {op.estimated_size() / op.height:.0f} B/row")
print(f"held events {e.held.height}, {held:.0f} B/event")
c = e.close(wall=now + timedelta(minutes=10))
h = e._history()
print(
    f"scored {c.scored.height}; history rows {h.height}, {h.estimated_size() / h.height:.0f} B/row"
)
print(f"discovered values {sum(d.height for d in e.discovered)}")
