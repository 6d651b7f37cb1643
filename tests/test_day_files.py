"""The per-day tables laid out by day (tasks/day_files.py): a data dir whose working database
keeps only the last few days bills exactly what one that keeps every day bills, through late
data, duplicates of old events and a rebill that reach days it no longer holds; the published
warehouse reads the day files instead of copying them; old files are kept for readers, then
collected."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.day_files import DAYS_DIR, MONTHLY, PARTITIONED, collect, context_from, hot_from
from tasks.db import connect
from tasks.pipeline import run_billing
from tasks.publish import INTERNAL
from tests.ops_helpers import (
    assert_same,
    deliver,
    query,
    scenario,
    settings,
    snapshot,
    warehouse,
)

SC = scenario(days=40, customers=6, events_per_day=8, seed=11)
# what an analyst reads: every day's rated events and figures
READ = (
    "select day, count(*), sum(credits), (select count(*) from customer_days c "
    "where c.day = e.day) from rated_events e group by day order by day"
)
HOT = 3  # days the small-window data dir keeps in its working database


def run(data: Path, through, hot_days: int, **kw):
    return run_billing(settings(data, max_late_days=60, hot_days=hot_days), through, **kw)


def history(data: Path, hot_days: int) -> list[dict]:
    """Half of days 1-20 billed; the rest of them late, with days 21-40 and re-deliveries of
    old events (exact duplicates); then a rebill from day 5. The snapshot after each run."""
    snaps = []
    deliver(data, SC, through=SC.day(20), part="first")
    run(data, SC.day(20), hot_days)
    snaps.append(snapshot(data))
    deliver(data, SC, part="second")
    deliver(data, SC, since=SC.day(21))
    # the first half of days 1-8 again, grouped differently: other files, the same events
    deliver(data, SC, through=SC.day(8), part="first", prefix="again-", days_per_file=2)
    report = run(data, SC.day(40), hot_days)
    assert report.summary()["duplicates"] > 0
    snaps.append(snapshot(data))
    run(data, SC.day(40), hot_days, rebill_from=SC.day(5))
    snaps.append(snapshot(data))
    # days 1-8 delivered once more, in other files: (with a small window) duplicates of
    # events that only a closed month's merged file holds
    deliver(data, SC, through=SC.day(8), part="second", prefix="late-again-", days_per_file=3)
    report = run(data, SC.day(40), hot_days)
    assert report.summary()["duplicates"] > 0
    snaps.append(snapshot(data))
    return snaps


@pytest.fixture(scope="module")
def kept_everything(tmp_path_factory):
    data = tmp_path_factory.mktemp("all-days")
    return data, history(data, hot_days=0)


def test_a_working_db_of_three_days_bills_what_one_of_every_day_bills(kept_everything, tmp_path):
    _, expected = kept_everything
    got = history(tmp_path, hot_days=HOT)
    for want, have in zip(expected, got, strict=True):
        assert_same(have, want)
    con = duckdb.connect(str(tmp_path / "state" / "adbill.duckdb"), read_only=True)
    try:
        [(first_kept,)] = con.execute("select min(day) from customer_days").fetchall()
        assert first_kept == SC.day(40 - HOT)  # the rest is in the day files only
        for table in PARTITIONED:
            old = con.execute(f"select count(*) from {table} where day < ?", [first_kept])
            assert old.fetchall() == [(0,)], table
        # the closed month (November: days 1-30) is one file per table, current for each of
        # its days; the rebill from day 5 took it back to a file per day (superseded), and
        # it was merged again
        month = con.execute(
            "select table_name, count(distinct path) filter (where superseded_at is null), "
            "count(distinct path) filter (where superseded_at is not null), "
            "count(*) filter (where superseded_at is null) from day_files "
            "where part is null and path like '%/month=2026-11/%' group by all"
        ).fetchall()
        assert {t for t, *_ in month} == set(PARTITIONED)
        assert all(current == 1 and superseded >= 1 for _, current, superseded, _ in month)
        days = {t: n for t, _, _, n in month}
        assert days["events"] == days["customer_days"] == 30
        per_day = con.execute(
            "select count(*) from day_files where superseded_at is null and part is null "
            "and path is not null and day < date '2026-12-01' and path not like '%/month=%'"
        ).fetchall()
        assert per_day == [(0,)]
    finally:
        con.close()
    # collecting every superseded file keeps the month files still current
    con = connect(tmp_path / "state" / "adbill.duckdb")
    try:
        assert collect(con, keep_seconds=0) > 0
    finally:
        con.close()
    assert_same(snapshot(tmp_path), expected[-1])


def test_a_closed_months_files_are_merged_into_one_and_the_rows_checked(tmp_path):
    from tasks.day_files import compact, current_files

    deliver(tmp_path, SC, through=SC.day(20))
    run(tmp_path, SC.day(20), hot_days=HOT)  # November still open
    # an analyst's session on this warehouse keeps its answers through the merge, the rebill
    # that takes the month back to a file per day, and the merge again
    reader = duckdb.connect(str(warehouse(tmp_path)), read_only=True)
    seen = reader.execute(READ).fetchall()
    assert seen
    deliver(tmp_path, SC, since=SC.day(21), through=SC.day(35))
    report = run(tmp_path, SC.day(35), hot_days=HOT)  # November closed and merged
    assert report.summary()["day_files"]["closed_months_merged"] == len(PARTITIONED)
    report = run(tmp_path, SC.day(35), hot_days=HOT, rebill_from=SC.day(5))
    assert report.summary()["day_files"]["closed_months_merged"] == len(PARTITIONED)
    assert reader.execute(READ).fetchall() == seen
    reader.close()
    con = connect(tmp_path / "state" / "adbill.duckdb")
    try:
        files = current_files(con, "events", SC.day(1), SC.day(31))
        assert len(files) == 1 and "/month=2026-11/" in files[0][1]
        [(rows,)] = con.execute(f"select count(*) from read_parquet('{files[0][1]}')").fetchall()
        [(recorded,)] = con.execute(
            "select sum(rows) from day_files where table_name = 'events' "
            "and superseded_at is null and day < date '2026-12-01'"
        ).fetchall()
        assert rows == recorded > 0
        assert compact(con, "again") == (0, [])  # nothing left to merge
        # a record that disagrees with the files: nothing merged, nothing changed
        con.execute(
            "update day_files set superseded_at = null where table_name = 'usage_days' "
            "and day = date '2026-11-03' and path not like '%/month=%'"
        )
        con.execute(
            "update day_files set rows = rows + 1 where table_name = 'usage_days' "
            "and day = date '2026-11-03' and path not like '%/month=%'"
        )
        before = con.execute("select * from day_files order by all").fetchall()
        merged, warnings = compact(con, "again")
        assert merged == 0 and len(warnings) == 1 and "usage_days of 2026-11" in warnings[0]
        assert con.execute("select * from day_files order by all").fetchall() == before
        assert not list((tmp_path / "state" / DAYS_DIR / "usage_days").glob("again-month-*/*/*"))
    finally:
        con.close()


def test_the_default_window_keeps_the_late_window_and_the_month_before_it():
    from datetime import date

    assert context_from(date(2026, 3, 15)) == date(2026, 2, 1)
    assert context_from(date(2026, 1, 1)) == date(2025, 12, 1)
    # late data reaches back 35 (+2) days: its days and their months' context stay hot
    assert hot_from(date(2026, 12, 1), 35) == date(2026, 9, 1)
    assert hot_from(date(2026, 12, 1), 35, hot_days=3) == date(2026, 11, 28)


def test_the_warehouse_reads_the_day_files_and_copies_no_history(kept_everything):
    data, _ = kept_everything
    con = duckdb.connect(str(warehouse(data)), read_only=True)
    try:
        kinds = {
            name: (schema, kind)
            for schema, name, kind in con.execute(
                "select table_schema, table_name, table_type from information_schema.tables"
            ).fetchall()
        }
        for table in (*PARTITIONED, *MONTHLY):
            schema = "internal" if table in INTERNAL else "main"
            assert kinds[table] == (schema, "VIEW"), table
        # the engine's own tables are out of the analysts' way, the views they read work
        for table in INTERNAL:
            assert kinds[table][0] == "internal", table
        for table in ("rated_events", "ledger", "statements", "customer_days", "pools"):
            assert kinds[table][0] == "main", table
        # every billed day of every per-day table is there, from the files
        days = con.execute("select count(distinct day) from customer_days").fetchall()
        assert days == [(SC.days,)]
        # the interfaces' views read through them, comments included
        assert con.execute("select count(*) from rated_events").fetchall()[0][0] > 0
        comment = con.execute(
            "select comment from duckdb_columns() where table_name = 'rated_events' "
            "and column_name = 'credits'"
        ).fetchall()
        assert comment[0][0]
    finally:
        con.close()


def test_replaced_day_files_are_kept_for_readers_then_collected(kept_everything, tmp_path):
    data, _ = kept_everything
    con = connect(data / "state" / "adbill.duckdb", read_only=True)
    try:
        superseded = con.execute(
            "select path from day_files where superseded_at is not null and path is not null"
        ).fetchall()
    finally:
        con.close()
    root = data / "state"
    assert superseded, "the rebill replaced files"
    assert all((root / p).exists() for (p,) in superseded)  # kept (2 hours by default)
    stray = root / DAYS_DIR / "events" / "killed-export" / "day=2026-01-01"
    stray.mkdir(parents=True)
    (stray / "data_0.parquet").write_bytes(b"half a file")
    old = time.time() - 7200
    os.utime(stray.parent, (old, old))
    con = connect(data / "state" / "adbill.duckdb")
    try:
        gone = collect(con, keep_seconds=0)
        left = con.execute("select count(*) from day_files where superseded_at is not null")
        assert left.fetchall() == [(0,)]
        current = con.execute("select path from day_files where path is not null").fetchall()
    finally:
        con.close()
    assert gone >= len(superseded) + 1
    assert not any((root / p).exists() for (p,) in superseded)
    assert not stray.parent.exists()
    assert all((root / p).exists() for (p,) in current)
    snapshot(data)  # the warehouse still reads every current file


def test_files_of_todays_columns_are_read_without_matching_names_and_older_ones_by_name(
    tmp_path,
):
    """The warehouse names a table's day files without union_by_name when every file holds the
    table's columns of today (DuckDB would read every file's footer to match names); a file of
    older columns (here: recorded before 013, columns unknown) makes it read them by name —
    the same rows either way."""
    deliver(tmp_path, SC, through=SC.day(3))
    run(tmp_path, SC.day(3), hot_days=0)

    def view_sql(table: str) -> str:
        sql = "select sql from duckdb_views() where view_name = $v"
        [(text,)] = query(warehouse(tmp_path), sql, {"v": table})
        return text.lower()

    assert all("union_by_name" not in view_sql(t) for t in ("customer_days", "pool_days"))
    rows = snapshot(tmp_path)
    con = connect(tmp_path / "state" / "adbill.duckdb")
    con.execute("update day_files set columns = null where table_name = 'customer_days'")
    con.close()
    run(tmp_path, SC.day(3), hot_days=0)  # nothing new: published again
    assert "union_by_name" in view_sql("customer_days")
    assert "union_by_name" not in view_sql("pool_days")
    assert_same(snapshot(tmp_path), rows)


def test_a_table_laid_out_by_day_after_its_days_were_billed_is_never_read_back_twice(tmp_path):
    """A data dir whose suspension lists were kept in the working database only (before they
    were laid out by day): the next run writes their files while the rows stay until the window
    moves on; a rebill reaching those days then reads them back without doubling them."""
    lists = ("suspensions", "suspension_changes", "at_risk")
    deliver(tmp_path, SC, through=SC.day(8))
    run(tmp_path, SC.day(8), hot_days=HOT)
    published = {t: query(warehouse(tmp_path), f"select * from {t} order by all") for t in lists}
    assert published["suspensions"], "the scenario suspends someone in its first days"
    # as the engine before left it: every day's rows in the database, no files
    con = connect(tmp_path / "state" / "adbill.duckdb")
    con.execute(f"attach '{warehouse(tmp_path)}' as wh (read_only)")
    for t in lists:
        con.execute(f"delete from {t}")
        con.execute(f"insert into {t} select * from wh.main.{t}")
    con.execute("detach wh")
    con.execute("delete from day_files where table_name in ?", [list(lists)])
    con.close()
    run(tmp_path, SC.day(8), hot_days=HOT)  # nothing new: the lists' files written
    run(tmp_path, SC.day(8), hot_days=HOT, rebill_from=SC.day(4))  # reads days 1-4 back
    for t in lists:
        assert query(warehouse(tmp_path), f"select * from {t} order by all") == published[t], t
        # and the working database holds each row once (one per customer and day)
        twice = f"select count(*) - (select count(*) from (select distinct * from {t})) from {t}"
        assert query(tmp_path / "state" / "adbill.duckdb", twice) == [(0,)], t


def test_a_month_merged_after_a_column_was_added_reads_it_as_null(tmp_path):
    """A column added to a per-day table (a migration) after a month's files were written:
    the month is merged all the same, the column null in it, and read back whole."""
    from tasks.day_files import compact, current_files, frozen_before, thaw

    deliver(tmp_path, SC, through=SC.day(30))
    run(tmp_path, SC.day(30), hot_days=HOT)  # November billed, its last days still held
    con = connect(tmp_path / "state" / "adbill.duckdb")
    try:
        con.execute("alter table at_risk add column extra integer")
        # (as if the working window had moved past November: every day of it in files only)
        con.execute("delete from at_risk")
        for table in PARTITIONED:
            if table != "at_risk":
                con.execute(f"delete from {table} where day < date '2026-12-01'")
        con.execute("insert or replace into adbill_meta values ('frozen_before', '2026-12-01')")
        merged, warnings = compact(con, "after-migration")
        assert (merged, warnings) == (len(PARTITIONED), [])
        [(_, month_file)] = current_files(con, "at_risk", SC.day(1), SC.day(31))
        extra = con.execute(
            f"select count(*), count(extra) from read_parquet('{month_file}')"
        ).fetchall()
        assert extra[0][0] > 0 and extra[0][1] == 0
        assert thaw(con, SC.day(10)) == 21 and frozen_before(con) == SC.day(10)
        back = con.execute(
            "select count(*), count(extra) from at_risk where day >= $d", {"d": SC.day(10)}
        ).fetchall()
        want = con.execute(
            f"select count(*), 0 from read_parquet('{month_file}') where day >= $d",
            {"d": SC.day(10)},
        ).fetchall()
        assert back == want
    finally:
        con.close()


@given(st.lists(st.text(max_size=12), max_size=8))
def test_the_columns_a_day_file_records_read_back_as_written(names):
    """`day_files.columns` as written (each name quoted, joined by ", ") gives back the names,
    whatever they hold: commas, spaces, quotes."""
    from tasks.day_files import QUOTED_NAME, quoted

    written = ", ".join(quoted(n) for n in names)
    assert [n.replace('""', '"') for n in QUOTED_NAME.findall(written)] == names


def test_a_closed_month_with_a_damaged_day_file_keeps_its_day_files_and_warns(tmp_path):
    """A day file cut short (a disk fault) in a month being merged: that table's month keeps
    its day files with a warning, nothing recorded, no file left, the other tables merged; not
    tried again until the month's files change."""
    from tasks.day_files import compact

    deliver(tmp_path, SC, through=SC.day(30))
    run(tmp_path, SC.day(30), hot_days=HOT)  # November billed, not closed yet
    con = connect(tmp_path / "state" / "adbill.duckdb")
    try:
        [(path,)] = con.execute(
            "select path from day_files where table_name = 'ledger_entries' "
            "and superseded_at is null and day = date '2026-11-10'"
        ).fetchall()
        victim = tmp_path / "state" / path
        victim.write_bytes(victim.read_bytes()[:100])
        # (as if the working window had moved past November)
        con.execute("insert or replace into adbill_meta values ('frozen_before', '2026-12-01')")
        merged, warnings = compact(con, "damaged")
        assert merged == len(PARTITIONED) - 1
        assert len(warnings) == 1 and "ledger_entries of 2026-11" in warnings[0]
        assert con.execute(
            "select count(distinct path) from day_files where table_name = 'ledger_entries' "
            "and superseded_at is null and day < date '2026-12-01'"
        ).fetchall() == [(30,)]
        assert compact(con, "again") == (0, [])  # not tried again: its files are the same
    finally:
        con.close()
    assert not list((tmp_path / "state" / DAYS_DIR / "ledger_entries").glob("*-month-*/*/*"))


def test_day_files_are_written_with_version_2_encodings_and_read_beside_older_ones(tmp_path):
    """The state's Parquet files use the format's version 2 encodings (day_files.PARQUET);
    a data dir's files written before (version 1) are read beside them as they are."""
    import duckdb

    from tasks.day_files import copy_to_parquet

    con = duckdb.connect()
    select = "select range as event_key, 'e-' || range as event_id from range(1000)"
    new, old = tmp_path / "new.parquet", tmp_path / "old.parquet"
    assert copy_to_parquet(con, select, new) == 1000
    con.execute(f"copy ({select}) to '{old}' (format parquet, compression zstd)")
    encodings = dict(
        con.execute(f"select path_in_schema, encodings from parquet_metadata('{new}')").fetchall()
    )
    assert encodings == {"event_key": "DELTA_BINARY_PACKED", "event_id": "DELTA_LENGTH_BYTE_ARRAY"}
    both = f"read_parquet(['{old}', '{new}'])"
    assert con.execute(f"select count(*), count(distinct event_id) from {both}").fetchone() == (
        2000,
        1000,
    )


def test_a_day_file_is_written_unordered_and_the_connection_keeps_its_row_order_after():
    """Day files are written with `preserve_insertion_order` off (day_files.DAY_PARQUET's
    note) and the connection has it back afterwards, also when the write fails (the
    failure, not a second error, is what the caller hears). What the files hold is checked
    row for row by the tests above."""
    from tasks import day_files

    con = duckdb.connect()
    con.execute("set preserve_insertion_order = true")
    with day_files._unordered(con):
        assert con.execute("select current_setting('preserve_insertion_order')").fetchone() == (
            False,
        )
    assert con.execute("select current_setting('preserve_insertion_order')").fetchone() == (True,)
    with pytest.raises(duckdb.Error, match="no_such_table"), day_files._unordered(con):
        con.execute("select * from no_such_table")
    assert con.execute("select current_setting('preserve_insertion_order')").fetchone() == (True,)
    con.execute("set preserve_insertion_order = false")  # (a setting of false stays false)
    with day_files._unordered(con):
        pass
    assert con.execute("select current_setting('preserve_insertion_order')").fetchone() == (False,)
