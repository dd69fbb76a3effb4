"""The load generator the deployment tests and `simulate-traffic`-style checks drive
(faultwatch.deploy.load.Load): stopping it stops everything it started."""

from __future__ import annotations

import threading
import time

from helpers.ports import free_port

from faultwatch.deploy.load import Load


def test_stopping_a_timed_load_stops_its_timer_too():
    """A load with a duration has a timer that ends it; stopped early, the timer goes with it
    (a timer left waiting out 240 s kept pytest alive minutes after its summary)."""
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens: every request is a refused one
    before = set(threading.enumerate())
    load = Load(url, [b"{}"], concurrency=2, total=None, duration_s=240, rate=10).start()
    time.sleep(0.3)
    load.stop()
    load.join(10)
    assert load.done() and load.count() > 0
    for t in set(threading.enumerate()) - before:
        t.join(2)
        assert not t.is_alive(), f"{t!r} still runs after the load was stopped"
