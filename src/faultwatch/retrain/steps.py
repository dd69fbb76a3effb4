"""The retrain loop's steps up to the promotion gate and the package (the module docstring of
faultwatch.retrain numbers them); each returns None to go on, or the exit status to stop with."""

from __future__ import annotations

import filecmp
import json
import shutil
import time
from pathlib import Path

import yaml

from faultwatch import progress, registry
from faultwatch.deploy.fleet import PACKAGE_FILE, packaged_fleet
from faultwatch.errors import FaultwatchError
from faultwatch.groups import ARTIFACTS_FILE, specs
from faultwatch.params import load_params, section
from faultwatch.promote import promote_if_better
from faultwatch.report_page import refresh
from faultwatch.retrain.batch import batch_from_log
from faultwatch.retrain.loop import (
    EXIT_REFUSED,
    LOG_DIR,
    Outcome,
    RetrainError,
    Run,
    commit_paths,
    git_outputs,
    run_logged,
    tool,
)


def validate(root: Path, batch: Path) -> dict:
    """The batch through prepare's code (nothing written): the prepare summary it would give."""
    # pandas, pyarrow and scikit-learn come with it: imported when a batch is checked, not
    # by every `faultwatch` command (the CLI imports this module)
    from faultwatch.data.prepare import load_splits, production_folder

    raw = load_params(root / "params.yaml")
    data, split = section("data", raw), section("split", raw)
    if not data.production_dir:
        raise RetrainError("params.yaml data.production_dir is empty: no place for the batch")
    _, summary = load_splits(data, split, root, extra=[batch])
    return {"summary": summary, "production_dir": production_folder(data, root)}


def step_validate(run: Run) -> Outcome:
    """1. The batch through prepare's rules, nothing changed; a dry run ends here."""
    loop, t0 = run.loop, time.monotonic()
    try:
        if run.from_log is not None:
            run.source = run.root / LOG_DIR / f"{loop.stamp}-log.parquet"
            batch_from_log(run.from_log, run.start, run.end, run.source, run.group, run.labellers)
        assert run.source is not None
        if not run.source.is_file():
            raise RetrainError(f"{run.source}: no such file")
        run.checked = validate(run.folder, run.source)
    except FaultwatchError as e:
        loop.report("validate", "FAILED", t0, str(e))
        loop.out("nothing was changed")
        return 1
    s = run.checked["summary"]
    new = s["production"]["batches"][-1]  # the batch is the last one added
    loop.report(
        "validate",
        "ok",
        t0,
        f"{run.source.name}: {new['n_signals']} signals ({new['n_fault']} fault) pass the "
        f"prepare rules; train would hold {s['train']['n_signals']} signals "
        f"({s['train']['n_fault']} fault), {s['production']['n_signals']} of them from production",
    )
    if not run.dry_run:
        return None
    loop.out(
        progress.done_line(
            f"{run.source.name} validated; dry run: nothing was changed",
            None,
            "the same command without --dry-run",
        )
    )
    return 0


def step_data(run: Run) -> Outcome:
    """2. The batch into data.production_dir/<data.source>, `dvc add`ed: a new data version."""
    loop, t0, source = run.loop, time.monotonic(), run.source
    assert source is not None
    folder = run.checked["production_dir"]  # data.production_dir/<data.source>
    folder.mkdir(parents=True, exist_ok=True)
    stem = source.stem if run.from_log is None else "log"
    dest = folder / f"{loop.stamp}-{stem}{source.suffix.lower()}"
    # a run killed after this step left the batch here, uncommitted: a run again takes it as
    # it is, never a second copy (the same signals twice in the training split)
    there = already_there(folder, source)
    if there is None:
        shutil.copy2(source, dest)
    run.rel = (there or dest).relative_to(run.root)
    try:
        run_logged(loop, [tool("dvc"), "add", str(run.rel)], "dvc add")
    except RetrainError as e:
        dest.unlink(missing_ok=True)
        loop.report("data", "FAILED", t0, str(e))
        return 1
    if there is not None:
        loop.report("data", "ok", t0, f"{run.rel}: this batch is there already, not added twice")
        return None
    loop.report("data", "ok", t0, f"{run.rel} added (dvc add): a new version of the data")
    return None


def already_there(folder: Path, source: Path) -> Path | None:
    """A file of `folder` with the bytes of `source` (an earlier run's copy), if any."""
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix == source.suffix.lower() and filecmp.cmp(f, source, False):
            return f
    return None


def repro_commands(group: str | None) -> list[list[str]]:
    """What step 3 runs. A group's batch lies in its own folder, outside `group-params`'
    dependency (the project's data/raw): that stage is forced, so that its `group.data_md5`,
    which hashes the group's batches, changes, and DVC re-runs that group's stages alone."""
    if group is None:
        return [[tool("dvc"), "repro", "register"]]
    return [
        [tool("dvc"), "repro", "-f", "-s", f"group-params@{group}"],
        [tool("dvc"), "repro", f"group-register@{group}"],
    ]


def step_repro(run: Run) -> Outcome:
    """3. The stages the gate reads (eda and package wait for its decision)."""
    loop, t0 = run.loop, time.monotonic()
    try:
        for cmd in repro_commands(run.stages_of):
            run_logged(loop, cmd, " ".join(["dvc", *cmd[1:]]))
    except RetrainError as e:
        loop.report("repro", "FAILED", t0, str(e))
        loop.out(
            f"the batch stays in {run.rel}; fix the failing stage, then `dvc repro`, `promote`"
        )
        return 1
    if run.stages_of is None:
        done = "dvc repro register: prepare, augment, train, evaluate, register"
    else:
        done = f"dvc repro group-register@{run.stages_of}: {run.stages_of}'s stages alone"
    loop.report("repro", "ok", t0, done)
    return None


def step_commit(run: Run) -> Outcome:
    """4. The batch's pointer, dvc.lock and the outputs kept in git, committed."""
    loop, t0, rel = run.loop, time.monotonic(), run.rel
    pointer = rel.with_name(rel.name + ".dvc")
    paths = [
        pointer,
        rel.parent / ".gitignore",
        Path("dvc.lock"),
        *git_outputs(run.root, run.stages_of),
    ]
    if run.stages_of is not None:
        paths.append(Path(ARTIFACTS_FILE))  # group-params rewrites the group's entry
    try:
        head = commit_paths(loop, paths, f"retrain: data batch {rel}")
    except RetrainError as e:
        loop.report("commit", "FAILED", t0, str(e))
        return 1
    loop.report(
        "commit", "ok", t0, f"{head}: {pointer}, dvc.lock and the metrics and reports in git"
    )
    return None


def step_promote(run: Run) -> Outcome:
    """5. The promotion gate; a rejection ends the loop (the page shows the refusal)."""
    loop, t0 = run.loop, time.monotonic()
    try:
        decision, run.version = promote_if_better(  # a group's: in its folder, its params
            run.folder, section("promote", load_params(run.folder / "params.yaml"))
        )
    except FaultwatchError as e:
        loop.report("promote", "FAILED", t0, str(e))
        return 1
    reasons = "; ".join(decision.reasons)
    approval = registry.get(run.version, run.folder).approval
    if approval == registry.APPROVED:
        loop.report("promote", "approved", t0, f"{run.name} approved: {reasons}")
        return None
    if approval == registry.PENDING:  # promote.require_approval: a person decides first
        loop.report("promote", "PENDING", t0, f"{run.name} passed the gate and waits for a person")
        then = (
            f"`faultwatch deploy stage {run.version}`"
            if run.group is None or not specs(load_params(run.root / "params.yaml"))
            else "`dvc repro -f -s package` (the fleet bento), `faultwatch deploy stage`"
        )
        loop.out(
            f"stopped before the rollout: `faultwatch approve {registry.where(run.folder)[1]} "
            f"{run.version} --by NAME`, then {then} and a canary"
        )
        loop.out(refresh(run.root))
        return EXIT_REFUSED
    loop.report("promote", "REJECTED", t0, f"{run.name}: the promotion gate refused: {reasons}")
    loop.out("stopped at the promotion gate: nothing staged, nothing switched")
    # the page shows the registry's refusal (on approval the report stage and the deploy
    # commands, which change the registry, rewrite it)
    loop.out(refresh(run.root))
    return EXIT_REFUSED


def package_command(root: Path) -> list[str]:
    """A group's retrain: the package stage alone (the fleet bento, which holds the group's
    new version and every other group's model as it was), forced, as `dvc repro -f -s
    package`; through `faultwatch package` where that stage cannot run (a fleet without the
    project's own model lacks its dependency reports/register.json)."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    deps = (stages.get("package") or {}).get("deps") or []
    if deps and all((root / str(d)).exists() for d in deps):
        return [tool("dvc"), "repro", "-f", "-s", "package"]
    return [tool("faultwatch"), "package"]


def step_package_fleet(run: Run) -> Outcome:
    """5b, for a group: the fleet bento with the group's new version (its eda, which no gate
    reads, waits for the next `dvc repro`)."""
    loop, t0 = run.loop, time.monotonic()
    try:
        cmd = package_command(run.root)
        run_logged(loop, cmd, " ".join([Path(cmd[0]).name, *cmd[1:]]))
        head = commit_paths(loop, [Path("dvc.lock")], f"retrain: {run.name} packaged")
        run.fleet_bento = packaged_fleet(run.root) or ""
        if not run.fleet_bento:
            raise RetrainError(f"{PACKAGE_FILE}: no fleet bento (params.yaml has no groups?)")
        record = json.loads((run.root / PACKAGE_FILE).read_text())
        packaged = (record["models"].get(run.group) or {}).get("registry_version")
        if packaged != run.version:
            raise RetrainError(
                f"{PACKAGE_FILE}: the fleet bento holds {run.group} {packaged}, not "
                f"{run.version} (see its reason: {record['models'].get(run.group)})"
            )
    except RetrainError as e:
        loop.report("package", "FAILED", t0, str(e))
        return 1
    loop.report("package", "ok", t0, f"the fleet bento {run.fleet_bento} with {run.name}; {head}")
    return None


def step_package(run: Run) -> Outcome:
    """5b. The rest of the pipeline now that the decision is made: eda on the new data, and
    package, which builds the bento of the production model (now the new one)."""
    if run.group is not None and specs(load_params(run.root / "params.yaml")):
        return step_package_fleet(run)
    loop, t0 = run.loop, time.monotonic()
    try:
        run_logged(loop, [tool("dvc"), "repro"], "dvc repro")
        paths = [Path("dvc.lock"), *git_outputs(run.root)]
        head = commit_paths(loop, paths, f"retrain: {run.version} packaged")
    except RetrainError as e:
        loop.report("package", "FAILED", t0, str(e))
        return 1
    loop.report(
        "package", "ok", t0, f"dvc repro: eda, package (the bento of {run.version}); {head}"
    )
    return None
