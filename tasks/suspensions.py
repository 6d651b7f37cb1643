"""Suspension list, its changes and the at-risk warnings at a billing day's cutoff (§9)."""

from __future__ import annotations

from datetime import date

from tasks.db import run_sql, scalar


def suspensions_day(con, day: date, *, tz: str) -> int:
    """Write the day's suspensions, suspension_changes and at_risk rows; return suspensions.

    Reads day - 1's suspensions (for suspended_since and the changes), so billing days must
    be evaluated in order. Rerunning a day replaces its rows.
    """
    params = {"day": day, "tz": tz}
    run_sql(con, "net_balances", params)
    run_sql(con, "suspensions", params)
    run_sql(con, "at_risk", params)
    con.execute("drop table if exists net_balances")
    return scalar(con, "select count(*) from suspensions where day = $day", params)
