"""Bad usage lines of every reject reason of billing-rules §3, each made from a good event of
the same day and put in its place; a few good lines of a day delivered again the next."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tasks.synthetic.customers import Customers
from tasks.synthetic.model import MICRO, Model

EVENT_KINDS = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "unknown_function",
    "quantity_not_positive",
    "quantity_not_allowed",
    "fractional_whole_number",
    "timestamp_without_offset",
    "unknown_customer",
    "not_entitled",
    "exact_duplicate",
    "duplicate_conflict",
)
FIELDS = ("event_id", "customer_id", "account_id", "function", "quantity", "status", "occurred_at")
DUPLICATES = ("exact_duplicate", "duplicate_conflict")
JSON = {"separators": (",", ":")}


def bad_context(model: Model, cust: Customers) -> tuple[list[str], dict]:
    """The kinds of bad line this catalog and customer base allow, and what it takes to write
    them (an unknown function, a disallowed quantity, customers not entitled)."""
    ctx: dict = {"n": cust.n, "width": len(cust.ids[0]) - 1 if cust.ids else 5}
    ctx["unknown_fn"] = next(s for s in ("video_upscale", "upscale_x") if s not in model.codes)
    if allowed := [f for f in model.fns if f["allowed_quantities_micro"]]:
        ok = set(allowed[0]["allowed_quantities_micro"])
        ctx["allowed"] = (allowed[0]["code"], next(v for v in (12, 7, 11) if v * MICRO not in ok))
    ctx["whole"] = [f["code"] for f in model.fns if f["whole_number"]]
    if model.restricted:
        r = model.fns[model.restricted[0]]
        free = [c for c, h in enumerate(cust.held) if h and not set(h) & set(r["editions"])]
        basic = [c for c in free if set(cust.held[c]) == {model.editions[0]["code"]}]
        ctx["restricted"], ctx["plain"] = r["code"], [cust.ids[c] for c in basic or free]
    need = {"quantity_not_allowed": "allowed", "fractional_whole_number": "whole"}
    need["not_entitled"] = "plain"
    return [k for k in EVENT_KINDS if k not in need or ctx.get(need[k])], ctx


def bad_line(kind: str, ev: dict, g: int, ctx: dict) -> str:
    """A bad line of the given kind made from a good event (g: the bad line's number)."""
    if kind == "malformed_json":
        s = json.dumps(ev, **JSON)
        return s[: len(s) // 2]
    ev = dict(ev)
    if kind == "missing_field":
        del ev[FIELDS[g % len(FIELDS)]]
    elif kind == "wrong_type":
        ev["quantity"] = "abc"
    elif kind == "unknown_function":
        ev["function"] = ctx["unknown_fn"]
    elif kind == "quantity_not_positive":
        ev["quantity"] = 0 if g % 2 else -5
    elif kind == "quantity_not_allowed":
        ev["function"], ev["quantity"] = ctx["allowed"]
    elif kind == "fractional_whole_number":
        ev["function"], ev["quantity"] = ctx["whole"][g % len(ctx["whole"])], 2.5
    elif kind == "timestamp_without_offset":
        ev["occurred_at"] = ev["occurred_at"][:23]
    elif kind == "unknown_customer":
        ev["customer_id"] = cid = f"c{ctx['n'] + 1001 + g:0{ctx['width']}d}"
        ev["account_id"] = cid + "-a1"
    elif kind == "not_entitled":
        cid = ctx["plain"][g % len(ctx["plain"])]
        ev |= {"customer_id": cid, "account_id": cid + "-a1", "function": ctx["restricted"]}
    elif kind == "duplicate_conflict":  # same event_id, other status
        ev["status"] = "failed" if ev["status"] == "succeeded" else "succeeded"
    return json.dumps(ev, **JSON)


@dataclass
class _Day:
    pos: np.ndarray  # sorted positions of the day's bad lines
    kinds: list[str]
    g: int  # the number of the day's first bad line
    event: Callable[[int], dict]
    last: tuple = ()  # the last chunk's lines, first and end position


@dataclass
class BadLines:
    """Plants bad lines day after day and counts them by kind; with `again`, a few good lines
    of each day's end are delivered again (exact duplicates) the next day."""

    kinds: list[str]
    ctx: dict
    again: bool = True
    counted: dict[str, int] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    g: int = 0
    _day: _Day | None = None

    def start_day(self, rng: np.random.Generator, n: int, nb: int, event) -> None:
        """Choose where the day's nb bad lines go among its n lines, and their kinds."""
        pos = np.sort(rng.choice(n, nb, replace=False)) if nb else np.zeros(0, dtype=np.int64)
        kinds = [self.kinds[(self.g + t) % len(self.kinds)] for t in rng.permutation(nb)]
        self._day = _Day(pos, kinds, self.g, event)
        self.g += nb

    def spoil(self, lines: pl.Series, cs: int, ce: int) -> pl.Series:
        """The chunk of lines cs..ce with its bad lines in place."""
        day = self._day
        a, b = (int(x) for x in np.searchsorted(day.pos, [cs, ce]))
        bad = self._chunk(day, a, b, cs, ce, lines)
        for kind, _ in bad.values():
            self.counted[kind] = self.counted.get(kind, 0) + 1
        if bad:
            vals = pl.Series([line for _, line in bad.values()], dtype=pl.String)
            lines = lines.scatter(np.array(list(bad)) - cs, vals)
        day.last = (lines, cs, ce)
        return lines

    def end_day(self) -> None:
        """Keep a few good lines of the day's end to deliver again the next day."""
        if self.again and self._day and self._day.last:
            lines, cs, ce = self._day.last
            bad = set(self._day.pos.tolist())
            good = [i for i in range(max(cs, ce - 64), ce) if i not in bad]
            self.saved = [lines[i - cs] for i in good[:: max(1, len(good) // 4)]]

    def _chunk(self, day: _Day, a: int, b: int, cs: int, ce: int, lines) -> dict[int, tuple]:
        """(kind, line) for each bad position of the chunk; duplicates copy other lines."""
        out, bad = {}, day.pos
        for t, (i, kind) in enumerate(zip(bad[a:b].tolist(), day.kinds[a:b], strict=True)):
            gi = day.g + a + t
            if kind not in DUPLICATES:
                out[i] = kind, bad_line(kind, day.event(i), gi, self.ctx)
                continue
            j = i - 1 - (gi * 7919 % min(20, i - cs)) if i > cs else i + 1
            while cs <= j < ce and _is_bad(bad, j):
                j += -1 if j < i else 1
            if kind == "exact_duplicate" and self.saved and gi % 2:  # from the day before
                out[i] = kind, self.saved[gi % len(self.saved)]
            elif not cs <= j < ce:
                out[i] = "malformed_json", bad_line("malformed_json", day.event(i), gi, self.ctx)
            elif kind == "exact_duplicate":
                out[i] = kind, lines[j - cs]
            else:
                out[i] = kind, bad_line(kind, day.event(j), gi, self.ctx)
        return out


def _is_bad(pos: np.ndarray, j: int) -> bool:
    k = int(np.searchsorted(pos, j))
    return k < len(pos) and int(pos[k]) == j
