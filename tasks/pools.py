"""Credit pools: what each accepted order grants, when, and until when (billing-rules §4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl

from tasks.catalog import Catalog
from tasks.db import frame, local_midnight, sql
from tasks.keyed_files import record_changes

# where a renewal queue stops counting: terms queued past Python's last date (a chain of
# thousands of terms, each a valid order) all start here, long after anything is billed,
# their credits kept in the deferred figures (the calendar past it stopped the run)
NEVER = datetime(9999, 12, 1, tzinfo=UTC)


def subscription_starts(orders: pl.DataFrame, period_days: int, tz: str) -> pl.DataFrame:
    """Start S of every order: the purchase, or the end of the same edition's latest term
    (NEVER once the queue passes the calendar's end). `orders` carries each purchase's local
    day (`purchased_day`, dated by DuckDB as every other day is); a term's end is the local
    midnight of its start's day + its days (tasks.db.local_midnight: DuckDB's, as the pools'
    expiries are)."""
    starts: list[tuple[int, datetime]] = []
    latest_end: dict[tuple[int, str], tuple[datetime, date]] = {}  # (instant, its local day)
    ordered = orders.sort("purchased_at", "order_id")
    for key, cust, product, source, term, bought, bought_day in ordered.select(
        "order_key",
        "customer_key",
        "product",
        "source",
        "term_months",
        "purchased_at",
        "purchased_day",
    ).iter_rows():
        if source != "subscription":
            starts.append((key, bought))
            continue
        end, end_day = latest_end.get((cust, product), (None, None))
        start, first = (end, end_day) if end is not None and end > bought else (bought, bought_day)
        if start >= NEVER or first.toordinal() + period_days * term >= NEVER.toordinal():
            latest_end[(cust, product)] = (NEVER, NEVER.date())
        else:
            local = first + timedelta(days=period_days * term)
            latest_end[(cust, product)] = (local_midnight(local, tz), local)
        starts.append((key, start))
    return pl.DataFrame(
        starts,
        schema={"order_key": pl.Int32, "start_at": pl.Datetime("us", "UTC")},
        orient="row",
    )


def rebuild_pools(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, *, tz: str, file_id: int | None = None
) -> int:
    """Recompute the pools of the customers with orders in file_id (None: every customer).

    A customer's pools depend only on that customer's orders (renewal queues, priorities),
    so a new orders file rebuilds the pools of its own customers, whatever the history.
    Known remaining credits and pool keys are kept; each order's pools carry the price and
    credits it was accepted at (`order_prices`).
    """
    scope = (
        "true"
        if file_id is None
        else (f"customer_key in (select customer_key from orders where file_id = {int(file_id)})")
    )
    orders = frame(
        con,
        "select order_key, order_id, customer_key, product, source, term_months, purchased_at, "
        f"timezone($tz, purchased_at)::date as purchased_day from orders where {scope}",
        {"tz": tz},
    )
    starts = subscription_starts(orders, catalog.period_days, tz)
    con.register("order_starts", starts.to_arrow())
    con.register("catalog_products", catalog.products().to_arrow())
    price_orders(con, scope)
    pools = frame(
        con,
        sql("pools"),
        {
            "tz": tz,
            "period_days": catalog.period_days,
            "package_months": catalog.package_validity_months,
        },
    )
    con.unregister("order_starts")
    con.register("new_pools", pools.to_arrow())
    con.execute(
        f"""
        create or replace temp table kept as
        select pool_key, remaining from pools where {scope};
        delete from pools where {scope};
        insert into pools by name
        select n.* replace (coalesce(k.remaining, n.remaining) as remaining)
        from new_pools as n left join kept as k using (pool_key);
        """
    )
    # the published pools (tasks/keyed_files.py): every pool of these customers, old or new
    record_changes(
        con, "pools", "select pool_key from temp.kept union all select pool_key from new_pools"
    )
    con.execute("drop table kept")
    con.unregister("new_pools")
    return pools.height


def price_orders(con: duckdb.DuckDBPyConnection, scope: str = "true") -> None:
    """Fix the price, credits and seats of the orders not priced yet: the catalog version in
    force at purchased_at (`catalog_products` registered). An order keeps them for good."""
    con.execute(
        f"""
        insert into order_prices
        select o.order_key, p.version_id, p.unit_price_cny, p.credits, p.seats
        from orders as o
        join catalog_products as p
            on p.product = o.product
            and o.purchased_at >= coalesce(p.effective_from, '-infinity'::timestamptz)
            and o.purchased_at < coalesce(p.effective_until, 'infinity'::timestamptz)
        where ({scope})
            and o.order_key not in (select order_key from order_prices)
        """
    )
    record_changes(  # the published copy (tasks/keyed_files.py): the orders priced, and more
        con,
        "order_prices",
        f"select order_key from order_prices where order_key in "
        f"(select order_key from orders where {scope})",
    )
