"""A statement's page: made from the package's Jinja2 template, every text of the data
escaped once (billing-rules §8; interfaces.md, Data dir)."""

from __future__ import annotations

import importlib.resources
from datetime import date
from decimal import Decimal

from jinja2 import PackageLoader

from tasks.documents_charts import chart_svg
from tasks.documents_page import TEMPLATES, statement_html

FIGURES = (
    "opening_balance",
    "granted",
    "used",
    "expired",
    "rated",
    "arrears_opening",
    "arrears_opened",
    "arrears_settled",
    "arrears_outstanding",
    "closing_balance",
    "seats_entitled",
    "seats_used",
)
AMOUNTS = ("payments_cny", "revenue_cny", "breakage_cny", "deferred_opening_cny", "deferred_cny")


def pool(state: str, **kw) -> dict:
    p = {
        "pool_id": "p<1>",
        "order_id": "o&1",
        "source": "package",
        "product": "big_<pack>",
        "period_index": 0,
        "state": state,
        "credits": 100,
        "granted": 0,
        "expired": 0,
        "remaining": 0,
        "amount_cny": Decimal("10.00"),
        "breakage_cny": Decimal("0.00"),
        "paid_on": "2026-11-02",
        "starts": "2026-11-02 10:00",
        "last_day": "2026-12-01",
    }
    return p | kw


def statement(customer_id: str, pools: list[dict]) -> dict:
    s = {
        "customer_id": customer_id,
        "month": date(2026, 11, 1),
        "revision": 1,
        "status": "final",
        "through_day": date(2026, 11, 30),
        "replaces_issued": None,
        "issued": "2026-12-01 01:00",
        "usage": None,
        "pools": pools,
        "days": {},
    }
    s |= dict.fromkeys(FIGURES, 0) | dict.fromkeys(AMOUNTS, Decimal("0"))
    s["chart"] = chart_svg(s)
    return s


def test_the_page_template_ships_inside_the_tasks_package():
    assert isinstance(TEMPLATES.loader, PackageLoader)
    assert importlib.resources.files("tasks").joinpath("templates/statement.html.j2").is_file()
    assert TEMPLATES.autoescape is True


def test_every_text_of_the_data_is_escaped_once_on_the_page():
    pools = [
        pool("active", granted=100, remaining=100),
        pool("expired", pool_id="p<2>", expired=5),
        pool("queued", pool_id="p<3>", order_id="o&3"),
    ]
    html = statement_html(statement("a&b\"<c>'", pools))
    assert "Customer <b>a&amp;b&#34;&lt;c&gt;&#39;</b>" in html
    assert "<title>Statement a&amp;b&#34;&lt;c&gt;&#39; 2026-11</title>" in html
    # a pool's product, id and order, granted, expired, active and paid for a later start
    assert "<td>Big &lt;pack&gt;<div class=sub>p&lt;1&gt;</div><div class=sub>order o&amp;1" in html
    assert "<td>Big &lt;pack&gt;<div class=sub>p&lt;2&gt;</div></td>" in html
    assert "<td>Big &lt;pack&gt; · starts later<div class=sub>order o&amp;3 · paid" in html
    assert "&amp;amp;" not in html and "&amp;lt;" not in html
    assert "<c>" not in html and "<pack>" not in html and "<1>" not in html
