package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/delivery"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// maxContinuationResponse bounds the gateway's answer: the earlier patch (at most what
// /finish accepts), base64 in JSON, plus a capped history.
const maxContinuationResponse = 40 << 20

// continuationClient fetches what a follow-up session starts from.
type continuationClient struct {
	gw *gatewayclient.Client
	// retryDelay is the first wait after an answer worth retrying (doubled each time).
	retryDelay time.Duration
}

// newContinuationClient checks the gateway URL as the runner's other gateway calls do:
// https with the mounted CA bundle only, or plain http where the namespace allowed it.
func newContinuationClient(gateway, tokenFile, caFile string, allowPlain bool) (*continuationClient, error) {
	if err := gatewaytls.CheckURL("--continuation-from-gateway", gateway, allowPlain); err != nil {
		return nil, err
	}
	if tokenFile == "" {
		return nil, errors.New("--continuation-from-gateway needs --token-file: the token the gateway authenticates")
	}
	gw, err := gatewayclient.New(gateway, tokenFile, caFile)
	if err != nil {
		return nil, fmt.Errorf("--gateway-ca-file: %w", err)
	}
	return &continuationClient{gw: gw, retryDelay: time.Second}, nil
}

// fetch asks the gateway for the continuation, retrying while the gateway or its object
// store is unavailable; a refusal (no continuation, a tampered patch) is final. The patch
// is checked against the sha256 the gateway vouches for.
func (c *continuationClient) fetch(ctx context.Context) (*contract.ContinuationResponse, error) {
	delay := c.retryDelay
	var last error
	for attempt := 0; attempt < 8; attempt++ {
		resp, retry, err := c.fetchOnce(ctx)
		if err == nil {
			return resp, nil
		}
		if last = err; !retry {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
	return nil, last
}

func (c *continuationClient) fetchOnce(ctx context.Context) (_ *contract.ContinuationResponse, retry bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := c.gw.NewRequest(ctx, http.MethodGet, contract.PathContinuation, nil)
	if err != nil {
		return nil, false, err
	}
	res, err := c.gw.Send(req)
	if err != nil {
		return nil, true, fmt.Errorf("asking the gateway for the earlier session: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxContinuationResponse+1))
	if err != nil {
		return nil, true, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var ge contract.GatewayError
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &ge) == nil && ge.Error != "" {
			msg = ge.Error
		}
		retry := res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusTooManyRequests
		return nil, retry, fmt.Errorf("the gateway refused the earlier session's archive (%d): %s", res.StatusCode, msg)
	}
	if len(body) > maxContinuationResponse {
		return nil, false, fmt.Errorf("the gateway's answer is larger than %d bytes", maxContinuationResponse)
	}
	var out contract.ContinuationResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, false, fmt.Errorf("decoding the gateway's answer: %w", err)
	}
	sum := sha256.Sum256(out.Patch)
	if got := hex.EncodeToString(sum[:]); got != out.PatchSHA256 {
		return nil, false, fmt.Errorf("the patch of session %s has sha256 %s, not %s: refusing it", out.Session, got, out.PatchSHA256)
	}
	return &out, false, nil
}

// applyPatch applies a session's archived patch to the checkout in dir, exactly or not at
// all per file, as git apply would without fuzz. The patch is hostile input (the earlier
// session's agent wrote it): delivery.ParsePatch refuses paths into .git in any spelling,
// absolute paths, .. and renames; here no change may go through a symlink or replace a
// directory, a new file may not already exist, and a binary change (which a text patch
// does not carry) is refused. Nothing is staged or committed: the follow-up's own patch
// is against the same base, so it contains both sessions' changes.
func applyPatch(dir string, patch []byte) ([]string, error) {
	changes, err := delivery.ParsePatch(patch)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the checkout: %w", err)
	}
	defer root.Close()
	var touched []string
	for _, c := range changes {
		name := c.NewPath
		if name == "" {
			name = c.OldPath
		}
		if err := applyChange(root, c); err != nil {
			return touched, fmt.Errorf("%s: %w", name, err)
		}
		touched = append(touched, name)
	}
	return touched, nil
}

func applyChange(root *os.Root, c delivery.FileChange) error {
	if c.Binary {
		return errors.New("a binary change, which the archived patch does not carry")
	}
	for _, p := range []string{c.OldPath, c.NewPath} {
		if p != "" {
			if err := checkParents(root, p); err != nil {
				return err
			}
		}
	}
	old, err := readOld(root, c)
	if err != nil {
		return err
	}
	if c.NewPath == "" {
		if len(c.Hunks) > 0 {
			rest, err := delivery.Apply(c, old)
			if err != nil {
				return err
			}
			if len(rest) != 0 {
				return errors.New("the deletion does not match the file's content")
			}
		}
		return root.Remove(c.OldPath)
	}
	content := old
	if len(c.Hunks) > 0 {
		if content, err = delivery.Apply(c, old); err != nil {
			return err
		}
	}
	return writeNew(root, c, content)
}

// checkParents refuses a path whose directories include a symlink or a file: the patch
// must not write anywhere a symlink leads (git apply refuses "beyond a symbolic link").
func checkParents(root *os.Root, p string) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		dir := path.Join(parts[:i]...)
		fi, err := root.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (a symlink or a file): the patch does not write through it", dir)
		}
	}
	return nil
}

// readOld returns the content the change expects: nil for a new file, which must not exist.
func readOld(root *os.Root, c delivery.FileChange) ([]byte, error) {
	if c.OldPath == "" {
		if _, err := root.Lstat(c.NewPath); !errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("the patch creates it, but the checkout already has it")
		}
		return nil, nil
	}
	fi, err := root.Lstat(c.OldPath)
	if err != nil {
		return nil, fmt.Errorf("the patch changes it, but the checkout does not have it: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if c.OldMode != 0o120000 {
			return nil, errors.New("it is a symlink in the checkout, a file in the patch")
		}
		target, err := root.Readlink(c.OldPath)
		return []byte(target), err
	case fi.Mode().IsRegular():
		if c.OldMode == 0o120000 {
			return nil, errors.New("it is a file in the checkout, a symlink in the patch")
		}
		return root.ReadFile(c.OldPath)
	}
	return nil, errors.New("it is not a regular file in the checkout")
}

// writeNew writes the change's new content: a symlink for mode 120000 (its target is the
// content; it is never written through), a file otherwise.
func writeNew(root *os.Root, c delivery.FileChange, content []byte) error {
	if dir := path.Dir(c.NewPath); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if c.OldPath != "" && (c.OldMode == 0o120000) != (c.NewMode == 0o120000) {
		if err := root.Remove(c.OldPath); err != nil {
			return err
		}
	}
	if c.NewMode == 0o120000 {
		if c.OldPath != "" {
			if err := root.Remove(c.OldPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return root.Symlink(string(content), c.NewPath)
	}
	perm := fs.FileMode(0o644)
	if c.NewMode == 0o100755 {
		perm = 0o755
	}
	if err := root.WriteFile(c.NewPath, content, perm); err != nil {
		return err
	}
	return root.Chmod(c.NewPath, perm)
}

// continuationFlags are the checkout's flags for a follow-up session.
type continuationFlags struct {
	gateway, tokenFile, caFile string
	allowPlain                 bool
}

// continueCheckout fetches the earlier session's patch and applies it to the fresh
// checkout at commit, which must be the commit that session started from.
func continueCheckout(ctx context.Context, std IO, f continuationFlags, dir, commit string) error {
	c, err := newContinuationClient(f.gateway, f.tokenFile, f.caFile, f.allowPlain)
	if err != nil {
		return usageError{err}
	}
	resp, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	if resp.Commit != commit {
		return fmt.Errorf("session %s started from commit %s, but the checkout is at %s: its patch is not applied", resp.Session, resp.Commit, commit)
	}
	touched, err := applyPatch(dir, resp.Patch)
	if err != nil {
		return fmt.Errorf("applying the patch of session %s (spec.continueFrom): %w", resp.Session, err)
	}
	fmt.Fprintf(std.Out, "applied the patch of session %s (%d files, sha256 %s)\n", resp.Session, len(touched), resp.PatchSHA256)
	return nil
}

// continuationHistory fetches the history a follow-up's loop starts with, and what the
// transcript records about the session it continues.
func continuationHistory(ctx context.Context, gw *gatewayclient.Client) ([]contract.HistoryMessage, *contract.Continuation, error) {
	if gw == nil {
		return nil, nil, usagef("--continuation needs --gateway: the history comes from the session gateway")
	}
	c := &continuationClient{gw: gw, retryDelay: time.Second}
	resp, err := c.fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range resp.History {
		if m.Role != "user" && m.Role != "assistant" {
			return nil, nil, fmt.Errorf("the earlier session's history has a %q message; only user and assistant messages are carried over", m.Role)
		}
	}
	return resp.History, &contract.Continuation{Session: resp.Session, Commit: resp.Commit, PatchSHA256: resp.PatchSHA256, Messages: len(resp.History)}, nil
}
