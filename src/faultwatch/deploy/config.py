"""What a deployment runs with: params.yaml's `deploy` section, the prediction log both colours
write, the router's configuration and its runtime API."""

from __future__ import annotations

from pathlib import Path

from faultwatch import settings
from faultwatch.deploy import router as rt
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.state import State, state_dir
from faultwatch.params import load_params, section
from faultwatch.paths import display_path
from faultwatch.serve.predlog import resolve_target, show_target


def params(root: Path) -> DeployParams:
    """params.yaml:deploy of the project at `root`."""
    return section("deploy", load_params(root / "params.yaml"))


def prediction_log(root: Path) -> Path | str:
    """The log both colours write: FAULTWATCH_PREDICTION_LOG (a path, made absolute, or a
    postgresql:// URL kept a str), else the serve default. Print it with `shown_log`."""
    value = settings.get("FAULTWATCH_PREDICTION_LOG")  # a Path, a URL's str, or None
    return resolve_target(None if value is None else str(value), root)


def shown_log(target: Path | str, root: Path) -> str:
    """The prediction log for a person: a file relative to the project, a URL masked."""
    return display_path(target, root) if isinstance(target, Path) else show_target(target)


def router_config(root: Path, st: State, p: DeployParams) -> rt.RouterConfig:
    return rt.RouterConfig(
        host=st.host,
        port=st.port or p.port,
        state_dir=state_dir(root),
        buffer_kib=p.router_buffer_kib,
        shadow_max_inflight=p.shadow_max_inflight,
        shadow_timeout_s=p.shadow_timeout_s,
        replicas=st.replicas,
    )


def router_api(root: Path, replicas: int = 1) -> rt.RuntimeAPI:
    """The runtime API of the router of the deployment at `root`, whose colours have
    `replicas` servers each (State.replicas)."""
    return rt.RuntimeAPI(rt.socket_path(state_dir(root)), replicas=replicas)
