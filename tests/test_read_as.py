"""An inbox file's content is its bytes *and how they are read* (billing-rules §3 "Files": a
corrected file delivered later is ingested as new, nothing dropped silently): the same bytes
renamed to be read another way (.jsonl.gz <-> .jsonl, an orders CSV <-> usage) are read as
new, while an exact re-delivery read the same way is skipped, and no event is billed twice."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from datetime import date

import duckdb
import pytest

import tasks.ingest as ingest_module
from tasks import db
from tasks.ingest_usage import UsageIngest
from tasks.plan import plan_run
from tests.conftest import Inbox, event, one, order, rows

BASIC = order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")
T = "2026-11-26T11:00:00+08:00"
DAY = "2026-11-26"


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-11-27")


def lines(*ids: str) -> bytes:
    return "".join(json.dumps(event(i, "c1", "copy_generation", 1, T)) + "\n" for i in ids).encode()


def usage_file(inbox: Inbox, name: str, data: bytes):
    path = inbox.root / "inbox" / "usage" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def published(inbox: Inbox, query: str) -> list[tuple]:
    """Rows of the published warehouse (the connection closed: the next run replaces it)."""
    con = inbox.warehouse()
    try:
        return rows(con, query)
    finally:
        con.close()


def billed(inbox: Inbox) -> list[tuple]:
    """Each billed event_id with how many times it was accepted."""
    return published(inbox, "select event_id, count(*) from rated_events group by 1 order by 1")


def read_ways(inbox: Inbox) -> list[tuple]:
    q = "select regexp_extract(path, '[^/]+$'), read_as, complete from ingested_files order by 1"
    return published(inbox, q)


# ---------------------------------------------------------------- the same bytes, read anew


def test_plain_lines_turned_away_as_a_gzip_are_billed_once_renamed_jsonl(inbox):
    inbox.orders([BASIC])
    wrong = usage_file(inbox, "batch.jsonl.gz", lines("e1", "e2"))
    report = inbox.bill(DAY)
    assert report.ingest.rejected_files == [(str(wrong), "unreadable_file")]
    assert billed(inbox) == []
    right = wrong.rename(wrong.with_name("batch.jsonl"))
    report = inbox.bill(DAY)
    assert report.ingest.files == [str(right)] and str(right) not in report.ingest.skipped_files
    assert billed(inbox) == [("e1", 1), ("e2", 1)]
    con = inbox.warehouse()
    turned_away = "select regexp_extract(source_file, '[^/]+$'), reason, read_as, detail"
    [(name, reason, how, detail)] = rows(con, f"{turned_away} from rejected_files")
    assert (name, reason, how) == ("batch.jsonl.gz", "unreadable_file", "usage_gzip")
    assert "BadGzipFile" in detail
    sha = hashlib.sha256(right.read_bytes()).hexdigest()
    assert one(con, "select sha256, read_as from ingested_files where kind = 'usage'") == (
        sha,
        "usage",
    )


def test_a_gzip_read_as_text_then_renamed_jsonl_gz_is_billed(inbox):
    inbox.orders([BASIC])
    wrong = usage_file(inbox, "batch.jsonl", gzip.compress(lines("e1", "e2", "e3"), mtime=0))
    inbox.bill(DAY)
    con = inbox.warehouse()
    assert billed(inbox) == []
    reasons = {r for (r,) in rows(con, "select distinct reason from rejected_events")}
    assert reasons and reasons <= {"bad_encoding", "malformed_json"}
    con.close()  # (the warehouse is replaced by the next run)
    right = wrong.rename(wrong.with_name("batch.jsonl.gz"))
    report = inbox.bill(DAY)
    assert report.ingest.files == [str(right)]
    assert billed(inbox) == [("e1", 1), ("e2", 1), ("e3", 1)]
    assert read_ways(inbox) == [
        ("batch.jsonl", "usage", True),
        ("batch.jsonl.gz", "usage_gzip", True),
        ("orders-001.csv", "orders", True),
    ]
    same_sha = "select count(distinct sha256), count(*) from ingested_files where kind = 'usage'"
    assert published(inbox, same_sha) == [(1, 2)]


def test_a_usage_file_the_bytes_of_an_orders_file_ingested_before_is_billed(inbox):
    """Delivered into the wrong folder under a .csv name, then delivered right: read as
    usage (it used to be skipped, its lines never read)."""
    inbox.orders([BASIC])
    data = lines("e1", "e2")
    misplaced = inbox.root / "inbox" / "orders" / "misplaced.csv"
    misplaced.write_bytes(data)
    inbox.bill(DAY)
    con = inbox.warehouse()
    assert one(con, "select count(*) from orders") == 1
    assert one(con, "select count(*) from rejected_orders") > 0
    assert billed(inbox) == []
    con.close()  # (the warehouse is replaced by the next run)
    right = usage_file(inbox, "batch.jsonl", data)
    report = inbox.bill(DAY)
    assert report.ingest.files == [str(right)] and str(right) not in report.ingest.skipped_files
    assert billed(inbox) == [("e1", 1), ("e2", 1)]


def test_an_orders_file_delivered_as_usage_is_rejected_line_by_line_and_grants_nothing_twice(
    inbox,
):
    path = inbox.orders([BASIC])
    inbox.bill(DAY)
    pools = published(inbox, "select pool_id, credits from pools order by 1")
    usage_file(inbox, "orders-by-mistake.jsonl", path.read_bytes())
    inbox.bill(DAY)
    con = inbox.warehouse()
    assert rows(con, "select pool_id, credits from pools order by 1") == pools
    assert one(con, "select count(*) from orders") == 1
    assert {r for (r,) in rows(con, "select distinct reason from rejected_events")} == {
        "malformed_json"
    }


def test_plan_lists_a_file_renamed_to_be_read_another_way(inbox):
    inbox.orders([BASIC])
    wrong = usage_file(inbox, "batch.jsonl.gz", lines("e1"))
    inbox.bill(DAY)
    right = wrong.rename(wrong.with_name("batch.jsonl"))
    usage_file(inbox, "resent.jsonl.gz", right.read_bytes())  # turned away before: skipped
    plan = plan_run(inbox.settings, date(2026, 11, 26))
    assert [(f.path, f.kind) for f in plan.files] == [(str(right), "usage")]


# ---------------------------------------------------------------- billed once


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
def test_a_billed_file_redelivered_under_another_name_read_the_same_way_is_skipped(inbox, gz):
    inbox.orders([BASIC])
    suffix = ".jsonl.gz" if gz else ".jsonl"
    data = gzip.compress(lines("e1", "e2"), mtime=0) if gz else lines("e1", "e2")
    first = usage_file(inbox, f"first{suffix}", data)
    inbox.bill(DAY)
    again = usage_file(inbox, f"again{suffix}", data)
    report = inbox.bill(DAY)
    assert report.ingest.files == [] and str(again) in report.ingest.skipped_files
    assert billed(inbox) == [("e1", 1), ("e2", 1)]
    assert published(inbox, "select count(*) from ingested_files where kind = 'usage'") == [(1,)]
    # known by its stat from then on (inbox_seen, with the way it is read), not hashed again
    con = db.connect(inbox.settings.state_db)
    assert rows(con, "select read_as from inbox_seen") == [("usage_gzip" if gz else "usage",)]
    con.close()
    report = inbox.bill(DAY)
    assert report.ingest.files == [] and {str(first), str(again)} <= set(
        report.ingest.skipped_files
    )


def test_a_billed_plain_file_renamed_jsonl_gz_is_turned_away_and_billed_once(inbox):
    inbox.orders([BASIC])
    path = usage_file(inbox, "batch.jsonl", lines("e1", "e2"))
    inbox.bill(DAY)
    renamed = path.rename(path.with_name("batch.jsonl.gz"))
    report = inbox.bill(DAY)
    assert report.ingest.rejected_files == [(str(renamed), "unreadable_file")]
    renamed.rename(path)  # and back: the content read as before, skipped
    report = inbox.bill(DAY)
    assert report.ingest.files == [] and str(path) in report.ingest.skipped_files
    assert billed(inbox) == [("e1", 1), ("e2", 1)]


def test_bytes_billed_read_one_way_then_another_bill_each_event_once(inbox):
    """A gzip of stored (uncompressed) blocks holds its lines as they are: read as plain
    text most of them are good lines and billed; renamed .jsonl.gz, read as gzip, those are
    exact duplicates (§3: counted, billed once) and only the rest is billed."""
    inbox.orders([BASIC])
    data = gzip.compress(lines("e0", "e1", "e2", "e3", "e4"), compresslevel=0, mtime=0)
    path = usage_file(inbox, "stored.jsonl", data)
    inbox.bill(DAY)
    first = {e for e, _ in billed(inbox)}
    assert first and first < {"e0", "e1", "e2", "e3", "e4"}  # the first line holds the header
    path.rename(path.with_name("stored.jsonl.gz"))
    inbox.bill(DAY)
    assert billed(inbox) == [(e, 1) for e in ("e0", "e1", "e2", "e3", "e4")]
    con = inbox.warehouse()
    q = "select read_as, accepted, duplicates from ingested_files where kind = 'usage' order by 1"
    assert rows(con, q) == [("usage", len(first), 0), ("usage_gzip", 5 - len(first), len(first))]
    assert one(con, "select sum(credits) from rated_events") == 5 * one(
        con, "select min(credits) from rated_events"
    )


# ---------------------------------------------------------------- a killed run's half-done file


@pytest.fixture
def tiny_batches(monkeypatch):
    """Batches of a few lines, so one small file spans many of them."""
    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", 300)
    monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)  # every file batch by batch


def killed_half_way(inbox: Inbox, monkeypatch, name: str):
    """A usage file of ten lines whose run was killed after its second batch committed."""
    inbox.orders([BASIC])
    path = usage_file(inbox, name, lines(*[f"k{i}" for i in range(10)]))
    real = UsageIngest.batch
    calls = {"n": 0}

    def dies_on_the_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UsageIngest, "batch", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        inbox.bill(DAY)
    monkeypatch.setattr(UsageIngest, "batch", real)
    con = db.connect(inbox.settings.state_db)
    half = rows(con, "select lines_done, complete, read_as from ingested_files where file_id = 2")
    con.close()
    assert len(half) == 1 and 0 < half[0][0] < 10 and half[0][1:] == (False, "usage")
    return path


def test_a_half_done_file_renamed_and_read_the_same_way_resumes(inbox, tiny_batches, monkeypatch):
    path = killed_half_way(inbox, monkeypatch, "batch.jsonl")
    path.rename(path.with_name("batch-resent.jsonl"))
    inbox.bill(DAY)
    assert billed(inbox) == [(f"k{i}", 1) for i in range(10)]
    assert read_ways(inbox)[0] == ("batch.jsonl", "usage", True)  # the same file, resumed
    assert published(inbox, "select count(*) from ingested_files") == [(2,)]


def test_a_half_done_file_renamed_to_be_read_another_way_is_taken_out(
    inbox, tiny_batches, monkeypatch
):
    path = killed_half_way(inbox, monkeypatch, "batch.jsonl")
    renamed = path.rename(path.with_name("batch.jsonl.gz"))
    report = inbox.bill(DAY)
    assert report.ingest.rejected_files == [(str(renamed), "unreadable_file")]
    assert billed(inbox) == []  # half a file is never billed
    assert read_ways(inbox) == [("orders-001.csv", "orders", True)]


# ---------------------------------------------------------------- the migration


def test_rows_from_before_read_as_get_it_from_their_kind_and_path(tmp_path, monkeypatch):
    schema = tmp_path / "schema"
    shutil.copytree(db.SCHEMA_DIR, schema)
    (schema / "018_read_as.sql").unlink()
    monkeypatch.setattr(db, "SCHEMA_DIR", schema)
    path = tmp_path / "w.duckdb"
    con = db.connect(path)
    con.execute(
        "insert into ingested_files (file_id, path, kind, sha256, complete) values "
        "(1, 'i/orders/a.csv', 'orders', 's1', true), (2, 'i/usage/b.jsonl.gz', 'usage', 's2', "
        "true), (3, 'i/usage/c.jsonl', 'usage', 's3', false)"
    )
    con.execute(
        "insert into rejected_files (source_file, reason, sha256) values "
        "('i/usage/x.jsonl.gz', 'unreadable_file', 's4'), "
        "('i/usage/l.jsonl', 'not_a_regular_file', 'not_a_regular_file:i/usage/l.jsonl')"
    )
    con.execute("insert into inbox_seen (path, sha256) values ('i/usage/x.jsonl', 's4')")
    con.close()
    shutil.copy(db.SQL_DIR / "schema" / "018_read_as.sql", schema)
    for _ in range(2):  # and applied again: the same
        con = db.connect(path)
        assert rows(con, "select file_id, read_as from ingested_files order by 1") == [
            (1, "orders"),
            (2, "usage_gzip"),
            (3, "usage"),
        ]
        assert rows(con, "select read_as from rejected_files order by source_file") == [
            (None,),
            ("usage_gzip",),
        ]
        assert rows(con, "select read_as from inbox_seen") == [("usage",)]
        # the same bytes read another way are a file of their own; read the same way, not
        con.execute(
            "insert into ingested_files (file_id, path, kind, sha256, read_as) "
            "values (4, 'i/usage/a.jsonl', 'usage', 's1', 'usage')"
        )
        with pytest.raises(duckdb.ConstraintException):
            con.execute(
                "insert into ingested_files (file_id, path, kind, sha256, read_as) "
                "values (5, 'i/usage/d.jsonl', 'usage', 's1', 'usage')"
            )
        con.execute("delete from ingested_files where file_id = 4")
        con.close()
        text = (schema / "018_read_as.sql").read_text()
        (schema / "018_read_as.sql").write_text(text + "\n-- edited: applied again\n")
