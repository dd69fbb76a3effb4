"""What the retraining-loop tests share: the CLI as a person types it (a git identity for the
commits `retrain` makes; every raw signal logged, so production signals can be labelled) and
the deploy params of a tiny canary."""

from __future__ import annotations

import functools

from . import cli

GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
# tiny canary: two steps of 3 s; the analysis limits are wide (on two shared cores a p99 or a
# fault rate over a dozen answers is noise: tests/test_deploy.py checks the analysis itself)
DEPLOY = {
    "min_requests": 5,
    "canary_interval_s": 3,
    "canary_steps": [50, 100],
    "ready_timeout_s": 120,
    "max_p99_ratio": 20.0,
    "p99_slack_ms": 500,
    "max_fault_rate_delta": 0.5,
}

# `fw(root, *args)`: `faultwatch ARGS` as a person types it, in the project; the servers that
# deploy starts log every raw signal (FAULTWATCH_LOG_SIGNALS), so production signals can be
# labelled
fw = functools.partial(cli.fw, **GIT_ID, FAULTWATCH_LOG_SIGNALS="1")
