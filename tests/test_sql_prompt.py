"""The analysts' SQL prompt opens the published warehouse read-only and answers queries."""

from __future__ import annotations

import builtins
import io

import duckdb

from tasks import sql_prompt


def test_the_sql_prompt_runs_statements_read_only_and_lists_the_tables(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table pools (credits bigint); insert into pools values (300), (1050)")
    con.execute("comment on table pools is 'One row per credit pool'")
    con.close()
    typed = iter(
        ["select sum(credits)", "  as total from pools;", ".tables", "drop table pools;", ".quit"]
    )
    monkeypatch.setattr(builtins, "input", lambda _prompt: next(typed))
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert sql_prompt.main([str(path)]) == 0
    text = out.getvalue()
    assert "1350" in text
    assert "One row per credit pool" in text
    assert "error:" in text and "read-only" in text.lower()  # the warehouse is never written
    assert duckdb.connect(str(path), read_only=True).execute(
        "select count(*) from pools"
    ).fetchone() == (2,)


def test_the_sql_prompt_refuses_a_missing_warehouse_in_one_line(tmp_path, capsys):
    assert sql_prompt.main([str(tmp_path / "none.duckdb")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
