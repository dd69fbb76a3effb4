"""reports/index.html in a real browser: written by the `report` stage of the tiny pipeline
(the session's one `dvc repro`), refreshed by a real `faultwatch promote` and `faultwatch
monitor`, opened in headless Chromium: every link resolves, no image is broken, the metrics
table holds every stage's figures with the change since the last commit. Refreshing the page
leaves `dvc status` clean; a bad input is named and the previous page stays."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from helpers.browser import artifact, headless_browser
from helpers.cli import git_commit, run, store_env
from helpers.datafiles import write_tsv
from helpers.paths import REPO
from helpers.projects import copy_project, copy_tree
from helpers.signals import make_signals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PAGE = "reports/index.html"
STAGES_WITH_METRICS = ["prepare", "eda", "augment", "train", "evaluate"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory, tiny_pipeline):
    template, first = tiny_pipeline
    root = copy_tree(template, tmp_path_factory.mktemp("report") / "proj")
    return root, first


def flat(value, prefix=""):
    """{dotted key: scalar} of a metrics file, lists left out (as `dvc metrics` shows them)."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {} if isinstance(value, list) else {prefix[:-1]: value}


def head_metrics(root: Path, path: str) -> dict | None:
    shown = subprocess.run(
        ["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True, text=True
    )
    return flat(json.loads(shown.stdout)) if shown.returncode == 0 else None


def same(text: str, value) -> bool:
    if isinstance(value, bool):
        return text == str(value).lower()
    if isinstance(value, int | float):
        return abs(float(text.replace("−", "-").lstrip("+")) - value) < 1e-4
    return text == str(value)


def check_page(page, path: Path) -> dict:
    """Open `path`; every link and image must resolve offline. Returns the page's metrics
    table as {stage: {key: [value, HEAD value, change]}} and its links."""
    messages = []
    page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
    assert hrefs
    for href in hrefs:
        url = urlsplit(href)
        assert url.scheme == "file", f"{href}: the page must work offline"
        target = Path(unquote(url.path))
        assert target.exists(), f"broken link {href}"
        if url.fragment:
            assert (
                target.resolve() == path.resolve() and page.locator(f"#{url.fragment}").count() == 1
            ), href
    images = page.eval_on_selector_all(
        "img", "els => els.map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    assert all(done and width > 0 for _, done, width in images), images
    external = page.eval_on_selector_all(
        "script[src], link[href], iframe", "els => els.map(e => e.outerHTML)"
    )
    assert external == [] and messages == []
    rows = page.eval_on_selector_all(
        "#metrics tbody tr",
        """rows => rows.map(r => [r.querySelector('td.stage b')?.textContent ?? null,
                                  [...r.querySelectorAll('td:not(.stage)')].map(c => c.textContent)])""",
    )
    table, stage = {}, None
    for name, cells in rows:
        stage = name or stage
        table.setdefault(stage, {})[cells[0]] = cells[1:]
    return {"metrics": table, "links": hrefs, "images": [alt for alt, _, _ in images]}


def assert_metrics_table(root: Path, table: dict) -> None:
    """Every figure of every stage's metrics file, with HEAD's value and the change."""
    assert list(table) == STAGES_WITH_METRICS
    for stage in STAGES_WITH_METRICS:
        path = f"reports/metrics/{stage}.json"
        figures = flat(json.loads((root / path).read_text()))
        before = head_metrics(root, path)
        assert set(table[stage]) == set(figures), stage
        for key, value in figures.items():
            shown, old, change = table[stage][key]
            assert same(shown, value), (stage, key, shown, value)
            if before is None or before.get(key) is None:
                assert old == "—", (stage, key, old)
                continue
            assert same(old, before[key]), (stage, key, old, before[key])
            if isinstance(value, int | float) and not isinstance(value, bool):
                delta = value - before[key]
                assert same(change, delta) if delta else change == "0", (stage, key, change)


def monitor_log(root: Path) -> str:
    """A prediction log of 120 noisy (drifted) requests in the last ten minutes, half of them
    labelled, written through the service's own log (faultwatch.serve.predlog)."""
    from helpers.monitor_synthetic import log_for_project

    return log_for_project(root, root / "log.sqlite")


def test_the_report_stage_ends_the_pipeline_and_the_page_is_complete(reported):
    root, first = reported
    env = store_env(root)
    ran = [ln.split("'")[1] for ln in first.stdout.splitlines() if ln.startswith("Running stage")]
    assert ran[-1] == "report" and "wrote reports/index.html" in first.stdout
    assert run(["git", "check-ignore", PAGE], root).returncode == 0  # never committed
    listed = run(["faultwatch", "report", "--list"], root, **env).stdout.splitlines()
    assert PAGE in listed[-1] and "`faultwatch promote`" in listed[-1]
    assert not any(PAGE in ln for ln in listed[:-1])

    with headless_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # as the stage wrote it: the workspace against the commit the copy started from
        found = check_page(page, root / PAGE)
        assert_metrics_table(root, found["metrics"])
        assert len(found["images"]) == len(yaml.safe_load((root / "dvc.yaml").read_text())["plots"])
        notebooks = sorted((root / "reports/notebooks").glob("0*.html"))
        assert len(notebooks) == 4 and all(
            any(h.endswith(f"reports/notebooks/{nb.name}") for h in found["links"])
            for nb in notebooks
        )
        page.screenshot(path=artifact("report/index_after_repro.png"), full_page=True)

        # the registry changes (promote refreshes the page), and a production model
        run(["git", "add", "-A"], root)
        git_commit(root, "candidate")
        promoted = run(["faultwatch", "promote"], root, **env)
        assert "refreshed reports/index.html" in promoted.stdout
        from faultwatch import registry

        tag = json.loads((root / "reports/register.json").read_text())["model_tag"]
        version = registry.versions(root)[-1].version
        # the tiny model loses to the classical baseline; production by hand, through GTO
        registry.assign(version, registry.APPROVED, "approved by hand (test)", root)
        registry.assign(version, registry.PRODUCTION, "approved by hand (test)", root)
        # a monitoring report (a real run of the monitor on a small drifted log) refreshes it
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["monitor"].update(min_rows=50, label_delay="1m", embedding_sample=100)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        log = monitor_log(root)
        watched = run(["faultwatch", "monitor", "--last", "1h", "--log", log], root, **env)
        assert "refreshed reports/index.html" in watched.stdout

        found = check_page(page, root / PAGE)
        assert_metrics_table(root, found["metrics"])  # against the new commit: no change
        text = page.inner_text("body")
        prod = page.inner_text("#models")
        assert f"{version} prod" in prod and tag in prod and "data/raw/tiny.tsv" in prod
        assert "why in production\napproved by hand (test)" in prod
        # production by hand with nothing deployed here: the page says that they disagree
        assert "Serving: nothing deployed here" in prod
        assert (
            f"the registry's production is {version}, but nothing serves it here "
            f"(nothing deployed): `faultwatch deploy up {version}`"
        ) in page.inner_text("#serving-problem")
        assert "approved by hand (test)" in page.inner_text("#registry")
        history = page.eval_on_selector_all(
            "#registry table:last-of-type tbody tr", "rs => rs.map(r => r.cells[2].textContent)"
        )
        assert history == [
            "assignment prod",
            "assignment approved",
            "assignment rejected",
            "registration",
        ]
        monitoring = page.inner_text("#monitoring")
        assert "retrain needed" in monitoring and "input_drift" in monitoring
        pages = sorted(p.name for p in (root / "reports/monitor").glob("*.html"))
        assert pages and all(
            any(h.endswith(f"reports/monitor/{p}") for h in found["links"]) for p in pages
        )
        assert any(h.endswith("reports/notebooks/05_monitor.html") for h in found["links"])
        assert "none yet" not in text and "not run yet" not in text
        page.screenshot(path=artifact("report/index.png"), full_page=True)

    # refreshing the page from what DVC does not watch leaves the project up to date
    status = run(["dvc", "status"], root, **env).stdout
    assert status.strip() == "Data and pipelines are up to date."


def test_a_corrupt_metrics_file_is_named_and_the_page_stays(reported):
    root, _ = reported
    page = root / PAGE
    before = page.read_bytes()
    metrics = root / "reports/metrics/train.json"
    original = metrics.read_bytes()
    metrics.write_text('{"best_epoch": 2,')
    try:
        proc = run(["faultwatch", "report"], root, check=False, **store_env(root))
    finally:
        metrics.write_bytes(original)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: reports/metrics/train.json: not valid JSON")
    assert page.read_bytes() == before
    assert not [p for p in page.parent.iterdir() if p.name.startswith(".index.html")]


def test_a_project_with_no_commit_and_no_outputs_yet(tmp_path):
    """Before the first commit and the first `dvc repro`: the page says what is missing, and
    still has no broken link."""
    from faultwatch.report_page import write_page

    root = tmp_path / "proj"
    (root / "reports/metrics").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "notebooks"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copy(REPO / "reports/metrics/train.json", root / "reports/metrics")
    (root / "reports/train").mkdir()
    shutil.copy(REPO / "reports/train/history.csv", root / "reports/train")
    run(["git", "init", "-q"], root)
    path = write_page(root)
    # the page is replaced by a rename, never rewritten in place: a browser reading it keeps
    # the version it opened (a new inode each time), and no temporary file is left beside it
    first = os.stat(path).st_ino
    assert write_page(root) == path and os.stat(path).st_ino != first
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".index")] == []
    with headless_browser() as browser:
        page = browser.new_page()
        found = check_page(page, path)
        assert list(found["metrics"]) == ["train"]
        assert found["images"] == ["Training, validation PR-AUC per epoch"]
        assert all(old == "—" for _, old, _ in found["metrics"]["train"].values())
        text = page.inner_text("body")
    assert "no commit yet: nothing to compare with" in text
    assert "not drawn: reports/evaluate/pr_curve.json not written yet" in text
    assert "No candidate yet" in text and "No version registered yet" in text
    assert "No monitoring report yet" in text and "01_eda (not run yet)" in text


def test_the_metrics_table_says_when_the_data_changed_since_head(tmp_path):
    """The prepare stage run (`dvc repro prepare`) on another data.source than HEAD's: the
    metrics section says that the source and the prepared splits differ from HEAD's, with the
    data hashes the registry uses, before the reader compares figures; on HEAD's own data it
    says nothing of the kind."""
    from faultwatch.register import data_hash, data_hashes

    root = copy_project(tmp_path / "proj")
    env = store_env(root)
    run(["dvc", "repro", "prepare"], root, **env)
    run(["git", "add", "-A"], root)
    git_commit(root, "prepared tiny.tsv")
    before = data_hash(data_hashes(root))

    def metrics_text() -> str:
        run(["faultwatch", "report"], root, **env)
        with headless_browser() as browser:
            page = browser.new_page()
            page.goto((root / PAGE).as_uri())
            return page.inner_text("#metrics")

    assert "data changed" not in metrics_text().lower()
    write_tsv(make_signals(50, 15, seed=5), root / "data/raw/other.tsv")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["source"] = "data/raw/other.tsv"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "prepare"], root, **env)
    after = data_hash(data_hashes(root))
    assert after != before
    text = metrics_text()
    assert (
        "The data changed since HEAD: data.source was data/raw/tiny.tsv at HEAD and is "
        f"data/raw/other.tsv now (params.yaml); the prepared splits differ (data hash {before} "
        f"at HEAD, {after} now; dvc.lock). The changes below compare figures measured on other "
        "data."
    ) in text, text
