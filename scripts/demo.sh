#!/usr/bin/env bash
# Install trovewatch and score the bundled sample logs with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
mkdir -p out
uv run trovewatch score --quarantine out/quarantine.ndjson --out out/scores.ndjson sample_logs/postgresql.json.gz
uv run trovewatch report out/scores.ndjson
echo "Every account-window, with its features: out/scores.ndjson" >&2
