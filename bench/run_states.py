"""The benchmark's data dirs: a saved state copied afresh with the inbox files delivered, and
one billing run in a process of its own (bench/billrun.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def link_inbox(data_dir: Path, src: Path, files: list[Path]) -> None:
    """Deliver files into the data dir's inbox: copies with the same bytes and stat (a hard
    link is turned away as not a regular file, billing-rules §3)."""
    for f in files:
        dest = data_dir / "inbox" / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(f, dest)


def restore(run_dir: Path, state: Path | None, src: Path, files: list[Path]) -> None:
    """A fresh data dir at run_dir: a copy of a saved state (none: empty) and the given files.

    Every run uses the same path, so files the state already ingested are recognised by their
    path and stat and skipped without re-reading, as in production.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "inbox").mkdir(parents=True)
    if state is not None:
        shutil.copytree(state, run_dir / "state", ignore=shutil.ignore_patterns("run.lock", "out"))
        # the statements and lists the state's runs wrote: a run writes over them, as in
        # production (each later day of a month replaces the month's statement files)
        if (state / "out").is_dir():
            shutil.copytree(state / "out", run_dir / "out")
    link_inbox(run_dir, src, files)
    # the disk work of deleting the last run's files and copying these is done before the
    # timed run starts, not during it
    os.sync()


def save_state(run_dir: Path, dest: Path) -> None:
    """The state dir and the out dir (statements, lists) of run_dir, kept as dest."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run_dir / "state", dest, ignore=shutil.ignore_patterns("run.lock"))
    if (run_dir / "out").is_dir():
        shutil.copytree(run_dir / "out", dest / "out")


def billrun(data_dir: Path, through, *, flow: bool = False) -> dict:
    """One run through `through` in a fresh process; its JSON (bench/billrun.py)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(HERE / "billrun.py"), str(data_dir), str(through), "--out", str(out)]
    if flow:
        cmd.append("--flow")
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"billing run through {through} failed:\n{r.stderr[-4000:]}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
