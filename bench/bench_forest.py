"""What loading a model and scoring with it cost, each in a fresh process.

    uv run python bench/bench_forest.py [--model DIR] [--rows 100000]

1. Loading ``--model`` (default: bench_score's model of 2,000,000 lines, made if
   missing): wall and CPU seconds of ``model.load`` after NumPy and Polars are imported,
   and the process's peak RSS then.
2. Importing scikit-learn, what unpickling a forest needed before the trees were kept as
   arrays (2026-11-30): seconds and the RSS it adds.
3. Scoring ``--rows`` random rows with a 200-tree forest fitted on random data: CPU
   seconds of scikit-learn's ``score_samples`` and of :class:`detector.forest.Trees`,
   whose scores must be equal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LOAD = """
import os, resource, sys, time
from pathlib import Path
import numpy, polars
from detector import model
cpu, wall = sum(os.times()[:2]), time.perf_counter()
model.load(Path(sys.argv[1]))
print(f"load {sys.argv[1]}: {time.perf_counter() - wall:.2f} s, "
      f"{sum(os.times()[:2]) - cpu:.2f} CPU s; peak RSS "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
"""

IMPORT = """
import resource, time
import numpy, polars
before, wall = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
import sklearn.ensemble
print(f"import scikit-learn: {time.perf_counter() - wall:.2f} s, "
      f"+{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024} MB")
"""

SCORE = """
import sys, time
import numpy as np
from sklearn.ensemble import IsolationForest
from detector.forest import Trees
rows = int(sys.argv[1])
rng = np.random.default_rng(0)
forest = IsolationForest(n_estimators=200, max_samples=4096, random_state=0)
forest.fit(np.abs(rng.standard_normal((60_000, 12))) ** 3)
trees = Trees.of(forest)
x = np.abs(rng.standard_normal((rows, 12))) * rng.choice([0.1, 1, 5], size=(rows, 12))
for _ in range(2):
    cpu = time.process_time(); ours = -forest.score_samples(x); sk = time.process_time() - cpu
    cpu = time.process_time(); arrays = trees.anomaly(x); ar = time.process_time() - cpu
    assert np.array_equal(ours, arrays)
    print(f"score {rows:,} rows x 200 trees: scikit-learn {sk:.2f} CPU s, arrays {ar:.2f} CPU s")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: bench_score's 2,000,000-line model")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    if args.model is None:
        made = "import bench_score; print(bench_score.ensure_model(2_000_000))"
        run = subprocess.run(
            [sys.executable, "-c", made], cwd=HERE, check=True, stdout=subprocess.PIPE
        )
        args.model = Path(run.stdout.decode().split()[-1])
    print(f"load average {os.getloadavg()}", flush=True)
    for script, argv in ((LOAD, [str(args.model)]), (IMPORT, []), (SCORE, [str(args.rows)])):
        subprocess.run([sys.executable, "-c", script, *argv], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
