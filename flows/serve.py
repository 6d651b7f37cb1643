"""The daily deployment `daily-billing/daily`: the flow served on a cron in the billing zone."""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from flows.daily import daily_billing
from tasks.settings import Settings

DEPLOYMENT = "daily"


def serve(data_dir: str, db: str | None = None, cron: str = "30 0 * * *") -> None:
    """Serve the daily billing run until stopped; `through` left empty bills yesterday.

    One run at a time across every served copy (a scheduled run and a rerun queue up rather
    than write at once); scheduled runs are recorded with trigger `scheduled`, runs started
    from the UI or the API with trigger `deployment`.
    """
    daily_billing.serve(
        name=DEPLOYMENT,
        schedule=Cron(cron, timezone=Settings().billing_tz, parameters={"trigger": "scheduled"}),
        parameters={"data_dir": data_dir, "db": db},
        global_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="Ingest the inbox and bill every due day through `through` "
        "(default and latest: yesterday in the billing zone); `rebill_from` (at most "
        "`through`) recomputes billed days.",
        tags=["adbill", "billing"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
