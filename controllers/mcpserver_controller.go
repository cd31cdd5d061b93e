package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/gateway/mcpupstream"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=mcpservers,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=mcpservers/status,verbs=get;patch

// MCPServer's Ready reasons.
const (
	// ReasonToolsListed: the server answered and its tools were listed.
	ReasonToolsListed = "ToolsListed"
	// ReasonHeaderSecretMissing: a spec.headers Secret or key is missing or empty.
	ReasonHeaderSecretMissing = "HeaderSecretMissing"
	// ReasonUnreachable: connecting or listing the tools failed.
	ReasonUnreachable = "Unreachable"
)

// MCPServerReconciler checks each MCPServer as the gateway will use it: its header Secrets,
// a connection and a tools/list. It sets Ready and status.tools, and looks again every
// Interval, since a server can come and go without any object changing.
type MCPServerReconciler struct {
	Client client.Client
	// APIReader reads the header Secrets without caching Secrets.
	APIReader client.Reader
	// OperatorNamespace holds the header Secrets.
	OperatorNamespace string
	// Transport reaches the servers (default http.DefaultTransport).
	Transport http.RoundTripper
	// Interval between checks of a Ready server (default 5m); a server that is not Ready is
	// checked again after a sixth of it.
	Interval time.Duration
}

// Reconcile checks the server and patches its status when the result changed.
func (r *MCPServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &v1.MCPServer{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	interval := r.Interval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	cond, tools := r.check(ctx, m)
	cond.ObservedGeneration = m.Generation
	status := *m.Status.DeepCopy()
	meta.SetStatusCondition(&status.Conditions, cond)
	if cond.Status == metav1.ConditionTrue {
		status.Tools = tools
	} // else keep the tools as last listed
	status.ObservedGeneration = m.Generation
	next := ctrl.Result{RequeueAfter: interval}
	if cond.Status != metav1.ConditionTrue {
		next.RequeueAfter = interval / 6
	}
	if equality.Semantic.DeepEqual(status, m.Status) {
		return next, nil
	}
	patch := client.MergeFrom(m.DeepCopy())
	m.Status = status
	if err := r.Client.Status().Patch(ctx, m, patch, FieldOwner); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of MCPServer %s: %w", m.Name, err)
	}
	return next, nil
}

// check connects to the server and lists its tools. Messages never quote a header value.
func (r *MCPServerReconciler) check(ctx context.Context, m *v1.MCPServer) (metav1.Condition, []v1.MCPToolStatus) {
	headers, err := mcpupstream.Headers(ctx, r.APIReader, r.OperatorNamespace, m)
	if err != nil {
		reason := ReasonUnreachable
		if errors.Is(err, mcpupstream.ErrSecret) {
			reason = ReasonHeaderSecretMissing
		}
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: display.Truncate(err.Error(), 1000)}, nil
	}
	secrets := mcpupstream.Secrets(headers)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	unreachable := func(err error) metav1.Condition {
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonUnreachable,
			Message: display.Truncate(mcpupstream.Redact(err.Error(), secrets), 1000)}
	}
	cs, err := mcpupstream.Connect(cctx, m, headers, r.Transport)
	if err != nil {
		return unreachable(err), nil
	}
	defer cs.Close()
	list, skipped, err := mcpupstream.ListTools(cctx, cs, m)
	if err != nil {
		return unreachable(err), nil
	}
	tools := make([]v1.MCPToolStatus, 0, len(list))
	for _, t := range list {
		tools = append(tools, v1.MCPToolStatus{Name: t.Name, Description: display.Truncate(mcpupstream.Redact(display.FirstLine(t.Description), secrets), 1024)})
	}
	msg := fmt.Sprintf("%d tools offered", len(tools))
	if len(skipped) > 0 {
		msg += fmt.Sprintf("; left out (input schema not an object or over %d bytes): %v", mcpupstream.MaxSchemaBytes, skipped)
	}
	return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonToolsListed, Message: display.Truncate(msg, 1000)}, tools
}

// SetupWithManager watches MCPServers.
func (r *MCPServerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1.MCPServer{}).Named("mcpserver").Complete(r)
}
