"""The set-based engine against the per-event reference model over random scenarios."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from tasks.settings import DEFAULT_CATALOG
from tests.conftest import Inbox
from tests.property_scenarios import (
    CUSTOMER_DAY_FIELDS,
    PERIOD_DAYS,
    START,
    instant,
    instants,
)
from tests.reference import DEFAULT_CATALOG as REF_CATALOG
from tests.reference import Event, Order, invariant_violations, reference_bill

PRICES = {
    "basic": (Decimal("30"), 300),
    "professional": (Decimal("118"), 1250),
    "enterprise": (Decimal("10000"), 110000),
    "package_100": (Decimal("100"), 1050),
}

orders_st = st.lists(
    st.tuples(st.sampled_from(list(PRICES)), st.sampled_from([1, 6]), instants),
    min_size=1,
    max_size=3,
)
events_st = st.lists(
    st.tuples(st.integers(1, 700), instants, st.integers(0, 59)),
    max_size=12,
)
scenario = st.lists(st.tuples(orders_st, events_st), min_size=1, max_size=3)


def _catalog_file(root: Path) -> Path:
    text = DEFAULT_CATALOG.read_text().replace("period_days = 30", f"period_days = {PERIOD_DAYS}")
    path = root / "catalog.toml"
    path.write_text(text)
    return path


def _build(spec):
    orders, events = [], []
    for c, (order_specs, event_specs) in enumerate(spec):
        cid = f"c{c}"
        for i, (product, term, (d, m)) in enumerate(order_specs):
            if c == 0 and i == 0:
                d = 0  # the first billing day is START
            price, _ = PRICES[product]
            months = None if product.startswith("package") else term
            orders.append(
                Order(f"o{c}{i}", cid, product, months, price * (months or 1), instant(d, m))
            )
        for j, (credits, (d, m), s) in enumerate(event_specs):
            events.append(Event(f"e{c}-{j:02d}", cid, credits, instant(d, m, s)))
    return orders, events


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario, st.integers(2, 7))
def test_engine_matches_the_per_event_reference_model(spec, n_days):
    orders, events = _build(spec)
    last = START + timedelta(days=n_days - 1)
    ref = reference_bill(
        orders, events, START, last, catalog=REF_CATALOG | {"period_days": PERIOD_DAYS}
    )
    assert invariant_violations(ref) == []
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Inbox(Path(tmp) / "data")
        inbox.settings_overrides = {"catalog_path": _catalog_file(Path(tmp))}
        inbox.deliver_reference(orders, events)
        inbox.bill(last)
        con = duckdb.connect(str(inbox.settings.db), read_only=True)
        cols = ", ".join(CUSTOMER_DAY_FIELDS)
        got = {
            (r[0], r[1]): dict(zip(CUSTOMER_DAY_FIELDS, r[2:], strict=True))
            for r in con.execute(
                f"select customer_id, day, {cols} from customer_days where day <= ?", [last]
            ).fetchall()
        }
        want = {k: {f: v[f] for f in CUSTOMER_DAY_FIELDS} for k, v in ref.customer_days.items()}
        assert got == want
        ledger = Counter(
            con.execute(
                "select kind, customer_id, pool_id, event_id, posted_at, credits from ledger "
                "where kind <> 'grant' and day <= ?",
                [last],
            ).fetchall()
        )
        for kind in sorted({k for k, *_ in ledger}):
            note(f"ledger has {kind}")
        assert ledger == Counter(
            (k, c, p, e, t.astimezone(ZoneInfo("UTC")), n) for k, c, p, e, t, n in ref.draws
        )
        pools = dict(
            con.execute(
                "select pool_id, remaining from pools where available_from < ?",
                [instant(n_days, 0)],
            ).fetchall()
        )
        assert pools == {
            k: p["remaining"]
            for k, p in ref.pools.items()
            if p["available_from"] < instant(n_days, 0)
        }
        con.close()
