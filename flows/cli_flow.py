"""Where the commands meet Prefect: the command's temporary server and the flow call (tests
replace `run_flow` and `start_server` here to leave Prefect out)."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

from flows.cli_terminal import LOGS

# before Prefect is imported (only this module's functions import it)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# a busy machine can take longer than Prefect's default to start its temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

SERVER = None  # the command's temporary Prefect server (flows.tempserver), when it has one


def start_server(args) -> None:
    """Start the temporary Prefect server now (unless PREFECT_API_URL names one), so that
    it boots while the command imports and checks; the flow call waits for it."""
    global SERVER
    from flows.tempserver import TemporaryServer

    SERVER = TemporaryServer()
    SERVER.start(Path(args.data_dir).absolute() / "state" / "logs" / "prefect-server.log")


def stop_server() -> None:
    global SERVER
    if SERVER is not None:
        if "prefect" in sys.modules:  # logs and events still queued go out first
            from prefect._internal.concurrency.services import QueueService

            QueueService.drain_all(timeout=10)
        SERVER.stop()
        SERVER = None


def run_flow(
    args,
    through: date | None,
    rebill_from: date | None = None,
    trigger="cli",
    shards: int | None = None,
    max_late_days: int | None = None,
    task_runner: str = "local",
) -> dict:
    from flows.daily import daily_billing  # imports Prefect, which sets up its logging

    LOGS.start(Path(args.data_dir).absolute())
    if SERVER is not None:  # started before the imports; booting meanwhile
        SERVER.wait(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    return daily_billing(
        through=through,
        rebill_from=rebill_from,
        data_dir=str(Path(args.data_dir).absolute()),
        db=str(Path(args.db).absolute()) if args.db else None,
        shards=shards,
        max_late_days=max_late_days,
        trigger=trigger,
        task_runner=task_runner,
    )
