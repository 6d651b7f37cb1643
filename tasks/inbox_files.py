"""The inbox's files as the run may read them: regular files only, read to their end, as
lines (line_no, raw, utf8_ok) in batches (billing-rules §3 "Files", "Encoding")."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from tasks.settings import path_text  # noqa: F401  (re-exported)

CHUNK_BYTES = 64 << 20  # a batch's bytes when the caller names none
# the fast reader parses a file in blocks of at most this many bytes, on several threads, and
# a batch is whole blocks: the first batch one block, so checking starts after a block's
# read, not a batch's (a line longer than a block goes to the plain reader)
READ_BLOCK_BYTES = 8 << 20
_BOM = b"\xef\xbb\xbf"
# a usage line longer than this is not read as JSON (a gzip of a few hundred KB can hold a
# line of gigabytes, which stopped the run): its first LONG_LINE_KEPT characters are kept
# with LONG_LINE_MARK after them, which no JSON text ends with, so it is `malformed_json`
# with its start shown (docs/decisions.md); a real usage line is a few hundred bytes
MAX_LINE_BYTES = 8 << 20
LONG_LINE_KEPT = 64 << 10
LONG_LINE_MARK = f" [adbill: line cut here, it is longer than {MAX_LINE_BYTES >> 20} MiB]"

USAGE_SUFFIXES = (".jsonl", ".jsonl.gz")


def gzipped(path: Path) -> bool:
    """A file read through gzip (its lines decompressed): a name ending .gz."""
    return path.name.endswith(".gz")


def read_as(path: Path, kind: str) -> str:
    """How an inbox file of this kind (orders, usage: the folder it was listed in) is read:
    `orders` (CSV), `usage` (JSON Lines) or `usage_gzip`. A file's content is recognised by
    its digest and this together: the same bytes read another way are other lines (plain
    text renamed .jsonl.gz, a gzip renamed .jsonl, a usage file the bytes of an orders one)."""
    if kind == "orders":
        return "orders"
    return "usage_gzip" if gzipped(path) else "usage"


@dataclass
class InboxListing:
    """The inbox as listed: order and usage files in path order, the entries turned away
    unopened (path, reason, detail), the files that are neither (a warning), and each listed
    order or usage file's (bytes, mtime_ns) as its listing found them."""

    orders: list[Path] = field(default_factory=list)
    usage: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    stats: dict[Path, tuple[int, int]] = field(default_factory=dict)


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path_order(path: Path) -> tuple[str, ...]:
    """Path order (a Path's own `<`: part by part), as a key computed once per path (5,000
    paths sorted in 0.011 s against 0.028 s comparing the Paths)."""
    return path.parts


def list_inbox(inbox: Path) -> InboxListing:
    """What the inbox holds (§3 "Files"): only regular files are read; a link (symbolic or
    hard: another name of a file elsewhere) or a special file is `not_a_regular_file`, and a
    file whose name is not UTF-8 `unreadable_file`, each without being opened. A folder that
    cannot be listed and a file that cannot be looked at (gone since its folder was listed,
    a path longer than the system takes) are `unreadable_file`: named, the rest listed."""
    found = InboxListing()

    def sort_in(entry: os.DirEntry, into: list[Path]) -> None:
        path = Path(entry.path)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            found.refused.append((path, "unreadable_file", f"cannot be looked at: {reason}"))
            return
        if stat.S_ISLNK(st.st_mode):
            found.refused.append((path, "not_a_regular_file", "link"))
        elif not stat.S_ISREG(st.st_mode):
            found.refused.append((path, "not_a_regular_file", "special file"))
        elif st.st_nlink > 1:
            found.refused.append((path, "not_a_regular_file", "hard link"))
        elif not _utf8_name(path):
            found.refused.append((path, "unreadable_file", "its name is not UTF-8: rename it"))
        else:
            into.append(path)
            found.stats[path] = (st.st_size, st.st_mtime_ns)

    for folder, into in ((inbox / "orders", found.orders), (inbox / "usage", found.usage)):
        if folder.is_symlink():
            found.refused.append((folder, "not_a_regular_file", "link"))
            continue
        if not folder.is_dir():
            if os.path.lexists(folder):  # (a file named like the folder: nothing listed)
                found.refused.append((folder, "unreadable_file", "not a folder"))
            continue
        for here, entries in folders(str(folder), found.refused):
            for entry in entries:
                name = entry.name
                is_orders = into is found.orders and here == str(folder) and name.endswith(".csv")
                if is_orders or (into is found.usage and name.endswith(USAGE_SUFFIXES)):
                    sort_in(entry, into)
                else:
                    found.ignored.append(Path(entry.path))
    for items in (found.orders, found.usage, found.ignored):
        items.sort(key=_path_order)
    found.refused.sort(key=lambda r: (_path_order(r[0]), r[1:]))
    return found


def folders(top: str, refused: list) -> Iterator[tuple[str, list[os.DirEntry]]]:
    """(folder, its entries that are not folders) for `top` and every folder under it, links
    to folders named in `refused` as links and never followed, a folder that cannot be listed
    named there as `unreadable_file`. A loop, not os.walk: Python 3.11's os.walk recurses,
    and an inbox of folders ~1,000 deep stopped the run (RecursionError)."""
    pending = [top]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as listed:
                entries = list(listed)
        except OSError as exc:  # a folder the run cannot list: named, never silently skipped
            reason = exc.strerror or type(exc).__name__
            refused.append((Path(here), "unreadable_file", f"folder cannot be listed: {reason}"))
            continue
        others = []
        for entry in entries:
            try:
                is_folder = entry.is_dir()  # (follows a link: a link to a folder is one)
                is_link = is_folder and entry.is_symlink()
            except OSError:
                is_folder = False  # (looked at again, and named, as a file)
            if not is_folder:
                others.append(entry)
            elif is_link:  # listed, never followed
                refused.append((Path(entry.path), "not_a_regular_file", "link"))
            else:
                pending.append(entry.path)
        yield here, others


class NotARegularFile(Exception):
    """The path is a link or a special file: never read (§3 "Files")."""


class UnreadableFile(Exception):
    """The file cannot be read to its end (a truncated or corrupt gzip, an I/O error)."""


def open_regular(path: Path):
    """The file opened for reading, refusing a link or a special file (checked on the open
    file itself: a link swapped in after the listing is refused too)."""
    return os.fdopen(_regular_fd(path), "rb")


def _regular_fd(path: Path) -> int:
    """open_regular's file descriptor (the caller closes it)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise NotARegularFile("link") from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise NotARegularFile("special file" if not stat.S_ISREG(st.st_mode) else "hard link")
    return fd


def _read_small(path: Path, keep: int) -> bytes | None:
    """A regular file's bytes when it holds at most `keep` of them, else None; read on its
    descriptor, without a Python file object (issue 16: a small file's digest costs about
    half as much so — 2,000 files 0.030 s against 0.057 s)."""
    fd = _regular_fd(path)
    try:
        parts, size = [], 0
        while size <= keep:
            part = os.read(fd, keep + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
    finally:
        os.close(fd)
    return b"".join(parts) if size <= keep else None


def _native(f):
    """The opened file for pyarrow to read natively (through /proc/self/fd: the same open
    file, checked as regular, not the path again); the Python file where there is no /proc."""
    fd_path = f"/proc/self/fd/{f.fileno()}"
    return fd_path if os.path.exists(fd_path) else f


def _open_for_lines(path: Path):
    """open_regular() for the line readers: a file gone or unreadable since it was listed is
    an UnreadableFile (turned away whole, the rest of the inbox billed)."""
    try:
        return open_regular(path)
    except NotARegularFile as exc:
        raise UnreadableFile(f"no longer a regular file ({exc})") from exc
    except OSError as exc:
        raise UnreadableFile(f"{type(exc).__name__}: {exc.strerror or exc}") from exc


class Digest(NamedTuple):
    """A file's sha256, whether its bytes hold a carriage return (see iter_line_chunks), and
    its bytes when they were kept (a small file read once for its digest and its lines)."""

    sha: str
    has_cr: bool
    data: bytes | None = None


def file_digest(path: Path, keep: int = 0) -> Digest:
    """The file's Digest; keep: a file of at most this many bytes is read in one go and its
    bytes kept (a small file read once for its digest and its lines); a longer one (grown
    since its size was taken) is hashed block by block, its bytes not kept."""
    if keep and (data := _read_small(path, keep)) is not None:
        return Digest(hashlib.sha256(data).hexdigest(), b"\r" in data, data)
    h = hashlib.sha256()
    has_cr = False
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            has_cr = has_cr or b"\r" in block
    # a gzip's compressed bytes say nothing of its lines' carriage returns (a crafted one
    # without the byte 0x0D would take the fast reader, which ends a line at a lone one):
    # its lines are split the plain way, as nearly every gzip's were by chance
    return Digest(h.hexdigest(), has_cr or gzipped(path))


def iter_line_chunks(
    path: Path, chunk_bytes: int | None = None, *, fast: bool = True
) -> Iterator[pa.Table]:
    """The file's lines in batches of about chunk_bytes: (line_no, raw), never all at once.

    fast: pyarrow's multi-threaded CSV reader splits the lines (one column, no quoting, a
    delimiter JSON text cannot hold unescaped); it raises `FastReadFailed` on a file it
    cannot read that way (invalid UTF-8, a control character 0x1f), and it would also end a
    line at a lone carriage return, so files holding one are read with fast=False: plain
    splitting at newlines, in Python.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    if fast:
        yield from _arrow_line_chunks(path, chunk_bytes)
    else:
        yield from _python_line_chunks(path, chunk_bytes)


_END = object()


def read_ahead(items: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`items`, with the next one read in a background thread while the caller works on the
    current one (issue 16: reading a usage file's next batch overlaps checking and storing
    this one; pyarrow and file reads release the GIL). The same items in the same order;
    an exception the reader raises comes out where that item would have (a FastReadFailed
    after the batches before it, as without read-ahead); at most one item is held ahead.
    Leaving early (an exception in the caller) waits for the item being read, then closes
    `items`, so its file is closed."""
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
            pending = pool.submit(next, items, _END)
            while True:
                item = pending.result()
                if item is _END:
                    return
                pending = pool.submit(next, items, _END)
                yield item
    finally:  # (leaving the pool waited for the reader: it is idle and can be closed)
        close = getattr(items, "close", None)
        if close is not None:
            close()


def in_threads(work: Callable, items: Iterable, threads: int | None = None) -> list:
    """[(result, None) or (None, exception)] of work(item) for each item, in their order,
    run on up to `threads` threads (default: the machine's CPUs, at most 8)."""
    items = list(items)
    if len(items) <= 1:
        return [outcome(work, i) for i in items]
    threads = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="inbox") as pool:
        return list(pool.map(lambda i: outcome(work, i), items))


def outcome(work: Callable, item) -> tuple:
    try:
        return work(item), None
    except Exception as exc:  # handed back with its item: the caller decides
        return None, exc


class FastReadFailed(Exception):
    """The fast line reader cannot read this file; read it with fast=False."""


def _arrow_line_chunks(path: Path, chunk_bytes: int) -> Iterator[pa.Table]:
    """The lines as pyarrow's CSV reader splits them, in blocks of READ_BLOCK_BYTES (or
    chunk_bytes, if smaller), a batch being the next blocks up to about chunk_bytes
    together, except that a file larger than chunk_bytes has its first block as its first
    batch (issue 16: checking starts after a block's read; and the reader's threads parse
    small blocks faster than one large one)."""
    compression = "gzip" if gzipped(path) else None
    next_line = 1
    pending: list[pa.RecordBatch] = []
    with (
        _open_for_lines(path) as raw_file,
        pa.input_stream(_native(raw_file), compression=compression) as source,
    ):
        try:
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(
                    column_names=["raw"], block_size=min(chunk_bytes, READ_BLOCK_BYTES)
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter="\x1f",
                    quote_char=False,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=False,
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types={"raw": pa.string()},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            # (a file of one batch is read as one: a batch of its own costs more than the
            # wait for the rest of a file that small)
            first = os.fstat(raw_file.fileno()).st_size > chunk_bytes
            while True:
                try:
                    pending.append(reader.read_next_batch())
                except StopIteration:
                    break
                if first or sum(b.nbytes for b in pending) >= chunk_bytes:
                    table = _numbered(pending, next_line)
                    next_line += table.num_rows
                    pending, first = [], False
                    yield table
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if "Empty CSV file" in str(exc):
                return
            # invalid UTF-8, a 0x1f byte, a corrupt gzip, a line longer than a block: the
            # plain reader decides (after the batches before it)
            raise FastReadFailed(str(exc)) from exc
        except OSError as exc:
            raise UnreadableFile(f"{type(exc).__name__}: {exc}") from exc
    if pending:
        yield _numbered(pending, next_line)


def _numbered(batches: list[pa.RecordBatch], first_line: int) -> pa.Table:
    """Record batches of raw lines as one batch table (line_no, raw, utf8_ok)."""
    raw = pa.chunked_array([b.column(0) for b in batches], pa.string())
    n = len(raw)
    return pa.table(
        {
            "line_no": pa.array(np.arange(first_line, first_line + n, dtype=np.int64)),
            "raw": raw,
            "utf8_ok": pa.repeat(True, n),
        }
    )


def _python_line_chunks(path: Path, chunk_bytes: int) -> Iterator[pa.Table]:
    next_line = 1
    for block in _line_blocks(path, chunk_bytes):
        table = _lines_table(block, next_line)
        next_line += table.num_rows
        yield table


def _decompressed(path: Path, raw_file):
    """The opened file's bytes as the inbox means them: a .gz file's decompressed."""
    return gzip.GzipFile(fileobj=raw_file, mode="rb") if gzipped(path) else raw_file


def _read(f, size: int) -> bytes:
    """Up to `size` bytes; a truncated or corrupt gzip or an I/O error makes the file an
    UnreadableFile (turned away whole)."""
    try:
        return f.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFile(f"{type(exc).__name__}: {exc}") from exc


def _line_blocks(path: Path, block_bytes: int) -> Iterator[bytes]:
    """The file's bytes (a gzip's: decompressed) in blocks of whole lines, each without its
    last newline; a last line without a newline after it comes as a block of its own."""
    with _open_for_lines(path) as raw_file:
        f = _decompressed(path, raw_file)
        # a UTF-8 byte-order mark is not part of line 1 (as the fast reader has it)
        head = _read(f, len(_BOM))
        ahead, rest = (b"" if head == _BOM else head), b""
        skipping = False  # inside a line past MAX_LINE_BYTES: its bytes up to its end dropped
        while True:
            data, ahead = ahead + _read(f, block_bytes), b""
            if not data:
                break
            if skipping:
                end = data.find(b"\n")
                if end < 0:
                    continue
                data, skipping = data[end:], False
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                if len(rest) > MAX_LINE_BYTES:  # (enough of it for cut_long_lines to cut)
                    rest, skipping = _utf8_prefix(rest, MAX_LINE_BYTES + 8), True
                continue
            yield data[:cut]
            rest = data[cut + 1 :]
    if rest:
        yield rest


def _utf8_prefix(data: bytes, n: int) -> bytes:
    """At most the first n bytes, not ending inside a UTF-8 character."""
    data = data[:n]
    end = len(data)
    while end > 0 and data[end - 1] & 0xC0 == 0x80:  # continuation bytes
        end -= 1
    if end > 0 and data[end - 1] >= 0xC0:  # and the lead byte of the character they end
        end -= 1
    return data[:end] if end < len(data) else data


def cut_long_lines(raw: pa.Array | pa.ChunkedArray):
    """Lines longer than MAX_LINE_BYTES as their first LONG_LINE_KEPT characters and
    LONG_LINE_MARK; the others as they are (one pass over the lengths for most batches).
    Applied to a batch's lines before they are checked, after LineIndex has their lengths."""
    lengths = pc.binary_length(raw)
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= MAX_LINE_BYTES:
        return raw
    cut = pc.binary_join_element_wise(  # (the last argument is the separator)
        pc.utf8_slice_codeunits(raw, 0, LONG_LINE_KEPT), LONG_LINE_MARK, ""
    )
    return pc.if_else(pc.greater(lengths, MAX_LINE_BYTES), cut, raw)


class LineIndex:
    """Where every `step`-th line of a file starts (its byte offset), built from the batches
    the fast reader gave (line_no, raw: a line's exact bytes, line 1 without its byte-order
    mark), so that lines_at can seek to a few lines instead of reading the file from its
    start (issue 16: the lines the file-wide decisions reject, a few in a million). Only for
    an uncompressed file read to its end by the fast reader (`complete`)."""

    def __init__(self, path: Path, step: int = 256) -> None:
        self.path, self.step = path, step
        with _open_for_lines(path) as f:
            self._offset = len(_BOM) if f.read(len(_BOM)) == _BOM else 0  # line 1's first byte
        self._line = 1
        self._lines: list[np.ndarray] = []
        self._starts: list[np.ndarray] = []
        self.complete = False

    def add(self, batch: pa.Table) -> None:
        """The next batch of the file's lines (numbered from where the last one ended): the
        lines' starts read off the Arrow strings' offsets, no pass over the text."""
        for chunk in batch["raw"].chunks:
            n = len(chunk)
            if n == 0:
                continue
            # (large_string offsets are 64-bit; a batch's are 32-bit unless it is huge)
            width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            ends = np.frombuffer(chunk.buffers()[1], width)[chunk.offset : chunk.offset + n + 1]
            first = (-(self._line - 1)) % self.step  # the chunk's first indexed line
            at = np.arange(first, n, self.step, dtype=np.int64)
            # a line starts after the text and the newline of every line before it
            starts = self._offset + (ends[at].astype(np.int64) - int(ends[0])) + at
            self._lines.append(self._line + at)
            self._starts.append(starts)
            self._offset += int(ends[n]) - int(ends[0]) + n
            self._line += n

    def few(self) -> int:
        """How many lines are cheaper to seek to than the file is to scan: a seek and a read
        of ~64 KB each (~60 us) against ~0.25 us a line for a scan (a backfill of too-late
        lines or re-delivered conflicts can be most of a file)."""
        return max(64, (self._line - 1) // 256)

    def start_of(self, line: int) -> tuple[int, int]:
        """(a line at or before `line`, the byte offset where that line starts)."""
        lines = np.concatenate(self._lines) if len(self._lines) != 1 else self._lines[0]
        starts = np.concatenate(self._starts) if len(self._starts) != 1 else self._starts[0]
        self._lines, self._starts = [lines], [starts]
        j = int(np.searchsorted(lines, line, side="right")) - 1
        return int(lines[j]), int(starts[j])


def _lines_by_index(index: LineIndex, wanted: list[int]) -> dict[int, str]:
    """The wanted lines' text, each read from the indexed line before it."""
    found: dict[int, str] = {}
    with _open_for_lines(index.path) as f:
        for number in wanted:
            line, offset = index.start_of(number)
            f.seek(offset)
            skip, buf = number - line, bytearray()
            while buf.count(b"\n") <= skip:
                more = _read(f, 1 << 16)
                if not more:
                    break
                buf += more
            start = 0
            for _ in range(skip):
                start = buf.find(b"\n", start) + 1
                if start == 0:  # the file has fewer lines
                    break
            else:
                if start >= len(buf):  # a line starts only before the file's end
                    continue
                end = buf.find(b"\n", start)
                # (line 1's indexed start is after the file's byte-order mark, if any)
                found[number] = bytes(buf[start : end if end >= 0 else len(buf)]).decode("utf-8")
    return found


def lines_at(
    path: Path,
    numbers: list[int],
    *,
    fast: bool = True,
    block_bytes: int = 16 << 20,
    index: LineIndex | None = None,
) -> pa.Table:
    """The raw text of the file's lines with these numbers (line_no, raw), numbered as
    iter_line_chunks numbers them. A file the fast reader read (no carriage return, valid
    UTF-8) is scanned block by block for its newlines and only the wanted lines are cut out:
    a few lines cost a read of the file, not a parse of every line; with the `index` the
    reader's batches built (a complete one), each is read from the indexed line before it.
    Any other file is read again as it was read the first time."""
    wanted = sorted(set(numbers))
    if fast and index is not None and index.complete and len(wanted) <= index.few():
        found = _lines_by_index(index, wanted)
        return _found_table(found)
    if not fast:
        value_set = pa.array(wanted, pa.int64())
        hits = [
            t.select(["line_no", "raw"]).filter(pc.is_in(t["line_no"], value_set=value_set))
            for t in iter_line_chunks(path, fast=False)
        ]
        return pa.concat_tables(hits) if hits else _no_lines()
    found: dict[int, str] = {}
    line, i = 1, 0
    for block in _line_blocks(path, block_bytes):
        if i == len(wanted):
            break
        # where the block's lines end (numpy: no Python object per line)
        ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
        n = len(ends) + 1
        while i < len(wanted) and wanted[i] < line + n:
            k = wanted[i] - line  # the block's k-th line (from 0)
            start = int(ends[k - 1]) + 1 if k else 0
            end = int(ends[k]) if k < len(ends) else len(block)
            # (line 1 without the file's byte-order mark: _line_blocks drops it)
            found[wanted[i]] = block[start:end].decode("utf-8")
            i += 1
        line += n
    return _found_table(found)


def _found_table(found: dict[int, str]) -> pa.Table:
    """Lines found by number as lines_at gives them (line_no, raw)."""
    return pa.table(
        {"line_no": pa.array(list(found), pa.int64()), "raw": pa.array(list(found.values()))}
    )


def _no_lines() -> pa.Table:
    return pa.table({"line_no": pa.array([], pa.int64()), "raw": pa.array([], pa.string())})


class LargerThanItLooked(Exception):
    """A small file whose lines hold more than a group takes (a highly compressed gzip)."""


def read_whole(path: Path, limit: int, kept: bytes | None = None) -> bytes:
    """A small file's bytes (a gzip's decompressed), read the plain way in one go, or taken
    from `kept` (its bytes as read with its digest); past `limit` bytes it stops
    (LargerThanItLooked): such a file goes batch by batch, so memory stays bounded."""
    if kept is not None:
        data = _read(_decompressed(path, io.BytesIO(kept)), limit + 1)
    else:
        with _open_for_lines(path) as raw_file:
            data = _read(_decompressed(path, raw_file), limit + 1)
    if len(data) > limit:
        raise LargerThanItLooked(path)
    return data


def group_lines(contents: list[bytes]) -> tuple[pa.Table, list[int]]:
    """The lines of several small files' bytes as one table (raw, utf8_ok, file_line), split
    as the plain reader splits them (at newlines, a carriage return before one dropped), and
    each file's line count: one decode and one split for the group, not one per file."""
    # a file's UTF-8 byte-order mark is not part of its first line (as the fast reader has
    # it, and _line_blocks): a file of only a mark has no line
    contents = [c.removeprefix(_BOM) for c in contents]
    counts = [c.count(b"\n") + (1 if c and not c.endswith(b"\n") else 0) for c in contents]
    whole = b"".join(c if not c or c.endswith(b"\n") else c + b"\n" for c in contents)
    text = _utf8_text(whole)
    if text is None:  # a file with bad bytes: each file on its own (rare)
        # (the undecodable bytes are in a file that is not empty: at least one table)
        lines = pa.concat_tables([_lines_table(c.removesuffix(b"\n"), 1) for c in contents if c])
        raw, utf8_ok = lines["raw"].combine_chunks(), lines["utf8_ok"].combine_chunks()
    else:
        raw = _split(text, has_cr=b"\r" in whole)
        raw = raw.slice(0, len(raw) - 1)  # (after the last newline: nothing)
        utf8_ok = pa.repeat(True, len(raw))
    raw = cut_long_lines(raw)
    total = sum(counts)
    starts = np.repeat(np.cumsum([0, *counts[:-1]]), counts)
    file_line = np.arange(total, dtype=np.int64) - starts + 1
    table = pa.table({"raw": raw, "utf8_ok": utf8_ok, "file_line": pa.array(file_line)})
    return table, counts


def _utf8_text(data: bytes) -> pa.Array | None:
    """The bytes as one large_string value, or None when they are not valid UTF-8. Arrow
    checks them where they lie (no Python str: decoding 64 MB and encoding it back for
    Arrow took 0.1-0.3 s of a group's 0.2-0.45 s); it refuses what Python's decoder
    refuses (surrogates, overlong forms, past U+10FFFF, stray continuation bytes: tested)."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    value = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        return value.cast(pa.large_string())
    except pa.ArrowInvalid:
        return None


def _split(text: pa.Array, *, has_cr: bool) -> pa.Array:
    """Text (one large_string value) split at its newlines, a carriage return before one
    dropped (the plain reader's lines; trimming copies every line, so only text that holds
    one is trimmed)."""
    lines = pc.split_pattern(text, "\n").flatten()
    if has_cr:
        lines = pc.utf8_rtrim(lines, "\r")
    return lines.cast(pa.string())


def _lines_table(block: bytes, first_line: int) -> pa.Table:
    """The block's lines (line_no, raw, utf8_ok). A line that is not valid UTF-8 keeps its
    bytes as \\xNN escapes in `raw`, never repaired (`bad_encoding`, §3)."""
    text = _utf8_text(block)
    if text is None:
        raws, oks = [], []
        for line in block.split(b"\n"):  # a file with bad bytes: line by line (rare)
            line = line.rstrip(b"\r")
            try:
                raws.append(line.decode("utf-8"))
                oks.append(True)
            except UnicodeDecodeError:
                raws.append(line.decode("utf-8", "backslashreplace"))
                oks.append(False)
        lines = pa.array(raws, pa.string())
        utf8_ok = pa.array(oks, pa.bool_())
    else:
        lines = _split(text, has_cr=b"\r" in block)
        utf8_ok = pa.repeat(True, len(lines))
    numbers = pa.array(range(first_line, first_line + len(lines)), pa.int64())
    return pa.table({"line_no": numbers, "raw": lines, "utf8_ok": utf8_ok})
