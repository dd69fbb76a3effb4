"""The `package` stage: `bentoml build` of the production model, its provenance on the bento.

Which model: the registry's production version; before any promotion, the latest approved
one; before any approval, the candidate the register stage just stored (labelled as such,
so nobody mistakes it for a promoted model). After `faultwatch promote`, run
`dvc repro -f package` (the registry lives in git tags, which DVC does not watch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError
from faultwatch.paths import write_text_atomic
from faultwatch.register import REGISTER_FILE

PACKAGE_FILE = Path("reports/package.json")


def choose_model(root: Path) -> tuple[str, str, str | None]:
    """(model tag, registry stage, registry version) of the model to package."""
    from faultwatch import registry

    prod = registry.production(root)
    if prod:
        return prod.model_tag, "production", prod.version
    approved = registry.latest_approved(root)
    if approved:
        return approved.model_tag, "approved", approved.version
    reg = root / REGISTER_FILE
    if not reg.exists():
        raise FaultwatchError(f"{REGISTER_FILE}: not found; run the register stage first")
    return json.loads(reg.read_text())["model_tag"], "candidate (not promoted)", None


def package(root: Path, bentofile: str = "bentofile.yaml") -> dict[str, Any]:
    import bentoml

    model_tag, stage, version = choose_model(root)
    model = bentoml.models.get(model_tag)
    labels = {
        **{k: str(v) for k, v in model.info.labels.items()},
        "stage": stage,
        "model_tag": str(model.tag),
        "registry_version": version or "none",
    }
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
        "stage": stage,
        "registry_version": version,
        "labels": labels,
        "dockerfile": str(Path(bento.path_of("env/docker/Dockerfile")).relative_to(bento.path)),
    }
    out = root / PACKAGE_FILE
    write_text_atomic(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
