"""The temporary Prefect server of one command, started first so that it boots while the
command imports the pipeline (Prefect would start the same server itself, but only at the
flow call, after importing its server code into this process too)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Prefect's own settings for its temporary server (prefect.server.api.server)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
# the server's first step, then it becomes uvicorn: on Linux it asks to be sent SIGTERM when
# the command that started it dies (PR_SET_PDEATHSIG, kept across exec), so a command
# killed with SIGKILL, or a closed terminal, leaves no server behind; the command's pid is
# its first argument (it may have died before the request)
_ORPHAN_GUARD = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class TemporaryServer:
    """`start()` does nothing when PREFECT_API_URL names a server already."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log: Path | None = None
        self._before: str | None = None

    def start(self, log: Path) -> None:
        if os.environ.get("PREFECT_API_URL") or self.proc is not None:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None
        app_dir = str(Path(spec.origin).parent.parent)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _ORPHAN_GUARD,
                    str(os.getpid()),
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    app_dir,
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=os.environ | SERVER_ENV,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}/api"
        self._before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = self.url

    def wait(self, timeout: float) -> None:
        """Until the server answers /health; a server that exits or is late is one line."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the temporary Prefect server exited (code {self.proc.returncode}); "
                    f"see {self.log}, or set PREFECT_API_URL to a running server"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"the temporary Prefect server did not start in {timeout:.0f} s (a busy machine?); "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set PREFECT_API_URL "
            "to a running server"
        )

    def stop(self) -> None:
        """End the server this command started (its process group, by id)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self._before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = self._before
