"""A small per-event reference model of the adbill billing engine (billing-rules §1-§9).

It walks every customer's happenings (expiries, grants with their arrears settlement,
events) one by one in time order and writes a ledger of draws; every daily figure is then
read off that ledger with plain sums. Property tests compare the set-based engine with it.
Clarity over speed: plain loops, exact arithmetic (int credits, Fraction -> Decimal money).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

DEFAULT_CATALOG: dict = {
    "editions": {
        "basic": (Decimal("30"), 300),
        "professional": (Decimal("118"), 1250),
        "enterprise": (Decimal("10000"), 110000),
    },
    "packages": {
        "package_100": (Decimal("100"), 1050),
        "package_10000": (Decimal("10000"), 110000),
        "package_100000": (Decimal("100000"), 1176470),
    },
    "period_days": 30,
    "package_months": 12,
}

# Order of happenings that share one instant: expiry, then grant (+ settlement), then events.
EXPIRE, GRANT, EVENT = 0, 1, 2


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    product: str
    term_months: int | None
    amount_cny: Decimal
    purchased_at: datetime  # tz-aware


@dataclass(frozen=True)
class Event:
    event_id: str
    customer_id: str
    credits: int  # already rated, >= 0
    occurred_at: datetime  # tz-aware


@dataclass
class RefResult:
    pools: dict[str, dict] = field(default_factory=dict)
    customer_days: dict[tuple[str, date], dict] = field(default_factory=dict)
    draws: list[tuple] = field(default_factory=list)
    suspensions: dict[tuple[date, str], dict] = field(default_factory=dict)
    changes: dict[tuple[date, str], str] = field(default_factory=dict)
    at_risk: dict[tuple[date, str], dict] = field(default_factory=dict)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant `day 00:00` in the billing zone."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The billing-zone calendar date of an aware instant."""
    return instant.astimezone(zone).date()


def add_months(day: date, months: int) -> date:
    """`day` plus calendar months, the day clamped to the month's end (02-29 -> 02-28)."""
    month_index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def recognised(drawn: int, amount: Decimal, credits: int) -> Decimal:
    """round_half_up(drawn * amount / credits, 2), computed exactly with a Fraction."""
    exact = Fraction(drawn) * Fraction(amount) / credits
    fen = floor(exact * 100 + Fraction(1, 2))  # exact >= 0, so this is half-up
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def priority(pool: dict) -> tuple:
    """Draw order (§5): subscription first, then earlier expiry, earlier start, pool_id."""
    source_rank = 0 if pool["source"] == "subscription" else 1
    return (source_rank, pool["expires_at"], pool["available_from"], pool["pool_id"])


def new_pool(order: Order, source: str, k: int, credits: int, amount: Decimal, af, ea) -> dict:
    """The static description of one pool."""
    return {
        "pool_id": f"{order.order_id}#{k}",
        "customer_id": order.customer_id,
        "order_id": order.order_id,
        "source": source,
        "product": order.product,
        "period_index": k,
        "credits": credits,
        "amount_cny": amount,
        "available_from": af,
        "expires_at": ea,
    }


def make_pools(orders: list[Order], zone: ZoneInfo, catalog: dict) -> list[dict]:
    """Turn orders into pools (§4), per customer in (purchased_at, order_id) order."""
    pools = []
    term_ends = defaultdict(list)  # (customer_id, edition) -> end instant of each term
    period = timedelta(days=catalog["period_days"])
    ordered = sorted(orders, key=lambda o: (o.customer_id, o.purchased_at, o.order_id))
    for order in ordered:
        bought = order.purchased_at.astimezone(zone)
        if order.product in catalog["editions"]:
            fee, credits = catalog["editions"][order.product]
            key = (order.customer_id, order.product)
            live_ends = [end for end in term_ends[key] if bought < end]  # active or queued
            start = max(live_ends) if live_ends else bought  # renewal starts at the end
            first = local_date(start, zone)
            end = start
            for k in range(order.term_months):
                af = start if k == 0 else local_midnight(first + period * k, zone)
                end = local_midnight(first + period * (k + 1), zone)
                pools.append(new_pool(order, "subscription", k, credits, fee, af, end))
            term_ends[key].append(end)
        else:
            price, credits = catalog["packages"][order.product]
            ea = local_midnight(
                add_months(local_date(bought, zone), catalog["package_months"]), zone
            )
            pools.append(new_pool(order, "package", 0, credits, price, bought, ea))
    return pools


def simulate_customer(customer_id, pools, events, start, end) -> list[tuple]:
    """Replay one customer's happenings in [start, end) (expiries up to `end` inclusive)
    one at a time and return the ledger of draws (§5, §6)."""
    remaining = {p["pool_id"]: p["credits"] for p in pools}
    outstanding = 0  # arrears not yet settled
    draws = []
    happenings = []
    for p in pools:
        if start <= p["available_from"] < end:
            happenings.append((p["available_from"], GRANT, priority(p), p))
        if start <= p["expires_at"] <= end:
            happenings.append((p["expires_at"], EXPIRE, priority(p), p))
    for e in events:
        happenings.append((e.occurred_at, EVENT, e.event_id, e))
    happenings.sort(key=lambda h: h[:3])

    for instant, kind, _, item in happenings:
        if kind == EXPIRE:
            pid = item["pool_id"]
            if remaining[pid] > 0:
                draws.append(("expire", customer_id, pid, None, instant, remaining[pid]))
                remaining[pid] = 0
        elif kind == GRANT:
            pid = item["pool_id"]
            take = min(outstanding, remaining[pid])
            if take > 0:
                draws.append(("settle", customer_id, pid, None, instant, take))
                remaining[pid] -= take
                outstanding -= take
        else:
            need = item.credits
            if need == 0:
                continue
            valid = [
                p
                for p in pools
                if p["available_from"] <= instant < p["expires_at"] and remaining[p["pool_id"]] > 0
            ]
            for p in sorted(valid, key=priority):
                take = min(need, remaining[p["pool_id"]])
                if take > 0:
                    draws.append(("use", customer_id, p["pool_id"], item.event_id, instant, take))
                    remaining[p["pool_id"]] -= take
                    need -= take
            if need > 0:
                draws.append(("arrears", customer_id, None, item.event_id, instant, need))
                outstanding += need
    return draws


def sum_draws(draws, kind, pool_id=None, lo=None, hi=None, inclusive_hi=False) -> int:
    """Credits of draws of `kind` (optionally of one pool) posted in [lo, hi) (or (lo, hi])."""
    total = 0
    for d_kind, _, d_pool, _, posted, credits in draws:
        if d_kind != kind or (pool_id is not None and d_pool != pool_id):
            continue
        if inclusive_hi:
            if (lo is None or posted > lo) and (hi is None or posted <= hi):
                total += credits
        elif (lo is None or posted >= lo) and (hi is None or posted < hi):
            total += credits
    return total


def drawn_before(draws, pool_id, instant) -> int:
    """Credits drawn from a pool (use + settle) before `instant`."""
    used = sum_draws(draws, "use", pool_id, hi=instant)
    return used + sum_draws(draws, "settle", pool_id, hi=instant)


def reference_bill(
    orders: list[Order],
    events: list[Event],
    first_day: date,
    last_day: date,
    tz: str = "Asia/Shanghai",
    catalog: dict | None = None,
) -> RefResult:
    """Bill days first_day..last_day (inclusive) the slow, obvious way; see module doc."""
    catalog = catalog or DEFAULT_CATALOG
    zone = ZoneInfo(tz)
    start = local_midnight(first_day, zone)
    end = local_midnight(last_day + timedelta(days=1), zone)
    for o in orders:
        assert o.purchased_at >= start, f"order {o.order_id} before first_day (unsupported)"
    orders = [o for o in orders if o.purchased_at < end]  # later purchases: not yet happened
    events = [e for e in events if start <= e.occurred_at < end]
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]

    pools = make_pools(orders, zone, catalog)
    customers = sorted({o.customer_id for o in orders} | {e.customer_id for e in events})
    pools_of = {c: [p for p in pools if p["customer_id"] == c] for c in customers}
    events_of = {c: [e for e in events if e.customer_id == c] for c in customers}
    draws_of = {c: simulate_customer(c, pools_of[c], events_of[c], start, end) for c in customers}

    result = RefResult()
    for c in customers:
        result.draws.extend(draws_of[c])

    def revenue_through(pool: dict, day: date) -> Decimal:
        """Revenue recognised for a pool through the end of `day` (§7)."""
        cutoff = local_midnight(day + timedelta(days=1), zone)
        drawn = drawn_before(draws_of[pool["customer_id"]], pool["pool_id"], cutoff)
        return recognised(drawn, pool["amount_cny"], pool["credits"])

    def remaining_at(pool: dict, cutoff: datetime) -> int:
        """A valid pool's credits left at the cutoff (after expiry, before later grants)."""
        return pool["credits"] - drawn_before(
            draws_of[pool["customer_id"]], pool["pool_id"], cutoff
        )

    def rated(c: str, lo: datetime, hi: datetime) -> int:
        """Credits of the customer's events (in the window) occurring in [lo, hi)."""
        return sum(e.credits for e in events_of[c] if lo <= e.occurred_at < hi)

    # Pools, as of the last cutoff.
    for p in pools:
        draws = draws_of[p["customer_id"]]
        pid = p["pool_id"]
        row = dict(p)
        del row["pool_id"]
        row["used"] = sum_draws(draws, "use", pid)
        row["settled"] = sum_draws(draws, "settle", pid)
        row["expired"] = sum_draws(draws, "expire", pid)
        row["remaining"] = p["credits"] - row["used"] - row["settled"] - row["expired"]
        row["revenue_cny"] = revenue_through(p, last_day)
        expired_in_window = p["expires_at"] <= end
        row["breakage_cny"] = (
            p["amount_cny"] - row["revenue_cny"] if expired_in_window else Decimal("0.00")
        )
        result.pools[pid] = row

    suspended_yesterday = {c: False for c in customers}
    suspended_since: dict[str, date] = {}
    for day in days:
        day_start = local_midnight(day, zone)
        cutoff = local_midnight(day + timedelta(days=1), zone)
        for c in customers:
            draws = draws_of[c]
            has_order = any(o.customer_id == c and o.purchased_at < cutoff for o in orders)
            has_event = any(e.occurred_at < cutoff for e in events_of[c])
            outstanding = sum_draws(draws, "arrears", hi=cutoff) - sum_draws(
                draws, "settle", hi=cutoff
            )
            if has_order or has_event:
                revenue = Decimal("0.00")
                breakage = Decimal("0.00")
                for p in pools_of[c]:
                    today = revenue_through(p, day)
                    revenue += today - revenue_through(p, day - timedelta(days=1))
                    if p["expires_at"] == cutoff:
                        breakage += p["amount_cny"] - today
                result.customer_days[(c, day)] = {
                    "granted": sum(
                        p["credits"]
                        for p in pools_of[c]
                        if day_start <= p["available_from"] < cutoff
                    ),
                    "used": sum_draws(draws, "use", lo=day_start, hi=cutoff),
                    "settled": sum_draws(draws, "settle", lo=day_start, hi=cutoff),
                    "expired": sum_draws(
                        draws, "expire", lo=day_start, hi=cutoff, inclusive_hi=True
                    ),
                    "arrears_opened": sum_draws(draws, "arrears", lo=day_start, hi=cutoff),
                    "arrears_outstanding": outstanding,
                    "balance": sum(
                        remaining_at(p, cutoff)
                        for p in pools_of[c]
                        if p["available_from"] < cutoff < p["expires_at"]
                    ),
                    "rated": rated(c, day_start, cutoff),
                    "revenue_cny": revenue,
                    "breakage_cny": breakage,
                }

            # Suspension list (§9): only customers with an order purchased before the cutoff.
            if not has_order:
                suspended_yesterday[c] = False
                continue
            net = (
                sum(
                    remaining_at(p, cutoff)
                    for p in pools_of[c]
                    if p["available_from"] <= cutoff < p["expires_at"]
                )
                - outstanding
            )
            suspended = net <= 0
            if suspended:
                if not suspended_yesterday[c]:
                    suspended_since[c] = day
                    result.changes[(day, c)] = "suspended"
                result.suspensions[(day, c)] = {
                    "reason": "arrears" if outstanding > 0 else "no_credits",
                    "net_balance": net,
                    "arrears_outstanding": outstanding,
                    "suspended_since": suspended_since[c],
                }
            else:
                if suspended_yesterday[c]:
                    result.changes[(day, c)] = "reinstated"
                week_start = local_midnight(day - timedelta(days=6), zone)
                total = rated(c, week_start, cutoff)  # days before first_day count 0
                if total > 0 and 7 * net < 3 * total:
                    result.at_risk[(day, c)] = {
                        "net_balance": net,
                        "total_rated_7d": total,
                        "projected_exhaustion_date": day + timedelta(days=(7 * net) // total),
                    }
            suspended_yesterday[c] = suspended
    return result


def invariant_violations(result: RefResult) -> list[str]:
    """The §5 conservation laws, checked on a result; an empty list means all hold."""
    problems = []
    for pid, p in result.pools.items():
        if p["credits"] != p["used"] + p["settled"] + p["expired"] + p["remaining"]:
            problems.append(f"pool {pid}: credits not conserved")
    per_customer = defaultdict(lambda: defaultdict(int))
    for row_key, row in result.customer_days.items():
        for name in ("rated", "used", "settled", "arrears_opened"):
            per_customer[row_key[0]][name] += row[name]
    last_outstanding, last_balance = {}, {}
    for (c, day), row in sorted(result.customer_days.items(), key=lambda kv: kv[0][1]):
        last_outstanding[c] = row["arrears_outstanding"]
        flows = row["granted"] - row["used"] - row["settled"] - row["expired"]
        if row["balance"] != last_balance.get(c, 0) + flows:
            problems.append(f"customer {c} {day}: balance != yesterday + granted - drawn - expired")
        last_balance[c] = row["balance"]
    for c, t in per_customer.items():
        if t["rated"] != t["used"] + t["arrears_opened"]:
            problems.append(f"customer {c}: rated != drawn by events + arrears opened")
        if t["arrears_opened"] != t["settled"] + last_outstanding[c]:
            problems.append(f"customer {c}: arrears opened != settled + outstanding")
    return problems
