"""What an `adbill` command shows on the terminal and keeps in its log: progress and warnings
on the terminal, a failure as one line, its traceback in <data-dir>/state/logs/adbill.log."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import tempfile
from pathlib import Path

from flows.cli_common import Refused

LOG_NAME = "adbill.log"
MAX_LINE = 300
LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"
TRACEBACKS = "adbill.tracebacks"  # a failed command's traceback when it has no run log


# control characters but the line end and tab (C0, DEL, C1: an ESC or CSI in a sender's
# file name would drive the operator's terminal)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """Text for the terminal: control characters shown as \\xNN, never sent as they are
    (file names, ids and error texts come from senders)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _TerminalFilter(logging.Filter):
    """On the terminal: progress and warnings, control characters shown escaped
    (terminal_text); errors and tracebacks go to the log file only (the command prints its
    own one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or record.exc_info:
            return False
        message = record.getMessage()
        if _CONTROL.search(message):
            record.msg, record.args = terminal_text(message), ()
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
        self._file.setFormatter(logging.Formatter(LOG_FORMAT))
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

    def error(self, command: str, exc: BaseException, data_dir: str | None = None) -> None:
        """The traceback of a command that failed, in the run's log; a command that had not
        started one (status, statement, generate, --plan) starts it now: in its data dir's
        state/logs when the data dir has a state/ it can write in, else in a file of its own
        under the system's temporary folder (never a folder made in a mistyped data dir);
        where neither can be written, nowhere (the one line on the terminal stands)."""
        try:
            if self._file is None:
                state = Path(data_dir).absolute() / "state" if data_dir else None
                try:
                    if state is None or not state.is_dir():
                        raise FileNotFoundError(state)
                    self.start(state.parent)
                except OSError:
                    fd, name = tempfile.mkstemp(prefix=f"adbill-{command}-", suffix=".log")
                    os.close(fd)
                    self._start_file(Path(name))
                    # (this logger only: nothing of it on the terminal, whatever else is set up)
                    logging.getLogger(TRACEBACKS).error("adbill %s failed", command, exc_info=exc)
                    return
            logging.getLogger("adbill").error("adbill %s failed", command, exc_info=exc)
        except OSError:
            self.stop()

    def _start_file(self, path: Path) -> None:
        self.stop()
        self.path = path
        self._file = logging.FileHandler(path, encoding="utf-8")
        self._file.setFormatter(logging.Formatter(LOG_FORMAT))
        logger = logging.getLogger(TRACEBACKS)
        logger.propagate = False
        logger.addHandler(self._file)
        self._loggers.append(logger)

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


def refusals() -> tuple[type[Exception], ...]:
    """The refusals of a guard (exit 2): tasks.state_guard's RunRefused (which tasks.pipeline
    raises) only once a command has imported it (`adbill statement` never does, to start in
    well under a second)."""
    from tasks.settings import SettingError

    guard = sys.modules.get("tasks.state_guard")
    return (Refused, SettingError) + ((guard.RunRefused,) if guard else ())


def error_line(command: str, exc: BaseException) -> str:
    """One line, at most MAX_LINE characters: what failed, where, and where the details are."""
    refused = isinstance(exc, refusals())
    message = str(exc)
    if "Original error: " in message:  # (DuckDB's wrapping: the cause, with its errno, last)
        message = message.rsplit("Original error: ", 1)[1].strip(' "')
    text = message if refused else f"{type(exc).__name__}: {message}"
    text = terminal_text(" ".join(text.split())) or type(exc).__name__
    notes = [terminal_text(n) for n in getattr(exc, "__notes__", ()) if n.startswith("while ")]
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
