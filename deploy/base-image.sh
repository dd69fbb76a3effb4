#!/usr/bin/env bash
# The base image of faultwatch's container (bentofile.yaml: docker.base_image), built from
# Debian's packages, so no image registry is needed: debootstrap's minimal bookworm with
# Python 3.11, CA certificates and uv (BentoML's Dockerfile installs the bento's packages with
# uv; Debian's pip refuses `pip install uv` under PEP 668), imported as one layer.
#
#   sudo deploy/base-image.sh [IMAGE]      # default localhost/faultwatch-base:bookworm
#
# Needs root (debootstrap), debootstrap, and podman or docker. `faultwatch image build` runs it
# when the image is missing. The CA bundle of this machine goes into the image, so a build
# behind a TLS-inspecting proxy trusts what the machine trusts.
set -euo pipefail
IMAGE="${1:-localhost/faultwatch-base:bookworm}"
SUITE="${FAULTWATCH_BASE_SUITE:-bookworm}"
MIRROR="${FAULTWATCH_BASE_MIRROR:-http://deb.debian.org/debian}"
here="$(cd "$(dirname "$0")/.." && pwd)"

fail() { echo "deploy/base-image.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "debootstrap needs root: sudo $0 $*"
command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install debootstrap"
if command -v podman >/dev/null; then engine=podman
elif command -v docker >/dev/null; then engine=docker
else fail "neither podman nor docker is installed: apt-get install podman (or install Docker)"; fi
uv="$(command -v uv || true)"
[ -n "$uv" ] || uv="$here/.venv/bin/uv"
[ -x "$uv" ] || fail "uv not found on PATH nor in $here/.venv/bin (make setup installs it)"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/faultwatch-base.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
echo "[1/3] debootstrap $SUITE (minbase, python3) into $rootfs"
debootstrap --variant=minbase --include=python3,ca-certificates "$SUITE" "$rootfs" "$MIRROR" \
  > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; fail "debootstrap failed"; }
rm -f "$rootfs.log"
echo "[2/3] uv $("$uv" --version | cut -d' ' -f2), this machine's CA bundle"
install -m 0755 "$uv" "$rootfs/usr/local/bin/uv"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
  "$rootfs"/usr/share/man
echo "[3/3] $engine import -> $IMAGE"
# uv trusts its own list of CAs unless told to use a bundle: the system's, which holds this
# machine's (a TLS-inspecting proxy's CA included)
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["/bin/bash"]' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL org.opencontainers.image.description=faultwatch base: Debian $SUITE minbase, Python 3, uv" \
  - "$IMAGE" > "$rootfs.log" 2>&1 || { cat "$rootfs.log" >&2; rm -f "$rootfs.log"; fail "$engine import failed"; }
rm -f "$rootfs.log"
echo "built $IMAGE ($("$engine" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
