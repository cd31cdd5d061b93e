package servingcert_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/gateway/servingcert"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

var env *controlplane.Env

func TestMain(m *testing.M) {
	controlplane.Main(m, func(e *controlplane.Env) error {
		env = e
		return nil
	})
}

// clock is a settable time shared by the authority and the test's TLS clients, so a CA's
// three-year life can pass in a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func namespace(t *testing.T) string {
	t.Helper()
	ns, err := env.CreateNamespace(context.Background(), "certs", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func authority(ns string, clk *clock) *servingcert.Authority {
	return &servingcert.Authority{
		Client: env.Client, Namespace: ns, SecretName: "agentry-gateway-ca",
		Bundle:   servingcert.Publisher{Client: env.Client, Namespace: ns, Name: "agentry-gateway-ca"},
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		CAValidity: 30 * 24 * time.Hour, LeafValidity: 24 * time.Hour, Propagation: 10 * time.Minute,
		Now: clk.Now,
	}
}

// published is the bundle in the ConfigMap, as the kubelet would write it into a pod.
func published(t *testing.T, ns string) []byte {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "agentry-gateway-ca"}, cm); err != nil {
		t.Fatal(err)
	}
	if cm.Labels[contract.LabelGatewayCA] != contract.GatewayCASource {
		t.Errorf("bundle ConfigMap labels %v", cm.Labels)
	}
	return []byte(cm.Data[contract.GatewayCAKey])
}

func certsIn(t *testing.T, bundle []byte) int {
	t.Helper()
	n := 0
	for {
		var b *pem.Block
		if b, bundle = pem.Decode(bundle); b == nil {
			return n
		}
		n++
	}
}

// client trusts exactly bundle, at the test's time.
func clientFor(bundle []byte, clk *clock) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Time: clk.Now, MinVersion: tls.VersionTLS12}}}
}

// served returns the certificate a new connection is given, verified against bundle.
func served(t *testing.T, url string, bundle []byte, clk *clock) (*x509.Certificate, error) {
	t.Helper()
	resp, err := clientFor(bundle, clk).Get(url + "/ping")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.TLS.PeerCertificates[0], nil
}

// The serving certificate and the CA rotate while a live stream stays up: a connection made
// before a rotation keeps working, a runner holding the bundle from before a CA rotation
// keeps verifying until the successor has been published for the propagation time, and
// the old CA leaves the bundle only when it expires.
func TestRotationKeepsLiveConnectionsAndRunnersWorking(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	clk := &clock{now: time.Now()}
	a := authority(ns, clk)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			fmt.Fprintln(w, "pong")
			return
		}
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	// As the gateway serves: GetCertificate only (httptest's StartTLS would add its own
	// certificate, which wins for clients that send no server name).
	srv.Listener = tls.NewListener(srv.Listener, &tls.Config{GetCertificate: a.GetCertificate, MinVersion: tls.VersionTLS12})
	srv.Start()
	srv.URL = strings.Replace(srv.URL, "http://", "https://", 1)
	t.Cleanup(srv.Close)

	first := published(t, ns)
	if n := certsIn(t, first); n != 1 {
		t.Fatalf("a new CA's bundle holds %d certificates", n)
	}
	resp, err := clientFor(first, clk).Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := bufio.NewReader(resp.Body)
	alive := func(when string) {
		t.Helper()
		for range 3 {
			if _, err := stream.ReadString('\n'); err != nil {
				t.Fatalf("the live stream broke %s: %v", when, err)
			}
		}
	}
	alive("at start")
	leaf1, err := served(t, srv.URL, first, clk)
	if err != nil {
		t.Fatal(err)
	}

	// Past half the serving certificate's life: a new one, same CA.
	clk.Add(13 * time.Hour)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	alive("after the serving certificate was renewed")
	leaf2, err := served(t, srv.URL, first, clk)
	if err != nil {
		t.Fatalf("a new connection after renewal: %v", err)
	}
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || leaf2.Issuer.CommonName != leaf1.Issuer.CommonName {
		t.Errorf("renewal: serial %v -> %v, issuer %q -> %q", leaf1.SerialNumber, leaf2.SerialNumber, leaf1.Issuer.CommonName, leaf2.Issuer.CommonName)
	}

	// A third of the CA's life left: a successor is published, but does not sign yet.
	clk.Add(20 * 24 * time.Hour)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	both := published(t, ns)
	if n := certsIn(t, both); n != 2 {
		t.Fatalf("bundle during CA rotation holds %d certificates, want 2", n)
	}
	leaf3, err := served(t, srv.URL, first, clk)
	if err != nil {
		t.Fatalf("a runner holding the old bundle was refused before the successor signs: %v", err)
	}
	if leaf3.Issuer.CommonName != leaf1.Issuer.CommonName {
		t.Errorf("the successor signed before the propagation time: issuer %q", leaf3.Issuer.CommonName)
	}
	alive("after the successor CA was published")

	// Propagation time passed: the successor signs. Runners with the new bundle verify it,
	// and the connection made at the start is still up.
	clk.Add(11 * time.Minute)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	leaf4, err := served(t, srv.URL, both, clk)
	if err != nil {
		t.Fatalf("a runner with the rotated bundle: %v", err)
	}
	if leaf4.Issuer.CommonName == leaf1.Issuer.CommonName {
		t.Errorf("the successor does not sign after the propagation time")
	}
	if _, err := served(t, srv.URL, first, clk); err == nil {
		t.Error("a bundle without the successor verified its certificate: the test cannot tell which CA signed")
	}
	alive("after the successor CA took over")

	// The old CA expires: it leaves the bundle.
	clk.Add(10 * 24 * time.Hour)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := certsIn(t, published(t, ns)); n != 1 {
		t.Errorf("bundle after the old CA expired holds %d certificates, want 1", n)
	}
}

// Replicas starting together agree on one CA: each signs its own certificate, and one
// published bundle verifies all of them.
func TestReplicasShareOneCA(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	clk := &clock{now: time.Now()}
	replicas := []*servingcert.Authority{authority(ns, clk), authority(ns, clk), authority(ns, clk)}
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, a := range replicas {
		wg.Go(func() { errs[i] = a.Sync(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			// Losing the Secret's creation race is retried on the next sync, as the manager does.
			if errs[i] = replicas[i].Sync(ctx); errs[i] != nil {
				t.Fatalf("replica %d: %v", i, errs[i])
			}
		}
	}
	bundle := published(t, ns)
	if n := certsIn(t, bundle); n != 1 {
		t.Fatalf("bundle holds %d CAs after three replicas started", n)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	for i, a := range replicas {
		c, err := a.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", CurrentTime: clk.Now()}); err != nil {
			t.Errorf("replica %d's certificate does not verify with the published bundle: %v", i, err)
		}
	}
}

// A damaged CA Secret stops the manager with the reason and the way out, and is not
// overwritten (its key may be someone's only copy).
func TestBrokenCASecretIsAClearError(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	broken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "agentry-gateway-ca", Namespace: ns},
		Data: map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": []byte("nor a key")}}
	if err := env.Client.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	err := authority(ns, &clock{now: time.Now()}).Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), ns+"/agentry-gateway-ca") || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("Sync with a broken CA Secret: %v", err)
	}
	after := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(broken), after); err != nil {
		t.Fatal(err)
	}
	if string(after.Data["tls.crt"]) != "not a certificate" {
		t.Error("the broken Secret was overwritten")
	}
}

// The files source (cert-manager) publishes the CA file and serves the certificate the
// files hold, picking up a renewed one without a restart.
func TestFilesSourceFollowsRenewedFiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t)
	dir := t.TempDir()
	caPEM, caCert, caKey := selfSignedCA(t)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", caPEM)
	certPEM, keyPEM, serial1 := leafFiles(t, caCert, caKey)
	write("tls.crt", certPEM)
	write("tls.key", keyPEM)

	if _, err := servingcert.NewFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "missing.crt"), servingcert.Publisher{}); err == nil || !strings.Contains(err.Error(), "gateway CA bundle") {
		t.Errorf("a missing CA file: %v", err)
	}
	f, err := servingcert.NewFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"),
		servingcert.Publisher{Client: env.Client, Namespace: ns, Name: "agentry-gateway-ca"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := published(t, ns); string(got) != string(caPEM) {
		t.Errorf("published bundle differs from the CA file")
	}
	go func() { _ = f.Start(ctx) }()
	if c, err := f.GetCertificate(nil); err != nil || serialOf(t, c).Cmp(serial1) != 0 {
		t.Fatalf("serving certificate is not the one in the files (%v)", err)
	}
	certPEM, keyPEM, serial2 := leafFiles(t, caCert, caKey)
	write("tls.key", keyPEM)
	write("tls.crt", certPEM)
	testutil.Within(t, 20*time.Second, "the renewed certificate to be picked up", func() error {
		c, err := f.GetCertificate(nil)
		if err != nil {
			return err
		}
		if serialOf(t, c).Cmp(serial2) != 0 {
			return errors.New("still serving the old certificate")
		}
		return nil
	})
}

func serialOf(t *testing.T, c *tls.Certificate) *big.Int {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber
}

func selfSignedCA(t *testing.T) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert, key
}

func leafFiles(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, []byte, *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), serial
}
