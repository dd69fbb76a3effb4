"""The `package` stage: `bentoml build` of the production model, its provenance on the bento.

Which model: the registry's current model (faultwatch.registry.current: the newest version
approved since production and not refused online, which is what gets rolled out next; else the
production version); else the latest approved one; else the candidate the register stage just
stored (labelled as such, so nobody mistakes it for a
promoted model). A promoted model trained for another task than this project's (another
`data.source` or fault class in its provenance) is never packaged for it: the candidate is,
with a warning and the reason in reports/package.json. One trained on another version of the
same source (another data hash) is still packaged, with a warning: the candidate trained on the
current data has not passed the gate yet (`faultwatch promote`).

The bento's labels come from the registry (stage, version, the version's commit), not from
the store entry, whose labels were written at registration; `family` (cnn or classical) from
the entry's model.json. Either family is packaged the same way: the service scores a classical
model with its own predict_proba and logs no embedding for it (faultwatch.serve.embedding).
After `faultwatch promote`, run `dvc repro -f -s package` (the registry lives in git tags,
which DVC does not watch).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field

from faultwatch import registry, settings
from faultwatch.errors import FaultwatchError
from faultwatch.params import Section
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

PACKAGE_FILE = Path("reports/package.json")
CANDIDATE = "candidate (not promoted)"


@dataclass(frozen=True)
class Choice:
    """The model to package, why, and what a person should know about it."""

    model_tag: str
    stage: str  # production, approved, or CANDIDATE
    version: registry.Version | None
    reason: str
    warnings: list[str] = field(default_factory=list)


def choose_model(root: Path) -> Choice:
    """The model to package (see the module's docstring for the order and the data check)."""
    current = current_data(root)
    warnings: list[str] = []
    known = registry.versions(root)
    approved = [v for v in known if v.approval == registry.APPROVED]
    in_prod = [v for v in known if registry.PRODUCTION in v.stages]
    tried: list[registry.Version] = []
    for v in (registry.current(known), *in_prod, *approved[-1:]):
        if v is not None and v not in tried:
            tried.append(v)
    for v in tried:
        stage = "production" if registry.PRODUCTION in v.stages else "approved"
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
    labels["family"] = entry_family(entry)
    return labels


def entry_family(entry: bentoml.Model) -> str:
    """The model family of a store entry (its model.json: cnn or classical)."""
    from faultwatch.serve.store import family_of

    path = Path(entry.path) / "model.json"
    try:
        return family_of(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise FaultwatchError(f"store entry {entry.tag}: cannot read {path.name}: {e}") from None


def choose_version(root: Path, version: str) -> Choice:
    """A named registry version (`faultwatch package --version`, `faultwatch image build`): its
    model as it is, whatever the gate said of it (the labels say that: stage and approval)."""
    v = registry.get(version, root)
    if not v.model_tag:
        raise FaultwatchError(f"registry version {version} names no model store entry")
    prod = registry.production(root)
    stage = "production" if prod and prod.version == v.version else v.approval
    store_entry(v.model_tag, f"{stage} {v.version}", root)  # in the store, or say how to get it
    return Choice(v.model_tag, stage, v, f"registry version {v.version} ({stage}), as asked")


def drop_build_tools(bento_path: Path) -> list[str]:
    """Remove BentoML's default system-package command from the bento's image.

    With any base image, BentoML 1.4 adds `apt-get install ... build-essential git` to the
    image (about 300 MB: gcc, make, git). No package of the bento is built from source (all are
    wheels), so the image needs none of it; faultwatch's base image has bash and CA
    certificates already. Returns the commands removed."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    defaults = {m["default_install_command"] for m in CONTAINER_METADATA.values()}
    info_file = bento_path / "bento.yaml"
    text = info_file.read_text()
    info = yaml.safe_load(text)
    commands = (info.get("image") or {}).get("commands") or []
    removed = [c for c in commands if c in defaults]
    if not removed:
        return []
    keep = [c for c in commands if c not in defaults]
    block = re.compile(r"^(  commands:)\n(?:  - .*\n(?:    .*\n)*)+", re.M)
    new, n = block.subn(lambda m: m.group(1) + " " + json.dumps(keep) + "\n", text, count=1)
    check = yaml.safe_load(new) if n == 1 else None
    if (
        check is None
        or check["image"]["commands"] != keep
        or {k: v for k, v in check.items() if k != "image"}
        != {k: v for k, v in info.items() if k != "image"}
    ):
        raise FaultwatchError(f"{info_file}: could not remove BentoML's build tools from it")
    write_text_atomic(info_file, new)
    dockerfile = bento_path / "env" / "docker" / "Dockerfile"  # written at build, kept for readers
    if dockerfile.is_file():
        lines = dockerfile.read_text().splitlines(keepends=True)
        gone = {f"RUN {c}" for c in removed}
        write_text_atomic(dockerfile, "".join(ln for ln in lines if ln.rstrip("\n") not in gone))
    return removed


def fleet_choices(root: Path) -> tuple[dict[str, Choice], list[str]]:
    """A project with model groups: the model of every group (the project's own `fault_cnn`
    when its register stage ran, then each group in params.yaml's order), each chosen as
    `choose_model` chooses in that group's folder; groups whose stages have not run are left
    out with a warning."""
    from faultwatch.groups import promotable

    choices: dict[str, Choice] = {}
    skipped: list[str] = []
    for name, folder in promotable(root).items():
        if not (folder / REGISTER_FILE).is_file():
            skipped.append(
                f"group {name}: not packaged: its stages have not run (`dvc repro "
                f"group-register@{name}`)"
            )
            continue
        choices[name] = choose_model(folder)
    if not choices:
        raise FaultwatchError(
            "params.yaml has groups, but no group's register stage has run: `dvc repro`"
        )
    return choices, skipped


class ServeParams(Section):
    """params.yaml `serve`: what a fleet bento (a project with model groups) is built with."""

    # models kept in memory at once; the least recently used beyond it is evicted
    max_loaded_models: int = Field(10, ge=1)
    warm: list[str] = Field(default_factory=list)  # groups loaded when a server starts


def serve_params(root: Path) -> dict[str, Any]:
    """params.yaml `serve`, checked (a bad key is named)."""
    from faultwatch.params import load_params, section

    return section("serve", load_params(root / "params.yaml")).model_dump()


def package_fleet(root: Path, bentofile: str = "bentofile.yaml") -> dict[str, Any]:
    """The fleet bento: every group's model (see `fleet_choices`), served on demand."""
    import bentoml

    choices, skipped = fleet_choices(root)
    serve = serve_params(root)
    unknown = [w for w in serve["warm"] if w not in choices]
    if unknown:
        raise FaultwatchError(
            f"params.yaml: serve.warm: {unknown[0]!r} is not a packaged group "
            f"({', '.join(choices)})"
        )
    entries = {name: store_entry(c.model_tag, c.stage, root) for name, c in choices.items()}
    models = {name: str(e.tag) for name, e in entries.items()}
    first = next(iter(choices))
    labels = bento_labels(choices[first], entries[first])
    labels["fleet"] = ",".join(choices)
    args = {
        "models": json.dumps(models, sort_keys=False),
        "max_loaded_models": str(serve["max_loaded_models"]),
        "warm": ",".join(serve["warm"]),
        "stages": json.dumps({name: c.stage for name, c in choices.items()}),
    }
    with settings.temporarily({"FAULTWATCH_MODELS": args["models"]}):
        bento = bentoml.bentos.build_bentofile(
            str(root / bentofile), build_ctx=str(root), labels=labels, args=args
        )
    drop_build_tools(Path(bento.path))
    record = {
        "bento_tag": str(bento.tag),
        "model_tag": models[first],
        "stage": choices[first].stage,
        "registry_version": choices[first].version.version if choices[first].version else None,
        "reason": f"a fleet of {len(models)} model groups; {first}: {choices[first].reason}",
        "warnings": [w for c in choices.values() for w in c.warnings] + skipped,
        "labels": labels,
        "models": {
            name: {
                "model_tag": models[name],
                "stage": c.stage,
                "registry_version": c.version.version if c.version else None,
                "reason": c.reason,
                "family": entry_family(entries[name]),
            }
            for name, c in choices.items()
        },
        "serve": serve,
    }
    write_text_atomic(root / PACKAGE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def package(
    root: Path, bentofile: str = "bentofile.yaml", version: str | None = None
) -> dict[str, Any]:
    """Build the bento. Without `version`, the package stage's choice, recorded in
    reports/package.json; with one, that registry version's model, recorded nowhere else (the
    stage's record stays the pipeline's). A project with model groups gets the fleet bento."""
    import bentoml

    if version is None:
        from faultwatch.groups import specs
        from faultwatch.params import load_params

        if specs(load_params(root / "params.yaml")):
            return package_fleet(root, bentofile)
    choice = choose_model(root) if version is None else choose_version(root, version)
    model = store_entry(choice.model_tag, choice.stage, root)
    labels = bento_labels(choice, model)
    # the service, which BentoML imports here, resolves its model by tag
    with settings.temporarily({"FAULTWATCH_MODEL_TAG": str(model.tag)}):
        bento = bentoml.bentos.build_bentofile(
            str(root / bentofile),
            build_ctx=str(root),
            labels=labels,
            args={"model_tag": str(model.tag)},  # the bento serves this version, not :latest
        )
    drop_build_tools(Path(bento.path))
    record = {
        "bento_tag": str(bento.tag),
        "model_tag": str(model.tag),
        "stage": choice.stage,
        "registry_version": choice.version.version if choice.version else None,
        "reason": choice.reason,
        "warnings": choice.warnings,
        "labels": labels,
    }
    dockerfile = Path(bento.path_of("env/docker/Dockerfile"))
    if dockerfile.is_file():  # BentoML writes one at build for some docker options only
        record["dockerfile"] = str(dockerfile.relative_to(bento.path))
    if version is None:
        write_text_atomic(root / PACKAGE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
