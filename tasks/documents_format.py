"""The texts of a statement's numbers, months and catalog codes, as its page and CSV show them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import polars as pl


def n(value) -> str:
    """Credits with thousands separators."""
    return f"{int(value or 0):,}"


def cny(value) -> str:
    """An amount of yuan with two decimals and thousands separators."""
    return f"{Decimal(value or 0):,.2f}"


def qty(value) -> str:
    """A quantity without trailing zeros (12.5, 30)."""
    d = Decimal(value or 0).normalize()
    return f"{d:,f}"


@cache
def csv_quantity(text: str) -> Decimal:
    """A quantity as the CSV writes it: a number (never neutralised as a formula), without
    thousands separators or trailing zeros. Made from qty's text, so str() of it is that text
    (a quantity has at most 6 decimals, where str() of a Decimal never turns scientific)."""
    return Decimal(qty(text).replace(",", ""))


@cache
def label(code: str) -> str:
    """A catalog code (function, product) as page text: image_to_video → Image to video."""
    return code.replace("_", " ").capitalize()


def month_end(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


@cache
def month_texts(month: date) -> tuple[str, str]:
    """The month as 2026-11 and as the page's period: November 2026 (2026-11-01 – 2026-11-30)."""
    period = f"{month:%B %Y} ({month.isoformat()} – {month_end(month).isoformat()})"
    return f"{month:%Y-%m}", period


def each(values: pl.Series, fmt: Callable[[Any], str]) -> pl.Series:
    """fmt(value) for every value, called once per distinct value."""
    distinct = values.unique()
    texts = [fmt(v) for v in distinct.to_list()]
    return values.replace_strict(distinct, texts, return_dtype=pl.String)
