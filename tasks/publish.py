"""The published warehouse: a copy of the working database that analysts open read-only."""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


class DataDirBusy(RuntimeError):
    """Another run holds the data dir."""


@contextmanager
def run_lock(state_dir: Path):
    """Hold the data dir for one run at a time (a scheduled run and a rerun never overlap)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "run.lock"
    with path.open("a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirBusy(
                f"another adbill run is using {state_dir.parent}; wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def publish(state_db: Path, target: Path) -> Path:
    """Replace the published warehouse in one step with a copy of the (closed) working db.

    The copy is written beside the target and renamed over it: a reader that has the old file
    open keeps reading the old file, a new reader sees the new one, nobody sees half of it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed publish
        stale.unlink(missing_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(state_db, tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target
