"""What every `adbill` subcommand is built from: argument types, shared options (parent
parsers), the settings they make and the refusal a guard raises."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from tasks.settings import COUNTS, a_day, whole_number

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
        return a_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def a_place(variable: str) -> Callable[[str], str]:
    """An argparse type: a file or dir given on the command line or in `variable`
    (ADBILL_DATA_DIR, ADBILL_DB): `~` is the home dir even where no shell expanded it
    (`--data-dir=~/billing`, an env file), and an empty one is refused rather than read as the
    current dir. A refusal of the variable's value names the variable (an env file at fault,
    not a flag the operator never typed)."""

    def parse(text: str) -> str:
        source = f" (from {variable})" if os.environ.get(variable) == text else ""
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty path (give a directory or file){source}")
        if text != text.strip():  # (a stray space from a copy and paste: a folder named " /x")
            raise argparse.ArgumentTypeError(f"{text!r} has white space around it{source}")
        return os.path.expanduser(text)

    parse.__name__ = "path"
    return parse


def a_month(text: str) -> date:
    """A month as YYYY-MM: its first day."""
    year, dash, month = text.partition("-")
    if (
        dash
        and len(year) == 4
        and len(month) == 2
        and (year + month).isascii()
        and (year + month).isdigit()
    ):
        try:
            return date(int(year), int(month), 1)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a month (YYYY-MM)")


# YYYY-MM-DD, or with a time after T or a space (and an offset): not 20261125 or 2026-W48-3,
# which datetime.fromisoformat also reads
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}[0-9:.,+\-Zz]*)?")


def an_instant(text: str) -> datetime:
    try:
        if not _INSTANT.fullmatch(text):
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date or instant") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def a_count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum (and <= maximum, when given)."""

    def parse(text: str) -> int:
        value = whole_number(text)  # (ASCII digits: not `1_000`, `+5` nor a fullwidth `３`)
        if value is None or value < minimum or (maximum is not None and value > maximum):
            within = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum:,}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {within}")
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
        type=a_place("ADBILL_DATA_DIR"),
        default=os.environ.get("ADBILL_DATA_DIR") or data_dir,  # empty: unset, as every ADBILL_*
        help=f"data dir (env ADBILL_DATA_DIR; default ./{data_dir})",
    )
    p.add_argument(
        "--db",
        type=a_place("ADBILL_DB"),
        default=os.environ.get("ADBILL_DB") or None,
        help="published warehouse (env ADBILL_DB; default <data-dir>/warehouse.duckdb)",
    )
    return p


# generated data is made in memory a day at a time: past these it would not fit (a typo of
# a few digits asked for 745 GiB and failed after making the folder)
MOST_CUSTOMERS = 10_000_000
MOST_EVENTS_PER_DAY = 100_000_000
MOST_DAYS = COUNTS["max_history_days"]  # (no data dir keeps more days of history than this)


def synthetic_options() -> argparse.ArgumentParser:
    """The parent of the subcommands that make generated data (demo and generate)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--customers", type=a_count(1, MOST_CUSTOMERS), default=300, help="customers (default 300)"
    )
    p.add_argument(
        "--days", type=a_count(1, MOST_DAYS), default=30, help="days of usage (default 30)"
    )
    p.add_argument(
        "--events-per-day",
        type=a_count(0, MOST_EVENTS_PER_DAY),
        default=3000,
        help="usage lines a day (default 3000)",
    )
    p.add_argument(
        "--seed", type=a_count(0), default=7, help="random seed >= 0: same seed, same data"
    )
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
        default=os.environ.get("ADBILL_TASK_RUNNER") or "local",  # empty: unset
        help="where shard draws run: local (default), dask (a temporary LocalCluster) or "
        "dask=ADDRESS (env ADBILL_TASK_RUNNER)",
    )


def check_task_runner(runner: str) -> None:
    if runner not in ("local", "dask") and not runner.startswith("dask="):
        raise Refused(
            f"--task-runner must be local, dask or dask=ADDRESS, not {runner!r} (the flag or "
            "ADBILL_TASK_RUNNER)"
        )
    if runner.startswith("dask="):  # (a typo found now, not at the first billing day's draw)
        from flows.parallel import address_problem

        problem = address_problem(runner.partition("=")[2])
        if problem is not None:
            raise Refused(
                f"--task-runner {runner}: {problem} (the flag or ADBILL_TASK_RUNNER); "
                "nothing billed"
            )


def settings_of(args, **given):
    """The run's settings: the flags given, then ADBILL_* (tasks.settings)."""
    from tasks.settings import Settings

    return Settings.of(args.data_dir, args.db, **given)


# ---------------------------------------------------------------- the published warehouse

# bytes 8-11 of every DuckDB database file (its main header)
DUCKDB_MAGIC = b"DUCK"
# the folder of a data dir's day files, which a published warehouse names (tasks/publish.py)
DAY_FILES = "/state/days/"


def check_published_db(settings, nothing: str = "nothing billed") -> None:
    """Refuse a --db / ADBILL_DB that a run would wrongly replace: a directory, a file that is
    not a DuckDB database, a working state, a DuckDB database no adbill run published, or the
    published warehouse of another data dir. A new file, this data dir's default
    <data-dir>/warehouse.duckdb and a warehouse a run of this data dir published pass.
    `nothing`: what the refusal left undone (a statement is written, not billed)."""
    db, data = settings.db, Path(os.path.realpath(settings.data_dir))
    real = Path(os.path.realpath(db))
    own = data / "warehouse.duckdb"
    fix = f"{nothing} (give a new file or the data dir's own, <data-dir>/warehouse.duckdb)"
    if real.is_dir():
        raise Refused(f"--db / ADBILL_DB {db} is a directory, not the warehouse file; {fix}")
    if real == own:  # where runs of this data dir publish (an analyst may have made it first)
        return
    for place in real.parents:
        if place.name == "state" and place.parent != data and _is_state_dir(place):
            raise Refused(
                f"--db / ADBILL_DB {db} lies in the state folder of the data dir {place.parent} "
                f"(its working state, which only its runs open); {fix}"
            )
    if real.parent != data and (real.parent / "state" / "adbill.duckdb").exists():
        if real.name == "warehouse.duckdb":
            raise Refused(
                f"--db / ADBILL_DB {db} is the published warehouse of the data dir "
                f"{real.parent}, not of {settings.data_dir}; {fix}"
            )
    if not real.exists():
        return
    if not real.is_file():
        raise Refused(f"--db / ADBILL_DB {db} is not a regular file; {fix}")
    with real.open("rb") as f:
        head = f.read(12)
    if head[8:12] != DUCKDB_MAGIC:
        raise Refused(
            f"--db / ADBILL_DB {db} exists and is not a DuckDB database: a run would replace "
            f"it; {fix}"
        )
    _check_published_by_this_data_dir(settings, real, data, fix)


def check_run_db(settings) -> None:
    """The --db a run publishes to (`adbill run`, and the flow for a `db` parameter from the
    UI): this data dir's warehouse or a new file, in a folder the run can write in."""
    check_published_db(settings)
    check_db_writable(settings)


def check_db_writable(settings) -> None:
    """Refuse a --db / ADBILL_DB whose folder this process cannot write in (a run would bill
    every day and only then fail to publish): tried with a file made and removed in the
    folder, or in the nearest folder above it that exists (a run makes the rest)."""
    import tempfile

    db = Path(os.path.abspath(settings.db))
    folder = next((p for p in db.parents if p.exists()), None)
    try:
        if folder is None or not folder.is_dir():
            raise NotADirectoryError(folder)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".adbill-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise Refused(
            f"--db / ADBILL_DB {settings.db}: cannot write in {folder} ({reason}); nothing billed"
        ) from None


def _is_state_dir(place: Path) -> bool:
    """A data dir's state folder: its working state or run lock is there, or an inbox beside."""
    return (
        (place / "adbill.duckdb").exists()
        or (place / "run.lock").exists()
        or (place.parent / "inbox").is_dir()
    )


def _check_published_by_this_data_dir(settings, real: Path, data: Path, fix: str) -> None:
    """The existing DuckDB file `real` is a warehouse an adbill run published (its engine's
    tables in schema `internal`), and the day files it names are this data dir's."""
    import duckdb

    db = settings.db
    try:
        con = duckdb.connect(str(real), read_only=True)
    except duckdb.Error as exc:
        from tasks.run_lock import is_lock_error

        if is_lock_error(exc):  # open for writing elsewhere: its path passed the checks
            return
        reason = " ".join(str(exc).split())[:80]
        raise Refused(
            f"--db / ADBILL_DB {db} cannot be read as a DuckDB database ({reason}); {fix}"
        ) from None
    try:
        tables = set(con.execute("select schema_name, table_name from duckdb_tables()").fetchall())
        views = [
            s
            for (s,) in con.execute("select sql from duckdb_views() where not internal").fetchall()
        ]
    finally:
        con.close()
    if ("main", "adbill_meta") in tables:
        raise Refused(
            f"--db / ADBILL_DB {db} is the working state of a data dir (only its runs open it), "
            f"not a published warehouse; {fix}"
        )
    if ("internal", "adbill_meta") not in tables or ("main", "billing_runs") not in tables:
        raise Refused(
            f"--db / ADBILL_DB {db} is a DuckDB database that no adbill run published: a run "
            f"would replace it; {fix}"
        )
    named = {
        Path(os.path.realpath(text.rpartition(DAY_FILES)[0] or "/"))
        for sql in views
        for text in re.findall(r"'((?:[^']|'')*)'", sql)
        if DAY_FILES in text
    }
    for other in sorted(named - {data}):
        if (other / "state" / "adbill.duckdb").exists():  # not a data dir moved since
            raise Refused(
                f"--db / ADBILL_DB {db} is the published warehouse of the data dir {other}, "
                f"not of {settings.data_dir}; {fix}"
            )
