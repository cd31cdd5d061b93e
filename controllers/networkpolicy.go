package controllers

import (
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// NetworkConfig is what the operator decides about runner pods' network.
type NetworkConfig struct {
	// GatewayNamespace and GatewayPodLabels select the pods serving the session gateway.
	GatewayNamespace string
	GatewayPodLabels map[string]string
	// GatewayPort is the gateway's container port.
	GatewayPort int32
	// DNSNamespace and DNSPodLabels select the cluster DNS pods.
	DNSNamespace string
	DNSPodLabels map[string]string
}

// egressHost is a host name the policy must reach, with the ports it needs.
type egressHost struct {
	host  string
	ports []int32
}

// repositoryEndpoint returns the repository's host and port from its URL.
func repositoryEndpoint(raw string) (host string, port int32) {
	if !strings.Contains(raw, "://") {
		// scp-like: git@host:org/repo.git
		at := strings.IndexByte(raw, '@')
		colon := strings.IndexByte(raw, ':')
		if colon > at {
			return raw[at+1 : colon], 22
		}
		return "", 0
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0
	}
	defaults := map[string]int32{"https": 443, "http": 80, "ssh": 22, "git": 9418}
	port = defaults[u.Scheme]
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			port = int32(n)
		}
	}
	return u.Hostname(), port
}

// egressHosts lists the host names a session's policy needs resolved.
func egressHosts(s *v1.AgentSession) []egressHost {
	var hosts []egressHost
	if h, p := repositoryEndpoint(s.Spec.Repository.URL); h != "" && net.ParseIP(h) == nil {
		hosts = append(hosts, egressHost{host: h, ports: []int32{p}})
	}
	for _, e := range s.Spec.Network.Egress {
		if e.Host != "" {
			hosts = append(hosts, egressHost{host: e.Host, ports: portsOrDefault(e.Ports)})
		}
	}
	return hosts
}

func portsOrDefault(p []int32) []int32 {
	if len(p) == 0 {
		return []int32{443}
	}
	return p
}

// buildNetworkPolicy returns the session's NetworkPolicy: no ingress at all; egress only to
// cluster DNS, the session gateway, the repository and the destinations in
// spec.network.egress. Host names were resolved by the caller into resolved (NetworkPolicy
// has no notion of names), which pins them to the addresses they had at session start.
func buildNetworkPolicy(s *v1.AgentSession, cfg NetworkConfig, resolved map[string][]net.IP) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(proto), Port: ptr.To(intstr.FromInt32(n))}
	}
	nsSelector := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	rules := []networkingv1.NetworkPolicyEgressRule{
		{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSelector(cfg.DNSNamespace), PodSelector: &metav1.LabelSelector{MatchLabels: cfg.DNSPodLabels}}},
			Ports: []networkingv1.NetworkPolicyPort{port(udp, 53), port(tcp, 53)},
		},
		{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSelector(cfg.GatewayNamespace), PodSelector: &metav1.LabelSelector{MatchLabels: cfg.GatewayPodLabels}}},
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, cfg.GatewayPort)},
		},
	}
	addCIDRs := func(cidrs []string, ports []int32) {
		if len(cidrs) == 0 {
			return
		}
		sort.Strings(cidrs)
		r := networkingv1.NetworkPolicyEgressRule{}
		for _, c := range cidrs {
			r.To = append(r.To, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
		}
		for _, p := range ports {
			r.Ports = append(r.Ports, port(tcp, p))
		}
		rules = append(rules, r)
	}
	if h, p := repositoryEndpoint(s.Spec.Repository.URL); h != "" {
		if ip := net.ParseIP(h); ip != nil {
			addCIDRs([]string{hostCIDR(ip)}, []int32{p})
		}
	}
	for _, h := range egressHosts(s) {
		var cidrs []string
		for _, ip := range resolved[h.host] {
			cidrs = append(cidrs, hostCIDR(ip))
		}
		addCIDRs(cidrs, h.ports)
	}
	for _, e := range s.Spec.Network.Egress {
		if e.CIDR != "" {
			addCIDRs([]string{e.CIDR}, portsOrDefault(e.Ports))
		}
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: podName(s), Namespace: s.Namespace, Labels: sessionLabels(s)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelSessionUID: string(s.UID)}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Egress:      rules,
		},
	}
}

func hostCIDR(ip net.IP) string {
	if ip.To4() != nil {
		return ip.String() + "/32"
	}
	return ip.String() + "/128"
}
