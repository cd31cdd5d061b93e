// Package gatewaytls is how the runner trusts the session gateway: only the CA bundle the
// controller mounts into the pod, re-read for every new connection so a rotated CA is picked
// up without a restart, and never plain HTTP unless the namespace allowed it.
package gatewaytls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// CheckURL refuses a gateway URL that would send the pod's token in the clear, unless
// allowPlain (the controller passes it only for namespaces labelled to allow it).
func CheckURL(flag, raw string, allowPlain bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q: not an absolute URL", flag, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowPlain {
			return nil
		}
		return fmt.Errorf("%s %q: plain HTTP would send the session's token unencrypted; use https:// (or --allow-plain-http-gateway where the platform allows it)", flag, raw)
	default:
		return fmt.Errorf("%s %q: want an https:// URL", flag, raw)
	}
}

// Transport returns an HTTP transport that verifies the server against the CAs in caFile
// only (not the system roots). The file is read for every new connection: the kubelet swaps
// the mounted bundle when the CA rotates, and connections made after that trust the new one.
// It fails now if the file holds no certificate, so a broken mount is a clear start-up error.
func Transport(caFile string) (*http.Transport, error) {
	if _, err := loadPool(caFile); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the gateway is reached directly, never through an environment's proxy
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
			Config:    &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: host},
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			if Untrusted(err) {
				return nil, fmt.Errorf("the gateway's certificate is not trusted by %s: %w", caFile, err)
			}
			return nil, err
		}
		return conn, nil
	}
	return tr, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("gateway CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("gateway CA bundle %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// Untrusted reports whether err is a server certificate that failed verification: waiting
// does not fix that, so callers give up at once instead of retrying.
func Untrusted(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verr *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verr)
}
