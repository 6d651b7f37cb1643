"""`adbill demo` and `adbill generate`: synthetic orders and usage written into a fresh data
dir's inbox (tasks.generate); the demo then bills them end to end."""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

from flows import cli_flow
from flows.cli_common import Refused, common_options, settings_of, synthetic_options

# the file in a data dir that says `adbill demo` made it (and may delete it again)
DEMO_MARKER = ".adbill-demo"
# the file in a data dir that says `adbill generate` wrote its inbox (more may be written)
GENERATED_MARKER = ".adbill-generated"
# the demo's orders go back up to 40 days before its first day of usage (tasks.generate)
DEMO_ORDERS_BEFORE = 40


def add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        parents=[common_options("demo-data"), synthetic_options()],
        help="make a sample inbox in a fresh data dir and bill it",
        description="Make a sample inbox in a fresh data dir and bill it. The demo deletes "
        f"only a data dir that it made itself (a {DEMO_MARKER} file in it says so).",
    )
    demo.set_defaults(func=cmd_demo)


def add_generate(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        parents=[common_options(), synthetic_options()],
        help="write synthetic orders and usage into a fresh data dir's inbox",
        description="Write synthetic orders and usage into <data-dir>/inbox. Refused, nothing "
        "written: a data dir that has billed (state/adbill.duckdb) or lies in one, a path "
        "inside an inbox, and a file it would write that exists already.",
    )
    gen.add_argument(
        "--no-bad-lines", action="store_true", help="write no bad lines or orders on purpose"
    )
    gen.add_argument("--plain", action="store_true", help="write .jsonl instead of .jsonl.gz")
    gen.set_defaults(func=cmd_generate)


def _window(args, settings) -> tuple[date, date]:
    """The generated days: from --start (default: the --days days that end yesterday)."""
    latest = settings.yesterday()
    start = args.start or latest - timedelta(days=args.days - 1)
    return start, start + timedelta(days=args.days - 1)


def _check_window(args, settings, start: date, last: date, nothing: str) -> None:
    """The generated days end by yesterday and fit what a fresh data dir accepts."""
    latest = settings.yesterday()
    if last > latest:
        raise Refused(
            f"--start {start} with --days {args.days} ends on {last}, after yesterday "
            f"({latest} in {settings.billing_tz}); {nothing}"
        )
    longest = settings.max_history_days - DEMO_ORDERS_BEFORE
    earliest = latest - timedelta(days=longest - 1)
    if args.days <= longest and start < earliest:
        raise Refused(
            f"--start {start} is older than a fresh data dir accepts: its orders go back "
            f"{DEMO_ORDERS_BEFORE} days more, and it takes nothing before "
            f"{settings.today() - timedelta(days=settings.max_history_days)} "
            f"(ADBILL_MAX_HISTORY_DAYS={settings.max_history_days}); start on {earliest} or "
            f"later; {nothing}"
        )
    if args.days > longest:
        raise Refused(
            f"--days {args.days} is more than the {longest} days a fresh data dir accepts "
            f"(its orders go back {DEMO_ORDERS_BEFORE} days more; "
            f"ADBILL_MAX_HISTORY_DAYS={settings.max_history_days}); {nothing}"
        )


def _refuse_inside_a_data_dir(data: Path, nothing: str) -> None:
    """Synthetic data never goes into an inbox (a run would bill it) nor inside a data dir
    that has billed (its own state aside: the demo replaces its own)."""
    data = data.absolute()
    real = Path(os.path.realpath(data))
    if "inbox" in data.parts or "inbox" in real.parts:
        raise Refused(
            f"{data} lies in an inbox: give a data dir (synthetic data goes into its "
            f"inbox/orders and inbox/usage, which a run of that inbox would bill); {nothing}"
        )
    for place in real.parents:
        if (place / "state" / "adbill.duckdb").exists():
            raise Refused(f"{data} lies in the data dir {place}, which has billed; {nothing}")


def _catalog(settings):
    """The catalog the data dir's runs will bill by (ADBILL_CATALOG, in its billing zone):
    generated orders are priced by it, so a run does not reject them `wrong_amount`. Loaded
    before anything is written (a catalog no run can apply is refused first)."""
    from tasks.catalog import load_catalog

    return load_catalog(settings.catalog_path, settings.billing_tz)


def _generate(
    args, settings, catalog, start: date, bad_lines: bool = True, gzip_usage: bool = True
):
    from tasks.generate import generate

    summary = generate(
        Path(args.data_dir),
        customers=args.customers,
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        start=start,
        billing_tz=settings.billing_tz,
        bad_lines=bad_lines,
        gzip_usage=gzip_usage,
        catalog=catalog,
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(
        f"wrote {summary.orders:,} orders and {summary.events:,} usage lines "
        f"({summary.bad_order_rows} bad order rows, {summary.bad_event_lines} bad usage lines) "
        f"for {summary.first_day} .. {summary.last_day} into {Path(args.data_dir) / 'inbox'}"
    )
    return summary


@contextmanager
def fresh_demo_dir(data: Path, db: Path) -> Iterator[ExitStack]:
    """`data` made an empty demo dir and held for the demo: a new directory, or one an earlier
    demo made (its marker), emptied. The demo holds its marker's lock to the end (a second
    demo is refused) and the data-dir lock (state/run.lock, which runs take) from before it
    deletes anything; it yields that hold, to be closed before its run takes the lock."""
    data = data.absolute()
    if data.is_symlink() or (data.exists() and not data.is_dir()):
        raise Refused(f"{data} is not a directory; nothing deleted")
    marker = data / DEMO_MARKER
    if data.exists() and not marker.is_file():
        raise Refused(
            f"{data} exists and adbill demo did not make it (no {DEMO_MARKER} in it); give a "
            "--data-dir that does not exist yet; nothing deleted"
        )
    inside = db.absolute().is_relative_to(data)
    if not inside and (db.exists() or db.is_symlink()):
        raise Refused(
            f"the demo would overwrite {db}, outside its data dir {data}; "
            "give --db inside it or unset ADBILL_DB; nothing deleted"
        )
    if not data.exists():
        data.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            "made by `adbill demo`, which deletes this directory when it runs again\n",
            encoding="utf-8",
        )
    from tasks.run_lock import DataDirBusy
    from tasks.run_lock import run_lock as data_dir_lock

    with marker.open("rb") as held, ExitStack() as run_lock:
        try:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"another adbill demo is using {data}; wait for it to finish, then retry; "
                "nothing deleted"
            ) from None
        try:  # the lock a run takes, without waiting: a busy data dir is refused
            run_lock.enter_context(data_dir_lock(data / "state", wait=0, say=lambda _m: None))
        except DataDirBusy as exc:
            busy = str(exc).replace("; waited 0 s", "")
            raise Refused(f"{busy}; nothing deleted") from None
        _empty_but_locks(data)
        yield run_lock


def _empty_but_locks(data: Path) -> None:
    """Everything in the demo dir deleted but its marker and the data-dir lock file, which
    the demo holds (a file deleted and made again would be another lock)."""
    for child in data.iterdir():
        if child.name == DEMO_MARKER:
            continue
        if child.name == "state" and child.is_dir() and not child.is_symlink():
            for item in child.iterdir():
                if item.name != "run.lock":
                    _delete(item)
            continue
        _delete(child)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def cmd_demo(args) -> None:

    settings = settings_of(args)
    start, last = _window(args, settings)
    _check_window(args, settings, start, last, "nothing billed")
    _refuse_inside_a_data_dir(settings.data_dir, "nothing deleted or billed")
    catalog = _catalog(settings)
    with fresh_demo_dir(settings.data_dir, settings.db) as data_dir_lock:
        cli_flow.start_server(args)
        summary = _generate(args, settings, catalog, start)
        data_dir_lock.close()  # the run takes it (the marker's lock keeps other demos out)
        result = cli_flow.run_flow(args, summary.last_day, trigger="demo")
    from flows.summary import print_demo_summary

    print_demo_summary(args, result)


def cmd_generate(args) -> None:
    settings = settings_of(args)
    start, last = _window(args, settings)
    _check_window(args, settings, start, last, "nothing written")
    check_generate_target(settings.data_dir, start, args.days, gzip_usage=not args.plain)
    catalog = _catalog(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / GENERATED_MARKER).write_text(
        "its inbox was written by `adbill generate`, which may write more days into it\n",
        encoding="utf-8",
    )
    _generate(
        args, settings, catalog, start, bad_lines=not args.no_bad_lines, gzip_usage=not args.plain
    )


def _first_delivery(inbox: Path) -> Path | None:
    """A file (or link, or folder that cannot be listed) anywhere under `inbox`, listed as a
    run lists it (tasks/inbox_files.py: a loop, so folders nested deep do not recurse)."""
    from tasks.inbox_files import folders

    refused: list = []
    for _here, others in folders(str(inbox), refused):
        if others:
            return Path(others[0].path)
        if refused:
            return refused[0][0]
    return refused[0][0] if refused else None


def check_generate_target(data: Path, start: date, days: int, gzip_usage: bool) -> None:
    """generate writes only into a fresh data dir: not into one that has billed or lies in
    one that has, not inside an inbox, and never over a file already there."""
    from tasks.generate import refuse_existing_files

    data = data.absolute()
    real = Path(os.path.realpath(data))
    _refuse_inside_a_data_dir(data, "nothing written")
    if (real / "state" / "adbill.duckdb").exists():
        raise Refused(
            f"{data} has billed (it has state/adbill.duckdb); nothing written "
            "(generate writes only into a fresh data dir)"
        )
    if real.exists() and not real.is_dir():
        raise Refused(f"{data} is not a directory; nothing written")
    inbox = real / "inbox"
    if inbox.is_dir() and not (real / GENERATED_MARKER).is_file():
        delivered = _first_delivery(inbox)
        if delivered is not None:
            raise Refused(
                f"{data} holds deliveries generate did not write ({delivered}); nothing "
                f"written (generate writes only into a fresh data dir, or one it wrote: "
                f"{GENERATED_MARKER})"
            )
    try:
        refuse_existing_files(data, start, days, gzip_usage)
    except FileExistsError as exc:
        raise Refused(f"{exc} (give a fresh --data-dir)") from None
