"""The `adbill` command line: demo, run, generate, serve, status, statement — runs are calls
of the Prefect flow `daily-billing`."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# a busy machine can take longer than Prefect's default to start its temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# the file in a data dir that says `adbill demo` made it (and may delete it again)
DEMO_MARKER = ".adbill-demo"
# the demo's orders go back up to 40 days before its first day of usage (tasks.generate)
DEMO_ORDERS_BEFORE = 40
LOG_NAME = "adbill.log"
MAX_LINE = 300
# `adbill status` exits with this when the last scheduled run failed (for monitoring)
EXIT_SCHEDULED_RUN_FAILED = 3
YESTERDAY = (
    "yesterday in the billing zone (ADBILL_BILLING_TZ, default Asia/Shanghai; "
    "ADBILL_TODAY=YYYY-MM-DD sets today)"
)


class Refused(ValueError):
    """A command the guards turn away before it changes anything."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (`adbill run -h` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def _month(text: str) -> date:
    """A month as YYYY-MM: its first day."""
    year, dash, month = text.partition("-")
    if dash and len(year) == 4 and len(month) == 2 and (year + month).isdigit():
        try:
            return date(int(year), int(month), 1)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a month (YYYY-MM)")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return value

    parse.__name__ = f"count>={minimum}"
    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("ADBILL_DATA_DIR", "adbill-data"),
        help="data dir (env ADBILL_DATA_DIR; default ./adbill-data)",
    )
    p.add_argument(
        "--db",
        default=os.environ.get("ADBILL_DB"),
        help="published warehouse (env ADBILL_DB; default <data-dir>/warehouse.duckdb)",
    )


def _synthetic(p: argparse.ArgumentParser) -> None:
    """The options of generated data (demo and generate)."""
    p.add_argument("--customers", type=_count(1), default=300, help="customers (default 300)")
    p.add_argument("--days", type=_count(1), default=30, help="days of usage (default 30)")
    p.add_argument(
        "--events-per-day", type=_count(0), default=3000, help="usage lines a day (default 3000)"
    )
    p.add_argument("--seed", type=int, default=7, help="random seed: same seed, same data")
    p.add_argument(
        "--start",
        type=_date,
        help=f"first day of usage, YYYY-MM-DD (default: the --days days that end {YESTERDAY})",
    )


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="adbill", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="make a sample inbox in a fresh data dir and bill it",
        description="Make a sample inbox in a fresh data dir and bill it. The demo deletes "
        f"only a data dir that it made itself (a {DEMO_MARKER} file in it says so).",
    )
    _common(demo)
    demo.set_defaults(data_dir=os.environ.get("ADBILL_DATA_DIR", "demo-data"))
    _synthetic(demo)

    run = sub.add_parser(
        "run",
        help="ingest new inbox files and bill every due day",
        description="Ingest new inbox files, then bill, in order, every day not billed yet up "
        "to --through and every billed day that newly ingested late data touches (from the "
        "earliest such day on). The published warehouse is replaced only when the run "
        "succeeds. A data dir busy with another run is waited for up to "
        "ADBILL_BUSY_WAIT_SECONDS (default 1800).",
    )
    _common(run)
    run.add_argument(
        "--through",
        type=_date,
        help=f"last billing day, YYYY-MM-DD (default, and the latest allowed: {YESTERDAY})",
    )
    run.add_argument(
        "--rebill-from",
        type=_date,
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
        type=_count(0),
        help="shards of customers per day (env ADBILL_SHARDS; default 0 = automatic)",
    )
    run.add_argument(
        "--max-late-days",
        type=_count(0),
        help="how many days late a line or order may arrive (env ADBILL_MAX_LATE_DAYS; default 35)",
    )
    run.add_argument(
        "--month-to-date-documents",
        action="store_true",
        default=None,
        help="also write every customer's month-to-date statement documents (env "
        "ADBILL_MONTH_TO_DATE_DOCUMENTS=1; default: only final ones, and `adbill statement` "
        "on demand)",
    )
    _task_runner(run)

    statement = sub.add_parser(
        "statement",
        help="write one customer's statement for a month, from the warehouse",
        description="Write the customer's statement for the month (month-to-date for a month "
        "not yet closed) from the published warehouse, as <data-dir>/out/statements/YYYY-MM/"
        "<name>.html and .csv, and print the page's path. Reads only the published warehouse: "
        "a run going on neither blocks it nor is blocked by it.",
    )
    _common(statement)
    statement.add_argument("customer", help="the customer id, as in the orders")
    statement.add_argument(
        "--month",
        type=_month,
        help="YYYY-MM (default: the current month in the billing zone; ADBILL_TODAY sets today)",
    )

    status = sub.add_parser(
        "status",
        help="the last runs, days billed and waiting, recent rejects and warnings",
        description="The last runs (adbill run id beside the Prefect flow-run id), the days "
        "billed through, the days a run would bill now, the lines, orders and files rejected "
        "since --since, and warnings. Exit status "
        f"{EXIT_SCHEDULED_RUN_FAILED} when the last scheduled run failed, 0 otherwise.",
    )
    _common(status)
    status.add_argument(
        "--since",
        type=_instant,
        help="count rejects from this day or instant on (YYYY-MM-DD[THH:MM], UTC; "
        "default: the last 24 hours)",
    )
    status.add_argument("--json", action="store_true", help="print the facts as one JSON object")

    gen = sub.add_parser("generate", help="write synthetic orders and usage into the inbox")
    _common(gen)
    _synthetic(gen)
    gen.add_argument(
        "--no-bad-lines", action="store_true", help="write no bad lines or orders on purpose"
    )
    gen.add_argument("--plain", action="store_true", help="write .jsonl instead of .jsonl.gz")

    serve = sub.add_parser(
        "serve",
        help="serve the daily deployment (cron 00:30 billing time)",
        description="Register the deployment daily-billing/daily with the Prefect server "
        "(PREFECT_API_URL) and run its flow runs until stopped; a scheduled run bills "
        f"{YESTERDAY}.",
    )
    _common(serve)
    serve.add_argument(
        "--cron",
        default="30 0 * * *",
        help="the schedule, in the billing zone (default '30 0 * * *': 00:30 every night)",
    )
    _task_runner(serve)
    return top


def _task_runner(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task-runner",
        default=os.environ.get("ADBILL_TASK_RUNNER", "local"),
        help="where shard draws run: local (default), dask (a temporary LocalCluster) or "
        "dask=ADDRESS (env ADBILL_TASK_RUNNER)",
    )


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date or instant") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- the terminal and the log


class _TerminalFilter(logging.Filter):
    """On the terminal: progress and warnings; errors and tracebacks go to the log file
    only (the command prints its own one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or record.exc_info:
            return False
        # Prefect's "Finished in state Failed('...')": the command's own line says it
        return not record.getMessage().startswith(
            ("Finished in state Failed", "Finished in state Crashed")
        )


class _Logs:
    """Prefect's console handlers quieted and a file log of the run with every traceback,
    for one command; undone afterwards (tests call main() again in the same process)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._filter = _TerminalFilter()
        self._file: logging.Handler | None = None
        self._filtered: list[logging.Handler] = []
        self._loggers: list[logging.Logger] = []

    def start(self, data_dir: Path) -> None:
        self.stop()
        self.path = data_dir / "state" / "logs" / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=20_000_000, backupCount=5, encoding="utf-8"
        )
        self._file.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
        )
        known = logging.Logger.manager.loggerDict.values()
        loggers = [logging.getLogger()] + [lg for lg in known if isinstance(lg, logging.Logger)]
        for lg in loggers:
            consoles = [h for h in lg.handlers if _is_terminal(h)]
            for h in consoles:
                if h not in self._filtered:
                    h.addFilter(self._filter)
                    self._filtered.append(h)
            if lg is loggers[0] or (consoles and not lg.propagate):
                lg.addHandler(self._file)
                self._loggers.append(lg)

    def error(self, command: str, exc: BaseException) -> None:
        if self._file is not None:
            logging.getLogger("adbill").error("adbill %s failed", command, exc_info=exc)

    def stop(self) -> None:
        for h in self._filtered:
            h.removeFilter(self._filter)
        for lg in self._loggers:
            lg.removeHandler(self._file)
        if self._file is not None:
            self._file.close()
        self.path, self._file, self._filtered, self._loggers = None, None, [], []


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return stream in (sys.stderr, sys.stdout) or type(handler).__name__ in (
        "PrefectConsoleHandler",
        "_SafeStreamHandler",
    )


LOGS = _Logs()


def _refusals() -> tuple[type[Exception], ...]:
    """The refusals of a guard (exit 2): tasks.pipeline's RunRefused only once a command has
    imported the pipeline (`adbill statement` never does, to start in well under a second)."""
    from tasks.settings import SettingError

    pipeline = sys.modules.get("tasks.pipeline")
    return (Refused, SettingError) + ((pipeline.RunRefused,) if pipeline else ())


def _error_line(command: str, exc: BaseException) -> str:
    """One line, at most MAX_LINE characters: what failed, where, and where the details are."""
    refused = isinstance(exc, _refusals())
    text = str(exc) if refused else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    notes = [n for n in getattr(exc, "__notes__", ()) if n.startswith("while ")]
    where = f" ({notes[0]})" if notes else ""
    details = f"; traceback in {LOGS.path}" if LOGS.path and not refused else ""
    head = f"adbill {command}: "
    room = MAX_LINE - len(head) - len(where) - len(details)
    if room < 60:  # a very long path: keep the message, drop the pointer to the log
        details = ""
        room = MAX_LINE - len(head) - len(where)
    if len(text) > room:
        text = text[: room - 3] + "..."
    return (head + text + where + details)[:MAX_LINE]


# ---------------------------------------------------------------- commands


def _settings(args, **given):
    from tasks.settings import Settings

    return Settings.of(args.data_dir, args.db, **given)


def _window(args, settings) -> tuple[date, date]:
    """The generated days: from --start (default: the --days days that end yesterday)."""
    latest = settings.yesterday()
    start = args.start or latest - timedelta(days=args.days - 1)
    return start, start + timedelta(days=args.days - 1)


def _generate(args, start: date, bad_lines: bool = True, gzip_usage: bool = True):
    from tasks.generate import generate

    summary = generate(
        Path(args.data_dir),
        customers=args.customers,
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        start=start,
        bad_lines=bad_lines,
        gzip_usage=gzip_usage,
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(
        f"wrote {summary.orders:,} orders and {summary.events:,} usage lines "
        f"({summary.bad_order_rows} bad order rows, {summary.bad_event_lines} bad usage lines) "
        f"for {summary.first_day} .. {summary.last_day} into {Path(args.data_dir) / 'inbox'}"
    )
    return summary


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


def fresh_demo_dir(data: Path, db: Path) -> None:
    """Make `data` an empty demo dir; delete only what an earlier demo made (its marker)."""
    data = data.absolute()
    if data.is_symlink() or (data.exists() and not data.is_dir()):
        raise Refused(f"{data} is not a directory; nothing deleted")
    made_by_demo = (data / DEMO_MARKER).is_file()
    if data.exists() and any(data.iterdir()) and not made_by_demo:
        raise Refused(
            f"{data} is not empty and adbill demo did not make it (no {DEMO_MARKER} in it); "
            "give another --data-dir; nothing deleted"
        )
    inside = db.absolute().is_relative_to(data)
    if not inside and (db.exists() or db.is_symlink()):
        raise Refused(
            f"the demo would overwrite {db}, outside its data dir {data}; "
            "give --db inside it or unset ADBILL_DB; nothing deleted"
        )
    if made_by_demo:
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / DEMO_MARKER).write_text(
        "made by `adbill demo`, which deletes this directory when it runs again\n",
        encoding="utf-8",
    )


def cmd_demo(args) -> None:
    settings = _settings(args)
    start, last = _window(args, settings)
    latest = settings.yesterday()
    if last > latest:
        raise Refused(
            f"--start {start} with --days {args.days} ends on {last}, after yesterday "
            f"({latest} in {settings.billing_tz}); nothing billed"
        )
    longest = settings.max_history_days - DEMO_ORDERS_BEFORE
    if args.days > longest:
        raise Refused(
            f"--days {args.days} is more than the {longest} days a fresh data dir accepts "
            f"(its orders go back {DEMO_ORDERS_BEFORE} days more; "
            f"ADBILL_MAX_HISTORY_DAYS={settings.max_history_days})"
        )
    fresh_demo_dir(settings.data_dir, settings.db)
    _start_server(args)
    summary = _generate(args, start)
    result = _run_flow(args, summary.last_day, trigger="demo")
    from flows.summary import print_demo_summary

    print_demo_summary(args, result)


def _check_task_runner(runner: str) -> None:
    if runner not in ("local", "dask") and not runner.startswith("dask="):
        raise Refused(f"--task-runner must be local, dask or dask=ADDRESS, not {runner!r}")


def cmd_run(args) -> None:
    _check_task_runner(args.task_runner)
    if not args.plan and (Path(args.data_dir) / "inbox").is_dir():
        # boots while the guards below import the pipeline (a data dir without an inbox is
        # refused by them: nothing is written into a mistyped one)
        _start_server(args)
    from tasks.pipeline import check_run

    # the guards before Prefect starts (the flow checks them again for runs from the UI)
    settings = _settings(args, shards=args.shards, max_late_days=args.max_late_days)
    through = args.through or settings.yesterday()
    check_run(settings, through, args.rebill_from)
    if args.plan:
        from tasks.plan import plan_run

        print("\n".join(plan_run(settings, through, args.rebill_from).lines()))
        return
    # the flow reads the setting from ADBILL_* as it reads the others; the flag sets it for
    # this run only
    flag = "ADBILL_MONTH_TO_DATE_DOCUMENTS"
    before = os.environ.get(flag)
    if args.month_to_date_documents:
        os.environ[flag] = "1"
    try:
        result = _run_flow(
            args,
            through,
            args.rebill_from,
            shards=args.shards,
            max_late_days=args.max_late_days,
            task_runner=args.task_runner,
        )
    finally:
        if before is None:
            os.environ.pop(flag, None)
        else:
            os.environ[flag] = before
    print(
        f"billed {result['days_billed']} day(s) through {result['through']}; "
        f"{result['events_accepted']:,} events accepted, {result['events_rejected']:,} rejected; "
        f"warehouse: {result['published']}"
    )
    for warning in result.get("warnings", []):
        print(f"warning: {warning}")


def cmd_status(args) -> int:
    import json

    from tasks.status import read_status

    settings = _settings(args)
    st = read_status(settings, since=args.since)
    if st is None:
        raise Refused(
            f"{settings.data_dir} has billed nothing yet (no working state, no warehouse)"
        )
    if args.json:
        row = st.row() | {"runs": st.runs, "waiting": [[str(p.day), p.reason] for p in st.waiting]}
        print(json.dumps(row, default=str, indent=1))
    else:
        print("\n".join(st.lines()))
    if st.failed:
        last = st.last_scheduled or {}
        print(
            _error_line(
                "status",
                Refused(f"the last scheduled run {last['run_id']} failed: {last['error']}"),
            ),
            file=sys.stderr,
        )
        return EXIT_SCHEDULED_RUN_FAILED
    return 0


def cmd_statement(args) -> None:
    """One customer's statement for a month, written from the published warehouse (no flow,
    no Prefect server: it must take well under a second)."""
    from tasks.documents_on_demand import NoStatement, write_statement

    settings = _settings(args)
    month = args.month or settings.today().replace(day=1)
    try:
        page = write_statement(settings, args.customer, month)
    except NoStatement as exc:
        raise Refused(str(exc)) from None
    print(page)


def cmd_generate(args) -> None:
    settings = _settings(args)
    if settings.state_db.exists() and not (settings.data_dir / DEMO_MARKER).is_file():
        raise Refused(
            f"{settings.data_dir} has billed (it has {settings.state_db.name}); generate "
            "writes synthetic orders and usage only into a fresh data dir; nothing written"
        )
    start, _last = _window(args, settings)
    _generate(args, start, bad_lines=not args.no_bad_lines, gzip_usage=not args.plain)


def cmd_serve(args) -> None:
    from flows.serve import serve

    _check_task_runner(args.task_runner)
    _settings(args)  # a bad ADBILL_* is refused here, not in every scheduled run
    serve(
        data_dir=str(Path(args.data_dir).absolute()),
        db=str(Path(args.db).absolute()) if args.db else None,
        cron=args.cron,
        task_runner=args.task_runner,
    )


COMMANDS = {
    "demo": cmd_demo,
    "run": cmd_run,
    "generate": cmd_generate,
    "serve": cmd_serve,
    "status": cmd_status,
    "statement": cmd_statement,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0, or non-zero with one line on stderr (2: refused by a
    guard, nothing changed; 1: failed, the traceback in the log; 130: interrupted)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: -h, or one line about the mistake
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("adbill: interrupted; the published warehouse is unchanged", file=sys.stderr)
        return 130
    except _refusals() as exc:
        print(_error_line(args.command, exc), file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line for the user; the traceback is in the log
        LOGS.error(args.command, exc)
        print(_error_line(args.command, exc), file=sys.stderr)
        return 1
    finally:
        LOGS.stop()
        _stop_server()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
