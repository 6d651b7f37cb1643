"""Usage files of the synthetic inbox: a day's lines rendered in chunks, written through a
temporary file (gzip on a second thread while the next chunk renders)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from tasks.synthetic.events import Labels, Stamp, render

CHUNK = 500_000

Spoil = Callable[[pl.Series, int, int], pl.Series]


def day_chunks(
    cols: dict, labels: Labels, stamp: Stamp, spoil: Spoil | None = None, chunk: int = CHUNK
) -> Iterator[pl.Series]:
    """The day's lines, chunk by chunk, bad lines put in place by spoil(lines, first, end)."""
    n = len(cols["ms"])
    for cs in range(0, max(n, 1), chunk):
        ce = min(n, cs + chunk)
        lines = render(cols, cs, ce, labels, stamp)
        yield spoil(lines, cs, ce) if spoil else lines


def write_lines(path: Path, chunks: Iterable[pl.Series], gz: bool = False) -> None:
    """Write the chunks of lines as one file (gzip level 1 with gz), complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with ExitStack() as stack:
        out = stack.enter_context(tmp.open("wb"))
        if gz:
            out = stack.enter_context(gzip.GzipFile("", "wb", 1, out, mtime=0))
        pool, pending = stack.enter_context(ThreadPoolExecutor(1)), []
        for lines in chunks:
            buf = io.BytesIO()
            pl.DataFrame({"l": lines}).write_csv(buf, include_header=False, quote_style="never")
            pending.append(pool.submit(out.write, buf.getvalue()))
            if len(pending) > 1:
                pending.pop(0).result()
        for f in pending:
            f.result()
    tmp.replace(path)
