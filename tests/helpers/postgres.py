"""A real PostgreSQL server for the tests, started from Debian's `postgresql` binaries.

`running_postgres()` runs initdb into a fresh temporary directory, starts the server with
pg_ctl on a free TCP port of 127.0.0.1 (its unix socket in the same directory), and stops it
(`pg_ctl stop -m immediate`) and deletes the directory when the `with` block ends, even on
failure; a watchdog process does the same if the test process dies without unwinding. As root (PostgreSQL refuses to run as root), the server runs as the `postgres` user
(`runuser -u postgres`) in a directory it owns. The server asks for a password over TCP
(scram-sha-256), so URLs carry a real one.

Fixtures in tests/conftest.py, for any test module:
- `postgres_instance` (session): the running `PostgresServer`; `.create_database()` -> URL.
- `postgres_server` (session): `postgresql://faultwatch:...@127.0.0.1:PORT/faultwatch`, one
  database shared by the session's tests.
- `postgres_url` (function): a new empty database per test, its URL.
They skip (with the reason) only when the binaries are missing: `make system` installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER, PASSWORD = "faultwatch", "pw-" + "s3cret"
START_TIMEOUT_S = 30


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else PATH's."""
    candidates = sorted(
        (Path(p) for p in glob.glob(PG_BIN_GLOB)),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path  # the temporary directory: data/, the socket, server.log
    port: int
    as_postgres: bool  # run the binaries as the `postgres` user (we are root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """One of the server's programs (bin_dir/args[0]), as the server's user."""
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"server log: {self.log_tail()}"
            )
        return proc

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        self.run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c shared_buffers=16MB",
            "start",
        )

    def watchdog(self, pid: int) -> subprocess.Popen:
        """A process, in its own session, that stops the server and deletes its directory if
        process `pid` ends first: pytest-timeout's os._exit, or a kill, skips `finally`."""
        pg_ctl = f"{self.bin_dir / 'pg_ctl'} -D {self.data} -m immediate -w stop"
        if self.as_postgres:
            pg_ctl = f"runuser -u postgres -- {pg_ctl}"
        script = (
            f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; "
            f"{pg_ctl} >/dev/null 2>&1; rm -rf {self.root}"
        )
        return subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Immediate stop; if pg_ctl cannot, kill the postmaster it started (its pid file)."""
        if not (self.data / "postmaster.pid").exists():
            return
        proc = self.run(
            "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False
        )
        pid_file = self.data / "postmaster.pid"
        if proc.returncode != 0 and pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server with database `faultwatch`; stopped and deleted afterwards."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError(
            f"PostgreSQL binaries (initdb, pg_ctl) not found in {PG_BIN_GLOB} or on PATH: "
            "`make system` installs Debian's postgresql"
        )
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="faultwatch-pg-"))
    server = PostgresServer(bin_dir, root, free_port(), as_postgres)
    try:
        root.chmod(0o755)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if as_postgres:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        server.run(
            "initdb",
            "-D",
            str(server.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",  # a test server: its durability is not under test
        )
        for attempt in range(3):  # the free port may be taken before the server binds it
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.stop()
                server.port = free_port()
        server.create_database(USER)
        watchdog = server.watchdog(os.getpid())
        try:
            yield server
        finally:
            watchdog.kill()
            watchdog.wait()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
