"""The compiled kernels of tasks/fast_lines.py (Numba, cached on disk beside this file):
imported only by an ingest with enough new usage to gain from them, as loading Numba costs
about a second (tasks/fast_lines.py MIN_USAGE_BYTES)."""

import numba as nb
import numpy as np

from tasks.fast_lines import TEXT_FIELDS

# bytes a JSON string of the plain form holds as they are: not `"`, not a backslash (an
# escape asks the exact path), not a control character (U+0000-U+001F, U+007F: bad_id in an
# id; JSON forbids the first ones raw anyway)
_PLAIN = np.ones(256, np.bool_)
_PLAIN[:32] = False
_PLAIN[34] = False
_PLAIN[92] = False
_PLAIN[127] = False

# the keys of the plain form, their bytes padded with zeros (scan's output columns: the six
# text fields in tasks/fast_lines.py TEXT_FIELDS order, then quantity)
KEYS = (*TEXT_FIELDS, "quantity")
_KEY_BYTES = np.zeros((len(KEYS), max(len(k) for k in KEYS)), np.uint8)
for _i, _k in enumerate(KEYS):
    _KEY_BYTES[_i, : len(_k)] = np.frombuffer(_k.encode(), np.uint8)
_KEY_LENGTHS = np.array([len(k) for k in KEYS], np.int64)
_SUCCEEDED = np.frombuffer(b"succeeded", np.uint8).copy()
_FAILED = np.frombuffer(b"failed", np.uint8).copy()


@nb.njit(cache=True, nogil=True, inline="always")
def skip_space(data, p, end):
    while p < end and (data[p] == 32 or data[p] == 9):
        p += 1
    return p


@nb.njit(cache=True, nogil=True, inline="always")
def days_from_civil(y, m, d):
    # days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = m + 9 if m <= 2 else m - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@nb.njit(cache=True, nogil=True, inline="always")
def digits(data, p, n):
    # the value of n decimal digits at p, or -1
    v = 0
    for k in range(n):
        c = data[p + k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@nb.njit(cache=True, nogil=True)
def timestamp(data, p, end):
    """Microseconds since the epoch (UTC) of `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`
    spanning exactly [p, end), a year 2000-2099 and an offset within ±14:00; else
    (ok=False, 0)."""
    n = end - p
    if n < 20:
        return False, 0
    if data[p + 4] != 45 or data[p + 7] != 45 or data[p + 10] != 84:  # - - T
        return False, 0
    if data[p + 13] != 58 or data[p + 16] != 58:  # : :
        return False, 0
    y = digits(data, p, 4)
    mo = digits(data, p + 5, 2)
    d = digits(data, p + 8, 2)
    h = digits(data, p + 11, 2)
    mi = digits(data, p + 14, 2)
    s = digits(data, p + 17, 2)
    if y < 2000 or y > 2099 or mo < 1 or mo > 12 or d < 1:
        return False, 0
    if h < 0 or h > 23 or mi < 0 or mi > 59 or s < 0 or s > 59:
        return False, 0
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    month_days = 31
    if mo == 2:
        month_days = 29 if leap else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        month_days = 30
    if d > month_days:
        return False, 0
    q = p + 19
    micros = 0
    if q < end and data[q] == 46:  # . then 1-6 digits
        q += 1
        k = 0
        while q < end and 48 <= data[q] <= 57:
            if k == 6:
                return False, 0
            micros = micros * 10 + (data[q] - 48)
            q += 1
            k += 1
        if k == 0:
            return False, 0
        for _ in range(6 - k):
            micros *= 10
    offset = 0
    if q < end and data[q] == 90:  # Z
        q += 1
    elif q + 6 <= end and (data[q] == 43 or data[q] == 45) and data[q + 3] == 58:
        oh = digits(data, q + 1, 2)
        om = digits(data, q + 4, 2)
        if oh < 0 or om < 0 or om > 59 or oh > 14 or (oh == 14 and om != 0):
            return False, 0
        offset = oh * 3600 + om * 60
        if data[q] == 45:
            offset = -offset
        q += 6
    else:
        return False, 0
    if q != end:
        return False, 0
    seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    return True, seconds * 1000000 + micros


@nb.njit(cache=True, nogil=True, inline="always")
def same_bytes(data, p, n, word):
    if n != word.shape[0]:
        return False
    for j in range(n):
        if data[p + j] != word[j]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def line(data, p, end, starts, lengths, i):
    """One line [p, end): (ok, quantity in micro-units, occurred_at in µs); the text
    fields' byte spans written to starts[i], lengths[i]."""
    p = skip_space(data, p, end)
    if p >= end or data[p] != 123:  # {
        return False, 0, 0
    p = skip_space(data, p + 1, end)
    seen = 0
    micro = 0
    guess = 0
    while True:
        if p >= end or data[p] != 34:  # "
            return False, 0, 0
        p += 1
        # which key: each compared with the bytes here, closing quote included, starting
        # with the one after the last (producers write the fields in one order)
        k = -1
        for t in range(7):
            c = guess + t
            if c >= 7:
                c -= 7
            n = _KEY_LENGTHS[c]  # (the key's bytes, then its closing quote)
            if p + n < end and data[p + n] == 34 and same_bytes(data, p, n, _KEY_BYTES[c, :n]):
                k = c
                break
        if k < 0 or (seen >> k) & 1:
            return False, 0, 0  # an extra or repeated field, an escape: the exact path
        guess = k + 1
        seen |= 1 << k
        p = skip_space(data, p + _KEY_LENGTHS[k] + 1, end)
        if p >= end or data[p] != 58:  # :
            return False, 0, 0
        p = skip_space(data, p + 1, end)
        if p >= end:
            return False, 0, 0
        if k == 6:  # quantity: 0 or [1-9][0-9]{0,8}, then . and digits
            c = data[p]
            if c < 48 or c > 57:
                return False, 0, 0
            whole = c - 48
            p += 1
            n = 1
            if c != 48:
                while p < end and 48 <= data[p] <= 57:
                    if n == 9:
                        return False, 0, 0  # 10^9 or more: the exact path
                    whole = whole * 10 + (data[p] - 48)
                    p += 1
                    n += 1
            frac = 0
            if p < end and data[p] == 46:  # .
                p += 1
                n = 0
                while p < end and 48 <= data[p] <= 57:
                    if n < 6:
                        frac = frac * 10 + (data[p] - 48)
                    elif data[p] != 48:
                        return False, 0, 0  # a 7th decimal place: the exact path
                    p += 1
                    n += 1
                if n == 0:
                    return False, 0, 0
                for _ in range(6 - min(n, 6)):
                    frac *= 10
            if p < end and (data[p] == 101 or data[p] == 69):  # an exponent
                return False, 0, 0
            micro = whole * 1000000 + frac
            if micro <= 0:
                return False, 0, 0
        else:  # a string without escapes or control characters
            if data[p] != 34:
                return False, 0, 0
            p += 1
            s0 = p
            while p < end and _PLAIN[data[p]]:
                p += 1
            if p >= end or data[p] != 34:
                return False, 0, 0
            starts[i, k] = s0
            lengths[i, k] = p - s0
            p += 1
        p = skip_space(data, p, end)
        if p >= end:
            return False, 0, 0
        if data[p] == 44:  # ,
            p = skip_space(data, p + 1, end)
            continue
        if data[p] == 125:  # }
            p = skip_space(data, p + 1, end)
            if p != end or seen != 127:
                return False, 0, 0
            break
        return False, 0, 0
    for k in range(3):  # the ids: 1-200 characters (bytes bound them)
        if lengths[i, k] < 1 or lengths[i, k] > 200:
            return False, 0, 0
    if not (
        same_bytes(data, starts[i, 4], lengths[i, 4], _SUCCEEDED)
        or same_bytes(data, starts[i, 4], lengths[i, 4], _FAILED)
    ):
        return False, 0, 0
    ok, at = timestamp(data, starts[i, 5], starts[i, 5] + lengths[i, 5])
    if not ok:
        return False, 0, 0
    return True, micro, at


@nb.njit(cache=True, nogil=True)
def scan(data, offsets, utf8_ok, lo, hi, ok, micro, at, starts, lengths):
    """Lines lo..hi-1 of a batch (their bytes data[offsets[i]:offsets[i + 1]]): ok[i] when
    line i is of the plain form and passes its checks, then micro[i] (quantity in
    micro-units), at[i] (occurred_at, µs since the epoch) and its text fields' byte spans
    starts[i], lengths[i]. The GIL is released: threads scan their own ranges."""
    for i in range(lo, hi):
        if utf8_ok[i]:
            ok[i], micro[i], at[i] = line(data, offsets[i], offsets[i + 1], starts, lengths, i)


@nb.njit(cache=True, nogil=True)
def gather(data, starts, lengths, rows, k):
    """Text field k of the given rows as an Arrow string array's buffers: (offsets, int32,
    rows + 1; the fields' bytes one after another)."""
    n = rows.shape[0]
    offsets = np.empty(n + 1, np.int32)
    total = 0
    offsets[0] = 0
    for j in range(n):
        total += lengths[rows[j], k]
        offsets[j + 1] = total
    text = np.empty(total, np.uint8)
    for j in range(n):
        r = rows[j]
        s = starts[r, k]
        o = offsets[j]
        for b in range(lengths[r, k]):
            text[o + b] = data[s + b]
    return offsets, text


def load() -> None:
    """Compile (or load from the cache) the kernels for the types they are called with."""
    data = np.frombuffer(b"{}", np.uint8)
    offsets = np.array([0, 2], np.int64)
    spans = np.zeros((1, 6), np.int32)
    ok = np.zeros(1, np.bool_)
    numbers = np.zeros(1, np.int64)
    scan(data, offsets, ok, 0, 1, ok, numbers, numbers, spans, spans)
    gather(data, spans, spans, np.zeros(0, np.int64), 0)
