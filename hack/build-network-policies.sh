#!/usr/bin/env bash
# Builds kube-router, the NetworkPolicy engine the dev cluster runs as a plain process beside
# kube-proxy (only its firewall controller: no routing, no service proxy, no CNI), from the Go
# module proxy into bin/. Skips when present. Why kube-router rather than
# sigs.k8s.io/kube-network-policies: docs/development.md.
set -euo pipefail

KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-2.1.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/kube-router-v${KUBE_ROUTER_VERSION}"

log() { printf '[network-policies] %s\n' "$*" >&2; }

if [[ -x "${OUT}" ]]; then
  log "kube-router v${KUBE_ROUTER_VERSION} already built"
else
  log "building kube-router v${KUBE_ROUTER_VERSION} from source (about 5 minutes cold)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' EXIT
  GOBIN="${tmp}" CGO_ENABLED=0 go install -ldflags='-s -w' \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v${KUBE_ROUTER_VERSION}"
  mv "${tmp}/kube-router" "${OUT}"
  log "built ${OUT}"
fi
ln -sfn "kube-router-v${KUBE_ROUTER_VERSION}" "${ROOT}/bin/kube-router"
