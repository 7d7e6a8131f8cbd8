"""A real PostgreSQL 15 + pgAudit server's log rotated in the middle of a session, its
files named ``postgresql-%a`` style: ``score`` reads a server's files in the order they
were written, whatever order the shell gives them in.

The logging collector starts a new file at each rotation; the sessions open then go on
in it, their lines naming no user under the default prefix ('%m [%p] '): the user is on
the session's connection line, in the earlier file. Named by weekday, Sunday's file
sorts after Monday's (``postgresql-Mon.log``, ``postgresql-Sun.log``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import schema as S
from detector.ingest import Summary, event_batches, read_events
from tests.integration.conftest import pg_cluster

pytestmark = pytest.mark.postgres

BEFORE, AFTER = 20, 30  # the clerk's statements before and after the rotation
EXTENSIONS = {"stderr": "log", "csvlog": "csv", "jsonlog": "json"}


def wait_for(log_dir: Path, marker: str, timeout: float = 30.0) -> None:
    """Until ``marker`` is in a file of each of the three outputs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(
            any(marker in p.read_text(errors="replace") for p in log_dir.glob(f"*.{ext}"))
            for ext in EXTENSIONS.values()
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{marker!r} did not reach the logs in {timeout}s")


@pytest.fixture(scope="module")
def weekdays(server_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's two files of each output, the first (before the rotation) named
    ``postgresql-Sun``, the second ``postgresql-Mon``, one directory per output."""
    settings = {"log_line_prefix": "%m [%p] ", "log_filename": "postgresql-%H%M%S.log"}
    with pg_cluster(server_dir("pg-order"), settings) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE clerk LOGIN")
            admin.execute("CREATE TABLE desk(id int)")
            admin.execute("INSERT INTO desk SELECT generate_series(1, 100)")
            admin.execute("GRANT SELECT ON desk TO clerk")
            time.sleep(1.1)  # the next file's name (its time, to the second) differs
            admin.execute("SELECT pg_rotate_logfile()")
            with psycopg.connect(pg.dsn("clerk"), application_name="desk") as clerk:
                for i in range(1, BEFORE + 1):
                    clerk.execute(f"SELECT * FROM desk WHERE id <= {i}").fetchall()
                time.sleep(1.1)
                admin.execute("SELECT pg_rotate_logfile()")  # the clerk's session goes on
                time.sleep(0.5)
                for i in range(BEFORE + 1, BEFORE + AFTER + 1):
                    clerk.execute(f"SELECT * FROM desk WHERE id <= {i}").fetchall()
            admin.execute("SELECT 'end-of-order-workload'")
        wait_for(pg.log_dir, "end-of-order-workload")
        out = tmp_path_factory.mktemp("weekdays")
        for output, ext in EXTENSIONS.items():
            files = sorted(Path(pg.log_dir).glob(f"postgresql-*.{ext}"))
            assert len(files) == 3, files  # started, rotated before the session, and in it
            (out / output).mkdir()
            for day, path in zip(("Sun", "Mon"), files[1:], strict=True):
                shutil.copy(path, out / output / f"postgresql-{day}.{ext}")
    return out


@pytest.mark.parametrize("order", ["by name", "by time"])
def test_a_session_across_a_rotation_counts_whatever_order_the_files_are_given_in(
    weekdays: Path, output: str, order: str
) -> None:
    """All 50 of the clerk's statements count, in one session with its user, from
    ``postgresql-Mon`` and ``postgresql-Sun`` given in either order (before, given by
    name, the 30 statements after the rotation were dropped: no user for them)."""
    ext = EXTENSIONS[output]
    sunday, monday = (weekdays / output / f"postgresql-{d}.{ext}" for d in ("Sun", "Mon"))
    files = [monday, sunday] if order == "by name" else [sunday, monday]
    summary = Summary()
    whole, _ = read_events(files)
    streamed = pl.concat(list(event_batches(files, summary)))
    for got in (whole, streamed):
        clerk = got.filter(pl.col(S.ACCOUNT) == "clerk")
        assert clerk.height == BEFORE + AFTER
        assert clerk[S.SESSION].n_unique() == 1
        assert clerk[S.APPLICATION].unique().to_list() == ["desk"]
        assert clerk[S.ROWS].sum() == sum(range(1, BEFORE + AFTER + 1))
