"""One forward pass, two outputs: the fault probability and the penultimate-layer embedding.

The monitor compares the model's view of production signals with its view of the training
data: the global-pooled convolutional features (`FaultCNN.features(x).mean(-1)`, `channels[-1]`
floats) just before dropout and the linear head. Running the network a second time for them
would double the model's cost per request, so this module runs `FaultCNN.forward` in its two
halves and keeps the middle.

It lives here, and not as a method of `faultwatch.model.io.LoadedModel`, because the training
and evaluation stages list model/io.py and model/network.py as DVC dependencies: a change
there would make `dvc repro` retrain. The probabilities are bit-identical to
`LoadedModel.predict_proba` (same preprocessing, same chunks, the same operations in the same
order; tests compare them exactly).

A classical model (faultwatch.model.classical) has no network, hence no embedding: it is scored
by its own `predict_proba`, its log rows carry no embedding (the monitor's features, computed
apart, are logged as for a CNN), and the monitor judges its drift on those features alone.
`has_embedding` is the one place that tells the two apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the worker that loads the model, not at import
    from faultwatch.model.io import LoadedModel


def has_embedding(model: LoadedModel) -> bool:
    """Whether the model has a penultimate layer to log: a CNN does, a classical model (no
    network) does not."""
    return getattr(model, "network", None) is not None


def embedding_size(model: LoadedModel) -> int:
    """Floats per embedding: the last convolution block's channels."""
    return int(model.meta["architecture_args"]["channels"][-1])


def check_embeddable(model: LoadedModel) -> None:
    """Raise ModelError if the network is not split as FaultCNN is (features, dropout, head);
    a model without a network (classical) has nothing to split and passes."""
    if not has_embedding(model):
        return
    from faultwatch.model.io import ModelError  # imports torch: only a loaded model gets here

    net = model.network
    missing = [a for a in ("features", "dropout", "head") if not hasattr(net, a)]
    if missing:
        raise ModelError(
            f"{type(net).__name__}: no {', '.join(missing)} module: the service's embedding "
            "needs FaultCNN's split (features -> mean over time -> dropout -> head)"
        )


def proba_and_embedding(
    model: LoadedModel, signals: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities (n,) float64, embeddings (n, channels[-1]) float32) of raw signals, from
    one forward pass; the probabilities equal `model.predict_proba(signals)` bit for bit. A
    model without an embedding (classical): its `predict_proba` and None."""
    if not has_embedding(model):
        return np.asarray(model.predict_proba(list(signals)), dtype="float64"), None
    import torch

    net = model.network
    x = model.preprocess(signals)
    proba = np.empty(len(x), dtype=np.float64)
    emb = np.empty((len(x), embedding_size(model)), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(x), model.batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + model.batch_size]))
            xb = xb.to(model._device)
            if xb.dim() == 2:  # univariate: one input channel (a multichannel x has its own)
                xb = xb.unsqueeze(1)
            # FaultCNN.forward, halved: keep z, the pooled features
            z = net.features(xb).mean(dim=-1)
            logit = net.head(net.dropout(z)).squeeze(-1)
            proba[i : i + len(xb)] = torch.sigmoid(logit).cpu().numpy()
            emb[i : i + len(xb)] = z.cpu().numpy()
    return proba, emb
