#!/usr/bin/env bash
# Builds the Dockerfile and runs the image as Kubernetes will (see
# helm/proctor): read-only root, the image's own non-root user, its data on
# a volume. Checks that the image has no shell, that its own HEALTHCHECK
# reports the server healthy, and that SIGTERM stops it cleanly (exit 0).
#
# Uses a Docker engine when one answers, podman otherwise. The official
# base images are pulled; where no container registry can be reached, local
# stand-ins built from Debian's archive and this machine's Rust toolchain
# take their place through the Dockerfile's *_IMAGE build arguments
# (docker/standin/build.sh).
#
#   docker/check-image.sh [TAG]
set -eu
cd "$(dirname "$0")/.."
tag=${1:-proctor:check}
name=proctor-check-$$

if docker info >/dev/null 2>&1; then
  engine=docker
  BUILD_FLAGS=
  run_flags=
elif command -v podman >/dev/null 2>&1; then
  engine=podman
  # chroot isolation and the host network: builds need no OCI runtime or
  # container network; HEALTHCHECK only survives in the docker format.
  BUILD_FLAGS="--isolation chroot --network host --format docker"
  run_flags=
else
  echo "neither a Docker engine nor podman is available" >&2
  exit 1
fi
export BUILD_FLAGS

rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
bases=$("$(pwd)/docker/standin/build.sh" "$engine" "$rust_version")

echo "building $tag with $engine ($bases)"
start=$(date +%s)
# shellcheck disable=SC2086
"$engine" build $BUILD_FLAGS $bases -t "$tag" .
echo "built in $(( $(date +%s) - start )) s"

# Some sandboxes refuse crun's cgroup setup or raising resource limits;
# the first way that runs a container is the one used below.
if [ "$engine" = podman ]; then
  for flags in "" "--runtime runc --ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=8192:8192"; do
    # shellcheck disable=SC2086
    if podman run --rm $flags --network host --entrypoint /usr/local/bin/proctor "$tag" --version >/dev/null 2>&1; then
      run_flags=$flags
      break
    fi
    run_flags=none
  done
  if [ "$run_flags" = none ]; then
    # shellcheck disable=SC2086
    podman run --rm --network host --entrypoint /usr/local/bin/proctor "$tag" --version || true
    echo "podman cannot run a container here" >&2
    exit 1
  fi
fi

# One version everywhere: the binary, the image label, the chart's appVersion.
binary=$("$engine" run --rm $run_flags --network host --entrypoint /usr/local/bin/proctor "$tag" --version 2>/dev/null | awk '{print $2}')
label=$("$engine" image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$tag")
chart=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' helm/proctor/Chart.yaml)
if [ -z "$binary" ] || [ "$binary" != "$label" ] || [ "$binary" != "$chart" ]; then
  echo "versions differ: binary '$binary', image label '$label', chart appVersion '$chart'" >&2
  exit 1
fi

user=$("$engine" image inspect --format '{{.Config.User}}' "$tag")
[ "$user" = "65532:65532" ] || { echo "image user is '$user', not 65532:65532" >&2; exit 1; }
# The HEALTHCHECK must be the binary itself, in exec form (no shell). Its
# command is kept to run it below exactly as the engine does.
health=$("$engine" image inspect --format '{{json .Config.Healthcheck}}' "$tag")
health_cmd=$(printf '%s' "$health" | python3 -c '
import json, sys
test = (json.load(sys.stdin) or {}).get("Test") or []
assert test[:1] == ["CMD"] and test[1:3] == ["/usr/local/bin/proctor", "healthcheck"], test
assert not any(" " in a for a in test), test
print(" ".join(test[1:]))') || { echo "image HEALTHCHECK is not an exec-form proctor healthcheck: $health" >&2; exit 1; }
# No shell: starting one must fail as "command not found" (exit 127, as both
# engines report it), not for some other reason that would prove nothing.
for sh in /bin/sh /bin/bash /usr/bin/sh /busybox/sh; do
  rc=0
  # shellcheck disable=SC2086
  "$engine" run --rm $run_flags --network host --entrypoint "$sh" "$tag" -c true >/dev/null 2>&1 || rc=$?
  case $rc in
    0) echo "the image has a shell: $sh" >&2; exit 1 ;;
    127) ;;
    *) echo "starting $sh failed with exit $rc, not 127 (not found): cannot tell whether it exists" >&2; exit 1 ;;
  esac
done

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
logs=$(mktemp)
cleanup() {
  for c in "$name" "$name-nomigrate"; do
    "$engine" rm -f "$c" >/dev/null 2>&1 || true
    "$engine" volume rm -f "$c" >/dev/null 2>&1 || true
  done
  rm -f "$logs"
}
trap cleanup EXIT

# Starts the image in the background as Kubernetes runs it: read-only root,
# a volume on the data folder, the host network (no container network
# needed) on a free port, which the HEALTHCHECK follows through
# PROCTOR_LISTEN. Engine chatter goes to a file, shown only on failure.
start() {
  container=$1
  shift
  # shellcheck disable=SC2086
  "$engine" run -d --name "$container" $run_flags --network host --read-only \
    -v "$container:/var/lib/proctor" -e PROCTOR_LISTEN="127.0.0.1:$port" "$@" "$tag" >/dev/null 2>>"$logs" \
    || { cat "$logs" >&2; exit 1; }
}

# The image's own HEALTHCHECK command, run in the container as the engine
# runs it (an exec, as the image's user, with the container's environment).
healthy() {
  # shellcheck disable=SC2086
  "$engine" exec "$1" $health_cmd >/dev/null 2>>"$logs"
}

# Waits until COMMAND succeeds while the container runs; fails after 60 s.
wait_for() {
  container=$1
  shift
  probes=0
  until "$@"; do
    probes=$((probes + 1))
    if [ "$probes" -ge 60 ] || [ "$("$engine" inspect --format '{{.State.Running}}' "$container")" != true ]; then
      echo "$container: '$*' never passed; its log:" >&2
      "$engine" logs "$container" >&2
      cat "$logs" >&2
      exit 1
    fi
    sleep 1
  done
}

# The HEALTHCHECK can fail: a server that may not migrate its fresh database
# is alive (its liveness service answers inside the container) but not
# SERVING, and the engine must see it unhealthy.
start "$name-nomigrate" -e PROCTOR_NO_MIGRATE=true
alive() {
  "$engine" exec "$1" /usr/local/bin/proctor healthcheck --service liveness >/dev/null 2>>"$logs"
}
wait_for "$name-nomigrate" alive "$name-nomigrate"
# It must fail because the server says NOT_SERVING, with the container
# still running, not because the exec or the container broke.
rc=0
# shellcheck disable=SC2086
said=$("$engine" exec "$name-nomigrate" $health_cmd 2>>"$logs") || rc=$?
running=$("$engine" inspect --format '{{.State.Running}}' "$name-nomigrate")
if [ "$rc" = 0 ] || [ "$said" != NOT_SERVING ] || [ "$running" != true ]; then
  echo "HEALTHCHECK on a server that is not serving: exit $rc, said '$said', running $running" >&2
  exit 1
fi
"$engine" rm -f "$name-nomigrate" >/dev/null 2>&1

start "$name"
wait_for "$name" healthy "$name"
# Logs are JSON lines in the image (PROCTOR_LOG_FORMAT=json), every one.
"$engine" logs "$name" 2>&1 | python3 -c '
import json, sys
lines = [l for l in sys.stdin if l.strip()]
assert lines, "no log line"
for l in lines:
    json.loads(l)' || { echo "a log line is not JSON" >&2; "$engine" logs "$name" >&2; exit 1; }

# SIGTERM drains and exits 0, as a rolling update needs.
"$engine" stop -t 20 "$name" >/dev/null 2>>"$logs"
code=$("$engine" inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "exit code $code after SIGTERM; its log:" >&2; "$engine" logs "$name" >&2; exit 1; }

size=$("$engine" image inspect --format '{{.Size}}' "$tag")
echo "image $tag: version $binary, $((size / 1048576)) MiB; user 65532, no shell, read-only root; HEALTHCHECK unhealthy when not serving, healthy after $((probes + 1)) probe(s) when serving; exit 0 on SIGTERM"
