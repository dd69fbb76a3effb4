"""`faultwatch simulate-traffic`: replay signals to a running service or router, optionally
drifted, and post their true labels to /feedback after a delay.

Why: the monitor, the delayed-label figures and the retraining loop need production-like
traffic to be tried on, and a drift that is known (how much, on which signals) to be checked
against. The signals come from a Parquet file in the prepared layout (`values`, and `y` or
`label` for the true class; default: the test split), are sent to `/predict_batch`, and
their answers' `prediction_id`s are labelled later, as a maintenance technician would.

Drift, applied to each signal in this order (every option is off by default):
- `time_shift` f: the signal is rolled circularly by round(f * length) samples (-1 < f < 1);
- `scale` k: every sample multiplied by k (a sensor's gain changed);
- `offset` d: d times the signal's own standard deviation (before any drift) added to every
  sample: units of each signal's std, so one figure means the same on signals of any
  amplitude, and the logged mean moves by d std;
- `noise` s: gaussian noise of standard deviation s times the signal's std;
- `fault_share` p: another class mix: the signals are resampled (with replacement, seeded) so
  that faults make up p of them.

Multichannel signals (a prepared multichannel split: (channels, samples) each) are sent channels
first; each channel is drifted on its own (its own std), every channel, or only `channel` (the
CLI's `--drift-channel NAME`), so that a drift injected into one channel can be looked for on
that channel alone.

Sending is open loop: request i is due at start + i / rate, `concurrency` keep-alive clients
take the requests in turn (a slow server makes requests late, never more than `concurrency`
at once). It stops after `count` requests or `duration` seconds, whichever comes first, then
waits for the labels still due (each `label_delay` s after its answer).
"""

from faultwatch.traffic.send import FEEDBACK_BATCH, Plan, Summary, replay
from faultwatch.traffic.signals import (
    HEALTHY_LABEL,
    Drift,
    Signals,
    TrafficError,
    drift_signal,
    read_signals_file,
    resample_share,
)

__all__ = [
    "FEEDBACK_BATCH",
    "HEALTHY_LABEL",
    "Drift",
    "Plan",
    "Signals",
    "Summary",
    "TrafficError",
    "drift_signal",
    "read_signals_file",
    "replay",
    "resample_share",
]
