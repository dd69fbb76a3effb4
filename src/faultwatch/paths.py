"""The one place that resolves project paths (root, data, reports, models)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from faultwatch import settings

MARKERS = ("params.yaml", "dvc.yaml")
# Set by the notebook runner while a stage runs: the folder its outputs are staged in
STAGING_ENV = "FAULTWATCH_STAGING"
# Set by Jupyter Server in the environment of a kernel it starts for a notebook: its path
JUPYTER_SESSION_ENV = "JPY_SESSION_NAME"
# Where runs outside the pipeline write, one folder per notebook, in the project's layout
ADHOC_DIR = Path("reports") / "adhoc"


def project_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding params.yaml or dvc.yaml.

    `FAULTWATCH_ROOT` overrides the search. A notebook opened in JupyterLab runs with
    cwd=notebooks/, papermill runs it from the root: both resolve to the same root.
    """
    env = settings.get("FAULTWATCH_ROOT")
    if env:
        return env.resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in MARKERS):
            return folder
    raise FileNotFoundError(f"no {' or '.join(MARKERS)} found at or above {here}")


def resolve(path: Path | str, root: Path | None = None) -> Path:
    """`path` as given if absolute, else relative to the project root."""
    p = Path(path)
    return p if p.is_absolute() else (root or project_root()) / p


def output(path: Path | str, root: Path | None = None) -> Path:
    """Where a stage writes its output `path` (relative to the project root).

    While the notebook runner runs a stage, that is the same relative path inside the runner's
    staging folder: the runner moves what the cells wrote into place only after the last cell
    succeeded, so a stage that fails halfway leaves every earlier output as it was.

    In a notebook opened in JupyterLab (a kernel Jupyter Server started for it, outside the
    runner), it is the same relative path under reports/adhoc/<notebook>/, as for an ad-hoc
    `faultwatch nb run -p`: trying parameters in JupyterLab never replaces the pipeline's
    outputs (DVC's, recorded in dvc.lock). Elsewhere (a script, a test), `path` itself.
    """
    root = root or project_root()
    target = resolve(path, root)
    staging = settings.get(STAGING_ENV)
    notebook = settings.get(JUPYTER_SESSION_ENV)
    if not staging and not notebook:
        return target
    try:
        rel = Path(os.path.normpath(target)).relative_to(Path(os.path.normpath(root)))
    except ValueError:
        if not staging:
            return target  # a place outside the project, chosen in the notebook: as given
        raise ValueError(
            f"{path}: a stage output must lie inside the project ({root}) to be staged"
        ) from None
    if staging:
        return Path(staging) / rel
    return root / ADHOC_DIR / Path(notebook).stem / rel


def display_path(path: Path | str, root: Path | None = None) -> str:
    """`path` as messages show it: relative to the project root when inside it, else as given.

    Every error names a file the same way, whether the user wrote it relative or absolute."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        base = (root or project_root()).resolve()
        return p.resolve().relative_to(base).as_posix()
    except (FileNotFoundError, ValueError):
        return str(p)


# A model group's folder (faultwatch.groups): groups/<name>/, laid out as the project is
GROUPS_DIR = "groups"


def group_of(root: Path) -> tuple[Path, str] | None:
    """(the project, the group's name) when `root` is a group's folder, `<project>/groups/<name>`
    holding its generated params.yaml beside the project's dvc.yaml; None otherwise."""
    root = Path(root)
    home = root.parent.parent
    if (
        root.parent.name == GROUPS_DIR
        and (root / "params.yaml").is_file()
        and (home / "dvc.yaml").is_file()
    ):
        return home, root.name
    return None


def home_root(root: Path) -> Path:
    """The project a group's folder belongs to; `root` itself otherwise."""
    found = group_of(root)
    return found[0] if found else root


EXPERIMENT_WORKSPACE = (".dvc", "tmp", "exps")


def experiment_home(root: Path) -> Path | None:
    """The project a DVC experiment copy belongs to, when `root` is one: `dvc exp run --queue`
    and `--temp` run the stages in a copy under `<project>/.dvc/tmp/exps/`."""
    parts = root.resolve().parts
    for i in range(len(parts) - len(EXPERIMENT_WORKSPACE)):
        if parts[i + 1 : i + 1 + len(EXPERIMENT_WORKSPACE)] == EXPERIMENT_WORKSPACE:
            return Path(*parts[: i + 1])
    return None


def bentoml_home(root: Path | None = None) -> Path:
    """The BentoML store of this project: `BENTOML_HOME` if set (relative to the cwd), else
    `<root>/.bentoml`, so the stages, the CLI and the server use one store however started.
    A queued or temporary DVC experiment uses its project's store, not one in its throw-away
    copy: `dvc exp apply` brings back its register.json, whose model must then be in the
    project's store."""
    env = settings.get("BENTOML_HOME")
    if env:
        return Path(env).resolve()
    return project_store(root or project_root())


def project_store(root: Path) -> Path:
    """`bentoml_home`'s default, whatever BENTOML_HOME says: `root`'s own store, or its
    project's for a DVC experiment's copy."""
    root = home_root(root)
    return (experiment_home(root) or root) / ".bentoml"


def reports_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "reports"


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write to a temporary file beside `path`, then rename: readers never see half a file,
    and a failure leaves the previous version in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
