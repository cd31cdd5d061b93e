#!/usr/bin/env bash
# Builds Agentry's container images without Docker and imports them into the dev cluster's
# containerd (when it is running). Usage: hack/images.sh [pause] [runner] [manager] [coredns]
# (default: pause, runner, manager).
#
#   agentry/pause:dev    the sandbox image (hack/image/pause)
#   agentry/runner:dev   /usr/local/bin/runner, busybox (sh, cp, coreutils), a static bash and CA
#                        certificates: the default agent image, so the bash tool gets bash
#   agentry/manager:dev  /manager and CA certificates
#   agentry/e2e-tools:dev  busybox, bash and test/e2e/httpc: the e2e suite's hostile toolchain
#   agentry/coredns:dev  /coredns (bin/coredns, hack/build-coredns.sh) with the file capability
#                        cap_net_bind_service, so it binds port 53 as uid 65532
#
# The tags are the ones config/ and the manager's --runner-image default use. Tarballs land in
# bin/images/ (load them elsewhere with `ctr -n k8s.io images import` or `kind load image-archive`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster-env.sh"

OUT="${REPO_ROOT}/bin/images"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
BASH_STATIC="${BASH_STATIC:-/bin/bash-static}"
CA="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
IMPORT="${IMPORT:-auto}"
mkdir -p "${OUT}/rootfs"
cd "${REPO_ROOT}"
go build -o "${REPO_ROOT}/bin/tools/image" ./hack/image

build() { # build NAME ARGS...: go-build binaries first, then the image
  local name=$1; shift
  log "building image agentry/${name}:dev"
  "${REPO_ROOT}/bin/tools/image" --tag "agentry/${name}:dev" --out "${OUT}/${name}.tar" "$@" >/dev/null
}

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(pause runner manager)
for img in "${images[@]}"; do
  case "${img}" in
    pause)
      CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/rootfs/pause" ./hack/image/pause
      build pause --file "${OUT}/rootfs/pause=/pause" --entrypoint /pause --user 65535
      ;;
    runner)
      [[ -x "${BUSYBOX}" ]] || { log "${BUSYBOX} missing: apt-get install busybox-static"; exit 1; }
      [[ -x "${BASH_STATIC}" ]] || { log "${BASH_STATIC} missing: apt-get install bash-static"; exit 1; }
      CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/rootfs/runner" ./cmd/runner
      build runner --file "${OUT}/rootfs/runner=/usr/local/bin/runner" --busybox "${BUSYBOX}" \
        --file "${BASH_STATIC}=/bin/bash" \
        --file "${CA}=/etc/ssl/certs/ca-certificates.crt" --dir /tmp --dir /home/agentry --dir /workspace \
        --entrypoint /usr/local/bin/runner
      ;;
    e2e-tools)
      # The e2e suite's hostile toolchain: the runner image's tools plus an HTTPS client
      # (test/e2e/httpc), as an attacker's image would carry.
      CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/rootfs/httpc" ./test/e2e/httpc
      build e2e-tools --busybox "${BUSYBOX}" --file "${BASH_STATIC}=/bin/bash" --file "${OUT}/rootfs/httpc=/usr/local/bin/httpc" \
        --dir /tmp --dir /home/agentry --dir /workspace --entrypoint /bin/sh
      ;;
    manager)
      CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/rootfs/manager" ./cmd
      build manager --file "${OUT}/rootfs/manager=/manager" --file "${CA}=/etc/ssl/certs/ca-certificates.crt" \
        --dir /tmp --entrypoint /manager
      ;;
    coredns)
      [[ -x "${REPO_ROOT}/bin/coredns" ]] || "${REPO_ROOT}/hack/build-coredns.sh"
      build coredns --file "${REPO_ROOT}/bin/coredns=/coredns" --net-bind-service /coredns --entrypoint /coredns --user 65532
      ;;
    *) log "unknown image ${img}"; exit 2 ;;
  esac
  if [[ "${IMPORT}" == 1 || ( "${IMPORT}" == auto && -S "${CONTAINERD_SOCK}" ) ]]; then
    "${CTR[@]}" images import "${OUT}/${img}.tar" >/dev/null
    log "imported agentry/${img}:dev into ${CONTAINERD_SOCK}"
  fi
done
