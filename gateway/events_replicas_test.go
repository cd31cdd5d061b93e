package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
)

// Two replicas serve one session (every replica serves every session). A batch that
// follows what a replica last stored is written without reading the stored segments first,
// so a replica whose view is stale (the other one stored events since) must still never
// replace a stored event: a different event under a stored seq is refused, an identical
// re-send (the runner's retry after a lost acknowledgement, re-batched with a newer event)
// is acknowledged, and the transcript holds each event once, as first stored.
func TestReplicaWithAStaleViewNeverReplacesStoredEvents(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t)
	a, b := startGateway(t), startGateway(t)
	s := f.session("replicas")
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	send := func(g *gw, evs ...string) (int, string) {
		t.Helper()
		return post(t, g.URL+contract.PathEvents, tok, batchOf(evs...))
	}

	if code, body := send(a, event(1, "one"), event(2, "two"), event(3, "three")); code != http.StatusOK || !strings.Contains(body, `"lastSeq":3`) {
		t.Fatalf("events 1-3 on replica A: %d %s", code, body)
	}
	// The runner's next batch lands on B; A still believes 3 is the last stored event.
	if code, body := send(b, event(4, "four"), event(5, "five"), event(6, "six")); code != http.StatusOK || !strings.Contains(body, `"lastSeq":6`) {
		t.Fatalf("events 4-6 on replica B: %d %s", code, body)
	}
	// To A the batch follows what it stored: without the conditional PUT it would replace B's segment.
	if code, body := send(a, event(4, "rewritten"), event(5, "five"), event(6, "six")); code != http.StatusConflict || !strings.Contains(body, "differs") || !strings.Contains(body, `"lastSeq":6`) {
		t.Errorf("a different event 4 on replica A: %d %s, want 409 naming lastSeq 6", code, body)
	}
	if code, body := send(a, event(4, "four"), event(5, "five"), event(6, "six"), event(7, "seven")); code != http.StatusOK || !strings.Contains(body, `"lastSeq":7`) {
		t.Errorf("the identical re-send 4-6 with event 7 on replica A: %d %s, want 200 lastSeq 7", code, body)
	}
	// B's view is stale now (6): event 8 is a gap to it until it reads what A stored.
	if code, body := send(b, event(8, "eight")); code != http.StatusOK || !strings.Contains(body, `"lastSeq":8`) {
		t.Errorf("event 8 on replica B: %d %s, want 200 lastSeq 8", code, body)
	}

	for _, g := range []*gw{a, b} {
		got, err := g.srv.ReadLiveTranscript(ctx, f.ns, s.Name, s.UID)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, line := range strings.Split(strings.TrimSpace(string(got)), "\n") {
			ev, err := contract.DecodeEvent([]byte(line))
			if err != nil {
				t.Fatalf("stored event %q: %v", line, err)
			}
			msgs = append(msgs, fmt.Sprintf("%d:%s", ev.Seq, ev.Error.Message))
		}
		if want := "1:one 2:two 3:three 4:four 5:five 6:six 7:seven 8:eight"; strings.Join(msgs, " ") != want {
			t.Errorf("stored transcript = %s, want %s", strings.Join(msgs, " "), want)
		}
	}
	prefix := "sessions/" + f.ns + "/replicas/" + string(s.UID) + "/segments/"
	var segs []string
	for o := range s3c.ListObjects(ctx, bucket, minioPrefix(prefix)) {
		content := string(objectBytes(t, "s3://"+bucket+"/"+o.Key))
		segs = append(segs, fmt.Sprintf("%s(%d events)", strings.TrimPrefix(o.Key, prefix), strings.Count(content, "\n")))
		if strings.Contains(content, "rewritten") {
			t.Errorf("segment %s holds the refused event: %s", o.Key, content)
		}
	}
	if want := "[000000000001.jsonl(3 events) 000000000004.jsonl(3 events) 000000000007.jsonl(1 events) 000000000008.jsonl(1 events)]"; fmt.Sprint(segs) != want {
		t.Errorf("segments = %v, want %s", segs, want)
	}
}
