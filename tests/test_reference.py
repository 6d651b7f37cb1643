"""The worked examples of billing-rules §10 (A-F, I), asserted against the reference model."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import Event, Order, add_months, invariant_violations, reference_bill

CST = timezone(timedelta(hours=8))


def at(text: str) -> datetime:
    """A +08:00 instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def basic(order_id, customer, when, months=1):
    """A basic subscription order."""
    return Order(order_id, customer, "basic", months, Decimal(30 * months), at(when))


def package_100(order_id, customer, when):
    """A package_100 order."""
    return Order(order_id, customer, "package_100", None, Decimal("100"), at(when))


def example_a_events():
    """The four events of example A (3 + 30 + 13 + 3 credits)."""
    return [
        Event("a1", "c1", 3, at("2026-11-26 11:00")),
        Event("a2", "c1", 30, at("2026-11-26 12:00")),
        Event("a3", "c1", 13, at("2026-11-26 13:00")),
        Event("a4", "c1", 3, at("2026-11-26 14:00")),
    ]


def test_example_a_basic_month_usage_expiry_breakage():
    orders = [basic("O1", "c1", "2026-11-26 10:00")]
    r = reference_bill(orders, example_a_events(), date(2026, 11, 26), date(2026, 12, 26))
    pool = r.pools["O1#0"]
    assert pool["credits"] == 300 and pool["amount_cny"] == Decimal("30")
    assert pool["available_from"] == at("2026-11-26 10:00")
    assert pool["expires_at"] == at("2026-12-26 00:00")
    first = r.customer_days[("c1", date(2026, 11, 26))]
    assert first["granted"] == 300 and first["used"] == 49 and first["rated"] == 49
    assert first["balance"] == 251
    assert first["revenue_cny"] == Decimal("4.90")
    last = r.customer_days[("c1", date(2026, 12, 25))]
    assert last["expired"] == 251 and last["balance"] == 0
    assert last["breakage_cny"] == Decimal("25.10") and last["revenue_cny"] == Decimal("0.00")
    assert ("expire", "c1", "O1#0", None, at("2026-12-26 00:00"), 251) in r.draws
    assert pool["revenue_cny"] == Decimal("4.90") and pool["breakage_cny"] == Decimal("25.10")
    assert pool["used"] == 49 and pool["expired"] == 251 and pool["remaining"] == 0
    # With no pool left after expiry the customer is suspended (no arrears).
    assert r.suspensions[(date(2026, 12, 25), "c1")]["reason"] == "no_credits"
    assert r.changes[(date(2026, 12, 25), "c1")] == "suspended"
    assert invariant_violations(r) == []


def test_example_b_subscription_before_package():
    orders = [basic("O1", "c1", "2026-11-26 10:00"), package_100("O2", "c1", "2026-11-26 10:05")]
    events = example_a_events() + [Event("b1", "c1", 400, at("2026-11-27 09:00"))]
    r = reference_bill(orders, events, date(2026, 11, 26), date(2026, 11, 27))
    b1 = [(d[2], d[5]) for d in r.draws if d[3] == "b1"]
    assert b1 == [("O1#0", 251), ("O2#0", 149)]
    day = r.customer_days[("c1", date(2026, 11, 27))]
    assert day["used"] == 400 and day["balance"] == 1050 - 149
    assert invariant_violations(r) == []


def test_example_c_same_expiry_earlier_start_first():
    # Order ids chosen so that pool_id order would pick professional: available_from decides.
    orders = [
        basic("O2", "c1", "2026-11-26 09:00"),
        Order("O1", "c1", "professional", 1, Decimal("118"), at("2026-11-26 11:00")),
    ]
    events = [Event("e1", "c1", 10, at("2026-11-26 12:00"))]
    r = reference_bill(orders, events, date(2026, 11, 26), date(2026, 11, 26))
    assert r.pools["O2#0"]["expires_at"] == r.pools["O1#0"]["expires_at"]
    assert [(d[0], d[2], d[5]) for d in r.draws] == [("use", "O2#0", 10)]


def test_example_d_arrears_settled_by_package_and_reinstated():
    orders = [basic("O1", "c1", "2026-11-26 10:00"), package_100("O2", "c1", "2026-11-27 08:00")]
    events = [
        Event("d1", "c1", 200, at("2026-11-26 12:00")),
        Event("d2", "c1", 150, at("2026-11-26 13:00")),
    ]
    r = reference_bill(orders, events, date(2026, 11, 26), date(2026, 11, 27))
    d1, d2 = date(2026, 11, 26), date(2026, 11, 27)
    first = r.customer_days[("c1", d1)]
    assert first["used"] == 300 and first["arrears_opened"] == 50
    assert first["arrears_outstanding"] == 50 and first["balance"] == 0
    assert r.suspensions[(d1, "c1")] == {
        "reason": "arrears",
        "net_balance": -50,
        "arrears_outstanding": 50,
        "suspended_since": d1,
    }
    assert r.changes[(d1, "c1")] == "suspended"
    assert ("arrears", "c1", None, "d2", at("2026-11-26 13:00"), 50) in r.draws
    assert ("settle", "c1", "O2#0", None, at("2026-11-27 08:00"), 50) in r.draws
    second = r.customer_days[("c1", d2)]
    assert second["settled"] == 50 and second["arrears_outstanding"] == 0
    assert second["granted"] == 1050 and second["balance"] == 1000
    assert r.pools["O2#0"]["remaining"] == 1000
    assert (d2, "c1") not in r.suspensions
    assert r.changes[(d2, "c1")] == "reinstated"
    # 50 settled credits of package_100 are recognised: round(50 * 100 / 1050, 2) = 4.76.
    assert second["revenue_cny"] == Decimal("4.76")
    assert invariant_violations(r) == []


def test_example_e_professional_six_months():
    orders = [Order("O1", "c1", "professional", 6, Decimal("708"), at("2026-01-15 09:00"))]
    r = reference_bill(orders, [], date(2026, 1, 15), date(2026, 1, 15))
    starts = [r.pools[f"O1#{k}"]["available_from"] for k in range(6)]
    assert starts == [
        at("2026-01-15 09:00"),
        at("2026-02-14 00:00"),
        at("2026-03-16 00:00"),
        at("2026-04-15 00:00"),
        at("2026-05-15 00:00"),
        at("2026-06-14 00:00"),
    ]
    assert r.pools["O1#5"]["expires_at"] == at("2026-07-14 00:00")
    assert all(r.pools[f"O1#{k}"]["credits"] == 1250 for k in range(6))
    assert all(r.pools[f"O1#{k}"]["amount_cny"] == Decimal("118") for k in range(6))
    assert sum(p["amount_cny"] for p in r.pools.values()) == Decimal("708")


def test_example_f_same_edition_is_a_renewal():
    orders = [basic("O1", "c1", "2026-11-26 10:00"), basic("O2", "c1", "2026-12-20 15:00")]
    r = reference_bill(orders, [], date(2026, 11, 26), date(2026, 12, 26))
    assert r.pools["O2#0"]["available_from"] == at("2026-12-26 00:00")
    assert r.pools["O2#0"]["expires_at"] == at("2027-01-25 00:00")
    # The renewal is granted on 12-26 (not on 12-20); nothing is suspended in between.
    assert r.customer_days[("c1", date(2026, 12, 20))]["granted"] == 0
    assert r.customer_days[("c1", date(2026, 12, 25))]["expired"] == 300
    assert r.customer_days[("c1", date(2026, 12, 26))]["granted"] == 300
    assert not r.suspensions


def test_example_i_package_leap_day_clamped():
    assert add_months(date(2028, 2, 29), 12) == date(2029, 2, 28)
    r = reference_bill(
        [package_100("O1", "c1", "2028-02-29 15:00")], [], date(2028, 2, 29), date(2028, 2, 29)
    )
    assert r.pools["O1#0"]["expires_at"] == at("2029-02-28 00:00")


def test_at_risk_projection():
    orders = [basic("O1", "c1", "2026-11-26 00:00")]
    events = [Event("e1", "c1", 250, at("2026-11-26 10:00"))]
    r = reference_bill(orders, events, date(2026, 11, 26), date(2026, 11, 27))
    # net 50, total 250: 7*50 < 3*250, exhaustion 11-26 + floor(350/250) = 11-27.
    assert r.at_risk[(date(2026, 11, 26), "c1")] == {
        "net_balance": 50,
        "total_rated_7d": 250,
        "projected_exhaustion_date": date(2026, 11, 27),
    }


@st.composite
def scenarios(draw):
    """Random small order books and event streams over a fortnight from 2026-11-26."""
    start = at("2026-11-26 00:00")
    products = ["basic", "professional", "package_100"]
    orders = []
    for i in range(draw(st.integers(1, 4))):
        product = draw(st.sampled_from(products))
        months = None if product.startswith("package") else draw(st.sampled_from([1, 6]))
        when = start + timedelta(hours=draw(st.integers(0, 24 * 14)))
        orders.append(
            Order(f"O{i}", draw(st.sampled_from("xy")), product, months, Decimal(0), when)
        )
    events = []
    for i in range(draw(st.integers(0, 20))):
        when = start + timedelta(hours=draw(st.integers(0, 24 * 40)))
        credits = draw(st.sampled_from([0, 1, 50, 180, 400]))
        events.append(Event(f"E{i}", draw(st.sampled_from("xy")), credits, when))
    return orders, events


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_reference_keeps_the_conservation_laws(scenario):
    orders, events = scenario
    r = reference_bill(orders, events, date(2026, 11, 26), date(2026, 12, 31))
    assert invariant_violations(r) == []
    for pool in r.pools.values():
        assert pool["revenue_cny"] + pool["breakage_cny"] <= pool["amount_cny"]
