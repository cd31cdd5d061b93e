package controllers

import (
	"encoding/json"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
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
	return append(hosts, specEgressHosts(s)...)
}

// specEgressHosts lists the host names in spec.network.egress.
func specEgressHosts(s *v1.AgentSession) []egressHost {
	return ruleHosts(s.Spec.Network.Egress)
}

// ruleHosts lists the host names in egress rules.
func ruleHosts(rules []v1.EgressRule) []egressHost {
	var hosts []egressHost
	for _, e := range rules {
		if e.Host != "" {
			hosts = append(hosts, egressHost{host: e.Host, ports: portsOrDefault(e.Ports)})
		}
	}
	return hosts
}

// runnerHostAliases returns the runner pod's /etc/hosts entries, so the runner and its tools
// resolve their destinations once the agent-phase policy has closed DNS: the gateway's host
// name (from gatewayURL) to the gateway Service's ClusterIP, and each spec.network.egress host
// to the addresses resolved for its NetworkPolicy (the same pinned addresses the policy
// allows). Host names that are IP literals need no entry; unresolved hosts get none. Sorted by
// address, names sorted within one.
func runnerHostAliases(s *v1.AgentSession, gatewayURL, gatewayClusterIP string, resolved map[string][]net.IP) []corev1.HostAlias {
	names := map[string]map[string]bool{}
	add := func(ip, host string) {
		if host == "" || net.ParseIP(host) != nil || net.ParseIP(ip) == nil {
			return
		}
		if names[ip] == nil {
			names[ip] = map[string]bool{}
		}
		names[ip][strings.ToLower(strings.TrimSuffix(host, "."))] = true
	}
	if u, err := url.Parse(gatewayURL); err == nil {
		add(gatewayClusterIP, u.Hostname())
	}
	for _, h := range specEgressHosts(s) {
		for _, ip := range resolved[h.host] {
			add(ip.String(), h.host)
		}
	}
	ips := make([]string, 0, len(names))
	for ip := range names {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	var aliases []corev1.HostAlias
	for _, ip := range ips {
		a := corev1.HostAlias{IP: ip}
		for n := range names[ip] {
			a.Hostnames = append(a.Hostnames, n)
		}
		sort.Strings(a.Hostnames)
		aliases = append(aliases, a)
	}
	return aliases
}

func portsOrDefault(p []int32) []int32 {
	if len(p) == 0 {
		return []int32{443}
	}
	return p
}

// AnnotationResolvedAddresses on a session's NetworkPolicy records, as JSON {host: [ip, ...]},
// the addresses its host names resolved to at session start, so the policy can be rebuilt for
// the agent phase with the same pins (and the pod's hostAliases) rather than a new lookup.
const AnnotationResolvedAddresses = "agentry.dev/resolved-addresses"

// resolvedFromPolicy returns the addresses recorded on a policy by buildPhaseNetworkPolicy;
// nil when there are none or the annotation is unreadable (the rebuilt policy then simply
// lacks those destinations: narrower, never wider).
func resolvedFromPolicy(np *networkingv1.NetworkPolicy) map[string][]net.IP {
	var recorded map[string][]string
	if err := json.Unmarshal([]byte(np.Annotations[AnnotationResolvedAddresses]), &recorded); err != nil {
		return nil
	}
	resolved := map[string][]net.IP{}
	for host, ips := range recorded {
		for _, raw := range ips {
			if ip := net.ParseIP(raw); ip != nil {
				resolved[host] = append(resolved[host], ip)
			}
		}
	}
	return resolved
}

// networkPhase is the part of a run a session's NetworkPolicy is written for.
type networkPhase string

const (
	// phaseCheckout lasts until the checkout init container has succeeded: the pod needs
	// cluster DNS and the repository host.
	phaseCheckout networkPhase = "checkout"
	// phaseSetup lasts while spec.setup runs, after checkout: cluster DNS, the gateway, the
	// AgentPolicy's setup egress and spec.network.egress; no repository host.
	phaseSetup networkPhase = "setup"
	// phaseAgent is the rest of the run: the agent reaches the session gateway and the
	// destinations in spec.network.egress, nothing else. No DNS (data leaves through lookups),
	// no repository host (the checkout is done); names resolve through hostAliases.
	phaseAgent networkPhase = contract.EgressPhaseAgent
)

// networkPolicyPhase returns the phase a session's NetworkPolicy should be in, from its runner
// pod: agent once the checkout init container has terminated with exit code 0, checkout until
// then (including when there is no pod yet).
func networkPolicyPhase(pod *corev1.Pod) networkPhase {
	if pod == nil {
		return phaseCheckout
	}
	checkedOut, setupDone := false, false
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name == contract.ContainerCheckout && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
			checkedOut = true
		}
		if cs.Name == contract.ContainerSetup && cs.State.Terminated != nil {
			setupDone = true
		}
	}
	switch {
	case !checkedOut:
		return phaseCheckout
	case hasSetupContainer(pod) && !setupDone:
		return phaseSetup
	}
	return phaseAgent
}

// buildNetworkPolicy returns the session's NetworkPolicy for the checkout phase; see
// buildPhaseNetworkPolicy.
func buildNetworkPolicy(s *v1.AgentSession, cfg NetworkConfig, resolved map[string][]net.IP) *networkingv1.NetworkPolicy {
	return buildPhaseNetworkPolicy(s, cfg, resolved, phaseCheckout)
}

// buildPhaseNetworkPolicy returns the session's NetworkPolicy: no ingress at all; egress only
// to the session gateway and the destinations in spec.network.egress, plus, in the checkout
// phase, cluster DNS and the repository. Host names were resolved by the caller into resolved
// (NetworkPolicy has no notion of names), which pins them to the addresses they had at
// session start.
func buildPhaseNetworkPolicy(s *v1.AgentSession, cfg NetworkConfig, resolved map[string][]net.IP, phase networkPhase) *networkingv1.NetworkPolicy {
	return buildSessionNetworkPolicy(s, cfg, resolved, nil, phase)
}

// buildSessionNetworkPolicy is buildPhaseNetworkPolicy with the AgentPolicies' setup egress
// (used only when the session has spec.setup): open in the checkout phase too, which runs
// no repository code, so each phase is narrower than the one before it.
func buildSessionNetworkPolicy(s *v1.AgentSession, cfg NetworkConfig, resolved map[string][]net.IP, setupEgress []v1.EgressRule, phase networkPhase) *networkingv1.NetworkPolicy {
	if s.Spec.Setup == nil {
		setupEgress = nil
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(proto), Port: ptr.To(intstr.FromInt32(n))}
	}
	nsSelector := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	gateway := networkingv1.NetworkPolicyEgressRule{
		To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSelector(cfg.GatewayNamespace), PodSelector: &metav1.LabelSelector{MatchLabels: cfg.GatewayPodLabels}}},
		Ports: []networkingv1.NetworkPolicyPort{port(tcp, cfg.GatewayPort)},
	}
	rules := []networkingv1.NetworkPolicyEgressRule{gateway}
	if phase != phaseAgent {
		dns := networkingv1.NetworkPolicyEgressRule{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSelector(cfg.DNSNamespace), PodSelector: &metav1.LabelSelector{MatchLabels: cfg.DNSPodLabels}}},
			Ports: []networkingv1.NetworkPolicyPort{port(udp, 53), port(tcp, 53)},
		}
		rules = []networkingv1.NetworkPolicyEgressRule{dns, gateway}
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
	hosts := egressHosts(s)
	if phase != phaseCheckout {
		hosts = specEgressHosts(s)
	} else if h, p := repositoryEndpoint(s.Spec.Repository.URL); h != "" {
		if ip := net.ParseIP(h); ip != nil {
			addCIDRs([]string{hostCIDR(ip)}, []int32{p})
		}
	}
	egress := s.Spec.Network.Egress
	if phase != phaseAgent {
		hosts = append(hosts, ruleHosts(setupEgress)...)
		egress = append(slices.Clone(egress), setupEgress...)
	}
	for _, h := range hosts {
		var cidrs []string
		for _, ip := range resolved[h.host] {
			cidrs = append(cidrs, hostCIDR(ip))
		}
		addCIDRs(cidrs, h.ports)
	}
	for _, e := range egress {
		if e.CIDR != "" {
			addCIDRs([]string{e.CIDR}, portsOrDefault(e.Ports))
		}
	}
	// Only the session's own host names are recorded, in every phase, so a rebuild keeps them.
	recorded := map[string][]string{}
	for _, h := range append(egressHosts(s), ruleHosts(setupEgress)...) {
		for _, ip := range resolved[h.host] {
			recorded[h.host] = append(recorded[h.host], ip.String())
		}
	}
	annotations := map[string]string{AnnotationEgressPhase: string(phase)}
	if len(recorded) > 0 {
		b, _ := json.Marshal(recorded) // a map of strings always marshals; keys come out sorted
		annotations[AnnotationResolvedAddresses] = string(b)
	}
	if len(setupEgress) > 0 {
		b, _ := json.Marshal(setupEgress) // plain strings and numbers always marshal
		annotations[AnnotationSetupEgress] = string(b)
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: podName(s), Namespace: s.Namespace, Labels: sessionLabels(s), Annotations: annotations},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{contract.LabelSessionUID: string(s.UID)}},
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
