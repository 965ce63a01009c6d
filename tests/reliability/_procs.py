"""Daemons as real processes on a file-driven virtual clock, and their configuration.

The daemon reads the time from a file on every tick (``run --clock-file``, test only), so a
test moves time by rewriting the file: an hour of outage or three working days of deadlines
pass in a second of real time, and nothing sleeps on a deadline. The file is replaced
atomically so that a tick never reads half a timestamp.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

__all__ = ["Daemon", "VirtualClock", "relay_workflows", "write_config"]

DATA = Path(__file__).parent / "data"


class VirtualClock:
    """The time every daemon of a test reads."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self.now = start
        self.set(start)

    def set(self, when: datetime) -> datetime:
        self.now = when
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(when.isoformat(), encoding="utf-8")
        os.replace(tmp, self.path)
        return when

    def advance(self, delta) -> datetime:
        return self.set(self.now + delta)


def relay_workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    target.mkdir(exist_ok=True)
    shutil.copy(DATA / "relay.yaml", target / "relay.yaml")
    return target


def write_config(path: Path, *, webhook_port: int, smtp_port: int | None = None) -> Path:
    """estateflow.yaml: timer notices (channel 'log', the engine's default) and transition
    notices ('hook') to the webhook receiver, closing notices to the SMTP receiver."""
    url = f"http://127.0.0.1:{webhook_port}/hook"
    lines = ["channels:",
             "  log:    # the channel the engine sends warnings, breaches and escalations to",
             "    kind: webhook",
             f"    url: {url}",
             "    timeout: 5",
             "  hook:",
             "    kind: webhook",
             f"    url: {url}",
             "    timeout: 5"]
    if smtp_port is not None:
        lines += ["  email:", "    kind: email", "    host: 127.0.0.1", f"    port: {smtp_port}",
                  "    security: none", '    from: "物业客服 <cs@example.com>"', "    timeout: 5"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Daemon:
    """``python3 -m estateflow run`` in a subprocess, its output in a log file."""

    def __init__(self, db_url: str, workflows: Path, clock: VirtualClock, log: Path, *,
                 config: Path | None = None, interval: float = 0.2) -> None:
        self.log = log
        args = [sys.executable, "-m", "estateflow", "--db", db_url, "--workflows", str(workflows), "run",
                "--interval", str(interval), "--clock-file", str(clock.path)]
        if config is not None:
            args += ["--config", str(config)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log.open("w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_started(self, timeout: float = 60) -> None:
        """Until the scheduler runs (imports and schema checks are not what we want to kill)."""
        deadline = time.monotonic() + timeout
        while "daemon" not in self.output() or " started " not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not start:\n{self.output()[-3000:]}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status (0 = clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
