package console

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// Store reads what the session gateway archived.
type Store interface {
	ReadArtifact(ctx context.Context, uri string, max int64) ([]byte, error)
	ReadLiveTranscript(ctx context.Context, namespace, name string, uid types.UID) ([]byte, error)
}

// maxArtifact bounds one artifact the server reads into memory.
const maxArtifact = 256 << 20

// KeySecretKey is the key, in the console key Secret, of the HMAC key that signs links.
const KeySecretKey = "key"

// LoadOrCreateKey returns the link-signing key from Secret ns/name, creating it with a
// random key when it does not exist. Every replica signs and checks links with it; deleting
// the Secret (and restarting the managers) revokes every link at once.
func LoadOrCreateKey(ctx context.Context, c client.Client, ns, name string) ([]byte, error) {
	sec := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec)
	if apierrors.IsNotFound(err) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/name": "agentry-manager"}}, Data: map[string][]byte{KeySecretKey: key}}
		if err := c.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the link key Secret %s/%s: %w", ns, name, err)
		}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading the link key Secret %s/%s: %w", ns, name, err)
	}
	if len(sec.Data[KeySecretKey]) < 16 {
		return nil, fmt.Errorf("the link key Secret %s/%s has no %q of at least 16 bytes", ns, name, KeySecretKey)
	}
	return sec.Data[KeySecretKey], nil
}

// Token is the link's secret part for a share: it names the share's uid and expiry, so a
// deleted-and-recreated share of the same name, or a changed expiry, does not take an old link.
func Token(key []byte, s *v1.AgentSessionShare, expiresAt time.Time) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s\x00%s\x00%s\x00%d", s.Namespace, s.Name, s.UID, expiresAt.Unix())
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Link is the share's URL under base (the console's external URL).
func Link(base string, key []byte, s *v1.AgentSessionShare, expiresAt time.Time) string {
	return strings.TrimSuffix(base, "/") + "/s/" + s.Namespace + "/" + s.Name + "/" + Token(key, s, expiresAt) + "/"
}

// Server serves share links: the viewer page and the data under it. It runs on every
// replica; each request re-reads the share, so deleting it revokes the link at once.
type Server struct {
	// Addr is where it listens; "0" disables it.
	Addr string
	// Client reads sessions (cached) and reviews tokens for private links.
	Client client.Client
	// Shares reads shares uncached, so a share just made works and a deleted one is refused
	// at once (Client when nil).
	Shares client.Reader
	Store  Store
	Key    []byte
	// Viewer serves the page at a link's root.
	Viewer http.Handler
	Now    func() time.Time
}

// NeedLeaderElection is false: every replica serves links.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{Addr: s.Addr, Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler routes /s/<namespace>/<share>/<token>/<path>.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /s/{ns}/{name}/{token}/{rest...}", s.serveShare)
	mux.HandleFunc("GET /s/{ns}/{name}/{token}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
	})
	return mux
}

// refusal is a page that says why, and never any data.
func refusal(w http.ResponseWriter, code int, title, detail string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>%s</title><style>body{font:16px system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}
@media(prefers-color-scheme:dark){body{background:#111;color:#ddd}}</style></head>
<body><h1>%s</h1><p>%s</p></body></html>`, html.EscapeString(title), html.EscapeString(title), html.EscapeString(detail))
}

func (s *Server) serveShare(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns, name, token, rest := r.PathValue("ns"), r.PathValue("name"), r.PathValue("token"), r.PathValue("rest")
	share := &v1.AgentSessionShare{}
	shares := s.Shares
	if shares == nil {
		shares = s.Client
	}
	if err := shares.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, share); err != nil {
		if apierrors.IsNotFound(err) {
			refusal(w, http.StatusNotFound, "This link was revoked or never existed", "The share it belonged to does not exist. Ask whoever sent it for a new one.")
			return
		}
		log.FromContext(ctx).Error(err, "Reading share", "AgentSessionShare", ns+"/"+name)
		refusal(w, http.StatusServiceUnavailable, "Try again later", "The link could not be checked just now.")
		return
	}
	exp := share.Status.ExpiresAt
	if exp == nil || !hmac.Equal([]byte(token), []byte(Token(s.Key, share, exp.Time))) {
		refusal(w, http.StatusNotFound, "This link was revoked or never existed", "It does not belong to a current share.")
		return
	}
	if !s.now().Before(exp.Time) {
		refusal(w, http.StatusGone, "This link has expired", "It expired at "+exp.UTC().Format(time.RFC1123)+". Ask whoever sent it for a new one.")
		return
	}
	if share.Spec.Visibility != v1.ShareLinkVisibility {
		if msg := s.authorize(ctx, r, share); msg != "" {
			refusal(w, http.StatusForbidden, "This link is private", msg)
			return
		}
	}
	sess := &v1.AgentSession{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: share.Spec.Session}, sess); err != nil {
		if apierrors.IsNotFound(err) {
			refusal(w, http.StatusNotFound, "The session is gone", "The session this link shows was deleted.")
			return
		}
		refusal(w, http.StatusServiceUnavailable, "Try again later", "The session could not be read just now.")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	switch rest {
	case "", "index.html":
		if s.Viewer == nil {
			refusal(w, http.StatusNotFound, "No page", "This server has no viewer.")
			return
		}
		s.Viewer.ServeHTTP(w, r)
	case PathSession:
		h.Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(View(sess, share))
	case PathEvents:
		if !hasArtifact(share, v1.ShareTranscript) {
			refusal(w, http.StatusNotFound, "Not shared", "This link does not include the transcript.")
			return
		}
		s.serveEvents(w, r, sess)
	case PathTranscript, PathPatch, PathSummary:
		s.serveArtifact(w, r, sess, share, rest)
	default:
		refusal(w, http.StatusNotFound, "Not found", "There is nothing at this address.")
	}
}

// authorize lets a private link through for a bearer token that may get the share.
func (s *Server) authorize(ctx context.Context, r *http.Request, share *v1.AgentSessionShare) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return "Open it with `kubectl agentry console`, or send a Kubernetes bearer token of someone who may get this share."
	}
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}}
	if err := s.Client.Create(ctx, tr); err != nil || !tr.Status.Authenticated {
		return "The token was not accepted by the cluster."
	}
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range tr.Status.User.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: tr.Status.User.Username, Groups: tr.Status.User.Groups, UID: tr.Status.User.UID, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: share.Namespace, Verb: "get", Group: v1.GroupVersion.Group,
			Resource: "agentsessionshares", Name: share.Name},
	}}
	if err := s.Client.Create(ctx, sar); err != nil || !sar.Status.Allowed {
		return tr.Status.User.Username + " may not get this share."
	}
	return ""
}

func hasArtifact(share *v1.AgentSessionShare, a v1.ShareArtifact) bool {
	return len(share.Spec.Artifacts) == 0 || slices.Contains(share.Spec.Artifacts, a)
}

func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request, sess *v1.AgentSession, share *v1.AgentSessionShare, rest string) {
	var ref *v1.ArtifactRef
	var art v1.ShareArtifact
	ctype := "text/plain; charset=utf-8"
	switch rest {
	case PathTranscript:
		ref, art, ctype = sess.Status.Transcript, v1.ShareTranscript, "application/x-ndjson"
	case PathPatch:
		ref, art = sess.Status.Patch, v1.SharePatch
	case PathSummary:
		art, ctype = v1.ShareSummary, "application/json"
		if sess.Status.Patch != nil && sess.Status.Patch.URI != "" {
			ref = &v1.ArtifactRef{URI: strings.TrimSuffix(sess.Status.Patch.URI, "result.patch") + "summary.json"}
		}
	}
	if !hasArtifact(share, art) {
		refusal(w, http.StatusNotFound, "Not shared", "This link does not include the "+strings.ToLower(string(art))+".")
		return
	}
	if ref == nil || ref.URI == "" {
		refusal(w, http.StatusNotFound, "Not archived yet", "The session has not archived it yet.")
		return
	}
	b, err := s.Store.ReadArtifact(r.Context(), ref.URI, maxArtifact)
	if err != nil {
		log.FromContext(r.Context()).Error(err, "Reading artifact", "uri", ref.URI)
		refusal(w, http.StatusServiceUnavailable, "Try again later", "The archive could not be read just now.")
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, sess *v1.AgentSession) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	var data []byte
	var err error
	if t := sess.Status.Transcript; t != nil && t.URI != "" {
		data, err = s.Store.ReadArtifact(r.Context(), t.URI, maxArtifact)
	} else {
		data, err = s.Store.ReadLiveTranscript(r.Context(), sess.Namespace, sess.Name, sess.UID)
	}
	if err != nil {
		log.FromContext(r.Context()).Error(err, "Reading transcript", "AgentSession", sess.Namespace+"/"+sess.Name)
		refusal(w, http.StatusServiceUnavailable, "Try again later", "The transcript could not be read just now.")
		return
	}
	var out bytes.Buffer
	last, n := after, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() && n < MaxEventsPerPage {
		ev, err := contract.DecodeEvent(sc.Bytes())
		if err != nil || ev.Seq <= after {
			continue
		}
		out.Write(sc.Bytes())
		out.WriteByte('\n')
		last, n = ev.Seq, n+1
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set(LastSeqHeader, strconv.FormatInt(last, 10))
	_, _ = w.Write(out.Bytes())
}

// View is the page's header for a session under a share.
func View(s *v1.AgentSession, share *v1.AgentSessionShare) SessionView {
	v := SessionView{Namespace: s.Namespace, Name: s.Name, Task: s.Spec.Task, Repository: s.Spec.Repository.URL,
		Ref: s.Spec.Repository.Ref, Phase: string(s.Status.Phase), CreationTime: s.CreationTimestamp.Time,
		Live: !s.Status.Phase.IsTerminal() || s.Status.Transcript == nil, Visibility: string(share.Spec.Visibility)}
	if v.Phase == "" {
		v.Phase = string(v1.PhasePending)
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		v.Reason, v.Message = c.Reason, c.Message
	}
	if r := s.Status.Resolved; r != nil {
		v.CommitSHA, v.Model = r.CommitSHA, r.Model
	}
	if c := s.Status.ContinuedFrom; c != nil {
		v.ContinuedFrom = c.Session
	}
	if v.Model == "" {
		v.Model = s.Spec.Model.Name
	}
	if r := s.Status.Result; r != nil {
		v.Summary, v.FilesChanged, v.Additions, v.Deletions = r.Summary, r.FilesChanged, r.Additions, r.Deletions
	}
	if u := s.Status.Usage; u != nil {
		v.PromptTokens, v.CompletionTokens, v.TotalTokens, v.ToolCalls = u.PromptTokens, u.CompletionTokens, u.TotalTokens, u.ToolCalls
	}
	if p := s.Status.Progress; p != nil {
		v.Turns = p.Turn
	}
	if t := s.Status.StartTime; t != nil {
		v.StartTime = &t.Time
	}
	if t := s.Status.CompletionTime; t != nil {
		v.CompletionTime = &t.Time
	}
	if d := s.Status.Delivery; d != nil {
		v.PullRequestURL = d.PullRequestURL
	}
	for _, a := range s.Spec.Approvals {
		v.Decisions = append(v.Decisions, Decision{ID: a.ID, Decision: string(a.Decision), DecidedBy: a.DecidedBy, Reason: a.Reason})
	}
	arts := share.Spec.Artifacts
	if len(arts) == 0 {
		arts = []v1.ShareArtifact{v1.ShareTranscript, v1.SharePatch, v1.ShareSummary}
	}
	for _, a := range arts {
		v.Artifacts = append(v.Artifacts, string(a))
	}
	if share.Status.ExpiresAt != nil {
		v.ExpiresAt = share.Status.ExpiresAt.Time
	}
	return v
}
