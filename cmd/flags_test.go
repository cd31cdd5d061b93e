package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// --gateway-max-request-bytes takes a Kubernetes quantity; a bound below the largest body
// the gateway takes (it could never admit that body) and a malformed value are refused
// with the flag named.
func TestGatewayMaxRequestBytesFlag(t *testing.T) {
	parse := func(args ...string) (*managerFlags, error) {
		var f managerFlags
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.bind(fs)
		return &f, fs.Parse(args)
	}
	cases := []struct {
		args    []string
		want    int64
		wantErr string
	}{
		{nil, 256 << 20, ""},
		{[]string{"--gateway-max-request-bytes=1Gi"}, 1 << 30, ""},
		{[]string{"--gateway-max-request-bytes=100M"}, 100_000_000, ""},
		{[]string{"--gateway-max-request-bytes=10Mi"}, 0, "--gateway-max-request-bytes 10Mi: must be at least 64Mi"},
		{[]string{"--gateway-max-request-bytes=lots"}, 0, `invalid value "lots" for flag -gateway-max-request-bytes`},
	}
	for _, tc := range cases {
		f, err := parse(tc.args...)
		var got int64
		if err == nil {
			got, err = f.maxRequestBytesInFlight()
		}
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %d, %v; want %d", tc.args, got, err, tc.want)
		}
	}
}
