package objectstore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/agentry-dev/agentry/objectstore"
	"github.com/agentry-dev/agentry/test/s3server"
)

// An object store with a private CA: a client given its CA file stores and reads objects
// over HTTPS; a client without it, or with another CA, is refused before any request.
func TestCAFileTrustsAPrivateCA(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := issue(t, dir, "ca")
	otherCA, _, _ := issue(t, filepath.Join(dir, "other"), "other")
	srv, err := s3server.StartTLS(filepath.Join(dir, "data"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := objectstore.Config{Endpoint: "https://" + srv.Endpoint, Bucket: "archive", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, CAFile: caPEM}
	c, err := objectstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating a bucket over HTTPS with the CA file: %v", err)
	}
	body := []byte("transcript\n")
	if _, err := c.PutObject(ctx, cfg.Bucket, "s/transcript.jsonl", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("storing an object over HTTPS with the CA file: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(srv.Dir, cfg.Bucket, "s", "transcript.jsonl")); !bytes.Equal(got, body) {
		t.Errorf("stored %q, want %q", got, body)
	}

	for name, ca := range map[string]string{"no CA file": "", "another CA": otherCA} {
		cfg := cfg
		cfg.CAFile, cfg.MaxRetries = ca, 1
		c, err := objectstore.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.BucketExists(ctx, cfg.Bucket); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: the private CA's server was trusted (err = %v)", name, err)
		}
	}
}

func TestCAFileErrorsNameTheFile(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ file, want string }{
		"missing":        {filepath.Join(t.TempDir(), "absent.crt"), "reading S3 CA file"},
		"without a cert": {notPEM, notPEM + " holds no certificates"},
	}
	for name, tc := range cases {
		_, err := objectstore.New(objectstore.Config{Endpoint: "https://s3.example:9000", Bucket: "b", CAFile: tc.file})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", name, err, tc.want)
		}
	}
}

// Temporary credentials: the session token read from AWS_SESSION_TOKEN goes with every
// request (the header S3 checks it in), next to the signature of the access key.
func TestSessionTokenFromTheEnvironmentIsSent(t *testing.T) {
	srv, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	var (
		mu     sync.Mutex
		tokens []string
	)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.Endpoint})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tokens = append(tokens, r.Header.Get("X-Amz-Security-Token"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	env := map[string]string{
		objectstore.EnvAccessKey: srv.AccessKey, objectstore.EnvSecretKey: srv.SecretKey,
		objectstore.EnvSessionToken: "FwoGZXIvYXdzEBYaDKsessiontoken",
	}
	cfg := objectstore.Config{Endpoint: front.URL, Bucket: "archive", MaxRetries: 1}
	cfg.CredentialsFromEnv(func(k string) string { return env[k] })
	c, err := objectstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = c.BucketExists(ctx, cfg.Bucket) // the server may refuse a token it did not issue
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) == 0 {
		t.Fatal("no request reached the object store")
	}
	for i, tok := range tokens {
		if tok != env[objectstore.EnvSessionToken] {
			t.Errorf("request %d carried session token %q, want %q", i, tok, env[objectstore.EnvSessionToken])
		}
	}
}

func TestEndpointAndBucketAreRequired(t *testing.T) {
	cases := map[string]objectstore.Config{
		"no endpoint": {Bucket: "b"},
		"no bucket":   {Endpoint: "s3.example:9000"},
	}
	for name, cfg := range cases {
		if _, err := objectstore.New(cfg); err == nil || !strings.Contains(err.Error(), "endpoint and bucket are required") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestHostAndTLSFromTheEndpoint(t *testing.T) {
	cases := map[string]struct {
		cfg        objectstore.Config
		host       string
		wantSecure bool
	}{
		"host:port is HTTPS":           {objectstore.Config{Endpoint: "s3.example:9000"}, "s3.example:9000", true},
		"host:port, insecure":          {objectstore.Config{Endpoint: "s3.example:9000", Insecure: true}, "s3.example:9000", false},
		"http URL":                     {objectstore.Config{Endpoint: "http://s3.example:9000"}, "s3.example:9000", false},
		"https URL wins over insecure": {objectstore.Config{Endpoint: "https://s3.example", Insecure: true}, "s3.example", true},
	}
	for name, tc := range cases {
		host, secure := tc.cfg.Host()
		if host != tc.host || secure != tc.wantSecure {
			t.Errorf("%s: Host() = %s, %v; want %s, %v", name, host, secure, tc.host, tc.wantSecure)
		}
	}
}

// issue writes a new CA and a server certificate it signs for 127.0.0.1 under dir, and
// returns the paths of the CA's PEM, the certificate and its key.
func issue(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePEM(t, caFile, "CERTIFICATE", caDER)
	writePEM(t, certFile, "CERTIFICATE", leafDER)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return caFile, certFile, keyFile
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
