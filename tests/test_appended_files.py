"""rejected_events published as the files of the rows each run added (tasks/appended_files.py),
and the suspension lists as day files (tasks/day_files.py): after every run the warehouse holds
the working database's rows, though each run writes only its own; rows lost from the table or
too many files make the table written whole; a reader of an older warehouse keeps its rows."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tasks import appended_files
from tasks.db import connect
from tests.ops_helpers import bill, deliver, query, scenario, warehouse, write_usage

SC = scenario(days=8, customers=6, events_per_day=8, seed=3)
LISTS = ("suspensions", "suspension_changes", "at_risk")


def day_files_with_rejects(data: Path, n: int) -> None:
    """Day n's usage, and a file of two lines rejected (a new name each day)."""
    deliver(data, SC, since=SC.day(n), through=SC.day(n), days_per_file=1)
    write_usage(data, f"bad-{n}.jsonl", [f"not json {n}", '{"event_id": ' + str(n) + "}"])


def state(data: Path) -> Path:
    return data / "state" / "adbill.duckdb"


def table_rows(db: Path, table: str) -> list[tuple]:
    return query(db, f"select * from {table} order by all")


def files(data: Path, table: str = "rejected_events") -> list[tuple[str, bool]]:
    """(path, current) of every file of the table recorded, in the order written."""
    if not state(data).exists():
        return []
    con = connect(state(data), read_only=True)
    try:
        return con.execute(
            "select path, superseded_at is null from day_files where table_name = $t "
            "order by written_at, path",
            {"t": table},
        ).fetchall()
    finally:
        con.close()


def test_each_run_writes_its_new_rejects_and_the_warehouse_holds_them_all(tmp_path):
    seen = 0
    for n in range(1, SC.days + 1):
        day_files_with_rejects(tmp_path, n)  # each run brings its own rejected lines
        before = len(files(tmp_path))
        bill(tmp_path, SC.day(n))
        held = table_rows(state(tmp_path), "rejected_events")
        assert table_rows(warehouse(tmp_path), "rejected_events") == held, n
        # every file the run added holds only rows no earlier file did
        assert len(files(tmp_path)) == before + 1 and len(held) > seen, n
        seen = len(held)
        for table in LISTS:  # the day's lists: day files, every billed day's rows published
            assert table_rows(warehouse(tmp_path), table) == table_rows(state(tmp_path), table)
    assert len(files(tmp_path)) >= 3 and all(current for _, current in files(tmp_path))
    assert table_rows(warehouse(tmp_path), "suspensions"), "the scenario suspends someone"
    # a run with nothing new writes nothing
    before = files(tmp_path)
    bill(tmp_path, SC.day(SC.days))
    assert files(tmp_path) == before


def test_rows_gone_from_the_table_or_too_many_files_write_it_whole(tmp_path, monkeypatch):
    for n in (1, 2, 3):
        day_files_with_rejects(tmp_path, n)
        bill(tmp_path, SC.day(n))
    assert len(files(tmp_path)) == 3
    # a written row taken out of the table (nothing in the engine does this today)
    con = connect(state(tmp_path))
    con.execute(
        "delete from rejected_events where line_no = (select min(line_no) from rejected_events)"
    )
    con.close()
    day_files_with_rejects(tmp_path, 4)
    bill(tmp_path, SC.day(4))
    now = [p for p, current in files(tmp_path) if current]
    assert len(now) == 1 and now[0].endswith("whole.parquet"), files(tmp_path)
    held = table_rows(state(tmp_path), "rejected_events")
    assert table_rows(warehouse(tmp_path), "rejected_events") == held
    # more files than MAX_FILES: folded into one
    monkeypatch.setattr(appended_files, "MAX_FILES", 2)
    for n in (5, 6, 7):
        day_files_with_rejects(tmp_path, n)
        bill(tmp_path, SC.day(n))
        assert len([p for p, current in files(tmp_path) if current]) <= 2, n
        held = table_rows(state(tmp_path), "rejected_events")
        assert table_rows(warehouse(tmp_path), "rejected_events") == held, n


def test_a_reader_of_the_previous_warehouse_keeps_its_rejects(tmp_path):
    for n in (1, 2):
        day_files_with_rejects(tmp_path, n)
        bill(tmp_path, SC.day(n))
    reader = duckdb.connect(str(warehouse(tmp_path)), read_only=True)
    try:
        before = reader.execute("select * from rejected_events order by all").fetchall()
        before_lists = reader.execute("select * from suspensions order by all").fetchall()
        for n in (3, 4):
            day_files_with_rejects(tmp_path, n)
            bill(tmp_path, SC.day(n))
        bill(tmp_path, SC.day(4), rebill_from=SC.day(1))
        assert reader.execute("select * from rejected_events order by all").fetchall() == before
        assert reader.execute("select * from suspensions order by all").fetchall() == before_lists
    finally:
        reader.close()
    assert len(table_rows(warehouse(tmp_path), "rejected_events")) > len(before)


def test_lists_of_days_billed_before_they_had_day_files_are_written_once(tmp_path):
    """A data dir billed by an engine that kept the lists in the database only: the next run
    writes every billed day's lists to day files (the rows are all still in the database)."""
    for n in (1, 2, 3):
        day_files_with_rejects(tmp_path, n)
        bill(tmp_path, SC.day(n))
    con = connect(state(tmp_path))
    con.execute("delete from day_files where table_name in ?", [list(LISTS)])
    con.close()
    day_files_with_rejects(tmp_path, 4)
    bill(tmp_path, SC.day(4))
    for table in LISTS:
        assert {d for d, _ in days_of(tmp_path, table)} == {SC.day(n) for n in (1, 2, 3, 4)}
        assert table_rows(warehouse(tmp_path), table) == table_rows(state(tmp_path), table)


def days_of(data: Path, table: str) -> list[tuple]:
    con = connect(state(data), read_only=True)
    try:
        return con.execute(
            "select day, path from day_files where table_name = $t and superseded_at is null",
            {"t": table},
        ).fetchall()
    finally:
        con.close()
