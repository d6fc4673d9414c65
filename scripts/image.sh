#!/usr/bin/env bash
# Build the server image (Dockerfile) and run it for real: zoo --version, `zoo serve` until its health check
# passes, /readyz and /docs answered from inside, and `zoo demo --no-serve` (a conversion with parity) in it.
#   ./scripts/image.sh                 (podman; BASE=localhost/zoo-base:bookworm from ./scripts/base-image.sh)
# Environment: ENGINE (podman), TAG (localhost/zoo:dev), BASE, EXTRAS, TORCH_INDEX_URL, TORCH_WHEEL_DIR (a host
# folder holding a torch wheel), HOST_CA (a CA bundle for a TLS-intercepting proxy), PORT (18000).
# Not part of the test suite: it downloads gigabytes and takes many minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${ENGINE:-podman}"
TAG="${TAG:-localhost/zoo:dev}"
BASE="${BASE:-localhost/zoo-base:bookworm}"
PORT="${PORT:-18000}"
# Where podman runs inside another container: crun refuses hybrid cgroups (runc does not), and the default
# ulimits exceed the hard limits here. Override with ENGINE_FLAGS / RUN_FLAGS.
read -r -a engine_flags <<< "${ENGINE_FLAGS:---runtime runc}"
read -r -a run_flags <<< "${RUN_FLAGS:---ulimit nofile=4096:4096 --ulimit nproc=4096:4096}"
args=(--build-arg "BASE=$BASE")
[ -n "${EXTRAS:-}" ] && args+=(--build-arg "EXTRAS=$EXTRAS")
[ -n "${TORCH_INDEX_URL+x}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [ -n "${TORCH_WHEEL_DIR:-}" ]; then
    args+=(-v "$TORCH_WHEEL_DIR:/wheels:ro" --build-arg TORCH_WHEEL_DIR=/wheels)
fi
if [ -n "${HOST_CA:-}" ]; then
    args+=(-v "$HOST_CA:/etc/ssl/certs/zoo-build-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/zoo-build-ca.crt)
fi
echo "image: building $TAG from $BASE..." >&2
start=$(date +%s)
fmt=()
[ "$(basename "$ENGINE")" = podman ] && fmt=(--format docker)  # the OCI format has no HEALTHCHECK: podman drops it
"$ENGINE" "${engine_flags[@]}" build "${fmt[@]}" "${run_flags[@]}" "${args[@]}" -t "$TAG" .
echo "image: built in $(( $(date +%s) - start )) s: $("$ENGINE" image inspect --format '{{.Size}}' "$TAG") bytes" >&2

run() { "$ENGINE" "${engine_flags[@]}" run --rm "${run_flags[@]}" "$@"; }
run "$TAG" --version
echo "image: user $(run --entrypoint id "$TAG" -u)" >&2

name="zoo-image-check-$$"
"$ENGINE" "${engine_flags[@]}" run -d --name "$name" "${run_flags[@]}" --network host -e "ZOO_PORT=$PORT" "$TAG" >/dev/null
trap '"$ENGINE" "${engine_flags[@]}" rm -f "$name" >/dev/null 2>&1 || true' EXIT INT TERM
for _ in $(seq 1 120); do
    if "$ENGINE" "${engine_flags[@]}" healthcheck run "$name" >/dev/null 2>&1; then break; fi
    sleep 2
done
"$ENGINE" "${engine_flags[@]}" healthcheck run "$name" && echo "image: health check passed" >&2
curl -fsS "http://127.0.0.1:$PORT/readyz"; echo
curl -fsS "http://127.0.0.1:$PORT/docs" | grep -q '/docs/assets/swagger-ui-bundle.js' && echo "image: /docs serves its own Swagger UI" >&2
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/docs/assets/swagger-ui-bundle.js" && echo "image: Swagger UI's script served" >&2
"$ENGINE" "${engine_flags[@]}" exec "$name" zoo demo --no-serve
echo "image: all checks passed" >&2
