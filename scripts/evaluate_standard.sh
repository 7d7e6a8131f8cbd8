#!/usr/bin/env bash
# The standard evaluation (docs/evaluation.md): a simulated organisation of 200 accounts
# over 28 days (seed 1), trained on its first 14 days, evaluated on the last 14 beside the
# baselines. Writes out/eval/ (1.3 GB of logs) and prints the report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
out=out/eval
rm -rf "$out" && mkdir -p "$out"
uv run trovewatch simulate --out "$out/logs" --accounts 200 --days 28 --seed 1 --start 2026-10-05
uv run trovewatch train --model-dir "$out/model" --until 2026-10-19 \
  --quarantine "$out/quarantine.ndjson" "$out"/logs/postgresql-*.json
uv run --extra eval trovewatch evaluate --labels "$out/logs/labels.csv" --model-dir "$out/model" \
  --train-until 2026-10-19 --html "$out/report.html" "$out"/logs/postgresql-*.json
