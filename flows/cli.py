"""The `adbill` command line: demo, run, generate, serve, status, statement — runs are calls
of the Prefect flow `daily-billing`."""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading

from flows import cli_flow
from flows.cli_common import Parser, Refused
from flows.cli_demo import DEMO_MARKER, add_demo, add_generate, fresh_demo_dir
from flows.cli_ops import EXIT_SCHEDULED_RUN_FAILED, add_serve, add_statement, add_status
from flows.cli_run import add_run
from flows.cli_terminal import LOGS, error_line, refusals
from tasks import interrupts

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
    guard, nothing changed; 1: failed, the traceback in the log; 130: interrupted, 143 and
    129 when ended by SIGTERM or SIGHUP)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: -h, or one line about the mistake
        return exc.code if isinstance(exc.code, int) else 2
    signals = Signals()
    interrupts.watch(signals.seen)  # runs.error of a run a signal stopped says so
    try:
        code = args.func(args)
    except KeyboardInterrupt as exc:
        return _interrupted(getattr(exc, "signum", signal.SIGINT))
    except refusals() as exc:
        print(error_line(args.command, exc), file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line for the user; the traceback is in the log
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # `adbill status | head`: the reader stopped reading; no message
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # (Python's flush at exit would fail again)
            os.close(devnull)
            return 128 + signal.SIGPIPE
        LOGS.error(args.command, exc, getattr(args, "data_dir", None))
        # a DuckDB query a signal interrupted reports `Query interrupted` in its place
        if "interrupted" in str(exc).lower() and (signum := signals.seen()) is not None:
            return _interrupted(signum)
        print(error_line(args.command, exc), file=sys.stderr)
        return 1
    finally:
        # the handlers first: a second SIGTERM while the server stops must not escape main
        # (the server ends with this process anyway: flows/tempserver.py)
        signals.restore()
        interrupts.watch(None)
        try:
            LOGS.stop()
            cli_flow.stop_server()
        except KeyboardInterrupt:
            pass
    return code or 0


def _stdout_closed() -> bool:
    """Whether the reader of this process's standard output has gone (a closed pipe)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _interrupted(signum: int) -> int:
    how = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    print(f"adbill: interrupted{how}; the published warehouse is unchanged", file=sys.stderr)
    return 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill`) or SIGHUP (the terminal closed): ended as Ctrl-C
    ends a command, its temporary server stopped, one line; exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, _frame) -> None:
    raise Terminated(signum)


class Signals:
    """For one command (in the main thread only): SIGTERM and SIGHUP raise Terminated, and
    every signal that arrives is noted (a wake-up pipe), so that a failure it caused is told
    as the interruption it is. Prefect's flow engine puts its own SIGTERM handler in place
    while the flow runs (and sends the signal again to this one after); DuckDB turns a
    signal that arrives during a query into `RuntimeError: Query interrupted`."""

    WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._before: dict[int, object] = {}
        self._pipe: tuple[int, int] | None = None
        self._fd_before = -1
        self._last: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        self._before = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._pipe = (r, w)
        self._fd_before = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def seen(self) -> int | None:
        """The last watched signal that arrived, if any (asked again: the same answer, so
        that the run's record and the command's exit status agree)."""
        if self._pipe is None:
            return self._last
        try:
            got = os.read(self._pipe[0], 4096)
        except BlockingIOError:
            got = b""
        found = [b for b in got if b in self.WATCHED]
        if found:
            self._last = found[-1]
        return self._last

    def restore(self) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)
        if self._pipe is not None:
            signal.set_wakeup_fd(self._fd_before)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


if __name__ == "__main__":
    sys.exit(main())
