"""`adbill status` while a process other than a run holds the working state open (an
analyst's session by mistake): the status of the published warehouse, with a warning that
names the process, not DuckDB's lock error (docs/operating.md §13)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.pipeline import run_billing
from tests import test_guards as guards
from tests.ops_helpers import deliver, scenario, settings
from tests.test_guards import assert_refused, run_cli

fixed_today = guards.fixed_today  # ADBILL_TODAY fixed (tests/test_guards.py)


@contextmanager
def held_open_elsewhere(path: Path) -> Iterator[int]:
    """`path` open for writing in another process (DuckDB's file lock); its PID."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
            "print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_status_reads_the_published_warehouse_while_a_session_holds_the_working_state(
    tmp_path, capsys
):
    sc = scenario(days=2, customers=2, events_per_day=3)
    deliver(tmp_path, sc)
    run_billing(settings(tmp_path), sc.last_day)
    with held_open_elsewhere(tmp_path / "state" / "adbill.duckdb") as pid:
        code, out, err = run_cli(capsys, "status", "--data-dir", tmp_path)
        assert code == 0 and err == [], err
        assert out.startswith(f"adbill status of {tmp_path / 'warehouse.duckdb'} at ")
        assert f"billed through: {sc.last_day}" in out
        assert f"is open in another process (PID {pid}); figures as of the last publish" in out
        (tmp_path / "warehouse.duckdb").unlink()  # nothing published to read instead
        code, out, err = run_cli(capsys, "status", "--data-dir", tmp_path)
        assert_refused(code, err, f"(PID {pid}) and there is no published warehouse at")
