#!/usr/bin/env bash
# Builds the node and control-loop binaries a real single-node cluster needs
# (kube-controller-manager, kube-scheduler, kubelet, kube-proxy) from the Go module proxy,
# next to the kube-apiserver and etcd that hack/build-control-plane.sh builds, under
# bin/k8s/<version>-linux-amd64/. No release tarball can be downloaded on every machine, so we
# compile the same release. One scratch module imports all of them, so `go mod tidy` records
# every dependency and the four builds share one compile. Skips whatever is already built.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT="${REPO_ROOT}/bin/k8s/${K8S_VERSION}-linux-amd64"
WORK="${REPO_ROOT}/bin/.build/kubernetes-cluster-${K8S_VERSION}"
COMPONENTS=(kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf '[cluster-binaries] %s\n' "$*" >&2; }

# kube-apiserver and etcd come from the envtest script; reuse it rather than duplicate it.
K8S_VERSION="${K8S_VERSION}" "${REPO_ROOT}/hack/build-control-plane.sh"

missing=()
for c in "${COMPONENTS[@]}"; do
  [[ -x "${OUT}/${c}" ]] || missing+=("${c}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "${COMPONENTS[*]} v${K8S_VERSION} already built"
  exit 0
fi

mkdir -p "${WORK}" "${OUT}"
log "building ${missing[*]} v${K8S_VERSION} from source (about 5 minutes on 2 cores once kube-apiserver is built, 12 cold)"
if [[ ! -f "${WORK}/go.sum" ]]; then
  write_staging_gomod "${WORK}" agentry.dev/build/kubernetes-cluster
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    echo '	_ "k8s.io/kubernetes/cmd/kube-apiserver"'
    for c in "${COMPONENTS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/${c}\""; done
    echo ")"
  } > "${WORK}/tools.go"
  (cd "${WORK}" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
fi
pkgs=()
for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done
tmp="$(mktemp -d "${OUT}/.tmp.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
(cd "${WORK}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags='-s -w' -o "${tmp}/" "${pkgs[@]}")
for c in "${missing[@]}"; do mv "${tmp}/${c}" "${OUT}/${c}"; done
log "built ${missing[*]} into ${OUT}"
