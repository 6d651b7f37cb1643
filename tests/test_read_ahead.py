"""Reading ahead (the next batch of a usage file read while this one is checked and stored)
and digesting files on a few threads change when work happens, never what comes out: the
same items in the same order, errors where they would have come, nothing left open."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.inbox_files import in_threads, read_ahead


class Boom(Exception):
    pass


def _source(items, fail_at=None, closed=None):
    try:
        for i, item in enumerate(items):
            if i == fail_at:
                raise Boom(f"item {i}")
            yield item
    finally:
        if closed is not None:
            closed.append(threading.current_thread().name)


@settings(max_examples=50, deadline=None)
@given(items=st.lists(st.integers()), fail_at=st.one_of(st.none(), st.integers(0, 20)))
def test_read_ahead_gives_the_same_items_and_the_error_in_its_place(items, fail_at):
    got = []
    fails = fail_at is not None and fail_at < len(items)
    if fails:
        with pytest.raises(Boom, match=f"item {fail_at}"):
            for item in read_ahead(_source(items, fail_at)):
                got.append(item)
        assert got == items[:fail_at]
    else:
        assert list(read_ahead(_source(items, fail_at))) == items


def test_leaving_early_closes_the_source_once_it_is_idle():
    closed: list[str] = []
    ahead = read_ahead(_source(range(10), closed=closed))
    assert next(ahead) == 0
    ahead.close()  # the caller failed on item 0: item 1 was being read
    assert len(closed) == 1


def test_read_ahead_holds_at_most_one_item_ahead():
    taken: list[int] = []

    def counted():
        for i in range(100):
            taken.append(i)
            yield i

    ahead = read_ahead(counted())
    for expected in range(5):
        assert next(ahead) == expected
    # the consumer holds item 4; item 5 may be read, no more
    assert len(taken) <= 6
    ahead.close()


def test_in_threads_keeps_the_items_order_and_hands_back_each_error():
    def work(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(f"no {i}")
        return i * i

    outcomes = in_threads(work, range(10), threads=4)
    assert [r for r, _ in outcomes] == [None if i % 3 == 0 else i * i for i in range(10)]
    assert [str(e) if e else None for _, e in outcomes] == [
        f"no {i}" if i % 3 == 0 else None for i in range(10)
    ]
    assert in_threads(work, [], threads=4) == []
    assert in_threads(work, [2]) == [(4, None)]


@pytest.mark.parametrize("keep_more", [0, 1, -1])
def test_file_digest_keeps_a_file_of_at_most_keep_bytes_and_hashes_a_longer_one_whole(
    tmp_path, keep_more
):
    """keep = the file's size (and more) keeps its bytes; one byte less (a file grown since
    its size was taken) hashes the whole file block by block and keeps nothing."""
    import hashlib

    from tasks.inbox_files import file_digest

    data = b'{"a": 1}\r\n' * 1000
    path = tmp_path / "u.jsonl"
    path.write_bytes(data)
    digest = file_digest(path, len(data) + keep_more)
    assert (digest.sha, digest.has_cr) == (hashlib.sha256(data).hexdigest(), True)
    assert digest.data == (data if keep_more >= 0 else None)
    assert file_digest(path) == (digest.sha, True, None)


@pytest.mark.parametrize("keep", [0, 1 << 20])
@pytest.mark.parametrize("kind", ["link", "hard link"])
def test_file_digest_refuses_a_link_whether_it_keeps_the_bytes_or_not(tmp_path, keep, kind):
    """A link swapped in after the listing is refused on the opened file, by the small
    files' read (keep) as by the block by block one."""
    from tasks.inbox_files import NotARegularFile, file_digest

    real = tmp_path / "real.jsonl"
    real.write_bytes(b'{"a": 1}\n')
    path = tmp_path / "u.jsonl"
    if kind == "link":
        path.symlink_to(real)
    else:
        os.link(real, path)
    with pytest.raises(NotARegularFile, match=f"^{kind}$"):
        file_digest(path, keep)
