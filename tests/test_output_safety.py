"""Outputs that carry customer ids safely (issue 12): file names, CSV cells, HTML text."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.documents_data import usage_by_statement
from tasks.documents_files import csv_cell, csv_text, replace_file, safe_file_stem
from tasks.documents_page import statement_csv
from tests.conftest import Inbox, event, order
from tests.test_documents import text_of

CJK_200 = "客户" * 100  # 200 characters, 600 bytes of UTF-8
ODD_IDS = {
    "slash": "a/b",
    "underscore": "a_b",
    "cjk_one": "客户一",
    "cjk_two": "客户二",
    "hyperlink": '=HYPERLINK("http://evil.example","click")',
    "at_sum": "@SUM(1+1)",
    "plus_cmd": "+cmd|' /C calc'!A0",
    "minus": "-2+3",
    "climb": "../../etc/passwd",
    "dotdot": "..",
    "hidden": ".hidden",
    "script": "<script>alert(1)</script>",
    "long_cjk": CJK_200,
}


def sha10(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


# ---------------------------------------------------------------- file names


def test_a_plain_id_of_letters_digits_dash_underscore_and_dot_is_its_own_file_name():
    for plain in ("c00012", "a_b", "Acme-Corp.cn", "-x", "x.", "A"):
        assert safe_file_stem(plain) == plain


@pytest.mark.parametrize("device", ["CON", "nul", "Aux.cn", "com1", "LPT9", "prn.x.y"])
def test_an_id_that_is_a_windows_device_name_is_hashed(device):
    """`CON.html` is the console on Windows (in any case, with any extension): not a file."""
    assert safe_file_stem(device) == f"{device}~{sha10(device)}"  # (its slug is itself)
    for plain in ("CONS", "console", "com10", "lpt0", "nul_", "xcon"):
        assert safe_file_stem(plain) == plain


def test_a_slash_and_an_underscore_give_two_customers_two_files():
    assert safe_file_stem("a_b") == "a_b"
    assert safe_file_stem("a/b") == f"a_b~{sha10('a/b')}"
    assert safe_file_stem("a/b") != safe_file_stem("a_b")


def test_two_chinese_ids_give_two_files_named_by_their_hash():
    one, two = safe_file_stem("客户一"), safe_file_stem("客户二")
    assert one == f"_~{sha10('客户一')}" and two == f"_~{sha10('客户二')}"
    assert one != two


def test_an_id_of_exactly_100_ascii_characters_is_its_own_name_and_101_is_hashed():
    assert safe_file_stem("x" * 100) == "x" * 100
    stem = safe_file_stem("x" * 101)
    assert stem == "x" * 60 + "~" + sha10("x" * 101)
    assert len(stem) == 71


def test_accents_keep_a_readable_slug_before_the_hash():
    assert safe_file_stem("Café Zürich") == f"Cafe_Zurich~{sha10('Café Zürich')}"
    assert safe_file_stem("../../etc/passwd") == f"etc_passwd~{sha10('../../etc/passwd')}"


def test_a_200_character_chinese_id_names_a_file_of_fewer_than_255_bytes(tmp_path):
    assert len(CJK_200.encode("utf-8")) == 600
    name = f"{safe_file_stem(CJK_200)}.html"
    assert len(name.encode("utf-8")) == 17  # "_~" + 10 hex + ".html"
    replace_file(str(tmp_path), name, b"page")  # its temporary name fits too
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("bad", ["..", ".", ".hidden", "../../etc/passwd", "/etc/passwd", ""])
def test_no_id_names_a_path_outside_its_month_folder_or_a_hidden_file(tmp_path, bad):
    folder = tmp_path / "2026-11"
    folder.mkdir()
    stem = safe_file_stem(bad)
    assert "/" not in stem and not stem.startswith(".") and stem.endswith(sha10(bad))
    replace_file(str(folder), f"{stem}.csv", b"x")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{stem}.csv"]
    assert (folder / f"{stem}.csv").resolve().parent == folder.resolve()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=200), min_size=2, max_size=20, unique=True))
def test_any_ids_up_to_200_characters_get_distinct_short_names_in_their_folder(ids):
    stems = [safe_file_stem(i) for i in ids]
    assert len(set(stems)) == len(ids)
    for stem in stems:
        name = f".{stem}.html.{2**22}.tmp"  # the longest name written: the temporary file
        assert len(name.encode("utf-8")) <= 255
        assert "/" not in stem and "\0" not in stem and not stem.startswith(".")
        assert stem not in ("", ".", "..")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(min_size=1, max_size=12), st.text("aAbB.-_", min_size=1, max_size=4)),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_a_months_ids_get_names_distinct_even_where_case_is_ignored(ids):
    from tasks.documents_files import safe_file_stems

    stems = safe_file_stems(ids)
    assert len({stem.lower() for stem in stems.values()}) == len(ids)


# ---------------------------------------------------------------- CSV cells


def test_text_that_starts_a_formula_gets_a_leading_quote_and_numbers_do_not():
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(text) == "'" + text
    # after spaces an importer may trim (LibreOffice's "trim spaces"), and full-width forms
    for text in (" =x", "  @SUM(A1)", "\u00a0+1", "\u3000-1", "＝1+1", "＠A1", " ＋1"):
        assert csv_cell(text) == "'" + text
    for kept in ("c1", "a=b", "", "'=already", "x =y", "   "):
        assert csv_cell(kept) == kept
    assert csv_cell(-50) == -50 and csv_cell(Decimal("-1.50")) == Decimal("-1.50")
    assert csv_cell(None) == "" and csv_cell(date(2026, 11, 1)) == date(2026, 11, 1)


def test_csv_text_is_rfc_4180_and_reads_back_with_the_quote_and_the_numbers():
    text = csv_text(("customer_id", "net_balance"), [('=HYPERLINK("x")\n', -50), ("a,b", 0)])
    # CRLF ends every record (RFC 4180 §2); the line break inside the quoted cell is its own
    assert text == 'customer_id,net_balance\r\n"\'=HYPERLINK(""x"")\n",-50\r\n"a,b",0\r\n'
    assert list(csv.reader(io.StringIO(text))) == [
        ["customer_id", "net_balance"],
        ['\'=HYPERLINK("x")\n', "-50"],
        ["a,b", "0"],
    ]


def test_a_statement_csv_writes_a_formula_id_and_function_as_text():
    s = dict(customer_id="@SUM(1+1)", month=date(2026, 11, 1), revision=1, status="final")
    lines = [
        dict(function="=cmd", events=2, failed_events=0, quantity="-1.500000", credits=-3),
    ]
    import polars as pl

    frame = pl.DataFrame(
        [dict(customer_key=1, month=s["month"]) | x for x in lines],
        schema_overrides={"quantity": pl.String},
    )
    (s["usage"],) = usage_by_statement(frame).to_dicts()
    got = list(csv.DictReader(io.StringIO(statement_csv(s))))
    assert [(r["customer_id"], r["function"], r["quantity"], r["credits"]) for r in got] == [
        ("'@SUM(1+1)", "'=cmd", "-1.5", "-3")
    ]


# ---------------------------------------------------------------- a billed month


@pytest.fixture(scope="module")
def odd_customers(tmp_path_factory) -> Inbox:
    """Each odd id buys basic (300 credits) and uses 3; `-debtor` buys basic and uses 350."""
    inbox = Inbox(tmp_path_factory.mktemp("odd") / "data")
    ids = [*ODD_IDS.values(), "-debtor"]
    inbox.orders(
        [
            order(f"o{i}", cid, "basic", 1, "30", "2026-11-26T10:00:00+08:00")
            for i, cid in enumerate(ids)
        ]
    )
    inbox.usage(
        [
            # the account's own id: "<id>-a1" of a 200-character id is past §3's limit
            event(f"e{i}", cid, "copy_generation", 3, "2026-11-26T11:00:00+08:00", account_id="a1")
            for i, cid in enumerate(ids[:-1])
        ]
        + [event("e-debt", "-debtor", "custom_avatar", 7, "2026-11-26T11:00:00+08:00")]
    )
    inbox.bill("2026-11-30")
    return inbox


def month_folder(inbox: Inbox) -> Path:
    return inbox.settings.out_dir / "statements" / "2026-11"


def test_every_odd_customer_gets_its_own_page_and_csv_inside_the_month_folder(odd_customers):
    folder = month_folder(odd_customers)
    expected = {f"{safe_file_stem(c)}.{ext}" for c in ODD_IDS.values() for ext in ("html", "csv")}
    written = {
        str(p.relative_to(folder))
        for p in odd_customers.settings.out_dir.rglob("*")
        if p.is_file() and p.is_relative_to(folder)
    }
    assert expected <= written and len(expected) == 2 * len(ODD_IDS)
    assert not list(odd_customers.root.glob("etc")) and not list(folder.glob(".*"))
    for key, cid in ODD_IDS.items():
        with (folder / f"{safe_file_stem(cid)}.csv").open(newline="", encoding="utf-8") as f:
            (row,) = list(csv.DictReader(f))
        shown = "'" + cid if key in ("hyperlink", "at_sum", "plus_cmd", "minus") else cid
        assert (row["customer_id"], row["function"], row["credits"]) == (
            shown,
            "copy_generation",
            "3",
        )


def test_a_page_shows_the_id_as_it_is_and_a_script_id_escaped(odd_customers):
    folder = month_folder(odd_customers)
    html = (folder / f"{safe_file_stem(ODD_IDS['script'])}.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "Customer &lt;script&gt;alert(1)&lt;/script&gt;" in text_of(html)
    page = (folder / f"{safe_file_stem('客户一')}.html").read_text(encoding="utf-8")
    assert "Customer 客户一 " in text_of(page) and "客户二" not in page
    page = (folder / f"{safe_file_stem('a_b')}.html").read_text(encoding="utf-8")
    assert "Customer a_b " in text_of(page)


def test_the_suspension_list_quotes_formula_ids_and_keeps_a_negative_balance_a_number(
    odd_customers,
):
    path = odd_customers.settings.out_dir / "suspensions" / "2026-11-26.csv"
    with path.open(newline="", encoding="utf-8") as f:
        got = {r["customer_id"]: r for r in csv.DictReader(f)}
    debtor = got["'-debtor"]
    assert (debtor["status"], debtor["net_balance"], debtor["arrears_outstanding"]) == (
        "suspended",
        "-50",
        "50",
    )
    assert not any(k.startswith(("=", "+", "-", "@", "\t", "\r")) for k in got)
    # RFC 4180: every record ends with CRLF, the last one too
    data = path.read_bytes()
    assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n") > 1


def test_two_ids_whose_ten_digit_hashes_meet_still_get_files_of_their_own():
    """`傿人客户` and `兜原客户` share the first 10 hex digits of their SHA-256 (found by a
    search of 2.25M ids): within a month they get 32 digits each."""
    from tasks.documents_files import safe_file_stem, safe_file_stems

    a, b = "傿人客户", "兜原客户"
    assert safe_file_stem(a) == safe_file_stem(b)  # the 10-digit names meet
    stems = safe_file_stems([a, b, "a/b", "plain"])
    assert stems[a] != stems[b] and len({*stems.values()}) == 4
    assert stems["a/b"] == safe_file_stem("a/b") and stems["plain"] == "plain"
    assert all(len(stems[c].split("~")[1]) == 32 for c in (a, b))


def test_customers_whose_short_hashes_meet_are_billed_into_two_files(tmp_path):
    a, b = "傿人客户", "兜原客户"
    inbox = Inbox(tmp_path / "data")
    inbox.orders(
        [
            order(f"o-{i}", c, "basic", 1, "30", "2026-11-29T10:00:00+08:00")
            for i, c in enumerate((a, b))
        ]
    )
    inbox.usage(
        [
            event(f"e-{i}", c, "copy_generation", n, "2026-11-29T11:00:00+08:00", account_id="a1")
            for i, (c, n) in enumerate(((a, 2), (b, 5)))
        ]
    )
    inbox.bill("2026-11-30")  # the month's last day: its final statements are written
    folder = month_folder(inbox)
    pages = sorted(folder.glob("_~*.csv"))
    assert len(pages) == 2
    credits = set()
    for page in pages:
        with page.open(newline="", encoding="utf-8") as f:
            (row,) = list(csv.DictReader(f))
        credits.add((row["customer_id"], row["credits"]))
    assert credits == {(a, "2"), (b, "5")}


def test_control_characters_from_senders_never_reach_the_terminal_as_they_are():
    """A file name may hold ESC or CSI (a sender's name for its file): warnings, progress
    lines and the one-line error show them as \\xNN, so no name drives the operator's
    terminal; line ends, tabs and other characters stay as they are."""
    import logging

    from flows.cli_terminal import _TerminalFilter, error_line, terminal_text

    name = "inbox/usage/\x1b[2J\x1b]0;pwned\x07x\x9b31m客户\x7f.jsonl"
    assert terminal_text(name) == ("inbox/usage/\\x1b[2J\\x1b]0;pwned\\x07x\\x9b31m客户\\x7f.jsonl")
    assert terminal_text("a\tb\nc") == "a\tb\nc"
    exc = RuntimeError(f"cannot read {name}")
    exc.add_note(f"while ingesting {name}")
    line = error_line("run", exc)
    assert "\x1b" not in line and "\x9b" not in line and "\\x1b[2J" in line
    record = logging.LogRecord("adbill", logging.WARNING, "", 0, "turned away %s", (name,), None)
    assert _TerminalFilter().filter(record)
    assert record.getMessage() == f"turned away {terminal_text(name)}"
