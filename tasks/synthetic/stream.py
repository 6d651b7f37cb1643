"""Customers planned day by day, for the benchmark (bench/): orders CSVs and usage JSON Lines
of a customer base, any event day written on its own.

Every customer holds 1-3 live pools on the first event day (an edition sized to its expected
use, packages topping up the heaviest), activity is skewed (lognormal), about 2 % of the
customers buy a package mid-day each day, terms are renewed 1-3 days before they end, and
about 3 % of the customers carry arrears into the first event day (an oversized event on the
warm-up day before it). Day d (0-based) is START + d; its files depend only on the catalog,
the seed, the customer count, the events a day and d, so a one-day run and a 60-day history
share day 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from tasks.catalog import DEFAULT_TZ, Catalog, load_catalog
from tasks.settings import DEFAULT_CATALOG
from tasks.synthetic.bad_lines import BadLines, bad_context
from tasks.synthetic.customers import Customers
from tasks.synthetic.events import Labels, Stamp, draw_day, event_at
from tasks.synthetic.files import day_chunks, write_lines
from tasks.synthetic.model import DAY, Model, midnight, plus_days
from tasks.synthetic.orders import write_orders

GEN_VERSION = 2  # a new version when the same parameters give other files
START = date(2026, 11, 2)  # the first event day (the bench day)
TZ = DEFAULT_TZ  # the default billing zone
ARREARS_SHARE, BUYER_SHARE, RENEW_SHARE, BAD_SHARE = 0.03, 0.02, 0.8, 0.0005
TOP_UP_DAYS = 15  # a package bought mid-day covers about this many days of the buyer's use
DAY_ORDERS = 1_000_000  # order numbers of event day d start at DAY_ORDERS * (d + 1)


def version(catalog_path: Path | str = DEFAULT_CATALOG) -> str:
    """The generator's version and the catalog's digest: an inbox written once is one of both."""
    return f"{GEN_VERSION}-{hashlib.sha256(Path(catalog_path).read_bytes()).hexdigest()[:8]}"


def day_of(d: int) -> date:
    """Event day d (d = -1: the warm-up day)."""
    return START + timedelta(days=d)


def midnight_of(d: int) -> int:
    """Epoch seconds of the local midnight that starts event day d."""
    return midnight(day_of(d), ZoneInfo(TZ))


@dataclass
class Plan:
    """The customer base and its orders; days are planned on demand, in order."""

    model: Model
    cust: Customers
    events: int
    seed: int
    edition: np.ndarray  # index into model.editions
    balance: np.ndarray  # credits left, roughly (for who runs low)
    carriers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    carrier_credits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    history_orders: list[dict] = field(default_factory=list)
    day_orders: list[list[dict]] = field(default_factory=list)
    renewals: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # end -> who, what
    active: int = 0  # the first `active` customers use the service (make_plan)

    @property
    def customers(self) -> int:
        return self.cust.n

    def __post_init__(self) -> None:
        self.labels = Labels.of(self.cust.ids, self.model.codes)
        self.mcpe = self.model.mean_per_event(self.model.cum((False,) * len(self.model.restricted)))


def make_plan(
    customers: int,
    events: int,
    seed: int,
    catalog: Catalog | None = None,
    active: int | None = None,
    mature: bool = False,
) -> Plan:
    """Customers, their editions, packages and the warm-up arrears, from the seed.

    active: only the first `active` customers use the service or buy packages (the others
    hold a subscription, renew it, and are quiet); None: all of them.
    mature: the base has bought packages every day for a year before day 0, as it goes on
    doing (`_top_up`): on day 0 it holds as many live packages as a year later."""
    model = Model(catalog or load_catalog(DEFAULT_CATALOG), seed)
    rng, n = np.random.default_rng([seed, customers, 0]), customers
    cust = Customers.new(n)
    w = rng.lognormal(0.0, 1.5, n)  # skewed: a few heavy customers, many light ones
    if active is not None and active < n:
        w[active:] = 0.0
    cust.weight = w / w.sum()
    plan = Plan(model, cust, events, seed, np.zeros(n, dtype=int), np.zeros(n))
    plan.active = min(active or n, n)
    monthly = cust.weight * events * plan.mcpe * model.period_days  # expected credits a month
    caps = np.array([e["credits_per_month"] for e in model.editions])
    by_cap = np.argsort(caps, kind="stable")  # the smallest edition that covers the month
    plan.edition = by_cap[np.minimum(np.searchsorted(caps[by_cap], monthly), len(caps) - 1)]
    cust.seats = np.array([model.editions[e]["seats"] for e in plan.edition], dtype=float)
    total = _history_orders(rng, plan, monthly)
    cust.entitle(model)
    # warm-up arrears: an oversized event the day before (more than all the customer's
    # pools), from customers without packages
    topped = {o["cust"] for o in plan.history_orders if o["term"] is None}
    plain = np.array([c for c in range(plan.active) if c not in topped], dtype=int)
    k = min(len(plain), max(1, round(ARREARS_SHARE * plan.active)))
    plan.carriers = np.sort(rng.choice(plain, k, replace=False)) if k else plan.carriers
    plan.carrier_credits = total[plan.carriers] + 500
    plan.balance[plan.carriers] = -500.0
    if mature:
        _year_of_packages(plan, monthly)
    return plan


def _year_of_packages(plan: Plan, monthly: np.ndarray) -> None:
    """The packages a year of top-ups before day 0 left (a mature base): each of the 365 days
    before day 0, BUYER_SHARE of the active customers buy the package that covers about
    TOP_UP_DAYS of their use, as `_top_up` does on event days; the carriers of the warm-up
    arrears buy none (their arrears need pools smaller than their oversized event). A
    generator of its own, so that the rest of the plan is the same with or without it."""
    if not plan.model.packages:
        return
    rng = np.random.default_rng([plan.seed, plan.customers, 6])
    who = np.setdiff1d(np.arange(plan.active), plan.carriers)
    buyers = min(len(who), max(1, round(BUYER_SHARE * plan.active)))
    daily = monthly / plan.model.period_days
    for d in range(-365, 0):
        d0 = midnight_of(d)
        for c in rng.choice(who, buyers, replace=False).astype(int):
            pk = _package_for(plan.model, TOP_UP_DAYS * daily[c])
            ts = int(d0 + rng.integers(8 * 3600, 20 * 3600))
            plan.history_orders.append(
                {"ts": ts, "cust": int(c), "product": pk["code"], "term": None}
            )


def _terms(rng, model: Model, edition: np.ndarray) -> np.ndarray:
    """Each customer's term: of its edition's terms, the longer the likelier (halving)."""
    u, term = rng.random(len(edition)), np.zeros(len(edition), dtype=int)
    for e, ed in enumerate(model.editions):
        terms = np.array(sorted(ed["terms_months"], reverse=True))
        cum = np.cumsum(0.5 ** np.arange(len(terms)))
        m = edition == e
        term[m] = terms[
            np.minimum(np.searchsorted(cum / cum[-1], u[m], side="right"), len(terms) - 1)
        ]
    return term


def _package_for(model: Model, credits: float) -> dict:
    """The smallest package of at least these credits (else the largest)."""
    pk = sorted(model.packages, key=lambda p: p["credits"])
    return next((p for p in pk if p["credits"] >= credits), pk[-1])


def _history_orders(rng, plan: Plan, monthly: np.ndarray) -> np.ndarray:
    """Each customer's subscription, live on day 0, and 0-2 packages before day 0 (the heavy
    ones to cover their month); returns the credits of all each customer's pools."""
    model, n, p0, tz = plan.model, plan.customers, midnight_of(0), ZoneInfo(TZ)
    term = _terms(rng, model, plan.edition)
    live = np.clip(term * model.period_days - 1, 2, 41)  # live on day 0: bought 1..40 days before
    back = rng.integers(1, live)
    bought = p0 - back * DAY + rng.integers(8 * 3600, 22 * 3600, n)
    total = np.zeros(n)
    for c in range(n):
        ed, ts = model.editions[plan.edition[c]], int(bought[c])
        code, cap = ed["code"], ed["credits_per_month"]
        plan.history_orders.append({"ts": ts, "cust": c, "product": code, "term": int(term[c])})
        plan.cust.held[c][code] = (ts, np.inf)
        short = monthly[c] - cap
        k = (1 if rng.random() < 0.6 else 2) if short > 0 else int(rng.random() < 0.25)
        for j in range(k if model.packages else 0):
            pk = _package_for(model, max(short, 0) / k)
            t = min(int(ts + (j + 1) * rng.integers(3600, 5 * DAY)), p0 - 3600)
            plan.history_orders.append({"ts": t, "cust": c, "product": pk["code"], "term": None})
            cap += pk["credits"]
        plan.balance[c] = cap
        total[c] = cap + ed["credits_per_month"] * (term[c] - 1)
        end = plus_days(ts, model.period_days * int(term[c]), tz)
        plan.renewals.setdefault(end, []).append((c, code))
    return total


def plan_days(plan: Plan, days: int) -> None:
    """Mid-day purchases and renewals of event days 0..days-1 (a rough balance simulation)."""
    for d in range(len(plan.day_orders), days):
        rng = np.random.default_rng([plan.seed, plan.customers, 1, d])
        d0 = midnight_of(d)
        use = day_counts(plan, d) * plan.mcpe
        orders = _renew(rng, plan, d0) + _top_up(rng, plan, d0, use)
        plan.balance -= use
        plan.day_orders.append(orders)


def _renew(rng, plan: Plan, d0: int) -> list[dict]:
    """Terms ending 1-3 days after day d0, most renewed that day for a month."""
    orders, model = [], plan.model
    due = [e for e in sorted(plan.renewals) if d0 <= e - (1 + (e // DAY) % 3) * DAY < d0 + DAY]
    for end in due:
        for c, code in plan.renewals.pop(end):
            if rng.random() < RENEW_SHARE:
                ts = int(d0 + rng.integers(9 * 3600, 21 * 3600))
                orders.append({"ts": ts, "cust": int(c), "product": code, "term": 1})
                plan.balance[c] += model.credits_of[code]
                later = plus_days(end, model.period_days, ZoneInfo(TZ))
                plan.renewals.setdefault(later, []).append((c, code))
    return orders


def _top_up(rng, plan: Plan, d0: int, use: np.ndarray) -> list[dict]:
    """A package each for BUYER_SHARE of the customers: half those running out, the rest
    anyone."""
    if not plan.model.packages:
        return []
    n, orders = plan.active, []
    buyers = max(1, round(BUYER_SHARE * n))
    low = np.argsort(plan.balance[:n] - use[:n])[: buyers // 2]
    low = low[(plan.balance[low] - use[low]) < 0]
    rest = rng.choice(np.setdiff1d(np.arange(n), low), buyers - len(low), replace=False)
    for c in np.concatenate([low, rest]).astype(int):
        pk = _package_for(plan.model, TOP_UP_DAYS * use[c])
        ts = int(d0 + rng.integers(8 * 3600, 20 * 3600))
        orders.append({"ts": ts, "cust": int(c), "product": pk["code"], "term": None})
        plan.balance[c] += pk["credits"]
    return orders


def day_counts(plan: Plan, d: int) -> np.ndarray:
    """Events per customer on event day d: the skewed weights, with a little daily noise."""
    rng = np.random.default_rng([plan.seed, plan.customers, 2, d])
    p = plan.cust.weight * rng.lognormal(0.0, 0.2, plan.customers)
    return rng.multinomial(plan.events, p / p.sum())


def day_events(plan: Plan, d: int, events: int | None = None, salt: int = 3) -> dict:
    """Event day d as columns in time order (tasks.synthetic.events.draw_day).

    events: that many events spread by the customers' weights instead of the day's own."""
    rng = np.random.default_rng([plan.seed, plan.customers, salt, d])
    counts = day_counts(plan, d) if events is None else rng.multinomial(events, plan.cust.weight)
    return draw_day(rng, plan.model, plan.cust, counts, midnight_of(d), midnight_of(d + 1))


def write_usage(path: Path, plan: Plan, d: int) -> int:
    """Event day d's usage file (.jsonl), BAD_SHARE of its lines bad; returns its lines."""
    cols, stamp = day_events(plan, d), Stamp.of("e", day_of(d), TZ)
    rng, n = np.random.default_rng([plan.seed, plan.customers, 4, d]), len(cols["ms"])
    bad = BadLines(*bad_context(plan.model, plan.cust), again=False)
    event = partial(event_at, cols, labels=plan.labels, stamp=stamp)
    bad.start_day(rng, n, int(n * BAD_SHARE) if n >= 4 else 0, event)
    write_lines(path, day_chunks(cols, plan.labels, stamp, bad.spoil))
    return n


def write_warmup_usage(path: Path, plan: Plan) -> int:
    """The day before day 0: one oversized event per arrears carrier, at noon."""
    i, f = np.arange(len(plan.carriers)), plan.model.heavy_function()
    fn = plan.model.fns[f]
    units = np.ceil(plan.carrier_credits / fn["credits_per_unit"]).astype(np.int64)
    cols = {
        "c": plan.carriers.astype(np.int32),
        "ms": (midnight_of(-1) + 12 * 3600 + i) * 1000,
        "f": np.full(len(i), f, dtype=np.int16),
        "q": units * fn["unit_size_micro"],
        "ok": np.ones(len(i), dtype=bool),
        "k": np.ones(len(i), dtype=np.int32),
        "z": np.zeros(len(i), dtype=bool),
    }
    write_lines(path, day_chunks(cols, plan.labels, Stamp.of("w", day_of(-1), TZ)))
    return len(i)


def warmup_files(src: Path, plan: Plan) -> list[Path]:
    """Orders before day 0 and the warm-up day's usage, written once under src."""
    orders = src / "orders" / f"orders-{day_of(-1)}.csv"
    usage = src / "usage" / f"usage-{day_of(-1)}.jsonl"
    if not orders.exists():
        write_orders(orders, plan.history_orders, plan.cust.ids, plan.model, ZoneInfo(TZ))
    if not usage.exists():
        write_warmup_usage(usage, plan)
    return [orders, usage]


def day_files(src: Path, plan: Plan, d: int) -> list[Path]:
    """Event day d's orders (mid-day purchases, renewals) and usage, written once under src."""
    plan_days(plan, d + 1)
    orders = src / "orders" / f"orders-{day_of(d)}.csv"
    usage = src / "usage" / f"usage-{day_of(d)}.jsonl"
    if not orders.exists():
        rows, first = plan.day_orders[d], DAY_ORDERS * (d + 1)
        write_orders(orders, rows, plan.cust.ids, plan.model, ZoneInfo(TZ), first)
    if not usage.exists():
        write_usage(usage, plan, d)
    return [orders, usage]


def write_late_usage(path: Path, plan: Plan, days: list[int], share: float) -> int:
    """Usage delivered late: share x N new events on each of the given event days, one file."""
    per_day = max(1, int(share * plan.events))

    def chunks():
        for d in days:
            cols = day_events(plan, d, events=per_day, salt=5)
            yield from day_chunks(cols, plan.labels, Stamp.of("late", day_of(d), TZ))

    write_lines(path, chunks())
    return per_day * len(days)
