"""JupyterLab as a person uses it: the venv's `jupyter lab` on loopback (a token, no browser of
its own) in a copy of a project the pipeline has run in (tiny data), and Debian's Chromium
driven by Playwright. Each notebook of notebooks/ is opened, the "faultwatch (.venv)" kernel
picked in the kernel dialog, Run > Run All Cells clicked, and the executed notebook checked the
way a reader would: every code cell ran, no cell shows an error, the figures are drawn. The
notebooks run with the defaults of their `parameters` cell, as in JupyterLab, not params.yaml.

Screenshots of the executed notebooks: test-artifacts/jupyterlab/<notebook>.png
(tests/helpers/browser.py), with the saved .ipynb beside them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from helpers.browser import artifact, headless_browser
from helpers.cli import run, store_env, tool_env
from helpers.paths import REPO, VENV_BIN
from helpers.ports import free_port
from helpers.processes import started
from helpers.projects import copy_tree
from helpers.ready import NotReady, wait_for

# the pipeline (tiny_pipeline, once per session) plus about 2 minutes of notebooks on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KERNEL, KERNEL_DISPLAY = "faultwatch", "faultwatch (.venv)"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
# the figures each notebook draws with its defaults on the tiny project (at least)
FIGURES = {
    "01_eda": 3,
    "02_augment": 1,
    "03_train": 1,
    "04_evaluate": 2,
    "05_monitor": 4,
    "06_review": 2,
}
# the order to start in; 06_review starts with 05_monitor's second run, once there is a log
SLOW = ["03_train", "05_monitor", "04_evaluate", "01_eda", "02_augment", "06_review"]
ON_THE_LOG = ("05_monitor", "06_review")  # run on the prediction log the test writes
NO_LOG_FIGURES = 2  # 05_monitor with no prediction log: the fault rate and drift axes, empty
READY_S, RUN_S = 60, 300  # bounded waits, well inside the test's timeout so `finally` runs
VIEWPORT = {"width": 1280, "height": 900}
NO_LOG = "05_monitor_no_log"  # 05_monitor's first run, and its screenshot
PREDICTION_LOG = "reports/serving/predictions.sqlite"  # where the service logs by default


@dataclass
class Lab:
    root: Path
    url: str
    token: str

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(
            f"{self.url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        # a workspace per notebook (windows open at once), reset: only this notebook open
        return (
            f"{self.url}/lab/workspaces/{notebook}/tree/notebooks/{notebook}.ipynb"
            f"?reset&token={self.token}"
        )

    def sessions(self, notebook: str) -> list[dict]:
        path = f"notebooks/{notebook}.ipynb"
        return [s for s in self.api("sessions") if s["path"] == path]

    def shut_down(self, notebook: str) -> None:
        """Close the notebook's kernel, as File > Close and Shut Down Notebook does."""
        for s in self.sessions(notebook):
            self.api(f"sessions/{s['id']}", method="DELETE")


def _leftover_kernels(runtime_dir: Path) -> list[int]:
    """Pids of kernels this server started (their connection file lies in our runtime dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(runtime_dir) in cmdline:
                pids.append(int(proc.name))
    return pids


def _kill_leftover_kernels(runtime_dir: Path) -> None:
    """SIGKILL to any kernel the server left behind, by pid."""
    for pid in _leftover_kernels(runtime_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def jupyter_lab(
    cmd: list[str], root: Path, env: dict[str, str], log_path: Path, port: int, token: str
) -> Iterator[Lab]:
    """`cmd` (a `jupyter lab` on `port` with `token`) started in `root`, once its API answers;
    stopped on leaving, also on failure: SIGTERM to its process group (it shuts its kernels
    down), SIGKILL if it does not exit in time, then any kernel it left behind."""
    try:
        with started(cmd, root, env, log_path) as proc:
            server = Lab(root, f"http://127.0.0.1:{port}", token)

            def answers() -> bool:
                try:
                    server.api("status")
                except OSError:
                    return False
                return True

            try:
                wait_for(answers, READY_S, proc, interval_s=0.3)
            except NotReady as e:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"jupyter lab (uid {os.geteuid()}) {e}:\n{tail}")
            yield server
    finally:
        _kill_leftover_kernels(Path(env["JUPYTER_RUNTIME_DIR"]))


@pytest.fixture(scope="module")
def lab(tiny_pipeline, tmp_path_factory) -> Iterator[Lab]:
    """`jupyter lab` in a copy of the tiny pipeline's project, on a free loopback port with a
    token; its Jupyter config, data and runtime folders are the test's own (the faultwatch kernel
    must come from the venv, where `make setup` installs it with --sys-prefix)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = copy_tree(tiny_pipeline[0], base / "proj")
    home = base / "jupyter"
    # no "get Jupyter news?" toast over the screenshots
    settings = home / "config/lab/user-settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = tool_env(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        **store_env(root),
    )
    for key in ("FAULTWATCH_STAGING", "JPY_SESSION_NAME", "FAULTWATCH_PREDICTION_LOG"):
        env.pop(key, None)
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(root / ".venv/bin/jupyter"), "lab", "--no-browser", "--ip=127.0.0.1"]
    cmd += [f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    cmd += [f"--ServerApp.root_dir={root}"]  # no --allow-root: the venv's config allows root
    log_path = base / "jupyterlab.log"
    try:
        with jupyter_lab(cmd, root, env, log_path, port, token) as server:
            yield server
    finally:
        shutil.copy(log_path, artifact("jupyterlab/jupyterlab.log"))


def test_jupyter_lab_starts_without_allow_root_for_whoever_runs_it(tmp_path):
    """`.venv/bin/jupyter lab` as the README types it, as the user the tests run as (root in CI
    and in containers): no `--allow-root` needed, since `make setup` copies the project's server
    config (jupyter-config/jupyter_server_config.json: ServerApp.allow_root) into the venv's
    etc/jupyter, which the venv's Jupyter reads first; the server answers."""
    installed = VENV_BIN.parent / "etc/jupyter/jupyter_server_config.json"
    assert installed.is_file(), f"{installed}: missing; `make setup` installs it"
    assert json.loads(installed.read_text()) == json.loads(
        (REPO / "jupyter-config/jupyter_server_config.json").read_text()
    ), f"{installed} is not jupyter-config/jupyter_server_config.json: run `make setup`"
    home = tmp_path / "jupyter"
    env = tool_env(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
    )
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    cmd += ["--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    with jupyter_lab(cmd, tmp_path, env, tmp_path / "jupyterlab.log", port, token) as server:
        assert "started" in server.api("status")


@pytest.fixture(scope="module")
def browser(lab):
    """One headless Chromium for the module; each notebook gets its own window (context)."""
    with headless_browser() as chromium:
        yield chromium


@dataclass
class Executed:
    notebook: nbformat.NotebookNode  # as JupyterLab saved it
    prompts: list[str]
    tracebacks: list[str]
    images: list[tuple[int, int]]  # naturalWidth, naturalHeight of each output image
    text: str  # every output's text


def _menu(page, menu: str, item: str) -> None:
    page.locator("li.lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(rf"^{re.escape(item)}")).first.click()


PANEL = ".jp-NotebookPanel"
IDLE = f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']"
# Run All queues every code cell ([*]) at once: done when none is left and the kernel is idle
QUEUED = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')
].some(p => p.textContent.includes('*'))"""
ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll(
        '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
    const state = document.querySelector(
        '.jp-NotebookPanel .jp-Notebook-ExecutionIndicator')?.dataset.status;
    return state === 'idle' && prompts.every(p => !p.textContent.includes('*'));
}"""


def start_run_all(browser, lab: Lab, name: str):
    """A window on notebooks/<name>.ipynb with the faultwatch kernel picked in the kernel
    dialog and Run > Run All Cells clicked; returns its page while the cells run."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(READY_S * 1000)
    page.goto(lab.page_url(name))
    page.wait_for_selector(IDLE)  # the kernel the notebook's metadata names has started
    page.keyboard.press("Control+b")  # hide the file browser: a wider notebook on the screenshot

    _menu(page, "Kernel", "Change Kernel")
    page.locator(".jp-Dialog select").select_option(label=KERNEL_DISPLAY)
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_selector(f"{PANEL} .jp-Toolbar-kernelName:has-text('{KERNEL_DISPLAY}')")
    page.wait_for_selector(IDLE)
    assert [s["kernel"]["name"] for s in lab.sessions(name)] == [KERNEL]

    _menu(page, "Run", "Run All Cells")
    page.wait_for_function(QUEUED)
    return page


def finish(page, lab: Lab, name: str, shot: str, deadline: float) -> Executed:
    """Wait until every cell of the page's notebook ran; read what it shows, save it (File >
    Save Notebook), screenshot it whole to test-artifacts/jupyterlab/<shot>.png, close it."""
    page.wait_for_function(ALL_RAN, timeout=max(deadline - time.monotonic(), 1) * 1000, polling=500)
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    stderr = page.locator(
        f'{PANEL} .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'
    ).all_text_contents()
    images = page.eval_on_selector_all(
        f"{PANEL} .jp-OutputArea-output img",
        "imgs => imgs.map(i => [i.complete ? i.naturalWidth : 0, i.naturalHeight])",
    )
    text = "\n".join(page.locator(f"{PANEL} .jp-OutputArea-output").all_text_contents())

    _menu(page, "File", "Save Notebook")
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)")
    path = lab.root / "notebooks" / f"{name}.ipynb"
    saved = nbformat.read(path, as_version=4)
    shutil.copy(path, artifact(f"jupyterlab/{shot}.ipynb"))
    run(["git", "checkout", "--", f"notebooks/{name}.ipynb"], lab.root)  # as committed again

    # the whole notebook on one image: a viewport as tall as its content, scrolled to the top
    height = page.evaluate(
        """() => {
            const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
            s.scrollTop = 0;
            return s.scrollHeight;
        }"""
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height + 160, 16_000)})
    page.wait_for_timeout(300)
    page.screenshot(path=artifact(f"jupyterlab/{shot}.png"), full_page=True)

    lab.shut_down(name)  # free the kernel's memory
    page.context.close()
    tracebacks = [t for t in stderr if "Traceback" in t or "Cell In[" in t]
    return Executed(saved, prompts, tracebacks, [tuple(i) for i in images], text)


def pipeline_outputs(root: Path) -> dict[Path, bytes]:
    """dvc.lock and every file under data/, models/ and reports/, but for what runs outside the
    pipeline write there: reports/adhoc/ and the service's reports/serving/."""
    files = [root / "dvc.lock"]
    for folder in ("data", "models", "reports"):
        files += [p for p in (root / folder).rglob("*") if p.is_file()]
    others = (root / "reports/adhoc", root / "reports/serving")
    return {p: p.read_bytes() for p in files if not any(o in p.parents for o in others)}


@dataclass
class Batch:
    runs: dict[str, Executed]
    changed: list[str]  # pipeline outputs (or dvc.lock) the runs changed


@pytest.fixture(scope="module")
def executed(lab, browser) -> Batch:
    """Every notebook run in JupyterLab, all at the same time (a window each, the kernels in
    parallel). 05_monitor twice: on the fresh project (no prediction log yet: what a new user
    meets), then, while training still runs, again on the predictions the test logs, beside
    06_review on the same predictions."""
    specs = lab.api("kernelspecs")["kernelspecs"]
    assert KERNEL in specs, f"JupyterLab has no {KERNEL} kernel (make setup installs it): {specs}"
    before = pipeline_outputs(lab.root)
    log = lab.root / PREDICTION_LOG
    assert not log.exists()
    # the longest first: training sets the pace
    first = [n for n in sorted(NOTEBOOKS, key=SLOW.index) if n != "06_review"]
    pages = {name: start_run_all(browser, lab, name) for name in first}
    deadline = time.monotonic() + RUN_S
    runs = {NO_LOG: finish(pages.pop("05_monitor"), lab, "05_monitor", NO_LOG, deadline)}
    write_prediction_log(log)
    pages.update((name, start_run_all(browser, lab, name)) for name in ON_THE_LOG)
    runs.update((name, finish(page, lab, name, name, deadline)) for name, page in pages.items())
    after = pipeline_outputs(lab.root)
    changed = [
        str(p.relative_to(lab.root)) for p in {*before, *after} if before.get(p) != after.get(p)
    ]
    return Batch(runs, sorted(changed))


def assert_ran_cleanly(done: Executed, figures: int) -> None:
    code = [c for c in done.notebook.cells if c.cell_type == "code"]
    assert done.prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in done.prompts), done.prompts
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors and not done.tracebacks, (errors[:1], done.tracebacks[:1])
    assert done.notebook.metadata.kernelspec.name == KERNEL
    assert len(done.images) >= figures, f"{len(done.images)} figures drawn, expected {figures}"
    assert all(w > 0 and h > 0 for w, h in done.images), done.images


def test_jupyterlab_sees_the_venvs_faultwatch_kernel(lab):
    specs = lab.api("kernelspecs")["kernelspecs"]
    assert KERNEL in specs, f"kernels JupyterLab sees: {sorted(specs)} (make setup installs it)"
    spec = specs[KERNEL]["spec"]
    assert spec["display_name"] == KERNEL_DISPLAY
    assert Path(spec["argv"][0]).resolve() == (lab.root / ".venv/bin/python").resolve()


def test_every_notebook_is_covered():
    assert set(FIGURES) == set(SLOW) == set(NOTEBOOKS)


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in ON_THE_LOG])
def test_the_notebook_runs_in_jupyterlab_with_its_defaults(executed, name):
    assert_ran_cleanly(executed.runs[name], FIGURES[name])


def test_notebooks_run_in_jupyterlab_write_beside_the_pipelines_outputs(executed, lab):
    # what the cells wrote went to reports/adhoc/<notebook>/: the pipeline's outputs are as
    # `dvc repro` left them, and dvc.lock still describes them
    assert executed.changed == []
    adhoc = lab.root / "reports/adhoc"
    written = {p.name for p in adhoc.iterdir()}
    assert written == {"02_augment", "03_train", "04_evaluate", "05_monitor"}  # 01_eda: nothing
    assert (adhoc / "03_train/models/fault_cnn/model.json").is_file()


def write_prediction_log(path: Path, n: int = 300) -> Path:
    """Real predictions of the project's registered model on its own prepared signals, logged as
    the service logs them (its embedding and feature functions, faultwatch.serve.predlog), every
    third raw signal sampled: what `faultwatch serve` writes at `path`."""
    from faultwatch.features import monitor_features
    from faultwatch.model.io import load_model
    from faultwatch.serve import predlog
    from faultwatch.serve.embedding import proba_and_embedding

    root = path.parents[2]  # <root>/reports/serving/predictions.sqlite
    record = json.loads((root / "reports/register.json").read_text())
    model = load_model(root / "models/fault_cnn")
    healthy, fault = (str(c) for c in model.meta["class_names"])
    threshold = float(record["labels"]["threshold"])
    splits = [pd.read_parquet(root / f"data/prepared/{s}.parquet") for s in ("train", "test")]
    values = [np.asarray(v, dtype="float64") for df in splits for v in df["values"]]
    signals = [values[i % len(values)] for i in range(n)]
    proba, embeddings = proba_and_embedding(model, signals)
    features = monitor_features(signals).tolist()
    log = predlog.open_log(path)
    try:
        log.append(
            predlog.LoggedPrediction(
                endpoint="predict",
                model_version=record["model_tag"].split(":", 1)[1],
                summary=predlog.InputSummary.of(signal),
                probability=float(p),
                label=fault if p >= threshold else healthy,
                is_fault=bool(p >= threshold),
                threshold=threshold,
                latency_ms=5.0,
                batch_size=1,
                prediction_id=f"{i:032x}",
                features=features[i],
                embedding=embeddings[i],
                signal=signal if i % 3 == 0 else None,
            )
            for i, (signal, p) in enumerate(zip(signals, proba, strict=True))
        )
    finally:
        log.close()
    return path


def test_the_monitor_notebook_on_a_fresh_project_says_there_is_no_log_yet(executed, lab):
    fresh = executed.runs[NO_LOG]
    assert_ran_cleanly(fresh, NO_LOG_FIGURES)
    assert f"monitor.log: {lab.root / PREDICTION_LOG}: no prediction log there yet" in fresh.text


def test_the_monitor_notebook_reports_on_the_prediction_log(executed, lab):
    done = executed.runs["05_monitor"]
    assert_ran_cleanly(done, FIGURES["05_monitor"])
    assert f"{lab.root / PREDICTION_LOG}: " in done.text and "300 predictions" in done.text
    reports = lab.root / "reports/adhoc/05_monitor/reports/monitor"
    assert sorted(p.name for p in reports.glob("drift_*.html"))  # Evidently's
    assert not (lab.root / "reports/monitor").exists()  # the pipeline's monitor output: untouched


def test_the_review_notebook_shows_what_waits_for_a_label(executed, lab):
    """06_review with its defaults on the logged predictions: the queue (every one waits), the
    nearest training examples in the model's embedding, the labelling template, and no label
    sent until a person fills in `answers`."""
    done = executed.runs["06_review"]
    assert_ran_cleanly(done, FIGURES["06_review"])
    assert f"{lab.root / PREDICTION_LOG}: " in done.text
    assert "300 predictions, 0 labelled, 300 waiting for a label" in done.text
    assert ": nearest by the model's embedding (" in done.text
    assert (
        "labels go to http://localhost:3000/feedback as (set labeller, or token_file)" in done.text
    )
    assert re.search(
        r'"[0-9a-f]{32}": None,  # (fault|healthy) p=0\.\d{3}', done.text
    )  # to fill in
    assert "no label yet: fill in answers, run again" in done.text
