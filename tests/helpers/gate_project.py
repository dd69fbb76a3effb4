"""A small project for the register / promote / package commands, without running the pipeline.

It holds what those commands read: params.yaml, a test split, dvc.lock (the prepare stage's
outputs), a git repository, and a model folder with its evaluation. The models are real
`FaultCNN`s, built so that their behaviour on the test split is known exactly:

- "detector": flags the burst the fault signals carry (F1 1.0 on the split below);
- "always": flags every signal (recall 1.0, F1 = 2 * 12 / (2 * 12 + 40) = 0.375);
- "never": flags nothing (recall 0.0, F1 0.0).

A different `seed` gives a different network (other weights, another sha256) with the same
behaviour: two distinct models with equal figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .cli import fw, git_commit, project_env, run
from .paths import REPO
from .signals import make_signals

N_HEALTHY, N_FAULT = 40, 12
ALWAYS_F1 = 2 * N_FAULT / (2 * N_FAULT + N_HEALTHY)  # 0.375
BASELINES = {
    "baseline_always_healthy": {"f1": 0.0, "recall": 0.0, "precision": 0.0, "pr_auc": 0.23},
    "baseline_classical": {"f1": 0.3, "recall": 0.25, "precision": 0.375, "pr_auc": 0.5},
}
INPUT_LENGTH = 64


def crafted_network(kind: str, seed: int = 0):
    import torch

    from faultwatch.model.network import FaultCNN

    torch.manual_seed(seed)
    net = FaultCNN(channels=(2,), kernel_size=1, dropout=0.0)
    with torch.no_grad():
        if kind == "detector":
            # relu(z - 2) of the z-scored signal: 0 for a sine, > 0 on the burst of a fault
            net.features[0].weight.fill_(1.0)
            net.features[1].running_mean.fill_(2.0)
            net.head.weight.fill_(1000.0)
            net.head.bias.fill_(-2.0)
        elif kind in ("always", "never"):
            net.head.weight.zero_()
            net.head.bias.fill_(4.0 if kind == "always" else -4.0)
        else:
            raise ValueError(kind)
    return net


def split_frame() -> pd.DataFrame:
    df = make_signals(N_HEALTHY, N_FAULT, seed=3)
    return df.assign(y=(df.label == "fault").astype("int8"))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_lock(root: Path) -> None:
    """A dvc.lock whose prepare stage records the split files, as `dvc repro` writes it."""
    outs = [
        {"path": f"data/prepared/{name}.parquet", "hash": "md5", "md5": _md5(p)}
        for name in ("test",)
        for p in [root / f"data/prepared/{name}.parquet"]
    ]
    lock = {"schema": "2.0", "stages": {"prepare": {"cmd": "faultwatch prepare", "outs": outs}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def make_project(
    root: Path, source: str = "data/raw/tiny.tsv", git: bool = True, bento: bool = False
) -> Path:
    """params.yaml (the repo's, with `data.source`), the test split, dvc.lock and a git repo;
    with `bento`, what `bentoml build` packages too (bentofile.yaml, src/faultwatch)."""
    root.mkdir(parents=True, exist_ok=True)
    if bento:
        shutil.copy2(REPO / "bentofile.yaml", root / "bentofile.yaml")
        shutil.copytree(
            REPO / "src/faultwatch",
            root / "src/faultwatch",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update({"source": source, "positive_label": "fault"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "data/prepared").mkdir(parents=True, exist_ok=True)
    split = split_frame()
    for name in ("test", "train"):  # register learns the signal-quality thresholds from train
        split.assign(values=split["values"].map(list)).to_parquet(
            root / f"data/prepared/{name}.parquet", index=False
        )
    write_lock(root)
    shutil.copy2(REPO / ".gitignore", root / ".gitignore")  # the project's own ignore rules
    if git:
        run(["git", "init", "-q"], root)
        run(["git", "add", "-A"], root)
        git_commit(root, "project")
    return root


def put_model(root: Path, kind: str, seed: int = 0, threshold: float = 0.5) -> dict:
    """Save a crafted model to models/fault_cnn with its real evaluation on the test split
    (reports/evaluate/scores.json, reports/evaluate/threshold.json); returns its test metrics."""
    from faultwatch.evaluate import fault_metrics
    from faultwatch.model.io import load_model, save_model

    model_dir = root / "models/fault_cnn"
    shutil.rmtree(model_dir, ignore_errors=True)
    meta = {"input_length": INPUT_LENGTH, "positive_label": "fault"}
    save_model(model_dir, crafted_network(kind, seed), meta)
    split = split_frame()
    p = load_model(model_dir).predict_proba(list(split["values"]))
    test = fault_metrics(split["y"].to_numpy(), np.asarray(p), threshold)
    evaluation = {"test": test, "val": test, "threshold": threshold, **BASELINES}
    (root / "reports/metrics").mkdir(parents=True, exist_ok=True)
    (root / "reports/evaluate").mkdir(parents=True, exist_ok=True)
    (root / "reports/evaluate/scores.json").write_text(json.dumps(evaluation, indent=2))
    (root / "reports/evaluate/threshold.json").write_text(json.dumps({"threshold": threshold}))
    return test


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Cli:
    """`faultwatch ARGS` in a project: in this process (`faultwatch.cli.main`, the store pointed
    at the project's .bentoml), or as a real subprocess with `subprocess=True`."""

    def __init__(self, root: Path, monkeypatch, capsys):
        from bentoml._internal.configuration.containers import BentoMLContainer
        from bentoml._internal.models import ModelStore

        self.root, self.capsys = root, capsys
        (root / ".bentoml/models").mkdir(parents=True, exist_ok=True)
        for key, value in project_env(root).items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("FAULTWATCH_ROOT", raising=False)
        monkeypatch.chdir(root)
        BentoMLContainer.model_store.set(ModelStore(str(root / ".bentoml/models")))

    def __call__(self, *args: str, check: bool = True, subprocess: bool = False) -> Result:
        if subprocess:
            proc = fw(self.root, *args, check=check)
            return Result(proc.returncode, proc.stdout, proc.stderr)
        from faultwatch.cli import main

        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"faultwatch {' '.join(args)} failed ({code}):\n{out}\n{err}")
        return Result(code, out, err)

    def close(self) -> None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        BentoMLContainer.model_store.reset()

    def register(self, kind: str, seed: int = 0, threshold: float = 0.5) -> str:
        """Put a crafted model in place, `faultwatch register` it, commit; returns its tag."""
        put_model(self.root, kind, seed, threshold)
        self("register")
        run(["git", "add", "-A"], self.root)
        git_commit(self.root, f"candidate {kind} {seed}")
        return json.loads((self.root / "reports/register.json").read_text())["model_tag"]


def deploy_project(root: Path) -> dict[str, str]:
    """A project for the deploy tests: deploy params fit for tiny load, then three registered
    and promoted versions (v0.0.1 flags every signal and is approved, production once a test
    deploys it; v0.0.2 detects the faults, v0.0.3 flags every signal again and is rejected). Returns {registry version: model
    store version}."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    # p99 slack 60 ms: on two shared cores a colour staged seconds ago answers its first
    # requests tens of ms slower than the warm live one (seen: 49 ms against 15 ms under the
    # other test worker's load): these tests are about moving traffic, not about latency
    params["deploy"].update(
        {"min_requests": 20, "canary_interval_s": 4, "ready_timeout_s": 120, "p99_slack_ms": 60}
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "add", "-A"], root)
    git_commit(root, "deploy params")
    versions: dict[str, str] = {}
    for i, (kind, seed) in enumerate((("always", 0), ("detector", 0), ("always", 1)), start=1):
        put_model(root, kind, seed)
        run(["faultwatch", "register"], root, **project_env(root))
        run(["git", "add", "-A"], root)
        git_commit(root, f"candidate {kind} {seed}")
        run(["faultwatch", "promote"], root, **project_env(root))
        tag = json.loads((root / "reports/register.json").read_text())["model_tag"]
        versions[f"v0.0.{i}"] = tag.split(":", 1)[1]
    return versions


# The pace of the keep-alive load the deployment tests keep running while they switch, canary,
# kill and roll back (requests/s in all, spread over the clients). Enough for every window they
# judge (a 10 % canary step of 4 s sees about 60 answers, deploy.min_requests being 20), far
# below what the service answers: the suite is CPU-bound on two cores, and a load as fast as
# answered took a core for each such test without testing more. Throughput is bench/'s.
LOAD_RATE = 150.0


def bodies() -> list[bytes]:
    """/predict bodies of the test split's signals."""
    return [json.dumps({"signal": list(map(float, v))}).encode() for v in split_frame()["values"]]


def set_data_source(root: Path, source: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["source"] = source
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def store_entries(root: Path) -> list[str]:
    """Versions of fault_cnn in the project's store (folders under .bentoml/models/fault_cnn)."""
    folder = root / ".bentoml/models/fault_cnn"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def entry_dir(root: Path, tag: str) -> Path:
    return root / ".bentoml/models" / tag.replace(":", "/")


def kill_leftover_deployment(root: Path) -> None:
    """After `deploy down` in a test's teardown: SIGKILL whatever it could not stop (the
    colours' processes, found by their deploy tag, and the router), from the state file."""
    from faultwatch.deploy import router as rt

    state = root / ".faultwatch/deploy/state.json"
    if not state.exists():
        return
    s = json.loads(state.read_text())
    for c in (s.get("colours") or {}).values():
        for pid in rt.tagged_pids(c.get("tag") or "-"):
            os.kill(pid, signal.SIGKILL)
    if s.get("router_pid") and rt.pid_alive(s["router_pid"], "haproxy"):
        os.kill(s["router_pid"], signal.SIGKILL)
