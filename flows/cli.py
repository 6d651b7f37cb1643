"""The `adbill` command line: demo, run, generate, serve, status, statement — runs are calls
of the Prefect flow `daily-billing`."""

from __future__ import annotations

import argparse
import sys

from flows import cli_flow
from flows.cli_common import Parser, Refused
from flows.cli_demo import DEMO_MARKER, add_demo, add_generate, fresh_demo_dir
from flows.cli_ops import EXIT_SCHEDULED_RUN_FAILED, add_serve, add_statement, add_status
from flows.cli_run import add_run
from flows.cli_terminal import LOGS, error_line, refusals

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
        cli_flow.stop_server()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
