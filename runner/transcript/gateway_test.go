package transcript_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// fakeGateway stores events like the real one (skipping seqs it has) and can be told to
// refuse, as during an object-storage outage.
type fakeGateway struct {
	mu      sync.Mutex
	down    bool
	stored  []contract.Event
	tokens  []string
	finish  *contract.FinishRequest
	refused int
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	if f.down {
		f.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(contract.GatewayError{Error: "object storage unavailable"})
		return
	}
	switch r.URL.Path {
	case contract.PathEvents:
		var b contract.EventBatch
		_ = json.NewDecoder(r.Body).Decode(&b)
		for _, ev := range b.Events {
			if ev.Seq == int64(len(f.stored))+1 {
				f.stored = append(f.stored, ev)
			}
		}
		_ = json.NewEncoder(w).Encode(contract.EventAck{LastSeq: int64(len(f.stored))})
	case contract.PathFinish:
		var req contract.FinishRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.finish = &req
		_ = json.NewEncoder(w).Encode(contract.FinishResponse{Transcript: &contract.Object{URI: "s3://b/t"}})
	}
}

func (f *fakeGateway) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func TestGatewaySinkKeepsUnacknowledgedEventsUntilStored(t *testing.T) {
	fg := &fakeGateway{}
	srv := httptest.NewServer(fg)
	defer srv.Close()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	gw, err := gatewayclient.New(srv.URL, token, "")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := transcript.NewGateway(transcript.GatewayConfig{GW: gw, SpoolDir: spool,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, CloseTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := transcript.NewRecorder(transcript.NewRedactor(), nil, sink)
	ctx := context.Background()
	emit := func() {
		rec.Emit(contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{Message: "x", Source: "runner"}})
	}
	emit()
	if err := rec.Flush(ctx); err != nil || sink.Acknowledged() != 1 {
		t.Fatalf("flush = %v, acknowledged %d", err, sink.Acknowledged())
	}
	fg.set(true)
	emit()
	emit()
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("a refused batch was acknowledged")
	}
	if ents, _ := os.ReadDir(spool); len(ents) != 1 {
		t.Errorf("spool holds %d files, want the one unacknowledged batch", len(ents))
	}
	// The kubelet rotates the token; the next request must carry the new one.
	if err := os.WriteFile(token, []byte("tok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			fg.mu.Lock()
			n := fg.refused
			fg.mu.Unlock()
			if n >= 3 { // storage comes back after a few refusals
				fg.set(false)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	emit()
	stored, err := rec.Close(ctx, transcript.Final{Summary: contract.Summary{Outcome: contract.OutcomeCompleted}, Patch: []byte("diff")})
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	if stored[0].Transcript == nil || stored[0].Transcript.URI != "s3://b/t" {
		t.Errorf("stored = %+v", stored[0])
	}
	fg.mu.Lock()
	defer fg.mu.Unlock()
	if len(fg.stored) != 4 || fg.finish == nil || fg.finish.LastSeq != 4 || string(fg.finish.Patch) != "diff" {
		t.Errorf("gateway stored %d events, finish %+v", len(fg.stored), fg.finish)
	}
	if last := fg.tokens[len(fg.tokens)-1]; last != "Bearer tok-2" {
		t.Errorf("last request carried %q, want the rotated token", last)
	}
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Errorf("spool still holds %d files after everything was acknowledged", len(ents))
	}
}
