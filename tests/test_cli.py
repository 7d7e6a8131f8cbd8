"""The ``trovewatch`` command as a user runs it: exit codes, one-line errors, the NDJSON
it writes, the summary on stderr, the quarantine file, and refusing a tampered model.

Exit codes (detector/cli.py): 0 success, 2 bad input or usage, 1 internal error, 74 a
full disk or failing device. An error
is one line on stderr starting ``trovewatch: error:``, never a traceback without --debug.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import polars as pl
import pytest

from detector.cli import main
from detector.live.store import Checkpoint, SqliteStore
from detector.reader import NotALogError
from tests.conftest import FIXTURES, REFERENCE_PG

ROOT = Path(__file__).parents[1]
BUNDLED_MODEL = ROOT / "models" / "default"
JSONLOG = REFERENCE_PG / "postgresql.json"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|\+00:00)$")
SEVERITIES = {"low", "medium", "high", "critical"}


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run ``trovewatch ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse exits on usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *mentions: str) -> str:
    assert code == 2, f"exit {code}, want 2; stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"error is not one line: {err!r}"
    assert lines[0].startswith("trovewatch: error: "), lines[0]
    for text in mentions:
        assert text.lower() in lines[0].lower(), f"{text!r} not in {lines[0]!r}"
    return lines[0]


def score_args(tmp_path: Path, *extra: str | Path) -> list[str | Path]:
    return ["score", "--quarantine", tmp_path / "quarantine.ndjson", *extra]


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.split("\n") if line.strip()]


# ---------------------------------------------------------------------------------------
# Bad input: exit 2, one line, no traceback


def test_binary_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    code, out, err = cli(capsys, *score_args(tmp_path, binary))
    assert_one_line_error(code, err, str(binary), "binary")
    assert out == ""


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_log_line_prefix_it_cannot_read_is_refused_in_one_line(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An escape PostgreSQL has but trovewatch does not read (or a typo) is bad input."""
    log = REFERENCE_PG / "postgresql.log"
    args = ["--log-line-prefix", "%m [%p] %z ", log]
    if command == "train":
        code, _, err = cli(capsys, "train", "--model-dir", tmp_path / "m", *args)
    else:
        code, _, err = cli(capsys, *score_args(tmp_path, *args))
    assert_one_line_error(code, err, "--log-line-prefix", "%z")


def test_a_log_line_prefix_setting_it_cannot_read_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "trovewatch.toml"
    config.write_text('log_line_prefix = "%m [%p] %"\n')
    code, _, err = cli(capsys, "serve", "--config", config, "--state-dir", tmp_path / "s")
    assert_one_line_error(code, err, "log_line_prefix", "lone '%'")


@pytest.mark.parametrize("command", ["train", "score", "serve"])
def test_a_time_zone_it_does_not_know_is_refused_in_one_line(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A MariaDB server's zone is an IANA name; a typo is bad input, said before any log
    is read (or, for serve, in its settings file)."""
    log = FIXTURES / "reference" / "mariadb10.11" / "server_audit.log"
    args = ["--mariadb-timezone", "Europe/Berln", log]
    if command == "train":
        code, _, err = cli(capsys, "train", "--model-dir", tmp_path / "m", *args)
    elif command == "score":
        code, _, err = cli(capsys, *score_args(tmp_path, *args))
    else:
        config = tmp_path / "trovewatch.toml"
        config.write_text('mariadb_timezone = "Europe/Berln"\n')
        code, _, err = cli(capsys, "serve", "--config", config, "--state-dir", tmp_path / "s")
    assert_one_line_error(code, err, "Europe/Berln", "not a time zone")


def test_empty_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, _, err = cli(capsys, *score_args(tmp_path, empty))
    assert_one_line_error(code, err, str(empty), "empty")


def test_text_that_is_not_a_log_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n- milk\n- eggs\n")
    code, _, err = cli(capsys, *score_args(tmp_path, notes))
    line = assert_one_line_error(code, err, str(notes))
    assert "--format" in line  # tells the user what to do about it


def test_missing_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such.log"
    code, _, err = cli(capsys, *score_args(tmp_path, missing))
    assert_one_line_error(code, err, str(missing))


@pytest.mark.parametrize("command", ["train", "score", "retrain", "evaluate"])
def test_a_log_directory_is_refused_as_a_directory_not_as_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """`trovewatch score /var/log/postgresql` said 'no such file' of a directory that is
    plainly there."""
    logs = tmp_path / "postgresql"
    logs.mkdir()
    (logs / "postgresql.json").write_bytes(JSONLOG.read_bytes())
    extra: dict[str, list[str | Path]] = {
        "train": ["--model-dir", tmp_path / "m"],
        "score": [],
        "retrain": ["--model-dir", BUNDLED_MODEL, "--state-dir", tmp_path],
        "evaluate": ["--labels", tmp_path / "l.csv", "--model-dir", BUNDLED_MODEL,
                     "--train-until", "2026-11-28"],
    }  # fmt: skip
    code, _, err = cli(capsys, command, *extra[command], logs)
    assert_one_line_error(code, err, f"{logs}: a directory; name the log files in it")


def test_a_named_pipe_is_refused_as_no_regular_file_with_the_way_to_read_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A FIFO given as a LOG said 'no such file' of a path that is there (and opening it
    would wait for a writer): it is named for what it is, with the way to read a stream."""
    fifo = tmp_path / "postgresql.json"
    os.mkfifo(fifo)
    code, _, err = cli(capsys, *score_args(tmp_path, fifo))
    assert_one_line_error(code, err, f"{fifo}: not a regular file", "trovewatch score -")


def test_bad_since_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, *score_args(tmp_path, "--since", "yesterday-ish", JSONLOG))
    assert_one_line_error(code, err, "--since", "yesterday-ish")


@pytest.mark.parametrize("command", ["score", "train"])
def test_since_not_before_until_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """Swapped dates once read every file and ended 'Scored 0 account-windows', exit 0:
    an empty result the user could take for a quiet period."""
    period = ["--since", "2026-11-29", "--until", "2026-11-28T12:00+01:00"]
    extra = ["--model-dir", tmp_path / "model"] if command == "train" else []
    code, out, err = cli(
        capsys, command, "--quarantine", tmp_path / "q.ndjson", *extra, *period, JSONLOG
    )
    assert_one_line_error(
        code, err, "--since 2026-11-29 00:00:00 UTC is not before --until 2026-11-28 11:00:00 UTC"
    )
    assert out == ""


@pytest.mark.parametrize(
    "toml",
    [
        'format = "xml"\n[fields]\ntime = "t"\naccount = "u"\n',
        "this is [not toml\n",
        'format = "ndjson"\n',
    ],
    ids=["unknown-format", "not-toml", "no-fields"],
)
def test_bad_mapping_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(toml)
    code, _, err = cli(capsys, *score_args(tmp_path, "--mapping", mapping, JSONLOG))
    assert_one_line_error(code, err, str(mapping))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"threshold = \n", "not TOML"),
        (b"[roles\nweb = 'x'\n", "not TOML"),
        (b"\xff\xfe\x00 threshold", "not TOML"),
        (None, "Is a directory"),
    ],
    ids=["no-value", "unclosed-table", "not-utf8", "a-directory"],
)
def test_bad_config_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None, words: str
) -> None:
    """A typo in trovewatch.toml is the DBA's to fix: named in one line, exit 2, not an
    internal error with a parser's traceback."""
    config = tmp_path / "trovewatch.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    code, out, err = cli(capsys, *score_args(tmp_path, "--config", config, JSONLOG))
    assert_one_line_error(code, err, f"config file {config}", words)
    assert out == ""


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('window = "0s"\n', "window '0s' must be longer than 0"),
        # the default horizons hold 1h and 1d: a 1-day window once crashed in Polars
        ('window = "1d"\n', "horizon '1h' must be longer than the window (1d)"),
        ('horizons = ["1m"]\n', "horizon '1m' must be longer than the window (5m)"),
        ('horizons = ["1h", "60m"]\n', "horizons '1h' and '60m' are the same"),
        ("horizons = []\n", "horizons"),
    ],
    ids=["zero-window", "window-as-long-as-a-horizon", "short-horizon", "same-horizon", "none"],
)
def test_windows_and_horizons_that_cannot_be_trained_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str, words: str
) -> None:
    """`train` once wrote a model of "account-windows of 0s", or ended in an internal error
    (a duplicate column, an index error), for these settings."""
    config = tmp_path / "trovewatch.toml"
    config.write_text(toml)
    model_dir = tmp_path / "model"
    code, _, err = cli(
        capsys, "train", "--model-dir", model_dir, "--config", config, "--quarantine",
        tmp_path / "q.ndjson", JSONLOG,
    )  # fmt: skip
    assert_one_line_error(code, err, words)
    assert not model_dir.exists()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        # "extreme" windows were written, which no API filter, report rank or alert rule knows
        ("[severity_bands]\nextreme = 0.9\n", "unknown severity extreme"),
        # a 0.8 window was "low", a 0.6 one "medium"
        ("[severity_bands]\nlow = 0.9\nmedium = 0.7\n", "rise from low to medium to high"),
        ("[severity_bands]\nlow = 2\n", "within 0..1"),
        ("severity_bands = {}\n", "at least one"),  # was an internal error (IndexError)
    ],
    ids=["unknown-name", "out-of-order", "above-1", "empty"],
)
def test_severity_bands_that_would_misname_alerts_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str, words: str
) -> None:
    config = tmp_path / "trovewatch.toml"
    config.write_text(toml)
    code, out, err = cli(capsys, *score_args(tmp_path, "--config", config, JSONLOG))
    assert_one_line_error(code, err, "setting severity_bands", words)
    assert out == ""


def test_model_dir_without_manifest_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty_model = tmp_path / "model"
    empty_model.mkdir()
    code, _, err = cli(capsys, *score_args(tmp_path, "--model-dir", empty_model, JSONLOG))
    assert_one_line_error(code, err, "manifest.json", str(empty_model))


@pytest.mark.parametrize("damage", ["cut short", "bytes overwritten"])
def test_a_damaged_gzip_is_bad_input_not_an_internal_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    """A .gz cut short (a copy interrupted, a rotation mid-compress), or with bytes
    overwritten past the first lines (a disk error: zlib's "invalid distance too far
    back", which was an internal error, exit 1)."""
    lines = JSONLOG.read_bytes().splitlines(keepends=True)
    big = b"".join(lines * 60)  # well past the 256 KiB that format detection reads
    packed = bytearray(gzip.compress(big))
    if damage == "cut short":
        del packed[len(packed) // 2 :]
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\xff" * 8
        with pytest.raises(zlib.error):  # the damage this case is for
            gzip.decompress(packed)
    bad = tmp_path / "postgresql.json.gz"
    bad.write_bytes(packed)
    code, _, err = cli(capsys, *score_args(tmp_path, bad))
    assert_one_line_error(code, err, str(bad))


def test_unusable_output_paths_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An output path that is a directory, or a directory path that is a file, is the
    user's to fix: it was an internal error (IsADirectoryError, FileExistsError, exit 1),
    after training for `train`."""
    a_dir, a_file = tmp_path / "a-dir", tmp_path / "a-file"
    a_dir.mkdir()
    a_file.write_text("x\n")
    code, _, err = cli(capsys, *score_args(tmp_path, "--out", a_dir, JSONLOG))
    assert_one_line_error(code, err, f"{a_dir}: Is a directory")
    code, _, err = cli(capsys, "train", "--model-dir", a_file, JSONLOG)
    assert_one_line_error(code, err, f"--model-dir {a_file}: exists and is not a directory")
    code, _, err = cli(capsys, *score_args(tmp_path, "--out", a_file / "scores.ndjson", JSONLOG))
    assert_one_line_error(code, err, f"{a_file / 'scores.ndjson'}: Not a directory")


def test_a_quarantine_path_that_cannot_be_written_is_named_not_the_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The log was once blamed: 'postgresql.json: cannot be read to its end (Is a
    directory: ...)' for a --quarantine that named a directory."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(JSONLOG.read_bytes() + b"{not json\n")
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    code, _, err = cli(capsys, "score", "--quarantine", quarantine, log)
    line = assert_one_line_error(code, err, f"quarantine file {quarantine}: cannot be written")
    assert "cannot be read" not in line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_an_io_error_naming_the_file_not_an_internal_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Writing scores to a full disk was "internal error: OSError: No space left on
    device (os error 28)", exit 1, as a bug is: it is the machine's, exit 74 (EX_IOERR)."""
    code, _, err = cli(capsys, *score_args(tmp_path, "--out", "/dev/full", JSONLOG))
    assert code == 74, err
    assert err.strip().splitlines()[-1] == "trovewatch: error: /dev/full: No space left on device"
    assert "Traceback" not in err and "internal" not in err


def test_serve_refuses_a_state_dir_that_is_a_file_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    code = main(["serve", "--state-dir", str(state), "--port", "0"])
    assert_one_line_error(code, capsys.readouterr().err, str(state), "Not a directory")


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(NotALogError):
        main(["--debug", *map(str, score_args(tmp_path, binary))])


@pytest.mark.parametrize("command", ["train", "score", "serve", "retrain", "evaluate", "report"])
def test_debug_after_the_command_works_as_the_readme_lists_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """The README lists --debug among the common options; `trovewatch score --debug` was
    'unrecognized arguments: --debug'."""
    args = {
        "train": ["--model-dir", tmp_path / "m", tmp_path / "no.log"],
        "score": [tmp_path / "no.log"],
        "serve": ["--model-dir", tmp_path / "no-model", "--state-dir", tmp_path / "s"],
        "retrain": ["--model-dir", tmp_path / "m", "--state-dir", tmp_path, tmp_path / "no.log"],
        "evaluate": ["--labels", tmp_path / "no.csv", "--scores", tmp_path / "s.ndjson"],
        "report": [tmp_path / "no.ndjson"],
    }[command]
    with pytest.raises(Exception) as raised:  # the traceback, not a one-line error
        main([command, "--debug", *map(str, args)])
    assert not isinstance(raised.value, SystemExit), capsys.readouterr().err
    code, _, err = cli(capsys, command, *args)  # without it: one line
    assert_one_line_error(code, err)


# ---------------------------------------------------------------------------------------
# score: the NDJSON output, the summary, gzip, the quarantine


@pytest.fixture(scope="module")
def scored_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``trovewatch score`` on the reference jsonlog with the bundled model: (stdout, stderr)."""
    tmp = tmp_path_factory.mktemp("score")
    capture = _Capture()
    with capture:
        code = main(["score", "--quarantine", str(tmp / "q.ndjson"), str(JSONLOG)])
    assert code == 0, capture.err
    return capture.out, capture.err


class _Capture:
    """stdout/stderr of a block (capsys is function-scoped; this serves module fixtures)."""

    def __enter__(self) -> None:
        import io

        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self._out, self._err = io.StringIO(), io.StringIO()

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self._saved
        self.out, self.err = self._out.getvalue(), self._err.getvalue()


def test_score_writes_the_documented_fields(scored_reference: tuple[str, str]) -> None:
    rows = ndjson(scored_reference[0])
    assert rows, "no account-windows scored"
    assert {r["account"] for r in rows} >= {"alice"}
    for row in rows:
        assert {"account", "window_start", "window_end", "score", "flagged", "severity", "reasons",
                "features"} <= row.keys()  # fmt: skip
        assert isinstance(row["account"], str) and row["account"]
        for key in ("window_start", "window_end"):
            assert ISO_UTC.match(row[key]), row[key]
        start = datetime.fromisoformat(row["window_start"])
        end = datetime.fromisoformat(row["window_end"])
        assert start.utcoffset() == end.utcoffset() == UTC.utcoffset(None)
        assert start < end
        assert isinstance(row["score"], float | int) and 0 <= row["score"] <= 1
        assert isinstance(row["flagged"], bool)
        assert isinstance(row["reasons"], list) and all(isinstance(r, str) for r in row["reasons"])
        assert isinstance(row["features"], dict) and row["features"]
        if row["flagged"]:
            assert row["severity"] in SEVERITIES
            assert row["reasons"], "a flagged window must say why"


def test_score_summary_names_formats_and_reject_reasons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scored_reference: tuple[str, str]
) -> None:
    # 22 statements run: 24 AUDIT lines and a failed query, less a self-join's second
    # relation line and the second sub-statement of a COPY (SELECT ...) TO and a DECLARE
    assert re.search(r"\b22 audit events \(22 pgaudit-jsonlog\)", scored_reference[1])
    assert re.search(r"\b0 lines rejected\b", scored_reference[1])
    dirty = tmp_path / "postgresql.json"
    lines = JSONLOG.read_bytes().splitlines(keepends=True)
    dirty.write_bytes(b"".join([*lines[:30], b"garbage\n", b"{broken json\n", *lines[30:]]))
    code, _, err = cli(capsys, *score_args(tmp_path, dirty))
    assert code == 0, err
    assert re.search(r"\b22 pgaudit-jsonlog\b", err), err
    assert re.search(r"\b2 lines rejected \(2 invalid_json\)", err), err
    assert str(tmp_path / "quarantine.ndjson") in err  # where to look


@pytest.mark.parametrize("name", ["postgresql.json", "postgresql.csv", "postgresql.log"])
def test_gzipped_log_is_read_like_the_plain_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    plain = REFERENCE_PG / name
    packed = tmp_path / f"{name}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    code, out_plain, err_plain = cli(capsys, *score_args(tmp_path, plain))
    assert code == 0, err_plain
    code, out_gz, err_gz = cli(capsys, *score_args(tmp_path, packed))
    assert code == 0, err_gz
    assert out_gz == out_plain
    assert ndjson(out_gz)
    assert err_gz.replace(str(packed), str(plain)) == err_plain


def test_quarantine_file_gets_the_rejected_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = JSONLOG.read_bytes().splitlines(keepends=True)
    log = tmp_path / "postgresql.json"
    log.write_bytes(
        b"".join([*lines[:10], b"<<garbage>>\n", *lines[10:40], b"[1, 2, 3]\n", *lines[40:]])
    )
    quarantine = tmp_path / "rejected.ndjson"
    code, out, err = cli(capsys, "score", "--quarantine", quarantine, log)
    assert code == 0, err
    assert ndjson(out)
    rows = ndjson(quarantine.read_text())
    assert [(r["file"], r["line"], r["raw"]) for r in rows] == [
        (str(log), 11, "<<garbage>>"),
        (str(log), 42, "[1, 2, 3]"),
    ]
    assert all(r["reason"] == "invalid_json" for r in rows)
    # Rejected lines may carry statement text and its literals: the owner's only.
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o600


def test_clean_input_writes_no_quarantine_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    quarantine = tmp_path / "rejected.ndjson"
    code, _, err = cli(capsys, "score", "--quarantine", quarantine, JSONLOG)
    assert code == 0, err
    assert not quarantine.exists()
    assert "Rejected lines are in" not in err


# ---------------------------------------------------------------------------------------
# report


def test_report_prints_the_flagged_windows_with_reasons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scored_reference: tuple[str, str]
) -> None:
    scores = tmp_path / "scores.ndjson"
    scores.write_text(scored_reference[0])
    rows = ndjson(scored_reference[0])
    flagged = [r for r in rows if r["flagged"]]
    assert flagged, "the reference run is expected to flag alice's bulk read and COPY"
    code, out, err = cli(capsys, "report", scores)
    assert code == 0, err
    assert out.splitlines()[0] == f"{len(flagged)} of {len(rows)} account-windows flagged"
    for row in flagged:
        header = f"{row['window_start']}  {row['account']}  {row['severity'].upper()}"
        assert header in out
        for reason in row["reasons"]:
            assert f"  - {reason}" in out


def test_report_on_a_non_score_file_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "scores.ndjson"
    binary.write_bytes(b"\xff\xfe\x00garbage" * 10)
    code, _, err = cli(capsys, "report", binary)
    line = assert_one_line_error(code, err, str(binary), "not a score output", "not NDJSON")
    assert "TapeError" not in line  # the JSON decoder's internals once came through


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gz"])
def test_report_on_an_audit_log_is_bad_input_not_an_empty_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gzipped: bool
) -> None:
    """jsonlog is NDJSON too: `report postgresql.json` once said 'no account-windows in
    this file', exit 0, as if the log had been scored and nothing found."""
    log = JSONLOG
    if gzipped:
        log = tmp_path / "postgresql.json.gz"
        log.write_bytes(gzip.compress(JSONLOG.read_bytes()))
    code, out, err = cli(capsys, "report", log)
    assert_one_line_error(code, err, f"{log}: not a score output", "flagged")
    assert out == ""


# ---------------------------------------------------------------------------------------
# A tampered or foreign model is refused before anything is unpickled


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, copy)
    return copy


class LoadSpy:
    """Stands in for ``joblib.load``: records each call, and unpickles only if allowed."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.allowed = False
        self.calls: list[str] = []

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(str(path))
        if not self.allowed:
            raise AssertionError(f"joblib.load({path}) reached")
        return self.real(path, *args, **kwargs)


@pytest.fixture
def joblib_load(monkeypatch: pytest.MonkeyPatch) -> LoadSpy:
    spy = LoadSpy(joblib.load)
    monkeypatch.setattr(joblib, "load", spy)
    return spy


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_untampered_copy_of_the_bundled_model_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path, joblib_load: LoadSpy
) -> None:
    """The control for the tamper tests: the copy itself is fine, and is unpickled."""
    joblib_load.allowed = True
    code, out, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    assert code == 0, err
    assert ndjson(out)
    assert joblib_load.calls == [str(model_copy / "model.joblib")]


def test_model_with_a_flipped_byte_is_refused_before_unpickling(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path, joblib_load: LoadSpy
) -> None:
    _flip_a_byte(model_copy / "model.joblib")
    code, out, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    assert_one_line_error(code, err, "sha256", "manifest", "model.joblib")
    assert out == ""
    assert joblib_load.calls == [], "a model whose hash does not match reached joblib.load"


def test_model_with_a_tampered_profile_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path, joblib_load: LoadSpy
) -> None:
    _flip_a_byte(model_copy / "profile_account_max.parquet")
    code, _, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    assert_one_line_error(code, err, "sha256", "profile_account_max.parquet")
    assert joblib_load.calls == []


def test_model_from_another_feature_version_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path, joblib_load: LoadSpy
) -> None:
    manifest = model_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["feature_version"] = 999
    manifest.write_text(json.dumps(data))
    code, _, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    line = assert_one_line_error(code, err, "999", "retrain")
    assert "feature" in line.lower()
    assert joblib_load.calls == []


def test_corrupt_manifest_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path
) -> None:
    (model_copy / "manifest.json").write_text('{"name": "default", ')
    code, _, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    assert_one_line_error(code, err, "manifest")


def _swap_first_features(data: dict[str, Any]) -> None:
    data["features"][:2] = data["features"][1::-1]


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    # each ran before: the forest read the wrong columns, or every close failed
    "features-dropped": lambda d: d.update(features=d["features"][:5]),
    "features-swapped": _swap_first_features,
    "feature-renamed": lambda d: d["features"].__setitem__(0, "nonsense"),
    "calibration-not-numbers": lambda d: d.update(calibration="x"),
    "calibration-scale-zero": lambda d: d["calibration"].update(scale=0),
    "horizons-not-the-profiles": lambda d: d.update(horizons={"base": "7m", "longer": ["1h"]}),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_manifest_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path, edit: str
) -> None:
    """The manifest's features, calibration and horizons, edited by hand, are checked
    against the forest and the profile: refused in one line (exit 2), not a model that
    scores wrong or a loop of tracebacks in `serve`."""
    manifest = model_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    EDITS[edit](data)
    manifest.write_text(json.dumps(data))
    code, out, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    assert_one_line_error(code, err, str(model_copy), "manifest")
    assert out == ""


def test_a_version_written_as_a_string_is_named_in_the_refusal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_copy: Path
) -> None:
    """Found by hand: ``"schema_version": "1"`` was refused as "model built for schema
    v1/features v9; this trovewatch uses schema v1/features v9", the same versions."""
    manifest = model_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["schema_version"] = str(data["schema_version"])
    manifest.write_text(json.dumps(data))
    code, out, err = cli(capsys, *score_args(tmp_path, "--model-dir", model_copy, JSONLOG))
    line = assert_one_line_error(code, err, "not integers", f"{data['schema_version']!r}")
    assert "this trovewatch uses" not in line
    assert out == ""


# ---------------------------------------------------------------------------------------
# The installed command and `python -m detector`, as separate processes


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the real commands concurrently (each starts a fresh interpreter)."""
    tmp = tmp_path_factory.mktemp("proc")
    binary = tmp / "image.bin"
    binary.write_bytes(bytes(range(256)) * 16)
    script = Path(sys.executable).parent / "trovewatch"
    SqliteStore(tmp / "state").close()  # serve's state, with no window to learn from
    fresh = tmp / "postgresql.json"  # written now: within the period retrained on
    fresh.write_bytes(JSONLOG.read_bytes())
    commands = {
        "module-score": [sys.executable, "-m", "detector", "score", "--quarantine", str(tmp / "q1"), str(JSONLOG)],
        "script-score": [str(script), "score", "--quarantine", str(tmp / "q2"), str(JSONLOG)],
        "module-binary": [sys.executable, "-m", "detector", "score", "--quarantine", str(tmp / "q3"), str(binary)],
        "module-retrain": [sys.executable, "-m", "detector", "retrain", "--model-dir", str(BUNDLED_MODEL),
                           "--state-dir", str(tmp / "state"), str(fresh)],
    }  # fmt: skip
    running = {
        name: subprocess.Popen(
            cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, cmd in commands.items()
    }
    done = {}
    for name, proc in running.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(commands[name], proc.returncode, out, err)
    return done


def test_python_dash_m_detector_works_like_trovewatch(
    processes: dict[str, subprocess.CompletedProcess[str]], scored_reference: tuple[str, str]
) -> None:
    module, script = processes["module-score"], processes["script-score"]
    assert module.returncode == 0, module.stderr
    assert script.returncode == 0, script.stderr
    assert module.stdout == script.stdout == scored_reference[0]
    assert "22 pgaudit-jsonlog" in module.stderr and "22 pgaudit-jsonlog" in script.stderr


def test_errors_from_a_real_process_are_one_line_and_exit_2(
    processes: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    proc = processes["module-binary"]
    assert_one_line_error(proc.returncode, proc.stderr, "binary")
    assert proc.stdout == ""


def test_a_failed_retraining_is_one_line_and_exit_2(
    processes: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """It was said twice: a logged warning ('retraining failed; the model in use stays:
    ...') and then the error."""
    proc = processes["module-retrain"]
    assert_one_line_error(proc.returncode, proc.stderr, "no account-window of the period")


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("short-token", "at least 16"),
        ("garbage-state", "not a usable trovewatch state database"),
        ("damaged-checkpoint", "saved window state cannot be read, the database is damaged"),
        ("missing-model", "manifest.json"),
    ],
)
def test_serve_refuses_bad_setup_in_one_line(
    setup: str,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing starts with a bad token, a state directory that is not ours, or no model."""
    state = tmp_path / "state"
    args = ["serve", "--state-dir", str(state), "--port", "0"]
    if setup == "short-token":
        monkeypatch.setenv("TROVEWATCH_API_TOKENS", "short:read")
    if setup == "garbage-state":
        state.mkdir()
        (state / "trovewatch.db").write_text("not sqlite at all")
    if setup == "damaged-checkpoint":  # a sound database; one saved frame's bytes are not
        meta = {"version": 2, "newest": None, "closed_until": None, "base": "5m"}
        saved = {"meta": json.dumps(meta).encode(), "levels": b"PAR1 cut short"}
        store = SqliteStore(state)
        store.commit(pl.DataFrame(), Checkpoint(sources={}, state=saved, saved_at=1.0))
        store.close()
    if setup == "missing-model":
        args += ["--model-dir", str(tmp_path / "no-model")]
    code = main(args)
    assert_one_line_error(code, capsys.readouterr().err, words)


@pytest.mark.parametrize(
    ("log", "has"),
    [
        # pgAudit with log_rows = off: no row counts, where the model learned them.
        (Path("pgaudit/rows_off_relation_on/postgresql.json"), "rows differ"),
        # MariaDB's slow log: rows and bytes, where the model never saw bytes.
        (Path("reference/mariadb10.11/slow.log"), "bytes"),
    ],
)
def test_score_refuses_logs_with_other_volume_than_the_training_logs(
    log: Path, has: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scoring such logs with the bundled model (trained on pgAudit with rows) would
    miss every pull, or flag every byte count: refused, in one line."""
    fixtures = Path(__file__).parent / "fixtures"
    code = main(["score", "--quarantine", str(tmp_path / "q"), str(fixtures / log)])
    line = assert_one_line_error(code, capsys.readouterr().err, "trained on logs with rows")
    assert has in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TROVEWATCH_FOLLOW", "/var/log/postgresql/*.json"),
        ("TROVEWATCH_HORIZONS", "1h,1d"),
        ("TROVEWATCH_ROLES", "backup=batch"),
    ],
)
def test_a_list_or_table_setting_in_the_environment_that_is_not_json_is_one_line(
    variable: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by hand: ``TROVEWATCH_FOLLOW=/var/log/postgresql/*.json`` ended ``serve`` with
    "internal error: SettingsError: error parsing value for field "follow" from source
    "EnvSettingsSource"", exit 1; it is one line naming the variable and the JSON to
    give, exit 2, before anything starts."""
    monkeypatch.setenv(variable, value)
    code = main(["serve", "--state-dir", str(tmp_path / "state"), "--port", "0"])
    assert_one_line_error(code, capsys.readouterr().err, variable, "not JSON", "e.g.")
    assert not (tmp_path / "state").exists()


def test_a_retention_of_zero_is_refused_not_taken_to_delete_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by hand: ``retention = "0s"`` (as ``retrain_every = "0s"`` means never)
    started ``serve``, whose first prune deleted every alert: refused in one line."""
    monkeypatch.setenv("TROVEWATCH_RETENTION", "0s")
    code = main(["serve", "--state-dir", str(tmp_path / "state"), "--port", "0"])
    assert_one_line_error(code, capsys.readouterr().err, "setting retention", "never")
    assert not (tmp_path / "state").exists()


def test_evaluate_is_a_subcommand_with_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "labels.csv"
    code = main(["evaluate", "--labels", str(missing), "--scores", str(tmp_path / "s.ndjson")])
    assert_one_line_error(code, capsys.readouterr().err, "labels.csv")


@pytest.mark.parametrize(
    "command", ["train", "score", "serve", "retrain", "report", "evaluate", "simulate"]
)
def test_every_commands_help_is_printed(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """``--help`` is where a DBA starts; a ``%`` in a help text once made it a traceback."""
    code, out, err = cli(capsys, command, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: trovewatch {command}")
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--seed", "--incidents", "--warmup-days"])
def test_simulate_refuses_a_negative_count_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    """`simulate --seed -1` was an internal error (numpy: expected non-negative integer)."""
    out = tmp_path / "sim"
    code, _, err = cli(
        capsys, "simulate", "--out", out, "--accounts", "10", "--days", "1", option, "-1"
    )
    assert_one_line_error(code, err, f"argument {option}: not a whole number >= 0: '-1'")
    assert not out.exists()


def test_simulate_says_when_fewer_incidents_fit_than_were_asked_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """50 of each kind in 10 accounts over a day once wrote 9 without a word."""
    out = tmp_path / "sim"
    code, _, err = cli(
        capsys, "simulate", "--out", out, "--accounts", "10", "--days", "2",
        "--warmup-days", "1", "--incidents", "50", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    written = len((out / "labels.csv").read_text().splitlines()) - 1
    assert written < 400
    assert f"Only {written} of the 400 incidents asked for fit" in err


def test_a_log_read_in_the_wrong_format_is_an_error_not_an_empty_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A PostgreSQL log forced through the MariaDB parser: every line is quarantined and
    counted, and the run says nothing was read instead of ending as if all were well."""
    quarantine = tmp_path / "quarantine.ndjson"
    code, out, err = cli(
        capsys, "score", "--quarantine", quarantine, "--format", "mariadb-audit", JSONLOG
    )
    assert code == 2, err
    assert out == ""
    summary, error = err.strip().splitlines()
    assert "0 audit events" in summary and "unrecognised" in summary
    assert error.startswith("trovewatch: error: every line was rejected")
    assert "--format" in error
    assert len(quarantine.read_text().splitlines()) == sum(1 for _ in JSONLOG.open())


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--threshold", "nan"], "finite number"),  # said "less than or equal to 1"
        (["--config", "TREES"], "less than or equal to 5000"),  # 1e8 trees ran on and on
    ],
    ids=["threshold-nan", "trees-unbounded"],
)
def test_settings_that_make_no_sense_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: list[str], words: str
) -> None:
    config = tmp_path / "trovewatch.toml"
    config.write_text("trees = 100000000\n")
    args = [config if a == "TREES" else a for a in option]
    code, out, err = cli(capsys, *score_args(tmp_path, *args, JSONLOG))
    assert_one_line_error(code, err, words)
    assert out == ""


def test_serve_given_log_files_as_score_takes_them_names_the_option_to_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`trovewatch serve /var/log/x.json`, as `score` is called, says to use --follow
    (and why to quote it), instead of argparse's bare "unrecognized arguments"."""
    code = main(["serve", "/var/log/postgresql/postgresql.json"])
    assert_one_line_error(code, capsys.readouterr().err, "--follow", "quoted")


def test_training_on_less_than_a_week_warns_and_on_the_sample_weeks_does_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A DBA who trains on two days of logs gets a model all the same, told that each
    account's largest day and weekdays need at least a week; two weeks say nothing."""
    sample = ROOT / "sample_logs" / "postgresql.json.gz"
    days = "--until", "2026-10-07T00:00:00Z"
    code, _, err = cli(capsys, "train", "--model-dir", tmp_path / "m", *days, sample)
    assert code == 0, err
    assert "warning: the logs cover 2.2 days" in err and "at least a week" in err
    until = "--until", "2026-10-19T00:00:00Z"
    code, _, err = cli(capsys, "train", "--model-dir", tmp_path / "w", *until, sample)
    assert code == 0, err
    assert "warning" not in err


def test_a_log_piped_to_standard_input_scores_as_the_file_does(tmp_path: Path) -> None:
    """``zcat log.gz | trovewatch score -`` (and a gzip stream piped as it is) gives the
    scores the file gives; ``-`` given twice is refused in one line."""
    log = REFERENCE_PG / "postgresql.json"
    command = [sys.executable, "-m", "detector", "score", "--quarantine", tmp_path / "q.ndjson"]

    def score(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(a) for a in (*command, *args)], input=stdin, capture_output=True, timeout=120
        )

    from_file = score(log)
    assert from_file.returncode == 0 and len(ndjson(from_file.stdout.decode())) > 0
    for body in (log.read_bytes(), gzip.compress(log.read_bytes())):
        piped = score("-", stdin=body)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == from_file.stdout
    twice = score("-", "-", stdin=b"x\n")
    assert_one_line_error(twice.returncode, twice.stderr.decode(), "standard input", "twice")


def test_a_duration_given_unquoted_is_told_how_to_write_it_and_where_it_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by hand: ``lateness = 30`` in the config file said only "setting lateness:
    Input should be a valid string", naming neither the file nor how to write it."""
    config = tmp_path / "trovewatch.toml"
    config.write_text("lateness = 30\n")
    code = main(["serve", "--config", str(config), "--state-dir", str(tmp_path / "state")])
    assert_one_line_error(
        code, capsys.readouterr().err, f"setting lateness ({config})", 'lateness = "30s"'
    )
    assert not (tmp_path / "state").exists()


def test_a_state_directory_that_is_a_file_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by hand: ``--state-dir`` given a log file said "FILE/models/current: Not a
    directory"; it says the state directory is not one, and what goes where."""
    log = tmp_path / "postgresql.json"
    log.write_text("")
    code = main(["serve", "--state-dir", str(log), "--port", "0"])
    assert_one_line_error(
        code, capsys.readouterr().err, f"state directory {log}: not a directory", "--follow"
    )
