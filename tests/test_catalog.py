"""Billing-rules §2: the catalog is data; a new function or package needs no code change."""

from __future__ import annotations

import codecs
import json

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


# ---------------------------------------------------------------- typos, types and bounds


def _refused(tmp_path, text: str) -> str:
    with pytest.raises(CatalogError) as caught:
        load_catalog(_catalog(tmp_path, "", text))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def test_a_misspelt_table_or_field_is_refused_naming_the_entry_and_the_close_match(tmp_path):
    seed = DEFAULT_CATALOG.read_text()
    cases = [  # (what the line says, the catalog)
        (
            "function copy_generation from 2026-11-02 has an unknown field 'credit_per_unit' "
            "(did you mean 'credits_per_unit'?)",
            seed + COPY_V2.format(at="2026-11-02").replace("credits_per", "credit_per"),
        ),
        (
            "unknown table or key 'function' (did you mean [[functions]]?)",
            seed + '\n[[function]]\ncode = "voice_clone"\ncredits_per_unit = 1\n',
        ),
        (
            "edition basic from 2026-11-02 has an unknown field 'monthly_fee' "
            "(did you mean 'monthly_fee_cny'?)",
            seed
            + '\n[[editions]]\ncode = "basic"\neffective_from = 2026-11-02\nmonthly_fee = 35\n',
        ),
        (
            "[settings] has an unknown field 'period_day' (did you mean 'period_days'?)",
            seed.replace("period_days = 30", "period_day = 30"),
        ),
        (  # no close match: the fields it may have
            "package package_100 has an unknown field 'colour' (the fields of a package: code, "
            "effective_from, price_cny, credits, seats)",
            seed.replace("credits = 1050\n", 'credits = 1050\ncolour = "red"\n'),
        ),
        ("unknown table or key 'discounts'", seed.replace("[settings]", "[discounts]\n[settings]")),
    ]
    for expected, text in cases:
        assert expected in _refused(tmp_path, text)
    # spelt right, the same entries are versions
    right = seed + COPY_V2.format(at="2026-11-02")
    c = load_catalog(_catalog(tmp_path, "", right))
    assert c.functions.filter(code="copy_generation")["credits_per_unit"].to_list() == [1, 2]


def test_a_value_of_the_wrong_type_is_refused_not_converted(tmp_path):
    seed = DEFAULT_CATALOG.read_text()
    cases = [
        (  # bool("false") was True
            "function copy_generation: whole_number must be true or false (a TOML boolean, "
            "unquoted), not 'false'",
            seed.replace("whole_number = true", 'whole_number = "false"', 1),
        ),
        (
            "whole_number must be true or false",
            seed.replace("whole_number = true", "whole_number = 1", 1),
        ),
        (
            "function copy_generation: category must be a string, not 5",
            seed.replace('"copywriting"', "5"),
        ),
        (
            "editions must be a string, not 1",
            seed.replace('editions = ["enterprise"]', "editions = [1]", 1),
        ),
        ("period_days must be a whole number >= 1, not '30'", seed.replace("= 30 ", '= "30" ')),
        ("currency must be 'CNY'", seed.replace('currency = "CNY"', 'currency = "USD"')),
        ("[settings] must be a table", seed.replace("[settings]", "[[settings]]")),
    ]
    for expected, text in cases:
        assert expected in _refused(tmp_path, text)
    false = seed.replace("whole_number = true", "whole_number = false", 1)
    copy = load_catalog(_catalog(tmp_path, "", false)).functions.filter(code="copy_generation")
    assert copy["whole_number"].to_list() == [False]


def _function(code: str, extra: str) -> str:
    return f'\n[[functions]]\ncode = "{code}"\ncategory = "x"\nunit = "second"\n{extra}\n'


def test_prices_at_their_bounds_are_accepted_and_one_past_refused(tmp_path):
    """One event of the largest quantity (just under 10^9) earns at most 10^12 credits, a
    pool holds at most 10^12, a price is at most 10^10 CNY: no sum of a customer's month
    can overflow the engine's BIGINT credits or DECIMAL(18, 2) amounts."""
    seed = DEFAULT_CATALOG.read_text()
    package = (
        '\n[[packages]]\ncode = "big"\nprice_cny = "{price}"\ncredits = {credits}\n'
        "seats = {seats}\n"
    )
    edition = (
        '\n[[editions]]\ncode = "huge"\nmonthly_fee_cny = "1"\ncredits_per_month = {credits}\n'
        "seats = 1\nterms_months = [1, {term}]\n"
    )
    at_and_past = [  # (accepted, refused, what the refusal says)
        (
            _function("f", 'unit_size = "1"\ncredits_per_unit = 1000'),
            _function("f", 'unit_size = "1"\ncredits_per_unit = 1001'),
            "function f: credits_per_unit 1,001 is too large: an event of 999999999.999999 "
            "would earn more than 10^12 credits (at most 1,000 a unit of this unit_size)",
        ),
        (
            _function("f", 'unit_size = "10"\ncredits_per_unit = 10000'),
            _function("f", 'unit_size = "10"\ncredits_per_unit = 10001'),
            "at most 10,000 a unit",
        ),
        (  # the largest allowed quantity is the largest event
            _function("f", 'allowed_quantities = ["5", "30"]\ncredits_per_unit = 33333333333'),
            _function("f", 'allowed_quantities = ["5", "30"]\ncredits_per_unit = 33333333334'),
            "an event of 30 would earn more than 10^12",
        ),
        (
            _function("f", 'unit_size = "1000000000"\ncredits_per_unit = 1000000000000'),
            _function("f", 'unit_size = "1000000000.000001"\ncredits_per_unit = 1'),
            "unit_size must be at most 10^9",
        ),
        (
            _function("f", 'allowed_quantities = ["999999999.999999"]\ncredits_per_unit = 1'),
            _function("f", 'allowed_quantities = ["1000000000"]\ncredits_per_unit = 1'),
            "allowed_quantities must be below 10^9",
        ),
        (
            package.format(price="10000000000", credits=10**12, seats=100_000),
            package.format(price="10000000000", credits=10**12 + 1, seats=100_000),
            "package big: credits must be a whole number from 1 to 1,000,000,000,000",
        ),
        (
            package.format(price="10000000000", credits=1, seats=1),
            package.format(price="10000000000.01", credits=1, seats=1),
            "package big: price_cny must be an amount from 0 to 10,000,000,000",
        ),
        (
            package.format(price="1", credits=1, seats=100_000),
            package.format(price="1", credits=1, seats=100_001),
            "package big: seats must be a whole number from 0 to 100,000",
        ),
        (
            edition.format(credits=10**12, term=120),
            edition.format(credits=10**12, term=121),
            "edition huge: terms_months must be a whole number from 1 to 120",
        ),
        (
            edition.format(credits=10**12, term=12),
            edition.format(credits=10**12 + 1, term=12),
            "edition huge: credits_per_month must be a whole number from 1 to 1,000,000,000,000",
        ),
    ]
    for accepted, refused, expected in at_and_past:
        load_catalog(_catalog(tmp_path, accepted))
        assert expected in _refused(tmp_path, seed + refused)
    for name, most in (("period_days", 366), ("package_validity_months", 120)):
        current = 30 if name == "period_days" else 12
        at = seed.replace(f"{name} = {current}", f"{name} = {most}")
        assert load_catalog(_catalog(tmp_path, "", at)).settings()[name] == most
        past = seed.replace(f"{name} = {current}", f"{name} = {most + 1}")
        assert f"{name} must be a whole number from 1 to {most}" in _refused(tmp_path, past)


def test_effective_dates_lie_in_the_years_2000_to_2099(tmp_path):
    seed = DEFAULT_CATALOG.read_text()
    for at in ("2000-01-01", "2099-12-31", "2099-12-31T23:59:59+08:00", '"2000-01-01"'):
        load_catalog(_catalog(tmp_path, COPY_V2.format(at=at)))
    for at in (
        "0001-01-01",
        "1999-12-31",
        "2100-01-01",
        "0001-01-01T00:00:00+08:00",
        '"0001-01-01"',
    ):
        message = _refused(tmp_path, seed + COPY_V2.format(at=at))
        assert "function copy_generation: effective_from must lie in the years 2000-2099" in message


def test_an_absurd_price_fails_the_run_before_anything_is_billed(inbox, tmp_path):
    """credits_per_unit 10^17 was accepted and the run failed mid-billing on a DuckDB
    INT128 -> INT64 overflow naming no entry."""
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T10:00:00+08:00")])
    inbox.bill("2026-11-01")
    absurd = COPY_V2.format(at="2026-11-02").replace("= 2\n", "= 99999999999999999\n")
    inbox.settings_overrides = {"catalog_path": _catalog(tmp_path, absurd)}
    inbox.usage([event("e1", "c1", "copy_generation", 1, "2026-11-02T10:00:00+08:00")])
    with pytest.raises(CatalogError, match="copy_generation from 2026-11-02: credits_per_unit"):
        inbox.bill("2026-11-02")
    con = inbox.warehouse()
    assert one(con, "select max(day) from customer_days").isoformat() == "2026-11-01"
    con.close()


def test_the_largest_event_at_the_largest_price_bills_without_overflow(inbox, tmp_path):
    """At the bound: three events of 999,999,999.999999 s at 1,000 credits a second (10^12
    credits each) in one day, summed into the day, the month and the arrears."""
    dear = (
        '\n[[functions]]\ncode = "digital_human_spokesperson"\neffective_from = 2026-11-02\n'
        "credits_per_unit = 1000\n"
    )
    inbox.settings_overrides = {"catalog_path": _catalog(tmp_path, dear)}
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T10:00:00+08:00")])
    inbox.usage(
        [
            event(f"e{i}", "c1", "digital_human_spokesperson", 999999999.999999, at)
            for i, at in enumerate(["2026-11-02T10:00:00+08:00"] * 3)
        ]
    )
    inbox.bill("2026-11-02")
    con = inbox.warehouse()
    assert one(con, "select sum(credits) from rated_events") == 3 * 10**12
    assert one(con, "select used + arrears_opened from customer_days where day = '2026-11-02'") == (
        3 * 10**12
    )
    assert one(con, "select arrears_outstanding from statements") == 3 * 10**12 - 1050
    con.close()


def test_a_catalog_that_is_not_a_regular_file_or_too_large_is_refused_unread(tmp_path):
    """ADBILL_CATALOG naming a device (/dev/zero read for ever), a pipe (no writer: an open
    would wait for ever) or a file past 1 MiB is one clear error; a catalog of exactly 1 MiB
    (the seed's, padded with a comment) is read."""
    import os
    from pathlib import Path

    from tasks.catalog import MAX_CATALOG_BYTES

    seed = Path(DEFAULT_CATALOG).read_bytes()
    at = tmp_path / "at.toml"
    at.write_bytes(seed + b"#" + b"x" * (MAX_CATALOG_BYTES - len(seed) - 2) + b"\n")
    assert at.stat().st_size == MAX_CATALOG_BYTES
    assert load_catalog(at).functions.height == load_catalog(DEFAULT_CATALOG).functions.height
    past = tmp_path / "past.toml"
    past.write_bytes(at.read_bytes() + b"\n")
    with pytest.raises(CatalogError, match=r"past.toml is larger than 1 MiB: not a catalog"):
        load_catalog(past)
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    for where in (Path("/dev/zero"), pipe, tmp_path):  # (a folder's error named its fd: 6)
        with pytest.raises(CatalogError, match=f"catalog file {where} is not a regular file$"):
            load_catalog(where)


def test_a_catalog_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Editors on Windows start a UTF-8 file with a byte-order mark; TOML's reader refused it
    as "Invalid statement (at line 1, column 1)"."""
    path = tmp_path / "bom.toml"
    path.write_bytes(codecs.BOM_UTF8 + DEFAULT_CATALOG.read_bytes())
    assert load_catalog(path).versions().equals(load_catalog(DEFAULT_CATALOG).versions())


@pytest.mark.parametrize(
    "written",
    ["１２０", "١٢٠", "1_200", " 120 ", "120.", ".5", "1e2", "+120", "120.0\n", "0x78", "1" * 31],
)
def test_an_amount_written_as_text_is_ascii_digits_or_refused_not_converted(tmp_path, written):
    """Python's Decimal reads other scripts' digits, underscores, padding and exponents:
    `"１２０"` was 120.00. An amount in quotes is ASCII digits with a point before any
    fraction (30 digits at most on each side), and nothing else."""
    seed = DEFAULT_CATALOG.read_text()
    text = seed.replace('price_cny = "100"', f"price_cny = {json.dumps(written)}", 1)
    assert "must be a number (ASCII digits" in _refused(tmp_path, text)


def test_amounts_written_plainly_are_read_exactly(tmp_path):
    seed = DEFAULT_CATALOG.read_text()
    for written, price in [("120", "120.00"), ("120.50", "120.50"), ("0", "0.00")]:
        text = seed.replace('price_cny = "100"', f'price_cny = "{written}"', 1)
        packages = load_catalog(_catalog(tmp_path, "", text)).packages
        assert str(packages["price_cny"][0]) == price


@pytest.mark.parametrize(
    "code",
    [
        "cafe\u0301",  # `café` decomposed (NFD): the composed one would be another function
        "copy\u200bgeneration",  # a zero-width space: looks like copy_generation
        "copy\u0007",  # a control character
        "copy\u2028x",  # a line separator
        "\ue000copy",  # a private-use character
        " copy",  # white space at an end
        "copy ",
        "c" * 101,  # one past the longest code
    ],
)
def test_a_code_with_hidden_or_ambiguous_characters_is_refused_and_shown_escaped(tmp_path, code):
    entry = f"\n[[functions]]\ncode = {json.dumps(code)}\ncategory = 'x'\nunit = 's'\n{_PRICE}\n"
    message = _refused(tmp_path, DEFAULT_CATALOG.read_text() + entry)
    shown = repr(code) if len(code) <= 40 else f"{code[:40]!r}..."
    assert f"has the code {shown}: not a plain code" in message


def test_codes_of_any_script_up_to_100_characters_are_accepted(tmp_path):
    # (a zero-width non-joiner is part of Persian words: می‌خواهم)
    for code in ["caf\u00e9", "文案生成", "c" * 100, "team/north=1+2", "\u0645\u06cc\u200c\u062e"]:
        catalog = load_catalog(_catalog(tmp_path, _function(code, _PRICE)))
        assert code in catalog.functions["code"].to_list()


_PRICE = 'unit_size = "1"\ncredits_per_unit = 1'
