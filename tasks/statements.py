"""Monthly customer statements (month-to-date, final, revisions) from customer_days (§8)."""

from __future__ import annotations

from datetime import date, timedelta

from tasks.db import run_sql, scalar

# from this day of a month on (0: the first), the pools' drafts add the days since the last
# refresh to the pools as they stand, instead of summing the month's pool_days
POOLS_CARRIED_FROM = 7
DRAFTS = (
    "statement_customers",
    "statement_line_drafts",
    "statement_pool_drafts",
    "statement_drafts",
)


def month_of(day: date) -> date:
    """The first day of the billing day's calendar month."""
    return day.replace(day=1)


def is_month_end(day: date) -> bool:
    return (day + timedelta(days=1)).day == 1


def statements_day(con, day: date, *, tz: str, refresh: bool = True) -> int:
    """Refresh the statements of the day's month after it is billed; return how many changed.

    Month-to-date revisions are rewritten; on the month's last day they become final. A final
    statement whose figures differ when that day is billed again gets a new revision.

    `refresh=False` (a run that bills a later day of the same month before the month's end)
    leaves them: a month-to-date statement is rewritten whole from the month's customer_days,
    so refreshing it once, on the run's last day of the month, leaves what refreshing it
    every day would, and a final one changes only on the month's last day. (The stage still
    runs, so a stage hook sees every day.)

    Only the statements of customers with something new on the days billed since the last
    refresh are drafted again (sql/statement_customers.sql); the others are carried to the
    day as they stand, so a quiet customer costs a row update, not a month of figures.
    The count returned is of the statements drafted and changed.
    """
    if not refresh and not is_month_end(day):
        return 0
    params = {"day": day, "tz": tz, "month": month_of(day), "final": is_month_end(day)}
    run_sql(con, "statement_customers", params)
    params["first"] = first_day_summed(con, params["month"])
    params["pools_first"] = pools_first_day(day, params["month"], params["first"])
    run_sql(con, "statement_drafts", params)
    run_sql(con, "statements", params)
    written = scalar(con, "select count(*) from statement_revisions")
    for table in (*DRAFTS, "statement_scope", "statement_revisions"):
        con.execute(f"drop table if exists {table}")
    return written


def pools_first_day(day: date, month: date, first: date) -> date:
    """The first day the pools' drafts sum: `first`, once the month is POOLS_CARRIED_FROM days
    old. Before that, the month's first: a young month's few days of `pool_days` cost less
    to read than the statements' pools as they stand (every pool of every drafted customer,
    queued ones included). The figures are the same either way."""
    return first if (day - month).days >= POOLS_CARRIED_FROM else month


def first_day_summed(con, month: date) -> date:
    """The first day whose figures the drafts sum (after sql/statement_customers.sql): the day
    after the month's last refresh when no day up to it was billed again since — the drafts
    add the later days to the statements as they stand — else the month's first."""
    since, every, through = con.execute(
        "select day, every, refreshed_through from statement_scope"
    ).fetchall()[0]
    if every or through is None or since <= through:
        return month
    return through + timedelta(days=1)
