"""Shard draws on a Dask cluster: Prefect tasks on prefect-dask's DaskTaskRunner."""

from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.deduct import shard_inputs
from tasks.settings import dask_workers
from tasks.shards import clear, draw_shard_files, load_shard_files, write_shard_inputs


@task(
    name="draw-shard",
    task_run_name="draw-{day}-shard-{shard}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def draw_shard_task(in_dir: str, out_dir: str, day: str, shard: int) -> dict:
    """Draw one shard of a day from its Parquet inputs; runs on a Dask worker."""
    return draw_shard_files(in_dir, out_dir)


def address_problem(address: str) -> str | None:
    """Why `dask=ADDRESS` cannot name a scheduler (None when it can): an address of a
    protocol Dask knows across machines (tcp, tls, ws, wss, ucx) with a host and a port from
    1 to 65535 (`tcp://10.0.0.5:8786`, `10.0.0.5:8786`). Told before anything is read; an
    empty one (`dask=$UNSET`) is never a local cluster."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import backends

    if not address:
        return "an empty address (dask=ADDRESS names a running scheduler; dask alone starts one)"
    if not address.isprintable() or any(c.isspace() for c in address):
        return f"{address!r} holds white space or control characters"
    try:
        protocol, location = parse_address(address, strict=False)
        if protocol not in backends or protocol == "inproc":  # (inproc: this process only)
            known = ", ".join(sorted(p for p in backends if p != "inproc"))
            return f"{address!r} is not an address of a protocol Dask serves ({known})"
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as exc:
        return f"{address!r} is not a scheduler address ({exc})"
    if not host or not 1 <= int(port) <= 65535:
        return f"{address!r} needs a host and a port from 1 to 65535"
    return None


def dask_runner(spec: str):
    """A DaskTaskRunner from `dask` (a temporary LocalCluster) or `dask=ADDRESS` (its
    address checked by the caller: address_problem, in the CLI and the flow)."""
    from prefect_dask import DaskTaskRunner

    if spec != "dask":
        return DaskTaskRunner(address=spec.partition("=")[2])
    workers = dask_workers()  # the LocalCluster's size
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
    )


@contextmanager
def api_url_for_workers():
    """Point the workers this process starts at this flow's API (a temporary server too),
    rather than each starting a temporary server of its own; restored afterwards."""
    from prefect.client.orchestration import get_client

    before = os.environ.get("PREFECT_API_URL")
    with get_client(sync_client=True) as client:
        os.environ["PREFECT_API_URL"] = str(client.api_url).rstrip("/")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def shard_deduct(work_dir: Path, runner):
    """A `deduct` for bill_day: shard inputs to Parquet, draws on the task runner, loads here.

    `runner` is a started DaskTaskRunner (the flow's task runner stays the default one).
    Workers only read and write files under work_dir (it must be on storage every worker
    sees); the one process that holds the working database loads their results, in shard
    order, so the outcome is the same whatever the number of shards or workers.
    """

    def deduct(con, day: date, *, tz: str, shards: int) -> int:
        base = work_dir / day.isoformat()
        futures = []
        try:  # (the exchange files, customers' ledger data, never left behind by a failure)
            for s in range(shards):
                d = base / f"shard-{s}"
                inputs = shard_inputs(con, day, tz=tz, shard=s, shards=shards)
                write_shard_inputs(inputs, d / "in")
                parameters = {"in_dir": str(d / "in"), "out_dir": str(d / "out")}
                futures.append(
                    runner.submit(draw_shard_task, parameters | {"day": str(day), "shard": s})
                )
            events, peak = 0, 0.0
            for f in futures:
                result = f.result()
                load_shard_files(con, day, result["out_dir"])
                events += result["events"]
                peak = max(peak, result["peak_rss_mb"])
        finally:
            for f in futures:  # (none still writing into base when it is cleared)
                with contextlib.suppress(Exception):
                    f.wait()
            clear(base)
        get_run_logger().info(f"{day}: {shards} shards drawn; worker peak RSS {peak:,.0f} MiB")
        return events

    return deduct
