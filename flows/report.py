"""The run report shown in the Prefect UI: a markdown summary and the day's suspension list."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

from tasks.db import connect, execute
from tasks.pipeline import RunReport
from tasks.settings import Settings

REPORT_KEY = "billing-run-report"
STATUS_KEY = "billing-status"
LIST_KEY = "suspension-list"
MAX_DAY_ROWS = 62  # the per-day table shows the run's last two months of days at most
MAX_LIST_ROWS = 2000

DAY_FIGURES = """
with days as (
    select unnest($days) as day
),

credits as (
    select
        day,
        sum(events) as events,
        sum(used) as used,
        sum(settled) as settled,
        sum(expired) as expired,
        sum(arrears_opened) as arrears_opened,
        sum(revenue_cny) as revenue_cny,
        sum(breakage_cny) as breakage_cny,
        sum(payments_cny) as payments_cny
    from customer_days
    where day in (select day from days)
    group by day
),

lists as (
    select
        d.day,
        (select count(*) from suspensions as s where s.day = d.day) as suspended,
        (select count(*) from suspension_changes as c
         where c.day = d.day and c.change = 'suspended') as newly_suspended,
        (select count(*) from suspension_changes as c
         where c.day = d.day and c.change = 'reinstated') as reinstated,
        (select count(*) from at_risk as r where r.day = d.day) as at_risk
    from days as d
)

select *
from lists
left join credits using (day)
order by day
"""


def report_figures(con, days: list[date]) -> list[dict]:
    """Per billed day: events, credits used/settled/expired, money, the list's counts."""
    if not days:
        return []
    cur = execute(con, DAY_FIGURES, {"days": sorted(set(days))})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def suspension_table(con, day: date, limit: int = MAX_LIST_ROWS) -> list[dict]:
    """The day's suspension list as plain rows (text, int): no Decimal, no date objects."""
    cur = execute(
        con,
        """
        select customer_id, status, reason, net_balance, arrears_outstanding, suspended_since,
               change, projected_exhaustion_date
        from suspension_list
        where day = $day
        order by case status when 'suspended' then 0 when 'active' then 1 else 2 end,
                 customer_id
        limit $limit
        """,
        {"day": day, "limit": limit},
    )
    names = [d[0] for d in cur.description]
    return [{k: _plain(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _plain(value):
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _n(value) -> str:
    return f"{int(value or 0):,}"


def _cny(value) -> str:
    return f"{Decimal(value or 0):,.2f}"


# characters shown as an escape (\xNN, \uNNNN) in the report: control characters (a line
# break would end the code span's line, and a markdown block begin on the next) and the
# bidirectional controls (a name that shows itself reversed)
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TICKS = re.compile(r"`+")


def md_code(text: str) -> str:
    """Text from outside the code (a file's name, an error's text) as a markdown code span
    that any CommonMark renderer shows as it is, never as a link, an image or HTML: fenced by
    a run of backticks longer than any in the text (CommonMark 6.1), padded with a space
    when it begins or ends with a backtick or a space, control characters shown as escapes
    (one line). `<`, `[`, `*` and the rest stay as they are: a code span shows them."""
    text = _UNSHOWN.sub(lambda m: _escape(m.group()), str(text))
    fence = "`" * (max((len(t) for t in _TICKS.findall(text)), default=0) + 1)
    if text.strip(" ") and (text[0] in "` " or text[-1] in "` "):
        text = f" {text} "  # (one space each side is taken off again)
    return f"{fence}{text or ' '}{fence}"


def md_cell(text: str) -> str:
    """md_code for a table cell: a `|` escaped, so that it does not end the cell (GFM)."""
    return md_code(text).replace("|", "\\|")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def run_report_markdown(report: RunReport, figures: list[dict] | None = None) -> str:
    """A markdown account of a run: days billed, events, rejects, credits, money, lists."""
    s = report.summary()
    lines = _headline(report, s)
    if figures:
        lines += _figures(figures)
    lines += _turned_away(report, s)
    return "\n".join(lines)


def _headline(report: RunReport, s: dict) -> list[str]:
    """The run in a few bullets: days, orders, events, the warehouse, the documents."""
    reasons: dict[str, int] = {}
    for d in report.days:
        reasons[d.get("reason", "new")] = reasons.get(d.get("reason", "new"), 0) + 1
    why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    lines = [
        f"# Billing run {report.run_id}",
        "",
        f"- through **{report.through}**, status **{report.status}**",
        f"- days billed: **{s['days_billed']}**"
        + (f" ({s['first_day']} .. {s['last_day']}; {why})" if s["days_billed"] else ""),
        f"- orders accepted {s['orders_accepted']:,}, rejected {s['orders_rejected']:,}, "
        f"exact duplicates ignored {s['order_duplicates']:,}",
        f"- events accepted **{s['events_accepted']:,}**, rejected **{s['events_rejected']:,}**, "
        f"exact duplicates ignored {s['duplicates']:,}",
        f"- published warehouse: {md_code(report.published)}",
    ]
    if report.documents:
        took = report.document_seconds()
        d = report.documents
        lines.append(
            f"- documents: {d.get('final', 0):,} final statements "
            f"({took.get('final documents', 0.0):.2f} s), "
            f"{d.get('month_to_date', 0):,} month-to-date "
            f"({took.get('month-to-date documents', 0.0):.2f} s), "
            f"{d.get('lists', 0):,} suspension lists "
            f"({took.get('suspension lists', 0.0):.2f} s)"
        )
    return lines


def _figures(figures: list[dict]) -> list[str]:
    """Credits and money over the run's days, the last day's list, and a row per day."""
    total = {k: sum((f[k] or 0) for f in figures) for k in figures[0] if k != "day"}
    last = figures[-1]
    lines = [
        "",
        "## Credits and money over the billed days",
        "",
        "| credits used | settled (arrears) | expired | arrears opened "
        "| revenue CNY | breakage CNY | payments CNY |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {_n(total['used'])} | {_n(total['settled'])} | {_n(total['expired'])} "
        f"| {_n(total['arrears_opened'])} | {_cny(total['revenue_cny'])} "
        f"| {_cny(total['breakage_cny'])} | {_cny(total['payments_cny'])} |",
        "",
        f"## Suspension list at the close of {last['day']}",
        "",
        f"- suspended: **{_n(last['suspended'])}** "
        f"(over the run's days: {_n(total['newly_suspended'])} newly suspended, "
        f"{_n(total['reinstated'])} reinstated)",
        f"- at risk: **{_n(last['at_risk'])}**",
        "",
        "## Per day",
        "",
    ]
    shown = figures[-MAX_DAY_ROWS:]
    if len(shown) < len(figures):
        lines.append(f"(the last {len(shown)} of {len(figures)} days)")
    lines += [
        "| day | events | used | settled | expired | revenue CNY | breakage CNY "
        "| suspended | new | reinstated | at risk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in shown:
        lines.append(
            f"| {f['day']} | {_n(f['events'])} | {_n(f['used'])} | {_n(f['settled'])} "
            f"| {_n(f['expired'])} | {_cny(f['revenue_cny'])} | {_cny(f['breakage_cny'])} "
            f"| {_n(f['suspended'])} | {_n(f['newly_suspended'])} | {_n(f['reinstated'])} "
            f"| {_n(f['at_risk'])} |"
        )
    return lines


def _turned_away(report: RunReport, s: dict) -> list[str]:
    """What the run did not bill: its warnings, the files and the lines it rejected."""
    lines = ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report.warning_texts(md_code)] or ["none"]
    turned_away = (report.ingest.rejected_files if report.ingest else None) or []
    lines += ["", "## Files turned away whole (rejected_files)", ""]
    lines += [f"- {md_code(path)}: {md_code(reason)}" for path, reason in turned_away] or ["none"]
    lines += ["", "## Rejected lines by reason", ""]
    if s["rejected_by_reason"]:
        lines += ["| reason | lines |", "|---|---:|"]
        lines += [f"| {md_cell(r)} | {n:,} |" for r, n in sorted(s["rejected_by_reason"].items())]
    else:
        lines.append("none")
    return lines


def _read_published(report: RunReport) -> tuple[list[dict], date | None, list[dict]]:
    """Figures of the run's days and the last billed day's list, from the published file."""
    if not report.published or not Path(report.published).exists():
        return [], None, []
    con = connect(report.published, read_only=True)
    try:
        figures = report_figures(con, [d["day"] for d in report.days])
        last = max((d["day"] for d in report.days), default=None)
        if last is None:
            last = con.execute("select max(day) from billed_days").fetchall()[0][0]
        table = suspension_table(con, last) if last else []
        return figures, last, table
    except duckdb.CatalogException:  # a warehouse from before the lists existed
        return [], None, []
    finally:
        con.close()


def published_status(report: RunReport) -> dict | None:
    """The billing_status row the run published (`adbill status` as the run left it), as plain
    values for a table artifact (no Decimal, no dates)."""
    if not report.published or not Path(report.published).exists():
        return None
    con = connect(report.published, read_only=True)
    try:
        cur = execute(
            con, "select * from billing_status where run_id = $run_id", {"run_id": report.run_id}
        )
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
    except duckdb.CatalogException:  # a warehouse from before billing_status existed
        return None
    finally:
        con.close()
    if row is None:
        return None
    plain = {k: _plain(v) for k, v in zip(names, row, strict=True)}
    plain["warnings"] = "; ".join(plain["warnings"] or []) or "none"
    plain["as_of"] = str(plain["as_of"])
    plain["since"] = str(plain["since"])
    return plain


def publish_run_artifacts(settings: Settings, report: RunReport) -> Path:
    """Attach the run report and the last billed day's suspension list to the flow run;
    keep the report as <out>/reports/run-<run_id>.md too. Returns that file."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tasks.documents import write_atomic

    figures, last, table = _read_published(report)
    markdown = run_report_markdown(report, figures)
    if last is not None:
        csv_path = settings.out_dir / "suspensions" / f"{last.isoformat()}.csv"
        markdown += f"\n\nSuspension list for operations: {md_code(csv_path)}"
    path = write_atomic(settings.out_dir / "reports" / f"run-{report.run_id}.md", markdown)
    create_markdown_artifact(
        markdown=markdown,
        key=REPORT_KEY,
        description=f"adbill run {report.run_id} through {report.through}",
    )
    status = published_status(report)
    if status is not None:
        create_table_artifact(
            table=[{"fact": k, "value": v} for k, v in status.items()],
            key=STATUS_KEY,
            description="the billing status this run published (as `adbill status` shows it)",
        )
    if last is not None:
        create_table_artifact(
            table=table
            or [{"customer_id": "", "status": "nobody suspended, reinstated or at risk"}],
            key=LIST_KEY,
            description=f"suspension list at the close of {last} (suspended, reinstated, at risk)",
        )
    return path
