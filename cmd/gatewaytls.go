package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/gateway/servingcert"
)

const (
	tlsManaged = "managed"
	tlsFiles   = "files"
	tlsNone    = "none"
)

// gatewayTLSFlags are the --gateway-tls* flags.
type gatewayTLSFlags struct {
	mode, certFile, keyFile, caFile, caSecret, caConfigMap, extraNames string
}

// validate checks the flags agree with each other and with the gateway URL, naming the flag
// that is wrong.
func (f gatewayTLSFlags) validate(gatewayURL string) error {
	u, err := url.Parse(gatewayURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--gateway-url %q: not an absolute URL", gatewayURL)
	}
	switch f.mode {
	case tlsManaged, tlsFiles:
		if u.Scheme != "https" {
			return fmt.Errorf("--gateway-url %q: the gateway serves HTTPS (--gateway-tls=%s), so the URL must be https://", gatewayURL, f.mode)
		}
	case tlsNone:
		if u.Scheme != "http" {
			return fmt.Errorf("--gateway-url %q: the gateway serves plain HTTP (--gateway-tls=none), so the URL must be http://", gatewayURL)
		}
	default:
		return fmt.Errorf("--gateway-tls %q: want managed, files or none", f.mode)
	}
	if f.mode == tlsFiles && (f.certFile == "" || f.keyFile == "" || f.caFile == "") {
		return fmt.Errorf("--gateway-tls=files needs --gateway-tls-cert-file, --gateway-tls-key-file and --gateway-tls-ca-file")
	}
	if f.mode != tlsFiles && (f.certFile != "" || f.keyFile != "" || f.caFile != "") {
		return fmt.Errorf("--gateway-tls-cert-file, --gateway-tls-key-file and --gateway-tls-ca-file apply only with --gateway-tls=files (it is %s)", f.mode)
	}
	if f.mode != tlsNone && f.caConfigMap == "" {
		return fmt.Errorf("--gateway-ca-configmap must name a ConfigMap")
	}
	return nil
}

// source returns where the gateway's certificate comes from; nil for plain HTTP.
func (f gatewayTLSFlags) source(cfg *rest.Config, scheme *runtime.Scheme, gatewayURL, namespace string) (servingcert.Source, error) {
	if err := f.validate(gatewayURL); err != nil {
		return nil, err
	}
	if f.mode == tlsNone {
		return nil, nil
	}
	// One Secret and one ConfigMap, read once a minute: no cache (and no cluster-wide
	// Secret or ConfigMap informer) needed.
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	bundle := servingcert.Publisher{Client: c, Namespace: namespace, Name: f.caConfigMap}
	if f.mode == tlsFiles {
		return servingcert.NewFiles(f.certFile, f.keyFile, f.caFile, bundle)
	}
	u, _ := url.Parse(gatewayURL)
	var extra []string
	for _, n := range strings.Split(f.extraNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			extra = append(extra, n)
		}
	}
	names, ips := servingcert.NamesFor(u.Hostname(), extra...)
	return &servingcert.Authority{Client: c, Namespace: namespace, SecretName: f.caSecret, Bundle: bundle, DNSNames: names, IPs: ips}, nil
}

// syncCertificate gets the first certificate, retrying for a minute (the apiserver may be
// briefly unreachable as the pod starts).
func syncCertificate(ctx context.Context, s servingcert.Source) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := s.Sync(ctx)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
}
