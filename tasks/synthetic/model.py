"""What synthetic inboxes are drawn from: the catalog's products, their prices in force and
the functions' quantity rules (all read from data/, none copied here), the usage mix and the
busy hours of a day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from tasks.catalog import Catalog

MICRO, DAY = 1_000_000, 86_400
# customers spend their credits evenly across the functions open to everyone (a function is
# used the less the more an event of it costs); one entitled to restricted functions puts this
# share of its events on them, evenly
RESTRICTED_SHARE = 0.03
# events per hour of the local day, relative: busier by day than by night
HOURLY = np.array(
    [3, 2, 1.5, 1, 1, 1.5, 3, 6, 10, 14, 16, 16, 13, 14, 16, 16, 15, 14, 13, 14, 15, 13, 9, 5]
)
HOUR_CDF = np.concatenate([[0], np.cumsum(HOURLY) / HOURLY.sum()])


def midnight(d: date, tz: ZoneInfo) -> int:
    """Epoch seconds of the local midnight that starts day d."""
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def plus_days(ts: float, n: int, tz: ZoneInfo) -> int:
    """Local midnight n days after the local date of ts (how periods end, billing-rules §4)."""
    return midnight(datetime.fromtimestamp(ts, tz).date() + timedelta(days=n), tz)


def latest(df: pl.DataFrame) -> list[dict]:
    """One row a code, its latest version, in the catalog's order of codes."""
    return df.unique("code", keep="last", maintain_order=True).to_dicts()


def _prices(cat: Catalog) -> dict[str, list[tuple[float, float, Decimal]]]:
    """Per product: (from, until, price) of each version, in epoch seconds."""
    out: dict[str, list[tuple[float, float, Decimal]]] = {}
    for p in cat.products().iter_rows(named=True):
        start, until = p["effective_from"], p["effective_until"]
        span = (start.timestamp() if start else -np.inf, until.timestamp() if until else np.inf)
        out.setdefault(p["product"], []).append((*span, p["unit_price_cny"]))
    return out


class Model:
    """The catalog as the generators use it: editions and packages with the prices in force at
    an instant, functions with their quantity rules, and an event's mean credits per function."""

    def __init__(self, cat: Catalog, seed: int):
        self.period_days = cat.period_days
        self.editions, self.packages = latest(cat.editions), latest(cat.packages)
        self.fns = latest(cat.functions)
        self.codes = [f["code"] for f in self.fns]
        self.restricted = [i for i, f in enumerate(self.fns) if f["editions"]]
        self.credits_of = {e["code"]: e["credits_per_month"] for e in self.editions}
        self.credits_of |= {p["code"]: p["credits"] for p in self.packages}
        self._prices = _prices(cat)
        side = np.random.default_rng(seed + 1)
        self.mean_credits = np.array(
            [self.credits(i, self.quantities(side, i, 4000)).mean() for i in range(len(self.fns))]
        )
        open_w = 1 / np.maximum(self.mean_credits, 1.0)
        self.base_w = np.where([bool(f["editions"]) for f in self.fns], 0.0, open_w)
        self.base_w /= self.base_w.sum()

    def price(self, product: str, ts: float, term: int | None = None) -> Decimal:
        """What an order of the product at ts costs: its price in force then, times the term."""
        for start, until, price in self._prices[product]:
            if start <= ts < until:
                return price * (term or 1)
        raise KeyError(f"{product} has no price in force at {ts}")

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
        """credits = ceil(quantity / unit_size) x credits_per_unit (billing-rules §2)."""
        return -(-q // self.fns[i]["unit_size_micro"]) * self.fns[i]["credits_per_unit"]

    def cum(self, entitled: tuple[bool, ...]) -> np.ndarray:
        """Cumulative function mix of a customer class (entitled to which restricted functions)."""
        w = self.base_w.copy()
        if on := [r for r, ok in zip(self.restricted, entitled, strict=True) if ok]:
            w *= 1 - RESTRICTED_SHARE
            w[on] = RESTRICTED_SHARE / len(on)
        c = np.cumsum(w)
        return c / c[-1]

    def mean_per_event(self, cum: np.ndarray) -> float:
        """Mean credits of an event drawn from a cumulative mix."""
        return float(np.diff(cum, prepend=0) @ self.mean_credits)

    def heavy_function(self) -> int:
        """The function that spends the most credits in one event of a few units: open to
        everyone, whole numbers of any size."""
        free = [
            i
            for i, f in enumerate(self.fns)
            if not f["editions"] and not f["allowed_quantities_micro"] and f["whole_number"]
        ]
        return max(free, key=lambda i: self.fns[i]["credits_per_unit"])
