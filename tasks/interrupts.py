"""The signal that stopped a command, as its process saw it: a DuckDB query a signal
interrupts reports `Query interrupted` in the signal's place (flows/cli.py Signals)."""

from __future__ import annotations

import signal
from collections.abc import Callable

# who knows the last signal the command saw (flows/cli.py sets it for one command)
_watcher: Callable[[], int | None] | None = None


def watch(seen: Callable[[], int | None] | None) -> None:
    """Tell interrupts where to ask for the last signal seen (None: nowhere)."""
    global _watcher
    _watcher = seen


def seen() -> str | None:
    """The name of the last signal the command saw (SIGINT, SIGTERM, ...), or None."""
    signum = _watcher() if _watcher is not None else None
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
