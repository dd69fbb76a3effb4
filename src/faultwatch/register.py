"""The `register` stage: the evaluated model goes into the BentoML store with its provenance."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from faultwatch.errors import FaultwatchError
from faultwatch.params import load_params
from faultwatch.paths import write_text_atomic

REGISTER_FILE = Path("reports/register.json")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FaultwatchError(f"{path}: not found ({what}; run `dvc repro` first)") from None


def git_commit(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit or "unknown", "dirty": dirty}


def data_hashes(root: Path) -> dict[str, str]:
    """md5 of every `prepare` output, as dvc.lock records it."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text()) or {}
    except FileNotFoundError:
        return {}
    outs = lock.get("stages", {}).get("prepare", {}).get("outs", [])
    return {o["path"]: o.get("md5", "") for o in outs}


def provenance(root: Path, model_dir: Path) -> tuple[dict[str, str], dict[str, Any], float]:
    """Labels (short strings, for listing), metadata (everything), and the threshold."""
    evaluation = _read_json(root / "reports/metrics/evaluate.json", "the evaluate stage's metrics")
    threshold = float(
        _read_json(root / "reports/evaluate/threshold.json", "the chosen threshold")["threshold"]
    )
    model_json = _read_json(model_dir / "model.json", "the train stage's model")
    params = load_params(root / "params.yaml")
    git = git_commit(root)
    data = data_hashes(root)
    data_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    weights_sha = hashlib.sha256((model_dir / "weights.safetensors").read_bytes()).hexdigest()
    test = evaluation.get("test", {})
    labels = {
        "stage": "candidate",
        "git_commit": git["commit"][:12] + ("-dirty" if git["dirty"] else ""),
        "data_hash": data_hash,
        "wandb_run_id": str(model_json.get("wandb_run_id", "")),
        "threshold": f"{threshold:.6f}",
        "test_f1": f"{test.get('f1', float('nan')):.4f}",
        "test_pr_auc": f"{test.get('pr_auc') or float('nan'):.4f}",
        "weights_sha256": weights_sha[:16],
    }
    data_params = params.get("data", {})
    metadata = {
        "metrics": {"test": test, "val": evaluation.get("val", {})},
        "baselines": {k: v for k, v in evaluation.items() if k.startswith("baseline")},
        "params": json.dumps(params, sort_keys=True),  # as text: nulls and nesting kept
        "git": git,
        "data": {"hash": data_hash, "prepare_outs_md5": data, "source": data_params.get("source")},
        "wandb_run_id": model_json.get("wandb_run_id"),
        "threshold": threshold,
        "preprocessing": model_json.get("preprocessing"),
        "input_schema": {
            "type": "array of finite numbers (one signal)",
            "min_length": data_params.get("min_length", 16),
            "max_length": data_params.get("max_length", 100_000),
            "resampled_to": model_json.get("input_length"),
        },
        "class_names": model_json.get("class_names"),
        "weights_sha256": weights_sha,
    }
    return labels, _no_none(metadata), threshold


def _no_none(value: Any) -> Any:
    """BentoML metadata takes basic types only: drop None entries (recursively)."""
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_none(v) for v in value if v is not None]
    return value


def register(root: Path, model_dir: str = "models/fault_cnn") -> dict[str, Any]:
    """Import the model into the store; write reports/register.json naming the new tag."""
    from faultwatch.serve.store import import_model

    labels, metadata, threshold = provenance(root, root / model_dir)
    tag = import_model(root / model_dir, threshold, labels=labels, metadata=metadata)
    record = {"model_tag": str(tag), "weights_sha256": metadata["weights_sha256"], "labels": labels}
    out = root / REGISTER_FILE
    write_text_atomic(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
