"""Shared helpers of the statement / suspension-list tests: bill an inbox, then run the
stages of issue 3 over the billed days in order (as bill_day will once they are wired in)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tasks.db import connect
from tasks.documents import write_documents
from tasks.pipeline import RunReport
from tasks.publish import publish
from tasks.statements import statements_day
from tasks.suspensions import suspensions_day
from tests.conftest import Inbox, event, order

ISSUE3_TABLES = ("suspensions", "suspension_changes", "at_risk")


def bill_with_lists(inbox: Inbox, through: date | str, **kwargs) -> RunReport:
    """Bill like the scheduler, then statements, suspension lists and documents; publish."""
    report = inbox.bill(through, **kwargs)
    settings = inbox.settings
    days = [d["day"] for d in report.days]
    con = connect(settings.state_db)
    try:
        if days:
            # what the rebill of bill_day will do: forget the lists from the first billed day
            for table in ISSUE3_TABLES:
                con.execute(f"delete from {table} where day >= ?", [days[0]])
        for day in days:
            suspensions_day(con, day, tz=settings.billing_tz)
            statements_day(con, day, tz=settings.billing_tz)
        write_documents(con, settings.out_dir, days, tz=settings.billing_tz)
        con.execute("checkpoint")
    finally:
        con.close()
    publish(settings.state_db, settings.db)
    return report


def out_file(inbox: Inbox, *parts: str) -> Path:
    return inbox.settings.out_dir.joinpath(*parts)


def example_a(inbox: Inbox) -> None:
    """Billing-rules §10 A: basic bought 2026-11-26 10:00, 49 credits used the same day."""
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage(
        [
            event("e1", "c1", "copy_generation", 3, "2026-11-26T11:00:00+08:00"),
            event("e2", "c1", "image_to_video", 5, "2026-11-26T11:10:00+08:00"),
            event("e3", "c1", "digital_human_spokesperson", 12.5, "2026-11-26T11:20:00+08:00"),
            event("e4", "c1", "video_translation", 25, "2026-11-26T11:30:00+08:00"),
        ]
    )


def example_d(inbox: Inbox) -> None:
    """Billing-rules §10 D: basic (300), events worth 350 the same day, a package next day."""
    inbox.orders(
        [
            order("o1", "d1", "basic", 1, "30", "2026-11-26T10:00:00+08:00"),
            order("o2", "d1", "package_100", None, "100", "2026-11-27T08:00:00+08:00"),
        ]
    )
    inbox.usage(
        [
            event("e1", "d1", "custom_avatar", 5, "2026-11-26T11:00:00+08:00"),
            event("e2", "d1", "custom_avatar", 2, "2026-11-26T15:00:00+08:00"),
        ]
    )
