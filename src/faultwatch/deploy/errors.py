"""What a deploy operation refuses, one class per kind that a caller may need to tell apart.

Every one is a DeployError (a FaultwatchError: the CLI prints the message and exits 1) raised
before the operation changed anything, unless its docstring says otherwise. A gate that says no
(a failed smoke test, a canary's analysis) is not an error: it is a result
(faultwatch.deploy.results), with its figures.
"""

from __future__ import annotations

from faultwatch.errors import FaultwatchError


class DeployError(FaultwatchError):
    """A deploy command that cannot do what it was asked; the state is unchanged."""


class RouterError(FaultwatchError):
    """The router could not be started, reached or changed."""


class BadStateFile(DeployError):
    """The deployment's state file cannot be read."""


class LockBusy(DeployError):
    """Another deploy command held the lock for longer than FAULTWATCH_DEPLOY_LOCK_WAIT."""


class NothingDeployed(DeployError):
    """No router and live colour run here (`deploy up` first)."""


class AlreadyUp(DeployError):
    """`deploy up` of another version (or runtime) while a deployment runs."""


class PortTaken(DeployError):
    """The router's port is held by another program; nothing was started."""


class SmokeTestFailed(DeployError):
    """`deploy up`: the first colour failed its smoke test; nothing is left running."""


class VersionUnavailable(DeployError):
    """The registry names no such version, or its model is not in the store."""


class StandbyBusy(DeployError):
    """The standby colour takes traffic (a canary): it cannot be replaced now."""


class StandbyNotReady(DeployError):
    """Nothing is staged, or the staged colour failed its smoke test or stopped."""


class NothingToRollBack(DeployError):
    """The standby colour does not run, or never passed its smoke test."""


class TooLittleTraffic(DeployError):
    """A gradual canary whose first step could not get deploy.min_requests answers."""
