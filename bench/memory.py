"""Resident memory of the `estateflow run` daemon with many stored cases (SQLite).

Cases, running clocks and two timers per case are seeded in bulk (as bench/tick.py does);
1,000 warnings are due at the daemon's clock (a clock file: the test-only option, so the
due set is exact), so the daemon fires 1,000 timers and delivers their messages while it
is sampled. RSS (VmRSS) and its peak (VmHWM) come from /proc every 0.1 s over ``--seconds``.
Peers in the same run: the same daemon on an empty database (what the code itself costs)
and ``python3 -c "import estateflow.engine"``.

    python3 bench/memory.py [--quick|--full] [--seconds 8]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, Table, median, note, parse_args, print_header, process_rss_mb, ticket_engine, verdict, workdir

import tick

TARGET_MB = 200


def daemon_rss(url: str, directory: Path, seconds: float) -> tuple[float, float, int]:
    """(median RSS over the run, peak RSS, timers fired) of one daemon run."""
    clock = directory / "clock"
    clock.write_text(tick.NOW.isoformat())
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = directory / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "estateflow", "--db", url, "--workflows",
                             str(directory / "workflows"), "run", "--clock-file", str(clock)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    samples: list[float] = []
    peak = 0.0
    try:
        end = time.time() + seconds
        while time.time() < end and proc.poll() is None:
            rss, peak = process_rss_mb(proc.pid)
            samples.append(rss)
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    import sqlalchemy as sa

    db = sa.create_engine(url)
    with db.connect() as conn:
        fired = conn.execute(sa.text("SELECT count(*) FROM timers WHERE status='fired' AND case_id IS NOT NULL")).scalar()
    db.dispose()
    return median(samples[len(samples) // 2:]), peak, fired


def import_rss() -> float:
    out = subprocess.run([sys.executable, "-c", "import estateflow.engine, estateflow.cli, os; "
                          "print([l for l in open(f'/proc/{os.getpid()}/status') if l.startswith('VmRSS')][0])"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    return int(out.split()[1]) / 1024


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument("--seconds", type=float, default=None))
    args.seconds = args.seconds or (2.0 if args.quick else 8.0)
    print_header("memory.py", args)
    size = 20_000 if args.quick else 1_000_000 if args.full else 200_000
    table = Table("Daemon resident memory (MiB; median of repeats, each the median RSS of a run's 2nd half)",
                  ["stored cases", "daemon RSS", "peak RSS (VmHWM)", "timers fired", "same daemon, empty database",
                   "ratio", "import estateflow only", "target"])
    with workdir("estateflow-bench-memory-") as tmp:
        empty_dir = tmp / "empty"
        empty_dir.mkdir()
        empty_url = f"sqlite:///{empty_dir / 'empty.db'}"
        ticket_engine(empty_url, empty_dir).close()
        big_dir = tmp / "big"
        big_dir.mkdir()
        big_url = f"sqlite:///{big_dir / 'big.db'}"
        engine = ticket_engine(big_url, big_dir)
        engine.workflows()
        t0 = time.perf_counter()
        tick.seed(engine, 0, size, size // tick.DUE)
        note(f"seeded {size:,} cases (+{2 * size:,} timers) in {time.perf_counter() - t0:.1f} s")
        due = tick.due_timer_ids(engine)
        runs, empties, imports = [], [], []
        for _ in range(args.repeats):
            tick.reset(engine, due)
            runs.append(daemon_rss(big_url, big_dir, args.seconds))
            empties.append(daemon_rss(empty_url, empty_dir, args.seconds)[0])
            imports.append(import_rss())
        engine.close()
    rss = median([r[0] for r in runs])
    peak = median([r[1] for r in runs])
    empty = median(empties)
    table.add(f"{size:,}", f"{rss:.0f}", f"{peak:.0f}", "/".join(str(r[2]) for r in runs), f"{empty:.0f}",
              f"{rss / empty:.2f}", f"{median(imports):.0f}",
              f"< {TARGET_MB} MB: {verdict(peak < TARGET_MB)}")
    table.print()


if __name__ == "__main__":
    main()
