#!/usr/bin/env bash
# Build the Debian bookworm + Python 3.11 base image from Debian's packages, for machines that reach
# a Debian package mirror but no container registry (air-gapped users, this project's CI).
#   images/build-base.sh IMAGE_NAME        e.g. mlengine-base:bookworm-python3.11
# With a registry, skip this: the Dockerfile's default BASE_IMAGE is the public python slim image.
# Needs root and mmdebstrap (apt-get install -y mmdebstrap); about a minute.
set -euo pipefail

IMAGE="${1:?usage: $0 IMAGE_NAME}"
SUITE="${MLENGINE_BASE_SUITE:-bookworm}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE: already built"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "build-base: mmdebstrap is not installed (apt-get install -y mmdebstrap)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# minbase: essential packages + apt only; python3-venv for the runtime's venv; the Debian CA
# bundle (not the build machine's) for TLS to object stores. --dpkgopt/--aptopt/--customize-hook
# drop docs and apt lists, which an image never needs.
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$work/rootfs.tar"
# awk reads to the end: an early `exit` would close the pipe under tar, and with pipefail tar's SIGPIPE
# (exit 141) fails the build whenever the status file outgrows the pipe buffer
python_version=$(tar -xOf "$work/rootfs.tar" ./var/lib/dpkg/status \
    | awk '/^Package: python3$/{p=1} p&&/^Version:/&&!v{v=$2} END{print v}')
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=mlengine-base org.opencontainers.image.description=\"Debian $SUITE minbase with python3 $python_version, built by images/build-base.sh\"" \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "base image $IMAGE: built from Debian $SUITE (python3 $python_version), $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
