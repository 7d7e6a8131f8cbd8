#!/usr/bin/env bash
# Install trovewatch, score the bundled sample logs with the bundled model and print the
# alerts; then serve the same logs as the sidecar does, on 127.0.0.1:8000, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
mkdir -p out
uv run trovewatch score --quarantine out/quarantine.ndjson --out out/scores.ndjson sample_logs/postgresql.json.gz
uv run trovewatch report out/scores.ndjson
echo "Every account-window, with its features: out/scores.ndjson" >&2
if [ "${TROVEWATCH_DEMO_NO_SERVE:-}" = "1" ]; then exit 0; fi
cat >&2 <<'TXT'

Now serving the same logs as a sidecar would (Ctrl-C to stop). In another terminal:
  TOKEN=$(cat out/state/api-token)
  curl -s -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8000/v1/alerts'
  curl -s -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8000/v1/accounts?sort=score&limit=5'
  curl -s http://127.0.0.1:8000/metrics | grep ^trovewatch_
TXT
exec uv run trovewatch serve --state-dir out/state
