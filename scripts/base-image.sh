#!/usr/bin/env bash
# Make a Debian base image locally, for a machine that reaches Debian's package mirror but no image
# registry: debootstrap a minimal bookworm root with Python 3.11, then `podman import` it.
#   ./scripts/base-image.sh [TAG]      (default localhost/zoo-base:bookworm; needs root, debootstrap, podman)
# Then: ./scripts/image.sh, which builds the Dockerfile FROM that image (--build-arg BASE=TAG).
# Not part of the test suite.
set -euo pipefail
TAG="${1:-localhost/zoo-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ENGINE="${ENGINE:-podman}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "base-image: debootstrap bookworm from $MIRROR into $work/root..." >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/root" "$MIRROR" >&2
chroot "$work/root" apt-get clean
rm -rf "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/*.bin
echo "base-image: importing it as $TAG..." >&2
tar -C "$work/root" -c . | "$ENGINE" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG" >&2
"$ENGINE" image inspect --format '{{.Id}} {{.Size}}' "$TAG"
