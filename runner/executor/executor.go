// Package executor runs tool calls on the untrusted side of the runner's trust
// boundary. The trusted runner (the loop, the gateway token, every credential)
// decides what runs, and asks the executor to run it: in a pod the executor is
// the agent container's only process, with no token mounted and its own UID
// and process namespace; on a laptop it is a child process started without
// the runner's secrets, in its own user, PID and mount namespaces where the
// kernel allows.
//
// The protocol is HTTP over a Unix socket in a volume both containers mount.
// Everything the executor answers is hostile input to the runner: agent code
// can replace the executor, so responses are size-bounded and carry only text
// that goes to the model.
package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/tools"
)

const (
	pathInfo = "/v1/info"
	pathCall = "/v1/call"

	// maxRequestBytes bounds one call's arguments (write_file allows 10 MiB of
	// content, JSON escaping may double it).
	maxRequestBytes = 24 << 20
	// maxResponseBytes bounds what the runner reads back. Tools cap their own
	// output far below this; a larger answer comes from a forged executor.
	maxResponseBytes = 4 << 20
)

// Info is what the executor tells the runner about its side.
type Info struct {
	// Shell is the interpreter the bash tool uses there: "bash" or "sh".
	Shell string `json:"shell"`
	// Tools are the tools it can run.
	Tools []string `json:"tools"`
}

// CallRequest is one tool call, its arguments already in canonical form.
type CallRequest struct {
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
}

// CallResponse is a call's outcome: Error is set when the call failed (the
// message goes to the model), Output otherwise.
type CallResponse struct {
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Server runs calls against its tool set.
type Server struct {
	Tools tools.Set
	Shell string
	// Reap ends every process a call left behind; nil does nothing (tests of
	// the protocol). Serve installs the subreaper sweep.
	Reap func()

	// procs serialises calls that start processes, so what the sweep after a
	// call finds can only have come from that call.
	procs sync.RWMutex
}

// Handler serves the protocol.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathInfo, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, Info{Shell: s.Shell, Tools: s.Tools.Names()})
	})
	mux.HandleFunc("POST "+pathCall, s.call)
	return mux
}

func (s *Server) call(w http.ResponseWriter, r *http.Request) {
	var req CallRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "decoding the call: "+err.Error(), http.StatusBadRequest)
		return
	}
	t, ok := s.Tools.Lookup(req.Tool)
	if !ok {
		writeJSON(w, CallResponse{Error: fmt.Sprintf("unknown tool %q", req.Tool)})
		return
	}
	if t.Kind() == tools.KindShell {
		s.procs.Lock()
		defer s.procs.Unlock()
		if s.Reap != nil {
			defer s.Reap()
		}
	} else {
		s.procs.RLock()
		defer s.procs.RUnlock()
	}
	out, err := run(r.Context(), t, req.Arguments)
	if err != nil {
		writeJSON(w, CallResponse{Error: err.Error()})
		return
	}
	writeJSON(w, CallResponse{Output: out})
}

// run executes one call; a panic is a failed call, not a dead executor.
func run(ctx context.Context, t tools.Tool, args json.RawMessage) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in %s (a runner bug, not your mistake): %v", t.Name(), r)
		}
	}()
	return t.Execute(ctx, args)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Listen creates the Unix socket at path, replacing a stale one. The socket is
// world-connectable: the runner runs under another UID, and whoever else can
// reach the volume is agent code, which may run tools anyway.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("executor socket directory: %w", err)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("executor socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("executor socket: %w", err)
	}
	return l, nil
}

// Serve answers calls on l until ctx ends. It makes the process a child
// subreaper first, so that every process a call starts, including ones that
// detach with setsid or a double fork, is reparented here and ended with it.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if err := becomeSubreaper(); err != nil {
		return err
	}
	if s.Reap == nil {
		s.Reap = reapOrphans
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		s.procs.Lock() // wait for calls in flight to be cancelled and swept
		defer s.procs.Unlock()
		return nil
	}
	return err
}

// Client talks to an executor.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the executor listening on the Unix socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 16, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute,
		ResponseHeaderTimeout: 0, // a command may run for its whole timeout
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Wait polls until the executor answers (it starts beside the runner and may
// not be listening yet), or ctx ends.
func (c *Client) Wait(ctx context.Context) (Info, error) {
	var last error
	for {
		info, err := c.Info(ctx)
		if err == nil {
			return info, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("the tool executor did not answer: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Info asks the executor what it offers. The answer is validated: only shells
// the runner knows are accepted.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	if err := c.do(ctx, http.MethodGet, pathInfo, nil, &info); err != nil {
		return Info{}, err
	}
	if info.Shell != "bash" && info.Shell != "sh" {
		return Info{}, fmt.Errorf("the tool executor reports an unknown shell %q", info.Shell)
	}
	return info, nil
}

// Call runs one call. The returned error is the call's failure, for the model.
func (c *Client) Call(ctx context.Context, tool string, args json.RawMessage) (string, error) {
	var resp CallResponse
	if err := c.do(ctx, http.MethodPost, pathCall, CallRequest{Tool: tool, Arguments: args}, &resp); err != nil {
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		return "", fmt.Errorf("the tool executor failed: %w", err)
	}
	if resp.Error != "" {
		return "", errors.New(resp.Error)
	}
	return resp.Output, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://executor"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxResponseBytes {
		return fmt.Errorf("answer larger than %d bytes", maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, display.Truncate(display.FirstLine(string(b)), 200))
	}
	return json.Unmarshal(b, out)
}

// Remote returns set with every tool's Execute sent to the executor. Names,
// schemas, kinds and descriptions stay local: they are the runner's, not
// something the executor may change.
func Remote(set tools.Set, c *Client) tools.Set {
	out := make(tools.Set, len(set))
	for i, t := range set {
		out[i] = &remoteTool{Tool: t, c: c}
	}
	return out
}

type remoteTool struct {
	tools.Tool
	c *Client
}

func (t *remoteTool) Execute(ctx context.Context, args json.RawMessage) (string, error) {
	return t.c.Call(ctx, t.Name(), args)
}

// Command keeps the bash tool's command extraction visible through the wrapper.
func (t *remoteTool) Command(args json.RawMessage) string {
	if c, ok := t.Tool.(interface{ Command(json.RawMessage) string }); ok {
		return c.Command(args)
	}
	return ""
}
