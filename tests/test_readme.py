"""The README's shell blocks, run in order in a fresh copy of the project, as a user types them.

Each ```bash block runs in its own `bash -e -o pipefail`, from the project root, with a plain
PATH (no activated venv, no BENTOML_HOME, nothing `make` would export), so a command that
works only through `make` fails here. The copy has the tiny test data and short params, and a
file of the user's own (`data/raw/pumps.tsv`, copied in before the first block naming it). Two lines are
adapted, and only these: `make test` (that is this very suite) is left out, and the serving
port 3000 becomes a free port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.datafiles import write_tsv
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.projects import TINY_PIPELINE, copy_project
from helpers.signals import make_signals, sawtooth_signals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
LEFT_OUT = ("make test",)  # running the tests from inside the tests


def readme_blocks(text: str) -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(text)]


def user_env(home: Path) -> dict[str, str]:
    """What a user's shell has: a plain PATH, git configured, none of the project's variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BENTOML", "FAULTWATCH", "WANDB", "DVC", "VIRTUAL_ENV", "PYTEST"))
    }
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["HOME"] = str(home)
    env.update(
        GIT_AUTHOR_NAME="u",
        GIT_AUTHOR_EMAIL="u@example.com",
        GIT_COMMITTER_NAME="u",
        GIT_COMMITTER_EMAIL="u@example.com",
    )
    return env


def stamp_prerequisites() -> list[str]:
    """The files the Makefile's set-up stamp depends on (`$(STAMP): ...`)."""
    rule = re.search(r"^\$\(STAMP\):(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert rule, "Makefile: no $(STAMP) rule"
    return rule.group(1).split()


def installed_package_dir() -> str:
    """Where the venv's editable install of faultwatch points."""
    return subprocess.run(
        [sys.executable, "-c", "import faultwatch; print(faultwatch.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
    ).stdout.strip()


def test_readme_has_the_two_commands_first():
    blocks = readme_blocks((REPO / "README.md").read_text())
    first = [ln.split("#")[0].strip() for ln in blocks[0].splitlines()]
    assert first == ["make run", "make test"]
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert ci[-1] == "make test"


def test_every_readme_block_works_as_written(tmp_path):
    # the shipped bound on signal length (the README's bundled examples have PLAID's 1344)
    data = {**TINY_PIPELINE["data"], "max_length": 100000}
    root = copy_project(tmp_path / "proj", {**TINY_PIPELINE, "data": data})
    # data on which the tiny CNN beats the classical baseline: the model the walk-through
    # registers is approved by the gate, so the deploy steps (approved versions only) run it
    write_tsv(sawtooth_signals(), root / "data/raw/tiny.tsv")
    # the user's own file, copied in just before the "your own data" steps
    pumps = make_signals(40, 12, seed=3).assign(
        label=lambda d: d.label.replace({"fault": "bearing_fault"})
    )
    # the copy's .venv is the suite's own venv: `make` must find it set up, not install this
    # copy into it (its stamp is newer than the set-up files, as after `make test`)
    stamp = (root / ".venv/.faultwatch-installed").stat().st_mtime
    for name in stamp_prerequisites():
        os.utime(root / name, (stamp - 1, stamp - 1))
    env = user_env(tmp_path / "home")
    port = str(free_port())
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 5
    containers: list[str] = []  # named by a block's `podman run --name`: removed at the end
    try:
        for i, block in enumerate(blocks):
            lines = [ln for ln in block.splitlines() if ln.split("#")[0].strip() not in LEFT_OUT]
            # the README's port is 3000: a free one here; a container's own port stays 3000
            script = "\n".join(lines).replace(":3000:3000", ":3000:INSIDE")
            script = script.replace("3000", port).replace(":INSIDE", ":3000")
            containers += re.findall(r"podman run .*?--name (\S+)", script)
            if "data/raw/pumps.tsv" in script and not (root / "data/raw/pumps.tsv").exists():
                write_tsv(pumps, root / "data/raw/pumps.tsv")
            proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            started = time.monotonic()
            try:
                out, _ = proc.communicate(timeout=600)
            finally:
                # whatever the block started in the background goes with it, even on a failure
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            # each block's time, printed: what the walk-through costs, block by block
            print(f"README block {i + 1}: {time.monotonic() - started:.1f} s")
            assert proc.returncode == 0, (
                f"README block {i + 1} failed:\n{script}\n---\n{out[-4000:]}"
            )
        # the copy shares the suite's venv: no block may have re-installed the copy into it
        assert installed_package_dir().startswith(str(REPO / "src")), installed_package_dir()
    finally:
        # a deployment a block left running: its servers live in sessions of their own
        subprocess.run(
            [".venv/bin/faultwatch", "deploy", "down"],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=120,
        )
        # a container a failed block left behind would make the next run's `podman run
        # --name` fail: the ones this test's blocks started go with it
        for name in containers:
            subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=120)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_contents_links_point_at_headings():
    text = (REPO / "README.md").read_text()
    anchors = {github_slug(h) for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) >= 10
    assert not sorted(set(links) - anchors), "README links to headings that do not exist"


def test_the_mermaid_diagram_draws_every_stage():
    """The diagram is the pipeline: every stage of dvc.yaml and the on-demand monitor (no DVC
    stage: `faultwatch monitor`), by name; the model groups' `foreach` stages as one node,
    `groups`, that names the first and the last of them."""
    import yaml

    text = (REPO / "README.md").read_text()
    diagram = re.search(r"^```mermaid\n(.*?)^```", text, re.S | re.M)
    assert diagram, "README has no mermaid diagram"
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stages = [name for name, s in spec.items() if "foreach" not in s]
    per_group = [name for name, s in spec.items() if "foreach" in s]
    stages.append("monitor")
    nodes = set(re.findall(r"\b([a-z]+)\b(?:\[|\(|\s*-->|\s*&)", diagram.group(1)))
    assert not [s for s in stages if s not in nodes], (stages, nodes)
    assert (
        "groups" in nodes
        and per_group[0] in diagram.group(1)
        and per_group[-1] in (diagram.group(1))
    ), per_group


def test_troubleshooting_quotes_messages_the_code_prints():
    """Each faultwatch message in the troubleshooting table is one the code still prints."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    source = "\n".join(p.read_text() for p in (REPO / "src/faultwatch").rglob("*.py"))
    ours = [
        "the pipeline fills",
        "the register stage's record",
        "no commit yet (commit the project first)",
        "Extra inputs are not permitted; did you mean",
        "cannot listen there",
        "haproxy not found: the router is Debian's HAProxy",
        "the failed run is saved as",
    ]
    for fragment in ours:
        in_code = fragment in source or fragment.startswith("Extra inputs")
        assert in_code, f"{fragment!r}: no longer in src/faultwatch"
    for fragment in ours[:-1]:
        assert fragment in section, f"{fragment!r}: not in the troubleshooting table"


def test_what_the_readme_commands_leave_is_git_ignored():
    """After the walk-through, `git status` lists only what a person means to commit: the
    container's log folder, the background traffic's output, the monitor's reports (a view of
    a log DVC does not version), the plots page and the report page are git-ignored."""
    left = [
        "predictions/predictions.sqlite",  # `podman run -v "$PWD/predictions:..."`
        "traffic.log",  # `simulate-traffic ... > traffic.log &`
        "reports/metrics/monitor.json",  # `faultwatch monitor`
        "reports/monitor/drift_v0.0.1.html",
        "reports/notebooks/05_monitor.ipynb",
        "reports/notebooks/05_monitor.html",
        "dvc_plots/index.html",  # `dvc plots diff ... -o dvc_plots`
        "reports/index.html",  # `faultwatch report`
    ]
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", *left], cwd=REPO, capture_output=True, text=True
    )
    assert sorted(proc.stdout.split()) == sorted(left), sorted(set(left) - set(proc.stdout.split()))
