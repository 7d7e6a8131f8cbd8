"""Retraining: a new model from a recent period of logs that never learns an attack and
never learns a volume faster than the guardrail allows.

* **What it learns from**: the account-windows the store allows
  (:meth:`detector.live.store.SqliteStore.training_windows`: no window judged a true
  positive, no flagged window unless judged a false positive), less the unjudged windows
  that scored at or above the flag threshold without a reason to flag. Events of any other
  account-window are left out, windows the store never scored included.
* **How fast it may learn**: each account's learned largest rows and bytes, per horizon,
  may be at most ``guardrail_factor`` times the parent model's per ``retrain_period`` of
  training time between the two (a steady rate: 10x per 14 days is about 1.18x a day),
  and never less than ``guardrail_min_rows``. An account that ramps its volume up faster
  than that is held back, so its ramp keeps growing against what the model learned until
  the guardrail fires. Its peers' references are recomputed from the held values.
* **Lineage**: the manifest's ``training.lineage`` lists the parent and its ancestors
  (name, manifest sha256, training end), newest first; ``training.retraining`` says what
  was left out and which accounts were held back.
* **Publishing** is atomic: the model is written to a hidden directory, renamed into
  place, and only then named in the ``current`` pointer file (written and renamed too).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from detector import features as F
from detector import model, pipeline
from detector.settings import Settings

CURRENT: Final = "current"
LINEAGE_KEPT: Final = 30  # ancestors named in a manifest
MAX_EXPONENT: Final = 700.0  # e**700: "any growth", without overflowing a float
VOLUMES: Final = ("rows_read", "bytes_read")


def learnable(
    period: pipeline.Period, allowed: pl.DataFrame, threshold: float
) -> tuple[pipeline.Period, int]:
    """The account-windows of ``period`` retraining may learn from, and how many scored
    windows were left out as unjudged-high.

    ``allowed``: rows of :meth:`~detector.live.store.SqliteStore.training_windows`
    (account, window_start, flagged, score); flagged rows there were judged false
    positives, which are ordinary work.
    """
    keep = allowed.filter(pl.col("flagged") | (pl.col("score") < threshold))
    kept = keep.select(F.ACCOUNT, F.WINDOW).unique()
    return period.only(kept), allowed.height - keep.height


def growth_allowed(parent: model.Manifest, end: datetime, settings: Settings) -> float:
    """How many times its parent's largest an account may learn by ``end``: the
    guardrail factor per retraining period, at a steady rate (1 when no time passed)."""
    parent_end = parent.training.get("end")
    if parent_end is None:
        return 1.0
    elapsed = (end - datetime.fromisoformat(parent_end)).total_seconds()
    periods = max(elapsed / F.span(settings.retrain_period).total_seconds(), 0.0)
    return math.exp(min(periods * math.log(settings.guardrail_factor), MAX_EXPONENT))


def hold_back(
    trained: model.TrainedModel,
    parent: model.TrainedModel,
    factor: float,
    floor: int,
    vouched: pl.DataFrame | None = None,
) -> tuple[model.TrainedModel, list[str]]:
    """``trained`` with each account's learned largest rows and bytes held to ``factor``
    times its parent's, at least ``floor`` and at least what an analyst ``vouched`` for
    (account and the same columns: windows judged false positives); the accounts held
    back, sorted."""
    cols = [c for c in trained.profile.account_max.columns if c.startswith(VOLUMES)]
    before = parent.profile.account_max.select(
        F.ACCOUNT, *[pl.col(c).alias(f"{c}__parent") for c in cols]
    )
    joined = trained.profile.account_max.join(before, on=F.ACCOUNT, how="left")
    if vouched is not None and vouched.height:
        joined = joined.join(
            vouched.select(F.ACCOUNT, *[pl.col(c).alias(f"{c}__vouched") for c in cols]),
            on=F.ACCOUNT,
            how="left",
        )
    else:
        joined = joined.with_columns(pl.lit(None, pl.Int64).alias(f"{c}__vouched") for c in cols)
    bound = {
        c: pl.max_horizontal(
            pl.col(f"{c}__parent") * factor, pl.lit(floor), pl.col(f"{c}__vouched")
        ).cast(pl.Int64)
        for c in cols
    }
    held = joined.filter(pl.any_horizontal(pl.col(c) > bound[c] for c in cols))[F.ACCOUNT]
    account_max = joined.with_columns(
        pl.when(pl.col(f"{c}__parent").is_not_null())
        .then(pl.min_horizontal(pl.col(c), bound[c]))
        .otherwise(pl.col(c))
        .alias(c)
        for c in cols
    ).select(trained.profile.account_max.columns)
    profile = trained.profile.with_account_max(account_max)
    return replace(trained, profile=profile), sorted(held.to_list())


def vouched_for(allowed: pl.DataFrame, columns: list[str]) -> pl.DataFrame | None:
    """Per account, the largest volumes of its windows judged false positives (the
    flagged rows ``allowed`` holds), from their ``features``; None when it has none."""
    if "features" not in allowed.columns or not allowed.filter(pl.col("flagged")).height:
        return None
    judged = allowed.filter(pl.col("flagged")).select(F.ACCOUNT, pl.col("features").struct.unnest())
    return judged.group_by(F.ACCOUNT).agg(
        pl.col(c).cast(pl.Int64).max() if c in judged.columns else pl.lit(None, pl.Int64).alias(c)
        for c in columns
    )


def parents_windows(settings: Settings, parent: model.TrainedModel) -> Settings:
    """``settings`` with the window and horizons ``parent`` was trained with.

    A successor is scored by the same engine and state as its parent; the settings'
    window is for ``train`` (a model trained with ``--window 10m`` keeps 10 minutes).
    """
    return settings.model_copy(
        update={"window": parent.horizons.base, "horizons": list(parent.horizons.longer)}
    )


def retrain(
    period: pipeline.Period,
    allowed: pl.DataFrame,
    parent: model.TrainedModel,
    settings: Settings,
    name: str,
) -> model.TrainedModel:
    """Train a successor of ``parent`` on ``period`` (a sliding period of logs), learning
    only from the allowed windows and no faster than the guardrail allows, with the
    parent's window and horizons."""
    settings = parents_windows(settings, parent)
    chosen, unjudged_high = learnable(period, allowed, settings.threshold)
    if chosen.partials.is_empty():
        raise model.ModelError("retraining: no account-window of the period may be learned from")
    trained = pipeline.train_period(chosen, settings, name=name)
    end = datetime.fromisoformat(trained.manifest.training["end"])
    factor = growth_allowed(parent.manifest, end, settings)
    volumes = [c for c in trained.profile.account_max.columns if c.startswith(VOLUMES)]
    trained, held = hold_back(
        trained, parent, factor, settings.guardrail_min_rows, vouched_for(allowed, volumes)
    )
    trained = replace(trained, profile=trained.profile.carried_from(parent.profile))
    training: dict[str, Any] = {
        **trained.manifest.training,
        "lineage": [_ancestor(parent.manifest), *parent.manifest.training.get("lineage", [])][
            :LINEAGE_KEPT
        ],
        "retraining": {
            "windows_allowed": allowed.height,
            "left_out_unjudged_high": unjudged_high,
            "windows_left_out": period.partials.height - chosen.partials.height,
            "growth_allowed": round(factor, 3),
            "accounts_held_back": held,
        },
    }
    trained.manifest = replace(trained.manifest, training=training)
    return trained


def _ancestor(manifest: model.Manifest) -> dict[str, Any]:
    text = json.dumps(asdict(manifest), sort_keys=True).encode()
    return {
        "name": manifest.name,
        "manifest_sha256": hashlib.sha256(text).hexdigest(),
        "end": manifest.training.get("end"),
    }


def identity(manifest: model.Manifest) -> str:
    """The sha256 a successor's lineage names this model by."""
    return str(_ancestor(manifest)["manifest_sha256"])


def publish(trained: model.TrainedModel, models_dir: Path) -> Path:
    """Write ``trained`` to ``models_dir/<name>`` and make it the current one, atomically:
    a reader of ``current`` sees the old model or the whole new one, never part of it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / trained.manifest.name
    staging = models_dir / f".{trained.manifest.name}.partial"
    if final.exists():
        raise model.ModelError(f"{final}: a model of that name exists already")
    model.save(trained, staging)
    os.replace(staging, final)
    pointer = models_dir / f".{CURRENT}.partial"
    pointer.write_text(trained.manifest.name + "\n")
    os.replace(pointer, models_dir / CURRENT)
    return final


def current(models_dir: Path) -> Path | None:
    """The model directory ``models_dir/current`` names, if any."""
    try:
        name = (models_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return models_dir / name if name else None


def descends_from(trained: model.TrainedModel, ancestor: model.Manifest) -> bool:
    """Whether ``ancestor`` is in ``trained``'s lineage (or is ``trained`` itself)."""
    wanted = identity(ancestor)
    lineage = trained.manifest.training.get("lineage", [])
    return identity(trained.manifest) == wanted or any(
        a.get("manifest_sha256") == wanted for a in lineage
    )
