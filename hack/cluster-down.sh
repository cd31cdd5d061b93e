#!/usr/bin/env bash
# Tears down the cluster hack/cluster-up.sh started and leaves the machine as it found it:
# pods deleted first (so CNI DEL runs and volumes are unmounted by the kubelet), processes
# stopped by PID in reverse start order, leftover containers and shims of *this* containerd
# killed, mounts under the cluster's directories unmounted, cgroup dirs, the bridge, the
# iptables rules and the sysctls restored. Idempotent. The state directory goes too (PKI, etcd,
# image store; images are re-imported in seconds) unless KEEP_STATE=1.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster-env.sh"
[[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }

KC_ARGS=(--request-timeout=10s)

if running kube-apiserver && running kubelet; then
  log "deleting every pod"
  kc delete namespace agentry-system agentry-e2e --ignore-not-found --wait=false >/dev/null 2>&1
  kc delete pods --all --all-namespaces --grace-period=5 --wait=false >/dev/null 2>&1
  deadline=$(( $(date +%s) + 60 ))
  while [[ -n "$(kc get pods -A -o name 2>/dev/null)" ]] && (( $(date +%s) < deadline )); do sleep 0.5; done
fi

stop() {
  local name=$1 pid
  [[ -f "${PIDS}/${name}" ]] || return 0
  pid=$(cat "${PIDS}/${name}")
  if running "${name}"; then # never a process that merely reuses a dead one's pid
    kill -TERM "${pid}"
    for _ in $(seq 1 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -0 "${pid}" 2>/dev/null && kill -KILL "${pid}"
    log "stopped ${name} (pid ${pid})"
  fi
  rm -f "${PIDS}/${name}" "${PIDS}/${name}.start"
}

# The servers `make dev` and the e2e suite add on the bridge go first.
for extra in gitea gitserve scriptedllm versitygw; do stop "${extra}"; done
# The NetworkPolicy engine (kube-router) leaves its iptables chains and ipsets when it stops, and
# its own --cleanup-config crashes here (in the IPVS part) after leaving them; remove them here.
stop kube-router
for ipt in iptables ip6tables; do
  for chain in INPUT FORWARD OUTPUT; do
    "${ipt}" -S "${chain}" 2>/dev/null | grep -- '-j KUBE-ROUTER-' | sed 's/^-A/-D/' | while read -r r; do eval "${ipt}" "${r}"; done
  done
  chains=$("${ipt}" -S 2>/dev/null | awk '/^-N KUBE-(ROUTER|POD-FW|NWPLCY)-/ {print $2}')
  for c in ${chains}; do "${ipt}" -F "${c}" 2>/dev/null; done
  for c in ${chains}; do "${ipt}" -X "${c}" 2>/dev/null; done
done
if command -v ipset >/dev/null; then
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-(SRC|DST)-|kube-router-)'); do ipset destroy "${set}" 2>/dev/null; done
fi

for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
  c=${COMPONENTS[i]}
  if [[ "${c}" == containerd && -S "${CONTAINERD_SOCK}" ]] && running containerd; then
    # Whatever the kubelet did not clean up: stop tasks, then remove containers.
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "${t}" >/dev/null 2>&1; done
    sleep 0.5
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "${t}" >/dev/null 2>&1; done
    for ctn in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "${ctn}" >/dev/null 2>&1; done
  fi
  if [[ "${c}" == kube-proxy ]] && running kube-proxy; then
    stop kube-proxy
    "${K8S_BIN}/kube-proxy" --cleanup --config "${CLUSTER_DIR}/kube-proxy.yaml" >/dev/null 2>&1 || true
    continue
  fi
  stop "${c}"
done

# Shims of this containerd outlive it by design; they name its socket on their command line.
for p in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' <"${p}/cmdline" 2>/dev/null) || continue
  if [[ "${cmd}" == *containerd-shim*"-address ${CONTAINERD_SOCK} "* ]]; then
    kill -KILL "${p#/proc/}" 2>/dev/null && log "killed shim ${p#/proc/}"
  fi
done

# Unmount everything below the cluster's directories, deepest first (the kubelet root is a
# shared bind mount of itself; emptyDirs, projected volumes, sandbox shm and rootfs overlays).
for _ in 1 2 3; do
  mapfile -t mounts < <(awk -v a="${CLUSTER_DIR}" -v b="${CLUSTER_RUN}" '
    function unescape(s) { gsub(/\\040/, " ", s); return s }
    { m = unescape($5); if (index(m, a) == 1 || index(m, b) == 1) print m }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  [[ ${#mounts[@]} -eq 0 ]] && break
  for m in "${mounts[@]}"; do umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null; done
done

# Network namespaces of sandboxes the kubelet could not stop.
for ns in /var/run/netns/cni-*; do
  [[ -e "${ns}" ]] || continue
  if grep -q ' 10\.203\.' <<<"$(ip netns exec "$(basename "${ns}")" ip -4 -o addr 2>/dev/null)"; then
    umount "${ns}" 2>/dev/null; rm -f "${ns}"
  fi
done

# cgroups: depth-first rmdir of our cgroupRoot in every hierarchy.
for h in /sys/fs/cgroup/*/; do
  d="${h}${CGROUP_ROOT#/}"
  [[ -d "${d}" ]] && find "${d}" -depth -type d -exec rmdir {} + 2>/dev/null
done

if ip link show "${BRIDGE}" >/dev/null 2>&1; then ip link delete "${BRIDGE}" && log "deleted bridge ${BRIDGE}"; fi
while iptables -D FORWARD -s "${POD_CIDR}" ! -o "${BRIDGE}" -m comment --comment agentry-cluster -j DROP 2>/dev/null; do :; done
# The bridge plugin's per-pod NAT chains are removed by CNI DEL; sweep any a crashed pod left.
for chain in $(iptables -t nat -S 2>/dev/null | awk '/^-N CNI-/ {print $2}'); do
  if grep -q 'name: "agentry"' <<<"$(iptables -t nat -S "${chain}" 2>/dev/null)"; then
    iptables -t nat -S POSTROUTING | grep -- "-j ${chain}" | sed 's/^-A/-D/' | while read -r r; do eval iptables -t nat "${r}"; done
    iptables -t nat -F "${chain}"; iptables -t nat -X "${chain}"
  fi
done

if [[ -f "${CLUSTER_DIR}/sysctls" && ! -f "${CLUSTER_DIR}/kube-chains-preexisting" ]]; then
  for ipt in iptables ip6tables; do
    for chain in INPUT OUTPUT; do
      while "${ipt}" -D "${chain}" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for table in filter nat mangle; do
      for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "${ipt}" -t "${table}" -F "${c}" 2>/dev/null && "${ipt}" -t "${table}" -X "${c}" 2>/dev/null
      done
    done
  done
fi
if [[ -f "${CLUSTER_DIR}/sysctls" ]]; then
  while IFS='=' read -r k v; do [[ -n "${v}" ]] && sysctl -qw "${k}=${v}" >/dev/null 2>&1; done <"${CLUSTER_DIR}/sysctls"
fi
find /var/log/containers -maxdepth 1 -type l -lname "${CLUSTER_DIR}/*" -delete 2>/dev/null

if [[ "${KEEP_STATE:-0}" != 1 ]]; then
  rm -rf "${CLUSTER_DIR}" "${CLUSTER_RUN}" || log "could not remove ${CLUSTER_DIR}: something is still mounted"
fi
log "cluster down"
