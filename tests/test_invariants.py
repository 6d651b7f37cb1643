"""Billing-rules §5, §7: the run checks its own invariants and publishes nothing if one breaks."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

import tasks.deduct as deduct
from tasks.db import connect
from tasks.invariants import InvariantError, check_day
from tests.conftest import event, one, order


def test_a_credit_lost_in_deduction_stops_the_run_and_leaves_the_warehouse_as_it_was(
    inbox, monkeypatch
):
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage([event("e1", "c1", "copy_generation", 3, "2026-11-26T11:00:00+08:00")])
    inbox.bill("2026-11-26")
    before = inbox.settings.db.read_bytes()
    inbox.usage([event("e2", "c1", "copy_generation", 5, "2026-11-27T11:00:00+08:00")])
    real = deduct.draw_day

    def lossy(*args, **kwargs):
        draws = real(*args, **kwargs)
        pieces = draws.pieces.with_columns(  # one credit of every use goes missing
            pl.when(pl.col("kind") == "use")
            .then(pl.col("credits") - 1)
            .otherwise(pl.col("credits"))
            .alias("credits")
        )
        return deduct.DayDraws(pieces=pieces, remaining=draws.remaining, arrears=draws.arrears)

    monkeypatch.setattr(deduct, "draw_day", lossy)
    with pytest.raises(InvariantError, match="2026-11-27 breaks invariants: .*event_charged_once"):
        inbox.bill("2026-11-27")
    assert inbox.settings.db.read_bytes() == before
    monkeypatch.undo()
    inbox.bill("2026-11-27")
    con = inbox.warehouse()
    assert one(con, "select used, balance from customer_days where day = '2026-11-27'") == (5, 292)
    assert (
        one(
            con,
            "select status from billing_runs where day = '2026-11-27' order by started_at limit 1",
        )
        == "failed"
    )


BREACHES = {
    # each a change to a billed day's rows that breaks exactly the one invariant
    "pool_conservation": "update pool_days set remaining = remaining - 1, opening = opening - 1",
    "pool_money": "update pool_days set revenue_cny = -1",
    "rated_equals_drawn_plus_arrears": "update customer_days set rated = rated + 1",
    "arrears_not_negative": "update customer_days set arrears_outstanding = -1",
    "deferred_not_negative": "update customer_days set deferred_cny = -1",
    "balance_rolls_forward": "update customer_days set balance = balance + 1",
    "event_charged_once": "update events set credits = credits + 1",
    "event_rated": "update events set quantity = null",
    "ledger_matches_pool_days": "update pool_days set used = used + 1, opening = opening + 1",
    # (the renewal o2 begins when o1's month ends)
    "queued_pool_untouched": "update pools set remaining = remaining - 1 "
    "where available_from >= (?::date + 2)::timestamptz",
}


def test_every_invariant_names_its_own_breach(inbox):
    inbox.orders(
        [
            order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00"),
            order("o2", "c1", "basic", 1, "30", "2026-11-26T10:05:00+08:00"),
        ]
    )
    inbox.usage([event("e1", "c1", "copy_generation", 3, "2026-11-26T11:00:00+08:00")])
    inbox.bill("2026-11-26")
    day = date(2026, 11, 26)
    con = connect(inbox.settings.state_db)
    try:
        assert set(check_day(con, day)) == set(BREACHES)  # all counted, none broken
        for name, breach in BREACHES.items():
            con.execute("begin")
            con.execute(breach if " where " in breach else f"{breach} where day = ?", [day])
            with pytest.raises(InvariantError) as broken:
                check_day(con, day)
            con.execute("rollback")
            assert f"invariants: {name} (1 rows); nothing published" in str(broken.value)
        assert not any(check_day(con, day).values())
    finally:
        con.close()
