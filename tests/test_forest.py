"""The forest scored from its arrays gives exactly scikit-learn's scores, and scoring
with a saved model never imports scikit-learn (seconds and about 90 MB)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detector.forest import Trees

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("seed", "rows", "features", "max_samples"),
    [(0, 3000, 4, 256), (1, 5000, 12, 4096), (2, 800, 3, 800), (3, 40, 2, 40)],
)
def test_the_arrays_score_every_row_exactly_as_scikit_learn(
    seed: int, rows: int, features: int, max_samples: int
) -> None:
    rng = np.random.default_rng(seed)
    training = np.abs(rng.standard_normal((rows, features))) ** 3
    forest = IsolationForest(n_estimators=60, max_samples=max_samples, random_state=seed)
    forest.fit(training)
    trees = Trees.of(forest)
    unseen = np.abs(rng.standard_normal((3000, features))) * rng.choice([0.01, 1, 50], (3000, 1))
    # rows on the splits themselves, just below and just above: float32 rounding decides
    splits = forest.estimators_[0].tree_.threshold
    on = np.resize(splits[splits != -2], (3 * features, features))
    edges = np.vstack([on, np.nextafter(on, -np.inf), np.nextafter(on, np.inf)])
    for batch in (training, unseen, edges, np.zeros((1, features))):
        assert np.array_equal(trees.anomaly(batch), -forest.score_samples(batch))
    assert trees.anomaly(np.zeros((0, features))).shape == (0,)


def test_a_forest_of_one_row_scores_everything_1_as_scikit_learn_does() -> None:
    forest = IsolationForest(n_estimators=5, random_state=0).fit(np.ones((1, 3)))
    rows = np.array([[1.0, 1.0, 1.0], [9.0, 0.0, 4.0]])
    assert np.array_equal(Trees.of(forest).anomaly(rows), -forest.score_samples(rows))


def test_scoring_with_the_bundled_model_imports_no_scikit_learn(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from detector.cli import main\n"
        "code = main(['score', '--out', sys.argv[1], 'sample_logs/postgresql.json.gz'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))\n"
        "print(code, loaded)\n"
    )
    out = tmp_path / "scores.ndjson"
    run = subprocess.run(
        [sys.executable, "-c", probe, str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.stdout.strip().splitlines()[-1] == "0 []", run.stderr[-2000:]
    assert out.stat().st_size > 0
