#!/usr/bin/env bash
# Builds versitygw, the S3 server the tests and `make dev` run, into bin/. Skips when present.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-1.8.0}"

log() { printf '[versitygw] %s\n' "$*" >&2; }

go_install_cached "${REPO_ROOT}/bin/versitygw-v${VERSITYGW_VERSION}" \
  "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}" "about 2 minutes cold"
ln -sfn "versitygw-v${VERSITYGW_VERSION}" "${REPO_ROOT}/bin/versitygw"
