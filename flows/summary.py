"""What `adbill demo` prints: where the warehouse, statements and lists are, a query to try."""

from __future__ import annotations

from pathlib import Path

from flows.cli_terminal import terminal_text


def print_demo_summary(args, result: dict) -> None:
    data = Path(args.data_dir).absolute()
    db = result["published"]
    print()
    print(f"Billed {result['days_billed']} days ({result['first_day']} .. {result['last_day']}):")
    print(
        f"  events accepted {result['events_accepted']:,}, rejected {result['events_rejected']:,}"
        f", exact duplicates ignored {result['duplicates']:,}"
    )
    print(f"  warehouse (open read-only): {db}")
    for warning in result.get("warnings", []):
        print(f"  warning: {terminal_text(warning)}")
    months = sorted(p for p in (data / "out" / "statements").glob("*") if p.is_dir())
    statements = sorted(months[-1].glob("*.html")) if months else []
    if statements:
        print(f"  statements of {months[-1].name}: {months[-1]}")
        print(f"    e.g. {statements[0]}")
    lists = sorted((data / "out" / "suspensions").glob("*.csv"))
    if lists:
        print(f"  suspension list of the last day: {lists[-1]}")
    if result.get("run_report"):
        print(f"  run report (also in the Prefect UI): {result['run_report']}")
    print()
    print("Try:")
    print(f"  duckdb -readonly {db} \\")
    print(
        '    "select function, count(*) events, sum(credits) credits from rated_events '
        'group by all order by credits desc"'
    )
    print("or, with only this project, a read-only SQL prompt (.tables lists the tables):")
    print(f"  uv run python -m tasks.sql_prompt {db}")
    print("or in Python:")
    print(
        f"  uv run python -c \"import duckdb; print(duckdb.connect('{db}', read_only=True)"
        ".sql('select * from customer_days order by day desc limit 10'))\""
    )
