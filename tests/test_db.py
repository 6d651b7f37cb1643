"""The database layer: SQL run as DuckDB parses it, and numbered schema migrations."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pytest

from tasks import db
from tasks.db import connect, execute, frame, migrations, run_sql, scalar

TRICKY = """
-- a file whose literals hold what a hand-made splitter would cut on: ; -- $name
create table notes (id integer, body varchar);
insert into notes values ($id, 'a;
-- not a comment, $body; still the literal');
insert into notes values ($id + 1, $body); -- $unused named only in a comment;
insert into notes values (3, '$id');
"""


def test_a_literal_holding_semicolon_dashes_and_dollar_is_run_as_written(tmp_path, monkeypatch):
    (tmp_path / "tricky_notes.sql").write_text(TRICKY, encoding="utf-8")
    monkeypatch.setattr(db, "SQL_DIR", tmp_path)
    con = duckdb.connect()
    run_sql(con, "tricky_notes", {"id": 1, "body": "x;--y", "unused_elsewhere": 0})
    assert con.execute("select * from notes order by id").fetchall() == [
        (1, "a;\n-- not a comment, $body; still the literal"),
        (2, "x;--y"),
        (3, "$id"),
    ]


def test_execute_scalar_and_frame_bind_only_what_each_statement_names():
    con = duckdb.connect()
    params = {"day": date(2025, 3, 1), "tz": "Asia/Shanghai", "other": 1}
    execute(
        con, "create table t (d date, s varchar); insert into t values ($day, ';--$tz')", params
    )
    assert scalar(con, "select s from t where d = $day -- and $tz", params) == ";--$tz"
    got = frame(con, "select d, s || $tz as s from t where s like '%;--%'", params)
    assert got.rows() == [(date(2025, 3, 1), ";--$tzAsia/Shanghai")]


def test_a_file_is_parsed_once_per_text():
    con = duckdb.connect()
    text = "select 1; select $a"
    assert db.parse(con, text) is db.parse(con, text)
    assert [s.named_parameters for s in db.parse(con, text)] == [set(), {"a"}]


def applied(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "select version, name, applied_at, checksum from schema_migrations order by version"
        ).fetchall()


def test_each_migration_is_applied_once_and_recorded_once(tmp_path):
    path = tmp_path / "w.duckdb"
    connect(path).close()
    first = applied(path)
    connect(path).close()
    assert applied(path) == first
    assert [(v, n) for v, n, *_ in first] == [(m.version, m.name) for m in migrations()]


def test_a_new_numbered_file_is_applied_on_the_next_connect(tmp_path, monkeypatch):
    schema = tmp_path / "schema"
    shutil.copytree(db.SCHEMA_DIR, schema)
    monkeypatch.setattr(db, "SCHEMA_DIR", schema)
    path = tmp_path / "w.duckdb"
    connect(path).close()
    (schema / "900_extra.sql").write_text(
        "create table extra (x integer);\ninsert into extra values (1);\n", encoding="utf-8"
    )
    for _ in range(2):  # applied on the first connect after it appears, and only then
        con = connect(path)
        assert con.execute("select count(*) from extra").fetchone() == (1,)
        con.close()
    assert [r[:2] for r in applied(path)][-1] == (900, "extra")


def test_a_changed_view_file_is_applied_again_once(tmp_path, monkeypatch):
    schema = tmp_path / "schema"
    shutil.copytree(db.SCHEMA_DIR, schema)
    monkeypatch.setattr(db, "SCHEMA_DIR", schema)
    path = tmp_path / "w.duckdb"
    connect(path).close()
    views = schema / "002_views.sql"
    views.write_text(views.read_text() + "\ncreate or replace view extra_view as select 2 as x;\n")
    connect(path).close()
    again = applied(path)
    con = connect(path)
    assert con.execute("select x from extra_view").fetchall() == [(2,)]
    con.close()
    assert applied(path) == again and len(again) == len(migrations(schema))


def test_a_failing_migration_is_rolled_back_and_named(tmp_path, monkeypatch):
    schema = tmp_path / "schema"
    shutil.copytree(db.SCHEMA_DIR, schema)
    monkeypatch.setattr(db, "SCHEMA_DIR", schema)
    (schema / "900_broken.sql").write_text(
        "create table half (x integer);\nselect * from no_such_table;\n"
    )
    path = tmp_path / "w.duckdb"
    with pytest.raises(RuntimeError, match="900_broken.sql"):
        connect(path)
    con = duckdb.connect(str(path))
    assert con.execute("select max(version) from schema_migrations").fetchone()[0] < 900
    with pytest.raises(duckdb.CatalogException):
        con.execute("select * from half")


def legacy_warehouse(path, *, with_usage_days: bool) -> None:
    """A warehouse as the code before schema_migrations left it: 001-003 run as whole texts,
    some billed rows, and (older still) no usage_days or account_days."""
    con = duckdb.connect(str(path))
    con.execute("set TimeZone = 'UTC'")
    for name in ("001_tables", "002_views", "003_statements"):
        con.execute((db.SCHEMA_DIR / f"{name}.sql").read_text(encoding="utf-8"))
    con.execute("insert into customers values (1, 'c1', 7), (2, 'c2', 8)")
    con.execute(
        "insert into events (event_key, event_id, customer_key, account_id, function, "
        "quantity, status, day, credits) values "
        "(1, 'e1', 1, 'a1', 'f', 2, 'succeeded', '2025-03-01', 20), "
        "(2, 'e2', 1, 'a2', 'f', 1, 'failed', '2025-03-01', 0), "
        "(3, 'e3', 2, 'a3', 'g', 5, 'succeeded', '2025-03-02', 50)"
    )
    con.execute("insert into billed_days values ('2025-03-01', 'r1', now(), 1)")
    con.execute("insert into billed_days values ('2025-03-02', 'r1', now(), 1)")
    if with_usage_days:
        con.execute("insert into usage_days values ('2025-03-01', 1, 'f', 1, 1, 2, 20)")
    else:
        con.execute("drop table usage_days")
        con.execute("drop table account_days")
    con.close()


def test_a_warehouse_from_before_migrations_keeps_its_rows_and_gets_its_usage_days(tmp_path):
    path = tmp_path / "old.duckdb"
    legacy_warehouse(path, with_usage_days=False)
    for _ in range(2):
        con = connect(path)
        assert con.execute("select count(*) from events").fetchone() == (3,)
        assert con.execute("select customer_id from customers order by 1").fetchall() == [
            ("c1",),
            ("c2",),
        ]
        assert con.execute("select count(*) from billed_days").fetchone() == (2,)
        usage = "select day, customer_key, function, events, failed_events, credits"
        assert con.execute(f"{usage} from usage_days order by all").fetchall() == [
            (date(2025, 3, 1), 1, "f", 1, 1, 20),
            (date(2025, 3, 2), 2, "g", 1, 0, 50),
        ]
        assert con.execute("select count(*) from account_days").fetchone() == (3,)
        con.close()
    assert [v for v, *_ in applied(path)] == [m.version for m in migrations()]


def test_a_warehouse_from_before_migrations_with_usage_days_is_not_backfilled_again(tmp_path):
    path = tmp_path / "old.duckdb"
    legacy_warehouse(path, with_usage_days=True)
    con = connect(path)
    assert con.execute("select day, credits from usage_days").fetchall() == [(date(2025, 3, 1), 20)]
    assert con.execute("select count(*) from events").fetchone() == (3,)
    con.close()


def test_id_hashes_follow_the_duckdb_that_opens_the_file_on_every_connect(tmp_path):
    path = tmp_path / "w.duckdb"
    legacy_warehouse(path, with_usage_days=True)
    connect(path).close()
    con = duckdb.connect(str(path))
    con.execute("update events set id_hash = 0")
    con.execute("update adbill_meta set value = 'other' where key = 'id_hash_probe'")
    con.close()
    con = connect(path)
    assert con.execute(
        "select count(*) from events where id_hash <> hash(event_id)"
    ).fetchone() == (0,)
    con.close()


def test_a_new_connection_is_free_for_a_query_at_once(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    assert frame(con, "select 1 as x").rows() == [(1,)]
