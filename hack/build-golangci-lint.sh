#!/usr/bin/env bash
# Builds golangci-lint from the Go module proxy into bin/tools/ (make lint). Skips when present.
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-2.15.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/tools/golangci-lint-v${GOLANGCI_LINT_VERSION}"

log() { printf '[golangci-lint] %s\n' "$*" >&2; }

if [[ -x "${OUT}" ]]; then
  log "v${GOLANGCI_LINT_VERSION} already built"
  exit 0
fi
log "building golangci-lint v${GOLANGCI_LINT_VERSION} from source (several minutes cold)"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
mkdir -p "$(dirname "${OUT}")"
GOBIN="${tmp}" CGO_ENABLED=0 go install -ldflags='-s -w' \
  "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v${GOLANGCI_LINT_VERSION}"
mv "${tmp}/golangci-lint" "${OUT}"
log "built ${OUT}"
