"""SIGTERM for ``serve``, from its first line of Python on.

``serve`` takes a second or more to start (imports, the model, the state store). A
SIGTERM then met the default action and ended it with 143, where a SIGTERM later ends it
with 0. So the entry point calls :func:`catch` before any heavy import, and ``serve``
looks at :func:`requested` between its start-up steps and in its running loop: it stops
between two steps, never inside one (the API token file, say, is never left empty).

SIGHUP, the reflex to make a daemon reload (``kill -HUP``), would end ``serve`` by its
default action, and systemd's ``Restart=on-failure`` does not restart a service a SIGHUP
ended: detection would be off until someone noticed. :func:`keep_on_hangup` makes it a
count that ``serve`` answers in its log, and runs on.

Imports nothing heavy: it runs before the command line is imported.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

# What signal.signal takes and returns.
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# A plain flag, not a threading.Event: the handler runs in the main thread, which may be
# holding the Event's lock in Event.wait when the signal comes, and set() would deadlock.
_requested = False


def _request(signum: int, frame: FrameType | None) -> None:
    """The signal handler: record that ``serve`` is asked to stop."""
    global _requested
    _requested = True


def catch(*signals: signal.Signals) -> dict[signal.Signals, Handler]:
    """Have ``signals`` (default SIGTERM) only record a stop request from now on; returns
    the handlers they had, to be put back with :func:`signal.signal`."""
    return {s: signal.signal(s, _request) for s in signals or (signal.SIGTERM,)}


_hangups = 0


def _hangup(signum: int, frame: FrameType | None) -> None:
    global _hangups
    _hangups += 1


def keep_on_hangup() -> None:
    """Have SIGHUP only counted (:func:`hangups`) from now on."""
    signal.signal(signal.SIGHUP, _hangup)


def hangups() -> int:
    """How many SIGHUPs have come since :func:`keep_on_hangup`."""
    return _hangups


def requested() -> bool:
    """Whether a signal caught by :func:`catch` has come."""
    return _requested


def is_serve(argv: list[str]) -> bool:
    """Whether the command line ``argv`` (without the program name) runs ``serve``: its
    first argument that is not the one option before the command, ``--debug``."""
    return [a for a in argv if a != "--debug"][:1] == ["serve"]
