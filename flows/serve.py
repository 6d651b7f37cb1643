"""The daily deployment `daily-billing/daily`: the flow served on a cron in the billing zone."""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from flows.daily import daily_billing
from tasks.settings import Settings

DEPLOYMENT = "daily"
# parameters the run form does not offer: set by the schedule (trigger) or by the operator's
# settings (task_runner: ADBILL_TASK_RUNNER in the serve process), never typed in the UI
INTERNAL_PARAMETERS = ("trigger", "task_runner")


def deployment(
    data_dir: str, db: str | None = None, cron: str = "30 0 * * *", task_runner: str = "local"
) -> RunnerDeployment:
    """The deployment: one run at a time across every served copy (a scheduled run and a
    rerun queue up rather than write at once); scheduled runs are recorded with trigger
    `scheduled`, runs started from the UI or the API with trigger `deployment`."""
    dep = daily_billing.to_deployment(
        name=DEPLOYMENT,
        schedule=Cron(cron, timezone=Settings().billing_tz, parameters={"trigger": "scheduled"}),
        parameters={"data_dir": data_dir, "db": db, "task_runner": task_runner},
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="Ingest the inbox and bill every due day through `through` "
        "(default and latest: yesterday in the billing zone); `rebill_from` (at most "
        "`through`) recomputes billed days.",
        tags=["adbill", "billing"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    schema = dep._parameter_openapi_schema  # what the UI's run form shows
    for name in INTERNAL_PARAMETERS:
        schema.properties.pop(name, None)
        if schema.required and name in schema.required:
            schema.required.remove(name)
    return dep


def serve(
    data_dir: str, db: str | None = None, cron: str = "30 0 * * *", task_runner: str = "local"
) -> None:
    """Serve the daily billing run until stopped; `through` left empty bills yesterday."""
    from prefect import serve as serve_deployments

    serve_deployments(deployment(data_dir, db, cron, task_runner))
