"""Credit draws of a billing day: events and arrears against pools, in rule order (§5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from tasks.db import frame, scalar
from tasks.db import sql as sql_text
from tasks.draw import EPOCH, KIND, DayDraws, draw_day, first_in_run, reorder_rows, tied_rows

__all__ = ["EPOCH", "KIND", "DayDraws", "draw_day"]


# ---------------------------------------------------------------- the stage on the warehouse

# entry_id = day_number << 47 | customer_key << 24 | seq, seq numbering the customer's
# entries of the day: grants (by priority), then draws in posting order, then expiries
# (sql/expire.sql). seq counts the day's entries only, so no pool count, term or customer
# age reaches the id; the widths hold 8.4M customers and 16.7M entries a customer a day,
# and a run that would pass them fails (`check_entry_widths`) instead of reusing an id.
DAY_BITS, CUSTOMER_BITS = 47, 24
GRANT_SEQ, DRAW_SEQ, EXPIRE_SEQ = 0, 0, 0  # kept for callers: seq is dense from 0 on


class EntryIdOverflow(ValueError):
    """A ledger entry id would leave its field (too many customers or entries a day)."""


def entry_base(day_number: pl.Expr | int, customer_key: pl.Expr) -> pl.Expr:
    """The first entry_id of a customer's day; a ledger row adds its sequence number."""
    return (pl.lit(day_number, dtype=pl.Int64) * (1 << DAY_BITS)) + (
        customer_key.cast(pl.Int64) * (1 << CUSTOMER_BITS)
    )


def check_entry_widths(max_customer_key: int | None, max_seq: int | None) -> None:
    """Fail before writing an entry id that would spill into its neighbour's field."""
    if max_customer_key is not None and max_customer_key >= 1 << (DAY_BITS - CUSTOMER_BITS):
        raise EntryIdOverflow(
            f"customer_key {max_customer_key} does not fit the ledger entry id "
            f"(at most {(1 << (DAY_BITS - CUSTOMER_BITS)) - 1}); widen the id in tasks/deduct.py"
        )
    if max_seq is not None and max_seq >= 1 << CUSTOMER_BITS:
        raise EntryIdOverflow(
            f"a customer has {max_seq + 1} ledger entries in one day, more than the entry id "
            f"holds ({1 << CUSTOMER_BITS}); widen the id in tasks/deduct.py"
        )


@dataclass(frozen=True)
class ShardInputs:
    """What drawing one shard of customers for one day needs: plain frames, no connection."""

    events: pl.DataFrame  # event_key, customer_key, occurred_at_us, credits; in draw order
    pools: pl.DataFrame  # live_pools.sql
    arrears: pl.DataFrame  # customer_key, arrears_outstanding carried in
    day_start_us: int
    day_number: int  # days since EPOCH: the high bits of entry_id


@dataclass(frozen=True)
class ShardDraws:
    """One shard's ledger entries and pool figures for the day, ready to load."""

    entries: pl.DataFrame
    pool_days: pl.DataFrame
    events: int


# shards are a stable hash of customer_id (customers.shard_hash = md5_number_lower)
SHARD_FILTER = (
    "customer_key in (select customer_key from customers where shard_hash % $shards = $shard)"
)


def _ties_by_event_id(con, events: pl.DataFrame, params: dict) -> pl.DataFrame:
    """Events of one customer at one instant put in event_id order (§5); they are few."""
    key = [pl.col("customer_key"), pl.col("occurred_at_us")]
    tied = events.with_row_index("_row").filter(tied_rows(key))
    if tied.height == 0:
        return events
    con.register("tied_events", tied.select("event_key").to_arrow())
    ids = frame(
        con,
        "select event_key, event_id from events "
        "where day = $day and event_key in (select event_key from tied_events)",
        params,
    )
    con.unregister("tied_events")
    ordered = tied.join(ids, on="event_key").sort("customer_key", "occurred_at_us", "event_id")
    return reorder_rows(events, tied["_row"], ordered["_row"])


def shard_inputs(con, day: date, *, tz: str, shard: int, shards: int) -> ShardInputs:
    """Read one shard's events, live pools and carried arrears for the day."""
    params = {"day": day, "tz": tz, "shard": shard, "shards": shards}
    events = frame(
        con,
        f"""
        select event_key, customer_key, epoch_us(occurred_at) as occurred_at_us, credits
        from events
        where day = $day and credits > 0 and {SHARD_FILTER}
        order by customer_key, occurred_at
        """,
        params,
    )
    events = _ties_by_event_id(con, events, params)
    live_pools(con, day, tz=tz)
    pools = frame(
        con,
        f"select * exclude (busy, live_day) from temp.day_live_pools where busy and {SHARD_FILTER}",
        params,
    )
    arrears = frame(
        con,
        f"""
        select customer_key, arrears_outstanding from customer_days
        where day = $day - 1 and arrears_outstanding > 0 and {SHARD_FILTER}
        """,
        params,
    )
    return ShardInputs(
        events=events.cast({"customer_key": pl.Int32}),
        pools=pools.cast({"customer_key": pl.Int32}),
        arrears=arrears.cast({"customer_key": pl.Int32}),
        day_start_us=scalar(con, "select epoch_us(local_midnight($tz, $day))", params),
        day_number=(day - EPOCH).days,
    )


def draw_shard(inputs: ShardInputs) -> ShardDraws:
    """Draw one shard's day: ledger entries (grants, draws) and pool figures. Pure Polars."""
    pools, day_number = inputs.pools, inputs.day_number
    draws = draw_day(inputs.events, pools, inputs.arrears, inputs.day_start_us)
    granted = pools.filter(pl.col("granted") > 0)
    grants = granted.select(
        pl.col("customer_key").cast(pl.Int32),
        # the customer's grants of the day numbered 0.. by priority
        (pl.col("priority").rank("ordinal").over("customer_key") - 1).cast(pl.Int64).alias("seq"),
        "pool_key",
        pl.lit(None, dtype=pl.Int64).alias("event_key"),
        pl.col("available_from_us").alias("posted_at_us"),
        pl.lit("grant", dtype=KIND).alias("kind"),
        pl.col("granted").alias("credits"),
    )
    n_grants = grants.group_by("customer_key").agg(pl.len().cast(pl.Int64).alias("n_grants"))
    row = pl.int_range(pl.len())
    entries = draws.pieces.join(
        n_grants, on="customer_key", how="left", maintain_order="left"
    ).select(
        "customer_key",
        # after the customer's grants: the draws in ledger order
        (
            pl.col("n_grants").fill_null(0)
            + row
            - pl.when(first_in_run("customer_key")).then(row).fill_null(strategy="forward")
        ).alias("seq"),
        "pool_key",
        "event_key",
        "posted_at_us",
        "kind",
        "credits",
    )
    ledger = pl.concat([grants, entries], how="vertical_relaxed")
    if ledger.height:
        check_entry_widths(int(ledger["customer_key"].max()), int(ledger["seq"].max()))
    ledger = ledger.select(
        (entry_base(day_number, pl.col("customer_key")) + pl.col("seq")).alias("entry_id"),
        pl.exclude("seq"),
    )
    per_pool = (
        draws.pieces.filter(pl.col("pool_key").is_not_null())
        .group_by("pool_key")
        .agg(
            pl.col("credits").filter(pl.col("kind") == "use").sum().alias("used"),
            pl.col("credits").filter(pl.col("kind") == "settle").sum().alias("settled"),
        )
    )
    pool_days = (
        pools.join(per_pool, on="pool_key", how="left")
        .join(draws.remaining, on="pool_key", how="left")
        .with_columns(pl.col("used", "settled").fill_null(0))
    )
    return ShardDraws(
        entries=ledger,
        pool_days=pool_days,
        events=inputs.events.height,
    )


def load_shard(con, day: date, draws: ShardDraws) -> None:
    """Write one shard's ledger entries and pool_days rows."""
    con.register("day_entries", draws.entries.to_arrow())
    con.execute(
        """
        insert into ledger_entries
        select entry_id, $day, customer_key, pool_key, event_key,
               make_timestamptz(posted_at_us), kind, credits
        from day_entries
        """,
        {"day": day},
    )
    con.unregister("day_entries")
    con.register("day_pools", draws.pool_days.to_arrow())
    con.execute(sql_text("pool_days"), {"day": day})
    con.unregister("day_pools")


def carry_quiet_pools(con, day: date, *, tz: str) -> None:
    """The pools of every customer with nothing to draw or grant today (sql/live_pools.sql:
    not busy) carried to the day as the day before closed them; the shards draw the rest."""
    live_pools(con, day, tz=tz)
    con.execute(sql_text("carry_pool_days"), {"day": day})


def live_pools(con, day: date, *, tz: str) -> None:
    """temp.day_live_pools: sql/live_pools.sql for every customer on `day`, made once for the
    day's shards (drop_live_pools when they are drawn)."""
    made = (
        con.execute("select any_value(live_day) from temp.day_live_pools").fetchall()[0][0]
        if _has_live_pools(con)
        else None
    )
    if made != day:
        text = sql_text("live_pools").rstrip().rstrip(";").replace("$shard_filter", "true")
        con.execute(
            f"create or replace temp table day_live_pools as "
            f"select $day as live_day, * from ({text})",
            {"day": day, "tz": tz},
        )


def drop_live_pools(con) -> None:
    """The day's draws are done: temp.day_live_pools is not kept for another billing."""
    con.execute("drop table if exists temp.day_live_pools")


def _has_live_pools(con) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where temporary and table_name = 'day_live_pools'"
        ).fetchall()[0][0]
    )


def deduct_shard(con, day: date, *, tz: str, shard: int, shards: int) -> dict[str, int]:
    """Draw the day's events of one shard of customers in-process; write the results."""
    draws = draw_shard(shard_inputs(con, day, tz=tz, shard=shard, shards=shards))
    load_shard(con, day, draws)
    return {"events": draws.events}
