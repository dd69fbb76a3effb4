"""The `train` stage: fit the fault classifier with Lightning, track it in W&B, save the best weights.

Runs are reproducible (seed_everything + deterministic algorithms: the same params on the
same machine give the same metrics and the same weights) and resumable: checkpoints go to
`<checkpoint_root>/<run key>/ckpt/`, where the run key hashes the params that shape the run and
the bytes of the training and validation files. A run that was interrupted (Ctrl+C, a killed
job, an exception) resumes from its `last.ckpt` when started again with the same key; a
changed parameter or data file gives another key, hence a fresh run, never a foreign one. A
run that finishes deletes its checkpoint folder: its result is `model_dir`, and re-running the
stage then retrains from scratch (what `dvc repro -f` expects) instead of resuming a done run.

The package, in the shape of lightning-hydra-template's train.py: `run.train` assembles the
pieces (`identity`: run key and resume; `fit`: data, model, trainer; `callbacks`; `tracking`:
W&B; `export`: the model folder and the run record) and runs them.
"""

from faultwatch.train.callbacks import (
    HISTORY_COLUMNS,
    EpochHistory,
    EpochProgress,
    RngStateInCheckpoint,
)
from faultwatch.train.export import (
    HISTORY_FILE,
    RUN_FILE,
    TrainResult,
    network_state,
    write_run_record,
)
from faultwatch.train.family import (
    FAMILY_FILE,
    FamilyRun,
    kept_summary,
    train_family,
    write_family_record,
)
from faultwatch.train.fit import (
    build_classifier,
    deterministic_algorithms,
    quiet_lightning,
    resolve_pos_weight,
)
from faultwatch.train.identity import run_key
from faultwatch.train.plots import plot_history
from faultwatch.train.run import train
from faultwatch.train.tracking import wandb_has_key, wandb_mode

__all__ = [
    "FAMILY_FILE",
    "FamilyRun",
    "kept_summary",
    "train_family",
    "write_family_record",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "RUN_FILE",
    "EpochHistory",
    "EpochProgress",
    "RngStateInCheckpoint",
    "TrainResult",
    "build_classifier",
    "deterministic_algorithms",
    "network_state",
    "plot_history",
    "quiet_lightning",
    "resolve_pos_weight",
    "run_key",
    "train",
    "wandb_has_key",
    "wandb_mode",
    "write_run_record",
]
