#!/usr/bin/env bash
# Installs the MCP reference test server (@modelcontextprotocol/server-everything, a pinned
# version) with npm into bin/npm/, for the gateway's MCP tests: a real MCP server speaking
# streamable HTTP. Skips when present. Needs node (20 or later) and npm. The tests find it at
# bin/npm/node_modules/@modelcontextprotocol/server-everything (or $AGENTRY_MCP_EVERYTHING).
set -euo pipefail

VERSION="${MCP_EVERYTHING_VERSION:-2026.8.31}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/npm"
PKG="${OUT}/node_modules/@modelcontextprotocol/server-everything"

log() { printf '[mcp-everything] %s\n' "$*" >&2; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	log "node and npm are needed (Debian: apt-get install nodejs npm)"
	exit 1
fi
if [[ -f "${PKG}/package.json" ]] && grep -q "\"version\": \"${VERSION}\"" "${PKG}/package.json"; then
	log "server-everything ${VERSION} is installed"
	exit 0
fi
log "Installing @modelcontextprotocol/server-everything@${VERSION} into ${OUT}"
mkdir -p "${OUT}"
[[ -f "${OUT}/package.json" ]] || echo '{"private": true}' >"${OUT}/package.json"
npm install --prefix "${OUT}" --no-audit --no-fund --omit=dev --save-exact "@modelcontextprotocol/server-everything@${VERSION}" >&2
log "installed: $(node -e "console.log(require('${PKG}/package.json').version)")"
