"""Customers planned over a fixed span of days (adbill generate and demo, the tests): orders
before and during it (subscriptions renewed, upgraded or left to lapse, packages bought when
credits run low), a few customers certain to run into arrears, and each day's event counts."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from tasks.synthetic.customers import Customers
from tasks.synthetic.model import DAY, Model, plus_days

ORDERS_BEFORE_DAYS = 40  # first purchases go back this far (flows/cli_demo.py DEMO_ORDERS_BEFORE)
FIRST_BEFORE, OVER_SEATS, PACKAGE_ONLY, RENEW, LAPSE, UPGRADE = 0.78, 0.05, 0.03, 0.75, 0.6, 0.07
PACKAGE_BUYERS, MAX_PACKAGES_A_CUSTOMER = 0.65, 3


@dataclass
class Horizon:
    """The customers, their orders (ts, cust, product, term), the credits their plan grants a
    period, the customers certain to overspend, and events per customer and day."""

    cust: Customers
    orders: list[dict]
    ref: np.ndarray
    spenders: np.ndarray
    counts: np.ndarray


def plan_horizon(
    rng: np.random.Generator, model: Model, n: int, bounds: list, per_day: int, tz: ZoneInfo
) -> Horizon:
    """n customers over the days whose (start, end) instants are bounds, per_day events a day."""
    cust = Customers.new(n, over=rng.random(n) < OVER_SEATS)
    buyer = _Buyer(rng, model, cust, bounds, tz)
    buyer.everyone()
    cust.entitle(model)
    skew = rng.lognormal(-0.5, 1.0, n)  # few heavy users, many light ones
    cust.weight = skew * buyer.ref / cust.mcpe[cust.cls] / model.period_days
    plan = Horizon(cust, buyer.orders, buyer.ref, np.zeros(0, dtype=int), np.zeros(0))
    _overspend(rng, plan, len(bounds), per_day, bounds[0][0], bounds[-1][1])
    plan.counts = np.zeros((n, len(bounds)), dtype=np.int64)
    for d, (d0, d1) in enumerate(bounds):
        lo, hi = np.maximum(cust.active_from, d0), np.minimum(cust.active_until, d1)
        p = cust.weight * np.clip((hi - lo) / (d1 - d0), 0, 1)
        if p.sum() > 0:
            plan.counts[:, d] = rng.multinomial(per_day, p / p.sum())
    _packages(rng, model, plan, bounds, tz)
    return plan


class _Buyer:
    """Places each customer's subscription orders; every edition and term is bought by one."""

    def __init__(self, rng, model: Model, cust: Customers, bounds: list, tz: ZoneInfo):
        self.rng, self.model, self.cust, self.tz = rng, model, cust, tz
        self.p0, self.p_end, self.days = bounds[0][0], bounds[-1][1], len(bounds)
        self.orders: list[dict] = []
        self.ref = np.zeros(cust.n)

    def buy(self, c: int, ts: int, product: str, term: int | None, start: int | None = None):
        self.orders.append(
            {"ts": ts, "cust": c, "product": product, "term": term, "start": start or ts}
        )

    def everyone(self) -> None:
        eds = self.model.editions
        combos = [(e, t) for e in range(len(eds)) for t in eds[e]["terms_months"]]
        chosen = self.rng.permutation(self.cust.n)[: len(combos)].tolist()
        forced = dict(zip(chosen, combos, strict=False))
        upgrader = next(iter(forced), -1)  # the first edition's shortest term, upgraded
        for c in range(self.cust.n):
            self.customer(c, forced.get(c), c == upgrader)

    def customer(self, c: int, forced: tuple | None, upgrader: bool) -> None:
        rng, cust, eds, pkgs = self.rng, self.cust, self.model.editions, self.model.packages
        if rng.random() < FIRST_BEFORE:  # bought on or before the first day
            ts = self.p0 - int(rng.uniform(0, ORDERS_BEFORE_DAYS)) * DAY
            ts += int(rng.uniform(8, 23) * 3600)
        else:
            ts = self.p0 + int(rng.integers(0, self.days)) * DAY + int(rng.uniform(7, 23) * 3600)
        cust.active_from[c] = ts + int(rng.uniform(120, 1800))
        if pkgs and forced is None and rng.random() < PACKAGE_ONLY:
            k = 0 if rng.random() < 0.8 else min(1, len(pkgs) - 1)
            self.buy(c, ts, pkgs[k]["code"], None)
            cust.seats[c], self.ref[c] = pkgs[k]["seats"], pkgs[k]["credits"]
            return
        ed_p = 0.6 ** np.arange(len(eds))  # the larger the edition, the fewer its customers
        e, term = forced or (int(rng.choice(len(eds), p=ed_p / ed_p.sum())), None)
        end = self.chain(c, e, term or int(rng.choice(eds[e]["terms_months"])), ts)
        if end < self.p_end and rng.random() < LAPSE:
            cust.active_until[c] = end  # lapsed and stopped using the service
        cust.seats[c], self.ref[c] = eds[e]["seats"], eds[e]["credits_per_month"]
        lo = ts + 3600 if upgrader else max(ts + 3600, self.p0 - 10 * DAY)
        hi = min(end, self.p_end)
        if e < len(eds) - 1 and lo < hi and (rng.random() < UPGRADE or upgrader):
            e2 = int(rng.integers(e + 1, len(eds)))
            self.chain(c, e2, int(rng.choice(eds[e2]["terms_months"])), int(rng.uniform(lo, hi)))
            cust.seats[c], cust.active_until[c] = max(cust.seats[c], eds[e2]["seats"]), np.inf

    def chain(self, c: int, e: int, term: int, ts: int) -> int:
        """Buy edition e at ts and renew it (while active) with probability RENEW each time;
        returns the end of the last period."""
        eds, rng, days = self.model.editions, self.rng, self.model.period_days
        code, s, first = eds[e]["code"], ts, ts
        self.buy(c, ts, code, term)
        while (end := plus_days(s, days * term, self.tz)) < self.p_end and rng.random() < RENEW:
            t = max(end - int(rng.uniform(0.2, 6) * DAY), ts + 3600)
            term = int(rng.choice(eds[e]["terms_months"]))
            self.buy(c, t, code, term, start=end)
            s, ts = end, t
        lo, hi = self.cust.held[c].get(code, (first, end))
        self.cust.held[c][code] = (min(lo, first), max(hi, end))
        return end


def _overspend(rng, plan: Horizon, days: int, per_day: int, p0: int, p_end: int) -> None:
    """Make a few one-edition customers of the smallest plan use 4x what they could hold:
    certain arrears."""
    cust = plan.cust
    ok = [
        c
        for c, h in enumerate(cust.held)
        if len(h) == 1
        and cust.active_from[c] < p0
        and cust.active_until[c] == np.inf
        and next(iter(h.values()))[1] >= p_end
    ]
    ok = [c for c in ok if plan.ref[c] == min(plan.ref[ok])] if ok else []
    if not (ok and per_day):
        return
    c = plan.spenders = rng.permutation(ok)[: max(1, cust.n // 50)]
    share = 4 * plan.ref[c] / min(days, 30) / per_day / cust.mcpe[cust.cls[c]]
    share = np.minimum(share, 0.2 / len(c))
    cust.weight[c] = share / (1 - share.sum()) * (cust.weight.sum() - cust.weight[c].sum())


def _grants(model: Model, plan: Horizon, p0: int, days: int, tz: ZoneInfo) -> np.ndarray:
    """Credits each customer's orders grant on each day (period starts)."""
    grants = np.zeros(plan.counts.shape)
    for o in plan.orders:
        for k in range(o["term"] or 1):
            a = plus_days(o["start"], model.period_days * k, tz) if k else o["start"]
            if a + model.period_days * DAY > p0 and (a - p0) // DAY < days:
                grants[o["cust"], max(0, (a - p0) // DAY)] += model.credits_of[o["product"]]
    return grants


def _packages(rng, model: Model, plan: Horizon, bounds: list, tz: ZoneInfo) -> None:
    """Customers running low buy packages mid-day (roughly simulated); some let arrears grow;
    every package is bought at least once."""
    pk, cust = model.packages, plan.cust
    if not pk or not cust.n:
        return
    days, p0 = len(bounds), bounds[0][0]
    use = plan.counts * cust.mcpe[cust.cls][:, None] * 0.97
    grants = _grants(model, plan, p0, days, tz)
    buyer, bought, bal = rng.random(cust.n) < PACKAGE_BUYERS, np.zeros(cust.n), np.zeros(cust.n)
    buyer[plan.spenders] = False
    for d, (d0, d1) in enumerate(bounds):
        bal += grants[:, d]
        low = buyer & (bought < MAX_PACKAGES_A_CUSTOMER) & (use[:, d] > 0)
        for c in np.flatnonzero(low & (bal - use[:, d] < 0.15 * plan.ref)):
            lo = max(d0 + 9 * 3600, cust.active_from[c] + 600)
            if lo < d1 - 3 * 3600:
                k = next((i for i, p in enumerate(pk) if p["credits"] >= 10 * use[c, d]), -1)
                ts = int(rng.uniform(lo, d1 - 3 * 3600))
                plan.orders.append(
                    {"ts": ts, "cust": int(c), "product": pk[k]["code"], "term": None}
                )
                bal[c], bought[c] = bal[c] + pk[k]["credits"], bought[c] + 1
        bal -= use[:, d]
    spenders = len(plan.spenders)
    who = np.setdiff1d(np.arange(cust.n), plan.spenders) if spenders < cust.n else [0]
    for p in pk:
        if p["code"] not in {o["product"] for o in plan.orders}:
            c, (d0, d1) = int(rng.choice(who)), bounds[int(rng.integers(days))]
            t = min(max(d0 + 10 * 3600, int(cust.active_from[c]) + 600), d1 - 60)
            plan.orders.append({"ts": t, "cust": c, "product": p["code"], "term": None})
