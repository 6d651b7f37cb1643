"""`adbill status`: the morning's facts (last runs, days billed through, days waiting,
rejects, warnings) and a non-zero exit when the last scheduled run failed."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta

import pytest

from flows import cli
from tasks.db import connect
from tasks.pipeline import run_billing
from tasks.plan import plan_run
from tasks.settings import DEFAULT_CATALOG, Settings
from tasks.status import billing_status, read_status, write_status
from tests.ops_helpers import (
    bill,
    deliver,
    publish_fails_with_a_full_disk,
    scenario,
    settings,
    write_usage,
)

SC = scenario(days=8, customers=4, events_per_day=6)
TODAY = SC.last_day + timedelta(days=3)  # two days after the last delivered day are due


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    monkeypatch.delenv("ADBILL_DB", raising=False)


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    """The scenario billed by a scheduled run through its last day."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADBILL_TODAY", TODAY.isoformat())
        data = tmp_path_factory.mktemp("status") / "d"
        deliver(data, SC)
        report = bill(data, SC.last_day, trigger="scheduled")
    return data, report.run_id


def status_cli(capsys, data, *more):
    code = cli.main(["status", "--data-dir", str(data), *more])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_status_after_a_good_night_names_the_run_the_days_and_exits_0(billed, capsys):
    data, run_id = billed
    st = read_status(settings(data))
    assert st.billed_through == SC.last_day
    assert [(p.day, p.reason) for p in st.waiting] == [
        (SC.last_day + timedelta(days=1), "new"),
        (SC.last_day + timedelta(days=2), "new"),
    ]
    assert st.runs[0]["run_id"] == run_id and st.last_scheduled["status"] == "succeeded"
    assert sum(st.lines_rejected.values()) == 3  # the scenario's bad lines
    code, out, err = status_cli(capsys, data)
    assert code == 0 and err == []
    assert f"billed through: {SC.last_day}" in out
    assert f"last scheduled run: {run_id} succeeded" in out
    code, out, _ = status_cli(capsys, data, "--json")
    facts = json.loads(out)
    assert facts["days_waiting"] == 2 and facts["last_scheduled_status"] == "succeeded"


def test_a_failed_scheduled_run_exits_3_and_its_late_data_shows_as_stale_days(
    billed, tmp_path, capsys
):
    data, _ = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    # late lines for day 3 arrive; the night's run ingests them, then fails
    write_usage(d, "2026/11/late.jsonl", SC.events[SC.day(3)][:2][::-1] + [_late_line()])
    write_usage(d, "link-target.jsonl", [])

    def boom(stage):
        if stage == "ingest":
            raise OSError("disk full")

    with pytest.raises(OSError):
        bill(d, SC.last_day, trigger="scheduled", after_stage=boom)
    code, out, err = status_cli(capsys, d)
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert len(err) == 1 and err[0].startswith("adbill status: the last scheduled run ")
    assert "failed: OSError: disk full" in err[0]
    st = read_status(settings(d))
    assert st.waiting[0].day == SC.day(3) and st.stale[0].reason == "late_data"
    assert any("stale" in w for w in st.warnings)


def test_a_run_stopped_while_it_published_is_named_by_status(billed, tmp_path, capsys):
    """The run records itself succeeded, then copies the warehouse: killed in between, the
    published warehouse is the night before's, and status says so (the next run publishes);
    a scheduled run stopped there is a failed night (exit 3; it said succeeded, exit 0)."""
    data, first = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    before = (d / "warehouse.duckdb").read_bytes()
    write_usage(d, "2026/11/late.jsonl", [_late_line()])
    second = bill(d, SC.last_day, trigger="scheduled").run_id
    (d / "warehouse.duckdb").write_bytes(before)  # as a kill before the copy leaves it
    code, out, err = status_cli(capsys, d)
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert err == [
        f"adbill status: the last scheduled run {second} failed: interrupted while it published"
    ]
    assert (
        f"does not hold the last succeeded run {second} (it holds {first}): the run was "
        "stopped while it published" in out
    )
    bill(d, SC.last_day, trigger="scheduled")  # the next run publishes
    code, out, _err = status_cli(capsys, d)
    assert code == 0 and "does not hold" not in out
    # a run that published to another warehouse (--db) leaves this one behind, rightly
    elsewhere = tmp_path / "elsewhere.duckdb"
    write_usage(d, "2026/11/later.jsonl", [_late_line().replace("late-1", "late-2")])
    run_billing(
        Settings(data_dir=d, db=elsewhere, billing_tz="Asia/Shanghai", max_late_days=60),
        SC.last_day,
        trigger="scheduled",
    )
    code, out, _err = status_cli(capsys, d)
    assert elsewhere.is_file() and "does not hold" not in out
    assert "not published" not in out  # (no run failed: its days are in the other warehouse)


def _late_line() -> str:
    return json.dumps(
        {
            "event_id": "late-1",
            "customer_id": "c01",
            "account_id": "c01-a0",
            "function": "copy_generation",
            "quantity": 1,
            "status": "succeeded",
            "occurred_at": f"{SC.day(3)}T12:00:00+08:00",
        }
    )


def test_an_interrupted_run_counts_as_failed_and_the_status_row_is_kept(billed, tmp_path):
    data, run_id = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    con = connect(d / "state" / "adbill.duckdb")
    try:
        con.execute(
            "insert into runs (run_id, started_at, status, trigger) "
            "values ('killed', now(), 'running', 'scheduled')"
        )
        st = billing_status(con, settings(d))
        assert st.failed and st.last_scheduled["error"] == "interrupted"
        # killed after billing two days: its row was never finished, its days are recorded
        con.execute(
            "insert into billing_runs (run_id, day, status) values ('killed', $a, 'succeeded'), "
            "('killed', $b, 'succeeded'), ('killed', $c, 'failed')",
            {"a": SC.day(2), "b": SC.day(3), "c": SC.day(4)},
        )
        [killed] = [r for r in billing_status(con, settings(d)).runs if r["run_id"] == "killed"]
        assert (killed["first_day"], killed["last_day"], killed["days_billed"]) == (
            SC.day(2),
            SC.day(3),
            2,
        )
        assert f"{SC.day(2)} .. {SC.day(3)}  interrupted" in "\n".join(
            billing_status(con, settings(d)).lines()
        )
        # the row a run writes just before it publishes: its own run counts as succeeded
        mine = billing_status(con, settings(d), current_run="killed")
        assert not mine.failed
        write_status(con, mine, "killed", "1c3b-flow-run")
        row = con.execute(
            "select billed_through, days_waiting, last_scheduled_status, flow_run_id, "
            "lines_rejected from billing_status where run_id = 'killed'"
        ).fetchall()
    finally:
        con.close()
    assert row == [(SC.last_day, 2, "succeeded", "1c3b-flow-run", 3)]


def test_stage_seconds_count_the_ingest_rating_and_the_runs_re_rating_together():
    """The run report's stage figures (the benchmark's table) keep the ingest's rating when
    the run's re-rating stage shares its name."""
    from tasks.ingest_report import IngestReport
    from tasks.run_report import RunReport

    ingest = IngestReport()
    ingest.seconds.update({"read": 1.0, "rate": 0.4})
    report = RunReport(run_id="r", through=date(2026, 11, 1), ingest=ingest)
    report.seconds.update({"rate": 0.1, "publish": 0.2})
    assert report.stage_seconds() == pytest.approx({"read": 1.0, "rate": 0.5, "publish": 0.2})


# ---------------------------------------------------------------- a scheduled run failing early


def failing_scheduled_run(monkeypatch, capsys, d, body, raises) -> tuple[int, str, list[str]]:
    """The scheduled flow on data dir `d` with `body` as its billing (it raises `raises`),
    then `adbill status`'s exit code, output and error lines."""
    import flows.daily as daily

    monkeypatch.setattr(daily, "_daily_billing", body)
    with pytest.raises(raises):
        daily.daily_billing.fn(data_dir=str(d), trigger="scheduled")
    return status_cli(capsys, d)


def test_a_scheduled_run_that_fails_before_it_is_recorded_makes_status_exit_3(
    billed, tmp_path, capsys, monkeypatch
):
    """interfaces.md: status exits non-zero when the last scheduled run failed — also when
    it failed before its run was recorded (the catalog unreadable, the data dir busy)."""

    data, run_id = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)

    def early(*args, **kwargs):
        raise FileNotFoundError("catalog /nonexistent.toml not found")

    code, out, err = failing_scheduled_run(monkeypatch, capsys, d, early, FileNotFoundError)
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert "last scheduled run: - failed: FileNotFoundError: catalog /nonexistent.toml" in out
    assert len(err) == 1 and "failed before it started: FileNotFoundError" in err[0]
    # the run's own row (it succeeded, earlier) is still listed
    assert f"{run_id}" in out
    # a later scheduled run that succeeds is the last one again
    monkeypatch.undo()
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    bill(d, SC.last_day, trigger="scheduled")
    code, out, err = status_cli(capsys, d)
    assert code == 0 and err == [], err


def test_an_early_failure_of_a_first_scheduled_run_exits_3_and_one_from_the_shell_does_not(
    tmp_path, capsys, monkeypatch
):
    import flows.daily as daily

    d = tmp_path / "fresh"
    (d / "inbox").mkdir(parents=True)

    def early(*args, **kwargs):
        raise RuntimeError("data dir busy")

    monkeypatch.setattr(daily, "_daily_billing", early)
    with pytest.raises(RuntimeError):
        daily.daily_billing.fn(data_dir=str(d), trigger="cli")
    code, _, err = status_cli(capsys, d)
    assert code == 2 and "has billed nothing yet" in err[0]  # not a scheduled run: not kept
    with pytest.raises(RuntimeError):
        daily.daily_billing.fn(data_dir=str(d), trigger="scheduled")
    code, out, err = status_cli(capsys, d)
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert "nothing billed yet" in out and "RuntimeError: data dir busy" in err[0]
    # a data dir without an inbox (mistyped, unmounted) is never written into
    gone = tmp_path / "typo"
    with pytest.raises(RuntimeError):
        daily.daily_billing.fn(data_dir=str(gone), trigger="scheduled")
    assert not gone.exists()


def test_the_newest_scheduled_failure_is_shown_and_a_runs_own_failure_keeps_its_run_id(
    billed, tmp_path, capsys, monkeypatch
):
    """A scheduled run failing after its row was recorded is shown with its run id; a later
    scheduled run refused before it had a row (the data dir busy) is then the last one — it
    was hidden behind the older failed row, whose cause status kept showing."""

    data, _run_id = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    write_usage(d, "2026/11/late.jsonl", [_late_line()])

    def boom(stage):
        if stage == "ingest":
            raise OSError("disk full")

    def fails_in_its_run(*args, **kwargs):
        return bill(d, SC.last_day, trigger="scheduled", after_stage=boom)

    code, out, err = failing_scheduled_run(monkeypatch, capsys, d, fails_in_its_run, OSError)
    failed_run = read_status(settings(d)).runs[0]["run_id"]
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert f"last scheduled run: {failed_run} failed: OSError: disk full" in out

    def busy(*args, **kwargs):
        raise RuntimeError("another adbill run is using the data dir; waited 1 s")

    code, out, err = failing_scheduled_run(monkeypatch, capsys, d, busy, RuntimeError)
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert "last scheduled run: - failed: RuntimeError: another adbill run is using" in out


@pytest.mark.parametrize("text", ["", "{not json", '{"at": "yesterday"}', '["a"]', "\udcff"])
def test_a_damaged_failure_record_is_no_failure(tmp_path, text):
    from tasks.status import SCHEDULED_FAILURE, last_scheduled_failure

    s = settings(tmp_path)
    s.state_dir.mkdir(parents=True)
    (s.state_dir / SCHEDULED_FAILURE).write_bytes(text.encode("utf-8", "surrogateescape"))
    assert last_scheduled_failure(s) is None


def test_a_failed_runs_error_says_what_happened_even_without_a_message():
    from tasks.pipeline import _error_text

    assert _error_text(KeyboardInterrupt()) == "interrupted (KeyboardInterrupt)"
    assert _error_text(ValueError("disk full")) == "ValueError: disk full"
    assert _error_text(RuntimeError()) == "RuntimeError"
    # Prefect's own exception for a SIGTERM (no message: it said TerminationSignal)
    from prefect.exceptions import TerminationSignal

    assert _error_text(TerminationSignal(15)) == "interrupted (SIGTERM)"


def test_a_changed_price_shows_its_days_waiting_as_price_change_as_plan_and_the_run_see_them(
    billed, tmp_path, capsys
):
    """The operator edits a price in force on billed days: status names those days waiting
    (price_change, not late data) from the version's first day, as the next run bills them."""
    data, _ = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    cheaper = tmp_path / "catalog.toml"
    cheaper.write_text(
        DEFAULT_CATALOG.read_text()
        + '\n[[functions]]\ncode = "copy_generation"\n'
        + f"effective_from = {SC.day(3).isoformat()}T00:00:00+08:00\ncredits_per_unit = 2\n"
    )
    st = read_status(settings(d, catalog_path=cheaper))
    waiting = [(p.day, p.reason) for p in st.waiting]
    repriced = [(SC.day(n), "price_change") for n in range(3, SC.days + 1)]
    new = [(SC.last_day + timedelta(days=k), "new") for k in (1, 2)]
    assert waiting == repriced + new
    stale = [w for w in st.warnings if "stale" in w]
    assert stale == [
        f"{len(repriced)} billed day(s) from {SC.day(3)} are stale (the catalog file changes a "
        "price in force on them); the next run bills them again"
    ]
    assert [
        (p.day, p.reason) for p in plan_run(settings(d, catalog_path=cheaper), SC.last_day).days
    ] == repriced
    report = run_billing(settings(d, catalog_path=cheaper, max_late_days=60), SC.last_day)
    assert report.repriced_from == SC.day(3)
    assert [
        (p.day, p.reason) for p in read_status(settings(d, catalog_path=cheaper)).waiting
    ] == new


def test_an_edited_first_version_waits_from_the_data_dirs_first_day_as_the_plan_says(
    billed, tmp_path
):
    """A first version (no effective_from) edited re-bills from the data dir's first day,
    not from year 1 (status said 739,929 days waiting)."""
    data, _ = billed
    text = DEFAULT_CATALOG.read_text()
    first = 'code = "copy_generation"\ncategory = "copywriting"\n'
    at = text.index(first)
    end = text.index("credits_per_unit = 1\n", at)
    edited = tmp_path / "catalog.toml"
    edited.write_text(text[:end] + "credits_per_unit = 3\n" + text[end + 21 :])
    st = read_status(settings(data, catalog_path=edited))
    planned = plan_run(settings(data, catalog_path=edited), SC.last_day).days
    assert planned[0].day == SC.start and {p.reason for p in planned} == {"price_change"}
    assert [(p.day, p.reason) for p in st.waiting] == [(p.day, p.reason) for p in planned] + [
        (SC.last_day + timedelta(days=k), "new") for k in (1, 2)
    ]


def test_a_catalog_the_next_run_would_refuse_is_named_by_status(billed, tmp_path):
    data, _ = billed
    broken = tmp_path / "catalog.toml"
    broken.write_text(DEFAULT_CATALOG.read_text().replace("\n[[functions]]", "\n[[function]]", 1))
    st = read_status(settings(data, catalog_path=broken))
    [problem] = [w for w in st.warnings if "refuse the catalog" in w]
    assert problem.startswith("the next run will refuse the catalog: catalog file ")
    assert "unknown table or key 'function'" in problem
    assert [p.reason for p in st.waiting] == ["new", "new"]  # (what it can tell still told)


def test_days_billed_by_a_run_that_failed_before_publishing_are_named_unpublished(
    billed, tmp_path, monkeypatch
):
    """billed through is the working state's: a run that billed two more days then failed
    to publish leaves them billed there but not in the warehouse, and status says so."""
    data, _ = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)

    publish_fails_with_a_full_disk(monkeypatch)
    with pytest.raises(OSError):
        bill(d, SC.last_day + timedelta(days=2), trigger="scheduled")
    monkeypatch.undo()
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    st = read_status(settings(d))
    assert st.billed_through == SC.last_day + timedelta(days=2)
    [unpublished] = [w for w in st.warnings if "not published" in w]
    assert unpublished == (
        f"days through {SC.last_day + timedelta(days=2)} are billed but not published "
        f"({d / 'warehouse.duckdb'} holds billing through {SC.last_day}): a run failed after "
        "billing them; the next run that succeeds publishes them"
    )
    bill(d, SC.last_day + timedelta(days=2))
    assert not [w for w in read_status(settings(d)).warnings if "not published" in w]


def test_days_billed_again_by_a_run_that_failed_before_publishing_are_named_unpublished(
    billed, tmp_path, monkeypatch
):
    """A rebill (or late data) billing days again, then failing to publish, leaves the same
    billed-through in both places: status said nothing while the warehouse showed the days
    as before. The days billed since the run the warehouse holds are named."""
    data, published_run = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    publish_fails_with_a_full_disk(monkeypatch)
    with pytest.raises(OSError):
        bill(d, SC.last_day, rebill_from=SC.day(3), trigger="scheduled")
    monkeypatch.undo()
    monkeypatch.setenv("ADBILL_TODAY", TODAY.isoformat())
    st = read_status(settings(d))
    [unpublished] = [w for w in st.warnings if "not published" in w]
    n = (SC.last_day - SC.day(3)).days + 1
    assert unpublished == (
        f"{n} day(s) billed again ({SC.day(3)} .. {SC.last_day}) are not published "
        f"({d / 'warehouse.duckdb'} holds them as run {published_run} billed them): a run "
        "failed after billing them; the next run that succeeds publishes them"
    )
    bill(d, SC.last_day)
    assert not [w for w in read_status(settings(d)).warnings if "not published" in w]


def test_status_reads_a_data_dir_it_cannot_write(billed, tmp_path, monkeypatch, capsys):
    """On a read-only mount (a backup, a data dir shared read-only) status failed opening
    state/run.lock to append (OSError: Read-only file system); the lock is opened to read.
    The mount is played by refusing every open of the data dir's files for writing."""
    import builtins
    import errno
    import io
    import os as os_module

    data, run_id = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    inside = str(d)

    def refuses_writes(opener):
        def opened(file, mode="r", *args, **kwargs):
            if str(file).startswith(inside) and any(c in mode for c in "wax+"):
                raise OSError(errno.EROFS, "Read-only file system", str(file))
            return opener(file, mode, *args, **kwargs)

        return opened

    real_os_open = os_module.open

    def os_open(path, flags, *args, **kwargs):
        if str(path).startswith(inside) and flags & (os_module.O_WRONLY | os_module.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuses_writes(builtins.open))
    monkeypatch.setattr(io, "open", refuses_writes(io.open))
    monkeypatch.setattr(os_module, "open", os_open)
    code, out, err = status_cli(capsys, d)
    assert code == 0 and err == [], err
    assert f"last scheduled run: {run_id} succeeded" in out


def test_a_state_restored_from_a_backup_is_not_called_a_stopped_publish(billed, tmp_path, capsys):
    """state/ restored from a backup older than the published warehouse: status said the
    last run "was stopped while it published" (and now would fail it); the warehouse holds a
    run the working state does not know, and status says that."""
    data, _ = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    first = bill(d, SC.last_day, trigger="scheduled").run_id  # (a run publishing to d)
    shutil.copytree(d / "state", tmp_path / "backup")
    write_usage(d, "2026/11/late.jsonl", [_late_line()])
    second = bill(d, SC.last_day, trigger="scheduled").run_id
    shutil.rmtree(d / "state")
    shutil.copytree(tmp_path / "backup", d / "state")
    code, out, err = status_cli(capsys, d)
    assert code == 0 and err == [], err
    assert f"last scheduled run: {first} succeeded" in out
    assert (
        f"holds run {second}, which the working state (last succeeded run {first}) does not "
        "know: was state/ restored from a backup?" in " ".join(out.split())
    )
    assert "stopped while it published" not in out


def test_a_scheduled_run_whose_publish_fails_is_shown_with_its_run_id(
    billed, tmp_path, capsys, monkeypatch
):
    """Its failure record named no run (only a failure inside the run's stages did), so the
    record, newer than the row, stood in for it: "- failed ... failed before it started"."""
    data, _ = billed
    d = tmp_path / "d"
    shutil.copytree(data, d)
    write_usage(d, "2026/11/late.jsonl", [_late_line()])
    publish_fails_with_a_full_disk(monkeypatch)

    def billing(*args, **kwargs):
        return bill(d, SC.last_day, trigger="scheduled")

    code, out, err = failing_scheduled_run(monkeypatch, capsys, d, billing, OSError)
    [row] = [r for r in read_status(settings(d)).runs[:1]]
    assert code == cli.EXIT_SCHEDULED_RUN_FAILED
    assert f"last scheduled run: {row['run_id']} failed: publish failed: " in out
    assert "before it started" not in err[0]
