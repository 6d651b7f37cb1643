"""The benchmark's inbox: tasks.synthetic.stream (the shared generator, prices from data/),
under the names the bench scripts use, and where it is kept under --workdir."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.synthetic.stream import (  # noqa: E402
    GEN_VERSION,
    START,
    Plan,
    day_events,
    day_files,
    day_of,
    make_plan,
    version,
    warmup_files,
    write_late_usage,
)

__all__ = ["GEN_VERSION", "START", "Plan", "day_events", "day_files", "day_of", "make_plan"]
__all__ += ["src_key", "version", "warmup_files", "write_late_usage"]


def src_key(
    workdir: Path,
    customers: int,
    events: int,
    seed: int,
    active: int | None = None,
    mature: bool = False,
) -> Path:
    """The folder of one inbox and the states billed from it: its parameters, the generator's
    version and the catalog's digest."""
    quiet = f"-a{active}" if active is not None and active < customers else ""
    quiet += "-m" if mature else ""
    return Path(workdir).absolute() / f"c{customers}{quiet}-e{events}-s{seed}-v{version()}"
