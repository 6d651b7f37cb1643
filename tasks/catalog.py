"""The price list (editions, packages, functions) read from the catalog data file: every
version of every entry, each in force from its instant until the next version's."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from tasks.settings import DEFAULT_CATALOG

QUANTITY_SCALE = 1_000_000  # quantities are kept as exact micro-units (6 decimal places)
DEFAULT_TZ = "Asia/Shanghai"  # billing-rules §1; a run passes its own billing zone

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


def _decimal(value, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CatalogError(f"{what} must be a number, not {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise CatalogError(f"{what} must be a number, not {value!r}") from exc
    if not d.is_finite():
        raise CatalogError(f"{what} must be a number, not {value!r}")
    return d


def _money(value, what: str) -> Decimal:
    d = _decimal(value, what)
    if d < 0 or d != d.quantize(Decimal("0.01")) or d >= Decimal(10) ** 16:
        raise CatalogError(f"{what} must be an amount >= 0 with at most 2 decimals, not {value!r}")
    return d.quantize(Decimal("0.01"))


def _count(value, what: str, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CatalogError(f"{what} must be a whole number >= {least}, not {value!r}")
    return value


def _instant(value, zone: ZoneInfo, what: str) -> datetime:
    """An effective instant: a TOML date or datetime (or the same as text); one without an
    offset is read in the billing zone (a date: its 00:00)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value else value
            value = date.fromisoformat(value) if isinstance(value, str) else value
        except ValueError as exc:
            raise CatalogError(f"{what} is not a date or an instant: {value!r}") from exc
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone).astimezone(UTC)
    raise CatalogError(f"{what} is not a date or an instant: {value!r}")


def _edition(e: dict, what: str) -> dict:
    terms = e.get("terms_months", [1, 6, 12])
    if not isinstance(terms, list) or not terms:
        raise CatalogError(f"{what}: terms_months must be a list of whole numbers >= 1")
    return {
        "monthly_fee_cny": _money(e["monthly_fee_cny"], f"{what}: monthly_fee_cny"),
        "credits_per_month": _count(e["credits_per_month"], f"{what}: credits_per_month", 1),
        "seats": _count(e["seats"], f"{what}: seats"),
        "terms_months": sorted({_count(t, f"{what}: terms_months", 1) for t in terms}),
    }


def _package(p: dict, what: str) -> dict:
    return {
        "price_cny": _money(p["price_cny"], f"{what}: price_cny"),
        "credits": _count(p["credits"], f"{what}: credits", 1),
        "seats": _count(p.get("seats", 0), f"{what}: seats"),
    }


def _function(f: dict, what: str) -> dict:
    allowed = f.get("allowed_quantities", [])
    editions = f.get("editions", [])
    if not isinstance(allowed, list) or not isinstance(editions, list):
        raise CatalogError(f"{what}: allowed_quantities and editions must be lists")
    return {
        "category": str(f.get("category", "")),
        "unit": str(f.get("unit", "")),
        "unit_size_micro": _micro(f.get("unit_size", "1"), f"{what}: unit_size"),
        "credits_per_unit": _count(f["credits_per_unit"], f"{what}: credits_per_unit"),
        "whole_number": bool(f.get("whole_number", False)),
        "allowed_quantities_micro": [_micro(q, f"{what}: allowed_quantities") for q in allowed],
        "editions": [str(x) for x in editions],
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
    for i, e in enumerate(entries, 1):
        code = e.get("code")
        if not isinstance(code, str) or not code:
            raise CatalogError(f"{where}: {section} entry {i} has no code")
        what = f"{kind} {code}"
        start = None
        if "effective_from" in e:
            start = _instant(e["effective_from"], zone, f"{where}: {what}: effective_from")
            what += f" from {e['effective_from']}"
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


def load_catalog(path: Path | str = DEFAULT_CATALOG, tz: str = DEFAULT_TZ) -> Catalog:
    """Read the catalog file; fail with one sentence naming the entry if it cannot apply."""
    path = Path(path)
    where = f"catalog file {path}"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"{where} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{where} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where} is not valid TOML: {exc}") from exc
    zone = ZoneInfo(tz)
    for section in ("editions", "functions"):
        if section not in raw:
            raise CatalogError(f"{where} lacks the field '{section}'")
    settings = raw.get("settings", {})
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
        period_days=_count(settings.get("period_days", 30), f"{where}: period_days", 1),
        package_validity_months=_count(
            settings.get("package_validity_months", 12), f"{where}: package_validity_months", 1
        ),
    )
