"""A fleet of models from one set of notebooks, end to end: three model groups trained by the
real stages (`dvc repro` of the group-* stages), registered, gated and approved per group.

The data is helpers.signals.fleet_signals: asset types with their own healthy signature and
fault shape (a fault is the healthy waveform running backwards: the classical baseline cannot
see it, the CNN can). p-100 and p-200 are rows of one shared file (`data.filter` on
asset_type), line-2 has a file of its own. p-200 wants a person's approval
(`promote.require_approval` overridden for it) and overrides the training length. Later
line-2 gets new data and a training override that makes its model worse: only its stages
re-run, and the gate refuses it against its production model while the others stand. The
tests run in order on one project (module scope) and say where they leave it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.cli import git_commit, run, store_env
from helpers.datafiles import write_parquet
from helpers.loop import fw
from helpers.projects import TINY_PIPELINE, copy_project
from helpers.signals import fleet_signals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GROUPS = ("p-100", "p-200", "line-2")


def line_2_rows(seed: int):
    """P-100 pumps on another production line: their own file."""
    df = fleet_signals(seed=seed)
    return df[df["asset_type"] == "P-100"].drop(columns="asset_type").reset_index(drop=True)


def repro(root) -> tuple[str, list[str]]:
    r = run([".venv/bin/dvc", "repro", "--glob", "group-register@*"], root, **store_env(root))
    return r.stdout, re.findall(r"Running stage '([^']+)'", r.stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    train = {**TINY_PIPELINE["train"], "max_epochs": 8, "patience": 8, "lr": 0.003}
    monitor = {"min_rows": 20, "embedding_sample": 20, "last": "1h"}
    copy_project(
        root, {**TINY_PIPELINE, "data": {"min_positive": 4}, "train": train, "monitor": monitor}
    )
    data = fleet_signals()
    write_parquet(data, root / "data/raw/fleet.parquet")
    write_parquet(line_2_rows(seed=1), root / "data/raw/line2.parquet")
    p = yaml.safe_load((root / "params.yaml").read_text())
    shared = "data/raw/fleet.parquet"
    p["groups"] = {
        "p-100": {
            "description": "P-100 pumps, line 1",
            "collection": "pumps",
            "owner": "ana",
            "metadata": {"asset_type": "P-100", "site": "Frankenthal"},
            "data": {"source": shared, "filter": {"asset_type": "P-100"}},
        },
        "p-200": {
            "collection": "pumps",
            "data": {"source": shared, "filter": {"asset_type": "P-200"}},
            "train": {"length": 96},
            "promote": {"require_approval": True},  # human in the loop for this one
        },
        "line-2": {"collection": "pumps", "data": {"source": "data/raw/line2.parquet"}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    out, ran = repro(root)
    print(out[-3000:])
    run(["git", "add", "-A"], root)
    git_commit(root, "a fleet of three groups")
    return root, ran


def test_every_group_runs_the_same_stages_in_its_own_folder(fleet):
    root, ran = fleet
    stages = ("params", "prepare", "augment", "train", "evaluate", "register")
    assert sorted(ran) == sorted(f"group-{s}@{g}" for s in stages for g in GROUPS)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for g in GROUPS:
        folder = root / "groups" / g
        for f in ("reports/notebooks/03_train.ipynb", "reports/notebooks/04_evaluate.html",
                  "reports/metrics/evaluate.json", "reports/register.json",
                  "models/fault_cnn/model.json"):  # fmt: skip
            assert (folder / f).is_file(), f"{g}: {f}"
        evaluation = json.loads((folder / "reports/metrics/evaluate.json").read_text())
        print(g, evaluation)
    # p-200's override reached its training, and only its
    assert lock["group-train@p-200"]["params"]["params.yaml"]["train"]["length"] == 96
    assert lock["group-train@p-100"]["params"]["params.yaml"]["train"]["length"] == 64
    # each group learnt its own asset type: the CNN reads the shape the baseline cannot
    for g in ("p-100", "p-200"):
        ev = json.loads((root / "groups" / g / "reports/metrics/evaluate.json").read_text())
        assert ev["test"]["f1"] > ev["baseline"]["classical_f1"], (g, ev)
    shown = run([".venv/bin/dvc", "metrics", "show"], root).stdout
    assert all(f"groups/{g}/reports/metrics/evaluate.json" in shown for g in GROUPS)


def test_promote_all_gates_each_group_and_one_waits_for_a_person(fleet):
    root, _ = fleet
    r = fw(root, "promote", "--all")
    print(r.stdout)
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:] if line[:1] != " "}
    assert {g: rows[g][1:3] for g in GROUPS} == {
        "p-100": ["v0.0.1", "approved"],
        "p-200": ["v0.0.1", "pending"],
        "line-2": ["v0.0.1", "approved"],
    }
    assert "3 groups gated: 2 approved, 1 pending, 0 refused" in r.stdout
    listed = fw(root, "registry", "list").stdout
    assert re.search(r"^p-100\s+pumps\s+v0.0.1\s+approved\s+\S+\s+-", listed, re.M), listed
    assert re.search(r"^p-200\s+pumps\s+v0.0.1\s+pending", listed, re.M), listed


def test_a_groups_version_names_its_own_data_params_commit_and_run(fleet):
    root, _ = fleet
    shown = json.loads(fw(root, "registry", "show", "p-200", "v0.0.1").stdout)
    prov = shown["provenance"]
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    group_outs = {
        o["path"]: o["md5"]
        for o in lock["group-prepare@p-200"]["outs"]
        if o["path"].startswith("data/")
    }
    assert prov["data"]["prepare_outs_md5"] == group_outs  # the group's rows, not the file's
    assert prov["data"]["filter"] == {"asset_type": "P-200"}
    other = json.loads(fw(root, "registry", "show", "p-100", "v0.0.1").stdout)["provenance"]
    assert other["data"]["hash"] != prov["data"]["hash"]  # same file, other rows
    params = json.loads(prov["params"])
    assert params["train"]["length"] == 96 and params["group"]["name"] == "p-200"
    head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    trained_at = run(["git", "rev-parse", "HEAD~1"], root).stdout.strip()
    assert shown["commit"] == head  # the commit whose dvc.lock pins it
    assert prov["git"]["commit"] == trained_at  # the code it was trained with
    assert shown["labels"]["group"] == "p-200" and "wandb_run_id" in shown["labels"]
    index = yaml.safe_load((root / "artifacts.yaml").read_text())
    assert index["p-100"]["labels"] == ["collection:pumps", "owner:ana"]
    assert index["p-100"]["custom"]["site"] == "Frankenthal"


def test_a_pending_version_reaches_production_only_once_a_person_approved_it(fleet):
    root, _ = fleet
    r = fw(root, "registry", "production", "p-200", "v0.0.1", "--reason", "k8s", check=False)
    assert r.returncode == 1 and "p-200 v0.0.1 is pending" in r.stderr, r.stderr
    fw(root, "approve", "p-200", "v0.0.1", "--by", "ana", "--reason", "looked at the misses")
    fw(root, "registry", "production", "p-200", "v0.0.1", "--reason", "k8s rollout")
    fw(root, "registry", "production", "line-2", "v0.0.1", "--reason", "k8s rollout")
    listed = fw(root, "registry", "list").stdout
    assert re.search(r"^p-200\s+pumps\s+v0.0.1\s+approved\s+\S+\s+v0.0.1", listed, re.M), listed


def test_package_builds_one_bento_of_every_group_and_it_answers_each(fleet, tmp_path):
    """The fleet bento (issue 23): every group's production (else approved) model in one bento;
    served, it answers each group by name, lazily, and refuses a request that names none."""
    import httpx
    from helpers.paths import VENV_BIN
    from helpers.ports import free_port
    from helpers.processes import started
    from helpers.ready import wait_ready

    root, _ = fleet
    fw(root, "package")
    record = json.loads((root / "reports/package.json").read_text())
    assert sorted(record["models"]) == sorted(GROUPS)
    stages = {g: m["stage"] for g, m in record["models"].items()}
    assert stages["p-200"] == stages["line-2"] == "production", stages
    port = free_port()
    env = {**store_env(root), "FAULTWATCH_PREDICTION_LOG": str(tmp_path / "p.sqlite")}
    cmd = [str(VENV_BIN / "bentoml"), "serve", record["bento_tag"], "--port", str(port),
           "--host", "127.0.0.1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    signals = fleet_signals(per_asset=2, faults=1)
    asset = {"p-100": "P-100", "p-200": "P-200", "line-2": "P-100"}
    with started(cmd, root, env, tmp_path / "server.log") as proc:
        wait_ready(url, proc, tmp_path / "server.log")
        with httpx.Client(base_url=url, timeout=30) as c:
            listed = c.get("/models").json()["models"]
            assert not any(m["loaded"] for m in listed)
            assert {m["model"]: m["stage"] for m in listed} == stages
            for g in GROUPS:
                sig = signals[signals["asset_type"] == asset[g]]["values"].iloc[0]
                r = c.post("/predict", json={"signal": list(map(float, sig)), "model": g})
                assert r.status_code == 200, r.text
                want = record["models"][g]["model_tag"].split(":")[1]
                assert (r.json()["model"], r.json()["model_version"]) == (g, want)
            r = c.post("/predict", json={"signal": list(map(float, sig))})
            assert r.status_code == 422 and "p-100, p-200, line-2" in r.text, r.text
            assert all(m["loaded"] for m in c.get("/models").json()["models"])
            # production traffic: p-100 as trained, p-200 drifted (its signals scaled and shifted)
            prod = fleet_signals(per_asset=30, faults=3, seed=7)
            for g, drift in (("p-100", 0.0), ("p-200", 1.0)):
                rows = prod[prod["asset_type"] == asset[g]]["values"]
                batch = [list(map(float, v * (1 + 4 * drift) + 3 * drift)) for v in rows]
                r = c.post("/predict_batch", json={"signals": batch, "model": g})
                assert r.status_code == 200, r.text

    # the monitor, per group: each on its own rows, in its own folder, on the report page
    log = str(tmp_path / "p.sqlite")
    out = fw(root, "monitor", "--group", "p-100", "--group", "p-200", "--log", log, "--no-html")
    assert "== p-100" in out.stdout and "== p-200" in out.stdout, out.stdout
    mon = {g: json.loads((root / f"groups/{g}/reports/metrics/monitor.json").read_text())
           for g in ("p-100", "p-200")}  # fmt: skip
    print({g: {k: v for k, v in m.items() if k != "reasons"} for g, m in mon.items()})
    # each on its own group's rows only (1 + 30 of the 63 in the log), p-200's drifted
    assert [mon[g]["window"]["n_predictions"] for g in mon] == [31, 31]
    assert mon["p-200"]["retrain_needed"] is True, mon["p-200"]
    assert not (root / "groups/line-2/reports/metrics/monitor.json").exists()
    fw(root, "report")
    page = (root / "reports/index.html").read_text()
    assert "not monitored" in page and "retrain" in page


def test_new_data_for_one_group_reruns_its_stages_only_and_a_worse_model_is_refused(fleet):
    root, _ = fleet
    write_parquet(line_2_rows(seed=7), root / "data/raw/line2.parquet")  # a new batch
    p = yaml.safe_load((root / "params.yaml").read_text())
    # a poor training: signals squeezed to 8 points (the waveform's direction is lost), one
    # epoch at a tiny learning rate
    p["groups"]["line-2"]["train"] = {"length": 8, "max_epochs": 1, "lr": 1.0e-5}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    before = {g: (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
              for g in GROUPS}  # fmt: skip
    out, ran = repro(root)
    # every group's params stage reads the data folder (cheap: it hashes its own files); the
    # rest re-runs for line-2 alone
    assert sorted(s for s in ran if not s.startswith("group-params@")) == sorted(
        f"group-{s}@line-2" for s in ("prepare", "augment", "train", "evaluate", "register")
    ), ran
    for g in ("p-100", "p-200"):
        after = (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
        assert after == before[g], g
    run(["git", "add", "-A"], root)
    git_commit(root, "line-2: new data")
    r = fw(root, "promote", "--all", "--strict", check=False)
    print(r.stdout)
    assert r.returncode == 3, r.stdout + r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line[:1] != " "}
    assert "v0.0.2" in rows["line-2"] and "rejected" in rows["line-2"]
    assert "does not beat production" in rows["line-2"], r.stdout
    record = json.loads(fw(root, "registry", "show", "line-2", "v0.0.2").stdout)["record"]
    assert record["test"]["f1"] < record["production_test"]["f1"], record  # worse, not a tie
    assert "approved" in rows["p-100"]
    assert "approved" in rows["p-200"]  # the registry's approval: ana's
    # a person's approval stands: the gate ran again on p-200 and left ana's decision
    assert "v0.0.1 was approved by ana: the registry keeps that" in r.stdout
    assert "1 refused (line-2)" in r.stdout
    from faultwatch import registry

    assert registry.production(root, "line-2").version == "v0.0.1"
    refused = fw(root, "registry", "production", "line-2", "v0.0.2", "--reason", "x", check=False)
    assert refused.returncode == 1 and "rejected by the promotion gate" in refused.stderr


def test_removing_a_group_folder_is_said_by_promote(fleet, tmp_path):
    root, _ = fleet
    copy = tmp_path / "copy"
    shutil.copytree(root / "groups" / "p-100", copy)
    shutil.rmtree(root / "groups" / "p-100")
    try:
        r = fw(root, "promote", "p-100", check=False)
        assert r.returncode == 1
        assert "groups/p-100: the group's stages have not run yet" in r.stderr, r.stderr
    finally:
        shutil.copytree(copy, root / "groups" / "p-100")


def test_the_report_page_has_the_fleet_table(fleet):
    root, _ = fleet
    fw(root, "report")
    page = (root / "reports/index.html").read_text()
    table = page[page.index('<section id="fleet">') :]
    table = table[: table.index("</section>")]
    for g in GROUPS:
        assert f"<b>{g}</b>" in table
    assert '<a href="../groups/p-100/reports/notebooks/03_train.html">train</a>' in table
    assert "approved by ana" in table  # p-200: a person's decision, named
    assert "rejected" in table and "not monitored" in table


def test_groups_train_in_parallel_through_the_experiment_queue(fleet):
    root, _ = fleet
    p = yaml.safe_load((root / "params.yaml").read_text())
    for g in ("p-100", "p-200"):
        p["groups"][g].setdefault("train", {}).update(seed=3, max_epochs=1)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    weights = {g: (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
               for g in GROUPS}  # fmt: skip
    r = fw(root, "group", "train", "p-100", "p-200", "--jobs", "2")
    assert "2 groups trained, 2 at a time" in r.stdout, r.stdout + r.stderr
    for g in GROUPS:
        now = (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
        assert (now != weights[g]) == (g in ("p-100", "p-200")), g
    # the workspace is what `dvc repro` would have left: nothing of theirs to re-run
    status = run([".venv/bin/dvc", "status"], root).stdout
    stale = [s for s in status.splitlines() if s.startswith("group-") and "@p-" in s]
    assert [s for s in stale if not s.startswith("group-eda@")] == [], status
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert lock["group-train@p-100"]["params"]["params.yaml"]["train"]["seed"] == 3


def bento_models(root, bento_tag: str, dest) -> dict[str, dict[str, bytes]]:
    """Every file of every model a bento carries, by the model's store tag: as it leaves the
    store (`bentoml export`, the archive a deployment elsewhere imports)."""
    import tarfile

    run([".venv/bin/bentoml", "export", bento_tag, str(dest)], root, **store_env(root))
    models: dict[str, dict[str, bytes]] = {}
    with tarfile.open(dest) as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts  # models/NAME/VERSION/FILE
            if m.isfile() and len(parts) > 3 and parts[0] == "models":
                f = tar.extractfile(m)
                assert f is not None
                models.setdefault(f"{parts[1]}:{parts[2]}", {})["/".join(parts[3:])] = f.read()
    return models


def test_retrain_of_one_group_reruns_its_stages_alone_and_the_others_stay_byte_identical(
    fleet, tmp_path
):
    """`faultwatch retrain --group p-100` (issue 23): a labelled batch of P-100 signals into
    p-100's own data (its production folder, a DVC pointer committed), p-100's stages alone
    re-run (the others' models untouched), p-100's gate decides, and the fleet bento is
    rebuilt with every other group's model byte for byte the one it carried.

    p-100's v0.0.1 was turned away by a canary (recorded as the deployment records it), so it
    is no yardstick: the retrained model must beat the baselines, and does (the classical one
    cannot see the fault). p-100's training is first set back to the fleet's (the queue test
    tried one epoch)."""
    from faultwatch import registry

    root, _ = fleet
    before = json.loads((root / "reports/package.json").read_text())
    old_bento = bento_models(root, before["bento_tag"], tmp_path / "before.bento")
    weights = {g: (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
               for g in GROUPS}  # fmt: skip
    p = yaml.safe_load((root / "params.yaml").read_text())
    del p["groups"]["p-100"]["train"]
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    registry.record_outcome("v0.0.1", "canary-aborted", "fault rate out of bounds", root, "p-100")
    run(["git", "add", "params.yaml"], root)
    git_commit(root, "p-100: the fleet's training again")
    batch = fleet_signals(per_asset=12, faults=4, seed=11)
    batch = batch[batch["asset_type"] == "P-100"].drop(columns="asset_type")
    write_parquet(batch.reset_index(drop=True), tmp_path / "p100-batch.parquet")

    r = fw(root, "retrain", str(tmp_path / "p100-batch.parquet"), "--group", "p-100", check=False)
    print(r.stdout, r.stderr[-2000:])
    assert r.returncode == 0, r.stdout + r.stderr
    log = root / re.search(r"retrain: log (\S+)", r.stdout).group(1)
    ran = re.findall(r"Running stage '([^']+)'", log.read_text())
    stages = ("params", "prepare", "augment", "train", "evaluate", "register")
    assert sorted(ran) == sorted(f"group-{s}@p-100" for s in stages), ran
    approved = r"^promote\s+approved\b.*p-100 v0\.0\.\d+ approved: .*beats baseline classical"
    assert re.search(approved, r.stdout, re.M), r.stdout
    # the batch is p-100's data: in its own production folder, its pointer committed
    folder = root / "groups/p-100/data/raw/production/data_raw_fleet.parquet"
    assert [p.name.endswith("-p100-batch.parquet.dvc") for p in folder.glob("*.dvc")] == [True]
    prepared = json.loads((root / "groups/p-100/reports/metrics/prepare.json").read_text())
    assert prepared["production"]["n_signals"] == 12, prepared["production"]
    committed = ["dvc.lock", "groups/p-100/params.yaml", "groups/p-100/data"]
    assert run(["git", "status", "--porcelain", *committed], root).stdout == ""
    for g in GROUPS:
        now = (root / "groups" / g / "models/fault_cnn/weights.safetensors").read_bytes()
        assert (now != weights[g]) == (g == "p-100"), g

    # the new fleet bento: p-100's new version, every other group's model byte for byte
    after = json.loads((root / "reports/package.json").read_text())
    assert after["bento_tag"] != before["bento_tag"]
    assert after["models"]["p-100"]["model_tag"] != before["models"]["p-100"]["model_tag"]
    new_bento = bento_models(root, after["bento_tag"], tmp_path / "after.bento")
    for g in ("p-200", "line-2"):
        tag = before["models"][g]["model_tag"]
        assert after["models"][g]["model_tag"] == tag, g
        assert new_bento[tag] == old_bento[tag], g
        assert "weights.safetensors" in new_bento[tag], g
    p100 = new_bento[after["models"]["p-100"]["model_tag"]]["weights.safetensors"]
    assert p100 == (root / "groups/p-100/models/fault_cnn/weights.safetensors").read_bytes()
    assert p100 != old_bento[before["models"]["p-100"]["model_tag"]]["weights.safetensors"]
