"""The prediction log: one row per answered prediction (its input summary, cheap features and
embedding), one per rejected request, the sampled raw signals and the delayed labels.

Where: a SQLite file (the embedded default, sqlite.py) or a PostgreSQL database
(`FAULTWATCH_PREDICTION_LOG=postgresql://...`, for several replicas behind one router; see
postgres.py). `open_log(target)` picks the backend from the target (target.py names it); both
are a `PredictionLog` (log.py), with the same tables, columns (schema.py) and methods. Callers
import from this package, never from a backend module.

Durability: every row is committed before the service answers. SQLite runs in WAL mode. With
`synchronous=NORMAL` (the default) a commit has reached the WAL file through `write()` when
it returns, so a crash or kill of the serving process, or of its container, loses no
acknowledged row; only a kernel crash or power cut before the OS writes its page cache back
can lose the last commits (never corrupt the file). `synchronous=FULL` also survives that, at
one fsync per commit: 4 ms on this machine's disk against 0.03 ms, more than the model costs.
The batched endpoint writes one transaction per batch (predictions and sampled signals
together), so FULL costs one fsync per batch. Choose with `FAULTWATCH_PREDICTION_LOG_SYNC`
(NORMAL or FULL; SQLite only: a PostgreSQL commit is on the server's disk when it returns).

A row that cannot be committed (the file locked by another writer for longer than
`FAULTWATCH_PREDICTION_LOG_TIMEOUT` seconds, default 10; a full or read-only disk; the
PostgreSQL server unreachable) raises `PredictionLogError`, and the service answers 503
instead of the prediction: no answer leaves that the log does not hold.

Several processes may write one log at once (blue and green; replicas): a SQLite write takes
the write lock with `BEGIN IMMEDIATE` and waits up to the timeout for it. Each row carries the
serving instance's colour (`FAULTWATCH_COLOUR`), the request's id (`X-Request-ID`), its role
(live, shadow or smoke) and, for a prediction, its `prediction_id`. A log written before
columns existed is migrated when it is opened (ALTER TABLE ADD COLUMN; the new columns NULL).

Labels (`add_labels`) are validated all first, then written in one transaction:
`FeedbackError` 404 unknown_prediction or 409 duplicate_label, nothing written. The read side
(read.py) gives DataFrames for the monitor and retraining.

Multichannel models (issue 21): a prediction's row names its channels (`channels`, JSON) and
holds its per-channel features as JSON (`channel_features`, {"rms[x]": ...}; the univariate
feature columns NULL); `features_frame` turns them into columns. A sampled signal is stored
channel-major with its channel count (`signals.channels`), and read back as (channels, samples).
"""

from __future__ import annotations

from faultwatch.serve.predlog.entries import (
    FeedbackError,
    InputSummary,
    LoggedPrediction,
    PredictionLogError,
    decode_embedding,
    decode_signal,
    encode_embedding,
    encode_signal,
    mask_url,
)
from faultwatch.serve.predlog.factory import open_log
from faultwatch.serve.predlog.log import PredictionLog
from faultwatch.serve.predlog.postgres import PostgresPredictionLog
from faultwatch.serve.predlog.read import (
    PREDICTION_FIELDS,
    REJECTED_FIELDS,
    features_frame,
    log_exists,
    read_embeddings,
    read_only,
    read_predictions,
    read_rejected,
    read_signals,
)
from faultwatch.serve.predlog.schema import (
    ADDED_COLUMNS,
    FEATURE_COLUMNS,
    INDEXES,
    ROLES,
    SCHEMA,
)
from faultwatch.serve.predlog.sqlite import SqlitePredictionLog
from faultwatch.serve.predlog.target import (
    DEFAULT_PREDICTION_LOG,
    DEFAULT_TIMEOUT_S,
    ENV_PATH,
    ENV_SYNC,
    ENV_TIMEOUT,
    POSTGRES_SCHEMES,
    SYNC_MODES,
    default_path,
    default_target,
    is_postgres_url,
    resolve_target,
    show_target,
)

__all__ = [
    "ADDED_COLUMNS",
    "DEFAULT_PREDICTION_LOG",
    "DEFAULT_TIMEOUT_S",
    "ENV_PATH",
    "ENV_SYNC",
    "ENV_TIMEOUT",
    "FEATURE_COLUMNS",
    "INDEXES",
    "POSTGRES_SCHEMES",
    "PREDICTION_FIELDS",
    "REJECTED_FIELDS",
    "ROLES",
    "SCHEMA",
    "SYNC_MODES",
    "FeedbackError",
    "InputSummary",
    "LoggedPrediction",
    "PostgresPredictionLog",
    "PredictionLog",
    "PredictionLogError",
    "SqlitePredictionLog",
    "decode_embedding",
    "decode_signal",
    "default_path",
    "default_target",
    "encode_embedding",
    "encode_signal",
    "features_frame",
    "is_postgres_url",
    "log_exists",
    "mask_url",
    "open_log",
    "read_embeddings",
    "read_only",
    "read_predictions",
    "read_rejected",
    "read_signals",
    "resolve_target",
    "show_target",
]
