#!/usr/bin/env bash
# Every population docs/evaluation.md reports, each trained and scored with default
# settings and evaluated against its labels: trovewatch's own simulator (the standard
# population) and the four independently written generators (police records on
# jsonlog, e-commerce on stderr, HR and payroll on MariaDB, a hospital on csvlog), ten
# in all. Prints each
# population's trovewatch row (incidents caught per kind, recall, median time to detect,
# false alerts per 1,000 account-days, PR-AUC, flagged windows); each evaluate report is
# kept in OUT/<population>/evaluation.txt. About 20 minutes and 6 GB on 2 cores.
#
#   scripts/evaluate_populations.sh [OUT]              # OUT: out/populations
#   scripts/evaluate_populations.sh --rescore [OUT]    # the logs and models already in OUT
#
# --rescore scores and evaluates again with the models an earlier run left in OUT,
# generating and training nothing (about 8 minutes): for a change to how windows are
# judged (explain.py, settings), not to the features or the profile a model is built
# from (those need the models trained again, without --rescore).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
rescore=
if [[ ${1:-} == --rescore ]]; then
  rescore=1
  shift
fi
out=${1:-out/populations}
mkdir -p "$out"

# generate DIR COMMAND...: write a population's logs into DIR (unless rescoring)
generate() {
  local dir=$1
  shift
  [[ -n $rescore ]] && return
  rm -rf "$dir"
  "$@" >/dev/null
}

# evaluate NAME TRAIN_UNTIL LABELS LOG...: train before TRAIN_UNTIL, score from it on.
evaluate() {
  local name=$1 until=$2 labels=$3 dir=$out/$1
  shift 3
  if [[ -z $rescore ]]; then
    uv run trovewatch train --model-dir "$dir/model" --until "$until" "$@" >"$dir/train.txt" 2>&1
  fi
  uv run trovewatch score --model-dir "$dir/model" --since "$until" \
    --out "$dir/scores.ndjson" "$@" >"$dir/score.txt" 2>&1
  uv run trovewatch evaluate --scores "$dir/scores.ndjson" --labels "$labels" >"$dir/evaluation.txt"
  echo "== $name"
  grep -A1 '^method' "$dir/evaluation.txt" | head -2
}

generate "$out/standard" uv run trovewatch simulate --out "$out/standard/logs" --accounts 200 \
  --days 28 --seed 1 --start 2026-10-05
evaluate standard 2026-10-19 "$out/standard/logs/labels.csv" "$out"/standard/logs/postgresql-*.json

for seed in 8812 2 3; do
  dir=$out/police-$seed
  generate "$dir" env OUTDIR="$dir" SEED="$seed" uv run python scripts/independent_population.py
  evaluate "police-$seed" 2026-10-26 "$dir/labels.csv" "$dir"/logs/*.json.gz
done

for seed in 1 2 3; do
  dir=$out/ecommerce-$seed
  generate "$dir" uv run python scripts/independent_ecommerce_population.py --out "$dir" --seed "$seed"
  evaluate "ecommerce-$seed" 2026-11-22T05:00:00Z "$dir/labels.csv" "$dir"/logs/*.log
done

for run in "1 Europe/Berlin" "2 UTC"; do
  read -r seed tz <<<"$run"
  name=hr-$seed-${tz//\//-} dir=$out/hr-$seed-${tz//\//-}
  generate "$dir" uv run python scripts/independent_mariadb_population.py --out "$dir" --seed "$seed" \
    --tz "$tz"
  evaluate "$name" 2026-10-26T00:00:00Z "$dir/labels.csv" "$dir"/server_audit.log* "$dir"/slow.log*
done

# A US hospital on csvlog in Chicago time across the end of summer time, its files
# copied without their times (as held-out logs handed over are): nothing but the logs'
# own CDT lines says which zone their CST is.
dir=$out/hospital
generate "$dir" uv run python scripts/independent_hospital_population.py --out "$dir" --seed 1
[[ -n $rescore ]] || touch "$dir"/logs/*
evaluate hospital 2026-11-01T05:00:00Z "$dir/labels.csv" "$dir"/logs/postgresql-*
