"""Two workers (pytest-xdist, `make test`): which modules share a worker, and in what order the
groups are handed out. A plugin module, registered by tests/conftest.py.

`make test` runs the suite on two workers: it waits on servers, subprocesses and sleeps more
than it computes. Work is handed out a module at a time, so a module's fixtures run once, on
one worker; modules that share something a worker cannot hold twice share a group:
- the session's tiny pipeline (one `dvc repro`, about 90 s, built once per worker that uses it);
- podman's image store: the README walk-through and test_container both build the base image
  and images from it (each its own project's name: faultwatch-proj, faultwatch-fwimages);
- the deploy modules; the users of npm_modules() (one `npm ci` into .venv/npm at a time).

Why a scheduler of our own: xdist's supported way, `--dist loadgroup` with `xdist_group` marks,
does nothing with pytest 9 (measured with pytest 9.2.0 and pytest-xdist 3.8.0: two modules
marked with one group ran on both workers). xdist's worker renames `item._nodeid` to carry the
group, which pytest 9 no longer reads (Node.nodeid is `_id`): pytest-dev/pytest-xdist#1386,
open, its fix (#1388) not released. So the grouping is LoadScopeScheduling, xdist's public
scheduler class, with its unit of work (`_split_scope`, the hook xdist's own LoadGroupScheduling
overrides) set to the group below. Module-at-a-time (`--dist loadscope`) alone would not keep a
group's modules on one worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

XDIST_GROUPS = {
    "test_release": "tiny_pipeline",
    "test_stage_outputs": "tiny_pipeline",
    "test_jupyterlab": "tiny_pipeline",
    "test_report_page": "tiny_pipeline",
    "test_readme": "podman",
    "test_container": "podman",
    "test_deploy": "deploy",
    "test_deploy_postgres": "deploy",
    "test_deploy_replicas": "deploy",
    "test_deploy_fleet": "deploy",
    "test_k8s": "npm",
    "test_ci_workflow": "npm",
}
# the longest groups first: the scheduler hands groups out in collection order (xdist's
# default reorder by number of tests is turned off below), so a long one started last would
# leave the other worker idle at the end
LONGEST_FIRST = [
    "podman",
    "test_fleet",  # about 490 s in fcc at 24a2c11: started sixth, it was the run's tail
    "tiny_pipeline",
    "deploy",
    "test_faults",
    "test_retrain",
    "test_multichannel_e2e",
    "test_serve",
]


def group_of_nodeid(nodeid: str) -> str:
    """The group of a test: its module's group, or the module itself."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return XDIST_GROUPS.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = group_of_nodeid(item.nodeid)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a group and among the rest is kept


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Group-at-a-time scheduling with the groups above (xdist's LoadScopeScheduling, whose
    unit of work is what `_split_scope` returns)."""
    from xdist.scheduler import LoadScopeScheduling

    # an xdist without this method would silently schedule test by test: say so instead
    if not callable(getattr(LoadScopeScheduling, "_split_scope", None)):
        raise pytest.UsageError(
            "pytest-xdist's LoadScopeScheduling has no _split_scope: tests/helpers/"
            "xdist_groups.py cannot group modules; try --dist loadgroup (xdist_group marks)"
        )

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of_nodeid(nodeid)

    # LoadScopeScheduling sorts its units by number of tests unless told not to
    # (--loadscope-reorder is on by default): that put the podman group (13 tests, the longest)
    # 21st of 41 and the README walk-through on the critical path. Collection order it is.
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)
