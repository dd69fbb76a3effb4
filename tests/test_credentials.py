"""Labellers' tokens (faultwatch.serve.credentials) and `faultwatch labellers`: the file's rules,
named by line; a file read again when it changes; the token never shown but once."""

from __future__ import annotations

import os
import stat

import pytest
from helpers.cli import run

from faultwatch.serve.credentials import Credentials, CredentialsError, bearer, parse

GOOD = "alice-token-0123456789abcdef"


@pytest.mark.parametrize(
    "text, said",
    [
        ("alice", "f:1: expected NAME:TOKEN (no ':' on the line)"),
        (f"# x\n\nal ice:{GOOD}", "f:3: the name 'al ice' must be 1 to 64 characters"),
        ("alice:short", "f:1: the token of 'alice' must be 16 to 256 characters"),
        (f"alice:{GOOD}\nalice:{GOOD}x", "f:2: 'alice' is named twice"),
        (f"alice:{GOOD}\nbob:{GOOD}", "f:2: 'bob' has the token of 'alice'"),
    ],
)
def test_a_bad_line_is_named_and_its_token_never_shown(text, said):
    with pytest.raises(CredentialsError) as e:
        parse(text, "f")
    assert str(e.value).startswith(said), str(e.value)
    assert GOOD not in str(e.value)


def test_the_file_is_read_again_when_it_changes_and_a_broken_change_keeps_the_last(tmp_path):
    path = tmp_path / "labellers"
    assert Credentials.load(path).who(GOOD) is None  # no file yet: nobody
    path.write_text(f"alice:{GOOD}\n")
    c = Credentials.load(path)
    assert c.who(GOOD) == "alice" and c.who(GOOD[:-1]) is None and c.who(GOOD + "x") is None
    path.write_text(f"alice:{GOOD}\nbob:bob-token-0123456789abcdef\n")
    os.utime(path, (1, 1))  # a change the clock's granularity could hide: the stamp differs
    assert c.who("bob-token-0123456789abcdef") == "bob"
    path.write_text("alice:short\n")  # broken: the last good tokens stay
    assert c.who(GOOD) == "alice"
    path.unlink()  # removed: nobody
    assert not c.known() and c.who(GOOD) is None


def test_bearer_reads_only_the_bearer_scheme():
    assert bearer(f"Bearer {GOOD}") == GOOD == bearer(f"bearer   {GOOD} ")
    assert bearer(None) is bearer("") is bearer(f"Basic {GOOD}") is bearer("Bearer ") is None


def test_labellers_add_prints_the_token_once_list_never_and_remove_refuses_it(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (root / name).write_text("")
    run(["git", "init", "-q"], root)
    token = run(["faultwatch", "labellers", "add", "alice"], root).stdout.strip()
    path = root / ".faultwatch/labellers"
    assert Credentials.load(path).who(token) == "alice" and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = run(["faultwatch", "labellers", "add", "alice"], root, check=False)
    assert again.returncode == 1 and "'alice' has a token already" in again.stderr
    run(["faultwatch", "labellers", "add", "bob"], root)
    listed = run(["faultwatch", "labellers", "list"], root).stdout
    assert listed.split() == ["alice", "bob"] and token not in listed
    run(["faultwatch", "labellers", "remove", "alice"], root)
    assert Credentials.load(path).who(token) is None
    assert run(["faultwatch", "labellers", "list"], root).stdout.split() == ["bob"]
