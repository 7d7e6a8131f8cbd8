"""Simulated PostgreSQL 15 + pgAudit jsonlog of a whole organisation, with labelled incidents.

``trovewatch simulate --out DIR`` (or ``python -m detector.simulate --out DIR``); see
:mod:`detector.simulate.writer` for what is written.
"""

from __future__ import annotations

from detector.simulate.writer import add_arguments, run, simulate

__all__ = ["add_arguments", "run", "simulate"]
