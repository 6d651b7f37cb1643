"""Daily figures per customer (customer_days, usage_days, account_days) from the day's pools,
ledger and events."""

from __future__ import annotations

from datetime import date

from tasks.db import run_sql, scalar


def customer_days(con, day: date, *, tz: str) -> int:
    """Write the customer_days rows of one billing day (and what its statements sum: usage per
    function, accounts); return how many customer_days rows."""
    run_sql(con, "customer_days", {"day": day, "tz": tz})
    run_sql(con, "usage_days", {"first": day, "last": day})
    return scalar(con, "select count(*) from customer_days where day = $day", {"day": day})
