#!/usr/bin/env bash
# Builds Gitea, the dev cluster's and the tests' git forge (pull requests for spec.delivery), from
# the Go module proxy into bin/. Skips when present. Gitea's go.mod has replace directives, so
# `go install` refuses it: the module source is downloaded and built in place. Gitea 1.27 uses a
# pure-Go SQLite, so no C toolchain is needed. The web front end (built by a JavaScript toolchain in
# Gitea's own release process) is not part of the module; the API, git over HTTP and the server-side
# pages Agentry's tests use work without it.
#
# Two adjustments make it build from the module proxy alone: gitea.dev/actions-proto-go is taken from
# its code.gitea.io path (the same module: its go.mod declares the gitea.dev path), and the two
# repository-migration downloaders whose client modules the proxy does not serve (the Gitea SDK at
# gitea.dev/sdk and GitLab's client-go v2.42.0) are left out, with their requirements. Migrating
# repositories from another Gitea or GitLab is the only feature lost; Agentry does not use it.
set -euo pipefail

GITEA_VERSION="${GITEA_VERSION:-1.27.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/gitea-v${GITEA_VERSION}"

log() { printf '[gitea] %s\n' "$*" >&2; }

# A build without embedded assets reads its translations, templates and static files from
# STATIC_ROOT_PATH at start (it refuses to start without the translations): they are copied
# from the module source to ${OUT}-static, so bin/ alone runs it.
copy_static() {
  local src=$1
  rm -rf "${OUT}-static.tmp" && mkdir -p "${OUT}-static.tmp"
  cp -r "${src}/options" "${src}/templates" "${src}/public" "${OUT}-static.tmp/"
  chmod -R u+w "${OUT}-static.tmp"
  rm -rf "${OUT}-static" && mv "${OUT}-static.tmp" "${OUT}-static"
}
source_dir() {
  (cd "$1" && GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@v${GITEA_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

if [[ -x "${OUT}" ]]; then
  log "gitea v${GITEA_VERSION} already built"
  if [[ ! -d "${OUT}-static/options/locale" ]]; then
    tmp="$(mktemp -d)"
    copy_static "$(source_dir "${tmp}")"
    rm -rf "${tmp}"
  fi
else
  log "building gitea v${GITEA_VERSION} from source (about 4 minutes cold on 2 cores)"
  mkdir -p "${ROOT}/bin"
  tmp="$(mktemp -d)"
  trap 'chmod -R u+w "${tmp}" 2>/dev/null; rm -rf "${tmp}"' EXIT
  mod="code.gitea.io/gitea@v${GITEA_VERSION}"
  dir=$(cd "${tmp}" && GOFLAGS=-mod=mod go mod download -json "${mod}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "${dir}" ]] || { log "go mod download gave no source directory for ${mod}"; exit 1; }
  cp -r "${dir}" "${tmp}/src"
  chmod -R u+w "${tmp}/src"
  (
    cd "${tmp}/src"
    rm -f services/migrations/gitea_downloader*.go services/migrations/gitlab*.go
    go mod edit -droprequire=gitea.dev/sdk -droprequire=gitlab.com/gitlab-org/api/client-go/v2 \
      -replace=gitea.dev/actions-proto-go=code.gitea.io/actions-proto-go@v0.6.0
  )
  (cd "${tmp}/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -X gitea.dev/modules/setting.AppVer=${GITEA_VERSION}" \
    -o "${tmp}/gitea" .)
  copy_static "${tmp}/src"
  mv "${tmp}/gitea" "${OUT}"
  log "built ${OUT}"
fi
ln -sfn "gitea-v${GITEA_VERSION}" "${ROOT}/bin/gitea"
