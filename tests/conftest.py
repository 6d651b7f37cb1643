"""Shared test helpers: tiny inboxes written inline and billed without a Prefect server;
billed data dirs built once per session and copied per test; the slow tests run first."""

from __future__ import annotations

import csv
import fcntl
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# the suite's runs bill a few dozen events each, on one DuckDB thread: on more, DuckDB's
# threads wake for every small statement, and the workers (one per core) already fill the
# cores (docs/decisions.md "Build and CI"). The engine on more threads: test_operations.py's
# four-thread data dir, the slow tests (below) and the bench smoke run of .ci/run
os.environ.setdefault("ADBILL_DUCKDB_THREADS", "1")

# tasks.pipeline (Polars, DuckDB, Pandera) is imported when a test bills, not at collection
if TYPE_CHECKING:
    from tasks.settings import Settings

ORDER_HEADER = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]


def order(order_id, customer_id, product, term, amount, purchased_at) -> dict:
    return dict(
        zip(ORDER_HEADER, [order_id, customer_id, product, term, amount, purchased_at], strict=True)
    )


def event(
    event_id, customer_id, function, quantity, occurred_at, status="succeeded", account_id=None
) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "account_id": account_id or f"{customer_id}-a1",
        "function": function,
        "quantity": quantity,
        "status": status,
        "occurred_at": occurred_at,
    }


@dataclass
class Inbox:
    """A data dir with an inbox the test fills, billed like the scheduler would."""

    root: Path
    n_files: int = 0
    settings_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a data dir billed before (a copy of a shared one): new files get names of their own
        if not self.n_files and (self.root / "inbox").is_dir():
            self.n_files = sum(p.is_file() for p in (self.root / "inbox").rglob("*"))

    @property
    def settings(self) -> Settings:
        from tasks.settings import Settings

        return Settings(data_dir=self.root, **self.settings_overrides)

    def orders(self, rows: list[dict] | list[str], name: str | None = None) -> Path:
        self.n_files += 1
        path = self.root / "inbox" / "orders" / (name or f"orders-{self.n_files:03d}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            if rows and isinstance(rows[0], str):
                f.write(",".join(ORDER_HEADER) + "\n")
                f.write("\n".join(rows) + "\n")
            else:
                w = csv.DictWriter(f, ORDER_HEADER)
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return path

    def usage(self, lines: list[dict | str], name: str | None = None, gz: bool = False) -> Path:
        self.n_files += 1
        suffix = ".jsonl.gz" if gz else ".jsonl"
        path = self.root / "inbox" / "usage" / (name or f"usage-{self.n_files:03d}{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
        if gz:
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def deliver_reference(self, orders, events, quantities=None) -> None:
        """Write reference-model orders and rated events (tests/reference.py) as inbox files;
        each event is spokesperson video, 1 credit a second, so quantity = its credits unless
        `quantities` (one per event) says otherwise (a price that changed)."""
        self.orders(
            [
                order(
                    o.order_id,
                    o.customer_id,
                    o.product,
                    o.term_months,
                    str(o.amount_cny),
                    o.purchased_at.isoformat(),
                )
                for o in orders
            ]
        )
        self.usage(
            [
                event(
                    e.event_id,
                    e.customer_id,
                    "digital_human_spokesperson",
                    e.credits if q is None else q,
                    e.occurred_at.isoformat(),
                )
                for e, q in zip(events, quantities or [None] * len(events), strict=True)
            ]
        )

    def bill(self, through: date | str, **kwargs):
        from tasks.pipeline import run_billing

        through = date.fromisoformat(through) if isinstance(through, str) else through
        return run_billing(self.settings, through, **kwargs)

    def copy_to(self, root: Path) -> Inbox:
        """The same data dir (inbox, state, warehouse, documents) copied to `root`."""
        shutil.copytree(self.root, root)
        return Inbox(Path(root), self.n_files, dict(self.settings_overrides))

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.settings.db), read_only=True)
        con.execute("set TimeZone = 'Asia/Shanghai'")
        # the engine's own tables (events, ingested_files, ...) as well (docs/warehouse.md)
        con.execute("set search_path = 'main,internal'")
        return con


# a day after every day the worked examples bill (the latest: 2028-02-29, example I)
AFTER_THE_EXAMPLES = "2029-01-01"


@pytest.fixture(scope="module")
def today_after_the_examples():
    """ADBILL_TODAY after the module's examples: billed as they would be once their days are
    past (billing-rules §3: a line dated after today + 1 day is in_future). Use it with
    `pytestmark = pytest.mark.usefixtures("today_after_the_examples")`, which sets it up
    before the module's own fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADBILL_TODAY", AFTER_THE_EXAMPLES)
        yield


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "data")


def rows(con, query: str, params: dict | None = None) -> list[tuple]:
    return con.execute(query, params or {}).fetchall()


def one(con, query: str, params: dict | None = None):
    result = rows(con, query, params)
    assert len(result) == 1, result
    return result[0] if len(result[0]) > 1 else result[0][0]


# ---------------------------------------------------------------- billed once per session


class Billed:
    """Data dirs billed once per test session and copied per test.

    `path(key, build)` runs `build(data_dir)` (write an inbox, bill it) the first time any test
    asks for `key` - in any pytest-xdist worker: the dirs live in the session's shared base
    temp dir, built under a file lock - and returns the dir; tests read it and never write it.
    `copy(key, build, to)` is a copy of it for a test that bills on. `build` must give the
    same data dir every time (no clock in what tests assert), and `key` must name it uniquely
    (module name and what it holds).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str, build: Callable[[Path], object]) -> Path:
        key += f"@{os.environ.get('ADBILL_TODAY', date.today())}"  # what ingest takes as today
        data = self.root / key / "d"
        with (self.root / f"{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.root / key / "built").exists():
                shutil.rmtree(self.root / key, ignore_errors=True)
                data.mkdir(parents=True)
                build(data)
                (self.root / key / "built").write_text(key)
        return data

    def copy(self, key: str, build: Callable[[Path], object], to: Path) -> Path:
        shutil.copytree(self.path(key, build), to)
        return to

    def inbox(self, key: str, build: Callable[[Inbox], object], to: Path) -> Inbox:
        """A copy of an Inbox-built data dir (settings overrides are not carried over)."""
        return Inbox(self.copy(key, lambda d: build(Inbox(d)), to))


@pytest.fixture(scope="session")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Billed:
    base = tmp_path_factory.getbasetemp()
    # under pytest-xdist every worker has base/popen-gwN: share the session's dir above it
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return Billed(shared / "billed")


# ---------------------------------------------------------------- the run


OWN_PREFECT_HOME = "_ADBILL_TESTS_PREFECT_HOME"


def pytest_configure(config: pytest.Config) -> None:
    # a Prefect home of this process's own (each xdist worker too, not the one it inherits):
    # the ephemeral server's SQLite in ~/.prefect is locked when other processes use it
    if os.environ.get("PREFECT_HOME") in (None, os.environ.get(OWN_PREFECT_HOME)):
        home = tempfile.mkdtemp(prefix="adbill-test-prefect-")
        os.environ["PREFECT_HOME"] = os.environ[OWN_PREFECT_HOME] = home
        config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A bare `pytest` (no test named, no -m) leaves the slow tests out; CI runs them with
    `-m "slow or not slow"`. They run first, and on different workers: --dist worksteal
    hands worker k the k-th contiguous share of the collection (then moves tests to whoever
    is idle), so each share starts with its slow tests, dealt round-robin."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    if slow and not config.option.markexpr and config.args_source == config.ArgsSource.TESTPATHS:
        config.hook.pytest_deselected(items=slow)
        items[:] = rest
        return
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    shares: list[list[pytest.Item]] = [slow[k::workers] for k in range(workers)]
    left = len(items)
    for k, share in enumerate(shares):  # the sizes worksteal gives: left // workers left
        size = left // (workers - k)
        left -= size
        take = max(0, size - len(share))
        share += rest[:take]
        del rest[:take]
    items[:] = [item for share in shares for item in share] + rest


@pytest.fixture(autouse=True)
def _slow_tests_on_duckdbs_own_threads(request, monkeypatch):
    """The slow tests (a Prefect server, a Dask cluster) run the engine as deployed: DuckDB's
    threads one per core, not the quick suite's one (above); what they start inherits it."""
    if request.node.get_closest_marker("slow"):
        monkeypatch.delenv("ADBILL_DUCKDB_THREADS", raising=False)
