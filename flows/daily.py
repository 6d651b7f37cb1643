"""The Prefect flow `daily-billing`: one billing run, its stages as tasks, its report."""

# No `from __future__ import annotations` here: the runner pickles the flow by value into each
# run's process, where string annotations could not be resolved to validate parameters.

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from datetime import date, timedelta
from functools import partial
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_flow_run

from flows.notify import notify_failure
from flows.parallel import api_url_for_workers, dask_runner, shard_deduct
from flows.report import publish_run_artifacts
from tasks.pipeline import RunRefused, check_run, run_billing
from tasks.settings import Settings, today
from tasks.status import record_scheduled_failure

TASK_RUNNERS = "local, dask or dask=ADDRESS"


def _retry_on_io_error(task, task_run, state) -> bool:
    """Retry a stage only when it failed on I/O; a data or invariant failure is final."""
    try:
        state.result()
    except OSError:
        return True
    except BaseException:
        return False
    return False


# The run's stages as Prefect tasks, defined once. A stage reaches its task as `work`, the
# stage function with its arguments bound (the DuckDB connection stays out of the task's
# parameters); no result is cached or persisted: the working state is the record.
_io_stage = partial(
    task,
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_on_io_error,
)


@_io_stage(name="ingest")
def ingest(work: Callable[[], Any]) -> Any:
    """New inbox files into the working state: accepted orders and events, rejects."""
    return work()


@task(name="rate", cache_policy=NO_CACHE, persist_result=False)
def rate(work: Callable[[], Any]) -> Any:
    """Events rated by the catalog version in force; the first day a price change alters."""
    return work()


@task(name="bill-day", task_run_name="bill-{day}", cache_policy=NO_CACHE, persist_result=False)
def bill_day(day: date, work: Callable[[], Any]) -> Any:
    """One billing day, all or nothing: draws, expiry, daily figures, invariants, lists,
    statements; each step a log line of this task run."""
    logger = get_run_logger()
    steps: dict[str, float] = {}
    with _steps_into(steps):
        result = work()
    logger.info(f"{day} steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    return result


@_io_stage(name="documents")
def documents(work: Callable[[], Any]) -> Any:
    """Statements and suspension lists of the days billed since the last successful run."""
    return work()


@_io_stage(name="publish")
def publish(work: Callable[[], Any]) -> Any:
    """The published warehouse replaced in one step by a copy of the working state."""
    return work()


STAGE_TASKS = {"ingest": ingest, "rate": rate, "documents": documents, "publish": publish}
_STEP_TIMES: list[dict[str, float]] = []  # the running day's steps (one run per process)


@contextmanager
def _steps_into(steps: dict[str, float]):
    _STEP_TIMES.append(steps)
    try:
        yield
    finally:
        _STEP_TIMES.pop()


def prefect_stage(name: str, fn, /, *args, **kwargs):
    """Run one stage of tasks.pipeline as its Prefect task: rate, ingest, a billing day
    (`bill-<day>`: tasks.billing.bill_day), documents, publish. The steps inside a day
    (`expire-<day>`, `deduct-<day>-shard-<n>`, ...) run in the day's task, timed and logged."""
    work = partial(fn, *args, **kwargs)
    if name in STAGE_TASKS:
        return STAGE_TASKS[name](work)
    if name.startswith("bill-"):
        return bill_day(args[1], work)
    started = time.perf_counter()
    result = work()
    key = name.split("-20")[0]
    if _STEP_TIMES:
        steps = _STEP_TIMES[-1]
        steps[key] = steps.get(key, 0.0) + time.perf_counter() - started
    else:  # a pipeline that bills its days outside a day task: a log line per step
        get_run_logger().debug(f"{name}: {time.perf_counter() - started:.2f} s")
    return result


def yesterday(tz: str) -> date:
    """The billing day that ended at the last local midnight (ADBILL_TODAY when set)."""
    return today(tz) - timedelta(days=1)


class _ToRunLogger(logging.Handler):
    """adbill's own log lines (the lock's wait) into the flow run's log."""

    def __init__(self, logger) -> None:
        super().__init__()
        self.run_logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        self.run_logger.log(record.levelno, record.getMessage())


@contextmanager
def _adbill_logs_to_run():
    handler = _ToRunLogger(get_run_logger())
    logger = logging.getLogger("adbill")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _flow_run_recorder(stage: Callable, run_id: str, settings: Settings) -> Callable:
    """The stage runner, which also writes the Prefect flow-run id beside the adbill run
    (runs.flow_run_id, on the working state's connection the first stages are given) and the
    billing status as the run leaves it (billing_status), just before the documents."""
    from tasks.status import billing_status, write_status

    def run(name: str, fn, /, *args, **kwargs):
        if name == "rate":  # (the run's first stage)
            args[0].execute(
                "update runs set flow_run_id = ?, flow_run_name = ? where run_id = ?",
                [current_flow_run.id, current_flow_run.name, run_id],
            )
        if name == "documents":
            con = args[0]
            status = billing_status(con, settings, source=str(settings.db), current_run=run_id)
            write_status(con, status, run_id, current_flow_run.id)
        return stage(name, fn, *args, **kwargs)

    return run


@flow(
    name="daily-billing",
    log_prints=True,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def daily_billing(
    through: date | None = None,
    rebill_from: date | None = None,
    data_dir: str | None = None,
    db: str | None = None,
    shards: int | None = None,
    max_late_days: int | None = None,
    trigger: str = "deployment",
    task_runner: str = "local",
) -> dict:
    """Ingest the inbox and bill every due day through `through` (default: yesterday).

    Refused before anything is read or written (RunRefused): `through` after yesterday in
    the billing zone, `rebill_from` after `through`, a data dir without `inbox/`, a `db`
    that is not this data dir's published warehouse or a new file.

    Args:
        through: Last billing day to bill. Empty: yesterday in the billing zone
            (ADBILL_BILLING_TZ, default Asia/Shanghai), which is also the latest allowed.
        rebill_from: Also recompute every billed day from this day on (an operator's
            rerun after a fix); at most `through`. Empty: only due days.
        data_dir: The data dir (inbox/, state/, out/). Empty: ADBILL_DATA_DIR.
        db: The published warehouse analysts open. Empty: ADBILL_DB, else
            <data_dir>/warehouse.duckdb.
        shards: Shards of customers per billing day. Empty or 0: automatic.
        max_late_days: How late a usage line or order may arrive, in days. Empty:
            ADBILL_MAX_LATE_DAYS, else 35.
        trigger: Internal: what started the run (scheduled, deployment, cli, demo).
        task_runner: Internal: where shard draws run: local, dask (a temporary
            LocalCluster) or dask=ADDRESS (an existing scheduler).
    """
    if task_runner != "local" and task_runner != "dask" and not task_runner.startswith("dask="):
        raise ValueError(f"task_runner must be {TASK_RUNNERS}, not {task_runner!r}")
    if task_runner.startswith("dask="):  # (a deployment's bad address: before anything is read)
        from flows.parallel import address_problem

        if (problem := address_problem(task_runner.partition("=")[2])) is not None:
            raise ValueError(f"task_runner {task_runner}: {problem}")
    # a parameter left empty falls back to ADBILL_* and then to the built-in default
    settings = Settings.of(data_dir, db, shards=shards, max_late_days=max_late_days)
    try:
        return _daily_billing(settings, through, rebill_from, trigger, task_runner)
    except BaseException as exc:
        if trigger == "scheduled":  # `adbill status` sees it, whether or not `runs` does
            record_scheduled_failure(settings, exc)
        raise


def _check_db(settings: Settings) -> None:
    """The `db` guard of `adbill run` (flows/cli_common.py) for a run started from the UI or
    a deployment with a `db` parameter: never publish over a working state, another data
    dir's warehouse or a file that is not one."""
    from flows.cli_common import Refused, check_run_db

    try:
        check_run_db(settings)
    except Refused as exc:
        raise RunRefused(str(exc)) from None


def _daily_billing(
    settings: Settings,
    through: date | None,
    rebill_from: date | None,
    trigger: str,
    task_runner: str,
) -> dict:
    through = through or settings.yesterday()
    # the operator's guards hold for every run (CLI, UI, schedule): nothing billed ahead
    check_run(settings, through, rebill_from)
    _check_db(settings)
    logger = get_run_logger()
    run_id = uuid.uuid4().hex[:12]
    logger.info(f"adbill run {run_id} through {through} (flow run {current_flow_run.id})")
    dask = task_runner != "local"
    with (
        _adbill_logs_to_run(),
        api_url_for_workers() if dask else nullcontext(),
        dask_runner(task_runner) if dask else nullcontext() as runner,
    ):
        report = run_billing(
            settings,
            through,
            rebill_from=rebill_from,
            trigger=trigger,
            run_id=run_id,
            stage=_flow_run_recorder(prefect_stage, run_id, settings),
            deduct=shard_deduct(settings.state_dir / "shards", runner) if dask else None,
            progress=logger.info,
            warn=logger.warning,
        )
    summary = report.summary()
    summary["run_report"] = str(publish_run_artifacts(settings, report))
    return summary
