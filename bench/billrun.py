"""One billing run in a process of its own: its report, wall seconds and peak memory as JSON.

    python bench/billrun.py DATA_DIR THROUGH [--flow] [--out FILE]

Runs tasks.pipeline.run_billing (the flow's body, stages called directly) or, with --flow,
the Prefect flow `daily_billing`. The process starts fresh so that its peak RSS (VmHWM) is
the billing's own, not the generator's or the benchmark driver's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_bytes() -> int:
    """The process's high-water mark of resident memory (VmHWM), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir")
    p.add_argument("through", type=date.fromisoformat)
    p.add_argument("--flow", action="store_true", help="run the Prefect flow daily_billing")
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    t = time.perf_counter()
    rss_before_import = peak_rss_bytes()
    if args.flow:
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        from flows.daily import daily_billing
    else:
        from tasks.pipeline import run_billing
        from tasks.settings import Settings
    imported = time.perf_counter() - t
    rss_imported = peak_rss_bytes()
    load_before = os.getloadavg()[0]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    busy = machine_busy_seconds()
    t = time.perf_counter()
    if args.flow:
        summary = daily_billing(
            through=args.through, data_dir=str(Path(args.data_dir).absolute()), trigger="bench"
        )
    else:
        report = run_billing(Settings(data_dir=Path(args.data_dir)), args.through, trigger="bench")
        summary = report.summary()
        summary["stage_seconds"] = report.stage_seconds()  # unrounded
        summary["day_seconds"] = [
            {"day": d["day"].isoformat(), "events": d["events"], **d.get("timings", {})}
            for d in report.days
        ]
    wall = time.perf_counter() - t
    used = resource.getrusage(resource.RUSAGE_SELF)
    own = used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime
    out = {
        "wall_seconds": wall,
        # CPU of this process (all its threads): less sensitive than wall time to other
        # work on a shared machine; the load average tells whether there was any
        "cpu_seconds": own,
        # CPU that other processes took meanwhile (0 on a quiet machine; 2 cores here)
        "others_cpu_seconds": max(0.0, machine_busy_seconds() - busy - own),
        "loadavg_1min": [load_before, os.getloadavg()[0]],
        "import_seconds": imported,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_import_bytes": rss_imported,
        "rss_at_start_bytes": rss_before_import,
        "summary": summary,
    }
    text = json.dumps(out, default=str)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
