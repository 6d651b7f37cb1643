"""Run settings: one object read from CLI flags and ADBILL_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        db = self.db or _env("DB")
        object.__setattr__(
            self, "db", Path(db).absolute() if db else self.data_dir / "warehouse.duckdb"
        )

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
