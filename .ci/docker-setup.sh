#!/usr/bin/env bash
# Make a Docker engine and reprun's test base image available on a Debian 12 machine (as root).
#
# Idempotent: installs only what is missing, starts dockerd only if no engine answers, starts a
# local registry on 127.0.0.1:5000 only if nothing listens there, and builds the base image only if
# it is not present. With everything in place it takes a second or two.
#
# Settings (environment):
#   REPRUN_TEST_BASE_IMAGE   name of the Python base image (default reprun-test/python:3.11-bookworm)
#   REPRUN_CI_STATE          folder for logs, pid files and registry data (default /var/lib/reprun-ci)
#   REPRUN_CI_IMAGE_CACHE    optional path of a `docker save` tar of the base image, loaded if present
#                            and written after a fresh build
#   REPRUN_CI_REGISTRY=0     do not install or start the local registry
#
# It prints `REPRUN_TEST_BASE_IMAGE=<name>` as its last line; the tests read that variable (and
# default to the same name).
set -euo pipefail

BASE_IMAGE=${REPRUN_TEST_BASE_IMAGE:-reprun-test/python:3.11-bookworm}
STATE=${REPRUN_CI_STATE:-/var/lib/reprun-ci}
CACHE=${REPRUN_CI_IMAGE_CACHE:-}
REGISTRY=${REPRUN_CI_REGISTRY:-1}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$STATE"

say() { echo "docker-setup: $*" >&2; }

install_missing() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker >/dev/null || need+=(docker.io)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  if [ "$REGISTRY" = 1 ] && ! command -v docker-registry >/dev/null; then need+=(docker-registry); fi
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1 \
      || { cat "$STATE/apt.log" >&2; return 1; }
  fi
}

start_engine() {
  if docker info >/dev/null 2>&1; then
    say "docker engine already answers"
    return 0
  fi
  say "starting dockerd (log: $STATE/dockerd.log)"
  setsid nohup dockerd --iptables=false --bridge=none >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  local i=0
  until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -ge 300 ]; then
      say "dockerd did not answer within 60 s"; tail -n 30 "$STATE/dockerd.log" >&2; return 1
    fi
    sleep 0.2
  done
}

start_registry() {
  [ "$REGISTRY" = 1 ] || return 0
  if (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
    say "something already listens on 127.0.0.1:5000"
    return 0
  fi
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log: {level: warn, fields: {service: registry}}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: $STATE/registry-data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:5000
  headers: {X-Content-Type-Options: [nosniff]}
EOF
  say "starting docker-registry on 127.0.0.1:5000 (log: $STATE/registry.log)"
  setsid nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE/registry.pid"
  local i=0
  until (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 100 ]; then say "registry did not listen within 10 s"; return 1; fi
    sleep 0.1
  done
}

build_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE already present"
    return 0
  fi
  if [ -n "$CACHE" ] && [ -f "$CACHE" ]; then
    say "loading $BASE_IMAGE from $CACHE"
    docker load -q -i "$CACHE" >/dev/null
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  fi
  say "building $BASE_IMAGE with mmdebstrap (about 90 s; log: $STATE/mmdebstrap.log)"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm - 2>"$STATE/mmdebstrap.log" \
  | docker import -c 'ENV LANG=C.UTF-8' -c 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
      -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  if [ -n "$CACHE" ]; then docker save -o "$CACHE" "$BASE_IMAGE"; fi
}

install_missing
start_engine
start_registry
build_base_image
docker run --rm --network none "$BASE_IMAGE" python -c 'import sys, venv; print("docker-setup: base image ok, python", sys.version.split()[0])' >&2
echo "REPRUN_TEST_BASE_IMAGE=$BASE_IMAGE"
