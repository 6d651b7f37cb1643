"""The engine against the per-event reference model with two catalog versions (issue 14):
events rated by the version in force at occurred_at, orders priced by the version in force
at purchase, whether the second version was there from the first run or published after
the days it changes were billed (re-rated and re-billed by rule)."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

import tests.reference as reference
from tasks.settings import DEFAULT_CATALOG
from tests.conftest import Inbox
from tests.property_scenarios import (
    CUSTOMER_DAY_FIELDS as FIELDS,
)
from tests.property_scenarios import (
    PERIOD_DAYS,
    SH,
    START,
    instant,
    instants,
)
from tests.reference import DEFAULT_CATALOG as REF_CATALOG
from tests.reference import Event, Order, invariant_violations, reference_bill

UTC = ZoneInfo("UTC")
FUNCTION = "digital_human_spokesperson"  # 1 credit a second, then `SECOND_PRICE`
SECOND_PRICE = 2
PACKAGE_V2 = (Decimal("120"), 1200)  # package_100 from the change on
FIRST = {
    "basic": (Decimal("30"), 300),
    "professional": (Decimal("118"), 1250),
    "package_100": (Decimal("100"), 1050),
}

orders_st = st.lists(
    st.tuples(st.sampled_from(list(FIRST)), st.sampled_from([1, 6]), instants),
    min_size=1,
    max_size=3,
)
events_st = st.lists(st.tuples(st.integers(1, 350), instants, st.integers(0, 59)), max_size=10)
scenario = st.lists(st.tuples(orders_st, events_st), min_size=1, max_size=3)
change_st = st.tuples(st.integers(1, 5), st.sampled_from([0, 9 * 60 + 30, 12 * 60]))


def _catalogs(root: Path, change: datetime) -> tuple[Path, Path]:
    """The catalog with package_100's second version only, and with both second versions."""
    seed = DEFAULT_CATALOG.read_text().replace("period_days = 30", f"period_days = {PERIOD_DAYS}")
    package = (
        f'\n[[packages]]\ncode = "package_100"\neffective_from = {change.isoformat()}\n'
        f'price_cny = "{PACKAGE_V2[0]}"\ncredits = {PACKAGE_V2[1]}\n'
    )
    function = (
        f'\n[[functions]]\ncode = "{FUNCTION}"\neffective_from = "{change.isoformat()}"\n'
        f"credits_per_unit = {SECOND_PRICE}\n"
    )
    one, both = root / "one.toml", root / "both.toml"
    one.write_text(seed + package)
    both.write_text(seed + package + function)
    return one, both


def _price(product: str, at: datetime, change: datetime) -> tuple[Decimal, int]:
    return PACKAGE_V2 if product == "package_100" and at >= change else FIRST[product]


def _build(spec, change: datetime):
    """Orders at the price in force at purchase; events as (quantity, reference Event) rated
    by the version in force at occurred_at."""
    orders, events = [], []
    for c, (order_specs, event_specs) in enumerate(spec):
        cid = f"c{c}"
        for i, (product, term, (d, m)) in enumerate(order_specs):
            if c == 0 and i == 0:
                d = 0  # the first billing day is START
            at = instant(d, m)
            months = None if product.startswith("package") else term
            price = _price(product, at, change)[0] * (months or 1)
            orders.append(Order(f"o{c}{i}", cid, product, months, price, at))
        for j, (quantity, (d, m), s) in enumerate(event_specs):
            at = instant(d, m, s)
            credits = quantity * (SECOND_PRICE if at >= change else 1)
            events.append((quantity, Event(f"e{c}-{j:02d}", cid, credits, at)))
    return orders, events


def _versioned_pools(change: datetime):
    """The reference's make_pools with package_100 priced by the version in force at
    purchase (packages are independent pools; editions keep one version here)."""
    make_pools = reference.make_pools

    def make(orders, zone, catalog):
        later = [o for o in orders if o.product == "package_100" and o.purchased_at >= change]
        rest = [o for o in orders if o not in later]
        v2 = catalog | {"packages": catalog["packages"] | {"package_100": PACKAGE_V2}}
        return make_pools(rest, zone, catalog) + make_pools(later, zone, v2)

    return make


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario, st.integers(2, 7), change_st, st.booleans())
def test_engine_matches_the_reference_with_two_catalog_versions(spec, n_days, change_at, late):
    change = instant(*change_at)
    orders, rated = _build(spec, change)
    events = [e for _, e in rated]
    last = START + timedelta(days=n_days - 1)
    with mock.patch.object(reference, "make_pools", _versioned_pools(change)):
        ref = reference_bill(
            orders, events, START, last, catalog=REF_CATALOG | {"period_days": PERIOD_DAYS}
        )
    assert invariant_violations(ref) == []
    note(f"second version published {'after billing' if late else 'before'}")
    with tempfile.TemporaryDirectory() as tmp:
        one, both = _catalogs(Path(tmp), change)
        inbox = Inbox(Path(tmp) / "data")
        inbox.deliver_reference(orders, [e for _, e in rated], [q for q, _ in rated])
        if late:  # billed at the first price, then the second published with a past instant
            inbox.settings_overrides = {"catalog_path": one}
            inbox.bill(last)
        inbox.settings_overrides = {"catalog_path": both}
        report = inbox.bill(last)
        changed_day = change.astimezone(SH).date()
        repriced = changed_day if late and changed_day <= last else None
        assert report.repriced_from == repriced
        con = duckdb.connect(str(inbox.settings.db), read_only=True)
        got_credits = dict(con.execute("select event_id, credits from rated_events").fetchall())
        assert got_credits == {e.event_id: e.credits for e in events}
        second = con.execute(
            "select count(*) from rated_events as r join catalog_versions as v "
            "on v.version_id = r.catalog_version where v.effective_from is not null"
        ).fetchone()[0]
        assert second == sum(e.occurred_at >= change for e in events)
        cols = ", ".join(FIELDS)
        got = {
            (r[0], r[1]): dict(zip(FIELDS, r[2:], strict=True))
            for r in con.execute(
                f"select customer_id, day, {cols} from customer_days where day <= ?", [last]
            ).fetchall()
        }
        assert got == {k: {f: v[f] for f in FIELDS} for k, v in ref.customer_days.items()}
        ledger = Counter(
            con.execute(
                "select kind, customer_id, pool_id, event_id, posted_at, credits from ledger "
                "where kind <> 'grant' and day <= ?",
                [last],
            ).fetchall()
        )
        assert ledger == Counter(
            (k, c, p, e, t.astimezone(UTC), n) for k, c, p, e, t, n in ref.draws
        )
        end = instant(n_days, 0)
        pools = dict(
            con.execute(
                "select pool_id, credits from pools where available_from < ?", [end]
            ).fetchall()
        )
        assert pools == {k: p["credits"] for k, p in ref.pools.items() if p["available_from"] < end}
        con.close()
