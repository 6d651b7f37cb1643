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


# ---------------------------------------------------------------- versions (issue 14)

COPY_V2 = '\n[[functions]]\ncode = "copy_generation"\neffective_from = {at}\ncredits_per_unit = 2\n'


def _catalog(tmp_path, extra: str, text: str | None = None):
    path = tmp_path / "catalog.toml"
    path.write_text((text or DEFAULT_CATALOG.read_text()) + extra)
    return path


def test_a_version_keeps_the_fields_it_does_not_give_and_starts_at_billing_zone_midnight(
    tmp_path,
):
    c = load_catalog(_catalog(tmp_path, COPY_V2.format(at="2026-11-15")), tz="Asia/Shanghai")
    copy = c.functions.filter(code="copy_generation").sort("effective_from", nulls_last=False)
    assert copy.select("unit", "unit_size_micro", "whole_number", "credits_per_unit").rows() == [
        ("request", 1_000_000, True, 1),
        ("request", 1_000_000, True, 2),
    ]
    start = copy["effective_from"][1]
    assert start.isoformat() == "2026-11-14T16:00:00+00:00"  # 2026-11-15 00:00 +08:00
    assert copy["effective_until"].to_list() == [start, None]
    assert copy["version_id"].n_unique() == 2


def test_a_catalog_that_cannot_apply_is_refused_with_one_line_naming_the_entry(tmp_path):
    seed = DEFAULT_CATALOG.read_text()
    v2 = COPY_V2.format(at="2026-11-15")
    cases = [  # (what the line says, the catalog)
        ("not valid TOML", seed + "\n[[functions]\n"),
        ("function copy_generation has two versions in force from 2026-11-15", seed + v2 * 2),
        (
            "function voice_clone has no price in force before 2026-11-15",
            seed + '\n[[functions]]\ncode = "voice_clone"\neffective_from = 2026-11-15\n'
            "credits_per_unit = 1\n",
        ),
        (
            "function copy_generation from 2026-11-15: credits_per_unit must be a whole number",
            seed + v2.replace("= 2\n", "= -1\n"),
        ),
        (
            "function copy_generation: effective_from is not a date or an instant",
            seed + COPY_V2.format(at='"soon"'),
        ),
        (
            "edition basic lacks the field 'monthly_fee_cny'",
            seed.replace('monthly_fee_cny = "30"\n', "", 1),
        ),
    ]
    for expected, text in cases:
        with pytest.raises(CatalogError) as caught:
            load_catalog(_catalog(tmp_path, "", text))
        message = str(caught.value)
        assert expected in message, message
        assert "\n" not in message and len(message) < 300


def test_a_run_with_a_catalog_it_cannot_apply_bills_nothing(inbox, tmp_path):
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T10:00:00+08:00")])
    inbox.bill("2026-11-02")
    broken = tmp_path / "broken.toml"
    broken.write_text(DEFAULT_CATALOG.read_text() + COPY_V2.format(at="2026-11-01") * 2)
    inbox.settings_overrides = {"catalog_path": broken}
    inbox.usage([event("e1", "c1", "copy_generation", 1, "2026-11-03T10:00:00+08:00")])
    with pytest.raises(CatalogError, match="copy_generation has two versions"):
        inbox.bill("2026-11-03")
    con = inbox.warehouse()
    assert one(con, "select max(day) from customer_days").isoformat() == "2026-11-02"
    assert one(con, "select count(*) from rated_events") == 0
    con.close()
