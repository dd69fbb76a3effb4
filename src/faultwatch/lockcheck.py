"""Is dvc.lock up to date with what git versions? The pre-commit hook `dvc-lock` and a test.

dvc.lock records the hash of every dependency each stage ran with. The committed metrics and
reports are only what the committed code produced when dvc.lock's hashes of the dependencies git
versions (code, notebooks, params, bentofile.yaml) are those of the files. Data and outputs
are DVC's, absent from a fresh clone until `dvc pull` or `dvc repro`, and are not compared.

DVC's own pieces do the work, without opening the repository (no lock, no state database, no
write): its YAML loader reads dvc.yaml, dvc.lock and the params files, `dvc_data` hashes a file
and builds a folder's `.dir` hash, and `.dvcignore` is applied with DVC's filter.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIPELINE = "dvc.yaml"
LOCK = "dvc.lock"
DEFAULT_PARAMS = "params.yaml"
FIX = "run `make run` (or `dvc repro`) and commit dvc.lock with the change"


@dataclass(frozen=True)
class StaleDep:
    """One dependency of one stage whose dvc.lock entry is not what the files hold now."""

    stage: str
    dep: str  # a path, `params.yaml:train.lr`, or `cmd`
    why: str

    def __str__(self) -> str:
        return f"{LOCK}: stage '{self.stage}': {self.dep}: {self.why}"


def _git_files(root: Path, *args: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True
    ).stdout
    return [p for p in out.decode("utf-8").split("\0") if p]


@functools.cache
def _load_yaml(path: Path) -> dict:
    """DVC's reader (YAML 1.2, as dvc.lock is written), once per file and check."""
    from dvc.utils.serialize import load_yaml

    return load_yaml(str(path)) or {}


def _dotted(data: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


class _Workspace:
    """What git versions in the project, and DVC's hashes of it."""

    def __init__(self, root: Path) -> None:
        from dvc.ignore import DvcIgnoreFilter
        from dvc_objects.fs.local import LocalFileSystem

        self.root = root
        self.tracked = set(_git_files(root))
        # untracked files git ignores; a folder of them ends with "/" (`--directory`)
        self.ignored = _git_files(
            root, "--others", "--ignored", "--exclude-standard", "--directory"
        )
        self.fs = LocalFileSystem()
        self.dvcignore = DvcIgnoreFilter(self.fs, str(root))

    def dvc_sees(self, rel: str) -> bool:
        path = str(self.root / rel.rstrip("/"))
        if rel.endswith("/"):
            return not self.dvcignore.is_ignored_dir(path)
        return not self.dvcignore.is_ignored_file(path)

    def versioned_by_git(self, rel: str) -> list[str] | None:
        """The git-tracked files a dependency stands for (one file, or a folder's files DVC
        hashes), or None when git does not version it: untracked, an output, data (a folder
        holding files git ignores and DVC sees, or a `.dvc` pointer to data not pulled)."""
        if rel in self.tracked:
            return [rel] if (self.root / rel).is_file() else []
        prefix = rel.rstrip("/") + "/"
        inside = sorted(f for f in self.tracked if f.startswith(prefix) and self.dvc_sees(f))
        if not inside or any(f.endswith(".dvc") for f in inside):
            return None
        inside = [f for f in inside if (self.root / f).is_file()]  # not deleted since
        data = [p for p in self.ignored if p.startswith(prefix) and self.dvc_sees(p)]
        return None if data else inside

    def md5(self, rel: str) -> str:
        from dvc_data.hashfile.hash import file_md5

        return file_md5(str(self.root / rel), self.fs)

    def dir_md5(self, rel: str, files: list[str]) -> str:
        """DVC's `.dir` hash of these files of the folder `rel` (what `dvc repro` records)."""
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.meta import Meta
        from dvc_data.hashfile.tree import Tree

        tree = Tree()
        for f in files:
            parts = tuple(Path(f).relative_to(rel).parts)
            tree.add(parts, Meta(), HashInfo("md5", self.md5(f)))  # the digest leaves meta out
        tree.digest()
        return tree.hash_info.value


def _param_keys(entries: list) -> dict[str, list[str]]:
    """dvc.yaml's `params:` of a stage as {file: [keys]} (a bare key is params.yaml's)."""
    keys: dict[str, list[str]] = {}
    for entry in entries or []:
        if isinstance(entry, str):
            keys.setdefault(DEFAULT_PARAMS, []).append(entry)
        else:
            for file, names in entry.items():
                keys.setdefault(file, []).extend(names or [])
    return keys


def _differences(now: Any, then: Any, key: str) -> list[tuple[str, str]]:
    """(dotted key, what differs) down to the leaves where both sides are mappings."""
    if isinstance(now, dict) and isinstance(then, dict):
        return [
            d
            for k in [*then, *(k for k in now if k not in then)]
            for d in _differences(now.get(k, _MISSING), then.get(k, _MISSING), f"{key}.{k}")
        ]
    if now == then:
        return []
    if now is _MISSING:
        return [(key, f"gone from the file (dvc.lock has {then!r})")]
    if then is _MISSING:
        return [(key, f"{now!r}, not in dvc.lock")]
    return [(key, f"{now!r} now, {then!r} in dvc.lock")]


_MISSING = object()


def _stale_params(name: str, spec: dict, locked: dict, wdir: Path) -> list[StaleDep]:
    stale = []
    recorded = locked.get("params") or {}
    for file, keys in _param_keys(spec.get("params")).items():
        current = _load_yaml(wdir / file) if (wdir / file).is_file() else {}
        for key in keys or list(current):
            found, now = _dotted(current, key)
            rec = recorded.get(file) or {}
            # dvc.lock keeps a dotted key as written in dvc.yaml (`groups.p-100`): one key
            had, then = (True, rec[key]) if key in rec else _dotted(rec, key)
            diffs = _differences(now if found else _MISSING, then if had else _MISSING, key)
            stale += [StaleDep(name, f"{file}:{k}", why) for k, why in diffs]
    return stale


def _substituted(value: Any, key: str) -> Any:
    """A `foreach` stage's `do` for one key: `${key}` replaced in every string."""
    if isinstance(value, str):
        return value.replace("${key}", key)
    if isinstance(value, list):
        return [_substituted(v, key) for v in value]
    if isinstance(value, dict):
        return {_substituted(k, key): _substituted(v, key) for k, v in value.items()}
    return value


def _expanded(root: Path, stages: dict) -> Iterator[tuple[str, dict]]:
    """dvc.yaml's stages, a `foreach: ${section}` over a params.yaml mapping (the model groups'
    stages) as DVC expands it: `NAME@KEY` for each key (none for an empty mapping)."""
    for name, spec in stages.items():
        over = spec.get("foreach") if isinstance(spec, dict) else None
        if not isinstance(over, str):
            yield name, spec
            continue
        m = re.fullmatch(r"\$\{([\w.-]+)\}", over)
        params = _load_yaml(root / DEFAULT_PARAMS) if (root / DEFAULT_PARAMS).is_file() else {}
        found, items = _dotted(params, m.group(1)) if m else (False, None)
        for key in items if found and isinstance(items, dict) else {}:
            yield f"{name}@{key}", _substituted(spec.get("do") or {}, str(key))


def stale_lock_entries(root: Path | str) -> list[StaleDep]:
    """Every stage of dvc.yaml whose dvc.lock entry disagrees with a dependency git versions
    (a file's or folder's md5, a params value), with its command, or that has no entry."""
    root = Path(root).resolve()
    _load_yaml.cache_clear()  # the files as they are now
    if not (root / PIPELINE).is_file():
        return []
    stages = dict(_expanded(root, _load_yaml(root / PIPELINE).get("stages") or {}))
    lock_path = root / LOCK
    locked_stages = (_load_yaml(lock_path).get("stages") or {}) if lock_path.is_file() else {}
    ws = _Workspace(root)
    stale: list[StaleDep] = []
    for name, spec in stages.items():
        locked = locked_stages.get(name)
        if locked is None:
            stale.append(StaleDep(name, "(stage)", "no entry in dvc.lock: never run"))
            continue
        if spec.get("cmd") != locked.get("cmd"):
            stale.append(StaleDep(name, "cmd", "dvc.yaml's command differs from dvc.lock's"))
        wdir = (root / spec.get("wdir", ".")).resolve()
        deps = {d["path"]: d for d in locked.get("deps") or []}
        for path in spec.get("deps") or []:
            rel = (wdir / path).resolve().relative_to(root).as_posix()
            files = ws.versioned_by_git(rel)
            if files is None:
                continue
            entry = deps.get(path)
            if entry is None:
                stale.append(StaleDep(name, path, "not in dvc.lock (a dependency added since)"))
                continue
            recorded = str(entry.get("md5"))
            is_dir = recorded.endswith(".dir")
            if not files:
                stale.append(StaleDep(name, path, "deleted (dvc.lock still has it)"))
                continue
            now = ws.dir_md5(rel, files) if is_dir else ws.md5(rel)
            if now != recorded:
                what = f"{len(files)} files git tracks" if is_dir else "md5"
                why = f"changed since dvc.lock was written ({what}: {now}, dvc.lock: {recorded})"
                stale.append(StaleDep(name, path, why))
        stale += _stale_params(name, spec, locked, wdir)
    return stale


def check(root: Path | str = ".") -> list[str]:
    """The pre-commit hook's messages: one per stale dependency, then what to do."""
    stale = stale_lock_entries(root)
    return [*map(str, stale), FIX] if stale else []
