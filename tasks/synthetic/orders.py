"""The orders CSV (billing-rules §3) at the catalog's prices in force, with bad rows of every
reject reason when asked."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from tasks.synthetic.model import DAY, Model

ORDER_KINDS = (
    "unknown_product",
    "bad_term_subscription",
    "bad_term_package",
    "wrong_amount",
    "timestamp_without_offset",
    "timestamp_garbage",
    "duplicate_conflict",
    "exact_duplicate",
)
HEADER = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]
UTC_EVERY = 17  # an order whose instant is a multiple of this many seconds is written in UTC


def plant_bad_orders(
    rng: np.random.Generator, rows: list[dict], model: Model, customers: int, span, tz: ZoneInfo
) -> dict[str, int]:
    """Add one bad row of every kind per 1,000 customers (at least one) to the good rows,
    at instants within span (first, end); returns the count of each kind."""
    n_good, kinds = len(rows), {}
    for r in rows:
        r["amount"] = model.price(r["product"], r["ts"], r["term"])
    for _ in range(max(1, customers // 1000) if rows else 0):
        for kind in [k for k in ORDER_KINDS if model.packages or k != "bad_term_package"]:
            t = int(rng.uniform(*span))
            src = rows[int(rng.integers(n_good))]
            rows.append(_bad_order(kind, rng, src, model, customers, t, tz))
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _bad_order(kind: str, rng, src: dict, model: Model, n: int, t: int, tz: ZoneInfo) -> dict:
    """A bad order row of the given kind; a duplicate copies src (delivered later)."""
    e = model.editions[int(rng.integers(len(model.editions)))]
    fee, pk = model.price(e["code"], t), model.packages
    r = {"ts": t, "key": t, "cust": int(rng.integers(n)), "product": e["code"], "term": 1}
    r |= {"amount": fee, "kind": kind}
    if kind == "unknown_product":
        r |= {"product": "premium", "amount": Decimal("99")}
    elif kind == "bad_term_subscription":
        term = next(m for m in (3, 2, 4, 5, 7) if m not in e["terms_months"])
        r |= {"term": term, "amount": fee * term}
    elif kind == "bad_term_package":
        r |= {"product": pk[0]["code"], "term": 12, "amount": model.price(pk[0]["code"], t)}
    elif kind == "wrong_amount":
        r["amount"] += 1
    elif kind == "timestamp_without_offset":
        r["raw_ts"] = datetime.fromtimestamp(t, tz).replace(tzinfo=None).isoformat()
    elif kind == "timestamp_garbage":
        r["raw_ts"] = "not-a-time"
    else:  # a copy of an earlier order, delivered later; the conflicting one an hour off
        key = src.get("key", src["ts"]) + 1 + int(rng.integers(DAY))
        r = dict(src, kind=kind, dup_of=src, key=key)
        r["ts"] += 3600 if kind == "duplicate_conflict" else 0
    return r


def write_orders(
    path: Path, rows: list[dict], ids: list[str], model: Model, tz: ZoneInfo, first_no: int = 1
) -> int:
    """Write the rows (ts, cust, product, term; a bad one its amount, raw_ts or dup_of) as an
    orders CSV in time order, numbered from first_no; returns the number of rows."""
    rows = sorted(rows, key=lambda r: (r.get("key", r["ts"]), "dup_of" in r))
    digits = max(6, len(str(first_no + len(rows))))
    numbers = {}
    for i, r in enumerate(r for r in rows if "dup_of" not in r):
        numbers[id(r)] = f"o{first_no + i:0{digits}d}"
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for r in rows:
        ts = r.get("raw_ts") or datetime.fromtimestamp(r["ts"], tz).isoformat()
        if "raw_ts" not in r and r["ts"] % UTC_EVERY == 0:
            ts = datetime.fromtimestamp(r["ts"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        oid = numbers[id(r.get("dup_of", r))]
        amount = r["amount"] if "amount" in r else model.price(r["product"], r["ts"], r["term"])
        w.writerow([oid, ids[r["cust"]], r["product"], r["term"] or "", f"{amount:.2f}", ts])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), encoding="utf-8")
    return len(rows)
