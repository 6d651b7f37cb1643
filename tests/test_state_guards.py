"""Operator mistakes on the working state and the settings a run reads: another billing zone
than the data dir's (billing-rules §1), a working state lost or damaged while the warehouse
holds billed days (§8: revisions kept), a bad ADBILL_DUCKDB_MEMORY or ADBILL_TODAY, and a
Ctrl-C told as the interruption it was (tasks/state_guard.py, docs/operating.md §17)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import duckdb
import pytest

from flows import cli_flow
from tasks import interrupts
from tasks.pipeline import RunRefused, _error_text, run_billing
from tasks.settings import Settings
from tests import test_guards as guards
from tests.ops_helpers import (
    deliver,
    publish_fails_with_a_full_disk,
    scenario,
    settings,
    write_usage,
)
from tests.test_guards import assert_refused, run_cli

fixed_today = guards.fixed_today  # ADBILL_TODAY fixed, no Prefect server (tests/test_guards.py)
flow_calls = guards.flow_calls

LA = "America/Los_Angeles"


@pytest.fixture(scope="module")
def billed_once(tmp_path_factory) -> tuple[Path, object]:
    """A data dir billed once in Asia/Shanghai (copied per test)."""
    d = tmp_path_factory.mktemp("billed") / "data"
    sc = scenario(days=3, customers=3, events_per_day=4)
    deliver(d, sc)
    run_billing(settings(d), sc.last_day)
    return d, sc


@pytest.fixture
def billed(billed_once, tmp_path) -> tuple[Path, object]:
    src, sc = billed_once
    d = tmp_path / "data"
    shutil.copytree(src, d)
    return d, sc


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(path: Path, sql: str):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def served(monkeypatch) -> list:
    import flows.serve

    calls: list = []
    monkeypatch.setattr(flows.serve, "serve", lambda **kw: calls.append(kw))
    return calls


# ---------------------------------------------------------------- F1: the billing zone (§1)


def test_a_data_dir_records_the_billing_zone_of_its_first_run(billed):
    d, _sc = billed
    state = d / "state" / "adbill.duckdb"
    assert query(state, "select value from adbill_meta where key = 'billing_tz'") == [
        ("Asia/Shanghai",)
    ]
    # published too: analysts see the zone the days were cut in
    assert query(
        d / "warehouse.duckdb", "select value from internal.adbill_meta where key = 'billing_tz'"
    ) == [("Asia/Shanghai",)]


def test_a_run_in_another_zone_is_refused_before_it_reads_a_file(billed):
    d, sc = billed
    state = d / "state" / "adbill.duckdb"
    write_usage(d, "late.jsonl", ["{not json"])  # a new delivery the refused run must not ingest
    before = query(state, "select count(*), (select count(*) from runs) from ingested_files")
    days = query(state, "select event_id, day from events order by 1")
    published = digest(d / "warehouse.duckdb")
    wrong = Settings(data_dir=d, billing_tz=LA, shards=0)
    with pytest.raises(RunRefused) as refused:
        run_billing(wrong, sc.last_day)
    message = str(refused.value)
    assert f"{d} bills in Asia/Shanghai; ADBILL_BILLING_TZ={LA} differs: unset it" in message
    assert len(message) <= 300
    # nothing ingested, no run recorded, every event on the day it was billed, nothing published
    assert query(state, "select count(*), (select count(*) from runs) from ingested_files") == (
        before
    )
    assert query(state, "select event_id, day from events order by 1") == days
    assert digest(d / "warehouse.duckdb") == published
    # a rebill in the wrong zone is refused as well; the right zone bills on
    with pytest.raises(RunRefused):
        run_billing(wrong, sc.last_day, rebill_from=sc.day(1))
    run_billing(settings(d), sc.last_day, rebill_from=sc.day(1))
    assert query(state, "select event_id, day from events order by 1") == days


def test_a_zone_other_than_the_default_is_named_in_the_fix(tmp_path):
    sc = scenario(days=2, customers=2, events_per_day=3)
    deliver(tmp_path, sc)
    run_billing(Settings(data_dir=tmp_path, billing_tz="Asia/Singapore", shards=0), sc.last_day)
    with pytest.raises(RunRefused, match="ADBILL_BILLING_TZ=Asia/Shanghai differs: set it to"):
        run_billing(settings(tmp_path), sc.last_day)


def test_run_plan_and_serve_refuse_another_zone_in_one_line(
    billed, capsys, monkeypatch, flow_calls
):
    d, _sc = billed
    monkeypatch.setenv("ADBILL_BILLING_TZ", LA)
    words = ("bills in Asia/Shanghai", f"ADBILL_BILLING_TZ={LA} differs", str(d))
    for argv in (["run"], ["run", "--plan"], ["run", "--rebill-from", "2026-11-01"]):
        code, out, err = run_cli(capsys, *argv, "--data-dir", d)
        assert_refused(code, err, *words)
        assert out == ""
    assert flow_calls == []
    calls = served(monkeypatch)
    code, _out, err = run_cli(capsys, "serve", "--data-dir", d)
    assert_refused(code, err, *words)
    assert calls == []
    monkeypatch.setenv("ADBILL_BILLING_TZ", "Asia/Shanghai")
    code, _out, err = run_cli(capsys, "run", "--data-dir", d)
    assert code == 0, err
    assert len(flow_calls) == 1


def test_a_data_dir_billed_before_zones_were_recorded_records_the_zone_of_its_next_run(billed):
    d, sc = billed
    state = d / "state" / "adbill.duckdb"
    con = duckdb.connect(str(state))
    con.execute("delete from adbill_meta where key = 'billing_tz'")
    con.close()
    run_billing(settings(d), sc.last_day)
    assert query(state, "select value from adbill_meta where key = 'billing_tz'") == [
        ("Asia/Shanghai",)
    ]
    with pytest.raises(RunRefused, match="bills in Asia/Shanghai"):
        run_billing(Settings(data_dir=d, billing_tz=LA, shards=0), sc.last_day)


# ---------------------------------------------------------------- F2, F10: a working state lost


def test_a_run_after_the_working_state_was_deleted_is_refused_and_publishes_nothing(billed):
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    published = digest(d / "warehouse.duckdb")
    with pytest.raises(RunRefused) as refused:
        run_billing(settings(d), sc.last_day)
    message = str(refused.value)
    assert message.startswith(
        f"{d}: the working state is missing but {d / 'warehouse.duckdb'} holds billing through "
        f"{sc.last_day}: restore state/ from a backup (docs/operating.md §17), or move "
    )
    assert digest(d / "warehouse.duckdb") == published
    assert not (d / "state" / "adbill.duckdb").exists()  # no new state made either


def test_a_new_working_state_beside_a_billed_warehouse_is_refused_too(billed):
    """A state made after the loss (a failed run of an older build, a test query): no run
    of it succeeded, so the warehouse's billing is what counts."""
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    duckdb.connect(str(d / "state" / "adbill.duckdb")).close()
    with pytest.raises(RunRefused, match="the working state is new .* holds billing through"):
        run_billing(settings(d), sc.last_day)


def test_day_files_without_a_warehouse_show_billing_too(billed):
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    (d / "warehouse.duckdb").rename(d.parent / "moved.duckdb")
    with pytest.raises(RunRefused, match="state/days holds the day files of billing through"):
        run_billing(settings(d), sc.last_day)


def test_moving_the_warehouse_and_day_files_away_starts_over(billed):
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    (d / "warehouse.duckdb").rename(d.parent / "moved.duckdb")
    shutil.move(d / "state" / "days", d.parent / "moved-days")
    report = run_billing(settings(d), sc.last_day)
    assert report.status == "succeeded" and len(report.days) == sc.days


def test_a_first_run_that_failed_at_publish_is_carried_on_by_its_rerun(
    billed, tmp_path, monkeypatch
):
    """The data dir's first run billed and wrote its day files, then could not publish (a
    full disk): its working state is new (no run succeeded) but the day files are its own,
    so the rerun carries on and publishes. Day files of another state beside them (a state
    lost) are still refused."""
    _, sc = billed
    d = tmp_path / "first"
    deliver(d, sc)

    publish_fails_with_a_full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        run_billing(settings(d), sc.last_day)
    monkeypatch.undo()
    assert any((d / "state" / "days").rglob("*.parquet")) and not (d / "warehouse.duckdb").exists()
    foreign = tmp_path / "foreign"
    shutil.copytree(d, foreign)
    report = run_billing(settings(d), sc.last_day)
    assert report.status == "succeeded"
    assert query(d / "warehouse.duckdb", "select max(day) from billed_days") == [(sc.last_day,)]
    # the same failed first run, beside the day files a lost state's run wrote
    lost_run = next((billed[0] / "state" / "days" / "events").iterdir())
    shutil.copytree(lost_run, foreign / "state" / "days" / "events" / lost_run.name)
    with pytest.raises(RunRefused, match="state/days holds the day files of billing through"):
        run_billing(settings(foreign), sc.last_day)


def test_run_and_plan_after_the_state_was_lost_are_refused_in_one_line(billed, capsys, flow_calls):
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    for argv in (["run"], ["run", "--plan"]):
        code, out, err = run_cli(capsys, *argv, "--data-dir", d)
        assert_refused(
            code, err, "the working state is missing but", f"holds billing through {sc.last_day}"
        )
    assert flow_calls == []


def test_status_after_the_state_was_lost_names_the_warehouse_billing(billed, capsys):
    d, sc = billed
    (d / "state" / "adbill.duckdb").unlink()
    code, out, err = run_cli(capsys, "status", "--data-dir", d)
    assert_refused(
        code,
        err,
        f"{d}: the working state is missing but {d / 'warehouse.duckdb'} holds billing through "
        f"{sc.last_day}",
        "restore state/ from a backup",
    )
    assert "billed nothing" not in err[0] and out == ""


def test_status_of_a_data_dir_that_never_billed_still_says_so(tmp_path, capsys):
    deliver(tmp_path, scenario(days=2, customers=2, events_per_day=3))
    code, _out, err = run_cli(capsys, "status", "--data-dir", tmp_path)
    assert_refused(code, err, "has billed nothing yet (no working state, no warehouse)")


def test_status_of_a_data_dir_that_is_not_there_says_the_path_is_wrong(tmp_path, capsys):
    """A mistyped --data-dir is not 'billed nothing yet' (an empty data dir)."""
    typo = tmp_path / "biling"
    code, _out, err = run_cli(capsys, "status", "--data-dir", typo)
    says = f"{typo} has billed nothing yet: there is no data dir there (is the path right?)"
    assert_refused(code, err, says)
    assert not typo.exists()


# ---------------------------------------------------------------- F9: a damaged working state


def damage(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(8192)
        f.write(os.urandom(4 * 8192))


@pytest.fixture
def short_billed(billed):
    """The billed data dir at a short path: the one line holds the state's path, what to do
    and the log's path, and pytest's own temporary paths are ~100 characters each."""
    d, sc = billed
    short = Path(tempfile.mkdtemp(prefix="ad", dir="/tmp")) / "d"
    shutil.copytree(d, short)
    yield short, sc
    shutil.rmtree(short.parent)


@pytest.mark.parametrize("argv", [["status"], ["run", "--plan"], ["run"]])
def test_a_damaged_working_state_is_named_with_what_to_do(short_billed, capsys, flow_calls, argv):
    d, _sc = short_billed
    state = d / "state" / "adbill.duckdb"
    damage(state)
    code, out, err = run_cli(capsys, *argv, "--data-dir", d)
    # a failure (exit 1, its traceback in the log), told with the file and what to do
    assert code == 1 and len(err) == 1 and len(err[0]) <= 300, err
    assert err[0].startswith(
        f"adbill {argv[0]}: DamagedDatabase: the working state {state} is damaged: restore "
        "state/ from a backup (docs/operating.md §17); traceback in "
    )
    assert "Corrupt database file" in (d / "state" / "logs" / "adbill.log").read_text()
    assert flow_calls == []


def test_a_damaged_working_state_refuses_the_run_itself(billed):
    d, sc = billed
    damage(d / "state" / "adbill.duckdb")
    from tasks.db import DamagedDatabase

    with pytest.raises(DamagedDatabase, match="is damaged"):
        run_billing(settings(d), sc.last_day)


# ---------------------------------------------------------------- F13, F12: settings


BAD_ENGINE_SETTINGS = [
    *(
        ("ADBILL_DUCKDB_MEMORY", bad, "is not a memory size")
        for bad in ["abc", "1", "10KB", "-1GB", "0%", "150%", "1 GB extra"]
    ),
    *(
        ("ADBILL_DUCKDB_THREADS", bad, "is not a whole number from 0 (one per core) to 1024")
        # (\uff13 and \u0663: a fullwidth and an Arabic-Indic 3, digits to Python's int)
        for bad in ["abc", "-1", "1.5", "2 threads", "1025", "99999999999", "\uff13", "\u0663"]
    ),
    *(
        ("ADBILL_DASK_WORKERS", bad, "is not a whole number from 1 to 256")
        for bad in ["0", "257", "-1", "two", "\uff13", "1_0"]
    ),
]


@pytest.mark.parametrize(("variable", "bad", "says"), BAD_ENGINE_SETTINGS)
def test_a_bad_engine_setting_is_one_line_naming_the_variable(
    billed, capsys, monkeypatch, flow_calls, variable, bad, says
):
    d, _sc = billed
    monkeypatch.setenv(variable, bad)
    for argv in (["run"], ["status"]):
        code, _out, err = run_cli(capsys, *argv, "--data-dir", d)
        assert_refused(code, err, f"{variable}={bad!r} {says}")
    assert flow_calls == []


def connection_setting(name: str) -> object:
    """A setting of a connection the engine opens (tasks.db.connect) as the environment is."""
    from tasks.db import connect

    con = connect()
    try:
        return con.execute(f"select current_setting('{name}')").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("good", ["1GB", "512MB", "2GiB", " 1.5 gb", "50%", "64MB"])
def test_memory_sizes_duckdb_reads_are_accepted(monkeypatch, good):
    monkeypatch.setenv("ADBILL_DUCKDB_MEMORY", good)
    assert connection_setting("memory_limit")


@pytest.mark.parametrize(
    ("given", "threads"), [("1", 1), (" 3 ", 3), ("1024", 1024), ("0", None), ("", None)]
)
def test_duckdb_threads_are_the_connections_threads_0_or_unset_duckdbs_own(
    monkeypatch, given, threads
):
    default = duckdb.connect().execute("select current_setting('threads')").fetchone()[0]
    monkeypatch.setenv("ADBILL_DUCKDB_THREADS", given)
    assert connection_setting("threads") == (threads or default)


@pytest.mark.parametrize(("given", "workers"), [(None, 2), ("1", 1), (" 4 ", 4), ("256", 256)])
def test_dask_workers_are_the_local_clusters_size(monkeypatch, given, workers):
    """`--task-runner dask`'s temporary cluster: ADBILL_DASK_WORKERS processes (2 unset),
    from 1 to 256 (past them: the refusal test above)."""
    from flows.parallel import dask_runner

    if given is None:
        monkeypatch.delenv("ADBILL_DASK_WORKERS", raising=False)
    else:
        monkeypatch.setenv("ADBILL_DASK_WORKERS", given)
    assert dask_runner("dask").cluster_kwargs["n_workers"] == workers


@pytest.mark.parametrize("bad", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
def test_a_today_outside_2000_to_2099_is_refused_in_one_line(billed, capsys, monkeypatch, bad):
    d, _sc = billed
    monkeypatch.setenv("ADBILL_TODAY", bad)
    for argv in (["run"], ["run", "--plan"], ["status"]):
        code, _out, err = run_cli(capsys, *argv, "--data-dir", d)
        assert_refused(code, err, f"ADBILL_TODAY={bad!r} is not a date from 2000-01-01 to")


data = guards.data
default_sigint = guards.default_sigint


# ---------------------------------------------------------------- F14: Ctrl-C told as one


def test_a_query_a_signal_interrupted_is_recorded_as_interrupted():
    error = RuntimeError("Query interrupted")
    assert _error_text(error) == "RuntimeError: Query interrupted"  # no signal seen
    interrupts.watch(lambda: signal.SIGINT)
    try:
        assert _error_text(error) == "interrupted (SIGINT)"
        assert _error_text(ValueError("a real failure")) == "ValueError: a real failure"
    finally:
        interrupts.watch(None)


def test_a_run_stopped_by_ctrl_c_in_a_query_records_interrupted(billed, monkeypatch):
    d, sc = billed
    write_usage(d, "more.jsonl", ["{not json"])

    def interrupted_query(stage: str) -> None:
        if stage == "ingest":
            raise RuntimeError("Query interrupted")

    interrupts.watch(lambda: signal.SIGINT)
    try:
        with pytest.raises(RuntimeError):
            run_billing(settings(d), sc.last_day, after_stage=interrupted_query)
    finally:
        interrupts.watch(None)
    rows = query(
        d / "state" / "adbill.duckdb",
        "select status, error from runs order by started_at desc limit 1",
    )
    assert rows == [("failed", "interrupted (SIGINT)")]


def test_the_command_sees_a_signal_as_often_as_it_asks(data, capsys, monkeypatch, default_sigint):
    """The run's record asks first; the command's exit status asks again: both see it."""
    import time

    asked = []

    def interrupted_flow(*a, **kw):
        try:
            # (to this main thread: sent to the process it may land on another thread)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            asked.append(interrupts.seen())
            raise RuntimeError("Query interrupted") from None

    monkeypatch.setattr(cli_flow, "run_flow", interrupted_flow)
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert asked == ["SIGINT"]
    assert code == 130 and err == ["adbill: interrupted; the published warehouse is unchanged"]
