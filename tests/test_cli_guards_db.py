"""`--db FILE` (env ADBILL_DB) is the published warehouse of the run's data dir (interfaces.md):
`adbill run` and `adbill serve` refuse, before any work, a --db a run would wrongly replace —
a directory, a file that is not a DuckDB database, a working state, a DuckDB database no run
published, another data dir's published warehouse — and keep taking a new file, the default
and the warehouse they published before. The flow is faked (tests/test_guards.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from tasks.pipeline import run_billing
from tasks.settings import SettingError, Settings
from tests import test_guards as guards
from tests.ops_helpers import deliver, scenario
from tests.test_guards import assert_refused, run_cli

# the fixtures of tests/test_guards.py: ADBILL_TODAY fixed, no server; the flow recorded
fixed_today = guards.fixed_today
flow_calls = guards.flow_calls


@pytest.fixture(scope="module")
def two_data_dirs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Data dirs A (published to an own --db outside it) and B (to its default), both billed
    once for real; A's published warehouse."""
    root = tmp_path_factory.mktemp("db-guards")
    a, b, a_db = root / "a", root / "b", root / "published" / "a.duckdb"
    sc = scenario(days=3, customers=3, events_per_day=4)
    for d, db in ((a, a_db), (b, None)):
        deliver(d, sc)
        run_billing(Settings(data_dir=d, db=db, billing_tz="Asia/Shanghai", shards=0), sc.last_day)
    assert (b / "warehouse.duckdb").is_file() and a_db.is_file()
    return a, b, a_db


def snapshot(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def test_run_refuses_a_db_that_is_not_this_data_dirs_warehouse_and_writes_nothing(
    two_data_dirs, tmp_path, flow_calls, capsys
):
    a, b, _a_db = two_data_dirs
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    foreign = tmp_path / "analysis.duckdb"
    duckdb.connect(str(foreign)).execute("create table t as select 42 as answer").close()
    b_copy = tmp_path / "b-copy.duckdb"
    shutil.copyfile(b / "warehouse.duckdb", b_copy)
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (folder, "is a directory"),
        (notes, "is not a DuckDB database"),
        (b / "state" / "adbill.duckdb", f"lies in the state folder of the data dir {b}"),
        (b / "state" / "new.duckdb", f"lies in the state folder of the data dir {b}"),
        (b / "warehouse.duckdb", f"is the published warehouse of the data dir {b}"),
        (b_copy, f"is the published warehouse of the data dir {b}"),
        (foreign, "is a DuckDB database that no adbill run published"),
    ]
    before = snapshot(a, b, tmp_path)
    for db, words in cases:
        code, out, err = run_cli(capsys, "run", "--data-dir", a, "--db", db)
        assert_refused(code, err, f"--db / ADBILL_DB {db} ", words, "nothing billed")
        assert out == ""
    assert flow_calls == [] and snapshot(a, b, tmp_path) == before
    assert not (b / "state" / "new.duckdb").exists()


def test_the_flow_refuses_a_db_parameter_given_from_the_ui_the_same_way(two_data_dirs, tmp_path):
    from flows.daily import daily_billing
    from tasks.pipeline import RunRefused

    a, b, _a_db = two_data_dirs
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    before = snapshot(a, b, tmp_path)
    for db, words in (
        (b / "state" / "adbill.duckdb", f"lies in the state folder of the data dir {b}"),
        (b / "warehouse.duckdb", f"is the published warehouse of the data dir {b}"),
        (notes, "is not a DuckDB database"),
    ):
        with pytest.raises(RunRefused, match=words):
            daily_billing.fn(data_dir=str(a), db=str(db), trigger="deployment")
    with pytest.raises(SettingError, match="lies in"):  # its own state: the settings refuse
        daily_billing.fn(data_dir=str(a), db=str(a / "state" / "adbill.duckdb"))
    assert snapshot(a, b, tmp_path) == before


def test_a_copied_working_state_is_refused_wherever_it_lies(
    two_data_dirs, tmp_path, flow_calls, capsys, monkeypatch
):
    a, b, _a_db = two_data_dirs
    state = tmp_path / "copy-of-state.duckdb"
    shutil.copyfile(b / "state" / "adbill.duckdb", state)
    monkeypatch.setenv("ADBILL_DB", str(state))  # the environment is held to the same
    code, _out, err = run_cli(capsys, "run", "--data-dir", a)
    assert_refused(code, err, f"{state} is the working state of a data dir")
    assert flow_calls == []


def test_run_takes_a_new_file_its_own_published_warehouse_and_the_default(
    two_data_dirs, tmp_path, flow_calls, capsys
):
    a, b, a_db = two_data_dirs
    for argv in (
        ["--db", a_db],  # the warehouse runs of A published: rerun with the same --db
        ["--db", tmp_path / "new" / "warehouse.duckdb"],  # a fresh path
        [],  # the default, <data-dir>/warehouse.duckdb
    ):
        code, _out, err = run_cli(capsys, "run", "--data-dir", a, *argv)
        assert code == 0, err
    code, _out, err = run_cli(capsys, "run", "--data-dir", b, "--db", b / "warehouse.duckdb")
    assert code == 0, err
    assert len(flow_calls) == 4
    # an analyst who opened the default before the first run made an empty database there
    fresh = tmp_path / "fresh"
    (fresh / "inbox").mkdir(parents=True)
    duckdb.connect(str(fresh / "warehouse.duckdb")).close()
    code, _out, err = run_cli(capsys, "run", "--data-dir", fresh)
    assert code == 0, err


def test_a_data_dir_copied_is_refused_its_warehouse_and_one_moved_takes_it(
    two_data_dirs, tmp_path, flow_calls, capsys
):
    """A copy would publish over the warehouse of the data dir it was copied from; a data dir
    moved publishes over its own (its day files named where it was: no data dir there now)."""
    a, _b, a_db = two_data_dirs
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    code, _out, err = run_cli(capsys, "run", "--data-dir", copy, "--db", a_db)
    assert_refused(code, err, f"is the published warehouse of the data dir {a}")
    was, moved, c_db = tmp_path / "was", tmp_path / "moved", tmp_path / "c.duckdb"
    sc = scenario(days=2, customers=2, events_per_day=3)
    deliver(was, sc)
    run_billing(Settings(data_dir=was, db=c_db, billing_tz="Asia/Shanghai"), sc.last_day)
    was.rename(moved)
    code, _out, err = run_cli(capsys, "run", "--data-dir", moved, "--db", c_db)
    assert code == 0, err
    assert len(flow_calls) == 1


def test_serve_refuses_a_db_that_is_a_directory_before_it_registers_anything(
    two_data_dirs, tmp_path, capsys, monkeypatch
):
    import flows.serve

    served = []
    monkeypatch.setattr(flows.serve, "serve", lambda **kw: served.append(kw))
    a, _b, _a_db = two_data_dirs
    code, _out, err = run_cli(capsys, "serve", "--data-dir", a, "--db", tmp_path)
    assert_refused(code, err, f"--db / ADBILL_DB {tmp_path} is a directory")
    assert served == []


def test_serve_refuses_a_data_dir_without_inbox_and_a_bad_cron(
    two_data_dirs, tmp_path, capsys, monkeypatch
):
    import flows.serve

    served = []
    monkeypatch.setattr(flows.serve, "serve", lambda **kw: served.append(kw))
    a, _b, _a_db = two_data_dirs
    code, _out, err = run_cli(capsys, "serve", "--data-dir", tmp_path / "typo")
    assert_refused(code, err, f"no inbox at {tmp_path / 'typo' / 'inbox'}")
    for cron in ("bad cron", "30 0 * *", "61 0 * * *", "30 0 * * * *", "0 30 0 * * * *"):
        code, _out, err = run_cli(capsys, "serve", "--data-dir", a, "--cron", cron)
        assert_refused(code, err, f"--cron {cron!r} is not a cron schedule")
    assert served == [] and not (tmp_path / "typo").exists()
    code, _out, err = run_cli(capsys, "serve", "--data-dir", a, "--cron", "15 1 * * *")
    assert code == 0, err
    assert [kw["cron"] for kw in served] == ["15 1 * * *"]


def test_run_refuses_a_db_in_a_folder_it_cannot_write_in_before_billing(
    two_data_dirs, tmp_path, flow_calls, capsys
):
    a, _b, _a_db = two_data_dirs
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    for db, words in [
        (Path("/proc/w.duckdb"), "cannot write in /proc"),
        (notes / "w.duckdb", f"cannot write in {notes}"),
    ]:
        code, _out, err = run_cli(capsys, "run", "--data-dir", a, "--db", db)
        assert_refused(code, err, f"--db / ADBILL_DB {db}: ", words, "nothing billed")
    assert flow_calls == []
    # a folder that does not exist yet, under one that can be written in: taken (the run
    # makes it), and the probe leaves nothing behind
    code, _out, err = run_cli(capsys, "run", "--data-dir", a, "--db", tmp_path / "new" / "w.duckdb")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
