"""Shard work exchanged as Parquet files, so that workers never open the warehouse."""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import date
from pathlib import Path

import polars as pl

from tasks.deduct import ShardDraws, ShardInputs, draw_shard, load_shard


def write_shard_inputs(inputs: ShardInputs, directory: Path) -> Path:
    """Write what a worker needs to draw one shard: three Parquet files and the day's numbers."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs.events.write_parquet(directory / "events.parquet")
    inputs.pools.write_parquet(directory / "pools.parquet")
    inputs.arrears.write_parquet(directory / "arrears.parquet")
    meta = {"day_start_us": inputs.day_start_us, "day_number": inputs.day_number}
    (directory / "day.json").write_text(json.dumps(meta))
    return directory


def draw_shard_files(in_dir: str, out_dir: str) -> dict:
    """On a worker: read a shard's inputs, draw it, write its ledger entries and pool figures."""
    src, dst = Path(in_dir), Path(out_dir)
    meta = json.loads((src / "day.json").read_text())
    draws = draw_shard(
        ShardInputs(
            events=pl.read_parquet(src / "events.parquet"),
            pools=pl.read_parquet(src / "pools.parquet"),
            arrears=pl.read_parquet(src / "arrears.parquet"),
            day_start_us=meta["day_start_us"],
            day_number=meta["day_number"],
        )
    )
    dst.mkdir(parents=True, exist_ok=True)
    # each file written whole under another name, then renamed: a shard Dask draws again
    # (a worker lost) never rewrites a file in place while the flow reads the first draw's
    for name, frame in (("entries", draws.entries), ("pool_days", draws.pool_days)):
        part = dst / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        frame.write_parquet(part)
        os.replace(part, dst / f"{name}.parquet")
    return {"events": draws.events, "out_dir": str(dst), "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MiB; 0 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def load_shard_files(con, day: date, out_dir: str) -> None:
    """Load a drawn shard's results into the working database."""
    d = Path(out_dir)
    load_shard(
        con,
        day,
        ShardDraws(
            entries=pl.read_parquet(d / "entries.parquet"),
            pool_days=pl.read_parquet(d / "pool_days.parquet"),
            events=0,
        ),
    )


def clear(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
