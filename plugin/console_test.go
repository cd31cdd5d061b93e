package plugin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/console/viewer"
	"github.com/agentry-dev/agentry/plugin"
)

// TestConsoleServesThePageThroughAShareLink runs `console`, reads the page and its data
// through the local server as a browser would, and stops it as Ctrl-C would.
func TestConsoleServesThePageThroughAShareLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	recorded := recordedTranscript(t)
	l.archived(t, ctx, "fix", "", recorded, nil)

	run, stop := context.WithCancel(ctx)
	stdout, stderr := newLines(), newLines()
	code := make(chan int, 1)
	go func() {
		code <- plugin.Main(run, []string{"--kubeconfig", env.Kubeconfig, "-n", l.ns, "console", "fix"}, strings.NewReader(""), stdout, stderr)
	}()
	line := stdout.await(ctx, t, "Serving session "+l.ns+"/fix at http://127.0.0.1:")
	page := strings.Fields(line)[4]
	if !strings.HasSuffix(page, "/") || len(page) < len("http://127.0.0.1:1/")+32 {
		t.Fatalf("the page's URL has no secret path: %s", page)
	}
	if status, body := fetch(t, page); status != http.StatusOK || body != string(viewer.Page()) {
		t.Errorf("the page: %d, want console/viewer's page\n%.300s", status, body)
	}
	if status, body := fetch(t, page+"session.json"); status != http.StatusOK || !strings.Contains(body, `"name":"fix"`) {
		t.Errorf("session.json through the local server: %d\n%s", status, body)
	}
	if status, body := fetch(t, page+"transcript.jsonl"); status != http.StatusOK || body != string(recorded) {
		t.Errorf("transcript.jsonl through the local server: %d", status)
	}
	if status, body := fetch(t, page+"events?after=6"); status != http.StatusOK || strings.Count(body, "\n") != 2 {
		t.Errorf("events?after=6 through the local server: %d\n%s", status, body)
	}
	root := page[:strings.Index(page[len("http://"):], "/")+len("http://")+1]
	if status, _ := fetch(t, root+"session.json"); status != http.StatusNotFound {
		t.Errorf("the local server answered %d without its secret path", status)
	}
	// A page from another site that points its own name at 127.0.0.1 (DNS rebinding).
	req, _ := http.NewRequest(http.MethodGet, page+"session.json", nil)
	req.Host = "evil.example:80"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a request for another host name was answered: %v %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}

	stop()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("console after Ctrl-C: exit %d\n%s", c, stderr)
		}
	case <-ctx.Done():
		t.Fatal("console did not stop")
	}
	l.noShares(t, ctx)
}
