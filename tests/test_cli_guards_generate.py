"""`adbill generate` writes synthetic orders and usage only into a fresh data dir: never into
one that has billed or lies in one, never inside an inbox (a run would bill the synthetic
lines), never over a file already there; refused with one line, nothing written."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from tests import test_guards as guards
from tests.test_guards import YESTERDAY, assert_refused, run_cli, tree
from tests.test_hostile import _nested, remove_nested

fixed_today = guards.fixed_today  # ADBILL_TODAY fixed (tests/test_guards.py)

SMALL = ["--customers", 2, "--days", 2, "--events-per-day", 3]


def billed_data_dir(root: Path) -> Path:
    """A data dir with a delivered inbox and a working state (as far as generate looks)."""
    v = root / "v"
    (v / "inbox" / "usage").mkdir(parents=True)
    (v / "inbox" / "usage" / "delivered.jsonl").write_text('{"a delivered": "line"}\n')
    (v / "state").mkdir()
    (v / "state" / "adbill.duckdb").write_bytes(b"")
    return v


def test_generate_refuses_a_billed_data_dir_what_lies_in_one_and_an_inbox(tmp_path, capsys):
    v = billed_data_dir(tmp_path)
    before = tree(tmp_path)
    cases = [
        (v, f"{v} has billed"),
        (v / "inbox" / "usage", f"{v / 'inbox' / 'usage'} lies in an inbox"),
        (v / "inbox", "lies in an inbox"),
        (tmp_path / "inbox", "lies in an inbox"),  # any data dir's inbox, billed or not
        (v / "synthetic", f"lies in the data dir {v}, which has billed"),
        (v / "state", f"lies in the data dir {v}, which has billed"),
    ]
    for target, words in cases:
        code, out, err = run_cli(capsys, "generate", "--data-dir", target, *SMALL)
        assert_refused(code, err, words, "nothing written")
        assert out == ""
    assert tree(tmp_path) == before


def test_generate_replaces_no_file_already_there(tmp_path, capsys):
    d = tmp_path / "d"
    delivered = d / "inbox" / "usage" / f"{YESTERDAY:%Y/%m}" / f"usage-{YESTERDAY}.jsonl.gz"
    delivered.parent.mkdir(parents=True)
    delivered.write_bytes(b"a delivered file")
    (d / ".adbill-generated").write_text("")  # as if generate had written that inbox
    before = tree(d)
    code, _out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL)
    assert_refused(code, err, f"{delivered} already exists", "replaces no file", "nothing written")
    assert delivered.read_bytes() == b"a delivered file" and tree(d) == before


def test_generate_writes_a_fresh_data_dir_then_refuses_to_write_it_again(tmp_path, capsys):
    d = tmp_path / "fresh"
    code, out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL)
    assert code == 0, err
    assert f"into {d / 'inbox'}" in out
    written = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert (d / ".adbill-generated").is_file()
    assert len(written) == 4  # the orders and a usage file a day, and its marker
    code, _out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL, "--seed", 8)
    assert_refused(code, err, "already exists (3 of the files generate would write)")
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == written
    # other days, other files: written beside them
    start = YESTERDAY - timedelta(days=5)
    code, _out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL, "--start", start)
    assert code == 0, err
    assert len([p for p in d.rglob("*") if p.is_file()]) == 7


def test_generate_refuses_an_inbox_holding_deliveries_it_did_not_write(
    tmp_path, capsys, monkeypatch
):
    prod = tmp_path / "prod"
    delivered = prod / "inbox" / "usage" / "delivered-2026-11-08.jsonl"
    delivered.parent.mkdir(parents=True)
    delivered.write_bytes(b'{"a delivered": "line"}\n')
    before = tree(tmp_path)
    monkeypatch.setenv("ADBILL_DATA_DIR", str(prod))  # the operator's production data dir
    code, _out, err = run_cli(capsys, "generate", *SMALL)
    assert_refused(code, err, f"{prod} holds deliveries generate did not write", "nothing written")
    assert tree(tmp_path) == before
    # one delivered file at the bottom of folders nested 1,000 deep (Path.rglob recursed)
    delivered.unlink()
    _nested(delivered.parent, ["d"] * 1000, "x.jsonl", "{}\n")
    try:
        code, _out, err = run_cli(capsys, "generate", *SMALL)
        assert_refused(code, err, f"{prod} holds deliveries generate did not write", "d/d/d/d")
        assert sorted(p.name for p in prod.iterdir()) == ["inbox"]  # nothing written
        assert sorted(p.name for p in (prod / "inbox").iterdir()) == ["usage"]
        # an empty inbox, however deep its folders, is still fresh
        os.unlink(os.path.join(delivered.parent, *["d"] * 1000, "x.jsonl"))
        code, _out, err = run_cli(capsys, "generate", *SMALL)
        assert code == 0, err
    finally:
        remove_nested(delivered.parent, 1000)


def test_generate_and_demo_days_end_by_yesterday_and_fit_a_fresh_data_dir(tmp_path, capsys):
    for command in ("generate", "demo"):
        d = tmp_path / command
        argv = [command, "--data-dir", d, "--customers", 2, "--events-per-day", 3]
        code, _out, err = run_cli(capsys, *argv, "--days", 3650)  # (--days' own most)
        assert_refused(code, err, "--days 3650 is more than the 360 days")
        code, _out, err = run_cli(capsys, *argv, "--days", 2, "--start", YESTERDAY)
        assert_refused(code, err, "after yesterday")
        assert not d.exists()


def test_demo_refuses_a_data_dir_in_an_inbox_or_inside_a_billed_data_dir(tmp_path, capsys):
    v = billed_data_dir(tmp_path)
    before = tree(tmp_path)
    for target, words in [
        (v / "inbox" / "usage" / "sample", "lies in an inbox"),
        (tmp_path / "other" / "inbox" / "demo", "lies in an inbox"),
        (v / "demo", f"lies in the data dir {v}, which has billed"),
    ]:
        code, _out, err = run_cli(capsys, "demo", "--data-dir", target, *SMALL)
        assert_refused(code, err, words, "nothing deleted or billed")
    assert tree(tmp_path) == before


def test_generate_refuses_a_file_as_its_data_dir(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _out, err = run_cli(capsys, "generate", "--data-dir", f, *SMALL)
    assert_refused(code, err, f"{f} is a file, not a folder")
    assert f.read_text() == "x"


def test_generate_start_fits_a_fresh_data_dir_at_its_oldest_day_and_not_one_before(
    tmp_path, capsys
):
    """A fresh data dir takes nothing older than ADBILL_MAX_HISTORY_DAYS (400) before today,
    and the generated orders begin 40 days before --start: the oldest --start is the one
    whose orders are exactly that old (every line it wrote in 1999 was rejected)."""
    today = YESTERDAY + timedelta(days=1)
    oldest = today - timedelta(days=400) + timedelta(days=40)
    d = tmp_path / "at"
    code, _out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL, "--start", oldest)
    assert code == 0, err
    d = tmp_path / "past"
    before = oldest - timedelta(days=1)
    code, _out, err = run_cli(capsys, "generate", "--data-dir", d, *SMALL, "--start", before)
    assert_refused(code, err, f"--start {before} is older than a fresh data dir accepts")
    assert f"start on {oldest} or later" in err[0] and not d.exists()


def test_generate_counts_at_their_largest_pass_and_past_them_are_refused_unwritten(
    tmp_path, capsys
):
    from flows.cli import parser

    for flag, most in (
        ("--customers", 10_000_000),
        ("--events-per-day", 100_000_000),
        ("--days", 3650),
    ):
        parsed = parser().parse_args(["generate", flag, str(most)])
        assert getattr(parsed, flag[2:].replace("-", "_")) == most
        d = tmp_path / flag.strip("-")
        code, out, err = run_cli(capsys, "generate", "--data-dir", d, flag, most + 1)
        assert code == 2 and out == "" and len(err) == 1, err
        assert f"argument {flag}: '{most + 1}' is not a whole number from" in err[0]
        assert not d.exists()
    assert parser().parse_args(["generate", "--seed", "0"]).seed == 0
    code, _out, err = run_cli(capsys, "generate", "--data-dir", tmp_path / "s", "--seed", -1)
    assert code == 2 and "argument --seed: '-1' is not a whole number >= 0" in err[0]
    assert not (tmp_path / "s").exists()


def test_generate_prices_its_orders_by_the_catalog_and_zone_the_runs_bill_by(
    tmp_path, capsys, monkeypatch
):
    """generate wrote orders at the default catalog's prices and dated lines in Shanghai's
    days whatever ADBILL_CATALOG and ADBILL_BILLING_TZ said: a run with that catalog rejected
    its orders `wrong_amount` (and their customers' lines `unknown_customer`). Now a clean
    inbox (--no-bad-lines) bills without a reject under both."""
    import duckdb

    from tasks.pipeline import run_billing
    from tasks.settings import DEFAULT_CATALOG, Settings

    start = YESTERDAY - timedelta(days=19)
    change = (start + timedelta(days=8)).isoformat()
    prices = tmp_path / "prices.toml"
    prices.write_text(
        DEFAULT_CATALOG.read_text()
        + "".join(
            f'\n[[{kind}]]\ncode = "{code}"\neffective_from = {change}\n{field} = "{price}"\n'
            for kind, code, field, price in [
                ("editions", "basic", "monthly_fee_cny", "40"),
                ("editions", "professional", "monthly_fee_cny", "133"),
                ("packages", "package_100", "price_cny", "120"),
            ]
        )
    )
    monkeypatch.setenv("ADBILL_CATALOG", str(prices))
    monkeypatch.setenv("ADBILL_BILLING_TZ", "America/New_York")
    d = tmp_path / "d"
    argv = ["--data-dir", d, "--customers", 40, "--days", 20, "--events-per-day", 50]
    code, _out, err = run_cli(capsys, "generate", *argv, "--start", start, "--no-bad-lines")
    assert code == 0, err
    report = run_billing(Settings.of(str(d), None, shards=0), YESTERDAY)
    assert report.ingest.rejected_files == []
    con = duckdb.connect(str(d / "warehouse.duckdb"), read_only=True)
    try:
        for table in ("rejected_orders", "rejected_events"):
            assert con.execute(f"select reason, count(*) from {table} group by 1").fetchall() == []
        later = con.execute("select count(*) from orders where purchased_at >= ?", [change])
        assert later.fetchone()[0] > 0  # (orders at the new prices were written and accepted)
    finally:
        con.close()
    # a catalog no run can apply is refused before anything is written
    prices.write_text("not toml [")
    code, _out, err = run_cli(capsys, "generate", "--data-dir", tmp_path / "e", *SMALL)
    assert code != 0 and len(err) == 1 and "catalog" in err[0], err
    assert not (tmp_path / "e").exists()
