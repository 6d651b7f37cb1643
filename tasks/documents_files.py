"""Files under <data-dir>/out: customer ids as safe file names, CSV cells no spreadsheet runs,
and writes a reader never sees half done."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

# an id used as its own file name: ASCII letters, digits, - _ . (not first), 1 to 100 of them
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_MAX = 60  # slug + "~" + 10 hex digits + ".html": 76 bytes, far below NAME_MAX (255)
HASH_DIGITS = 10
# a text cell beginning with one of these is a formula (or starts one) in a spreadsheet; so
# is one whose spaces before it an importer trims, and the full-width forms some convert
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
LEADING_SPACES = " \u00a0\u3000"
# names Windows keeps for devices, in any case and with any extension (CON.html is the
# console there): an id that is one is named by its slug and hash
WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{p}{n}" for p in ("com", "lpt") for n in range(1, 10)]
)


def safe_file_stem(customer_id: str) -> str:
    """The customer's documents' file name without its extension (interfaces.md, Data dir).

    The id itself when it is 1-100 ASCII letters, digits, `-`, `_` and `.` and does not begin
    with `.`; otherwise a readable ASCII slug of it, `~` and the first 10 hex digits of the
    SHA-256 of its UTF-8 bytes (safe_file_stems gives ids whose 10 digits would meet a
    longer hash). A plain id has no `~`, so it never meets a hashed name; neither holds a
    `/` or begins with `.`, so no id names a path outside its month's folder (nor a hidden
    or temporary file there)."""
    if _PLAIN_ID.fullmatch(customer_id) and not is_device_name(customer_id):
        return customer_id
    digest = hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_slug(customer_id)}~{digest[:HASH_DIGITS]}"


def is_device_name(name: str) -> bool:
    """Whether `name` is one Windows keeps for a device (any case, any extension)."""
    return name.partition(".")[0].lower() in WINDOWS_DEVICES


HASH_DIGITS_WHEN_SHARED = 32


def safe_file_stems(customer_ids) -> dict[str, str]:
    """safe_file_stem of each id, unique among them, case ignored: 10 hex digits of a hash
    can be shared by two ids (one pair in a million is likely), and ids differing only in
    case (`ABC`, `abc`) name one file where case is ignored (macOS, Windows, a share), so
    ids whose names would meet get 32 digits instead (a name of another length, never met
    by a 10-digit one or a plain id). A name depends on the month's ids only through such a
    meeting: see shared_stems and documents.retire_names."""
    stems = {c: safe_file_stem(c) for c in set(customer_ids)}
    seen: dict[str, int] = {}
    for stem in stems.values():
        seen[stem.lower()] = seen.get(stem.lower(), 0) + 1
    for c, stem in stems.items():
        if seen[stem.lower()] > 1:
            digest = hashlib.sha256(c.encode("utf-8", "surrogatepass")).hexdigest()
            stems[c] = f"{_slug(c)}~{digest[:HASH_DIGITS_WHEN_SHARED]}"
    return stems


def shared_stems(stems: dict[str, str]) -> set[str]:
    """The 10-digit names that two or more of the ids of `stems` (safe_file_stems) would
    share, so that none of them has it: a document under such a name (written before the
    second id came) shows a customer the name no longer belongs to."""
    return {safe_file_stem(c) for c, stem in stems.items() if is_shared_name(stem)}


def retired_stems(stems: dict[str, str]) -> set[str]:
    """The names no customer of `stems` has now though a document may lie under them: the
    10-digit names two ids share (shared_stems) and the plain names of ids that are device
    names (written under them before such ids were hashed)."""
    devices = {c for c in stems if is_device_name(c) and _PLAIN_ID.fullmatch(c)}
    return shared_stems(stems) | devices


def is_shared_name(stem: str) -> bool:
    """Whether a stem is the 32-digit name of an id whose 10-digit name is shared."""
    return "~" in stem and len(stem.rpartition("~")[2]) == HASH_DIGITS_WHEN_SHARED


def _slug(text: str) -> str:
    """Up to SLUG_MAX readable ASCII characters of the text (accents dropped, every run of
    other characters one `_`, none of `._-` at either end), or `_` when none is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("_", ascii_text).strip("._-")[:SLUG_MAX] or "_"


def csv_cell(value):
    """A value as a CSV cell a spreadsheet shows and never runs: None is empty; text that
    begins with `=`, `+`, `-`, `@`, a tab or a carriage return (or their full-width forms),
    also after spaces an importer may trim, gets a leading `'`; numbers, dates and other
    text as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip(LEADING_SPACES).startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(columns: Iterable[str], rows: Iterable[Iterable]) -> str:
    """A CSV file as RFC 4180 has it (quoting, and CRLF line ends: a line break inside a quoted
    cell stays as written): the header, then the rows, every cell through csv_cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_cell(c) for c in columns])
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def write_atomic(path: Path, text: str) -> Path:
    """Write a file so that a reader sees the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(str(path.parent), path.name, text.encode("utf-8"))
    return path


def replace_file(folder: str, name: str, data: bytes) -> None:
    """Write data to a temporary file in the folder, then rename it over folder/name (atomic);
    the folder must exist."""
    path = os.path.join(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
