package transcript

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// GatewayConfig configures the session-gateway sink.
type GatewayConfig struct {
	// GW reaches the gateway with the pod's token.
	GW *gatewayclient.Client
	// SpoolDir keeps unacknowledged batches on local disk.
	SpoolDir string
	// RequestTimeout bounds one POST (default 15s), so a hung gateway holds the
	// session back no longer than that.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts after a failure
	// (default 250ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout is how long Close keeps retrying to deliver the last events
	// and the final artifacts (default 5m).
	CloseTimeout time.Duration
}

// Gateway sends the session to the session gateway, which stores each batch in
// object storage before acknowledging it. Unacknowledged events are kept in
// memory and in SpoolDir; a failed send is retried with backoff at later
// flushes and, at Close, until CloseTimeout, so a gateway restart or an object
// storage outage loses nothing.
type Gateway struct {
	cfg GatewayConfig

	mu        sync.Mutex
	queue     []contract.Event // unacknowledged, consecutive
	acked     int64
	spooled   []spoolFile
	nextTry   time.Time
	backoff   time.Duration
	lastErr   error
	lastQueue int64
}

type spoolFile struct {
	path string
	last int64
}

// NewGateway prepares the sink; it does not contact the gateway.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.GW == nil {
		return nil, errors.New("gateway sink needs a gateway client")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Minute
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("gateway sink needs a spool directory")
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating gateway spool directory: %w", err)
	}
	return &Gateway{cfg: cfg}, nil
}

// RedeliversOnClose tells the Recorder that Close, not Write, reports
// whether every event was finally stored.
func (g *Gateway) RedeliversOnClose() bool { return true }

// Acknowledged is the last sequence number the gateway acknowledged.
func (g *Gateway) Acknowledged() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

// Write queues new events, spools them, and sends the queue unless the sink is
// backing off after a failure. It acknowledges only what the gateway did.
func (g *Gateway) Write(ctx context.Context, batch []contract.Event) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var fresh []contract.Event
	for _, ev := range batch {
		if ev.Seq > g.lastQueue {
			fresh = append(fresh, ev)
			g.lastQueue = ev.Seq
		}
	}
	if len(fresh) > 0 {
		if err := g.spool(fresh); err != nil {
			return err
		}
		g.queue = append(g.queue, fresh...)
	}
	if len(g.queue) == 0 {
		return nil
	}
	if time.Now().Before(g.nextTry) {
		return fmt.Errorf("gateway sink: %d events not yet acknowledged (retrying after: %w)", len(g.queue), g.lastErr)
	}
	return g.sendQueue(ctx)
}

func (g *Gateway) spool(evs []contract.Event) error {
	var buf bytes.Buffer
	for i := range evs {
		b, err := json.Marshal(&evs[i])
		if err != nil {
			return fmt.Errorf("encoding event %d: %w", evs[i].Seq, err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	first, last := evs[0].Seq, evs[len(evs)-1].Seq
	p := filepath.Join(g.cfg.SpoolDir, fmt.Sprintf("%012d-%012d.jsonl", first, last))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spooling events: %w", err)
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spooling events: %w", err)
	}
	g.spooled = append(g.spooled, spoolFile{path: p, last: last})
	return nil
}

// maxBatch keeps one request small enough for any proxy in between.
const maxBatch = 2000

// sendQueue posts the queue in chunks until it is empty or a post fails.
// Callers hold g.mu.
func (g *Gateway) sendQueue(ctx context.Context) error {
	for len(g.queue) > 0 {
		chunk := g.queue[:min(len(g.queue), maxBatch)]
		var ack contract.EventAck
		status, err := g.post(ctx, contract.PathEvents, contract.EventBatch{Events: chunk}, &ack)
		if err == nil || status == http.StatusConflict {
			g.ackUpTo(ack.LastSeq)
		}
		if err != nil {
			g.failed(err)
			return fmt.Errorf("gateway sink: %d events not yet acknowledged: %w", len(g.queue), err)
		}
		g.backoff = 0
		g.nextTry = time.Time{}
	}
	return nil
}

func (g *Gateway) ackUpTo(seq int64) {
	if seq <= g.acked {
		return
	}
	g.acked = seq
	i := 0
	for i < len(g.queue) && g.queue[i].Seq <= seq {
		i++
	}
	g.queue = append(g.queue[:0], g.queue[i:]...)
	j := 0
	for j < len(g.spooled) && g.spooled[j].last <= seq {
		_ = os.Remove(g.spooled[j].path)
		j++
	}
	g.spooled = append(g.spooled[:0], g.spooled[j:]...)
}

func (g *Gateway) failed(err error) {
	g.lastErr = err
	if g.backoff == 0 {
		g.backoff = g.cfg.MinBackoff
	} else {
		g.backoff = min(2*g.backoff, g.cfg.MaxBackoff)
	}
	g.nextTry = time.Now().Add(g.backoff)
}

// httpError is a non-2xx answer from the gateway.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("gateway answered %d: %s", e.status, e.msg) }

// post sends v and decodes a 2xx answer into out (a 409's lastSeq too). RequestTimeout
// bounds the whole exchange, reading the answer included.
func (g *Gateway) post(ctx context.Context, path string, v, out any) (int, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	resp, err := g.cfg.GW.Do(ctx, http.MethodPost, path, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return resp.StatusCode, fmt.Errorf("decoding gateway answer: %w", err)
			}
		}
		return resp.StatusCode, nil
	}
	var ge contract.GatewayError
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &ge) == nil && ge.Error != "" {
		msg = ge.Error
		if ack, ok := out.(*contract.EventAck); ok {
			ack.LastSeq = ge.LastSeq
		}
	}
	return resp.StatusCode, &httpError{status: resp.StatusCode, msg: msg}
}

// retryable says whether waiting can help: transport failures, 5xx, 409
// (resend) and 429. 400, 401, 403 cannot get better.
func retryable(status int) bool {
	return status == 0 || status >= 500 || status == http.StatusConflict || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// Close delivers the remaining events, then asks the gateway to write the
// consolidated transcript, the patch and the summary, retrying with backoff
// until CloseTimeout.
func (g *Gateway) Close(ctx context.Context, final Final) (Stored, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.CloseTimeout)
	defer cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	wait := func() error {
		g.failed(g.lastErr)
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway sink: giving up with %d events unacknowledged: %w", len(g.queue), g.lastErr)
		case <-time.After(g.backoff):
			return nil
		}
	}
	for len(g.queue) > 0 {
		if err := g.sendQueue(ctx); err != nil {
			var he *httpError
			if errors.As(err, &he) && !retryable(he.status) || gatewaytls.Untrusted(err) {
				return Stored{}, err
			}
			if werr := wait(); werr != nil {
				return Stored{}, werr
			}
		}
	}
	for {
		var resp contract.FinishResponse
		status, err := g.post(ctx, contract.PathFinish, contract.FinishRequest{LastSeq: g.lastQueue, Summary: final.Summary, Patch: final.Patch}, &resp)
		if err == nil {
			for _, s := range g.spooled {
				_ = os.Remove(s.path)
			}
			g.spooled = nil
			return Stored{Transcript: resp.Transcript, Patch: resp.Patch, Summary: resp.Summary}, nil
		}
		g.lastErr = err
		if !retryable(status) || gatewaytls.Untrusted(err) {
			return Stored{}, fmt.Errorf("gateway sink: finishing: %w", err)
		}
		if werr := wait(); werr != nil {
			return Stored{}, werr
		}
	}
}
