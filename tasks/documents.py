"""Statement documents (HTML and CSV) and daily suspension CSVs under <data-dir>/out."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from functools import cache, partial
from html import escape
from pathlib import Path
from string import Template
from typing import Any

import polars as pl

from tasks.db import execute, frame
from tasks.documents_files import (
    csv_fields,
    csv_text,
    replace_file,
    safe_file_stem,
    write_atomic,
)
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
_CSV_HEADER = ",".join(LINE_COLUMNS) + "\n"
PER_WORKER_MIN = 500  # statements below which a further process does not pay for itself


# ---------------------------------------------------------------- files


file_stem = safe_file_stem  # the name bench/documents_bench.py and older callers know


def _csv_field(value) -> str:
    """One value as the csv module writes it among other fields of a line (text through
    csv_cell); an empty value is an empty field."""
    return "" if value is None or value == "" else csv_fields((value,))


def _csv_number(text: str) -> str:
    """A number already written as text (a quantity: digits, `.`, maybe `-`), as it is: a
    number is never quoted nor neutralised."""
    return text


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


def _group(rows: list[dict], by_key: dict[tuple, dict], field: str) -> None:
    """Append each row to the list `field` of its statement (rows keep their query order)."""
    for row in rows:
        by_key[(row["customer_key"], row["month"])][field].append(row)


def statement_data(con, months: list[date], tz: str) -> list[dict]:
    """The latest revision of every statement of the months, with its usage (see
    usage_by_statement; None without usage lines), pools and days."""
    params = {"months": months, "tz": tz}
    statements = _rows(
        con,
        """
        select s.customer_key, s.customer_id, s.month, s.revision, s.status, s.through_day,
               s.opening_balance, s.granted, s.used, s.expired, s.rated,
               s.arrears_opening, s.arrears_opened, s.arrears_settled, s.arrears_outstanding,
               s.closing_balance, s.seats_entitled, s.seats_used,
               s.payments_cny, s.revenue_cny, s.breakage_cny, s.deferred_opening_cny,
               s.deferred_cny,
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
    lines = frame(
        con,
        """
        select l.customer_key, l.month, l.function, l.events, l.failed_events,
               l.quantity::varchar as quantity, -- exact text for qty(), cheaper than a Decimal
               l.credits
        from statement_lines as l
        join latest_statements as s using (customer_key, month, revision)
        where l.month in (select unnest($months))
        order by l.credits desc, l.function
        """,
        params,
    )
    # only the pools a page shows (see _sections): granted, expired or active in the month,
    # or queued and paid for in the month; most pools are later periods paid for earlier
    pools = _rows(
        con,
        """
        with shown as (
            select l.*,
                   strftime(timezone($tz, l.purchased_at), '%Y-%m-%d') as paid_on
            from statement_pools as l
            join latest_statements as s using (customer_key, month, revision)
            where l.month in (select unnest($months))
        )
        select customer_key, month, pool_id, order_id, source, product, period_index, state,
               credits, granted, expired, remaining, amount_cny, breakage_cny, paid_on,
               strftime(timezone($tz, available_from), '%Y-%m-%d %H:%M') as starts,
               strftime(timezone($tz, expires_at) - interval 1 day, '%Y-%m-%d') as last_day
        from shown
        where granted <> 0 or state in ('expired', 'active')
            or (state = 'queued' and starts_with(paid_on, strftime(month, '%Y-%m')))
        order by available_from, pool_id
        """,
        params,
    )
    days = frame(
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
        s.update(usage=None, pools=[])
        by_key[(s["customer_key"], s["month"])] = s
    for u in usage_by_statement(lines).iter_rows(named=True):
        by_key[(u["customer_key"], u["month"])]["usage"] = u
    _group(pools, by_key, "pools")
    keys = list(by_key)  # the statements' order
    for key, chart in zip(keys, chart_svgs(keys, days), strict=True):
        by_key[key]["chart"] = chart
    return statements


def _each(values: pl.Series, fmt: Callable[[Any], str]) -> pl.Series:
    """fmt(value) for every value, called once per distinct value."""
    distinct = values.unique()
    texts = [fmt(v) for v in distinct.to_list()]
    return values.replace_strict(distinct, texts, return_dtype=pl.String)


def usage_by_statement(lines: pl.DataFrame) -> pl.DataFrame:
    """Per statement (customer_key, month): its usage table's rows as HTML (`rows`), the
    totals of events, failed events and credits, and its CSV lines after the statement's
    own fields (`csv`); the lines in their given order, each cell formatted as on the page."""
    cells = lines.select(
        "customer_key",
        "month",
        "events",
        "failed_events",
        "credits",
        rows=pl.format(
            _row_format(5, "td"),
            _each(lines["function"], label_html),
            _each(lines["events"], n),
            _each(lines["failed_events"], n),
            _each(lines["quantity"], qty),
            _each(lines["credits"], n),
        ),
        csv=pl.format(
            "{},{},{},{},{}",
            _each(lines["function"], _csv_field),
            _each(lines["events"], _csv_field),
            _each(lines["failed_events"], _csv_field),
            _each(lines["quantity"], lambda q: _csv_number(qty(q).replace(",", ""))),
            _each(lines["credits"], _csv_field),
        ),
    )
    return cells.group_by("customer_key", "month", maintain_order=True).agg(
        pl.col("rows").str.join(""),
        pl.col("events", "failed_events", "credits").sum(),
        pl.col("csv"),
    )


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


@cache
def month_texts(month: date) -> tuple[str, str]:
    """The month as 2026-11 and as the page's period: November 2026 (2026-11-01 – 2026-11-30)."""
    period = f"{month:%B %Y} ({month.isoformat()} – {month_end(month).isoformat()})"
    return f"{month:%Y-%m}", period


_CHART_W, _CHART_H, _CHART_LEFT, _CHART_TOP, _CHART_BOTTOM = 680, 170, 44, 12, 22
_CHART_BASE = _CHART_H - _CHART_BOTTOM  # y of the axis
_CHART_HEAD = (
    f'<svg class="chart" viewBox="0 0 {_CHART_W} {_CHART_H}" width="{_CHART_W}" '
    f'height="{_CHART_H}" xmlns="http://www.w3.org/2000/svg" role="img" '
    'aria-label="Daily credits used in the month">'
    f'<line x1="{_CHART_LEFT}" y1="{_CHART_BASE}" x2="{_CHART_W - 8}" y2="{_CHART_BASE}" '
    'class="axis"/>'
)
_CHART_ZERO = (
    f'<text x="{_CHART_LEFT - 6}" y="{_CHART_BASE}" class="tick" text-anchor="end">0</text>'
)


@cache
def _chart_month(first: date) -> tuple[list[str], list[tuple[float, float]]]:
    """What a month's chart draws for every customer: each day's tick label (or "") and
    the x and width of each day's bar."""
    ndays = month_end(first).day
    plot_w = _CHART_W - _CHART_LEFT - 8
    step = plot_w / ndays
    ticks, bars = [], []
    for i in range(ndays):
        x = _CHART_LEFT + i * step + step * 0.15
        w = step * 0.7
        bars.append((x, w))
        ticks.append(
            f'<text x="{x + w / 2:.1f}" y="{_CHART_H - 6}" class="tick" '
            f'text-anchor="middle">{i + 1}</text>'
            if i == 0 or (i + 1) % 5 == 0 or i == ndays - 1
            else ""
        )
    return ticks, bars


def chart_svg(s: dict) -> str:
    """Daily credits used (and opened as arrears) as an inline SVG bar chart: the one made
    with the statement's data, or made from its `days` ({day: {used, arrears_opened}})."""
    if "chart" in s:
        return s["chart"]
    days = pl.DataFrame(
        [
            {
                "customer_key": 0,
                "month": s["month"],
                "day": d,
                "used": r["used"],
                "arrears_opened": r["arrears_opened"],
            }
            for d, r in s.get("days", {}).items()
        ],
        schema=_DAYS_SCHEMA,
    )
    return chart_svgs([(0, s["month"])], days)[0]


_DAYS_SCHEMA = {
    "customer_key": pl.Int64,
    "month": pl.Date,
    "day": pl.Date,
    "used": pl.Int64,
    "arrears_opened": pl.Int64,
}


def _floats(values: pl.Series) -> pl.Series:
    """Each number with one decimal, exactly as Python's f"{x:.1f}" writes it.

    Tenths are rounded in Polars; a number within a hair of half a tenth (where x * 10 may
    round the other way than x's exact value does), 0 or below 0 is written by Python."""
    v = values.cast(pl.Float64).rename("v")
    tenths = v * 10
    whole = (tenths + 0.5).floor()
    odd = ((tenths - tenths.floor() - 0.5).abs() < 1e-6) | (v <= 0) | ~v.is_finite()
    q = whole.cast(pl.Int64, strict=False).fill_null(0)
    out = pl.select(pl.format("{}.{}", q // 10, q % 10)).to_series().rename(values.name)
    if odd.any():
        at = odd.arg_true()
        out = out.scatter(at, [f"{x:.1f}" for x in v.gather(at).to_list()])
    return out


def chart_svgs(keys: list[tuple], days: pl.DataFrame) -> list[str]:
    """The chart of each statement of `keys` ((customer_key, month)), from `days` (one row per
    customer, month and day with figures: customer_key, month, day, used, arrears_opened).

    A bar per day with figures, its height against the statement's highest day; the month's
    tick labels; the bars and labels in day order. Built for all statements at once (a month
    of 10,000 customers is 310,000 days), not statement by statement."""
    if not keys:
        return []
    plot_h = _CHART_H - _CHART_TOP - _CHART_BOTTOM
    ks = pl.DataFrame(
        {"customer_key": [k[0] for k in keys], "month": [k[1] for k in keys]},
        schema={"customer_key": pl.Int64, "month": pl.Date},
    ).with_row_index("order")
    grid = []  # every day of each month: its index, tick label and bar position
    for month in ks["month"].unique().to_list():
        ticks, bars = _chart_month(month)
        grid.append(
            pl.DataFrame(
                {
                    "month": [month] * len(bars),
                    "i": list(range(len(bars))),
                    "tick": ticks,
                    "x": _floats(pl.Series([x for x, _ in bars])),
                    "w": _floats(pl.Series([w for _, w in bars])),
                },
                schema_overrides={"month": pl.Date, "i": pl.Int32},
            )
        )
    d = days.select(
        pl.col("customer_key").cast(pl.Int64),
        pl.col("month").cast(pl.Date),
        i=(pl.col("day").cast(pl.Date) - pl.col("month").cast(pl.Date))
        .dt.total_days()
        .cast(pl.Int32),
        day=pl.col("day").cast(pl.Date).dt.strftime("%Y-%m-%d"),
        used=pl.col("used").cast(pl.Int64).fill_null(0),
        owed=pl.col("arrears_opened").cast(pl.Int64).fill_null(0),
    )
    peaks = d.group_by("customer_key", "month").agg(peak=(pl.col("used") + pl.col("owed")).max())
    ks = (
        ks.join(peaks, on=["customer_key", "month"], how="left")
        .with_columns(pl.col("peak").fill_null(0))
        .sort("order")
    )
    cells = (
        ks.join(pl.concat(grid), on="month")
        .join(d, on=["customer_key", "month", "i"], how="left")
        .with_columns(pl.col("used", "owed").fill_null(0))
    )
    scale = pl.when(pl.col("peak") > 0).then(plot_h / pl.col("peak")).otherwise(0.0)
    cells = cells.with_columns(h_used=pl.col("used") * scale, h_owed=pl.col("owed") * scale)
    cells = cells.with_columns(y=(_CHART_TOP + plot_h) - pl.col("h_used"))
    drawn = (pl.col("used") != 0) | (pl.col("owed") != 0)
    bars = cells.filter(drawn)
    bars = bars.with_columns(
        y_used=_floats(bars["y"]),
        y_owed=_floats(bars["y"] - bars["h_owed"]),
        h_used=_floats(bars["h_used"]),
        h_owed=_floats(bars["h_owed"]),
        n_used=_each(bars["used"], n),
        n_owed=_each(bars["owed"], n),
    )
    bars = bars.select(
        "order",
        "i",
        bar=pl.when(pl.col("used") != 0)
        .then(
            pl.format(
                '<rect x="{}" y="{}" width="{}" height="{}" class="used"><title>{}: {} credits '
                "used</title></rect>",
                "x",
                "y_used",
                "w",
                "h_used",
                "day",
                "n_used",
            )
        )
        .otherwise(pl.lit(""))
        + pl.when(pl.col("owed") != 0)
        .then(
            pl.format(
                '<rect x="{}" y="{}" width="{}" height="{}" class="owed"><title>{}: {} credits '
                "in arrears</title></rect>",
                "x",
                "y_owed",
                "w",
                "h_owed",
                "day",
                "n_owed",
            )
        )
        .otherwise(pl.lit("")),
    )
    body = (
        cells.select("order", "i", "tick")
        .join(bars, on=["order", "i"], how="left")
        .sort("order", "i")
        .group_by("order", maintain_order=True)
        .agg(pl.concat_str("tick", pl.col("bar").fill_null("")).str.join(""))
    )
    peak_label = _each(ks["peak"], n)
    head = f'{_CHART_HEAD}<text x="{_CHART_LEFT - 6}" y="{_CHART_TOP + 4}" class="tick" '
    return [
        f'{head}text-anchor="end">{label}</text>{_CHART_ZERO}{text}</svg>'
        for label, text in zip(peak_label.to_list(), body["tick"].to_list(), strict=True)
    ]


@cache
def _row_format(width: int, tag: str) -> str:
    """A table row of `width` cells for str.format; columns after the first are numbers."""
    return f"<tr><{tag}>{{}}</{tag}>" + f"<{tag} class=num>{{}}</{tag}>" * (width - 1) + "</tr>"


@cache
def _thead(head: tuple[str, ...]) -> str:
    return f"<table><thead>{_row_format(len(head), 'th').format(*head)}</thead><tbody>"


def _table(head: tuple[str, ...], rows: list[tuple] | str, foot: tuple | None = None) -> str:
    """An HTML table; cells are already escaped; columns after the first are numbers; rows
    may be given as their HTML already (made with _row_format)."""
    if isinstance(rows, str):
        body = rows
    else:
        row = _row_format(len(head), "td").format
        body = "".join([row(*r) for r in rows])
    tfoot = f"<tfoot>{_row_format(len(foot), 'th').format(*foot)}</tfoot>" if foot else ""
    return f"{_thead(head)}{body}</tbody>{tfoot}</table>"


@cache
def label_html(code: str) -> str:
    """A catalog code (function, product) as escaped page text: image_to_video → Image to video."""
    return escape(label(code))


def _pool_name(p: dict) -> str:
    name = label_html(p["product"])
    if p["source"] == "subscription":
        name += f" · month {p['period_index'] + 1}"
    return f"{name}<div class=sub>{escape(p['pool_id'])}</div>"


def _sections(s: dict) -> dict[str, str]:
    """The page's pieces for one statement, escaped and formatted."""
    empty = '<p class="none">None this month.</p>'
    u = s["usage"]
    usage = (
        _table(
            ("Function", "Events", "Failed (free)", "Quantity", "Credits"),
            u["rows"],
            ("Total", n(u["events"]), n(u["failed_events"]), "", n(u["credits"])),
        )
        if u
        else empty
    )
    if s["arrears_opened"]:
        usage += (
            f'<p class="sub">{n(s["rated"])} credits rated: {n(s["used"])} drawn from your '
            f"credits, {n(s['arrears_opened'])} not covered by any credits (arrears).</p>"
        )
    month = month_texts(s["month"])[0]
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
                f"{label_html(first['product'])} · {periods}"
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
    customer = escape(s["customer_id"])
    ym, period = month_texts(month)
    return _fill_page(
        title=f"Statement {customer} {ym}",  # escape() is per character: nothing else to escape
        customer=customer,
        period=period,
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
    if not s["usage"]:
        return _CSV_HEADER
    own = csv_fields((s["customer_id"], month_texts(s["month"])[0], s["revision"], s["status"]))
    return _CSV_HEADER + "".join([f"{own},{line}\n" for line in s["usage"]["csv"]])


def _render_and_write(statements: list[dict], folders: dict[date, str]) -> None:
    """Each statement's page and CSV, written into its month's folder."""
    for s in statements:
        folder, stem = folders[s["month"]], safe_file_stem(s["customer_id"])
        replace_file(folder, f"{stem}.html", statement_html(s).encode("utf-8"))
        replace_file(folder, f"{stem}.csv", statement_csv(s).encode("utf-8"))


def _in_parallel(work: Callable[[list[dict]], None], statements: list[dict], workers: int):
    """work(part) for `workers` consecutive parts of the statements: one part here, each other
    one in a forked child process that shares the statements as they are (nothing to copy).

    A child only renders, writes files and reports an error through its pipe: it never logs,
    prints or touches the database, so locks other threads held at the fork cannot stop it."""
    size = -(-len(statements) // workers)
    parts = [statements[i : i + size] for i in range(0, len(statements), size)]
    children = []  # (pid, read end of the pipe that carries its error)
    try:
        for part in parts[1:]:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its part, then out without any cleanup of the parent's
                code = 1
                try:
                    os.close(r)
                    work(part)
                    code = 0
                except BaseException as e:  # reported to the parent
                    os.write(w, f"{type(e).__name__}: {e}".encode()[:4000])
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        work(parts[0])
    finally:
        errors = []
        for pid, r in children:
            with os.fdopen(r, "rb") as pipe:
                message = pipe.read().decode(errors="replace")
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
                errors.append(message or "no message")
    if errors:
        raise RuntimeError(
            f"Writing statement documents failed in a worker process ({errors[0]}); "
            "fix the cause and run the billing again."
        )


def write_statements(
    con, out_dir: Path, months: list[date], tz: str, workers: int | None = None
) -> list[Path]:
    """<out>/statements/YYYY-MM/<stem>.html and .csv (stem: safe_file_stem of the customer id)
    for every statement of the months,
    rendered and written by `workers` processes (default: up to 2, one per CPU)."""
    statements = statement_data(con, months, tz)
    folders = {m: out_dir / "statements" / f"{m:%Y-%m}" for m in months}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    work = partial(_render_and_write, folders={m: str(f) for m, f in folders.items()})
    workers = min(workers or default_workers(), len(statements) // PER_WORKER_MIN)
    if workers > 1:
        _in_parallel(work, statements, workers)
    else:
        work(statements)
    return [
        folders[s["month"]] / f"{safe_file_stem(s['customer_id'])}.{ext}"
        for s in statements
        for ext in ("html", "csv")
    ]


def default_workers() -> int:
    """Processes for the statements: up to 2, one per CPU, where processes can be forked."""
    if not hasattr(os, "fork"):
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cpus or 1))


def write_documents(
    con, out_dir: Path, days: list[date], *, tz: str | None = None, workers: int | None = None
) -> list[Path]:
    """Write the statements of the billed days' months and each billed day's suspension list."""
    tz = tz or Settings().billing_tz
    out_dir = Path(out_dir)
    days = sorted(set(days))
    months = sorted({d.replace(day=1) for d in days})
    written = write_statements(con, out_dir, months, tz, workers) if months else []
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

# PAGE cut once at its $names: literal, name, literal, ..., literal
_PAGE_PARTS = re.split(r"\$([_a-z][_a-z0-9]*)", PAGE.template)


def _fill_page(**fields: str) -> str:
    """PAGE.substitute(**fields), without scanning the page's text for every statement."""
    parts = _PAGE_PARTS.copy()
    parts[1::2] = [fields[name] for name in _PAGE_PARTS[1::2]]
    return "".join(parts)
