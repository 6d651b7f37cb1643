"""One billing run end to end: ingest, bill each day in order, publish; the flow's body."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tasks.billing import bill_day, call_directly, last_billed, plan_days, unbill_from
from tasks.catalog import load_catalog
from tasks.db import connect, execute, scalar
from tasks.documents import DOCUMENT_STEPS, DocumentsWritten, write_documents
from tasks.ingest import IngestReport, ingest_inbox
from tasks.publish import publish, run_lock
from tasks.rate import rate_events
from tasks.settings import Settings

Stage = Callable[..., Any]


class RunRefused(ValueError):
    """A run the guards turn away before it reads or writes anything (interfaces.md)."""


EARLIEST_DAY = date(2000, 1, 1)  # §3: no timestamp before the year 2000 is accepted


def check_run(settings: Settings, through: date, rebill_from: date | None = None) -> None:
    """The guards of a run asked for by an operator (CLI, UI, schedule): only ended days are
    billed (`through` at most yesterday in the billing zone, billing-rules §3), a rebill
    starts on or before `through`, and the data dir has an inbox."""
    latest = settings.yesterday()
    if through > latest:
        raise RunRefused(
            f"through {through} is after yesterday ({latest} in {settings.billing_tz}): "
            "only a day that has ended is billed; nothing billed"
        )
    if through < EARLIEST_DAY:
        raise RunRefused(
            f"through {through} is before {EARLIEST_DAY}: no input can be dated then "
            "(billing-rules §3); nothing billed"
        )
    if rebill_from is not None and rebill_from > through:
        raise RunRefused(f"rebill_from {rebill_from} is after through {through}; nothing billed")
    check_inbox(settings)


def check_inbox(settings: Settings) -> None:
    if not settings.inbox.is_dir():
        raise RunRefused(
            f"no inbox at {settings.inbox} (is the data dir right? deliveries go to "
            "inbox/orders and inbox/usage); nothing billed"
        )


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

    @property
    def warnings(self) -> list[str]:
        """What an operator should look at although the run succeeded, one sentence each."""
        turned_away = self.ingest.rejected_files if self.ingest else []
        ignored = self.ingest.ignored_files if self.ingest else []
        return (
            [
                f"no usage on {span}: billed with zero usage; check that the day's usage "
                "files were delivered"
                for span in day_spans(self.days_without_usage)
            ]
            + [
                f"{path} turned away whole ({reason}); see rejected_files"
                for path, reason in turned_away
            ]
            + [
                f"{path} ignored: not an orders file (inbox/orders/*.csv) nor a usage file "
                "(inbox/usage/**/*.jsonl[.gz]); rename it to have it read"
                for path in ignored
            ]
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
            "rejected_by_reason": dict(ing.rejected_by_reason),
            "days_without_usage": [d.isoformat() for d in self.days_without_usage],
            "repriced_from": self.repriced_from.isoformat() if self.repriced_from else None,
            "warnings": self.warnings,
            "published": self.published,
            "documents": dict(self.documents),
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
        for step in ("open", "rate", "plan", "documents", "checkpoint", "publish"):
            if step in self.seconds:
                out[step] = self.seconds[step]
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
    first = scalar(con, "select min(day) from events")
    used = {
        r[0]
        for r in con.execute(
            "select distinct day from events where day between ? and ?", [min(days), max(days)]
        ).fetchall()
    }
    return [d for d in sorted(set(days)) if d not in used and (first is None or d >= first)]


def late_cutoff(con, through: date, settings: Settings) -> date:
    """Lines and orders dated before this day are too late (§3 "Time window"): the late
    window once the data dir has billed a day, the history window before its first run. A
    run bills through the last billed day at least (it never drops one), so an earlier
    `through` (a typo of the year) does not widen the window."""
    billed = last_billed(con)
    days = settings.max_late_days if billed is not None else settings.max_history_days
    return max(through, billed or through) - timedelta(days=days)


def run_billing(
    settings: Settings,
    through: date,
    *,
    rebill_from: date | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
    stage: Stage = call_directly,
    deduct: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    after_stage: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunReport:
    """Ingest new inbox files, bill every due day up to `through`, publish the warehouse.

    A data dir without an inbox is refused (RunRefused); `warn` hears the run's warnings
    (days billed without usage), `progress` the rest.
    """
    say = progress or (lambda _m: None)
    run_id = run_id or uuid.uuid4().hex[:12]
    report = RunReport(run_id=run_id, through=through)
    check_inbox(settings)
    settings.ensure_dirs()
    tz = settings.billing_tz
    # a catalog no run can apply fails here, before anything is read or billed
    catalog = load_catalog(settings.catalog_path, tz)
    hook = after_stage or (lambda _s: None)
    with run_lock(settings.state_dir):
        t = time.perf_counter()
        con = connect(settings.state_db)
        report.seconds["open"] = time.perf_counter() - t
        doing = f"starting the run in {settings.state_db}"
        try:
            con.execute(
                "update runs set status = 'failed', error = 'interrupted' where status = 'running'"
            )
            con.execute(
                "insert into runs (run_id, started_at, status, through, rebill_from, trigger) "
                "values (?, now(), 'running', ?, ?, ?)",
                [run_id, through, rebill_from, trigger],
            )
            t = time.perf_counter()
            doing = f"ingesting {settings.inbox}"
            cutoff = late_cutoff(con, through, settings)
            report.ingest = stage(
                "ingest",
                ingest_inbox,
                con,
                settings.inbox,
                catalog,
                tz=tz,
                run_id=run_id,
                late_before=cutoff,
                today=settings.today(),
                duplicate_window_days=settings.max_late_days + 2,
                progress=say,
            )
            hook("ingest")
            report.seconds["ingest"] = time.perf_counter() - t
            # events rated by the version in force; a catalog change that alters billed days
            # re-rates their events and makes those days stale, as late data does
            t = time.perf_counter()
            doing = f"applying the catalog {settings.catalog_path}"
            repriced_from = stage(
                "rate", rate_events, con, catalog, tz=tz, run_id=run_id, rebill_from=rebill_from
            )
            hook("rate")
            report.repriced_from = repriced_from
            report.seconds["rate"] = time.perf_counter() - t
            # days already billed after `through` are billed again too when an earlier day
            # is (late data, rebill): a run never drops a billed day from the warehouse
            t = time.perf_counter()
            doing = "planning the days to bill"
            billed_until = max(through, last_billed(con) or through)
            if rebill_from is not None:
                execute(con, "delete from billed_days where day >= $day", {"day": rebill_from})
            plans = plan_days(
                con, billed_until, rebill_from=rebill_from, repriced_from=repriced_from
            )
            if plans:
                con.execute("begin transaction")
                unbill_from(con, plans[0].day)
                con.execute("commit")
            report.seconds["plan"] = time.perf_counter() - t
            for i, plan in enumerate(plans, 1):
                t = time.perf_counter()
                started = time.time()
                doing = f"billing {plan.day}"
                try:
                    # one task run per billed day in the Prefect UI; with draws on Dask the
                    # day stays in the flow, which submits the shards' tasks itself
                    run_day = stage if deduct is None else call_directly
                    result = run_day(
                        f"bill-{plan.day}",
                        bill_day,
                        con,
                        plan.day,
                        tz=tz,
                        shards=settings.shards,
                        stage=stage,
                        deduct=deduct,
                        after_stage=hook,
                        progress=say,
                        run_id=run_id,
                    )
                except Exception:
                    _record_day(
                        con,
                        run_id,
                        plan.day,
                        plan.reason,
                        started,
                        time.perf_counter() - t,
                        status="failed",
                    )
                    raise
                result["reason"] = plan.reason
                report.days.append(result)
                _record_day(con, run_id, plan.day, plan.reason, started, time.perf_counter() - t)
                say(f"day {i}/{len(plans)} done")
            report.days_without_usage = days_without_usage(con, [d["day"] for d in report.days])
            for warning in report.warnings:
                (warn or say)(warning)
            t = time.perf_counter()
            doing = f"writing the documents into {settings.out_dir}"
            # documents of every day billed since the last successful run (this one included)
            days = [
                r[0]
                for r in con.execute(
                    "select day from billed_days where run_id not in "
                    "(select run_id from runs where status = 'succeeded') order by day"
                ).fetchall()
            ]
            # final statements new or revised since their documents were written; every
            # month-to-date one only when the setting asks (interfaces.md, Data dir)
            written: DocumentsWritten = stage(
                "documents",
                write_documents,
                con,
                settings.out_dir,
                days,
                tz=tz,
                month_to_date=settings.write_month_to_date_documents,
            )
            hook("documents")
            report.seconds["documents"] = time.perf_counter() - t
            report.seconds.update(written.seconds)
            report.documents = {
                "final": written.finals,
                "month_to_date": written.month_to_date,
                "lists": written.lists,
            }
            report.status = "succeeded"
            _finish(con, run_id, report)
            t = time.perf_counter()
            con.execute("checkpoint")
        except BaseException as exc:
            report.status = "failed"
            _note(exc, doing)
            _finish(con, run_id, report, error=f"{type(exc).__name__}: {exc}")
            con.close()
            raise
        con.close()
        report.seconds["checkpoint"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            report.published = str(stage("publish", publish, settings.state_db, settings.db))
            hook("publish")
        except BaseException as exc:
            report.status = "failed"
            _note(exc, f"publishing {settings.db}")
            con = connect(settings.state_db)
            _finish(con, run_id, report, error=f"publish failed: {exc}")
            con.close()
            raise
        report.seconds["publish"] = time.perf_counter() - t
    return report


def _note(exc: BaseException, doing: str) -> None:
    """Say what the run was doing on the error (a note: its type and message stay as raised),
    so the one line an operator sees names the day or file at fault."""
    if isinstance(exc, Exception) and not any(
        n.startswith("while ") for n in getattr(exc, "__notes__", ())
    ):
        exc.add_note(f"while {doing}")


def _record_day(
    con,
    run_id: str,
    day: date,
    reason: str,
    started: float,
    seconds: float,
    status: str = "succeeded",
) -> None:
    """One billing_runs row: the day, why it was billed, its counts, status and duration."""
    con.execute(
        """
        insert into billing_runs
        select $run_id, $day, $reason, make_timestamptz(($started * 1e6)::bigint), now(),
               $status,
               (select count(*) from events where day = $day),
               -- the run's rejected lines, on its first day row only (sums stay right)
               case when exists (select 1 from billing_runs where run_id = $run_id) then 0
                    else (select count(*) from rejected_events where run_id = $run_id) end,
               (select coalesce(sum(used), 0) from customer_days where day = $day),
               $seconds
        """,
        {
            "run_id": run_id,
            "day": day,
            "reason": reason,
            "started": started,
            "seconds": seconds,
            "status": status,
        },
    )


def _finish(con, run_id: str, report: RunReport, error: str | None = None) -> None:
    days = [d["day"] for d in report.days]
    con.execute(
        "update runs set finished_at = now(), status = ?, days_billed = ?, first_day = ?, "
        "last_day = ?, error = ? where run_id = ?",
        [
            report.status,
            len(days),
            min(days) if days else None,
            max(days) if days else None,
            error,
            run_id,
        ],
    )
