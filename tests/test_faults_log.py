"""Faults injected under the prediction log of a real `bentoml serve`, with keep-alive clients
running and every request's outcome counted: the PostgreSQL server restarted, the SQLite log's
disk full (a small tmpfs, mounted by root).

The promise held (faultwatch.serve.calls): a row is committed before its answer leaves, so a
request whose row cannot be written is refused (503) and never answered 200 without it; when
the database is back, the service answers again by itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.postgres import find_pg_bin, running_postgres
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import good_signal, serve_cmd, server_env

from faultwatch.deploy.load import Load

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def bodies() -> list[bytes]:
    return [json.dumps({"signal": good_signal(40 + i)}).encode() for i in range(8)]


def outcome(load: Load, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
    by: dict[str, int] = {}
    for a in load.answers:
        if since <= a.sent < until:
            key = str(a.status) if a.status else (a.error or "error").split(":")[0]
            by[key] = by.get(key, 0) + 1
    return by


def wait_until(load: Load, done, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done(), f"{what}: {outcome(load)}"


def answered_since(load: Load, t: float) -> int:
    return sum(a.status == 200 and a.sent > t for a in list(load.answers))


def refused_since(load: Load, t: float) -> int:
    return sum(a.status == 503 and a.sent > t for a in list(load.answers))


def check_rows(load: Load, logged: set[str]) -> None:
    """Every 200 has its row; only 200s and 503s were answered (no connection failed)."""
    answered = [a.request_id for a in load.answers if a.status == 200]
    assert all(answered) and not [r for r in answered if r not in logged], outcome(load)
    assert set(outcome(load)) <= {"200", "503"}, outcome(load)


@pytest.fixture
def serve(store, tmp_path):
    """A server of the tiny model logging to the given target; yields its url."""
    home, _, tag = store

    def start(log: str):
        port = free_port()
        env = server_env(home, tag, Path(log), FAULTWATCH_PREDICTION_LOG_TIMEOUT="2")
        env["FAULTWATCH_PREDICTION_LOG"] = log  # a URL stays a URL
        url = f"http://127.0.0.1:{port}"
        cm = started(serve_cmd(port), REPO, env, tmp_path / "server.log")
        proc = cm.__enter__()
        stack.append(cm)
        wait_ready(url, proc, tmp_path / "server.log")
        return url

    stack: list = []
    try:
        yield start
    finally:
        for cm in stack:
            cm.__exit__(None, None, None)


@pytest.mark.skipif(find_pg_bin() is None, reason="PostgreSQL binaries not found: make system")
def test_postgresql_restarted_while_serving_refuses_then_recovers_by_itself(serve):
    with running_postgres() as pg:
        url = serve(pg.url())
        load = Load(url, bodies(), concurrency=8, total=None, rate=100).start()
        try:
            wait_until(load, lambda: answered_since(load, 0) >= 100, 60, "before")
            down_at = time.time()
            pg.stop()
            wait_until(load, lambda: refused_since(load, down_at) >= 5, 30, "during")
            pg.start()
            up_at = time.time()
            wait_until(load, lambda: answered_since(load, up_at) >= 100, 60, "after")
        finally:
            load.stop()
            load.join(60)
        back = min(a.done for a in load.answers if a.status == 200 and a.sent > up_at)
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            logged = {r[0] for r in conn.execute("SELECT request_id FROM predictions")}
    print(
        f"postgresql restarted: {outcome(load)}; while down {outcome(load, down_at, up_at)}; "
        f"answering again {back - up_at:.1f} s after it was back"
    )
    check_rows(load, logged)


def fill(path: Path) -> None:
    """Every free byte of the disk under `path` (unbuffered: nothing left to flush at close)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_the_sqlite_logs_disk_full_refuses_keeps_the_file_whole_and_recovers(serve, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=True)
    filler = disk / "filler"
    try:
        log = disk / "predictions.sqlite"
        url = serve(str(log))
        load = Load(url, bodies(), concurrency=8, total=None, rate=100).start()
        try:
            wait_until(load, lambda: answered_since(load, 0) >= 100, 60, "before")
            full_at = time.time()
            fill(filler)
            wait_until(load, lambda: refused_since(load, full_at) >= 5, 60, "full")
            filler.unlink()
            freed_at = time.time()
            wait_until(load, lambda: answered_since(load, freed_at) >= 100, 60, "freed")
        finally:
            load.stop()
            load.join(60)
        back = min(a.done for a in load.answers if a.status == 200 and a.sent > freed_at)
        with sqlite3.connect(log) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            logged = {r[0] for r in db.execute("SELECT request_id FROM predictions")}
    finally:
        filler.unlink(missing_ok=True)
        subprocess.run(["umount", "-l", str(disk)], check=False)
    print(
        f"sqlite disk full: {outcome(load)}; while full {outcome(load, full_at, freed_at)}; "
        f"answering again {back - freed_at:.1f} s after space returned"
    )
    check_rows(load, logged)
