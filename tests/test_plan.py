"""`adbill run --plan`: the days a run would bill, each with its reason, and the files it
would ingest; it changes nothing, and a later real run bills exactly those days."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from flows import cli
from tasks.plan import plan_run
from tests.ops_helpers import bill, deliver, query, scenario, settings, warehouse

SC = scenario(days=12, customers=5, events_per_day=8)


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-12-15")


def billed_days_of(data, run_id: str) -> list[tuple[date, str]]:
    return query(
        warehouse(data),
        "select day, reason from billing_runs where run_id = ? order by day",
        [run_id],
    )


def planned(data, through: date, rebill_from: date | None = None) -> list[tuple[date, str]]:
    plan = plan_run(settings(data, max_late_days=60), through, rebill_from)
    return [(p.day, p.reason) for p in plan.days]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_of_a_fresh_data_dir_is_what_the_first_run_bills(tmp_path):
    data = tmp_path / "d"
    files = deliver(data, SC, through=SC.day(6))
    plan = plan_run(settings(data, max_late_days=60), SC.day(6))
    assert sorted(f.path for f in plan.files) == sorted(str(p) for p in files)
    assert not (data / "state" / "adbill.duckdb").exists()  # the plan made no working state
    expected = [(p.day, p.reason) for p in plan.days]
    assert expected[-1] == (SC.day(6), "new") and {r for _, r in expected} == {"new"}
    report = bill(data, SC.day(6))
    assert billed_days_of(data, report.run_id) == expected


def test_plan_names_late_data_and_new_days_as_the_next_run_bills_them(tmp_path):
    data = tmp_path / "d"
    deliver(data, SC, through=SC.day(8), part="first")
    bill(data, SC.day(8))
    state = data / "state" / "adbill.duckdb"
    before = digest(state), digest(warehouse(data))
    # late halves of days 4..8 and the new days 9..12 arrive
    late = deliver(data, SC, since=SC.day(4), through=SC.day(8), part="second", prefix="late-")
    new = deliver(data, SC, since=SC.day(9), prefix="new-")
    plan = plan_run(settings(data, max_late_days=60), SC.last_day)
    assert (digest(state), digest(warehouse(data))) == before  # the plan changed nothing
    assert sorted(f.path for f in plan.files) == sorted(str(p) for p in late + new[1:])
    assert min(f.earliest_day for f in plan.files) == SC.day(4)
    expected = [(p.day, p.reason) for p in plan.days]
    assert expected[0] == (SC.day(4), "late_data") and expected[-1] == (SC.last_day, "new")
    report = bill(data, SC.last_day)
    assert billed_days_of(data, report.run_id) == expected
    assert plan_run(settings(data, max_late_days=60), SC.last_day).days == []


def test_plan_of_a_rebill_and_the_cli_prints_it(tmp_path, capsys):
    data = tmp_path / "d"
    deliver(data, SC)
    bill(data, SC.last_day)
    expected = planned(data, SC.last_day, SC.day(7))
    assert expected == [(SC.day(i), "rebill") for i in range(7, 13)]
    code = cli.main(["run", "--plan", "--data-dir", str(data), "--rebill-from", str(SC.day(7))])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{SC.day(7)} .. {SC.last_day}  rebill" in out and "0 file(s) to ingest" in out
    report = bill(data, SC.last_day, rebill_from=SC.day(7))
    assert billed_days_of(data, report.run_id) == expected


def test_plan_on_a_damaged_working_state_says_so_not_that_a_run_is_using_it(tmp_path):
    d = tmp_path / "d"
    (d / "inbox" / "usage").mkdir(parents=True)
    (d / "state").mkdir()
    (d / "state" / "adbill.duckdb").write_bytes(b"not a database, and not locked")
    with pytest.raises(
        RuntimeError, match=r"cannot be read \(.*\): is it damaged\? nothing planned"
    ):
        plan_run(settings(d), date(2026, 11, 26))


def test_plan_on_a_damaged_working_state_whose_path_says_lock_is_still_damaged(tmp_path):
    d = tmp_path / "clock-billing"  # ("lock" in the path DuckDB puts in its message)
    (d / "inbox" / "usage").mkdir(parents=True)
    (d / "state").mkdir()
    (d / "state" / "adbill.duckdb").write_bytes(b"not a database")
    with pytest.raises(RuntimeError, match="is it damaged"):
        plan_run(settings(d), date(2026, 11, 26))


def test_a_file_named_like_a_pattern_gets_its_own_estimate(tmp_path):
    """DuckDB's readers take `*`, `?`, `[` as a file pattern: the plan read `u[1].jsonl` as
    u1.jsonl (another file's earliest day), and then gave it none (the plan began later than
    the run). It is read through a link of a plain name; so is every file of a data dir
    whose own path holds such a character."""
    data = tmp_path / "g[x]" / "d"
    deliver(data, SC, through=SC.day(8), part="first")
    bill(data, SC.day(8))
    usage = data / "inbox" / "usage"

    def late_usage(day: date, name: str) -> None:
        files = deliver(data, SC, since=day, through=day, part="second", prefix=f"x{name}-")
        (path,) = [p for p in files if p.is_relative_to(usage)]
        path.rename(usage / name)

    late_usage(SC.day(5), "u[1].jsonl")
    plan = plan_run(settings(data, max_late_days=60), SC.day(8))
    days = {f.path.rsplit("/", 1)[-1]: f.earliest_day for f in plan.files if "usage" in f.kind}
    assert days == {"u[1].jsonl": SC.day(5)}
    assert (plan.days[0].day, plan.days[0].reason) == (SC.day(5), "late_data")
    late_usage(SC.day(3), "u1.jsonl")
    plan = plan_run(settings(data, max_late_days=60), SC.day(8))
    days = {f.path.rsplit("/", 1)[-1]: f.earliest_day for f in plan.files if "usage" in f.kind}
    assert days == {"u[1].jsonl": SC.day(5), "u1.jsonl": SC.day(3)}
    report = bill(data, SC.day(8))
    assert billed_days_of(data, report.run_id) == [(p.day, p.reason) for p in plan.days]


def test_plan_on_a_working_state_an_older_adbill_made_says_a_run_upgrades_it(tmp_path):
    """An older adbill's working state lacks this one's last migrations: the plan read it
    as if upgraded and failed on a table it lacks; it now says the next run upgrades it."""
    import duckdb

    from tasks.pipeline import RunRefused

    data = tmp_path / "d"
    deliver(data, SC, through=SC.day(3))
    bill(data, SC.day(3))
    con = duckdb.connect(str(data / "state" / "adbill.duckdb"))
    con.execute("delete from schema_migrations where version >= 16")
    con.close()
    with pytest.raises(RunRefused, match="made by an older adbill .*the next `adbill run`"):
        plan_run(settings(data, max_late_days=60), SC.day(3))


HOLD = """
import sys, time
from pathlib import Path
import duckdb
from tasks.run_lock import run_lock
state = Path(sys.argv[1])
if sys.argv[2] in ("run", "lock"):
    lock = run_lock(state, wait=0)
    lock.__enter__()
if sys.argv[2] != "lock":  # (lock: the run lock alone, as a backup's flock or a run between
    con = duckdb.connect(str(state / "adbill.duckdb"))  # its steps holds it)
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("who", ["analyst", "run", "lock"])
def test_plan_while_the_working_state_is_held_names_who_holds_it(tmp_path, capsys, who):
    """An analyst's session on the working state is not a run: the plan named a run that
    did not exist (and exit 1); it names the process, and a run when a run holds it."""
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "d"
    deliver(data, SC, through=SC.day(2))
    bill(data, SC.day(2))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data / "state"), who],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        code = cli.main(["run", "--plan", "--through", str(SC.day(2)), "--data-dir", str(data)])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    if who in ("run", "lock"):  # (the lock alone: the plan was made and printed, exit 0)
        assert "a run is using" in err[0] and "ask for the plan when it has finished" in err[0]
    else:
        assert f"is open in another process (PID {holder.pid})" in err[0]
        assert "close that session" in err[0] and "a run is using" not in err[0]
