"""The `register` stage: the evaluated model goes into the BentoML store with its provenance.

Provenance is never guessed: without a git commit (not a repository, no commit yet, git not
installed) or without the prepare stage's outputs in `dvc.lock`, registration stops with an
error that says what is missing. Registering the same model twice (same weights, threshold and
test metrics) reuses the existing store entry, so `dvc repro -f register` adds no version.

Every registered entry holds its golden set (`golden.json`, faultwatch.serve.golden): a few
signals of the test split and the model's answers on them, which a deployment's smoke test
compares a running server with. An entry reused without one (registered before golden sets
existed), or with a malformed one, gets it. Golden signals are of `ok` quality.

The signal-quality thresholds the service checks with (faultwatch.signal_quality) are learnt
here from the training split with params.yaml `quality`, and recorded in the entry's metadata
(`signal_quality`): a change of them registers a new entry.

The model's family (model.json: `cnn` or `classical`) is a label, a metadata key and a key of
register.json; the train stage's choice of it (reports/train/family.json, when present; read as
run.json is, not a dependency: it holds training times) is the metadata's `family_decision`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from faultwatch.errors import FaultwatchError
from faultwatch.groups import lock_stage
from faultwatch.params import load_params, section
from faultwatch.paths import bentoml_home, display_path, write_text_atomic
from faultwatch.serve.golden import (
    GOLDEN_FILE,
    GoldenError,
    compute_golden,
    load_golden,
    select_golden,
    write_golden,
)
from faultwatch.serve.schema import ServingLimits, input_schema
from faultwatch.serve.store import MODEL_NAME, import_model, load_entry, read_threshold
from faultwatch.signal_quality import OK, QualityThresholds, learn_split_thresholds, quality_of

if TYPE_CHECKING:
    import bentoml

REGISTER_FILE = Path("reports/register.json")
EVALUATE_FILE = Path("reports/evaluate/scores.json")  # all that evaluate measured
THRESHOLD_FILE = Path("reports/evaluate/threshold.json")
# run-to-run values of training (W&B run id, timings): read for provenance, not a dvc dependency
TRAIN_RUN_FILE = Path("reports/train/run.json")
TEST_SPLIT = Path("data/prepared/test.parquet")  # the golden set comes from it
TRAIN_SPLIT = Path("data/prepared/train.parquet")  # the signal-quality thresholds come from it


class ProvenanceError(FaultwatchError):
    """The model's provenance (git commit, data hash) cannot be established."""


def read_json(path: Path, what: str, root: Path | None = None) -> dict[str, Any]:
    """A JSON object from `path`; a missing or malformed file is a named error."""
    shown = display_path(path, root)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise FaultwatchError(f"{shown}: not found ({what}; run `dvc repro` first)") from None
    except json.JSONDecodeError as e:
        raise FaultwatchError(f"{shown}: not valid JSON ({what}): {e}") from None
    if not isinstance(value, dict):
        raise FaultwatchError(f"{shown}: expected a JSON object ({what})")
    return value


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise ProvenanceError(
            "git: command not found; the git commit of the code is part of a model's "
            "provenance (and the registry lives in git tags): install git"
        ) from None


def head_commit(root: Path) -> str:
    """The full sha of HEAD; not a repository, no commit yet or no git is a named error."""
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head.returncode != 0:
        inside = _git(root, "rev-parse", "--is-inside-work-tree").returncode == 0
        why = "no commit yet (commit the project first)" if inside else "not a git repository"
        detail = (head.stderr.strip().splitlines() or [""])[-1]
        raise ProvenanceError(
            f"{root}: {why}: the git commit of the code is part of a model's provenance "
            f"(git rev-parse HEAD: {detail})"
        )
    return head.stdout.strip()


def git_commit(root: Path) -> dict[str, Any]:
    """{"commit": full sha of HEAD, "dirty": tracked files changed}; a git failure is an error."""
    commit = head_commit(root)
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status.returncode != 0:
        raise ProvenanceError(
            f"{root}: git status failed (exit {status.returncode}): {status.stderr.strip()}"
        )
    return {"commit": commit, "dirty": bool(status.stdout.strip())}


def data_hashes(root: Path) -> dict[str, str]:
    """md5 of every data output of `prepare` (its metrics under reports/ are not data), as
    dvc.lock records it; missing is an error."""
    lock_file, stage = lock_stage(root, "prepare")  # a group's: group-prepare@NAME
    how = "run the pipeline with `dvc repro`, which writes it, not `faultwatch register` alone"
    try:
        lock = yaml.safe_load(lock_file.read_text()) or {}
    except FileNotFoundError:
        raise ProvenanceError(
            f"dvc.lock: not found; the data hash of a model comes from the prepare stage's "
            f"outputs recorded there: {how}"
        ) from None
    except yaml.YAMLError as e:
        raise ProvenanceError(f"dvc.lock: not valid YAML: {e}") from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    outs = ((stages or {}).get(stage) or {}).get("outs") or []
    if not outs:
        raise ProvenanceError(f"dvc.lock: no outputs of stage '{stage}' recorded: {how}")
    hashes = {}
    for out in outs:
        if str(out.get("path", "")).startswith("reports/"):
            continue
        if not out.get("md5"):
            raise ProvenanceError(f"dvc.lock: stage '{stage}', out {out.get('path')!r}: no md5")
        hashes[out["path"]] = out["md5"]
    return hashes


def data_hash(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def current_data(root: Path) -> dict[str, Any]:
    """What this project's pipeline trains on now: data.source, the fault class, the data hash."""
    data = load_params(root / "params.yaml").get("data") or {}
    return {
        "source": data.get("source"),
        "positive_label": None
        if data.get("positive_label") is None
        else str(data["positive_label"]),
        "hash": data_hash(data_hashes(root)),
    }


def store_entry(tag: str, role: str, root: Path) -> bentoml.Model:
    """The store entry `tag`; one missing from this project's store is a named error."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise FaultwatchError(
            f"{role}: store entry {tag} is not in the BentoML store at {bentoml_home(root)} "
            "(BENTOML_HOME): was it registered with another store?"
        ) from None


def trained_on(entry: bentoml.Model) -> dict[str, Any]:
    """data.source, fault class and data hash from a store entry's provenance (None if absent),
    to compare with `current_data`."""
    meta = entry.info.metadata
    data = meta.get("data") or {}
    label = data.get("positive_label")
    if label is None:  # registered before the fault class was recorded beside the source
        try:
            label = (json.loads(meta.get("params") or "{}").get("data") or {}).get("positive_label")
        except (TypeError, json.JSONDecodeError):
            label = None
    return {
        "source": data.get("source"),
        "positive_label": None if label is None else str(label),
        "hash": data.get("hash"),
    }


def task(d: dict[str, Any]) -> str:
    """The task a model was trained for, in words: its data source and fault class."""
    return f"data.source {d['source']!r}, fault class {d['positive_label']!r}"


def wandb_run_id(root: Path, model_json: dict[str, Any]) -> str | None:
    """The training run's W&B id: reports/train/run.json if present (null when W&B was off);
    model.json in projects trained before run.json existed."""
    run_file = root / TRAIN_RUN_FILE
    if run_file.is_file():
        run_id = read_json(run_file, "the train stage's run record", root).get("wandb_run_id")
    else:
        run_id = model_json.get("wandb_run_id")
    return None if run_id in (None, "") else str(run_id)


def _threshold(root: Path) -> float:
    path = root / THRESHOLD_FILE
    value = read_json(path, "the chosen threshold", root).get("threshold")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultwatchError(f"{THRESHOLD_FILE}: 'threshold' must be a number, got {value!r}")
    return float(value)


def quality_thresholds(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The signal-quality thresholds learnt from the training split (metadata `signal_quality`;
    per channel for a multichannel split)."""
    from faultwatch.splits import frame_channels, read_split  # pandas: not at import

    split = root / TRAIN_SPLIT
    try:
        train = read_split(split, columns=["values"])
    except (OSError, ValueError) as e:  # a missing file is an OSError, pyarrow's errors ValueErrors
        raise FaultwatchError(
            f"{display_path(split, root)}: cannot read the training split, which the "
            f"signal-quality thresholds are learnt from ({e}); run `dvc repro`"
        ) from None
    p = section("quality", params)
    signals = train["values"].tolist()
    return learn_split_thresholds(signals, p, frame_channels(train)).as_metadata()


def provenance(root: Path, model_dir: Path) -> tuple[dict[str, str], dict[str, Any], float]:
    """Labels (short strings, for listing), metadata (everything), and the threshold."""
    evaluation = read_json(root / EVALUATE_FILE, "the evaluate stage's scores", root)
    threshold = _threshold(root)
    model_json = read_json(model_dir / "model.json", "the train stage's model", root)
    weights = model_dir / "weights.safetensors"
    if not weights.is_file():
        raise FaultwatchError(f"{display_path(weights, root)}: not found (run the train stage)")
    params = load_params(root / "params.yaml")
    from faultwatch.evaluate.families import FAMILY_FILE, read_family_decision  # pandas: here
    from faultwatch.model.io import family as family_of  # torch: registering loads the model

    family, decision = family_of(model_json), read_family_decision(root / FAMILY_FILE, root)
    git = git_commit(root)
    data = data_hashes(root)
    data_id = data_hash(data)
    run_id = wandb_run_id(root, model_json)
    weights_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    test = evaluation.get("test")
    if not isinstance(test, dict):
        raise FaultwatchError(f"{EVALUATE_FILE}: no 'test' metrics (run the evaluate stage)")
    labels = {
        "git_commit": git["commit"][:12] + ("-dirty" if git["dirty"] else ""),
        "data_hash": data_id,
        "wandb_run_id": run_id or "",
        "threshold": f"{threshold:.6f}",
        "test_f1": _short(test.get("f1")),
        "test_pr_auc": _short(test.get("pr_auc")),
        "weights_sha256": weights_sha[:16],
        "family": family,
    }
    data_params = params.get("data", {})
    group = params.get("group")  # a model group's folder (faultwatch.groups): who it is
    if isinstance(group, dict):
        labels["group"] = str(group.get("name"))
    metadata = {
        "metrics": {"test": test, "val": evaluation.get("val", {})},
        "baselines": {k: v for k, v in evaluation.items() if k.startswith("baseline")},
        "params": json.dumps(params, sort_keys=True),  # as text: nulls and nesting kept
        "git": git,
        "data": {**current_data(root), "prepare_outs_md5": data},  # source, fault class, hash
        "wandb_run_id": run_id,
        "family": family,
        "family_decision": decision,
        "threshold": threshold,
        "preprocessing": model_json.get("preprocessing"),
        "input_schema": input_schema(data_params, model_json),
        "class_names": model_json.get("class_names"),
        "weights_sha256": weights_sha,
        "signal_quality": quality_thresholds(root, params),
    }
    if isinstance(group, dict):
        metadata["group"] = group
        metadata["data"]["filter"] = data_params.get("filter")
    return labels, _no_none(metadata), threshold


def _short(value: Any) -> str:
    return "none" if value is None else f"{float(value):.4f}"


def _no_none(value: Any) -> Any:
    """BentoML metadata takes basic types only: drop None entries (recursively)."""
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_none(v) for v in value if v is not None]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_no_none(value), sort_keys=True)


def same_model_in_store(metadata: dict[str, Any]) -> bentoml.Model | None:
    """The newest intact store entry with these weights, threshold and test metrics, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        entries = bentoml.models.list(MODEL_NAME)
    except NotFound:
        return None
    want = (
        metadata["weights_sha256"],
        metadata["threshold"],
        _canonical(metadata["metrics"]["test"]),
        _canonical(metadata.get("signal_quality")),
    )
    for entry in sorted(entries, key=lambda m: m.info.creation_time, reverse=True):
        meta = entry.info.metadata
        have = (
            meta.get("weights_sha256"),
            meta.get("threshold"),
            _canonical((meta.get("metrics") or {}).get("test")),
            _canonical(meta.get("signal_quality")),
        )
        if have != want:
            continue
        try:
            load_entry(entry)  # a tampered entry is never reused
        except FaultwatchError:
            continue
        return entry
    return None


def register(root: Path, model_dir: str = "models/fault_cnn") -> tuple[dict[str, Any], bool]:
    """Import the model into the store (or find it there); write reports/register.json.

    Returns the record and whether a new store entry was created.
    """
    labels, metadata, threshold = provenance(root, root / model_dir)
    existing = same_model_in_store(metadata)
    if existing is not None:
        tag, labels, created = existing.tag, dict(existing.info.labels), False
    else:
        tag = import_model(root / model_dir, threshold, labels=labels, metadata=metadata)
        created = True
    ensure_golden(root, store_entry(str(tag), "register", root))
    record = {"model_tag": str(tag), "weights_sha256": metadata["weights_sha256"], "labels": labels}
    record["family"] = metadata["family"]  # also for an entry registered before the families
    write_text_atomic(root / REGISTER_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record, created


def ensure_golden(root: Path, entry: bentoml.Model) -> Path:
    """The entry's golden set, recorded from the test split unless a valid one is there."""
    from faultwatch.splits import frame_channels, read_split  # pandas: not at import

    folder = Path(entry.path)
    try:
        known = load_golden(folder)
        if known.model_tag == str(entry.tag) and known.fault_rate is not None:
            return folder / GOLDEN_FILE
    except GoldenError:
        pass
    split = root / TEST_SPLIT
    shown = display_path(split, root)
    try:
        test = read_split(split)
    except FileNotFoundError:
        raise FaultwatchError(
            f"{shown}: not found (the golden set comes from the test split; run `dvc repro`)"
        ) from None
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise FaultwatchError(
            f"{shown}: not a readable parquet file ({e}); the golden set comes from the test "
            "split: `dvc repro -f -s prepare`"
        ) from None
    schema = entry.info.metadata.get("input_schema") or {}  # the model's limits, not the env's
    lengths = (
        int(schema.get("min_length", ServingLimits.min_length)),
        int(schema.get("max_length", ServingLimits.max_length)),
    )
    checks = QualityThresholds.from_metadata(entry.info.metadata)
    # a smoke test compares probabilities: a bad-quality signal may be answered without one
    channels = frame_channels(test)
    clean = test[[quality_of(v, checks, channels) == OK for v in test["values"]]]
    chosen = select_golden(clean, *lengths, where=shown)
    golden = compute_golden(
        load_entry(entry),
        str(entry.tag),
        read_threshold(folder),
        chosen["id"].tolist(),
        chosen["values"].tolist(),
        fault_rate=float((test["y"] == 1).mean()),
    )
    return write_golden(folder, golden)
