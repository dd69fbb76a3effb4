"""The deployment's processes: a colour started as a process or a container, waited for until
it is ready, stopped whole; found on the host by the tag in its environment; its CPU priority.

Each process a colour starts (the `faultwatch serve` supervisor and BentoML's workers, or a
container's) carries FAULTWATCH_DEPLOY_TAG=<colour>-<random> and FAULTWATCH_DEPLOY_PROJECT=<the
project root>: `deploy down` finds them through /proc even when the state lost them, and stops a
colour by its tag, not its process group (BentoML's workers outlive a killed supervisor). N
replicas (`--replicas N`) are N servers under one tag, told apart by FAULTWATCH_DEPLOY_REPLICA.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from faultwatch.deploy import containers
from faultwatch.deploy.analysis import DeployParams
from faultwatch.deploy.errors import DeployError, RouterError
from faultwatch.deploy.state import Colour, Replica, server_name, state_dir
from faultwatch.paths import bentoml_home
from faultwatch.serve.launch import labeller_tokens

SERVER_MARKER = "faultwatch"  # in the command line of every process deploy starts
ROUTER_MARKER = "haproxy"
TAG_ENV = "FAULTWATCH_DEPLOY_TAG"
PROJECT_ENV = "FAULTWATCH_DEPLOY_PROJECT"  # the project root of the deployment that started it
REPLICA_ENV = "FAULTWATCH_DEPLOY_REPLICA"  # which replica of its colour, from 1
RUNTIMES = ("process", "container")


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port nothing listens on now (the kernel's pick), none of `avoid` (promised, unbound)."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def free_ports(n: int, host: str = "127.0.0.1", avoid: Collection[int] = ()) -> list[int]:
    """`n` different ports nothing listens on now, none of `avoid`."""
    ports: list[int] = []
    for _ in range(n):
        ports.append(free_port(host, [*avoid, *ports]))
    return ports


# ---------------------------------------------------------------------- processes on the host
def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether `pid` runs, and (with `marker`) its command line contains it: a pid from an old
    state file may belong to another process by now."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if Path(f"/proc/{pid}/stat").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return False
        except (OSError, IndexError):
            pass
    return marker is None or marker in cmdline


def _processes() -> Iterator[tuple[int, Path]]:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            yield int(d.name), d


def _environment_of(proc: Path) -> bytes:
    """The environment another process started with (/proc/<pid>/environ), NUL-separated."""
    return (proc / "environ").read_bytes()


def project_tags(root: Path) -> set[str]:
    """The deploy tags of running processes started by this project's deployment."""
    needle = f"{PROJECT_ENV}={root}\0".encode()
    tags = set()
    for pid, d in _processes():
        try:
            env = _environment_of(d)
        except OSError:
            continue
        if needle in env and pid_alive(pid):
            for item in env.split(b"\0"):
                if item.startswith(f"{TAG_ENV}=".encode()):
                    tags.add(item.split(b"=", 1)[1].decode())
    return tags


def routers_of(cfg_path: Path) -> list[int]:
    """HAProxy processes running this config file (one project's router)."""
    found = []
    for pid, d in _processes():
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(cfg_path).encode() in argv and any(b"haproxy" in a for a in argv[:1]):
            found.append(pid)
    return found


def tagged_pids(tag: str, replica: int | None = None) -> list[int]:
    """Processes whose environment holds FAULTWATCH_DEPLOY_TAG=`tag`: a colour's servers and
    all their workers (see the module docstring); with `replica`, that replica's only."""
    needles = [f"{TAG_ENV}={tag}\0".encode()]
    if replica is not None:
        needles.append(f"{REPLICA_ENV}={replica}\0".encode())
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = _environment_of(d)
            if all(n in env for n in needles) and pid_alive(int(d.name)):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def set_low_priority(tag: str, low: bool) -> int:
    """Put every thread of `tag`'s processes in the scheduler's idle class (SCHED_IDLE, nice 19:
    it runs only on CPU time nobody else wants, and any live request's thread preempts it at
    once), or back in the normal class; returns how many threads. With the kernel's autogroup
    scheduling (Debian's default) a server started in a session of its own is weighed against
    the others by its autogroup's nice value, which is set too. Threads started later inherit
    their creator's class."""
    policy, nice = (os.SCHED_IDLE, 19) if low else (os.SCHED_OTHER, 0)
    n = 0
    for pid in tagged_pids(tag) if tag else []:
        try:
            tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
            try:
                Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
            except FileNotFoundError:
                pass  # a kernel without autogroups
            for tid in tids:
                try:
                    if os.sched_getscheduler(tid) != policy:
                        os.sched_setscheduler(tid, policy, os.sched_param(0))
                    if os.getpriority(os.PRIO_PROCESS, tid) != nice:
                        os.setpriority(os.PRIO_PROCESS, tid, nice)
                    n += 1
                except ProcessLookupError:
                    continue
        except PermissionError as e:
            raise RouterError(
                f"cannot set the CPU priority of {tag}'s process {pid} "
                f"({'idle' if low else 'normal'}): {e}; raising a priority needs root or "
                "CAP_SYS_NICE (`deploy.shadow_low_priority: false` leaves it alone)"
            ) from None
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended meanwhile
    return n


def stop_tagged(tag: str, timeout_s: float = 20.0) -> int:
    """SIGTERM every process of `tag`, SIGKILL what is left after `timeout_s`; returns how many
    there were."""
    pids = tagged_pids(tag) if tag else []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while pids and time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return len(pids)
        time.sleep(0.05)
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def stop_pid(pid: int | None, marker: str | None = None, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process group of `pid` (the server and its workers), SIGKILL after
    `timeout_s`; returns whether something was stopped."""
    if not pid_alive(pid, marker):
        return False
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


# ---------------------------------------------------------------------- a colour's server
def replica_alive(c: Colour, r: Replica) -> bool:
    """The replica's supervisor runs (its container, for a container)."""
    if c.container:
        return containers.running(c.container)
    return pid_alive(r.pid, SERVER_MARKER)


def alive(c: Colour | None) -> bool:
    """One of its supervisors at least runs (a worker left behind by a dead supervisor does not
    count; the router's health checks take a dead replica out); a container runs."""
    return c is not None and any(replica_alive(c, r) for r in c.servers)


def every_replica_alive(c: Colour) -> bool:
    return all(replica_alive(c, r) for r in c.servers)


def stop_colour(c: Colour | None) -> None:
    """Every replica's server, gracefully (its supervisor stops its workers), then any worker
    left."""
    if c is None:
        return
    if c.container:
        containers.stop(c.container)
    else:
        for r in c.servers:
            stop_pid(r.pid, SERVER_MARKER)
    stop_tagged(c.tag)


def wait_ready(url: str, c: Colour, timeout_s: float, r: Replica | None = None) -> None:
    """Until `url`/readyz answers 200; DeployError when the server (replica `r`, default the
    first) exits first or time is up."""
    r = r or c.servers[0]
    deadline = time.monotonic() + timeout_s
    log = Path(r.log)
    while time.monotonic() < deadline:
        if not (alive(c) if c.container else pid_alive(r.pid)):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise DeployError(f"the server exited before it was ready; its log {log}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise DeployError(f"{url}/readyz did not answer 200 within {timeout_s:g} s; log: {log}")


def _ready_or_stopped(
    c: Colour,
    p: DeployParams,
    colour: str,
    t0: float,
    progress: Callable[[str], None],
    what: str = "",
) -> None:
    """Wait for every replica's /readyz (they start side by side); stop the colour on any
    failure (also an interrupt)."""
    try:
        for r in c.servers:
            wait_ready(f"http://{p.host}:{r.port}", c, p.ready_timeout_s, r)
    except BaseException:
        stop_colour(c)
        raise
    n = len(c.servers)
    each = f" ({n} replicas)" if n > 1 else ""
    progress(f"  {colour} ready in {time.monotonic() - t0:.1f} s{each}{what}")


def start_colour(
    root: Path,
    colour: str,
    version: str,
    model_tag: str,
    p: DeployParams,
    runtime: str,
    log_target: Path | str,
    progress: Callable[[str], None],
    replicas: int = 1,
    router_port: int = 0,
) -> Colour:
    """Start `colour` serving registry `version` as `replicas` servers on free ports (not the
    router's, maybe unbound yet), logging predictions to `log_target`, wait until all are ready."""
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    tag = f"{colour}-{uuid.uuid4().hex[:12]}"
    if runtime == "container":
        if replicas != 1:
            raise DeployError(f"--replicas {replicas}: containers run one per colour")
        log, port = d / f"{colour}.log", free_port(p.host, [router_port])
        return _start_container(
            root, colour, version, model_tag, p, port, log, tag, log_target, progress
        )
    env = {
        **os.environ,
        TAG_ENV: tag,
        PROJECT_ENV: str(root.resolve()),  # `deploy down` finds it even when the state lost it
        "FAULTWATCH_COLOUR": colour,
        "FAULTWATCH_PREDICTION_LOG": str(log_target),
        "BENTOML_HOME": str(bentoml_home(root).resolve()),
    }
    # the registry version: its bento when one packages the model, else this checkout's
    argv = [sys.executable, "-m", "faultwatch", "serve", version]
    t0 = time.monotonic()
    servers: list[Replica] = []
    c = Colour(version, model_tag, 0, 0, "", time.time(), tag=tag, replicas=servers)
    try:
        for i, port in enumerate(free_ports(replicas, p.host, [router_port]), 1):
            name = server_name(colour, i)
            log = d / f"{name}.log"
            progress(f"  starting {name}: {version} ({model_tag}) on {p.host}:{port} (log {log})")
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [*argv, "--host", p.host, "--port", str(port)],
                    cwd=root,
                    env={**env, REPLICA_ENV: str(i)},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: outlives the CLI, stopped whole
                )
            servers.append(Replica(port, proc.pid, str(log)))
    except BaseException:
        stop_colour(c)
        raise
    c.port, c.pid, c.log = servers[0].port, servers[0].pid, servers[0].log
    _ready_or_stopped(c, p, colour, t0, progress)
    return c


def _labellers_copy(root: Path, tag: str) -> Path | None:
    """A copy of the project's labellers' tokens for one container (its user comes to own the
    copy, never the project's file), in the deployment's folder; None when there is none.
    A labeller added later reaches the containers started after it."""
    source = labeller_tokens(root)
    if not source.is_file():
        return None
    copy = state_dir(root) / f"{tag}.labellers"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(source.read_bytes())
    return copy


def _start_container(
    root: Path,
    colour: str,
    version: str,
    model_tag: str,
    p: DeployParams,
    port: int,
    log: Path,
    tag: str,
    log_target: Path | str,
    progress: Callable[[str], None],
) -> Colour:
    eng, image = containers.image_for(version, model_tag, root)
    name = f"faultwatch-{tag}"
    log.unlink(missing_ok=True)  # the container's log file is its own, one per container
    progress(f"  starting {colour}: {image} ({model_tag}) as container {name} on {p.host}:{port}")
    t0 = time.monotonic()
    env = {TAG_ENV: tag, "FAULTWATCH_COLOUR": colour}
    containers.run(eng, image, name, p.host, port, log_target, log, env, _labellers_copy(root, tag))
    pid = containers.host_pid(eng, name)
    c = Colour(
        version,
        model_tag,
        port,
        pid,
        str(log),
        time.time(),
        tag=tag,
        container=name,
        replicas=[Replica(port, pid, str(log))],
    )
    _ready_or_stopped(c, p, colour, t0, progress, " (container start to /readyz)")
    return c
