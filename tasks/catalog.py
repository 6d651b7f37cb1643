"""The price list (editions, packages, functions) read from the catalog data file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from tasks.settings import DEFAULT_CATALOG

QUANTITY_SCALE = 1_000_000  # quantities are kept as exact micro-units (6 decimal places)


class CatalogError(ValueError):
    """The catalog file is missing a field or holds an impossible value."""


@dataclass(frozen=True)
class Catalog:
    """Editions, packages and functions, as Polars frames ready to join."""

    editions: pl.DataFrame
    packages: pl.DataFrame
    functions: pl.DataFrame
    period_days: int
    package_validity_months: int

    def products(self) -> pl.DataFrame:
        """One row per purchasable product: code, source, price rules, credits, seats."""
        subs = self.editions.select(
            pl.col("code").alias("product"),
            pl.lit("subscription").alias("source"),
            pl.col("monthly_fee_cny").alias("unit_price_cny"),
            pl.col("credits_per_month").alias("credits"),
            "seats",
        )
        pkgs = self.packages.select(
            pl.col("code").alias("product"),
            pl.lit("package").alias("source"),
            pl.col("price_cny").alias("unit_price_cny"),
            "credits",
            "seats",
        )
        return pl.concat([subs, pkgs])


def _micro(value: str | int | float, what: str) -> int:
    d = Decimal(str(value))
    scaled = d * QUANTITY_SCALE
    if scaled != scaled.to_integral_value() or d <= 0:
        raise CatalogError(f"catalog: {what} must be positive with at most 6 decimals: {value}")
    return int(scaled)


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> Catalog:
    """Read the catalog file; fail with one clear sentence if it is malformed."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"catalog file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog file {path} is not valid TOML: {exc}") from exc
    try:
        settings = raw.get("settings", {})
        editions = pl.DataFrame(
            [
                {
                    "code": e["code"],
                    "monthly_fee_cny": Decimal(str(e["monthly_fee_cny"])),
                    "credits_per_month": int(e["credits_per_month"]),
                    "seats": int(e["seats"]),
                    "terms_months": [int(t) for t in e.get("terms_months", [1, 6, 12])],
                }
                for e in raw["editions"]
            ],
            schema={
                "code": pl.String,
                "monthly_fee_cny": pl.Decimal(18, 2),
                "credits_per_month": pl.Int64,
                "seats": pl.Int64,
                "terms_months": pl.List(pl.Int64),
            },
        )
        packages = pl.DataFrame(
            [
                {
                    "code": p["code"],
                    "price_cny": Decimal(str(p["price_cny"])),
                    "credits": int(p["credits"]),
                    "seats": int(p.get("seats", 0)),
                }
                for p in raw.get("packages", [])
            ],
            schema={
                "code": pl.String,
                "price_cny": pl.Decimal(18, 2),
                "credits": pl.Int64,
                "seats": pl.Int64,
            },
        )
        functions = pl.DataFrame(
            [
                {
                    "code": f["code"],
                    "category": f.get("category", ""),
                    "unit": f.get("unit", ""),
                    "unit_size_micro": _micro(f.get("unit_size", "1"), f"{f['code']}.unit_size"),
                    "credits_per_unit": int(f["credits_per_unit"]),
                    "whole_number": bool(f.get("whole_number", False)),
                    "allowed_quantities_micro": [
                        _micro(q, f"{f['code']}.allowed_quantities")
                        for q in f.get("allowed_quantities", [])
                    ],
                    "editions": list(f.get("editions", [])),
                }
                for f in raw["functions"]
            ],
            schema={
                "code": pl.String,
                "category": pl.String,
                "unit": pl.String,
                "unit_size_micro": pl.Int64,
                "credits_per_unit": pl.Int64,
                "whole_number": pl.Boolean,
                "allowed_quantities_micro": pl.List(pl.Int64),
                "editions": pl.List(pl.String),
            },
        )
    except KeyError as exc:
        raise CatalogError(f"catalog file {path} lacks the field {exc}") from exc
    codes = editions["code"].to_list() + packages["code"].to_list()
    if len(set(codes)) != len(codes) or functions["code"].n_unique() != functions.height:
        raise CatalogError(f"catalog file {path} lists a product or function code twice")
    unknown = set(functions["editions"].explode().drop_nulls()) - set(editions["code"])
    if unknown:
        raise CatalogError(f"catalog file {path}: functions name unknown editions {unknown}")
    return Catalog(
        editions=editions,
        packages=packages,
        functions=functions,
        period_days=int(settings.get("period_days", 30)),
        package_validity_months=int(settings.get("package_validity_months", 12)),
    )
