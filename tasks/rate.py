"""Rated events: each event's credits by the catalog version in force at occurred_at, and
the catalog versions the working state has applied (to see what a changed catalog alters)."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import polars as pl

from tasks.billing import mark_unbilled
from tasks.catalog import Catalog, CatalogError
from tasks.day_files import context_from, frozen_before, mark_changed, thaw
from tasks.db import frame, local_day, run_sql, scalar, transaction

NOTHING_BEFORE = date(1, 1, 1)  # a version in force from the beginning touches every day
NOTHING_AFTER = date(9999, 12, 31)


def price_change_day(added: pl.DataFrame, retired: pl.DataFrame, tz: str) -> date | None:
    """The first billing day whose rating a catalog change alters: the earliest start of a
    function version added to the catalog or taken out of it (edited, or removed)."""
    starts: list[datetime | None] = [
        *added.filter(pl.col("kind") == "function")["effective_from"].to_list(),
        *retired.filter(pl.col("kind") == "function")["effective_from"].to_list(),
    ]
    if not starts:
        return None
    if any(s is None for s in starts):
        return NOTHING_BEFORE
    return local_day(min(starts), tz)


def check_catalog(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, run_id: str | None = None
) -> None:
    """Refuse (CatalogError) a catalog that contradicts what the working state billed with,
    before anything is read: [settings] that differ from the ones its pools were built with,
    or a function, edition or package code dropped (or renamed) that accepted events or
    orders still name. With `run_id`, the settings are then recorded as the run's."""
    where = catalog.source
    recorded = dict(con.execute("select name, value from catalog_settings").fetchall())
    now = {k: str(v) for k, v in catalog.settings().items()}
    changed = [k for k, v in now.items() if k in recorded and recorded[k] != v]
    if changed and _has_billed(con):
        name = changed[0]
        raise CatalogError(
            f"{where}: [settings] {name} is {now[name]}, but this data dir billed with "
            f"{name} = {recorded[name]}: put it back (another {name} needs a new data dir)"
        )
    _check_codes(con, catalog, where)
    for name, value in now.items() if run_id is not None else ():
        if recorded.get(name) != value:
            con.execute(
                "insert or replace into catalog_settings values (?, ?, now(), ?)",
                [name, value, run_id],
            )


def _has_billed(con) -> bool:
    """Whether the working state holds anything a catalog's settings shaped: an accepted
    order (its pools) or a billed day."""
    return bool(
        scalar(con, "select exists (select 1 from orders) or exists (select 1 from billed_days)")
    )


def _check_codes(con, catalog: Catalog, where: str) -> None:
    """A code the working state has rated events or accepted orders of must stay in the
    catalog: without a version, its events keep a retired price that no rebill re-rates."""
    functions = set(catalog.functions["code"])
    products = set(catalog.editions["code"]) | set(catalog.packages["code"])
    # codes the catalog held before (catalog_versions, retired ones too): a cheap first look,
    # so that the usual run (no code dropped) reads no events
    gone = [
        (kind, code)
        for kind, code in con.execute(
            "select distinct kind, code from catalog_versions order by kind desc, code"
        ).fetchall()
        if code not in (functions if kind == "function" else products)
    ]
    for kind, code in gone:
        if kind == "function":
            first, last = _event_days(con, code)
            what, fix = "events", "end a price with a new version"
        else:
            first, last = con.execute(
                "select min(purchase_day), max(purchase_day) from orders where product = ?",
                [code],
            ).fetchall()[0]
            what, fix = "orders", "change a price with a new version"
        if first is not None:
            raise CatalogError(
                f"{where}: {kind} {code} has accepted {what} from {first} to {last} but is "
                f"gone from the catalog: keep its versions ({fix}; a new name is a new code)"
            )


def _event_days(con, function: str) -> tuple[date | None, date | None]:
    """The first and last day of a function's accepted events: those the working database
    holds (exact days), and before them the billed months whose statements show it (days
    the working database no longer holds are in the day files only: the month's days)."""
    return con.execute(
        """
        with held as (
            select day as first, day as last from events where function = $f
        ),

        billed as (
            select
                month as first,
                least(last_day(month), $frozen - 1, (select max(day) from billed_days)) as last
            from statement_lines
            where function = $f and (events > 0 or failed_events > 0) and month < $frozen
        )

        select min(first), max(last) from (select * from held union all select * from billed)
        """,
        {"f": function, "frozen": frozen_before(con)},
    ).fetchall()[0]


def rating_change_day(
    con, versions: pl.DataFrame, added: pl.DataFrame, retired: pl.DataFrame, tz: str
) -> date | None:
    """price_change_day of the version changes that can alter a rated event: not those of a
    function code new to the data dir (no catalog it applied had it: every event naming it
    was rejected `unknown_function`) nor of a code the catalog dropped (check_catalog refuses
    that while an accepted event names it). So adding or dropping an unused function re-bills
    nothing."""
    seen = {
        c
        for (c,) in con.execute(
            "select distinct code from catalog_versions where kind = 'function'"
        ).fetchall()
    }
    listed = set(versions["code"])
    return price_change_day(
        added.filter(pl.col("code").is_in(sorted(seen))),
        retired.filter(pl.col("code").is_in(sorted(listed))),
        tz,
    )


def repriced_from(con, catalog: Catalog, tz: str) -> date | None:
    """The first billed day the catalog file's changes would re-bill (what a run's
    rate_events finds before it bills): for `adbill plan` and `adbill status`, which read
    the working state and change nothing."""
    if not scalar(con, "select count(*) from catalog_versions"):
        return None
    versions = catalog.versions()
    stored = frame(
        con,
        "select version_id, kind, code, effective_from from catalog_versions "
        "where retired_at is null",
    )
    added = versions.filter(~versions["version_id"].is_in(stored["version_id"].implode()))
    retired = stored.filter(~stored["version_id"].is_in(versions["version_id"].implode()))
    return _billed_from(con, rating_change_day(con, versions, added, retired, tz))


def _billed_from(con, changed: date | None) -> date | None:
    """The first billed day on or after `changed` (a change from the beginning: the first
    billed day, not 0001-01-01), or None when no billed day is that late."""
    if changed is None:
        return None
    first, last = con.execute("select min(day), max(day) from billed_days").fetchall()[0]
    return max(changed, first) if last is not None and changed <= last else None


def rate_events(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    *,
    tz: str,
    run_id: str,
    rebill_from: date | None = None,
) -> date | None:
    """Apply the catalog to the working state, in one transaction; return the first billed
    day that a price change makes stale (its days are billed again), or None.

    A function version added to the catalog, edited, or taken out of it changes the credits
    of events from its start on: those events are rated again (one UPDATE over their days)
    and the billed days from that day on are forgotten, so the run bills them again, as late
    data does. `rebill_from` rates every event from that day on again. Events whose version
    is not recorded yet (rated at ingest) get it. A data dir that has recorded no versions
    yet takes the catalog as it is. Edition and package versions are recorded for the audit:
    an accepted order keeps its price and credits (`order_prices`), so they re-bill nothing.
    """
    check_catalog(con, catalog, run_id)  # (the run checked it before ingest: a second look)
    versions = catalog.versions()
    stored = frame(
        con,
        "select version_id, kind, code, effective_from from catalog_versions "
        "where retired_at is null",
    )
    known = scalar(con, "select count(*) from catalog_versions") > 0
    added = versions.filter(~pl.col("version_id").is_in(stored["version_id"].implode()))
    retired = stored.filter(~pl.col("version_id").is_in(versions["version_id"].implode()))
    changed = rating_change_day(con, versions, added, retired, tz) if known else None
    rerate_from = min((d for d in (changed, rebill_from) if d is not None), default=NOTHING_AFTER)
    if rerate_from < frozen_before(con):  # the days to re-rate back in the working database
        thaw(con, context_from(rerate_from))
    with transaction(con):
        con.register("catalog_functions", catalog.functions.to_arrow())
        run_sql(con, "rate_events", {"from": rerate_from})
        if rerate_from < NOTHING_AFTER:
            mark_changed(con, rerate_from)
        stale = _billed_from(con, changed)
        if stale is not None:
            con.execute("delete from billed_days where day >= ?", [stale])
            mark_unbilled(con, stale, "price_change")  # (its rerun's days say why)
        _record_versions(con, versions, added, retired, run_id)
    return stale


def _record_versions(
    con, versions: pl.DataFrame, added: pl.DataFrame, retired: pl.DataFrame, run_id: str
) -> None:
    """catalog_versions, one row per version: the added versions in (one an earlier run
    retired, its edit reverted, brought back rather than listed twice: the audit's join on
    `version_id` would count its events twice), the ones no longer in the file retired, and
    every current version's end as the file now has it."""
    con.register("catalog_now", versions.to_arrow())
    con.register("catalog_added", added.select("version_id").to_arrow())
    con.register("catalog_retired", retired.select("version_id").to_arrow())
    con.execute(
        "update catalog_versions set retired_at = now(), retired_run = ? where retired_at is "
        "null and version_id in (select version_id from catalog_retired)",
        [run_id],
    )
    con.execute(
        "update catalog_versions set applied_at = now(), applied_run = ?, retired_at = null, "
        "retired_run = null where retired_at is not null "
        "and version_id in (select version_id from catalog_added)",
        [run_id],
    )
    con.execute(  # (a version listed twice by an engine before this one: its latest row kept)
        "delete from catalog_versions where rowid in (select rowid from (select rowid, "
        "row_number() over (partition by version_id order by retired_at is null desc, "
        "coalesce(retired_at, applied_at) desc) as nth from catalog_versions) where nth > 1)"
    )
    con.execute(
        "insert into catalog_versions select version_id, kind, code, effective_from, "
        "effective_until, fingerprint, content, now(), ?, null, null from catalog_now "
        "where version_id in (select version_id from catalog_added) "
        "and version_id not in (select version_id from catalog_versions)",
        [run_id],
    )
    con.execute(
        "update catalog_versions as v set effective_until = n.effective_until "
        "from catalog_now as n where v.retired_at is null and v.version_id = n.version_id "
        "and v.effective_until is distinct from n.effective_until"
    )
    for name in ("catalog_now", "catalog_added", "catalog_retired"):
        con.unregister(name)
