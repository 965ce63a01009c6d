"""BusinessCalendar.add(start, Duration(3, "working_days")) calls per second.

Peer in the same run: a naive day-by-day loop over ``chinese_calendar.is_workday`` giving the
same deadline (close of business, 18:00, of the 3rd working day after the start day); both are
checked to agree on every start used. Starts are 1,000 instants spread over 2025 (every 8 h 46
min, so they cover holidays, make-up Sundays and every hour of the day).

    python3 bench/calendar_add.py [--quick|--full]
"""

from __future__ import annotations

import time
from datetime import datetime, time as dtime, timedelta

from _common import SH, Table, at, median, note, parse_args, print_header, spread, verdict

TARGET = 200_000


def starts() -> list[datetime]:
    first = at(2025, 1, 1, 0, 0)
    return [first + timedelta(minutes=526 * i) for i in range(1000)]  # ~ one year


def naive_add(start: datetime, n: int) -> datetime:
    from chinese_calendar import is_workday

    day = start.astimezone(SH).date()
    counted = 0
    while counted < n:
        day += timedelta(days=1)
        if is_workday(day):
            counted += 1
    return datetime.combine(day, dtime(18, 0), tzinfo=SH)


def calls_per_second(fn, points: list[datetime], calls: int) -> float:
    rounds = max(1, calls // len(points))
    t0 = time.perf_counter()
    for _ in range(rounds):
        for s in points:
            fn(s)
    return rounds * len(points) / (time.perf_counter() - t0)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    print_header("calendar_add.py", args)
    try:
        from estateflow import BusinessCalendar  # as the README shows
    except ImportError:  # not re-exported at the time of writing
        from estateflow.engine._calendar import BusinessCalendar
    from estateflow.engine._durations import Duration

    calendar = BusinessCalendar("cn")
    three = Duration(3, "working_days")
    points = starts()
    for s in points:  # same answers, and the year tables are built before timing
        assert calendar.add(s, three) == naive_add(s, 3), s
    calls = 1_000_000 if args.full else 200_000 if args.quick else 500_000
    naive_calls = calls // 20
    variants = {
        "add(start, Duration(3, 'working_days'))": lambda s: calendar.add(s, three),
        "add(start, '3 working days') (text parsed each call)": lambda s: calendar.add(s, "3 working days"),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    naive: list[float] = []
    for _ in range(args.repeats):
        for name, fn in variants.items():
            results[name].append(calls_per_second(fn, points, calls))
        naive.append(calls_per_second(lambda s: naive_add(s, 3), points, naive_calls))
    table = Table(f"Working-day deadline, calls per second (median, min..max; {calls:,} calls per repeat)",
                  ["call", "calls/s", "naive is_workday loop/s", "ratio", f"target >= {TARGET:,}/s"])
    base = median(naive)
    for name, values in results.items():
        value = median(values)
        table.add(name, f"{value:,.0f} ({spread(values)})", f"{base:,.0f} ({spread(naive)})", f"{value / base:.1f}x",
                  verdict(value >= TARGET) if "Duration" in name else "-")
    table.print()
    note("The naive loop is checked to give the same deadline for all 1,000 starts.")


if __name__ == "__main__":
    main()
