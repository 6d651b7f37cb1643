"""Issue 6: the warehouse is the same, row for row, whatever the shard count and runner."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tasks.generate import generate
from tasks.pipeline import run_billing
from tasks.settings import Settings

# every analyst table, minus what names a run or a moment of ingestion
TABLES = {
    "customers": "select * from customers",
    "orders": "select * exclude (ingested_at) from orders",
    "pools": "select * from pools",
    "events": "select * from events",
    "ledger_entries": "select * from ledger_entries",
    "pool_days": "select * from pool_days",
    "customer_days": "select * from customer_days",
    "rejected_events": "select regexp_replace(source_file, '.*/inbox/', ''), line_no, raw, "
    "reason from rejected_events",
    "rejected_orders": "select regexp_replace(source_file, '.*/inbox/', ''), line_no, raw, "
    "reason from rejected_orders",
    "billed_days": "select day, files_seen from billed_days",
}
OPTIONAL = {
    "statements": "select * exclude (created_at, updated_at) from statements",
    "statement_lines": "select * from statement_lines",
    "statement_pools": "select * from statement_pools",
    "suspensions": "select * from suspensions",
    "suspension_changes": "select * from suspension_changes",
    "at_risk": "select * from at_risk",
}


def snapshot(db) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    con.execute("set search_path = 'main,internal'")  # events, ledger_entries: internal
    names = {
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    }
    out = {}
    for name, query in (TABLES | {k: v for k, v in OPTIONAL.items() if k in names}).items():
        try:
            out[name] = sorted(con.execute(query).fetchall(), key=repr)
        except duckdb.BinderException:  # a column the query excludes is not there
            out[name] = sorted(con.execute(f"select * from {name}").fetchall(), key=repr)
    con.close()
    return out


THROUGH = date(2026, 11, 4)


def generated(root: Path) -> None:
    generate(root, customers=40, days=4, events_per_day=600, seed=11, start=date(2026, 11, 1))


@pytest.fixture(scope="module")
def inbox_dir(billed):
    return billed.path(f"{__name__}.inbox", generated)


@pytest.fixture(scope="module")
def one_shard(billed, inbox_dir):
    """The inbox billed with one shard in process (once per session): what the others equal."""

    def build(data: Path) -> None:
        report = run_billing(Settings(data_dir=copy_of(inbox_dir, data), shards=1), THROUGH)
        assert report.days[-1]["shards"] == 1

    return Settings(data_dir=billed.path(f"{__name__}.one-shard", build)).db  # published


def copy_of(inbox_dir, dest):
    shutil.copytree(inbox_dir / "inbox", dest / "inbox")
    return dest


def test_one_shard_in_process_equals_four_shards_in_process(inbox_dir, one_shard, tmp_path):
    b = run_billing(Settings(data_dir=copy_of(inbox_dir, tmp_path / "b"), shards=4), THROUGH)
    assert b.days[-1]["shards"] == 4
    assert snapshot(one_shard) == snapshot(b.published)


def test_more_shards_than_customers_are_one_shard_per_customer(inbox_dir, one_shard, tmp_path):
    """--shards 1024 for 40 customers drew 1,024 shards a day, nearly all empty (minutes a
    day on Dask): a shard per customer at most, the same results."""
    b = run_billing(Settings(data_dir=copy_of(inbox_dir, tmp_path / "b"), shards=1024), THROUGH)
    assert {d["shards"] for d in b.days} == {40}
    assert snapshot(one_shard) == snapshot(b.published)


@pytest.mark.slow  # a Prefect server and a Dask cluster of two workers: about two minutes
def test_four_shards_on_a_two_worker_dask_cluster_equal_one_shard_in_process(
    inbox_dir, one_shard, tmp_path
):
    from flows.daily import daily_billing

    summary = daily_billing(
        through=date(2026, 11, 4),
        data_dir=str(copy_of(inbox_dir, tmp_path / "dask")),
        shards=4,
        task_runner="dask",
        trigger="test",
    )
    assert summary["status"] == "succeeded"
    left, right = snapshot(one_shard), snapshot(summary["published"])
    assert left.keys() == right.keys()
    for table in left:
        assert left[table] == right[table], table
    assert len(left["ledger_entries"]) > 1000


def test_a_failed_shard_leaves_no_exchange_files_behind(tmp_path, monkeypatch):
    """A worker lost for good (KilledWorker) failed the day and left its shards' inputs and
    outputs (customers' ledger data) under state/shards for ever: they are cleared."""
    import flows.parallel as parallel

    def inputs(con, day, *, tz, shard, shards):
        return shard

    def write(shard, directory):
        directory.mkdir(parents=True)
        (directory / "events.parquet").write_bytes(b"ledger data")

    class Future:
        def __init__(self, shard):
            self.shard = shard

        def result(self):
            if self.shard == 1:
                raise RuntimeError("KilledWorker: the worker died")
            return {"out_dir": "", "events": 0, "peak_rss_mb": 0.0}

        def wait(self):
            return None

    class Runner:
        def submit(self, task, parameters):
            return Future(parameters["shard"])

    monkeypatch.setattr(parallel, "shard_inputs", inputs)
    monkeypatch.setattr(parallel, "write_shard_inputs", write)
    monkeypatch.setattr(parallel, "load_shard_files", lambda con, day, out_dir: None)
    deduct = parallel.shard_deduct(tmp_path / "shards", Runner())
    with pytest.raises(RuntimeError, match="KilledWorker"):
        deduct(None, date(2026, 11, 2), tz="Asia/Shanghai", shards=3)
    assert not (tmp_path / "shards" / "2026-11-02").exists()
