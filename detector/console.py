"""The ``trovewatch`` console script's entry point, light on purpose.

``serve`` starts its API process with multiprocessing's *spawn*, which runs the parent's
main script again in the child. Under the console script that script imports this
module, so it must not import the pipeline (and Polars, NumPy, scikit-learn) itself: the
command line is imported when ``main`` runs, in the parent only.
"""

from __future__ import annotations


def main() -> int:
    from detector.cli import main as run_command_line

    return run_command_line()
