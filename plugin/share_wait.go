package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/display"
)

const (
	// tempShareExpiry is how long a share made only to fetch an artifact works; it is
	// deleted as soon as the fetch is done, this bounds a share left behind by a crash.
	tempShareExpiry = 2 * time.Minute
	// shareReadyTimeout bounds the wait for the controller to make a share Ready.
	shareReadyTimeout = time.Minute
	// managedByLabel marks the shares the plugin made for itself.
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "kubectl-agentry"
	// shareReady is the share's condition that says whether its link works.
	shareReady = "Ready"
)

// Bounds on what one fetch holds in memory, whatever the link server sends.
const (
	maxTranscriptBytes = 256 << 20
	maxPatchBytes      = 64 << 20
)

// artifactsCmd is what the verbs that read a session's archive share: the connection, and
// an HTTP client for share links.
type artifactsCmd struct {
	config  configFunc
	connect connectFunc
	http    *http.Client
	// viaAPIServer is NAMESPACE/SERVICE of the console, reached through the API server's
	// service proxy (--console-via-apiserver).
	viaAPIServer string
}

func (a *artifactsCmd) httpClient() *http.Client {
	if a.http != nil {
		return a.http
	}
	if a.viaAPIServer != "" {
		c, err := a.proxyClient()
		if err != nil {
			return &http.Client{Transport: failingTransport{err}}
		}
		return c
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 30 * time.Second}}
}

// proxyClient sends share-link requests to the console Service through the API server's
// service proxy, authenticated as the user. A link is still a capability there: the console
// checks it as for any request.
func (a *artifactsCmd) proxyClient() (*http.Client, error) {
	ns, svc, ok := strings.Cut(a.viaAPIServer, "/")
	if !ok || ns == "" || svc == "" {
		return nil, fmt.Errorf("--console-via-apiserver %q: want NAMESPACE/SERVICE", a.viaAPIServer)
	}
	cfg, _, err := a.config()
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	prefix := "/api/v1/namespaces/" + ns + "/services/http:" + svc + ":console/proxy"
	return &http.Client{Transport: apiServerProxy{base: base, prefix: prefix, rt: rt}}, nil
}

// apiServerProxy rewrites a share link's URL onto the API server's service proxy path.
type apiServerProxy struct {
	base   *url.URL
	prefix string
	rt     http.RoundTripper
}

func (p apiServerProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	u := *p.base
	u.Path = strings.TrimSuffix(u.Path, "/") + p.prefix + r.URL.Path
	u.RawQuery = r.URL.RawQuery
	r2 := r.Clone(r.Context())
	r2.URL, r2.Host = &u, u.Host
	return p.rt.RoundTrip(r2)
}

// getSession reads one session; the error names it.
func getSession(ctx context.Context, c client.Client, ns, name string) (*v1.AgentSession, error) {
	s := &v1.AgentSession{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil, fmt.Errorf("reading session %s/%s: %w", ns, name, err)
	}
	return s, nil
}

// shareName is a fresh name for a share of session: <session>-<tag>-<random>, cut to fit.
func shareName(session, tag string) string {
	suffix := "-" + tag + "-" + utilrand.String(5)
	prefix := session
	if max := 253 - len(suffix); len(prefix) > max {
		prefix = strings.TrimRight(prefix[:max], ".-")
	}
	return prefix + suffix
}

// newShare builds a share of session in ns.
func newShare(ns, name, session string, arts []v1.ShareArtifact, expires time.Duration, vis v1.ShareVisibility) *v1.AgentSessionShare {
	return &v1.AgentSessionShare{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.AgentSessionShareSpec{
			Session:    session,
			Artifacts:  arts,
			ExpiresIn:  &metav1.Duration{Duration: expires},
			Visibility: vis,
		},
	}
}

// errShareNotReady is a share the controller refused (Ready=False); its message says why.
var errShareNotReady = errors.New("share not ready")

// waitShareReady watches the share until its Ready condition is True with a URL (returned)
// or False (an error carrying the condition's message), for at most shareReadyTimeout.
func waitShareReady(ctx context.Context, c client.WithWatch, sh *v1.AgentSessionShare) (*v1.AgentSessionShare, error) {
	ctx, cancel := context.WithTimeout(ctx, shareReadyTimeout)
	defer cancel()
	key := client.ObjectKeyFromObject(sh)
	rv := sh.ResourceVersion
	for {
		if done, err := shareDone(sh); done || err != nil {
			return sh, err
		}
		w, err := c.Watch(ctx, &v1.AgentSessionShareList{}, &client.ListOptions{
			Namespace:     key.Namespace,
			FieldSelector: fields.OneTermEqualSelector("metadata.name", key.Name),
			Raw:           &metav1.ListOptions{ResourceVersion: rv},
		})
		if err != nil {
			return nil, fmt.Errorf("watching share %s: %w", key, err)
		}
		got, err := watchShare(ctx, w, sh)
		w.Stop()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("share %s did not become Ready within %s: is the agentry controller running? (kubectl get agentsessionshare %s -n %s -o yaml)",
					key, shareReadyTimeout, key.Name, key.Namespace)
			}
			return nil, err
		}
		if got != nil {
			sh = got
			continue
		}
		// The watch ended (or its resourceVersion expired): read again and watch anew.
		fresh := &v1.AgentSessionShare{}
		if err := c.Get(ctx, key, fresh); err != nil {
			return nil, fmt.Errorf("reading share %s: %w", key, err)
		}
		sh, rv = fresh, fresh.ResourceVersion
	}
}

// watchShare returns the share once it is done, or nil when the watch ended.
func watchShare(ctx context.Context, w watch.Interface, last *v1.AgentSessionShare) (*v1.AgentSessionShare, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				sh, ok := ev.Object.(*v1.AgentSessionShare)
				if !ok {
					continue
				}
				if done, err := shareDone(sh); done || err != nil {
					return sh, err
				}
			case watch.Deleted:
				return nil, fmt.Errorf("share %s/%s was deleted before it became Ready", last.Namespace, last.Name)
			case watch.Error:
				return nil, nil
			}
		}
	}
}

// shareDone: Ready=True with a URL is done; Ready=False is the controller's refusal.
func shareDone(sh *v1.AgentSessionShare) (bool, error) {
	c := meta.FindStatusCondition(sh.Status.Conditions, shareReady)
	if c == nil || (c.ObservedGeneration != 0 && c.ObservedGeneration < sh.Generation) {
		return false, nil
	}
	switch c.Status {
	case metav1.ConditionTrue:
		return sh.Status.URL != "", nil
	case metav1.ConditionFalse:
		return true, fmt.Errorf("%w: share %s/%s of session %s is not Ready (%s): %s", errShareNotReady, sh.Namespace, sh.Name,
			sh.Spec.Session, display.Escape(c.Reason), display.Escape(c.Message))
	}
	return false, nil
}

// artifactFile is one file under a share's link.
type artifactFile struct {
	artifact v1.ShareArtifact
	path     string
	max      int64
}

var (
	transcriptFile = artifactFile{v1.ShareTranscript, console.PathTranscript, maxTranscriptBytes}
	patchFile      = artifactFile{v1.SharePatch, console.PathPatch, maxPatchBytes}
)

// fetchArchived reads archived artifacts of session through a temporary Link share, the
// way that needs no object-storage credentials: create the share, wait until it is Ready,
// GET each file from its link, and delete the share whatever happened.
func (a *artifactsCmd) fetchArchived(ctx context.Context, c client.WithWatch, errOut io.Writer, ns, session string, files ...artifactFile) (map[string][]byte, error) {
	arts := make([]v1.ShareArtifact, 0, len(files))
	for _, f := range files {
		arts = append(arts, f.artifact)
	}
	sh := newShare(ns, shareName(session, "cli"), session, arts, tempShareExpiry, v1.ShareLinkVisibility)
	sh.Labels = map[string]string{managedByLabel: managedByValue}
	if err := c.Create(ctx, sh); err != nil {
		return nil, fmt.Errorf("creating a temporary share of session %s/%s to read its archive: %w", ns, session, err)
	}
	defer func() {
		// Deleted even when ctx was cancelled (Ctrl-C): the link must not outlive the command.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := c.Delete(dctx, sh); err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(errOut, "warning: deleting the temporary share %s/%s: %v (its link expires %s after it was made)\n", ns, sh.Name, err, tempShareExpiry)
		}
	}()
	ready, err := waitShareReady(ctx, c, sh)
	if err != nil {
		return nil, err
	}
	got := map[string][]byte{}
	for _, f := range files {
		b, err := a.get(ctx, ready.Status.URL, f)
		if err != nil {
			return nil, fmt.Errorf("reading %s of session %s/%s: %w", f.path, ns, session, err)
		}
		got[f.path] = b
	}
	return got, nil
}

// get reads one file under a share's link, at most f.max bytes. The link server checks
// the share in its cache, which may not have the share's status yet right after it became
// Ready: a refusal of the link itself, or a 503, is retried for a few seconds.
func (a *artifactsCmd) get(ctx context.Context, link string, f artifactFile) ([]byte, error) {
	u := strings.TrimSuffix(link, "/") + "/" + f.path
	for attempt := 1; ; attempt++ {
		b, retry, err := a.getOnce(ctx, u, f.max)
		if err == nil || !retry || attempt == linkRetries {
			return b, err
		}
		if err := pause(ctx, time.Duration(attempt)*200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// linkRetries bounds the attempts on a link that was just made (about 4 seconds).
const linkRetries = 6

func (a *artifactsCmd) getOnce(ctx context.Context, u string, max int64) ([]byte, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		msg := refusalText(page)
		retry := resp.StatusCode == http.StatusServiceUnavailable ||
			(resp.StatusCode == http.StatusNotFound && strings.Contains(msg, "revoked or never existed"))
		return nil, retry, fmt.Errorf("the share link answered %s: %s", resp.Status, display.Truncate(display.Escape(msg), 300))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > max {
		return nil, false, fmt.Errorf("it is larger than %d MiB, more than this command reads", max>>20)
	}
	return b, false, nil
}

// refusalText is what a refusal page says (console: a title and a sentence), as text.
func refusalText(page []byte) string {
	s := string(page)
	var parts []string
	for _, tag := range []string{"h1", "p"} {
		_, rest, ok := strings.Cut(s, "<"+tag+">")
		if !ok {
			continue
		}
		if text, _, ok := strings.Cut(rest, "</"+tag+">"); ok {
			parts = append(parts, html.UnescapeString(text))
		}
	}
	if len(parts) == 0 {
		return strings.TrimSpace(s)
	}
	return strings.Join(parts, ": ")
}

// checkDigest compares content with the sha256 status recorded for it, when it did.
func checkDigest(what string, b []byte, ref *v1.ArtifactRef) error {
	if ref == nil || ref.SHA256 == "" {
		return nil
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, ref.SHA256) {
		return fmt.Errorf("the %s read through the share has sha256 %s, but the session's status records %s", what, got, display.Escape(ref.SHA256))
	}
	return nil
}

// failingTransport answers every request with the error that kept the client from being made.
type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }
