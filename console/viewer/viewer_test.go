package viewer_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/console/viewer"
	"github.com/agentry-dev/agentry/contract"
)

// The tests drive the page in a real headless chromium, as a person opening the link would.

// problems collects what the page reported while a test ran: uncaught exceptions, and
// console errors other than failed loads (a refused CSP hash shows up here).
type problems struct {
	mu   sync.Mutex
	msgs []string
}

func (p *problems) add(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, fmt.Sprintf(format, a...))
}

func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not on PATH: run hack/install-chromium.sh (these tests need a real browser)")
	return ""
}

// browser starts a headless chromium for one test and returns a tab's context.
func browser(t testing.TB, width, height int64) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.DisableGPU,
		chromedp.WindowSize(int(width), int(height)),
		chromedp.Flag("hide-scrollbars", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)

	// Subscribe before the first page, and collect in goroutines: exceptions, console.error
	// and log errors other than failed loads (a script refused by the CSP shows up here).
	p := &problems{}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	consoles := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	logs := chromedp.Events(ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			p.add("exception %s (line %d)", msg, d.LineNumber)
		}
	}()
	go func() {
		for ev, err := range consoles {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				p.add("console.error")
			}
		}
	}()
	go func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				p.add("%s error: %s", ev.Entry.Source, ev.Entry.Text)
			}
		}
	}()
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, m := range p.msgs {
			t.Errorf("the page reported %s", m)
		}
	})
	return ctx
}

func serve(t testing.TB, s *site) string {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL + linkPath
}

// rendered waits for the page's initial render and returns its time since navigation, in ms.
func rendered(ctx context.Context, t testing.TB, url string) float64 {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	ms, err := chromedp.Run(ctx, chromedp.Poll[float64](`window.__agentryRendered`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the page to render: %v", err)
	}
	return ms
}

func eval[T any](ctx context.Context, t testing.TB, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it holds or d passes.
func waitFor(ctx context.Context, t *testing.T, cond string, d time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s: %v", cond, err)
	}
}

func TestHandlerHeaders(t *testing.T) {
	srv := httptest.NewServer(viewer.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/s/ns/name/token/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	want := map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": viewer.ContentSecurityPolicy(),
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "img-src data:", "require-trusted-types-for 'script'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("the policy %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("the policy %q allows unsafe sources", csp)
	}
	if !bytes.Equal(body.Bytes(), viewer.Page()) {
		t.Error("the body is not the page")
	}
	for _, ref := range []string{"src=\"http", "href=\"http", "@import", "url(http"} {
		if bytes.Contains(viewer.Page(), []byte(ref)) {
			t.Errorf("the page loads something from the network (%s)", ref)
		}
	}
	// The page repeats two names of the console's contract; they must agree.
	for _, want := range []string{fmt.Sprintf("var PAGE = %d;", console.MaxEventsPerPage), "'" + console.LastSeqHeader + "'",
		"'" + console.PathSession + "'", "'" + console.PathEvents + "?after='", "'" + console.PathPatch + "'"} {
		if !bytes.Contains(viewer.Page(), []byte(want)) {
			t.Errorf("the page does not say %s", want)
		}
	}
	for path, code := range map[string]int{"/s/ns/name/token/index.html": 200, "/s/ns/name/token/other": 404} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != code {
			t.Errorf("GET %s = %d, want %d", path, res.StatusCode, code)
		}
	}
	res, err = http.Post(srv.URL+"/s/ns/name/token/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", res.StatusCode)
	}
}

// TestRendersLongTranscript: a recorded session of 3,000 events shows completely. How long
// it takes is measured by BenchmarkRenderLongTranscript (docs/benchmarks.md), not asserted
// here: the machine running the tests is shared and noisy.
func TestRendersLongTranscript(t *testing.T) {
	f := recorded(3000, time.Now())
	s := newSite(f)
	ctx := browser(t, 1280, 900)
	ms := rendered(ctx, t, serve(t, s)+"?theme=light")
	t.Logf("3,000 events rendered %.0f ms after navigation", ms)

	got := eval[map[string]int](ctx, t, `({
		tools: document.querySelectorAll('.log .tool').length,
		turns: document.querySelectorAll('.log .turn').length,
		results: document.querySelectorAll('.log .tool .result').length,
		approvals: document.querySelectorAll('.approval.allow').length,
		retries: document.querySelectorAll('.retry').length,
		finish: document.querySelectorAll('.finish.ok').length,
		codeBlocks: document.querySelectorAll('.md pre code').length,
		diffLines: document.querySelectorAll('.result .diff .d-add').length,
		patchLines: document.querySelectorAll('.final .patch .d-add').length,
	})`)
	want := map[string]int{"tools": f.toolCalls, "turns": f.turns, "results": f.toolCalls, "approvals": 1, "retries": 1, "finish": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if got["codeBlocks"] < f.turns/4 || got["diffLines"] == 0 || got["patchLines"] == 0 {
		t.Errorf("code blocks, diff and patch not all highlighted: %v", got)
	}

	// The header, the approval's decider and the folding.
	text := eval[string](ctx, t, `document.body.innerText`)
	for _, s := range []string{"Succeeded", "shop/fix-lru", "qwen3-coder-30b", "4f9c2d1e8b7a", "alice@example.com", "the test only writes under /tmp",
		"expires in 3 days", "git.example.com/acme/shop/pulls/42", "Fixed the LRU eviction"} {
		if !strings.Contains(text, s) {
			t.Errorf("the page does not show %q", s)
		}
	}
	// A long output is closed; opening it shows the first 40 lines and a button for the rest.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('.result:not([open])').open = true`)); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, `document.querySelector('.result[open] button.more') !== null`, 5*time.Second)
	all := eval[string](ctx, t, `(() => {
		const b = document.querySelector('.result[open] button.more'), d = b.closest('.result');
		const before = d.querySelector('pre').textContent.split('\n').length;
		b.click();
		return before + ' ' + b.textContent + ' ' + d.querySelector('pre').textContent.split('\n').length;
	})()`)
	n := strings.Count(strings.TrimSuffix(rotation[0].output, "\n"), "\n") + 1
	if want := fmt.Sprintf("40 show all %d lines %d", n, n); all != want {
		t.Errorf("folding a long output: got %q, want %q", all, want)
	}
}

func TestFollowsALiveSession(t *testing.T) {
	f := recorded(3000, time.Now())
	f.events = f.events[:20]
	f.view.Live, f.view.Phase, f.view.Reason, f.view.Message, f.view.CompletionTime = true, "Running", "", "", nil
	f.view.Artifacts = []string{"Transcript", "Patch"}
	s := newSite(f)
	feed := make(chan contract.Event)
	go s.follow(feed)
	t.Cleanup(func() { close(feed) })

	ctx := browser(t, 1280, 900)
	rendered(ctx, t, serve(t, s))
	waitFor(ctx, t, `document.body.dataset.live === 'true' && document.querySelector('.live') !== null`, 5*time.Second)

	last := f.events[len(f.events)-1]
	turn := last.Turn + 1
	next := func(e contract.Event) {
		last.Seq++
		e.Version, e.Seq, e.Time, e.Turn = contract.SchemaVersion, last.Seq, time.Now(), turn
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		feed <- e
	}
	next(contract.Event{Type: contract.EventModelResponse, ModelResponse: &contract.ModelResponse{Content: "Now the **live** part.", ToolCalls: []contract.ToolCallSpec{{ID: "live-1", Name: "bash", Arguments: `{"command":"echo live"}`}}}})
	next(contract.Event{Type: contract.EventToolCall, ToolCall: &contract.ToolCall{ID: "live-1", Name: "bash", Arguments: `{"command":"echo live"}`}})
	next(contract.Event{Type: contract.EventToolResult, ToolResult: &contract.ToolResult{ID: "live-1", Name: "bash", Output: "LIVE-MARKER-1\nexit code: 0\n"}})
	waitFor(ctx, t, `document.body.innerText.includes('LIVE-MARKER-1') && document.getElementById('turn-`+fmt.Sprint(turn)+`') !== null`, 10*time.Second)

	// The session ends: the finish event is appended, then session.json says it is no longer live.
	next(contract.Event{Type: contract.EventFinish, Finish: &contract.Finish{Outcome: contract.OutcomeCompleted, Summary: "LIVE-SUMMARY", Turns: turn, ToolCalls: 1}})
	s.update(func(s *site) { s.view.Live, s.view.Phase, s.view.Summary = false, "Succeeded", "LIVE-SUMMARY" })
	waitFor(ctx, t, `document.body.dataset.follow === 'stopped'`, 15*time.Second)
	if got := eval[string](ctx, t, `document.querySelector('.badge').textContent + ' ' + (document.querySelector('.live') === null) + ' ' + document.querySelectorAll('.finish.ok').length + ' ' + document.querySelectorAll('.final .patch').length`); got != "Succeeded true 1 1" {
		t.Errorf("after the end: badge, no live mark, finish, patch = %q, want \"Succeeded true 1 1\"", got)
	}
	if n := eval[int](ctx, t, `document.querySelectorAll('.log .tool').length`); n != 1+countTools(f.events) {
		t.Errorf("%d tool calls shown, want %d", n, 1+countTools(f.events))
	}

	// Stopped means no more requests: watch the server for a few poll periods.
	events, session := s.count(console.PathEvents), s.count(console.PathSession)
	timer := time.NewTimer(3500 * time.Millisecond)
	select {
	case <-timer.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if e, se := s.count(console.PathEvents), s.count(console.PathSession); e != events || se != session {
		t.Errorf("the page kept polling after the session ended: events %d → %d, session.json %d → %d", events, e, session, se)
	}
	if events < 3 {
		t.Errorf("only %d events requests while live, want it to have polled", events)
	}
}

func countTools(evs []contract.Event) int {
	n := 0
	for _, e := range evs {
		if e.Type == contract.EventToolCall {
			n++
		}
	}
	return n
}

func TestExpiredOrRevokedLinkShowsNoData(t *testing.T) {
	for _, code := range []int{http.StatusGone, http.StatusNotFound, http.StatusForbidden} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := recorded(3000, time.Now())
			s := newSite(f)
			s.status = code
			ctx := browser(t, 1280, 900)
			if err := chromedp.Do(ctx, chromedp.Navigate(serve(t, s))); err != nil {
				t.Fatal(err)
			}
			waitFor(ctx, t, `document.body.dataset.state === 'gone'`, 10*time.Second)
			if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`.gone h1`))); err != nil {
				t.Fatal(err)
			}
			h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.gone h1`)))
			if err != nil {
				t.Fatal(err)
			}
			if h1 != "This link has expired or was revoked." {
				t.Errorf("heading = %q", h1)
			}
			html := eval[string](ctx, t, `document.documentElement.outerHTML`)
			for _, s := range []string{"fix-lru", "LRU", "qwen3", "alice", "git.example.com", "TestCache", "eviction"} {
				if strings.Contains(html, s) {
					t.Errorf("the page shows %q from the session", s)
				}
			}
			if n := s.count(console.PathPatch); n != 0 {
				t.Errorf("the page asked for the patch after session.json refused")
			}
		})
	}
}

// TestHostileTextStaysText plants markup and script URLs everywhere the model, the
// repository or a person writes, and checks that the DOM holds them only as text.
func TestHostileTextStaysText(t *testing.T) {
	const (
		img    = `<img src=x onerror="window.__pwned=1">`
		script = `<script>window.__pwned=2</script>`
	)
	hostile := "Look: " + img + " and " + script + "\n\n" +
		"[click](javascript:window.__pwned=3) [again]( JaVaScRiPt:window.__pwned=4 ) [data](data:text/html,<b>x</b>) [rel](../../secret) " +
		"<javascript:alert(1)> ![pic](https://attacker.example/p.png)\n\n" +
		"```html\n</code></pre>" + img + "\n```\n\n- `" + script + "`\n- **<b onclick=alert(1)>bold</b>**\n\n" +
		"[fine](https://example.com/ok) \u202eevil\u202c"
	now := time.Now()
	b := &transcript{at: now.Add(-time.Minute)}
	b.add(0, &contract.SessionStart{Session: "x", Task: hostile, Model: img, Tools: []string{"bash"}, SystemPrompt: script,
		ContinuedFrom: &contract.Continuation{Session: img, Commit: script, Messages: 2}})
	b.add(1, &contract.ModelRequest{Model: "m"})
	b.add(1, &contract.ModelResponse{Content: hostile, ToolCalls: []contract.ToolCallSpec{{ID: "c1", Name: "bash<img src=x>", Arguments: `{"command":"echo '` + img + `'"}`}}})
	b.add(1, &contract.Approval{ID: "ap-1\"><img src=x>", Tool: "bash" + img, Summary: script, Decision: contract.DecisionDeny, By: img, Reason: img})
	b.add(1, &contract.ToolCall{ID: "c1", Name: "bash", Arguments: `{"command":"cat page.html","x":"` + strings.ReplaceAll(img, `"`, `\"`) + `"}`})
	b.add(1, &contract.ToolResult{ID: "c1", Name: "bash", Output: "<html><body onload=\"window.__pwned=5\">" + img + script + "</body></html>\n<a href=\"javascript:window.__pwned=6\">x</a>\nexit code: 0\n"})
	b.add(1, &contract.ToolResult{ID: "c2", Name: "git_diff", Output: "diff --git a/x b/x\n+" + img + "\n-" + script})
	b.add(1, &contract.ErrorInfo{Message: img, Source: script})
	b.add(1, &contract.LimitHit{Limit: img, Max: 1, Used: 1})
	b.add(1, &contract.Finish{Outcome: contract.Outcome(img), Summary: hostile, Error: script, Diff: contract.DiffStats{FilesChanged: 1, Omitted: []contract.OmittedFile{{Path: img, Reason: script}}}})
	v := console.SessionView{Namespace: "ns", Name: img, Task: hostile, Repository: "javascript:window.__pwned=7", Ref: img, CommitSHA: script, Model: img,
		Phase: "Failed\" onmouseover=\"x", Reason: img, ContinuedFrom: script, Message: script, Summary: hostile, PullRequestURL: "javascript:window.__pwned=8",
		CreationTime: now, Decisions: []console.Decision{{ID: "ap-1\"><img src=x>", Decision: "Deny", DecidedBy: img, Reason: script}},
		Artifacts: []string{"Transcript", "Patch"}, ExpiresAt: now.Add(time.Hour)}
	s := newSite(fixture{view: v, events: b.events, patch: "diff --git a/x b/x\n+" + img + "\n+" + script + "\n"})

	ctx := browser(t, 1280, 900)
	rendered(ctx, t, serve(t, s))

	got := eval[map[string]any](ctx, t, `(() => {
		const all = [...document.body.querySelectorAll('*')];
		const attrs = all.flatMap(e => [...e.attributes].map(a => [e.tagName, a.name, a.value]));
		return {
			imgs: document.querySelectorAll('img, iframe, object, embed, svg, math, form, input, base, meta[http-equiv]').length,
			scripts: document.scripts.length,
			styles: document.querySelectorAll('style').length,
			head: [...document.head.querySelectorAll('link, script, base, meta[http-equiv]')].map(e => e.outerHTML).join(' '),
			handlers: attrs.filter(([, n]) => n.startsWith('on')).map(a => a.join(' ')),
			badURLs: attrs.filter(([, n, v]) => ['href', 'src', 'action', 'formaction', 'xlink:href', 'srcdoc'].includes(n) &&
				!/^(https?|mailto):/i.test(v)).map(a => a.join(' ')),
			links: [...document.querySelectorAll('a[href]')].map(a => a.href + ' ' + a.rel),
			pwned: window.__pwned === undefined ? 0 : window.__pwned,
			text: document.body.innerText,
		};
	})()`)
	if got["imgs"].(float64) != 0 || got["scripts"].(float64) != 1 || got["styles"].(float64) != 1 {
		t.Errorf("the page made elements from text: imgs etc. %v, scripts %v, styles %v", got["imgs"], got["scripts"], got["styles"])
	}
	if h := got["head"].(string); h != `<link rel="preload" href="session.json" as="fetch" crossorigin=""> <link rel="preload" href="events?after=0" as="fetch" crossorigin="">` {
		t.Errorf("the head changed: %s", h)
	}
	if h := got["handlers"].([]any); len(h) != 0 {
		t.Errorf("event handler attributes in the DOM: %v", h)
	}
	if u := got["badURLs"].([]any); len(u) != 0 {
		t.Errorf("URLs other than http, https and mailto in the DOM: %v", u)
	}
	if got["pwned"].(float64) != 0 {
		t.Errorf("planted script ran: __pwned = %v", got["pwned"])
	}
	for _, l := range got["links"].([]any) {
		if !strings.HasSuffix(l.(string), " noopener noreferrer nofollow") {
			t.Errorf("link %q may leak the page", l)
		}
	}
	if links := fmt.Sprint(got["links"]); !strings.Contains(links, "https://example.com/ok") || !strings.Contains(links, "https://attacker.example/p.png") {
		t.Errorf("safe links are not links: %s", links)
	}
	text := got["text"].(string)
	for _, s := range []string{img, script, "<html><body onload=", "[click]", "\\u202eevil", "Continues " + img, "2 messages of its history carried over"} {
		if !strings.Contains(text, s) && !strings.Contains(text, strings.Trim(s, "[]")) {
			t.Errorf("the page does not show %q as text", s)
		}
	}
	if strings.ContainsRune(text, '\u202e') {
		t.Error("a bidi override reached the page unescaped")
	}
}

// TestScreenshots renders the recorded session in both themes and on a phone. With
// AGENTRY_UPDATE_SCREENSHOTS=1 it writes docs/images/console-*.png.
func TestScreenshots(t *testing.T) {
	dir := t.TempDir()
	if os.Getenv("AGENTRY_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "images")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := recorded(3000, time.Now())
	for _, c := range []struct {
		name          string
		theme         string
		width, height int64
	}{
		{"console-light.png", "light", 1280, 900},
		{"console-dark.png", "dark", 1280, 900},
		{"console-phone.png", "dark", 390, 844},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := browser(t, c.width, c.height)
			rendered(ctx, t, serve(t, newSite(f))+"?theme="+c.theme)
			waitFor(ctx, t, `document.fonts.status === 'loaded'`, 10*time.Second)
			shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(shot))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if int64(cfg.Width) != c.width || int64(cfg.Height) != c.height {
				t.Errorf("screenshot is %dx%d, want %dx%d", cfg.Width, cfg.Height, c.width, c.height)
			}
			if err := os.WriteFile(filepath.Join(dir, c.name), shot, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkRenderLongTranscript measures, in a fresh headless chromium per iteration, the
// time from navigation to the complete first render of a recorded 3,000-event session
// (reported as ms/render; the goal is under 1,000).
func BenchmarkRenderLongTranscript(b *testing.B) {
	f := recorded(3000, time.Now())
	s := newSite(f)
	var total float64
	for i := 0; i < b.N; i++ {
		ctx := browser(b, 1280, 900)
		total += rendered(ctx, b, serve(b, s)+"?theme=light")
	}
	b.ReportMetric(total/float64(b.N), "ms/render")
}
