"""A throwaway PostgreSQL server for the test session.

Why not a mock: the engine's concurrency guarantees (SKIP LOCKED, advisory locks, optimistic
locking) only mean something against the real server. ``initdb`` refuses to run as root, so
when we are root the cluster is created and started as the ``postgres`` user. If no server
binaries exist and we are root on Debian, ``apt-get install postgresql`` is run once, so the
README's test command alone works on a fresh machine. Anything else fails loudly: the suite
never silently skips PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def _find_bindir() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return os.path.dirname(candidates[0])
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def _install_postgres() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            "PostgreSQL server binaries not found and cannot install them "
            "(need root and apt-get); install PostgreSQL 15+ or set ESTATEFLOW_TEST_PG_URL"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "postgresql"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running server; ``url(db)`` gives a SQLAlchemy URL for one of its databases."""

    bindir: str
    datadir: str
    port: int
    user: str
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return list(args)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cmd(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w", *args),
            check=check,
            capture_output=True,
            text=True,
        )

    def stop(self) -> None:
        """Stop the server and delete its cluster (a full suite leaves gigabytes of WAL)."""
        self.pg_ctl("stop", "-m", "fast", check=False)
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)

    def restart(self) -> None:
        # 'pg_ctl restart' has no -l: the new postmaster writes to (and keeps open) pg_ctl's
        # stdout, so capturing it would wait forever. Append it to the server log instead.
        log = os.path.join(os.path.dirname(self.datadir), "log")
        with open(log, "a") as out:
            subprocess.run(
                self._cmd(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w", "restart",
                          "-m", "fast"),
                check=True, stdout=out, stderr=subprocess.STDOUT,
            )


def start() -> PgServer:
    bindir = _find_bindir()
    if bindir is None:
        _install_postgres()
        bindir = _find_bindir()
        if bindir is None:
            raise RuntimeError("installed postgresql but found no initdb")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise RuntimeError("running as root but there is no 'postgres' user") from exc
        run_as = "postgres"
    base = tempfile.mkdtemp(prefix="estateflow-pg-")
    datadir = os.path.join(base, "data")
    if run_as:
        shutil.chown(base, user=run_as)
    os.chmod(base, 0o755)
    user = run_as or pwd.getpwuid(os.geteuid()).pw_name
    init = [os.path.join(bindir, "initdb"), "-D", datadir, "-A", "trust", "-U", user, "-E", "UTF8",
            "--no-locale"]
    subprocess.run(
        ["runuser", "-u", run_as, "--", *init] if run_as else init,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = PgServer(bindir, datadir, port, user, run_as)
    opts = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c shared_buffers=128MB"
    )
    result = server.pg_ctl("start", "-l", os.path.join(base, "log"), "-o", opts, check=False)
    if result.returncode != 0:
        log = ""
        try:
            with open(os.path.join(base, "log")) as fh:
                log = fh.read()
        except OSError:
            pass
        raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    return server
