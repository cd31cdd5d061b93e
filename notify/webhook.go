package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// SignatureHeader carries the HMAC-SHA256 of a webhook request's body.
const SignatureHeader = "X-Agentry-Signature"

// CloudEvents attributes of a webhook's event.
const (
	contentTypeCloudEvents = "application/cloudevents+json"
	typeFinished           = "dev.agentry.session.finished.v1"
	typeWaitingForApproval = "dev.agentry.session.waitingforapproval.v1"
)

// Webhook posts each event to URL as a CloudEvents 1.0 event in structured JSON mode
// (Content-Type: application/cloudevents+json):
//
//	specversion      "1.0"
//	id               Event.ID()
//	source           "agentry.dev/namespaces/<namespace>/agentsessions/<name>"
//	type             "dev.agentry.session.finished.v1" or "dev.agentry.session.waitingforapproval.v1"
//	subject          "<namespace>/<name>"
//	time             Session.Time, RFC 3339 (absent when zero)
//	datacontenttype  "application/json"
//	data             the Session as JSON
//
// The source is a URI reference relative to nothing (like a Kubernetes object reference
// without the API version, so it stays the same across versions); with the id it identifies
// the event.
//
// When Secret is not empty, the request carries
//
//	X-Agentry-Signature: sha256=<lowercase hex of HMAC-SHA256(Secret, body)>
//
// computed over the exact bytes of the body. A receiver recomputes the HMAC over the raw body
// it read (before any JSON decoding) with the shared secret and compares the two with a
// constant-time comparison (hmac.Equal in Go); on a mismatch it rejects the request. The body
// holds the id and time, so a receiver can also refuse old events and replays.
//
// Any 2xx accepts the event. Redirects are not followed. Errors show the URL without its
// query, which may hold a token.
type Webhook struct {
	URL    string
	Secret []byte
	// Client sends the request; http.DefaultClient's transport when nil. Its redirect policy
	// is replaced: a redirect is an error.
	Client *http.Client
}

// cloudEvent is the structured-mode JSON form of an event.
type cloudEvent struct {
	SpecVersion     string  `json:"specversion"`
	ID              string  `json:"id"`
	Source          string  `json:"source"`
	Type            string  `json:"type"`
	Subject         string  `json:"subject"`
	Time            string  `json:"time,omitempty"`
	DataContentType string  `json:"datacontenttype"`
	Data            Session `json:"data"`
}

// Send posts e once. ctx bounds the request.
func (w Webhook) Send(ctx context.Context, e Event) error {
	body, err := cloudEventJSON(e)
	if err != nil {
		return err
	}
	if err := checkURL(w.URL); err != nil {
		return permanent("webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return permanent("webhook: %w", requestError(err, w.URL, true))
	}
	req.Header.Set("Content-Type", contentTypeCloudEvents)
	req.Header.Set("User-Agent", "agentry-notify")
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, "sha256="+sign(w.Secret, body))
	}
	resp, err := noRedirects(w.Client).Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", requestError(err, w.URL, true))
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

// sign is the hex HMAC-SHA256 of body.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// cloudEventJSON is the request body for e.
func cloudEventJSON(e Event) ([]byte, error) {
	var typ string
	switch e.Kind {
	case KindFinished:
		typ = typeFinished
	case KindWaitingForApproval:
		typ = typeWaitingForApproval
	default:
		return nil, permanent("webhook: unknown event kind %q", e.Kind)
	}
	s := e.Session.bounded()
	ev := cloudEvent{
		SpecVersion:     "1.0",
		ID:              e.ID(),
		Source:          "agentry.dev/namespaces/" + url.PathEscape(s.Namespace) + "/agentsessions/" + url.PathEscape(s.Name),
		Type:            typ,
		Subject:         s.Namespace + "/" + s.Name,
		DataContentType: "application/json",
		Data:            s,
	}
	if !s.Time.IsZero() {
		ev.Time = s.Time.UTC().Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, permanent("webhook: encoding the event: %w", err)
	}
	return body, nil
}

// checkURL refuses what cannot be an http(s) endpoint, without quoting it.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errNotHTTPURL
	}
	return nil
}

var errNotHTTPURL = errors.New("the URL is not an http(s) URL")

// noRedirects is c (or a default client) with redirects turned into responses: a POST that
// is redirected would otherwise be re-sent, signature included, to wherever the server says.
func noRedirects(c *http.Client) *http.Client {
	out := http.Client{}
	if c != nil {
		out = *c
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// maxDrain bounds what is read of a response body so that the connection can be reused.
const maxDrain = 64 << 10

// checkResponse turns a response outside 2xx into a *StatusError, reading at most a bounded
// part of the body.
func checkResponse(resp *http.Response) error {
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain)) }()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return newStatusError(resp.StatusCode, resp.Header, snippet, time.Now())
}
