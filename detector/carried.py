"""Which of the fields the features use a log carries, and the refusal of a model
trained on logs that carried others.

Formats differ in what they log: rows (pgAudit with ``log_rows``, MariaDB's slow log),
bytes (MariaDB's slow log, MySQL's ``query_statistics``), read objects, client
addresses, application names. A model trained where a field was absent scores a log
that has it wrongly, and the other way round: against a profile without bytes every
byte count looks unheard of, logs without rows hide every pull from a model that learned
them, and application names a model never saw make every account's application new.
:class:`Evidence` gathers what logs show, batch by batch (``score`` gives it one frame,
``serve`` each frame it reads); :func:`check` compares it with the model's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Self

import polars as pl

from detector import schema as S
from detector.model import ModelError

VOLUME: Final = ("rows", "bytes")
FIELDS: Final = ("rows", "bytes", "objects", "clients", "applications")
# Statements before a field's absence counts as the log's (not this stretch's) doing: a
# short log whose sessions are all local has no client address and says nothing.
ENOUGH: Final = 200
# Fields whose absence from logs being scored is no reason to refuse them: a stretch of
# local connections has no client address, a script no application name, reads of
# functions (``SELECT now()``) no object. Present where the training logs never had
# them, they still are (every value would look new).
PRESENCE_ONLY: Final = ("objects", "clients", "applications")


@dataclass
class Evidence:
    """What the logs read so far have shown of each field."""

    statements: int = 0
    reads: int = 0  # successful reads other than exports (pgAudit logs no rows for those)
    seen: set[str] = field(default_factory=set)
    formats: set[str] = field(default_factory=set)

    def add(self, events: pl.DataFrame) -> Self:
        """Take one frame of events (the event schema) into account."""
        read = (pl.col(S.CLASS) == "READ") & pl.col(S.SUCCESS) & ~pl.col(S.EXPORT).fill_null(False)
        row = events.select(
            read.sum().alias("reads"),
            (read & pl.col(S.ROWS).is_not_null()).any().alias("rows"),
            (read & pl.col(S.BYTES).is_not_null()).any().alias("bytes"),
            (read & (pl.col(S.OBJECTS).list.len() > 0)).any().alias("objects"),
            pl.col(S.CLIENT_IP).is_not_null().any().alias("clients"),
            pl.col(S.APPLICATION).is_not_null().any().alias("applications"),
        ).row(0, named=True)
        self.statements += events.height
        self.reads += row["reads"] or 0
        self.seen |= {name for name in FIELDS if row[name]}
        self.formats |= set(events[S.SOURCE_FORMAT].drop_nulls().unique().to_list())
        return self

    def found(self) -> dict[str, bool]:
        """Each field the logs are known to have (True) or to lack (False); a field the
        logs have not yet shown either way is left out."""
        out: dict[str, bool] = {}
        if self.reads:
            out |= {name: name in self.seen for name in ("rows", "bytes", "objects")}
        for name in ("clients", "applications"):
            if name in self.seen or self.statements >= ENOUGH:
                out[name] = name in self.seen
        return out

    def volume(self) -> list[str] | None:
        """The volumes the logs carry for reads; None with no read to tell from."""
        found = self.found()
        return [name for name in VOLUME if found[name]] if "rows" in found else None

    def training(self) -> dict[str, Any]:
        """What a manifest records of the training logs (``training`` entries)."""
        found = self.found()
        return {
            "volume": self.volume(),
            "fields": sorted(n for n in FIELDS if n not in VOLUME and found.get(n)),
            "fields_absent": sorted(n for n in FIELDS if n not in VOLUME and found.get(n) is False),
        }


def learned(training: dict[str, Any]) -> dict[str, bool]:
    """The fields a model's training logs had (True) or lacked (False), from its manifest."""
    out: dict[str, bool] = {}
    if training.get("volume") is not None:
        out |= {name: name in training["volume"] for name in VOLUME}
    out |= dict.fromkeys(training.get("fields", []), True)
    out |= dict.fromkeys(training.get("fields_absent", []), False)
    return out


def check(evidence: Evidence, training: dict[str, Any]) -> None:
    """Raise :class:`ModelError`, naming what differs, when the logs are known to carry
    other fields than the training logs described by a manifest's ``training``."""
    had, found = learned(training), evidence.found()
    found = {n: v for n, v in found.items() if v or n not in PRESENCE_ONLY}
    differ = [n for n in FIELDS if n in had and n in found and had[n] != found[n]]
    if not differ:
        return
    trained_on = ", ".join(training.get("formats", [])) or "?"
    formats = ", ".join(sorted(evidence.formats)) or "?"
    raise ModelError(
        f"the model was trained on logs with {_words(had)} ({trained_on}); these logs "
        f"have {_words(found)} ({formats}): {' and '.join(differ)} differ. Train a model on "
        "logs like these (`trovewatch train`) to score them."
    )


def _words(has: dict[str, bool]) -> str:
    present = ", ".join(n for n in FIELDS if has.get(n)) or "no volume"
    absent = ", ".join(n for n in FIELDS if has.get(n) is False)
    return present + (f" but no {absent}" if absent and present != "no volume" else "")
