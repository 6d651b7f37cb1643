"""The `adbill` command line: demo, run, generate, serve, status, statement — runs are calls
of the Prefect flow `daily-billing`."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from flows.cli_common import Parser, Refused
from flows.cli_demo import DEMO_MARKER, add_demo, add_generate, fresh_demo_dir
from flows.cli_ops import EXIT_SCHEDULED_RUN_FAILED, add_serve, add_statement, add_status
from flows.cli_run import add_run
from flows.cli_terminal import LOGS, error_line, refusals

# before Prefect is imported (the commands import it, never the modules above)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# a busy machine can take longer than Prefect's default to start its temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# the names tests and scripts import from here (each lives in its flows/cli_*.py)
__all__ = [
    "DEMO_MARKER",
    "EXIT_SCHEDULED_RUN_FAILED",
    "LOGS",
    "Refused",
    "fresh_demo_dir",
    "main",
    "parser",
]
_error_line = error_line  # its old name, which tests use


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="adbill", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    for add in (add_demo, add_run, add_statement, add_status, add_generate, add_serve):
        add(sub)
    return top


# ---------------------------------------------------------------- where commands meet Prefect

SERVER = None  # the command's temporary Prefect server (flows.tempserver), when it has one


def _start_server(args) -> None:
    """Start the temporary Prefect server now (unless PREFECT_API_URL names one), so that
    it boots while the command imports and checks; the flow call waits for it."""
    global SERVER
    from flows.tempserver import TemporaryServer

    SERVER = TemporaryServer()
    SERVER.start(Path(args.data_dir).absolute() / "state" / "logs" / "prefect-server.log")


def _stop_server() -> None:
    global SERVER
    if SERVER is not None:
        if "prefect" in sys.modules:  # logs and events still queued go out first
            from prefect._internal.concurrency.services import QueueService

            QueueService.drain_all(timeout=10)
        SERVER.stop()
        SERVER = None


def _run_flow(
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


# ---------------------------------------------------------------- one command


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0, or non-zero with one line on stderr (2: refused by a
    guard, nothing changed; 1: failed, the traceback in the log; 130: interrupted)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: -h, or one line about the mistake
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("adbill: interrupted; the published warehouse is unchanged", file=sys.stderr)
        return 130
    except refusals() as exc:
        print(error_line(args.command, exc), file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line for the user; the traceback is in the log
        LOGS.error(args.command, exc)
        print(error_line(args.command, exc), file=sys.stderr)
        return 1
    finally:
        LOGS.stop()
        _stop_server()
    return code or 0


if __name__ == "__main__":
    # `python -m flows.cli`: run the module as flows.cli, the one the commands call back
    # (its server and flow), not this copy of it named __main__
    from flows.cli import main as _main

    sys.exit(_main())
