"""The two model families side by side (issue 24): the CNN against the classical model (the
evaluate stage's random forest, faultwatch.model.classical), on the same splits, trained,
scored and served by the project's own code, in one run.

For each data set: the prepare stage's splits (faultwatch.data.prepare.prepare) and the augment
stage's training split, then `train_family` once per family (so both models exist; `best`
would keep only the winner), then on the test split each family's F1 (at the threshold chosen
on validation, as the evaluate stage does) and PR-AUC, with its training time; then both
models in one BentoML store, served by `bentoml serve` at once (one worker, one torch thread
each) and measured in interleaved rounds: `/predict` p50 and requests/s at 1 and 32 clients.

    .venv/bin/python bench/families.py [--sets bundled:PLAID=9,bundled:JapaneseVowels=1]
        [--rounds 2] [--duration 5]

The bundled set trains with params.yaml's `train` section (the CNN as the pipeline trains
it); a set of short signals (JapaneseVowels: 12 channels of 7 to 29 samples) with
`train.length` 32 and the rest as params.yaml. Training times are wall-clock on this
machine; the CNN's includes Lightning's per-epoch validation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from serve import BIN, load, median_of, rss_mib, start_server, stop  # noqa: E402

SHORT = {"length": 32}  # train overrides for sets of short signals (a few dozen samples)


def prepared_project(root: Path, source: str, positive: str) -> tuple[dict, dict]:
    """data/prepared and data/augmented under `root` for `source`; returns (params, summary)."""
    from faultwatch import augment
    from faultwatch.data.params import DataParams, SplitParams
    from faultwatch.data.prepare import prepare

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = {**params["data"], "source": source, "positive_label": positive, "min_length": 4}
    summary = prepare(DataParams(**data), SplitParams(**params["split"]), root)
    a = augment.AugmentParams(**params["augment"])
    before = augment.read_train(root / "data" / "prepared")
    augment.write_augmented(augment.augment_train(before, a), root / "data" / "augmented")
    return params, summary


def train_both(root: Path, params: dict, short: bool) -> dict[str, dict]:
    """Each family trained into models/<family>; its decision record (training time)."""
    from faultwatch.model.params import TrainParams
    from faultwatch.train.family import train_family

    out = {}
    for family in ("cnn", "classical"):
        train = {**params["train"], **(SHORT if short else {}), "family": family,
                 "model_dir": f"models/{family}", "report_dir": f"reports/{family}",
                 "checkpoint_root": str(root / "checkpoints"), "wandb": False,
                 "accelerator": "cpu"}  # fmt: skip
        run = train_family(TrainParams(**train), root)
        out[family] = {"dir": run.model_dir, "train_s": run.decision["train_seconds"][family]}
    return out


def test_scores(root: Path, model_dir: Path) -> dict[str, float]:
    """F1 at the validation-chosen threshold and PR-AUC, on test: the evaluate stage's code."""
    from faultwatch import evaluate as ev
    from faultwatch.model.io import load_model

    val, test = (ev.load_split(root / "data" / "prepared", s) for s in ("val", "test"))
    model = load_model(model_dir)
    p_val, p_test = (model.predict_proba(list(s["values"])) for s in (val, test))
    scores = ev.evaluate_scores(val.y, p_val, test.y, p_test)
    return {"f1": scores["test"]["f1"], "pr_auc": scores["test"]["pr_auc"],
            "threshold": scores["threshold"]}  # fmt: skip


def serve_both(root: Path, models: dict[str, dict], rounds: int, duration: float) -> dict:
    """Both families' models served at once, measured in interleaved rounds."""
    from faultwatch.evaluate import load_split
    from faultwatch.serve.store import import_model

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "FAULTWATCH_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    test = load_split(root / "data" / "prepared", "test")
    bodies = [json.dumps({"signal": v.tolist()}).encode() for v in test["values"]]
    if test.attrs.get("channels"):
        names = test.attrs["channels"]
        bodies = [json.dumps({"channels": dict(zip(names, v.tolist(), strict=True))}).encode()
                  for v in test["values"]]  # fmt: skip
    cmd = [str(BIN / "bentoml"), "serve", "faultwatch.serve.service:FaultDetector",
           "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    servers = {}
    try:
        for family, m in models.items():
            lengths = [len(v) if v.ndim == 1 else v.shape[-1] for v in test["values"]]
            schema = {"input_schema": {"min_length": 2, "max_length": max(lengths) * 4}}
            tag = import_model(m["dir"], 0.5, {"source": "bench"}, schema)
            servers[family] = start_server(
                cmd, {**env, "FAULTWATCH_MODEL_TAG": str(tag),
                      "FAULTWATCH_PREDICTION_LOG": str(root / f"{family}.sqlite")},
            )  # fmt: skip
        runs: dict[tuple[str, int], list[dict]] = {}
        for k in range(rounds):
            order = list(servers) if k % 2 == 0 else list(servers)[::-1]
            for family in order:
                proc, port = servers[family]
                for c in (1, 32):
                    url = f"http://127.0.0.1:{port}/predict"
                    r = asyncio.run(load(url, bodies, c, duration, proc.pid))
                    runs.setdefault((family, c), []).append(r)
                    print(f"  {family} c={c}: {r['rps']:.0f} req/s {r['statuses']}", flush=True)
        memory = {f: rss_mib(p.pid)[1] for f, (p, _) in servers.items()}
    finally:
        for proc, _ in servers.values():
            stop(proc)
    return {"runs": {k: median_of(v) for k, v in runs.items()}, "rss_mib": memory}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="bundled:PLAID=9,bundled:JapaneseVowels=1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    # one store for the run, set before BentoML is imported (it reads BENTOML_HOME once)
    store = tempfile.mkdtemp(prefix="faultwatch-families-store-")
    os.environ["BENTOML_HOME"] = store
    results = {}
    for spec in args.sets.split(","):
        source, positive = spec.split("=")
        with tempfile.TemporaryDirectory(prefix="faultwatch-families-") as tmp:
            root = Path(tmp)
            print(f"== {source} (fault class {positive})", flush=True)
            params, summary = prepared_project(root, source, positive)
            short = source != params["data"]["source"]
            models = train_both(root, params, short)
            scores = {f: test_scores(root, m["dir"]) for f, m in models.items()}
            served = serve_both(root, models, args.rounds, args.duration)
            results[source] = {"splits": summary, "models": models, "scores": scores,
                               "served": served}  # fmt: skip
    report(results)
    return 0


def report(results: dict) -> None:
    print("\n| data set | family | test F1 | test PR-AUC | training s | p50 ms (1 client) "
          "| req/s (1) | req/s (32) | server RSS MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for source, r in results.items():
        for family in ("cnn", "classical"):
            s, runs = r["scores"][family], r["served"]["runs"]
            print(
                f"| {source} | {family} | {s['f1']:.3f} | {s['pr_auc']:.3f} | "
                f"{r['models'][family]['train_s']:.1f} | {runs[(family, 1)]['p50_ms']:.2f} | "
                f"{runs[(family, 1)]['rps']:.0f} | {runs[(family, 32)]['rps']:.0f} | "
                f"{r['served']['rss_mib'][family]:.0f} |"
            )
        runs = r["served"]["runs"]
        ratio = {c: runs[("classical", c)]["rps"] / runs[("cnn", c)]["rps"] for c in (1, 32)}
        p50 = runs[("classical", 1)]["p50_ms"] / runs[("cnn", 1)]["p50_ms"]
        print(f"  {source}: classical / cnn requests/s {ratio[1]:.2f} at 1 client, "
              f"{ratio[32]:.2f} at 32; p50 {p50:.2f}x")  # fmt: skip
        splits = r["splits"]
        print(f"  {source}: splits {json.dumps(splits, default=str)[:400]}")


if __name__ == "__main__":
    sys.exit(main())
