"""Statement documents (HTML and CSV) and daily suspension CSVs under <data-dir>/out."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from string import Template

from tasks.db import execute
from tasks.settings import Settings

SUSPENSION_COLUMNS = (
    "customer_id",
    "status",
    "reason",
    "net_balance",
    "arrears_outstanding",
    "suspended_since",
    "change",
    "projected_exhaustion_date",
)
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
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# ---------------------------------------------------------------- files


def write_atomic(path: Path, text: str) -> Path:
    """Write a file so that a reader sees the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_stem(customer_id: str) -> str:
    """A customer id made safe as a file name (ids are expected to be safe already)."""
    stem = _UNSAFE.sub("_", customer_id)
    return stem if stem.strip("._") else f"_{stem}"


def csv_text(columns: tuple[str, ...], rows: list[tuple]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def _rows(con, text: str, params: dict) -> list[dict]:
    """A query's rows as dicts (fully fetched)."""
    cur = execute(con, text, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# ---------------------------------------------------------------- suspension lists


def suspension_list_rows(con, day: date) -> list[tuple]:
    """The day's list for operations: suspended first, then reinstated, then at risk."""
    cur = execute(
        con,
        f"""
        select {", ".join(SUSPENSION_COLUMNS)}
        from suspension_list
        where day = $day
        order by case status when 'suspended' then 0 when 'active' then 1 else 2 end,
                 customer_id
        """,
        {"day": day},
    )
    return cur.fetchall()


def write_suspension_list(con, out_dir: Path, day: date) -> Path:
    """<out>/suspensions/YYYY-MM-DD.csv: who to suspend, who to reinstate, who to warn."""
    rows = suspension_list_rows(con, day)
    return write_atomic(
        out_dir / "suspensions" / f"{day.isoformat()}.csv", csv_text(SUSPENSION_COLUMNS, rows)
    )


# ---------------------------------------------------------------- statements: the data


def statement_data(con, months: list[date], tz: str) -> list[dict]:
    """The latest revision of every statement of the months, with its lines, pools and days."""
    params = {"months": months, "tz": tz}
    statements = _rows(
        con,
        """
        select s.*,
               p.created_at as replaces_created_at,
               strftime(timezone($tz, s.created_at), '%Y-%m-%d %H:%M') as issued,
               strftime(timezone($tz, p.created_at), '%Y-%m-%d') as replaces_issued
        from latest_statements as s
        left join statements as p
            on p.customer_key = s.customer_key and p.month = s.month
            and p.revision = s.revision - 1
        where s.month in (select unnest($months))
        order by s.month, s.customer_id
        """,
        params,
    )
    lines = _rows(
        con,
        """
        select l.* from statement_lines as l
        join latest_statements as s using (customer_key, month, revision)
        where l.month in (select unnest($months))
        order by l.credits desc, l.function
        """,
        params,
    )
    pools = _rows(
        con,
        """
        select l.*,
               strftime(timezone($tz, l.available_from), '%Y-%m-%d %H:%M') as starts,
               strftime(timezone($tz, l.expires_at) - interval 1 day, '%Y-%m-%d') as last_day,
               strftime(timezone($tz, l.purchased_at), '%Y-%m-%d') as paid_on
        from statement_pools as l
        join latest_statements as s using (customer_key, month, revision)
        where l.month in (select unnest($months))
        order by l.available_from, l.pool_id
        """,
        params,
    )
    days = _rows(
        con,
        """
        select d.customer_key, s.month, d.day, d.used, d.arrears_opened
        from customer_days as d
        join latest_statements as s
            on s.customer_key = d.customer_key
            and d.day between s.month and s.through_day
        where s.month in (select unnest($months))
        """,
        params,
    )
    by_key: dict[tuple, dict] = {}
    for s in statements:
        s.update(lines=[], pools=[], days={})
        by_key[(s["customer_key"], s["month"])] = s
    for row in lines:
        by_key[(row["customer_key"], row["month"])]["lines"].append(row)
    for row in pools:
        by_key[(row["customer_key"], row["month"])]["pools"].append(row)
    for row in days:
        by_key[(row["customer_key"], row["month"])]["days"][row["day"]] = row
    return statements


# ---------------------------------------------------------------- statements: the page


def n(value) -> str:
    """Credits with thousands separators."""
    return f"{int(value or 0):,}"


def cny(value) -> str:
    return f"{Decimal(value or 0):,.2f}"


def qty(value) -> str:
    """A quantity without trailing zeros (12.5, 30)."""
    d = Decimal(value or 0).normalize()
    return f"{d:,f}"


def label(code: str) -> str:
    return code.replace("_", " ").capitalize()


def month_end(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def chart_svg(s: dict) -> str:
    """Daily credits used (and opened as arrears) as an inline SVG bar chart."""
    first, last = s["month"], month_end(s["month"])
    ndays = last.day
    width, height, left, top, bottom = 680, 170, 44, 12, 22
    plot_w, plot_h = width - left - 8, height - top - bottom
    step = plot_w / ndays
    peak = max((r["used"] + r["arrears_opened"] for r in s["days"].values()), default=0)
    scale = plot_h / peak if peak else 0
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" '
        'aria-label="Daily credits used in the month">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 6}" y="{top + 4}" class="tick" text-anchor="end">{n(peak)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    for i in range(ndays):
        day = first + timedelta(days=i)
        x = left + i * step + step * 0.15
        w = step * 0.7
        row = s["days"].get(day)
        if i == 0 or (i + 1) % 5 == 0 or i == ndays - 1:
            parts.append(
                f'<text x="{x + w / 2:.1f}" y="{height - 6}" class="tick" '
                f'text-anchor="middle">{day.day}</text>'
            )
        if row is None:
            continue
        used, owed = row["used"], row["arrears_opened"]
        h_used, h_owed = used * scale, owed * scale
        y = top + plot_h - h_used
        tip = f"{day.isoformat()}: {n(used)} credits used"
        if used:
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h_used:.1f}" '
                f'class="used"><title>{tip}</title></rect>'
            )
        if owed:
            parts.append(
                f'<rect x="{x:.1f}" y="{y - h_owed:.1f}" width="{w:.1f}" height="{h_owed:.1f}" '
                f'class="owed"><title>{day.isoformat()}: {n(owed)} credits in arrears'
                "</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: tuple[str, ...], rows: list[tuple], foot: tuple | None = None) -> str:
    """An HTML table; cells are already escaped; columns after the first are numbers."""

    def cells(row, tag):
        return "".join(
            f"<{tag}{'' if i == 0 else ' class=num'}>{v}</{tag}>" for i, v in enumerate(row)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    tfoot = f"<tfoot><tr>{cells(foot, 'th')}</tr></tfoot>" if foot else ""
    return f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>{body}</tbody>{tfoot}</table>"


def _pool_name(p: dict) -> str:
    name = escape(label(p["product"]))
    if p["source"] == "subscription":
        name += f" · month {p['period_index'] + 1}"
    return f"{name}<div class=sub>{escape(p['pool_id'])}</div>"


def _sections(s: dict) -> dict[str, str]:
    """The page's pieces for one statement, escaped and formatted."""
    empty = '<p class="none">None this month.</p>'
    lines = s["lines"]
    usage = (
        _table(
            ("Function", "Events", "Failed (free)", "Quantity", "Credits"),
            [
                (
                    escape(label(x["function"])),
                    n(x["events"]),
                    n(x["failed_events"]),
                    qty(x["quantity"]),
                    n(x["credits"]),
                )
                for x in lines
            ],
            (
                "Total",
                n(sum(x["events"] for x in lines)),
                n(sum(x["failed_events"] for x in lines)),
                "",
                n(sum(x["credits"] for x in lines)),
            ),
        )
        if lines
        else empty
    )
    if s["arrears_opened"]:
        usage += (
            f'<p class="sub">{n(s["rated"])} credits rated: {n(s["used"])} drawn from your '
            f"credits, {n(s['arrears_opened'])} not covered by any credits (arrears).</p>"
        )
    month = f"{s['month']:%Y-%m}"
    grant_rows = [
        (
            _pool_name(p) + f"<div class=sub>order {escape(p['order_id'])} · paid {p['paid_on']}"
            "</div>",
            p["starts"],
            p["last_day"],
            n(p["granted"]),
            cny(p["amount_cny"]),
        )
        for p in s["pools"]
        if p["granted"]
    ]
    # periods paid for this month that start later: one row per order
    later: dict[str, list[dict]] = {}
    for p in s["pools"]:
        if p["state"] == "queued" and p["paid_on"].startswith(month):
            later.setdefault(p["order_id"], []).append(p)
    for order_id, pools in later.items():
        first, last = pools[0], pools[-1]
        periods = (
            f"month {first['period_index'] + 1}"
            if len(pools) == 1
            else f"months {first['period_index'] + 1}–{last['period_index'] + 1}"
        )
        if first["source"] != "subscription":
            periods = "starts later"
        grant_rows.append(
            (
                f"{escape(label(first['product']))} · {periods}"
                f"<div class=sub>order {escape(order_id)} · paid {first['paid_on']}"
                " · not yet available</div>",
                first["starts"],
                last["last_day"],
                f'<span class="sub">{n(sum(p["credits"] for p in pools))} later</span>',
                cny(sum(p["amount_cny"] for p in pools)),
            )
        )
    grants = (
        _table(
            ("Pool", "Available from", "Valid through", "Credits", "Amount paid (CNY)"),
            grant_rows,
        )
        if grant_rows
        else empty
    )
    expired = [p for p in s["pools"] if p["state"] == "expired"]
    expiry = (
        _table(
            ("Pool", "Valid through", "Credits expired", "Breakage (CNY)"),
            [
                (_pool_name(p), p["last_day"], n(p["expired"]), cny(p["breakage_cny"]))
                for p in expired
            ],
        )
        if expired
        else empty
    )
    active = [p for p in s["pools"] if p["state"] == "active"]
    holding = (
        _table(
            ("Pool", "Valid through", "Credits left"),
            [(_pool_name(p), p["last_day"], n(p["remaining"])) for p in active],
            ("Closing balance", "", n(s["closing_balance"])),
        )
        if active
        else '<p class="none">No credit pool is active at the close.</p>'
    )
    return {"usage": usage, "grants": grants, "expiry": expiry, "holding": holding}


def statement_html(s: dict) -> str:
    """One customer's statement for one month, as a self-contained printable page."""
    month = s["month"]
    final = s["status"] == "final"
    status = (
        "Final" if final else f"Month to date, through {s['through_day'].isoformat()} (not final)"
    )
    revision = f"Revision {s['revision']}"
    if s["revision"] > 1 and s["replaces_issued"]:
        revision += f" (replaces revision {s['revision'] - 1} of {s['replaces_issued']})"
    pieces = _sections(s)
    balances = _table(
        ("Credits", ""),
        [
            ("Opening balance", n(s["opening_balance"])),
            ("+ Granted", n(s["granted"])),
            ("− Used by events", n(s["used"])),
            ("− Used to settle arrears", n(s["arrears_settled"])),
            ("− Expired", n(s["expired"])),
        ],
        ("Closing balance", n(s["closing_balance"])),
    )
    arrears = _table(
        ("Arrears (credits)", ""),
        [
            ("Outstanding at opening", n(s["arrears_opening"])),
            ("+ Opened (usage no pool covered)", n(s["arrears_opened"])),
            ("− Settled from new credits", n(s["arrears_settled"])),
        ],
        ("Outstanding at close", n(s["arrears_outstanding"])),
    )
    money = _table(
        ("CNY", ""),
        [
            ("Prepaid, not yet used, at opening", cny(s["deferred_opening_cny"])),
            ("+ Payments", cny(s["payments_cny"])),
            ("− Revenue recognised (credits used)", cny(s["revenue_cny"])),
            ("− Breakage (credits expired unused)", cny(s["breakage_cny"])),
        ],
        ("Prepaid, not yet used, at close", cny(s["deferred_cny"])),
    )
    over = s["seats_used"] > s["seats_entitled"]
    seats = (
        f'<p class="{"warn" if over else ""}">{n(s["seats_used"])} account(s) used the service; '
        f"{n(s['seats_entitled'])} seat(s) entitled at the close"
        f"{' — more accounts than seats' if over else ''}.</p>"
    )
    return PAGE.substitute(
        title=escape(f"Statement {s['customer_id']} {month:%Y-%m}"),
        customer=escape(s["customer_id"]),
        period=f"{month:%B %Y} ({month.isoformat()} – {month_end(month).isoformat()})",
        status=escape(status),
        status_class="final" if final else "draft",
        revision=escape(revision),
        issued=escape(s["issued"] or ""),
        opening=n(s["opening_balance"]),
        granted=n(s["granted"]),
        used=n(s["used"]),
        closing=n(s["closing_balance"]),
        owed=n(s["arrears_outstanding"]),
        balances=balances,
        chart=chart_svg(s),
        arrears=arrears,
        money=money,
        seats=seats,
        **pieces,
    )


def statement_csv(s: dict) -> str:
    """The statement's usage lines, one per function."""
    month = f"{s['month']:%Y-%m}"
    rows = [
        (
            s["customer_id"],
            month,
            s["revision"],
            s["status"],
            x["function"],
            x["events"],
            x["failed_events"],
            qty(x["quantity"]).replace(",", ""),
            x["credits"],
        )
        for x in s["lines"]
    ]
    return csv_text(LINE_COLUMNS, rows)


def write_statements(con, out_dir: Path, months: list[date], tz: str) -> list[Path]:
    """<out>/statements/YYYY-MM/<customer_id>.html and .csv for every statement of the months."""
    written = []
    for s in statement_data(con, months, tz):
        folder = out_dir / "statements" / f"{s['month']:%Y-%m}"
        stem = file_stem(s["customer_id"])
        written.append(write_atomic(folder / f"{stem}.html", statement_html(s)))
        written.append(write_atomic(folder / f"{stem}.csv", statement_csv(s)))
    return written


def write_documents(con, out_dir: Path, days: list[date], *, tz: str | None = None) -> list[Path]:
    """Write the statements of the billed days' months and each billed day's suspension list."""
    tz = tz or Settings().billing_tz
    out_dir = Path(out_dir)
    days = sorted(set(days))
    months = sorted({d.replace(day=1) for d in days})
    written = write_statements(con, out_dir, months, tz) if months else []
    written += [write_suspension_list(con, out_dir, d) for d in days]
    return written


_CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
       Arial, sans-serif; color: #1a202c; margin: 24px auto; max-width: 760px; padding: 0 16px; }
header { display: flex; justify-content: space-between; align-items: flex-start;
         border-bottom: 2px solid #1a202c; padding-bottom: 10px; margin-bottom: 14px; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 14px; margin: 18px 0 6px; text-transform: uppercase; letter-spacing: .04em;
     color: #2d3748; border-bottom: 1px solid #cbd5e0; padding-bottom: 3px; }
.vendor { color: #4a5568; font-size: 12px; }
.meta { text-align: right; font-size: 12px; color: #4a5568; }
.meta b { color: #1a202c; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
         font-size: 12px; border: 1px solid currentColor; }
.badge.final { color: #276749; } .badge.draft { color: #b7791f; }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 8px; margin: 6px 0 4px; }
.card { border: 1px solid #cbd5e0; border-radius: 6px; padding: 6px 8px; }
.card span { display: block; font-size: 11px; color: #4a5568; }
.card b { font-size: 17px; font-variant-numeric: tabular-nums; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 20px; }
table { width: 100%; border-collapse: collapse; margin: 2px 0 4px;
        font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e2e8f0;
         vertical-align: top; }
thead th { font-size: 11px; color: #4a5568; font-weight: 600; border-bottom-color: #a0aec0; }
tfoot th { border-top: 1.5px solid #1a202c; border-bottom: none; }
.num { text-align: right; white-space: nowrap; }
.sub { font-size: 10.5px; color: #718096; }
.none { color: #718096; font-style: italic; margin: 2px 0; }
.warn { color: #c53030; font-weight: 600; }
.chart { width: 100%; height: auto; }
.chart .axis { stroke: #a0aec0; stroke-width: 1; }
.chart .tick { font-size: 10px; fill: #4a5568; }
.chart .used { fill: #2b6cb0; } .chart .owed { fill: #c53030; }
.legend { font-size: 11px; color: #4a5568; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
footer { margin-top: 18px; font-size: 10.5px; color: #718096; border-top: 1px solid #cbd5e0;
         padding-top: 6px; }
section, table, .cards, svg { break-inside: avoid; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 11.5px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>"""
    + _CSS
    + """</style>
</head>
<body>
<header>
  <div>
    <h1>Credit statement</h1>
    <div class="vendor">Ad Creative Delivery Agent</div>
    <div>Customer <b>$customer</b></div>
    <div>Period <b>$period</b></div>
  </div>
  <div class="meta">
    <div><span class="badge $status_class">$status</span></div>
    <div><b>$revision</b></div>
    <div>Issued $issued (billing time)</div>
  </div>
</header>

<div class="cards">
  <div class="card"><span>Opening balance</span><b>$opening</b></div>
  <div class="card"><span>Granted</span><b>$granted</b></div>
  <div class="card"><span>Used</span><b>$used</b></div>
  <div class="card"><span>Closing balance</span><b>$closing</b></div>
  <div class="card"><span>Arrears outstanding</span><b>$owed</b></div>
</div>

<section>
<h2>Daily credits used</h2>
$chart
<div class="legend"><i style="background:#2b6cb0"></i>drawn from your credits
<i style="background:#c53030"></i>arrears (usage no credits covered)</div>
</section>

<section class="cols">
<div><h2>Balances</h2>$balances</div>
<div><h2>Arrears</h2>$arrears</div>
</section>

<section>
<h2>Usage by function</h2>
$usage
</section>

<section>
<h2>Credits granted and paid for</h2>
$grants
</section>

<section>
<h2>Expired this month</h2>
$expiry
</section>

<section>
<h2>Credits held at the close</h2>
$holding
</section>

<section class="cols">
<div><h2>Amounts (CNY)</h2>$money</div>
<div><h2>Seats</h2>$seats</div>
</section>

<footer>All figures are credits unless marked CNY. Days are billing days in the billing time
zone; a pool valid through a day expires at the end of that day (24:00). Revenue is recognised
as credits are used; credits that expire unused are breakage. A final statement that changes
later (late usage data) is reissued with a new revision number.</footer>
</body>
</html>
"""
)
