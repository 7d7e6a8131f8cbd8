"""`trovewatch serve` under faults: killed with SIGKILL at random moments while the log
is written, rotated by rename and by copytruncate, it ends with exactly the per-account
totals that were written: no event lost, none counted twice."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import polars as pl
import pytest

from detector import pipeline
from detector import schema as S
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
TOKEN = "fault-test-token"


def expected_totals(text: bytes, tmp: Path) -> dict[str, tuple[int, int]]:
    """Per account: (statements, rows read), as the batch reader counts the same lines."""
    path = tmp / "expected.json"
    path.write_bytes(text)
    events, _ = pipeline.read_events([path])
    totals = events.group_by(S.ACCOUNT).agg(
        pl.col(S.SUCCESS).sum().alias("statements"),
        pl.col(S.ROWS).filter(pl.col(S.CLASS) == "READ").sum().alias("rows"),
    )
    return {a: (int(n), int(r)) for a, n, r in totals.iter_rows() if a is not None}


def serving_the_sample(tmp_path: Path, lines: int) -> tuple[Serve, Path]:
    """A serve started on the sample log's first ``lines`` lines (not waited for), and
    the file its standard error goes to."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(gzip.decompress(SAMPLE.read_bytes()).splitlines(True)[:lines]))
    serve = Serve(str(log), tmp_path / "state")
    said = tmp_path / "serve.log"
    serve.start(log=said)
    return serve, said


class Serve:
    def __init__(self, pattern: str, state: Path) -> None:
        self.port = free_port()
        self.pattern, self.state = pattern, state
        self.scopes = "read"  # of TOKEN
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        stdin: int | None = None,
        open_files: int | None = None,
        log: Path | None = None,
        unprivileged: bool = False,
    ) -> None:
        """Start it; ``open_files``: its soft limit on open files (the hard one kept);
        ``log``: where its standard error goes; ``unprivileged``: without root's
        power to read any file (as the trovewatch user of the systemd unit)."""
        env = {
            **os.environ,
            "TROVEWATCH_API_TOKENS": f"{TOKEN}:{self.scopes}",
            "TROVEWATCH_LATENESS": "1s",
            "TROVEWATCH_CHECKPOINT_INTERVAL": "0.2",
        }
        cmd = [sys.executable, "-m", "detector", "serve", "--follow", self.pattern]
        cmd += ["--state-dir", str(self.state), "--port", str(self.port)]
        if unprivileged and os.geteuid() == 0:
            caps = "-dac_override,-dac_read_search"
            cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]

        def limit() -> None:
            if open_files is not None:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb") if log is not None else subprocess.DEVNULL,
            preexec_fn=limit,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the API answers: the service is reading (so a kill lands mid-work)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def settle(
        self, expected: dict[str, tuple[int, int]], timeout: float = 90
    ) -> dict[str, tuple[int, int]] | None:
        """Per-account totals once they equal ``expected``, or the last seen at timeout."""
        deadline = time.monotonic() + timeout
        got = self.totals(sorted(expected))
        while got != expected and time.monotonic() < deadline:
            time.sleep(0.3)
            got = self.totals(sorted(expected))
        return got

    def totals(self, accounts: list[str]) -> dict[str, tuple[int, int]] | None:
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{self.port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            ) as api:
                out = {}
                for account in accounts:
                    got = api.get(f"/v1/accounts/{account}")
                    if got.status_code != 200:
                        return None
                    t = got.json()["totals"]
                    out[account] = (t["statements"], t["rows_read"] or 0)
                return out
        except httpx.TransportError:
            return None


def rotate(logs: Path) -> None:
    """Rename rotation: the server renames its log and creates a new one."""
    (logs / "postgresql.json").rename(logs / "postgresql.json.1")


def copytruncate(logs: Path) -> None:
    """logrotate's copytruncate: copy the log, then truncate it in place."""
    live = logs / "postgresql.json"
    (logs / "postgresql.json.2").write_bytes(live.read_bytes())
    with live.open("r+b") as fh:
        fh.truncate(0)


# Percent of the lines written -> what happens then. "kill" is SIGKILL (restarted at
# once); "stop" kills and leaves it down until "start", so what happens between is
# done while it is stopped.
SCENARIOS = {
    "running": {33: ["rotate"], 66: ["copytruncate"]},
    "stopped": {30: ["stop", "rotate", "start"], 60: ["stop", "copytruncate", "start"]},
}


@pytest.mark.parametrize(("scenario", "seed"), [("running", 1), ("running", 2), ("stopped", 3)])
def test_kill_9_and_rotation_lose_and_double_nothing(
    tmp_path: Path, scenario: str, seed: int
) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    day = [
        line
        for line in lines
        if b'"timestamp":"2026-10-19' in line or b'"timestamp":"2026-10-20' in line
    ]
    expected = expected_totals(b"".join(day), tmp_path)
    logs = tmp_path / "log"
    logs.mkdir()
    live = logs / "postgresql.json"
    serve = Serve(str(logs / "postgresql.json*"), tmp_path / "state")
    rng = random.Random(seed)
    plan: dict[int, list[str]] = {p: list(a) for p, a in SCENARIOS[scenario].items()}
    for percent in rng.sample(range(5, 95), 2):  # and two kills at random moments
        plan.setdefault(percent, []).insert(0, "kill")
    serve.start()
    serve.wait_ready()
    try:
        batches = [day[i : i + 20] for i in range(0, len(day), 20)]
        for n, batch in enumerate(batches):
            with live.open("ab") as fh:
                # Write some lines in two halves, as a server's buffered writes do.
                text = b"".join(batch)
                cut = rng.randrange(len(text))
                fh.write(text[:cut])
                fh.flush()
                fh.write(text[cut:])
            for percent in [p for p in sorted(plan) if p <= n * 100 // len(batches)]:
                for action in plan.pop(percent):
                    if action in ("kill", "stop"):
                        serve.kill()
                    if action in ("kill", "start"):
                        time.sleep(rng.random() / 2)
                        serve.start()
                        serve.wait_ready()
                    if action == "rotate":
                        rotate(logs)
                    if action == "copytruncate":
                        copytruncate(logs)
            time.sleep(0.05)
        assert serve.settle(expected) == expected
    finally:
        serve.stop()


def test_truncation_in_place_restarts_from_the_beginning(tmp_path: Path) -> None:
    """A log truncated in place after it was read, then written again: the new lines
    are read from offset 0, the old ones are not counted again."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    first = [line for line in lines if b'"timestamp":"2026-10-19 0' in line]
    second = [line for line in lines if b'"timestamp":"2026-10-19 1' in line]
    expected = expected_totals(b"".join(first + second), tmp_path)
    logs = tmp_path / "log"
    logs.mkdir()
    live = logs / "postgresql.json"
    live.write_bytes(b"".join(first))
    serve = Serve(str(live), tmp_path / "state")
    serve.start()
    serve.wait_ready()
    try:
        (tmp_path / "first").mkdir()
        read_first = expected_totals(b"".join(first), tmp_path / "first")
        assert serve.settle(read_first) == read_first  # all written so far is read
        with live.open("r+b") as fh:
            fh.truncate(0)
        live.write_bytes(b"".join(second))
        assert serve.settle(expected) == expected
    finally:
        serve.stop()


def test_stdin_is_a_source(tmp_path: Path) -> None:
    """`--follow -`: lines piped in are parsed (format detected) and scored."""
    day = [
        line
        for line in gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
        if b'"timestamp":"2026-10-19' in line
    ]
    expected = expected_totals(b"".join(day), tmp_path)
    serve = Serve("-", tmp_path / "state")
    serve.start(stdin=subprocess.PIPE)
    assert serve.proc is not None and serve.proc.stdin is not None
    try:
        serve.proc.stdin.write(b"".join(day))
        serve.proc.stdin.flush()
        assert serve.settle(expected) == expected
    finally:
        serve.stop()


def test_serve_refuses_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "detector", "serve", "--port", str(port)]
        run = subprocess.run(
            [*cmd, "--state-dir", str(tmp_path / "state")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("trovewatch: error: cannot listen on")


def _importing(pid: int) -> bool:
    """Whether ``pid`` has loaded a compiled module from site-packages: the interpreter
    has started and serve is importing its libraries (a second or more of its start)."""
    try:
        return (
            re.search(rb"site-packages/\S+\.so", Path(f"/proc/{pid}/maps").read_bytes()) is not None
        )
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6, 1.0, 1.5])
def test_sigterm_while_serve_starts_stops_it_cleanly(tmp_path: Path, delay: float) -> None:
    """SIGTERM (systemctl stop, a pod deleted) while serve is still importing, loading
    the model or opening its state: exit 0 with no traceback, as later (was: killed by
    the signal, 143), and the API token file, if made, is whole. ``delay`` counts from
    the start of the imports, so the signal lands at the same step on a slow machine."""
    logs = tmp_path / "log"
    logs.mkdir()
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "detector", "serve", "--follow", str(logs / "*.json")]
    cmd += ["--state-dir", str(state), "--port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _importing(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    token = state / "api-token"
    assert not token.exists() or token.read_text().strip()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited; its parent (init, once orphaned) has not reaped it yet
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_api_process_ends_with_serve_even_on_kill_9(tmp_path: Path) -> None:
    """The API runs in a child process, at a higher CPU priority than the ingest; serve
    killed with SIGKILL leaves no process holding the port: a restart on the same port
    answers at once."""
    log = tmp_path / "postgresql.json"
    with gzip.open(SAMPLE) as sample:
        log.write_bytes(sample.read(200_000).rsplit(b"\n", 1)[0] + b"\n")
    serve = Serve(str(log), tmp_path / "state")
    serve.start()
    try:
        serve.wait_ready()
        assert serve.proc is not None
        api = [p for p in _children(serve.proc.pid) if b"spawn_main" in _cmdline(p)]
        assert len(api) == 1, "the API runs in one child process"
        # ingest_nice (10): on a busy machine the API's answers come before parsing.
        assert set(_ingest_nices(serve.proc.pid)) == {min(_nice(api[0]) + 10, 19)}
        serve.kill()
        assert _gone(api[0]), "the API process outlived serve"
        serve.start()
        serve.wait_ready(timeout=60)
        assert serve.proc is not None and serve.proc.poll() is None
        api = [p for p in _children(serve.proc.pid) if b"spawn_main" in _cmdline(p)]
        serve.proc.terminate()
        assert serve.proc.wait(timeout=30) == 0
        assert all(_gone(p) for p in api)
    finally:
        serve.stop()


def _nice(pid: int) -> int:
    """The nice value of a process's main thread."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _ingest_nices(pid: int) -> list[int]:
    """The nice values of serve's threads but the main one, which only watches the API
    process (and keeps the API's priority, to start it again with)."""
    return [
        int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        for task in Path(f"/proc/{pid}/task").iterdir()
        if task.name != str(pid)
    ]


def _api_process(serve: Serve, other_than: int | None = None, timeout: float = 30) -> int:
    """The process id of serve's API process (once one other than ``other_than`` runs)."""
    assert serve.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in _children(serve.proc.pid) if b"spawn_main" in _cmdline(p)]
        found = [p for p in found if p != other_than]
        if found:
            assert len(found) == 1, "the API runs in one child process"
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no API process")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_an_api_process_killed_is_started_again_while_the_ingest_goes_on(
    tmp_path: Path,
) -> None:
    """``kill -9`` of the API process (the one listening on the port, what a hand that
    meant to stop trovewatch finds with ``ss -ltnp``; or the out-of-memory killer): it is
    started again at its own priority, on the same port, said in the log and counted,
    while the ingest process goes on reading (before: serve stopped with it, exit 1)."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(True)
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(lines[:2000]))
    serve = Serve(str(log), tmp_path / "state")
    said = tmp_path / "serve.log"
    serve.start(log=said)
    try:
        serve.wait_ready()
        assert serve.proc is not None
        first = _api_process(serve)
        priority = _nice(first)
        os.kill(first, signal.SIGKILL)
        assert _gone(first)
        again = _api_process(serve, other_than=first)
        serve.wait_ready(timeout=60)
        assert serve.proc.poll() is None, "serve ended with its API process"
        assert _nice(again) == priority
        assert "the API process ended (killed by SIGKILL); starting it again" in said.read_text()
        with log.open("ab") as more:  # the ingest reads on
            more.write(b"".join(lines[2000:4000]))
        expected = expected_totals(b"".join(lines[:4000]), tmp_path)
        assert serve.settle(expected) == expected
        metrics = httpx.get(
            f"http://127.0.0.1:{serve.port}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).text
        assert "trovewatch_api_restarts_total 1.0" in metrics.splitlines()
    finally:
        serve.stop()
    assert serve.proc.returncode == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_an_api_process_that_stops_answering_is_ended_and_started_again(tmp_path: Path) -> None:
    """``kill -STOP`` of the API process (or its event loop stuck): serve asks it for
    /healthz every 10 s, and after 30 s without an answer ends it and starts another on
    the same port (before: the port accepted connections and answered none, until an
    operator restarted the whole service; the ingest went on unseen)."""
    serve, said = serving_the_sample(tmp_path, 500)
    try:
        serve.wait_ready()
        assert serve.proc is not None
        stopped = _api_process(serve)
        os.kill(stopped, signal.SIGSTOP)
        began = time.monotonic()
        _api_process(serve, other_than=stopped, timeout=90)
        serve.wait_ready(timeout=30)
        assert time.monotonic() - began < 60
        assert _gone(stopped)
        assert serve.proc.poll() is None
        text = said.read_text()
        assert f"the API process has not answered on 127.0.0.1 port {serve.port} for " in text
        assert "the API process ended (killed by SIGKILL); starting it again" in text
    finally:
        serve.stop()
    assert serve.proc.returncode == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_an_api_process_that_keeps_ending_stops_serve(tmp_path: Path) -> None:
    """A crash loop is not hidden: past 5 restarts in 5 minutes serve stops, exit 1,
    saying how often and how the API process ended, for systemd (or whoever runs it)."""
    serve, said = serving_the_sample(tmp_path, 500)
    try:
        serve.wait_ready()
        assert serve.proc is not None
        api: int | None = None
        for _ in range(6):
            api = _api_process(serve, other_than=api)
            os.kill(api, signal.SIGKILL)
            assert _gone(api)
        assert serve.proc.wait(timeout=30) == 1
    finally:
        serve.stop()
    text = said.read_text()
    assert text.count("starting it again") == 5
    assert "the API process ended 6 times in 300 s, the last killed by SIGKILL; stopping" in text


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_request_uvicorn_cannot_parse_is_answered_in_json(tmp_path: Path) -> None:
    """A 100 KB query string (too long for the HTTP parser) or a malformed request line:
    400 with a JSON body like every other error (before: text/plain from uvicorn)."""
    logs = tmp_path / "log"
    logs.mkdir()
    serve = Serve(str(logs / "postgresql.json*"), tmp_path / "state")
    serve.start()
    try:
        serve.wait_ready()
        for request in [
            b"GET /v1/alerts?x=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        ]:
            with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), answer[:200]
            assert b"content-type: application/json" in head.lower()
            assert json.loads(body)["error"]
    finally:
        serve.stop()


def test_more_followed_files_than_the_soft_open_files_limit_are_all_read(
    tmp_path: Path,
) -> None:
    """A log directory of more files than the soft limit on open files (1,024 under
    systemd; 256 here): serve raises the limit to the hard one and reads every file
    (before: past the limit the files, the state database and the quarantine could not
    be opened; /readyz said no file matched)."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:1200]
    logs = tmp_path / "log"
    logs.mkdir()
    for n in range(400):  # a month of hourly files, in small
        (logs / f"postgresql-{n:04d}.json").write_bytes(b"".join(lines[n * 3 : n * 3 + 3]))
    expected = expected_totals(b"".join(lines), tmp_path)
    serve = Serve(str(logs / "*.json"), tmp_path / "state")
    serve.start(open_files=256)
    serve.wait_ready()
    try:
        assert serve.settle(expected, timeout=120) == expected
    finally:
        serve.stop()


def test_a_stopped_ingest_process_is_not_ready_within_seconds_and_the_store_still_answers(
    tmp_path: Path,
) -> None:
    """``kill -STOP`` of the ingest process (or a process stuck whole): /readyz and
    /metrics answer 503 within seconds, saying so, however many probes wait at once, and
    the API still answers from the state database (before: every /readyz and /metrics
    hung until the process went on, each holding one of the API's worker threads)."""
    log = tmp_path / "postgresql.json"
    log.write_bytes(b"".join(gzip.decompress(SAMPLE.read_bytes()).splitlines(True)[:2000]))
    expected = expected_totals(log.read_bytes(), tmp_path)
    account = sorted(expected)[0]
    serve = Serve(str(log), tmp_path / "state")
    serve.start()
    serve.wait_ready()
    assert serve.proc is not None
    base = f"http://127.0.0.1:{serve.port}"
    try:
        deadline = time.monotonic() + 60
        while not httpx.get(f"{base}/readyz").is_success:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        # Ready is not yet stored: on busy cores the first windows close a little later.
        assert serve.settle({account: expected[account]}) == {account: expected[account]}
        os.kill(serve.proc.pid, signal.SIGSTOP)

        def probe(path: str) -> tuple[int, str, float]:
            began = time.monotonic()
            got = httpx.get(f"{base}{path}", timeout=30)
            return got.status_code, got.text, time.monotonic() - began

        with ThreadPoolExecutor(50) as threads:  # more than the API's 40 worker threads
            probes = list(threads.map(probe, ["/readyz"] * 45 + ["/metrics"] * 5))
        for status, text, took in probes:
            assert status == 503 and "the ingest process has not answered in 5 s" in text
            assert took < 15
        stored = httpx.get(
            f"{base}/v1/accounts/{account}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert stored.status_code == 200
        os.kill(serve.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while not httpx.get(f"{base}/readyz", timeout=30).is_success:
            assert time.monotonic() < deadline, "not ready again once it went on"
            time.sleep(0.2)
    finally:
        os.kill(serve.proc.pid, signal.SIGCONT)
        serve.stop()


def test_a_sighup_is_answered_in_the_log_and_serve_runs_on(tmp_path: Path) -> None:
    """``kill -HUP``, the reflex to make a daemon reload, to serve and to its API process:
    both run on, ready, and the log says there is nothing to reload (before: SIGHUP's
    default action ended serve, and systemd's Restart=on-failure does not restart a
    service a SIGHUP ended)."""
    serve, said = serving_the_sample(tmp_path, 2000)
    serve.wait_ready()
    assert serve.proc is not None
    try:
        for pid in [serve.proc.pid, *_children(serve.proc.pid)]:
            os.kill(pid, signal.SIGHUP)
        time.sleep(2)
        assert serve.proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{serve.port}/healthz").is_success
        assert "SIGHUP: serve has nothing to reload" in said.read_text()
    finally:
        serve.stop()
    assert serve.proc.returncode == 0


def test_a_log_serve_may_not_read_is_named_on_readiness_and_read_once_it_may(
    tmp_path: Path,
) -> None:
    """The first thing a DBA meets: serve runs as its own user, and the server's log is
    not readable to it (PostgreSQL's log_file_mode is 0600 by default, logrotate's
    ``create 0600``). /readyz answers 503 naming the file, the error and what to do, a
    gauge counts it, the log says it once; given read access, the file is read whole
    (before: /readyz said ready, no problem, nothing in the log, nothing read)."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(True)[:2000]
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "postgresql.json"
    log.write_bytes(b"".join(lines))
    log.chmod(0)
    serve = Serve(str(logs / "*.json"), tmp_path / "state")
    said = tmp_path / "serve.log"
    serve.start(log=said, unprivileged=True)
    base = f"http://127.0.0.1:{serve.port}"
    try:
        serve.wait_ready()
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{base}/readyz")).is_success:
            assert time.monotonic() < deadline, "readyz stayed ready"
            time.sleep(0.2)
        assert ready.status_code == 503
        (problem,) = ready.json()["problems"]
        assert problem.startswith(f"cannot read {log}: Permission denied; nothing of it")
        assert "log_file_mode = 0640" in problem
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        gauge = f'trovewatch_files_unreadable{{source="{logs / "*.json"}"}} 1.0'
        assert gauge in metrics.text.splitlines()
        time.sleep(1)  # a few more polls: said once, not at every poll
        assert said.read_text().count(f"cannot read {log}") == 1

        log.chmod(0o640)
        expected = expected_totals(b"".join(lines), tmp_path)
        assert serve.settle(expected) == expected
        assert httpx.get(f"{base}/readyz").is_success
    finally:
        serve.stop()
