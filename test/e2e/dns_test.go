//go:build e2e

package e2e

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The cluster DNS as a pod sees it: a restricted pod from the runner image (busybox nslookup
// and nc) resolves Service names, with and without the search path, and the names of the servers
// on this machine; on the dev cluster nothing off this machine resolves, because its CoreDNS
// forwards nowhere (hack/coredns.yaml).
func TestClusterDNS(t *testing.T) {
	const pod = "dns-client"
	if _, err := kubectlIn(manifest(`
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: agentry/runner:dev
    imagePullPolicy: Never
    command: [/bin/sleep, "3600"]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}`,
		pod, namespace), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kubectl("-n", namespace, "delete", "pod", pod, "--ignore-not-found", "--wait=false") //nolint:errcheck // best effort
	})
	if _, err := kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	clusterIP := func(ns, svc string) string {
		t.Helper()
		ip, err := kubectl("-n", ns, "get", "service", svc, "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatal(err)
		}
		return ip
	}
	// lookup returns the addresses busybox nslookup prints for name, and its whole output.
	lookup := func(name string) ([]string, string) {
		t.Helper()
		out, _ := kubectl("-n", namespace, "exec", pod, "--", "nslookup", name)
		var addrs []string
		for _, m := range regexp.MustCompile(`(?m)^Address:\s*(\S+)$`).FindAllStringSubmatch(out, -1) {
			if ip := net.ParseIP(m[1]); ip != nil { // the server's own line is address:53
				addrs = append(addrs, ip.String())
			}
		}
		return addrs, out
	}

	resolv, err := kubectl("-n", namespace, "exec", pod, "--", "cat", "/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if dns := clusterIP("kube-system", "kube-dns"); !strings.Contains(resolv, "nameserver "+dns) {
		t.Errorf("the pod's resolv.conf does not name kube-dns %s:\n%s", dns, resolv)
	}

	for name, want := range map[string]string{
		"agentry-gateway.agentry-system.svc.cluster.local": clusterIP(operatorNS, "agentry-gateway"),
		"kubernetes.default.svc.cluster.local":             clusterIP("default", "kubernetes"),
	} {
		if got, out := lookup(name); !contains(got, want) {
			t.Errorf("%s resolved to %v, want %s:\n%s", name, got, want, out)
		}
	}
	// A short name through the search path: busybox nslookup does not apply it, the C
	// library's resolver (nc) does. The apiserver answers a plain HTTP request with a 400.
	if !reachFrom(t, pod, "main", "kubernetes.default:443") {
		t.Errorf("kubernetes.default:443 does not answer (the search path in resolv.conf:\n%s)", resolv)
	}

	if os.Getenv("E2E_HOST_IP") != "" {
		t.Log("not the dev cluster (E2E_HOST_IP is set): its DNS for this machine and the internet is its own; checked cluster names only")
		return
	}
	repo, err := url.Parse(env.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	if got, out := lookup(repo.Hostname()); !contains(got, env.hostIP) {
		t.Errorf("%s resolved to %v, want %s:\n%s", repo.Hostname(), got, env.hostIP, out)
	}
	if !reachFrom(t, pod, "main", repo.Host) {
		t.Errorf("the git server does not answer at %s", repo.Host)
	}
	// Off-machine names do not exist here: NXDOMAIN at once, not a timeout or SERVFAIL.
	for _, name := range []string{"example.com", "github.com"} {
		if got, out := lookup(name); len(got) > 0 || !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("%s resolved to %v, want NXDOMAIN:\n%s", name, got, out)
		}
	}
}
