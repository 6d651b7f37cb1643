"""The benchmark's data dirs: a saved state copied afresh with the inbox files delivered, and
one billing run in a process of its own (bench/billrun.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
    """A fresh data dir at run_dir: a clone of a saved state (none: empty) and the given files.

    Every run uses the same path, so files the state already ingested are recognised by their
    path and stat and skipped without re-reading, as in production. The last run's inbox is
    kept aside (the engine never writes into an inbox) and the closest kept one taken back,
    its extra files removed and the missing ones copied: not a year of usage files copied
    again for each run.
    """
    _keep_inbox(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    _take_inbox(run_dir, src, files)
    if state is not None:
        clone_state(state, run_dir / "state")
        # the statements and lists the state's runs wrote: a run writes over them, as in
        # production (each later day of a month replaces the month's statement files)
        if (state / "out").is_dir():
            clone_state(state / "out", run_dir / "out")
    # the disk work of deleting the last run's files and copying these is done before the
    # timed run starts, not during it
    os.sync()


def save_state(run_dir: Path, dest: Path) -> None:
    """The state dir and the out dir (statements, lists) of run_dir, kept as dest."""
    if dest.exists():
        shutil.rmtree(dest)
    clone_state(run_dir / "state", dest)
    if (run_dir / "out").is_dir():
        clone_state(run_dir / "out", dest / "out")


def clone_state(src: Path, dest: Path) -> None:
    """A copy of a state or out dir: the DuckDB files copied (written in place), every other
    file hard-linked. The engine never writes into a day file, a month's file or a document:
    it writes new ones (a document: a temporary file renamed over the old) and deletes old
    ones, which leaves the saved state's link alone."""

    def link_or_copy(a: str, b: str) -> None:
        if Path(a).name.startswith("adbill.duckdb"):
            shutil.copy2(a, b)
        else:
            os.link(a, b)

    shutil.copytree(src, dest, copy_function=link_or_copy, ignore=shutil.ignore_patterns(*SKIP))


SKIP = ("run.lock", "out")  # the out dir is cloned beside the state, not inside it


def _inboxes(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}-inboxes"


def _keep_inbox(run_dir: Path, keep: int = 2) -> None:
    """The run dir's inbox moved aside (the newest `keep` inboxes kept)."""
    inbox = run_dir / "inbox"
    if not inbox.is_dir():
        return
    store = _inboxes(run_dir)
    store.mkdir(exist_ok=True)
    os.rename(inbox, store / f"{time.time_ns()}")
    for old in sorted(store.iterdir(), key=lambda p: int(p.name))[:-keep]:
        shutil.rmtree(old)


def _take_inbox(run_dir: Path, src: Path, files: list[Path]) -> None:
    """run_dir/inbox holding exactly `files` (with their bytes and stat): the kept inbox that
    shares more of them than it holds others (the most so), trimmed and completed, or fresh
    copies. (Not merely the one sharing the most: trimming a year's inbox down to day 1's
    files and copying the year back for the next run is the disk work this avoids.)"""
    wanted = {str(f.relative_to(src)): f for f in files}
    store, best, best_score = _inboxes(run_dir), None, 0
    for kept in store.iterdir() if store.is_dir() else ():
        listing = _listing(kept)
        shared = sum(1 for rel in listing if rel in wanted)
        score = shared - (len(listing) - shared)
        if score > best_score:
            best, best_score = kept, score
    inbox = run_dir / "inbox"
    if best is not None:
        os.rename(best, inbox)
        for rel in _listing(inbox):
            have, want = inbox / rel, wanted.get(rel)
            if want is None or not _same_stat(have, want):
                have.unlink()
    else:
        inbox.mkdir()
    link_inbox(run_dir, src, files)


def _listing(inbox: Path) -> list[str]:
    return [str(p.relative_to(inbox)) for p in inbox.rglob("*") if p.is_file()]


def _same_stat(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns and sa.st_nlink == 1


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
