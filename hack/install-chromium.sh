#!/usr/bin/env bash
# Installs Debian's chromium, the headless browser the console/viewer tests drive. Skips the
# install when a chromium is already on PATH; needs root (or sudo) otherwise. Prints the version.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }

find_chromium() {
	command -v chromium || command -v chromium-browser || true
}

bin="$(find_chromium)"
if [[ -z "${bin}" ]]; then
	sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		if ! command -v sudo >/dev/null; then
			log "chromium is missing and installing it needs root"
			exit 1
		fi
		sudo=(sudo)
	fi
	log "Installing chromium"
	"${sudo[@]}" apt-get update
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends chromium
	bin="$(find_chromium)"
fi
# Debian's /usr/bin/chromium is a wrapper whose /etc/chromium.d scripts print a shell error
# on some machines (a multi-line findmnt answer); the version comes from the browser itself.
if [[ -x /usr/lib/chromium/chromium ]]; then
	bin=/usr/lib/chromium/chromium
fi
"${bin}" --version
