"""Each statement's chart of daily credits used (and opened as arrears), as inline SVG."""

from __future__ import annotations

from datetime import date
from functools import cache

import polars as pl
from markupsafe import Markup

from tasks.documents_format import each, month_end, n

W, H, LEFT, TOP, BOTTOM = 680, 170, 44, 12, 22  # the chart's box and margins, in px
BASE = H - BOTTOM  # y of the axis
PLOT_H = H - TOP - BOTTOM  # the height of the highest day's bar
HEAD = (
    f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" '
    f'height="{H}" xmlns="http://www.w3.org/2000/svg" role="img" '
    'aria-label="Daily credits used in the month">'
    f'<line x1="{LEFT}" y1="{BASE}" x2="{W - 8}" y2="{BASE}" '
    'class="axis"/>'
)
ZERO = f'<text x="{LEFT - 6}" y="{BASE}" class="tick" text-anchor="end">0</text>'
USED_BAR = (
    '<rect x="{}" y="{}" width="{}" height="{}" class="used"><title>{}: {} credits '
    "used</title></rect>"
)
OWED_BAR = (
    '<rect x="{}" y="{}" width="{}" height="{}" class="owed"><title>{}: {} credits '
    "in arrears</title></rect>"
)
DAYS_SCHEMA = {
    "customer_key": pl.Int64,
    "month": pl.Date,
    "day": pl.Date,
    "used": pl.Int64,
    "arrears_opened": pl.Int64,
}


def chart_svg(s: dict) -> Markup:
    """The statement's chart: the one made with the statement's data, or made from its
    `days` ({day: {used, arrears_opened}})."""
    if "chart" in s:
        return s["chart"]
    days = pl.DataFrame(
        [
            {
                "customer_key": 0,
                "month": s["month"],
                "day": d,
                "used": r["used"],
                "arrears_opened": r["arrears_opened"],
            }
            for d, r in s.get("days", {}).items()
        ],
        schema=DAYS_SCHEMA,
    )
    return chart_svgs([(0, s["month"])], days)[0]


def chart_svgs(keys: list[tuple], days: pl.DataFrame) -> list[Markup]:
    """The chart of each statement of `keys` ((customer_key, month)), from `days` (one row per
    customer, month and day with figures: customer_key, month, day, used, arrears_opened).

    A bar per day with figures, its height against the statement's highest day; the month's
    tick labels; the bars and labels in day order. Built for all statements at once (a month
    of 10,000 customers is 310,000 days), not statement by statement.

    The one piece of a page made outside its template, hence Markup: it holds only numbers
    and dates this module formats, never a text from the data."""
    if not keys:
        return []
    ks = pl.DataFrame(
        {"customer_key": [k[0] for k in keys], "month": [k[1] for k in keys]},
        schema={"customer_key": pl.Int64, "month": pl.Date},
    ).with_row_index("order")
    d = _day_figures(days)
    peaks = d.group_by("customer_key", "month").agg(peak=(pl.col("used") + pl.col("owed")).max())
    ks = (
        ks.join(peaks, on=["customer_key", "month"], how="left")
        .with_columns(pl.col("peak").fill_null(0))
        .sort("order")
    )
    cells = (
        ks.join(_month_grid(ks["month"].unique().to_list()), on="month")
        .join(d, on=["customer_key", "month", "i"], how="left")
        .with_columns(pl.col("used", "owed").fill_null(0))
    )
    body = (
        cells.select("order", "i", "tick")
        .join(_bars(cells), on=["order", "i"], how="left")
        .sort("order", "i")
        .group_by("order", maintain_order=True)
        .agg(pl.concat_str("tick", pl.col("bar").fill_null("")).str.join(""))
    )
    head = f'{HEAD}<text x="{LEFT - 6}" y="{TOP + 4}" class="tick" '
    return [
        Markup(f'{head}text-anchor="end">{label}</text>{ZERO}{text}</svg>')
        for label, text in zip(each(ks["peak"], n).to_list(), body["tick"].to_list(), strict=True)
    ]


def _day_figures(days: pl.DataFrame) -> pl.DataFrame:
    """The days with figures: the day's index in its month, its date as text, used and owed."""
    return days.select(
        pl.col("customer_key").cast(pl.Int64),
        pl.col("month").cast(pl.Date),
        i=(pl.col("day").cast(pl.Date) - pl.col("month").cast(pl.Date))
        .dt.total_days()
        .cast(pl.Int32),
        day=pl.col("day").cast(pl.Date).dt.strftime("%Y-%m-%d"),
        used=pl.col("used").cast(pl.Int64).fill_null(0),
        owed=pl.col("arrears_opened").cast(pl.Int64).fill_null(0),
    )


def _month_grid(months: list[date]) -> pl.DataFrame:
    """Every day of each month: its index, tick label and bar position (x, width)."""
    grid = []
    for month in months:
        ticks, bars = _chart_month(month)
        grid.append(
            pl.DataFrame(
                {
                    "month": [month] * len(bars),
                    "i": list(range(len(bars))),
                    "tick": ticks,
                    "x": _floats(pl.Series([x for x, _ in bars])),
                    "w": _floats(pl.Series([w for _, w in bars])),
                },
                schema_overrides={"month": pl.Date, "i": pl.Int32},
            )
        )
    return pl.concat(grid)


@cache
def _chart_month(first: date) -> tuple[list[str], list[tuple[float, float]]]:
    """What a month's chart draws for every customer: each day's tick label (or "") and
    the x and width of each day's bar."""
    ndays = month_end(first).day
    step = (W - LEFT - 8) / ndays
    ticks, bars = [], []
    for i in range(ndays):
        x = LEFT + i * step + step * 0.15
        w = step * 0.7
        bars.append((x, w))
        ticks.append(
            f'<text x="{x + w / 2:.1f}" y="{H - 6}" class="tick" '
            f'text-anchor="middle">{i + 1}</text>'
            if i == 0 or (i + 1) % 5 == 0 or i == ndays - 1
            else ""
        )
    return ticks, bars


def _bars(cells: pl.DataFrame) -> pl.DataFrame:
    """The bars of the days with figures (order, i, bar): used from the axis up, arrears
    stacked on top, heights against the statement's peak."""
    scale = pl.when(pl.col("peak") > 0).then(PLOT_H / pl.col("peak")).otherwise(0.0)
    bars = cells.filter((pl.col("used") != 0) | (pl.col("owed") != 0))
    bars = bars.with_columns(h_used=pl.col("used") * scale, h_owed=pl.col("owed") * scale)
    bars = bars.with_columns(y=(TOP + PLOT_H) - pl.col("h_used"))
    bars = bars.with_columns(
        y_used=_floats(bars["y"]),
        y_owed=_floats(bars["y"] - bars["h_owed"]),
        h_used=_floats(bars["h_used"]),
        h_owed=_floats(bars["h_owed"]),
        n_used=each(bars["used"], n),
        n_owed=each(bars["owed"], n),
    )
    used = pl.format(USED_BAR, "x", "y_used", "w", "h_used", "day", "n_used")
    owed = pl.format(OWED_BAR, "x", "y_owed", "w", "h_owed", "day", "n_owed")
    return bars.select(
        "order",
        "i",
        bar=pl.when(pl.col("used") != 0).then(used).otherwise(pl.lit(""))
        + pl.when(pl.col("owed") != 0).then(owed).otherwise(pl.lit("")),
    )


def _floats(values: pl.Series) -> pl.Series:
    """Each number with one decimal, exactly as Python's f"{x:.1f}" writes it.

    Tenths are rounded in Polars; a number within a hair of half a tenth (where x * 10 may
    round the other way than x's exact value does), 0 or below 0 is written by Python."""
    v = values.cast(pl.Float64).rename("v")
    tenths = v * 10
    whole = (tenths + 0.5).floor()
    odd = ((tenths - tenths.floor() - 0.5).abs() < 1e-6) | (v <= 0) | ~v.is_finite()
    q = whole.cast(pl.Int64, strict=False).fill_null(0)
    out = pl.select(pl.format("{}.{}", q // 10, q % 10)).to_series().rename(values.name)
    if odd.any():
        at = odd.arg_true()
        out = out.scatter(at, [f"{x:.1f}" for x in v.gather(at).to_list()])
    return out
