"""Statement documents when final, and on demand (interfaces.md, Data dir; issue 13): a run
writes the final statements new or revised since their documents were written, month-to-date
ones only when the setting asks, and `adbill statement` writes one from the published
warehouse."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.cli import main
from tasks.settings import SettingError, Settings
from tests.conftest import Inbox, event, order
from tests.test_documents import text_of

NOV = "2026-11"


def two_customers(inbox: Inbox) -> None:
    """c1 and c2 buy basic (300 credits) on 11-10 and use some of it on 11-10 and 11-12."""
    inbox.orders(
        [
            order(f"o{i}", c, "basic", 1, "30", "2026-11-10T10:00:00+08:00")
            for i, c in enumerate(("c1", "c2"))
        ]
    )
    inbox.usage(
        [
            event("e1", "c1", "copy_generation", 3, "2026-11-10T11:00:00+08:00"),
            event("e2", "c2", "image_to_video", 5, "2026-11-10T12:00:00+08:00"),
            event("e3", "c1", "copy_generation", 4, "2026-11-12T11:00:00+08:00"),
        ]
    )


def month_files(inbox: Inbox, month: str = NOV) -> dict[str, int]:
    """The month's statement documents: name -> inode (a rewritten file gets a new one)."""
    folder = inbox.settings.out_dir / "statements" / month
    return {p.name: p.stat().st_ino for p in sorted(folder.glob("*"))} if folder.is_dir() else {}


def page(inbox: Inbox, name: str, month: str = NOV) -> str:
    return text_of((inbox.settings.out_dir / "statements" / month / name).read_text())


def test_a_mid_month_run_writes_no_month_to_date_documents_only_the_days_lists(tmp_path):
    inbox = Inbox(tmp_path / "data")
    two_customers(inbox)
    report = inbox.bill("2026-11-12")
    assert month_files(inbox) == {}
    assert report.documents == {"final": 0, "month_to_date": 0, "lists": 3}
    lists = sorted(p.name for p in (inbox.settings.out_dir / "suspensions").glob("*.csv"))
    assert lists == ["2026-11-10.csv", "2026-11-11.csv", "2026-11-12.csv"]
    # timed apart in the run report
    assert {"final documents", "month-to-date documents", "suspension lists"} <= set(
        report.summary()["seconds"]
    )
    assert set(report.summary()["document_seconds"]) == {
        "final documents",
        "month-to-date documents",
        "suspension lists",
    }


def test_with_the_setting_every_run_writes_each_month_to_date_document_showing_its_refresh(
    tmp_path,
):
    inbox = Inbox(tmp_path / "data", settings_overrides={"write_month_to_date_documents": True})
    two_customers(inbox)
    report = inbox.bill("2026-11-12")
    assert report.documents == {"final": 0, "month_to_date": 2, "lists": 3}
    first = month_files(inbox)
    assert set(first) == {"c1.html", "c1.csv", "c2.html", "c2.csv"}
    text = page(inbox, "c1.html")
    assert "Month to date, through 2026-11-12 (not final)" in text
    assert "Refreshed at 2026-1" in text and "Issued" not in text
    report = inbox.bill("2026-11-13")  # every run, again
    assert report.documents["month_to_date"] == 2
    assert all(month_files(inbox)[name] != ino for name, ino in first.items())


def test_the_setting_is_read_from_its_environment_variable(monkeypatch):
    monkeypatch.setenv("ADBILL_MONTH_TO_DATE_DOCUMENTS", "1")
    assert Settings().write_month_to_date_documents is True
    monkeypatch.setenv("ADBILL_MONTH_TO_DATE_DOCUMENTS", "0")
    assert Settings().write_month_to_date_documents is False
    monkeypatch.setenv("ADBILL_MONTH_TO_DATE_DOCUMENTS", "sometimes")
    with pytest.raises(SettingError, match="ADBILL_MONTH_TO_DATE_DOCUMENTS='sometimes'"):
        Settings()


@pytest.fixture(scope="module")
def closed_november(tmp_path_factory) -> Inbox:
    """Billed through 11-20, then a run through 11-30 (the month's last day), then one
    through 12-02; the reports of the last two runs in `reports`."""
    inbox = Inbox(tmp_path_factory.mktemp("closed") / "data")
    two_customers(inbox)
    inbox.bill("2026-11-20")
    inbox.reports = [inbox.bill("2026-11-30")]
    inbox.files_at_close = month_files(inbox)
    inbox.reports.append(inbox.bill("2026-12-02"))
    return inbox


def test_the_run_that_bills_the_months_last_day_writes_its_final_documents_and_only_those(
    closed_november,
):
    at_close, after = closed_november.reports
    assert at_close.documents == {"final": 2, "month_to_date": 0, "lists": 10}
    assert set(closed_november.files_at_close) == {"c1.html", "c1.csv", "c2.html", "c2.csv"}
    text = page(closed_november, "c1.html")
    assert "Final" in text and "Revision 1" in text and "Issued 2026-" in text
    assert "Refreshed" not in text
    # the next run (December's first days) writes no final again, and no December document
    assert after.documents == {"final": 0, "month_to_date": 0, "lists": 2}
    assert month_files(closed_november) == closed_november.files_at_close
    assert month_files(closed_november, "2026-12") == {}


def test_documents_made_a_batch_of_customers_at_a_time_are_the_same_documents(
    closed_november, tmp_path, monkeypatch
):
    """A month of a million customers is made BATCH statements at a time (memory); batches
    of one customer write what one batch of all of them writes."""
    from tasks import documents

    monkeypatch.setattr(documents, "BATCH", 1)
    inbox = Inbox(tmp_path / "data")
    two_customers(inbox)
    inbox.bill("2026-11-20")
    report = inbox.bill("2026-11-30")
    assert report.documents["final"] == 2
    assert month_files(inbox).keys() == closed_november.files_at_close.keys()

    def undated(text: str) -> str:  # when each was issued differs
        return re.sub(r"Issued \d{4}-\d\d-\d\d \d\d:\d\d", "Issued", text)

    for name in month_files(inbox):
        assert undated(page(inbox, name)) == undated(page(closed_november, name)), name


def test_a_revision_after_late_data_rewrites_that_customers_documents_only(
    closed_november, tmp_path
):
    inbox = closed_november.copy_to(tmp_path / "data")
    before = month_files(inbox)
    inbox.usage([event("late-1", "c1", "copy_generation", 6, "2026-11-25T11:00:00+08:00")])
    report = inbox.bill("2026-12-03")
    assert report.documents["final"] == 1 and report.documents["month_to_date"] == 0
    after = month_files(inbox)
    assert after["c2.html"] == before["c2.html"] and after["c2.csv"] == before["c2.csv"]
    assert after["c1.html"] != before["c1.html"] and after["c1.csv"] != before["c1.csv"]
    text = page(inbox, "c1.html")
    assert "Revision 2 (replaces revision 1 of 2026-" in text and "− Used by events 13" in text
    con = inbox.warehouse()
    try:
        rows = con.execute(
            "select customer_id, revision, status, path from written_documents "
            "where month = '2026-11-01' order by customer_id"
        ).fetchall()
    finally:
        con.close()
    assert rows == [  # the pages, under <data-dir>/out
        ("c1", 2, "final", "statements/2026-11/c1.html"),
        ("c2", 1, "final", "statements/2026-11/c2.html"),
    ]


# ---------------------------------------------------------------- adbill statement


@pytest.fixture(scope="module")
def mid_november(tmp_path_factory) -> Inbox:
    inbox = Inbox(tmp_path_factory.mktemp("mid") / "data")
    two_customers(inbox)
    inbox.bill("2026-11-12")
    return inbox


def statement(inbox: Inbox, *args: str) -> list[str]:
    return ["statement", *args, "--data-dir", str(inbox.root)]


def test_adbill_statement_writes_a_month_to_date_document_from_the_warehouse_and_prints_it(
    mid_november, monkeypatch, capsys
):
    monkeypatch.setenv("ADBILL_TODAY", "2026-11-13")  # the current month: November
    assert main(statement(mid_november, "c1")) == 0
    out, err = capsys.readouterr()
    path = mid_november.settings.out_dir / "statements" / NOV / "c1.html"
    assert out == f"{path}\n" and err == ""
    text = text_of(path.read_text())
    assert "Customer c1" in text and "Month to date, through 2026-11-12 (not final)" in text
    assert "Refreshed at 2026-1" in text and "− Used by events 7" in text
    assert path.with_suffix(".csv").is_file()
    # the working state's record of documents is untouched: written on demand, not by a run
    con = mid_november.warehouse()
    try:
        assert con.execute("select count(*) from written_documents").fetchall() == [(0,)]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("nobody",), "no customer 'nobody' in "),
        (("c1", "--month", "2026-10"), "customer 'c1' has no statement for 2026-10"),
        (("c1", "--month", "0001-01"), "customer 'c1' has no statement for 0001-01 in"),
        (("c1", "--month", "2026-13"), "'2026-13' is not a month (YYYY-MM)"),
    ],
)
def test_adbill_statement_refuses_in_one_line(mid_november, capsys, args, says):
    assert main(statement(mid_november, *args)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and says in err


def test_adbill_statement_in_another_zone_than_the_data_dirs_is_refused_unwritten(
    mid_november, monkeypatch, capsys
):
    """Its days, pools and payments are dated in the data dir's zone: ADBILL_BILLING_TZ set
    otherwise is refused, as a run refuses it, not a document misdated (paid a day early)."""
    monkeypatch.setenv("ADBILL_TODAY", "2026-11-13")
    folder = mid_november.settings.out_dir / "statements" / NOV
    before = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    monkeypatch.setenv("ADBILL_BILLING_TZ", "UTC")
    assert main(statement(mid_november, "c1")) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "bills in Asia/Shanghai; ADBILL_BILLING_TZ=UTC differs: unset it" in err
    assert "no statement written" in err
    assert (sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []) == before


def test_adbill_statement_without_a_warehouse_refuses_in_one_line(tmp_path, capsys):
    assert main(["statement", "c1", "--data-dir", str(tmp_path), "--month", NOV]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no warehouse at {tmp_path / 'warehouse.duckdb'}" in err


def test_adbill_statement_refuses_another_data_dirs_warehouse_and_a_mistyped_data_dir(
    mid_november, tmp_path, capsys
):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a warehouse\n")
    db = str(mid_november.settings.db)
    for argv, says in [
        (["--data-dir", str(tmp_path / "typo"), "--db", db], "no inbox at"),
        (["--data-dir", str(mid_november.root), "--db", str(notes)], "is not a DuckDB database"),
    ]:
        assert main(["statement", "c1", "--month", NOV, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
        assert "nothing billed" not in err  # (a statement is written, not billed)
    assert "no statement written" in err
    assert not (tmp_path / "typo").exists()


HOLD = """
import sys, time
import duckdb
from tasks.run_lock import run_lock
from pathlib import Path
state = Path(sys.argv[1])
with run_lock(state, wait=0):
    con = duckdb.connect(str(state / "adbill.duckdb"))  # the working state, read-write
    print("holding", flush=True)
    time.sleep(120)
"""


def test_adbill_statement_works_while_a_run_holds_the_working_state(mid_november, tmp_path, capsys):
    inbox = mid_november.copy_to(tmp_path / "data")
    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(inbox.settings.state_dir)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        assert main(statement(inbox, "c2", "--month", NOV)) == 0
        path = inbox.settings.out_dir / "statements" / NOV / "c2.html"
        assert capsys.readouterr().out == f"{path}\n"
        assert "Customer c2" in text_of(path.read_text())
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- names that two ids share

# `傿人客户` and `兜原客户` share the first 10 hex digits of their SHA-256 (tests/
# test_output_safety.py): alone in a month each is named by them, together both get 32
A_ID, B_ID = "傿人客户", "兜原客户"


def buys_and_uses(inbox: Inbox, customer: str, day: str, n: int) -> None:
    """The customer buys basic (300 credits) on the day and uses n credits of it."""
    inbox.orders([order(f"o-{customer}", customer, "basic", 1, "30", f"{day}T10:00:00+08:00")])
    inbox.usage([event(f"e-{customer}", customer, "copy_generation", n, f"{day}T11:00:00+08:00")])


def shown_customers(inbox: Inbox, month: str = NOV) -> dict[str, str]:
    """The month's documents: file name -> the customer id its CSV shows."""
    folder = inbox.settings.out_dir / "statements" / month
    out = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            (customer,) = {row["customer_id"] for row in csv.DictReader(f)}
        out[path.name] = customer
        assert f"Customer {customer} " in page(inbox, path.with_suffix(".html").name, month)
    return out


def test_the_two_ids_share_a_ten_digit_name_alone_and_get_a_name_each_together():
    from tasks.documents_files import safe_file_stem, safe_file_stems, shared_stems

    assert safe_file_stem(A_ID) == safe_file_stem(B_ID) == "_~90a48a6043"
    assert safe_file_stems([A_ID]) == {A_ID: "_~90a48a6043"}
    both = safe_file_stems([A_ID, B_ID, "c1", "x" * 32])
    assert both[A_ID] != both[B_ID] and {both[A_ID], both[B_ID]}.isdisjoint({"_~90a48a6043"})
    assert shared_stems(both) == {"_~90a48a6043"}
    assert shared_stems(safe_file_stems([A_ID, "c1", "x" * 32])) == set()


def test_a_month_to_date_name_that_a_new_customer_shares_no_longer_holds_the_first_one(
    tmp_path,
):
    from tasks.documents_files import safe_file_stems

    inbox = Inbox(tmp_path / "data", settings_overrides={"write_month_to_date_documents": True})
    buys_and_uses(inbox, A_ID, "2026-11-26", 2)
    inbox.bill("2026-11-26")
    assert shown_customers(inbox) == {"_~90a48a6043.csv": A_ID}
    buys_and_uses(inbox, B_ID, "2026-11-27", 5)
    report = inbox.bill("2026-11-27")
    assert report.documents["month_to_date"] == 2
    stems = safe_file_stems([A_ID, B_ID])  # the engine's names, now both of 32 digits
    assert shown_customers(inbox) == {f"{stems[A_ID]}.csv": A_ID, f"{stems[B_ID]}.csv": B_ID}
    assert set(month_files(inbox)) == {f"{stems[c]}.{e}" for c in stems for e in ("html", "csv")}
    # and at the month's close, the final documents under the same names
    inbox.bill("2026-11-30")
    assert shown_customers(inbox) == {f"{stems[A_ID]}.csv": A_ID, f"{stems[B_ID]}.csv": B_ID}
    con = inbox.warehouse()
    try:
        rows = con.execute(
            "select customer_id, status, path from written_documents order by customer_id"
        ).fetchall()
    finally:
        con.close()
    assert sorted(rows) == sorted(
        (c, "final", f"statements/{NOV}/{stems[c]}.html") for c in (A_ID, B_ID)
    )


def test_late_data_that_adds_a_customer_sharing_a_final_name_moves_the_first_ones_final(
    tmp_path,
):
    from tasks.documents_files import safe_file_stems

    inbox = Inbox(tmp_path / "data")
    buys_and_uses(inbox, A_ID, "2026-11-26", 2)
    inbox.bill("2026-11-30")
    assert shown_customers(inbox) == {"_~90a48a6043.csv": A_ID}
    buys_and_uses(inbox, B_ID, "2026-11-27", 5)  # late: November is final
    report = inbox.bill("2026-12-01")
    stems = safe_file_stems([A_ID, B_ID])
    # A's final (not revised: the same revision) written again under its new name, B's new
    assert report.documents["final"] == 2
    assert shown_customers(inbox) == {f"{stems[A_ID]}.csv": A_ID, f"{stems[B_ID]}.csv": B_ID}
    assert "Revision 1" in page(inbox, f"{stems[A_ID]}.html")
    assert set(month_files(inbox)) == {f"{stems[c]}.{e}" for c in stems for e in ("html", "csv")}
    # nothing left to move: the next run writes no final again
    assert inbox.bill("2026-12-02").documents["final"] == 0


def test_ids_differing_only_in_case_get_a_file_each_where_case_is_ignored(tmp_path):
    """`ABC` and `abc` were `ABC.html` and `abc.html`: one file on macOS, Windows or a share,
    one customer's statement written over the other's. Together in a month they get a
    32-digit name each (late data bringing the second moves the first's final documents)."""
    from tasks.documents_files import safe_file_stems

    inbox = Inbox(tmp_path / "data")
    buys_and_uses(inbox, "ABC", "2026-11-26", 2)
    inbox.bill("2026-11-30")
    assert shown_customers(inbox) == {"ABC.csv": "ABC"}
    buys_and_uses(inbox, "abc", "2026-11-27", 5)  # late: November is final
    inbox.bill("2026-12-01")
    stems = safe_file_stems(["ABC", "abc"])
    assert stems["ABC"].startswith("ABC~") and stems["abc"].startswith("abc~")
    assert len({s.lower() for s in stems.values()}) == 2
    assert shown_customers(inbox) == {f"{stems[c]}.csv": c for c in ("ABC", "abc")}
    names = month_files(inbox)
    assert set(names) == {f"{stems[c]}.{e}" for c in stems for e in ("html", "csv")}
    assert len({n.lower() for n in names}) == len(names)


def test_a_device_named_customers_documents_written_plain_before_move_to_the_hashed_name(
    tmp_path, monkeypatch
):
    """`CON.html`, written before device names were hashed, is moved to `CON~<hash>` when
    the month's documents are next written (a revision), not left beside it."""
    import tasks.documents as documents
    import tasks.documents_files as files
    from tasks.documents_files import safe_file_stem

    inbox = Inbox(tmp_path / "data")
    with monkeypatch.context() as old_engine:
        for module in (files, documents):
            old_engine.setattr(module, "is_device_name", lambda name: False)
        buys_and_uses(inbox, "CON", "2026-11-26", 2)
        inbox.bill("2026-11-30")
        assert shown_customers(inbox) == {"CON.csv": "CON"}
    inbox.usage([event("e-late", "CON", "copy_generation", 3, "2026-11-27T11:00:00+08:00")])
    inbox.bill("2026-12-01")  # late data: November's revision 2
    assert safe_file_stem("CON").startswith("CON~")
    assert shown_customers(inbox) == {f"{safe_file_stem('CON')}.csv": "CON"}
    assert set(month_files(inbox)) == {f"{safe_file_stem('CON')}.{e}" for e in ("html", "csv")}


def test_a_name_written_on_demand_that_a_new_customer_shares_is_removed(
    tmp_path, monkeypatch, capsys
):
    from tasks.documents_files import safe_file_stems

    monkeypatch.setenv("ADBILL_TODAY", "2026-11-28")
    inbox = Inbox(tmp_path / "data")
    buys_and_uses(inbox, A_ID, "2026-11-26", 2)
    inbox.bill("2026-11-26")
    assert main(statement(inbox, A_ID)) == 0
    assert shown_customers(inbox) == {"_~90a48a6043.csv": A_ID}
    buys_and_uses(inbox, B_ID, "2026-11-27", 5)
    inbox.bill("2026-11-27")  # no month-to-date documents: the old name is removed all the same
    assert shown_customers(inbox) == {}
    stems = safe_file_stems([A_ID, B_ID])
    capsys.readouterr()
    for customer in (B_ID, A_ID):
        assert main(statement(inbox, customer)) == 0
        path = inbox.settings.out_dir / "statements" / NOV / f"{stems[customer]}.html"
        assert capsys.readouterr().out == f"{path}\n"
    assert shown_customers(inbox) == {f"{stems[A_ID]}.csv": A_ID, f"{stems[B_ID]}.csv": B_ID}


def test_adbill_statement_removes_a_shared_name_it_finds(tmp_path, monkeypatch):
    """A page under the shared name that no run removed (one written on demand from a
    warehouse a run had not published yet): the next `adbill statement` of the month
    removes it."""
    from tasks.documents_files import safe_file_stems

    monkeypatch.setenv("ADBILL_TODAY", "2026-11-28")
    inbox = Inbox(tmp_path / "data")
    buys_and_uses(inbox, A_ID, "2026-11-26", 2)
    buys_and_uses(inbox, B_ID, "2026-11-26", 5)
    inbox.bill("2026-11-26")
    folder = inbox.settings.out_dir / "statements" / NOV
    folder.mkdir(parents=True)
    for ext in ("html", "csv"):
        (folder / f"_~90a48a6043.{ext}").write_text("A's statement of before\n")
    assert main(statement(inbox, B_ID)) == 0
    stems = safe_file_stems([A_ID, B_ID])
    assert sorted(p.name for p in folder.iterdir()) == [f"{stems[B_ID]}.csv", f"{stems[B_ID]}.html"]
