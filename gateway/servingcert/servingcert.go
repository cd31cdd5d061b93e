// Package servingcert gives the session gateway its HTTPS serving certificate and publishes
// the CA bundle runner pods verify it with.
//
// Two sources implement Source:
//
//   - Authority (the default, "managed"): the manager keeps a CA in a Secret in its namespace,
//     and every replica signs its own short-lived serving certificate with it, renewed in
//     memory. When the CA has a third of its life left, a successor is minted, published in
//     the bundle at once, and signs certificates only once Propagation has passed (the kubelet
//     refreshes mounted ConfigMaps within about a minute); the old CA stays in the bundle until
//     it expires, so a runner holding either bundle accepts either certificate.
//   - Files ("files", for cert-manager): the certificate, key and CA bundle are mounted files,
//     reloaded when they change.
//
// Either way the bundle is published in a ConfigMap in the operator's namespace, which the
// controller copies into every session namespace (controllers/gatewayca.go).
package servingcert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/agentry-dev/agentry/contract"
)

// Keys of the CA Secret.
const (
	keyCACert   = "tls.crt" // the CA that signs serving certificates now
	keyCAKey    = "tls.key"
	keyNextCert = "next.crt" // its successor, published but not signing yet
	keyNextKey  = "next.key"
	// annotationNextUsable is when the successor starts signing (RFC 3339).
	annotationNextUsable = "agentry.dev/next-ca-signs-after"
)

// Source serves the gateway's certificate and keeps the published bundle current.
type Source interface {
	// GetCertificate is tls.Config.GetCertificate.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Sync brings the certificate and the published bundle up to date once.
	Sync(ctx context.Context) error
	// Start syncs every minute until ctx ends (a controller-runtime Runnable).
	Start(ctx context.Context) error
}

// Publisher writes the CA bundle into the operator namespace's ConfigMap.
type Publisher struct {
	Client    client.Client
	Namespace string
	Name      string
}

// Publish creates or updates the ConfigMap so that it holds exactly bundle.
func (p Publisher) Publish(ctx context.Context, bundle []byte) error {
	cm := &corev1.ConfigMap{}
	err := p.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{contract.LabelGatewayCA: contract.GatewayCASource}},
			Data:       map[string]string{contract.GatewayCAKey: string(bundle)},
		}
		return p.Client.Create(ctx, cm)
	case err != nil:
		return err
	}
	if cm.Data[contract.GatewayCAKey] == string(bundle) && cm.Labels[contract.LabelGatewayCA] == contract.GatewayCASource {
		return nil
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[contract.LabelGatewayCA] = contract.GatewayCASource
	cm.Data = map[string]string{contract.GatewayCAKey: string(bundle)}
	return p.Client.Update(ctx, cm)
}

// Authority is the managed source: a CA in a Secret, serving certificates signed in memory.
type Authority struct {
	// Client reads and writes the CA Secret and the bundle ConfigMap (uncached is fine:
	// one object each, once a minute).
	Client client.Client
	// Namespace is the operator's namespace; SecretName holds the CA.
	Namespace, SecretName string
	// Bundle publishes the CA bundle.
	Bundle Publisher
	// DNSNames and IPs are the serving certificate's subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// CAValidity (default 3 years), LeafValidity (default 24h) and Propagation (default
	// 10m: how long a new CA is published before it signs).
	CAValidity, LeafValidity, Propagation time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	leaf   atomic.Pointer[tls.Certificate]
	mu     sync.Mutex // one Sync at a time
	signer []byte     // DER of the CA that signed leaf
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// GetCertificate returns the current serving certificate.
func (a *Authority) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := a.leaf.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the gateway has no serving certificate yet")
}

// Start syncs every minute until ctx ends.
func (a *Authority) Start(ctx context.Context) error { return every(ctx, time.Minute, a.Sync) }

// NeedLeaderElection is false: every replica serves the gateway, so every replica needs a
// certificate.
func (a *Authority) NeedLeaderElection() bool { return false }

// Sync creates, rotates and promotes the CA as due, publishes the bundle and renews this
// replica's serving certificate when it is past half its life or its CA changed.
func (a *Authority) Sync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	ca, bundle, err := a.syncCA(ctx, now)
	if err != nil {
		return err
	}
	if err := a.Bundle.Publish(ctx, bundle); err != nil {
		return fmt.Errorf("publishing the gateway CA bundle in ConfigMap %s/%s: %w", a.Bundle.Namespace, a.Bundle.Name, err)
	}
	if leaf := a.leaf.Load(); leaf != nil && bytes.Equal(a.signer, ca.cert.Raw) {
		nb, na := leaf.Leaf.NotBefore, leaf.Leaf.NotAfter
		if now.Before(nb.Add(na.Sub(nb) / 2)) {
			return nil
		}
	}
	validity := orDefault(a.LeafValidity, 24*time.Hour)
	if left := ca.cert.NotAfter.Sub(now); left < validity {
		validity = left
	}
	leaf, err := issueLeaf(ca, a.DNSNames, a.IPs, now, validity)
	if err != nil {
		return err
	}
	a.leaf.Store(leaf)
	a.signer = ca.cert.Raw
	log.FromContext(ctx).Info("Issued the gateway's serving certificate", "notAfter", leaf.Leaf.NotAfter, "ca", ca.cert.Subject.CommonName)
	return nil
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// syncCA returns the signing CA and the bundle, writing the Secret when something is due.
func (a *Authority) syncCA(ctx context.Context, now time.Time) (keyPair, []byte, error) {
	sec := &corev1.Secret{}
	key := types.NamespacedName{Namespace: a.Namespace, Name: a.SecretName}
	err := a.Client.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		ca, err := newCA(now, orDefault(a.CAValidity, 3*365*24*time.Hour))
		if err != nil {
			return keyPair{}, nil, err
		}
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.SecretName, Labels: map[string]string{contract.LabelGatewayCA: "authority"}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{keyCACert: pemCert(ca.cert), keyCAKey: pemKey(ca.key), contract.GatewayCAKey: pemCert(ca.cert)},
		}
		if err := a.Client.Create(ctx, sec); err != nil {
			if apierrors.IsAlreadyExists(err) { // another replica was first: use its CA
				return a.syncCA(ctx, now)
			}
			return keyPair{}, nil, fmt.Errorf("creating the gateway CA Secret %s: %w", key, err)
		}
		log.FromContext(ctx).Info("Created the gateway CA", "secret", key.String(), "notAfter", ca.cert.NotAfter)
		return ca, sec.Data[contract.GatewayCAKey], nil
	}
	if err != nil {
		return keyPair{}, nil, fmt.Errorf("reading the gateway CA Secret %s: %w", key, err)
	}
	cur, err := parsePair(sec.Data[keyCACert], sec.Data[keyCAKey])
	if err != nil {
		return keyPair{}, nil, fmt.Errorf("gateway CA Secret %s: %w (delete it to have a new CA minted)", key, err)
	}
	changed := false
	if next, err := parsePair(sec.Data[keyNextCert], sec.Data[keyNextKey]); err == nil {
		if at, err := time.Parse(time.RFC3339, sec.Annotations[annotationNextUsable]); err != nil || !now.Before(at) {
			// The successor has been published long enough: it signs from now on.
			cur, changed = next, true
			sec.Data[keyCACert], sec.Data[keyCAKey] = sec.Data[keyNextCert], sec.Data[keyNextKey]
			delete(sec.Data, keyNextCert)
			delete(sec.Data, keyNextKey)
			delete(sec.Annotations, annotationNextUsable)
			log.FromContext(ctx).Info("The successor gateway CA signs from now on", "notAfter", next.cert.NotAfter)
		}
	} else if life := cur.cert.NotAfter.Sub(cur.cert.NotBefore); cur.cert.NotAfter.Sub(now) < life/3 {
		next, err := newCA(now, orDefault(a.CAValidity, 3*365*24*time.Hour))
		if err != nil {
			return keyPair{}, nil, err
		}
		sec.Data[keyNextCert], sec.Data[keyNextKey] = pemCert(next.cert), pemKey(next.key)
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		sec.Annotations[annotationNextUsable] = now.Add(orDefault(a.Propagation, 10*time.Minute)).UTC().Format(time.RFC3339)
		changed = true
		log.FromContext(ctx).Info("Minted a successor gateway CA; it signs once published everywhere", "signsAfter", sec.Annotations[annotationNextUsable])
	}
	// The bundle: the signing CA, its successor, and earlier CAs until they expire.
	certs := []*x509.Certificate{cur.cert}
	if next, err := parseCerts(sec.Data[keyNextCert]); err == nil {
		certs = append(certs, next...)
	}
	if old, err := parseCerts(sec.Data[contract.GatewayCAKey]); err == nil {
		certs = append(certs, old...)
	}
	bundle := encodeBundle(certs, now)
	if !bytes.Equal(bundle, sec.Data[contract.GatewayCAKey]) {
		sec.Data[contract.GatewayCAKey], changed = bundle, true
	}
	if changed {
		if err := a.Client.Update(ctx, sec); err != nil {
			return keyPair{}, nil, fmt.Errorf("updating the gateway CA Secret %s: %w", key, err)
		}
	}
	return cur, bundle, nil
}

// encodeBundle writes each unexpired certificate once, in order.
func encodeBundle(certs []*x509.Certificate, now time.Time) []byte {
	var out bytes.Buffer
	var seen [][]byte
	for _, c := range certs {
		if now.After(c.NotAfter) || slices.ContainsFunc(seen, func(b []byte) bool { return bytes.Equal(b, c.Raw) }) {
			continue
		}
		seen = append(seen, c.Raw)
		out.Write(pemCert(c))
	}
	return out.Bytes()
}

func newCA(now time.Time, validity time.Duration) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "agentry-gateway-ca@" + now.UTC().Format("20060102T150405Z")},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return keyPair{}, err
	}
	cert, err := x509.ParseCertificate(der)
	return keyPair{cert: cert, key: key}, err
}

func issueLeaf(ca keyPair, dnsNames []string, ips []net.IP, now time.Time, validity time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "agentry-gateway"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing the gateway's serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // an ECDSA key we generated always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func parsePair(certPEM, keyPEM []byte) (keyPair, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return keyPair{}, fmt.Errorf("CA certificate and key: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return keyPair{}, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !cert.IsCA {
		return keyPair{}, errors.New("not a CA certificate with a signing key")
	}
	return keyPair{cert: cert, key: signer}, nil
}

// Files is the source for certificates someone else issues (cert-manager): the serving
// certificate and key are reloaded when the files change, and the CA bundle file is
// published as it is.
type Files struct {
	CertFile, KeyFile, CAFile string
	Bundle                    Publisher

	watcher *certwatcher.CertWatcher
}

// NewFiles loads the certificate now, so a missing or broken file stops the manager with a
// clear error instead of failing every handshake.
func NewFiles(certFile, keyFile, caFile string, bundle Publisher) (*Files, error) {
	w, err := certwatcher.New(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("gateway serving certificate: %w", err)
	}
	if _, err := readBundle(caFile); err != nil {
		return nil, err
	}
	return &Files{CertFile: certFile, KeyFile: keyFile, CAFile: caFile, Bundle: bundle, watcher: w}, nil
}

func readBundle(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("gateway CA bundle: %w", err)
	}
	if _, err := parseCerts(b); err != nil {
		return nil, fmt.Errorf("gateway CA bundle %s: %w", file, err)
	}
	return b, nil
}

// GetCertificate returns the certificate last read from the files.
func (f *Files) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.watcher.GetCertificate(h)
}

// Sync republishes the CA bundle file.
func (f *Files) Sync(ctx context.Context) error {
	b, err := readBundle(f.CAFile)
	if err != nil {
		return err
	}
	return f.Bundle.Publish(ctx, b)
}

// Start watches the certificate files and republishes the bundle every minute.
func (f *Files) Start(ctx context.Context) error {
	go func() {
		if err := f.watcher.Start(ctx); err != nil {
			log.FromContext(ctx).Error(err, "Watching the gateway's certificate files")
		}
	}()
	return every(ctx, time.Minute, f.Sync)
}

// NeedLeaderElection is false: every replica serves the gateway.
func (f *Files) NeedLeaderElection() bool { return false }

func every(ctx context.Context, period time.Duration, sync func(context.Context) error) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := sync(ctx); err != nil {
				log.FromContext(ctx).Error(err, "Keeping the gateway's certificate current")
			}
		}
	}
}

// NamesFor returns the subject alternative names for a gateway reached at host: the host
// itself and, for a Service name (NAME.NAMESPACE.svc...), every short form of it.
func NamesFor(host string, extra ...string) ([]string, []net.IP) {
	if ip := net.ParseIP(host); ip != nil {
		return extra, []net.IP{ip}
	}
	names := []string{host}
	if parts := strings.Split(host, "."); len(parts) >= 3 && parts[2] == "svc" {
		svc, ns := parts[0], parts[1]
		names = append(names, svc, svc+"."+ns, svc+"."+ns+".svc", svc+"."+ns+".svc.cluster.local")
	}
	var out []string
	for _, n := range append(names, extra...) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}
