"""`adbill run`: ingest new inbox files and bill every due day, a call of the flow the
deployment runs (or, with --plan, the days it would bill)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows import cli_flow
from flows.cli_common import (
    YESTERDAY,
    a_count,
    a_date,
    add_task_runner,
    check_run_db,
    check_task_runner,
    common_options,
    settings_of,
)
from flows.cli_terminal import terminal_text

MONTH_TO_DATE_DOCUMENTS = "ADBILL_MONTH_TO_DATE_DOCUMENTS"


def add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        parents=[common_options()],
        help="ingest new inbox files and bill every due day",
        description="Ingest new inbox files, then bill, in order, every day not billed yet up "
        "to --through and every billed day that newly ingested late data touches (from the "
        "earliest such day on). The published warehouse is replaced only when the run "
        "succeeds. A data dir busy with another run is waited for up to "
        "ADBILL_BUSY_WAIT_SECONDS (default 1800).",
    )
    run.add_argument(
        "--through",
        type=a_date,
        help=f"last billing day, YYYY-MM-DD (default, and the latest allowed: {YESTERDAY})",
    )
    run.add_argument(
        "--rebill-from",
        type=a_date,
        help="also recompute every billed day from this day on (at most --through)",
    )
    run.add_argument(
        "--plan",
        action="store_true",
        help="print the days the run would bill, each with its reason, and the files it "
        "would ingest; change nothing",
    )
    run.add_argument(
        "--shards",
        type=a_count(0),
        help="shards of customers per day (env ADBILL_SHARDS; default 0 = automatic)",
    )
    run.add_argument(
        "--max-late-days",
        type=a_count(0),
        help="how many days late a line or order may arrive (env ADBILL_MAX_LATE_DAYS; default "
        "35, not 0: a line older than this is rejected too_late for good, its file counted "
        "as ingested)",
    )
    run.add_argument(
        "--month-to-date-documents",
        action="store_true",
        default=None,
        help="also write every customer's month-to-date statement documents (env "
        f"{MONTH_TO_DATE_DOCUMENTS}=1; default: only final ones, and `adbill statement` "
        "on demand)",
    )
    add_task_runner(run)
    run.set_defaults(func=cmd_run)


@contextmanager
def _month_to_date_documents(on: bool | None) -> Iterator[None]:
    """The flow reads the setting from ADBILL_* as it reads the others; the flag sets it for
    this run only."""
    before = os.environ.get(MONTH_TO_DATE_DOCUMENTS)
    if on:
        os.environ[MONTH_TO_DATE_DOCUMENTS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MONTH_TO_DATE_DOCUMENTS, None)
        else:
            os.environ[MONTH_TO_DATE_DOCUMENTS] = before


def cmd_run(args) -> None:

    check_task_runner(args.task_runner)
    settings = settings_of(args, shards=args.shards, max_late_days=args.max_late_days)
    check_run_db(settings)  # --db is this data dir's warehouse, or a new file it can write
    from tasks.run_lock import busy_wait_seconds

    busy_wait_seconds()  # a bad ADBILL_BUSY_WAIT_SECONDS, before the server or any folder
    if not args.plan and (Path(args.data_dir) / "inbox").is_dir():
        # boots while the guards below import the pipeline (a data dir without an inbox is
        # refused by them: nothing is written into a mistyped one)
        cli_flow.start_server(args)
    from tasks.pipeline import check_run
    from tasks.state_guard import check_working_state

    # the guards before Prefect starts (the flow checks them again for runs from the UI)
    through = args.through or settings.yesterday()
    check_run(settings, through, args.rebill_from)
    # the billing zone the working state records; a state lost, new or damaged while the
    # warehouse holds billed days (the run checks again under the data dir's lock)
    check_working_state(settings)
    if args.plan:
        from tasks.plan import plan_run

        print("\n".join(plan_run(settings, through, args.rebill_from).lines()))
        return
    with _month_to_date_documents(args.month_to_date_documents):
        result = cli_flow.run_flow(
            args,
            through,
            args.rebill_from,
            shards=args.shards,
            max_late_days=args.max_late_days,
            task_runner=args.task_runner,
        )
    # billed through the later of the day asked and the last day billed (a rebill bills
    # every billed day from its day on, past a --through before them)
    upto = max(result["through"], result.get("last_day") or result["through"])
    print(
        f"billed {result['days_billed']} day(s) through {upto}; "
        f"{result['events_accepted']:,} events accepted, {result['events_rejected']:,} rejected; "
        f"warehouse: {result['published']}"
    )
    for warning in result.get("warnings", []):
        print(f"warning: {terminal_text(warning)}")
