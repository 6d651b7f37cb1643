"""Tiny seeded inboxes and warehouse snapshots for the operations tests (reruns, late data)."""

from __future__ import annotations

import csv
import json
import random
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb

from tasks.catalog import load_catalog
from tasks.pipeline import RunReport, run_billing
from tasks.settings import DEFAULT_CATALOG, Settings
from tasks.synthetic.model import Model

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))
START = date(2026, 11, 1)
ORDER_FIELDS = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]
# (function, quantities it may take): kept to the catalog's rules (billing-rules §2)
USAGE = [
    ("copy_generation", [1, 2, 3, 5]),
    ("product_image_swap", [1, 2, 4]),
    ("copy_generation", [1, 4]),
    ("image_to_video", [5, 5, 5, 30]),
    ("digital_human_spokesperson", [3.5, 12.5]),
    ("video_translation", [25, 60, 7]),
    ("custom_avatar", [1]),
]
BAD_LINES = [
    "{not json",
    '{"event_id":"bad-fn","customer_id":"c01","account_id":"a","function":"teleport",'
    '"quantity":1,"status":"succeeded","occurred_at":"2026-11-02T10:00:00+08:00"}',
    '{"event_id":"bad-ts","customer_id":"c01","account_id":"a","function":"copy_generation",'
    '"quantity":1,"status":"succeeded","occurred_at":"2026-11-02T10:00:00"}',
]

# analyst tables (interfaces.md) and the columns that name a run or a clock, not a result
ANALYST_TABLES = (
    "pools",
    "orders",
    "ledger",
    "rated_events",
    "rejected_events",
    "rejected_orders",
    "customer_days",
    "statements",
    "statement_lines",
    "statement_pools",
    "suspensions",
    "suspension_changes",
    "at_risk",
    "billing_runs",
)
VOLATILE = {
    "ingested_at",
    "run_id",
    "started_at",
    "finished_at",
    "seconds",
    "billed_at",
    "created_at",
    "updated_at",
}


def at(d: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A +08:00 instant on local day d."""
    return datetime.combine(d, time(hour, minute, second), CST)


@dataclass
class Scenario:
    """Orders and usage lines of a small seeded inbox, per billing day."""

    start: date
    days: int
    orders: list[dict] = field(default_factory=list)
    events: dict[date, list[str]] = field(default_factory=dict)  # day -> JSON lines
    bad: dict[date, list[str]] = field(default_factory=dict)

    @property
    def last_day(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    def day(self, n: int) -> date:
        """The n-th billing day of the scenario (1-based)."""
        return self.start + timedelta(days=n - 1)


def scenario(
    *,
    customers: int = 8,
    days: int = 36,
    events_per_day: int = 12,
    seed: int = 1,
    start: date = START,
    bad_lines: bool = True,
) -> Scenario:
    """Subscriptions, renewals, packages bought mid-day, heavy users in arrears, expiries."""
    rng = random.Random(seed)
    prices = Model(load_catalog(DEFAULT_CATALOG), seed)  # the catalog's, in force when bought
    sc = Scenario(start, days)
    ids = [f"c{i + 1:02d}" for i in range(customers)]
    n = 0

    def order(cust: str, product: str, term: int | None, when: datetime) -> None:
        nonlocal n
        n += 1
        sc.orders.append(
            {
                "order_id": f"o{n:03d}",
                "customer_id": cust,
                "product": product,
                "term_months": "" if term is None else str(term),
                "amount_cny": str(prices.price(product, when.timestamp(), term)),
                "purchased_at": when.isoformat(),
            }
        )

    for i, cust in enumerate(ids):
        first = start + timedelta(days=i % 3)
        edition = "professional" if i % 4 == 3 else "basic"
        order(cust, edition, 1, at(first, 9 + i % 5, 7 * i % 60))
        if i % 4 == 1:  # a renewal bought while the first month runs
            order(cust, edition, 1, at(first + timedelta(days=20), 15, 30))
        if i % 3 == 2:  # a package bought in the middle of a day (settles arrears)
            order(cust, "package_100", None, at(start + timedelta(days=9 + i), 13, 45))
    # heavy users: the first customers spend more than their pools hold (arrears)
    weight = {c: (4 if i < customers // 4 else 1) for i, c in enumerate(ids)}
    bought = {o["customer_id"]: o["purchased_at"] for o in reversed(sc.orders)}
    for k in range(days):
        d = start + timedelta(days=k)
        lines = []
        for j in range(events_per_day):
            cust = rng.choices(ids, weights=[weight[c] for c in ids])[0]
            when = at(d, rng.randrange(0, 24), rng.randrange(60), rng.randrange(60))
            if when.isoformat() < bought[cust]:
                when = at(d, 23, 59, 59)  # after the customer's first purchase that day
            function, quantities = rng.choice(USAGE)
            stamp = when.isoformat() if j % 5 else when.astimezone(UTC).isoformat()
            lines.append(
                json.dumps(
                    {
                        "event_id": f"e-{d:%Y%m%d}-{j:04d}",
                        "customer_id": cust,
                        "account_id": f"{cust}-a{rng.randrange(3)}",
                        "function": function,
                        "quantity": rng.choice(quantities),
                        "status": "failed" if rng.random() < 0.05 else "succeeded",
                        "occurred_at": stamp.replace("+00:00", "Z"),
                    },
                    separators=(",", ":"),
                )
            )
        sc.events[d] = lines
        sc.bad[d] = list(BAD_LINES) if bad_lines and k % 10 == 1 else []
    return sc


# ---------------------------------------------------------------- writing an inbox


def write_orders(data_dir: Path, name: str, orders: list[dict]) -> Path:
    path = data_dir / "inbox" / "orders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ORDER_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(orders)
    return path


def write_usage(data_dir: Path, name: str, lines: list[str]) -> Path:
    path = data_dir / "inbox" / "usage" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def deliver(
    data_dir: Path,
    sc: Scenario,
    *,
    since: date | None = None,
    through: date | None = None,
    part: str = "all",
    prefix: str = "",
    days_per_file: int = 4,
) -> list[Path]:
    """Write the scenario's orders and its usage of days since..through into the inbox.

    part: "all" lines, the "first" half (even lines, with the bad lines) or the "second" half
    (odd lines) of every day; days_per_file consecutive days share a usage file, named after
    its first day and the prefix (a new name = a new delivery). Returns the files written.
    """
    written = []
    if part != "second":
        written.append(write_orders(data_dir, f"{prefix}orders.csv", sc.orders))
    days = [
        d
        for d in sorted(sc.events)
        if (since is None or d >= since) and (through is None or d <= through)
    ]
    for i in range(0, len(days), days_per_file):
        group = days[i : i + days_per_file]
        lines = []
        for d in group:
            every = {"all": sc.events[d], "first": sc.events[d][0::2]}
            lines += every.get(part, sc.events[d][1::2])
            lines += sc.bad[d] if part != "second" else []
        name = f"{group[0]:%Y/%m}/{prefix}usage-{group[0]}.jsonl"
        written.append(write_usage(data_dir, name, lines))
    return written


def fail_at(stage: str, occurrence: int = 1):
    """An after_stage hook that raises the n-th time the stage ends."""
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == stage:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise RuntimeError(f"injected failure after {stage} #{occurrence}")

    return hook


def settings(data_dir: Path, **kw) -> Settings:
    """Settings of a test data dir (never an ADBILL_DB or ADBILL_BILLING_TZ of the shell)."""
    return Settings(
        data_dir=data_dir,
        db=warehouse(data_dir),
        billing_tz="Asia/Shanghai",
        shards=0,
        **kw,
    )


def bill(data_dir: Path, through: date, **kw) -> RunReport:
    """A run through `through` without Prefect (max_late_days / after_stage etc. as given)."""
    late = kw.pop("max_late_days", 60)
    return run_billing(settings(data_dir, max_late_days=late), through, **kw)


def copy_inbox(src: Path, dst: Path) -> None:
    shutil.copytree(src / "inbox", dst / "inbox", dirs_exist_ok=True)


# ---------------------------------------------------------------- reading the warehouse


def warehouse(data_dir: Path) -> Path:
    return data_dir / "warehouse.duckdb"


def tables_of(con) -> set[str]:
    return {
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    }


def rows(con, table: str, columns: list[str] | None = None, drop=VOLATILE) -> list[tuple]:
    """Every row of a table (or view), sorted, without the volatile columns."""
    cols = [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_name = ? "
            "order by ordinal_position",
            [table],
        ).fetchall()
    ]
    keep = [c for c in (columns or cols) if c not in drop]
    select = ", ".join(f'"{c}"' for c in keep)
    return con.execute(f"select {select} from {table} order by all").fetchall()


def _from_inbox(value):
    if isinstance(value, str) and "/inbox/" in value:
        return value[value.index("/inbox/") + 1 :]
    return value


def snapshot(data_dir: Path, tables=ANALYST_TABLES, drop=VOLATILE) -> dict[str, list[tuple]]:
    """The analyst tables of a data dir's published warehouse, row for row, without run ids
    or clocks; inbox file paths from `inbox/` on (so that two data dirs compare)."""
    con = duckdb.connect(str(warehouse(data_dir)), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        present = tables_of(con)
        return {
            t: sorted((tuple(_from_inbox(v) for v in r) for r in rows(con, t, drop=drop)), key=repr)
            for t in tables
            if t in present
        }
    finally:
        con.close()


def query(db: Path, text: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(text, params or []).fetchall()
    finally:
        con.close()


LEDGER_CONTENT = ["customer_id", "pool_id", "event_id", "kind", "credits", "posted_at"]


def billing_facts(db: Path) -> dict[str, list[tuple]]:
    """What late data and reruns must not change: daily figures, ledger content, pool
    balances, accepted events and the latest revision of every statement."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return {
            "customer_days": rows(con, "customer_days", drop=VOLATILE | {"customer_key"}),
            "ledger": rows(con, "ledger", LEDGER_CONTENT),
            "pools": rows(con, "pools", ["pool_id", "customer_id", "remaining"]),
            "rated_events": rows(con, "rated_events"),
            # the latest revision of every statement (late data adds revisions, §8)
            "statements": rows(
                con, "latest_statements", drop=VOLATILE | {"customer_key", "revision"}
            ),
        }
    finally:
        con.close()


def assert_same(left: dict, right: dict) -> None:
    """Equal table by table, naming the first table and row that differ."""
    assert left.keys() == right.keys()
    for name in left:
        a, b = left[name], right[name]
        if a != b:
            from collections import Counter

            ca, cb = Counter(a), Counter(b)
            only_a = list((ca - cb).elements())[:3]
            only_b = list((cb - ca).elements())[:3]
            raise AssertionError(
                f"{name}: {len(a)} vs {len(b)} rows; only left {only_a}; only right {only_b}"
            )


# ---------------------------------------------------------------- a webhook on loopback


@contextmanager
def webhook_endpoint():
    """An HTTP endpoint on 127.0.0.1 that records every POSTed JSON body: (url, bodies)."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def publish_fails_with_a_full_disk(monkeypatch) -> None:
    """The run's publish raises ENOSPC (a full disk) until monkeypatch.undo()."""
    import tasks.pipeline as pipeline

    def disk_full(*_a, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "publish", disk_full)
