"""The run report (out/reports/run-*.md, the Prefect markdown artifact) shows text from outside
the code - inbox file names, error texts - as it is: never as a link, an image or HTML."""

from __future__ import annotations

import os
import re
from datetime import date

import markdown
import markdown_it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import report as run_report
from flows.report import md_cell, md_code, run_report_markdown
from tasks.ingest_report import IngestReport
from tasks.run_report import RunReport
from tasks.settings import Settings
from tests.conftest import Inbox, event, order

LINK_AND_IMAGE = (
    "[Fix your billing here](javascript:alert(document.domain)) <img src=x onerror=alert(1)>"
)
IGNORED = f"{LINK_AND_IMAGE}.JSONL"  # neither orders nor usage: ignored, named in the warnings
FIFO = "`<b>x<b>`[click](https:evil.example).jsonl"  # turned away whole: not a regular file
# elements or links that any of the names would make if the report let them through
MADE = ("<img", "<a ", "<b>", "<script", "href=")
LINKS_OR_HTML = {"link_open", "image", "html_inline", "html_block"}


def renderer():
    return markdown_it.MarkdownIt("commonmark").enable("table")


def outside_code(md: str) -> str:
    """The markdown with every code span taken out (CommonMark 6.1: a run of n backticks up
    to the next run of exactly n)."""
    return re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", md)


def assert_inert(md: str) -> None:
    """No link, image or HTML made of the report's text, by markdown-it (CommonMark with
    tables) nor by Python-Markdown; no link syntax or tag left outside a code span."""
    tokens = renderer().parse(md)
    made = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not made & LINKS_OR_HTML, made
    for html in (renderer().render(md), markdown.markdown(md)):
        assert not [m for m in MADE if m in html], html
    rest = outside_code(md)
    assert "](" not in rest and "<" not in rest and ">" not in rest, rest


def code_texts(md: str) -> list[str]:
    """The texts that markdown-it shows as code spans."""
    tokens = renderer().parse(md)
    return [c.content for t in tokens for c in (t.children or []) if c.type == "code_inline"]


# ---------------------------------------------------------------- a run's own report


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A day billed with an ignored file and a FIFO in inbox/usage, named to make a link,
    an image and HTML; the report and the markdown that publish_run_artifacts writes."""
    inbox = Inbox(tmp_path_factory.mktemp("hostile") / "data")
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage([event("e1", "c1", "copy_generation", 3, "2026-11-26T11:00:00+08:00")])
    usage = inbox.root / "inbox" / "usage"
    (usage / IGNORED).write_text("{}\n", encoding="utf-8")
    os.mkfifo(usage / FIFO)
    report = inbox.bill("2026-11-26")
    return inbox, report


def published_markdown(inbox: Inbox, report: RunReport, monkeypatch) -> tuple[str, str]:
    """The run report's file (out/reports/run-*.md) and its Prefect markdown artifact."""
    import prefect.artifacts

    made = {}
    monkeypatch.setattr(
        prefect.artifacts, "create_markdown_artifact", lambda **kw: made.setdefault("md", kw)
    )
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", lambda **kw: None)
    path = run_report.publish_run_artifacts(Settings(data_dir=inbox.root), report)
    return path.read_text(encoding="utf-8"), made["md"]["markdown"]


def test_hostile_inbox_file_names_are_shown_as_code_never_as_links_or_html(
    hostile_run, monkeypatch
):
    inbox, report = hostile_run
    usage = inbox.root / "inbox" / "usage"
    # the plain warnings (log, summary) keep the names as they are
    assert any(w.startswith(f"{usage / IGNORED} ignored") for w in report.warnings)
    assert (str(usage / FIFO), "not_a_regular_file") in report.ingest.rejected_files
    written, artifact = published_markdown(inbox, report, monkeypatch)
    assert written == artifact
    assert_inert(written)
    shown = code_texts(written)
    # under "Warnings" and "Files turned away", each name shown whole, as it is
    assert shown.count(str(usage / IGNORED)) == 1
    assert shown.count(str(usage / FIFO)) == 2
    warnings = written.split("## Warnings")[1].split("## Files turned away")[0]
    assert f"{md_code(str(usage / FIFO))} turned away whole" in warnings
    assert "`not_a_regular_file`" in warnings


def test_a_normal_name_reads_as_before_in_backticks(hostile_run):
    _inbox, report = hostile_run
    md = run_report_markdown(report)
    assert f"- published warehouse: `{report.published}`" in md
    assert re.search(r"- `[^`]+/inbox/usage/[^`]+\.JSONL` ignored: not an orders file", md)


def test_error_texts_and_reasons_in_a_report_are_inert_too():
    """The housekeeping's error texts and the rejected lines' reasons come from outside the
    code as well (DuckDB's messages name files)."""
    ingest = IngestReport(
        rejected_files=[(f"inbox/orders/{LINK_AND_IMAGE}.csv", "unreadable_file")],
        ignored_files=[f"inbox/usage/{FIFO}\n# a heading\n<script>alert(1)</script>"],
        rejected_by_reason={"bad_json": 2, "x | <img src=y>": 1},
    )
    report = RunReport(
        run_id="r1",
        through=date(2026, 11, 26),
        ingest=ingest,
        published=f"/srv/{LINK_AND_IMAGE}/warehouse.duckdb",
        housekeeping=[
            f"events of 2026-10 not merged into one file (IOException: {LINK_AND_IMAGE}); "
            "its day files kept"
        ],
    )
    md = run_report_markdown(report)
    assert_inert(md)
    assert "<script>" in " ".join(code_texts(md))  # shown, as text
    assert "\n# a heading" not in md and "\\x0a# a heading" in md  # one line: no heading
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert all(ln.count(" | ") == 1 for ln in rows[1:]), rows  # two cells a row
    html = renderer().render(md)
    assert html.count("<td") == 4 and "<code>x | &lt;img src=y&gt;</code>" in html


# ---------------------------------------------------------------- md_code


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="`<>[]()! *_\\|&#\n\t-", max_size=40))
def test_any_text_is_one_code_span_showing_it_as_it_is(text):
    md = f"- {md_code(text)} turned away\n"
    tokens = renderer().parse(md)
    children = [c for t in tokens for c in (t.children or [])]
    assert [c.type for c in children if c.type != "text"] == ["code_inline"]
    (code,) = [c.content for c in children if c.type == "code_inline"]
    shown = run_report._UNSHOWN.sub(lambda m: run_report._escape(m.group()), text)
    assert code == (shown or " ")
    assert "\n" not in md_code(text) and "\r" not in md_code(text)


def test_a_pipe_in_a_table_cell_stays_in_its_cell():
    md = "| reason | lines |\n|---|---:|\n" + f"| {md_cell('a|b')} | 1 |\n"
    html = renderer().render(md)
    assert html.count("<td") == 2 and "<code>a" in html
