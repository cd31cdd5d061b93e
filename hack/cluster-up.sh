#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine, as root, without Docker and
# without a registry: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet and kube-proxy as plain processes, a CNI bridge for pods, and a locally built pause
# image. Idempotent: components already running are left alone, binaries, PKI and images are
# cached. Cluster DNS (CoreDNS, hack/coredns.yaml) is deployed once the node is Ready. Tear
# down with hack/cluster-down.sh. See docs/development.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster-env.sh"

[[ $(id -u) -eq 0 ]] || { log "must run as root (it starts containerd and a kubelet)"; exit 1; }
T0=$(date +%s.%N)
elapsed() { printf '%.1fs' "$(echo "$(date +%s.%N) - ${T0}" | bc)"; }

install_packages() {
  local want=(containerd runc containernetworking-plugins iptables conntrack busybox-static bash-static ca-certificates openssl git bc iproute2 curl ipset)
  local missing=()
  for p in "${want[@]}"; do
    grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null)" || missing+=("${p}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# write_if_changed FILE < content: kube-proxy exits when its configuration file is rewritten,
# even with the same content, so a re-run must leave unchanged files alone. Sets CHANGED=1 when
# it wrote the file.
write_if_changed() {
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat >"${tmp}"
  if cmp -s "${tmp}" "$1"; then rm -f "${tmp}"; CHANGED=0; else mv "${tmp}" "$1"; CHANGED=1; fi
}

wait_for() { # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    for f in "${PIDS}"/*; do
      [[ -e "${f}" && "${f}" != *.start ]] || continue
      running "$(basename "${f}")" || { log "$(basename "${f}") exited; last lines of ${LOGS}/$(basename "${f}").log:"; tail -5 "${LOGS}/$(basename "${f}").log" >&2; exit 1; }
    done
    if (( $(date +%s) > deadline )); then log "timed out after ${secs}s waiting for ${what}; logs in ${LOGS}"; exit 1; fi
    sleep 0.3
  done
  log "${what} after $(elapsed)"
}

# cert NAME CN ORG SANS: a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 org=$3 sans=$4
  [[ -f "${PKI}/${name}.crt" ]] && return
  openssl req -new -newkey rsa:2048 -nodes -keyout "${PKI}/${name}.key" -subj "/CN=${cn}${org:+/O=${org}}" \
    -out "${PKI}/${name}.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s' \
    "${sans:+subjectAltName=${sans}}" >"${PKI}/${name}.ext"
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" -CAcreateserial -days 365 \
    -extfile "${PKI}/${name}.ext" -out "${PKI}/${name}.crt" 2>/dev/null
  rm -f "${PKI}/${name}.csr" "${PKI}/${name}.ext"
}

kubeconfig() { # kubeconfig NAME CERT
  local file="${CLUSTER_DIR}/$1.kubeconfig"
  [[ -f "${file}" ]] && return
  cat >"${file}" <<KC
apiVersion: v1
kind: Config
clusters:
- name: agentry-dev
  cluster: {server: "https://${HOST_IP}:${APISERVER_PORT}", certificate-authority: "${PKI}/ca.crt"}
users:
- name: $2
  user: {client-certificate: "${PKI}/$2.crt", client-key: "${PKI}/$2.key"}
contexts:
- name: agentry-dev
  context: {cluster: agentry-dev, user: $2}
current-context: agentry-dev
KC
}

pki() {
  mkdir -p "${PKI}"
  if [[ ! -f "${PKI}/ca.crt" ]]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "${PKI}/ca.key" -subj "/CN=agentry-dev-ca" -days 365 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "${PKI}/ca.crt" 2>/dev/null
    openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
    openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" "IP:${HOST_IP},IP:${SERVICE_IP},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  cert admin agentry-dev-admin system:masters ""
  cert controller-manager system:kube-controller-manager "" ""
  cert scheduler system:kube-scheduler "" ""
  cert proxy system:kube-proxy "" ""
  cert kube-router system:kube-router "" ""
  cert node "system:node:${NODE_NAME}" system:nodes ""
  cert kubelet-serving "system:node:${NODE_NAME}" system:nodes "IP:${HOST_IP},DNS:${NODE_NAME}"
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig proxy proxy
  kubeconfig kube-router kube-router
  kubeconfig node node
}

# The bridge exists before anything listens on its address. The CNI plugin only attaches pods
# (isGateway false), so it never turns on IP forwarding; a FORWARD rule drops whatever a pod
# sends anywhere but the bridge, so no pod traffic leaves the machine even where forwarding is on.
network() {
  if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
    ip link add "${BRIDGE}" type bridge
  fi
  # grep -q reads from a here-string, not a pipe: under pipefail, `ip … | grep -q` fails
  # whenever grep exits before ip has written everything (SIGPIPE), and the add then runs twice.
  grep -q "inet ${HOST_IP}/" <<<"$(ip addr show dev "${BRIDGE}")" || ip addr add "${HOST_IP}/16" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  iptables -C FORWARD -s "${POD_CIDR}" ! -o "${BRIDGE}" -m comment --comment agentry-cluster -j DROP 2>/dev/null ||
    iptables -I FORWARD -s "${POD_CIDR}" ! -o "${BRIDGE}" -m comment --comment agentry-cluster -j DROP
  mkdir -p "${CLUSTER_DIR}/cni/net.d"
  write_if_changed "${CLUSTER_DIR}/cni/net.d/10-agentry.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "agentry",
  "plugins": [
    {"type": "bridge", "bridge": "${BRIDGE}", "isGateway": false, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "${CLUSTER_DIR}/cni/networks",
              "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${HOST_IP}", "rangeStart": "10.203.1.1"}]],
              "routes": [{"dst": "0.0.0.0/0", "gw": "${HOST_IP}"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
}

# The kubelet and kube-proxy set a few machine-wide sysctls; remember them so teardown restores them.
save_sysctls() {
  [[ -f "${CLUSTER_DIR}/sysctls" ]] && return
  for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
    kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet \
    net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
    echo "${k}=$(sysctl -n "${k}" 2>/dev/null)"
  done >"${CLUSTER_DIR}/sysctls"
  # The kubelet adds KUBE-FIREWALL and canary chains; teardown removes them unless they were here.
  if grep -q '^:KUBE-' <<<"$(iptables-save 2>/dev/null)"; then touch "${CLUSTER_DIR}/kube-chains-preexisting"; fi
}

containerd_up() {
  mkdir -p "${CLUSTER_DIR}/containerd" "${CLUSTER_RUN}/containerd"
  write_if_changed "${CLUSTER_DIR}/containerd.toml" <<TOML
version = 2
root = "${CLUSTER_DIR}/containerd"
state = "${CLUSTER_RUN}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_SOCK}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${CLUSTER_DIR}/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/agentry/pause:dev"
  # This machine lacks CAP_SYS_RESOURCE: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF" (the pause container's oom_score_adj of -998).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${CLUSTER_DIR}/cni/net.d"
TOML
  start containerd containerd --config "${CLUSTER_DIR}/containerd.toml"
  wait_for "containerd serving" 30 "${CTR[@]}" version
}

control_plane_up() {
  mkdir -p "${CLUSTER_DIR}/etcd"
  start etcd "${K8S_BIN}/etcd" --name agentry-dev --data-dir "${CLUSTER_DIR}/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "agentry-dev=http://127.0.0.1:${ETCD_PEER_PORT}" --listen-metrics-urls ""
  wait_for "etcd healthy" 30 curl -sf "http://127.0.0.1:${ETCD_PORT}/health"
  # The apiserver listens on the bridge address only: reachable from the host and from pods
  # (through the kubernetes Service and kube-proxy), from nowhere else.
  start kube-apiserver "${K8S_BIN}/kube-apiserver" --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --bind-address "${HOST_IP}" --advertise-address "${HOST_IP}" --secure-port "${APISERVER_PORT}" \
    --service-cluster-ip-range "${SERVICE_CIDR}" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --client-ca-file "${PKI}/ca.crt" --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
    --kubelet-client-certificate "${PKI}/apiserver-kubelet-client.crt" --kubelet-client-key "${PKI}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "${PKI}/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --profiling=false --allow-privileged=true
  wait_for "kube-apiserver ready" 120 curl -sf --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" \
    "https://${HOST_IP}:${APISERVER_PORT}/readyz"
  # node-ipam-controller is off: pod addresses come from host-local IPAM, not node CIDRs.
  start kube-controller-manager "${K8S_BIN}/kube-controller-manager" --kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
    --authentication-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" --authorization-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "${KCM_PORT}" --leader-elect=false --controllers '*,-node-ipam-controller' \
    --service-account-private-key-file "${PKI}/sa.key" --root-ca-file "${PKI}/ca.crt" --use-service-account-credentials \
    --cluster-signing-cert-file "${PKI}/ca.crt" --cluster-signing-key-file "${PKI}/ca.key" --profiling=false
  start kube-scheduler "${K8S_BIN}/kube-scheduler" --kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
    --authentication-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" --authorization-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "${SCHEDULER_PORT}" --leader-elect=false --profiling=false
}

# The kubelet's cgroupRoot must exist in every cgroup v1 hierarchy (hybrid cgroups here: the
# unified one holds only hugetlb). Pods then live under /agentry/kubepods, apart from anything else.
cgroups() {
  for h in /sys/fs/cgroup/*/; do
    [[ "${h}" == */unified/ ]] && continue
    mkdir -p "${h}${CGROUP_ROOT#/}"
    if [[ -f "${h}cpuset.cpus" ]]; then
      cat "${h}cpuset.cpus" >"${h}${CGROUP_ROOT#/}/cpuset.cpus"
      cat "${h}cpuset.mems" >"${h}${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
}

node_up() {
  cgroups
  mkdir -p "${CLUSTER_DIR}/kubelet" "${CLUSTER_DIR}/pod-logs"
  # The node's resolv.conf, which CoreDNS itself (dnsPolicy Default) and host-network pods get,
  # names no upstream resolver; every other pod gets nameserver 10.204.0.10 (clusterDNS).
  : >"${CLUSTER_DIR}/resolv.conf"
  write_if_changed "${CLUSTER_DIR}/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${HOST_IP}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${KUBELET_HEALTHZ_PORT}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${PKI}/kubelet-serving.crt
tlsPrivateKeyFile: ${PKI}/kubelet-serving.key
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
cgroupDriver: cgroupfs
cgroupRoot: ${CGROUP_ROOT}
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
resolvConf: ${CLUSTER_DIR}/resolv.conf
clusterDNS: [${DNS_SERVICE_IP}]
clusterDomain: cluster.local
podLogsDir: ${CLUSTER_DIR}/pod-logs
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
YAML
  if [[ ${CHANGED} == 1 ]] && running kubelet; then
    # The kubelet reads its configuration once (e.g. clusterDNS added to an existing cluster).
    log "kubelet configuration changed: restarting the kubelet"
    kill -TERM "$(cat "${PIDS}/kubelet")"
    for _ in $(seq 1 100); do running kubelet || break; sleep 0.1; done
    running kubelet && kill -KILL "$(cat "${PIDS}/kubelet")"
    rm -f "${PIDS}/kubelet"
    KUBELET_RESTARTED=1
  fi
  start kubelet "${K8S_BIN}/kubelet" --config "${CLUSTER_DIR}/kubelet.yaml" --kubeconfig "${CLUSTER_DIR}/node.kubeconfig" \
    --root-dir "${CLUSTER_DIR}/kubelet" --cert-dir "${PKI}" --hostname-override "${NODE_NAME}" --node-ip "${HOST_IP}" --v 1
  write_if_changed "${CLUSTER_DIR}/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: ${CLUSTER_DIR}/proxy.kubeconfig}
hostnameOverride: ${NODE_NAME}
bindAddress: ${HOST_IP}
clusterCIDR: ${POD_CIDR}
metricsBindAddress: 127.0.0.1:${PROXY_METRICS_PORT}
healthzBindAddress: 127.0.0.1:${PROXY_HEALTHZ_PORT}
nodePortAddresses: ["${HOST_IP}/32"]
iptables: {localhostNodePorts: false, masqueradeAll: true}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "${K8S_BIN}/kube-proxy" --config "${CLUSTER_DIR}/kube-proxy.yaml"
}

# NetworkPolicy: the bridge CNI plugin ignores it, so kube-router's firewall controller (alone:
# no routing, no service proxy, no CNI) enforces it with iptables chains and ipsets per pod,
# hooked into FORWARD, INPUT and OUTPUT. Pod-to-pod traffic on the bridge is bridged, not
# routed: br_netfilter with bridge-nf-call-iptables hands it to those chains. Teardown restores
# both sysctls and runs kube-router --cleanup-config.
network_policies_up() {
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null ||
    { log "br_netfilter is missing: NetworkPolicy cannot see bridged pod traffic"; exit 1; }
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  kc apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agentry-dev:kube-router}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes, services, endpoints], verbs: [get, list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agentry-dev:kube-router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agentry-dev:kube-router}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}]
YAML
  start kube-router "${KUBE_ROUTER_BIN}" --kubeconfig "${CLUSTER_DIR}/kube-router.kubeconfig" \
    --hostname-override "${NODE_NAME}" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --service-cluster-ip-range "${SERVICE_CIDR}" --health-port 0 --metrics-port 0
  wait_for "kube-router enforcing NetworkPolicy" 60 iptables -S KUBE-ROUTER-FORWARD
}

# Cluster DNS, as a real cluster's add-on: CoreDNS in kube-system behind the kube-dns Service.
# Waits until the Service answers from this host (kube-proxy's rules take the host to the
# ClusterIP too), with busybox's nslookup (busybox-static is in the package list).
dns_up() {
  kc apply -f "${REPO_ROOT}/hack/coredns.yaml" >/dev/null
  if [[ -n "${COREDNS_IMAGE_CHANGED:-}" ]]; then
    kc -n kube-system rollout restart deployment/coredns >/dev/null # the same tag, a new image
  fi
  if [[ -n "${KUBELET_RESTARTED:-}" ]]; then
    # Pods keep the resolv.conf they started with; the manager (a Deployment) comes back with
    # the cluster's. Sessions' runner pods run to completion and are left alone.
    kc -n agentry-system delete pods --all --wait=false >/dev/null 2>&1 || true
  fi
  wait_for "cluster DNS answering on ${DNS_SERVICE_IP}" 120 dns_answers
}
dns_answers() {
  grep -q "Address:.*${SERVICE_IP}\$" <<<"$(timeout 2 busybox nslookup kubernetes.default.svc.cluster.local "${DNS_SERVICE_IP}" 2>/dev/null)"
}

node_ready() { [[ "$(kc get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }

install_packages
"${REPO_ROOT}/hack/build-cluster-binaries.sh"
"${REPO_ROOT}/hack/build-network-policies.sh"
"${REPO_ROOT}/hack/build-coredns.sh"
KUBE_ROUTER_BIN="${REPO_ROOT}/bin/kube-router"
# A machine that stopped without hack/cluster-down.sh (a reboot, a VM or container restored from
# a snapshot) leaves pid files naming processes that are gone, and an etcd holding the old
# cluster's pods. With none of the cluster's processes running, that state is cleared first and
# the cluster comes up fresh; a cluster that is partly up is completed as before.
stale_state() {
  [[ -d "${CLUSTER_DIR}" || -d "${CLUSTER_RUN}" ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do running "${c}" && return 1; done
  return 0
}
if stale_state; then
  log "${CLUSTER_DIR} holds a cluster none of whose processes is running (the machine stopped without hack/cluster-down.sh): clearing it"
  "${REPO_ROOT}/hack/cluster-down.sh"
fi
mkdir -p "${CLUSTER_DIR}" "${LOGS}" "${PIDS}"
log "binaries ready after $(elapsed)"
pki
network
save_sysctls
# A pod's traffic to a Service's ClusterIP is DNATed on this host to another pod on the
# bridge, so it must be forwarded back into the bridge. The FORWARD rule set up in network()
# still drops anything a pod sends that would leave the bridge; teardown restores the value.
sysctl -qw net.ipv4.ip_forward=1
containerd_up
coredns_image() { "${CTR[@]}" images ls name==docker.io/agentry/coredns:dev 2>/dev/null | awk 'NR==2 {print $3}'; }
coredns_before=$(coredns_image)
"${REPO_ROOT}/hack/images.sh" pause coredns
[[ -n "${coredns_before}" && "${coredns_before}" != "$(coredns_image)" ]] && COREDNS_IMAGE_CHANGED=1
control_plane_up
node_up
wait_for "node ${NODE_NAME} Ready" 120 node_ready
network_policies_up
dns_up
wait_for "ServiceAccount default/default" 60 kc -n default get serviceaccount default
wait_for "ConfigMap default/kube-root-ca.crt" 60 kc -n default get configmap kube-root-ca.crt
echo "$(elapsed)" >"${CLUSTER_DIR}/up-seconds"
log "cluster up in $(elapsed): export KUBECONFIG=${KUBECONFIG_ADMIN}"
