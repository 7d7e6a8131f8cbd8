#!/usr/bin/env bash
# Does an exfiltration inside the training period teach the model it is normal? The
# standard population with incidents from its second day on (10 of each kind), trained
# on its first 14 days twice: on the logs as they are (42 incidents inside), and on the
# same logs with every statement of those incidents' accounts during them taken out.
# Both models score the last 14 days; each is evaluated against the incidents that start
# there. Prints the two rows. About 10 minutes on 2 cores.
#
#   scripts/evaluate_training_incidents.sh [OUT]      # OUT: out/training-incidents
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
out=${1:-out/training-incidents}
split=2026-10-19
rm -rf "$out"
mkdir -p "$out/clean"
uv run trovewatch simulate --out "$out/logs" --accounts 200 --days 28 --seed 1 \
  --start 2026-10-05 --warmup-days 1 --incidents 10 --no-progress >/dev/null

# The labels of the scored days; the training days' logs without their incidents.
uv run python - "$out" "$split" <<'PY'
import csv
import json
import sys
from datetime import datetime
from pathlib import Path

out, split = Path(sys.argv[1]), sys.argv[2]
labels = list(csv.DictReader((out / "logs" / "labels.csv").open()))
later = [r for r in labels if r["start"] >= split]
inside = [r for r in labels if r["start"] < split]
with (out / "scored_labels.csv").open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(labels[0]))
    writer.writeheader()
    writer.writerows(later)


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00")).timestamp()


spans = [(r["account"], at(r["start"]) - 1, at(r["end"]) + 1) for r in inside]
dropped = 0
for log in sorted((out / "logs").glob("postgresql-*.json")):
    with log.open() as src, (out / "clean" / log.name).open("w") as dst:
        for line in src:
            record = json.loads(line)
            user, when = record.get("user"), at(record["timestamp"])
            if any(user == a and lo <= when <= hi for a, lo, hi in spans):
                dropped += 1
                continue
            dst.write(line)
overlap = {r["account"] for r in inside} & {r["account"] for r in later}
print(
    f"{len(labels)} incidents: {len(inside)} in the training days, {len(later)} scored; "
    f"{len(overlap)} scored incident account(s) with one in training too; "
    f"{dropped:,} lines of the training incidents left out of the clean logs"
)
PY

for run in as-logged clean; do
  logs=$out/logs
  [[ $run == clean ]] && logs=$out/clean
  uv run trovewatch train --model-dir "$out/model-$run" --until "$split" "$logs"/postgresql-*.json \
    >"$out/train-$run.txt" 2>&1
  uv run trovewatch score --model-dir "$out/model-$run" --since "$split" \
    --out "$out/scores-$run.ndjson" "$out"/logs/postgresql-*.json >"$out/score-$run.txt" 2>&1
  uv run trovewatch evaluate --scores "$out/scores-$run.ndjson" --labels "$out/scored_labels.csv" \
    >"$out/evaluation-$run.txt"
  echo "== trained on the logs $run"
  grep -A1 '^method' "$out/evaluation-$run.txt" | head -2
  grep ' missed$' "$out/evaluation-$run.txt" || true
done
