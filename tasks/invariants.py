"""The run's own checks of billing-rules §5 and §7 for a billed day; a breach stops the run."""

from __future__ import annotations

from datetime import date

# Each query counts the breaches of one or more invariants (named in order) in one pass over
# its table: at a million customers a day's pool_days and customer_days are read once each.
CHECKS: dict[tuple[str, ...], str] = {
    ("pool_conservation", "pool_money"): """
        select
            -- §5 per pool: credits = used + expired + remaining (drawn_cum counts use and
            -- settle)
            count(*) filter (
                where d.drawn_cum + d.expired + d.remaining <> p.credits
                    or d.remaining < 0 or d.expired < 0
                    or d.remaining <> d.opening - d.used - d.settled - d.expired
            ),
            -- §7: recognised + breakage + deferred = amount paid, nothing recognised twice
            count(*) filter (
                where d.revenue_cum > p.amount_cny or d.revenue_cny < 0
                    or d.breakage_cny < 0 or d.revenue_cum + d.breakage_cny > p.amount_cny
            )
        from pool_days as d join pools as p using (pool_key)
        where d.day = $day
    """,
    (
        "rated_equals_drawn_plus_arrears",
        "arrears_not_negative",
        "deferred_not_negative",
        "balance_rolls_forward",
    ): """
        select
            -- §5 per customer: rated credits = credits drawn by events + arrears opened
            count(*) filter (where t.rated <> t.used + t.arrears_opened),
            count(*) filter (where t.arrears_outstanding < 0),
            count(*) filter (where t.deferred_cny < 0),
            -- interfaces.md: balance(D) = balance(D-1) + granted - used - settled - expired
            count(*) filter (
                where t.balance <> coalesce(y.balance, 0) + t.granted - t.used - t.settled
                    - t.expired
            )
        from customer_days as t
        left join customer_days as y on y.customer_key = t.customer_key and y.day = $day - 1
        where t.day = $day
    """,
    # §5: a pool that has not begun by the day's cutoff holds all its credits (nothing drawn
    # from it, nothing expired), whatever an earlier billing of the days left it (a late
    # order queueing it later). Midnight of the day after next in the session's zone lies
    # past the day's cutoff in any zone within ±14:00.
    ("queued_pool_untouched",): """
        select count(*) filter (where remaining <> credits)
        from pools
        where available_from >= ($day + 2)::timestamptz
    """,
    # §3: every accepted event has its quantity (> 0) and its credits (none billed free by
    # a number the ingest could not read)
    ("event_rated",): """
        select count(*) from events
        where day = $day and (quantity is null or quantity <= 0 or credits is null or credits < 0)
    """,
    # every charged event is drawn or opened as arrears exactly once, for its full credits
    ("event_charged_once",): """
        with charged as (
            select event_key, sum(credits) as credits from ledger_entries
            where day = $day and kind in ('use', 'arrears') group by event_key
        )
        , due as (select event_key, credits from events where day = $day and credits > 0)
        select count(*) from due as e full join charged as c using (event_key)
        where c.credits is distinct from e.credits
    """,
    # the ledger and the daily figures tell the same story
    ("ledger_matches_pool_days",): """
        with l as (
            select pool_key,
                   sum(credits) filter (where kind = 'use') as used,
                   sum(credits) filter (where kind = 'settle') as settled,
                   sum(credits) filter (where kind = 'expire') as expired
            from ledger_entries where day = $day and pool_key is not null group by pool_key
        )
        , d as (select * from pool_days where day = $day)
        select count(*) from d full join l using (pool_key)
        where (coalesce(d.used, 0) <> coalesce(l.used, 0)
               or coalesce(d.settled, 0) <> coalesce(l.settled, 0)
               or coalesce(d.expired, 0) <> coalesce(l.expired, 0))
    """,
}


class InvariantError(RuntimeError):
    """A billed day breaks a rule of §5 or §7; nothing is published."""


def check_day(con, day: date) -> dict[str, int]:
    """Count the violations of every invariant for the day; raise if any is broken."""
    found: dict[str, int] = {}
    for names, q in CHECKS.items():
        counts = con.execute(q, {"day": day}).fetchall()[0]
        found.update(zip(names, counts, strict=True))
    broken = {k: v for k, v in found.items() if v}
    if broken:
        detail = ", ".join(f"{k} ({v} rows)" for k, v in broken.items())
        raise InvariantError(f"billing day {day} breaks invariants: {detail}; nothing published")
    return found
