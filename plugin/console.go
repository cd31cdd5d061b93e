package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/console/viewer"
	"github.com/agentry-dev/agentry/display"
)

// consoleLinkTTL is how long each share behind `console` works; it is replaced by a new one
// when a third of it is left, so a link copied out of the proxy stops working soon after.
const consoleLinkTTL = 15 * time.Minute

func consoleCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	var port int
	cmd := &cobra.Command{
		Use:   "console SESSION",
		Short: "Open the session's page on this machine (localhost), through a short-lived share link",
		Long: `Serve the session's page (the same page a share link opens) on 127.0.0.1 with your
kubeconfig's identity: it creates a Link share of the session with a short expiry, renews it
while it runs, and forwards the page's data requests to it. The printed URL carries a random
path only this command knows. Ctrl-C stops the server and deletes the share.`,
		Example: `  kubectl agentry console fix-flaky-test
  kubectl agentry console fix-flaky-test --port 8088 -n team-a`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.console(ctx, out, cmd.ErrOrStderr(), args[0], port)
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "the local port (default: a free one)")
	return cmd
}

// consoleProxy serves the viewer and forwards data requests to the current share link.
type consoleProxy struct {
	prefix string // "/<random>/"
	host   string // 127.0.0.1:<port>
	page   http.Handler
	http   *http.Client

	mu   sync.Mutex
	link string
}

func (p *consoleProxy) current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.link
}

func (p *consoleProxy) setLink(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.link = l
}

// dataPaths are what the page reads under its link (console/api.go).
var dataPaths = map[string]bool{console.PathSession: true, console.PathEvents: true, console.PathTranscript: true, console.PathPatch: true, console.PathSummary: true}

func (p *consoleProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Another site's page could point its own name at 127.0.0.1 (DNS rebinding) and read
	// this server as same-origin: only the exact local host is answered.
	if r.Host != p.host && r.Host != strings.Replace(p.host, "127.0.0.1", "localhost", 1) {
		http.Error(w, "wrong host", http.StatusMisdirectedRequest)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, p.prefix)
	if !ok {
		if r.URL.Path+"/" == p.prefix {
			http.Redirect(w, r, p.prefix, http.StatusMovedPermanently)
			return
		}
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if !dataPaths[rest] {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + rest
		p.page.ServeHTTP(w, r2)
		return
	}
	u := p.current() + rest
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := p.http.Do(req)
	if err != nil {
		http.Error(w, "the share link did not answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Length", console.LastSeqHeader, "Content-Security-Policy", "X-Content-Type-Options"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (a *artifactsCmd) console(ctx context.Context, out, errOut io.Writer, name string, port int) error {
	c, ns, err := a.connect()
	if err != nil {
		return err
	}
	if _, err := getSession(ctx, c, ns, name); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listening on 127.0.0.1:%d: %w", port, err)
	}
	defer ln.Close()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	p := &consoleProxy{prefix: "/" + hex.EncodeToString(secret) + "/", host: ln.Addr().String(), page: viewer.Handler(), http: a.httpClient()}

	sh, err := a.consoleShare(ctx, c, ns, name)
	defer func() { a.deleteShares(ctx, c, errOut, sh) }()
	if err != nil {
		return err
	}
	p.setLink(sh.Status.URL)

	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "Serving session %s/%s at http://%s%s (Ctrl-C to stop)\n", ns, name, p.host, p.prefix)

	renew := time.NewTimer(renewIn(sh, time.Now()))
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
			return nil
		case err := <-served:
			return fmt.Errorf("serving on %s: %w", p.host, err)
		case <-renew.C:
			next, err := a.consoleShare(ctx, c, ns, name)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(errOut, "warning: renewing the share link: %v; trying again in 30s\n", err)
				}
				a.deleteShares(ctx, c, errOut, next)
				renew.Reset(30 * time.Second)
				continue
			}
			p.setLink(next.Status.URL)
			a.deleteShares(ctx, c, errOut, sh)
			sh = next
			renew.Reset(renewIn(sh, time.Now()))
		}
	}
}

// renewIn is when to replace the share: with a third of its life left (a policy may have
// made it shorter than asked).
func renewIn(sh *v1.AgentSessionShare, now time.Time) time.Duration {
	if sh.Status.ExpiresAt == nil {
		return consoleLinkTTL / 3
	}
	life := sh.Status.ExpiresAt.Sub(sh.CreationTimestamp.Time)
	if sh.CreationTimestamp.IsZero() || life > consoleLinkTTL {
		life = consoleLinkTTL
	}
	return max(sh.Status.ExpiresAt.Sub(now)-life/3, 5*time.Second)
}

// consoleShare creates a Link share of the session for the local page and waits until it
// works. The share is returned with any error once it exists, for the caller to delete.
func (a *artifactsCmd) consoleShare(ctx context.Context, c client.WithWatch, ns, session string) (*v1.AgentSessionShare, error) {
	sh := newShare(ns, shareName(session, "console"), session, nil, consoleLinkTTL, v1.ShareLinkVisibility)
	sh.Labels = map[string]string{managedByLabel: managedByValue}
	if err := c.Create(ctx, sh); err != nil {
		return nil, fmt.Errorf("creating a share of session %s/%s for the page: %w", ns, session, err)
	}
	ready, err := waitShareReady(ctx, c, sh)
	if err != nil {
		return sh, err
	}
	return ready, nil
}

// deleteShares deletes the command's share, even after Ctrl-C.
func (a *artifactsCmd) deleteShares(ctx context.Context, c client.Client, errOut io.Writer, sh *v1.AgentSessionShare) {
	if sh == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.Delete(dctx, sh); err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(errOut, "warning: deleting share %s/%s: %v (delete it with: kubectl agentry share --revoke %s -n %s)\n",
			sh.Namespace, sh.Name, display.Escape(err.Error()), sh.Name, sh.Namespace)
	}
}
