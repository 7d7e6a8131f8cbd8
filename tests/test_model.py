"""The detector's contract: scores in 0..1, higher is more anomalous, calibrated on the
training data; artefacts that load only when every hash and version matches."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest

from detector import model

DEFAULT = Path(__file__).parents[1] / "models" / "default"


def fitted() -> tuple[model.Detector, np.ndarray]:
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, size=(3000, 4))
    return model.Detector(n_estimators=50, random_state=0).fit(normal), normal


def test_scores_are_between_0_and_1_and_higher_means_more_anomalous() -> None:
    detector, normal = fitted()
    outlier = np.array([[8.0, -8.0, 8.0, 8.0]])
    scores = detector.score(np.vstack([normal[:100], outlier]))
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[-1] > 0.8
    assert scores[-1] > scores[:-1].max()


def test_calibration_puts_the_training_high_quantile_at_one_half() -> None:
    detector, normal = fitted()
    scores = detector.score(normal)
    assert abs(float(np.quantile(scores, model.CALIBRATION_QUANTILE)) - 0.5) < 0.01
    assert float(np.median(scores)) < 0.05


def test_scoring_before_fitting_fails_clearly() -> None:
    with pytest.raises(model.ModelError, match="not fitted"):
        model.Detector().score(np.zeros((1, 4)))


def test_bundled_model_loads_and_names_its_training() -> None:
    trained = model.load(DEFAULT)
    assert trained.manifest.training["accounts"] >= 12
    assert trained.manifest.training["start"] < trained.manifest.training["end"]
    assert "model.joblib" in trained.manifest.artefacts


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "m"
    shutil.copytree(DEFAULT, target)
    return target


def test_a_changed_artefact_is_refused_before_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = copy_default(tmp_path)
    data = bytearray((target / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / "model.joblib").write_bytes(bytes(data))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("joblib.load called on an unverified file")

    monkeypatch.setattr(joblib, "load", never)
    with pytest.raises(model.ModelError, match="sha256"):
        model.load(target)


def test_a_changed_profile_table_is_refused(tmp_path: Path) -> None:
    target = copy_default(tmp_path)
    with (target / "profile_peers.parquet").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(model.ModelError, match=r"profile_peers\.parquet"):
        model.load(target)


def test_a_model_of_another_feature_version_is_refused(tmp_path: Path) -> None:
    target = copy_default(tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["feature_version"] += 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(model.ModelError, match="Retrain"):
        model.load(target)


def test_a_model_saved_with_a_pickled_scikit_learn_forest_is_refused_unread(
    tmp_path: Path,
) -> None:
    """Models from before the forest was kept as arrays name no forest format. They are
    refused before their joblib file is opened: here it is not a pickle at all."""
    target = copy_default(tmp_path)
    (target / model.MODEL_FILE).write_bytes(b"not a pickle")
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["forest"]
    manifest["artefacts"][model.MODEL_FILE] = hashlib.sha256(b"not a pickle").hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(model.ModelError, match=r"older trovewatch.*pickled scikit-learn.*Retrain"):
        model.load(target)


def test_attribution_blames_only_features_above_an_ordinary_window() -> None:
    rng = np.random.default_rng(0)
    ordinary = rng.normal(0.0, 1.0, size=(2000, 3))
    detector = model.Detector(n_estimators=100).fit(ordinary)
    odd = np.array([[8.0, 0.0, 0.0], [0.0, -8.0, 6.0]])
    shares = detector.attribution(odd)
    assert shares[0, 0] > 0.9  # far out on the first feature only
    assert shares[1, 1] == 0 and shares[1, 2] > 0.9  # low is not "unusual" here
    assert np.allclose(shares.sum(axis=1), 1.0)


def test_a_feature_at_its_accounts_own_gets_no_share_however_low_the_median() -> None:
    """A log ratio of 0 is a window at its account's own largest (an account that never
    failed, failing nothing): no share, though most training windows sit below 0 (the
    accounts that do fail, failing nothing in most windows)."""
    rng = np.random.default_rng(2)
    ordinary = np.column_stack([rng.normal(0, 1, 3000), rng.normal(-2, 0.3, 3000)])
    detector = model.Detector(n_estimators=100).fit(ordinary)
    assert detector.reference_[1] < -1.5
    shares = detector.attribution(np.array([[6.0, 0.0], [6.0, 0.5]]))
    assert shares[0, 1] == 0 and shares[0, 0] == 1
    assert shares[1, 1] > 0  # above its account's own: a share if the forest says so


def test_attribution_is_each_features_occlusion_drop_as_a_share() -> None:
    """The definition, computed plainly: every feature of every row set to the median
    in turn and the whole forest asked again; the drops of the features above the
    median and 0, clipped at 0, as shares of their sum."""
    rng = np.random.default_rng(1)
    detector = model.Detector(n_estimators=60, random_state=1).fit(rng.normal(size=(1500, 5)))
    rows = np.vstack([rng.normal(0, 3, size=(300, 5)), np.zeros((1, 5)), -np.ones((1, 5))])
    drops = np.zeros(rows.shape)
    for j in range(rows.shape[1]):
        occluded = rows.copy()
        occluded[:, j] = detector.reference_[j]
        drops[:, j] = detector.anomaly(rows) - detector.anomaly(occluded)
    drops = np.clip(drops, 0, None) * (rows > np.maximum(detector.reference_, 0))
    totals = drops.sum(axis=1, keepdims=True)
    expected = np.divide(drops, totals, out=np.zeros_like(drops), where=totals > 0)
    assert np.array_equal(detector.attribution(rows), expected)
    assert detector.attribution(np.empty((0, 5))).shape == (0, 5)
