"""The deployment's state file and lock (faultwatch.deploy.state), in one process: one deploy
command at a time, and a state file that is replaced whole, never rewritten in place."""

from __future__ import annotations

import fcntl
import os

import pytest

from faultwatch.deploy import state as st
from faultwatch.deploy.errors import LockBusy


def test_the_lock_is_exclusive_a_second_holder_waits_then_is_refused(tmp_path, monkeypatch):
    """While one command holds the lock, a second (another open file, as another process has)
    is refused naming the first; and a lock held only for reading (shared) keeps a command out
    too. A shared lock in `locked` would let two commands in at once."""
    monkeypatch.setenv(st.LOCK_WAIT_ENV, "0.3")
    heard: list[str] = []
    with st.locked(tmp_path, "switch"):
        with pytest.raises(LockBusy, match=r"`faultwatch deploy switch` \(pid \d+\) holds"):
            with st.locked(tmp_path, "rollback", heard.append):
                pytest.fail("two commands held the deployment lock at once")
    assert heard and heard[0].startswith("`faultwatch deploy switch`")
    with open(st.state_dir(tmp_path) / "lock", "a+") as reader:
        fcntl.flock(reader, fcntl.LOCK_SH)  # a reader's shared lock: no command gets in
        with pytest.raises(LockBusy):
            with st.locked(tmp_path, "switch"):
                pytest.fail("a command took the lock beside a shared holder")
        fcntl.flock(reader, fcntl.LOCK_UN)
    with st.locked(tmp_path, "switch"):  # released: the next command gets it
        pass


def test_the_state_file_is_replaced_whole_never_rewritten_in_place(tmp_path):
    """A reader that opened state.json keeps reading the whole version it opened while a
    command saves a new one (a rename; writing in place would truncate under it)."""
    state = st.State()
    state.record("up", version="v0.0.1")
    st.save(tmp_path, state)
    path = st.path(tmp_path)
    first = path.read_bytes()
    with open(path, "rb") as reader:
        state.record("switch", to="green")
        st.save(tmp_path, state)
        assert reader.read() == first  # the old version, whole
    assert path.read_bytes() != first and st.load(tmp_path).history[-1]["action"] == "switch"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_a_colour_never_gets_the_port_promised_to_the_router(monkeypatch):
    """`deploy up --port P` starts blue before the router binds P: the kernel may offer P to
    blue (CI met it), and the router then fails to bind. The kernel's picks are scripted here."""
    from faultwatch.deploy import processes

    picks = iter([5001, 5001, 5002, 5001, 5003])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(picks)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(processes.socket, "socket", Socket)
    assert processes.free_ports(2, avoid=[5001]) == [5002, 5003]
