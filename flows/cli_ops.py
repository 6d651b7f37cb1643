"""The operators' subcommands beside the run: `adbill status`, `adbill statement` (both read
what runs left) and `adbill serve` (the daily deployment)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli_common import (
    YESTERDAY,
    Refused,
    a_month,
    add_task_runner,
    an_instant,
    check_published_db,
    check_task_runner,
    common_options,
    settings_of,
)
from flows.cli_terminal import error_line, terminal_text

# `adbill status` exits with this when the last scheduled run failed (for monitoring)
EXIT_SCHEDULED_RUN_FAILED = 3


def add_statement(sub: argparse._SubParsersAction) -> None:
    statement = sub.add_parser(
        "statement",
        parents=[common_options()],
        help="write one customer's statement for a month, from the warehouse",
        description="Write the customer's statement for the month (month-to-date for a month "
        "not yet closed) from the published warehouse, as <data-dir>/out/statements/YYYY-MM/"
        "<name>.html and .csv, and print the page's path. Reads only the published warehouse: "
        "a run going on neither blocks it nor is blocked by it.",
    )
    statement.add_argument("customer", help="the customer id, as in the orders")
    statement.add_argument(
        "--month",
        type=a_month,
        help="YYYY-MM (default: the current month in the billing zone; ADBILL_TODAY sets today)",
    )
    statement.set_defaults(func=cmd_statement)


def add_status(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status",
        parents=[common_options()],
        help="the last runs, days billed and waiting, recent rejects and warnings",
        description="The last runs (adbill run id beside the Prefect flow-run id), the days "
        "billed through, the days a run would bill now, the lines, orders and files rejected "
        "since --since, and warnings. Exit status "
        f"{EXIT_SCHEDULED_RUN_FAILED} when the last scheduled run failed or was interrupted, 2 "
        "when the data dir has billed nothing yet or a flag is refused, 1 when the status "
        "cannot be read, 0 otherwise.",
    )
    status.add_argument(
        "--since",
        type=an_instant,
        help="count rejects from this day or instant on (YYYY-MM-DD[THH:MM], UTC; "
        "default: the last 24 hours)",
    )
    status.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    status.set_defaults(func=cmd_status)


def add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common_options()],
        help="serve the daily deployment (cron 00:30 billing time)",
        description="Register the deployment daily-billing/daily with the Prefect server "
        "(PREFECT_API_URL) and run its flow runs until stopped; a scheduled run bills "
        f"{YESTERDAY}.",
    )
    serve.add_argument(
        "--cron",
        default="30 0 * * *",
        help="the schedule, in the billing zone (default '30 0 * * *': 00:30 every night)",
    )
    add_task_runner(serve)
    serve.set_defaults(func=cmd_serve)


def cmd_status(args) -> int:
    import json

    from tasks.state_guard import state_lost
    from tasks.status import last_scheduled_failure, read_status

    settings = settings_of(args)
    if (lost := state_lost(settings)) is not None:  # a state lost, the warehouse billed
        raise Refused(lost)
    try:
        st = read_status(settings, since=args.since)
    except Exception as exc:  # duckdb.IOException: another process holds the working state
        from tasks.run_lock import is_lock_error

        if not is_lock_error(exc) or type(exc).__name__ != "IOException":
            raise
        st = _status_of_published(settings, args.since, exc)
    if st is None:
        failure = last_scheduled_failure(settings)  # (a first scheduled run that failed early)
        if failure is None:
            if settings.state_db.exists():  # held by the data dir's first run
                raise Refused(
                    f"{settings.data_dir} has billed nothing yet: its first run is in progress "
                    "(no warehouse published yet)"
                )
            if not settings.data_dir.exists():  # (a mistyped path, not an empty data dir)
                raise Refused(
                    f"{settings.data_dir} has billed nothing yet: there is no data dir there "
                    "(is the path right?)"
                )
            raise Refused(
                f"{settings.data_dir} has billed nothing yet (no working state, no warehouse)"
            )
        print(f"adbill status of {settings.data_dir}: nothing billed yet")
        print(
            error_line("status", Refused(f"the last scheduled run failed: {failure['error']}")),
            file=sys.stderr,
        )
        return EXIT_SCHEDULED_RUN_FAILED
    if args.json:
        row = st.row() | {"runs": st.runs, "waiting": [[str(p.day), p.reason] for p in st.waiting]}
        print(json.dumps(row, default=str, indent=1))
    else:
        print(terminal_text("\n".join(st.lines())))
    if st.failed:
        last = st.last_scheduled or {}
        print(
            error_line(
                "status",
                Refused(
                    f"the last scheduled run {last['run_id']} failed: {last['error']}"
                    if last["run_id"] != "-"
                    else f"the last scheduled run failed before it started: {last['error']}"
                ),
            ),
            file=sys.stderr,
        )
        return EXIT_SCHEDULED_RUN_FAILED
    return 0


def _status_of_published(settings, since, held: Exception):
    """The status from the published warehouse while a process other than a run (an
    analyst's session by mistake) holds the working state open for writing."""
    import re

    from tasks.db import connect
    from tasks.status import billing_status

    pid = re.search(r"\(PID (\d+)\)", str(held))
    holder = f"PID {pid.group(1)}" if pid else "another process"
    if not settings.db.exists():
        raise Refused(
            f"the working state {settings.state_db} is open in another process ({holder}) and "
            f"there is no published warehouse at {settings.db} to read instead; close that "
            "session, then retry"
        )
    con = connect(settings.db, read_only=True)
    try:
        st = billing_status(con, settings, since=since, source=str(settings.db))
    finally:
        con.close()
    st.warnings.insert(
        0,
        f"the working state {settings.state_db} is open in another process ({holder}); "
        "figures as of the last publish; the next run waits for that session to close",
    )
    return st


def cmd_statement(args) -> None:
    """One customer's statement for a month, written from the published warehouse (no flow,
    no Prefect server: it must take well under a second)."""
    from tasks.documents_on_demand import NoStatement, write_statement

    settings = settings_of(args)
    if settings.db.exists():  # (none: write_statement says there is no warehouse yet)
        if not settings.inbox.is_dir():  # a mistyped data dir: no out/ folder made in it
            raise Refused(
                f"no inbox at {settings.inbox} (is the data dir right?); no statement written"
            )
        # a DuckDB warehouse of this data dir, not another's
        check_published_db(settings, "no statement written")
    month = args.month or settings.today().replace(day=1)
    try:
        page = write_statement(settings, args.customer, month)
    except NoStatement as exc:
        raise Refused(str(exc)) from None
    print(page)


def cmd_serve(args) -> None:
    from flows.serve import serve

    check_task_runner(args.task_runner)
    # a bad ADBILL_* or --db, a data dir without inbox (a typo) or a bad --cron is refused
    # here, not in every scheduled run
    settings = settings_of(args)
    check_published_db(settings)
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    from tasks.pipeline import check_inbox
    from tasks.state_guard import check_working_state

    check_inbox(settings)
    check_working_state(settings)  # its billing zone; a state lost or damaged
    from tasks.run_lock import busy_wait_seconds

    busy_wait_seconds()
    fields = args.cron.split()
    try:
        # (six fields read as seconds first: '30 0 * * * *' ran sixty times a night)
        if len(fields) != 5 and not (len(fields) == 1 and fields[0].startswith("@")):
            raise ValueError(args.cron)
        CronSchedule(cron=args.cron, timezone=settings.billing_tz)
    except (ValidationError, ValueError):
        raise Refused(
            f"--cron {args.cron!r} is not a cron schedule (five fields: minute hour day "
            "month weekday, e.g. '30 0 * * *'); nothing served"
        ) from None
    serve(
        data_dir=str(Path(args.data_dir).absolute()),
        db=str(Path(args.db).absolute()) if args.db else None,
        cron=args.cron,
        task_runner=args.task_runner,
    )
