//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// NetworkPolicy is enforced on the dev node (kube-router's firewall beside the bridge CNI), and
// a session's egress narrows when checkout ends. Plain pods from the runner image stand in for
// the cluster DNS, the repository and an allowed spec.network.egress destination; a client pod
// carries the policy. The policies applied are the shapes controllers/networkpolicy.go builds
// for the checkout and agent phases, with the DNS peer pointed at this namespace. Each
// destination is first shown reachable without a policy, so "blocked" means the policy.
func TestEgressPoliciesAreEnforced(t *testing.T) {
	const (
		repoPort, blockedPort, egressPort = "9001", "9002", "9003"
		policy                            = "egress-client"
	)
	gw, err := url.Parse(env.gatewayURL)
	if err != nil || gw.Port() == "" {
		t.Fatalf("gateway URL %q: %v", env.gatewayURL, err)
	}
	// The gateway Service's ClusterIP and port, where runner pods' hostAliases send its name
	// (this test's pods have no such alias, and the agent shape closes DNS).
	clusterIP, err := kubectl("-n", operatorNS, "get", "service", strings.Split(gw.Hostname(), ".")[0], "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	gateway := net.JoinHostPort(clusterIP, gw.Port())

	servers := map[string]string{
		// Port 53 needs the pod's unprivileged port range opened: a safe, namespaced sysctl.
		"egress-dns":    "exec httpd -f -p 53 -h /tmp",
		"egress-target": "httpd -p " + repoPort + " -h /tmp && httpd -p " + blockedPort + " -h /tmp && exec httpd -f -p " + egressPort + " -h /tmp",
		"egress-client": "exec sleep 3600",
	}
	labels := map[string]string{"egress-dns": "k8s-app: kube-dns", "egress-target": "app: egress-target", "egress-client": "agentry-e2e/egress: client, " + contract.LabelSessionUID + ": e2e-egress-client"} // the manager admits runner pods only
	for name, script := range servers {
		sysctls := ""
		if name == "egress-dns" {
			sysctls = `, sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "0"}]`
		}
		if _, err := kubectlIn(manifest(`
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}%s}
  containers:
  - name: main
    image: agentry/runner:dev
    imagePullPolicy: Never
    command: [/bin/sh, -c, %q]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}`,
			name, namespace, labels[name], sysctls, script), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		kubectl("-n", namespace, "delete", "networkpolicy", policy, "--ignore-not-found", "--wait=false")                               //nolint:errcheck // best effort
		kubectl("-n", namespace, "delete", "pod", "egress-dns", "egress-target", "egress-client", "--ignore-not-found", "--wait=false") //nolint:errcheck // best effort
	})
	if _, err := kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/egress-dns", "pod/egress-target", "pod/egress-client", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	podIP := func(name string) string {
		out, err := kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.podIP}")
		if err != nil || net.ParseIP(out) == nil {
			t.Fatalf("pod %s IP %q: %v", name, out, err)
		}
		return out
	}
	dnsIP, targetIP := podIP("egress-dns"), podIP("egress-target")

	// The host as seen from pods, on a port no policy allows: a listener this test opens.
	hostAddr := hostListener(t)

	dests := map[string]string{
		"dns":            net.JoinHostPort(dnsIP, "53"),
		"repository":     net.JoinHostPort(targetIP, repoPort),
		"blocked":        net.JoinHostPort(targetIP, blockedPort),
		"egress":         net.JoinHostPort(targetIP, egressPort),
		"gateway":        gateway,
		"host (blocked)": hostAddr,
	}
	reach := func(addr string) bool { return reachFrom(t, "egress-client", "main", addr) }
	expect := func(phase string, want map[string]bool) {
		t.Helper()
		for what, addr := range dests {
			if got := reach(addr); got != want[what] {
				t.Errorf("%s: %s (%s) reachable = %v, want %v", phase, what, addr, got, want[what])
			}
		}
	}
	// waitFor polls until addr's reachability is want, and returns how long that took.
	waitFor := func(addr string, want bool) time.Duration {
		t.Helper()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if testutil.PollEvery(ctx, 100*time.Millisecond, testutil.Holds(func() bool { return reach(addr) == want })) != nil {
			t.Fatalf("%s reachable still %v after 60s", addr, !want)
		}
		return time.Since(start)
	}

	expect("no policy", map[string]bool{"dns": true, "repository": true, "blocked": true, "egress": true, "gateway": true, "host (blocked)": true})

	rule := func(peer, port string) string {
		return "  - to: [" + peer + "]\n    ports: [{protocol: TCP, port: " + port + "}]\n"
	}
	// The gateway rule names the manager's pods and its --gateway-port (the container port).
	const gatewayPodPort = "8443"
	gatewayRule := rule(`{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: `+operatorNS+`}}, podSelector: {matchLabels: {app.kubernetes.io/name: agentry-manager}}}`, gatewayPodPort)
	dnsRule := "  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: " + namespace + "}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]\n" +
		"    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]\n"
	repoRule := rule("{ipBlock: {cidr: "+targetIP+"/32}}", repoPort)
	egressRule := rule("{ipBlock: {cidr: "+targetIP+"/32}}", egressPort)
	apply := func(egress string) {
		t.Helper()
		if _, err := kubectlIn(manifest(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: %s}
spec:
  podSelector: {matchLabels: {agentry-e2e/egress: client}}
  policyTypes: [Ingress, Egress]
  egress:
%s`, policy, namespace, egress), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}

	// Checkout phase: DNS, gateway, repository, spec egress.
	apply(dnsRule + gatewayRule + repoRule + egressRule)
	reportTiming(t, "NetworkPolicy created until a blocked port is refused", waitFor(dests["blocked"], false))
	expect("checkout phase", map[string]bool{"dns": true, "repository": true, "gateway": true, "egress": true})

	// Agent phase: the same policy updated in place, as the reconciler does when checkout ends.
	apply(gatewayRule + egressRule)
	reportTiming(t, "NetworkPolicy narrowed until DNS is refused", waitFor(dests["dns"], false))
	expect("agent phase", map[string]bool{"gateway": true, "egress": true})

	// And back off: deleting the policy opens everything again.
	if _, err := kubectl("-n", namespace, "delete", "networkpolicy", policy); err != nil {
		t.Fatal(err)
	}
	reportTiming(t, "NetworkPolicy deleted until a blocked port answers", waitFor(dests["blocked"], true))
}

// A session's own NetworkPolicy, written by the operator, on its runner pod while the model call
// hangs (the agent phase): a port on this host that the policy does not name is refused, the
// gateway answers. The repository is reachable while the policy is the checkout shape and
// refused once the operator narrows it to the agent shape (no DNS rule).
func TestSessionNetworkPolicyIsEnforced(t *testing.T) {
	const name = "egress-session"
	applySession(t, name, "[e2e:hang-egress]", ", timeout: 5m")
	eventually(t, 2*time.Minute, "the model request that hangs", func() bool {
		_, ok := env.firstCall.Load("[e2e:hang-egress]")
		return ok
	})
	pod := podName(t, name)
	out, err := kubectl("-n", namespace, "get", "networkpolicy", pod, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := json.Unmarshal([]byte(out), np); err != nil {
		t.Fatal(err)
	}
	agentShape := true
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.IntValue() == 53 {
				agentShape = false
			}
		}
	}
	// The repository by its address, as the policy pins it: by name the probe would fail in the
	// agent shape for want of DNS alone, not because the policy refuses the address.
	repo := &url.URL{Host: env.repoAddr}
	gw, err := url.Parse(env.gatewayURL)
	if err != nil {
		t.Fatal(err)
	}
	blocked := hostListener(t)
	if reachFrom(t, pod, contract.ContainerAgent, blocked) {
		t.Errorf("the session pod reached %s, a port on the host its NetworkPolicy does not allow", blocked)
	}
	if !reachFrom(t, pod, contract.ContainerAgent, gw.Host) {
		t.Errorf("the session pod cannot reach the gateway %s", gw.Host)
	}
	if got := reachFrom(t, pod, contract.ContainerAgent, repo.Host); got == agentShape {
		t.Errorf("repository %s reachable = %v with the policy in the %s shape", repo.Host, got, map[bool]string{true: "agent", false: "checkout"}[agentShape])
	}
	t.Logf("session NetworkPolicy in the %s shape", map[bool]string{true: "agent", false: "checkout"}[agentShape])
	if agentShape {
		noDNSFrom(t, pod)
		return
	}
	// The operator does not narrow it yet: do what it will do (drop the DNS and repository
	// rules, the agent shape for a session without spec.network.egress) and check the same pod.
	var narrowed []networkingv1.NetworkPolicyEgressRule
	for _, r := range np.Spec.Egress {
		if len(r.To) > 0 && r.To[0].IPBlock == nil && r.To[0].PodSelector != nil && r.To[0].PodSelector.MatchLabels["k8s-app"] == "" {
			narrowed = append(narrowed, r) // the gateway rule
		}
	}
	if len(narrowed) != 1 {
		t.Fatalf("cannot find the gateway rule alone in %+v", np.Spec.Egress)
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"egress": narrowed}})
	if _, err := kubectl("-n", namespace, "patch", "networkpolicy", pod, "--type=merge", "-p", string(patch)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for reachFrom(t, pod, contract.ContainerAgent, repo.Host) {
		if time.Since(start) > time.Minute {
			t.Fatalf("repository %s still reachable a minute after the policy was narrowed", repo.Host)
		}
	}
	reportTiming(t, "session NetworkPolicy narrowed until the repository is refused", time.Since(start))
	if !reachFrom(t, pod, contract.ContainerAgent, gw.Host) {
		t.Errorf("agent shape: the session pod cannot reach the gateway %s", gw.Host)
	}
	if reachFrom(t, pod, contract.ContainerAgent, blocked) {
		t.Errorf("agent shape: the session pod reached %s", blocked)
	}
	noDNSFrom(t, pod)
}

// noDNSFrom checks that a real lookup from the session pod's agent container finds nothing
// in the agent phase: data cannot leave through DNS queries. The same busybox nslookup of the
// same name from a pod without a policy resolves (TestClusterDNS, the positive control).
func noDNSFrom(t *testing.T, pod string) {
	t.Helper()
	want, err := kubectl("-n", "default", "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	out, err := kubectl("-n", namespace, "exec", pod, "-c", contract.ContainerAgent, "--", "nslookup", "kubernetes.default.svc.cluster.local")
	if strings.Contains(out, want) {
		t.Errorf("agent phase: a DNS lookup from the session pod resolved kubernetes.default to %s:\n%s", want, out)
	}
	// The lookup ran and could not reach the server (the network plugin rejects the packet,
	// or drops it and nslookup times out), rather than failing for another reason.
	got := out
	if err != nil {
		got += err.Error()
	}
	if !strings.Contains(got, "Connection refused") && !strings.Contains(got, "no servers could be reached") {
		t.Errorf("agent phase: the DNS lookup did not fail for want of a reachable server:\n%s", got)
	}
}

// hostListener opens a TCP listener on the host address pods see (the bridge), answering any
// connection with an HTTP 204, and returns its address.
func hostListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(env.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 204 No Content\r\n\r\n")) //nolint:errcheck // a probe target
			c.Close()
		}
	}()
	return l.Addr().String()
}

// reachFrom reports whether a container of a pod in the test namespace gets an HTTP answer
// from addr (any status: the connection was made), with busybox nc and a 2-second timeout.
// (busybox wget exits with SIGSEGV in the plain test pods; nc does not.)
func reachFrom(t *testing.T, pod, container, addr string) bool {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := kubectl("-n", namespace, "exec", pod, "-c", container, "--", "sh", "-c",
		`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 "$0" "$1"`, host, port)
	return strings.HasPrefix(out, "HTTP/")
}
