"""What a billing run did (files, days billed, counts, timings, warnings), as reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from tasks.db import scalar
from tasks.documents import DOCUMENT_STEPS
from tasks.ingest_report import IngestReport


@dataclass
class RunReport:
    """What a run did: files, days billed, counts, timings, where the results are."""

    run_id: str
    through: date
    ingest: IngestReport | None = None
    days: list[dict] = field(default_factory=list)
    published: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    status: str = "running"
    # billed days that no accepted usage event is dated on: a delivery may be missing
    days_without_usage: list[date] = field(default_factory=list)
    # the first billed day a catalog change re-rated and billed again (None: no change did)
    repriced_from: date | None = None
    # statements whose documents the run wrote: {"final": n, "month_to_date": n, "lists": n}
    documents: dict[str, int] = field(default_factory=dict)
    # the day files the run wrote (tasks/day_files.py): days, files, rows, days dropped from the
    # working database, old files deleted; and the days it read back into it (a rebill)
    exported: dict[str, int] = field(default_factory=dict)
    thawed_days: int = 0
    # what the run's housekeeping left undone (a closed month's day files not merged)
    housekeeping: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What an operator should look at although the run succeeded, one sentence each."""
        return self.warning_texts()

    def warning_texts(self, quote: Callable[[str], str] = str) -> list[str]:
        """The warnings, each text that came from outside the code (a file's name, an error's
        text) passed through `quote` (the markdown report makes it inert: flows/report.py)."""
        turned_away = self.ingest.rejected_files if self.ingest else []
        ignored = self.ingest.ignored_files if self.ingest else []
        return (
            [
                f"no usage on {span}: billed with zero usage; check that the day's usage "
                "files were delivered"
                for span in day_spans(self.days_without_usage)
            ]
            + [
                f"{quote(path)} turned away whole ({quote(reason)}); see rejected_files"
                for path, reason in turned_away
            ]
            + [
                f"{quote(path)} ignored: not an orders file ({quote('inbox/orders/*.csv')}) nor "
                f"a usage file ({quote('inbox/usage/**/*.jsonl[.gz]')}); rename it to have it "
                "read"
                for path in ignored
            ]
            + [quote(problem) for problem in self.housekeeping]
        )

    def summary(self) -> dict:
        """Plain numbers of the run (JSON-friendly: no Decimal, dates as text)."""
        ing = self.ingest or IngestReport()
        days = [d["day"] for d in self.days]
        return {
            "run_id": self.run_id,
            "status": self.status,
            "through": self.through.isoformat(),
            "days_billed": len(days),
            "first_day": min(days).isoformat() if days else None,
            "last_day": max(days).isoformat() if days else None,
            "files_ingested": len(ing.files),
            "files_skipped": len(ing.skipped_files),
            "files_rejected": len(ing.rejected_files),
            "orders_accepted": ing.orders_accepted,
            "orders_rejected": ing.orders_rejected,
            "events_accepted": ing.events_accepted,
            "events_rejected": ing.events_rejected,
            "duplicates": ing.duplicates,
            "order_duplicates": ing.order_duplicates,
            "rejected_by_reason": dict(ing.rejected_by_reason),
            "days_without_usage": [d.isoformat() for d in self.days_without_usage],
            "repriced_from": self.repriced_from.isoformat() if self.repriced_from else None,
            "warnings": self.warnings,
            "published": self.published,
            "documents": dict(self.documents),
            "day_files": {**self.exported, "days_read_back": self.thawed_days},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "document_seconds": {k: round(v, 3) for k, v in self.document_seconds().items()},
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds().items()},
        }

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage over the whole run: ingest steps, then the billing stages."""
        out = dict(self.ingest.seconds) if self.ingest else {}
        for d in self.days:
            for k, v in d.get("timings", {}).items():
                out[k] = out.get(k, 0.0) + v
        for step in (
            "open",
            "rate",
            "plan",
            "documents",
            "export",
            "compact",
            "checkpoint",
            "publish",
        ):
            if step in self.seconds:  # (rate: the run's re-rating beside the ingest's rating)
                out[step] = out.get(step, 0.0) + self.seconds[step]
        return out

    def document_seconds(self) -> dict[str, float]:
        """Seconds of each step of the documents stage (final documents, month-to-date
        documents, suspension lists), which stage_seconds counts together as `documents`."""
        return {k: self.seconds[k] for k in DOCUMENT_STEPS if k in self.seconds}


def day_spans(days: list[date]) -> list[str]:
    """Consecutive days as spans: ["2026-11-03", "2026-11-05 .. 2026-11-07"]."""
    spans: list[list[date]] = []
    for d in sorted(set(days)):
        if spans and d == spans[-1][1] + timedelta(days=1):
            spans[-1][1] = d
        else:
            spans.append([d, d])
    return [f"{a}" if a == b else f"{a} .. {b}" for a, b in spans]


def days_without_usage(con, days: list[date]) -> list[date]:
    """The billed days that no accepted usage event is dated on; days before the first
    usage of all are left out (a customer's orders come before their usage begins)."""
    if not days:
        return []
    first = scalar(  # (days no longer in the working database: in their day files)
        con,
        "select least((select min(day) from events), (select min(day) from day_files "
        "where table_name = 'events' and rows > 0))",  # (a day without events has a file too)
    )
    used = {  # (a day no longer in the working database has usage in its day file)
        r[0]
        for r in con.execute(
            "select distinct day from events where day between $a and $b union "
            "select day from day_files where table_name = 'events' and rows > 0 "
            "and day between $a and $b",
            {"a": min(days), "b": max(days)},
        ).fetchall()
    }
    return [d for d in sorted(set(days)) if d not in used and (first is None or d >= first)]
