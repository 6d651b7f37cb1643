"""Idempotent reruns: the same inputs give the same warehouse, however often a day is run."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tasks.publish import DataDirBusy, run_lock
from tests.ops_helpers import (
    assert_same,
    bill,
    billing_facts,
    deliver,
    query,
    scenario,
    snapshot,
    warehouse,
    write_usage,
)

SC = scenario(days=32, customers=8, events_per_day=10)


def without_runs(snap: dict) -> dict:
    """billing_runs says which run billed a day (and counts that run's rejects)."""
    return {k: v for k, v in snap.items() if k != "billing_runs"}


def copy_of(data, tmp_path):
    """A copy of a billed data dir (inbox, working state, published warehouse)."""
    shutil.copytree(data, tmp_path / "d")
    return tmp_path / "d"


@pytest.fixture(scope="module")
def billed_once(tmp_path_factory):
    """The scenario billed in one run: the warehouse every rerun must reproduce."""
    data = tmp_path_factory.mktemp("once")
    files = deliver(data, SC)
    report = bill(data, SC.last_day).summary()
    assert report["days_billed"] == SC.days and report["files_ingested"] == len(files)
    return data, snapshot(data)


def test_two_data_dirs_billed_from_the_same_inbox_are_identical(billed_once, tmp_path):
    _, expected = billed_once
    deliver(tmp_path, SC)
    bill(tmp_path, SC.last_day)
    assert_same(snapshot(tmp_path), expected)


def test_a_data_dir_billed_on_four_duckdb_threads_is_identical_to_one_on_one(
    billed_once, tmp_path, monkeypatch
):
    # the suite bills on one DuckDB thread (tests/conftest.py); the engine must not depend
    # on it: more threads than this machine's cores make DuckDB split the scans of several
    # day files, record batches and row groups between them
    _, expected = billed_once
    monkeypatch.setenv("ADBILL_DUCKDB_THREADS", "4")
    deliver(tmp_path, SC)
    bill(tmp_path, SC.last_day)
    assert_same(snapshot(tmp_path), expected)


def test_rerunning_the_same_day_changes_nothing(billed_once, tmp_path):
    data, expected = billed_once
    tmp_path = copy_of(data, tmp_path)
    again = bill(tmp_path, SC.last_day).summary()
    assert again["days_billed"] == 0 and again["files_ingested"] == 0
    assert again["files_skipped"] == len(list((tmp_path / "inbox").rglob("*.*")))
    assert_same(snapshot(tmp_path), expected)


def test_inbox_redelivered_under_other_file_names_is_skipped(billed_once, tmp_path):
    data, expected = billed_once
    tmp_path = copy_of(data, tmp_path)
    resent = deliver(tmp_path, SC, prefix="resent-")  # the same files under new names
    again = bill(tmp_path, SC.last_day).summary()
    assert again["files_ingested"] == 0 and again["days_billed"] == 0
    assert again["files_skipped"] == 2 * len(resent)
    assert_same(snapshot(tmp_path), expected)


def test_events_redelivered_inside_new_files_are_counted_and_billed_once(billed_once, tmp_path):
    data, expected = billed_once
    tmp_path = copy_of(data, tmp_path)
    # every third event of every day, mixed into two new files (one per half of the month)
    resent = [line for d in SC.events for line in SC.events[d][::3]]
    write_usage(tmp_path, "resent/a.jsonl", resent[: len(resent) // 2])
    write_usage(tmp_path, "resent/b.jsonl", resent[len(resent) // 2 :] + resent[:5])
    again = bill(tmp_path, SC.last_day).summary()
    assert again["files_ingested"] == 2
    assert again["events_accepted"] == 0 and again["events_rejected"] == 0
    assert again["duplicates"] == len(resent) + 5
    assert again["days_billed"] == 0
    assert_same(snapshot(tmp_path), expected)


def test_same_events_delivered_twice_in_the_first_delivery_are_billed_once(billed_once, tmp_path):
    _, expected = billed_once
    deliver(tmp_path, SC)
    first = SC.day(1)
    # the same events in another order (other content): a later file of the same run
    write_usage(tmp_path, "zz-again.jsonl", SC.events[first][::-1])
    report = bill(tmp_path, SC.last_day).summary()
    assert report["duplicates"] == len(SC.events[first])
    assert_same(snapshot(tmp_path), expected)


def test_billing_day_by_day_equals_billing_in_one_go(billed_once, tmp_path):
    _, expected = billed_once
    deliver(tmp_path, SC)
    for n in range(1, 9):  # the first days one run each, then the rest in one run
        assert bill(tmp_path, SC.day(n)).summary()["days_billed"] == 1
    assert bill(tmp_path, SC.last_day).summary()["days_billed"] == SC.days - 8
    got = snapshot(tmp_path)
    # billing_runs.events_rejected counts the rejects of the run (all ingested by the first)
    assert_same(without_runs(got), without_runs(expected))
    runs = query(warehouse(tmp_path), "select day, reason, status from billing_runs order by day")
    assert runs == [(SC.day(i), "new", "succeeded") for i in range(1, SC.days + 1)]


def test_rebill_from_an_early_day_reproduces_the_warehouse(billed_once, tmp_path):
    data, expected = billed_once
    copy_of(data, tmp_path)
    report = bill(tmp_path / "d", SC.last_day, rebill_from=SC.day(3)).summary()
    assert report["days_billed"] == SC.days - 2
    got = snapshot(tmp_path / "d")
    assert_same(without_runs(got), without_runs(expected))


def test_billing_runs_record_every_run_with_its_reason(tmp_path):
    sc = scenario(days=12, customers=5, events_per_day=8)
    held_back = sc.day(4)
    lines = sc.events[held_back]
    sc.events[held_back] = lines[:4]
    deliver(tmp_path, sc, through=sc.day(10))
    first = bill(tmp_path, sc.day(10)).run_id
    write_usage(tmp_path, "late/day4.jsonl", lines[4:])  # late data for day 4
    deliver(tmp_path, sc, since=sc.day(11))  # and days 11, 12 on time
    second = bill(tmp_path, sc.day(12)).run_id
    third = bill(tmp_path, sc.day(12), rebill_from=sc.day(8)).run_id
    got = query(
        warehouse(tmp_path),
        "select run_id, day, reason, status, events_accepted from billing_runs order by all",
    )
    events = {
        d: query(warehouse(tmp_path), "select count(*) from rated_events where day = ?", [d])
        for d in (sc.day(i) for i in range(1, 13))
    }
    expected = (
        [(first, sc.day(i), "new") for i in range(1, 11)]
        + [(second, sc.day(i), "late_data") for i in range(4, 11)]
        + [(second, sc.day(i), "new") for i in (11, 12)]
        + [(third, sc.day(i), "rebill") for i in range(8, 13)]
    )
    assert sorted((r[0], r[1], r[2]) for r in got) == sorted(expected)
    assert {r[3] for r in got} == {"succeeded"}
    # each row counts the day's accepted events as billed by that run
    for run_id, day, _reason, _status, accepted in got:
        if run_id != first or day != held_back:
            assert accepted == events[day][0][0]
    assert [r for r in got if r[0] == first and r[1] == held_back][0][4] == 4
    # credits and duration of each day's billing
    timing = query(
        warehouse(tmp_path),
        "select count(*) from billing_runs where not (seconds > 0 and started_at <= finished_at)",
    )
    assert timing == [(0,)]
    last_used = query(
        warehouse(tmp_path),
        "select b.day, b.credits_used, sum(c.used) from billing_runs as b "
        "join customer_days as c using (day) where b.run_id = ? group by all order by 1",
        [third],
    )
    assert all(r[1] == r[2] for r in last_used) and len(last_used) == 5
    runs = query(
        warehouse(tmp_path),
        "select run_id, status, days_billed, first_day, last_day, trigger from runs order by all",
    )
    assert sorted(runs) == sorted(
        [
            (first, "succeeded", 10, sc.day(1), sc.day(10), "cli"),
            (second, "succeeded", 9, sc.day(4), sc.day(12), "cli"),
            (third, "succeeded", 5, sc.day(8), sc.day(12), "cli"),
        ]
    )


@pytest.mark.parametrize("why", ["rebill", "late_data"])
def test_a_run_through_an_earlier_day_keeps_the_later_billed_days(billed_once, tmp_path, why):
    data, expected = billed_once
    d = copy_of(data, tmp_path)
    if why == "rebill":
        bill(d, SC.day(10), rebill_from=SC.day(5))
    else:
        late = SC.events[SC.day(5)][0].replace(f"e-{SC.day(5):%Y%m%d}-", "late-")
        write_usage(d, "late/day5.jsonl", [late])
        bill(d, SC.day(10))
    assert query(warehouse(d), "select max(day) from customer_days") == [(SC.last_day,)]
    billed = query(warehouse(d), "select count(distinct day) from customer_days")
    assert billed == [(SC.days,)]
    if why == "rebill":
        assert_same(without_runs(snapshot(d)), without_runs(expected))


def test_a_run_on_a_busy_data_dir_waits_then_fails_in_one_line_and_changes_nothing(
    billed_once, tmp_path, monkeypatch, caplog
):
    data, expected = billed_once
    shutil.copytree(data, tmp_path / "d")
    before = (tmp_path / "d" / "warehouse.duckdb").read_bytes()
    monkeypatch.setenv("ADBILL_BUSY_WAIT_SECONDS", "2")
    with run_lock(tmp_path / "d" / "state"), caplog.at_level(logging.WARNING, "adbill"):
        with pytest.raises(DataDirBusy, match="another adbill run is using .*; waited 2 s;"):
            bill(tmp_path / "d", SC.last_day, rebill_from=SC.day(1))
    assert "waiting up to 2 s for it to finish (ADBILL_BUSY_WAIT_SECONDS)" in caplog.text
    assert (tmp_path / "d" / "warehouse.duckdb").read_bytes() == before
    assert billing_facts(warehouse(tmp_path / "d")) == billing_facts(warehouse(data))


def test_a_run_that_finds_the_data_dir_busy_goes_on_when_the_other_run_ends(
    billed_once, tmp_path, monkeypatch
):
    data, _expected = billed_once
    d = copy_of(data, tmp_path)
    monkeypatch.setenv("ADBILL_BUSY_WAIT_SECONDS", "60")
    held = threading.Event()

    def other_run():
        with run_lock(d / "state"):
            held.set()
            time.sleep(1.5)

    other = threading.Thread(target=other_run)
    other.start()
    held.wait(10)
    report = bill(d, SC.last_day, rebill_from=SC.day(30))
    other.join()
    assert report.status == "succeeded" and len(report.days) == 3


def test_a_working_state_held_open_by_another_process_is_waited_for_and_named(
    billed_once, tmp_path, monkeypatch
):
    """An analyst who opened state/adbill.duckdb by mistake: the run waits, then one line
    naming the file and the process."""
    data, _expected = billed_once
    d = copy_of(data, tmp_path)
    state = d / "state" / "adbill.duckdb"
    monkeypatch.setenv("ADBILL_BUSY_WAIT_SECONDS", "1")
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(60)"
    )
    analyst = subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE)
    try:
        assert analyst.stdout.readline().strip() == b"open"
        with pytest.raises(DataDirBusy) as err:
            bill(d, SC.last_day)
    finally:
        analyst.kill()
        analyst.wait()
    assert str(err.value).startswith(
        f"the working state {state} is open in another process (PID {analyst.pid}); waited 1 s"
    )
