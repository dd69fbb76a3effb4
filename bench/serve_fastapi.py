"""The baseline of bench/serve.py: a plain FastAPI endpoint around the same model.

What a user would write instead of the BentoML service: one sync endpoint, the same pydantic
schema and the same prediction-log write, torch with one thread, run by uvicorn with one worker:

    python bench/serve_fastapi.py MODEL_DIR PORT LOG_PATH
"""

# no `from __future__ import annotations`: FastAPI resolves the annotations at runtime
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from faultwatch.model.io import load_model
from faultwatch.serve.predlog import InputSummary, LoggedPrediction, open_log
from faultwatch.serve.schema import Prediction, ServingLimits, signal_type
from faultwatch.serve.store import THRESHOLD_FILE, read_threshold

SignalValues = signal_type(ServingLimits())


class PredictRequest(BaseModel):
    signal: SignalValues


def create_app(model_dir: Path, log_path: Path) -> FastAPI:
    torch.set_num_threads(1)
    model = load_model(model_dir)
    threshold = read_threshold(model_dir) if (model_dir / THRESHOLD_FILE).exists() else 0.5
    log = open_log(log_path)
    app = FastAPI()

    @app.post("/predict")
    def predict(req: PredictRequest) -> Prediction:
        t0 = time.perf_counter()
        x = np.asarray(req.signal)
        p = float(model.predict_proba([x])[0])
        fault = p >= threshold
        label = "fault" if fault else "healthy"
        latency = (time.perf_counter() - t0) * 1e3
        summary = InputSummary.of(x)
        pid = uuid.uuid4().hex  # as the service does: one id per answer, logged with it
        log.append(
            [
                LoggedPrediction(
                    "predict", "bench", summary, p, label, fault, threshold, latency, 1, pid
                )
            ]
        )
        return Prediction(
            probability=p,
            label=label,
            is_fault=fault,
            threshold=threshold,
            model_version="bench",
            prediction_id=pid,
        )

    @app.get("/readyz")
    def readyz() -> str:
        return "ok"

    return app


if __name__ == "__main__":
    model_dir, port, log_path = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(
        create_app(model_dir, log_path),
        host="127.0.0.1",
        port=port,
        workers=1,
        access_log=False,
        log_level="warning",
    )
