"""Integration: the daily deployment served against a real Prefect server on loopback.

Slow (a minute or two: a server start, `adbill serve`, four flow runs): marked `slow`, so a
bare `uv run pytest` leaves it out and CI (`-m "slow or not slow"`) runs it first. Run it with
`uv run pytest tests/test_deployment.py`. Prefect is imported by the tests, not at collection.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import cloudpickle
import httpx
import pytest

from tasks.publish import run_lock
from tests.ops_helpers import deliver, query, scenario, warehouse, webhook_endpoint

BIN = Path(sys.executable).parent
DEPLOYMENT = "daily-billing/daily"
TZ = "Asia/Shanghai"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A subprocess in its own process group (so that its children end with it)."""
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen | None) -> None:
    """End a subprocess this test started, and its process group, by id."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def wait_for(what: str, check, timeout: float, logs: list[Path], every: float = 0.5):
    """Poll check() until it returns something truthy; fail with the logs' tails if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(every)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def test_flow_parameters_validate_after_the_runner_pickles_the_flow():
    """The runner cloudpickles the served flow into each run's process (flow_engine.
    run_flow_in_subprocess); its parameters must still validate there."""
    from flows.daily import daily_billing

    shipped = cloudpickle.loads(cloudpickle.dumps(daily_billing))
    params = shipped.validate_parameters({"through": "2026-11-06", "data_dir": "/x"})
    assert params["through"] == date(2026, 11, 6)


@pytest.mark.slow
def test_integration_served_deployment_bills_runs_triggered_through_the_api(tmp_path):
    """Also: the run form (descriptions, no internal parameters), a busy data dir waited for
    (ADBILL_BUSY_WAIT_SECONDS) then failed, its notification posted to a webhook on loopback,
    Prefect flow-run ids beside adbill's run ids, and the published billing status."""
    from flows.daily import yesterday

    hook = webhook_endpoint()
    hook_url, notices = hook.__enter__()

    # the scenario ends yesterday (billing zone), so a run with `through` left empty bills it
    sc = scenario(days=6, customers=5, events_per_day=8, start=yesterday(TZ) - timedelta(days=5))
    data = tmp_path / "data"
    deliver(data, sc)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ADBILL_"))} | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": api,
        "PREFECT_LOGGING_LEVEL": "INFO",
        # test speed only: poll for runs every 2 s, re-offer a queued run after 3 s (not 30)
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "3",
        # configured once in the serve process: a busy data dir is waited for 2 s (not 30
        # min), a failed run is posted to the webhook
        "ADBILL_BUSY_WAIT_SECONDS": "2",
        "ADBILL_NOTIFY_URL": hook_url,
    }
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    logs = [server_log, serve_log]
    server = serve = None
    t0 = time.monotonic()
    try:
        server = start(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env,
            server_log,
        )
        http = httpx.Client(base_url=api, timeout=10)
        wait_for("the Prefect server", lambda: http.get("/health").status_code == 200, 90, logs)
        serve = start([str(BIN / "adbill"), "serve", "--data-dir", str(data)], env, serve_log)
        deployment = wait_for(
            f"deployment {DEPLOYMENT}",
            lambda: (
                (r := http.get(f"/deployments/name/{DEPLOYMENT}")).status_code == 200 and r.json()
            ),
            60,
            logs,
        )
        # the deployment as operators see it: cron in the billing zone, one run at a time
        (schedule,) = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "30 0 * * *"
        assert schedule["schedule"]["timezone"] == "Asia/Shanghai"
        assert schedule["parameters"] == {"trigger": "scheduled"}
        assert deployment["parameters"]["data_dir"] == str(data)
        assert deployment["global_concurrency_limit"]["limit"] == 1
        # the run form: every parameter described, the internal ones not offered
        form = deployment["parameter_openapi_schema"]["properties"]
        assert "trigger" not in form and "task_runner" not in form
        assert all(p.get("description") for p in form.values()), form
        assert "yesterday in the billing zone" in form["through"]["description"]

        def trigger(parameters: dict) -> str:
            # the server's SQLite is busy at times (503): retry, the idempotency key makes it safe
            body = {"parameters": parameters, "idempotency_key": uuid.uuid4().hex}
            url = f"/deployments/{deployment['id']}/create_flow_run"
            r = wait_for(
                "a new flow run",
                lambda: (r := http.post(url, json=body)).is_success and r,
                30,
                logs,
            )
            return r.json()["id"]

        def finished(run_id: str):
            run = http.get(f"/flow_runs/{run_id}").json()
            return run if run["state_type"] in TERMINAL else None

        # a run that finds the data dir busy waits (2 s here), fails; the operator retries it
        with run_lock(data / "state"):
            failed = trigger({"through": str(sc.day(4))})
            run = wait_for("the run to fail", lambda: finished(failed), 120, logs)
        assert run["state_type"] == "FAILED", run
        assert "another adbill run is using" in run["state"]["message"]
        assert not warehouse(data).exists()
        # the failure's one line reached the webhook
        notice = wait_for("the failure notice", lambda: notices, 30, logs)[0]["text"]
        assert notice.startswith(f"adbill: billing run {run['name']} failed (flow run {failed}")
        assert "DataDirBusy: another adbill run is using" in notice and "waited 2 s" in notice
        retry = {"state": {"type": "SCHEDULED", "message": "Retried by the test"}, "force": True}
        wait_for(
            "the retry",
            lambda: http.post(f"/flow_runs/{failed}/set_state", json=retry).is_success,
            30,
            logs,
        )
        run = wait_for("the retried run", lambda: finished(failed), 120, logs)
        assert run["state_type"] == "COMPLETED", run
        assert query(warehouse(data), "select max(day) from customer_days") == [(sc.day(4),)]
        # a rebill and a scheduled-style run asked for at once: queued, never written at once
        ids = [
            trigger({"through": str(sc.last_day), "rebill_from": str(sc.day(2))}),
            trigger({}),  # through left empty: yesterday in the billing zone
        ]
        runs = [wait_for(f"flow run {i}", lambda i=i: finished(i), 120, logs) for i in ids]
        assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], runs
        a, b = sorted(runs, key=lambda r: r["start_time"])
        assert a["end_time"] <= b["start_time"], "two runs of the deployment overlapped"
        elapsed = time.monotonic() - t0
        flow_runs = {r: http.get(f"/flow_runs/{r}").json()["name"] for r in [failed, *ids]}
        status = http.post(
            "/artifacts/latest/filter", json={"artifacts": {"key": {"any_": ["billing-status"]}}}
        ).json()
        assert status and status[0]["flow_run_id"] in flow_runs
    finally:
        stop(serve)
        stop(server)
        hook.__exit__(None, None, None)
    db = warehouse(data)
    # adbill's runs beside the Prefect flow runs that made them (a retry: the same flow run)
    recorded = query(db, "select flow_run_id, flow_run_name from runs order by started_at")
    assert {(str(i), n) for i, n in recorded} <= set(flow_runs.items())
    assert len({i for i, _ in recorded}) == 3
    assert query(db, "select count(*), max(billed_through) from billing_status") == [
        (3, sc.last_day)
    ]
    assert query(db, "select max(day) from customer_days") == [(sc.last_day,)]
    got = query(db, "select day, reason from billing_runs order by all")
    assert got == sorted(
        [(sc.day(i), "new") for i in range(1, 5)]
        + [(sc.day(i), "new") for i in range(5, 7)]
        + [(sc.day(i), "rebill") for i in range(2, 5)]
    ) or got == sorted(  # the rebill may wait for the other run
        [(sc.day(i), "new") for i in range(1, 7)] + [(sc.day(i), "rebill") for i in range(2, 7)]
    )
    # the busy attempt never got the lock, so it left no trace in the data dir
    assert (
        query(db, "select status, trigger from runs order by started_at")
        == [("succeeded", "deployment")] * 3
    )
    print(f"deployment integration test: {elapsed:.1f}s")
