#!/usr/bin/env bash
# Install trovewatch and score the bundled sample logs with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
mkdir -p out
uv run trovewatch score --quarantine out/quarantine.ndjson --out out/scores.ndjson sample_logs/postgresql.json.gz
echo "Flagged windows (out/scores.ndjson has every account-window):" >&2
uv run python -c 'import polars as pl; f = pl.read_ndjson("out/scores.ndjson").filter(pl.col("flagged")); [print(f"{r[\"window_start\"]} {r[\"account\"]:<18} {r[\"severity\"]:<8} score {r[\"score\"]:.2f}\n    " + "\n    ".join(r["reasons"])) for r in f.iter_rows(named=True)]'
