"""The settings table (faultwatch.settings): every variable declared once, read when asked, a
bad value named; the README's table equal to it; `faultwatch config` showing where each value
came from."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from faultwatch import settings
from faultwatch.cli import config
from faultwatch.errors import FaultwatchError
from faultwatch.serve.settings import ServeSettings, variable

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "faultwatch"
# a row of the README's table: | `NAME` | type | `default` | read by | what it does |
README_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \| [^|]+ \| `([^`]*)` \|", re.M)


def readme_table() -> dict[str, str]:
    return dict(README_ROW.findall((REPO / "README.md").read_text()))


def test_the_readme_table_and_the_declaration_agree():
    table = readme_table()
    declared = {s.name: s.shown_default() for s in settings.SETTINGS}
    assert set(table) == set(declared), (
        f"in the README only: {sorted(set(table) - set(declared))}; "
        f"declared only: {sorted(set(declared) - set(table))}"
    )
    assert table == declared
    assert len(settings.BY_NAME) == len(settings.SETTINGS), "a variable is declared twice"


def test_every_faultwatch_variable_the_package_names_is_declared():
    named = set()
    for path in SRC.rglob("*"):
        if path.suffix in (".py", ".lua"):
            named |= set(re.findall(r"\bFAULTWATCH_[A-Z0-9][A-Z0-9_]*\b", path.read_text()))
    assert named - set(settings.BY_NAME) == set()
    faultwatch_vars = {n for n in settings.BY_NAME if n.startswith("FAULTWATCH_")}
    assert len(faultwatch_vars) == 36
    assert faultwatch_vars <= named, "declared but named nowhere in the package"


def test_a_value_is_read_when_asked_and_typed(monkeypatch):
    monkeypatch.delenv("FAULTWATCH_BATCH_SIZE", raising=False)
    assert settings.get("FAULTWATCH_BATCH_SIZE") == 64
    monkeypatch.setenv("FAULTWATCH_BATCH_SIZE", "16")  # after import: still seen
    assert settings.get("FAULTWATCH_BATCH_SIZE") == 16
    assert settings.get("FAULTWATCH_BATCH_SIZE", {}) == 64  # a mapping given: only that one
    assert settings.get("FAULTWATCH_BATCH_SIZE", {"FAULTWATCH_BATCH_SIZE": ""}) == 64  # empty
    assert settings.get("FAULTWATCH_TRACE_PREDICTIONS", {"FAULTWATCH_TRACE_PREDICTIONS": "True"})
    url = "postgresql://u:pw@db:5432/log"
    assert settings.get("FAULTWATCH_PREDICTION_LOG", {"FAULTWATCH_PREDICTION_LOG": url}) == url
    log = settings.get("FAULTWATCH_PREDICTION_LOG", {"FAULTWATCH_PREDICTION_LOG": "x/p.sqlite"})
    assert log == Path("x/p.sqlite")
    assert settings.get("FAULTWATCH_TORCH_WHEELS", {}) == Path("/opt/wheels")
    with pytest.raises(KeyError, match="FAULTWATCH_NOPE is not declared"):
        settings.get("FAULTWATCH_NOPE")


@pytest.mark.parametrize(
    "name, value, rule",
    [
        ("FAULTWATCH_BATCH_SIZE", "0", "must be 1 or more"),
        ("FAULTWATCH_MAX_QUEUE", "many", "invalid literal for int"),
        ("FAULTWATCH_LOG_SIGNALS", "1.5", "a fraction from 0 to 1"),
        ("FAULTWATCH_PREDICTION_LOG_TIMEOUT", "nan", "got NaN"),
        ("FAULTWATCH_PREDICTION_LOG_SYNC", "OFF", "expected NORMAL or FULL"),
        ("FAULTWATCH_BATCHING", "fast", "expected queue or bentoml"),
        ("FAULTWATCH_COLOUR", "blue green", "at most 32 characters"),
        ("FAULTWATCH_ACCESS_LOG", "yes", "expected 0 or 1"),
        ("FAULTWATCH_REALISED_F1_REFRESH", "0", "more than 0"),
        ("FAULTWATCH_CONTAINER_ENGINE", "dokcer", "expected 'podman' or 'docker'"),
        ("FAULTWATCH_DEPLOY_LOCK_WAIT", "soon", "could not convert"),
        ("FAULTWATCH_MAX_LENGTH", "1e5", "invalid literal for int"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_the_rule(name, value, rule):
    with pytest.raises(FaultwatchError) as e:
        settings.get(name, {name: value})
    assert str(e.value).startswith(f"{name}={value!r}: ")
    assert rule in str(e.value)
    assert isinstance(e.value, ValueError)  # callers that caught the old parse error still do


def test_the_service_settings_are_the_tables():
    fields = dataclasses.fields(ServeSettings)
    assert len(fields) == 20
    for f in fields:
        assert f.default == settings.setting(variable(f.name)).default, f.name
        assert "serve.settings" in settings.setting(variable(f.name)).readers
    assert ServeSettings.from_env({}) == ServeSettings()


def test_temporarily_puts_every_variable_back(monkeypatch):
    monkeypatch.setenv("FAULTWATCH_MODEL_TAG", "before:1")
    monkeypatch.delenv("FAULTWATCH_COLOUR", raising=False)
    with pytest.raises(RuntimeError):
        with settings.temporarily({"FAULTWATCH_MODEL_TAG": "x:2", "FAULTWATCH_COLOUR": "green"}):
            assert settings.get("FAULTWATCH_MODEL_TAG") == "x:2"
            assert settings.get("FAULTWATCH_COLOUR") == "green"
            raise RuntimeError
    assert os.environ["FAULTWATCH_MODEL_TAG"] == "before:1"
    assert "FAULTWATCH_COLOUR" not in os.environ
    with pytest.raises(KeyError):
        with settings.temporarily({"FAULTWATCH_UNDECLARED": "1"}):
            pass


# ---------------------------------------------------------------------- faultwatch config
def project(tmp_path: Path, params: str = "") -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "params.yaml").write_text(params)
    return root


def test_config_shows_each_value_and_its_source(tmp_path):
    root = project(tmp_path, "deploy:\n  shadow_timeout_s: 2.5\nmonitor:\n  log: other.sqlite\n")
    env = {
        "FAULTWATCH_BATCH_SIZE": "16",
        "FAULTWATCH_PREDICTION_LOG": "postgresql://u:secret@db:5432/log",
        "WANDB_API_KEY": "k3y",
        "WANDB_MODE": "offline",  # what the CLI sets for every command: the default
        "BENTOML_HOME": str(root / ".bentoml"),
    }
    params = {"deploy": {"shadow_timeout_s": 2.5}, "monitor": {"log": "other.sqlite"}}
    rows = {r.setting.name: r.to_dict() for r in config.effective(root, params, env)}
    assert set(rows) == set(settings.BY_NAME)
    assert (rows["FAULTWATCH_BATCH_SIZE"]["value"], rows["FAULTWATCH_BATCH_SIZE"]["source"]) == (
        16,
        "environment",
    )
    assert (rows["FAULTWATCH_MAX_QUEUE"]["value"], rows["FAULTWATCH_MAX_QUEUE"]["source"]) == (
        2048,
        "default",
    )
    log = rows["FAULTWATCH_PREDICTION_LOG"]
    assert log["value"] == "postgresql://u:***@db:5432/log" and log["source"] == "environment"
    assert log["params"] == {
        "key": "monitor.log",
        "value": "other.sqlite",
        "for": "faultwatch monitor",
    }
    assert rows["WANDB_API_KEY"]["value"] == "***"
    assert rows["WANDB_MODE"]["source"] == "default"
    assert rows["BENTOML_HOME"]["source"] == "default"
    shadow = rows["FAULTWATCH_SHADOW_TIMEOUT_MS"]
    assert (shadow["value"], shadow["source"]) == (2500, "params.yaml deploy.shadow_timeout_s")
    assert rows["FAULTWATCH_ROOT"]["value"] == str(root)
    assert "secret" not in json.dumps(rows) and "k3y" not in json.dumps(rows)


def test_config_exits_1_naming_a_bad_variable(tmp_path, monkeypatch, capsys):
    root = project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("FAULTWATCH_LOG_SIGNALS", "2")
    assert config.cmd_config(argparse.Namespace(json=False)) == 1
    out, err = capsys.readouterr()
    assert "error: FAULTWATCH_LOG_SIGNALS='2': expected a fraction from 0 to 1" in err
    assert re.search(r"^FAULTWATCH_LOG_SIGNALS +2 +\(environment: INVALID\)$", out, re.M), out
    monkeypatch.delenv("FAULTWATCH_LOG_SIGNALS")
    assert config.cmd_config(argparse.Namespace(json=True)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["FAULTWATCH_LOG_SIGNALS"]["source"] == "default"


def test_faultwatch_config_on_the_command_line(tmp_path):
    root = project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAULTWATCH_", "BENTOML"))}
    env["FAULTWATCH_MAX_QUEUE"] = "512"

    def fw(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "faultwatch", "config", *args]
        return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=120)

    shown = fw()
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^FAULTWATCH_MAX_QUEUE +512 +\(environment\)$", shown.stdout, re.M)
    assert re.search(r"^FAULTWATCH_BATCH_SIZE +64 +\(default\)$", shown.stdout, re.M)
    assert re.search(r"^BENTOML_HOME +\S+/proj/\.bentoml +\(default\)$", shown.stdout, re.M)
    as_json = json.loads(fw("--json").stdout)
    assert as_json["FAULTWATCH_MAX_QUEUE"]["source"] == "environment"
    env["FAULTWATCH_BATCHING"] = "fast"
    bad = fw()
    assert bad.returncode == 1
    assert "FAULTWATCH_BATCHING='fast': expected queue or bentoml" in bad.stderr
