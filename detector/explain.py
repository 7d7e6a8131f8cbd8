"""From scores to verdicts: the volume guardrail, flags, severities and reasons.

Thresholding wraps the detector rather than living inside it. A window is flagged when

* the **guardrail** fires: its volume in some horizon is ``guardrail_factor`` times
  beyond the largest the account *and* its peers ever did in training (and above
  ``guardrail_min_rows``), or it exports data although neither the account nor its
  peers ever export. This holds whatever the model says, so a poisoned history cannot
  teach the model a 23-TB pull; or
* its score reaches the threshold **and** at least one signal is far from the account's
  normal: a window nobody can explain in database terms is not an alert.

Reasons are written only for flagged windows (few), in plain Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.features import ACCOUNT, Horizons, col_name
from detector.profile import Profile, usual_hours
from detector.settings import Settings

EXPORT_WORDS = "COPY ... TO, cursor FETCH or dump"


@dataclass(frozen=True)
class Judge:
    profile: Profile
    horizons: Horizons
    settings: Settings

    def __call__(self, feats: pl.DataFrame, scores: npt.NDArray[np.float64]) -> pl.DataFrame:
        """``feats`` with ``score``, ``guardrail``, ``flagged``, ``severity`` and ``reasons``."""
        s = self.settings
        frame = feats.with_columns(pl.Series("score", scores, dtype=pl.Float64))
        frame = self._with_references(frame)
        far = math.log2(s.reason_factor)
        volume_cols = [col_name(v, h) for v in ("rows_read", "bytes_read") for h in self.horizons.all]
        guard_volume = pl.any_horizontal(
            (pl.col(c).fill_null(0) >= s.guardrail_min_rows)
            & (pl.col(c).fill_null(0) > s.guardrail_factor * pl.col(f"{c}__ceiling").fill_null(0))
            for c in volume_cols
        )
        never_exports = pl.col("exports__own_max").fill_null(0) == 0
        peers_never_export = pl.col("exports__peer_max").fill_null(0) == 0
        guard_export = (pl.col("exports") > 0) & never_exports & (
            pl.col("has_history") | peers_never_export
        )
        signals = {
            "volume": pl.any_horizontal(
                pl.col(f"{col_name(v, h)}_vs_own") >= far
                for v in ("rows_read", "bytes_read", "statements")
                for h in self.horizons.all
            ),
            "export": (pl.col("exports") > 0)
            & (never_exports | (pl.col(f"{col_name('exports', self.horizons.longer[-1])}_vs_own") >= far)),
            "new_objects": pl.col("has_history") & (pl.col("new_objects") > 0),
            "new_source": pl.col("has_history") & ((pl.col("new_clients") + pl.col("new_apps")) > 0),
            "off_hours": pl.col("hour_rarity") >= 2.0,
            "failures": (pl.col("failed") >= 3) & (pl.col(f"{col_name('failed', self.horizons.base)}_vs_own") >= far),
        }
        frame = frame.with_columns(
            (guard_volume | guard_export).alias("guardrail"),
            pl.any_horizontal(signals.values()).alias("_has_reason"),
        )
        frame = frame.with_columns(
            (pl.col("guardrail") | ((pl.col("score") >= s.threshold) & pl.col("_has_reason"))).alias("flagged")
        )
        bands = sorted(s.severity_bands.items(), key=lambda kv: kv[1], reverse=True)
        severity = pl.when(pl.col("guardrail")).then(pl.lit("critical"))
        for name, low in bands:
            severity = severity.when(pl.col("score") >= low).then(pl.lit(name))
        frame = frame.with_columns(
            pl.when(pl.col("flagged")).then(severity.otherwise(pl.lit("low"))).otherwise(pl.lit("none")).alias("severity")
        )
        reasons = [
            self.reasons(row) if row["flagged"] else []
            for row in frame.select(self._reason_columns()).iter_rows(named=True)
        ] if frame.height else []
        return frame.with_columns(pl.Series("reasons", reasons, dtype=pl.List(pl.String))).drop("_has_reason")

    def _with_references(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Join each window's own and peer ceilings (largest values seen in training)."""
        cols = [col_name(v, h) for v in ("rows_read", "bytes_read", "exports", "statements") for h in self.horizons.all]
        own = self.profile.account_max.select(ACCOUNT, *[pl.col(c).alias(f"{c}__own") for c in cols])
        peer = self.profile.peer_max.select(
            "peer_group", *[pl.col(c).alias(f"{c}__peermax") for c in cols]
        )
        frame = frame.join(own, on=ACCOUNT, how="left").join(peer, on="peer_group", how="left")
        export_cols = [col_name("exports", h) for h in self.horizons.all]
        return frame.with_columns(
            *[
                pl.max_horizontal(pl.col(f"{c}__own").fill_null(0), pl.col(f"{c}__peermax").fill_null(0)).alias(f"{c}__ceiling")
                for c in cols
            ],
            pl.max_horizontal(pl.col(f"{c}__own") for c in export_cols).alias("exports__own_max"),
            pl.max_horizontal(pl.col(f"{c}__peermax") for c in export_cols).alias("exports__peer_max"),
        )

    def _reason_columns(self) -> list[str]:
        cols = [ACCOUNT, "window_start", "flagged", "guardrail", "score", "has_history", "hour", "hour_rarity",
                "objects_list", "export_objects_list", "new_objects_list", "new_clients_list", "new_apps_list",
                "exports", "failed", "exports__own_max"]
        for v in ("rows_read", "bytes_read", "statements", "failed"):
            for h in self.horizons.all:
                c = col_name(v, h)
                cols += [c, f"{c}_vs_own", f"{c}_vs_peers"]
                if v != "failed":
                    cols += [f"{c}__own", f"{c}__peermax"]
        return cols

    def reasons(self, row: dict[str, Any]) -> list[str]:
        """Plain-language reasons for one flagged window, with numbers."""
        out: list[str] = []
        h_all = self.horizons.all
        objects = _names(row["objects_list"])
        for unit, signal in (("rows", "rows_read"), ("bytes", "bytes_read")):
            # Name the horizon where the volume is furthest beyond the account's own largest.
            best = max(
                ((h, row[f"{col_name(signal, h)}_vs_own"]) for h in h_all if row[col_name(signal, h)]),
                key=lambda kv: kv[1],
                default=None,
            )
            if best is None or best[1] < math.log2(self.settings.reason_factor):
                continue
            h = best[0]
            value = row[col_name(signal, h)]
            own = row[f"{col_name(signal, h)}__own"]
            peer = row[f"{col_name(signal, h)}__peermax"]
            history = (
                f"{_times(value, own)} this account's largest {_span(h)} in training ({_num(own)})"
                if row["has_history"]
                else "a new account with no history"
            )
            out.append(
                f"read {_num(value)} {unit} in {_span(h)} from {objects}; {history}; "
                f"{_times(value, peer)} the largest of any peer ({_num(peer)})"
            )
        if row["exports"]:
            exported = _names(row["export_objects_list"])
            habit = (
                "this account never exported data in training"
                if not row["exports__own_max"]
                else f"{_times(row['exports'], row['exports__own_max'])} its usual"
            )
            out.append(f"{row['exports']} export statement(s) ({EXPORT_WORDS}) of {exported}, row count not logged; {habit}")
        if row["has_history"] and row["new_objects_list"]:
            out.append(
                f"{len(row['new_objects_list'])} object(s) never read before by this account: {_names(row['new_objects_list'])}"
            )
        if row["has_history"] and row["new_clients_list"]:
            out.append(f"new client address for this account: {', '.join(row['new_clients_list'])}")
        if row["has_history"] and row["new_apps_list"]:
            out.append(f"new application for this account: {', '.join(row['new_apps_list'])}")
        if row["hour_rarity"] >= 2.0:
            span = usual_hours(self.profile, row[ACCOUNT]) if row["has_history"] else None
            when = row["window_start"].strftime("%H:%M")
            usual = f"its usual {span[0]:02d}:00-{(span[1] + 1) % 24:02d}:00 UTC" if span else "its peers' usual hours"
            out.append(f"{when} UTC is outside {usual}")
        base = self.horizons.base
        if row["failed"] and row[f"{col_name('failed', base)}_vs_own"] >= math.log2(self.settings.reason_factor):
            out.append(f"{row['failed']} failed statements in {_span(base)}")
        stmts = col_name("statements", base)
        if row[f"{stmts}_vs_own"] >= math.log2(self.settings.reason_factor) and row[f"{stmts}__own"]:
            out.append(f"{_num(row[stmts])} statements in {_span(base)}; {_times(row[stmts], row[f'{stmts}__own'])} its largest in training")
        if row["guardrail"]:
            out.append(
                f"guardrail: beyond {self.settings.guardrail_factor:g}x anything this account and its peers did in training"
                if not row["exports"] or row["exports__own_max"]
                else "guardrail: data exported by an account that never exports"
            )
        out.append(f"anomaly score {row['score']:.2f} (flag threshold {self.settings.threshold:g})")
        return out


def _num(value: float | int | None) -> str:
    return f"{int(value or 0):,}"


def _times(value: float, reference: float | None) -> str:
    ratio = (value + 1) / ((reference or 0) + 1)
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _span(horizon: str) -> str:
    units = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
    n, unit = int(horizon[:-1]), units[horizon[-1]]
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _names(items: list[str] | None, limit: int = 5) -> str:
    items = items or []
    if not items:
        return "objects not named in the log"
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
