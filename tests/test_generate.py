"""Tests of the synthetic inbox generator: determinism, coverage, validity and planted bad lines."""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tasks.catalog import load_catalog
from tasks.generate import EVENT_KINDS, FIELDS, ORDER_KINDS, generate
from tasks.settings import DEFAULT_CATALOG
from tasks.synthetic import stream

CAT = load_catalog()
EDITIONS = {e["code"]: e for e in CAT.editions.to_dicts()}
PACKAGES = {p["code"]: p for p in CAT.packages.to_dicts()}
FUNCTIONS = {f["code"]: f for f in CAT.functions.to_dicts()}
TZ = ZoneInfo("Asia/Shanghai")


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def classify_order(row: dict, seen: dict) -> str | None:
    """Why billing-rules §3 rejects an order row (None: it is good); judged independently."""
    oid, content = row["order_id"], tuple(row.values())
    if oid in seen:
        return "exact_duplicate" if seen[oid] == content else "duplicate_conflict"
    seen[oid] = content
    product, term = row["product"], row["term_months"]
    if product not in EDITIONS and product not in PACKAGES:
        return "unknown_product"
    if product in EDITIONS and (not term or int(term) not in EDITIONS[product]["terms_months"]):
        return "bad_term_subscription"
    if product in PACKAGES and term:
        return "bad_term_package"
    try:
        if datetime.fromisoformat(row["purchased_at"]).tzinfo is None:
            return "timestamp_without_offset"
    except ValueError:
        return "timestamp_garbage"
    if product in EDITIONS:
        expected = EDITIONS[product]["monthly_fee_cny"] * int(term)
    else:
        expected = PACKAGES[product]["price_cny"]
    return None if Decimal(row["amount_cny"]) == expected else "wrong_amount"


def classify_event(line: str, state: dict) -> str | None:
    """Why billing-rules §3 rejects a usage line (None: it is good); judged independently."""
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json"
    if any(k not in ev for k in FIELDS):
        return "missing_field"
    q = ev["quantity"]
    if isinstance(q, bool) or not isinstance(q, int | float):
        return "wrong_type"
    fn = FUNCTIONS.get(ev["function"])
    if fn is None:
        return "unknown_function"
    if q <= 0:
        return "quantity_not_positive"
    allowed = fn["allowed_quantities_micro"]
    if allowed and round(q * 1_000_000) not in allowed:
        return "quantity_not_allowed"
    if fn["whole_number"] and q != int(q):
        return "fractional_whole_number"
    if datetime.fromisoformat(ev["occurred_at"]).tzinfo is None:
        return "timestamp_without_offset"
    if ev["customer_id"] not in state["customers"]:
        return "unknown_customer"
    if fn["editions"] and ev["customer_id"] not in state["enterprise"]:
        return "not_entitled"
    if line in state["lines"]:
        return "exact_duplicate"
    state["lines"].add(line)
    if ev["event_id"] in state["ids"]:
        return "duplicate_conflict"
    state["ids"].add(ev["event_id"])
    return None


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    data = tmp_path_factory.mktemp("inbox")
    messages: list[str] = []
    summary = generate(data, customers=60, days=3, events_per_day=500, progress=messages.append)
    with summary.orders_file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    seen: dict = {}
    orders = [(r, classify_order(r, seen)) for r in rows]
    good = [r for r, kind in orders if kind is None]
    state = {
        "customers": {r["customer_id"] for r in good},
        "enterprise": {r["customer_id"] for r in good if r["product"] == "enterprise"},
        "lines": set(),
        "ids": set(),
    }
    events = []
    for path in summary.usage_files:
        day = date.fromisoformat(path.name.split(".")[0].removeprefix("usage-"))
        events += [(day, line, classify_event(line, state)) for line in read_lines(path)]
    return summary, messages, orders, events


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def files(d: Path, seed: int) -> dict[str, bytes]:
        generate(d, customers=20, days=2, events_per_day=700, seed=seed)
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    first = files(tmp_path / "a", 7)
    assert first == files(tmp_path / "b", 7)
    assert len(first) == 3
    assert first != files(tmp_path / "c", 8)


def test_orders_cover_every_edition_term_and_package_at_catalog_prices(inbox):
    summary, _, orders, _ = inbox
    good = [r for r, kind in orders if kind is None]
    bought = {(r["product"], r["term_months"]) for r in good}
    for code, e in EDITIONS.items():
        for term in e["terms_months"]:
            assert (code, str(term)) in bought
    for code in PACKAGES:
        assert (code, "") in bought
    assert len(orders) == summary.orders and len(good) == summary.orders - summary.bad_order_rows
    assert all(datetime.fromisoformat(r["purchased_at"]).utcoffset() is not None for r in good)
    assert min(datetime.fromisoformat(r["purchased_at"]).date() for r in good) < date(2026, 11, 1)
    held: dict[str, list[str]] = {}
    for r in good:
        if r["product"] in EDITIONS:
            held.setdefault(r["customer_id"], []).append(r["product"])
    assert any(len(v) != len(set(v)) for v in held.values()), "a renewal"
    assert any(len(set(v)) > 1 for v in held.values()), "an upgrade"


def test_every_kind_of_bad_order_row_is_planted(inbox):
    summary, _, orders, _ = inbox
    kinds = Counter(kind for _, kind in orders if kind)
    assert set(kinds) == set(ORDER_KINDS)
    assert kinds == Counter(summary.bad_order_kinds)


def test_every_kind_of_bad_usage_line_is_planted(inbox):
    summary, _, _, events = inbox
    kinds = Counter(kind for _, _, kind in events if kind)
    assert set(kinds) == set(EVENT_KINDS)
    assert kinds == Counter(summary.bad_event_kinds)
    assert sum(kinds.values()) == summary.bad_event_lines
    assert summary.events == len(events) == 1500


def test_good_events_are_valid_in_their_day_and_use_every_function(inbox):
    summary, messages, _, events = inbox
    good = [(day, json.loads(line)) for day, line, kind in events if kind is None]
    assert {ev["function"] for _, ev in good} == set(FUNCTIONS)
    for day, ev in good:
        at = datetime.fromisoformat(ev["occurred_at"])
        assert at.astimezone(TZ).date() == day
        assert ev["event_id"].startswith(f"e-{day:%Y%m%d}-")
        assert ev["account_id"].startswith(ev["customer_id"] + "-a")
    stamps = [ev["occurred_at"] for _, ev in good]
    assert any(s.endswith("+08:00") for s in stamps) and any(s.endswith("Z") for s in stamps)
    failed = sum(ev["status"] == "failed" for _, ev in good) / len(good)
    assert 0.01 < failed < 0.06
    assert {ev["quantity"] for _, ev in good if ev["function"] == "image_to_video"} == {5, 30}
    assert any(isinstance(ev["quantity"], float) for _, ev in good)
    assert len(messages) == 1 + len(summary.usage_files) == 4
    assert summary.first_day == date(2026, 11, 1) and summary.last_day == date(2026, 11, 3)


def test_enterprise_functions_only_after_an_enterprise_purchase(inbox):
    _, _, orders, events = inbox
    first: dict[str, datetime] = {}
    for r, kind in orders:
        if kind is None and r["product"] == "enterprise":
            at = datetime.fromisoformat(r["purchased_at"])
            first[r["customer_id"]] = min(first.get(r["customer_id"], at), at)
    used = 0
    for _, line, kind in events:
        ev = json.loads(line) if kind is None else {}
        if ev and FUNCTIONS[ev["function"]]["editions"]:
            assert datetime.fromisoformat(ev["occurred_at"]) >= first[ev["customer_id"]]
            used += 1
    assert used > 0


def test_some_customer_uses_more_credits_than_its_orders_could_grant(inbox):
    summary, _, orders, events = inbox
    periods = math.ceil(3 / CAT.period_days) + 1  # pools of one order that can touch 3 days
    bound: Counter = Counter()
    for r, kind in orders:
        if kind is None and r["product"] in EDITIONS:
            months = min(int(r["term_months"]), periods)
            bound[r["customer_id"]] += EDITIONS[r["product"]]["credits_per_month"] * months
        elif kind is None:
            bound[r["customer_id"]] += PACKAGES[r["product"]]["credits"]
    used: Counter = Counter()
    for _, line, kind in events:
        ev = json.loads(line) if kind is None else {}
        if ev.get("status") == "succeeded":
            fn = FUNCTIONS[ev["function"]]
            units = math.ceil(round(ev["quantity"] * 1_000_000) / fn["unit_size_micro"])
            used[ev["customer_id"]] += units * fn["credits_per_unit"]
    assert any(used[c] > bound[c] for c in used), "arrears are certain for someone"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, days=0)


def test_usage_is_skewed_across_customers(inbox):
    summary, _, _, events = inbox
    per = Counter(json.loads(line)["customer_id"] for _, line, kind in events if kind is None)
    counts = sorted((per[f"c{c:05d}"] for c in range(1, summary.customers + 1)), reverse=True)
    total = sum(counts)
    assert sum(counts[: len(counts) // 10]) > 0.3 * total  # uniform use would give 10 %
    assert counts[len(counts) // 2] < total / len(counts) / 4  # the median customer is light


def test_plain_jsonl_and_a_zone_with_a_daylight_saving_change(tmp_path):
    berlin = ZoneInfo("Europe/Berlin")
    summary = generate(
        tmp_path,
        customers=15,
        days=2,
        events_per_day=300,
        start=date(2026, 10, 24),
        billing_tz="Europe/Berlin",
        bad_lines=False,
        gzip_usage=False,
    )
    assert [p.name for p in summary.usage_files] == [
        "usage-2026-10-24.jsonl",
        "usage-2026-10-25.jsonl",
    ]
    assert summary.bad_event_lines == 0 and summary.bad_order_rows == 0
    offsets = set()
    for path in summary.usage_files:
        day = date.fromisoformat(path.stem.removeprefix("usage-"))
        for line in read_lines(path):
            at = datetime.fromisoformat(json.loads(line)["occurred_at"])
            assert at.astimezone(berlin).date() == day
            if not line.endswith('Z"}'):
                assert at.utcoffset() == at.astimezone(berlin).utcoffset()
                offsets.add(at.utcoffset())
    assert len(offsets) == 2


def test_orders_are_priced_by_the_catalog_version_in_force_when_bought(tmp_path):
    """Prices come from the catalog file only: a dearer basic from Nov 2 is what orders from
    then on pay, the orders before it the first price."""
    text = Path(DEFAULT_CATALOG).read_text(encoding="utf-8")
    text += '\n[[editions]]\ncode = "basic"\neffective_from = 2026-11-02\nmonthly_fee_cny = "35"\n'
    (tmp_path / "catalog.toml").write_text(text, encoding="utf-8")
    change = datetime(2026, 11, 2, tzinfo=TZ)
    summary = generate(
        tmp_path / "data",
        customers=80,
        days=3,
        events_per_day=100,
        bad_lines=False,
        catalog=load_catalog(tmp_path / "catalog.toml"),
    )
    with summary.orders_file.open(encoding="utf-8", newline="") as f:
        basic = [r for r in csv.DictReader(f) if r["product"] == "basic"]
    paid = {  # (bought from the change on, the price of a month)
        (datetime.fromisoformat(r["purchased_at"]) >= change, Decimal(r["amount_cny"]) / int(t))
        for r in basic
        if (t := r["term_months"])
    }
    assert paid == {(False, Decimal(30)), (True, Decimal(35))}


def test_bench_days_depend_only_on_their_day_and_keep_their_shape(tmp_path):
    """The benchmark's inbox (tasks.synthetic.stream): day 1 written alone is day 1 written
    after day 0; 3 % of the customers carry arrears in, 2 % buy a package each day; every
    order is a good one."""
    customers, events = 200, 2000
    alone = stream.day_files(tmp_path / "a", stream.make_plan(customers, events, 5), 1)
    plan = stream.make_plan(customers, events, 5)
    files = stream.warmup_files(tmp_path / "b", plan)
    files += stream.day_files(tmp_path / "b", plan, 0) + stream.day_files(tmp_path / "b", plan, 1)
    assert [p.read_bytes() for p in alone] == [p.read_bytes() for p in files[-2:]]
    assert len(plan.carriers) == 6 and all(len(o) >= 4 for o in plan.day_orders)
    seen: dict = {}
    for path in files[::2]:  # the orders files
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and [classify_order(r, seen) for r in rows] == [None] * len(rows)
    warm = [json.loads(line) for line in read_lines(files[1])]
    heavy = {ev["function"] for ev in warm}
    assert len(warm) == 6 and len(heavy) == 1 and FUNCTIONS[heavy.pop()]["credits_per_unit"] > 1
    everyone = set(plan.cust.ids)
    state = {"customers": everyone, "enterprise": everyone, "lines": set(), "ids": set()}
    kinds = [classify_event(line, state) for line in read_lines(files[3])]
    assert len(kinds) == events and kinds.count(None) >= 0.99 * events


def test_a_mature_bench_base_holds_a_year_of_packages_and_is_otherwise_the_same(tmp_path):
    """`make_plan(mature=True)` (bench/run.py --mature-base): 2 % of the customers bought a
    package on each of the 365 days before day 0 (not the carriers of the warm-up arrears);
    the subscriptions, carriers and event days are those of the plain plan, byte for byte."""
    customers, events = 200, 2000
    plain = stream.make_plan(customers, events, 5)
    mature = stream.make_plan(customers, events, 5, mature=True)
    base = len(plain.history_orders)
    assert mature.history_orders[:base] == plain.history_orders
    year = mature.history_orders[base:]
    assert len(year) == 365 * 4 and {o["term"] for o in year} == {None}
    days = Counter((o["ts"] - stream.midnight_of(0)) // 86400 for o in year)
    assert sorted(days) == list(range(-365, 0)) and set(days.values()) == {4}
    assert not {o["cust"] for o in year} & set(plain.carriers.tolist())
    files = stream.warmup_files(tmp_path / "m", mature)
    assert stream.day_files(tmp_path / "m", mature, 0)[1].read_bytes() == (
        stream.day_files(tmp_path / "p", plain, 0)[1].read_bytes()
    )
    with files[0].open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    seen: dict = {}
    assert len(rows) == base + len(year)
    assert [classify_order(r, seen) for r in rows] == [None] * len(rows)


def test_generate_replaces_no_file_and_writes_nothing_when_one_is_there(tmp_path):
    first = generate(tmp_path, customers=3, days=2, events_per_day=5)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="already exists .3 of the files generate would"):
        generate(tmp_path, customers=3, days=2, events_per_day=5, seed=9)
    first.usage_files[1].unlink()  # one file of the three gone: still nothing written
    del before[first.usage_files[1]]
    with pytest.raises(FileExistsError, match=f"{first.orders_file} already exists .2 of"):
        generate(tmp_path, customers=3, days=2, events_per_day=5, seed=9)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
