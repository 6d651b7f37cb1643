"""The `adbill` command line: demo, run, generate, serve — each a call of the Prefect flow."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import shutil
import sys
from collections.abc import Callable
from datetime import date, timedelta
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
    p.add_argument("--customers", type=_count(1), default=300)
    p.add_argument("--days", type=_count(1), default=30)
    p.add_argument("--events-per-day", type=_count(0), default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--start",
        type=_date,
        help="first day of usage (default: the --days days that end yesterday)",
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

    run = sub.add_parser("run", help="ingest new inbox files and bill every due day")
    _common(run)
    run.add_argument(
        "--through", type=_date, help="last billing day (default and latest: yesterday)"
    )
    run.add_argument("--rebill-from", type=_date, help="also recompute billed days from this day")
    run.add_argument(
        "--shards",
        type=_count(0),
        help="shards of customers (env ADBILL_SHARDS; 0 = automatic)",
    )
    run.add_argument("--max-late-days", type=_count(0), help="env ADBILL_MAX_LATE_DAYS; default 35")
    run.add_argument(
        "--task-runner",
        default="local",
        help="local (default), dask (a temporary LocalCluster) or dask=ADDRESS",
    )

    gen = sub.add_parser("generate", help="write synthetic orders and usage into the inbox")
    _common(gen)
    _synthetic(gen)
    gen.add_argument("--no-bad-lines", action="store_true")
    gen.add_argument("--plain", action="store_true", help="write .jsonl instead of .jsonl.gz")

    serve = sub.add_parser("serve", help="serve the daily deployment (cron 00:30 billing time)")
    _common(serve)
    serve.add_argument("--cron", default="30 0 * * *")
    return top


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


def _error_line(command: str, exc: BaseException) -> str:
    """One line, at most MAX_LINE characters: what failed, where, and where the details are."""
    from tasks.pipeline import RunRefused
    from tasks.settings import SettingError

    refused = isinstance(exc, (Refused, RunRefused, SettingError))
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
    summary = _generate(args, start)
    result = _run_flow(args, summary.last_day, trigger="demo")
    from flows.summary import print_demo_summary

    print_demo_summary(args, result)


def cmd_run(args) -> None:
    from tasks.pipeline import check_run

    # the guards before Prefect starts (the flow checks them again for runs from the UI)
    runner = args.task_runner
    if runner not in ("local", "dask") and not runner.startswith("dask="):
        raise Refused(f"--task-runner must be local, dask or dask=ADDRESS, not {runner!r}")
    settings = _settings(args, shards=args.shards, max_late_days=args.max_late_days)
    through = args.through or settings.yesterday()
    check_run(settings, through, args.rebill_from)
    result = _run_flow(
        args,
        through,
        args.rebill_from,
        shards=args.shards,
        max_late_days=args.max_late_days,
        task_runner=args.task_runner,
    )
    print(
        f"billed {result['days_billed']} day(s) through {result['through']}; "
        f"{result['events_accepted']:,} events accepted, {result['events_rejected']:,} rejected; "
        f"warehouse: {result['published']}"
    )
    for warning in result.get("warnings", []):
        print(f"warning: {warning}")


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

    _settings(args)  # a bad ADBILL_* is refused here, not in every scheduled run
    serve(
        data_dir=str(Path(args.data_dir).absolute()),
        db=str(Path(args.db).absolute()) if args.db else None,
        cron=args.cron,
    )


COMMANDS = {"demo": cmd_demo, "run": cmd_run, "generate": cmd_generate, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0, or non-zero with one line on stderr (2: refused by a
    guard, nothing changed; 1: failed, the traceback in the log; 130: interrupted)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: -h, or one line about the mistake
        return exc.code if isinstance(exc.code, int) else 2
    from tasks.pipeline import RunRefused
    from tasks.settings import SettingError

    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("adbill: interrupted; the published warehouse is unchanged", file=sys.stderr)
        return 130
    except (Refused, RunRefused, SettingError) as exc:
        print(_error_line(args.command, exc), file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line for the user; the traceback is in the log
        LOGS.error(args.command, exc)
        print(_error_line(args.command, exc), file=sys.stderr)
        return 1
    finally:
        LOGS.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
