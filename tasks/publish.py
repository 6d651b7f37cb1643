"""The published warehouse: a copy of the working database that analysts open read-only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# the run lock lived here; tasks.pipeline still imports it from this module
from tasks.run_lock import DataDirBusy, run_lock  # noqa: F401


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
