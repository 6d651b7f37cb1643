"""The run report shown in the Prefect UI: a markdown summary artifact."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from tasks.pipeline import RunReport
from tasks.settings import Settings


def run_report_markdown(report: RunReport) -> str:
    """A short markdown account of a run: days billed, events, rejects, credits."""
    s = report.summary()
    lines = [
        f"# Billing run {report.run_id}",
        "",
        f"- through: {report.through}, status: **{report.status}**",
        f"- days billed: {s['days_billed']} ({s['first_day']} .. {s['last_day']})",
        f"- events accepted: {s['events_accepted']:,}, rejected: {s['events_rejected']:,}, "
        f"exact duplicates ignored: {s['duplicates']:,}",
        f"- published warehouse: `{report.published}`",
        "",
        "| reject reason | lines |",
        "|---|---|",
    ]
    for reason, n in sorted(s["rejected_by_reason"].items()):
        lines.append(f"| {reason} | {n:,} |")
    return "\n".join(lines)


def publish_run_artifacts(settings: Settings, report: RunReport) -> None:
    """Attach the run report to the flow run."""
    create_markdown_artifact(
        markdown=run_report_markdown(report),
        key="billing-run-report",
        description=f"adbill run {report.run_id} through {report.through}",
    )
