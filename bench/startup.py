"""Start-up: ``estateflow --help`` wall time and the import time of ``estateflow``.

Each figure is the median of 5 subprocess runs, beside the interpreter's own start-up
(``python3 -c pass``) measured in the same run. If the target is missed, one
``python3 -X importtime -c "import estateflow.cli"`` run says which imports dominate: self
time summed per top-level package, and the third-party imports estateflow's own modules pull
in (cumulative).

    python3 bench/startup.py [--quick|--full]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import ROOT, Table, median, note, parse_args, print_header, spread, verdict

RUNS = 5
TARGET = 0.3
# Diagnostic only: a package module without __init__'s eager `from .engine import *`, then the
# real CLI. Shows what a lazy package __init__ (PEP 562 __getattr__) would give `--help`.
LAZY_INIT_WHAT_IF = (
    "import sys, types; m = types.ModuleType('estateflow'); "
    f"m.__path__ = [{str(ROOT / 'estateflow')!r}]; sys.modules['estateflow'] = m; "
    "import estateflow.cli; sys.argv = ['estateflow', '--help']; estateflow.cli.main()"
)


def wall(cmd: list[str], runs: int = RUNS) -> list[float]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)  # warm the page cache / pyc
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return times


def importtime(statement: str) -> list[tuple[int, str, float, float]]:
    """(level, module, self s, cumulative s) in import order, parents before children."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], check=True, cwd=ROOT,
                         capture_output=True, text=True).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cum_us, name = line.split("|")
        self_us = head.split(":")[1]
        stripped = name.rstrip()
        level = (len(stripped) - len(stripped.lstrip(" ")) - 1) // 2
        rows.append((level, stripped.strip(), int(self_us) / 1e6, int(cum_us) / 1e6))
    return list(reversed(rows))  # -X importtime prints children first


def attribution(rows: list[tuple[int, str, float, float]]) -> tuple[dict[str, float], list[tuple[str, str, float]]]:
    per_package: dict[str, float] = defaultdict(float)
    pulled: list[tuple[str, str, float]] = []
    stack: list[tuple[int, str]] = []
    for level, name, self_s, cum_s in rows:
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent = stack[-1][1] if stack else "-"
        per_package[name.split(".")[0]] += self_s
        if not name.startswith("estateflow") and parent.startswith("estateflow"):
            pulled.append((name, parent, cum_s))
        stack.append((level, name))
    return dict(per_package), sorted(pulled, key=lambda r: -r[2])


def first_path(rows: list[tuple[int, str, float, float]], target: str) -> list[str]:
    """The chain of imports that first reached ``target``."""
    stack: list[tuple[int, str]] = []
    for level, name, _, _ in rows:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, name))
        if name == target:
            return [n for _, n in stack]
    return []


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    print_header("startup.py", args)
    py = sys.executable
    on_path = shutil.which("estateflow")
    script = Path(py).with_name("estateflow")
    commands: dict[str, list[str]] = {}
    if on_path:
        commands[f"estateflow --help ({on_path})"] = [on_path, "--help"]
    if script.exists() and (not on_path or Path(on_path).resolve() != script.resolve()):
        commands[f"estateflow --help ({script}, no shim)"] = [str(script), "--help"]
    commands["python3 -m estateflow --help"] = [py, "-m", "estateflow", "--help"]
    commands["python3 -c 'import estateflow'"] = [py, "-c", "import estateflow"]
    commands["python3 -c 'import click' (a click CLI's floor)"] = [py, "-c", "import click"]
    commands["what-if: --help with estateflow/__init__.py not importing the engine (diagnostic)"] = [
        py, "-c", LAZY_INIT_WHAT_IF]
    base_times = wall([py, "-c", "pass"])
    base = median(base_times)
    table = Table(f"Start-up wall time, median of {RUNS} runs (min..max); peer: python3 -c pass = "
                  f"{base * 1000:.0f} ms ({spread([t * 1000 for t in base_times])} ms)",
                  ["command", "wall ms", "minus interpreter ms", "ratio to interpreter", f"target < {TARGET} s"])
    results = {}
    for name, cmd in commands.items():
        times = wall(cmd)
        value = results[name] = median(times)
        table.add(name, f"{value * 1000:.0f} ({spread([t * 1000 for t in times])})", f"{(value - base) * 1000:.0f}",
                  f"{value / base:.1f}x", verdict(value < TARGET) if name.startswith("estateflow --help") or
                  name.startswith("python3 -m") else "-")
    table.print()
    help_times = [v for k, v in results.items() if k.startswith("estateflow --help")]
    if all(t < TARGET for t in help_times):
        return
    rows = importtime("import estateflow.cli")
    per_package, pulled = attribution(rows)
    total = max(r[3] for r in rows if r[1] == "estateflow.cli")
    note(f"\n`import estateflow.cli` under -X importtime: {total * 1000:.0f} ms cumulative")
    t1 = Table("Self import time per top-level package (top 10)", ["package", "ms", "share"])
    for name, seconds in sorted(per_package.items(), key=lambda kv: -kv[1])[:10]:
        t1.add(name, f"{seconds * 1000:.0f}", f"{seconds / total:.0%}")
    t1.print()
    t2 = Table("Third-party imports pulled in by estateflow modules (cumulative, top 12)",
               ["module", "imported by", "ms"])
    for name, parent, seconds in pulled[:12]:
        t2.add(name, parent, f"{seconds * 1000:.0f}")
    t2.print()
    note("\nFirst import of sqlalchemy comes through: " + " -> ".join(first_path(rows, "sqlalchemy")))


if __name__ == "__main__":
    main()
