#!/usr/bin/env bash
# Builds versitygw, the S3 server the tests and `make dev` run, into bin/. Skips when present.
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-1.8.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/versitygw-v${VERSITYGW_VERSION}"

if [[ -x "${OUT}" ]]; then
  printf '[versitygw] v%s already built\n' "${VERSITYGW_VERSION}" >&2
else
  printf '[versitygw] building v%s from source (about 2 minutes cold)\n' "${VERSITYGW_VERSION}" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' EXIT
  GOBIN="${tmp}" CGO_ENABLED=0 go install -ldflags='-s -w' "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}"
  mv "${tmp}/versitygw" "${OUT}"
fi
ln -sfn "versitygw-v${VERSITYGW_VERSION}" "${ROOT}/bin/versitygw"
