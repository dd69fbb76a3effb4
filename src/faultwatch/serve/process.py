"""What a service process serves, resolved once when faultwatch.serve.service is imported: the
settings, the model or the fleet of model groups (faultwatch.serve.fleet), their limits and
input forms, and the cache that loads the groups' models on demand.

One model (no FAULTWATCH_MODELS, no `models` bento argument): faultwatch.serve.served checks it
before any worker starts, as before issue 23; it is the fleet of one group named after its store
entry (`fault_cnn`), loaded when the worker starts, and requests may leave `model` out. A fleet:
every group described from its store entry (no weights loaded), a broken one kept with its
reason; the endpoints' schema takes any group's form (the loosest limits of all), each group's
own limits and channels are checked once the request names it.
"""

from __future__ import annotations

import json

import bentoml
import numpy as np

from faultwatch.serve.channels import ChannelSpec, UnivariateSpec
from faultwatch.serve.credentials import Credentials
from faultwatch.serve.embedding import check_embeddable, proba_and_embedding
from faultwatch.serve.fleet import (
    DEFAULT_MAX_LOADED,
    Described,
    ModelCache,
    Slot,
    describe_all,
    resolve_models,
)
from faultwatch.serve.metrics import RealisedF1
from faultwatch.serve.predlog import default_target
from faultwatch.serve.schema import ServingLimits
from faultwatch.serve.served import served_model
from faultwatch.serve.settings import ServeSettings
from faultwatch.serve.store import StoreError, load_entry, read_threshold

# the state of the process, resolved once at import: the settings, and the served model(s)
SETTINGS = ServeSettings.from_env()
# who may label, and who may ask (unset: /feedback refuses, /predict is open); a bad tokens
# file stops the start here, naming its line
LABELLERS = None if SETTINGS.labeller_tokens is None else Credentials.load(SETTINGS.labeller_tokens)
CLIENTS = None if SETTINGS.predict_tokens is None else Credentials.load(SETTINGS.predict_tokens)
_ARGS = bentoml.use_arguments()
FLEET = resolve_models(SETTINGS.models, _ARGS)  # None: one model, as before issue 23
if FLEET is None:
    SERVED = served_model(SETTINGS)  # checked: a missing or tampered model stops the start
    LIMITS = SERVED.limits
    GROUPS = {
        SERVED.entry.tag.name: Slot(
            SERVED.entry.tag.name,
            str(SERVED.entry.tag),
            Described(
                str(SERVED.entry.tag),
                str(SERVED.entry.tag.version),
                SERVED.limits,
                SERVED.quality,
                (SERVED.class_names[0], SERVED.class_names[1]),
                read_threshold(SERVED.entry.path),
                SERVED.channels,
                SERVED.family,
            ),
        )
    }
    LOG_TARGET = SERVED.log_target
else:
    SERVED = None

    def _stored(tag: str) -> bentoml.Model:
        stored = bentoml.models.BentoModel(tag).stored
        if stored is None:
            raise StoreError(f"model {tag} is not in the BentoML store")
        return stored

    GROUPS = describe_all(FLEET, _stored)
    # each group's stage (production, approved, candidate) when the package stage built it
    for _group, _stage in json.loads(getattr(_ARGS, "stages", None) or "{}").items():
        if _group in GROUPS:
            GROUPS[_group].stage = str(_stage)
    _described = [s.described for s in GROUPS.values() if s.described is not None]
    # the endpoints' schema takes every group's form; each group's limits are checked after
    LIMITS = ServingLimits(
        min_length=min((d.limits.min_length for d in _described), default=2),
        max_length=max((d.limits.max_length for d in _described), default=2),
        max_batch=max((d.limits.max_batch for d in _described), default=1),
        max_body_bytes=max((d.limits.max_body_bytes for d in _described), default=1),
    )
    LOG_TARGET = SETTINGS.prediction_log or default_target()
SPECS = {
    g: (UnivariateSpec(s.described.limits) if s.described.channels is None
        else ChannelSpec(s.described.channels, s.described.limits))
    for g, s in GROUPS.items() if s.described is not None
}  # fmt: skip
MAX_LOADED = SETTINGS.max_loaded_models or int(
    getattr(_ARGS, "max_loaded_models", None) or DEFAULT_MAX_LOADED
)
WARM = SETTINGS.warm if SETTINGS.warm is not None else tuple(
    n for n in str(getattr(_ARGS, "warm", "") or "").split(",") if n
)  # fmt: skip
_fault_labels = {s.described.version: s.described.class_names[1] for s in GROUPS.values()
                 if s.described is not None}  # fmt: skip
REALISED = RealisedF1(
    LOG_TARGET,
    next(iter(_fault_labels.values()), "fault"),
    SETTINGS.realised_f1_refresh_s,
    _fault_labels,
)


def described_all() -> list[Described]:
    return [s.described for s in GROUPS.values() if s.described is not None]


def group_classes(group: str | None) -> tuple[str, ...]:
    """The classes of the group that answered a logged prediction: a fleet's /feedback checks
    a label against them. A row without a group (logged by a single-model service) is the
    project's own model's (fault_cnn); a group this bento does not carry (another colour's
    bento on a shared log), or whose entry could not be described, is checked against every
    group's classes, since this process cannot know its own."""
    slot = GROUPS.get(group if group is not None else "fault_cnn")
    if slot is not None and slot.described is not None:
        return tuple(slot.described.class_names)
    return tuple(dict.fromkeys(c for d in described_all() for c in d.class_names))


def _load_slot(slot: Slot):  # noqa: ANN202 - LoadedModel (torch)
    """A group's model from its store entry, verified (load_entry), with one first call: that
    call pays for lazy initialisation, not a client's request. Either family: a classical
    model is scored by its predict_proba and logs no embedding (faultwatch.serve.embedding)."""
    entry = bentoml.models.get(slot.tag)
    model = load_entry(entry)  # the weights' sha256 against model.json and the store
    check_embeddable(model)
    d = slot.described
    assert d is not None  # a slot without a description has its error and is never loaded
    shape = (d.limits.min_length,)
    proba_and_embedding(
        model, [np.zeros(shape if d.channels is None else (len(d.channels), *shape))]
    )
    return model


# the loaded models of this process (one worker): the service's and GET /models'
CACHE = ModelCache(GROUPS, MAX_LOADED, _load_slot)
