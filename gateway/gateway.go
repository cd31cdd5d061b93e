// Package gateway is the session gateway: runner pods authenticate with their
// projected ServiceAccount token, post transcript events (stored in object
// storage before they are acknowledged, and summarised into the session's
// status), ask for approvals, and call the model through an OpenAI-compatible
// proxy that injects the provider key and enforces token budgets.
//
// It runs on every manager replica. Everything that must survive a restart
// lives in the AgentSession (status, spec.approvals) or in object storage
// (segments); in-memory state is a cache rebuilt from them.
package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/agentry-dev/agentry/contract"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions/status,verbs=get;patch
// +kubebuilder:rbac:groups=agentry.dev,resources=modelproviders;agentpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=agentry-system,resources=secrets,verbs=get

// FieldOwner is the field manager of the gateway's status writes. It applies
// only the fields it owns (progress, usage, pendingApprovals, result,
// transcript, patch and the Archived condition), with server-side apply, so it
// can never overwrite the reconciler's phase or conditions.
const FieldOwner = client.FieldOwner("agentry-gateway")

// Config is the operator's configuration of the gateway.
type Config struct {
	// Addr is the listen address, for example ":8443".
	Addr string
	// GetCertificate, when set, serves HTTPS with the certificate it returns
	// (gateway/servingcert); nil serves plain HTTP.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// OperatorNamespace holds the ModelProviders' key Secrets.
	OperatorNamespace string
	// S3 is where transcripts are archived.
	S3 S3Config
	// StatusInterval is the least time between two status writes for one
	// session (default 1s).
	StatusInterval time.Duration
	// ApprovalPollWindow is how long an approval request is held open
	// (default contract.ApprovalPollWindow).
	ApprovalPollWindow time.Duration
	// UpstreamTimeout bounds one proxied model call (default 10m).
	UpstreamTimeout time.Duration
	// ShutdownTimeout is how long a stopping gateway lets in-flight requests
	// finish before it cuts them (default 10s); runners retry what was cut.
	ShutdownTimeout time.Duration
	// MaxInFlightPerSession bounds one session's concurrent requests (default
	// 8); more are refused with 429 and Retry-After, so one session cannot
	// hold the gateway's memory with parallel bodies.
	MaxInFlightPerSession int
	// MaxRequestBytesInFlight bounds the request bodies all sessions together may
	// have in flight on this replica (default DefaultMaxRequestBytesInFlight): a
	// body counts from when its request is admitted until its handler returns, by
	// its Content-Length, or by its endpoint's limit when it declares none. A
	// request that would pass the bound is refused with 503 and Retry-After, so
	// many sessions' large bodies together cannot take the manager's memory. One
	// session's bodies together may not pass the largest endpoint limit
	// (MaxRequestBody, 64 MiB), and a smaller bound is raised to it.
	MaxRequestBytesInFlight int64
	// WebFetchAllowPrivateAddresses lets web_fetch reach loopback, private
	// and CGNAT addresses (a documentation server inside the network). Off by
	// default: the allowed domains' names are then the only way in, and none
	// may resolve inside. Link-local addresses (the cloud metadata endpoint)
	// stay refused either way.
	WebFetchAllowPrivateAddresses bool
	// WebFetchResolve resolves host names for web_fetch and web_search; nil
	// uses the system resolver. Tests map names to local servers with it.
	WebFetchResolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Informers, the manager's cache, keeps each namespace's token budgets and
	// usage current from AgentSession and AgentPolicy events, so a model call
	// checks the budgets without listing the namespace's sessions. Without it
	// every call lists the namespace's policies and sessions.
	Informers Informers
}

// Server is the gateway. Create it with New; it is a controller-runtime
// Runnable that runs on every replica.
type Server struct {
	cfg Config
	// reservations are this replica's outstanding token reservations and rate limiters.
	reservations *ledger
	// usage is each namespace's budgets and the tokens counted against them.
	usage *usageIndex
	// usageSynced reports whether the informers feeding usage have delivered
	// what they held at start; nil when there are none (usage is then listed).
	usageSynced []toolscache.InformerSynced
	// client reads sessions, pods, providers and policies (the manager's cache)
	// and writes session status.
	client client.Client
	// keys reuses the key Secret reads (ModelProviders, MCPServer headers) for a few seconds.
	keys  *secretCache
	auth  *authenticator
	store *store
	http  *http.Client
	now   func() time.Time

	mu       sync.Mutex
	sessions map[types.UID]*session
	inflight map[types.UID]inFlight
	// bytesInFlight is the sum of every session's inFlight.bytes.
	bytesInFlight int64
	// conflicts counts the conflicting event batches kept per session.
	conflicts map[types.UID]int

	ready chan struct{}
	addr  string
}

// New creates a gateway. reader is an uncached reader (the manager's
// APIReader): it reads Secrets, so the cache never holds every Secret, and
// objects the cache has not seen yet. c serves everything else.
func New(ctx context.Context, cfg Config, c client.Client, reader client.Reader) (*Server, error) {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.ApprovalPollWindow <= 0 {
		cfg.ApprovalPollWindow = contract.ApprovalPollWindow
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.MaxInFlightPerSession <= 0 {
		cfg.MaxInFlightPerSession = 8
	}
	if cfg.MaxRequestBytesInFlight <= 0 {
		cfg.MaxRequestBytesInFlight = DefaultMaxRequestBytesInFlight
	}
	cfg.MaxRequestBytesInFlight = max(cfg.MaxRequestBytesInFlight, MaxRequestBody)
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 10 * time.Minute
	}
	st, err := newStore(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		client:    c,
		keys:      &secretCache{reader: reader, now: time.Now},
		auth:      newAuthenticator(c, reader),
		store:     st,
		http:      &http.Client{Transport: upstreamTransport()},
		now:       time.Now,
		sessions:  map[types.UID]*session{},
		inflight:  map[types.UID]inFlight{},
		conflicts: map[types.UID]int{},
		ready:     make(chan struct{}),

		reservations: newLedger(),
		usage:        newUsageIndex(),
	}
	if cfg.Informers != nil {
		if err := s.watchUsage(ctx, cfg.Informers); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// NeedLeaderElection is false: every replica serves runner pods.
func (s *Server) NeedLeaderElection() bool { return false }

// upstreamTransport keeps connections to the model providers open: every session's calls go
// to the same few hosts, and the default of two idle connections per host would make most
// calls under load pay a new TCP and TLS handshake.
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	return t
}

// Handler routes the gateway's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+contract.PathEvents, s.authenticated("events", s.handleEvents))
	mux.Handle("POST "+contract.PathFinish, s.authenticated("finish", s.handleFinish))
	mux.Handle("POST "+contract.PathApprovals, s.authenticated("approvals", s.handleApproval))
	mux.Handle("GET "+contract.PathContinuation, s.authenticated("continuation", s.handleContinuation))
	mux.Handle("POST "+contract.PathChatCompletions, s.authenticated("chat", s.handleChat))
	s.mcpRoutes(mux)
	s.webRoutes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

// Start serves until ctx is done, then drains in-flight requests and writes
// pending status updates.
func (s *Server) Start(ctx context.Context) error {
	if err := s.store.ensureBucket(ctx); err != nil {
		log.FromContext(ctx).Error(err, "Checking the archive bucket; archiving will fail until it exists", "bucket", s.cfg.S3.Bucket)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Start on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	logger := log.FromContext(ctx).WithName("gateway")
	// A budget check before the informers delivered every session would count too little.
	if len(s.usageSynced) > 0 && !toolscache.WaitForCacheSync(ctx.Done(), s.usageSynced...) {
		return fmt.Errorf("waiting for the token usage of sessions and policies: %w", ctx.Err())
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return log.IntoContext(context.Background(), logger) },
	}
	s.addr = ln.Addr().String()
	close(s.ready)
	errc := make(chan error, 1)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.evictIdle(ctx, 30*time.Minute)
			}
		}
	}()
	go func() {
		logger.Info("Serving session gateway", "address", s.addr, "tls", s.cfg.GetCertificate != nil)
		if s.cfg.GetCertificate != nil {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.cfg.GetCertificate}
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
		// Close cuts the connections but not the handlers: a model call still settles
		// its reservation as it returns. Their charges are written too if they end soon.
		s.awaitHandlers(s.cfg.ShutdownTimeout)
	}
	// flush outlives the expired shutdown context: every write gets its own time.
	return errors.Join(err, s.flushAll(ctx))
}

// awaitHandlers waits, for at most d, until no request is in flight.
func (s *Server) awaitHandlers(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.inflight)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is the address the server listens on, once it serves.
func (s *Server) Addr() string {
	<-s.ready
	return s.addr
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, contract.GatewayError{Error: fmt.Sprintf(format, a...)})
}

// MaxRequestBody bounds a chat request and what is read of a provider's error. It is also
// the most one session's request bodies together may hold at once.
const MaxRequestBody = 64 << 20

// DefaultMaxRequestBytesInFlight is Config.MaxRequestBytesInFlight's default: half
// the chart's 512Mi memory limit for the manager, which also runs the controllers.
const DefaultMaxRequestBytesInFlight = 256 << 20

// Request body limits per endpoint. The runner's batches, approval requests
// and finish (with a patch of at most 8 MiB, base64 in JSON) fit well within
// them; anything larger is refused with 413 before it is read whole.
const (
	maxEventsBody   = 16 << 20
	maxApprovalBody = 256 << 10
	maxFinishBody   = 24 << 20
)

// bodyLimit is the largest request body the endpoint accepts.
func bodyLimit(handler string) int64 {
	switch handler {
	case "events":
		return maxEventsBody
	case "approvals":
		return maxApprovalBody
	case "finish":
		return maxFinishBody
	case "mcp":
		return maxMCPBody
	case "web_fetch", "web_search":
		return maxWebRequestBody
	}
	return MaxRequestBody
}

func tooLargeMessage(handler string, limit int64) string {
	return fmt.Sprintf("request body is larger than the %s endpoint accepts (%d bytes); send smaller requests", handler, limit)
}

// isBodyTooLarge says whether err came from reading past a body limit set by
// http.MaxBytesReader (the authenticated middleware sets one for every
// endpoint): such a request is answered 413, not 400.
func isBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// decodeBody decodes the request (already capped by the middleware) into v,
// answering 413 or 400 when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, handler string, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		if isBodyTooLarge(err) {
			refusedTotal.WithLabelValues(refusedBodyTooLarge).Inc()
			writeError(w, http.StatusRequestEntityTooLarge, "%s", tooLargeMessage(handler, bodyLimit(handler)))
			return false
		}
		writeError(w, http.StatusBadRequest, "decoding request body: %v", err)
		return false
	}
	return true
}
