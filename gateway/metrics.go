package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Gateway metrics, served by the manager's metrics endpoint.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_gateway_requests_total",
		Help: "Requests to the session gateway by endpoint and HTTP status.",
	}, []string{"handler", "code"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agentry_gateway_request_duration_seconds",
		Help:    "Time to answer a gateway request, by endpoint (approvals include the long poll).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
	}, []string{"handler"})
	llmDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agentry_llm_request_duration_seconds",
		Help:    "Duration of proxied chat-completions calls, by provider, model and HTTP status.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"provider", "model", "code"})
	llmErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_llm_errors_total",
		Help: "Chat-completions calls that failed, by provider and reason (upstream status, transport, budget).",
	}, []string{"provider", "reason"})
	llmTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_llm_tokens_total",
		Help: "Tokens reported by providers' usage, by namespace and kind (prompt, completion, cached).",
	}, []string{"namespace", "kind"})
	toolDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agentry_tool_duration_seconds",
		Help:    "Tool execution time reported in transcript events, by tool.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"tool"})
	toolErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_tool_errors_total",
		Help: "Tool calls whose result was an error, by tool.",
	}, []string{"tool"})
	sessionTurns = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "agentry_session_turns",
		Help:    "Conversation length (model turns) of finished sessions.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	activeSessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentry_gateway_active_sessions",
		Help: "Sessions this gateway replica holds state for.",
	})
	requestBytesInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentry_gateway_request_bytes_in_flight",
		Help: "Request body bytes this gateway replica has admitted and not finished (declared lengths; an undeclared one counts as its endpoint's limit), against --gateway-max-request-bytes.",
	})
	eventsStored = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_events_stored_total",
		Help: "Transcript events stored in object storage and acknowledged.",
	})
	storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_store_errors_total",
		Help: "Object-storage operations that failed (the runner retries).",
	})
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_status_writes_total",
		Help: "Coalesced AgentSession status writes.",
	})
	refusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_gateway_refused_total",
		Help: "Requests refused before their handler ran, or by it for the session's state, by reason (unauthenticated, not_runner_pod, pod_gone, pod_not_recorded, session_gone, session_ended, finished, body_too_large, too_many_in_flight, gateway_busy).",
	}, []string{"reason"})
	eventConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_event_conflicts_total",
		Help: "Transcript events refused because their seq was already stored with different content (recorded under conflicts/).",
	})
	approvalConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_approval_conflicts_total",
		Help: "Approval requests refused because their id was already pending or decided for a different action.",
	})
	webRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_gateway_web_requests_total",
		Help: "web_fetch and web_search calls, by tool and outcome (ok, refused, bad_request, unsupported_type, timeout, error).",
	}, []string{"tool", "outcome"})
	webBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentry_gateway_web_bytes_total",
		Help: "Response body bytes read by web_fetch and web_search, by tool.",
	}, []string{"tool"})
	statusWriteErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_status_write_errors_total",
		Help: "AgentSession status writes that failed (retried).",
	})
	chargesOverdue = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_charges_overdue_total",
		Help: "Model calls that waited for their session's unwritten token charges to be written first (status writes lagging).",
	})
	statusConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentry_gateway_status_conflicts_total",
		Help: "AgentSession status writes redone because another writer (the reconciler, another replica) wrote in between.",
	})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration, llmDuration, llmErrors, llmTokens,
		toolDuration, toolErrors, sessionTurns, activeSessions, requestBytesInFlight, eventsStored, storeErrors, statusWrites, statusWriteErrors,
		refusedTotal, eventConflicts, approvalConflicts)
	metrics.Registry.MustRegister(webRequests, webBytes, statusConflicts, chargesOverdue)
}
