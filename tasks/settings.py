"""Run settings: one object read from CLI flags and ADBILL_* environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
DEFAULT_CATALOG = PROJECT_ROOT / "data" / "catalog.toml"


class SettingError(ValueError):
    """A setting (flag, parameter or ADBILL_* variable) that no run can use."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"ADBILL_{name}")
    return value if value not in (None, "") else default


# the counts a run takes, each a whole number from 0 to its limit (a flag, a flow parameter
# or ADBILL_*): past the limit a typo (an extra digit) would make a run take days
COUNTS = {
    "shards": 1024,
    "max_late_days": 3650,
    "max_history_days": 3650,
    "hot_days": 3650,
    "keep_old_files_seconds": 30 * 86400,
}


def _env_flag(name: str) -> bool:
    """A yes/no setting from ADBILL_<name> (1/true/yes/on or 0/false/no/off); a bad value names
    the variable."""
    text = _env(name)
    if text is None:
        return False
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"ADBILL_{name}={text!r} is not 1 or 0 (yes or no)")


_WHOLE_NUMBER = re.compile(r"\s*[0-9]{1,100}\s*")


def whole_number(text: str) -> int | None:
    """The whole number the text writes in ASCII digits (blanks around it allowed), or None:
    Python's int() would also take `1_000`, a sign, and other scripts' digits (a fullwidth
    `３`, an Arabic-Indic `٣`), none of which an operator means as a count."""
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def _env_whole(name: str, default, lowest: int, most: int, lowest_text: str | None = None):
    """A whole number from `lowest` to `most` from ADBILL_<name>, `default` when unset; a bad
    value names the variable (and what `lowest` means, `lowest_text`, when it says more)."""
    text = _env(name)
    if text is None:
        return default
    value = whole_number(text)
    if value is None or not lowest <= value <= most:
        raise SettingError(
            f"ADBILL_{name}={text!r} is not a whole number from {lowest_text or lowest} to {most}"
        )
    return value


def _env_count(name: str, default: int) -> int:
    """A whole number from 0 to its limit from ADBILL_<name>; a bad value names the variable."""
    return _env_whole(name, default, 0, COUNTS[name.lower()])


# characters DuckDB reads otherwise in a database file's path: refused in the data dir and --db
DUCKDB_PATH_CHARACTERS = {
    "\\": ("a backslash", "as a slash"),
    "?": ("'?'", "as where options begin"),
}


def path_text(path: Path | str) -> str:
    """A path as text a message can hold (bytes that are not UTF-8 shown as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how a run bills it."""

    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", "adbill-data")))
    db: Path | None = None
    billing_tz: str = field(default_factory=lambda: _env("BILLING_TZ", "Asia/Shanghai"))
    catalog_path: Path = field(default_factory=lambda: Path(_env("CATALOG", str(DEFAULT_CATALOG))))
    max_late_days: int = field(default_factory=lambda: _env_count("MAX_LATE_DAYS", 35))
    shards: int = field(default_factory=lambda: _env_count("SHARDS", 0))
    # a data dir that has billed nothing yet accepts nothing older than this (§3)
    max_history_days: int = field(default_factory=lambda: _env_count("MAX_HISTORY_DAYS", 400))
    # days the working database keeps (tasks/day_files.py); 0: the late window and the month
    # before it. Older days are read from their day files, and back when a rebill reaches them
    hot_days: int = field(default_factory=lambda: _env_count("HOT_DAYS", 0))
    # how long a day file replaced by a newer one is kept for readers of an older warehouse
    keep_old_files_seconds: int = field(
        default_factory=lambda: _env_count("KEEP_OLD_FILES_SECONDS", 2 * 3600)
    )
    # every month-to-date statement document on every run (interfaces.md, Data dir); off:
    # only final ones, and month-to-date ones on demand (`adbill statement`)
    write_month_to_date_documents: bool = field(
        default_factory=lambda: _env_flag("MONTH_TO_DATE_DOCUMENTS")
    )

    def __post_init__(self) -> None:
        for name, limit in COUNTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise SettingError(
                    f"{name} must be a whole number from 0 to {limit}, not {value!r}"
                )
        try:
            ZoneInfo(self.billing_tz)
            from tasks.db import zone_known  # (tasks.db reads this module's settings)

            known = zone_known(self.billing_tz)  # (its SQL dates every day in the zone)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            known = False
        if not known:
            tz = self.billing_tz
            raise SettingError(f"ADBILL_BILLING_TZ={tz!r} is not a time zone") from None
        duckdb_memory()  # a bad ADBILL_DUCKDB_MEMORY refused before a run starts
        duckdb_threads()  # and a bad ADBILL_DUCKDB_THREADS
        dask_workers()  # and a bad ADBILL_DASK_WORKERS
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        db = self.db or _env("DB")
        object.__setattr__(
            self, "db", Path(db).absolute() if db else self.data_dir / "warehouse.duckdb"
        )
        for what, path in (
            ("--data-dir / ADBILL_DATA_DIR", self.data_dir),
            ("--db / ADBILL_DB", self.db),
        ):
            if odd := [c for c in DUCKDB_PATH_CHARACTERS if c in str(path)]:
                name, read = DUCKDB_PATH_CHARACTERS[odd[0]]
                # DuckDB reads a backslash in a file's path as a slash (a data dir `a\b` wrote
                # into `a/b`'s working state) and `?` as where options begin
                raise SettingError(
                    f"{what} {path_text(path)} holds {name}, which DuckDB reads differently in "
                    f"a file's path ({read}): use a path without it; nothing read or billed"
                )
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise SettingError(
                f"--data-dir / ADBILL_DATA_DIR {path_text(self.data_dir)} is a file, not a "
                "folder: name the data dir (the folder holding inbox/)"
            )
        published = Path(os.path.realpath(self.db))
        for place in (self.inbox, self.state_dir):
            if published.is_relative_to(os.path.realpath(place)):
                # inside the inbox it would be ingested; as the working state an analyst's
                # reader would hold up the runs
                raise SettingError(
                    f"ADBILL_DB / --db {self.db} lies in {place}: put the published warehouse "
                    "elsewhere (default <data-dir>/warehouse.duckdb)"
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

    @classmethod
    def of(cls, data_dir=None, db=None, **given) -> Settings:
        """Settings of a run: what is given (a flag, a flow parameter) over ADBILL_* over the
        defaults; a value left empty (None) falls back."""
        kept = {k: v for k, v in given.items() if v is not None}
        return cls(data_dir=data_dir or _env("DATA_DIR", "adbill-data"), db=db, **kept)

    def ensure_dirs(self) -> None:
        """The run's own dirs; never the inbox, which only a delivery (or the demo) makes."""
        for d in (
            self.state_dir,
            self.out_dir / "statements",
            self.out_dir / "suspensions",
        ):
            d.mkdir(parents=True, exist_ok=True)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def a_day(text: str) -> date:
    """A date written YYYY-MM-DD and nothing else: `date.fromisoformat` also reads 20261125
    and 2026-W48-3, which an operator's typo can produce (ValueError otherwise)."""
    if not _DAY.fullmatch(text):
        raise ValueError(f"{text!r} is not written YYYY-MM-DD")
    return date.fromisoformat(text)


# the years a billing day can fall in (§3: no timestamp outside 2000-2099 is accepted)
FIRST_TODAY, LAST_TODAY = date(2000, 1, 1), date(2099, 12, 31)


def today(tz: str) -> date:
    """Today in the billing zone `tz`, or ADBILL_TODAY (YYYY-MM-DD, 2000-2099) when set (§3)."""
    fixed = _env("TODAY")
    if fixed is not None:
        try:
            day = a_day(fixed)
        except ValueError:
            raise SettingError(f"ADBILL_TODAY={fixed!r} is not a date (YYYY-MM-DD)") from None
        if not FIRST_TODAY <= day <= LAST_TODAY:  # 9999-12-31 + 1 day overflows
            raise SettingError(
                f"ADBILL_TODAY={fixed!r} is not a date from {FIRST_TODAY} to {LAST_TODAY} "
                "(billing-rules §3)"
            )
        return day
    return datetime.now(ZoneInfo(tz)).date()


# DuckDB's buffer pool (env ADBILL_DUCKDB_MEMORY): a size with its unit, or a share of the
# machine's memory; DuckDB itself reads "1" or "abc" as a parser error and "1KB" as a limit
# no query fits in
DEFAULT_DUCKDB_MEMORY = "1GB"
_MEMORY = re.compile(
    r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:(kb|mb|gb|tb|kib|mib|gib|tib|k|m|g|t)|(%))\s*", re.IGNORECASE
)
MIN_DUCKDB_MEMORY = 64 * 10**6  # bytes


def duckdb_memory() -> str:
    """ADBILL_DUCKDB_MEMORY as DuckDB's memory_limit (default 1GB): at least 64MB, or from
    1% to 100% of the machine's memory; a bad value names the variable."""
    text = _env("DUCKDB_MEMORY")
    if text is None:
        return DEFAULT_DUCKDB_MEMORY
    match = _MEMORY.fullmatch(text)
    ok = False
    if match and match[3]:
        ok = 1 <= float(match[1]) <= 100
    elif match:
        unit = match[2].lower()
        power = "kmgt".index(unit[0]) + 1
        size = float(match[1]) * (1024 if "i" in unit else 1000) ** power
        ok = size >= MIN_DUCKDB_MEMORY
    if not ok:
        raise SettingError(
            f"ADBILL_DUCKDB_MEMORY={text!r} is not a memory size of at least 64MB (e.g. 1GB, "
            "512MB, 2GiB) or a share of the machine's memory (e.g. 50%)"
        )
    return text.strip()


# DuckDB's worker threads in a run (env ADBILL_DUCKDB_THREADS): unset or 0, one per core
# (DuckDB's default); a cap leaves cores to other jobs on a shared machine
MAX_DUCKDB_THREADS = 1024


def duckdb_threads() -> int | None:
    """ADBILL_DUCKDB_THREADS as DuckDB's `threads`: None (unset or 0: one per core), or a
    whole number from 1 to MAX_DUCKDB_THREADS; a bad value names the variable."""
    return _env_whole("DUCKDB_THREADS", None, 0, MAX_DUCKDB_THREADS, "0 (one per core)") or None


# the temporary Dask LocalCluster's worker processes (`--task-runner dask`; env
# ADBILL_DASK_WORKERS, default 2): none would leave the shards' draws waiting for ever
MAX_DASK_WORKERS = 256


def dask_workers() -> int:
    """ADBILL_DASK_WORKERS: a whole number from 1 to MAX_DASK_WORKERS, 2 when unset; a bad
    value names the variable."""
    return _env_whole("DASK_WORKERS", 2, 1, MAX_DASK_WORKERS)
