"""Shared helpers of the statement / suspension-list tests: example inboxes of billing-rules
§10, billed like the scheduler bills them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from tests.conftest import Billed, Inbox, event, order


def bill_with_lists(inbox: Inbox, through: date | str, **kwargs):
    """Bill like the scheduler: every billed day's suspension lists and statements, then the
    documents, then publish (bill_day and run_billing run those stages; nothing is redone)."""
    return inbox.bill(through, **kwargs)


def billed_example(
    billed: Billed, fill: Callable[[Inbox], object], through: str, to: Path | None = None
) -> Inbox:
    """The inbox `fill` writes, billed through `through` once per test session: the shared
    data dir to read (never to bill on), or a copy of it at `to` for a test that bills on."""
    key = f"{fill.__module__}.{fill.__qualname__}-{through}"

    def build(data: Path) -> None:
        inbox = Inbox(data)
        fill(inbox)
        bill_with_lists(inbox, through)

    return Inbox(billed.copy(key, build, to) if to else billed.path(key, build))


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
