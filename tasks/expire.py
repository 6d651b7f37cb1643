"""Expiry at a billing day's cutoff: what pools still hold then is lost, as breakage (§6, §7)."""

from __future__ import annotations

from datetime import date

from tasks.db import run_sql, scalar
from tasks.deduct import CUSTOMER_BITS, DAY_BITS, EPOCH, EXPIRE_SEQ


def expire_day(con, day: date, *, tz: str) -> int:
    """Expire the pools whose expires_at is the day's cutoff; return the credits expired."""
    run_sql(
        con,
        "expire",
        {
            "day": day,
            "tz": tz,
            "day_base": (day - EPOCH).days << DAY_BITS,
            "customer_bits": CUSTOMER_BITS,
            "expire_seq": EXPIRE_SEQ,
        },
    )
    return scalar(
        con, "select coalesce(sum(expired), 0) from pool_days where day = $day", {"day": day}
    )
