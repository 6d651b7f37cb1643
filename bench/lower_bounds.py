"""The pieces of a billing day no engine of this design can skip, each timed alone.

    uv run python bench/lower_bounds.py --events N [--customers 10000] [--workdir bench/data]
                                        [--repeat 3] [--quiet-wait 120] [--out FILE]

Needs the day's usage file of a `bench/run.py --events N` (same --workdir). Beside the floor
of issue 5 (DuckDB reading the day with an explicit schema and one GROUP BY customer_id) it
times, on the same file, in one process, each in a scratch folder:

- parse: DuckDB's own reader keeping every field's JSON value (needed to tell a number from a
  string, §3), into a temporary table; and the engine's parse of a line (`json_valid` and
  `from_json`, over lines already split into a table), then its reading of the seven fields
  (`->> '$'` and the JSON type of each);
- other ways to read a line's fields, over the same lines, each measured and not taken (see
  docs/performance.md "What limits a day"): `json_extract_string` and `json_type` of the seven
  paths (two parses, no JSON values built), `from_json` into text fields (types lost: `"5"`
  and `5` read alike), and one regular expression matching a line written in the common
  compact form (a match only, no fields extracted);
- write events: the day's events, with the columns of `events`, inserted into a table of a
  database file and committed (DuckDB's default compression; and with its dictionary-FSST
  string compression disabled, which trades about 2.7x the text storage for speed);
- write ledger: one ledger row per event (numbers and the kind), likewise;
- documents: one HTML (9 KB) and one CSV (1 KB) file per customer, as the statements are:
  into an empty folder, and over the same files again (each later day of a month);
- sha256 of the file (content identity, interfaces.md: a file is ingested once by content).

Prints wall and CPU seconds (best of --repeat) and each as a multiple of the floor, and the
sum of the pieces: what a run of this design costs before it does any billing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
import inbox  # noqa: E402
from run_machine import quiet, wait_quiet  # noqa: E402
from run_stages import floor  # noqa: E402

FIELDS = ["event_id", "customer_id", "account_id", "function", "quantity", "status", "occurred_at"]
EVENTS_TABLE = """
create table events (event_key bigint, event_id varchar, customer_key integer,
    account_id varchar, function varchar, quantity decimal(18, 6), status varchar,
    occurred_at timestamptz, day date, credits bigint, file_id integer, line_no bigint,
    id_hash ubigint)
"""
# a usage line written compactly in the fields' order, every value plain (no escape, an
# integer quantity): what a fast path for the common line would have to recognise
_TEXT = r'"[^"\\\x00-\x1f\x7f]*"'
COMPACT_LINE = (
    "^\\{"
    + ",".join(f'"{f}":' + (r"[1-9][0-9]{0,8}" if f == "quantity" else _TEXT) for f in FIELDS)
    + "\\}$"
)
LEDGER_TABLE = """
create table ledger_entries (entry_id bigint, day date, customer_key integer, pool_key bigint,
    event_key bigint, posted_at timestamptz, kind varchar, credits bigint)
"""


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def timed(fn, repeat: int, setup=None) -> dict:
    """Best wall and CPU seconds of `repeat` runs of fn (setup before each, not timed)."""
    walls, cpus = [], []
    for _ in range(repeat):
        if setup:
            setup()
        wait_quiet(quiet["wait"])
        c, t = cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu() - c)
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "runs": walls}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    ap.add_argument("--quiet-wait", type=float, default=120.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    quiet["wait"] = args.quiet_wait
    key = inbox.src_key(args.workdir, args.customers, args.events, args.seed)
    usage = key / "src" / "usage" / f"usage-{inbox.day_of(0)}.jsonl"
    if not usage.exists():
        print(f"no bench day at {usage}: run bench/run.py --events {args.events} first")
        return 2
    res: dict[str, dict] = {"floor": floor([usage], args.repeat)}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        res |= measure(usage, Path(tmp), args.customers, args.repeat)
    report(res, args.events)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"events": args.events, "pieces": res}, indent=2))
    return 0


def measure(usage: Path, tmp: Path, customers: int, repeat: int) -> dict[str, dict]:
    """Each piece alone on the day's file, in a scratch database and folder under tmp."""
    con = duckdb.connect(str(tmp / "w.duckdb"))
    con.execute("set TimeZone = 'UTC'; set memory_limit = '1GB'")
    out = parse(con, usage, repeat)
    out |= writes(con, repeat)
    con.execute("set disabled_compression_methods = ''")
    con.close()
    out |= documents(tmp / "statements", customers, repeat)

    def digest():
        h = hashlib.sha256()
        with usage.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)

    out["sha256 of the file"] = timed(digest, repeat)
    return out


def parse(con, usage: Path, repeat: int) -> dict[str, dict]:
    """DuckDB's reader keeping JSON values, and the engine's parse of lines already split;
    leaves the day's events typed in the temporary table day_events."""
    out: dict[str, dict] = {}
    as_json = ", ".join(f"'{f}': 'JSON'" for f in FIELDS)
    src = (
        f"read_json('{usage}', format = 'newline_delimited', columns = {{{as_json}}}, "
        "ignore_errors = true)"
    )

    def made(table: str, select: str, params: dict | None = None) -> dict:
        """A temporary table made from `select`, timed."""
        q = f"create or replace temp table {table} as {select}"
        return timed(lambda: con.execute(q, params), repeat)

    out["parse: read_json keeping JSON values"] = made("parsed", f"select * from {src}")
    con.execute(
        f"create temp table lines as select * from read_csv('{usage}', columns = "
        "{'raw': 'VARCHAR'}, delim = '\x1f', quote = '', escape = '', header = false, "
        "auto_detect = false)"
    )
    struct = "{" + ", ".join(f'"{f}": "JSON"' for f in FIELDS) + "}"
    out["parse: json_valid + from_json (engine)"] = made(
        "parsed2",
        f"select case when json_valid(raw) then from_json(raw, '{struct}') end as j from lines",
    )
    read = ", ".join(
        f"j.{f} ->> '$' as {f}, left(nullif(j.{f}::varchar, 'null'), 1) as {f}_type" for f in FIELDS
    )
    out["read fields: ->> '$' and the type of each (engine)"] = made(
        "fields", f"select {read} from parsed2"
    )
    paths = "[" + ", ".join(f"'$.{f}'" for f in FIELDS) + "]"
    out["other: json_extract_string + json_type of 7 paths"] = made(
        "other",
        f"select case when json_valid(raw) then json_extract_string(raw, {paths}) end "
        f"as v, case when json_valid(raw) then json_type(raw, {paths}) end as t from lines",
    )
    as_text = "{" + ", ".join(f'"{f}": "VARCHAR"' for f in FIELDS) + "}"
    out["other: from_json into text fields (types lost)"] = made(
        "other",
        f"select case when json_valid(raw) then from_json(raw, '{as_text}') end as j from lines",
    )
    out["other: a regular expression of the compact line"] = made(
        "other", "select regexp_matches(raw, $p) as ok from lines", {"p": COMPACT_LINE}
    )
    con.execute("drop table if exists other")
    con.execute(
        """
        create temp table day_events as
        select row_number() over () as line_no, event_id ->> '$' as event_id,
               hash(customer_id) % 10000 as customer_key, account_id ->> '$' as account_id,
               function ->> '$' as function, try_cast(quantity ->> '$' as decimal(18, 6))
               as quantity, status ->> '$' as status,
               try_cast(occurred_at ->> '$' as timestamptz) as occurred_at
        from parsed where event_id is not null
        """
    )
    return out


INSERT_EVENTS = """
    insert into events select 1000 + line_no, event_id, customer_key, account_id,
        function, quantity, status, occurred_at, occurred_at::date, 3, 1, line_no,
        hash(event_id)
    from day_events
"""
INSERT_LEDGER = (
    "insert into ledger_entries select line_no * 16, occurred_at::date, customer_key, "
    "customer_key * 4, 1000 + line_no, occurred_at, 'use', 3 from day_events"
)


def writes(con, repeat: int) -> dict[str, dict]:
    """The day's events, and a ledger row per event, inserted into a fresh table and committed."""

    def fresh(table: str, ddl: str, setting: str = ""):
        def setup():
            con.execute(f"drop table if exists {table}")
            con.execute(ddl)
            con.execute(f"set disabled_compression_methods = '{setting}'")
            con.execute("checkpoint")

        return setup

    def committed(q: str):
        def run():
            con.execute("begin transaction")
            con.execute(q)
            con.execute("commit")

        return run

    return {
        "write events (default compression)": timed(
            committed(INSERT_EVENTS), repeat, fresh("events", EVENTS_TABLE)
        ),
        "write events (no dict_fsst: ~2.7x text storage)": timed(
            committed(INSERT_EVENTS), repeat, fresh("events", EVENTS_TABLE, "dict_fsst")
        ),
        "write ledger rows (one per event)": timed(
            committed(INSERT_LEDGER), repeat, fresh("ledger_entries", LEDGER_TABLE)
        ),
    }


def documents(folder: Path, customers: int, repeat: int) -> dict[str, dict]:
    """Two files per customer, written beside and renamed over, as tasks/documents.py does."""
    html, csv = b"h" * 9200, b"c" * 870

    def write_all():
        for i in range(customers):
            for ext, data in (("html", html), ("csv", csv)):
                path = folder / f"c{i:05d}.{ext}"
                tmp = folder / f".c{i:05d}.{ext}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                os.replace(tmp, path)

    def empty():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.sync()

    return {
        f"documents: {2 * customers:,} files, new": timed(write_all, repeat, empty),
        f"documents: {2 * customers:,} files, over the same": timed(write_all, repeat, os.sync),
    }


def report(res: dict[str, dict], events: int) -> None:
    fl = res["floor"]["seconds"]
    print(f"\n{events:,} events: pieces a run cannot skip, each alone (best of runs)\n")
    print(f"| {'piece':50} | {'wall s':>7} | {'CPU s':>7} | {'x floor':>7} |")
    print(f"|{'-' * 52}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|")
    for name, r in res.items():
        label = "floor (read_json + group by)" if name == "floor" else name
        print(
            f"| {label:50} | {r['seconds']:7.3f} | {r['cpu_seconds']:7.3f} | "
            f"{r['seconds'] / fl:7.2f} |"
        )
    must = [
        "parse: read_json keeping JSON values",
        "write events (default compression)",
        "write ledger rows (one per event)",
        next(k for k in res if k.startswith("documents") and k.endswith("over the same")),
        "sha256 of the file",
    ]
    total = sum(res[k]["seconds"] for k in must)
    print(
        f"\nsum of parse, write events, write ledger, documents over the same files, sha256: "
        f"{total:.3f} s = {total / fl:.1f} x floor (the target is 3 x floor = {3 * fl:.3f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
