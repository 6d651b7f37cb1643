"""A statement as its two documents: the printable page (HTML, from the Jinja2 template
tasks/templates/statement.html.j2) and the CSV of its usage lines."""

from __future__ import annotations

from datetime import date

from jinja2 import Environment, PackageLoader, StrictUndefined

from tasks.documents_files import csv_text, replace_file, safe_file_stem
from tasks.documents_format import cny, csv_quantity, label, month_texts, n

LINE_COLUMNS = (
    "customer_id",
    "month",
    "revision",
    "status",
    "function",
    "events",
    "failed_events",
    "quantity",
    "credits",
)

# every value the page shows is escaped here, by autoescape, and nowhere else
TEMPLATES = Environment(
    loader=PackageLoader("tasks", "templates"),
    autoescape=True,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)
TEMPLATES.filters.update(n=n, cny=cny, label=label)
PAGE = TEMPLATES.get_template("statement.html.j2")


def statement_html(s: dict) -> str:
    """One customer's statement for one month, as a self-contained printable page (`s`: a
    statement of documents_data.statement_data, with its chart)."""
    final = s["status"] == "final"
    ym, period = month_texts(s["month"])
    pools = s["pools"]
    return PAGE.render(
        s=s,
        ym=ym,
        period=period,
        final=final,
        status="Final"
        if final
        else f"Month to date, through {s['through_day'].isoformat()} (not final)",
        revision=_revision(s),
        chart=s["chart"],
        granted=[p for p in pools if p["granted"]],
        later=later_orders(pools, ym),
        expired=[p for p in pools if p["state"] == "expired"],
        active=[p for p in pools if p["state"] == "active"],
        seats_over=s["seats_used"] > s["seats_entitled"],
    )


def _revision(s: dict) -> str:
    text = f"Revision {s['revision']}"
    if s["revision"] > 1 and s["replaces_issued"]:
        text += f" (replaces revision {s['revision'] - 1} of {s['replaces_issued']})"
    return text


def later_orders(pools: list[dict], ym: str) -> list[dict]:
    """The periods paid for in the month `ym` that start later: one row per order, with its
    first period's product, start and payment day, its last period's last day and the
    credits and amount of all of them."""
    by_order: dict[str, list[dict]] = {}
    for p in pools:
        if p["state"] == "queued" and p["paid_on"].startswith(ym):
            by_order.setdefault(p["order_id"], []).append(p)
    rows = []
    for order_id, queued in by_order.items():
        first, last = queued[0], queued[-1]
        if first["source"] != "subscription":
            periods = "starts later"
        elif len(queued) == 1:
            periods = f"month {first['period_index'] + 1}"
        else:
            periods = f"months {first['period_index'] + 1}–{last['period_index'] + 1}"
        rows.append(
            {
                "order_id": order_id,
                "product": first["product"],
                "periods": periods,
                "paid_on": first["paid_on"],
                "starts": first["starts"],
                "last_day": last["last_day"],
                "credits": sum(p["credits"] for p in queued),
                "amount_cny": sum(p["amount_cny"] for p in queued),
            }
        )
    return rows


def statement_csv(s: dict) -> str:
    """The statement's usage lines, one per function (the header alone without usage)."""
    own = (s["customer_id"], month_texts(s["month"])[0], s["revision"], s["status"])
    lines = s["usage"]["csv"] if s["usage"] else []
    return csv_text(
        LINE_COLUMNS,
        [
            (
                *own,
                x["function"],
                x["events"],
                x["failed_events"],
                csv_quantity(x["quantity"]),
                x["credits"],
            )
            for x in lines
        ],
    )


class DocumentError(RuntimeError):
    """A statement whose documents could not be made from its data."""


def write_pages(statements: list[dict], folders: dict[date, str]) -> None:
    """Each statement's page and CSV, written into its month's folder."""
    for s in statements:
        try:
            html, text = statement_html(s), statement_csv(s)
        except Exception as e:
            raise DocumentError(
                f"The statement of customer {s['customer_id']!r} for {s['month']:%Y-%m} could "
                f"not be written ({type(e).__name__}: {e}); fix the cause and run the billing "
                "again."
            ) from e
        folder = folders[s["month"]]
        stem = s.get("file_stem") or safe_file_stem(s["customer_id"])
        replace_file(folder, f"{stem}.html", html.encode("utf-8"))
        replace_file(folder, f"{stem}.csv", text.encode("utf-8"))
