"""Pipeline facts that hold whatever the format: statements split over chunks, reading
in chunks versus whole, time filters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from detector import ingest, model, pipeline, settings
from detector import schema as S
from detector.formats.pg_jsonlog import PgJsonlog
from detector.model import ModelError
from detector.pipeline import merge_split_statements, read_events
from detector.reader import read_chunks
from detector.rejects import Quarantine
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


SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


def _score_whole(
    paths: list[Path], since: datetime | None = None
) -> tuple[pl.DataFrame, pipeline.Summary]:
    trained = model.load(DEFAULT_MODEL)
    start = pipeline.history_from(since, trained.horizons)
    events, summary = read_events(paths, since=since, history_from=start)
    return pipeline.score(events, trained, settings.load(), since), summary


@pytest.mark.parametrize("name", ["postgresql.json.gz", "postgresql.csv.gz", "postgresql.log.gz"])
def test_scoring_window_by_window_gives_the_verdicts_of_reading_everything(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 64 KiB: statements and windows cut at chunk ends. (Not for stderr, whose
    # sessions are told apart within a chunk: it is read in the same chunks either way.)
    monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", 64 * 1024)
    since = datetime(2026, 10, 19, tzinfo=UTC)
    expected, read = _score_whole([SAMPLE / name], since=since)
    quarantine = Quarantine(None)
    scored, summary = pipeline.score_logs(
        [SAMPLE / name], DEFAULT_MODEL, settings.load(), quarantine, since=since
    )
    assert scored.equals(expected)
    assert expected["flagged"].sum() > 0  # the comparison covers alerts and their reasons
    assert summary.paragraph() == read.paragraph()


def test_accounts_scored_a_batch_at_a_time_get_the_rows_of_scoring_all_at_once() -> None:
    # A model with learned peer groups that never saw a third of the accounts: their
    # windows are placed among peers one by one, and judged against their own earlier
    # days. Batches of 100 windows (whole accounts: more for a busy one) make six groups.
    split = datetime(2026, 10, 19, tzinfo=UTC)
    before, _ = read_events([SAMPLE / "postgresql.json.gz"], until=split)
    newcomers = before[S.ACCOUNT].unique().sort().gather_every(3).implode()
    conf = settings.load(learned_peers=3)
    trained = pipeline.train(before.filter(~pl.col(S.ACCOUNT).is_in(newcomers)), conf)
    after, _ = read_events([SAMPLE / "postgresql.json.gz"], since=split)
    at_once = pipeline.score(after, trained, conf)
    period = pipeline.Period.of([after], trained.horizons.base)
    batches = list(pipeline.score_period(period.partials, trained, conf, batch_windows=100))
    assert len(batches) >= 5
    assert sum(b["account"].n_unique() for b in batches) == at_once["account"].n_unique()
    assert pl.concat(batches).sort("window_start", "account").equals(at_once)
    assert at_once["flagged"].sum() > 0  # alerts, their reasons and the second pass
    placed = at_once.filter(pl.col("account").is_in(newcomers))
    assert placed["features"].struct.field("peer_group").n_unique() > 1


def test_event_batches_hold_the_events_of_the_whole_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", 64 * 1024)
    path = SAMPLE / "postgresql.json.gz"
    whole, read = read_events([path])
    summary = pipeline.Summary()
    batches = list(ingest.event_batches([path], summary))
    assert len(batches) > 10  # split statements are merged and cursors found across batches
    streamed = pl.concat(batches).sort(S.TIME, S.SESSION, S.STATEMENT_ID)
    assert streamed.equals(whole.sort(S.TIME, S.SESSION, S.STATEMENT_ID))
    assert summary.paragraph() == read.paragraph()


def test_files_of_the_same_period_are_scored_as_one_read(tmp_path: Path) -> None:
    lines = (REFERENCE_PG / "postgresql.json").read_text().splitlines(keepends=True)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("".join(lines[:40]) + "not json\n" + "".join(lines[40:]))
    second.write_text("".join(lines))  # the same windows again, after the first file's
    out = tmp_path / "quarantine.ndjson"
    quarantine = Quarantine(out)
    scored, summary = pipeline.score_logs(
        [first, second], DEFAULT_MODEL, settings.load(), quarantine
    )
    quarantine.close()
    expected, read = _score_whole([first, second])
    assert scored.equals(expected)
    assert summary.paragraph() == read.paragraph()
    assert out.read_text().count("not json") == 1
