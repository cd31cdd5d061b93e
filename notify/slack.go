package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/agentry-dev/agentry/display"
)

// Bounds of the Slack message's hostile parts, in characters after escaping; Slack refuses a
// section text over 3,000 characters and a field over 2,000.
const (
	slackSummary   = 1500
	slackCommand   = 2500
	slackCondition = 500
	slackField     = 300
	slackLink      = 1500 // a field holds 2,000
	slackHeader    = 150  // Slack's limit for a header block
)

// Slack posts each event to a Slack incoming webhook as a message: blocks for people and a
// plain-text fallback for notifications. It shows the session, its phase and reason, the
// summary (cut to 1,500 characters), the pull request when there is one; for an approval, the
// exact command in a code block and the kubectl agentry commands that decide it.
//
// Text the agent influenced cannot format the message: &, < and > are sent as entities, so
// "<!channel>" or "<https://evil|click>" show as typed instead of pinging a channel or hiding
// a link, and control and invisible characters are shown as visible escapes (as kubectl
// agentry shows them). In the command's code block, a run of three or more backticks, which
// would end the block, is shown as \x60 escapes.
//
// The URL is the webhook's credential: errors show its scheme and host only.
type Slack struct {
	URL string
	// Client sends the request; http.DefaultClient's transport when nil. Its redirect policy
	// is replaced: a redirect is an error.
	Client *http.Client
}

// Send posts e once. ctx bounds the request.
func (s Slack) Send(ctx context.Context, e Event) error {
	msg, err := slackMessage(e)
	if err != nil {
		return err
	}
	if err := checkURL(s.URL); err != nil {
		return permanent("slack: %w", err)
	}
	c := noRedirects(s.Client)
	rec := &recordingTransport{base: c.Transport}
	if rec.base == nil {
		rec.base = http.DefaultTransport
	}
	c.Transport = rec
	err = slack.PostWebhookCustomHTTPContext(ctx, s.URL, c, msg)
	switch {
	case rec.code >= 200 && rec.code < 300:
		return nil
	case rec.code != 0:
		// slack-go keeps neither the body (Slack's reason, e.g. invalid_blocks) nor an
		// HTTP-date Retry-After; the recorded response has both.
		return fmt.Errorf("slack: %w", newStatusError(rec.code, rec.header, rec.body, time.Now()))
	case err != nil:
		return fmt.Errorf("slack: %w", requestError(err, s.URL, false))
	}
	return nil
}

// recordingTransport keeps the status, headers and the start of the body of the one response
// it carries (redirects are not followed), for the error Send returns.
type recordingTransport struct {
	base   http.RoundTripper
	code   int
	header http.Header
	body   []byte
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.code, t.header = resp.StatusCode, resp.Header.Clone()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		t.body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(t.body), io.LimitReader(resp.Body, maxDrain)), resp.Body}
	}
	return resp, nil
}

// slackMessage renders e. Every string from the session goes through mrkdwn or code; the rest
// is this package's own text.
func slackMessage(e Event) (*slack.WebhookMessage, error) {
	s := e.Session.bounded()
	ref := display.Escape(s.Namespace + "/" + s.Name)
	var header, fallback string
	switch e.Kind {
	case KindFinished:
		switch s.Phase {
		case "Succeeded":
			header = "✅ Session " + ref + " succeeded"
		case "Failed":
			header = "❌ Session " + ref + " failed"
		case "Cancelled":
			header = "⏹️ Session " + ref + " was cancelled"
		default:
			header = "Session " + ref + " finished: " + display.Escape(s.Phase)
		}
		fallback = header
		if s.Reason != "" {
			fallback += " (" + display.Escape(s.Reason) + ")"
		}
	case KindWaitingForApproval:
		header = "✋ Session " + ref + " waits for an approval"
		fallback = header
		if s.Approval != nil {
			fallback += " of a " + display.Escape(s.Approval.Tool) + " call"
		}
	default:
		return nil, permanent("slack: unknown event kind %q", e.Kind)
	}

	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, display.Truncate(header, slackHeader), true, false)),
		slack.NewSectionBlock(nil, slackFields(s), nil),
	}
	section := func(text string) {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwnText(text), nil, nil))
	}
	if s.Message != "" {
		section("*Message*\n" + mrkdwn(s.Message, slackCondition, false))
	}
	if s.Summary != "" {
		section("*Summary*\n" + mrkdwn(s.Summary, slackSummary, true))
	}
	if a := s.Approval; e.Kind == KindWaitingForApproval && a != nil {
		blocks = append(blocks, approvalBlocks(s, a)...)
	}
	var notes []slack.MixedElement
	if s.TranscriptURI != "" {
		notes = append(notes, mrkdwnText("Transcript: "+code(s.TranscriptURI, slackField)))
	}
	if !s.Time.IsZero() {
		notes = append(notes, mrkdwnText(s.Time.UTC().Format("2006-01-02 15:04:05 UTC")))
	}
	if len(notes) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", notes...))
	}
	return &slack.WebhookMessage{
		// The fallback shows in notifications, where Slack parses mrkdwn too.
		Text:   mrkdwn(fallback, slackHeader, false),
		Blocks: &slack.Blocks{BlockSet: blocks},
	}, nil
}

func slackFields(s Session) []*slack.TextBlockObject {
	field := func(name, value string) *slack.TextBlockObject {
		return mrkdwnText("*" + name + "*\n" + value)
	}
	fields := []*slack.TextBlockObject{
		field("Session", code(s.Namespace+"/"+s.Name, slackField)),
		field("Phase", mrkdwn(s.Phase, slackField, false)),
	}
	if s.Reason != "" {
		fields = append(fields, field("Reason", mrkdwn(s.Reason, slackField, false)))
	}
	if s.Repository != "" {
		fields = append(fields, field("Repository", mrkdwn(s.Repository, slackField, false)))
	}
	if s.FilesChanged != 0 || s.Additions != 0 || s.Deletions != 0 {
		fields = append(fields, field("Changes", fmt.Sprintf("%d files, +%d −%d", s.FilesChanged, s.Additions, s.Deletions)))
	}
	if s.TotalTokens != 0 {
		fields = append(fields, field("Tokens", fmt.Sprintf("%d", s.TotalTokens)))
	}
	if s.PullRequestURL != "" {
		fields = append(fields, field("Pull request", link(s.PullRequestURL)))
	}
	if s.Branch != "" {
		fields = append(fields, field("Branch", code(s.Branch, slackField)))
	}
	return fields
}

// approvalBlocks show the command to decide on and how to decide.
func approvalBlocks(s Session, a *Approval) []slack.Block {
	block := func(text string) slack.Block { return slack.NewSectionBlock(mrkdwnText(text), nil, nil) }
	head := "*Tool* " + code(a.Tool, slackField) + "   *Approval* " + code(a.ID, slackField)
	if !a.ExpiresAt.IsZero() {
		head += "   *Expires* " + a.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	cmd, cut := codeBlock(a.Summary, slackCommand)
	out := []slack.Block{block(head), block("*Command*\n" + cmd)}
	// Names are DNS names; an id that is not a plain word is left for the person to copy
	// from kubectl agentry pending rather than pasted into a shell command.
	id := a.ID
	if !plainWord.MatchString(id) {
		id = "<id>"
	}
	ns, name := shellWord(s.Namespace), shellWord(s.Name)
	decide := fmt.Sprintf("*Decide*\n`kubectl agentry approve %s %s -n %s`\n`kubectl agentry deny %s %s -n %s --reason \"…\"`",
		name, id, ns, name, id, ns)
	if cut {
		decide = fmt.Sprintf("_The command is longer than shown here: review it whole with_ `kubectl agentry pending %s -n %s` _or_ `kubectl get agentsession %s -n %s -o yaml`\n", name, ns, name, ns) + decide
	}
	return append(out, block(mrkdwn(decide, 3000, true)))
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// shellWord is a Kubernetes name as a shell word; names never need quoting, anything else is
// replaced.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "<name>"
}

func mrkdwnText(text string) *slack.TextBlockObject {
	// verbatim: Slack does not turn URLs, channel names or @mentions in the text into links.
	return slack.NewTextBlockObject(slack.MarkdownType, text, false, true)
}

// mrkdwn renders text the agent influenced for Slack: display escapes for control and
// invisible characters (LF and TAB kept when multiline), then &, < and > as entities, so the
// text cannot open a link, a mention or <!channel>. The result has at most limit characters,
// ending in "…" when cut, never inside an entity.
func mrkdwn(s string, limit int, multiline bool) string {
	if multiline {
		s = display.EscapeMultiline(s)
	} else {
		s = display.Escape(s)
	}
	text, _ := escapeEntities(s, limit)
	return text
}

// escapeEntities writes &, < and > as entities in at most limit characters, and says whether
// it cut s.
func escapeEntities(s string, limit int) (string, bool) {
	pieces := func(yield func(string) bool) {
		for _, r := range s {
			p := string(r)
			switch r {
			case '&':
				p = "&amp;"
			case '<':
				p = "&lt;"
			case '>':
				p = "&gt;"
			}
			if !yield(p) {
				return
			}
		}
	}
	total := 0
	for p := range pieces {
		total += utf8.RuneCountInString(p)
	}
	var b strings.Builder
	n, budget := 0, limit
	if total > limit {
		budget = limit - 1 // room for the ellipsis
	}
	for p := range pieces {
		if k := utf8.RuneCountInString(p); n+k <= budget {
			b.WriteString(p)
			n += k
			continue
		}
		break
	}
	if total <= limit {
		return b.String(), false
	}
	if limit > 0 {
		b.WriteString("…")
	}
	return b.String(), true
}

// code is s as inline code. A backtick, which would end it, is shown as \x60.
func code(s string, limit int) string {
	s = strings.ReplaceAll(display.Escape(s), "`", `\x60`)
	text, _ := escapeEntities(s, limit)
	return "`" + text + "`"
}

// fence is a run of backticks long enough to end a code block.
var fence = regexp.MustCompile("`{3,}")

// codeBlock is a command in a code block, on one line as kubectl agentry pending shows it
// (a newline as \n), and whether it was cut.
func codeBlock(s string, limit int) (string, bool) {
	s = display.Escape(s)
	s = fence.ReplaceAllStringFunc(s, func(run string) string { return strings.Repeat(`\x60`, len(run)) })
	text, cut := escapeEntities(s, limit)
	return "```\n" + text + "\n```", cut
}

// link is an http(s) URL as a Slack link, or as escaped text when it is something else.
func link(raw string) string {
	// In a link, & < > are entities and | would start the label.
	u := strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C").Replace(raw)
	if checkURL(raw) != nil || strings.ContainsAny(raw, " \t\r\n") || len(u) > slackLink {
		return mrkdwn(raw, slackField, false)
	}
	return "<" + u + "|" + mrkdwn(display.Truncate(raw, slackField), slackField, false) + ">"
}
