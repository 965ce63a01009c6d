"""``estateflow run``: the long-running loop that ticks, delivers and reloads.

APScheduler 3 only drives the in-process loop (TRAPS.md): deadlines and report schedules are
rows in our own tables, claimed exactly once across daemons, so nothing is lost when a daemon
dies and nothing runs twice when four run at once. The tick job runs with
``misfire_grace_time=None, coalesce=True, max_instances=1`` in a single worker thread, so a
slow tick is never silently dropped and never overlaps itself (one writer on SQLite).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["Daemon", "file_clock"]

log = logging.getLogger("estateflow.daemon")


def file_clock(path: str | Path) -> Callable[[], datetime]:
    """Test-only virtual clock: the time is read from a file on every tick (never the default)."""
    target = Path(path)

    def now() -> datetime:
        text = target.read_text(encoding="utf-8").strip()
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError(f"{target}: time {text!r} needs a UTC offset")
        return value
    return now


class Daemon:
    def __init__(self, engine: Any, *, interval: float = 1.0, clock: Callable[[], datetime] | None = None,
                 reload_files: bool = True, max_ticks: int | None = None) -> None:
        self.engine = engine
        self.interval = interval
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.reload_files = reload_files
        self.max_ticks = max_ticks
        self.ticks = 0
        self._mtimes = self._scan()
        self._scheduler: Any = None
        self._stopping = threading.Event()

    def _scan(self) -> dict[str, float]:
        from estateflow.engine._registry import workflow_files

        mtimes: dict[str, float] = {}
        for location in self.engine._locations:
            try:
                for path in workflow_files(location):
                    mtimes[str(path)] = path.stat().st_mtime
            except (OSError, LookupError):
                continue
        return mtimes

    def maybe_reload(self) -> None:
        """Hot-reload edited workflow files; a broken edit keeps the previous revision running."""
        from estateflow import WorkflowError

        current = self._scan()
        if current == self._mtimes:
            return
        self._mtimes = current
        try:
            for warning in self.engine.reload(self.clock()):
                log.warning(warning)
            log.info("workflows reloaded: %s", ", ".join(self.engine.workflows().names))
        except WorkflowError as exc:
            for problem in exc.problems:
                log.error("%s (previous revision stays in use)", problem)

    def run_once(self) -> None:
        if self._stopping.is_set():
            return
        now = self.clock()
        if self.reload_files:
            self.maybe_reload()
        result = self.engine.tick(now=now)
        for timer_id, kind, number in result.fired:
            log.info("fired %s timer %d for %s", kind, timer_id, number)
        for timer_id, error in result.failed:
            log.error("timer %d failed: %s", timer_id, error)
        self.ticks += 1
        if self.max_ticks is not None and self.ticks >= self.max_ticks:
            self.stop()

    def _job(self) -> None:
        try:
            self.run_once()
        except Exception:  # the daemon must survive a database blip; the next tick retries
            log.exception("tick failed; retrying at the next interval")

    def stop(self, *_: Any) -> None:
        self._stopping.set()
        if self._scheduler is not None and self._scheduler.running:
            threading.Thread(target=self._scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    def run(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        self._scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone="UTC")
        self._scheduler.add_job(self._job, "interval", seconds=self.interval, id="tick",
                                misfire_grace_time=None, coalesce=True, max_instances=1,
                                next_run_time=datetime.now(timezone.utc))
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("estateflow daemon %s started (tick every %ss)", self.engine.timer_runner.worker, self.interval)
        self._scheduler.start()
        log.info("estateflow daemon stopped after %d ticks", self.ticks)
