"""Statement documents, suspension CSVs and the run report (billing-rules §8, §9)."""

from __future__ import annotations

import csv
import re
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from flows import report as run_report
from tasks import documents
from tasks.documents import file_stem, statement_html, write_documents, write_statements
from tasks.documents_charts import _floats, chart_svg
from tasks.documents_data import usage_by_statement
from tasks.documents_files import csv_text
from tasks.documents_format import label, n, qty
from tasks.documents_page import LINE_COLUMNS, DocumentError, statement_csv
from tasks.settings import Settings
from tests.conftest import Inbox
from tests.helpers_issue3 import bill_with_lists, example_a, example_d, out_file


@pytest.fixture(scope="module")
def example_a_documents(tmp_path_factory) -> Inbox:
    inbox = Inbox(tmp_path_factory.mktemp("docs") / "data")
    example_a(inbox)
    bill_with_lists(inbox, "2026-12-31")
    return inbox


def text_of(html: str) -> str:
    """The page's visible text, tags dropped and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_example_a_november_page_shows_balances_usage_grant_and_money(example_a_documents):
    html = out_file(example_a_documents, "statements", "2026-11", "c1.html").read_text()
    text = text_of(html)
    assert "Customer c1" in text and "November 2026" in text
    assert "Final" in text and "Revision 1" in text
    assert "Opening balance 0" in text and "Closing balance 251" in text
    assert "+ Granted 300" in text and "− Used by events 49" in text
    assert "Digital human spokesperson 1 0 12.5 13" in text
    # the grant with the amount paid, available from the purchase, valid through 12-25
    assert "2026-11-26 10:00 2026-12-25 300 30.00" in text
    assert "+ Payments 30.00" in text and "− Revenue recognised (credits used) 4.90" in text
    assert "Prepaid, not yet used, at close 25.10" in text
    assert html.count("<rect") == 1  # one day with usage in the chart


def test_example_a_december_page_shows_the_expiry_and_its_breakage(example_a_documents):
    text = text_of(out_file(example_a_documents, "statements", "2026-12", "c1.html").read_text())
    assert "Opening balance 251" in text and "− Expired 251" in text
    assert "Closing balance 0" in text
    assert "2026-12-25 251 25.10" in text  # pool valid through 12-25: 251 expired, 25.10
    assert "− Breakage (credits expired unused) 25.10" in text


def test_statement_page_is_self_contained_printable_and_runs_no_script(example_a_documents):
    html = out_file(example_a_documents, "statements", "2026-11", "c1.html").read_text()
    assert "<script" not in html.lower() and "javascript:" not in html.lower()
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", html)
    # the only URL is the SVG namespace, which is a name and is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "@media print" in html and "<svg" in html


def test_statement_csv_beside_the_page_lists_its_usage_lines(example_a_documents):
    path = out_file(example_a_documents, "statements", "2026-11", "c1.csv")
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert [(r["function"], r["events"], r["quantity"], r["credits"]) for r in got] == [
        ("image_to_video", "1", "5", "30"),
        ("digital_human_spokesperson", "1", "12.5", "13"),
        ("copy_generation", "1", "3", "3"),
        ("video_translation", "1", "25", "3"),
    ]
    assert {(r["customer_id"], r["month"], r["revision"], r["status"]) for r in got} == {
        ("c1", "2026-11", "1", "final")
    }


def test_a_suspension_csv_is_written_for_every_billed_day_and_no_temp_file_is_left(
    example_a_documents,
):
    out = example_a_documents.settings.out_dir
    days = sorted(p.stem for p in (out / "suspensions").glob("*.csv"))
    assert days[0] == "2026-11-26" and days[-1] == "2026-12-31" and len(days) == 36
    assert [p for p in out.rglob(".*")] == []
    # 2026-12-25: the pool expired at the cutoff, nothing left: suspended, no_credits
    with (out / "suspensions" / "2026-12-25.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["status"], row["reason"], row["net_balance"], row["change"]) == (
        "suspended",
        "no_credits",
        "0",
        "suspended",
    )


def test_documents_of_a_billed_day_again_write_no_final_twice_and_rewriting_gives_the_same_files(
    example_a_documents,
):
    settings = example_a_documents.settings
    page = out_file(example_a_documents, "statements", "2026-11", "c1.html")
    before = page.read_text()
    from tasks.db import connect

    con = connect(settings.state_db)
    try:
        again = write_documents(con, settings.out_dir, [date(2026, 11, 30)], tz="Asia/Shanghai")
        # the final statement's documents were written by the run: only the day's list now
        assert (again.finals, again.month_to_date, again.lists) == (0, 0, 1)
        assert again.paths == [settings.out_dir / "suspensions" / "2026-11-30.csv"]
        written = write_statements(con, settings.out_dir, [date(2026, 11, 1)], "Asia/Shanghai")
    finally:
        con.close()
    assert page in written and page.read_text() == before


def test_customer_text_is_escaped_in_the_page_and_made_safe_as_a_file_name():
    s = {
        "customer_id": "<b>evil</b>",
        "month": date(2026, 2, 1),
        "revision": 2,
        "status": "month_to_date",
        "through_day": date(2026, 2, 10),
        "replaces_issued": "2026-03-01",
        "issued": "2026-03-05 01:00",
        "refreshed": "2026-03-07 02:30",
        "usage": None,
        "pools": [],
        "days": {},
    }
    s |= dict.fromkeys(
        (
            "opening_balance",
            "granted",
            "used",
            "expired",
            "arrears_opening",
            "arrears_opened",
            "arrears_settled",
            "arrears_outstanding",
            "closing_balance",
            "seats_entitled",
            "seats_used",
        ),
        0,
    )
    s |= dict.fromkeys(
        ("payments_cny", "revenue_cny", "breakage_cny", "deferred_opening_cny", "deferred_cny"),
        Decimal("0"),
    )
    s["chart"] = chart_svg(s)
    html = statement_html(s)
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    assert "February 2026" in html and "through 2026-02-10 (not final)" in html
    # a month-to-date page says when its figures were refreshed, not when first issued
    assert "Refreshed at 2026-03-07 02:30 (billing time)" in html and "Issued" not in html
    assert "Revision 2 (replaces revision 1 of 2026-03-01)" in html
    assert file_stem("c00012") == "c00012" and file_stem("../x/y").startswith("x_y~")


def files_under(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def unwritten_copy(inbox: Inbox, tmp_path):
    """A connection to a copy of the billed working state whose documents count as not
    written yet (as before the run's documents stage)."""
    from tasks.db import connect

    copy = tmp_path / "state-copy.duckdb"
    copy.write_bytes(inbox.settings.state_db.read_bytes())
    con = connect(copy)
    con.execute("delete from written_documents")
    return con


def test_statements_written_by_two_threads_are_the_same_bytes_as_by_one(
    example_a_documents, tmp_path, monkeypatch
):
    monkeypatch.setattr(documents, "PER_WORKER_MIN", 1)  # two statements: one per thread
    days = [date(2026, 11, 30), date(2026, 12, 31)]  # c1's November and December
    con = unwritten_copy(example_a_documents, tmp_path)
    try:
        one = write_documents(con, tmp_path / "one", days, tz="Asia/Shanghai", workers=1).paths
        con.execute("delete from written_documents")
        two = write_documents(con, tmp_path / "two", days, tz="Asia/Shanghai", workers=2).paths
    finally:
        con.close()
    assert [p.relative_to(tmp_path / "one") for p in one] == [
        p.relative_to(tmp_path / "two") for p in two
    ]
    assert len(one) == 2 * 2 + 2  # a page and a CSV per statement, a list per day
    assert files_under(tmp_path / "two") == files_under(tmp_path / "one")
    # and the same pages as the fixture's billing run wrote (one thread: two statements)
    for month in ("2026-11", "2026-12"):
        for name in ("c1.html", "c1.csv"):
            got = (tmp_path / "two" / "statements" / month / name).read_bytes()
            assert got == out_file(example_a_documents, "statements", month, name).read_bytes()


def test_a_statement_that_cannot_be_shown_fails_the_stage_naming_it_after_the_others_are_written(
    example_a_documents, tmp_path, monkeypatch
):
    real = documents.statement_data

    def december_cannot_render(*args, **kwargs):  # data December's page cannot show
        statements = real(*args, **kwargs)
        for s in statements:
            if s["month"] == date(2026, 12, 1):
                s["closing_balance"] = "not a number"
        return statements

    monkeypatch.setattr(documents, "PER_WORKER_MIN", 1)
    monkeypatch.setattr(documents, "statement_data", december_cannot_render)
    con = unwritten_copy(example_a_documents, tmp_path)
    try:
        with pytest.raises(
            DocumentError, match="customer 'c1' for 2026-12 .*\\(ValueError: invalid literal"
        ):
            days = [date(2026, 11, 30), date(2026, 12, 31)]
            write_documents(con, tmp_path / "out", days, tz="Asia/Shanghai", workers=2)
        # nothing is recorded as written: the next run writes both again
        assert con.execute("select count(*) from written_documents").fetchall() == [(0,)]
    finally:
        con.close()
    # the other thread wrote its part (November); nothing half-written anywhere
    assert (tmp_path / "out" / "statements" / "2026-11" / "c1.html").exists()
    assert not (tmp_path / "out" / "statements" / "2026-12" / "c1.html").exists()
    assert [p for p in (tmp_path / "out").rglob(".*")] == []


def reference_usage(s: dict, lines: list[dict]) -> tuple[list[list[str]], str]:
    """The usage table's cells and the statement's CSV, formatted one line at a time."""
    rows = [
        [label(x["function"]), n(x["events"]), n(x["failed_events"]), qty(x["quantity"])]
        + [n(x["credits"])]
        for x in lines
    ]
    text = csv_text(
        LINE_COLUMNS,
        [
            (
                s["customer_id"],
                f"{s['month']:%Y-%m}",
                s["revision"],
                s["status"],
                x["function"],
                x["events"],
                x["failed_events"],
                Decimal(qty(x["quantity"]).replace(",", "")),
                x["credits"],
            )
            for x in lines
        ],
    )
    return rows, text


def test_usage_rows_and_csv_lines_are_formatted_as_one_line_at_a_time():
    s = dict(customer_id='c,"1"', month=date(2026, 11, 1), revision=2, status="final")
    lines = [
        dict(
            function="video_translation",
            events=1234,
            failed_events=0,
            quantity="1234.500000",
            credits=1_234_567,
        ),
        dict(
            function='odd, "quoted" <name>',
            events=1,
            failed_events=1,
            quantity="0.000000",
            credits=0,
        ),
        dict(
            function="copy_generation", events=3, failed_events=0, quantity="30.000000", credits=3
        ),
    ]
    frame = pl.DataFrame(
        [dict(customer_key=7, month=s["month"]) | x for x in lines],
        schema_overrides={"quantity": pl.String},
    )
    (s["usage"],) = usage_by_statement(frame).to_dicts()
    rows, text = reference_usage(s, lines)
    u = s["usage"]
    assert u["rows"] == rows and statement_csv(s) == text
    assert (u["events"], u["failed_events"], u["credits"]) == (1238, 1, 1_234_570)
    assert rows[0][3] == "1,234.5" and ",1234.5," in text
    assert rows[1][0] == 'Odd, "quoted" <name>'  # escaped once, by the page's template
    assert '"c,""1""",2026-11,2,final,"odd, ""quoted"" <name>",1,1,0,0' in text


# ---------------------------------------------------------------- the run report


@pytest.fixture(scope="module")
def example_d_run(tmp_path_factory):
    inbox = Inbox(tmp_path_factory.mktemp("report") / "data")
    example_d(inbox)
    report = bill_with_lists(inbox, "2026-11-27")
    return inbox, report


def test_run_report_counts_credits_money_and_the_days_suspensions(example_d_run):
    inbox, report = example_d_run
    con = inbox.warehouse()
    figures = run_report.report_figures(con, [d["day"] for d in report.days])
    assert [(f["day"], f["suspended"], f["newly_suspended"], f["reinstated"]) for f in figures] == [
        (date(2026, 11, 26), 1, 1, 0),
        (date(2026, 11, 27), 0, 0, 1),
    ]
    md = run_report.run_report_markdown(report, figures)
    assert "days billed: **2** (2026-11-26 .. 2026-11-27; new 2)" in md
    assert "events accepted **2**, rejected **0**" in md
    # 300 used and 50 settled; basic fully used = 30.00 recognised, package 50/1050 of 100
    assert "| 300 | 50 | 0 | 50 | 34.76 | 0.00 | 130.00 |" in md
    assert "suspended: **0** (over the run's days: 1 newly suspended, 1 reinstated)" in md
    assert "at risk: **0**" in md


def test_run_artifacts_are_a_markdown_report_and_a_plain_table_of_the_last_days_list(
    example_d_run, monkeypatch
):
    import prefect.artifacts

    inbox, report = example_d_run
    made = {}
    monkeypatch.setattr(
        prefect.artifacts, "create_markdown_artifact", lambda **kw: made.setdefault("md", kw)
    )
    monkeypatch.setattr(
        prefect.artifacts, "create_table_artifact", lambda **kw: made.setdefault("table", kw)
    )
    run_report.publish_run_artifacts(Settings(data_dir=inbox.root), report)
    for kw in made.values():
        assert re.fullmatch(r"[a-z0-9-]+", kw["key"])
    assert "2026-11-27.csv" in made["md"]["markdown"]
    table = made["table"]["table"]
    assert table == [
        {
            "customer_id": "d1",
            "status": "active",
            "reason": "",
            "net_balance": 1000,
            "arrears_outstanding": 0,
            "suspended_since": "",
            "change": "reinstated",
            "projected_exhaustion_date": "",
        }
    ]
    assert all(isinstance(v, str | int | float) for row in table for v in row.values())


def test_numbers_on_the_chart_are_written_as_python_writes_one_decimal():
    """The charts of a month are built for all customers at once in Polars; every bar's
    number must still read exactly as f"{x:.1f}" (ties to even, -0.0, exact halves)."""
    import random

    rnd = random.Random(7)
    xs = [rnd.uniform(0, 700) for _ in range(50_000)] + [i / 20 for i in range(2_000)]
    xs += [0.25, 0.35, 2.45, 12.25, 99.95, 0.04999999999999999, 1e-9, 0.0, -0.0, -3.25]
    got = _floats(pl.Series(xs)).to_list()
    assert got == [f"{x:.1f}" for x in xs]


def test_chart_bars_stand_against_the_highest_day_in_day_order_with_the_month_ticks():
    nov = date(2026, 11, 1)
    days = {  # 136 px of plot: the highest day (used 80 + arrears 20) fills it
        date(2026, 11, 3): {"used": 34, "arrears_opened": 0},
        date(2026, 11, 2): {"used": 80, "arrears_opened": 20},
        date(2026, 11, 9): {"used": 0, "arrears_opened": 0},
    }
    svg = chart_svg({"month": nov, "days": days})
    assert svg.count("<rect") == 3  # a day of nothing draws no bar
    assert 'text-anchor="end">100</text>' in svg  # the scale's top: the highest day
    used2 = re.search(
        r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" '
        r'class="used"><title>2026-11-02: 80 credits used',
        svg,
    )
    owed2 = re.search(
        r'y="([\d.]+)" width="[\d.]+" height="([\d.]+)" class="owed">'
        r"<title>2026-11-02: 20 credits in arrears",
        svg,
    )
    used3 = re.search(
        r'y="([\d.]+)" width="[\d.]+" height="([\d.]+)" class="used">'
        r"<title>2026-11-03: 34 credits used",
        svg,
    )
    assert used2.groups() == ("39.2", "108.8")  # 80 * 1.36, from the axis at 148
    assert owed2.groups() == ("12.0", "27.2")  # stacked on top, up to the plot's top
    assert used3.groups() == (f"{148 - 34 * 1.36:.1f}", f"{34 * 1.36:.1f}")
    # ticks and bars in day order: day 1's tick, day 2's bars, day 3's bar, day 5's tick
    order = [m.group(0) for m in re.finditer(r">(\d+)</text>|2026-11-0\d", svg)]
    assert order.index(">1</text>") < order.index("2026-11-02") < order.index("2026-11-03")
    assert order.index("2026-11-03") < order.index(">5</text>")
    assert svg.endswith(">30</text></svg>")  # the month's last tick closes the chart
