"""A run's identity: its key (the params that shape it and the bytes of its data files), its
checkpoint folder, the W&B run id it keeps across restarts, and where it resumes from.

A run that was interrupted resumes from its `last.ckpt` when started again with the same key; a
changed parameter or data file gives another key, hence a fresh run, never a foreign one. A
run that finishes deletes its folder (`close_run`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from faultwatch.model.io import sha256_file
from faultwatch.model.params import TrainParams
from faultwatch.paths import resolve


def run_key(params: TrainParams, data_files: Sequence[Path]) -> str:
    """Names a run: the params that shape it plus the content of its data files."""
    blob = {
        "params": params.run_key_fields(),
        "data": [sha256_file(p) for p in data_files],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    """One run's folder `<checkpoint_root>/<key>/` and what it holds."""

    key: str
    dir: Path
    wandb_run_id: str
    resume_from: Path | None  # the last checkpoint of an interrupted run with the same key
    resumed_from_epoch: int | None

    @property
    def ckpt_dir(self) -> Path:
        return self.dir / "ckpt"

    @property
    def last(self) -> Path:
        return self.ckpt_dir / "last.ckpt"


def open_run(params: TrainParams, root: Path, data_files: Sequence[Path]) -> Run:
    """The run these params and files name: resumed where its folder has a last checkpoint."""
    key = run_key(params, data_files)
    run_dir = resolve(params.checkpoint_root, root) / key
    last = run_dir / "ckpt" / "last.ckpt"
    resume_from = last if last.is_file() else None
    resumed_from_epoch = next_epoch(resume_from) if resume_from else None
    state = run_state(run_dir, params)
    return Run(key, run_dir, state["wandb_run_id"], resume_from, resumed_from_epoch)


def close_run(run: Run) -> None:
    """Done: the result is the model folder; a later run with the same key starts afresh (what
    `dvc repro -f` expects) instead of resuming a done run."""
    shutil.rmtree(run.dir, ignore_errors=True)
    with suppress(OSError):
        run.dir.parent.rmdir()  # only if no other run left a checkpoint there


def run_state(run_dir: Path, params: TrainParams) -> dict[str, Any]:
    """The run folder's run.json: the W&B run id to resume, and the params it stands for."""
    path = run_dir / "run.json"
    if path.is_file():
        return json.loads(path.read_text())
    state = {"wandb_run_id": uuid.uuid4().hex[:12], "params": params.run_key_fields()}
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return state


def next_epoch(checkpoint: Path) -> int:
    """The epoch a run resumed from `checkpoint` starts with."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1
