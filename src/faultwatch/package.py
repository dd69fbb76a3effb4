"""The `package` stage: `bentoml build` of the production model, its provenance on the bento.

Which model: the registry's production version; else the latest approved one; else the
candidate the register stage just stored (labelled as such, so nobody mistakes it for a
promoted model). A promoted model trained for another task than this project's (another
`data.source` or fault class in its provenance) is never packaged for it: the candidate is,
with a warning and the reason in reports/package.json. One trained on another version of the
same source (another data hash) is still packaged, with a warning: the candidate trained on the
current data has not passed the gate yet (`faultwatch promote`).

The bento's labels come from the registry (stage, version, the version's commit), not from
the store entry, whose labels were written at registration. After `faultwatch promote`, run
`dvc repro -f -s package` (the registry lives in git tags, which DVC does not watch).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch.errors import FaultwatchError
from faultwatch.paths import write_text_atomic
from faultwatch.register import (
    REGISTER_FILE,
    current_data,
    read_json,
    store_entry,
    task,
    trained_on,
)

if TYPE_CHECKING:
    import bentoml

    from faultwatch.registry import Version

PACKAGE_FILE = Path("reports/package.json")
CANDIDATE = "candidate (not promoted)"


@dataclass(frozen=True)
class Choice:
    """The model to package, why, and what a person should know about it."""

    model_tag: str
    stage: str  # production, approved, or CANDIDATE
    version: Version | None
    reason: str
    warnings: list[str] = field(default_factory=list)


def choose_model(root: Path) -> Choice:
    """The model to package (see the module's docstring for the order and the data check)."""
    from faultwatch import registry

    current = current_data(root)
    warnings: list[str] = []
    prod = registry.production(root)
    approved = registry.latest_approved(root)
    tried = [("production", prod)]
    if approved and not (prod and approved.version == prod.version):
        tried.append(("approved", approved))
    for stage, v in tried:
        if v is None:
            continue
        data = trained_on(store_entry(v.model_tag, f"{stage} {v.version}", root))
        name = f"{stage} {v.version} ({v.model_tag})"
        if (data["source"], data["positive_label"]) != (
            current["source"],
            current["positive_label"],
        ):
            warnings.append(
                f"{name} was trained on {task(data)}; this project is on {task(current)}: "
                "not packaged for it"
            )
            continue
        if data["hash"] != current["hash"]:
            warnings.append(
                f"{name} was trained on another version of {current['source']} (data hash "
                f"{data['hash']}, now {current['hash']}): packaged until `faultwatch promote` "
                "gates the candidate trained on the current data"
            )
        return Choice(v.model_tag, stage, v, f"{name}, trained on {task(data)}", warnings)

    reg = read_json(root / REGISTER_FILE, "the register stage's record", root)
    tag = reg.get("model_tag")
    if not isinstance(tag, str) or not tag:
        raise FaultwatchError(f"{REGISTER_FILE}: no 'model_tag' (run the register stage)")
    data = trained_on(store_entry(tag, "the candidate", root))
    if (data["source"], data["positive_label"]) != (current["source"], current["positive_label"]):
        raise FaultwatchError(
            f"{REGISTER_FILE}: the candidate {tag} was trained on {task(data)}, but params.yaml "
            f"says {task(current)}: run `dvc repro` to train and register a model for it"
        )
    if warnings:
        reason = (
            f"the candidate {tag}, trained on this project's data ({task(current)}): no "
            "promoted model was trained on it; `faultwatch promote` gates the candidate"
        )
    else:
        reason = f"the candidate {tag}: no model promoted yet (`faultwatch promote`)"
    return Choice(tag, CANDIDATE, None, reason, warnings)


def bento_labels(choice: Choice, entry: bentoml.Model) -> dict[str, str]:
    """The store entry's provenance labels, with the registry's word on stage, version, commit."""
    registered = {k: str(v) for k, v in entry.info.labels.items() if k != "stage"}
    labels = {
        **registered,
        "stage": choice.stage,
        "model_tag": str(entry.tag),
        "registry_version": choice.version.version if choice.version else "none",
        # the commit the registry version names (its dvc.lock pins this model); a candidate has
        # none yet: the commit it was registered from
        "git_commit": choice.version.commit[:12]
        if choice.version
        else registered.get("git_commit", "unknown"),
        "registered_from_commit": registered.get("git_commit", "unknown"),
    }
    source = trained_on(entry)["source"]
    if source is not None:
        labels["data_source"] = str(source)
    return labels


def package(root: Path, bentofile: str = "bentofile.yaml") -> dict[str, Any]:
    import bentoml

    choice = choose_model(root)
    model = store_entry(choice.model_tag, choice.stage, root)
    labels = bento_labels(choice, model)
    before = os.environ.get("FAULTWATCH_MODEL_TAG")
    os.environ["FAULTWATCH_MODEL_TAG"] = str(model.tag)  # the service resolves its model by tag
    try:
        bento = bentoml.bentos.build_bentofile(
            str(root / bentofile),
            build_ctx=str(root),
            labels=labels,
            args={"model_tag": str(model.tag)},  # the bento serves this version, not :latest
        )
    finally:
        if before is None:
            os.environ.pop("FAULTWATCH_MODEL_TAG", None)
        else:
            os.environ["FAULTWATCH_MODEL_TAG"] = before
    record = {
        "bento_tag": str(bento.tag),
        "model_tag": str(model.tag),
        "stage": choice.stage,
        "registry_version": choice.version.version if choice.version else None,
        "reason": choice.reason,
        "warnings": choice.warnings,
        "labels": labels,
        "dockerfile": str(Path(bento.path_of("env/docker/Dockerfile")).relative_to(bento.path)),
    }
    write_text_atomic(root / PACKAGE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
