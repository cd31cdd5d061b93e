package approval_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
)

func gatewayClient(t *testing.T, url, token string) *gatewayclient.Client {
	t.Helper()
	gw, err := gatewayclient.New(url, token, "")
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

func TestGatewayAskerPollsUntilADecision(t *testing.T) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req contract.ApprovalRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.ID != "call_1" || req.Command != "go test ./..." || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch polls.Add(1) {
		case 1:
			_ = json.NewEncoder(w).Encode(contract.ApprovalAnswer{Pending: true})
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable) // a gateway restart
		default:
			_ = json.NewEncoder(w).Encode(contract.ApprovalAnswer{Decision: contract.DecisionAllow, By: "user", Reason: "ok"})
		}
	}))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &approval.Gateway{GW: gatewayClient(t, srv.URL, token)}
	res, err := g.Ask(context.Background(), approval.Request{ID: "call_1", Tool: "bash", Class: approval.ClassShell, Summary: "go test ./...", Command: "go test ./..."})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != contract.DecisionAllow || res.Reason != "ok" || res.By != "gateway" || polls.Load() != 3 {
		t.Errorf("result %+v after %d polls", res, polls.Load())
	}
}

func TestGatewayAskerFallsBackWhenTheGatewayIsGone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(token, []byte("tok"), 0o600)
	g := &approval.Gateway{GW: gatewayClient(t, srv.URL, token), Timeout: 1, OnTimeout: contract.DecisionDeny}
	res, err := g.Ask(context.Background(), approval.Request{ID: "c", Tool: "bash", Class: approval.ClassShell})
	if err != nil || res.Decision != contract.DecisionDeny || res.By != "timeout" {
		t.Errorf("result %+v, %v; want the local onTimeout decision", res, err)
	}
}
