"""What the serving tests share: a tiny model (and one that fails on a spike), the environment
and command of a `bentoml serve` of the service, and request bodies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cli import tool_env
from .paths import VENV_BIN

if TYPE_CHECKING:
    from faultwatch.serve.predlog import LoggedPrediction

INPUT_LENGTH = 64
THRESHOLD = 0.3
MAX_BATCH = 8  # the server's limit, set small through the environment
LOG_TIMEOUT_S = 2  # the server waits this long for a locked prediction log
DRAIN_BYTES = 16 * 1024 * 1024  # the server reads an oversized body this far (default 64 MiB)
JSON = "application/json"
AXES = ("x", "y", "z")  # a multichannel model's channels (helpers.signals.AXES; no pandas here)
SPIKE = [0.0] * 20 + [1000.0] + [0.0] * 19  # valid input, but save_spike_failing_model fails on it
# the labeller the test servers know (FAULTWATCH_LABELLER_TOKENS: labellers_file())
LABELLER, LABELLER_TOKEN = "tester", "tester-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {LABELLER_TOKEN}"}


def labellers_file() -> Path:
    """The test servers' labellers' tokens: one labeller, LABELLER (written once, atomically:
    the workers share it)."""
    import os
    import tempfile

    path = Path(tempfile.gettempdir()) / "faultwatch-test-labellers"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(f"# the tests' labeller\n{LABELLER}:{LABELLER_TOKEN}\n")
        os.replace(tmp, path)
    return path


def save_tiny_model(model_dir: Path, positive_label: str = "fault") -> Path:
    """A FaultCNN(channels=(4, 8)) with seeded weights, saved for INPUT_LENGTH samples; its
    classes are healthy and `positive_label`."""
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(0)
    net = FaultCNN(channels=(4, 8), kernel_size=5, dropout=0.0)
    save_model(model_dir, net, {"input_length": INPUT_LENGTH, "positive_label": positive_label})
    return model_dir


def save_tiny_multichannel_model(model_dir: Path, channels: tuple[str, ...] = AXES) -> Path:
    """A FaultCNN(channels=(4, 8)) reading `channels` (x, y, z), seeded, for INPUT_LENGTH."""
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(0)
    net = FaultCNN(channels=(4, 8), kernel_size=5, dropout=0.0, in_channels=len(channels))
    meta = {"input_length": INPUT_LENGTH, "positive_label": "fault", "channels": list(channels)}
    save_model(model_dir, net, meta)
    return model_dir


def save_spike_failing_model(model_dir: Path) -> Path:
    """A model whose probability is NaN for a signal with a spike (SPIKE) and finite for smooth
    ones: its first convolution overflows float32 where the normalised signal passes ~2.3, its
    second subtracts two equal channels (inf - inf)."""
    import torch

    from faultwatch.model.io import save_model
    from faultwatch.model.network import FaultCNN

    torch.manual_seed(1)
    net = FaultCNN(channels=(4, 8), kernel_size=5, dropout=0.0)
    conv1, conv2 = net.features[0], net.features[4]
    with torch.no_grad():
        conv1.weight.zero_()
        conv1.weight[:, 0, 2] = 1.5e38
        conv2.weight.zero_()
        conv2.weight[:, 0, 2] = 1e-30
        conv2.weight[:, 1, 2] = -1e-30
    save_model(model_dir, net, {"input_length": INPUT_LENGTH, "positive_label": "fault"})
    return model_dir


def server_env(home: Path, tag: str, log_path: Path, **extra: str) -> dict[str, str]:
    """A server of store entry `tag` in BENTOML_HOME `home`, logging to `log_path`."""
    return tool_env(
        BENTOML_HOME=str(home),
        FAULTWATCH_MODEL_TAG=tag,
        FAULTWATCH_PREDICTION_LOG=str(log_path),
        FAULTWATCH_MAX_BATCH=str(MAX_BATCH),
        FAULTWATCH_TORCH_THREADS="1",
        BENTOML_DO_NOT_TRACK="true",
        **{"FAULTWATCH_LABELLER_TOKENS": str(labellers_file()), **extra},
    )


def serve_cmd(port: int) -> list[str]:
    """`bentoml serve` of the service on 127.0.0.1:`port`."""
    return [str(VENV_BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: no BENTOML_HOME, no FAULTWATCH_* settings."""
    env = {k: v for k, v in tool_env().items() if not k.startswith(("FAULTWATCH_", "BENTOML_"))}
    return {**env, "BENTOML_DO_NOT_TRACK": "true", **extra}


def entry(p: float = 0.7) -> LoggedPrediction:
    """A logged /predict answer of probability `p` (fault from 0.5)."""
    # imported here: conftest loads this module (through serving_fixtures) for every run
    from faultwatch.serve.predlog import InputSummary, LoggedPrediction

    summary = InputSummary.of(np.arange(10.0))
    return LoggedPrediction("predict", "v1", summary, p, "fault", p >= 0.5, 0.5, 1.2, 1)


def good_signal(n: int = 40) -> list[float]:
    """A smooth signal of `n` samples that every model here answers."""
    return np.sin(np.linspace(0, 6, n)).round(5).tolist()


def numbers(tokens: list[str], n: int = 40) -> bytes:
    """A /predict body whose samples are raw JSON tokens (NaN and Infinity are not JSON)."""
    return ('{"signal": [' + ", ".join(tokens + ["0.5"] * (n - len(tokens))) + "]}").encode()
