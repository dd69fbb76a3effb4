"""A fleet bento's models (issue 23): one per model group, described at start, loaded on demand.

Which models. FAULTWATCH_MODELS (a JSON object, group -> store tag), else the bento's `models`
build argument (the package stage writes it for a project with groups), else one model: the
single-model service of before (FAULTWATCH_MODEL_TAG, the bento's `model_tag`, fault_cnn:latest),
whose group is its store name.

At start (when the service module is imported) every group is *described* from its store entry
(model.json, the input schema, the quality thresholds, the threshold), which reads a few small
files and loads no weights. In a fleet a group whose entry is missing or unreadable does not stop
the start: it is kept with the reason, its requests are answered 503 naming it, and every other
group keeps answering. (A single model still fails fast, as before.)

Loading on demand (`ModelCache`). A group's weights load on its first request, with their sha256
checked against the store entry as the single model's are (faultwatch.serve.store.load_entry),
in a worker thread. Concurrent first requests for one group wait on that group's lock and load it
once. Beyond `max_loaded` loaded models the least recently used one is dropped from the cache (a
model call already running keeps its reference and finishes). `warm` names groups loaded at start;
the others load when asked, so the server is ready (/readyz) without them. A load that fails is
remembered with its reason (a tampered file stays tampered): 503 naming the group, until the
process restarts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch.errors import FaultwatchError
from faultwatch.serve.identity import MODEL_HEADER
from faultwatch.serve.schema import ServingLimits
from faultwatch.serve.store import StoreError, family_of, read_threshold, verify_entry_files
from faultwatch.signal_quality import QualityThresholds

if TYPE_CHECKING:
    import bentoml

    from faultwatch.model.io import LoadedModel

DEFAULT_MAX_LOADED = 10


class UnknownModel(FaultwatchError):
    """A request named no group of this bento (404), or named none where several are (422)."""

    def __init__(self, status: int, reason: str, msg: str):
        super().__init__(msg)
        self.status, self.reason, self.msg = status, reason, msg


class ModelUnavailable(FaultwatchError):
    """A group of the bento whose model cannot be served (missing, unreadable, tampered): 503."""

    def __init__(self, group: str, why: str):
        super().__init__(f"model {group!r} cannot be served: {why}")
        self.group, self.why = group, why


@dataclass(frozen=True)
class Described:
    """What a group's store entry says, read without loading its weights."""

    tag: str  # the store entry, name:version
    version: str  # the entry's version (model_version in answers and the log)
    limits: ServingLimits
    quality: QualityThresholds
    class_names: tuple[str, str]  # healthy, fault
    threshold: float
    channels: tuple[str, ...] | None
    family: str = "cnn"  # model.json's: cnn, or classical (no embedding is logged)


def describe(entry: bentoml.Model) -> Described:
    """The entry's description; StoreError naming the entry when a file is missing or bad."""
    verify_entry_files(entry)  # the weights' sha256 against the registration's, hashlib only
    try:
        meta = json.loads((Path(entry.path) / "model.json").read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"store entry {entry.tag}: cannot read model.json: {e}") from None
    channels = None if meta.get("channels") is None else tuple(map(str, meta["channels"]))
    healthy, fault = (str(c) for c in meta["class_names"])
    return Described(
        tag=str(entry.tag),
        version=str(entry.tag.version),
        limits=ServingLimits.resolve(dict(entry.info.metadata), channels),
        quality=QualityThresholds.from_metadata(entry.info.metadata),
        class_names=(healthy, fault),
        threshold=read_threshold(entry.path),
        channels=channels,
        family=family_of(meta),
    )


@dataclass
class Slot:
    """One group of the bento: its description (None: `error` says why it cannot be served) and,
    while loaded, its model."""

    group: str
    tag: str
    described: Described | None
    error: str | None = None
    model: LoadedModel | None = None
    load_s: float | None = None  # the last load's seconds (weights, sha256, first call)
    loads: int = 0
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stage: str | None = None  # the registry's word when the bento was built (package)

    def info(self) -> dict[str, Any]:
        """The group's line of GET /models."""
        d = self.described
        return {
            "model": self.group,
            "tag": self.tag,
            "version": d.version if d else None,
            "family": d.family if d else None,
            "stage": self.stage,
            "channels": list(d.channels) if d and d.channels else None,
            "loaded": self.model is not None,
            "load_s": None if self.load_s is None else round(self.load_s, 4),
            "loads": self.loads,
            "error": self.error,
        }


def describe_all(models: Mapping[str, str], get: Callable[[str], bentoml.Model]) -> dict[str, Slot]:
    """A slot per group; a group whose entry cannot be read keeps the reason instead."""
    slots = {}
    for group, tag in models.items():
        try:
            slots[group] = Slot(group, tag, describe(get(tag)))
        except Exception as e:  # noqa: BLE001 - any failure is this group's alone
            slots[group] = Slot(group, tag, None, error=f"{type(e).__name__}: {e}")
    return slots


class ModelCache:
    """The loaded models, at most `max_loaded`, least recently used evicted (see the module)."""

    def __init__(
        self,
        slots: Mapping[str, Slot],
        max_loaded: int,
        load: Callable[[Slot], LoadedModel],
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self.slots = dict(slots)
        self.max_loaded = max_loaded
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()  # the loaded set and the recency order
        self.evictions = 0

    def names(self) -> list[str]:
        return list(self.slots)

    def slot(self, group: str) -> Slot:
        return self.slots[group]

    def loaded(self) -> list[str]:
        return [g for g, s in self.slots.items() if s.model is not None]

    def get(self, group: str) -> LoadedModel:
        """The group's model, loaded now if it is not; ModelUnavailable when it cannot be."""
        slot = self.slots[group]
        model = slot.model
        if model is not None:
            slot.last_used = self._clock()
            return model
        with slot.lock:  # one load per group at a time: the others wait and find it loaded
            if slot.model is not None:
                slot.last_used = self._clock()
                return slot.model
            if slot.error is not None:
                raise ModelUnavailable(group, slot.error)
            t0 = time.perf_counter()
            try:
                model = self._load(slot)
            except Exception as e:  # noqa: BLE001 - remembered: the file stays as it is
                slot.error = f"{type(e).__name__}: {e}"
                raise ModelUnavailable(group, slot.error) from None
            slot.load_s = time.perf_counter() - t0
            slot.loads += 1
            with self._lock:
                slot.model = model
                slot.last_used = self._clock()
                self._evict(keep=group)
            return model

    def _evict(self, keep: str) -> None:
        """Drop the least recently used models beyond max_loaded (never `keep`)."""
        loaded = sorted(
            (s for s in self.slots.values() if s.model is not None and s.group != keep),
            key=lambda s: s.last_used,
        )
        while loaded and len(loaded) + 1 > self.max_loaded:
            victim = loaded.pop(0)
            victim.model = None
            self.evictions += 1

    def warm(self, groups: Iterable[str]) -> None:
        """Load `groups` now (at start); a failure is remembered, not raised."""
        for g in groups:
            try:
                self.get(g)
            except ModelUnavailable:
                pass

    def info(self) -> dict[str, Any]:
        """GET /models: every group's version, whether it is loaded, its load time."""
        return {
            "models": [s.info() for s in self.slots.values()],
            "max_loaded_models": self.max_loaded,
            "loaded": len(self.loaded()),
            "evictions": self.evictions,
        }


def resolve_models(env_models: Mapping[str, str] | None, arguments: Any) -> dict[str, str] | None:
    """FAULTWATCH_MODELS, else the bento's `models` argument (a JSON string or an object); None:
    a single-model service."""
    if env_models:
        return dict(env_models)
    arg = getattr(arguments, "models", None)
    if not arg:
        return None
    value = json.loads(arg) if isinstance(arg, str) else arg
    if not isinstance(value, dict) or not value:
        raise StoreError(f"the bento's models argument is not an object of group -> tag: {arg!r}")
    return {str(k): str(v) for k, v in value.items()}


def chosen_group(names: list[str], body: str | None, header: str | None) -> str:
    """The group a request asks for: `model` in the body, else the X-Faultwatch-Model header;
    with one group either may be left out. UnknownModel (404, or 422 when none was named among
    several, or the two disagree) lists the groups."""
    listed = ", ".join(names)
    if body is not None and header is not None and body != header:
        raise UnknownModel(
            422,
            "model_conflict",
            f'"model" is {body!r} but the {MODEL_HEADER} header says {header!r}: give one',
        )
    asked = body if body is not None else header
    if asked is None:
        if len(names) == 1:
            return names[0]
        raise UnknownModel(
            422,
            "model_required",
            f'this endpoint serves several models: name one with "model" in the body or the '
            f"{MODEL_HEADER} header: {listed}",
        )
    if asked not in names:
        raise UnknownModel(404, "unknown_model", f"no model {asked!r} here; the models: {listed}")
    return asked
