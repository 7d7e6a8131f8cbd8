"""What the simulator knows it wrote: per-account totals, as the parser should count them."""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from detector.simulate.activity import Statements
from detector.simulate.catalog import Frozen
from detector.simulate.templates import CLASS_CODES, Shape

TOTALS: Final = ("events", "rows_read", "rows_written", "exports", "failed")


class Totals:
    """Running per-account totals of the events a parser should find in the log: the
    jsonlog's (pgAudit's, below) or, with :meth:`add_counted`, the MariaDB rendering's.

    ``events``: audited statements (a ``COPY (SELECT ...) TO`` is two: its SELECT and its
    COPY), failed statements and refused logins; ``rows_read``/``rows_written``: the rows
    the AUDIT lines of READ/WRITE statements carry (COPY and cursors log none);
    ``exports``: events that are exports (``COPY ... TO``, cursors, pg_dump's);
    ``failed``: ERROR and refused-login events.
    """

    def __init__(self, accounts: int) -> None:
        self.values = {name: np.zeros(accounts, dtype=np.int64) for name in TOTALS}

    def add(self, stmts: Statements, frozen: Frozen) -> None:
        combo, account = stmts["combo"], stmts["account"]
        size = len(self.values["events"])
        events = frozen.events[combo]
        cls = frozen.cls[combo]
        shape = frozen.shape[combo]
        logged = np.where(frozen.logs_rows[combo], stmts["rows"], 0)
        weights = {
            "events": events,
            # a dump's catalog query is written as one of its reads but parsed as CATALOG:
            # no rows read, no export
            "rows_read": logged * ((cls == CLASS_CODES["READ"]) & ~frozen.catalog[combo]),
            "rows_written": logged * (cls == CLASS_CODES["WRITE"]),
            "exports": events * (frozen.export[combo] & ~frozen.catalog[combo]),
            "failed": np.isin(shape, [Shape.ERROR, Shape.LOGIN_FAIL]),
        }
        for name, w in weights.items():
            added = np.bincount(account, weights=w.astype(np.float64), minlength=size)
            self.values[name] += np.round(added).astype(np.int64)

    def add_counted(self, counted: pl.DataFrame, names: list[str]) -> None:
        """Add totals counted elsewhere: ``account`` (one of ``names``) and the
        :data:`TOTALS` columns (the MariaDB rendering's, ``mariadb_lines.counted``)."""
        index = counted["account"].replace_strict(dict(zip(names, range(len(names)), strict=True)))
        for name in TOTALS:
            np.add.at(self.values[name], index.to_numpy(), counted[name].to_numpy())

    def frame(self, names: list[str]) -> pl.DataFrame:
        """One row per account: ``account`` and the :data:`TOTALS` columns."""
        return pl.DataFrame({"account": names, **self.values})
