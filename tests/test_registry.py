"""The registry's reader: GTO writes the tags (registrations, assignments, and their undoing),
faultwatch reads them in one `git for-each-ref`; the versions and stages it finds are the ones
GTO's own reader finds on the same repository, for every artifact at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import git_commit, run

from faultwatch import registry


def commit(repo: Path, n: int) -> None:
    (repo / "f").write_text(str(n))
    run(["git", "add", "f"], repo)
    git_commit(repo, f"c{n}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Two artifacts; `a` with a production change, a decision reversed, an approval
    unassigned and a version deregistered; `b` on a commit `a` also has a version on."""
    from gto import api

    repo = tmp_path_factory.mktemp("registry")
    run(["git", "init", "-q"], repo)
    kw = {"author": "t", "author_email": "t@t"}
    for n in range(1, 5):
        commit(repo, n)
        api.register(str(repo), "a", "HEAD", message=json.dumps({"n": n}), **kw)
        if n == 2:
            api.register(str(repo), "b", "HEAD", message="{}", **kw)
    for version, stage in [
        ("v0.0.1", "approved"),
        ("v0.0.1", "prod"),
        ("v0.0.2", "rejected"),
        ("v0.0.2", "approved"),  # reversed: the later decision counts
        ("v0.0.2", "prod"),  # production moves on
        ("v0.0.3", "approved"),
        ("v0.0.1", "rolled-back"),
    ]:
        api.assign(str(repo), "a", stage, version=version, message="why", force=True, **kw)
    api.unassign(str(repo), "a", version="v0.0.3", stage="approved", message="undo", **kw)
    api.deregister(str(repo), "a", version="v0.0.4", message="gone", **kw)
    api.assign(str(repo), "b", "approved", version="v0.0.1", message="ok", force=True, **kw)
    return repo


def test_versions_and_their_stages(repo):
    got = {v.version: v.stages for v in registry.versions(repo, "a")}
    assert got == {
        "v0.0.1": ("approved", "rolled-back"),
        "v0.0.2": ("approved", "prod"),
        "v0.0.3": (),  # its approval was unassigned: pending
    }
    v3 = registry.versions(repo, "a")[-1]
    assert v3.approval == "pending" and v3.record == {"n": 3}
    assert [v.version for v in registry.versions(repo, "b")] == ["v0.0.1"]


def test_what_gto_reads_on_the_same_tags(repo):
    from gto import api

    for name in ("a", "b"):
        shown = api.show(str(repo), name, versions_per_stage=-1)
        theirs = {
            v["version"]: (
                v["commit_hexsha"],
                str(v["created_at"]),
                {s["stage"] for s in v["stages"] if s["is_active"]},
            )
            for v in shown
        }
        ours = registry.versions(repo, name)
        assert {v.version: (v.commit, v.created_at) for v in ours} == {
            k: t[:2] for k, t in theirs.items()
        }
        for v in ours:  # GTO's active stages, less the production moved on and earlier decisions
            assert set(v.stages) <= theirs[v.version][2], (v, theirs[v.version])


def test_every_artifact_in_one_read(repo):
    fleet = registry.artifacts(repo)
    assert list(fleet) == ["a", "b"]
    assert [v.version for v in fleet["a"]] == ["v0.0.1", "v0.0.2", "v0.0.3"]
    assert fleet["b"][0].commit == fleet["a"][1].commit  # one commit, two artifacts
    assert fleet["b"][0].approval == "approved"


def test_outside_a_git_repository_is_a_named_error(tmp_path):
    with pytest.raises(registry.RegistryError) as e:
        registry.versions(tmp_path / "nowhere")
    assert "not a git repository: the model registry lives in git tags" in str(e.value)
