"""Pipeline facts that hold whatever the format: statements split over chunks, reading
in chunks versus whole, time filters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from detector import model, pipeline, settings
from detector import schema as S
from detector.formats.pg_jsonlog import PgJsonlog
from detector.model import ModelError
from detector.pipeline import merge_split_statements, read_events
from detector.reader import read_chunks
from tests.conftest import PG_SCENARIOS, REFERENCE_PG


def test_a_statement_split_between_chunks_is_counted_once() -> None:
    # The self-join is logged on two lines (one per relation reference); cut between them.
    path = PG_SCENARIOS / "rows_relation_param_on" / "postgresql.json"
    fmt = PgJsonlog()
    whole = fmt.finish(pl.concat([fmt.parse(c).events for c in read_chunks(path)]))
    tiny = pl.concat([fmt.parse(c).events for c in read_chunks(path, chunk_bytes=700)])
    assert tiny.height > whole.height  # chunks this small do split statements...
    merged = fmt.finish(merge_split_statements(tiny))
    assert merged.height == whole.height  # ...and merging puts them back together
    assert merged[S.ROWS].sum() == whole[S.ROWS].sum()
    key = [S.SESSION, S.STATEMENT_ID]
    assert merged.sort(key).select(*key, S.OBJECTS).equals(whole.sort(key).select(*key, S.OBJECTS))
    fetches = merged.filter(pl.col(S.COMMAND) == "FETCH")
    assert fetches.height and all(fetches[S.OBJECTS].list.len() > 0)  # cursors found across chunks


def test_since_and_until_split_one_log_into_periods() -> None:
    path = REFERENCE_PG / "postgresql.json"
    cut = datetime(2026, 11, 28, 6, 55, 20, tzinfo=UTC)
    everything, _ = read_events([path])
    before, _ = read_events([path], until=cut)
    after, _ = read_events([path], since=cut)
    assert before.height + after.height == everything.height
    assert before[S.TIME].max() < cut <= after[S.TIME].min()  # type: ignore[operator]


def test_fast_and_exact_paths_agree(tmp_path: Path) -> None:
    # A blank line makes the whole-file reader unusable for exact line numbers: the file
    # is read again chunk by chunk, with the same events.
    clean = REFERENCE_PG / "postgresql.json"
    lines = clean.read_text().splitlines(keepends=True)
    blank = tmp_path / "blank.json"
    blank.write_text("".join(lines[:10]) + "\n" + "".join(lines[10:]))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("".join(lines[:10]) + "not json\n" + "".join(lines[10:]))
    reference, _ = read_events([clean])
    for path in (blank, garbage):
        events, _ = read_events([path])
        assert events.drop(S.SOURCE_FORMAT).equals(reference.drop(S.SOURCE_FORMAT))


def test_a_model_refuses_logs_carrying_fields_its_training_logs_lacked() -> None:
    # Trained where no client named its application (a stderr prefix without %a), every
    # application in new logs would be "new" for every account: refused, and said why.
    path = Path(__file__).parents[1] / "sample_logs" / "postgresql.json.gz"
    split = datetime(2026, 10, 19, tzinfo=UTC)
    before, _ = read_events([path], until=split)
    nameless = before.with_columns(pl.lit(None, pl.String).alias(S.APPLICATION))
    conf = settings.load()
    trained = pipeline.train(nameless, conf)
    assert trained.manifest.training["fields_absent"] == ["applications"]
    after, _ = read_events([path], since=split)
    with pytest.raises(
        ModelError,
        match=r"but no bytes, applications .* these logs have .*applications but no bytes .*: applications differ",
    ):
        pipeline.score(after, trained, conf)
    pipeline.score(after.with_columns(pl.lit(None, pl.String).alias(S.APPLICATION)), trained, conf)


def test_logs_lacking_clients_or_applications_are_scored_anyway() -> None:
    # Local connections have no client address and scripts no application name: the
    # bundled model (which learned both) scores such logs rather than refusing them.
    path = Path(__file__).parents[1] / "sample_logs" / "postgresql.json.gz"
    events, _ = read_events([path], since=datetime(2026, 10, 19, tzinfo=UTC))
    local = events.with_columns(
        pl.lit(None, pl.String).alias(S.APPLICATION), pl.lit(None, pl.String).alias(S.CLIENT_IP)
    )
    trained = model.load(Path(__file__).parents[1] / "models" / "default")
    assert trained.manifest.training["fields"] == ["applications", "clients", "objects"]
    assert pipeline.score(local, trained, settings.load()).height
