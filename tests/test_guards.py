"""Operator guards (interfaces.md "Guards every command keeps"): a typo at 00:30 is refused
with one line on stderr and changes nothing. Most guards fire before Prefect starts; the
flow is faked there, and two runs at the end go through the real flow in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import cli, cli_flow
from tasks.pipeline import RunRefused, check_run, run_billing
from tasks.settings import SettingError, Settings
from tests.ops_helpers import deliver, scenario, settings, write_usage

TODAY = date(2026, 11, 10)  # ADBILL_TODAY in every test here
YESTERDAY = TODAY - timedelta(days=1)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    # the flow is faked here: no temporary Prefect server either
    monkeypatch.setattr(cli_flow, "start_server", lambda args: None)
    for name in list(os.environ):
        if name.startswith("ADBILL_") and name != "ADBILL_TODAY":
            monkeypatch.delenv(name)


@pytest.fixture
def flow_calls(monkeypatch):
    """The flow replaced by a recorder: a guard that lets a run through calls it once."""
    calls = []

    def fake_run_flow(args, through, rebill_from=None, trigger="cli", **kw):
        calls.append(
            {
                "through": through,
                "rebill_from": rebill_from,
                "trigger": trigger,
                "data_dir": args.data_dir,
                "db": args.db,
                **kw,
            }
        )
        return {
            "days_billed": 0,
            "first_day": None,
            "last_day": None,
            "through": str(through),
            "events_accepted": 0,
            "events_rejected": 0,
            "duplicates": 0,
            "published": str(Path(args.data_dir) / "warehouse.duckdb"),
            "warnings": [],
        }

    monkeypatch.setattr(cli_flow, "run_flow", fake_run_flow)
    return calls


@pytest.fixture
def default_sigint():
    """SIGINT raises KeyboardInterrupt in the main thread, as in a fresh process: a library
    an earlier test of this worker ran (an asyncio runner, a server) may have left its own
    handler in place, and a test of Ctrl-C then slept through its signal (a flaky failure)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def data(tmp_path) -> Path:
    """A data dir with a small delivered inbox (nothing billed yet)."""
    d = tmp_path / "data"
    deliver(d, scenario(days=4, customers=3, events_per_day=4))
    return d


def run_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def assert_refused(code: int, err: list[str], *words: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    assert len(err[0]) <= 300 and "Traceback" not in err[0]
    for w in words:
        assert w in err[0], err[0]


def tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


# ---------------------------------------------------------------- --through and --rebill-from


def test_run_through_yesterday_is_billed_and_through_today_is_refused(data, flow_calls, capsys):
    before = tree(data)
    code, out, err = run_cli(capsys, "run", "--data-dir", data, "--through", TODAY)
    assert_refused(code, err, f"through {TODAY} is after yesterday ({YESTERDAY}", "nothing billed")
    assert flow_calls == [] and tree(data) == before and out == ""
    code, out, err = run_cli(capsys, "run", "--data-dir", data, "--through", YESTERDAY)
    assert code == 0 and err == []
    assert [c["through"] for c in flow_calls] == [YESTERDAY]


def test_run_without_through_bills_through_yesterday_in_the_billing_zone(data, flow_calls, capsys):
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 0 and err == []
    assert [c["through"] for c in flow_calls] == [YESTERDAY]


def test_the_flow_body_refuses_a_future_through_asked_for_from_the_ui(data):
    from flows.daily import daily_billing

    with pytest.raises(RunRefused, match=f"through {TODAY} is after yesterday"):
        daily_billing.fn(through=TODAY, data_dir=str(data))
    with pytest.raises(RunRefused, match="rebill_from"):
        daily_billing.fn(through=YESTERDAY, rebill_from=TODAY, data_dir=str(data))
    assert not (data / "state").exists()
    check_run(Settings(data_dir=data), YESTERDAY)  # the limit itself passes


def test_rebill_from_after_through_is_refused(data, flow_calls, capsys):
    through = YESTERDAY - timedelta(days=1)
    argv = ["run", "--data-dir", data, "--through", through, "--rebill-from"]
    code, _out, err = run_cli(capsys, *argv, through + timedelta(days=1))
    assert_refused(code, err, f"rebill_from {through + timedelta(days=1)} is after through")
    assert flow_calls == []
    code, _out, err = run_cli(capsys, *argv, through)
    assert code == 0 and [c["rebill_from"] for c in flow_calls] == [through]


def test_the_run_line_names_the_last_day_billed_past_an_earlier_through(data, capsys, monkeypatch):
    """`--through D --rebill-from X` on a data dir billed past D bills every billed day from
    X (the rules): the line said "through D" though the run billed days after it."""
    last = YESTERDAY

    def rebilled(args, through, rebill_from=None, trigger="cli", **kw):
        days = (last - rebill_from).days + 1
        return {
            "days_billed": days,
            "first_day": str(rebill_from),
            "last_day": str(last),
            "through": str(through),
            "events_accepted": 0,
            "events_rejected": 0,
            "published": str(Path(args.data_dir) / "warehouse.duckdb"),
            "warnings": [],
        }

    monkeypatch.setattr(cli_flow, "run_flow", rebilled)
    through, rebill = YESTERDAY - timedelta(days=3), YESTERDAY - timedelta(days=5)
    argv = ["run", "--data-dir", data, "--through", through, "--rebill-from", rebill]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert out.startswith(f"billed 6 day(s) through {last};")


# ---------------------------------------------------------------- the inbox


@pytest.mark.parametrize("exists", [True, False])
def test_a_run_on_a_data_dir_without_inbox_refuses_and_creates_nothing(
    tmp_path, flow_calls, capsys, exists
):
    d = tmp_path / "typo"
    if exists:
        (d / "state").mkdir(parents=True)
    before = tree(d)
    code, _out, err = run_cli(capsys, "run", "--data-dir", d)
    assert_refused(code, err, f"no inbox at {d / 'inbox'}", "nothing billed")
    assert flow_calls == [] and tree(d) == before and d.exists() == exists
    # the run itself (what the flow calls) refuses too, and makes no inbox
    with pytest.raises(RunRefused, match="no inbox at"):
        run_billing(settings(d), YESTERDAY)
    assert tree(d) == before


def test_an_empty_inbox_is_a_data_dir_that_has_no_deliveries_yet(tmp_path):
    (tmp_path / "inbox").mkdir()
    report = run_billing(settings(tmp_path), YESTERDAY)
    assert report.status == "succeeded" and report.days == []
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == []


# ---------------------------------------------------------------- a day without usage


def test_a_day_no_usage_file_touches_is_billed_and_named_as_a_warning(tmp_path):
    sc = scenario(days=8, customers=4, events_per_day=6, bad_lines=False)
    for n in (4, 6, 7):  # three days whose usage never arrived
        sc.events[sc.day(n)] = []
    deliver(tmp_path, sc)
    heard: list[str] = []
    report = run_billing(settings(tmp_path), sc.last_day, warn=heard.append)
    assert [d["day"] for d in report.days] == [sc.day(n) for n in range(1, 9)]
    assert report.days_without_usage == [sc.day(4), sc.day(6), sc.day(7)]
    summary = report.summary()
    assert summary["days_without_usage"] == [str(sc.day(n)) for n in (4, 6, 7)]
    assert (
        heard
        == summary["warnings"]
        == [
            f"no usage on {sc.day(4)}: billed with zero usage; "
            "check that the day's usage files were delivered",
            f"no usage on {sc.day(6)} .. {sc.day(7)}: billed with zero usage; "
            "check that the day's usage files were delivered",
        ]
    )
    # the late usage of day 4 arrives: the day is billed again and no longer warned about
    write_usage(
        tmp_path,
        "late/day4.jsonl",
        scenario(days=8, customers=4, events_per_day=6).events[sc.day(4)],
    )
    again = run_billing(settings(tmp_path), sc.last_day, warn=heard.append)
    assert again.days_without_usage == [sc.day(6), sc.day(7)]


def test_status_names_only_the_days_without_usage_among_days_kept_in_day_files(tmp_path):
    """Days the working database no longer holds (ADBILL_HOT_DAYS: their events in day files
    only) were all named "no usage" by status the morning after; only the empty ones are."""
    from tasks.status import read_status

    sc = scenario(days=8, customers=4, events_per_day=6, bad_lines=False)
    for n in (4, 6, 7):
        sc.events[sc.day(n)] = []
    deliver(tmp_path, sc)
    run_billing(settings(tmp_path, hot_days=1), sc.last_day)
    warned = [w for w in read_status(settings(tmp_path, hot_days=1)).warnings if "no usage" in w]
    assert warned == [
        f"no usage on {sc.day(4)}: billed with zero usage; "
        "check that the day's usage files were delivered",
        f"no usage on {sc.day(6)} .. {sc.day(7)}: billed with zero usage; "
        "check that the day's usage files were delivered",
    ]


def test_days_before_the_first_usage_of_all_are_not_warned_about(tmp_path):
    sc = scenario(days=6, customers=3, events_per_day=4, bad_lines=False)
    sc.events[sc.day(1)] = sc.events[sc.day(2)] = []  # orders come first, usage from day 3
    deliver(tmp_path, sc)
    report = run_billing(settings(tmp_path), sc.last_day)
    assert len(report.days) == 6 and report.days_without_usage == []
    # status neither, once the days are in their day files (a day without events has one)
    from tasks.status import read_status

    assert not [w for w in read_status(settings(tmp_path)).warnings if "no usage" in w]


# ---------------------------------------------------------------- adbill demo


def demo_args(d: Path, *extra) -> list:
    return ["demo", "--data-dir", d, "--customers", 3, "--days", 2, "--events-per-day", 5, *extra]


def test_demo_refuses_a_directory_it_did_not_make(tmp_path, flow_calls, capsys):
    d = tmp_path / "real"
    (d / "inbox" / "orders").mkdir(parents=True)
    (d / "inbox" / "orders" / "delivered.csv").write_text("precious\n")
    before = tree(d)
    code, out, err = run_cli(capsys, *demo_args(d))
    assert_refused(code, err, f"{d} exists and adbill demo did not make it", "nothing deleted")
    assert tree(d) == before and flow_calls == [] and out == ""
    # a file where the data dir should be
    (tmp_path / "file").write_text("x")
    code, _out, err = run_cli(capsys, *demo_args(tmp_path / "file"))
    assert_refused(code, err, "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "x"


def test_demo_refuses_to_overwrite_a_warehouse_outside_its_dir(tmp_path, flow_calls, capsys):
    prod = tmp_path / "prod.duckdb"
    prod.write_bytes(b"the analysts' warehouse")
    code, _out, err = run_cli(capsys, *demo_args(tmp_path / "demo", "--db", prod))
    assert_refused(code, err, f"the demo would overwrite {prod}")
    assert prod.read_bytes() == b"the analysts' warehouse" and not (tmp_path / "demo").exists()


def test_demo_replaces_its_own_directory_and_bills_through_yesterday(tmp_path, flow_calls, capsys):
    d = tmp_path / "demo"  # a new directory (an existing one without the marker is refused)
    code, _out, err = run_cli(capsys, *demo_args(d))
    assert code == 0, err
    assert (d / cli.DEMO_MARKER).is_file() and (d / "inbox" / "orders").is_dir()
    assert flow_calls[-1]["through"] == YESTERDAY and flow_calls[-1]["trigger"] == "demo"
    # its usage: the --days days that end yesterday
    usage = sorted(p.name for p in (d / "inbox" / "usage").rglob("*.jsonl.gz"))
    assert usage == [
        f"usage-{YESTERDAY - timedelta(days=1)}.jsonl.gz",
        f"usage-{YESTERDAY}.jsonl.gz",
    ]
    (d / "left-over.txt").write_text("from the last demo")
    code, _out, err = run_cli(capsys, *demo_args(d))
    assert code == 0, err
    assert not (d / "left-over.txt").exists() and (d / cli.DEMO_MARKER).is_file()


def test_demo_window_ending_after_yesterday_is_refused_before_anything_is_deleted(
    tmp_path, flow_calls, capsys
):
    d = tmp_path / "demo"
    d.mkdir()
    (d / cli.DEMO_MARKER).write_text("")
    (d / "keep.txt").write_text("the last demo")
    start = YESTERDAY - timedelta(days=1)  # 2 days from here end yesterday: fine
    code, _out, err = run_cli(capsys, *demo_args(d, "--start", start + timedelta(days=1)))
    assert_refused(code, err, f"ends on {TODAY}, after yesterday ({YESTERDAY}")
    assert (d / "keep.txt").exists() and flow_calls == []
    code, _out, err = run_cli(capsys, *demo_args(d, "--start", start))
    assert code == 0, err
    assert flow_calls[-1]["through"] == YESTERDAY


def test_demo_days_are_held_to_what_a_fresh_data_dir_accepts(
    tmp_path, flow_calls, capsys, monkeypatch
):
    # orders go back 40 days before the first day of usage; the history window is 45 here
    monkeypatch.setenv("ADBILL_MAX_HISTORY_DAYS", "45")
    argv = ["demo", "--data-dir", tmp_path / "demo", "--customers", 2, "--events-per-day", 0]
    code, _out, err = run_cli(capsys, *argv, "--days", 6)
    assert_refused(code, err, "--days 6 is more than the 5 days")
    assert not (tmp_path / "demo").exists()
    code, _out, err = run_cli(capsys, *argv, "--days", 5)
    assert code == 0, err


def test_generate_refuses_a_data_dir_that_has_billed(tmp_path, capsys):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "adbill.duckdb").write_bytes(b"")
    code, _out, err = run_cli(capsys, "generate", "--data-dir", tmp_path, "--customers", 2)
    assert_refused(code, err, "has billed", "nothing written")
    assert not (tmp_path / "inbox").exists()


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("command", "flag", "within"),
    [
        ("run", "--shards", ">= 0"),
        ("run", "--max-late-days", ">= 0"),
        ("demo", "--customers", "from 1 to 10,000,000"),
        ("demo", "--days", "from 1 to 3,650"),
        ("demo", "--events-per-day", "from 0 to 100,000,000"),
        ("generate", "--customers", "from 1 to 10,000,000"),
        ("generate", "--days", "from 1 to 3,650"),
        ("generate", "--events-per-day", "from 0 to 100,000,000"),
    ],
)
def test_counts_below_their_lowest_or_not_written_in_digits_are_refused(
    tmp_path, capsys, command, flag, within
):
    """A count is ASCII digits (blanks around them allowed): one below its lowest, a word,
    another script's digits (a fullwidth 3, an Arabic-Indic 3), Python's `1_0` or a sign are
    refused in one line, nothing made."""
    lowest = int(within.split()[1])
    argv = [command, "--data-dir", str(tmp_path / "d"), flag]
    name = flag[2:].replace("-", "_")
    assert getattr(cli.parser().parse_args([*argv, str(lowest)]), name) == lowest
    assert getattr(cli.parser().parse_args([*argv, f" {lowest + 1} "]), name) == lowest + 1
    for bad in (str(lowest - 1), "two", "\uff13", "\u0663", "1_0", f"+{lowest + 1}"):
        code, out, err = run_cli(capsys, *argv, bad)
        assert code == 2 and out == "" and len(err) == 1, err
        assert f"argument {flag}: {bad!r} is not a whole number {within}" in err[0]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["SHARDS", "MAX_LATE_DAYS", "MAX_HISTORY_DAYS"])
def test_a_bad_count_in_the_environment_is_one_line_naming_the_variable(
    data, flow_calls, capsys, monkeypatch, name
):
    for bad in ("-1", "many", "\uff13", "1_0"):
        monkeypatch.setenv(f"ADBILL_{name}", bad)
        code, _out, err = run_cli(capsys, "run", "--data-dir", data)
        limit = 1024 if name == "SHARDS" else 3650
        assert_refused(code, err, f"ADBILL_{name}={bad!r} is not a whole number from 0 to {limit}")
    assert flow_calls == []
    monkeypatch.setenv(f"ADBILL_{name}", "0")
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 0 and len(flow_calls) == 1, err


@pytest.mark.parametrize(("odd", "named"), [("x\\y", "a backslash"), ("q?x", "'?'")])
def test_a_path_duckdb_reads_otherwise_is_refused_before_anything_is_read(
    data, flow_calls, capsys, tmp_path, odd, named
):
    """DuckDB reads a backslash in a file's path as a slash (a data dir `x\\y/data` opened
    `x/y/data`'s working state and billed into it) and `?` as where options begin."""
    neighbour = tmp_path / "x" / "y" / "data"  # the data dir a backslash would have reached
    shutil.copytree(data, tmp_path / odd / "data")
    shutil.copytree(data, neighbour)
    before = tree(neighbour)
    for argv in (
        ["run", "--data-dir", tmp_path / odd / "data"],
        ["run", "--plan", "--data-dir", tmp_path / odd / "data"],
        ["status", "--data-dir", tmp_path / odd / "data"],
        ["run", "--data-dir", data, "--db", tmp_path / odd / "wh.duckdb"],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert_refused(code, err, f"holds {named}, which DuckDB reads differently", "nothing read")
    assert flow_calls == [] and tree(neighbour) == before
    with pytest.raises(SettingError, match=f"--data-dir / ADBILL_DATA_DIR .* holds {named}"):
        Settings(data_dir=tmp_path / odd / "data")


def test_a_data_dir_that_is_a_file_is_named_not_blamed_on_the_db(tmp_path, capsys, flow_calls):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a data dir\n")
    for argv in (["run"], ["run", "--plan"], ["status"], ["statement", "c1"]):
        code, _out, err = run_cli(capsys, *argv, "--data-dir", notes)
        assert_refused(code, err, f"--data-dir / ADBILL_DATA_DIR {notes} is a file, not a folder")
        assert "--db" not in err[0]
    assert flow_calls == [] and notes.read_text() == "not a data dir\n"


def test_counts_given_as_flow_parameters_are_refused_too(data):
    from flows.daily import daily_billing

    with pytest.raises(SettingError, match="shards must be a whole number from 0 to 1024, not -1"):
        daily_billing.fn(through=YESTERDAY, data_dir=str(data), shards=-1)
    with pytest.raises(
        SettingError, match="max_late_days must be a whole number from 0 to 3650, not -1"
    ):
        Settings(data_dir=data, max_late_days=-1)
    assert Settings(data_dir=data, max_late_days=0, shards=0).shards == 0


@pytest.mark.parametrize("bad", ["abc", "-1", "inf", "nan", "1e3", "86400.5", "86401", "\uff13"])
def test_a_bad_busy_wait_is_refused_before_the_server_starts(
    data, flow_calls, capsys, monkeypatch, bad
):
    started = []
    monkeypatch.setattr(cli_flow, "start_server", lambda args: started.append(args))
    monkeypatch.setenv("ADBILL_BUSY_WAIT_SECONDS", bad)
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    says = f"ADBILL_BUSY_WAIT_SECONDS={bad!r} is not a number of seconds from 0 to 86400 (a day)"
    assert_refused(code, err, says)
    assert started == [] and flow_calls == [] and not (data / "state").exists()


@pytest.mark.parametrize(
    ("given", "seconds"), [("", 1800.0), ("0", 0.0), (" 2.5 ", 2.5), ("86400", 86400.0)]
)
def test_the_busy_wait_at_its_limits(monkeypatch, given, seconds):
    from tasks.run_lock import busy_wait_seconds

    monkeypatch.setenv("ADBILL_BUSY_WAIT_SECONDS", given)
    assert busy_wait_seconds() == seconds


def test_a_bad_today_or_time_zone_is_one_line(data, flow_calls, capsys, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-13-01")
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert_refused(code, err, "ADBILL_TODAY='2026-13-01' is not a date")
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    # (`localtime`: the machine's zone to Python's zoneinfo, unknown to DuckDB, whose SQL
    # dates the days: a run would stop at its first date)
    for bad in ("Mars/Olympus", "localtime"):
        monkeypatch.setenv("ADBILL_BILLING_TZ", bad)
        code, _out, err = run_cli(capsys, "run", "--data-dir", data)
        assert_refused(code, err, f"ADBILL_BILLING_TZ={bad!r} is not a time zone")
    assert flow_calls == []


@pytest.mark.parametrize("bad", ["20261125", "2026-W48-3", "2026-11-31", " 2026-11-25"])
def test_a_date_not_written_yyyy_mm_dd_is_refused(data, flow_calls, capsys, monkeypatch, bad):
    # date.fromisoformat alone would read the first two as 25 November: a typo's guess
    for flag in ("--through", "--rebill-from"):
        code, _out, err = run_cli(capsys, "run", "--data-dir", data, flag, bad)
        assert_refused(code, err, f"argument {flag}: {bad!r} is not a date (YYYY-MM-DD)")
    monkeypatch.setenv("ADBILL_TODAY", bad)
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert_refused(code, err, f"ADBILL_TODAY={bad!r} is not a date (YYYY-MM-DD)")
    assert flow_calls == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["status", "--since", "20261125"],
            "argument --since: '20261125' is not a date or instant",
        ),
        (["status", "--since", "2026-W48-3"], "is not a date or instant"),
        (["statement", "c1", "--month", "２０２６-１１"], "is not a month (YYYY-MM)"),
    ],
    ids=["since-compact", "since-week", "month-full-width"],
)
def test_status_and_statement_dates_are_written_as_iso(data, capsys, argv, words):
    code, _out, err = run_cli(capsys, *argv, "--data-dir", data)
    assert_refused(code, err, words)


def test_a_tilde_no_shell_expanded_is_the_home_dir_and_an_empty_path_is_refused(
    data, flow_calls, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("HOME", str(data.parent))
    monkeypatch.chdir(tmp_path)
    code, _out, err = run_cli(capsys, "run", f"--data-dir=~/{data.name}", "--db=~/w.duckdb")
    assert code == 0, err
    assert flow_calls[0]["data_dir"] == str(data)
    assert flow_calls[0]["db"] == str(data.parent / "w.duckdb")
    assert not (tmp_path / "~").exists()  # no directory named ~ made in the current one
    for flag in ("--data-dir", "--db"):
        code, _out, err = run_cli(capsys, "run", flag, "")
        assert_refused(code, err, f"argument {flag}: an empty path")
        code, _out, err = run_cli(capsys, "run", flag, f" {data}")
        assert_refused(code, err, f"argument {flag}: ' {data}' has white space around it")
    # an empty ADBILL_DATA_DIR is unset, as every ADBILL_* variable: the default data dir
    monkeypatch.setenv("ADBILL_DATA_DIR", "")
    code, _out, err = run_cli(capsys, "run")
    assert_refused(code, err, "no inbox at", "adbill-data")
    assert len(flow_calls) == 1
    # the variable's value refused names the variable (an env file at fault, no flag typed)
    monkeypatch.setenv("ADBILL_DATA_DIR", f"{data} ")
    code, _out, err = run_cli(capsys, "run")
    says = f"argument --data-dir: '{data} ' has white space around it (from ADBILL_DATA_DIR)"
    assert_refused(code, err, says)
    monkeypatch.setenv("ADBILL_DATA_DIR", str(data))
    monkeypatch.setenv("ADBILL_DB", " ")
    code, _out, err = run_cli(capsys, "run")
    assert_refused(code, err, "argument --db: an empty path (give a directory or file) (from")
    assert len(flow_calls) == 1


def test_an_empty_task_runner_variable_is_unset_and_a_bad_one_is_named(
    data, flow_calls, capsys, monkeypatch
):
    monkeypatch.setenv("ADBILL_TASK_RUNNER", "")
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 0, err
    assert flow_calls[-1]["task_runner"] == "local"
    monkeypatch.setenv("ADBILL_TASK_RUNNER", "daks")
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    says = "--task-runner must be local, dask or dask=ADDRESS, not 'daks' (the flag or ADBILL_"
    assert_refused(code, err, says)
    assert len(flow_calls) == 1


@pytest.mark.parametrize(
    ("runner", "says"),
    [
        ("dask=", "an empty address"),  # (dask=$UNSET: it started a local cluster)
        ("dask=../x", "is not a scheduler address"),  # (it failed inside the first day)
        ("dask=tcp://h", "is not a scheduler address"),
        ("dask=tcp://h:0", "needs a host and a port from 1 to 65535"),
        ("dask=tcp://h:65536", "needs a host and a port from 1 to 65535"),
        ("dask=inproc://x", "is not an address of a protocol Dask serves"),
        ("dask=ftp://h:21", "is not an address of a protocol Dask serves"),
        ("dask=tcp://h :1", "white space or control characters"),
    ],
)
def test_a_dask_scheduler_address_is_checked_before_anything_is_billed(
    data, flow_calls, capsys, runner, says
):
    code, _out, err = run_cli(capsys, "run", "--data-dir", data, "--task-runner", runner)
    assert_refused(code, err, f"--task-runner {runner}: ", says, "nothing billed")
    assert flow_calls == []


@pytest.mark.parametrize(
    "runner",
    [
        "dask",
        "dask=tcp://10.0.0.5:8786",
        "dask=10.0.0.5:1",
        "dask=tls://h:65535",
        "dask=ws://h:8786",
        "dask=ucx://h:13337",
    ],
)
def test_a_dask_scheduler_address_with_a_host_and_port_is_taken(data, flow_calls, capsys, runner):
    code, _out, err = run_cli(capsys, "run", "--data-dir", data, "--task-runner", runner)
    assert code == 0, err
    assert flow_calls[-1]["task_runner"] == runner


# ---------------------------------------------------------------- errors and interrupts


def test_a_failure_is_one_line_naming_what_the_run_was_doing(data, capsys, monkeypatch):
    def fails(args, through, *a, **kw):
        cli.LOGS.start(Path(args.data_dir))
        exc = OSError(28, "No space left on device " + "x" * 400)
        exc.add_note(f"while billing {YESTERDAY}")
        raise exc

    monkeypatch.setattr(cli_flow, "run_flow", fails)
    code, out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 1 and out == "" and len(err) == 1, err
    line = err[0]
    assert len(line) <= 300 and line.startswith("adbill run: OSError: [Errno 28] No space left")
    log = data / "state" / "logs" / "adbill.log"
    assert line.endswith(f"... (while billing {YESTERDAY}); traceback in {log}")
    assert "Traceback (most recent call last)" in log.read_text()


def test_a_wrapped_duckdb_error_shows_its_cause_on_the_one_line():
    """DuckDB wraps a failed commit's cause at the end of a long message: cut at 300
    characters, the line lost "No space left on device" and the path."""
    import duckdb

    exc = duckdb.TransactionException(
        "TransactionContext Error: Failed to commit: " + "detail " * 40 + 'Original error: "Failed '
        'to create checkpoint because of error: Could not write file "/srv/adbill/state/'
        'adbill.duckdb": No space left on device"'
    )
    exc.add_note("while writing the working state to disk (checkpoint)")
    line = cli._error_line("run", exc)
    assert line.startswith("adbill run: TransactionException: Failed to create checkpoint ")
    assert 'adbill.duckdb": No space left on device (while writing the working state' in line


def test_a_failing_day_names_the_day_on_the_error(tmp_path):
    sc = scenario(days=4, customers=3, events_per_day=4)
    deliver(tmp_path, sc)

    def disk_full(stage: str) -> None:
        if stage == "expire":
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as failed:
        run_billing(settings(tmp_path), sc.last_day, after_stage=disk_full)
    assert failed.value.__notes__ == [f"while billing {sc.day(1)}"]
    assert cli._error_line("run", failed.value) == (
        f"adbill run: OSError: [Errno 28] No space left on device (while billing {sc.day(1)})"
    )


def test_a_failing_command_without_a_run_log_keeps_its_traceback_too(tmp_path, capsys, monkeypatch):
    """status (no flow, no run log started) on a damaged working state: the traceback in the
    data dir's state/logs; on a data dir without state/, in a file of its own under the
    temporary folder (no folder made in it)."""
    d = tmp_path / "d"
    (d / "inbox").mkdir(parents=True)
    (d / "state").mkdir()
    (d / "state" / "adbill.duckdb").write_bytes(b"not a database")
    code, _out, err = run_cli(capsys, "status", "--data-dir", d)
    log = d / "state" / "logs" / "adbill.log"
    assert code == 1 and len(err) == 1 and err[0].endswith(f"; traceback in {log}")
    assert "Traceback (most recent call last)" in log.read_text()
    assert "not a valid DuckDB database file" in log.read_text()
    # no state/ to keep it in (or one it cannot write in): a file of its own
    from flows.cli_terminal import LOGS

    def unwritable(data_dir):
        raise PermissionError(f"{data_dir}/state/logs: read-only")

    monkeypatch.setattr(LOGS, "start", unwritable)
    try:
        raise ValueError("read-only")
    except ValueError as exc:
        LOGS.error("status", exc, str(d))
    own = LOGS.path
    LOGS.stop()
    assert own.name.startswith("adbill-status-") and "ValueError: read-only" in own.read_text()
    own.unlink()
    monkeypatch.undo()

    try:
        raise ValueError("boom")
    except ValueError as exc:
        LOGS.error("generate", exc, str(tmp_path / "typo"))
    own = LOGS.path
    LOGS.stop()
    try:
        assert own.name.startswith("adbill-generate-") and "ValueError: boom" in own.read_text()
        assert not (tmp_path / "typo").exists()
    finally:
        own.unlink()


def test_an_interrupt_is_one_line(data, capsys, monkeypatch):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_flow, "run_flow", interrupted)
    code, out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 130 and out == ""
    assert err == ["adbill: interrupted; the published warehouse is unchanged"]


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("swallowed", [False, True], ids=["raised", "query-interrupted"])
def test_sigterm_and_sighup_end_a_command_as_an_interrupt_does(
    data, capsys, monkeypatch, name, swallowed
):
    """A scheduler's SIGTERM or a closed terminal's SIGHUP: one line, exit 128 + signal, the
    temporary server stopped (main's finally) — also when the signal reached a DuckDB query
    first, which reports `Query interrupted` in its place."""
    import signal
    import time

    from flows import cli as cli_module

    signum = getattr(signal, name)

    def signalled(*a, **kw):
        try:
            # (to this main thread: sent to the process it may land on another thread, and
            # be raised only after this try)
            signal.pthread_kill(threading.get_ident(), signum)
            time.sleep(5)
        except KeyboardInterrupt:
            if swallowed:
                raise RuntimeError("Query interrupted") from None
            raise
        raise AssertionError("the signal did not interrupt the command")

    monkeypatch.setattr(cli_flow, "run_flow", signalled)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    code, out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 128 + signum and out == ""
    assert err == [f"adbill: interrupted ({name}); the published warehouse is unchanged"]
    # the handlers and the wake-up fd are the process's own again
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
    assert signal.set_wakeup_fd(wakeup) == wakeup
    assert cli_module.Signals.WATCHED == (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def test_a_failure_after_a_signal_the_command_handled_is_a_failure(
    data, capsys, monkeypatch, default_sigint
):
    """Only a DuckDB query's `Query interrupted` is told as the interruption the signal
    was; a signal the command caught itself does not turn a later error into one; a broken
    pipe that is not the terminal's output is an error like any other."""
    import signal
    import time

    def handled_then_failed(*a, **kw):
        try:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # (as above)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise ValueError("a real failure")

    monkeypatch.setattr(cli_flow, "run_flow", handled_then_failed)
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 1 and err[0].startswith("adbill run: ValueError: a real failure")

    def other_pipe(*a, **kw):
        r, w = os.pipe()
        os.close(r)
        try:
            os.write(w, b"x")
        finally:
            os.close(w)

    monkeypatch.setattr(cli_flow, "run_flow", other_pipe)
    code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    assert code == 1 and err[0].startswith("adbill run: BrokenPipeError")


def test_a_second_signal_while_the_command_cleans_up_does_not_escape(data, capsys, monkeypatch):
    import signal

    def failed(*a, **kw):
        raise ValueError("boom")

    def stop_server_signalled():
        os.kill(os.getpid(), signal.SIGTERM)  # (default handler restored: ignore it here)

    monkeypatch.setattr(cli_flow, "run_flow", failed)
    monkeypatch.setattr(cli_flow, "stop_server", stop_server_signalled)
    before = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        code, _out, err = run_cli(capsys, "run", "--data-dir", data)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 1 and err[0].startswith("adbill run: ValueError: boom")


def test_the_temporary_server_ends_when_the_command_that_started_it_is_killed(tmp_path):
    """The server's first step asks Linux to end it with its parent (PR_SET_PDEATHSIG): a
    `kill -9` of the command leaves no server behind. Here the server is a sleep."""
    import signal
    import subprocess
    import sys
    import time

    from flows.tempserver import _ORPHAN_GUARD

    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()),"
            " '-c', 'import time; time.sleep(60)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
            _ORPHAN_GUARD,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    cmdline = Path(f"/proc/{child}/cmdline")
    deadline = time.monotonic() + 10
    # the child alive, the guard done (it made its request and became the sleep)
    while not (b"time.sleep(60)" in (seen := cmdline.read_bytes()) and b"prctl" not in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # (a zombie until init reaps it: its state in /proc says so)
        stat = Path(f"/proc/{child}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its parent")


@pytest.mark.slow  # starts a temporary Prefect server: a minute or more
def test_a_run_through_the_real_flow_shows_progress_warnings_and_one_error_line(tmp_path):
    """The terminal of `adbill run` (a subprocess: Prefect's own console included): progress
    and the day without usage as a warning; then a failing run: one line, the traceback in
    the log. Starts Prefect's temporary server (twice, 20-80 s each on a busy machine)."""
    sc = scenario(days=5, customers=3, events_per_day=5, bad_lines=False)
    sc.events[sc.day(3)] = []
    data = tmp_path / "data"
    deliver(data, sc)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ADBILL_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "ADBILL_TODAY": TODAY.isoformat()}

    def adbill(*argv, **more_env):
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *map(str, argv)],
            cwd=PROJECT_ROOT,
            env=env | more_env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    ok = adbill("run", "--data-dir", data, "--through", sc.last_day)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "Traceback" not in ok.stderr
    warning = f"no usage on {sc.day(3)}: billed with zero usage"
    assert f"warning: {warning}" in ok.stdout
    assert any("WARNING" in line and warning in line for line in ok.stderr.splitlines())
    assert ok.stdout.startswith(f"billed 5 day(s) through {sc.last_day}")

    failed = adbill("run", "--data-dir", data, ADBILL_CATALOG=str(tmp_path / "nope.toml"))
    assert failed.returncode == 1
    err = failed.stderr.splitlines()
    assert "Traceback" not in failed.stderr and not any(" ERROR " in line for line in err)
    mine = [line for line in err if line.startswith("adbill run:")]
    log = data / "state" / "logs" / "adbill.log"
    assert mine == [
        f"adbill run: CatalogError: catalog file {tmp_path / 'nope.toml'} not found; "
        f"traceback in {log}"
    ]
    assert "Traceback (most recent call last)" in log.read_text()


def test_the_cli_module_runs_as_a_program():
    """`python -m flows.cli` (how the slow tests and a deployment's process start it) is the
    same command as the `adbill` script."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--through", "20261125"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "'20261125' is not a date (YYYY-MM-DD)" in done.stderr
