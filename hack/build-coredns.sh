#!/usr/bin/env bash
# Builds CoreDNS, the dev cluster's DNS server (it runs as a Deployment in kube-system, in the
# image agentry/coredns:dev that hack/images.sh assembles), from the Go module proxy into bin/.
# Skips when present. `go install pkg@version` refuses a module whose go.mod has replace
# directives; then the module source is downloaded and built in place instead.
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-1.15.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/coredns-v${COREDNS_VERSION}"

log() { printf '[coredns] %s\n' "$*" >&2; }

if [[ -x "${OUT}" ]]; then
  log "coredns v${COREDNS_VERSION} already built"
else
  log "building coredns v${COREDNS_VERSION} from source (about 3 minutes cold)"
  mkdir -p "${ROOT}/bin"
  tmp="$(mktemp -d)"
  trap 'chmod -R u+w "${tmp}" 2>/dev/null; rm -rf "${tmp}"' EXIT
  mod="github.com/coredns/coredns@v${COREDNS_VERSION}"
  if ! GOBIN="${tmp}" CGO_ENABLED=0 go install -ldflags='-s -w' "${mod}" 2>"${tmp}/install.err"; then
    grep -q 'replace directives' "${tmp}/install.err" || { cat "${tmp}/install.err" >&2; exit 1; }
    log "go install refused (replace directives in its go.mod): building the module source"
    dir=$(cd "${tmp}" && GOFLAGS=-mod=mod go mod download -json "${mod}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d "${dir}" ]] || { log "go mod download gave no source directory for ${mod}"; exit 1; }
    cp -r "${dir}" "${tmp}/src"
    chmod -R u+w "${tmp}/src"
    (cd "${tmp}/src" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "${tmp}/coredns" .)
  fi
  mv "${tmp}/coredns" "${OUT}"
  log "built ${OUT}"
fi
ln -sfn "coredns-v${COREDNS_VERSION}" "${ROOT}/bin/coredns"
