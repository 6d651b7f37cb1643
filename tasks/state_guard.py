"""What a data dir's working state says before a run reads anything: the billing zone its
days were cut in, and whether it is the state the published warehouse was billed from."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb

from tasks.day_files import writer_run
from tasks.db import connect, scalar
from tasks.run_lock import is_lock_error
from tasks.settings import Settings

ZONE_KEY = "billing_tz"  # adbill_meta: the zone every stored event's `day` was computed in
DEFAULT_ZONE = "Asia/Shanghai"
RECOVERY = "docs/operating.md §17"


class RunRefused(ValueError):
    """A run the guards turn away before it reads or writes anything (interfaces.md)."""


class _Held:
    """The working state is open for writing in another process (a run): it checks itself."""


HELD = _Held()


def check_working_state(settings: Settings) -> None:
    """Refuse a run, a plan or `serve` (RunRefused) when ADBILL_BILLING_TZ is not the zone the
    working state records (billing-rules §1: every stored event's day was cut in it), or when
    the working state is missing or new (no run of it succeeded) while the published
    warehouse or state/days shows that this data dir has billed (a state deleted or lost: a
    run would publish a warehouse rebuilt from the inbox alone over the billed history). A
    damaged working state raises tasks.db.DamagedDatabase. A state that a run holds is left
    to that run's own check."""
    facts = _state_facts(settings.state_db)
    if facts is HELD:
        return
    zone, succeeded, own_runs = facts
    check_zone(settings, zone)
    if not succeeded and (lost := lost_billing(settings, own_runs=own_runs)) is not None:
        raise RunRefused(lost)


def check_zone(settings: Settings, zone: str | None, then: str = "nothing read or billed") -> None:
    """Refuse a billing zone other than the one the working state (or its published
    warehouse) records (None: none yet)."""
    if zone is None or zone == settings.billing_tz:
        return
    fix = "unset it" if zone == DEFAULT_ZONE else f"set it to {zone}"
    raise RunRefused(
        f"{settings.data_dir} bills in {zone}; ADBILL_BILLING_TZ={settings.billing_tz} differs: "
        f"{fix} (a data dir keeps the zone of its first run, {RECOVERY}); {then}"
    )


def record_zone(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """The billing zone recorded in the working state on its first run (and on the next run of
    a data dir billed before it was recorded); a recorded one other than the settings' is
    refused (the run holds the data dir's lock: nothing changed it since the check)."""
    check_zone(settings, recorded_zone(con))
    con.execute(
        "insert into adbill_meta select $k, $tz where not exists "
        "(select 1 from adbill_meta where key = $k)",
        {"k": ZONE_KEY, "tz": settings.billing_tz},
    )


def recorded_zone(con: duckdb.DuckDBPyConnection) -> str | None:
    """The billing zone the working state (or a warehouse it published) records, if any."""
    try:
        return scalar(con, "select value from adbill_meta where key = $k", {"k": ZONE_KEY})
    except duckdb.CatalogException:  # a database made before adbill_meta
        return None


def _state_facts(path: Path) -> tuple[str | None, bool, frozenset[str]] | _Held:
    """The working state's recorded zone, whether a run of it ever succeeded, and the ids of
    its runs (None, False, empty: no working state), or HELD when another process has it
    open for writing."""
    if not path.exists():
        return None, False, frozenset()
    try:
        con = connect(path, read_only=True)
    except duckdb.Error as exc:
        if is_lock_error(exc):
            return HELD
        raise
    try:
        return recorded_zone(con), _succeeded(con), _run_ids(con)
    finally:
        con.close()


def _run_ids(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The ids of the runs this working state recorded, whatever their outcome: the folders
    of state/days its runs wrote (`<table>/<run_id>/...`, tasks/day_files.py)."""
    try:
        return frozenset(r for (r,) in con.execute("select run_id from runs").fetchall())
    except duckdb.CatalogException:
        return frozenset()


def _succeeded(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a run of this working state succeeded: a state that billed and published
    (billed_days alone says less: a failed run that rebills from its first day leaves none)."""
    try:
        return bool(scalar(con, "select count(*) from runs where status = 'succeeded'"))
    except duckdb.CatalogException:
        return False


def state_lost(settings: Settings) -> str | None:
    """For `adbill status`: one line when the working state is missing or new (no run of it
    succeeded) while the published warehouse or state/days shows billing by this data dir;
    None otherwise (and while a run holds the working state)."""
    facts = _state_facts(settings.state_db)
    if facts is HELD or facts[1]:
        return None
    return lost_billing(settings, then="runs refuse until then", own_runs=facts[2])


def lost_billing(
    settings: Settings, then: str = "nothing billed", own_runs: frozenset[str] = frozenset()
) -> str | None:
    """The refusal when the data dir has billed although its working state is missing or
    new: the published warehouse holds billed days, or state/days files that no run of this
    working state wrote (own_runs: its runs' ids; a first run that failed after writing its
    day files, at publish say, left only its own, and its rerun carries on)."""
    what = "missing" if not settings.state_db.exists() else "new (no run of it succeeded)"
    fix = (
        f"restore state/ from a backup ({RECOVERY}), or move {settings.db} and state/days "
        f"away to start over; {then}"
    )
    through = warehouse_through(settings.db)
    if through is not None:
        return (
            f"{settings.data_dir}: the working state is {what} but {settings.db} holds billing "
            f"through {through}: {fix}"
        )
    days = day_files_through(settings.state_dir / "days", own_runs)
    if days is not None:
        return (
            f"{settings.data_dir}: the working state is {what} but state/days holds the day "
            f"files of billing through {days}: {fix}"
        )
    return None


def warehouse_through(db: Path) -> date | None:
    """The last day billed in a published warehouse; None when there is none, it has billed
    nothing, or it cannot be read (not a DuckDB file, damaged, held for writing: the
    --db guards of `run` and `serve` tell those)."""
    if not db.is_file():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        return scalar(con, "select max(day) from main.billed_days")
    except duckdb.Error:
        return None
    finally:
        con.close()


_DAY = re.compile(r"(?<![0-9])(20[0-9]{2}-[01][0-9]-[0-3][0-9])(?![0-9])")
_MONTH = re.compile(r"month=(20[0-9]{2}-[01][0-9])")


def day_files_through(days_dir: Path, own_runs: frozenset[str] = frozenset()) -> str | None:
    """The last day named by the day files under state/days (a day, or a merged month), or
    "an unknown day" when files are there but none names one; None when there are none.
    Files in the folders of own_runs (`<table>/<run_id>[-month-<token>]/`) are left out."""
    files = [p for p in days_dir.rglob("*.parquet") if p.is_file()] if days_dir.is_dir() else []
    names = [str(p.relative_to(days_dir)) for p in files]
    names = [n for n in names if writer_run(n) not in own_runs]
    if not names:
        return None
    days = [m for n in names for m in _DAY.findall(n)]
    days += [f"the month {m}" for n in names for m in _MONTH.findall(n)]
    return max(days, key=lambda d: d.removeprefix("the month ")) if days else "an unknown day"
