"""A run's plan: the days it would bill, each with its reason, and the inbox files it would
ingest; read from the working state without changing it (`adbill run --plan`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb

from tasks.billing import DayPlan, last_billed, plan_days
from tasks.catalog import load_catalog
from tasks.db import connect, migrations, scalar
from tasks.inbox_files import list_inbox, path_text
from tasks.ingest import IngestReport, _new_files
from tasks.pipeline import RunRefused, late_cutoff
from tasks.rate import check_catalog, repriced_from
from tasks.run_lock import is_lock_error, lock_holder, no_run_starting
from tasks.settings import Settings

# what `--plan` cannot know without ingesting (docs/operating.md "Before a run: --plan")
LIMIT = (
    "late-data days come from each new file's earliest line that passes cheap checks (a time "
    "with its offset, a known function and status, an event_id not billed yet) or its earliest "
    "order: a run may start later, when ingest rejects that line for another reason, never "
    "earlier"
)

# characters DuckDB's readers take as a file pattern: a path holding one is read through a link
GLOB = "*?[{"

# lines the run would surely reject or find duplicate are left out (bad time, function or
# status; an event_id it holds already); what else it rejects is left to LIMIT above
USAGE_DAY = """
with lines as (
    select event_id, (try_cast(occurred_at as timestamptz) at time zone $tz)::date as day
    from read_json(
        $path, format = 'newline_delimited', ignore_errors = true,
        columns = {event_id: 'varchar', function: 'varchar', status: 'varchar',
                   occurred_at: 'varchar'}
    )
    where regexp_matches(occurred_at, '(Z|z|[+-]\\d\\d:?\\d\\d)$')
      and status in ('succeeded', 'failed')
      and function in (select code from temp.plan_functions)
),

known as (
    select event_id from events
    where day between (select min(day) from lines) and (select max(day) from lines)
)

select min(day) from lines
where day between $first and $last
  and event_id not in (select event_id from known where event_id is not null)
"""

ORDER_DAY = """
with bought as (
    select try_cast(purchased_at as timestamptz) at time zone $tz as local
    from read_csv($path, all_varchar = true, header = true, ignore_errors = true)
)

select min(case when local::time = '00:00:00' then local::date - 1 else local::date end)
from bought
"""


@dataclass
class NewFile:
    """An inbox file the run would read, and the earliest billing day its lines carry."""

    path: str
    kind: str  # orders, usage
    bytes: int
    earliest_day: date | None


@dataclass
class RunPlan:
    through: date
    days: list[DayPlan] = field(default_factory=list)
    files: list[NewFile] = field(default_factory=list)
    turned_away: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    last_billed: date | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The plan as the terminal shows it."""
        out = [f"plan through {self.through} (billed through {self.last_billed or 'nothing'}):"]
        out.append(f"  {len(self.days)} day(s) to bill" + (":" if self.days else ""))
        for span, reason in _spans(self.days):
            out.append(f"    {span}  {reason}")
        out.append(f"  {len(self.files)} file(s) to ingest" + (":" if self.files else ""))
        for f in self.files:
            day = f" (earliest day {f.earliest_day})" if f.earliest_day else ""
            out.append(f"    {f.kind:6} {f.path}  {f.bytes:,} bytes{day}")
        for path, reason in self.turned_away:
            out.append(f"  would turn away {path} ({reason})")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _spans(days: list[DayPlan]) -> list[tuple[str, str]]:
    """Consecutive days with the same reason as one line."""
    spans: list[list] = []
    for p in days:
        if spans and spans[-1][2] == p.reason and p.day == spans[-1][1] + timedelta(days=1):
            spans[-1][1] = p.day
        else:
            spans.append([p.day, p.day, p.reason])
    return [(f"{a}" if a == b else f"{a} .. {b}", r) for a, b, r in spans]


def plan_run(settings: Settings, through: date, rebill_from: date | None = None) -> RunPlan:
    """What `run_billing(settings, through, rebill_from=)` would bill now, without ingesting:
    the new inbox files' earliest days stand in for what ingest would record."""
    con = _overlay(settings.state_db)
    try:
        plan = RunPlan(through=through, last_billed=last_billed(con))
        report = IngestReport()
        fresh = [
            (f, kind)
            for kind, paths in _inbox(settings, plan)
            for f in _new_files(
                con,
                paths,
                report,
                lambda p, r, _d: plan.turned_away.append((p, r)),
                kind=kind,  # (its content is its digest and how it is read, as ingest's)
                remember=False,  # a plan writes nothing
            )
        ]
        plan.turned_away = [(str(p), r) for p, r in plan.turned_away]
        cutoff = late_cutoff(con, through, settings)
        latest = settings.today() + timedelta(days=1)
        catalog = load_catalog(settings.catalog_path, settings.billing_tz)
        check_catalog(con, catalog)
        con.register("plan_functions_now", catalog.functions.select("code").to_arrow())
        con.execute("create temp table plan_functions as select * from plan_functions_now")
        for f, kind in fresh:
            day = _earliest_day(con, f.path, kind, settings.billing_tz, cutoff, latest)
            plan.files.append(NewFile(str(f.path), kind, f.path.stat().st_size, day))
        _add_new_files(con, plan.files)
        repriced = repriced_from(con, catalog, settings.billing_tz)
        billed_until = max(through, plan.last_billed or through)
        plan.days = plan_days(con, billed_until, rebill_from=rebill_from, repriced_from=repriced)
        if plan.files:
            plan.notes.append(LIMIT)
        return plan
    finally:
        con.close()


def _inbox(settings: Settings, plan: RunPlan) -> list[tuple[str, list[Path]]]:
    """The inbox's files by kind (orders, then usage, as ingest takes them)."""
    if not settings.inbox.is_dir():
        return []
    found = list_inbox(settings.inbox)
    plan.turned_away += [(path_text(p), reason) for p, reason, _detail in found.refused]
    return [("orders", found.orders), ("usage", found.usage)]


def _check_upgraded(con, state_db: Path) -> None:
    """A working state an older adbill made (schema migrations not all applied) is upgraded
    by the next run, not read by a plan (its tables are not yet the ones the plan reads)."""
    latest = max(m.version for m in migrations())
    try:
        applied = scalar(con, "select max(version) from working.main.schema_migrations")
    except duckdb.Error:
        applied = None
    if applied is None or applied < latest:
        con.close()
        raise RunRefused(
            f"the working state {state_db} was made by an older adbill (schema "
            f"{applied or 'before migrations'}, this one {latest}): the next `adbill run` "
            "upgrades it; ask for the plan after that. Nothing planned"
        )


def _overlay(state_db: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory database whose tables read the working state (attached read-only) and
    that the plan may change freely: billed_days and ingested_files are copies, and orders
    and events take the new files' earliest days (temp.plan_orders, temp.plan_events)."""
    con = connect(":memory:")
    con.execute("create temp table plan_orders (purchase_day date)")
    con.execute("create temp table plan_events (day date)")
    source: dict[str, str] = {}  # a fresh data dir: only the new files' days
    with no_run_starting(state_db.parent) as free:  # (the run lock, not only DuckDB's: a
        if not free:  # run between its steps, or a backup holding it, as status sees it)
            con.close()
            raise RunRefused(f"a run is using {state_db}; ask for the plan when it has finished")
    if state_db.exists():
        try:
            con.execute(f"attach '{_quoted(state_db)}' as working (read_only)")
        except duckdb.IOException as exc:
            con.close()
            if is_lock_error(exc):
                with no_run_starting(state_db.parent) as free:
                    if not free:
                        raise RunRefused(
                            f"a run is using {state_db}; ask for the plan when it has finished"
                        ) from None
                raise RunRefused(
                    f"the working state {state_db} is open in another process "
                    f"({lock_holder(exc)}): close that session (analysts open the published "
                    "warehouse, never state/); nothing planned"
                ) from None
            reason = " ".join(str(exc).split())[:120]
            raise RuntimeError(
                f"the working state {state_db} cannot be read ({reason}): is it damaged? "
                "nothing planned"
            ) from exc
        _check_upgraded(con, state_db)
        names = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where database_name = 'working'"
            ).fetchall()
        ]
        for name in names:
            con.execute(f'drop table if exists main."{name}"')
            if name in ("orders", "events"):
                continue  # below, with the new files' days
            copy = name in ("billed_days", "ingested_files")
            kind = "table" if copy else "view"
            con.execute(f'create {kind} main."{name}" as select * from working.main."{name}"')
        source = {t: f"working.main.{t}" for t in ("orders", "events")}
    for table in ("orders", "events"):
        con.execute(f"drop table if exists main.{table}")
        state = f"select * from {source[table]} union all by name " if source else ""
        con.execute(f"create view main.{table} as {state}select * from temp.plan_{table}")
    return con


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _earliest_day(con, path: Path, kind: str, tz: str, first: date, last: date) -> date | None:
    """The earliest billing day in first..last a file's lines carry (read cheaply: LIMIT). A
    path DuckDB would read as a pattern (`u[1].jsonl` is u1.jsonl; a data dir `g[x]/`) is
    read through a link of a plain name in a temporary folder."""
    if not any(c in str(path) for c in GLOB):
        return _day_read(con, path, kind, tz, first, last)
    suffix = ".csv" if kind == "orders" else ".jsonl.gz" if path.name.endswith(".gz") else ".jsonl"
    with tempfile.TemporaryDirectory(prefix="adbill-plan-") as tmp:
        link = Path(tmp) / f"file{suffix}"
        if any(c in str(link) for c in GLOB):
            return None  # (a temporary folder named like a pattern: no estimate)
        link.symlink_to(path)
        return _day_read(con, link, kind, tz, first, last)


def _day_read(con, path: Path, kind: str, tz: str, first: date, last: date) -> date | None:
    text = ORDER_DAY if kind == "orders" else USAGE_DAY
    try:
        day = scalar(con, text, {"path": str(path), "tz": tz, "first": first, "last": last})
    except duckdb.Error:
        return None
    return day if day is None or first <= day <= last else None


def _add_new_files(con, files: list[NewFile]) -> None:
    """The new files as ingest would record them: later file ids, their earliest days (which
    also give a fresh data dir its first day, tasks.billing.first_day)."""
    top = scalar(con, "select coalesce(max(file_id), 0) from ingested_files")
    for i, f in enumerate(files, 1):
        con.execute(
            "insert into ingested_files (file_id, path, kind, earliest_day, complete) "
            "values (?, ?, ?, ?, true)",
            [top + i, f.path, f.kind, f.earliest_day],
        )
        if f.earliest_day is not None:
            table = "orders" if f.kind == "orders" else "events"
            con.execute(f"insert into temp.plan_{table} values (?)", [f.earliest_day])
