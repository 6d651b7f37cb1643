"""The billing status an operator checks in the morning: the last runs, days billed through,
days waiting, recent rejects and warnings (`adbill status`, table billing_status)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from tasks.billing import DayPlan, last_billed, plan_days
from tasks.catalog import CatalogError, load_catalog
from tasks.db import connect, scalar
from tasks.documents_files import write_atomic
from tasks.pipeline import day_spans, days_without_usage
from tasks.rate import check_catalog, repriced_from
from tasks.run_lock import no_run_starting
from tasks.settings import Settings
from tasks.state_guard import warehouse_through

RUNS_SHOWN = 10
# a daily schedule that has not run for longer than this is named in the warnings
SCHEDULE_SILENT_HOURS = 26

# why a billed day waits to be billed again (tasks/billing.py DayPlan reasons)
STALE_BECAUSE = {
    "late_data": "files ingested after they were billed touch them",
    "price_change": "the catalog file changes a price in force on them",
    "rebill": "a rebill was asked for",
}

RUN_COLUMNS = (
    "run_id",
    "flow_run_id",
    "trigger",
    "status",
    "started_at",
    "finished_at",
    "through",
    "days_billed",
    "first_day",
    "last_day",
    "error",
)


@dataclass
class Status:
    """Facts of one moment; `failed` is what monitoring acts on."""

    as_of: datetime
    today: date
    source: str  # the file read
    billed_through: date | None = None
    waiting: list[DayPlan] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    last_scheduled: dict[str, Any] | None = None
    since: datetime | None = None
    lines_rejected: dict[str, int] = field(default_factory=dict)
    orders_rejected: int = 0
    files_rejected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    catalog_problem: str | None = None  # why the next run would refuse the catalog file

    @property
    def stale(self) -> list[DayPlan]:
        return [p for p in self.waiting if p.reason != "new"]

    @property
    def failed(self) -> bool:
        """The last scheduled run failed (or was interrupted)."""
        return bool(self.last_scheduled and self.last_scheduled["status"] == "failed")

    def row(self, run_id: str | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
        """The billing_status row (and the artifact's table): plain values only."""
        last = self.last_scheduled or {}
        return {
            "run_id": run_id,
            "flow_run_id": flow_run_id,
            "as_of": self.as_of,
            "today": self.today,
            "billed_through": self.billed_through,
            "days_waiting": len(self.waiting),
            "first_day_waiting": self.waiting[0].day if self.waiting else None,
            "stale_days": len(self.stale),
            "last_scheduled_run_id": last.get("run_id"),
            "last_scheduled_status": last.get("status"),
            "last_scheduled_error": last.get("error"),
            "since": self.since,
            "lines_rejected": sum(self.lines_rejected.values()),
            "orders_rejected": self.orders_rejected,
            "files_rejected": len(self.files_rejected),
            "warnings": list(self.warnings),
        }

    def lines(self) -> list[str]:
        """The status as the terminal shows it."""
        out = [f"adbill status of {self.source} at {self.as_of:%Y-%m-%d %H:%M:%S %Z}"]
        out.append(f"  billed through: {self.billed_through or 'nothing billed yet'}")
        if self.waiting:
            spans = ", ".join(
                f"{s} {r}" for s, r in _reason_spans(self.waiting)
            )  # e.g. 2026-11-03 .. 2026-11-05 late_data
            out.append(f"  days waiting: {len(self.waiting)} ({spans})")
        else:
            out.append("  days waiting: none")
        last = self.last_scheduled
        out.append(
            "  last scheduled run: "
            + (f"{last['run_id']} {last['status']}" if last else "none yet")
            + (f": {last['error']}" if last and last.get("error") else "")
        )
        out.append("  last runs (adbill run id, Prefect flow-run id):")
        for r in self.runs:
            flow_run = r.get("flow_run_id") or "-"
            days = f"{r['first_day']} .. {r['last_day']}" if r.get("first_day") else "no days"
            out.append(
                f"    {r['run_id']}  {flow_run:36}  {r['trigger'] or '-':9} {r['status']:9} "
                f"{r['started_at']:%Y-%m-%d %H:%M}  {days}"
                + (f"  {r['error']}" if r.get("error") else "")
            )
        if not self.runs:
            out.append("    none")
        since = f"{self.since:%Y-%m-%d %H:%M %Z}" if self.since else "the start"
        lines = ", ".join(f"{k} {v:,}" for k, v in sorted(self.lines_rejected.items()))
        out.append(
            f"  rejected since {since}: {sum(self.lines_rejected.values()):,} lines"
            + (f" ({lines})" if lines else "")
            + f", {self.orders_rejected:,} orders, {len(self.files_rejected)} files"
        )
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def _reason_spans(days: list[DayPlan]) -> list[tuple[str, str]]:
    by_reason: dict[str, list[date]] = {}
    for p in days:
        by_reason.setdefault(p.reason, []).append(p.day)
    return [(s, r) for r, ds in by_reason.items() for s in day_spans(ds)]


def billing_status(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    since: datetime | None = None,
    source: str = "",
    running: str | None = None,
    current_run: str | None = None,
) -> Status:
    """The status from a connection to the working state or the published warehouse.

    `running`: the run that holds the data dir now (its `running` row is not interrupted);
    `current_run`: the run writing this status just before it publishes (as succeeded).
    """
    now = scalar(con, "select now()")
    since = since or now - timedelta(hours=24)
    st = Status(as_of=now, today=settings.today(), source=source, since=since)
    st.billed_through = last_billed(con)
    through = max(settings.yesterday(), st.billed_through or settings.yesterday())
    repriced, st.catalog_problem = _catalog_changes(con, settings)
    st.waiting = plan_days(con, through, repriced_from=repriced)
    st.runs = [_run(r, running, current_run) for r in _runs(con, f"limit {RUNS_SHOWN}")]
    scheduled = _runs(con, "limit 1", "where trigger = 'scheduled'")
    st.last_scheduled = _later_failure(
        _run(scheduled[0], running, current_run) if scheduled else None,
        last_scheduled_failure(settings),
    )
    st.lines_rejected = dict(
        con.execute(
            "select reason, count(*) from rejected_events where ingested_at >= ? group by 1",
            [since],
        ).fetchall()
    )
    st.orders_rejected = scalar(
        con, "select count(*) from rejected_orders where ingested_at >= $s", {"s": since}
    )
    st.files_rejected = con.execute(
        "select source_file, reason from rejected_files where ingested_at >= ? order by all",
        [since],
    ).fetchall()
    st.warnings = _warnings(con, st, running)
    return st


def _catalog_changes(con, settings: Settings) -> tuple[date | None, str | None]:
    """The first billed day the catalog file's changes would re-bill (as `adbill plan` and
    the next run find it), and why the next run would refuse the catalog, if it would."""
    try:
        catalog = load_catalog(settings.catalog_path, settings.billing_tz)
        check_catalog(con, catalog)
        return repriced_from(con, catalog, settings.billing_tz), None
    except CatalogError as exc:
        return None, str(exc)
    except duckdb.CatalogException:
        return None, None  # (a warehouse from before the catalog's tables: nothing to compare)


def _runs(con, limit: str, where: str = "") -> list[dict[str, Any]]:
    have = {r[0] for r in con.execute("select column_name from (describe runs)").fetchall()}
    cols = ", ".join(c if c in have else f"null as {c}" for c in RUN_COLUMNS)
    cur = con.execute(f"select {cols} from runs {where} order by started_at desc {limit}")
    runs = [dict(zip(RUN_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    unfinished = [r["run_id"] for r in runs if r["finished_at"] is None]
    if unfinished:  # (killed: its row was never finished; the days it billed are recorded)
        billed = {
            run_id: (first, last, n)
            for run_id, first, last, n in con.execute(
                "select run_id, min(day), max(day), count(*) from billing_runs "
                "where status = 'succeeded' and list_contains($ids, run_id) group by 1",
                {"ids": unfinished},
            ).fetchall()
        }
        for r in runs:
            if r["run_id"] in billed:
                r["first_day"], r["last_day"], r["days_billed"] = billed[r["run_id"]]
    return runs


def _run(r: dict[str, Any], running: str | None, current: str | None) -> dict[str, Any]:
    """A runs row as it stands: a `running` row that no run holds was interrupted."""
    r = dict(r)
    if r["run_id"] == current:
        r["status"] = "succeeded"
    elif r["status"] == "running" and r["run_id"] != running:
        r["status"], r["error"] = "failed", r["error"] or "interrupted"
    return r


def _warnings(con, st: Status, running: str | None) -> list[str]:
    out = []
    if running:
        out.append(f"a run ({running}) is in progress; figures as of the last publish")
    recent = [
        r[0]
        for r in con.execute(
            "select day from billed_days where billed_at >= ? order by day", [st.since]
        ).fetchall()
    ]
    out += [
        f"no usage on {span}: billed with zero usage; check that the day's usage files "
        "were delivered"
        for span in day_spans(days_without_usage(con, recent))
    ]
    out += [
        f"{path} turned away whole ({reason}); see rejected_files"
        for path, reason in st.files_rejected
    ]
    if st.catalog_problem:
        out.append(f"the next run will refuse the catalog: {st.catalog_problem}")
    for reason, why in STALE_BECAUSE.items():
        stale = [p.day for p in st.stale if p.reason == reason]
        if stale:
            out.append(
                f"{len(stale)} billed day(s) from {stale[0]} are stale ({why}); the next run "
                "bills them again"
            )
    last = st.last_scheduled
    if last is not None and last["started_at"] < st.as_of - timedelta(hours=SCHEDULE_SILENT_HOURS):
        out.append(
            f"no scheduled run since {last['started_at']:%Y-%m-%d %H:%M %Z}: is `adbill serve` "
            "running?"
        )
    return out


def write_status(con, st: Status, run_id: str, flow_run_id: str | None = None) -> None:
    """Keep the status as a run leaves it in billing_status (published with the run)."""
    row = st.row(run_id, flow_run_id)
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"insert into billing_status ({names}) values ({marks})", list(row.values()))


# ---------------------------------------------------------------- reading it from outside a run


def read_status(settings: Settings, since: datetime | None = None) -> Status | None:
    """The status from the working state, or from the published warehouse while a run is
    going (the working state is the run's then); None when the data dir has billed nothing."""
    with no_run_starting(settings.state_dir) as free:
        path = settings.state_db if free else settings.db
        if not path.exists():
            return None
        con = connect(path, read_only=True)
        try:
            running = None
            if not free:
                running = (
                    scalar(con, "select max(run_id) from runs where status = 'running'")
                    or "one started after the last publish"  # (its row: in the state it holds)
                )
            st = billing_status(con, settings, since=since, source=str(path), running=running)
            if free and (behind := _published_behind(con, settings)) is not None:
                st.warnings.append(behind[0])
                if behind[1] is not None:
                    _stopped_publishing(st, behind[1])
            elif free and (unpublished := _unpublished_days(con, st, settings)) is not None:
                st.warnings.append(unpublished)
            return st
        finally:
            con.close()


LAST_SUCCEEDED = (
    "select run_id from runs where status = 'succeeded' order by started_at desc limit 1"
)
TARGET = "select published_to from runs where run_id = ?"


def _unpublished_days(con, st: Status, settings: Settings) -> str | None:
    """A warning when the working state has billed days the published warehouse does not
    hold: a run billed them and failed before it published (billed through says the working
    state's day) — new days, or days billed again (late data, a rebill) after the run the
    warehouse holds finished; the next run that succeeds publishes them."""
    published = warehouse_through(settings.db)
    if st.billed_through is None:
        return None
    if published is None or published < st.billed_through:
        holds = f"billing through {published}" if published else "no billed day"
        return (
            f"days through {st.billed_through} are billed but not published ({settings.db} "
            f"holds {holds}): a run failed after billing them; the next run that succeeds "
            "publishes them"
        )
    last = _warehouse_last_run(settings)
    if last is None or last is UNREADABLE:
        return None
    again = [
        r[0]
        for r in con.execute(
            "select day from billed_days where billed_at > (select finished_at from runs "
            "where run_id = ?) and run_id not in (select run_id from runs where status = "
            "'succeeded') order by day",  # (a run that succeeded published: elsewhere, --db)
            [last],
        ).fetchall()
    ]
    if not again:
        return None
    return (
        f"{len(again)} day(s) billed again ({', '.join(day_spans(again)[:3])}) are not published "
        f"({settings.db} holds them as run {last} billed them): a run failed after billing "
        "them; the next run that succeeds publishes them"
    )


UNREADABLE = "(unreadable)"


def _warehouse_last_run(settings: Settings) -> str | None:
    """The last succeeded run the published warehouse holds (None: none), or UNREADABLE
    when there is no warehouse or it cannot be read (locked by a writer, not a warehouse:
    nothing to say about it)."""
    if not settings.db.exists():
        return UNREADABLE
    try:
        pub = connect(settings.db, read_only=True)
    except Exception:  # noqa: BLE001
        return UNREADABLE
    try:
        return scalar(pub, LAST_SUCCEEDED)
    except Exception:  # noqa: BLE001
        return UNREADABLE
    finally:
        pub.close()


def _stopped_publishing(st: Status, run_id: str) -> None:
    """The run the published warehouse does not hold, shown as it ended: failed, stopped
    while it published (its `runs` row says succeeded: recorded before the copy is made).
    The last scheduled run among them makes status exit 3, as any failed night does."""
    for r in [*st.runs, st.last_scheduled]:
        if r is not None and r["run_id"] == run_id and r["status"] == "succeeded":
            r["status"], r["error"] = "failed", "interrupted while it published"


def _published_behind(con, settings: Settings) -> tuple[str, str | None] | None:
    """A warning when the published warehouse does not hold the working state's last
    succeeded run: the run was killed while it published (its `runs` row says succeeded
    before the copy is made); the next run publishes. None when it does, or when it cannot
    be read (an analyst's session writing to it: nothing to say)."""
    last = scalar(con, LAST_SUCCEEDED)
    if last is None:
        return None
    try:
        target = con.execute(TARGET, [last]).fetchall()[0][0]
    except duckdb.BinderException:  # a working state no run of this engine has opened yet
        target = None
    if target is not None and os.path.realpath(target) != os.path.realpath(settings.db):
        return None  # it published elsewhere (another --db): this warehouse is not its
    published = None
    if settings.db.exists():
        published = _warehouse_last_run(settings)
        if published is UNREADABLE:
            return None
    if published == last:
        return None
    known = published is None or bool(
        scalar(con, "select count(*) from runs where run_id = $r", {"r": published})
    )
    if not known:  # the warehouse is newer than the working state: not a stopped publish
        return (
            f"the published warehouse {settings.db} holds run {published}, which the working "
            f"state (last succeeded run {last}) does not know: was state/ restored from a "
            "backup? The next run bills the days since the backup and publishes"
        ), None
    return (
        f"the published warehouse {settings.db} does not hold the last succeeded run {last} "
        f"(it holds {published or 'no run'}): the run was stopped while it published; the "
        "next run publishes it"
    ), last


# ---------------------------------------------------------------------------------------------
# Scheduled runs that failed before their run was recorded

# under state/: the last scheduled run that failed before it could record itself in `runs`
# (the catalog unreadable, the data dir busy, ...): what `adbill status` reads beside `runs`
SCHEDULED_FAILURE = "last-scheduled-failure.json"


def record_scheduled_failure(settings: Settings, error: BaseException | str) -> None:
    """Keep a scheduled run's failure where `adbill status` finds it even when the run never
    reached its `runs` row. Only in a data dir that has an inbox (a mistyped or unmounted one
    is not written into); never raises (the run's own error is what the scheduler reports)."""
    try:
        if not settings.inbox.is_dir():
            return
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        record = {"at": datetime.now(UTC).isoformat(), "error": " ".join(text.split())[:300]}
        # the run's own `runs` row, when it reached one (tasks/pipeline.py): that row is
        # this failure, with its run id
        record["run_id"] = getattr(error, "adbill_run_id", None)
        write_atomic(settings.state_dir / SCHEDULED_FAILURE, json.dumps(record))
    except OSError:
        pass


def last_scheduled_failure(settings: Settings) -> dict[str, Any] | None:
    """The failure record_scheduled_failure kept, as a `runs` row of a run that never
    started: run_id `-`, status failed, started_at the failure's time; None if there is none
    (or it cannot be read)."""
    try:
        record = json.loads((settings.state_dir / SCHEDULED_FAILURE).read_text("utf-8"))
        at = datetime.fromisoformat(record["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {
        "run_id": "-",
        "status": "failed",
        "started_at": at,
        "error": record.get("error"),
        "of_run": record.get("run_id", OLDER_RECORD),
    }


OLDER_RECORD = "(not recorded)"  # a failure recorded by an engine that did not name its run


def _later_failure(
    last: dict[str, Any] | None, failure: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The last scheduled run: the newest `runs` row, unless a scheduled run failed after it
    started without a row of its own. The failure of a run that has its row is that row
    (its run id and error); a later failure is shown even after a failed row (it showed
    the older failure's cause)."""
    if failure is None:
        return last
    if last is None:
        return failure
    of_run = failure.get("of_run")
    if of_run == last["run_id"] or (of_run == OLDER_RECORD and last["status"] == "failed"):
        return last
    return failure if failure["started_at"] > last["started_at"] else last
