"""What the property tests against the per-event reference model share: the calendar of
their scenarios (a few days from START, short subscription periods), the instants they draw,
and the daily figures they compare."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

SH = ZoneInfo("Asia/Shanghai")
START = date(2026, 3, 1)
PERIOD_DAYS = 3  # short subscription periods so that a few days see grants and expiries
CUSTOMER_DAY_FIELDS = [
    "granted",
    "used",
    "settled",
    "expired",
    "arrears_opened",
    "arrears_outstanding",
    "balance",
    "rated",
    "revenue_cny",
    "breakage_cny",
]

instants = st.tuples(
    st.integers(0, 5),  # day offset
    st.sampled_from([0, 1, 7 * 60, 9 * 60 + 30, 12 * 60, 23 * 60 + 59]),  # minute of day
)


def instant(day_offset: int, minute: int, second: int = 0) -> datetime:
    """START + day_offset days, at the minute (and second) of the day, billing time."""
    base = datetime.combine(START + timedelta(days=day_offset), datetime.min.time(), SH)
    return base + timedelta(minutes=minute, seconds=second)
