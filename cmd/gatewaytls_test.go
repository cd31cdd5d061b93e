package main

import (
	"strings"
	"testing"
)

// The manager refuses gateway TLS flags that disagree, naming the flag to fix, before it
// starts anything.
func TestGatewayTLSFlagsAreValidated(t *testing.T) {
	const https, http = "https://agentry-gateway.agentry-system.svc:8443", "http://agentry-gateway.agentry-system.svc:8443"
	files := gatewayTLSFlags{mode: tlsFiles, certFile: "c", keyFile: "k", caFile: "ca", caConfigMap: "agentry-gateway-ca"}
	for _, tc := range []struct {
		name  string
		flags gatewayTLSFlags
		url   string
		want  string // "" = accepted
	}{
		{"managed", gatewayTLSFlags{mode: tlsManaged, caConfigMap: "agentry-gateway-ca"}, https, ""},
		{"files", files, https, ""},
		{"none", gatewayTLSFlags{mode: tlsNone}, http, ""},
		{"managed with an http URL", gatewayTLSFlags{mode: tlsManaged, caConfigMap: "x"}, http, "--gateway-url"},
		{"none with an https URL", gatewayTLSFlags{mode: tlsNone}, https, "must be http://"},
		{"unknown mode", gatewayTLSFlags{mode: "tls"}, https, `--gateway-tls "tls": want managed, files or none`},
		{"files without the CA", gatewayTLSFlags{mode: tlsFiles, certFile: "c", keyFile: "k", caConfigMap: "x"}, https, "--gateway-tls-ca-file"},
		{"cert files with managed", gatewayTLSFlags{mode: tlsManaged, certFile: "c", caConfigMap: "x"}, https, "apply only with --gateway-tls=files"},
		{"no ConfigMap", gatewayTLSFlags{mode: tlsManaged}, https, "--gateway-ca-configmap"},
		{"relative URL", gatewayTLSFlags{mode: tlsManaged, caConfigMap: "x"}, "agentry-gateway:8443", "not an absolute URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.flags.validate(tc.url)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
