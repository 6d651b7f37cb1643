-- A pool's figures for billing day $day (before expiry): draws, what is left, and the
-- revenue recognised so far (§7: round_half_up(drawn × amount / credits, 2), exact in fen).
with drawn as (
    select
        d.*,
        d.drawn_before + d.used + d.settled as drawn_cum,
        cast(d.amount_cny * 100 as bigint) as amount_fen
    from day_pools as d
),

recognised as (
    select
        *,
        -- half up: floor((2 × drawn × fen + credits) / (2 × credits)), in integers
        (2 * cast(drawn_cum as hugeint) * amount_fen + credits) // (2 * credits) as revenue_fen
    from drawn
)

insert into pool_days
select
    $day as day,
    pool_key,
    customer_key,
    opening,
    granted,
    used,
    settled,
    0 as expired,
    remaining,
    drawn_cum,
    cast(cast(revenue_fen as decimal(38, 0)) * 0.01 as decimal(18, 2)) as revenue_cum,
    cast(cast(revenue_fen as decimal(38, 0)) * 0.01 as decimal(18, 2)) - revenue_before
        as revenue_cny,
    0 as breakage_cny
from recognised
