"""`faultwatch retrain`: new labelled signals -> a better model in production, or a named refusal.

The steps, each printed as one line (step, outcome, seconds, detail), and when the loop got
through, one last `done:` line (faultwatch.progress); meanwhile the stages `dvc repro` runs, the
notebooks' cells and epochs, and the steps of the canary show as progress on stderr:

1. validate: the batch (a file in any format `prepare` reads, or the labelled production
   signals of a window of the prediction log) goes through `prepare`'s own code
   (faultwatch.data.prepare.load_splits, with the batch added): the source's rules on every
   signal, labels that are classes of the source or `healthy`. A bad batch stops here, naming
   file, row and rule, with nothing changed.
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
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from faultwatch import progress
from faultwatch.errors import FaultwatchError

EXIT_REFUSED = 3  # as `deploy`: a gate said no
LOG_DIR = Path(".faultwatch/retrain")


class RetrainError(FaultwatchError):
    """A step of the loop could not run (as opposed to a gate that refused)."""


@dataclass
class Step:
    """What one step printed: its outcome and a one-line detail."""

    name: str
    outcome: str
    seconds: float
    detail: str

    def line(self) -> str:
        return f"{self.name:<9} {self.outcome:<9} {self.seconds:6.1f} s  {self.detail}"


class Loop:
    """Runs the steps in order, printing one line each, and keeps the full output of the
    commands it calls (dvc, deploy) in the run's log file."""

    def __init__(self, root: Path, out: Callable[[str], None] = print):
        self.root, self.out = root, out
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        self.log = root / LOG_DIR / f"{stamp}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def note(self, text: str) -> None:
        with open(self.log, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def report(self, name: str, outcome: str, t0: float, detail: str) -> Step:
        s = Step(name, outcome, time.monotonic() - t0, detail)
        self.out(s.line())
        self.note(f"== {s.line()}")
        return s

    def quiet(self, fn: Callable[..., int], *args) -> tuple[int, str]:
        """Call a deploy command, its output into the log (and returned), not on the screen."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = fn(*args)
        self.note(buf.getvalue())
        return code, buf.getvalue()


def _tool(name: str) -> str:
    """The project's venv copy of a tool (beside this Python), else the one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


# what a command's output says about its progress: the stages `dvc repro` runs, and the lines
# the notebook runner prints for each cell and epoch (faultwatch.progress)
PROGRESS_LINE = re.compile(r"^(Running stage '[^']+'|\[[\w-]+\] (cell|epoch) \d+/\d+)")


def _run(loop: Loop, cmd: list[str], what: str) -> None:
    """Run `cmd`, its output into the run's log as it comes (`tail -f` follows it); the lines
    that tell its progress (PROGRESS_LINE) are echoed as progress."""
    loop.note(f"$ {' '.join(cmd)}")
    lines: list[str] = []
    with (
        open(loop.log, "a") as log,
        subprocess.Popen(
            cmd, cwd=loop.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            log.write(line)
            log.flush()
            if PROGRESS_LINE.match(line):
                progress.step(f"  {line.rstrip()}")
    if proc.returncode != 0:
        tail = "\n".join("".join(lines).strip().splitlines()[-15:])
        raise RetrainError(f"{what} failed ({proc.returncode}); log {loop.log}:\n{tail}")


def _commit(loop: Loop, paths: list[Path], message: str) -> str:
    """Commit these paths only (the user's other changes stay as they are); the short sha.
    Nothing changed in them: HEAD as it is."""
    names = [str(p) for p in paths if (loop.root / p).exists()]
    _run(loop, ["git", "add", "--", *names], "git add")
    staged = subprocess.run(
        ["git", "diff", "--cached", "--quiet", "--", *names], cwd=loop.root
    ).returncode
    if staged:
        _run(loop, ["git", "commit", "-q", "-m", message, "--", *names], "git commit")
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=loop.root, capture_output=True, text=True
    ).stdout.strip()


def git_outputs(root: Path) -> list[Path]:
    """The outputs dvc.yaml keeps in git (`cache: false`): what `dvc repro` rewrote that a
    commit must hold beside dvc.lock."""
    import yaml

    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    found = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind) or []:
                if isinstance(out, dict):
                    (name, opts), *_ = out.items()
                    if (opts or {}).get("cache") is False:
                        found.append(Path(name))
    return found


def batch_from_log(target: str, start: float | None, end: float | None, dest: Path) -> int:
    """The labelled production signals of [start, end) from the prediction log, as a Parquet
    batch in `dest` (id = prediction_id, label = the delayed true label); returns the count."""
    from faultwatch.serve import predlog

    reader = getattr(predlog, "read_signals", None)
    if reader is None:
        raise RetrainError(
            "--from-log: this prediction log module has no read_signals (the sampled signals "
            "arrive with FAULTWATCH_LOG_SIGNALS)"
        )
    df = reader(target, start, end, labelled_only=True)
    if df.empty:
        raise RetrainError(
            f"--from-log {target}: no labelled signals in the window (signals are sampled at "
            "FAULTWATCH_LOG_SIGNALS, labels come through POST /feedback)"
        )
    batch = df.assign(
        id=df["prediction_id"].astype(str),
        label=df["true_label"].astype(str),
        values=df["values"].map(lambda v: [float(x) for x in v]),
    )[["id", "label", "values"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    batch.to_parquet(dest, index=False)
    return len(batch)


def validate(root: Path, batch: Path) -> dict:
    """The batch through prepare's code (nothing written): the prepare summary it would give."""
    from faultwatch.data.prepare import load_splits, production_folder
    from faultwatch.params import load_params, section

    raw = load_params(root / "params.yaml")
    data, split = section("data", raw), section("split", raw)
    if not data.production_dir:
        raise RetrainError("params.yaml data.production_dir is empty: no place for the batch")
    _, summary = load_splits(data, split, root, extra=[batch])
    return {"summary": summary, "production_dir": production_folder(data, root)}


def deployment_running(root: Path) -> bool:
    """A router and a live colour run (`faultwatch deploy up`)."""
    from faultwatch.deploy import commands as d
    from faultwatch.deploy import router as rt
    from faultwatch.deploy.state import load

    st = load(root)
    return bool(
        st.live
        and rt.pid_alive(st.router_pid, d.ROUTER_MARKER)
        and d.alive(st.colours.get(st.live))
    )


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
) -> int:
    """The loop (module docstring); returns the exit status."""
    loop = Loop(root, out)
    out(f"retrain: log {loop.log.relative_to(root)}")

    # 1. validate ------------------------------------------------------------------------
    t0 = time.monotonic()
    try:
        if from_log is not None:
            source = root / LOG_DIR / f"{loop.stamp}-log.parquet"
            batch_from_log(from_log, start, end, source)
        assert source is not None
        if not source.is_file():
            raise RetrainError(f"{source}: no such file")
        checked = validate(root, source)
    except FaultwatchError as e:
        loop.report("validate", "FAILED", t0, str(e))
        out("nothing was changed")
        return 1
    s = checked["summary"]
    new = s["production"]["batches"][-1]  # the batch is the last one added
    loop.report(
        "validate",
        "ok",
        t0,
        f"{source.name}: {new['n_signals']} signals ({new['n_fault']} fault) pass the prepare "
        f"rules; train would hold {s['train']['n_signals']} signals ({s['train']['n_fault']} "
        f"fault), {s['production']['n_signals']} of them from production",
    )
    if dry_run:
        out(
            progress.done_line(
                f"{source.name} validated; dry run: nothing was changed",
                None,
                "the same command without --dry-run",
            )
        )
        return 0

    # 2. data ----------------------------------------------------------------------------
    t0 = time.monotonic()
    folder = checked["production_dir"]  # data.production_dir/<data.source>
    folder.mkdir(parents=True, exist_ok=True)
    stem = source.stem if from_log is None else "log"
    dest = folder / f"{loop.stamp}-{stem}{source.suffix.lower()}"
    shutil.copy2(source, dest)
    rel = dest.relative_to(root)
    try:
        _run(loop, [_tool("dvc"), "add", str(rel)], "dvc add")
    except RetrainError as e:
        dest.unlink(missing_ok=True)
        loop.report("data", "FAILED", t0, str(e))
        return 1
    loop.report("data", "ok", t0, f"{rel} added (dvc add): a new version of the data")

    # 3. repro: the stages the gate reads (eda and package wait for its decision) -------
    t0 = time.monotonic()
    try:
        _run(loop, [_tool("dvc"), "repro", "register"], "dvc repro register")
    except RetrainError as e:
        loop.report("repro", "FAILED", t0, str(e))
        out(f"the batch stays in {rel}; fix the failing stage, then `dvc repro`, `promote`")
        return 1
    loop.report(
        "repro", "ok", t0, "dvc repro register: prepare, augment, train, evaluate, register"
    )
    # 4. commit --------------------------------------------------------------------------
    t0 = time.monotonic()
    pointer = rel.with_name(rel.name + ".dvc")
    paths = [pointer, rel.parent / ".gitignore", Path("dvc.lock"), *git_outputs(root)]
    try:
        head = _commit(loop, paths, f"retrain: data batch {rel}")
    except RetrainError as e:
        loop.report("commit", "FAILED", t0, str(e))
        return 1
    loop.report(
        "commit", "ok", t0, f"{head}: {pointer}, dvc.lock and the metrics and reports in git"
    )
    # 5. promote -------------------------------------------------------------------------
    from faultwatch.params import load_params, section
    from faultwatch.promote import promote_if_better

    t0 = time.monotonic()
    try:
        decision, version = promote_if_better(
            root, section("promote", load_params(root / "params.yaml"))
        )
    except FaultwatchError as e:
        loop.report("promote", "FAILED", t0, str(e))
        return 1
    reasons = "; ".join(decision.reasons)
    if not decision.approved:
        loop.report("promote", "REJECTED", t0, f"{version}: the promotion gate refused: {reasons}")
        out("stopped at the promotion gate: nothing staged, nothing switched")
        from faultwatch.report_page import refresh

        # the page shows the registry's refusal (on approval the report stage and the deploy
        # commands, which change the registry, rewrite it)
        out(refresh(root))
        return EXIT_REFUSED
    loop.report("promote", "approved", t0, f"{version} approved: {reasons}")

    # 5b. the rest of the pipeline, now that the decision is made: eda on the new data, and
    # package, which builds the bento of the production model (now the new one) -----------
    t0 = time.monotonic()
    try:
        _run(loop, [_tool("dvc"), "repro"], "dvc repro")
        head = _commit(loop, [Path("dvc.lock"), *git_outputs(root)], f"retrain: {version} packaged")
    except RetrainError as e:
        loop.report("package", "FAILED", t0, str(e))
        return 1
    loop.report("package", "ok", t0, f"dvc repro: eda, package (the bento of {version}); {head}")

    # 6. deploy: stage, canary, switch -----------------------------------------------------
    from faultwatch.deploy import commands as d
    from faultwatch.deploy.state import DeployError, load

    t0 = time.monotonic()
    if not deployment_running(root):
        loop.report(
            "deploy",
            "skipped",
            t0,
            "no deployment running (`faultwatch deploy up`): stopped after promotion; "
            f"{version} is approved, production once it serves",
        )
        out(
            progress.done_line(
                f"{version} trained on {rel}, approved and packaged",
                "the registry and the BentoML store",
                f"faultwatch deploy up {version} (serves it behind the router: production)",
            )
        )
        return 0
    st = load(root)
    live = st.colours[st.live]
    if live.version == version:
        loop.report("deploy", "skipped", t0, f"{version} is already live on {st.live}")
        out(
            progress.done_line(
                f"{version} live on {st.live}", d.at_router(st), "faultwatch deploy status"
            )
        )
        return 0
    p = d.params(root)
    steps = steps or list(p.canary_steps)
    try:
        code, text = loop.quiet(d.cmd_stage, root, version)
        last = _last(text)
        if code != 0:
            loop.report("stage", "REFUSED", t0, f"{version}: {last}")
            out(f"stopped at the smoke test: {st.live} ({live.version}) keeps all the traffic")
            return EXIT_REFUSED
        colour = load(root).standby
        loop.report("stage", "ok", t0, f"{version} on {colour}, smoke test passed")

        t0 = time.monotonic()
        code, text = loop.quiet(d.cmd_canary, root, None, steps, interval)
        if code != 0:
            loop.report("canary", "ABORTED", t0, _last(text))
            out(f"stopped at the canary analysis: {st.live} ({live.version}) keeps all the traffic")
            return EXIT_REFUSED
        verdicts = sum(": PASS (" in line for line in text.splitlines())
        loop.report("canary", "passed", t0, f"steps {steps} % ({verdicts} analyses passed)")

        t0 = time.monotonic()
        st = load(root)
        if st.colours[st.live].version != version:
            code, text = loop.quiet(d.cmd_switch, root)
            if code != 0:
                loop.report("switch", "FAILED", t0, _last(text))
                return 1
        st = load(root)
        loop.report("switch", "ok", t0, f"{st.live} ({version}) is live at {st.url}")
    except DeployError as e:
        loop.report("deploy", "FAILED", t0, str(e))
        return 1
    out(
        progress.done_line(
            f"{version} live on {st.live} (trained on {rel})",
            d.at_router(st),
            f"faultwatch deploy status (faultwatch deploy rollback returns to {live.version})",
        )
    )
    return 0


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


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
    return os.environ.get("FAULTWATCH_PREDICTION_LOG") or str(
        root / "reports" / "serving" / "predictions.sqlite"
    )
