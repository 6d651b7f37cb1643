"""What the documents show, read from the warehouse: each statement's latest revision with
its usage lines, pools and chart, and each day's suspension list."""

from __future__ import annotations

from datetime import date

import polars as pl

from tasks.db import execute, frame
from tasks.documents_charts import chart_svgs
from tasks.documents_format import each, label, n, qty

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

# the statements a document is made of: the latest revision of each statement of $months
# whose customer_key lies in [$keys_from, $keys_to] (a batch), narrowed by one of CHOSEN
# (never by text from the data: values only as parameters)
LATEST = """
with chosen as (
    select s.*
    from latest_statements as s
    where s.month in (select unnest($months))
        and s.customer_key between $keys_from and $keys_to{chosen}
)
"""
EVERY_KEY = (-(2**31), 2**31 - 1)  # customer_key is an INTEGER

CHOSEN = {
    "all": "",
    "final": " and s.status = 'final'",
    "month_to_date": " and s.status = 'month_to_date'",
    # final statements whose documents were not written yet, or show another revision
    "unwritten_final": """
        and s.status = 'final'
        and not exists (
            select 1 from written_documents as w
            where w.customer_key = s.customer_key and w.month = s.month
                and w.revision = s.revision and w.status = s.status
                and w.fingerprint is not distinct from s.fingerprint
        )""",
    "customer": " and s.customer_key = $customer_key",
}

STATEMENTS = """
select s.customer_key, s.customer_id, s.month, s.revision, s.status, s.through_day,
       s.opening_balance, s.granted, s.used, s.expired, s.rated,
       s.arrears_opening, s.arrears_opened, s.arrears_settled, s.arrears_outstanding,
       s.closing_balance, s.seats_entitled, s.seats_used,
       s.payments_cny, s.revenue_cny, s.breakage_cny, s.deferred_opening_cny,
       s.deferred_cny, s.fingerprint,
       strftime(timezone($tz, s.created_at), '%Y-%m-%d %H:%M') as issued,
       -- a month-to-date revision is refreshed by every billed day: when its figures were
       strftime(timezone($tz, s.updated_at), '%Y-%m-%d %H:%M') as refreshed,
       strftime(timezone($tz, p.created_at), '%Y-%m-%d') as replaces_issued
from chosen as s
left join statements as p
    on p.customer_key = s.customer_key and p.month = s.month
    and p.revision = s.revision - 1
order by s.month, s.customer_id
"""

LINES = """
select l.customer_key, l.month, l.function, l.events, l.failed_events,
       l.quantity::varchar as quantity, -- exact text for qty(), cheaper than a Decimal
       l.credits
from statement_lines as l
join chosen as s using (customer_key, month, revision)
where l.month in (select unnest($months))
order by l.credits desc, l.function
"""

# only the pools a page shows: granted, expired or active in the month, or queued and paid
# for in the month; most pools are later periods paid for earlier
POOLS = """,
shown as (
    select l.*,
           strftime(timezone($tz, l.purchased_at), '%Y-%m-%d') as paid_on
    from statement_pools as l
    join chosen as s using (customer_key, month, revision)
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
"""

DAYS = """
select d.customer_key, s.month, d.day, d.used, d.arrears_opened
from customer_days as d
join chosen as s
    on s.customer_key = d.customer_key
    and d.day between s.month and s.through_day
"""


def _with_chosen(query: str, chosen: str) -> str:
    """The query over the statements CHOSEN[chosen] picks (`chosen` as a CTE before it)."""
    return LATEST.replace("{chosen}", CHOSEN[chosen]).rstrip() + query


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


def statement_data(
    con,
    months: list[date],
    tz: str,
    chosen: str = "all",
    customer_key: int | None = None,
    keys: tuple[int, int] = EVERY_KEY,
) -> list[dict]:
    """The latest revision of the statements of the months that CHOSEN[chosen] picks (all,
    final, month_to_date, unwritten_final, or the one customer's) among customer keys
    keys[0]..keys[1], in month and customer order, with its `usage` (see
    usage_by_statement; None without usage lines), `pools` (the ones its page shows) and
    `chart`."""
    params = {
        "months": months,
        "tz": tz,
        "customer_key": customer_key,
        "keys_from": keys[0],
        "keys_to": keys[1],
    }
    statements = _rows(con, _with_chosen(STATEMENTS, chosen), params)
    if not statements:
        return []
    by_key: dict[tuple, dict] = {}
    for s in statements:
        s.update(usage=None, pools=[])
        by_key[(s["customer_key"], s["month"])] = s
    # one customer's few rows (adbill statement) without Arrow: its import costs more than
    # the statement takes to make
    read = frame if chosen != "customer" else _small_frame
    lines = read(con, _with_chosen(LINES, chosen), params)
    for u in usage_by_statement(lines).iter_rows(named=True):
        by_key[(u["customer_key"], u["month"])]["usage"] = u
    for pool in _rows(con, _with_chosen(POOLS, chosen), params):  # in query order
        by_key[(pool["customer_key"], pool["month"])]["pools"].append(pool)
    keys = list(by_key)  # the statements' order
    days = read(con, _with_chosen(DAYS, chosen), params)
    for key, chart in zip(keys, chart_svgs(keys, days), strict=True):
        by_key[key]["chart"] = chart
    return statements


def key_batches(con, months: list[date], chosen: str, size: int) -> list[tuple[int, int]]:
    """The customer keys of the statements CHOSEN[chosen] picks, as ranges of at most `size`
    customers each: documents are made a batch at a time, so a month of a million customers
    never sits in memory at once."""
    keys = [
        k
        for (k,) in execute(
            con,
            _with_chosen("select distinct customer_key from chosen order by 1", chosen),
            {"months": months, "keys_from": EVERY_KEY[0], "keys_to": EVERY_KEY[1]},
        ).fetchall()
    ]
    return [(part[0], part[-1]) for part in (keys[i : i + size] for i in range(0, len(keys), size))]


def usage_by_statement(lines: pl.DataFrame) -> pl.DataFrame:
    """Per statement (customer_key, month), its usage lines in their given order: `rows`, the
    cells of its page's usage table as text (function, events, failed, quantity, credits);
    the totals of events, failed events and credits; and `csv`, the lines as its CSV's
    values (function, events, failed_events, quantity as text, credits)."""
    cells = lines.select(
        "customer_key",
        "month",
        "events",
        "failed_events",
        "credits",
        row=pl.concat_list(
            each(lines["function"], label),
            each(lines["events"], n),
            each(lines["failed_events"], n),
            each(lines["quantity"], qty),
            each(lines["credits"], n),
        ),
        csv=pl.struct("function", "events", "failed_events", "quantity", "credits"),
    )
    return cells.group_by("customer_key", "month", maintain_order=True).agg(
        rows=pl.col("row"),
        events=pl.col("events").sum(),
        failed_events=pl.col("failed_events").sum(),
        credits=pl.col("credits").sum(),
        csv=pl.col("csv"),
    )


def _small_frame(con, text: str, params: dict) -> pl.DataFrame:
    """A query's few rows as a Polars frame, through Python values rather than Arrow."""
    cur = execute(con, text, params)
    names = [d[0] for d in cur.description]
    return pl.DataFrame(cur.fetchall(), schema=names, orient="row")


def _rows(con, text: str, params: dict) -> list[dict]:
    """A query's rows as dicts (fully fetched)."""
    cur = execute(con, text, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
