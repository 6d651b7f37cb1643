"""The Prefect flow `daily-billing`: one billing run, its stages as tasks, its report."""

# No `from __future__ import annotations` here: the runner pickles the flow by value into each
# run's process, where string annotations could not be resolved to validate parameters.

from datetime import date, timedelta

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.parallel import api_url_for_workers, dask_runner, shard_deduct
from flows.report import publish_run_artifacts
from tasks.pipeline import check_run, run_billing
from tasks.settings import Settings, today

IO_STAGES = ("ingest", "documents", "publish")


def _retry_on_io_error(task, task_run, state) -> bool:
    """Retry a stage only when it failed on I/O; a data or invariant failure is final."""
    try:
        state.result()
    except OSError:
        return True
    except BaseException:
        return False
    return False


def prefect_stage(name: str, fn, /, *args, **kwargs):
    """Run one stage (× shard) as a Prefect task; connections stay out of task arguments."""
    io = name in IO_STAGES

    def run_stage():
        return fn(*args, **kwargs)

    run_stage.__name__ = name
    stage_task = task(
        run_stage,
        name=name.split("-20")[0],
        task_run_name=name,
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=2 if io else 0,
        retry_delay_seconds=2,
        retry_condition_fn=_retry_on_io_error if io else None,
    )
    return stage_task()


def yesterday(tz: str) -> date:
    """The billing day that ended at the last local midnight (ADBILL_TODAY when set)."""
    return today(tz) - timedelta(days=1)


def _bill(
    through: date | None,
    rebill_from: date | None,
    data_dir: str | None,
    db: str | None,
    shards: int | None,
    max_late_days: int | None,
    trigger: str,
    task_runner: str,
) -> dict:
    # a parameter left empty falls back to ADBILL_* and then to the built-in default
    settings = Settings.of(data_dir, db, shards=shards, max_late_days=max_late_days)
    through = through or settings.yesterday()
    # the operator's guards hold for every run (CLI, UI, schedule): nothing billed ahead
    check_run(settings, through, rebill_from)
    logger = get_run_logger()
    deduct = shard_deduct(settings.state_dir / "shards") if task_runner != "local" else None
    report = run_billing(
        settings,
        through,
        rebill_from=rebill_from,
        trigger=trigger,
        stage=prefect_stage,
        deduct=deduct,
        progress=logger.info,
        warn=logger.warning,
    )
    summary = report.summary()
    summary["run_report"] = str(publish_run_artifacts(settings, report))
    return summary


@flow(name="billing-on-dask", log_prints=True)
def billing_on_dask(
    through: date | None = None,
    rebill_from: date | None = None,
    data_dir: str | None = None,
    db: str | None = None,
    shards: int | None = None,
    max_late_days: int | None = None,
    trigger: str = "deployment",
    task_runner: str = "dask",
) -> dict:
    """The run of daily-billing with its shard draws on a DaskTaskRunner."""
    return _bill(through, rebill_from, data_dir, db, shards, max_late_days, trigger, task_runner)


@flow(name="daily-billing", log_prints=True)
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
    the billing zone, `rebill_from` after `through`, a data dir without `inbox/`.

    task_runner: `local` (in this process), `dask` (a temporary LocalCluster) or
    `dask=ADDRESS` (an existing scheduler); with Dask the shard draws run on its workers.
    """
    args = (through, rebill_from, data_dir, db, shards, max_late_days, trigger, task_runner)
    if task_runner == "local":
        return _bill(*args)
    if task_runner != "dask" and not task_runner.startswith("dask="):
        raise ValueError(f"task_runner must be local, dask or dask=ADDRESS, not {task_runner!r}")
    with api_url_for_workers():
        return billing_on_dask.with_options(task_runner=dask_runner(task_runner))(*args)
