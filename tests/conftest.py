from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector import formats
from detector.pipeline import read_events
from detector.rejects import Quarantine

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_PG = FIXTURES / "reference" / "postgres15-pgaudit1.7.0"
PG_SCENARIOS = FIXTURES / "pgaudit"
OUTPUTS = {"stderr": "postgresql.log", "csvlog": "postgresql.csv", "jsonlog": "postgresql.json"}


def parse(
    path: Path, format_name: str = "auto", **kwargs: object
) -> tuple[pl.DataFrame, Quarantine]:
    """Events from one file, and the quarantine that counted its rejects (in memory)."""
    quarantine = Quarantine(None)
    events, _ = read_events([path], format_name=format_name, quarantine=quarantine, **kwargs)  # type: ignore[arg-type]
    return events, quarantine


@pytest.fixture(params=sorted(OUTPUTS))
def output(request: pytest.FixtureRequest) -> str:
    """Each of PostgreSQL's three log outputs in turn."""
    return str(request.param)


__all__ = ["FIXTURES", "OUTPUTS", "PG_SCENARIOS", "REFERENCE_PG", "formats", "parse"]
