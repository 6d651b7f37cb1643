"""Run settings: one object read from CLI flags and ADBILL_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
DEFAULT_CATALOG = PROJECT_ROOT / "data" / "catalog.toml"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"ADBILL_{name}")
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how a run bills it."""

    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", "adbill-data")))
    db: Path | None = None
    billing_tz: str = field(default_factory=lambda: _env("BILLING_TZ", "Asia/Shanghai"))
    catalog_path: Path = field(default_factory=lambda: Path(_env("CATALOG", str(DEFAULT_CATALOG))))
    max_late_days: int = field(default_factory=lambda: int(_env("MAX_LATE_DAYS", "35")))
    shards: int = field(default_factory=lambda: int(_env("SHARDS", "0")))
    # a data dir that has billed nothing yet accepts nothing older than this (§3)
    max_history_days: int = field(default_factory=lambda: int(_env("MAX_HISTORY_DAYS", "400")))

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        db = self.db or _env("DB")
        object.__setattr__(
            self, "db", Path(db).absolute() if db else self.data_dir / "warehouse.duckdb"
        )

    def today(self) -> date:
        """Today in the billing zone, or ADBILL_TODAY (YYYY-MM-DD) when set (§3)."""
        return today(self.billing_tz)

    def yesterday(self) -> date:
        """The billing day that ended at the last local midnight: the latest `--through`."""
        return self.today() - timedelta(days=1)

    @property
    def inbox(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def state_db(self) -> Path:
        """The run's working database; analysts never open it."""
        return self.state_dir / "adbill.duckdb"

    @property
    def out_dir(self) -> Path:
        return self.data_dir / "out"

    def ensure_dirs(self) -> None:
        for d in (
            self.inbox / "orders",
            self.inbox / "usage",
            self.state_dir,
            self.out_dir / "statements",
            self.out_dir / "suspensions",
        ):
            d.mkdir(parents=True, exist_ok=True)


def today(tz: str) -> date:
    """Today in the billing zone `tz`, or ADBILL_TODAY (YYYY-MM-DD) when set (§3)."""
    fixed = _env("TODAY")
    if fixed is not None:
        try:
            return date.fromisoformat(fixed)
        except ValueError:
            raise ValueError(f"ADBILL_TODAY={fixed!r} is not a date (YYYY-MM-DD)") from None
    return datetime.now(ZoneInfo(tz)).date()
