"""What every `adbill` subcommand is built from: argument types, shared options (parent
parsers), the settings they make and the refusal a guard raises."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, date, datetime

YESTERDAY = (
    "yesterday in the billing zone (ADBILL_BILLING_TZ, default Asia/Shanghai; "
    "ADBILL_TODAY=YYYY-MM-DD sets today)"
)


class Refused(ValueError):
    """A command the guards turn away before it changes anything."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (`adbill run -h` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")


# ---------------------------------------------------------------- argument types


def a_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def a_month(text: str) -> date:
    """A month as YYYY-MM: its first day."""
    year, dash, month = text.partition("-")
    if dash and len(year) == 4 and len(month) == 2 and (year + month).isdigit():
        try:
            return date(int(year), int(month), 1)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a month (YYYY-MM)")


def an_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date or instant") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def a_count(minimum: int) -> Callable[[str], int]:
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


# ---------------------------------------------------------------- shared options


def common_options(data_dir: str = "adbill-data") -> argparse.ArgumentParser:
    """The parent of every subcommand: --data-dir (default `data_dir`: `demo` has its own)
    and --db. A new one for each subcommand (argparse shares a parent's options)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--data-dir",
        default=os.environ.get("ADBILL_DATA_DIR", data_dir),
        help=f"data dir (env ADBILL_DATA_DIR; default ./{data_dir})",
    )
    p.add_argument(
        "--db",
        default=os.environ.get("ADBILL_DB"),
        help="published warehouse (env ADBILL_DB; default <data-dir>/warehouse.duckdb)",
    )
    return p


def synthetic_options() -> argparse.ArgumentParser:
    """The parent of the subcommands that make generated data (demo and generate)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--customers", type=a_count(1), default=300, help="customers (default 300)")
    p.add_argument("--days", type=a_count(1), default=30, help="days of usage (default 30)")
    p.add_argument(
        "--events-per-day", type=a_count(0), default=3000, help="usage lines a day (default 3000)"
    )
    p.add_argument("--seed", type=int, default=7, help="random seed: same seed, same data")
    p.add_argument(
        "--start",
        type=a_date,
        help=f"first day of usage, YYYY-MM-DD (default: the --days days that end {YESTERDAY})",
    )
    return p


def add_task_runner(p: argparse.ArgumentParser) -> None:
    """--task-runner, the last option of run and serve (a parent's options would come first)."""
    p.add_argument(
        "--task-runner",
        default=os.environ.get("ADBILL_TASK_RUNNER", "local"),
        help="where shard draws run: local (default), dask (a temporary LocalCluster) or "
        "dask=ADDRESS (env ADBILL_TASK_RUNNER)",
    )


def check_task_runner(runner: str) -> None:
    if runner not in ("local", "dask") and not runner.startswith("dask="):
        raise Refused(f"--task-runner must be local, dask or dask=ADDRESS, not {runner!r}")


def settings_of(args, **given):
    """The run's settings: the flags given, then ADBILL_* (tasks.settings)."""
    from tasks.settings import Settings

    return Settings.of(args.data_dir, args.db, **given)
