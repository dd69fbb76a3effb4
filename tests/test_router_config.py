"""The router's configuration as HAProxy itself reads it (`haproxy -c`), for any project depth.

CI once failed here: a project 98 bytes deep put the admin socket past HAProxy's limit of 97,
and `deploy up` stopped with "haproxy refused the configuration".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from faultwatch.deploy import router as rt


@pytest.mark.parametrize("extra", range(-4, 12))
def test_haproxy_accepts_the_config_at_every_depth_around_its_socket_limit(extra):
    # a state folder whose `router.sock` is MAX_SOCKET_PATH + extra bytes long (pytest's
    # tmp_path is already too deep for that)
    with tempfile.TemporaryDirectory(prefix="fw-") as short:
        check_depth(Path(short) / "d", extra)


def check_depth(base: Path, extra: int) -> None:
    want = rt.MAX_SOCKET_PATH + extra - len("/router.sock")
    state = Path(str(base) + "x" * (want - len(str(base))))
    assert len(os.fsencode(state / "router.sock")) == rt.MAX_SOCKET_PATH + extra
    state.mkdir(parents=True)
    cfg = rt.RouterConfig(host="127.0.0.1", port=8080, state_dir=state)
    sock = cfg.sock
    assert len(os.fsencode(sock)) <= rt.MAX_SOCKET_PATH
    assert (sock.parent == state) == (extra <= 0)
    rt.write_config(cfg, {"blue": 8081, "green": None}, None)  # raises with HAProxy's alert
