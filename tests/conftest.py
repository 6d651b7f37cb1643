"""Shared test helpers: tiny inboxes written inline and billed without a Prefect server."""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from tasks.pipeline import run_billing  # noqa: E402
from tasks.settings import Settings  # noqa: E402

ORDER_HEADER = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]


def order(order_id, customer_id, product, term, amount, purchased_at) -> dict:
    return dict(
        zip(ORDER_HEADER, [order_id, customer_id, product, term, amount, purchased_at], strict=True)
    )


def event(
    event_id, customer_id, function, quantity, occurred_at, status="succeeded", account_id=None
) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "account_id": account_id or f"{customer_id}-a1",
        "function": function,
        "quantity": quantity,
        "status": status,
        "occurred_at": occurred_at,
    }


@dataclass
class Inbox:
    """A data dir with an inbox the test fills, billed like the scheduler would."""

    root: Path
    n_files: int = 0
    settings_overrides: dict = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.root, **self.settings_overrides)

    def orders(self, rows: list[dict] | list[str], name: str | None = None) -> Path:
        self.n_files += 1
        path = self.root / "inbox" / "orders" / (name or f"orders-{self.n_files:03d}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            if rows and isinstance(rows[0], str):
                f.write(",".join(ORDER_HEADER) + "\n")
                f.write("\n".join(rows) + "\n")
            else:
                w = csv.DictWriter(f, ORDER_HEADER)
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return path

    def usage(self, lines: list[dict | str], name: str | None = None, gz: bool = False) -> Path:
        self.n_files += 1
        suffix = ".jsonl.gz" if gz else ".jsonl"
        path = self.root / "inbox" / "usage" / (name or f"usage-{self.n_files:03d}{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
        if gz:
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def deliver_reference(self, orders, events) -> None:
        """Write reference-model orders and rated events (tests/reference.py) as inbox files;
        each event is spokesperson video, 1 credit a second, so quantity = its credits."""
        self.orders(
            [
                order(
                    o.order_id,
                    o.customer_id,
                    o.product,
                    o.term_months,
                    str(o.amount_cny),
                    o.purchased_at.isoformat(),
                )
                for o in orders
            ]
        )
        self.usage(
            [
                event(
                    e.event_id,
                    e.customer_id,
                    "digital_human_spokesperson",
                    e.credits,
                    e.occurred_at.isoformat(),
                )
                for e in events
            ]
        )

    def bill(self, through: date | str, **kwargs):
        through = date.fromisoformat(through) if isinstance(through, str) else through
        return run_billing(self.settings, through, **kwargs)

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.settings.db), read_only=True)
        con.execute("set TimeZone = 'Asia/Shanghai'")
        return con


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "data")


def rows(con, query: str, params: dict | None = None) -> list[tuple]:
    return con.execute(query, params or {}).fetchall()


def one(con, query: str, params: dict | None = None):
    result = rows(con, query, params)
    assert len(result) == 1, result
    return result[0] if len(result[0]) > 1 else result[0][0]
