//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The attack on the real node: a namespace user who may create pods (but not sessions' status)
// builds a pod that looks like a session's runner — the same session-uid label and the same
// controller owner reference — with a projected token for the gateway's audience, and calls
// the gateway with it as that session. The gateway must refuse it: the session's status
// records the UID of the one pod the controller created.
func TestForgedRunnerPodIsRefused(t *testing.T) {
	const name = "forge-target"
	applySession(t, name, "[e2e:hang-forge]", ", timeout: 5m")
	real := podName(t, name)
	var p *corev1.Pod
	eventually(t, 2*time.Minute, "the real runner pod to run", func() bool {
		p = getPod(t, real)
		if p == nil {
			return false
		}
		_, ok := podRunningSince(p)
		return ok
	})
	gw, err := url.Parse(env.gatewayURL)
	if err != nil {
		t.Fatal(err)
	}
	// The forged pod is not the controller's: no hostAliases for the gateway's name. It
	// dials the Service's ClusterIP, and like any attacker skips certificate checks.
	clusterIP, err := kubectl("-n", operatorNS, "get", "service", strings.Split(gw.Hostname(), ".")[0], "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	target := "https://" + net.JoinHostPort(clusterIP, gw.Port()) + "/v1/chat/completions"
	owner := p.OwnerReferences[0]
	labels := ""
	for k, v := range p.Labels {
		labels += fmt.Sprintf("%q: %q, ", k, v)
	}
	// An HTTPS request (test/e2e/httpc, no certificate check): the forged token as bearer, a
	// chat completion as body; it prints the gateway's status line and answer.
	script := `T=$(cat /var/run/secrets/forged/token); B='{"model":"scripted","messages":[{"role":"user","content":"spend the budget"}]}'; ` +
		// Retried while the connection is refused: the NetworkPolicy engine admits a new pod's
		// address to the manager's ingress rule a moment after the pod starts.
		`for i in $(seq 1 30); do out="$(httpc -k -H "Authorization: Bearer $T" -d "$B" ` + target + ` 2>&1)" && break; sleep 1; done; echo "$out"; echo DONE; sleep 3600`
	if _, err := kubectlIn(manifest(`
apiVersion: v1
kind: Pod
metadata:
  name: forged-runner
  namespace: %s
  labels: {%s}
  ownerReferences: [{apiVersion: %s, kind: %s, name: %s, uid: %s, controller: true}]
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  volumes:
  - name: forged
    projected:
      sources: [{serviceAccountToken: {audience: agentry-gateway, expirationSeconds: 3600, path: token}}]
  containers:
  - name: main
    image: agentry/e2e-tools:dev
    imagePullPolicy: Never
    command: [/bin/sh, -c, %q]
    volumeMounts: [{name: forged, mountPath: /var/run/secrets/forged, readOnly: true}]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}`,
		namespace, strings.TrimSuffix(labels, ", "), owner.APIVersion, owner.Kind, owner.Name, owner.UID, script), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "pod", "forged-runner", "--wait=false") }) //nolint:errcheck
	var out string
	eventually(t, 2*time.Minute, "the forged pod's request", func() bool {
		out, _ = kubectl("-n", namespace, "logs", "forged-runner")
		return strings.Contains(out, "DONE")
	})
	t.Logf("the forged pod got:\n%s", out)
	if !strings.Contains(out, "HTTP/1.1 403") || !strings.Contains(out, "not the runner pod recorded") {
		t.Errorf("the gateway did not refuse the forged pod with 403 naming the recorded pod")
	}
	if strings.Contains(out, "HTTP/1.1 200") {
		t.Errorf("the gateway served the forged pod")
	}
}
