"""The data dir held by one run at a time: a lock that waits a while for the other run."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

# the working database's file name in the state dir (tasks.settings.Settings.state_db)
STATE_DB = "adbill.duckdb"
DEFAULT_WAIT_SECONDS = 30 * 60
MOST_WAIT_SECONDS = 24 * 60 * 60
POLL_SECONDS = 1.0
LOG = logging.getLogger("adbill.lock")


class DataDirBusy(RuntimeError):
    """Another run holds the data dir, or another process holds its working database."""


def busy_wait_seconds() -> float:
    """How long a run waits for a busy data dir: ADBILL_BUSY_WAIT_SECONDS (default 1800)."""
    text = os.environ.get("ADBILL_BUSY_WAIT_SECONDS", "")
    if not text:
        return DEFAULT_WAIT_SECONDS
    # ASCII digits, a fraction allowed (float() would also take inf, nan, 1e9 and other
    # scripts' digits); at most a day: the next night's run comes then
    written = re.fullmatch(r"\s*[0-9]{1,9}(\.[0-9]{1,9})?\s*", text)
    if written is None or float(text) > MOST_WAIT_SECONDS:
        from tasks.settings import SettingError

        raise SettingError(
            f"ADBILL_BUSY_WAIT_SECONDS={text!r} is not a number of seconds from 0 to "
            f"{MOST_WAIT_SECONDS} (a day)"
        )
    return float(text)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


@contextmanager
def run_lock(
    state_dir: Path,
    wait: float | None = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the data dir for one run (a scheduled run and a rerun never overlap).

    A data dir held by another run, or a working database another process has open (an
    analyst's session by mistake), is waited for up to `wait` seconds (default
    ADBILL_BUSY_WAIT_SECONDS, 30 minutes), with a log line; then DataDirBusy, one line.
    """
    wait = busy_wait_seconds() if wait is None else wait
    tell = say or LOG.warning
    deadline = time.monotonic() + wait
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "run.lock").open("a+") as f:
        if not _try_flock(f.fileno()):
            tell(
                f"another adbill run is using {state_dir.parent}; waiting up to "
                f"{_minutes(wait)} for it to finish (ADBILL_BUSY_WAIT_SECONDS)"
            )
            while not _try_flock(f.fileno()):
                if time.monotonic() >= deadline:
                    raise DataDirBusy(
                        f"another adbill run is using {state_dir.parent}; waited "
                        f"{_minutes(wait)}; wait for it to finish, then retry"
                    )
                time.sleep(POLL_SECONDS)
        try:
            _wait_for_state_db(state_dir / STATE_DB, deadline, wait, tell)
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextmanager
def no_run_starting(state_dir: Path) -> Iterator[bool]:
    """A shared hold of the run lock while a reader (status, a plan) reads the working state
    (True), or False when a run holds the data dir (the working state is then its own)."""
    path = state_dir / "run.lock"
    try:  # (opened to read: status on a read-only data dir, a backup's mount, works)
        f = path.open("rb")
    except OSError:  # none yet (no run started), or unreadable: no run can be told holding it
        yield True
        return
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def lock_holder(exc: BaseException) -> str:
    """Who holds a database file, from DuckDB's refusal to open it ("PID n")."""
    pid = re.search(r"\(PID (\d+)\)", str(exc))
    return f"PID {pid.group(1)}" if pid else "a DuckDB lock"


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_state_db(path: Path, deadline: float, wait: float, tell) -> None:
    """Wait until no other process has the working database open (DuckDB's own file lock)."""
    told = False
    while True:
        holder = state_db_holder(path)
        if holder is None:
            return
        if time.monotonic() >= deadline:
            raise DataDirBusy(
                f"the working state {path} is open in another process ({holder}); waited "
                f"{_minutes(wait)}; close that session (analysts open the published "
                "warehouse, never state/), then retry"
            )
        if not told:
            tell(
                f"the working state {path} is open in another process ({holder}); waiting up "
                f"to {_minutes(wait)} for it to close"
            )
            told = True
        time.sleep(POLL_SECONDS)


def is_lock_error(exc: BaseException) -> bool:
    """DuckDB's refusal to open a file another process holds (its wording, not the word
    "lock" anywhere in the message: a path may hold it, `clock-billing/`)."""
    return "could not set lock on file" in str(exc).lower()


def state_db_holder(path: Path) -> str | None:
    """The process that holds the database file's lock ("PID n" as DuckDB names it), or None
    when this process can open it for writing (a connection of this process shares it)."""
    if not path.exists():
        return None
    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as exc:
        if not is_lock_error(exc):
            from tasks.db import damaged

            if (error := damaged(path, exc)) is not None:  # its path and what to do
                raise error from exc
            raise
        return lock_holder(exc)
    return None
