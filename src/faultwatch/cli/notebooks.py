"""`faultwatch nb run`: a notebook executed as a pipeline stage, or ad hoc with other params."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import yaml

from faultwatch import progress
from faultwatch.cli.args import _override
from faultwatch.paths import ADHOC_DIR, display_path, project_root


def cmd_nb_run(args: argparse.Namespace) -> int:
    # imported here: papermill and the kernel machinery take seconds to import
    from faultwatch.notebook import run_notebook

    root = project_root()
    notebook = Path(args.notebook).resolve()
    output = Path(args.output).resolve() if args.output else None
    if output is None and (args.param or args.params):
        # a run with other params than params.yaml's is not the pipeline's: its outputs (the
        # executed notebook, metrics, and what the cells write) go beside, not over, the stage's
        output = root / ADHOC_DIR / notebook.stem
    run = run_notebook(
        notebook,
        root,
        params_file=Path(args.params).resolve() if args.params else None,
        overrides=dict(args.param or []),
        html=not args.no_html,
        kernel=args.kernel,
        output_root=output,
    )
    for p in (run.notebook, run.html, run.metrics):
        if p.exists():
            print(f"wrote {display_path(p, root)}")
    what = f"{notebook.name} executed ({run.cells} cells, {run.seconds:.0f} s)"
    stages = pipeline_stages(root)
    if output is None and run.stage in stages:  # the stage's outputs (in or outside dvc repro)
        nxt = "dvc repro (records these outputs in dvc.lock and runs the stages after it)"
    elif output is not None and args.param and run.stage in stages:
        sets = " ".join(
            "-S " + shlex.quote(f"{run.stage}.{k}={json.dumps(v)}") for k, v in args.param
        )
        nxt = f"dvc exp run {sets} (the same change as an experiment of the pipeline)"
    else:
        nxt = f"jupyter lab {display_path(run.notebook, root)}"
    progress.done(what, display_path(output or run.notebook.parent, root), nxt)
    return 0


def pipeline_stages(root: Path) -> set[str]:
    """The stages of the root dvc.yaml (those `dvc repro` and `dvc exp run` run)."""
    path = root / "dvc.yaml"
    spec = yaml.safe_load(path.read_text()) if path.is_file() else None
    return set((spec or {}).get("stages") or {})


def register(sub: argparse._SubParsersAction) -> None:
    nb = sub.add_parser("nb", help="notebook stages").add_subparsers(
        dest="nb_command", required=True
    )
    r = nb.add_parser("run", help="execute a notebook as a pipeline stage")
    r.add_argument("notebook")
    r.add_argument("--params", help="params file (default: params.yaml at the project root)")
    r.add_argument("-p", "--param", type=_override, action="append", help="override: key=value")
    r.add_argument("--no-html", action="store_true", help="skip the HTML copy")
    r.add_argument("--kernel", action="store_true", help="run in a Jupyter kernel, not in-process")
    r.add_argument(
        "--output",
        metavar="DIR",
        help="write every output under DIR, mirroring the project's layout (default: in place, "
        "as the pipeline stage does; with -p or --params: reports/adhoc/<notebook>/)",
    )
    r.set_defaults(func=cmd_nb_run)
