# Sourced by hack/cluster-*.sh: where the dev/e2e cluster lives. Every name, path, port and
# address is its own, so the cluster cannot collide with anything else on a shared machine
# (another containerd, another kubelet, envtest control planes, a default cni0 bridge).
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
K8S_BIN="${REPO_ROOT}/bin/k8s/${K8S_VERSION}-linux-amd64"
CLUSTER_DIR="${AGENTRY_CLUSTER_DIR:-/var/lib/agentry-cluster}"
CLUSTER_RUN="${AGENTRY_CLUSTER_RUN:-/run/agentry-cluster}"
NODE_NAME="agentry-dev"
BRIDGE="agentry0"
POD_CIDR="10.203.0.0/16"
HOST_IP="10.203.0.1"          # the bridge's address: node IP, apiserver, and the host as seen from pods
SERVICE_CIDR="10.204.0.0/16"
SERVICE_IP="10.204.0.1"       # the kubernetes Service
DNS_SERVICE_IP="10.204.0.10"  # the kube-dns Service (CoreDNS, hack/coredns.yaml)
ETCD_PORT=12379
ETCD_PEER_PORT=12380
APISERVER_PORT=16443
KUBELET_PORT=11250
KUBELET_HEALTHZ_PORT=11248
KCM_PORT=11257
SCHEDULER_PORT=11259
PROXY_METRICS_PORT=11249
PROXY_HEALTHZ_PORT=11256
CGROUP_ROOT="/agentry"
CONTAINERD_SOCK="${CLUSTER_RUN}/containerd/containerd.sock"
PKI="${CLUSTER_DIR}/pki"
LOGS="${CLUSTER_DIR}/logs"
PIDS="${CLUSTER_RUN}/pids"
KUBECONFIG_ADMIN="${CLUSTER_DIR}/admin.kubeconfig"
CTR=(ctr --address "${CONTAINERD_SOCK}" -n k8s.io)
# The order processes start in; teardown stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf '[cluster] %s\n' "$*" >&2; }
