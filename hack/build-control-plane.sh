#!/usr/bin/env bash
# Builds the control-plane binaries the tests run (kube-apiserver, etcd) from the Go module
# proxy and caches them under bin/k8s/<version>/ — the layout controller-runtime's envtest reads
# through KUBEBUILDER_ASSETS. setup-envtest cannot download prebuilt binaries on every machine,
# so we compile the same release from source. Skips whatever is already built.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
OUT="${REPO_ROOT}/bin/k8s/${K8S_VERSION}-linux-amd64"
WORK="${REPO_ROOT}/bin/.build"
mkdir -p "${OUT}" "${WORK}"

log() { printf '[control-plane] %s\n' "$*" >&2; }

build_apiserver() {
  if [[ -x "${OUT}/kube-apiserver" ]]; then
    log "kube-apiserver v${K8S_VERSION} already built"
    return
  fi
  local dir="${WORK}/kubernetes-${K8S_VERSION}"
  mkdir -p "${dir}"
  log "building kube-apiserver v${K8S_VERSION} from source (about 7 minutes cold on 2 cores)"
  write_staging_gomod "${dir}" agentry.dev/build/kube-apiserver
  cat > "${dir}/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
  (cd "${dir}" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "${dir}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "${OUT}/kube-apiserver.tmp" "${OUT}/kube-apiserver"
}

build_etcd() {
  if [[ -x "${OUT}/etcd" ]]; then
    log "etcd v${ETCD_VERSION} already built"
    return
  fi
  local dir="${WORK}/etcd-${ETCD_VERSION}"
  mkdir -p "${dir}"
  log "building etcd v${ETCD_VERSION} from source"
  cat > "${dir}/go.mod" <<EOF
module agentry.dev/build/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
EOF
  cat > "${dir}/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "${dir}" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  (cd "${dir}" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "${OUT}/etcd.tmp" .)
  mv "${OUT}/etcd.tmp" "${OUT}/etcd"
}

build_kubectl_link() {
  # envtest looks for kubectl in the assets directory; use the machine's real kubectl.
  if [[ ! -e "${OUT}/kubectl" ]] && command -v kubectl >/dev/null; then
    ln -s "$(command -v kubectl)" "${OUT}/kubectl"
  fi
}

build_etcd
build_apiserver
build_kubectl_link
log "assets ready in ${OUT}"
