#!/usr/bin/env bash
# Builds kube-router, the NetworkPolicy engine the dev cluster runs as a plain process beside
# kube-proxy (only its firewall controller: no routing, no service proxy, no CNI), from the Go
# module proxy into bin/. Skips when present. Why kube-router rather than
# sigs.k8s.io/kube-network-policies: docs/development.md.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-2.1.0}"

log() { printf '[network-policies] %s\n' "$*" >&2; }

go_install_cached "${REPO_ROOT}/bin/kube-router-v${KUBE_ROUTER_VERSION}" \
  "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v${KUBE_ROUTER_VERSION}" "about 5 minutes cold"
ln -sfn "kube-router-v${KUBE_ROUTER_VERSION}" "${REPO_ROOT}/bin/kube-router"
