package gateway_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/gateway/servingcert"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// A runner given another CA's bundle refuses the gateway: it sends neither its token nor a
// transcript event to a server it cannot verify, and says why.
func TestRunnerRefusesGatewayCertificateFromAnotherCA(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t, scriptedllm.Text("never asked"))
	g := startGateway(t)
	s := f.session("other-ca")

	other := &servingcert.Authority{
		Client: env.Client, Namespace: operatorNS, SecretName: "another-ca",
		Bundle:   servingcert.Publisher{Client: env.Client, Namespace: operatorNS, Name: "another-ca-bundle"},
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: "another-ca-bundle"}, cm); err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(otherFile, []byte(cm.Data[contract.GatewayCAKey]), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runnerFor(t, s, g, f.tokenFile(f.runnerPod(s)))
	for i, a := range r.args {
		if a == "--gateway-ca-file" {
			r.args[i+1] = otherFile
		}
	}
	if code := r.run(ctx); code == 0 {
		t.Fatalf("the runner trusted a gateway certificate from another CA:\n%s", r.stderr.String())
	}

	if !strings.Contains(r.stderr.String(), "not trusted by "+otherFile) {
		t.Errorf("the runner's error does not say the certificate is untrusted:\n%s", r.stderr.String())
	}
	if n := len(f.llm.Requests()); n != 0 {
		t.Errorf("the model was called %d times through an unverified gateway", n)
	}
	if st := f.get(s).Status; st.Progress != nil || st.Transcript != nil {
		t.Errorf("an event reached the gateway over an unverified connection: %+v", st)
	}
}

// A runner refuses a plain-HTTP gateway (its token would cross the network in the clear)
// unless told the namespace allows it.
func TestRunnerRefusesPlainHTTPGateway(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	g := startGateway(t)
	s := f.session("plain")
	plain := "http://" + g.addr
	r := runnerFor(t, s, g, f.tokenFile(f.runnerPod(s)))
	for i, a := range r.args {
		switch a {
		case "--gateway":
			r.args[i+1] = plain
		case "--base-url":
			r.args[i+1] = plain + "/v1"
		}
	}
	if code := r.run(ctx); code != int(contract.ExitUsage) {
		t.Fatalf("runner with an http:// gateway exited %d, want %d (usage):\n%s", code, contract.ExitUsage, r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "--gateway \""+plain+"\": plain HTTP would send the session's token unencrypted") {
		t.Errorf("the refusal does not name the flag and the reason:\n%s", r.stderr.String())
	}
}
