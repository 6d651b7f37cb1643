"""One billing run end to end: ingest, bill each day in order, publish; the flow's body."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb

from tasks import interrupts
from tasks.appended_files import export_appended
from tasks.billing import (
    DayPlan,
    bill_day,
    call_directly,
    clear_unbilled,
    last_billed,
    mark_unbilled,
    plan_days,
    unbill_from,
)
from tasks.catalog import Catalog, load_catalog
from tasks.day_files import (
    collect,
    compact,
    context_from,
    export_days,
    freeze,
    frozen_before,
    hot_from,
    thaw,
)
from tasks.db import connect, execute, scalar, transaction
from tasks.documents import DocumentsWritten, write_documents
from tasks.ingest import ingest_inbox
from tasks.keyed_files import export_keyed
from tasks.publish import publish, run_lock
from tasks.rate import check_catalog, rate_events
from tasks.run_record import finish_run, record_day, start_run
from tasks.run_report import RunReport, day_spans, days_without_usage  # noqa: F401 (re-export)
from tasks.settings import Settings
from tasks.state_guard import RunRefused, check_working_state, record_zone

Stage = Callable[..., Any]


EARLIEST_DAY = date(2000, 1, 1)  # §3: no timestamp before the year 2000 is accepted


def check_run(settings: Settings, through: date, rebill_from: date | None = None) -> None:
    """The guards of a run asked for by an operator (CLI, UI, schedule): only ended days are
    billed (`through` at most yesterday in the billing zone, billing-rules §3), a rebill
    starts on or before `through`, and the data dir has an inbox."""
    latest = settings.yesterday()
    if through > latest:
        raise RunRefused(
            f"through {through} is after yesterday ({latest} in {settings.billing_tz}): "
            "only a day that has ended is billed; nothing billed"
        )
    if through < EARLIEST_DAY:
        raise RunRefused(
            f"through {through} is before {EARLIEST_DAY}: no input can be dated then "
            "(billing-rules §3); nothing billed"
        )
    if rebill_from is not None and rebill_from > through:
        raise RunRefused(f"rebill_from {rebill_from} is after through {through}; nothing billed")
    check_inbox(settings)


def check_inbox(settings: Settings) -> None:
    if not settings.inbox.is_dir():
        raise RunRefused(
            f"no inbox at {settings.inbox} (is the data dir right? deliveries go to "
            "inbox/orders and inbox/usage); nothing billed"
        )


def late_cutoff(con, through: date, settings: Settings) -> date:
    """Lines and orders dated before this day are too late (§3 "Time window"): the late
    window once the data dir has billed a day, the history window before its first run. A
    run bills through the last billed day at least (it never drops one), so an earlier
    `through` (a typo of the year) does not widen the window. The last day ever billed
    counts, also one a price change or a rebill has unbilled to bill again (the catalog is
    applied before ingest: an edited first version unbilled every day, and the 400-day
    history window took the place of the late window)."""
    billed = scalar(
        con,
        "select max(day) from (select day from billed_days union all "
        "select day from billing_runs where status = 'succeeded')",
    )
    days = settings.max_late_days if billed is not None else settings.max_history_days
    return max(through, billed or through) - timedelta(days=days)


@dataclass
class _Run:
    """One run as its steps share it: what was asked, how stages run, who hears of them, the
    report, and what the run is doing (named on an error)."""

    settings: Settings
    through: date
    rebill_from: date | None
    report: RunReport
    stage: Stage
    deduct: Callable | None
    say: Callable[[str], None]
    warn: Callable[[str], None]
    hook: Callable[[str], None]
    catalog: Catalog | None = None
    doing: str = ""

    @property
    def run_id(self) -> str:
        return self.report.run_id

    @property
    def tz(self) -> str:
        return self.settings.billing_tz

    @contextmanager
    def step(self, seconds: str, doing: str | None = None) -> Iterator[None]:
        """A step of the run: what the run is doing from now on, and its seconds when it ends."""
        started = time.perf_counter()
        if doing is not None:
            self.doing = doing
        yield
        self.report.seconds[seconds] = time.perf_counter() - started


def run_billing(
    settings: Settings,
    through: date,
    *,
    rebill_from: date | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
    stage: Stage = call_directly,
    deduct: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    after_stage: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunReport:
    """Ingest new inbox files, bill every due day up to `through`, publish the warehouse.

    A data dir without an inbox is refused (RunRefused), and so is one whose working state
    records another billing zone, or is missing while the warehouse holds billed days
    (tasks/state_guard.py); `warn` hears the run's warnings (days billed without usage),
    `progress` the rest.
    """
    say = progress or (lambda _m: None)
    report = RunReport(run_id=run_id or uuid.uuid4().hex[:12], through=through)
    hook = after_stage or (lambda _s: None)
    run = _Run(settings, through, rebill_from, report, stage, deduct, say, warn or say, hook)
    check_inbox(settings)
    settings.ensure_dirs()
    # a catalog no run can apply fails here, before anything is read or billed
    run.catalog = load_catalog(settings.catalog_path, settings.billing_tz)
    with run_lock(settings.state_dir):
        check_working_state(settings)  # its zone, a state lost or damaged: before any change
        with run.step("open"):
            con = connect(settings.state_db)
        try:
            record_zone(con, settings)  # the data dir's first run (or first since recorded)
        except BaseException:
            con.close()
            raise
        run.doing = f"starting the run in {settings.state_db}"
        try:
            start_run(con, run.run_id, through, rebill_from, trigger)
            con.execute(
                "update runs set published_to = ? where run_id = ?", [str(settings.db), run.run_id]
            )
            check_catalog(con, run.catalog, run.run_id)  # before anything is read
            # the catalog applied (its versions recorded, the events it re-prices rated again)
            # before ingest rates a line by it: a run stopped after ingest leaves no event
            # priced by a catalog the working state has not recorded (its rerun with another
            # catalog sees the change and rates them again)
            repriced_from = _rate(run, con)
            _ingest(run, con)
            plans = _plan(run, con, repriced_from)
            _bill_days(run, con, plans)
            clear_unbilled(con)  # (the days unbilled are all billed again)
            _warn_days_without_usage(run, con)
            _write_documents(run, con)
            _export(run, con)
            run.doing = f"writing the working state {settings.state_db} to disk (checkpoint)"
            started = time.perf_counter()
            con.execute("checkpoint")
            # recorded once the state is on disk (a full disk at the checkpoint left the run
            # recorded as succeeded); a run killed while it publishes is told by status
            # (the published warehouse does not hold it: tasks/status.py)
            report.status = "succeeded"
            finish_run(con, run.run_id, report)
        except BaseException as exc:
            _failed(run, con, exc)
            raise
        con.close()
        report.seconds["checkpoint"] = time.perf_counter() - started
        _publish(run)
    return report


def _ingest(run: _Run, con) -> None:
    """New inbox files into orders and events, lines dated before the late cutoff rejected."""
    with run.step("ingest", f"ingesting {run.settings.inbox}"):
        cutoff = late_cutoff(con, run.through, run.settings)
        run.report.ingest = run.stage(
            "ingest",
            ingest_inbox,
            con,
            run.settings.inbox,
            run.catalog,
            tz=run.tz,
            run_id=run.run_id,
            late_before=cutoff,
            today=run.settings.today(),
            duplicate_window_days=run.settings.max_late_days + 2,
            progress=run.say,
        )
        run.hook("ingest")


def _rate(run: _Run, con) -> date | None:
    """Events rated by the version in force; a catalog change that alters billed days re-rates
    their events and makes those days stale, as late data does. The first such day."""
    with run.step("rate", f"applying the catalog {run.settings.catalog_path}"):
        repriced_from = run.stage(
            "rate",
            rate_events,
            con,
            run.catalog,
            tz=run.tz,
            run_id=run.run_id,
            rebill_from=run.rebill_from,
        )
        run.hook("rate")
        run.report.repriced_from = repriced_from
    return repriced_from


def _plan(run: _Run, con, repriced_from: date | None) -> list[DayPlan]:
    """The days to bill, in order, with the first of them and every later one unbilled. Days
    already billed after `through` are billed again too when an earlier day is (late data,
    rebill): a run never drops a billed day from the warehouse."""
    with run.step("plan", "planning the days to bill"):
        billed_until = max(run.through, last_billed(con) or run.through)
        if run.rebill_from is not None:
            with transaction(con):
                execute(con, "delete from billed_days where day >= $day", {"day": run.rebill_from})
                mark_unbilled(con, run.rebill_from, "rebill")
        plans = plan_days(
            con, billed_until, rebill_from=run.rebill_from, repriced_from=repriced_from
        )
        if plans and context_from(plans[0].day) < frozen_before(con):
            run.report.thawed_days = thaw(con, context_from(plans[0].day))
        if plans:
            with transaction(con):  # (rolled back on failure: the run's record still writes)
                unbill_from(con, plans[0].day)
    return plans


def _bill_days(run: _Run, con, plans: list[DayPlan]) -> None:
    """Each planned day billed in order, its billing_runs row written (failed or not)."""
    for i, plan in enumerate(plans, 1):
        t = time.perf_counter()
        started = time.time()
        run.doing = f"billing {plan.day}"
        # the month's statements once, on the run's last day of it (tasks/statements.py)
        later = plans[i : i + 1]
        statements = not later or later[0].day.replace(day=1) != plan.day.replace(day=1)
        try:
            result = _bill_one_day(run, con, plan.day, statements)
        except Exception:
            seconds = time.perf_counter() - t
            record_day(con, run.run_id, plan.day, plan.reason, started, seconds, status="failed")
            raise
        result["reason"] = plan.reason
        run.report.days.append(result)
        record_day(con, run.run_id, plan.day, plan.reason, started, time.perf_counter() - t)
        run.say(f"day {i}/{len(plans)} done")


def _bill_one_day(run: _Run, con, day: date, statements: bool) -> dict:
    """One billing day: one task run per billed day in the Prefect UI; with draws on Dask the
    day stays in the flow, which submits the shards' tasks itself."""
    run_day = run.stage if run.deduct is None else call_directly
    return run_day(
        f"bill-{day}",
        bill_day,
        con,
        day,
        tz=run.tz,
        shards=run.settings.shards,
        stage=run.stage,
        deduct=run.deduct,
        after_stage=run.hook,
        progress=run.say,
        run_id=run.run_id,
        statements=statements,
    )


def _warn_days_without_usage(run: _Run, con) -> None:
    """The run's warnings told (days billed without usage, files turned away or ignored)."""
    run.report.days_without_usage = days_without_usage(con, [d["day"] for d in run.report.days])
    for warning in run.report.warnings:
        run.warn(warning)


def _write_documents(run: _Run, con) -> None:
    """Documents of every day billed since the last successful run (this one included): final
    statements new or revised since their documents were written; every month-to-date one
    only when the setting asks (interfaces.md, Data dir)."""
    out_dir = run.settings.out_dir
    with run.step("documents", f"writing the documents into {out_dir}"):
        days = [
            r[0]
            for r in con.execute(
                "select day from billed_days where run_id not in "
                "(select run_id from runs where status = 'succeeded') order by day"
            ).fetchall()
        ]
        written: DocumentsWritten = run.stage(
            "documents",
            write_documents,
            con,
            out_dir,
            days,
            tz=run.tz,
            month_to_date=run.settings.write_month_to_date_documents,
        )
        run.hook("documents")
    run.report.seconds.update(written.seconds)
    run.report.documents = {
        "final": written.finals,
        "month_to_date": written.month_to_date,
        "lists": written.lists,
    }


def _export(run: _Run, con) -> None:
    """The days this run (or a failed one before it) changed written out as day files; the
    days before the working window dropped from the working database; day files no reader
    needs any more deleted (tasks/day_files.py)."""
    settings = run.settings
    with run.step("export", "writing the changed days' files"):
        exported = run.stage("export", export_days, con, run.run_id)
        files, rows = export_keyed(con, run.run_id)  # pools, statements: what changed
        more, more_rows = export_appended(con, run.run_id)  # rejected lines: the new ones
        exported.files += files + more
        exported.rows += rows + more_rows
        last = scalar(con, "select max(day) from billed_days")
        if last is not None:
            first_hot = hot_from(last, settings.max_late_days, settings.hot_days)
            exported.frozen = freeze(con, first_hot)
    with run.step("compact", "merging the closed months' day files"):
        exported.months, problems = compact(con, run.run_id)  # (once a month: timed apart)
        run.report.housekeeping += problems
        for problem in problems:
            run.warn(problem)
        exported.collected = collect(con, settings.keep_old_files_seconds)
        run.hook("export")
    run.report.exported = {
        "days": exported.days,
        "files": exported.files,
        "rows": exported.rows,
        "days_dropped_from_working_db": exported.frozen,
        "closed_months_merged": exported.months,
        "old_files_deleted": exported.collected,
    }


def _failed(run: _Run, con, exc: BaseException) -> None:
    """The run recorded as failed with its error, noted with what it was doing; con closed."""
    run.report.status = "failed"
    _note(exc, run.doing)
    _name_the_run(exc, run)
    try:
        finish_run(con, run.run_id, run.report, error=_error_text(exc))
    except duckdb.Error:  # (the disk full, the database invalidated: its row stays running,
        pass  # which status reads as interrupted; the run's own error is what is raised)
    finally:
        con.close()


def _name_the_run(exc: BaseException, run: _Run) -> None:
    """The failed run's id on its exception: a scheduled run's failure record names the `runs`
    row that is this failure (tasks/status.py record_scheduled_failure)."""
    with contextlib.suppress(AttributeError, TypeError):
        exc.adbill_run_id = run.run_id


def _error_text(exc: BaseException) -> str:
    """`runs.error` of a failed run: the exception and its message; an interrupt without one
    (Ctrl-C: `KeyboardInterrupt: ` told nothing) says it was interrupted, and so does a
    DuckDB query a signal stopped (`Query interrupted` in its place) when the command saw
    the signal (tasks/interrupts.py)."""
    if "query interrupted" in str(exc).lower() and (name := interrupts.seen()) is not None:
        return f"interrupted ({name})"
    number = getattr(exc, "signal", None)  # (Prefect's TerminationSignal: "15", its number)
    if isinstance(number, int) and number in iter(signal.Signals):
        return f"interrupted ({signal.Signals(number).name})"
    if str(exc):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted ({type(exc).__name__})"
    return type(exc).__name__


def _publish(run: _Run) -> None:
    """The working database copied over the published warehouse; a failure is recorded."""
    settings = run.settings
    t = time.perf_counter()
    try:
        run.report.published = str(run.stage("publish", publish, settings.state_db, settings.db))
        run.hook("publish")
    except BaseException as exc:
        run.report.status = "failed"
        _note(exc, f"publishing {settings.db}")
        _name_the_run(exc, run)
        con = connect(settings.state_db)
        finish_run(con, run.run_id, run.report, error=f"publish failed: {exc}")
        con.close()
        raise
    run.report.seconds["publish"] = time.perf_counter() - t


def _note(exc: BaseException, doing: str) -> None:
    """Say what the run was doing on the error (a note: its type and message stay as raised),
    so the one line an operator sees names the day or file at fault."""
    if isinstance(exc, Exception) and not any(
        n.startswith("while ") for n in getattr(exc, "__notes__", ())
    ):
        exc.add_note(f"while {doing}")
