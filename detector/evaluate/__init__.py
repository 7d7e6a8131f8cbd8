"""``trovewatch evaluate``: detection quality of trovewatch beside baselines, same windows.

Modules: :mod:`.inputs` (labels and score files), :mod:`.metrics` (pure functions over
Polars frames), :mod:`.baselines` (what a user might pick instead), :mod:`.evaluation`
(runs and measures every method), :mod:`.report` and :mod:`.plots` (terminal and HTML),
:mod:`.command` (arguments and exit codes).
"""

from __future__ import annotations

from detector.evaluate.command import add_arguments, run

__all__ = ["add_arguments", "run"]
