"""The isolation forest, its calibration, and its artefacts on disk.

Scores are 0..1 and **higher means more anomalous**, always. scikit-learn's
``score_samples`` points the other way; :meth:`Detector.anomaly` is the one place that
converts it. Calibration uses only the training scores: a window as unusual as the
training period's 99.9th percentile scores 0.5 (the default threshold), the training
median about 0.02, and scores approach 1 as windows get further from anything seen.
No contamination rate is asked for.

Artefacts (``models/<name>/``): ``model.joblib`` (the fitted forest, its trees as
arrays: :mod:`detector.forest`), the profile's Parquet tables and ``manifest.json``,
which records versions, features, training period, calibration and the sha256 of every
artefact. :func:`load` checks all of it before it unpickles anything. scikit-learn fits
the forest; loading and scoring a model never imports it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from detector import forest
from detector.features import FEATURE_VERSION, Horizons, model_features
from detector.profile import TABLES as PROFILE_TABLES
from detector.profile import Profile
from detector.schema import SCHEMA_VERSION

MANIFEST: Final = "manifest.json"
MODEL_FILE: Final = "model.joblib"
CALIBRATION_QUANTILE: Final = 0.999


class ModelError(Exception):
    """A model directory that is missing, tampered with, or from another version."""


@dataclass(frozen=True)
class Calibration:
    median: float
    high: float  # the training scores' CALIBRATION_QUANTILE
    scale: float

    def apply(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated 0..1 scores: a logistic centred on the training's high quantile."""
        z = (raw - self.high) / self.scale
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))), dtype=np.float64)


class Detector:
    """Isolation forest over window feature vectors; ``fit`` then ``score``.

    Each tree sees up to ``max_samples`` windows: far more than the classic 256. The
    windows of one rare-but-normal job (a nightly dump) are a handful among thousands,
    and small samples leave whole behaviours out of most trees; seen on the sample logs,
    all windows separated an enumeration from ordinary work about twice as well as 256.
    """

    def __init__(
        self, n_estimators: int = 200, max_samples: int = 65_536, random_state: int = 0
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, features: npt.NDArray[np.float64]) -> Self:
        if len(features) < 10:
            raise ModelError(
                f"only {len(features)} account-windows to train on; give at least a few days of logs"
            )
        # Imported here: scikit-learn takes seconds to import; only training needs it.
        from sklearn.ensemble import IsolationForest

        self.trees_ = forest.Trees.of(
            IsolationForest(
                n_estimators=self.n_estimators,
                max_samples=min(self.max_samples, len(features)),
                random_state=self.random_state,
                n_jobs=1,
            ).fit(features)
        )
        self.reference_ = np.median(features, axis=0)  # an ordinary window, for attribution
        raw = self.anomaly(features)
        median, high = np.quantile(raw, [0.5, CALIBRATION_QUANTILE])
        scale = max((high - median) / 4.0, 1e-6)
        self.calibration_ = Calibration(float(median), float(high), float(scale))
        return self

    def anomaly(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Raw anomaly in (0, 1]: the negated ``score_samples`` (higher = more anomalous)."""
        self._check_fitted()
        return self.trees_.anomaly(features)

    def score(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated scores in [0, 1], higher meaning more anomalous."""
        self._check_fitted()
        if len(features) == 0:
            return np.zeros(0)
        return self.calibration_.apply(self.anomaly(features))

    def attribution(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each feature's share of each row's anomaly, by occlusion: how much the raw
        anomaly drops when that feature alone takes the training median's value. Every
        feature reads "higher is more unusual", and 0 is at most the account's own
        (a log2 ratio to its largest, a count of new things), so only features above the
        median and above 0 can be to blame: the others get no share, nor do negative
        drops; each row's shares sum to 1 (all 0 where no feature alone makes the row
        more ordinary). The forest is asked, not the feature values: a large ratio the
        trees do not isolate on gets no share. (Before the 0: "failed statements vs its
        own history 31%" for an account that never failed, whose 0 is above a median
        pulled down by the accounts that do.)"""
        self._check_fitted()
        n, k = features.shape
        drops = np.zeros((n, k))
        # Only features above the median (and 0) can take a share: only they are occluded
        # (a flagged window has about half its features there, so half the forest walks).
        rows, columns = np.nonzero(features > np.maximum(self.reference_, 0.0))
        if len(rows):
            copies = features[rows]
            copies[np.arange(len(rows)), columns] = self.reference_[columns]
            dropped = self.anomaly(features)[rows] - self.anomaly(copies)
            drops[rows, columns] = np.clip(dropped, 0.0, None)
        totals = drops.sum(axis=1, keepdims=True)
        shares = np.divide(drops, totals, out=np.zeros_like(drops), where=totals > 0)
        return np.asarray(shares, dtype=np.float64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "trees_"):
            raise ModelError("the detector is not fitted; train a model first")


@dataclass(frozen=True)
class Manifest:
    name: str
    schema_version: int
    feature_version: int
    features: list[str]
    horizons: dict[str, Any]
    libraries: dict[str, str]
    training: dict[str, Any]
    calibration: dict[str, float]
    artefacts: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    forest: str = ""  # how model.joblib holds the forest; older models do not say

    @property
    def horizon_spec(self) -> Horizons:
        """The window and horizons the model was trained with (``horizons``, as written)."""
        return Horizons(base=self.horizons["base"], longer=tuple(self.horizons["longer"]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def libraries() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        **{lib: version(lib) for lib in ("scikit-learn", "numpy", "polars", "joblib")},
    }


@dataclass
class TrainedModel:
    detector: Detector
    profile: Profile
    manifest: Manifest

    @property
    def horizons(self) -> Horizons:
        return self.manifest.horizon_spec


def save(model: TrainedModel, directory: Path) -> Manifest:
    """Write the model's artefacts and a manifest with their hashes to ``directory``."""
    import joblib  # imported only when a model is saved or loaded

    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.detector, directory / MODEL_FILE)
    paths = [directory / MODEL_FILE, *model.profile.save(directory).values()]
    manifest = Manifest(
        **{
            **asdict(model.manifest),
            "artefacts": {p.name: _sha256(p) for p in paths},
            "forest": forest.FORMAT,
        }
    )
    (directory / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    model.manifest = manifest
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        return Manifest(**json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ModelError(
            f"{directory}: no {MANIFEST}; is this a trovewatch model directory?"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid trovewatch manifest ({exc})") from exc


def check_versions(directory: Path, manifest: Manifest) -> None:
    """Raise :class:`ModelError` unless the model in ``directory`` was built with this
    trovewatch's event schema and features."""
    versions = (manifest.schema_version, manifest.feature_version)
    if any(type(v) is not int for v in versions):  # "1" is no version 1 (nor is true)
        raise ModelError(
            f"{directory}: manifest.json's schema_version and feature_version are not "
            f"integers ({versions[0]!r}, {versions[1]!r}); the manifest was edited. Restore "
            "it or retrain with `trovewatch train`."
        )
    if manifest.schema_version != SCHEMA_VERSION or manifest.feature_version != FEATURE_VERSION:
        raise ModelError(
            f"{directory}: model built for schema v{manifest.schema_version}/features "
            f"v{manifest.feature_version}; this trovewatch uses schema v{SCHEMA_VERSION}/"
            f"features v{FEATURE_VERSION}. Retrain it with `trovewatch train`."
        )
    if manifest.forest != forest.FORMAT:
        raise ModelError(
            f"{directory}: model saved by {'another' if manifest.forest else 'an older'} "
            f"trovewatch (its forest is {manifest.forest or 'a pickled scikit-learn object'}, "
            "this trovewatch reads "
            f"{forest.FORMAT}). Retrain it with `trovewatch train`."
        )


def load(directory: Path) -> TrainedModel:
    """Load a model, refusing it unless every artefact's sha256 and every version match.

    The joblib file is only unpickled after its hash matched the manifest.
    """
    manifest = read_manifest(directory)
    check_versions(directory, manifest)
    expected = {MODEL_FILE, *(f"profile_{n}.parquet" for n in PROFILE_TABLES)}
    if set(manifest.artefacts) != expected:
        raise ModelError(
            f"{directory}: manifest lists {sorted(manifest.artefacts)}, expected {sorted(expected)}"
        )
    for name, digest in manifest.artefacts.items():
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{directory}: artefact {name} is missing")
        if _sha256(path) != digest:
            raise ModelError(
                f"{path}: sha256 does not match the manifest; the file was changed or "
                "corrupted. Refusing to load it."
            )
    import joblib

    detector = joblib.load(directory / MODEL_FILE)
    if not isinstance(detector, Detector):
        raise ModelError(f"{directory / MODEL_FILE}: not a trovewatch detector")
    profile = Profile.load(directory)
    check_content(directory, manifest, detector, profile)
    return TrainedModel(detector, profile, manifest)


def check_content(
    directory: Path, manifest: Manifest, detector: Detector, profile: Profile
) -> None:
    """Raise :class:`ModelError` unless the manifest's features, calibration and horizons
    are the ones the forest and the profile were made with. The artefacts' hashes do not
    cover the manifest itself: an edited feature list (or window) would have the forest
    read other columns than it was fitted on, and score wrong without a word."""

    def edited(what: str) -> ModelError:
        return ModelError(
            f"{directory}: {MANIFEST}'s {what}; the manifest was edited. Refusing to load "
            "the model: restore the manifest or retrain with `trovewatch train`."
        )

    # Trained on logs with no volume at all: the model has no volume features.
    training = manifest.training if isinstance(manifest.training, dict) else {}
    volume = training.get("volume") != []
    try:
        horizons = manifest.horizon_spec
        expected = model_features(horizons, volume=volume)
        statement_columns = {f"statements_{h}" for h in horizons.all}
    except (KeyError, TypeError, ValueError) as exc:
        raise edited(f"horizons are not readable ({exc})") from exc
    if manifest.features != expected:
        raise edited(f"features are not the forest's ({', '.join(expected)})")
    calibration = getattr(detector, "calibration_", None)
    if calibration is None or manifest.calibration != vars(calibration):
        raise edited("calibration is not the forest's")
    columns = {c for c in profile.account_max.columns if c.startswith("statements_")}
    if columns != statement_columns:
        raise edited(f"horizons {horizons.all} are not the profile's")
