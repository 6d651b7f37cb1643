"""The price list (editions, packages, functions) read from the catalog data file: every
version of every entry, each in force from its instant until the next version's."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from tasks.db import local_instant, local_midnight
from tasks.settings import DEFAULT_CATALOG

QUANTITY_SCALE = 1_000_000  # quantities are kept as exact micro-units (6 decimal places)
DEFAULT_TZ = "Asia/Shanghai"  # billing-rules §1; a run passes its own billing zone

# Bounds of the catalog's values (docs/operating.md §12), so that no price can overflow the
# engine's BIGINT credits (9.2 x 10^18) or DECIMAL(18, 2) amounts mid-billing:
# - one event at the largest quantity a function accepts (just under 10^9, billing-rules §3,
#   or its largest allowed quantity) earns at most 10^12 credits: a customer's 9 million
#   such events in a month still fit a BIGINT sum;
# - a pool holds at most 10^12 credits (an edition's month, a package): a million pools of
#   one customer still fit;
# - a price is at most 10^10 CNY and a term at most 120 months, so an order's amount
#   (monthly fee x term) fits DECIMAL(18, 2) and revenue's exact fen arithmetic its HUGEINT;
# - seats at most 100,000 (INTEGER sums over a customer's pools);
# - effective dates in the years 2000-2099, as §3 bounds every input's timestamp.
LARGEST_QUANTITY_MICRO = 10**9 * QUANTITY_SCALE - 1  # §3: quantity < 10^9, 6 decimals
MAX_EVENT_CREDITS = 10**12
MAX_POOL_CREDITS = 10**12
MAX_PRICE_CNY = Decimal(10) ** 10
MAX_TERM_MONTHS = 120
MAX_SEATS = 100_000
MAX_PERIOD_DAYS = 366
MAX_VALIDITY_MONTHS = 120
FIRST_YEAR, LAST_YEAR = 2000, 2099
CURRENCY = "CNY"  # money columns are CNY (billing-rules §2)

# the tables of the file and the fields of each; anything else is a typo, refused
SETTINGS_FIELDS = ("currency", "period_days", "package_validity_months")
TABLES = {
    "settings": "[settings]",
    "editions": "[[editions]]",
    "packages": "[[packages]]",
    "functions": "[[functions]]",
}
FIELDS = {
    "editions": ("monthly_fee_cny", "credits_per_month", "seats", "terms_months"),
    "packages": ("price_cny", "credits", "seats"),
    "functions": (
        "category",
        "unit",
        "unit_size",
        "credits_per_unit",
        "whole_number",
        "allowed_quantities",
        "editions",
    ),
}

# the columns every version frame ends with (after its own fields)
VERSION_SCHEMA = {
    "version_id": pl.Int64,  # stable: derived from the version's fingerprint
    "effective_from": pl.Datetime("us", "UTC"),  # null: from the beginning
    "effective_until": pl.Datetime("us", "UTC"),  # null: until further notice
    "fingerprint": pl.String,
}


class CatalogError(ValueError):
    """The catalog file is missing a field, holds an impossible value, or cannot apply."""


@dataclass(frozen=True)
class Catalog:
    """Editions, packages and functions, every version a row, as Polars frames ready to join
    on (code, effective_from <= instant < effective_until)."""

    editions: pl.DataFrame
    packages: pl.DataFrame
    functions: pl.DataFrame
    period_days: int
    package_validity_months: int
    source: str = "catalog"  # what errors name: "catalog file <path>"

    def settings(self) -> dict[str, int]:
        """The [settings] pools are built with (billing-rules §4), by name."""
        return {
            "period_days": self.period_days,
            "package_validity_months": self.package_validity_months,
        }

    def products(self) -> pl.DataFrame:
        """One row per version of a purchasable product: code, source, price, credits, seats."""
        subs = self.editions.select(
            pl.col("code").alias("product"),
            pl.lit("subscription").alias("source"),
            pl.col("monthly_fee_cny").alias("unit_price_cny"),
            pl.col("credits_per_month").alias("credits"),
            "seats",
            *VERSION_SCHEMA,
        )
        pkgs = self.packages.select(
            pl.col("code").alias("product"),
            pl.lit("package").alias("source"),
            pl.col("price_cny").alias("unit_price_cny"),
            "credits",
            "seats",
            *VERSION_SCHEMA,
        )
        return pl.concat([subs, pkgs])

    def versions(self) -> pl.DataFrame:
        """Every version of every entry: kind, code, its instants, fingerprint and content."""
        parts = []
        for kind, df in (
            ("edition", self.editions),
            ("package", self.packages),
            ("function", self.functions),
        ):
            fields = [c for c in df.columns if c not in VERSION_SCHEMA and c != "code"]
            parts.append(
                df.select(
                    pl.lit(kind).alias("kind"),
                    "code",
                    *VERSION_SCHEMA,
                    pl.struct(fields)
                    .map_elements(_content_json, return_dtype=pl.String)
                    .alias("content"),
                )
                if df.height
                else pl.DataFrame(
                    schema={"kind": pl.String, "code": pl.String, **VERSION_SCHEMA}
                    | {"content": pl.String}
                )
            )
        return pl.concat(parts)


def _content_json(fields: dict) -> str:
    return json.dumps(fields, default=str, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------- reading the file


def _micro(value: str | int | float, what: str) -> int:
    d = _decimal(value, what)
    scaled = d * QUANTITY_SCALE
    if scaled != scaled.to_integral_value() or d <= 0:
        raise CatalogError(f"{what} must be positive with at most 6 decimals, not {value!r}")
    return int(scaled)


# an amount written as text: ASCII digits, a point and a fraction (Python's Decimal also
# takes other scripts' digits, `1_200`, padding and exponents: converted, never refused)
PLAIN_NUMBER = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")
# what a code cannot hold: control, format (zero-width), private-use and surrogate characters
# and line or paragraph separators (Unicode general categories)
HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
# format characters that are part of words in Persian, Arabic and Indic scripts: kept
JOINERS = frozenset("\u200c\u200d")


def _plain_code(code: str) -> bool:
    """A code a usage line or order can name as it is seen: at most 100 characters in
    Unicode's composed form (`café` written two ways would be two functions), none hidden,
    no white space at its ends."""
    return (
        len(code) <= 100
        and code == code.strip()
        and unicodedata.is_normalized("NFC", code)
        and not any(unicodedata.category(c) in HIDDEN_CATEGORIES and c not in JOINERS for c in code)
    )


def _decimal(value, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CatalogError(f"{what} must be a number, not {value!r}")
    if isinstance(value, str) and not PLAIN_NUMBER.fullmatch(value):
        raise CatalogError(
            f"{what} must be a number (ASCII digits, a point before any fraction), not {value!r}"
        )
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise CatalogError(f"{what} must be a number, not {value!r}") from exc
    if not d.is_finite():
        raise CatalogError(f"{what} must be a number, not {value!r}")
    return d


def _money(value, what: str) -> Decimal:
    d = _decimal(value, what)
    if d < 0 or d != d.quantize(Decimal("0.01")) or d > MAX_PRICE_CNY:
        raise CatalogError(
            f"{what} must be an amount from 0 to {MAX_PRICE_CNY:,} with at most 2 decimals, "
            f"not {value!r}"
        )
    return d.quantize(Decimal("0.01"))


def _count(value, what: str, least: int = 0, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CatalogError(f"{what} must be a whole number >= {least}, not {value!r}")
    if most is not None and value > most:
        raise CatalogError(f"{what} must be a whole number from {least} to {most:,}, not {value!r}")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise CatalogError(f"{what} must be a string, not {value!r}")
    return value


def _flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(
            f"{what} must be true or false (a TOML boolean, unquoted), not {value!r}"
        )
    return value


def _known(table: dict, fields: tuple[str, ...], what: str, kind: str) -> None:
    """Refuse a key the table does not have (a typo would be ignored and bill wrong)."""
    for key in table:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else f"the fields of {kind}: " + ", ".join(fields)
            )
            raise CatalogError(f"{what} has an unknown field {str(key)!r} ({hint})")


def _instant(value, zone: ZoneInfo, what: str) -> datetime:
    """An effective instant: a TOML date or datetime (or the same as text); one without an
    offset is read in the billing zone (a date: its 00:00)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value else value
            value = date.fromisoformat(value) if isinstance(value, str) else value
        except ValueError as exc:
            raise CatalogError(f"{what} is not a date or an instant: {value!r}") from exc
    if not isinstance(value, date):
        raise CatalogError(f"{what} is not a date or an instant: {value!r}")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise CatalogError(
            f"{what} must lie in the years {FIRST_YEAR}-{LAST_YEAR} (as every input's "
            f"timestamp, billing-rules §3), not {value.isoformat()}"
        )
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else local_instant(value, zone.key)
    return local_midnight(value, zone.key)


def _edition(e: dict, what: str) -> dict:
    terms = e.get("terms_months", [1, 6, 12])
    if not isinstance(terms, list) or not terms:
        raise CatalogError(f"{what}: terms_months must be a list of whole numbers >= 1")
    return {
        "monthly_fee_cny": _money(e["monthly_fee_cny"], f"{what}: monthly_fee_cny"),
        "credits_per_month": _count(
            e["credits_per_month"], f"{what}: credits_per_month", 1, MAX_POOL_CREDITS
        ),
        "seats": _count(e["seats"], f"{what}: seats", 0, MAX_SEATS),
        "terms_months": sorted(
            {_count(t, f"{what}: terms_months", 1, MAX_TERM_MONTHS) for t in terms}
        ),
    }


def _package(p: dict, what: str) -> dict:
    return {
        "price_cny": _money(p["price_cny"], f"{what}: price_cny"),
        "credits": _count(p["credits"], f"{what}: credits", 1, MAX_POOL_CREDITS),
        "seats": _count(p.get("seats", 0), f"{what}: seats", 0, MAX_SEATS),
    }


def _function(f: dict, what: str) -> dict:
    allowed = f.get("allowed_quantities", [])
    editions = f.get("editions", [])
    if not isinstance(allowed, list) or not isinstance(editions, list):
        raise CatalogError(f"{what}: allowed_quantities and editions must be lists")
    unit_size = _micro(f.get("unit_size", "1"), f"{what}: unit_size")
    if unit_size > 10**9 * QUANTITY_SCALE:
        raise CatalogError(f"{what}: unit_size must be at most 10^9, not {f['unit_size']!r}")
    allowed_micro = [_micro(q, f"{what}: allowed_quantities") for q in allowed]
    if any(q > LARGEST_QUANTITY_MICRO for q in allowed_micro):
        raise CatalogError(
            f"{what}: allowed_quantities must be below 10^9 (billing-rules §3), not {allowed!r}"
        )
    per_unit = _count(f["credits_per_unit"], f"{what}: credits_per_unit")
    largest = max(allowed_micro, default=LARGEST_QUANTITY_MICRO)
    units = -(-largest // unit_size)
    if units * per_unit > MAX_EVENT_CREDITS:
        raise CatalogError(
            f"{what}: credits_per_unit {per_unit:,} is too large: an event of "
            f"{Decimal(largest) / QUANTITY_SCALE:f} would earn more than 10^12 credits "
            f"(at most {MAX_EVENT_CREDITS // units:,} a unit of this unit_size)"
        )
    return {
        "category": _text(f.get("category", ""), f"{what}: category"),
        "unit": _text(f.get("unit", ""), f"{what}: unit"),
        "unit_size_micro": unit_size,
        "credits_per_unit": per_unit,
        "whole_number": _flag(f.get("whole_number", False), f"{what}: whole_number"),
        "allowed_quantities_micro": allowed_micro,
        "editions": [_text(x, f"{what}: editions") for x in editions],
    }


def _settings(raw, where: str) -> dict:
    """[settings]: the billing-zone-free parameters of pools (billing-rules §4)."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: [settings] must be a table")
    _known(raw, SETTINGS_FIELDS, f"{where}: [settings]", "[settings]")
    currency = _text(raw.get("currency", CURRENCY), f"{where}: [settings] currency")
    if currency != CURRENCY:
        raise CatalogError(
            f"{where}: [settings] currency must be {CURRENCY!r} (every amount is CNY), "
            f"not {currency!r}"
        )
    return {
        "period_days": _count(
            raw.get("period_days", 30), f"{where}: period_days", 1, MAX_PERIOD_DAYS
        ),
        "package_validity_months": _count(
            raw.get("package_validity_months", 12),
            f"{where}: package_validity_months",
            1,
            MAX_VALIDITY_MONTHS,
        ),
    }


SECTIONS = {  # [[section]] of the file: (kind, reader, schema of its fields)
    "editions": (
        "edition",
        _edition,
        {
            "monthly_fee_cny": pl.Decimal(18, 2),
            "credits_per_month": pl.Int64,
            "seats": pl.Int64,
            "terms_months": pl.List(pl.Int64),
        },
    ),
    "packages": (
        "package",
        _package,
        {"price_cny": pl.Decimal(18, 2), "credits": pl.Int64, "seats": pl.Int64},
    ),
    "functions": (
        "function",
        _function,
        {
            "category": pl.String,
            "unit": pl.String,
            "unit_size_micro": pl.Int64,
            "credits_per_unit": pl.Int64,
            "whole_number": pl.Boolean,
            "allowed_quantities_micro": pl.List(pl.Int64),
            "editions": pl.List(pl.String),
        },
    ),
}


def _versions(section: str, entries, zone: ZoneInfo, where: str) -> pl.DataFrame:
    """Every version of the section's entries, in the file's order of codes, then in time.

    An entry with `effective_from` is a new version of the code named before it: it takes
    the fields it gives and keeps the others of the version in force before it. The first
    version of a code has no `effective_from` (in force from the beginning)."""
    kind, read, schema = SECTIONS[section]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CatalogError(f"{where}: [[{section}]] must be a list of tables")
    by_code: dict[str, list[tuple[datetime | None, int, dict]]] = {}
    fields = ("code", "effective_from", *FIELDS[section])
    for i, e in enumerate(entries, 1):
        code = e.get("code")
        if not isinstance(code, str) or not code:
            raise CatalogError(f"{where}: {section} entry {i} has no code")
        if not _plain_code(code):
            shown = repr(code) if len(code) <= 40 else f"{code[:40]!r}..."
            raise CatalogError(
                f"{where}: {section} entry {i} has the code {shown}: not a plain code (at most "
                "100 characters in Unicode's composed form, NFC; none hidden; no white space "
                "at its ends)"
            )
        what = f"{kind} {code}"
        start = None
        if "effective_from" in e:
            start = _instant(e["effective_from"], zone, f"{where}: {what}: effective_from")
            what += f" from {e['effective_from']}"
        _known(e, fields, f"{where}: {what}", f"a {kind}")
        versions = by_code.setdefault(code, [])
        if any(s == start for s, _, _ in versions):
            when = "the beginning" if start is None else str(e["effective_from"])
            raise CatalogError(
                f"{where}: {kind} {code} has two versions in force from {when}; "
                "versions of one code must start at different instants"
            )
        versions.append((start, i, e))
    rows = []
    for code, versions in by_code.items():
        versions.sort(key=lambda v: (v[0] is not None, v[0] or datetime.min.replace(tzinfo=UTC)))
        if versions[0][0] is not None:
            first = versions[0][2]["effective_from"]
            raise CatalogError(
                f"{where}: {kind} {code} has no price in force before {first}: give its first "
                "version no effective_from (in force from the beginning)"
            )
        merged: dict = {}
        for n, (start, _, e) in enumerate(versions):
            merged = merged | {k: v for k, v in e.items() if k != "effective_from"}
            what = f"{kind} {code}" + (f" from {e['effective_from']}" if start else "")
            try:
                fields = read(merged, f"{where}: {what}")
            except KeyError as exc:
                raise CatalogError(f"{where}: {what} lacks the field {exc}") from exc
            until = versions[n + 1][0] if n + 1 < len(versions) else None
            fingerprint = _fingerprint(kind, code, start, fields)
            rows.append(
                {"code": code}
                | fields
                | {
                    "version_id": int(fingerprint[:15], 16),
                    "effective_from": start,
                    "effective_until": until,
                    "fingerprint": fingerprint,
                }
            )
    return pl.DataFrame(rows, schema={"code": pl.String} | schema | VERSION_SCHEMA)


def _fingerprint(kind: str, code: str, start: datetime | None, fields: dict) -> str:
    """SHA-256 of what a version is: its entry, its instant and every field as read."""
    text = _content_json(
        {"kind": kind, "code": code, "from": start.isoformat() if start else None} | fields
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# a catalog is a few KB of TOML (the seed's 7 KB); past this a wrong file was named
MAX_CATALOG_BYTES = 1 << 20


def _catalog_text(path: Path, where: str) -> str:
    """The catalog file's text: a regular file (a link to one is fine) of at most
    MAX_CATALOG_BYTES, read up to that (ADBILL_CATALOG=/dev/zero read for ever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # (a pipe: never waited on)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # (before fdopen: a folder's error named fd)
            raise CatalogError(f"{where} is not a regular file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        data = f.read(MAX_CATALOG_BYTES + 1)
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{where} is larger than {MAX_CATALOG_BYTES >> 20} MiB: not a catalog")
    text = data.decode("utf-8")
    return text.removeprefix("\ufeff")  # (a byte-order mark, as editors on Windows write)


def load_catalog(path: Path | str = DEFAULT_CATALOG, tz: str = DEFAULT_TZ) -> Catalog:
    """Read the catalog file; fail with one sentence naming the entry if it cannot apply."""
    path = Path(path)
    where = f"catalog file {path}"
    try:
        raw = tomllib.loads(_catalog_text(path, where))
    except FileNotFoundError as exc:
        raise CatalogError(f"{where} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{where} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where} is not valid TOML: {exc}") from exc
    zone = ZoneInfo(tz)
    for table in raw:
        if table not in TABLES:
            close = difflib.get_close_matches(table, TABLES, n=1)
            hint = (
                f"did you mean {TABLES[close[0]]}?"
                if close
                else "known: " + ", ".join(TABLES.values())
            )
            raise CatalogError(f"{where} has an unknown table or key {table!r} ({hint})")
    for section in ("editions", "functions"):
        if section not in raw:
            raise CatalogError(f"{where} lacks the field '{section}'")
    settings = _settings(raw.get("settings", {}), where)
    editions = _versions("editions", raw["editions"], zone, where)
    packages = _versions("packages", raw.get("packages", []), zone, where)
    functions = _versions("functions", raw["functions"], zone, where)
    both = set(editions["code"]) & set(packages["code"])
    if both:
        raise CatalogError(f"{where} lists a product code twice (edition and package): {both}")
    unknown = set(functions["editions"].explode().drop_nulls()) - set(editions["code"])
    if unknown:
        raise CatalogError(f"{where}: functions name unknown editions {unknown}")
    return Catalog(
        editions=editions,
        packages=packages,
        functions=functions,
        period_days=settings["period_days"],
        package_validity_months=settings["package_validity_months"],
        source=where,
    )
