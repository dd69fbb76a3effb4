"""`faultwatch simulate-traffic` against a real BentoML server of a crafted model.

The model is gate_project's "detector" (flags the burst every fault signal carries, F1 1.0 on
the split), served by `bentoml serve` with its own prediction log, once for the module. The
drift options are checked on what the server logged (each prediction's input mean and std),
the class mix on what the model answered, the bounds on the requests that arrived.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import run, tool_env
from helpers.gate_project import put_model, split_frame
from helpers.paths import REPO
from helpers.ports import free_port
from helpers.processes import started
from helpers.ready import wait_ready
from helpers.serving import LABELLER, labellers_file, serve_cmd, server_env

from faultwatch.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, prediction log, project root): the detector served on a free port; the project
    holds the test split at data/prepared/test.parquet (simulate-traffic's default)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from faultwatch.serve.store import import_model

    tmp = tmp_path_factory.mktemp("traffic")
    root = tmp / "proj"
    (root / "data/prepared").mkdir(parents=True)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    split = split_frame()
    split.assign(values=split["values"].map(list)).to_parquet(
        root / "data/prepared/test.parquet", index=False
    )
    home = tmp / "bentoml"
    (home / "models").mkdir(parents=True)
    put_model(root, "detector")
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        meta = {"input_schema": {"min_length": 16, "max_length": 2000}}
        tag = str(import_model(root / "models/fault_cnn", 0.5, metadata=meta))
    finally:
        BentoMLContainer.model_store.reset()
    log = tmp / "predictions.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(home, tag, log, FAULTWATCH_LOG_SIGNALS="1")
    with started(serve_cmd(port), REPO, env, tmp / "server.log") as proc:
        wait_ready(url, proc, tmp / "server.log")
        yield url, log, root


def simulate(root: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`faultwatch simulate-traffic ARGS` in this process, from the project."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("BENTOML_HOME", str(root / ".bentoml"))  # main() sets it: restored after
    # the shell of the other tests' commands (conftest.tool_env): the venv on PATH, not under make
    monkeypatch.setenv("PATH", tool_env()["PATH"])
    monkeypatch.delenv("MAKELEVEL", raising=False)
    capsys.readouterr()
    code = main(["simulate-traffic", *args])
    out, err = capsys.readouterr()
    return code, out, err


def logged_since(log: Path, after_id: int) -> list[tuple[int, float, float, int]]:
    """(id, mean, std, is_fault) of the predictions logged after row `after_id`."""
    with sqlite3.connect(log) as conn:
        return conn.execute(
            "SELECT id, mean, std, is_fault FROM predictions WHERE id > ? ORDER BY id",
            (after_id,),
        ).fetchall()


def last_id(log: Path) -> int:
    if not log.exists():
        return 0
    with sqlite3.connect(log) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM predictions").fetchone()[0]


def test_count_bounds_the_requests_and_the_summary_counts_them(served, monkeypatch, capsys):
    url, log, root = served
    before = last_id(log)
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--count", "30", "--rate", "100",
                            "--concurrency", "4", "--json")  # fmt: skip
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    assert summary["sent"] == summary["answered"] == 30 and summary["failed"] == {}
    assert len(logged_since(log, before)) == 30
    # the split's order, cycled: the detector flags the 12 faults of its 52 signals
    n_fault = int(split_frame()["y"].head(30).sum())
    assert summary["faults_predicted"] == n_fault


def test_duration_bounds_the_run_at_the_rate(served, monkeypatch, capsys):
    url, log, root = served
    before = last_id(log)
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--rate", "50",
                            "--duration", "1.5", "--json")  # fmt: skip
    summary = json.loads(out[out.index("{") :])
    assert code == 0 and summary["sent"] == summary["answered"]
    # requests due at 0, 0.02, ... 1.48 s: 75, more than the split's 52 signals: --duration
    # alone cycles over them (the rate paces the run; no timing assertion beyond)
    assert summary["sent"] == 75 and len(logged_since(log, before)) == 75


def test_offset_and_scale_move_the_logged_inputs_by_what_was_asked(served, monkeypatch, capsys):
    url, log, root = served
    values = [np.asarray(v, dtype=float) for v in split_frame()["values"]]
    n = len(values)
    before = last_id(log)
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--offset", "2", "--rate", "200")
    assert code == 0 and f"sent {n} requests" in out and "drift: offset +2 std" in out
    # the last line: what was produced, where, and the command that looks at this window
    last = out.splitlines()[-1]
    assert last.startswith(
        f"done: {n} of {n} requests answered ({n} signals, 0 labels posted) in the prediction "
        f"log of the service behind {url}; next: faultwatch monitor --since "
    ), last
    since = float(last.split("--since ")[1].split()[0])
    assert time.time() - 60 < since <= time.time()
    rows = logged_since(log, before)
    expected = sorted(v.mean() + 2 * v.std() for v in values)
    assert np.allclose(sorted(r[1] for r in rows), expected, atol=1e-6)
    # the mean moved by 2 std of each signal; its spread did not
    assert np.allclose(sorted(r[2] for r in rows), sorted(v.std() for v in values), atol=1e-6)

    before = last_id(log)
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--scale", "3", "--rate", "200")
    rows = logged_since(log, before)
    assert code == 0 and len(rows) == n
    assert np.allclose(sorted(r[2] for r in rows), sorted(3 * v.std() for v in values), atol=1e-6)


def test_body_npy_sends_binary_requests_the_service_logs_alike(served, monkeypatch, capsys):
    """`--body npy`: every request an .npy array of its signals, the same rows logged as for
    JSON; a file whose signals have several lengths cannot be sent several to a request."""
    url, log, root = served
    values = [np.asarray(v, dtype=float) for v in split_frame()["values"]]
    before = last_id(log)
    code, out, err = simulate(root, monkeypatch, capsys, url, "--body", "npy", "--rate", "200",
                              "--json")  # fmt: skip
    assert "{" in out, (code, out, err)
    summary = json.loads(out[out.index("{") :])
    assert code == 0 and summary["failed"] == {} and summary["signals_answered"] == 52
    rows = logged_since(log, before)
    assert len(rows) == 52
    assert np.allclose(sorted(r[1] for r in rows), sorted(v.mean() for v in values), atol=1e-9)
    ragged = root / "ragged.parquet"
    pd.DataFrame({"values": [values[0][:40], values[1]], "y": [0, 1]}).to_parquet(ragged)
    code, out, err = simulate(root, monkeypatch, capsys, url, "--body", "npy", "--batch-size",
                              "2", "--signals", str(ragged))  # fmt: skip
    assert code == 1 and "--body npy sends a request's signals as one array" in err, err


def test_progress_is_reported_while_the_traffic_runs(served):
    """A long replay says how far it got every `every_s` seconds (the CLI: every 10 s)."""
    from faultwatch import traffic

    url, _, root = served
    signals = traffic.read_signals_file(root / "data/prepared/test.parquet")
    seen: list[tuple[int, float]] = []
    plan = traffic.Plan(url=url, rate=40, count=40, concurrency=2)
    summary = traffic.replay(
        plan,
        signals,
        traffic.Drift(),
        on_progress=lambda s, t: seen.append((s.sent, t)),
        every_s=0.2,
    )
    assert summary.sent == 40 and 2 <= len(seen) <= 10, seen  # about 1 s of traffic
    assert [n for n, _ in seen] == sorted(n for n, _ in seen) and seen[0][0] < 40
    assert all(0.2 <= t < 5 for _, t in seen), seen


def test_noise_and_time_shift_change_the_signals_they_should(served, monkeypatch, capsys):
    url, log, root = served
    values = [np.asarray(v, dtype=float) for v in split_frame()["values"]]
    before = last_id(log)
    code, _, _ = simulate(root, monkeypatch, capsys, url, "--noise", "1", "--rate", "200")
    stds = np.array(sorted(r[2] for r in logged_since(log, before)))
    orig = np.array(sorted(v.std() for v in values))
    assert code == 0 and 1.2 < float(np.median(stds / orig)) < 1.7  # about sqrt(2)
    # a circular shift keeps every sample: mean and std as they were, the faults still found
    before = last_id(log)
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--time-shift", "0.25",
                            "--rate", "200", "--json")  # fmt: skip
    rows = logged_since(log, before)
    assert code == 0 and np.allclose(sorted(r[2] for r in rows), orig, atol=1e-6)
    assert json.loads(out[out.index("{") :])["faults_predicted"] == 12


@pytest.mark.parametrize("share, faults", [(1.0, 52), (0.0, 0), (0.5, 26)])
def test_fault_share_resamples_the_class_mix(served, monkeypatch, capsys, share, faults):
    url, _, root = served
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--fault-share", str(share),
                            "--rate", "200", "--json")  # fmt: skip
    summary = json.loads(out[out.index("{") :])
    assert code == 0 and summary["answered"] == 52
    assert summary["faults_predicted"] == faults  # the detector is right on every signal


def test_labels_are_posted_after_the_delay(served, monkeypatch, capsys):
    url, log, root = served
    # the server's labellers (helpers.serving): simulate-traffic takes the token of --labeller
    monkeypatch.setenv("FAULTWATCH_LABELLER_TOKENS", str(labellers_file()))
    code, out, _ = simulate(root, monkeypatch, capsys, url, "--count", "20", "--rate", "100",
                            "--batch-size", "2", "--label-delay", "0.5", "--labeller", LABELLER,
                            "--json")  # fmt: skip
    summary = json.loads(out[out.index("{") :])
    assert code == 0 and summary["signals_answered"] == 40
    assert summary["labels_posted"] == 40 and summary["labels_failed"] == {}, summary
    from faultwatch.serve.predlog import read_predictions

    labelled = read_predictions(str(log)).dropna(subset=["true_label"])
    assert len(labelled) >= 40
    assert set(labelled["true_label"]) <= {"healthy", "fault"}


def test_bad_flags_are_refused_naming_the_flag_and_the_rule(served):
    url, _, root = served
    for args, said in [
        (["--rate", "0"], "argument --rate: '0': must be a number > 0"),
        (["--count", "-3"], "argument --count: '-3': must be a whole number >= 1"),
        (["--fault-share", "1.5"], "argument --fault-share: '1.5': must be a share from 0 to 1"),
        (["--time-shift", "1"], "argument --time-shift: '1': must be a fraction between -1 and 1"),
        (["--noise", "nan"], "argument --noise: 'nan': must be a number >= 0"),
        (["--concurrency", "0"], "argument --concurrency: '0': must be a whole number from 1"),
    ]:
        r = run(["faultwatch", "simulate-traffic", url, *args], root, check=False)
        assert r.returncode == 2 and said in r.stderr, (args, r.stderr)
    r = run(["faultwatch", "simulate-traffic", "localhost:3000"], root, check=False)
    assert r.returncode == 1 and "expected http://HOST:PORT" in r.stderr
    r = run(["faultwatch", "simulate-traffic", url, "--signals", "nope.parquet"], root, check=False)
    assert r.returncode == 1 and "nope.parquet: no such file" in r.stderr
    no_labels = root / "unlabelled.parquet"
    split_frame()[["values"]].assign(values=lambda d: d["values"].map(list)).to_parquet(no_labels)
    r = run(["faultwatch", "simulate-traffic", url, "--signals", str(no_labels),
             "--fault-share", "0.5"], root, check=False)  # fmt: skip
    assert r.returncode == 1 and "--fault-share needs the true classes" in r.stderr


def test_nothing_answered_is_a_failure(served, monkeypatch, capsys):
    _, _, root = served
    code, out, err = simulate(root, monkeypatch, capsys, f"http://127.0.0.1:{free_port()}",
                              "--count", "3", "--rate", "50")  # fmt: skip
    assert code == 1 and "failed 3 (no answer: 3)" in out and "no request was answered" in err


# ---------------------------------------------------------------- multichannel signals
def test_drift_applies_to_every_channel_or_to_the_one_named():
    """Each channel is drifted by its own std; `channel` leaves the others as they were; the
    time shift rolls every drifted channel alike."""
    from faultwatch.traffic import Drift, TrafficError, drift_signal

    rng = np.random.default_rng(0)
    x = np.stack([np.sin(np.linspace(0, 6, 50)), 10 * np.cos(np.linspace(0, 6, 50))])
    names = ("x", "z")
    every = drift_signal(x, Drift(offset=1.0), rng, names)
    np.testing.assert_allclose(every.mean(axis=1) - x.mean(axis=1), x.std(axis=1))
    only_z = drift_signal(x, Drift(offset=1.0, time_shift=0.1, channel="z"), rng, names)
    np.testing.assert_array_equal(only_z[0], x[0])
    np.testing.assert_allclose(only_z[1], np.roll(x[1], 5) + x[1].std())
    assert Drift(offset=1.0, channel="z").describe() == "offset +1 std on channel z"
    assert Drift(fault_share=0.5).describe() == "fault share 50%"
    with pytest.raises(TrafficError, match=r"--drift-channel w: .*channels are x, z"):
        Drift(offset=1.0, channel="w").check_channel(names)
    with pytest.raises(TrafficError, match=r"--drift-channel z: .*they are univariate"):
        Drift(offset=1.0, channel="z").check_channel(None)


def test_a_multichannel_split_is_read_with_its_channels(tmp_path):
    from helpers.projects import prepare_three_axis
    from helpers.signals import AXES

    from faultwatch.traffic import read_signals_file

    prepare_three_axis(tmp_path)
    signals = read_signals_file(tmp_path / "data/prepared/test.parquet")
    assert signals.channels == AXES
    assert all(v.shape[0] == 3 for v in signals.values)
    assert set(signals.labels) == {"fault", "healthy"}
