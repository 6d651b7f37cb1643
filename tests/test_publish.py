"""Safe publishing: a run that fails or is killed anywhere leaves the published warehouse as it
was; readers never make a run fail and never see half a day; a rerun repairs everything."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

import tasks.publish
from tests.ops_helpers import (
    PROJECT_ROOT,
    assert_same,
    bill,
    billing_facts,
    deliver,
    fail_at,
    query,
    scenario,
    snapshot,
    warehouse,
)

SC = scenario(days=12, customers=6, events_per_day=8, seed=5)
BASE_DAYS = 6
STAGES = [
    "ingest",
    "deduct",
    "expire",
    "daily",
    "invariants",
    "suspensions",
    "statements",
    "documents",
]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_runs(snap: dict) -> dict:
    """billing_runs says which run billed a day; after a failure and a rerun that differs."""
    return {k: v for k, v in snap.items() if k != "billing_runs"}


def prepare(data: Path, sc, base_days: int) -> None:
    """Billed and published through base_days (half of those days' usage); then the rest of
    those days' usage arrives late and the later days on time, waiting for the next run."""
    deliver(data, sc, through=sc.day(base_days), part="first")
    bill(data, sc.day(base_days))
    # late halves sort before the day files, so ingest reads them first
    deliver(data, sc, through=sc.day(base_days), part="second", prefix="late-")
    deliver(data, sc, since=sc.day(base_days + 1))


def ready_and_done(billed, name: str, sc, base_days: int) -> tuple[Path, Path]:
    """A data dir ready for the run under test, and that run done without failure: built
    once per session; tests copy them."""
    ready = billed.path(f"{__name__}.{name}-ready", lambda d: prepare(d, sc, base_days))

    def done(data: Path) -> None:
        shutil.copytree(ready, data, dirs_exist_ok=True)
        bill(data, sc.last_day)

    return ready, billed.path(f"{__name__}.{name}-done", done)


@pytest.fixture(scope="module")
def base(billed):
    ready, done = ready_and_done(billed, "base", SC, BASE_DAYS)
    return ready, snapshot(done), billing_facts(warehouse(done))


def stray_files(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.name.endswith(".tmp"))


# the first occurrence of every stage, and a failure on the 4th day (3 days committed)
CASES = [(s, 1) for s in STAGES] + [("deduct", 4), ("statements", 4)]


@pytest.mark.parametrize(("stage", "occurrence"), CASES)
def test_a_run_failing_in_any_stage_leaves_the_published_warehouse_untouched(
    base, tmp_path, stage, occurrence
):
    ready, expected, expected_facts = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    before, before_snap = digest(warehouse(data)), snapshot(data)
    with pytest.raises(RuntimeError, match="injected failure"):
        bill(data, SC.last_day, after_stage=fail_at(stage, occurrence))
    assert digest(warehouse(data)) == before
    assert snapshot(data) == before_snap
    assert stray_files(data) == []
    state = duckdb.connect(str(data / "state" / "adbill.duckdb"), read_only=True)
    (status, error), *_ = state.execute(
        "select status, error from runs order by started_at desc limit 1"
    ).fetchall()
    state.close()
    assert status == "failed" and "injected failure" in error
    # the rerun bills what is left and publishes the same warehouse as an uninterrupted run
    bill(data, SC.last_day)
    got = snapshot(data)
    assert_same(without_runs(got), without_runs(expected))
    assert billing_facts(warehouse(data)) == expected_facts
    assert {r[0] for r in query(warehouse(data), "select day from billing_runs")} == {
        SC.day(i) for i in range(1, SC.days + 1)
    }


def test_a_failure_after_publishing_leaves_the_new_warehouse_whole(base, tmp_path):
    """Publishing is the run's last step: once the file is replaced the run's work is out."""
    ready, expected, _ = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    with pytest.raises(RuntimeError, match="injected failure"):
        bill(data, SC.last_day, after_stage=fail_at("publish"))
    assert_same(snapshot(data), expected)
    bill(data, SC.last_day)
    assert_same(snapshot(data), expected)


def test_a_failure_while_publishing_keeps_the_old_file_and_no_temporary(
    base, tmp_path, monkeypatch
):
    ready, expected, _ = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    before = digest(warehouse(data))

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tasks.publish.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        bill(data, SC.last_day)
    assert digest(warehouse(data)) == before
    assert stray_files(data) == []
    monkeypatch.undo()
    bill(data, SC.last_day)
    assert_same(without_runs(snapshot(data)), without_runs(expected))


def test_a_temporary_copy_left_by_a_killed_publish_is_cleared_by_the_next_run(base, tmp_path):
    ready, expected, _ = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    left = data / f".{warehouse(data).name}.999999.tmp"  # what a publish killed mid-copy leaves
    left.write_bytes(b"half a warehouse")
    bill(data, SC.last_day)
    assert_same(without_runs(snapshot(data)), without_runs(expected))
    assert stray_files(data) == []


# ---------------------------------------------------------------- SIGKILL

KILL_SC = scenario(days=24, customers=8, events_per_day=10, seed=9)
KILL_BASE_DAYS = 5
RUNNER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    from tests.ops_helpers import bill
    say = lambda m: print(m, flush=True)
    bill(Path(sys.argv[1]), date.fromisoformat(sys.argv[2]), progress=say)
    print("RUN FINISHED", flush=True)
    """
)


@pytest.fixture(scope="module")
def kill_base(billed):
    ready, done = ready_and_done(billed, "kill", KILL_SC, KILL_BASE_DAYS)
    return ready, snapshot(done), billing_facts(warehouse(done))


def run_and_kill(data: Path, through, when: str, timeout: float = 120) -> list[str]:
    """Start a run in a subprocess and SIGKILL it as soon as it prints a line containing
    `when`; return what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(data), through.isoformat()],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            seen.append(line.rstrip())
            if when in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {seen[-5:]}"
    assert not any("RUN FINISHED" in s for s in seen)
    return seen


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("day 3/", id="while-billing"),
        # the inbox's small usage files are ingested as one group in one transaction: the
        # line is said when their lines are in, before the commit (tasks/ingest_usage.py)
        pytest.param("small usage files:", id="while-ingesting"),
    ],
)
def test_a_run_killed_midway_leaves_the_published_warehouse_and_a_rerun_completes_it(
    kill_base, tmp_path, when
):
    ready, expected, expected_facts = kill_base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    before = digest(warehouse(data))
    run_and_kill(data, KILL_SC.last_day, when)
    assert digest(warehouse(data)) == before
    assert stray_files(data) == []
    bill(data, KILL_SC.last_day)  # takes the data-dir lock the killed run held
    assert_same(without_runs(snapshot(data)), without_runs(expected))
    assert billing_facts(warehouse(data)) == expected_facts
    runs = query(warehouse(data), "select status, error from runs order by started_at")
    assert [r[0] for r in runs] == ["succeeded", "failed", "succeeded"]
    assert runs[1][1] == "interrupted"


# ---------------------------------------------------------------- readers

READER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    q = "select count(*), max(day), sum(used) from customer_days"
    print(con.execute(q).fetchone(), flush=True)
    sys.stdin.readline()
    print(con.execute(q).fetchone(), flush=True)
    """
)
FIGURES = "select count(*), max(day), sum(used) from customer_days"


@contextmanager
def reader_elsewhere(db: Path):
    """An analyst's read-only session in another process: the figures it saw on opening, and
    a function that asks it for them again."""
    other = subprocess.Popen(
        [sys.executable, "-c", READER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def again() -> str:
        other.stdin.write("\n")
        other.stdin.flush()
        return other.stdout.readline().strip()

    try:
        yield other.stdout.readline().strip(), again
    finally:
        if other.poll() is None:
            other.kill()
        other.wait(timeout=30)


def test_readers_holding_the_warehouse_open_never_fail_a_run_nor_see_half_of_it(base, tmp_path):
    ready, expected, _ = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    db = warehouse(data)
    # an analyst's session in another process, and one in this process, both read-only
    with reader_elsewhere(db) as (old_seen_elsewhere, again):
        here = duckdb.connect(str(db), read_only=True)
        old = here.execute(FIGURES).fetchone()
        assert old[1] == SC.day(BASE_DAYS)
        bill(data, SC.last_day)  # publishes while both readers hold the old file
        assert here.execute(FIGURES).fetchone() == old  # the old data, whole
        assert again() == old_seen_elsewhere
        assert old_seen_elsewhere == str(old)
    here.close()
    # a new session sees the new day
    assert query(db, FIGURES)[0][1] == SC.last_day
    assert_same(without_runs(snapshot(data)), without_runs(expected))


def test_a_reader_keeps_its_version_through_a_rebill_and_two_publishes(base, tmp_path):
    """An analyst who opened the warehouse before two runs (the second a rebill) keeps getting
    the answers of the version they opened; a new session sees the latest."""
    ready, expected, _ = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    db = warehouse(data)
    with reader_elsewhere(db) as (before, again):
        bill(data, SC.last_day)  # the first publish
        report = bill(data, SC.last_day, rebill_from=SC.day(2))  # a rebill, the second
        assert report.days and report.published
        assert again() == before  # the version it opened, whole
    assert query(db, FIGURES)[0][1] == SC.last_day and str(query(db, FIGURES)[0]) != before
    assert_same(without_runs(snapshot(data)), without_runs(expected))


def test_a_warehouse_that_cannot_be_written_whole_never_replaces_the_published_one(base, tmp_path):
    """The new warehouse's commit is in its log until it is merged into the file; on a full
    disk DuckDB's close failed to merge it without a word, and the file without tables
    replaced a good warehouse (every later run then refused the --db). Here the disk's limit
    is the process's file size limit (RLIMIT_FSIZE, its signal ignored: writes past it fail
    as on a full disk): publish raises, and the published warehouse is left byte for byte."""
    ready, _expected, _facts = base
    data = tmp_path / "d"
    shutil.copytree(ready, data)
    bill(data, SC.last_day)
    target = warehouse(data)
    before = digest(target)
    size = target.stat().st_size
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from tasks.publish import PublishIncomplete, publish
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size // 3}, {size // 3}))
        try:
            publish(Path({str(data / "state" / "adbill.duckdb")!r}), Path({str(target)!r}))
        except PublishIncomplete as exc:
            print("refused:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: the new warehouse could not be written whole in ")
    assert "the published warehouse is left as it was" in done.stdout
    assert digest(target) == before
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == []
    # with room, the same publish replaces it
    tasks.publish.publish(data / "state" / "adbill.duckdb", target)
    assert query(target, "select count(*) from billing_runs")[0][0] > 0
