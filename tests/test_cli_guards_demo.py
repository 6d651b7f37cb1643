"""`adbill demo` deletes only a directory it made itself (its marker) and never one another
demo or a run is using (interfaces.md, "Guards every command keeps"): it takes the data-dir
lock a run takes before it deletes anything. The flow is faked (tests/test_guards.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import cli, cli_flow
from tasks.run_lock import run_lock
from tests import test_guards as guards
from tests.test_guards import assert_refused, demo_args, run_cli, tree

# the fixtures of tests/test_guards.py: ADBILL_TODAY fixed, no server; the flow recorded
fixed_today = guards.fixed_today
flow_calls = guards.flow_calls


def a_demo_dir(tmp_path: Path) -> Path:
    """A directory an earlier demo made, with what it left."""
    d = tmp_path / "demo"
    (d / "inbox" / "orders").mkdir(parents=True)
    (d / cli.DEMO_MARKER).write_text("made by `adbill demo`\n")
    (d / "inbox" / "orders" / "orders.csv").write_text("the last demo's\n")
    return d


def test_demo_refuses_an_existing_empty_directory_without_its_marker(tmp_path, flow_calls, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    code, out, err = run_cli(capsys, *demo_args(d))
    assert_refused(code, err, f"{d} exists and adbill demo did not make it", "nothing deleted")
    assert tree(d) == [] and flow_calls == [] and out == ""  # no marker written either


def test_a_second_demo_while_one_runs_is_refused_and_deletes_nothing(tmp_path, capsys, monkeypatch):
    d = tmp_path / "demo"
    second: list = []

    def first_demos_run(args, through, rebill_from=None, trigger="cli", **kw):
        inbox = tree(d / "inbox")
        capsys.readouterr()  # the first demo's progress
        second.append(run_cli(capsys, *demo_args(d, "--seed", 8)))
        assert tree(d / "inbox") == inbox  # the first demo's inbox is still there
        return {"days_billed": 0, "events_accepted": 0, "events_rejected": 0, "warnings": []}

    monkeypatch.setattr(cli_flow, "run_flow", first_demos_run)
    monkeypatch.setattr("flows.summary.print_demo_summary", lambda args, result: None)
    code, _out, err = run_cli(capsys, *demo_args(d))
    assert code == 0, err
    [(code, _out, err)] = second
    assert_refused(code, err, f"another adbill demo is using {d}", "nothing deleted")
    assert (d / "inbox" / "usage").is_dir()


def test_demo_refuses_a_data_dir_a_run_holds_and_deletes_nothing(tmp_path, flow_calls, capsys):
    d = a_demo_dir(tmp_path)
    with run_lock(d / "state", wait=0):  # another process's run, as far as flock goes
        before = tree(d)
        code, _out, err = run_cli(capsys, *demo_args(d))
        assert_refused(code, err, f"another adbill run is using {d}", "nothing deleted")
        assert tree(d) == before and flow_calls == []
    code, _out, err = run_cli(capsys, *demo_args(d))  # the run done: the demo goes ahead
    assert code == 0, err
    assert not (d / "inbox" / "orders" / "orders.csv").exists()
    assert (d / cli.DEMO_MARKER).is_file() and (d / "state" / "run.lock").is_file()


@pytest.mark.parametrize("lock", ["run.lock", cli.DEMO_MARKER])
def test_the_demo_keeps_the_files_its_locks_are_on(tmp_path, flow_calls, capsys, lock):
    """Deleted and made again, a lock file would be another lock: a demo or run that holds
    the old one would not keep the next out."""
    d = a_demo_dir(tmp_path)
    (d / "state").mkdir()
    (d / "state" / "run.lock").write_text("")
    path = d / "state" / "run.lock" if lock == "run.lock" else d / lock
    inode = path.stat().st_ino
    code, _out, err = run_cli(capsys, *demo_args(d))
    assert code == 0, err
    assert path.stat().st_ino == inode
