"""How well a whole day's rows against the account's usual day tell slow drips from
ordinary days, on the populations ``scripts/evaluate_populations.sh OUT`` wrote.

For each population it scores the whole period with the population's model (training
weeks included: ``OUT/<population>/period.ndjson``, made once) and sums each account's
rows per calendar day (UTC). Test days are those from the first day of the
population's ``scores.ndjson`` (the ``--since`` it was scored from) on. An account's
usual day is a quantile of its training days with any rows. A rule flags a day whose
rows are at least ``factor`` times that usual day and 1,000 rows, or, for "2 days",
two calendar days in a row that both are. It
prints, per quantile, factor and rule, how many labelled slow drips' accounts it flags
on some test day, and on how many test days it flags accounts no incident is labelled
on (each such day is at least one false account-day).

    uv run python scripts/usual_day_rules.py OUT

docs/evaluation.md ("A day against the account's usual day") has its figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import polars as pl

FLOOR = 1_000  # rows: guardrail_min_rows, the floor of every volume rule
QUANTILES = (0.5, 0.75, 0.9)
FACTORS = (2.0, 2.5, 3.0)


def logs_of(population: Path) -> tuple[list[Path], Path]:
    """The population's log files and its labels, where evaluate_populations.sh put them."""
    if (population / "logs" / "labels.csv").exists():  # trovewatch simulate
        return sorted(
            (population / "logs").glob("postgresql-*.json")
        ), population / "logs/labels.csv"
    files = [
        *sorted((population / "logs").glob("*.json.gz")),
        *sorted((population / "logs").glob("*.log")),
        *sorted(population.glob("server_audit.log*")),
        *sorted(population.glob("slow.log*")),
    ]
    return files, population / "labels.csv"


def daily_rows(population: Path) -> pl.DataFrame:
    """(account, day, rows) over the whole period, scored with the population's model."""
    out = population / "period.ndjson"
    files, _ = logs_of(population)
    if not out.exists():
        command = [
            "trovewatch",
            "score",
            "--model-dir",
            str(population / "model"),
            "--out",
            str(out),
        ]
        subprocess.run([*command, *map(str, files)], check=True, stdout=subprocess.DEVNULL)
    return (
        pl.scan_ndjson(out, schema_overrides={"reasons": pl.List(pl.String)})
        .select(
            "account",
            pl.col("window_start").str.to_datetime(time_zone="UTC").dt.date().alias("day"),
            pl.col("features").struct.field("rows_read_5m").fill_null(0).alias("rows"),
        )
        .group_by("account", "day")
        .agg(pl.col("rows").sum())
        .collect()
    )


def test_days(population: Path, quantile: float) -> pl.DataFrame:
    """Each account's test days: rows, the day before's, and both against its usual day."""
    # the first day evaluate_populations.sh scored (its --since): the test days
    split = (
        pl.scan_ndjson(population / "scores.ndjson")
        .select(pl.col("window_start").str.to_datetime(time_zone="UTC").min().dt.date())
        .collect()
        .item()
    )
    days = daily_rows(population)
    usual = (
        days.filter(pl.col("day") < split, pl.col("rows") > 0)
        .group_by("account")
        .agg(pl.col("rows").quantile(quantile).alias("usual"))
    )
    _, labels_path = logs_of(population)
    labels = pl.read_csv(labels_path)
    before = pl.col("day").shift(1).over("account")
    return (
        days.filter(pl.col("day") >= split)
        .join(usual, on="account")
        .sort("account", "day")
        .with_columns(
            (pl.col("rows") / pl.col("usual")).alias("x"),
            pl.when((pl.col("day") - before).dt.total_days() == 1)
            .then(pl.col("rows").shift(1).over("account") / pl.col("usual"))
            .alias("x_before"),
            pl.col("account").is_in(labels["account"].implode()).alias("labelled"),
            pl.col("account")
            .is_in(labels.filter(pl.col("kind") == "slow_drip")["account"].implode())
            .alias("drip"),
            pl.lit(population.name).alias("population"),
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the OUT of scripts/evaluate_populations.sh")
    args = parser.parse_args()
    populations = sorted(p for p in args.out.iterdir() if (p / "model").is_dir())
    if not populations:
        print(f"no population with a model in {args.out}", file=sys.stderr)
        return 2
    print("quantile factor rule    drips flagged  false account-days")
    for quantile in QUANTILES:
        days = pl.concat([test_days(p, quantile) for p in populations])
        drips = days.filter("drip").select("population", "account").n_unique()
        for factor in FACTORS:
            one = (pl.col("x") >= factor) & (pl.col("rows") >= FLOOR)
            two = (
                one
                & (pl.col("x_before") >= factor)
                & (pl.col("x_before") * pl.col("usual") >= FLOOR)
            )
            for name, rule in (("1 day", one), ("2 days", two)):
                hit = days.filter(rule)
                caught = hit.filter("drip").select("population", "account").n_unique()
                false = hit.filter(~pl.col("labelled")).height
                print(f"{quantile:8} {factor:6} {name:7} {caught:5}/{drips:<8} {false:18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
