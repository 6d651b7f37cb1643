"""The common usage line read in one compiled pass (issue 16, deliverable 1).

A line in the plain form producers write — one JSON object on the line, the seven fields
of billing-rules §3 each once and nothing else, strings without escapes or control
characters, the quantity a plain positive number below 10^9 with at most 6 decimal places,
the status `succeeded` or `failed`, the timestamp `YYYY-MM-DDTHH:MM:SS[.ffffff]` with `Z` or
a `±HH:MM` offset within §3's limits — is parsed, typed and checked here, in one scan of
the batch's bytes compiled by Numba. Such a line passes every check of the row schema, so
it is `clean`, and its values are the ones sql/extract_events.sql gives it (a property
test holds the two together, tests/test_fast_lines.py).

Every other line — another form of JSON (escapes, exponents, extra or repeated fields, a
lowercase `t`), or one breaking a rule — is not decided here: it takes the exact per-field
path (sql/extract_events.sql, then the row schema), which names its §3 reason. So this pass
only ever says "clean, with these values" or "ask the exact path"; it never rejects.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# the text fields, in the order of the kernels' columns (tasks/fast_kernels.py KEYS: these,
# then quantity)
TEXT_FIELDS = ("event_id", "customer_id", "account_id", "function", "status", "occurred_at")
# the ones a scanned line gives as text (its occurred_at is given as the instant)
OUT_FIELDS = TEXT_FIELDS[:5]
THREADS = 2  # threads scanning a batch's lines (the kernels release the GIL)
# Loading the kernels costs ~1.2 s of a process's CPU (importing Numba, then its cached
# machine code; ~1 s more where Numba's modules have no bytecode yet) and the scanner saves
# ~1 s of wall time per million lines (docs/performance.md), so an ingest of less new
# usage than this (~860,000 lines) takes the exact path alone, as does a smaller batch
MIN_USAGE_BYTES = 160 << 20
MIN_BATCH_LINES = 100_000


class Unavailable(Exception):
    """The kernels could not be loaded (Numba missing or failing here): the batch takes the
    exact path, which gives the same answer."""


def _forced() -> int | None:
    """ADBILL_SCAN_MIN_LINES as a line count; unset, or not a whole number >= 0: None."""
    from tasks.settings import whole_number

    # (str.isdigit() took `²`, which int() then refused mid-ingest: ASCII digits only)
    return whole_number(os.environ.get("ADBILL_SCAN_MIN_LINES", ""))


def start(new_usage_bytes: int) -> bool:
    """Whether this ingest scans its large batches here (its new usage files hold about
    `new_usage_bytes` of lines); if so the kernels are loaded on a thread meanwhile.
    ADBILL_SCAN_MIN_LINES=N scans every batch of N lines or more, whatever the size (the
    tests run small batches through both paths)."""
    forced = _forced()
    if forced is None and new_usage_bytes < MIN_USAGE_BYTES:
        return False
    if _failed is not None:
        return False
    global _warming
    if _warming is None and forced is None:
        _warming = threading.Thread(target=_warm_up_quietly, name="scan-warm-up", daemon=True)
        _warming.start()
    return True


def takes(lines: int) -> bool:
    """Whether a batch of this many lines is scanned (in an ingest `start` said yes to)."""
    forced = _forced()
    return _failed is None and lines >= (forced if forced is not None else MIN_BATCH_LINES)


def _warm_up_quietly() -> None:
    with contextlib.suppress(Unavailable):  # (the batch will take the exact path)
        _kernels()


_warming: threading.Thread | None = None


def _kernels():
    """tasks/fast_kernels.py, imported on first use (Numba costs about a second), its
    kernels loaded (compiled the first time); Unavailable when that fails, and from then on
    in this process."""
    global _failed, _loaded
    if _failed is not None:
        raise Unavailable(_failed)
    if _loaded is None:
        try:
            from tasks import fast_kernels

            fast_kernels.load()
        except Exception as exc:  # (ImportError, Numba's errors: the exact path will do)
            _failed = f"{type(exc).__name__}: {exc}"
            raise Unavailable(_failed) from exc
        _loaded = fast_kernels
    return _loaded


_failed: str | None = None  # why the kernels could not be loaded here
_loaded = None  # tasks/fast_kernels.py once its kernels are loaded


def _buffers(raw: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's bytes and its n+1 offsets (int64), without copying the bytes."""
    if raw.null_count:
        raw = raw.fill_null("")
    width = np.int64 if pa.types.is_large_string(raw.type) else np.int32
    _, off_buf, data_buf = raw.buffers()
    offsets = np.frombuffer(off_buf, width, len(raw) + 1, raw.offset * np.dtype(width).itemsize)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def scan_lines(rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A batch's rows (line_no, file_id, file_line, raw, utf8_ok) split in two: the lines
    of the plain form, read here — (line_no, file_id, file_line, event_id, customer_id,
    account_id, function, status, quantity_micro, occurred_at_ts), every one clean — and
    the rows of every other line, unchanged, for the exact path."""
    k = _kernels()
    raw = rows["raw"].combine_chunks()
    utf8 = rows["utf8_ok"].combine_chunks().to_numpy(zero_copy_only=False).astype(np.bool_)
    data, offsets = _buffers(raw)
    n = len(raw)
    ok = np.zeros(n, np.bool_)
    micro = np.zeros(n, np.int64)
    at = np.zeros(n, np.int64)
    # (where each text field starts in the batch's bytes, and its length: a batch's bytes
    # are at most CHUNK_BYTES and a line at most 8 MiB, tasks/inbox_files.py)
    span = np.int32 if len(data) < (1 << 31) else np.int64
    starts = np.zeros((n, len(TEXT_FIELDS)), span)
    lengths = np.zeros((n, len(TEXT_FIELDS)), span)
    with ThreadPoolExecutor(THREADS, thread_name_prefix="scan") as pool:
        list(
            pool.map(
                lambda r: k.scan(data, offsets, utf8, r[0], r[1], ok, micro, at, starts, lengths),
                _ranges(n, 4 * THREADS),
            )
        )
        picked = np.flatnonzero(ok)

        def field(j: int) -> pa.Array:
            offs, text = k.gather(data, starts, lengths, picked, j)
            return pa.StringArray.from_buffers(len(picked), pa.py_buffer(offs), pa.py_buffer(text))

        texts = list(pool.map(field, range(len(OUT_FIELDS))))
    mask = pa.array(ok)
    fast = {name: pc.filter(rows[name], mask) for name in ("line_no", "file_id", "file_line")}
    fast.update(zip(OUT_FIELDS, texts, strict=True))
    fast["quantity_micro"] = pa.array(micro[picked])
    fast["occurred_at_ts"] = pa.array(at[picked], pa.timestamp("us", tz="UTC"))
    return pa.table(fast), rows.filter(pc.invert(mask))
