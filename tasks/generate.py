"""Seeded synthetic inbox: an orders CSV and daily usage JSON Lines, with realistic bad lines."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from tasks.catalog import Catalog, load_catalog

MICRO, DAY, CHUNK, BAD_RATE = 1_000_000, 86_400, 500_000, 0.002
EVENT_KINDS = (
    "malformed_json", "missing_field", "wrong_type", "unknown_function", "quantity_not_positive",
    "quantity_not_allowed", "fractional_whole_number", "timestamp_without_offset",
    "unknown_customer", "not_entitled", "exact_duplicate", "duplicate_conflict",
)  # fmt: skip
ORDER_KINDS = (
    "unknown_product", "bad_term_subscription", "bad_term_package", "wrong_amount",
    "timestamp_without_offset", "timestamp_garbage", "duplicate_conflict", "exact_duplicate",
)  # fmt: skip
FIELDS = ("event_id", "customer_id", "account_id", "function", "quantity", "status", "occurred_at")
MIX = dict(copy_generation=3.0, product_image_swap=2.0, image_to_video=1.5, custom_avatar=0.3)
HOURLY = np.array([3, 2, 1.5, 1, 1, 1.5, 3, 6, 10, 14, 16, 16,
                   13, 14, 16, 16, 15, 14, 13, 14, 15, 13, 9, 5])  # fmt: skip
CDF = np.concatenate([[0], np.cumsum(HOURLY) / HOURLY.sum()])
JSON = {"separators": (",", ":")}


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


def _midnight(d: date, tz: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def _plus_days(ts: float, n: int, tz: ZoneInfo) -> int:
    """Local midnight n days after the local date of ts (how periods end, billing-rules §4)."""
    return _midnight(datetime.fromtimestamp(ts, tz).date() + timedelta(days=n), tz)


class _Model:
    """Catalog-derived function mix, quantity rules and mean credits per function."""

    def __init__(self, cat: Catalog, seed: int):
        self.fns = cat.functions.to_dicts()
        self.codes = [f["code"] for f in self.fns]
        self.restricted = [i for i, f in enumerate(self.fns) if f["editions"]]
        self.base_w = np.array(
            [0.0 if f["editions"] else MIX.get(f["code"], 1.0) for f in self.fns]
        )
        side = np.random.default_rng(seed + 1)
        self.mean_credits = np.array(
            [self.credits(i, self.quantities(side, i, 4000)).mean() for i in range(len(self.fns))]
        )

    def quantities(self, rng: np.random.Generator, i: int, n: int) -> np.ndarray:
        """n quantities (micro-units) that obey function i's rule."""
        f = self.fns[i]
        if f["allowed_quantities_micro"]:
            allowed = np.array(f["allowed_quantities_micro"], dtype=np.int64)
            w = 0.6 ** np.arange(len(allowed))
            return allowed[rng.choice(len(allowed), n, p=w / w.sum())]
        if f["whole_number"]:
            return (1 + rng.poisson(3.0 if f["credits_per_unit"] <= 5 else 0.4, n)) * MICRO
        units = rng.lognormal(np.log(24.0), 0.7, n) * f["unit_size_micro"] / MICRO
        halves = np.maximum(np.round(units), 1)  # seconds in halves: 12.5 s is 25
        halves = np.where(rng.random(n) < 0.6, np.maximum(np.round(halves / 2) * 2, 2), halves)
        return (halves * (MICRO // 2)).astype(np.int64)

    def credits(self, i: int, q: np.ndarray) -> np.ndarray:
        return -(-q // self.fns[i]["unit_size_micro"]) * self.fns[i]["credits_per_unit"]

    def cum(self, entitled: tuple[bool, ...]) -> np.ndarray:
        """Cumulative function mix of a customer class (entitled to which restricted functions)."""
        w = self.base_w.copy()
        w[[r for r, ok in zip(self.restricted, entitled, strict=True) if ok]] = 0.3
        c = np.cumsum(w)
        return c / c[-1]


@dataclass
class _Plan:
    """Customers: ids, orders, held editions and per-customer arrays driving their usage."""

    ids: list[str]
    orders: list[dict]
    held: list[dict]  # per customer: edition -> (first start, last end) of its subscriptions
    seats: np.ndarray
    ref: np.ndarray  # credits the customer's plan grants per period
    active_from: np.ndarray
    active_until: np.ndarray
    over: np.ndarray  # customers who use more accounts than entitled
    cls: np.ndarray = None
    cums: list = None
    mcpe: np.ndarray = None  # mean credits per event, per class
    win: np.ndarray = None  # [customer, restricted function, from/until]
    weight: np.ndarray = None
    spenders: np.ndarray = None  # customers whose usage certainly outruns their credits

    @property
    def n(self) -> int:
        return len(self.ids)


def _plan(rng, cat: Catalog, model: _Model, n: int, start: date, days: int, tz) -> _Plan:
    eds, pkgs = cat.editions.to_dicts(), cat.packages.to_dicts()
    p0, p_end = _midnight(start, tz), _midnight(start + timedelta(days=days), tz)
    width = max(5, len(str(n + 1000)))
    z, inf = np.zeros(n), np.full(n, np.inf)
    plan = _Plan([f"c{c + 1:0{width}d}" for c in range(n)], [], [], z, z.copy(), z.copy(), inf,
                 rng.random(n) < 0.05)  # fmt: skip
    combos = [(e, t) for e in range(len(eds)) for t in eds[e]["terms_months"]]
    forced = dict(zip(rng.permutation(n)[: len(combos)].tolist(), combos, strict=False))
    upgrader = next(iter(forced), -1)  # the basic, 1-month customer forced to upgrade
    ed_p = 0.6 ** np.arange(len(eds))

    def buy(c: int, ts: int, product: str, term: int | None, start_s: int | None = None) -> None:
        o = {"ts": ts, "cust": c, "product": product, "term": term, "start": start_s or ts}
        plan.orders.append(o)

    def sub_chain(c: int, e: int, term: int, ts: int) -> int:
        """Buy edition e at ts and renew it (while active) with probability 3/4 each time."""
        code, s, first = eds[e]["code"], ts, ts
        buy(c, ts, code, term)
        while (end := _plus_days(s, cat.period_days * term, tz)) < p_end and rng.random() < 0.75:
            t = max(end - int(rng.uniform(0.2, 6) * DAY), ts + 3600)
            term = int(rng.choice(eds[e]["terms_months"]))
            buy(c, t, code, term, start_s=end)
            s, ts = end, t
        lo, hi = plan.held[c].get(code, (first, end))
        plan.held[c][code] = (min(lo, first), max(hi, end))
        return end

    for c in range(n):
        plan.held.append({})
        if rng.random() < 0.78:  # bought on or before the first day
            ts = p0 - int(rng.uniform(0, 40)) * DAY + int(rng.uniform(8, 23) * 3600)
        else:
            ts = p0 + int(rng.integers(0, days)) * DAY + int(rng.uniform(7, 23) * 3600)
        plan.active_from[c] = ts + int(rng.uniform(120, 1800))
        if pkgs and c not in forced and rng.random() < 0.03:  # package-only customer
            k = 0 if rng.random() < 0.8 else min(1, len(pkgs) - 1)
            buy(c, ts, pkgs[k]["code"], None)
            plan.seats[c], plan.ref[c] = pkgs[k]["seats"], pkgs[k]["credits"]
            continue
        e, term = forced.get(c, (int(rng.choice(len(eds), p=ed_p / ed_p.sum())), None))
        end = sub_chain(c, e, term or int(rng.choice(eds[e]["terms_months"])), ts)
        if end < p_end and rng.random() < 0.6:
            plan.active_until[c] = end  # lapsed and stopped using the service
        plan.seats[c], plan.ref[c] = eds[e]["seats"], eds[e]["credits_per_month"]
        lo, hi = ts + 3600 if c == upgrader else max(ts + 3600, p0 - 10 * DAY), min(end, p_end)
        if e < len(eds) - 1 and lo < hi and (rng.random() < 0.07 or c == upgrader):
            e2 = int(rng.integers(e + 1, len(eds)))
            sub_chain(c, e2, int(rng.choice(eds[e2]["terms_months"])), int(rng.uniform(lo, hi)))
            plan.seats[c], plan.active_until[c] = max(plan.seats[c], eds[e2]["seats"]), np.inf
    restricted = [set(model.fns[r]["editions"]) for r in model.restricted]
    ent = [tuple(bool(set(h) & r) for r in restricted) for h in plan.held]
    classes = sorted(set(ent))
    plan.cls = np.array([classes.index(k) for k in ent], dtype=np.int16)
    plan.cums = [model.cum(k) for k in classes] + [model.cum((False,) * len(restricted))]
    plan.mcpe = np.array([np.diff(cum, prepend=0) @ model.mean_credits for cum in plan.cums])
    plan.win = np.zeros((n, len(restricted), 2))
    for c, h in enumerate(plan.held):
        for j, r in enumerate(restricted):
            if spans := [h[e] for e in r if e in h]:
                plan.win[c, j] = (min(s[0] for s in spans), max(s[1] for s in spans))
    skew = rng.lognormal(-0.5, 1.0, n)  # few heavy users, many light ones
    plan.weight = skew * plan.ref / plan.mcpe[plan.cls] / cat.period_days
    return plan


def _overspend(rng, plan: _Plan, days: int, per_day: int, p0: int, p_end: int) -> None:
    """Make a few one-edition basic customers use 4x what they could hold: certain arrears."""
    ok = [c for c, h in enumerate(plan.held) if len(h) == 1 and plan.active_from[c] < p0
          and plan.active_until[c] == np.inf and next(iter(h.values()))[1] >= p_end]  # fmt: skip
    ok = [c for c in ok if plan.ref[c] == min(plan.ref[ok])] if ok else []
    plan.spenders = rng.permutation(ok)[: max(1, plan.n // 50)] if ok and per_day else []
    if len(plan.spenders):
        c = plan.spenders
        share = 4 * plan.ref[c] / min(days, 30) / per_day / plan.mcpe[plan.cls[c]]
        share = np.minimum(share, 0.2 / len(c))
        plan.weight[c] = share / (1 - share.sum()) * (plan.weight.sum() - plan.weight[c].sum())


def _packages(rng, cat: Catalog, plan: _Plan, counts: np.ndarray, bounds: list, tz) -> None:
    """Customers running low buy packages mid-day (roughly simulated); some let arrears grow."""
    pk = cat.packages.to_dicts()
    if not pk or not plan.n:
        return
    days, p0 = counts.shape[1], bounds[0][0]
    use = counts * plan.mcpe[plan.cls][:, None] * 0.97
    grants = np.zeros_like(use)
    credits = {e["code"]: e["credits_per_month"] for e in cat.editions.to_dicts()}
    credits |= {p["code"]: p["credits"] for p in pk}
    for o in plan.orders:
        for k in range(o["term"] or 1):
            a = _plus_days(o["start"], cat.period_days * k, tz) if k else o["start"]
            if a + cat.period_days * DAY > p0 and (a - p0) // DAY < days:
                grants[o["cust"], max(0, (a - p0) // DAY)] += credits[o["product"]]
    buyer, bought, bal = rng.random(plan.n) < 0.65, np.zeros(plan.n), np.zeros(plan.n)
    buyer[plan.spenders] = False
    for d, (d0, d1) in enumerate(bounds):
        bal += grants[:, d]
        low = buyer & (bought < 3) & (use[:, d] > 0) & (bal - use[:, d] < 0.15 * plan.ref)
        for c in np.flatnonzero(low):
            lo = max(d0 + 9 * 3600, plan.active_from[c] + 600)
            if lo < d1 - 3 * 3600:
                k = next((i for i, p in enumerate(pk) if p["credits"] >= 10 * use[c, d]), -1)
                plan.orders.append({"ts": int(rng.uniform(lo, d1 - 3 * 3600)), "cust": int(c),
                                    "product": pk[k]["code"], "term": None})  # fmt: skip
                bal[c], bought[c] = bal[c] + pk[k]["credits"], bought[c] + 1
        bal -= use[:, d]
    who = np.setdiff1d(np.arange(plan.n), plan.spenders) if len(plan.spenders) < plan.n else [0]
    for p in pk:  # every package appears at least once
        if p["code"] not in {o["product"] for o in plan.orders}:
            c, (d0, d1) = int(rng.choice(who)), bounds[int(rng.integers(days))]
            t = min(max(d0 + 10 * 3600, int(plan.active_from[c]) + 600), d1 - 60)
            plan.orders.append({"ts": t, "cust": c, "product": p["code"], "term": None})


def _bad_order(kind: str, rng, src: dict, eds: list, pk: list, n: int, t: int, tz) -> dict:
    e = eds[int(rng.integers(len(eds)))]
    r = {"ts": t, "cust": int(rng.integers(n)), "product": e["code"], "term": 1}
    r |= {"amount": e["monthly_fee_cny"], "kind": kind}
    if kind == "unknown_product":
        r |= {"product": "premium", "amount": Decimal("99")}
    elif kind == "bad_term_subscription":
        term = next(m for m in (3, 2, 4, 5, 7) if m not in e["terms_months"])
        r |= {"term": term, "amount": e["monthly_fee_cny"] * term}
    elif kind == "bad_term_package":
        r |= {"product": pk[0]["code"], "term": 12, "amount": pk[0]["price_cny"]}
    elif kind == "wrong_amount":
        r["amount"] += 1
    elif kind == "timestamp_without_offset":
        r["raw_ts"] = datetime.fromtimestamp(t, tz).replace(tzinfo=None).isoformat()
    elif kind == "timestamp_garbage":
        r["raw_ts"] = "not-a-time"
    else:  # a copy of an earlier order, delivered later; the conflicting one an hour off
        r = dict(src, kind=kind, dup_of=src, key=src["key"] + 1 + int(rng.integers(DAY)))
        r["ts"] += 3600 if kind == "duplicate_conflict" else 0
    return r


def _write_orders(path: Path, rng, cat: Catalog, plan: _Plan, bad: bool, bounds, tz) -> tuple:
    price = {e["code"]: e["monthly_fee_cny"] for e in cat.editions.to_dicts()}
    price |= {p["code"]: p["price_cny"] for p in cat.packages.to_dicts()}
    rows = [dict(o, key=o["ts"]) for o in plan.orders]
    for r in rows:
        r["amount"] = price[r["product"]] * (r["term"] or 1)
    n_good, kinds = len(rows), {}
    eds, pk = cat.editions.to_dicts(), cat.packages.to_dicts()
    for _ in range(max(1, plan.n // 1000) if bad and rows else 0):
        for kind in [k for k in ORDER_KINDS if pk or k != "bad_term_package"]:
            t = int(rng.uniform(bounds[0][0] - 5 * DAY, bounds[-1][1]))
            src = rows[int(rng.integers(n_good))]
            rows.append({"key": t} | _bad_order(kind, rng, src, eds, pk, plan.n, t, tz))
            kinds[kind] = kinds.get(kind, 0) + 1
    rows.sort(key=lambda r: (r["key"], "dup_of" in r))
    for i, r in enumerate(r for r in rows if "dup_of" not in r):
        r["id"] = f"o{i + 1:06d}"
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"])
    for r in rows:
        ts = r.get("raw_ts") or datetime.fromtimestamp(r["ts"], tz).isoformat()
        if "raw_ts" not in r and r["ts"] % 17 == 0:  # a few written in UTC
            ts = datetime.fromtimestamp(r["ts"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        oid = r["dup_of"]["id"] if "dup_of" in r else r["id"]
        amount = f"{r['amount']:.2f}"
        w.writerow([oid, plan.ids[r["cust"]], r["product"], r["term"] or "", amount, ts])
    path.write_text(out.getvalue(), encoding="utf-8")
    return len(rows), kinds


def _day_arrays(rng, plan: _Plan, model: _Model, counts: np.ndarray, d0: int, d1: int) -> dict:
    """One day's events as numpy columns, sorted by time."""
    n = int(counts.sum())
    cust = np.repeat(np.arange(plan.n, dtype=np.int32), counts)
    lo = np.clip(plan.active_from[cust] - d0, 0, d1 - d0)
    hi = np.clip(plan.active_until[cust] - d0, 0, d1 - d0)
    frac = np.interp(rng.random(n), CDF, np.linspace(0, 1, 25))  # busier by day than by night
    ms = np.minimum(d0 * 1000 + ((lo + frac * (hi - lo)) * 1000).astype(np.int64), d1 * 1000 - 1)
    order = np.argsort(ms, kind="stable")
    cust, ms = cust[order], ms[order]
    u, f, ccls = rng.random(n), np.zeros(n, dtype=np.int16), plan.cls[cust]
    for k, cum in enumerate(plan.cums[:-1]):
        f[ccls == k] = np.searchsorted(cum, u[ccls == k], side="right")
    for j, r in enumerate(model.restricted):  # not entitled at that instant: use another function
        w = plan.win[cust, j]
        m = (f == r) & ~((ms >= w[:, 0] * 1000) & (ms < w[:, 1] * 1000))
        f[m] = np.searchsorted(plan.cums[-1], rng.random(int(m.sum())), side="right")
    q = np.zeros(n, dtype=np.int64)
    for i in range(len(model.fns)):
        q[f == i] = model.quantities(rng, i, int((f == i).sum()))
    seats = plan.seats[cust].astype(np.int32)
    acct = 1 + (rng.random(n) ** 2 * seats).astype(np.int32)
    m = plan.over[cust] & (rng.random(n) < 0.03)
    acct[m] = seats[m] + 1 + rng.integers(0, 2, int(m.sum()), dtype=np.int32)
    ok, utc = rng.random(n) >= 0.03, rng.random(n) < 0.1
    return {"c": cust, "ms": ms, "f": f, "q": q, "ok": ok, "k": acct, "z": utc}


def _render(cols: dict, cs: int, ce: int, prefix: str, cust_s, fn_s, tz: str, off) -> pl.Series:
    """JSON lines of events cs..ce, built column-wise by Polars."""
    df = pl.DataFrame({k: cols[k][cs:ce] for k in ("q", "ok", "k", "ms", "z")})
    df = df.with_columns(n=pl.int_range(cs + 1, ce + 1), cp=cust_s.gather(cols["c"][cs:ce]),
                         fp=fn_s.gather(cols["f"][cs:ce]))  # fmt: skip
    utc = pl.from_epoch("ms", time_unit="ms")
    if off is None:  # the zone changes its offset this day: each line's own offset
        local = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.replace_time_zone(None)
        off_ms = (local - utc).dt.total_milliseconds()
    else:
        off_ms = pl.lit(off * 1000)
    mins = off_ms.abs() // 60_000
    hh, mm = ((x).cast(pl.String).str.zfill(2) for x in (mins // 60, mins % 60))
    sign = pl.when(off_ms < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    local_end = pl.concat_str([sign, hh, pl.lit(":"), mm, pl.lit('"}')])
    wall = pl.from_epoch(pl.col("ms") + pl.when("z").then(0).otherwise(off_ms), time_unit="ms")
    parts = [
        pl.lit(prefix), pl.col("n").cast(pl.String), pl.col("cp"), pl.col("k").cast(pl.String),
        pl.col("fp"), (pl.col("q") / MICRO).cast(pl.String).str.strip_suffix(".0"),
        pl.when("ok").then(pl.lit(',"status":"succeeded","occurred_at":"'))
        .otherwise(pl.lit(',"status":"failed","occurred_at":"')),
        wall.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        pl.when("z").then(pl.lit('Z"}')).otherwise(local_end),
    ]  # fmt: skip
    return df.select(pl.concat_str(parts)).to_series()


def _bad_ctx(cat: Catalog, model: _Model, plan: _Plan) -> tuple[list[str], dict]:
    """The bad-line kinds this catalog allows, and what it takes to write them."""
    ctx: dict = {"n": plan.n, "width": len(plan.ids[0]) - 1 if plan.ids else 5}
    ctx["unknown_fn"] = next(s for s in ("video_upscale", "upscale_x") if s not in model.codes)
    if allowed := [f for f in model.fns if f["allowed_quantities_micro"]]:
        ok = set(allowed[0]["allowed_quantities_micro"])
        ctx["allowed"] = (allowed[0]["code"], next(v for v in (12, 7, 11) if v * MICRO not in ok))
    ctx["whole"] = [f["code"] for f in model.fns if f["whole_number"]]
    if model.restricted:
        r = model.fns[model.restricted[0]]
        free = [c for c, h in enumerate(plan.held) if h and not set(h) & set(r["editions"])]
        basic = [c for c in free if set(plan.held[c]) == {cat.editions["code"][0]}]
        ctx["restricted"], ctx["plain"] = r["code"], [plan.ids[c] for c in basic or free]
    need = {"quantity_not_allowed": "allowed", "fractional_whole_number": "whole"}
    need["not_entitled"] = "plain"
    return [k for k in EVENT_KINDS if k not in need or ctx.get(need[k])], ctx


def _bad_line(kind: str, ev: dict, g: int, ctx: dict) -> str:
    """A bad line of the given kind, made from a good event."""
    if kind == "malformed_json":
        s = json.dumps(ev, **JSON)
        return s[: len(s) // 2]
    ev = dict(ev)
    if kind == "missing_field":
        del ev[FIELDS[g % len(FIELDS)]]
    elif kind == "wrong_type":
        ev["quantity"] = "abc"
    elif kind == "unknown_function":
        ev["function"] = ctx["unknown_fn"]
    elif kind == "quantity_not_positive":
        ev["quantity"] = 0 if g % 2 else -5
    elif kind == "quantity_not_allowed":
        ev["function"], ev["quantity"] = ctx["allowed"]
    elif kind == "fractional_whole_number":
        ev["function"], ev["quantity"] = ctx["whole"][g % len(ctx["whole"])], 2.5
    elif kind == "timestamp_without_offset":
        ev["occurred_at"] = ev["occurred_at"][:23]
    elif kind == "unknown_customer":
        ev["customer_id"] = cid = f"c{ctx['n'] + 1001 + g:0{ctx['width']}d}"
        ev["account_id"] = cid + "-a1"
    elif kind == "not_entitled":
        cid = ctx["plain"][g % len(ctx["plain"])]
        ev |= {"customer_id": cid, "account_id": cid + "-a1", "function": ctx["restricted"]}
    elif kind == "duplicate_conflict":  # same event_id, other status
        ev["status"] = "failed" if ev["status"] == "succeeded" else "succeeded"
    return json.dumps(ev, **JSON)


def _bad_chunk(kinds, pos, cs, ce, lines, bad_set, saved, g, ctx, event) -> dict[int, tuple]:
    """(kind, line) replacing the good line at each position of pos; duplicates copy others."""
    out = {}
    for t, (i, kind) in enumerate(zip(pos, kinds, strict=True)):
        gi = g + t
        if kind in ("exact_duplicate", "duplicate_conflict"):
            j = i - 1 - (gi * 7919 % min(20, i - cs)) if i > cs else i + 1
            while j in bad_set and cs <= j < ce:
                j += -1 if j < i else 1
            if kind == "exact_duplicate" and saved and gi % 2:  # from the previous day's file
                out[i] = kind, saved[gi % len(saved)]
            elif not cs <= j < ce:
                out[i] = "malformed_json", _bad_line("malformed_json", event(i), gi, ctx)
            elif kind == "exact_duplicate":
                out[i] = kind, lines[j - cs]
            else:
                out[i] = kind, _bad_line(kind, event(j), gi, ctx)
        else:
            out[i] = kind, _bad_line(kind, event(i), gi, ctx)
    return out


def _event(plan: _Plan, model: _Model, cols: dict, i: int, ymd: str, tz: ZoneInfo) -> dict:
    """Event i of the day as a dict (for bad lines, made from good ones)."""
    cid, q, ms = plan.ids[cols["c"][i]], int(cols["q"][i]), int(cols["ms"][i])
    at = datetime.fromtimestamp(ms // 1000, tz).replace(microsecond=ms % 1000 * 1000)
    return {"event_id": f"e-{ymd}-{i + 1}", "customer_id": cid,
            "account_id": f"{cid}-a{cols['k'][i]}", "function": model.codes[cols["f"][i]],
            "quantity": q // MICRO if q % MICRO == 0 else q / MICRO,
            "status": "succeeded" if cols["ok"][i] else "failed",
            "occurred_at": at.isoformat(timespec="milliseconds")}  # fmt: skip


def _write_day(path, plan, model, cols, counted, ymd, pos, kinds, g, saved, ctx, *fmt) -> list:
    """Render, spoil and write one day's file in chunks; return a few lines to re-deliver."""
    cust_s, fn_s, tz, off, gz = fmt
    n, bad_set, zone = len(cols["ms"]), set(pos.tolist()), ZoneInfo(tz)
    prefix = '{"event_id":"e-' + ymd + "-"
    with ExitStack() as stack:  # compress on a second thread while the next chunk renders
        out = stack.enter_context(path.open("wb"))
        if gz:
            out = stack.enter_context(gzip.GzipFile("", "wb", 1, out, mtime=0))
        pool, pending = stack.enter_context(ThreadPoolExecutor(1)), []
        for cs in range(0, max(n, 1), CHUNK):
            ce = min(n, cs + CHUNK)
            lines = _render(cols, cs, ce, prefix, cust_s, fn_s, tz, off)
            a, b = (int(x) for x in np.searchsorted(pos, [cs, ce]))
            event = partial(_event, plan, model, cols, ymd=ymd, tz=zone)
            bad = _bad_chunk(kinds[a:b], pos[a:b].tolist(), cs, ce, lines, bad_set, saved,
                             g + a, ctx, event)  # fmt: skip
            for kind, _ in bad.values():
                counted[kind] = counted.get(kind, 0) + 1
            if bad:
                vals = pl.Series([line for _, line in bad.values()], dtype=pl.String)
                lines = lines.scatter(np.array(list(bad)) - cs, vals)
            buf = io.BytesIO()
            pl.DataFrame({"l": lines}).write_csv(buf, include_header=False, quote_style="never")
            pending.append(pool.submit(out.write, buf.getvalue()))
            if len(pending) > 1:
                pending.pop(0).result()
        for f in pending:
            f.result()
    good = [i for i in range(max(cs, ce - 64), ce) if i not in bad_set]
    return [lines[i - cs] for i in good[:: max(1, len(good) // 4)]]


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
    """Write a seeded synthetic inbox (orders CSV + daily usage JSON Lines) under data_dir."""
    if customers < 1 or days < 1 or events_per_day < 0:
        raise ValueError("generate needs customers >= 1, days >= 1 and events_per_day >= 0")
    cat, tz, rng = catalog or load_catalog(), ZoneInfo(billing_tz), np.random.default_rng(seed)
    model, data_dir = _Model(cat, seed), Path(data_dir)
    day_list = [start + timedelta(days=d) for d in range(days)]
    bounds = [(_midnight(d, tz), _midnight(d + timedelta(days=1), tz)) for d in day_list]
    plan = _plan(rng, cat, model, customers, start, days, tz)
    _overspend(rng, plan, days, events_per_day, bounds[0][0], bounds[-1][1])
    counts = np.zeros((customers, days), dtype=np.int64)
    for d, (d0, d1) in enumerate(bounds):
        lo, hi = np.maximum(plan.active_from, d0), np.minimum(plan.active_until, d1)
        p = plan.weight * np.clip((hi - lo) / (d1 - d0), 0, 1)
        if p.sum() > 0:
            counts[:, d] = rng.multinomial(events_per_day, p / p.sum())
    _packages(rng, cat, plan, counts, bounds, tz)
    orders_file = data_dir / "inbox" / "orders" / f"orders-{start.isoformat()}.csv"
    orders_file.parent.mkdir(parents=True, exist_ok=True)
    n_orders, order_kinds = _write_orders(orders_file, rng, cat, plan, bad_lines, bounds, tz)
    if progress:
        progress(f"wrote {orders_file} ({n_orders} orders)")
    kinds, ctx = _bad_ctx(cat, model, plan)
    n_bad = round(events_per_day * days * BAD_RATE) if bad_lines else 0
    if bad_lines and events_per_day * days >= 1000:
        n_bad = max(n_bad, len(kinds))
    cust_s = pl.Series([f'","customer_id":"{c}","account_id":"{c}-a' for c in plan.ids])
    fn_s = pl.Series([f'","function":{json.dumps(c)},"quantity":' for c in model.codes])
    usage_files, events, g, saved, event_kinds = [], 0, 0, [], {}
    for d, (day, (d0, d1)) in enumerate(zip(day_list, bounds, strict=True)):
        cols = _day_arrays(rng, plan, model, counts[:, d], d0, d1)
        n, ymd = len(cols["ms"]), day.strftime("%Y%m%d")
        nb = min((d + 1) * n_bad // days - d * n_bad // days, n // 2)
        pos = np.sort(rng.choice(n, nb, replace=False)) if nb else np.zeros(0, dtype=np.int64)
        day_kinds = [kinds[(g + t) % len(kinds)] for t in rng.permutation(nb)]
        offs = {datetime.fromtimestamp(t, tz).utcoffset() for t in (d0, d1 - 1)}
        off = int(offs.pop().total_seconds()) if len(offs) == 1 else None
        path = data_dir / "inbox" / "usage" / f"{day:%Y/%m}" / f"usage-{day}.jsonl"
        path = path.with_suffix(".jsonl.gz") if gzip_usage else path
        path.parent.mkdir(parents=True, exist_ok=True)
        args = (ymd, pos, day_kinds, g, saved, ctx, cust_s, fn_s, billing_tz, off, gzip_usage)
        saved = _write_day(path, plan, model, cols, event_kinds, *args)
        g += nb
        usage_files.append(path)
        events += n
        if progress:
            progress(f"wrote {path} ({n} events)")
    return GenerateSummary(
        orders_file=orders_file, usage_files=usage_files, orders=n_orders, events=events,
        bad_order_rows=sum(order_kinds.values()), bad_event_lines=sum(event_kinds.values()),
        first_day=start, last_day=day_list[-1], customers=customers,
        bad_event_kinds=event_kinds, bad_order_kinds=order_kinds,
    )  # fmt: skip
