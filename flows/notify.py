"""Word of a failed or crashed billing run: a Prefect flow hook that sends its one-line cause
to the webhook or Prefect notification block the operator configured once."""

from __future__ import annotations

import logging
import os
from typing import Any

LOG = logging.getLogger("adbill.notify")
MAX_LINE = 300


def one_line(exc: BaseException | None, fallback: str = "") -> str:
    """The cause as one line: type, message and what the run was doing (at most 300 chars)."""
    if exc is None:
        text = fallback or "no cause recorded"
    else:
        text = f"{type(exc).__name__}: {exc}"
        notes = [n for n in getattr(exc, "__notes__", ()) if n.startswith("while ")]
        if notes:
            text += f" ({notes[0]})"
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def failure_cause(state: Any) -> str:
    """The one-line cause of a Failed or Crashed state: its exception, else its message."""
    exc = None
    try:
        result = state.result(raise_on_failure=False)
        exc = result if isinstance(result, BaseException) else None
    except Exception:  # a result that cannot be read: the state's message says enough
        exc = None
    message = state.message or ""
    return one_line(exc, message.removeprefix("Flow run encountered an exception. "))


def failure_message(flow_run: Any, state: Any) -> tuple[str, str]:
    """(subject, body) of the notification: which run, where to look, and the cause."""
    params = getattr(flow_run, "parameters", None) or {}
    where = params.get("data_dir") or os.environ.get("ADBILL_DATA_DIR", "")
    subject = f"adbill: billing run {flow_run.name} {state.name.lower()}"
    body = (
        f"{subject} (flow run {flow_run.id}"
        + (f", data dir {where}" if where else "")
        + f"): {failure_cause(state)}"
    )
    return subject, body


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (on_failure, on_crashed): tell the operator, once configured by
    ADBILL_NOTIFY_URL (a webhook: POST of JSON {"text": the line, "subject"})
    or ADBILL_NOTIFY_BLOCK (a saved Prefect notification block, "slack-webhook/ops").
    A notification that cannot be sent is logged; it never changes the run's state."""
    url = os.environ.get("ADBILL_NOTIFY_URL")
    block = os.environ.get("ADBILL_NOTIFY_BLOCK")
    if not url and not block:
        return
    subject, body = failure_message(flow_run, state)
    try:
        if url:
            webhook(url).notify(body, subject)
        if block:
            from prefect.blocks.core import Block

            Block.load(block).notify(body, subject)
    except Exception as exc:  # the run failed already; say the notice failed and go on
        LOG.warning("could not send the failure notice (%s): %s", type(exc).__name__, exc)
    else:
        LOG.info("failure notice sent: %s", body)


def webhook(url: str):
    """Prefect's custom webhook block for URL (not saved): JSON with the line in `text`,
    which Slack, Mattermost and Teams incoming webhooks show as the message."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name="adbill",
        url=url,
        json_data={
            "text": "{{body}}",
            "subject": "{{subject}}",
        },
    )
