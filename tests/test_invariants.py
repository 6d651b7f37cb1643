"""Billing-rules §5, §7: the run checks its own invariants and publishes nothing if one breaks."""

from __future__ import annotations

import polars as pl
import pytest

import tasks.deduct as deduct
from tasks.invariants import InvariantError
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
