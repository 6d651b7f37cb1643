"""The machine and the code a benchmark measures: the engine's digest, git, CPU and memory,
and waiting for the rest of a shared machine to go quiet."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
# seconds to wait for a quiet machine before each measurement (--quiet-wait)
quiet = {"wait": 120.0}


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def engine_version() -> str:
    """A digest of the engine's code, SQL and catalog: cached states are per engine version."""
    h = hashlib.sha256()
    for p in sorted([*ROOT.glob("tasks/*.py"), *ROOT.glob("sql/**/*.sql"), *ROOT.glob("data/*")]):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def git_head() -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    if os.environ.get("BENCH_GIT_COMMIT"):  # measuring an exported copy of a commit
        return {"commit": os.environ["BENCH_GIT_COMMIT"], "subject": "", "exported": True}
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_engine_changes": bool(git("status", "--porcelain", "tasks", "sql", "flows")),
    }


def machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "polars": __import__("polars").__version__,
    }


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
        return sum(int(x) for i, x in enumerate(f[1:9]) if i not in (3, 4)) / os.sysconf(
            "SC_CLK_TCK"
        )
    except (OSError, ValueError):
        return 0.0


def disk_busy_ms() -> int:
    """Milliseconds the machine's disks have spent doing I/O since boot (/proc/diskstats
    io_ticks, whole disks only: /sys/block without loop and ram devices)."""
    try:
        disks = {d.name for d in Path("/sys/block").iterdir()}
        disks = {d for d in disks if not d.startswith(("loop", "ram", "zram"))}
        total = 0
        for line in Path("/proc/diskstats").read_text().splitlines():
            f = line.split()
            if len(f) > 12 and f[2] in disks:
                total += int(f[12])
        return total
    except (OSError, ValueError):
        return 0


def wait_quiet(
    max_wait: float, cores: float = 0.3, window: float = 3.0, disk: float = 0.1
) -> float | None:
    """Wait (at most max_wait s) until the rest of the machine uses under `cores` CPUs and
    its disks are busy under `disk` of the time.

    The machine may be shared (other sessions' tests): a run started in a busy moment
    measures the contention, not the engine. The disk matters too: restoring a large state
    deletes and copies gigabytes, and this disk (ext4 mounted with `discard`) may still be
    trimming and writing back when the copy returns (a year-old state's last day took
    5.54 s right after its restore, 3.77 and 4.67 s after a 30 s pause). Returns the CPUs
    the others used last.
    """
    if max_wait <= 0:
        return None
    deadline = time.monotonic() + max_wait
    while True:
        b, d = busy_seconds(), disk_busy_ms()
        time.sleep(window)
        used = (busy_seconds() - b) / window
        io = (disk_busy_ms() - d) / (window * 1000)
        if (used < cores and io < disk) or time.monotonic() >= deadline:
            return used
