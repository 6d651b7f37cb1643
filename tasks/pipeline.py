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
from tasks.db import connect, execute
from tasks.documents import write_documents
from tasks.ingest import IngestReport, ingest_inbox
from tasks.publish import publish, run_lock
from tasks.settings import Settings

Stage = Callable[..., Any]


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
            "orders_accepted": ing.orders_accepted,
            "orders_rejected": ing.orders_rejected,
            "events_accepted": ing.events_accepted,
            "events_rejected": ing.events_rejected,
            "duplicates": ing.duplicates,
            "rejected_by_reason": dict(ing.rejected_by_reason),
            "published": self.published,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds().items()},
        }

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage over the whole run: ingest steps, then the billing stages."""
        out = dict(self.ingest.seconds) if self.ingest else {}
        for d in self.days:
            for k, v in d.get("timings", {}).items():
                out[k] = out.get(k, 0.0) + v
        for step in ("open", "plan", "documents", "checkpoint", "publish"):
            if step in self.seconds:
                out[step] = self.seconds[step]
        return out


def late_cutoff(con, through: date, settings: Settings) -> date:
    """Lines and orders dated before this day are too late (§3 "Time window"): the late
    window once the data dir has billed a day, the history window before its first run."""
    days = settings.max_late_days if last_billed(con) is not None else settings.max_history_days
    return through - timedelta(days=days)


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
) -> RunReport:
    """Ingest new inbox files, bill every due day up to `through`, publish the warehouse."""
    say = progress or (lambda _m: None)
    run_id = run_id or uuid.uuid4().hex[:12]
    report = RunReport(run_id=run_id, through=through)
    settings.ensure_dirs()
    catalog = load_catalog(settings.catalog_path)
    tz = settings.billing_tz
    hook = after_stage or (lambda _s: None)
    with run_lock(settings.state_dir):
        t = time.perf_counter()
        con = connect(settings.state_db)
        report.seconds["open"] = time.perf_counter() - t
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
            # days already billed after `through` are billed again too when an earlier day
            # is (late data, rebill): a run never drops a billed day from the warehouse
            t = time.perf_counter()
            billed_until = max(through, last_billed(con) or through)
            if rebill_from is not None:
                execute(con, "delete from billed_days where day >= $day", {"day": rebill_from})
            plans = plan_days(con, billed_until, rebill_from=rebill_from)
            if plans:
                con.execute("begin transaction")
                unbill_from(con, plans[0].day)
                con.execute("commit")
            report.seconds["plan"] = time.perf_counter() - t
            for i, plan in enumerate(plans, 1):
                t = time.perf_counter()
                started = time.time()
                try:
                    result = bill_day(
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
            t = time.perf_counter()
            # documents of every day billed since the last successful run (this one included)
            days = [
                r[0]
                for r in con.execute(
                    "select day from billed_days where run_id not in "
                    "(select run_id from runs where status = 'succeeded') order by day"
                ).fetchall()
            ]
            stage("documents", write_documents, con, settings.out_dir, days, tz=tz)
            hook("documents")
            report.seconds["documents"] = time.perf_counter() - t
            report.status = "succeeded"
            _finish(con, run_id, report)
            t = time.perf_counter()
            con.execute("checkpoint")
        except BaseException as exc:
            report.status = "failed"
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
            con = connect(settings.state_db)
            _finish(con, run_id, report, error=f"publish failed: {exc}")
            con.close()
            raise
        report.seconds["publish"] = time.perf_counter() - t
    return report


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
