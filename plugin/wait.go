package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

const (
	// maxResyncFailures bounds consecutive failed reads before waiting gives up (exit 1).
	maxResyncFailures = 6
	// logDrainTimeout bounds how long the end of the runner's log is awaited once the
	// session is done.
	logDrainTimeout = 10 * time.Second
	// maxLogLine bounds one log line held in memory; longer lines are cut.
	maxLogLine = 64 << 10
)

// waiter watches one session until it is finished, reporting changes on errOut.
type waiter struct {
	c      client.WithWatch
	logs   kubernetes.Interface // non-nil with --follow
	key    client.ObjectKey
	out    io.Writer
	errOut io.Writer // safe for concurrent use: the log stream writes to it too

	lastLine  string
	announced map[string]bool // pending approval ids already printed

	logState  logState
	logDone   chan struct{}
	logCancel context.CancelFunc
	streaming atomic.Bool
}

type logState int

const (
	logNotStarted logState = iota
	logStarted
	logUnavailable
)

func (w *waiter) wait(ctx context.Context, timeout time.Duration) error {
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	defer w.stopLogs()
	s, err := w.until(waitCtx)
	if err != nil {
		if ctx.Err() == nil && errors.Is(waitCtx.Err(), context.DeadlineExceeded) {
			w.stopLogs()
			if s != nil {
				w.summary(s)
			}
			return &exitError{code: ExitWaitTimeout, err: fmt.Errorf("--wait-timeout %s elapsed before session %s finished; it is left running (stop it with: kubectl agentry cancel %s -n %s)",
				timeout, w.key.Name, w.key.Name, w.key.Namespace)}
		}
		return err
	}
	w.drainLogs(ctx)
	w.summary(s)
	if code := outcomeExit(s); code != ExitSucceeded {
		return &exitError{code: code} // the summary said why
	}
	return nil
}

// until returns the session once it is finished. It reads the session, then watches it from
// that resourceVersion; when the watch ends (the apiserver closes watches after a while, or
// the resourceVersion expired) it reads again and watches anew. It returns the last session
// seen with any error.
func (w *waiter) until(ctx context.Context) (*v1.AgentSession, error) {
	var last *v1.AgentSession
	failures := 0
	for {
		if failures > 0 {
			if err := pause(ctx, backoff(failures)); err != nil {
				return last, err
			}
		}
		s := &v1.AgentSession{}
		if err := w.c.Get(ctx, w.key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return last, fmt.Errorf("session %s was deleted before it finished", w.key)
			}
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if failures++; failures > maxResyncFailures || apierrors.IsForbidden(err) {
				return last, fmt.Errorf("reading session %s: %w", w.key, err)
			}
			continue
		}
		last = s
		w.observe(ctx, s)
		if finished(s) {
			return s, nil
		}
		got, err := w.watchFrom(ctx, s.ResourceVersion)
		if got != nil {
			last = got
			if finished(got) {
				return got, nil
			}
		}
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return last, ctx.Err()
		case errors.Is(err, errDeleted), apierrors.IsForbidden(err):
			return last, err
		default:
			if failures++; failures > maxResyncFailures {
				return last, err
			}
		}
	}
}

var errDeleted = errors.New("the session was deleted before it finished")

// watchFrom watches the session from rv until it is finished (returned) or the watch ends (nil
// error: read again).
func (w *waiter) watchFrom(ctx context.Context, rv string) (*v1.AgentSession, error) {
	wt, err := w.c.Watch(ctx, &v1.AgentSessionList{}, &client.ListOptions{
		Namespace:     w.key.Namespace,
		FieldSelector: fields.OneTermEqualSelector("metadata.name", w.key.Name),
		Raw:           &metav1.ListOptions{ResourceVersion: rv},
	})
	if err != nil {
		return nil, fmt.Errorf("watching session %s: %w", w.key, err)
	}
	defer wt.Stop()
	var last *v1.AgentSession
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case ev, ok := <-wt.ResultChan():
			if !ok {
				return last, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				s, ok := ev.Object.(*v1.AgentSession)
				if !ok {
					continue
				}
				last = s
				w.observe(ctx, s)
				if finished(s) {
					return s, nil
				}
			case watch.Deleted:
				return last, fmt.Errorf("session %s: %w", w.key, errDeleted)
			case watch.Error:
				// Typically 410 Gone: the resourceVersion expired. Read again.
				return last, nil
			}
		}
	}
}

func backoff(failures int) time.Duration {
	d := 500 * time.Millisecond << (failures - 1)
	return min(d, 10*time.Second)
}

// pause waits d or until ctx is done (a retry backoff, not synchronisation).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// observe reports what changed: one progress line, and each new pending approval with the
// command that decides it.
func (w *waiter) observe(ctx context.Context, s *v1.AgentSession) {
	if w.logs != nil {
		w.followLogs(ctx, s)
	}
	if line := progressLine(s, w.streaming.Load()); line != w.lastLine {
		w.lastLine = line
		fmt.Fprintln(w.errOut, line)
	}
	if w.announced == nil {
		w.announced = map[string]bool{}
	}
	for _, p := range undecided(s) {
		if w.announced[p.ID] {
			continue
		}
		w.announced[p.ID] = true
		// The agent wrote the summary: escaped, so it cannot rewrite the terminal, and whole,
		// since a person decides on it.
		id := display.Escape(p.ID)
		fmt.Fprintf(w.errOut, "%s: waiting for approval %s: %s: %s\n  decide: kubectl agentry approve %s %s -n %s   (or: kubectl agentry deny %s %s -n %s --reason ...)\n",
			s.Name, id, display.Escape(p.Tool), display.Escape(p.Summary), s.Name, id, s.Namespace, s.Name, id, s.Namespace)
	}
}

// progressLine is the one-line state of s. While the runner's log is being streamed it
// carries no turn, tokens or tool: the log shows them.
func progressLine(s *v1.AgentSession, streaming bool) string {
	phase := string(s.Status.Phase)
	if phase == "" {
		phase = "created, not yet admitted"
	}
	parts := []string{phase}
	p := s.Status.Progress
	if !streaming {
		if p != nil && p.Turn > 0 {
			parts = append(parts, fmt.Sprintf("turn %d", p.Turn))
		}
		if u := s.Status.Usage; u != nil && u.TotalTokens > 0 {
			parts = append(parts, fmt.Sprintf("%d tokens", u.TotalTokens))
		}
		if p != nil && p.LastTool != "" {
			parts = append(parts, "last tool "+display.Escape(p.LastTool))
		}
	}
	line := s.Name + ": " + strings.Join(parts, ", ")
	c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded)
	switch {
	case (s.Status.Phase == v1.PhasePending || s.Status.Phase == v1.PhaseQueued) && c != nil && c.Message != "":
		line += ": " + display.Truncate(display.Escape(c.Message), 200)
	case !s.Status.Phase.IsTerminal() && !streaming && p != nil && p.Message != "":
		line += ": " + display.Truncate(display.Escape(p.Message), 200)
	}
	if s.Status.Phase == v1.PhaseSucceeded && s.Spec.Delivery != nil {
		d := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered)
		if d == nil {
			line += "; delivery: not started yet"
		} else {
			line += fmt.Sprintf("; delivery: %s %s", d.Status, d.Reason)
			if d.Message != "" {
				line += ": " + display.Truncate(display.Escape(d.Message), 200)
			}
		}
	}
	return line
}

// followLogs starts streaming the runner container's log once it is running. The runner
// writes its steps there (stderr; the log has both streams). Where the log cannot be had
// (no pods/log permission, the pod gone) the progress lines stand in for it.
func (w *waiter) followLogs(ctx context.Context, s *v1.AgentSession) {
	if w.logState != logNotStarted || s.Status.PodName == "" {
		return
	}
	if s.Status.Phase != v1.PhaseRunning && s.Status.Phase != v1.PhaseWaitingForApproval && !s.Status.Phase.IsTerminal() {
		return
	}
	logCtx, cancel := context.WithCancel(ctx)
	stream, err := w.logs.CoreV1().Pods(s.Namespace).GetLogs(s.Status.PodName, &corev1.PodLogOptions{Container: contract.ContainerRunner, Follow: true}).Stream(logCtx)
	if err != nil {
		cancel()
		// A container not started yet is a Bad Request; try again on the next change.
		if apierrors.IsBadRequest(err) && !s.Status.Phase.IsTerminal() {
			return
		}
		w.logState = logUnavailable
		fmt.Fprintf(w.errOut, "%s: the runner's log is not available (%v); showing its progress from status\n", s.Name, err)
		return
	}
	w.logState, w.logCancel, w.logDone = logStarted, cancel, make(chan struct{})
	w.streaming.Store(true)
	go func() {
		defer close(w.logDone)
		defer stream.Close()
		defer w.streaming.Store(false)
		r := bufio.NewReaderSize(stream, 4096)
		for {
			line, err := readLine(r)
			if line != "" || err == nil {
				// The runner escapes what the agent influenced; escaping again changes
				// nothing and covers whatever else reached the log.
				fmt.Fprintln(w.errOut, display.EscapeMultiline(line))
			}
			if err != nil {
				return
			}
		}
	}()
}

// readLine reads one line, without its end, cut at maxLogLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		chunk, isPrefix, err := r.ReadLine()
		if b.Len() < maxLogLine {
			b.Write(chunk[:min(len(chunk), maxLogLine-b.Len())])
		}
		if err != nil || !isPrefix {
			return b.String(), err
		}
	}
}

// drainLogs lets the log stream print the runner's last lines, for a bounded time.
func (w *waiter) drainLogs(ctx context.Context) {
	if w.logDone == nil {
		return
	}
	t := time.NewTimer(logDrainTimeout)
	defer t.Stop()
	select {
	case <-w.logDone:
	case <-t.C:
	case <-ctx.Done():
	}
	w.stopLogs()
}

func (w *waiter) stopLogs() {
	if w.logCancel != nil {
		w.logCancel()
		<-w.logDone
		w.logCancel = nil
	}
}

// summary prints how the session ended (or where it is, when the wait timed out).
func (w *waiter) summary(s *v1.AgentSession) {
	st := s.Status
	head := fmt.Sprintf("agentsession.%s/%s: %s", v1.GroupVersion.Group, s.Name, orDash(string(st.Phase)))
	if c := meta.FindStatusCondition(st.Conditions, v1.ConditionSucceeded); c != nil {
		if c.Reason != "" && c.Reason != string(st.Phase) {
			head += " (" + c.Reason + ")"
		}
		if c.Message != "" {
			head += ": " + display.Escape(c.Message)
		}
	}
	fmt.Fprintln(w.out, head)
	row := func(k, v string) { fmt.Fprintf(w.out, "  %-13s %s\n", k+":", v) }
	if r := st.Result; r != nil && r.Summary != "" {
		row("summary", display.Truncate(display.Escape(display.FirstLine(r.Summary)), 200))
	}
	if u := st.Usage; u != nil {
		row("tokens", fmt.Sprintf("%d (prompt %d, completion %d), %d tool calls", u.TotalTokens, u.PromptTokens, u.CompletionTokens, u.ToolCalls))
	}
	if r := st.Result; r != nil {
		row("files", fmt.Sprintf("%d changed, +%d -%d", r.FilesChanged, r.Additions, r.Deletions))
	}
	if s.Spec.Delivery != nil {
		row("delivery", deliveryLine(s))
	}
	if t := st.Transcript; t != nil && t.URI != "" {
		row("transcript", display.Escape(t.URI))
	}
	if p := st.Patch; p != nil && p.URI != "" {
		row("patch", display.Escape(p.URI))
	}
}

func deliveryLine(s *v1.AgentSession) string {
	var parts []string
	c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered)
	switch {
	case c == nil && s.Status.Phase == v1.PhaseSucceeded:
		parts = append(parts, "not started")
	case c == nil:
		parts = append(parts, "none: the session did not succeed")
	default:
		st := c.Reason
		// A delivered session's message repeats the branch and pull request listed next.
		delivered := c.Status == metav1.ConditionTrue && s.Status.Delivery != nil && s.Status.Delivery.Branch != ""
		if c.Message != "" && !delivered {
			st += ": " + display.Escape(c.Message)
		}
		parts = append(parts, st)
	}
	if d := s.Status.Delivery; d != nil {
		if d.PullRequestURL != "" {
			parts = append(parts, "pull request "+display.Escape(d.PullRequestURL))
		}
		if d.Branch != "" {
			b := "branch " + display.Escape(d.Branch)
			if sha := d.CommitSHA; sha != "" {
				b += " at " + display.Escape(sha[:min(len(sha), 12)])
			}
			parts = append(parts, b)
		}
	}
	return strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lockedWriter serialises writes from the watch and the log stream, one line per Write.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
