"""What one ingest pass read, accepted and rejected: the run report's ingest part."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import polars as pl


@dataclass
class IngestReport:
    """What one ingest pass read, accepted and rejected."""

    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored_files: list[str] = field(default_factory=list)  # neither orders nor usage
    orders_accepted: int = 0
    orders_rejected: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    duplicates: int = 0  # usage lines: an event already accepted, exactly (§3)
    order_duplicates: int = 0  # order rows: an order already accepted, exactly
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    earliest_day: date | None = None  # the earliest billing day new accepted rows touch
    seconds: dict[str, float] = field(default_factory=dict)  # read, validate, rate, store

    @contextmanager
    def timed(self, step: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t

    def touch(self, day: date | None) -> None:
        if day is not None and (self.earliest_day is None or day < self.earliest_day):
            self.earliest_day = day

    def count_rejects(self, reasons: pl.Series) -> None:
        for reason, n in reasons.value_counts().iter_rows():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + n
