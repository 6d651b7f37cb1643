"""The `adbill` command line: demo, run, generate, serve — each a call of the Prefect flow."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# a busy machine can take longer than Prefect's default to start its temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="adbill", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="make a sample inbox in a fresh data dir and bill it")
    _common(demo)
    demo.set_defaults(data_dir=os.environ.get("ADBILL_DATA_DIR", "demo-data"))
    demo.add_argument("--customers", type=int, default=300)
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--events-per-day", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--start", type=_date, default=date(2026, 11, 1))

    run = sub.add_parser("run", help="ingest new inbox files and bill every due day")
    _common(run)
    run.add_argument("--through", type=_date, help="last billing day (default: yesterday)")
    run.add_argument("--rebill-from", type=_date, help="also recompute billed days from this day")
    run.add_argument(
        "--shards", type=int, help="shards of customers (env ADBILL_SHARDS; 0 = automatic)"
    )
    run.add_argument("--max-late-days", type=int, help="env ADBILL_MAX_LATE_DAYS; default 35")
    run.add_argument(
        "--task-runner",
        default="local",
        help="local (default), dask (a temporary LocalCluster) or dask=ADDRESS",
    )

    gen = sub.add_parser("generate", help="write synthetic orders and usage into the inbox")
    _common(gen)
    gen.add_argument("--customers", type=int, default=300)
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--events-per-day", type=int, default=3000)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--start", type=_date, default=date(2026, 11, 1))
    gen.add_argument("--no-bad-lines", action="store_true")
    gen.add_argument("--plain", action="store_true", help="write .jsonl instead of .jsonl.gz")

    serve = sub.add_parser("serve", help="serve the daily deployment (cron 00:30 billing time)")
    _common(serve)
    serve.add_argument("--cron", default="30 0 * * *")
    return top


def _generate(args, bad_lines: bool = True, gzip_usage: bool = True):
    from tasks.generate import generate

    summary = generate(
        Path(args.data_dir),
        customers=args.customers,
        days=args.days,
        events_per_day=args.events_per_day,
        seed=args.seed,
        start=args.start,
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
    from flows.daily import daily_billing

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


def cmd_demo(args) -> None:
    import shutil

    data = Path(args.data_dir)
    if data.exists():
        shutil.rmtree(data)
    summary = _generate(args)
    result = _run_flow(args, summary.last_day, trigger="demo")
    from flows.summary import print_demo_summary

    print_demo_summary(args, result)


def cmd_run(args) -> None:
    result = _run_flow(
        args,
        args.through,
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


def cmd_serve(args) -> None:
    from flows.serve import serve

    serve(
        data_dir=str(Path(args.data_dir).absolute()),
        db=str(Path(args.db).absolute()) if args.db else None,
        cron=args.cron,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            cmd_demo(args)
        elif args.command == "run":
            cmd_run(args)
        elif args.command == "generate":
            _generate(args, bad_lines=not args.no_bad_lines, gzip_usage=not args.plain)
        elif args.command == "serve":
            cmd_serve(args)
    except KeyboardInterrupt:
        print("adbill: interrupted; the published warehouse is unchanged", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for the user; details are in the Prefect logs
        print(f"adbill {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
