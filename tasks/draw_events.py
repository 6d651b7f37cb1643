"""Events drawn against a fixed set of pools, all customers at once: the events end to end
on one line of credits, each customer's pools laid over its part of the line (§5)."""

from __future__ import annotations

import polars as pl

KIND = pl.Enum(["grant", "use", "settle", "arrears"])  # ledger_entries.kind, stored as text

PIECES = {
    "customer_key": pl.Int32,
    "event_key": pl.Int64,
    "posted_at_us": pl.Int64,
    "pool_key": pl.Int64,
    "credits": pl.Int64,
    "kind": KIND,
}


def first_in_run(col: str) -> pl.Expr:
    """True on the first row of each run of equal values of col."""
    return pl.col(col).ne_missing(pl.col(col).shift(1))


def draw_events(
    events: pl.DataFrame, capacity: pl.DataFrame, settled: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events against a fixed set of pools: their pieces, and the stretches each pool gave.

    All customers' events lie end to end on one line of credits, in draw order; over each
    customer's part of it lie its pools in priority order, then the uncovered rest (arrears).
    An event's pieces are where its stretch of the line meets theirs (most meet just one).
    events: customer_key, event_key, posted_at_us, credits (> 0); by customer in draw order.
    capacity: customer_key, priority, pool_key, remaining (> 0), after the settlements (settle
    pieces, by customer), which go first. Returns the pieces in order, and the stretches:
    pool_key (null: arrears), customer_key, credits.
    """
    line = events.with_columns(pl.col("credits").cum_sum().alias("end")).with_columns(
        (pl.col("end") - pl.col("credits")).alias("start")
    )
    total = int(line["end"][-1])
    spans = (
        line.filter(first_in_run("customer_key"))
        .select("customer_key", pl.col("start").alias("a"))
        .with_columns(pl.col("a").shift(-1, fill_value=total).alias("b"))
    )
    stretches = _stretches(capacity, spans)
    line = _first_pieces(line, stretches)
    parts = [line]
    crossing = line.filter(pl.col("end") > pl.col("to"))
    if crossing.height:  # a few events span pools: a row for each further stretch they meet
        parts.append(_further_pieces(crossing, stretches))
    if settled.height:
        first = spans["customer_key"].search_sorted(settled["customer_key"], side="left")
        parts.append(
            settled.with_columns(
                (2 * spans["a"].append(pl.Series([total])).gather(first)).alias("place")
            )
        )
    return _in_place_order(parts), stretches.select(
        "pool_key", "customer_key", (pl.col("to") - pl.col("from")).alias("credits")
    )


def _stretches(capacity: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Each customer's part of the line [a, b) cut into its pools' stretches in priority
    order, then the uncovered rest (pool_key null: arrears): from, to, customer_key, pool_key,
    sorted by from."""
    c_end = pl.col("a") + pl.col("remaining").cum_sum().over("customer_key")
    pools = (
        capacity.join(spans, on="customer_key")
        .sort("customer_key", "priority")
        .with_columns(
            (c_end - pl.col("remaining")).alias("from"),
            pl.min_horizontal(c_end, "b").alias("to"),
        )
        .filter(pl.col("from") < pl.col("b"))
    )
    rest = (
        spans.join(
            pools.group_by("customer_key").agg(pl.col("to").max().alias("covered")),
            on="customer_key",
            how="left",
        )
        .select("customer_key", pl.coalesce("covered", "a").alias("from"), pl.col("b").alias("to"))
        .filter(pl.col("from") < pl.col("to"))
    )
    return pl.concat(
        [
            pools.select("from", "to", "customer_key", "pool_key"),
            rest.select(
                "from", "to", "customer_key", pl.lit(None, dtype=pl.Int64).alias("pool_key")
            ),
        ]
    ).sort("from")


def _first_pieces(line: pl.DataFrame, stretches: pl.DataFrame) -> pl.DataFrame:
    """Each event's first piece: the stretch its start lies in, up to the event's end or the
    stretch's. A piece's place: 2 x where it starts on the line + 1 (a customer's settlements
    go just before)."""
    return line.join_asof(
        stretches.select("from", "to", "pool_key").with_row_index("stretch"),
        left_on="start",
        right_on="from",
        strategy="backward",
        check_sortedness=False,  # both are sorted: positions on the line grow
    ).with_columns(
        (pl.min_horizontal("end", "to") - pl.col("start")).alias("credits"),
        (2 * pl.col("start") + 1).alias("place"),
    )


def _further_pieces(crossing: pl.DataFrame, stretches: pl.DataFrame) -> pl.DataFrame:
    """The pieces of events that cross out of their first stretch: one for each further
    stretch they meet, placed where it starts."""
    at = pl.col("stretch").cast(pl.Int64)
    s_from = stretches["from"]
    return (
        crossing.with_columns(
            pl.int_ranges(
                at + 1, pl.lit(s_from).search_sorted(pl.col("end"), side="left").cast(pl.Int64)
            ).alias("stretch")
        )
        .explode("stretch")
        .with_columns(
            pl.lit(s_from).gather("stretch").alias("from"),
            pl.lit(stretches["to"]).gather("stretch").alias("to"),
            pl.lit(stretches["pool_key"]).gather("stretch").alias("pool_key"),
        )
        .with_columns(
            (pl.min_horizontal("end", "to") - pl.col("from")).alias("credits"),
            (2 * pl.col("from") + 1).alias("place"),
        )
    )


def _in_place_order(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The pieces of all parts as PIECES (kind: use from a pool, arrears without one), in
    order of their place on the line."""
    kind = (
        pl.when(pl.col("pool_key").is_null())
        .then(pl.lit("arrears", dtype=KIND))
        .otherwise(pl.lit("use", dtype=KIND))
    )
    pieces = pl.concat(
        [
            p.select(
                "customer_key",
                "event_key",
                "posted_at_us",
                "pool_key",
                "credits",
                pl.col("kind") if "kind" in p.columns else kind.alias("kind"),
                "place",
            ).cast(PIECES)
            for p in parts
        ]
    )
    if len(parts) > 1:  # sorted runs: a stable sort merges them quickly
        pieces = pieces.sort("place", maintain_order=True)
    return pieces.drop("place")
