#!/usr/bin/env bash
# `make images`: the wheelhouse on the host, then the pipeline, trainer and server images.
#   images/build.sh [ROLE...]      default: every role in mlengine.constants.IMAGE_ROLES
# Environment:
#   PYTHON        the project's interpreter (default .venv/bin/python): it names the version and tags
#   BASE_IMAGE    the base to build on; default: the public python slim image if it is present or can
#                 be pulled, otherwise one built from Debian's packages by images/build-base.sh
#   IMAGES_OUT    work folder (default out/images): package source copy, wheelhouse, build context
#   MLENGINE_SRC  the source tree the package wheel is built from (default: this work tree)
# pip runs on the host with the host's pip configuration (index, CA bundle); inside the build pip
# installs from the wheelhouse only (--no-index), so no CA bundle or credential enters any layer.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
OUT="$(realpath -m "${IMAGES_OUT:-out/images}")"
PUBLIC_BASE="python:3.11.10-slim-bookworm"
LOCAL_BASE="mlengine-base:bookworm-python3.11"

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
    echo "images: no Docker engine answers (start one: images/dockerd.sh start)" >&2; exit 2; }

version=$("$PYTHON" -c 'from mlengine.version import __version__; print(__version__)')
roles=("$@")
[ ${#roles[@]} -gt 0 ] || read -r -a roles <<<"$("$PYTHON" -c 'from mlengine.constants import IMAGE_ROLES; print(*IMAGE_ROLES)')"

# --- the base image
if [ -z "${BASE_IMAGE:-}" ]; then
    if docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1 || docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
        BASE_IMAGE="$PUBLIC_BASE"
    else
        echo "images: $PUBLIC_BASE cannot be pulled (no registry reachable): a base from Debian packages instead"
        images/build-base.sh "$LOCAL_BASE"
        BASE_IMAGE="$LOCAL_BASE"
    fi
fi
echo "images: version $version, base $BASE_IMAGE"

# --- the wheelhouse: the package's wheel, then its dependencies at the versions the dev venv tested
started=$SECONDS
src="$OUT/src" context="$OUT/context" wheels="$OUT/context/wheelhouse"
rm -rf "$src" "$wheels" && mkdir -p "$src" "$wheels"
# the files of the source tree (tracked or new, not ignored) minus tests and benchmarks: no .git, no
# caches, no venv; copied so the work tree gets no build/ folder from the wheel build
(
    cd "${MLENGINE_SRC:-.}"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard -- . ':!tests' ':!bench' ':!out' \
            | tar --create --null --files-from=- --ignore-failed-read --warning=no-failed-read 2>/dev/null
    else
        tar --create --exclude=./tests --exclude=./bench --exclude=./out --exclude=./.venv --exclude=./.git .
    fi
) | tar --extract --directory "$src"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
find "$src" -name '*.egg-info' -prune -exec rm -rf {} +
rm -f "$wheels"/kfp_mlengine-*.whl
"$PYTHON" -m pip freeze --exclude-editable >"$OUT/constraints.txt"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$src"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$wheels" --find-links "$wheels" --constraint "$OUT/constraints.txt" \
    "$wheels/kfp_mlengine-$version-py3-none-any.whl"
# tf-keras depends on `tensorflow`, the 570 MB wheel with GPU kernels; tensorflow-cpu (the project's
# dependency) installs the same `tensorflow` module, so the image keeps only the CPU wheel
if ls "$wheels"/tensorflow_cpu-*.whl >/dev/null 2>&1; then rm -f "$wheels"/tensorflow-[0-9]*.whl; fi
echo "images: wheelhouse $(du -sh "$wheels" | cut -f1) in $((SECONDS - started)) s"

# --- the role images (the shared stages are built once and cached)
fingerprint=$("$PYTHON" -m mlengine.pipelines.docker_run "$src")
# the label names where the source can be fetched: a network URL without credentials or `.git`;
# a clone from a local path (as in CI) has no such URL
source_url=$(git config --get remote.origin.url 2>/dev/null | sed -E 's#://[^/@]*@#://#; s#\.git/?$##' \
    | grep -E '^(https?|ssh|git)://|^[^/:]+@[^/:]+:' || true)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
for role in "${roles[@]}"; do
    image=$("$PYTHON" -c "from mlengine.constants import image_for; print(image_for('$role'))")
    started=$SECONDS
    # the build's own output goes to a log, shown when it fails
    if ! docker build --file images/Dockerfile --target "$role" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$version" \
        --build-arg SOURCE="${source_url:-unknown}" --build-arg REVISION="$revision" \
        --label "io.mlengine.source-fingerprint=$fingerprint" \
        --tag "$image" "$context" >"$OUT/build-$role.log" 2>&1; then
        tail -n 40 "$OUT/build-$role.log" >&2
        echo "images: building $image failed (full log: $OUT/build-$role.log)" >&2
        exit 1
    fi
    size=$(docker image inspect -f '{{.Size}}' "$image")
    echo "images: $image built in $((SECONDS - started)) s, $((size / 1000000)) MB"
done

# --- the rehearsal's tools image (moto's S3 server, kserve-storage) on the pipeline image just built:
# downloaded now, so `mlengine rehearse` fetches nothing while it runs
if [[ " ${roles[*]} " == *" pipeline "* ]]; then
    started=$SECONDS
    "$PYTHON" -m mlengine.rehearsal.rehearse
    echo "images: rehearsal tools image in $((SECONDS - started)) s"
fi
