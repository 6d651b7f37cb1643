"""A day's usage events: drawn column-wise with numpy (no loop over events), rendered as JSON
Lines (billing-rules §3) column-wise by Polars."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from tasks.synthetic.customers import Customers
from tasks.synthetic.model import HOUR_CDF, MICRO, Model, midnight

FAILED_SHARE, UTC_SHARE, OVER_SEAT_SHARE = 0.03, 0.1, 0.03


def draw_day(
    rng: np.random.Generator, model: Model, cust: Customers, counts: np.ndarray, d0: int, d1: int
) -> dict[str, np.ndarray]:
    """One day's events as columns in time order: customer c, instant ms, function f,
    quantity q (micro-units), succeeded ok, account k, written in UTC z."""
    n = int(counts.sum())
    c = np.repeat(np.arange(cust.n, dtype=np.int32), counts)
    lo = np.clip(cust.active_from[c] - d0, 0, d1 - d0)
    hi = np.clip(cust.active_until[c] - d0, 0, d1 - d0)
    frac = np.interp(rng.random(n), HOUR_CDF, np.linspace(0, 1, 25))  # busier by day
    ms = np.minimum(d0 * 1000 + ((lo + frac * (hi - lo)) * 1000).astype(np.int64), d1 * 1000 - 1)
    order = np.argsort(ms, kind="stable")
    c, ms = c[order], ms[order]
    f = _functions(rng, model, cust, c, ms)
    q = np.zeros(n, dtype=np.int64)
    for i in range(len(model.fns)):
        q[f == i] = model.quantities(rng, i, int((f == i).sum()))
    seats = cust.seats[c].astype(np.int32)
    k = 1 + (rng.random(n) ** 2 * seats).astype(np.int32)
    m = cust.over[c] & (rng.random(n) < OVER_SEAT_SHARE)
    k[m] = seats[m] + 1 + rng.integers(0, 2, int(m.sum()), dtype=np.int32)
    ok, z = rng.random(n) >= FAILED_SHARE, rng.random(n) < UTC_SHARE
    return {"c": c, "ms": ms, "f": f, "q": q, "ok": ok, "k": k, "z": z}


def _functions(rng, model: Model, cust: Customers, c: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Each event's function from its customer's class mix; a restricted one the customer is
    not entitled to at that instant gives way to one open to everyone."""
    u, f, ccls = rng.random(len(c)), np.zeros(len(c), dtype=np.int16), cust.cls[c]
    for k, cum in enumerate(cust.cums[:-1]):
        f[ccls == k] = np.searchsorted(cum, u[ccls == k], side="right")
    for j, r in enumerate(model.restricted):
        w = cust.win[c, j]
        m = (f == r) & ~((ms >= w[:, 0] * 1000) & (ms < w[:, 1] * 1000))
        f[m] = np.searchsorted(cust.cums[-1], rng.random(int(m.sum())), side="right")
    return f


@dataclass(frozen=True)
class Labels:
    """The fixed pieces of the lines: a customer's ids, a function's name, by index."""

    ids: list[str]
    codes: list[str]
    customers: pl.Series
    functions: pl.Series

    @classmethod
    def of(cls, ids: list[str], codes: list[str]) -> Labels:
        cust = pl.Series([f'","customer_id":"{c}","account_id":"{c}-a' for c in ids])
        fns = pl.Series([f'","function":{json.dumps(c)},"quantity":' for c in codes])
        return cls(ids, codes, cust, fns)


@dataclass(frozen=True)
class Stamp:
    """How one file's lines of a day start and tell time: the event ids' head (e-20261102-),
    the zone, and its offset in seconds that day (None: it changes that day)."""

    ids: str
    tz: str
    off: int | None

    @classmethod
    def of(cls, prefix: str, day: date, tz: str) -> Stamp:
        zone = ZoneInfo(tz)
        d0, d1 = midnight(day, zone), midnight(day + timedelta(days=1), zone)
        offs = {datetime.fromtimestamp(t, zone).utcoffset() for t in (d0, d1 - 1)}
        off = int(offs.pop().total_seconds()) if len(offs) == 1 else None
        return cls(f"{prefix}-{day:%Y%m%d}-", tz, off)


def render(cols: dict, cs: int, ce: int, labels: Labels, stamp: Stamp) -> pl.Series:
    """JSON lines of events cs..ce (numbered from cs + 1), built column-wise by Polars."""
    df = pl.DataFrame({k: cols[k][cs:ce] for k in ("q", "ok", "k", "ms", "z")})
    df = df.with_columns(
        n=pl.int_range(cs + 1, ce + 1),
        cp=labels.customers.gather(cols["c"][cs:ce]),
        fp=labels.functions.gather(cols["f"][cs:ce]),
    )
    utc = pl.from_epoch("ms", time_unit="ms")
    if stamp.off is None:  # the zone changes its offset this day: each line its own offset
        zone = stamp.tz
        local = utc.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
        off_ms = (local.dt.replace_time_zone(None) - utc).dt.total_milliseconds()
    else:
        off_ms = pl.lit(stamp.off * 1000)
    mins = off_ms.abs() // 60_000
    hh, mm = (x.cast(pl.String).str.zfill(2) for x in (mins // 60, mins % 60))
    sign = pl.when(off_ms < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    local_end = pl.concat_str([sign, hh, pl.lit(":"), mm, pl.lit('"}')])
    wall = pl.from_epoch(pl.col("ms") + pl.when("z").then(0).otherwise(off_ms), time_unit="ms")
    status = pl.when("ok").then(pl.lit(',"status":"succeeded","occurred_at":"'))
    parts = [
        pl.lit('{"event_id":"' + stamp.ids),
        pl.col("n").cast(pl.String),
        pl.col("cp"),
        pl.col("k").cast(pl.String),
        pl.col("fp"),
        (pl.col("q") / MICRO).cast(pl.String).str.strip_suffix(".0"),
        status.otherwise(pl.lit(',"status":"failed","occurred_at":"')),
        wall.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        pl.when("z").then(pl.lit('Z"}')).otherwise(local_end),
    ]
    return df.select(pl.concat_str(parts)).to_series()


def event_at(cols: dict, i: int, labels: Labels, stamp: Stamp) -> dict:
    """Event i of the day as a dict (bad lines are made from good events)."""
    cid, q, ms = labels.ids[cols["c"][i]], int(cols["q"][i]), int(cols["ms"][i])
    at = datetime.fromtimestamp(ms // 1000, ZoneInfo(stamp.tz)).replace(
        microsecond=ms % 1000 * 1000
    )
    return {
        "event_id": f"{stamp.ids}{i + 1}",
        "customer_id": cid,
        "account_id": f"{cid}-a{cols['k'][i]}",
        "function": labels.codes[cols["f"][i]],
        "quantity": q // MICRO if q % MICRO == 0 else q / MICRO,
        "status": "succeeded" if cols["ok"][i] else "failed",
        "occurred_at": at.isoformat(timespec="milliseconds"),
    }
