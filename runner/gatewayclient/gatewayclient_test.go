package gatewayclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// tlsGateway is a TLS server recording the Authorization header and body of each request,
// and a PEM file holding its certificate (the bundle the controller would mount).
func tlsGateway(t *testing.T) (*httptest.Server, string, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+string(b))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, ca, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func writeToken(t *testing.T, file, token string) {
	t.Helper()
	// Replaced by rename, as the kubelet swaps a projected token.
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// The token rotates under a running session: every request carries the token on disk at
// that moment, never a copy read earlier.
func TestRequestsCarryTheCurrentToken(t *testing.T) {
	srv, ca, seen := tlsGateway(t)
	token := filepath.Join(t.TempDir(), "token")
	writeToken(t, token, "first\n")
	gw, err := gatewayclient.New(srv.URL+"/", token, ca)
	if err != nil {
		t.Fatal(err)
	}
	send := func(method string, body []byte) {
		t.Helper()
		resp, err := gw.Do(context.Background(), method, "/v1/x", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send(http.MethodPost, []byte(`{"a":1}`))
	writeToken(t, token, "second")
	send(http.MethodGet, nil)
	want := []string{
		`POST /v1/x Bearer first application/json {"a":1}`,
		`GET /v1/x Bearer second  `,
	}
	got := seen()
	if len(got) != len(want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// A server whose certificate is not in the mounted bundle never sees the token: the
// connection fails before any request is written, and the error says why.
func TestAnImpostorGetsNoToken(t *testing.T) {
	ca := otherCA(t)
	impostor, _, seen := tlsGateway(t)
	token := filepath.Join(t.TempDir(), "token")
	writeToken(t, token, "secret")
	gw, err := gatewayclient.New(impostor.URL, token, ca)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := gw.Do(context.Background(), http.MethodPost, "/v1/x", []byte(`{}`))
	if err == nil {
		resp.Body.Close()
		t.Fatal("the impostor was trusted")
	}
	if !gatewaytls.Untrusted(err) {
		t.Errorf("error %v is not reported as an untrusted certificate", err)
	}
	if n := len(seen()); n != 0 {
		t.Errorf("the impostor received %d requests", n)
	}
}

// A token that cannot be read is an error naming it, and nothing is sent.
func TestUnreadableTokenSendsNothing(t *testing.T) {
	srv, ca, seen := tlsGateway(t)
	gw, err := gatewayclient.New(srv.URL, filepath.Join(t.TempDir(), "missing"), ca)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := gw.Do(context.Background(), http.MethodGet, "/v1/x", nil)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want the missing token file", err)
	}
	if n := len(seen()); n != 0 {
		t.Errorf("the gateway received %d requests", n)
	}
}

// otherCA writes the certificate of a CA that signed nothing the test servers present.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// A bundle without a certificate is refused at start-up, not at the first request.
func TestABrokenBundleFailsAtOnce(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := gatewayclient.New("https://gw.test", "token", ca); err == nil {
		t.Error("New accepted a bundle with no certificate")
	}
}
