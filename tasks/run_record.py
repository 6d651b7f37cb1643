"""A run's rows in the working database: `runs` (one per run) and `billing_runs` (per day)."""

from __future__ import annotations

from datetime import date

from tasks.run_report import RunReport


def start_run(con, run_id: str, through: date, rebill_from: date | None, trigger: str) -> None:
    """A `runs` row for this run, running; a run a kill left running is marked interrupted."""
    con.execute("update runs set status = 'failed', error = 'interrupted' where status = 'running'")
    con.execute(
        "insert into runs (run_id, started_at, status, through, rebill_from, trigger) "
        "values (?, now(), 'running', ?, ?, ?)",
        [run_id, through, rebill_from, trigger],
    )


def record_day(
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


def finish_run(con, run_id: str, report: RunReport, error: str | None = None) -> None:
    """The run's `runs` row as it ended: status, days billed, first and last day, error."""
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
