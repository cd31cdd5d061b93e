#!/usr/bin/env bash
# Builds golangci-lint from the Go module proxy into bin/tools/ (make lint). Skips when present.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-2.15.0}"

log() { printf '[golangci-lint] %s\n' "$*" >&2; }

go_install_cached "${REPO_ROOT}/bin/tools/golangci-lint-v${GOLANGCI_LINT_VERSION}" \
  "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v${GOLANGCI_LINT_VERSION}" "several minutes cold"
