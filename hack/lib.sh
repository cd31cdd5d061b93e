# shellcheck shell=bash
# Sourced by the hack/*.sh scripts (the cluster scripts through cluster-env.sh): the
# repository's root, the Kubernetes release the control plane and the cluster are built at,
# and the helpers more than one script uses. The callers define log().

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# K8S_VERSION is the release the Go client libraries in go.mod come from (k8s.io/api v0.X.Y
# is Kubernetes 1.X.Y): bumping them bumps the binaries, and the Makefile reads it from here.
K8S_VERSION="${K8S_VERSION:-$(sed -n 's#^[[:space:]]*k8s.io/api v0\.\([0-9][0-9.]*\)$#1.\1#p' "${REPO_ROOT}/go.mod")}"
[[ -n "${K8S_VERSION}" ]] || { echo "hack/lib.sh: no k8s.io/api requirement in go.mod" >&2; exit 1; }

# kc ARGS...: kubectl as the dev cluster's admin; KC_ARGS (an array) adds flags to every call.
kc() { kubectl --kubeconfig "${KUBECONFIG_ADMIN}" ${KC_ARGS[@]+"${KC_ARGS[@]}"} "$@"; }

# proc_start PID: when the process started, in clock ticks since boot (/proc/PID/stat field
# 22). A pid file alone cannot tell its process from a later one that was given the same pid,
# as happens on a machine restored from a snapshot taken while the cluster ran.
proc_start() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }" # after the command name, which may hold spaces
  echo "${fields[19]}"
}

# running NAME: whether the process start NAME started is alive (the same process, not one
# that reuses its pid).
running() {
  local pid
  [[ -f "${PIDS}/$1" ]] || return 1
  pid=$(cat "${PIDS}/$1")
  kill -0 "${pid}" 2>/dev/null || return 1
  [[ ! -f "${PIDS}/$1.start" || "$(proc_start "${pid}")" == "$(cat "${PIDS}/$1.start")" ]]
}

# start NAME COMMAND...: runs COMMAND in its own session, logging to LOGS/NAME.log, its pid in
# PIDS/NAME; leaves it alone when it is already running.
start() {
  local name=$1; shift
  if running "${name}"; then log "${name} already running (pid $(cat "${PIDS}/${name}"))"; return; fi
  setsid "$@" >>"${LOGS}/${name}.log" 2>&1 </dev/null &
  echo $! >"${PIDS}/${name}"
  proc_start $! >"${PIDS}/${name}.start" || rm -f "${PIDS}/${name}.start"
  log "started ${name} (pid $!)"
}

# write_staging_gomod DIR MODULE: DIR/go.mod for a scratch module MODULE that requires
# k8s.io/kubernetes at K8S_VERSION. Kubernetes refers to its staging modules by relative path;
# each is pointed at its published v0.x release instead, so the module builds outside the
# kubernetes tree.
write_staging_gomod() {
  local dir=$1 module=$2 gomod staging m
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "${gomod}")"
  {
    echo "module ${module}"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    for m in ${staging}; do
      echo "replace ${m} => ${m} v0.${K8S_VERSION#1.}"
    done
  } >"${dir}/go.mod"
}

# go_install_cached OUT PACKAGE@VERSION [ESTIMATE]: builds PACKAGE from the Go module proxy
# into the file OUT, unless OUT is there already. ESTIMATE ("about 2 minutes cold") is logged.
go_install_cached() {
  local out=$1 pkg=$2 tmp
  if [[ -x "${out}" ]]; then
    log "$(basename "${out}") already built"
    return 0
  fi
  log "building $(basename "${out}") from source${3:+ ($3)}"
  mkdir -p "$(dirname "${out}")"
  tmp="$(mktemp -d)"
  if ! GOBIN="${tmp}" CGO_ENABLED=0 go install -ldflags='-s -w' "${pkg}"; then
    rm -rf "${tmp}"
    return 1
  fi
  mv "${tmp}/$(basename "${pkg%@*}")" "${out}"
  rm -rf "${tmp}"
  log "built ${out}"
}
