"""Looking up a few lines of a file again (tasks.inbox_files.lines_at) gives exactly the text
and numbers the line reader gave them the first time, whatever the file holds."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.inbox_files import LineIndex, iter_line_chunks, lines_at

# lines as producers write them, and the odd ones: empty, non-ASCII, a byte-order mark
LINE = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x1f")),
    st.sampled_from(["", "{}", '{"event_id": "e1"}', "客户", "\ufeffx"]),
)


def _read(path: Path, fast: bool) -> dict[int, str]:
    return {
        r["line_no"]: r["raw"]
        for t in iter_line_chunks(path, 64, fast=fast)
        for r in t.select(["line_no", "raw"]).to_pylist()
    }


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(LINE, min_size=1, max_size=40),
    bom=st.booleans(),
    last_newline=st.booleans(),
    gz=st.booleans(),
    block=st.integers(1, 200),
    data=st.data(),
)
def test_lines_at_gives_the_lines_the_reader_gave(lines, bom, last_newline, gz, block, data):
    text = ("\ufeff" if bom else "") + "\n".join(lines) + ("\n" if last_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("u.jsonl.gz" if gz else "u.jsonl")
        raw = text.encode("utf-8")
        path.write_bytes(gzip.compress(raw) if gz else raw)
        for fast in (True, False):
            try:
                read = _read(path, fast)
            except Exception:  # (the fast reader refuses some files; they are read plainly)
                continue
            if not read:
                continue
            wanted = data.draw(st.lists(st.sampled_from(sorted(read)), max_size=10))
            got = lines_at(path, wanted, fast=fast, block_bytes=block).to_pylist()
            assert got == [{"line_no": n, "raw": read[n]} for n in sorted(set(wanted))]


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(LINE, min_size=1, max_size=60),
    bom=st.booleans(),
    last_newline=st.booleans(),
    chunk=st.integers(1, 300),
    step=st.integers(1, 9),
    data=st.data(),
)
def test_lines_read_by_the_line_index_are_the_lines_the_reader_gave(
    lines, bom, last_newline, chunk, step, data
):
    """A large file's rejected lines are read again by seeking from the index its batches
    built (issue 16): the same text and numbers as the reader gave, whatever the lines,
    batches and index step."""
    text = ("\ufeff" if bom else "") + "\n".join(lines) + ("\n" if last_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.jsonl"
        path.write_bytes(text.encode("utf-8"))
        index = LineIndex(path, step)
        try:
            batches = list(iter_line_chunks(path, chunk, fast=True))
        except Exception:  # (the fast reader refuses some files; they are read plainly)
            return
        for batch in batches:
            index.add(batch)
        index.complete = True
        read = {r["line_no"]: r["raw"] for b in batches for r in b.to_pylist()}
        if not read:
            return
        # the same lines given as one batch of several Arrow chunks, cut at a random line
        # (sliced arrays: offsets into shared buffers)
        whole = pa.concat_tables(batches)
        cut = data.draw(st.integers(0, whole.num_rows))
        other = LineIndex(path, step)
        for part in (whole.slice(0, cut), whole.slice(cut)):
            other.add(part)
        other.complete = True
        wanted = data.draw(st.lists(st.sampled_from(sorted(read)), max_size=12))
        beyond = max(read) + data.draw(st.integers(1, 3))  # not in the file: not found
        for idx in (index, other):
            got = lines_at(path, [*wanted, beyond], index=idx).to_pylist()
            assert got == [{"line_no": n, "raw": read[n]} for n in sorted(set(wanted))]


def test_the_first_and_last_lines_of_a_large_file(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(1, 200_001)), encoding="utf-8")
    got = lines_at(path, [200_000, 1, 100_000], block_bytes=1 << 16).to_pylist()
    assert got == [
        {"line_no": 1, "raw": '{"n": 1}'},
        {"line_no": 100_000, "raw": '{"n": 100000}'},
        {"line_no": 200_000, "raw": '{"n": 200000}'},
    ]


# bytes as small files hold them: any mix of lines, carriage returns, bad UTF-8, no last newline
CONTENT = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.sampled_from([b"", b"\r", b"\n", b"{}", "客户".encode(), b"\xff\xfe", b"a\rb"]),
    ),
    max_size=8,
).map(lambda parts: b"\n".join(parts))


@settings(max_examples=80, deadline=None)
@given(contents=st.lists(CONTENT, min_size=1, max_size=6))
def test_a_group_of_small_files_reads_as_each_file_on_its_own(contents):
    """group_lines (one decode, one split for the group) gives each file the lines, numbers
    and encoding flags the plain line reader gives it alone."""
    from tasks.inbox_files import group_lines

    table, counts = group_lines(contents)
    expected = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, content in enumerate(contents):
            path = Path(tmp) / f"u{i}.jsonl"
            path.write_bytes(content)
            alone = [r for t in iter_line_chunks(path, 64, fast=False) for r in t.to_pylist()]
            assert counts[i] == len(alone)
            expected += [(r["line_no"], r["raw"], r["utf8_ok"]) for r in alone]
    got = table.select(["file_line", "raw", "utf8_ok"]).to_pylist()
    assert [(r["file_line"], r["raw"], r["utf8_ok"]) for r in got] == expected


@pytest.mark.parametrize(
    "text", ["\ufeff{}\n{}\n", "\ufeff", "\ufeff\n", "\ufeff\ufeffx\ny", "x\ufeff\n\ufeffy"]
)
def test_a_byte_order_mark_is_not_part_of_line_1_whichever_way_a_file_is_read(tmp_path, text):
    """The fast reader (large files), the plain one (files with a carriage return, or after
    the fast one refused) and a group of small files give the same lines: one mark at the
    start of the file dropped, any other kept (a file's size decides its way, not its text)."""
    from tasks.inbox_files import group_lines

    path = tmp_path / "u.jsonl"
    data = text.encode("utf-8")
    path.write_bytes(data)

    def lines(fast: bool, chunk: int) -> list[tuple[int, str]]:
        return [
            (r["line_no"], r["raw"])
            for t in iter_line_chunks(path, chunk, fast=fast)
            for r in t.to_pylist()
        ]

    group, _ = group_lines([data])
    grouped = list(zip(group["file_line"].to_pylist(), group["raw"].to_pylist(), strict=True))
    want = lines(True, 1 << 20)
    for chunk in (1, 2, 4, 1 << 20):
        assert lines(False, chunk) == want
    assert grouped == want
    assert all(not raw.startswith("\ufeff") for n, raw in want if n == 1) or text.startswith(
        "\ufeff\ufeff"
    )


# UTF-8's corners: surrogates, overlong forms, past U+10FFFF, stray and missing continuation
# bytes, the largest code points of each length, a NUL, a byte-order mark
UTF8_EDGES = [
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\xaf",
    b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
    b"\x80", b"\xbf", b"\xc2", b"\xe2\x82", b"\xf0\x9f\x98", b"\x7f", b"\xdf\xbf",
    b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\x00",
    b"\xef\xbb\xbf", "客户".encode(), b"a",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=6), st.sampled_from(UTF8_EDGES)), max_size=8))
def test_arrows_utf8_check_refuses_exactly_what_pythons_decoder_refuses(parts):
    """The lines' bytes are checked by Arrow where they lie (_utf8_text), not decoded by
    Python: a line's `bad_encoding` (§3) must not depend on which one looked at it."""
    from tasks.inbox_files import _utf8_text

    data = b"".join(parts)
    try:
        expected = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    got = _utf8_text(data)
    assert (None if got is None else got[0].as_py()) == expected
