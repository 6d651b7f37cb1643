"""A failed or crashed run tells the operator: the flow's hooks post its one-line cause to
the configured webhook (here an HTTP endpoint on 127.0.0.1 that the test starts)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from flows.notify import failure_message, notify_failure
from tasks.run_lock import DataDirBusy
from tests.ops_helpers import webhook_endpoint


@pytest.fixture
def endpoint():
    with webhook_endpoint() as hook:
        yield hook


def failed_state(exc: BaseException):
    from prefect.states import Failed

    return Failed(data=exc, message=f"Flow run encountered an exception: {exc}")


def flow_run(**params):
    return SimpleNamespace(id=uuid.uuid4(), name="crafty-otter", parameters=params)


def test_the_flow_hooks_failed_and_crashed_runs():
    from flows.daily import daily_billing

    assert notify_failure in daily_billing.on_failure_hooks
    assert notify_failure in daily_billing.on_crashed_hooks


def test_a_failed_run_posts_its_one_line_cause_to_the_webhook(endpoint, monkeypatch):
    url, received = endpoint
    monkeypatch.setenv("ADBILL_NOTIFY_URL", url)
    monkeypatch.delenv("ADBILL_NOTIFY_BLOCK", raising=False)
    exc = DataDirBusy("another adbill run is using /srv/adbill; waited 30 min; retry")
    exc.add_note("while starting the run")
    run = flow_run(data_dir="/srv/adbill")
    notify_failure(None, run, failed_state(exc))
    assert len(received) == 1
    text = received[0]["text"]
    assert "\n" not in text and len(text) <= 400
    assert text == (
        f"adbill: billing run crafty-otter failed (flow run {run.id}, data dir /srv/adbill): "
        "DataDirBusy: another adbill run is using /srv/adbill; waited 30 min; retry "
        "(while starting the run)"
    )
    assert received[0]["subject"] == "adbill: billing run crafty-otter failed"


def test_a_crash_without_exception_sends_the_state_message():
    from prefect.states import Crashed

    state = Crashed(message="Execution was aborted by an interrupt signal.")
    run = flow_run()
    subject, body = failure_message(run, state)
    assert subject == "adbill: billing run crafty-otter crashed"
    assert body == (
        f"{subject} (flow run {run.id}): CrashedRun: Execution was aborted by an interrupt signal."
    )


def test_no_webhook_configured_sends_nothing_and_a_dead_webhook_never_raises(monkeypatch):
    monkeypatch.delenv("ADBILL_NOTIFY_URL", raising=False)
    monkeypatch.delenv("ADBILL_NOTIFY_BLOCK", raising=False)
    notify_failure(None, flow_run(), failed_state(ValueError("x")))
    monkeypatch.setenv("ADBILL_NOTIFY_URL", "http://127.0.0.1:9/nothing-listens")
    notify_failure(None, flow_run(), failed_state(ValueError("x")))  # logged, not raised
