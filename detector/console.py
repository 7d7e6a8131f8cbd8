"""The ``trovewatch`` console script's entry point, light on purpose.

``serve`` starts its API process with multiprocessing's *spawn*, which runs the parent's
main script again in the child. Under the console script that script imports this
module, so it must not import the pipeline (and Polars, NumPy, scikit-learn) itself: the
command line is imported when ``main`` runs, in the parent only.
"""

from __future__ import annotations

import sys

from detector.live import stopping


def main() -> int:
    # Before the imports below (a second or more): a SIGTERM during them stops serve
    # cleanly, as it does once serve runs. Other commands keep the default action.
    if stopping.is_serve(sys.argv[1:]):
        stopping.catch()
        stopping.keep_on_hangup()
    from detector.cli import main as run_command_line

    return run_command_line()
