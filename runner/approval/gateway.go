package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// Gateway asks through the session gateway: the call appears in the session's
// status.pendingApprovals and a user decides in spec.approvals. The request
// long-polls and is repeated until a decision arrives; the gateway applies the
// session's approval.onTimeout when it expires.
type Gateway struct {
	// GW reaches the gateway with the pod's token.
	GW *gatewayclient.Client
	// Timeout is a local backstop: when no answer (not even "pending") can be
	// had for this long, for example because the gateway is unreachable,
	// OnTimeout applies. Zero means wait as long as the context allows.
	Timeout   time.Duration
	OnTimeout contract.Decision
}

func (g *Gateway) Ask(ctx context.Context, r Request) (Result, error) {
	body, err := json.Marshal(contract.ApprovalRequest{ID: r.ID, Tool: r.Tool, Class: string(r.Class), Summary: r.Summary, Command: r.Command})
	if err != nil {
		return Result{}, err
	}
	var expires time.Time
	lastAnswer := time.Now()
	backoff := 250 * time.Millisecond
	for {
		ans, status, err := g.poll(ctx, body)
		switch {
		case err == nil && !ans.Pending:
			by := "gateway"
			if strings.HasPrefix(ans.By, "user:") {
				by = ans.By // who decided, as admission verified it ("user:alice")
			}
			return Result{Decision: ans.Decision, By: by, Reason: reasonOf(ans)}, nil
		case err == nil:
			lastAnswer, backoff = time.Now(), 250*time.Millisecond
			if ans.ExpiresAt != nil {
				expires = *ans.ExpiresAt
			}
			continue
		case status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden ||
			status == http.StatusConflict || status == http.StatusRequestEntityTooLarge || gatewaytls.Untrusted(err):
			// The gateway refused the question itself (an id it has seen with another
			// action, a request too large, a session that ended), or the server is not
			// the gateway (its certificate does not verify): retrying cannot help, and
			// waiting into onTimeout could turn a refusal into Allow. The loop denies
			// the call.
			return Result{}, err
		}
		if ctx.Err() != nil {
			return Result{}, context.Cause(ctx)
		}
		// The gateway is unreachable: past the expiry it promised (or our own
		// timeout), decide as the session's policy would.
		gone := g.Timeout > 0 && time.Since(lastAnswer) > g.Timeout
		if (!expires.IsZero() && time.Now().After(expires.Add(time.Minute))) || gone {
			d := g.OnTimeout
			if d == "" {
				d = contract.DecisionDeny
			}
			return Result{Decision: d, By: "timeout", Reason: fmt.Sprintf("no decision could be obtained from the gateway: %v", err)}, nil
		}
		select {
		case <-ctx.Done():
			return Result{}, context.Cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func reasonOf(a contract.ApprovalAnswer) string {
	if a.By == "" || a.By == "user" || strings.HasPrefix(a.By, "user:") {
		return a.Reason
	}
	if a.Reason == "" {
		return a.By
	}
	return a.By + ": " + a.Reason
}

func (g *Gateway) poll(ctx context.Context, body []byte) (contract.ApprovalAnswer, int, error) {
	var ans contract.ApprovalAnswer
	ctx, cancel := context.WithTimeout(ctx, contract.ApprovalPollWindow+30*time.Second)
	defer cancel()
	resp, err := g.GW.Do(ctx, http.MethodPost, contract.PathApprovals, body)
	if err != nil {
		return ans, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return ans, resp.StatusCode, fmt.Errorf("gateway answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return ans, resp.StatusCode, fmt.Errorf("decoding approval answer: %w", err)
	}
	return ans, resp.StatusCode, nil
}
