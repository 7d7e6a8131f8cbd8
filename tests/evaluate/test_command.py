"""`evaluate` end to end on the bundled sample logs, and its answers to bad input.

The sample logs: two ordinary weeks to train on, then a week with five labelled
incidents. trovewatch must find all five with no false alert; every baseline gets a row.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector import model, pipeline, settings
from detector.evaluate import __main__ as entry
from detector.evaluate import command
from detector.evaluate.evaluation import Evaluation

SAMPLE = Path(__file__).parents[2] / "sample_logs"
LOG = SAMPLE / "postgresql.json.gz"
LABELS = SAMPLE / "labels.csv"
SPLIT = "2026-10-19T00:00:00Z"
BASELINES = (
    "static rows z-score (k=3)",
    "isolation forest, raw counts",
    "half-space trees (River)",
    "ECOD (PyOD)",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the sample's first two weeks, as `trovewatch train --until` would."""
    until = datetime(2026, 10, 19, tzinfo=UTC)
    events, _ = pipeline.read_events([LOG], until=until)
    directory = tmp_path_factory.mktemp("model")
    model.save(pipeline.train(events, settings.load(), name="sample"), directory)
    return directory


@pytest.fixture(scope="module")
def scores_file(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's third week as `trovewatch score --since` writes it."""
    events, _ = pipeline.read_events([LOG], since=datetime(2026, 10, 19, tzinfo=UTC))
    out = tmp_path_factory.mktemp("scores") / "scores.ndjson"
    pipeline.write_ndjson(pipeline.score(events, model.load(model_dir), settings.load()), out)
    return out


def evaluate(*argv: str) -> Evaluation:
    parser = entry.argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.evaluate(parser.parse_args(list(argv)))


def figures(result: Evaluation, name: str) -> tuple[float | None, int]:
    method = next(m for m in result.methods if m.name == name)
    assert method.metrics is not None
    overall = method.metrics.recall.row(-1, named=True)
    return overall["recall"], method.metrics.false_alerts.false_account_days


def test_trovewatch_finds_every_sample_incident_with_no_false_alert(model_dir: Path) -> None:
    result = evaluate(
        "--labels", str(LABELS), "--model-dir", str(model_dir), "--train-until", SPLIT, str(LOG)
    )
    assert result.labels.height == 5
    assert figures(result, "trovewatch") == (1.0, 0)
    trovewatch = result.methods[0].metrics
    assert trovewatch is not None
    assert trovewatch.recall.filter(recall=1.0).height == 6  # five kinds and overall
    assert trovewatch.pr_auc is not None and 0 < trovewatch.pr_auc <= 1
    # every method was measured on the same windows
    for method in result.methods:
        if method.scored is not None:
            assert method.scored.select("account", "window_start").equals(
                result.methods[0].scored.select("account", "window_start")  # type: ignore[union-attr]
            )


def test_the_report_has_a_row_per_method(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = entry.main(
        ["--labels", str(LABELS), "--model-dir", str(model_dir), "--train-until", SPLIT, str(LOG)]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    trovewatch = rows["trovewatch"].split()
    assert trovewatch[1:6] == ["1/1"] * 5  # one incident of each kind
    assert trovewatch[6] == "1.00"  # recall
    assert "0.0 (0)" in rows["trovewatch"]  # false alerts per 1,000 account-days
    for name in BASELINES:
        assert name in rows, out
        if name.endswith(("(River)", "(PyOD)")) and not _installed(name):
            assert "not installed (uv sync --extra eval)" in rows[name]
    assert "Time to detect per incident" in out


def _installed(name: str) -> bool:
    return importlib.util.find_spec("river" if "River" in name else "pyod") is not None


def test_a_score_output_gives_the_same_figures(model_dir: Path, scores_file: Path) -> None:
    from_logs = evaluate(
        "--labels", str(LABELS), "--model-dir", str(model_dir), "--train-until", SPLIT, str(LOG)
    )
    alone = evaluate("--labels", str(LABELS), "--scores", str(scores_file))
    assert figures(alone, "trovewatch") == figures(from_logs, "trovewatch") == (1.0, 0)
    # without the logs there is nothing to fit the baselines on: they say so
    assert [m.note for m in alone.methods[1:3]] == [
        "needs the logs: give LOG... and --train-until"
    ] * 2
    assert all(m.metrics is None and m.note for m in alone.methods[1:])
    # with the logs, the baselines are fitted and measured on the score file's windows
    with_logs = evaluate(
        "--labels", str(LABELS), "--scores", str(scores_file), "--train-until", SPLIT, str(LOG)
    )
    for ours, theirs in zip(with_logs.methods, from_logs.methods, strict=True):
        assert ours.metrics is not None or ours.note
        if ours.metrics and theirs.metrics:
            assert ours.metrics.pr_auc == pytest.approx(theirs.metrics.pr_auc)
    assert with_logs.notes == []


def test_the_optional_baselines_say_how_to_install_them(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    missing = {"river", "pyod", "matplotlib"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    result = evaluate(
        "--labels", str(LABELS), "--model-dir", str(model_dir), "--train-until", SPLIT, str(LOG)
    )
    notes = {m.name: m.note for m in result.methods}
    assert (
        notes["half-space trees (River)"]
        == notes["ECOD (PyOD)"]
        == "not installed (uv sync --extra eval)"
    )
    assert result.methods[1].metrics is not None and result.methods[2].metrics is not None
    with pytest.raises(
        command.EvaluateError, match=r"--html needs matplotlib: uv sync --extra eval"
    ):
        evaluate("--labels", str(LABELS), "--scores", "x.ndjson", "--html", "out.html")


def test_the_html_report_opens_offline(scores_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    code = entry.main(
        [
            "--labels",
            str(LABELS),
            "--scores",
            str(scores_file),
            "--train-until",
            SPLIT,
            str(LOG),
            "--html",
            str(out),
        ]
    )
    page = out.read_text()
    assert code == 0
    # the PR curves, the alerts per day, one timeline per incident: all inline
    assert page.count("<svg") == 2 + 5
    # nothing to fetch: no scripts, images, styles or fonts from elsewhere
    for fetch in ("src=", "<link", 'href="http', "url(http", "@import"):
        assert fetch not in page
    for name in ("trovewatch", *BASELINES):
        assert name in page


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_labels", "labels file missing.csv: no such file"),
        ("wrong_columns", "missing column(s) start, end"),
        ("bad_time", "start, end must be ISO-8601 times"),
        ("not_ndjson", "not NDJSON from `trovewatch score`"),
        ("no_input", "give --scores FILE, or --model-dir DIR"),
        ("no_split", "give --train-until"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(case: str, message: str, tmp_path: Path) -> None:
    labels = str(LABELS)
    scores = write(tmp_path / "s.ndjson", '{"account": "a", "window_start": "2026-10-19T00:00:00Z"')
    good_scores = write(
        tmp_path / "g.ndjson",
        '{"account":"a","window_start":"2026-10-19T00:00:00Z","window_end":"2026-10-19T00:05:00Z","score":0.1,"flagged":false}\n',
    )
    argv = {
        "no_labels": ["--labels", "missing.csv", "--scores", str(good_scores)],
        "wrong_columns": [
            "--labels",
            str(write(tmp_path / "l.csv", "incident_id,account,kind,description\nI,a,b,c\n")),
            "--scores",
            str(good_scores),
        ],
        "bad_time": [
            "--labels",
            str(
                write(
                    tmp_path / "t.csv",
                    "incident_id,account,start,end,kind,description\nI,a,yesterday,today,b,c\n",
                )
            ),
            "--scores",
            str(good_scores),
        ],
        "not_ndjson": ["--labels", labels, "--scores", str(scores)],
        "no_input": ["--labels", labels],
        "no_split": ["--labels", labels, "--model-dir", "models/default", str(LOG)],
    }[case]
    done = subprocess.run(
        [sys.executable, "-m", "detector.evaluate", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert message in done.stderr
    assert done.stdout == ""
