"""The benchmark's inbox: orders CSVs and usage JSON Lines of a customer base, day by day.

Same file formats as tasks.generate (billing-rules §3), shaped for measuring a billing day:
every customer holds 1-3 live pools on the first event day, activity is skewed (lognormal),
about 2 % of customers buy a package mid-day each day, and about 3 % of customers carry
arrears into the first event day (an oversized event the day before). Events are drawn
column-wise with numpy and rendered by Polars: no per-event Python loop.

Day d (0-based) of the event days is START + d. Its files depend only on the seed, the
customer count, the events per day and d, so a one-day run and a 60-day history share
day 0, and any day can be written on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

GEN_VERSION = 1
START = date(2026, 11, 2)  # the first event day (the bench day)
OFFSET_S = 8 * 3600  # Asia/Shanghai, the default billing zone: +08:00, no DST
TZ = timezone(timedelta(seconds=OFFSET_S))
DAY_S = 86_400
ARREARS_SHARE, BUYER_SHARE, FAILED_SHARE, BAD_SHARE = 0.03, 0.02, 0.03, 0.0005
CHUNK = 1_000_000

EDITIONS = {  # code: (monthly fee, credits per month, seats) — as data/catalog.toml
    "basic": (30, 300, 1),
    "professional": (118, 1_250, 10),
    "enterprise": (10_000, 110_000, 100),
}
PACKAGES = {"package_100": (100, 1_050), "package_10000": (10_000, 110_000),
            "package_100000": (100_000, 1_176_470)}  # fmt: skip
# function: (weight, credits per unit, unit size in seconds or 1); enterprise-only last
FUNCTIONS = [
    ("copy_generation", 40.0), ("product_image_swap", 20.0), ("game_character_image", 8.0),
    ("image_to_video", 6.0), ("product_effects", 5.0), ("digital_human_spokesperson", 6.0),
    ("digital_human_library", 4.0), ("video_translation", 8.0), ("custom_avatar", 0.5),
    ("performance_report", 0.0), ("material_recreation", 0.0),
    ("channel_content_generation", 0.0),
]  # fmt: skip
CODES = [f for f, _ in FUNCTIONS]
ENTERPRISE_ONLY = [9, 10, 11]
MEAN_CREDITS = 9.0  # about what the mix below rates per event (measured)
HOURLY = np.array([3, 2, 1.5, 1, 1, 1.5, 3, 6, 10, 14, 16, 16,
                   13, 14, 16, 16, 15, 14, 13, 14, 15, 13, 9, 5], dtype=float)  # fmt: skip
HOUR_CDF = np.concatenate([[0], np.cumsum(HOURLY) / HOURLY.sum()])


def day_of(d: int) -> date:
    return START + timedelta(days=d)


def midnight(d: int) -> int:
    """Epoch seconds of local midnight starting event day d (d = -1: the warm-up day)."""
    x = day_of(d)
    return int(datetime(x.year, x.month, x.day, tzinfo=TZ).timestamp())


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, TZ).isoformat()


@dataclass
class Plan:
    """The customer base and its orders; days are planned on demand, in order."""

    customers: int
    events: int
    seed: int
    ids: list[str] = field(default_factory=list)
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    edition: np.ndarray = field(default_factory=lambda: np.zeros(0))  # index into EDITIONS
    seats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    carriers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    carrier_event: np.ndarray = field(default_factory=lambda: np.zeros(0))  # credits
    history_orders: list[dict] = field(default_factory=list)
    day_orders: list[list[dict]] = field(default_factory=list)
    balance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    renewals: dict[int, list[tuple[int, str]]] = field(default_factory=dict)


def make_plan(customers: int, events: int, seed: int) -> Plan:
    """Customers, their editions, packages and the warm-up arrears, from the seed."""
    rng = np.random.default_rng([seed, customers, 0])
    n = customers
    width = max(5, len(str(n)))
    plan = Plan(customers, events, seed, ids=[f"c{c + 1:0{width}d}" for c in range(n)])
    w = rng.lognormal(0.0, 1.5, n)  # skewed: a few heavy customers, many light ones
    plan.weight = w / w.sum()
    monthly = plan.weight * events * MEAN_CREDITS * 30  # expected credits a month
    names = list(EDITIONS)
    plan.edition = np.where(monthly <= 300, 0, np.where(monthly <= 1_250, 1, 2))
    plan.seats = np.array([EDITIONS[names[e]][2] for e in plan.edition])
    p0 = midnight(0)
    term = rng.choice([12, 6, 1], n, p=[0.6, 0.3, 0.1])
    back = np.where(term == 1, rng.integers(1, 29, n), rng.integers(1, 41, n))
    bought = p0 - back * DAY_S + rng.integers(8 * 3600, 22 * 3600, n)
    plan.balance = np.zeros(n)
    total = np.zeros(n)  # credits of all the customer's pools
    orders = []
    pkg_names = list(PACKAGES)
    with_package = set()
    for c in range(n):
        code = names[plan.edition[c]]
        orders.append({"ts": int(bought[c]), "c": c, "product": code, "term": int(term[c])})
        cap = EDITIONS[code][1]
        short = monthly[c] - cap
        k = 0
        if short > 0:  # heavy: one or two packages to top up
            k = 1 if rng.random() < 0.6 else 2
        elif rng.random() < 0.25:
            k = 1
        for j in range(k):
            need = max(short, 0) / k
            size = next((p for p in pkg_names if PACKAGES[p][1] >= need), pkg_names[-1])
            ts = int(bought[c] + (j + 1) * rng.integers(3600, 5 * DAY_S))
            ts = min(ts, p0 - 3600)
            orders.append({"ts": ts, "c": c, "product": size, "term": None})
            cap += PACKAGES[size][1]
            with_package.add(c)
        plan.balance[c] = cap
        total[c] = cap - EDITIONS[code][1] + EDITIONS[code][1] * term[c]
        if term[c] < 12:  # renewed at the end of the term, most of the time
            end = _term_end(int(bought[c]), int(term[c]))
            plan.renewals.setdefault(end, []).append((c, code))
    plan.history_orders = orders
    # warm-up arrears: an oversized event the day before (more than all the customer's pools),
    # mostly from customers without packages
    plain = np.array([c for c in range(n) if c not in with_package])
    k = min(len(plain), max(1, round(ARREARS_SHARE * n)))
    plan.carriers = np.sort(rng.choice(plain, k, replace=False)) if k else np.zeros(0, int)
    plan.carrier_event = total[plan.carriers] + 500
    plan.balance[plan.carriers] = -500.0
    return plan


def _term_end(bought: int, term: int) -> int:
    """Local midnight ending a term bought at `bought` (30-day periods, §4)."""
    local = datetime.fromtimestamp(bought, TZ).date() + timedelta(days=30 * term)
    return int(datetime(local.year, local.month, local.day, tzinfo=TZ).timestamp())


def plan_days(plan: Plan, days: int) -> None:
    """Mid-day purchases and renewals of event days 0..days-1 (a rough balance simulation)."""
    n = plan.customers
    for d in range(len(plan.day_orders), days):
        rng = np.random.default_rng([plan.seed, n, 1, d])
        d0 = midnight(d)
        use = day_counts(plan, d) * MEAN_CREDITS
        orders = []
        due = [
            e
            for e in sorted(plan.renewals)
            if d0 <= e - (1 + (e // DAY_S) % 3) * DAY_S < d0 + DAY_S
        ]
        for end in due:  # renew 1-3 days before the term ends, a month at a time
            for c, code in plan.renewals.pop(end):
                if rng.random() < 0.8:
                    ts = int(d0 + rng.integers(9 * 3600, 21 * 3600))
                    orders.append({"ts": ts, "c": int(c), "product": code, "term": 1})
                    plan.balance[c] += EDITIONS[code][1]
                    plan.renewals.setdefault(end + 30 * DAY_S, []).append((c, code))
        buyers = max(1, round(BUYER_SHARE * n))
        low = np.argsort(plan.balance - use)[: buyers // 2]
        low = low[(plan.balance[low] - use[low]) < 0]
        rest = rng.choice(np.setdiff1d(np.arange(n), low), buyers - len(low), replace=False)
        for c in np.concatenate([low, rest]).astype(int):
            size = next((p for p in PACKAGES if PACKAGES[p][1] >= 15 * use[c]), list(PACKAGES)[-1])
            ts = int(d0 + rng.integers(8 * 3600, 20 * 3600))
            orders.append({"ts": ts, "c": c, "product": size, "term": None})
            plan.balance[c] += PACKAGES[size][1]
        plan.balance -= use
        plan.day_orders.append(orders)


def day_counts(plan: Plan, d: int) -> np.ndarray:
    """Events per customer on event day d: the skewed weights, with a little daily noise."""
    rng = np.random.default_rng([plan.seed, plan.customers, 2, d])
    p = plan.weight * rng.lognormal(0.0, 0.2, plan.customers)
    return rng.multinomial(plan.events, p / p.sum())


def write_orders(path: Path, plan: Plan, orders: list[dict], first_no: int) -> int:
    """An orders CSV (header + one row an order); returns the next order number."""
    names = {**{k: v[0] for k, v in EDITIONS.items()}, **{k: v[0] for k, v in PACKAGES.items()}}
    lines = ["order_id,customer_id,product,term_months,amount_cny,purchased_at"]
    for i, o in enumerate(sorted(orders, key=lambda o: (o["ts"], o["c"]))):
        amount = names[o["product"]] * (o["term"] or 1)
        term = "" if o["term"] is None else str(o["term"])
        lines.append(
            f"o{first_no + i:08d},{plan.ids[o['c']]},{o['product']},{term},{amount:.2f},"
            f"{iso(o['ts'])}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return first_no + len(orders)


def _quantities(rng: np.random.Generator, f: np.ndarray) -> np.ndarray:
    """Quantities in half units (12.5 s is 25) obeying each function's rule."""
    n = len(f)
    q = np.full(n, 2, dtype=np.int64)
    q[f == 0] = 2 * (1 + rng.poisson(2.0, int((f == 0).sum())))
    q[(f == 1) | (f == 2)] = 2 * (1 + rng.poisson(1.0, int(((f == 1) | (f == 2)).sum())))
    m = f == 3
    q[m] = np.where(rng.random(int(m.sum())) < 0.85, 10, 60)  # 5 s or 30 s
    m = f == 4
    q[m] = rng.integers(4, 21, int(m.sum()))
    for code, mean in ((5, 20.0), (6, 20.0), (7, 40.0)):
        m = f == code
        q[m] = np.maximum(1, np.round(2 * rng.lognormal(math.log(mean), 0.6, int(m.sum()))))
    return q


def credits_of(f: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """credits = ceil(quantity / unit_size) × credits_per_unit (billing-rules §2)."""
    secs = -(-halves // 2)  # whole units, rounded up
    c = secs.copy()  # copy, swaps, game images, digital humans: 1 a unit
    c[f == 3] = 6 * secs[f == 3]
    c[f == 4] = 5 * secs[f == 4]
    c[f == 7] = -(-halves[f == 7] // 20)  # 10-second units
    c[f == 8] = 50 * secs[f == 8]
    c[np.isin(f, ENTERPRISE_ONLY)] = 0
    return c


def day_events(plan: Plan, d: int, events: int | None = None, salt: int = 3) -> pl.DataFrame:
    """Event day d as columns, in time order: customer, ms, function, halves, ok, account.

    events: that many events spread by the customers' weights instead of the day's own."""
    rng = np.random.default_rng([plan.seed, plan.customers, salt, d])
    counts = day_counts(plan, d) if events is None else rng.multinomial(events, plan.weight)
    n = int(counts.sum())
    cust = np.repeat(np.arange(plan.customers, dtype=np.int32), counts)
    frac = np.interp(rng.random(n), HOUR_CDF, np.linspace(0, 1, 25))
    ms = midnight(d) * 1000 + (frac * DAY_S * 1000).astype(np.int64)
    order = np.argsort(ms, kind="stable")
    cust, ms = cust[order], ms[order]
    w = np.array([x for _, x in FUNCTIONS])
    f = rng.choice(len(w), n, p=w / w.sum()).astype(np.int8)
    ent = (plan.edition[cust] == 2) & (rng.random(n) < 0.03)
    f[ent] = rng.choice(ENTERPRISE_ONLY, int(ent.sum()))
    halves = _quantities(rng, f)
    seats = plan.seats[cust]
    account = 1 + (rng.random(n) ** 2 * seats).astype(np.int32)
    ok = rng.random(n) >= FAILED_SHARE
    return pl.DataFrame(
        {"c": cust, "ms": ms, "f": f, "h": halves, "ok": ok, "k": account},
    )


def render(df: pl.DataFrame, day: date, ids: list[str], first: int, prefix: str = "e") -> pl.Series:
    """JSON Lines of the events, built column-wise."""
    cust = pl.Series([f'","customer_id":"{c}","account_id":"{c}-a' for c in ids])
    fn = pl.Series([f'","function":"{c}","quantity":' for c in CODES])
    h = pl.col("h")
    qty = (
        pl.when(h % 2 == 0)
        .then((h // 2).cast(pl.String))
        .otherwise(pl.concat_str([(h // 2).cast(pl.String), pl.lit(".5")]))
    )
    wall = pl.from_epoch(pl.col("ms") + OFFSET_S * 1000, time_unit="ms")
    parts = [
        pl.lit('{"event_id":"' + prefix + "-" + day.strftime("%Y%m%d") + "-"),
        pl.int_range(first, first + pl.len()).cast(pl.String),
        pl.col("cp"), pl.col("k").cast(pl.String), pl.col("fp"), qty,
        pl.when("ok").then(pl.lit(',"status":"succeeded","occurred_at":"'))
        .otherwise(pl.lit(',"status":"failed","occurred_at":"')),
        wall.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"), pl.lit('+08:00"}'),
    ]  # fmt: skip
    return (
        df.with_columns(cp=cust.gather(df["c"]), fp=fn.gather(df["f"].cast(pl.Int32)))
        .select(pl.concat_str(parts).alias("line"))
        .to_series()
    )


def spoil(lines: pl.Series, rng: np.random.Generator) -> pl.Series:
    """Replace a few lines by bad ones (§3): malformed, unknown function or customer, no offset,
    and exact duplicates of the line before — a handful per chunk, so a small loop."""
    k = int(len(lines) * BAD_SHARE)
    if k == 0 or len(lines) < 4:
        return lines
    pos = np.sort(rng.choice(np.arange(1, len(lines)), k, replace=False))
    bad = []
    for t, i in enumerate(pos.tolist()):
        line = lines[i]
        kind = t % 5
        if kind == 0:
            bad.append(line[: len(line) // 2])
        elif kind == 1:
            bad.append(line.replace('"function":"', '"function":"video_upscale_', 1))
        elif kind == 2:
            bad.append(line.replace('"customer_id":"c', '"customer_id":"x', 1))
        elif kind == 3:
            bad.append(line.replace('+08:00"}', '"}'))
        else:
            bad.append(lines[i - 1])
    return lines.scatter(pos, pl.Series(bad, dtype=pl.String))


def write_usage(path: Path, plan: Plan, d: int) -> int:
    """Event day d's usage file (.jsonl); returns the number of lines."""
    df = day_events(plan, d)
    rng = np.random.default_rng([plan.seed, plan.customers, 4, d])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        for s in range(0, df.height, CHUNK):
            lines = spoil(render(df.slice(s, CHUNK), day_of(d), plan.ids, s + 1), rng)
            pl.DataFrame({"l": lines}).write_csv(out, include_header=False, quote_style="never")
    tmp.replace(path)
    return df.height


def write_warmup_usage(path: Path, plan: Plan) -> int:
    """The day before day 0: one oversized event per arrears carrier (custom avatars)."""
    d0 = midnight(-1)
    lines = []
    pairs = zip(plan.carriers.tolist(), plan.carrier_event.tolist(), strict=True)
    for i, (c, credits) in enumerate(pairs):
        total = int(credits)
        cid = plan.ids[c]
        lines.append(
            f'{{"event_id":"w-{i + 1}","customer_id":"{cid}","account_id":"{cid}-a1",'
            f'"function":"custom_avatar","quantity":{-(-total // 50)},"status":"succeeded",'
            f'"occurred_at":"{iso(d0 + 12 * 3600 + i)}"}}'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return len(lines)


def warmup_files(src: Path, plan: Plan) -> list[Path]:
    """Orders before day 0 and the warm-up day's usage, written once under src."""
    orders = src / "orders" / f"orders-{day_of(-1)}.csv"
    usage = src / "usage" / f"usage-{day_of(-1)}.jsonl"
    if not orders.exists():
        write_orders(orders, plan, plan.history_orders, 1)
    if not usage.exists():
        write_warmup_usage(usage, plan)
    return [orders, usage]


def day_files(src: Path, plan: Plan, d: int) -> list[Path]:
    """Event day d's orders (mid-day purchases, renewals) and usage, written once under src."""
    plan_days(plan, d + 1)
    orders = src / "orders" / f"orders-{day_of(d)}.csv"
    usage = src / "usage" / f"usage-{day_of(d)}.jsonl"
    if not orders.exists():
        write_orders(orders, plan, plan.day_orders[d], 1_000_000 * (d + 1))
    if not usage.exists():
        write_usage(usage, plan, d)
    return [orders, usage]


def write_late_usage(path: Path, plan: Plan, days: list[int], share: float) -> int:
    """Usage delivered late: share × N new events on each of the given event days, one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as out:
        for d in days:
            df = day_events(plan, d, events=max(1, int(share * plan.events)), salt=5)
            lines = render(df, day_of(d), plan.ids, 1, prefix="late")
            pl.DataFrame({"l": lines}).write_csv(out, include_header=False, quote_style="never")
            n += df.height
    tmp.replace(path)
    return n
