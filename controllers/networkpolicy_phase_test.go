package controllers

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

var phaseTestNetwork = NetworkConfig{
	GatewayNamespace: "agentry-system",
	GatewayPodLabels: map[string]string{"app": "agentry-gateway"},
	GatewayPort:      8080,
	DNSNamespace:     "kube-system",
	DNSPodLabels:     map[string]string{"k8s-app": "kube-dns"},
}

// egressSummary flattens a policy's egress into "peer port/proto" strings, the property the
// tests are about.
func egressSummary(np *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, r := range np.Spec.Egress {
		for _, to := range r.To {
			peer := ""
			switch {
			case to.IPBlock != nil:
				peer = to.IPBlock.CIDR
			case to.NamespaceSelector != nil:
				peer = "ns=" + to.NamespaceSelector.MatchLabels[corev1.LabelMetadataName]
			}
			for _, p := range r.Ports {
				out = append(out, peer+" "+p.Port.String()+"/"+string(*p.Protocol))
			}
		}
	}
	return out
}

func TestNetworkPolicyPhases(t *testing.T) {
	resolved := map[string][]net.IP{
		"git.example.com": {net.ParseIP("192.0.2.10")},
		"pkg.go.dev":      {net.ParseIP("192.0.2.20"), net.ParseIP("2001:db8::20")},
	}
	cases := map[string]struct {
		session *v1.AgentSession
		phase   networkPhase
		want    []string
	}{
		"checkout: DNS, gateway, repository host, spec egress": {
			session: testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").
				Egress(v1.EgressRule{Host: "pkg.go.dev"}).Egress(v1.EgressRule{CIDR: "198.51.100.0/24", Ports: []int32{8443}}).Obj(),
			phase: phaseCheckout,
			want: []string{
				"ns=kube-system 53/UDP", "ns=kube-system 53/TCP", "ns=agentry-system 8080/TCP",
				"192.0.2.10/32 443/TCP", "192.0.2.20/32 443/TCP", "2001:db8::20/128 443/TCP", "198.51.100.0/24 8443/TCP",
			},
		},
		"agent: gateway and spec egress only, no DNS, no repository host": {
			session: testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").
				Egress(v1.EgressRule{Host: "pkg.go.dev"}).Egress(v1.EgressRule{CIDR: "198.51.100.0/24", Ports: []int32{8443}}).Obj(),
			phase: phaseAgent,
			want: []string{
				"ns=agentry-system 8080/TCP",
				"192.0.2.20/32 443/TCP", "2001:db8::20/128 443/TCP", "198.51.100.0/24 8443/TCP",
			},
		},
		"checkout: repository by address": {
			session: testutil.Session("s", "ns").UID("u").Repo("http://10.203.0.1:18088/sample.git").Obj(),
			phase:   phaseCheckout,
			want:    []string{"ns=kube-system 53/UDP", "ns=kube-system 53/TCP", "ns=agentry-system 8080/TCP", "10.203.0.1/32 18088/TCP"},
		},
		"agent: repository by address is closed too": {
			session: testutil.Session("s", "ns").UID("u").Repo("http://10.203.0.1:18088/sample.git").Obj(),
			phase:   phaseAgent,
			want:    []string{"ns=agentry-system 8080/TCP"},
		},
		"agent: a repository host also listed in spec egress stays, as the spec asks": {
			session: testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").
				Egress(v1.EgressRule{Host: "git.example.com"}).Obj(),
			phase: phaseAgent,
			want:  []string{"ns=agentry-system 8080/TCP", "192.0.2.10/32 443/TCP"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			np := buildPhaseNetworkPolicy(tc.session, phaseTestNetwork, resolved, tc.phase)
			if diff := cmp.Diff(tc.want, egressSummary(np)); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
			if len(np.Spec.Ingress) != 0 || len(np.Spec.PolicyTypes) != 2 {
				t.Errorf("policy must deny all ingress and govern egress: %+v", np.Spec)
			}
		})
	}
}

func TestBuildNetworkPolicyIsTheCheckoutPhase(t *testing.T) {
	s := testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").Obj()
	resolved := map[string][]net.IP{"git.example.com": {net.ParseIP("192.0.2.10")}}
	if diff := cmp.Diff(buildPhaseNetworkPolicy(s, phaseTestNetwork, resolved, phaseCheckout), buildNetworkPolicy(s, phaseTestNetwork, resolved)); diff != "" {
		t.Errorf("(-checkout +buildNetworkPolicy):\n%s", diff)
	}
}

func TestNetworkPolicyPhaseFromPod(t *testing.T) {
	terminated := func(name string, code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	running := corev1.ContainerStatus{Name: contract.ContainerCheckout, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	cases := map[string]struct {
		pod  *corev1.Pod
		want networkPhase
	}{
		"no pod yet":                  {pod: nil, want: phaseCheckout},
		"pod without statuses":        {pod: &corev1.Pod{}, want: phaseCheckout},
		"checkout running":            {pod: &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{running}}}, want: phaseCheckout},
		"checkout failed":             {pod: &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{terminated(contract.ContainerCheckout, 1)}}}, want: phaseCheckout},
		"checkout succeeded":          {pod: &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{terminated(contract.ContainerCheckout, 0)}}}, want: phaseAgent},
		"another init container done": {pod: &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{terminated("other", 0), running}}}, want: phaseCheckout},
		"a regular container named checkout does not count": {pod: &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{terminated(contract.ContainerCheckout, 0)}}}, want: phaseCheckout},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := networkPolicyPhase(tc.pod); got != tc.want {
				t.Errorf("networkPolicyPhase = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRunnerHostAliases(t *testing.T) {
	resolved := map[string][]net.IP{
		"pkg.go.dev":       {net.ParseIP("192.0.2.20"), net.ParseIP("2001:db8::20")},
		"proxy.golang.org": {net.ParseIP("192.0.2.20")},
		"git.example.com":  {net.ParseIP("192.0.2.10")},
	}
	cases := map[string]struct {
		session    *v1.AgentSession
		gatewayURL string
		clusterIP  string
		want       []corev1.HostAlias
	}{
		"gateway only": {
			session:    testutil.Session("s", "ns").Repo("https://git.example.com/r.git").Obj(),
			gatewayURL: "http://agentry-gateway.agentry-system.svc:8080",
			clusterIP:  "10.204.0.50",
			want:       []corev1.HostAlias{{IP: "10.204.0.50", Hostnames: []string{"agentry-gateway.agentry-system.svc"}}},
		},
		"gateway by address needs no entry; the repository host gets none": {
			session:    testutil.Session("s", "ns").Repo("https://git.example.com/r.git").Obj(),
			gatewayURL: "http://10.204.0.50:8080",
			clusterIP:  "10.204.0.50",
			want:       nil,
		},
		"egress hosts share an address; unresolved and CIDR entries get none": {
			session: testutil.Session("s", "ns").Repo("https://git.example.com/r.git").
				Egress(v1.EgressRule{Host: "proxy.golang.org"}).Egress(v1.EgressRule{Host: "pkg.go.dev"}).
				Egress(v1.EgressRule{Host: "unresolved.example"}).Egress(v1.EgressRule{CIDR: "198.51.100.0/24"}).Obj(),
			gatewayURL: "http://agentry-gateway.agentry-system.svc:8080",
			clusterIP:  "10.204.0.50",
			want: []corev1.HostAlias{
				{IP: "10.204.0.50", Hostnames: []string{"agentry-gateway.agentry-system.svc"}},
				{IP: "192.0.2.20", Hostnames: []string{"pkg.go.dev", "proxy.golang.org"}},
				{IP: "2001:db8::20", Hostnames: []string{"pkg.go.dev"}},
			},
		},
		"no ClusterIP known: no gateway entry": {
			session:    testutil.Session("s", "ns").Obj(),
			gatewayURL: "http://agentry-gateway.agentry-system.svc:8080",
			clusterIP:  "",
			want:       nil,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := runnerHostAliases(tc.session, tc.gatewayURL, tc.clusterIP, resolved)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("hostAliases (-want +got):\n%s", diff)
			}
		})
	}
}

// The agent-phase policy is rebuilt from the addresses the checkout policy recorded, not from a
// new lookup: the same pins as the pod's hostAliases.
func TestAgentPhaseRebuildsFromRecordedAddresses(t *testing.T) {
	s := testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").
		Egress(v1.EgressRule{Host: "pkg.go.dev"}).Obj()
	resolved := map[string][]net.IP{
		"git.example.com": {net.ParseIP("192.0.2.10")},
		"pkg.go.dev":      {net.ParseIP("192.0.2.20"), net.ParseIP("2001:db8::20")},
		"unrelated.test":  {net.ParseIP("192.0.2.99")},
	}
	checkout := buildNetworkPolicy(s, phaseTestNetwork, resolved)
	if got, want := checkout.Annotations[AnnotationResolvedAddresses], `{"git.example.com":["192.0.2.10"],"pkg.go.dev":["192.0.2.20","2001:db8::20"]}`; got != want {
		t.Errorf("annotation = %s, want %s", got, want)
	}
	rebuilt := buildPhaseNetworkPolicy(s, phaseTestNetwork, resolvedFromPolicy(checkout), phaseAgent)
	direct := buildPhaseNetworkPolicy(s, phaseTestNetwork, resolved, phaseAgent)
	if diff := cmp.Diff(direct, rebuilt); diff != "" {
		t.Errorf("rebuilt agent policy differs (-direct +rebuilt):\n%s", diff)
	}
	for name, annotation := range map[string]string{"missing": "", "garbage": "{", "bad address": `{"pkg.go.dev":["not-an-ip"]}`} {
		np := checkout.DeepCopy()
		np.Annotations = map[string]string{AnnotationResolvedAddresses: annotation}
		want := []string{"ns=agentry-system 8080/TCP"}
		if diff := cmp.Diff(want, egressSummary(buildPhaseNetworkPolicy(s, phaseTestNetwork, resolvedFromPolicy(np), phaseAgent))); diff != "" {
			t.Errorf("%s: an unreadable record must narrow, not widen (-want +got):\n%s", name, diff)
		}
	}
}
