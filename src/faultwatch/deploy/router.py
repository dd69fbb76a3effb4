"""The router: HAProxy (Debian's 2.6) in front of the blue and the green server, on loopback.

Why HAProxy and not nginx (shared/MEASURED.md, "Deployment router"): every traffic change of a
deployment (switch, canary weight, rollback, shadow on/off, a new address for a colour) goes
through HAProxy's runtime API on a unix socket and applies to the next request, without a
reload. nginx 1.22 can only change its upstreams by reloading, and each reload resets some idle
keep-alive connections (hundreds of failed requests per few dozen reloads under keep-alive
clients) and returns before the new configuration is live. The configuration below is written
once, when the router starts; nothing reloads it.

The backend `live` holds four servers: `blue` and `green` share the traffic by weight (0-100,
the percentages of `faultwatch deploy`), and `blue_b` / `green_b` are the same processes as
backup servers, which take the traffic only when no weighted server is up: when the live
server dies, the other colour answers (if it passed its smoke test; otherwise its backup stays
in maintenance). Health checks on /readyz mark a dead server down, and so does one refused
connection (`observe layer4`); a backup tracks its weighted server's health (`track`), so a dead
colour's backup is down with it. A request refused at connect or answered with nothing is
retried on another server (`retry-on`, `redispatch`): a colour killed under load loses no request.

Replicas (`deploy up --replicas N`): each colour is N servers, `blue`, `blue_2` ... `blue_N`
(backups `blue_b`, `blue_2_b` ...; with N = 1 the configuration is the four servers above, and
with more `option allbackups` lets every replica of the other colour take over). A colour's
weight is set on each of its replicas: both colours have N, so with every replica up the
shares are the percentages. A dead replica's requests go to the servers left, by weight: a
colour with all the traffic keeps it; during a canary the shares shift until the replica is
back. The slots are written once, with the configuration: N is fixed from `up` to `down`.

Shadow: `shadow.lua` copies a live request to the staged colour from a task of its own, so a
slow or hung shadow never holds the live answer (nginx's `mirror` holds the client's
connection until the shadow answers). The copy carries the same X-Request-ID, which the router
sets when the client sent none.
Only /predict and /predict_batch are copied; every path (/feedback included) goes to the live
colours, which share one prediction log, so a label for a prediction that blue answered is
accepted by green.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from faultwatch.deploy import failpoints
from faultwatch.deploy.errors import RouterError as RouterError  # where callers have found it

# pid_alive, project_tags, tagged_pids: the process helpers callers (tests among them) have
# found here; they live in faultwatch.deploy.processes now
from faultwatch.deploy.processes import (  # noqa: F401
    pid_alive,
    project_tags,
    stop_pid,
    tagged_pids,
)
from faultwatch.deploy.state import server_name

Ports = dict[str, int | list[int] | None]  # per colour: its replicas' ports (None: not running)

COLOURS = ("blue", "green")
BACKEND = "live"
MAP_KEY = "shadow"
MAP_FILE = "router.map"  # in the state folder: the shadow's target
SHADOW_OFF = "off"


def haproxy_binary() -> str:
    exe = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if not exe:
        raise RouterError(
            "haproxy not found: the router is Debian's HAProxy; install it with "
            "`apt-get install haproxy` (`make test` does)"
        )
    return exe


# HAProxy 2.6 refuses a `stats socket` path longer than 97 bytes (it binds `<path>.<pid>.tmp`
# and renames it; the kernel's limit is 108 with the NUL)
MAX_SOCKET_PATH = 97


def server_names(colour: str, replicas: int = 1) -> list[str]:
    """The router's weighted servers of `colour`; each has its backup, the name with `_b`."""
    return [server_name(colour, i) for i in range(1, replicas + 1)]


def colour_of(server: str) -> str:
    """The colour of a router server's name (blue_2_b: blue)."""
    return server.split("_", 1)[0]


def _slots(ports: int | list[int] | None, replicas: int) -> list[int | None]:
    """A colour's ports, one per replica slot (None: parked)."""
    given = [ports] if isinstance(ports, int) else list(ports or [])
    return [*given, *[None] * (replicas - len(given))][:replicas]


def socket_path(state_dir: Path) -> Path:
    """The admin socket, in the state folder; a deep project, whose path would pass HAProxy's
    limit, gets one under /tmp named after the state folder."""
    path = state_dir / "router.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path("/tmp") / f"faultwatch-router-{digest}.sock"


@dataclass(frozen=True)
class RouterConfig:
    host: str
    port: int
    state_dir: Path
    buffer_kib: int = 256
    shadow_max_inflight: int = 32
    shadow_timeout_s: float = 10.0
    check_interval_ms: int = 500
    replicas: int = 1  # servers per colour

    @property
    def cfg_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def map_path(self) -> Path:
        return self.state_dir / MAP_FILE

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "haproxy.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "haproxy.log"

    @property
    def sock(self) -> Path:
        return socket_path(self.state_dir)

    def render(self, ports: Ports) -> str:
        lua = resources.files("faultwatch.deploy") / "shadow.lua"
        servers, backups = [], []
        for colour in COLOURS:
            slots = _slots(ports.get(colour), self.replicas)
            for name, port in zip(server_names(colour, self.replicas), slots, strict=True):
                # a colour without a process is parked in maintenance on a placeholder port
                addr = f"127.0.0.1:{port or 9}"
                off = "" if port else " disabled"
                servers.append(f"    server {name} {addr} weight 0 check{off}")
                backups.append(f"    server {name}_b {addr} backup track {name} disabled")
        if self.replicas > 1:  # every replica of the other colour takes the rest, not the first
            servers.insert(0, "    option allbackups")
        servers += backups
        inter = self.check_interval_ms
        return f"""# written by `faultwatch deploy up`; changed only through the runtime API, never reloaded
global
    stats socket {self.sock} mode 600 level admin
    stats timeout 30s
    tune.bufsize {self.buffer_kib * 1024}
    setenv FAULTWATCH_SHADOW_MAX_INFLIGHT {self.shadow_max_inflight}
    setenv FAULTWATCH_SHADOW_TIMEOUT_MS {int(self.shadow_timeout_s * 1000)}
    lua-load {lua}
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # a client has 10 s to send a whole request, headers and the body the router buffers: a
    # slow client (slowloris) holds a connection that long, not 30 s (bench/soak.py)
    timeout http-request 10s
    timeout http-keep-alive 60s
    timeout queue 10s
    # a request refused at connect, or whose server closed without answering, goes to
    # another server (the retried POST needs its body buffered: http-buffer-request)
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response

frontend faultwatch
    bind {self.host}:{self.port}
    option http-buffer-request
    unique-id-format %[uuid()]
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(X-Request-ID) -m found }}
    http-request set-var(txn.rid) req.hdr(X-Request-ID)
    # only predictions are shadowed: a copied /feedback would label a prediction twice
    http-request set-var(txn.shadow_url) str({MAP_KEY}),map({self.map_path}) if METH_POST {{ path /predict /predict_batch }}
    http-request lua.faultwatch_shadow if {{ var(txn.shadow_url) -m beg http }}
    http-response set-header X-Request-ID %[var(txn.rid)]
    http-response set-header X-Faultwatch-Server %[srv_name]
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {inter}ms fastinter {max(inter // 2, 100)}ms downinter {inter}ms rise 2 fall 2
    # a server that refuses a connection is down at once: the retry goes to another one
    default-server observe layer4 error-limit 1 on-error mark-down
{chr(10).join(servers)}
"""


class RuntimeAPI:
    """HAProxy's runtime API over its admin socket: one command per connection. A colour's
    commands apply to each of its `replicas` servers."""

    def __init__(self, sock: Path, timeout_s: float = 5.0, replicas: int = 1):
        self.sock, self.timeout_s, self.replicas = sock, timeout_s, replicas

    def names(self, colour: str) -> list[str]:
        return server_names(colour, self.replicas)

    def __call__(self, command: str) -> str:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout_s)
        try:
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as e:
            raise RouterError(f"router admin socket {self.sock}: {command!r}: {e}") from e
        finally:
            s.close()
        out = b"".join(chunks).decode(errors="replace")
        lowered = out.strip().lower()
        if command.startswith(("set ", "add ", "del ")) and (
            lowered.startswith(("unknown", "no such", "require", "invalid", "can't", "cannot"))
            or "error" in lowered[:40]
        ):
            raise RouterError(f"router refused {command!r}: {out.strip()}")
        if command.startswith("set "):
            failpoints.reach("router")
        return out

    def alive(self) -> bool:
        try:
            self("show info")
            return True
        except RouterError:
            return False

    # ---------------------------------------------------------------- servers
    def set_address(self, colour: str, port: int | list[int]) -> None:
        """The colour's replicas (weighted and backup) on these ports, in order."""
        ports = [port] if isinstance(port, int) else port
        if len(ports) != self.replicas:
            raise RouterError(
                f"{colour}: {len(ports)} ports for the router's {self.replicas} replicas"
            )
        for name, p in zip(self.names(colour), ports, strict=True):
            for server in (name, f"{name}_b"):
                self(f"set server {BACKEND}/{server} addr 127.0.0.1 port {p}")

    def set_weight(self, colour: str, weight: int) -> None:
        """Each replica gets the colour's weight: both colours have as many, so the shares
        are the weights' (see the module docstring)."""
        for name in self.names(colour):
            self(f"set weight {BACKEND}/{name} {int(weight)}")

    def enable(self, colour: str) -> None:
        """Ready, and up at once: every replica's /readyz was checked before this call."""
        for name in self.names(colour):
            self(f"set server {BACKEND}/{name} state ready")
            self(f"set server {BACKEND}/{name} health up")

    def enable_backup(self, colour: str, on: bool) -> None:
        for name in self.names(colour):
            server = f"{BACKEND}/{name}_b"
            if on:  # its health is its weighted server's (`track`)
                self(f"set server {server} state ready")
            else:
                self(f"set server {server} state maint")

    def disable(self, colour: str) -> None:
        self.set_weight(colour, 0)
        self.enable_backup(colour, False)
        for name in self.names(colour):
            self(f"set server {BACKEND}/{name} state maint")

    def shadow(self, url: str | None, map_path: Path) -> None:
        value = url or SHADOW_OFF
        self(f"set map {map_path} {MAP_KEY} {value}")
        map_path.write_text(f"{MAP_KEY} {value}\n")  # what a restarted router starts with

    # ---------------------------------------------------------------- reading
    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers, by server name."""
        text = self("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            r["svname"]: r
            for r in rows
            if r.get("pxname") == BACKEND and r.get("svname") not in ("BACKEND", "FRONTEND")
        }

    def counters(self) -> dict[str, dict[str, int]]:
        """Per colour (its weighted and backup servers together, every replica): answers by
        class, errors, current sessions."""
        stats = self.stats()
        fields = {"2xx": "hrsp_2xx", "4xx": "hrsp_4xx", "5xx": "hrsp_5xx"}
        fields |= {"eresp": "eresp", "econ": "econ", "scur": "scur"}
        out: dict[str, dict[str, int]] = {}
        for colour in COLOURS:
            total = dict.fromkeys(fields, 0)
            for name in self.names(colour):
                for row in (stats.get(name, {}), stats.get(f"{name}_b", {})):
                    for key, column in fields.items():
                        total[key] += int(row.get(column) or 0)
            out[colour] = total
        return out

    def server_status(self) -> dict[str, str]:
        """The router's view of each weighted server, by name: UP, DOWN (its health checks
        fail), MAINT (parked), DRAIN (up with weight 0), and HAProxy's "UP 1/2"-like steps in
        between."""
        return {name: row.get("status", "") for name, row in self.stats().items()}

    def shadow_stats(self) -> dict[str, int]:
        try:
            return json.loads(self("shadow stats"))
        except (ValueError, RouterError):
            return {}


def write_config(cfg: RouterConfig, ports: Ports, shadow_url: str | None) -> str:
    """Write the config and its shadow map, and have HAProxy check them (`haproxy -c`); returns
    the haproxy executable."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.map_path.write_text(f"{MAP_KEY} {shadow_url or SHADOW_OFF}\n")
    cfg.cfg_path.write_text(cfg.render(ports))
    exe = haproxy_binary()
    # no -q: with it HAProxy keeps its alerts, the reason, to itself
    check = subprocess.run([exe, "-c", "-f", str(cfg.cfg_path)], capture_output=True, text=True)
    if check.returncode != 0:
        reason = (check.stderr + check.stdout).strip() or f"exit code {check.returncode}"
        raise RouterError(f"{cfg.cfg_path}: haproxy refused the configuration:\n{reason}")
    return exe


def start(cfg: RouterConfig, ports: Ports, shadow_url: str | None) -> int:
    """Write the config and start HAProxy in the background; returns its pid once its admin
    socket answers."""
    exe = write_config(cfg, ports, shadow_url)
    cfg.sock.unlink(missing_ok=True)
    with open(cfg.log_path, "ab") as log:
        proc = subprocess.Popen(
            [exe, "-db", "-f", str(cfg.cfg_path), "-p", str(cfg.pid_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the CLI, and no terminal's ^C reaches it
        )
    api = RuntimeAPI(cfg.sock)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RouterError(
                f"haproxy exited at start ({proc.returncode}); its log: {cfg.log_path}:\n"
                + cfg.log_path.read_text()[-2000:]
            )
        if cfg.sock.exists() and api.alive():
            return proc.pid
        time.sleep(0.05)
    stop_pid(proc.pid)
    raise RouterError(f"haproxy did not open its admin socket {cfg.sock} within 10 s")
