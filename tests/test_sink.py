"""The ``score`` output written a time slice at a time is the file written whole."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from detector import pipeline, settings, sink
from detector.rejects import Quarantine

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, bytes]:
    scored, _ = pipeline.score_logs(
        [SAMPLE / "postgresql.json.gz"], DEFAULT_MODEL, settings.load(), Quarantine(None)
    )
    out = tmp_path_factory.mktemp("whole") / "scores.ndjson"
    pipeline.write_ndjson(scored, out)
    return scored, out.read_bytes()


def test_scores_of_many_account_batches_are_written_in_the_order_of_one(
    whole: tuple[pl.DataFrame, bytes], tmp_path: Path
) -> None:
    scored, expected = whole
    assert scored.height > 10 * 500  # batches of 500 windows: more than ten, and slices
    out = tmp_path / "scores.ndjson"
    summary = pipeline.score_logs_to(
        out,
        [SAMPLE / "postgresql.json.gz"],
        DEFAULT_MODEL,
        settings.load(),
        Quarantine(None),
        batch_windows=500,
    )
    assert out.read_bytes() == expected  # by window start, then account, as one batch
    assert (summary.windows, summary.flagged) == (scored.height, scored["flagged"].sum())
    assert list(tmp_path.iterdir()) == [out]  # the spilled slices are gone


def test_scores_go_to_stdout_in_the_same_order(
    whole: tuple[pl.DataFrame, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    _, expected = whole
    pipeline.score_logs_to(
        None,
        [SAMPLE / "postgresql.json.gz"],
        DEFAULT_MODEL,
        settings.load(),
        Quarantine(None),
        batch_windows=2_000,
    )
    assert capsys.readouterr().out.encode() == expected


def test_a_time_slice_never_splits_a_window_start() -> None:
    def at(minute: int) -> datetime:
        return datetime(2026, 10, 19, 9, minute, tzinfo=UTC)

    # 3 accounts active at 9:00, one at 9:05, two at 9:10; slices of at most 2 rows
    windows = pl.Series([at(10), at(0), at(5), at(0), at(10), at(0)])
    assert sink.time_slices(windows, 2) == [at(5), at(10)]
    assert sink.time_slices(windows, 6) == []
