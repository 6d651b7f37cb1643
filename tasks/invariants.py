"""The run's own checks of billing-rules §5 and §7 for a billed day; a breach stops the run."""

from __future__ import annotations

from datetime import date

from tasks.db import scalar

CHECKS: dict[str, str] = {
    # §5 per pool: credits = used + expired + remaining (drawn_cum counts use and settle)
    "pool_conservation": """
        select count(*) from pool_days as d join pools as p using (pool_key)
        where d.day = $day and (d.drawn_cum + d.expired + d.remaining <> p.credits
              or d.remaining < 0 or d.expired < 0
              or d.remaining <> d.opening - d.used - d.settled - d.expired)
    """,
    # §5 per customer: rated credits = credits drawn by events + arrears opened
    "rated_equals_drawn_plus_arrears": """
        select count(*) from customer_days
        where day = $day and rated <> used + arrears_opened
    """,
    "arrears_not_negative": """
        select count(*) from customer_days where day = $day and arrears_outstanding < 0
    """,
    # every charged event is drawn or opened as arrears exactly once, for its full credits
    "event_charged_once": """
        with charged as (
            select event_key, sum(credits) as credits from ledger_entries
            where day = $day and kind in ('use', 'arrears') group by event_key
        )
        , due as (select event_key, credits from events where day = $day and credits > 0)
        select count(*) from due as e full join charged as c using (event_key)
        where c.credits is distinct from e.credits
    """,
    # interfaces.md: balance(D) = balance(D-1) + granted - used - settled - expired
    "balance_rolls_forward": """
        select count(*) from customer_days as t
        left join customer_days as y on y.customer_key = t.customer_key and y.day = $day - 1
        where t.day = $day and t.balance <> coalesce(y.balance, 0) + t.granted - t.used
              - t.settled - t.expired
    """,
    # §7: recognised + breakage + deferred = amount paid, nothing recognised twice
    "pool_money": """
        select count(*) from pool_days as d join pools as p using (pool_key)
        where d.day = $day and (d.revenue_cum > p.amount_cny or d.revenue_cny < 0
              or d.breakage_cny < 0 or d.revenue_cum + d.breakage_cny > p.amount_cny)
    """,
    "deferred_not_negative": """
        select count(*) from customer_days where day = $day and deferred_cny < 0
    """,
    # the ledger and the daily figures tell the same story
    "ledger_matches_pool_days": """
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
    found = {name: scalar(con, q, {"day": day}) for name, q in CHECKS.items()}
    broken = {k: v for k, v in found.items() if v}
    if broken:
        detail = ", ".join(f"{k} ({v} rows)" for k, v in broken.items())
        raise InvariantError(f"billing day {day} breaks invariants: {detail}; nothing published")
    return found
