"""Billing-rules §2: the catalog is data; a new function or package needs no code change."""

from __future__ import annotations

import pytest

from tasks.catalog import CatalogError, load_catalog
from tasks.settings import DEFAULT_CATALOG
from tests.conftest import event, one, order, rows


def test_catalog_holds_the_price_list_of_the_rules():
    c = load_catalog()
    editions = {
        r[0]: r[1:]
        for r in c.editions.select(
            "code", "monthly_fee_cny", "credits_per_month", "seats"
        ).iter_rows()
    }
    assert {k: (str(v[0]), v[1], v[2]) for k, v in editions.items()} == {
        "basic": ("30.00", 300, 1),
        "professional": ("118.00", 1250, 10),
        "enterprise": ("10000.00", 110000, 100),
    }
    assert c.packages.select("code", "credits").rows() == [
        ("package_100", 1050),
        ("package_10000", 110000),
        ("package_100000", 1176470),
    ]
    assert c.functions.height == 12


def test_a_new_function_and_a_new_package_are_a_data_change_only(inbox, tmp_path):
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        DEFAULT_CATALOG.read_text()
        + '\n[[functions]]\ncode = "voice_clone"\ncategory = "audio"\nunit = "second"\n'
        'unit_size = "2"\ncredits_per_unit = 7\n'
        '\n[[packages]]\ncode = "package_50"\nprice_cny = "50"\ncredits = 500\nseats = 1\n'
    )
    inbox.settings_overrides = {"catalog_path": catalog}
    inbox.orders([order("o1", "c1", "package_50", None, "50", "2026-11-26T10:00:00+08:00")])
    inbox.usage([event("e1", "c1", "voice_clone", 5, "2026-11-26T11:00:00+08:00")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select credits from rated_events") == 21  # ceil(5 / 2) * 7
    assert rows(con, "select product, credits, amount_cny from pools") == [("package_50", 500, 50)]
    assert one(con, "select balance from customer_days") == 479


def test_a_catalog_naming_a_product_twice_is_refused_with_a_clear_reason(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text(
        DEFAULT_CATALOG.read_text().replace('code = "package_100"\n', 'code = "basic"\n', 1)
    )
    with pytest.raises(CatalogError, match="twice"):
        load_catalog(bad)
