"""`faultwatch retrain`: new labelled signals -> a better model in production, or a named refusal.

The steps, each printed as one line (step, outcome, seconds, detail), and when the loop got
through, one last `done:` line (faultwatch.progress); meanwhile the stages `dvc repro` runs, the
notebooks' cells and epochs, and the steps of the canary show as progress on stderr:

1. validate: the batch (a file in any format `prepare` reads, or the labelled production
   signals of a window of the prediction log) goes through `prepare`'s own code
   (faultwatch.data.prepare.load_splits, with the batch added): the source's rules on every
   signal, labels that are classes of the source or `healthy`. A bad batch stops here, naming
   file, row and rule, with nothing changed. A multichannel model's logged signals make a
   multichannel batch with the channel names they were logged with (retrain/batch.py).
2. data: the batch is copied into `data.production_dir`/<data.source> (data/raw/production/,
   under the prepare stage's dependency; faultwatch.data.prepare.production_folder) and `dvc
   add`ed: a new version of the data. `prepare` appends every batch of the current source to
   the training split only (val and test stay the source's).
3. repro: `dvc repro register` (prepare, augment, train, evaluate, register: what the gate
   reads); the commands' output goes to .faultwatch/retrain/<time>.log.
4. commit: the batch's pointer, dvc.lock and every output dvc.yaml keeps in git (`cache:
   false`: the metrics, the scores, the plot files) are committed: the registry's versions are
   tied to commits, and the commit a version names holds that version's metrics.
5. promote: the promotion gate (faultwatch.promote.promote_if_better). A rejection stops here
   (eda and package are left for the next `dvc repro`: a rejected model is not packaged).
   On approval, `dvc repro` runs the rest: eda on the new data, and package, which now
   builds the bento of the approved model; dvc.lock and the outputs in git are committed
   again.
6. With a deployment running (`faultwatch deploy up`): stage (`deploy stage`, its smoke
   test), canary (`deploy canary --steps` with its analysis on live traffic) and switch, which
   makes the version `prod` in the registry. Without one, it stops after the promotion (the
   version approved, not production) and says so.

Every gate that says no (promotion, smoke test, canary analysis) stops the loop with nothing
switched and exit status 3; an error (bad batch, a failing stage) exits 1.

`--group NAME` retrains one model group of a fleet (faultwatch.groups), the other groups' models
untouched: the log's rows that group answered (`model`; the project's own fault_cnn also the
rows logged without one); the batch in the group's own production folder,
groups/NAME/<data.production_dir>/<data.source> (where that group's `prepare` reads batches;
`group.data_md5`, which its stages depend on, hashes them), so that forcing `group-params@NAME`
and `dvc repro group-register@NAME` re-runs that group's stages alone; the gate in its folder
(`faultwatch promote NAME`); then the package stage alone builds the fleet bento, every other
group's model as it was, and that bento is what the rollout stages and canaries (the canary
judges the changed group).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from faultwatch import settings
from faultwatch.deploy import failpoints
from faultwatch.deploy.errors import DeployError
from faultwatch.retrain.loop import EXIT_REFUSED, LOG_DIR, Loop, Outcome, RetrainError, Run
from faultwatch.retrain.rollout import (
    DEPLOY_STEPS,
    step_canary,
    step_deployment,
    step_stage,
    step_switch,
)
from faultwatch.retrain.steps import (
    step_commit,
    step_data,
    step_package,
    step_promote,
    step_repro,
    step_validate,
)

__all__ = [
    "EXIT_REFUSED",
    "LOG_DIR",
    "ROLLOUT_STEPS",
    "RetrainError",
    "default_log_target",
    "parse_time",
    "retrain",
    "run_steps",
]

STEPS: tuple[Callable[[Run], Outcome], ...] = (
    step_validate,
    step_data,
    step_repro,
    step_commit,
    step_promote,
    step_package,
    step_deployment,
    step_stage,
    step_canary,
    step_switch,
)
# what the loop does once a version is approved and packaged: with a deployment running, the
# rollout (stage, canary, switch)
ROLLOUT_STEPS = STEPS[STEPS.index(step_deployment) :]


def retrain(
    root: Path,
    source: Path | None,
    from_log: str | None = None,
    start: float | None = None,
    end: float | None = None,
    steps: list[int] | None = None,
    interval: float | None = None,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
    group: str | None = None,
    labellers: tuple[str, ...] = (),
) -> int:
    """The loop (module docstring); returns the exit status. `group`: that model group's
    (its folder's params, data and registry artifact; its stages alone; the fleet bento).
    `labellers`: --from-log keeps only the labels they gave (none given: every label)."""
    loop = Loop(root, out)
    out(f"retrain: log {loop.log.relative_to(root)}")
    run = Run(
        loop, source, from_log, start, end, steps, interval, dry_run, group=group,
        labellers=labellers,
    )  # fmt: skip
    return run_steps(run, STEPS)


def run_steps(run: Run, steps: tuple[Callable[[Run], Outcome], ...]) -> int:
    """`steps` in order until one returns an exit status (a refusal: EXIT_REFUSED); a deploy
    step that cannot do its part ends the loop with exit status 1."""
    for step in steps:
        failpoints.reach(step.__name__)  # tests: FAULTWATCH_FAILPOINT=step_canary kills here
        try:
            code = step(run)
        except DeployError as e:
            if step not in DEPLOY_STEPS:
                raise
            run.loop.report("deploy", "FAILED", run.t0, str(e))
            return 1
        if code is not None:
            return code
    return 0


def parse_time(text: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: expected unix seconds or an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def default_log_target(root: Path) -> str:
    """FAULTWATCH_PREDICTION_LOG (a path or a postgresql:// URL), else the serve default."""
    target = settings.get("FAULTWATCH_PREDICTION_LOG")
    return str(target) if target else str(root / settings.DEFAULT_PREDICTION_LOG)
