"""Seeded synthetic inbox: an orders CSV and daily usage JSON Lines, with realistic bad lines
(adbill generate and demo, the tests), drawn by tasks.synthetic from the catalog in data/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from tasks.catalog import Catalog, load_catalog
from tasks.synthetic.bad_lines import EVENT_KINDS, FIELDS, BadLines, bad_context
from tasks.synthetic.events import Labels, Stamp, draw_day, event_at
from tasks.synthetic.files import day_chunks, write_lines
from tasks.synthetic.horizon import Horizon, plan_horizon
from tasks.synthetic.model import DAY, Model, midnight
from tasks.synthetic.orders import ORDER_KINDS, plant_bad_orders, write_orders

__all__ = [
    "EVENT_KINDS",
    "FIELDS",
    "ORDER_KINDS",
    "GenerateSummary",
    "generate",
    "refuse_existing_files",
]

BAD_RATE = 0.002  # bad usage lines per event (at least one of each kind from 1,000 events)


@dataclass
class GenerateSummary:
    """What one generate call wrote: files, line counts and the bad lines planted."""

    orders_file: Path
    usage_files: list[Path]
    orders: int
    events: int
    bad_order_rows: int
    bad_event_lines: int
    first_day: date
    last_day: date
    customers: int = 0
    bad_event_kinds: dict[str, int] = field(default_factory=dict)
    bad_order_kinds: dict[str, int] = field(default_factory=dict)


def generate(
    data_dir: Path,
    *,
    customers: int = 300,
    days: int = 30,
    events_per_day: int = 3000,
    seed: int = 7,
    start: date = date(2026, 11, 1),
    billing_tz: str = "Asia/Shanghai",
    bad_lines: bool = True,
    gzip_usage: bool = True,
    catalog: Catalog | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerateSummary:
    """Write a seeded synthetic inbox (orders CSV + daily usage JSON Lines) under data_dir;
    a file already there is never replaced (FileExistsError, nothing written)."""
    if customers < 1 or days < 1 or events_per_day < 0:
        raise ValueError("generate needs customers >= 1, days >= 1 and events_per_day >= 0")
    refuse_existing_files(data_dir, start, days, gzip_usage)
    model, tz = Model(catalog or load_catalog(), seed), ZoneInfo(billing_tz)
    rng, say = np.random.default_rng(seed), progress or (lambda _: None)
    day_list = [start + timedelta(days=d) for d in range(days)]
    bounds = [(midnight(d, tz), midnight(d + timedelta(days=1), tz)) for d in day_list]
    plan = plan_horizon(rng, model, customers, bounds, events_per_day, tz)
    orders_file = orders_path(Path(data_dir), start)
    rows = [dict(o) for o in plan.orders]
    span = (bounds[0][0] - 5 * DAY, bounds[-1][1])
    order_kinds = plant_bad_orders(rng, rows, model, customers, span, tz) if bad_lines else {}
    n_orders = write_orders(orders_file, rows, plan.cust.ids, model, tz)
    say(f"wrote {orders_file} ({n_orders} orders)")
    usage = _Usage(Path(data_dir), rng, model, plan, billing_tz, gzip_usage)
    n_bad = round(events_per_day * days * BAD_RATE) if bad_lines else 0
    if bad_lines and events_per_day * days >= 1000:
        n_bad = max(n_bad, len(usage.bad.kinds))
    usage_files, events = [], 0
    for d, day in enumerate(day_list):
        share = (d + 1) * n_bad // days - d * n_bad // days
        path, n = usage.day(d, day, bounds[d], share)
        usage_files.append(path)
        events += n
        say(f"wrote {path} ({n} events)")
    return GenerateSummary(
        orders_file=orders_file,
        usage_files=usage_files,
        orders=n_orders,
        events=events,
        bad_order_rows=sum(order_kinds.values()),
        bad_event_lines=sum(usage.bad.counted.values()),
        first_day=start,
        last_day=day_list[-1],
        customers=customers,
        bad_event_kinds=usage.bad.counted,
        bad_order_kinds=order_kinds,
    )


def orders_path(data_dir: Path, start: date) -> Path:
    return data_dir / "inbox" / "orders" / f"orders-{start.isoformat()}.csv"


def usage_path(data_dir: Path, day: date, gz: bool) -> Path:
    return data_dir / "inbox" / "usage" / f"{day:%Y/%m}" / f"usage-{day}.jsonl{'.gz' if gz else ''}"


def refuse_existing_files(data_dir: Path, start: date, days: int, gzip_usage: bool) -> None:
    """FileExistsError when any file generate would write (the orders CSV, a usage file a
    day) exists already: generate replaces no file."""
    days_of = [start + timedelta(days=d) for d in range(days)]
    paths = [orders_path(Path(data_dir), start)]
    paths += [usage_path(Path(data_dir), day, gzip_usage) for day in days_of]
    there = [p for p in paths if p.exists() or p.is_symlink()]
    if there:
        raise FileExistsError(
            f"{there[0]} already exists ({len(there)} of the files generate would write): "
            "generate replaces no file; nothing written"
        )


@dataclass
class _Usage:
    """Writes the usage file of each day in turn, bad lines planted across the days."""

    data_dir: Path
    rng: np.random.Generator
    model: Model
    plan: Horizon
    tz: str
    gz: bool

    def __post_init__(self) -> None:
        self.labels = Labels.of(self.plan.cust.ids, self.model.codes)
        self.bad = BadLines(*bad_context(self.model, self.plan.cust))

    def day(self, d: int, day: date, bounds: tuple[int, int], n_bad: int) -> tuple[Path, int]:
        """Day d's file (at most half of its lines bad); its path and number of lines."""
        cols = draw_day(self.rng, self.model, self.plan.cust, self.plan.counts[:, d], *bounds)
        n, stamp = len(cols["ms"]), Stamp.of("e", day, self.tz)
        event = partial(event_at, cols, labels=self.labels, stamp=stamp)
        self.bad.start_day(self.rng, n, min(n_bad, n // 2), event)
        path = usage_path(self.data_dir, day, self.gz)
        write_lines(path, day_chunks(cols, self.labels, stamp, self.bad.spoil), self.gz)
        self.bad.end_day()
        return path, n
