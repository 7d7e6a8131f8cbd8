"""serve's scheduled retraining on the sample logs (a real PostgreSQL 15 + pgAudit
workload): the week with five incidents scored by the bundled model into a real SQLite
store, then a successor trained on the last 14 days of the log, published, loaded back."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector import model, pipeline, retrain
from detector.cli import main
from detector.live.retraining import Retrainer, models_dir, resume
from detector.live.service import Service
from detector.live.store import Checkpoint, SqliteStore
from detector.settings import Settings

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
MODEL = ROOT / "models" / "default"
START = datetime(2026, 10, 19, tzinfo=UTC)  # the scored week: incidents INC-1..INC-5
END = datetime(2026, 10, 26, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SqliteStore, pl.DataFrame]:
    """A store holding the bundled model's verdicts on the incident week."""
    conf = Settings(state_dir=tmp_path_factory.mktemp("state"), trees=50)
    store = SqliteStore(conf.state_dir)
    events, _ = pipeline.read_events([SAMPLE], since=START, until=END)
    scored = pipeline.score(events, model.load(MODEL), conf)
    store.commit(scored, Checkpoint(sources={}, state={}, saved_at=0.0))
    return conf, store, scored


def test_a_due_retraining_publishes_a_successor_that_still_flags_the_incidents(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
) -> None:
    conf, store, _ = served
    parent = model.load(MODEL)
    clock = Clock()
    retrainer = Retrainer(conf, store, lambda: [SAMPLE], clock=clock)
    assert not retrainer.maybe_start(parent, END)  # a day has not passed
    assert retrainer.take() is None
    clock.now += 86_400
    assert retrainer.maybe_start(parent, END)
    assert retrainer._thread is not None
    retrainer._thread.join(timeout=300)
    done = retrainer.take()
    assert done is not None, retrainer.last_error
    successor, path = done
    assert retrainer.take() is None  # handed over once
    assert retrain.current(models_dir(conf)) == path
    assert retrain.descends_from(successor, parent.manifest)
    assert successor.manifest.training["lineage"][0]["name"] == parent.manifest.name
    # The incidents' flagged windows were not learned: the web app's 50,000-row pull is
    # not its largest 5 minutes, the tables hr_app enumerated are not known to it, and
    # scored again by the successor, every incident is flagged again.
    learned = successor.profile.account_max.filter(pl.col("account") == "web_shop")
    assert learned["rows_read_5m"].item() < 1_000
    hr_objects = successor.profile.known.filter(
        pl.col("account") == "hr_app", pl.col("kind") == "object"
    )["value"]
    assert "sales.cards" not in hr_objects.to_list()
    events, _ = pipeline.read_events([SAMPLE], since=START, until=END)
    again = pipeline.score(events, successor, conf).filter(pl.col("flagged"))
    labels = pl.read_csv(ROOT / "sample_logs" / "labels.csv", try_parse_dates=True)
    for incident in labels.iter_rows(named=True):
        hits = again.filter(
            pl.col("account") == incident["account"],
            pl.col("window_end") > incident["start"].replace(tzinfo=UTC),
            pl.col("window_start") <= incident["end"].replace(tzinfo=UTC),
        )
        assert hits.height, incident["incident_id"]
    # A restart resumes the successor for the same model given, not for another.
    assert resume(parent, conf)[1] == path
    stranger = replace(parent, manifest=replace(parent.manifest, name="another"))
    assert resume(stranger, conf) == (stranger, None)


def test_a_failed_retraining_keeps_the_model_and_says_why(
    served: tuple[Settings, SqliteStore, pl.DataFrame], tmp_path: Path
) -> None:
    conf, store, _ = served
    missing = tmp_path / "gone.json"
    retrainer = Retrainer(conf, store, lambda: [missing])
    # a time of its own: a retraining up to one already published is refused before
    assert retrainer.run(model.load(MODEL), END - timedelta(hours=3)) is None
    assert retrainer.take() is None
    assert retrainer.last_error is not None and "gone.json" in retrainer.last_error
    assert retrainer.outcomes["failed"] == 1


def test_postgresql_logs_over_retrain_max_bytes_are_streamed_other_formats_refused(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
) -> None:
    """Retraining folds PostgreSQL logs batch by batch (memory follows the
    account-windows), so ``retrain_max_bytes`` does not stop it; logs read whole (MariaDB's
    audit and slow logs, joined across the files) over it are refused with the reason."""
    conf, store, _ = served
    small = conf.model_copy(update={"retrain_max_bytes": 1_000})
    until = END - timedelta(hours=1)  # a name of its own among the published models
    streamed = Retrainer(small, store, lambda: [SAMPLE])
    assert streamed.run(model.load(MODEL), until) is not None, streamed.last_error
    mariadb = ROOT / "tests" / "fixtures" / "reference" / "mariadb10.11"
    whole = Retrainer(small, store, lambda: [mariadb / "server_audit.log", mariadb / "slow.log"])
    assert whole.run(model.load(MODEL), until - timedelta(hours=1)) is None
    assert whole.last_error is not None and "over retrain_max_bytes" in whole.last_error


def test_retraining_never_runs_when_switched_off(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
) -> None:
    conf, store, _ = served
    clock = Clock()
    off = conf.model_copy(update={"retrain_every": "0s"})
    retrainer = Retrainer(off, store, lambda: [SAMPLE], clock=clock)
    clock.now += 10 * 86_400
    assert not retrainer.maybe_start(model.load(MODEL), END)


def test_retrain_by_hand_publishes_a_successor_of_the_newest_model(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    conf, _, _ = served
    argv = ["retrain", "--model-dir", str(MODEL), "--state-dir", str(conf.state_dir)]
    assert main([*argv, "--until", "2026-10-25T12:00:00Z", str(SAMPLE)]) == 0
    published = retrain.current(models_dir(conf))
    assert published is not None and published.name == "retrained-20261025T120000Z"
    assert "published" in capsys.readouterr().err
    successor = model.load(published)
    assert retrain.descends_from(successor, model.load(MODEL).manifest)
    # Again up to the same time: refused before any log is read (this one is not a log),
    # not after the whole retraining as it was.
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(bytes(range(256)) * 64)
    assert main([*argv, "--until", "2026-10-25T12:00:00Z", str(garbage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "retrained up to 2026-10-25 12:00:00 UTC exists already" in err[0]


def test_retrain_refuses_a_directory_without_serve_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["retrain", "--model-dir", str(MODEL), "--state-dir", str(tmp_path), str(SAMPLE)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no serve state here" in err[0]


def test_serve_swaps_in_its_retrained_model_between_steps(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "postgresql.json").write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    conf = Settings(
        state_dir=tmp_path / "state",
        follow=[str(logs / "*.json")],
        lateness="1s",
        checkpoint_interval=0.1,
        poll_interval=0.05,
        retrain_every="1s",
        trees=50,
    )
    parent = model.load(MODEL)
    service = Service(parent, conf, conf.follow, MODEL)
    deadline = time.monotonic() + 240
    while service.trained is parent and time.monotonic() < deadline:
        if not service.step():
            time.sleep(0.05)
    try:
        assert service.trained is not parent, service.retrainer.last_error
        assert service.engine.trained is service.trained
        assert service.model_dir.parent == models_dir(conf)
        assert retrain.descends_from(service.trained, parent.manifest)
        published = service.metrics.registry.get_sample_value(
            "trovewatch_model_retrains_total", {"outcome": "published"}
        )
        assert published == 1
        # it learned from what serve scored and did not flag
        learned = service.trained.manifest.training["retraining"]
        assert learned["windows_allowed"] > 1000
        # a restart with the same model given resumes the retrained one
        assert resume(parent, conf)[1] == service.model_dir
    finally:
        service.store.close()


PROBE = """
import json, multiprocessing, sys, threading, time
from datetime import datetime
from pathlib import Path
from detector import model
from detector.live.retraining import Retrainer
from detector.live.store import SqliteStore
from detector.settings import Settings

state, until, then = Path(sys.argv[1]), datetime.fromisoformat(sys.argv[2]), sys.argv[3]
conf = Settings(state_dir=state, trees=50)
retrainer = Retrainer(conf, SqliteStore(state), lambda: [Path(sys.argv[4])])
parent = model.load(Path(sys.argv[5]))
if then == "wait":
    path = retrainer.run(parent, until)
    imported = [m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy")]
    print(json.dumps([str(path), retrainer.last_error, imported]))
else:
    threading.Thread(target=retrainer.run, args=(parent, until), daemon=True).start()
    deadline = time.monotonic() + 60
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    print(([p.pid for p in multiprocessing.active_children()] + [0])[0], flush=True)
    time.sleep(600)
"""


def _probe(conf: Settings, until: datetime, then: str) -> subprocess.Popen[str]:
    arguments = [str(conf.state_dir), until.isoformat(), then, str(SAMPLE), str(MODEL)]
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_retraining_runs_in_a_process_of_its_own_and_serve_never_imports_scikit_learn(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
) -> None:
    """Training reads two weeks of logs and fits the forest: in the sidecar's process
    it would hold its interpreter lock and keep the memory (and scikit-learn's 90 MB)."""
    conf, _, _ = served
    until = END - timedelta(hours=5)  # a name of its own among the published models
    probe = _probe(conf, until, "wait")
    out, _ = probe.communicate(timeout=600)
    path, error, imported = json.loads(out.splitlines()[-1])
    assert error is None
    assert Path(path) == models_dir(conf) / f"retrained-{until:%Y%m%dT%H%M%SZ}"
    assert model.load(Path(path)).manifest.training["lineage"]
    assert imported == []


def test_a_retraining_in_progress_dies_with_serve_even_by_kill_9(
    served: tuple[Settings, SqliteStore, pl.DataFrame],
) -> None:
    conf, _, _ = served
    probe = _probe(conf, END - timedelta(hours=6), "kill")
    assert probe.stdout is not None
    child = int(probe.stdout.readline())
    assert child and _running(child)
    probe.send_signal(signal.SIGKILL)
    probe.wait(timeout=30)
    deadline = time.monotonic() + 3  # its training would take 10 s and more
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
