"""One customer's statement documents for one month, on demand (`adbill statement`): made from
the published warehouse, read-only, so that neither a run nor its working state is touched."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from tasks.db import connect, scalar
from tasks.documents import month_stems, retire_names, write_statements
from tasks.documents_data import statement_data
from tasks.settings import Settings
from tasks.state_guard import check_zone, recorded_zone


class NoStatement(ValueError):
    """A statement that cannot be written on demand: no warehouse, customer or statement."""


def write_statement(settings: Settings, customer_id: str, month: date) -> Path:
    """<out>/statements/YYYY-MM/<stem>.html (and .csv beside it): the customer's latest
    statement of the month in the published warehouse (month-to-date for a month not yet
    closed); returns the page's path."""
    db = settings.db
    if not db.is_file():
        raise NoStatement(f"no warehouse at {db} yet: `adbill run` publishes it; nothing written")
    con = connect(db, read_only=True)
    try:
        # its days, pools and payments are dated in the zone the data dir bills in: another
        # (ADBILL_BILLING_TZ set otherwise) would misdate a customer's document
        check_zone(settings, recorded_zone(con), then="no statement written")
        key = scalar(
            con, "select customer_key from customers where customer_id = $id", {"id": customer_id}
        )
        if key is None:
            raise NoStatement(f"no customer {customer_id!r} in {db}; nothing written")
        statements = statement_data(con, [month], settings.billing_tz, "customer", customer_key=key)
        if not statements:
            [(first, last)] = con.execute(
                "select min(month), max(month) from statements where customer_key = ?", [key]
            ).fetchall()
            since = f" (it has {first.isoformat()[:7]} .. {last.isoformat()[:7]})" if last else ""
            raise NoStatement(
                f"customer {customer_id!r} has no statement for {month.isoformat()[:7]} in "
                f"{db}{since}; "
                "nothing written"
            )
        stems = month_stems(con, [month])
        page, _csv = write_statements(
            con,
            settings.out_dir,
            [month],
            settings.billing_tz,
            1,
            statements=statements,
            stems=stems,
        )
        # a name this customer and another now share held one of them before: not any more
        retire_names(settings.out_dir, stems)
    except duckdb.CatalogException as exc:  # a warehouse from before statements existed
        raise NoStatement(f"{db} holds no statements ({exc}); nothing written") from None
    finally:
        con.close()
    return page
