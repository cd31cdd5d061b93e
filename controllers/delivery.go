package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/delivery"
	"github.com/agentry-dev/agentry/delivery/forge"
	"github.com/agentry-dev/agentry/display"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=gitproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=gitproviders/status,verbs=get;patch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions/status,verbs=get;patch

// DeliveryFieldOwner is the field manager of the delivery controller's status writes: it
// owns status.delivery and the Delivered condition, nothing else.
const DeliveryFieldOwner = client.FieldOwner("agentry-delivery")

// maxPatchBytes bounds the patch the manager reads into memory.
const maxPatchBytes = 64 << 20

// deliveryAttempts is how many times a retryable failure (rate limit, unreachable host, a
// 5xx) is tried before Delivered becomes False.
const deliveryAttempts = 6

// ArtifactReader reads an archived object by its status URI (the session gateway's store).
type ArtifactReader interface {
	ReadArtifact(ctx context.Context, uri string, max int64) ([]byte, error)
}

// DeliveryReconciler delivers the result of Succeeded sessions that ask for it in
// spec.delivery: the archived patch is applied on the base branch and pushed with a
// GitProvider's credential, and for pullRequest a pull request is opened or updated. It
// runs in the manager; no runner pod ever holds the credential.
type DeliveryReconciler struct {
	Client client.Client
	// APIReader reads GitProvider Secrets uncached.
	APIReader client.Reader
	Artifacts ArtifactReader
	Recorder  record.EventRecorder
	// OperatorNamespace holds the GitProviders' Secrets.
	OperatorNamespace string
	// NewForge builds a forge client for a provider (ForgeFor when nil).
	NewForge func(p *v1.GitProvider, sec *corev1.Secret) (forge.Forge, error)
	Now      func() time.Time
}

// deliveryOutcome is what one attempt ends in.
type deliveryOutcome struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	// retryAfter, for a retryable failure.
	retryAfter time.Duration
	result     v1.DeliveryStatus
}

// Reconcile delivers one session, at most once per outcome: True and False are final.
func (r *DeliveryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := &v1.AgentSession{}
	if err := r.Client.Get(ctx, req.NamespacedName, s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if s.Spec.Delivery == nil || !s.Status.Phase.IsTerminal() {
		return ctrl.Result{}, nil
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered); c != nil && c.Status != metav1.ConditionUnknown {
		return ctrl.Result{}, nil // delivered or given up: never pushed again
	}
	if s.Status.Phase == v1.PhaseSucceeded && !meta.IsStatusConditionTrue(s.Status.Conditions, v1.ConditionArchived) {
		return ctrl.Result{}, nil // the archiver's status write brings us back
	}
	prev := v1.DeliveryStatus{}
	if s.Status.Delivery != nil {
		prev = *s.Status.Delivery
	}
	if wait := r.backoffLeft(prev); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	out := r.deliver(ctx, s)
	out.result.Attempts = prev.Attempts + 1
	now := metav1.NewTime(r.now())
	out.result.LastAttemptTime = &now
	if out.status == metav1.ConditionUnknown && out.result.Attempts >= deliveryAttempts {
		out.status = metav1.ConditionFalse
		out.message = fmt.Sprintf("gave up after %d attempts: %s", out.result.Attempts, out.message)
	}
	if err := r.applyStatus(ctx, s, out); err != nil {
		return ctrl.Result{}, err
	}
	switch out.status {
	case metav1.ConditionTrue:
		r.Recorder.Event(s, corev1.EventTypeNormal, out.reason, out.message)
	case metav1.ConditionFalse:
		r.Recorder.Event(s, corev1.EventTypeWarning, "DeliveryFailed", out.reason+": "+out.message)
	default:
		r.Recorder.Event(s, corev1.EventTypeWarning, "DeliveryRetrying", out.message)
		return ctrl.Result{RequeueAfter: max(out.retryAfter, retryDelay(out.result.Attempts))}, nil
	}
	return ctrl.Result{}, nil
}

func (r *DeliveryReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// retryDelay is 15s, 30s, 1m, ... capped at 5m.
func retryDelay(attempts int32) time.Duration {
	d := 15 * time.Second
	for i := int32(1); i < attempts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func (r *DeliveryReconciler) backoffLeft(prev v1.DeliveryStatus) time.Duration {
	if prev.LastAttemptTime == nil || prev.Attempts == 0 {
		return 0
	}
	return prev.LastAttemptTime.Add(retryDelay(prev.Attempts)).Sub(r.now())
}

func failed(reason, format string, a ...any) deliveryOutcome {
	return deliveryOutcome{status: metav1.ConditionFalse, reason: reason, message: fmt.Sprintf(format, a...)}
}

// deliver makes one attempt.
func (r *DeliveryReconciler) deliver(ctx context.Context, s *v1.AgentSession) deliveryOutcome {
	d := s.Spec.Delivery
	if s.Status.Phase != v1.PhaseSucceeded {
		return failed(v1.ReasonSessionNotSucceeded, "the session ended %s; only a Succeeded session's result is delivered", s.Status.Phase)
	}
	res := s.Status.Result
	if res == nil || res.FilesChanged == 0 || s.Status.Patch == nil || s.Status.Patch.SizeBytes == 0 {
		return deliveryOutcome{status: metav1.ConditionTrue, reason: v1.ReasonNoChanges, message: "the agent changed no file; no branch was pushed"}
	}
	if len(res.OmittedFiles) > 0 {
		var names []string
		for _, f := range res.OmittedFiles {
			names = append(names, f.Path+" ("+f.Reason+")")
		}
		return failed(v1.ReasonPatchIncomplete, "the patch leaves out %s; pushing it would deliver part of the change", strings.Join(names, ", "))
	}

	data := templateDataFor(s)
	title, body, err := renderPullRequest(d, data)
	if err != nil {
		return failed(v1.ReasonInvalidTemplate, "%v", err)
	}

	p, err := r.provider(ctx, s)
	if err != nil {
		var o *deliveryOutcome
		if errors.As(err, &o) {
			return *o
		}
		return retry(err)
	}
	if o := checkDeliveryPolicy(ctx, r.Client, s, p); o != nil {
		return *o
	}
	if d.PullRequest != nil && p.Spec.Type == v1.GitProviderGit {
		return failed(v1.ReasonGitProviderNotFound, "GitProvider %s is of type Git, which cannot open pull requests; use spec.delivery.push or a GitHub or Gitea provider", p.Name)
	}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.OperatorNamespace, Name: p.Spec.SecretRef.Name}, sec); apierrors.IsNotFound(err) {
		return failed(v1.ReasonGitProviderNotFound, "GitProvider %s names Secret %s/%s, which does not exist", p.Name, r.OperatorNamespace, p.Spec.SecretRef.Name)
	} else if err != nil {
		return retry(fmt.Errorf("reading the GitProvider's Secret: %w", err))
	}

	// The patch, exactly as archived: the sha256 in status was computed by the gateway.
	uri := s.Status.Patch.URI
	if !strings.HasSuffix(uri, "/"+path.Join(s.Namespace, s.Name, string(s.UID), "result.patch")) {
		return failed(v1.ReasonPatchUnavailable, "status.patch.uri %q is not this session's archived patch", uri)
	}
	patch, err := r.Artifacts.ReadArtifact(ctx, uri, maxPatchBytes)
	if err != nil {
		return retry(fmt.Errorf("reading the archived patch: %w", err))
	}
	if sum := sha256.Sum256(patch); hex.EncodeToString(sum[:]) != s.Status.Patch.SHA256 {
		return failed(v1.ReasonPatchUnavailable, "the archived patch %s does not match status.patch.sha256", uri)
	}

	newForge := r.NewForge
	if newForge == nil {
		newForge = ForgeFor
	}
	var fg forge.Forge
	var repo forge.Repo
	var auth transport.AuthMethod
	if p.Spec.Type == v1.GitProviderGit {
		if auth, err = plainGitAuth(p, sec, s.Spec.Repository.URL); err != nil {
			return failed(v1.ReasonGitProviderNotFound, "Secret %s/%s of GitProvider %s: %v", r.OperatorNamespace, sec.Name, p.Name, err)
		}
	} else {
		if fg, err = newForge(p, sec); err != nil {
			return failed(v1.ReasonGitProviderNotFound, "GitProvider %s: %v", p.Name, err)
		}
		if repo, err = forge.ParseRepo(p.Spec.URL, s.Spec.Repository.URL); err != nil {
			return failed(v1.ReasonGitProviderNotFound, "GitProvider %s: %v", p.Name, err)
		}
		user, pass, err := fg.PushCredentials(ctx, repo)
		if err != nil {
			return forgeFailure(err)
		}
		auth = &githttp.BasicAuth{Username: user, Password: pass}
	}

	author := object.Signature{Name: "Agentry", Email: "agentry@users.noreply.agentry.dev"}
	if d.Author != nil {
		author = object.Signature{Name: d.Author.Name, Email: d.Author.Email}
	}
	if s.Status.CompletionTime != nil {
		author.When = s.Status.CompletionTime.Time
	} else {
		author.When = s.CreationTimestamp.Time
	}
	message := title
	if strings.TrimSpace(data.Summary) != "" {
		message += "\n\n" + data.Summary
	}
	req := delivery.Request{
		URL: s.Spec.Repository.URL, Auth: auth, Ref: s.Spec.Repository.Ref,
		Branch: deliveryBranch(s), Patch: patch, Author: author, Message: message,
		Session: s.Namespace + "/" + s.Name + "/" + string(s.UID),
	}
	if d.PullRequest != nil {
		req.Base = d.PullRequest.Base
	}
	pushed, err := delivery.Deliver(ctx, req)
	if err != nil {
		return pushFailure(err)
	}
	out := deliveryOutcome{status: metav1.ConditionTrue, reason: v1.ReasonDelivered, result: v1.DeliveryStatus{
		GitProvider: p.Name, Branch: req.Branch, BaseCommitSHA: pushed.BaseCommit.String(), CommitSHA: pushed.Commit.String(),
	}}
	if d.PullRequest == nil {
		out.message = fmt.Sprintf("pushed %s to branch %s", pushed.Commit.String()[:12], req.Branch)
		return out
	}
	pr, err := fg.EnsurePullRequest(ctx, repo, forge.PullRequest{
		Head: req.Branch, Base: pushed.Base, Title: title, Body: body, Draft: d.PullRequest.Draft, Labels: d.PullRequest.Labels,
	})
	if err != nil {
		o := forgeFailure(err)
		o.result = out.result // the branch is pushed; say so
		return o
	}
	out.result.PullRequestURL, out.result.PullRequestNumber = pr.URL, pr.Number
	verb := "updated"
	if pr.Created {
		verb = "opened"
	}
	out.message = fmt.Sprintf("pushed %s to branch %s and %s pull request #%d: %s", pushed.Commit.String()[:12], req.Branch, verb, pr.Number, pr.URL)
	return out
}

func retry(err error) deliveryOutcome {
	return deliveryOutcome{status: metav1.ConditionUnknown, reason: v1.ReasonDelivering, message: err.Error()}
}

func deliveryBranch(s *v1.AgentSession) string {
	d := s.Spec.Delivery
	b := ""
	if d.Push != nil {
		b = d.Push.Branch
	} else if d.PullRequest != nil {
		b = d.PullRequest.Branch
	}
	if b == "" {
		b = "agentry/" + s.Name
	}
	return b
}

// pushFailure maps what delivery.Deliver returned to the Delivered condition.
func pushFailure(err error) deliveryOutcome {
	var conflict *delivery.ConflictError
	var hostKey *knownhosts.KeyError
	switch {
	case errors.As(err, &hostKey) || strings.Contains(err.Error(), "knownhosts: "):
		// Someone else answers for the host: never retried, never pushed to.
		return failed(v1.ReasonAuthFailed, "the host's SSH key is not the one in the GitProvider's known_hosts: %v", err)
	case errors.Is(err, delivery.ErrNothingToDeliver):
		return deliveryOutcome{status: metav1.ConditionTrue, reason: v1.ReasonNoChanges, message: "the change is already on the base branch; nothing was pushed"}
	case errors.As(err, &conflict):
		return failed(v1.ReasonConflict, "%v", err)
	case errors.Is(err, delivery.ErrPatch):
		return failed(v1.ReasonPatchIncomplete, "%v", err)
	case errors.Is(err, delivery.ErrBranchExists):
		return failed(v1.ReasonBranchExists, "%v", err)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return failed(v1.ReasonAuthFailed, "the host refused the GitProvider's credential: %v", err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return failed(v1.ReasonForgeError, "%v", err)
	case errors.Is(err, delivery.ErrNoDefaultBranch):
		return failed(v1.ReasonForgeError, "%v", err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "unexpected EOF") {
		return retry(err)
	}
	if strings.Contains(err.Error(), "pushing ") {
		// The host answered the push with a refusal: a protected branch, a hook.
		return failed(v1.ReasonPushRejected, "%v", err)
	}
	return retry(err)
}

// forgeFailure maps a forge API error to the Delivered condition.
func forgeFailure(err error) deliveryOutcome {
	var fe *forge.Error
	if errors.As(err, &fe) {
		if fe.Retryable {
			o := retry(err)
			o.retryAfter = fe.RetryAfter
			if fe.Reason == v1.ReasonRateLimited {
				o.message = "rate limited: " + o.message
			}
			return o
		}
		switch fe.Reason {
		case v1.ReasonAuthFailed, v1.ReasonRateLimited, v1.ReasonForgeError:
			return failed(fe.Reason, "%v", err)
		}
		// NotFound: the repository, or the credential cannot see it.
		return failed(v1.ReasonForgeError, "%v", err)
	}
	return retry(err)
}

// provider finds the session's GitProvider: the one named, or the one whose url is the
// repository's host. A missing one is a final outcome (as a *deliveryOutcome error).
func (r *DeliveryReconciler) provider(ctx context.Context, s *v1.AgentSession) (*v1.GitProvider, error) {
	if name := s.Spec.Delivery.GitProvider; name != "" {
		p := &v1.GitProvider{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, p); apierrors.IsNotFound(err) {
			o := failed(v1.ReasonGitProviderNotFound, "GitProvider %s (spec.delivery.gitProvider) does not exist", name)
			return nil, &o
		} else if err != nil {
			return nil, err
		}
		if !sameHost(p.Spec.URL, s.Spec.Repository.URL) {
			o := failed(v1.ReasonGitProviderNotFound, "GitProvider %s serves %s, not the repository's host", name, p.Spec.URL)
			return nil, &o
		}
		return p, nil
	}
	var list v1.GitProviderList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	var match []*v1.GitProvider
	for i := range list.Items {
		if sameHost(list.Items[i].Spec.URL, s.Spec.Repository.URL) {
			match = append(match, &list.Items[i])
		}
	}
	switch len(match) {
	case 0:
		o := failed(v1.ReasonGitProviderNotFound, "no GitProvider serves the repository's host; a platform admin creates one (docs/delivery.md)")
		return nil, &o
	case 1:
		return match[0], nil
	}
	o := failed(v1.ReasonGitProviderNotFound, "%d GitProviders serve the repository's host; name one in spec.delivery.gitProvider", len(match))
	return nil, &o
}

func (o *deliveryOutcome) Error() string { return o.reason + ": " + o.message }

// plainGitAuth is a type Git provider's credential for the repository: basic auth over
// http(s), a key checked against known_hosts over ssh.
func plainGitAuth(p *v1.GitProvider, sec *corev1.Secret, repoURL string) (transport.AuthMethod, error) {
	u, err := parseRepoURL(repoURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ssh" {
		pass := secretString(sec, "password")
		if pass == "" {
			return nil, errors.New("no password key")
		}
		return &githttp.BasicAuth{Username: secretString(sec, "username"), Password: pass}, nil
	}
	key, hosts := secretString(sec, "ssh-privatekey"), secretString(sec, "known_hosts")
	if key == "" || hosts == "" {
		return nil, errors.New("an ssh provider needs the keys ssh-privatekey and known_hosts (the host key is never trusted on first use)")
	}
	user := "git"
	if u.User != nil && u.User.Username() != "" {
		user = u.User.Username()
	}
	auth, err := gitssh.NewPublicKeys(user, []byte(key+"\n"), "")
	if err != nil {
		return nil, fmt.Errorf("ssh-privatekey: %w", err)
	}
	cb, err := knownHostsCallback([]byte(hosts + "\n"))
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	auth.HostKeyCallback = cb
	return auth, nil
}

// knownHostsCallback checks host keys against known_hosts content (the library reads files).
func knownHostsCallback(content []byte) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "known_hosts")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return knownhosts.New(f.Name()) // read now, whole
}

// parseRepoURL parses a repository URL, scp-like git@host:path as ssh://git@host/path.
func parseRepoURL(repoURL string) (*url.URL, error) {
	if !strings.Contains(repoURL, "://") {
		if at, colon := strings.Index(repoURL, "@"), strings.Index(repoURL, ":"); at > 0 && colon > at {
			repoURL = "ssh://" + repoURL[:colon] + "/" + repoURL[colon+1:]
		}
	}
	return url.Parse(repoURL)
}

// sameHost reports whether the repository URL is on the provider's scheme, host and port
// (ssh's port defaults to 22).
func sameHost(providerURL, repoURL string) bool {
	p, err1 := url.Parse(providerURL)
	u, err2 := parseRepoURL(repoURL)
	if err1 != nil || err2 != nil || p.Scheme != u.Scheme || !strings.EqualFold(p.Hostname(), u.Hostname()) {
		return false
	}
	port := func(x *url.URL) string {
		if x.Port() == "" && x.Scheme == "ssh" {
			return "22"
		}
		return x.Port()
	}
	return port(p) == port(u)
}

// repositoryPath is host/path of a repository URL without .git, as AgentPolicy's
// allowedRepositories patterns are written.
func repositoryPath(repoURL string) string {
	u, err := parseRepoURL(repoURL)
	if err != nil {
		return repoURL
	}
	return strings.ToLower(u.Host) + strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git")
}

// checkDeliveryPolicy applies every AgentPolicy of the session's namespace.
func checkDeliveryPolicy(ctx context.Context, c client.Client, s *v1.AgentSession, p *v1.GitProvider) *deliveryOutcome {
	var pols v1.AgentPolicyList
	if err := c.List(ctx, &pols, client.InNamespace(s.Namespace)); err != nil {
		o := retry(err)
		return &o
	}
	if msg := deliveryPolicyViolation(pols.Items, s, p.Name); msg != "" {
		o := failed(v1.ReasonDeliveryNotAllowed, "%s", msg)
		return &o
	}
	return nil
}

// deliveryGoverned reports whether an AgentPolicy of the namespace allows delivery at all.
// Delivery needs one: a GitProvider's credential can push to every repository it covers, so a
// namespace nobody governs must not be able to use it (a user who may create sessions would
// otherwise open branches and pull requests on repositories they cannot write to).
func deliveryGoverned(pols []v1.AgentPolicy) bool {
	for _, pol := range pols {
		if pol.Spec.Delivery != nil {
			return true
		}
	}
	return false
}

// repositoryAllowed reports whether a policy's allowedRepositories admit repo (host/path).
func repositoryAllowed(d *v1.DeliveryPolicy, repo string) bool {
	if len(d.AllowedRepositories) == 0 {
		return true
	}
	for _, pat := range d.AllowedRepositories {
		if m, err := path.Match(strings.ToLower(pat), repo); err == nil && m {
			return true
		}
	}
	return false
}

// deliveryPolicyViolation says why the policies forbid delivering s through provider, or "".
func deliveryPolicyViolation(pols []v1.AgentPolicy, s *v1.AgentSession, provider string) string {
	if !deliveryGoverned(pols) {
		return fmt.Sprintf("no AgentPolicy in namespace %s allows delivery (spec.delivery); a platform owner allows it with an AgentPolicy's spec.delivery", s.Namespace)
	}
	repo := repositoryPath(s.Spec.Repository.URL)
	for _, pol := range pols {
		d := pol.Spec.Delivery
		if d == nil {
			continue
		}
		if len(d.AllowedGitProviders) > 0 && !slices.Contains(d.AllowedGitProviders, provider) {
			return fmt.Sprintf("AgentPolicy %s does not allow GitProvider %s (spec.delivery.allowedGitProviders)", pol.Name, provider)
		}
		if !repositoryAllowed(d, repo) {
			return fmt.Sprintf("AgentPolicy %s does not allow delivering to %s (spec.delivery.allowedRepositories)", pol.Name, repo)
		}
	}
	return ""
}

// applyStatus writes status.delivery and the Delivered condition by server-side apply with
// the delivery controller's own field manager.
func (r *DeliveryReconciler) applyStatus(ctx context.Context, s *v1.AgentSession, o deliveryOutcome) error {
	cond := metav1.Condition{
		Type: v1.ConditionDelivered, Status: o.status, Reason: o.reason, Message: display.Truncate(o.message, 1024),
		ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(r.now()),
	}
	if old := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered); old != nil && old.Status == cond.Status {
		cond.LastTransitionTime = old.LastTransitionTime
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "AgentSession",
		"metadata":   map[string]any{"name": s.Name, "namespace": s.Namespace, "uid": string(s.UID)},
		"status":     map[string]any{"conditions": []metav1.Condition{cond}, "delivery": o.result},
	})
	if err != nil {
		return err
	}
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = s.Name, s.Namespace
	if err := r.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), DeliveryFieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("applying delivery status of %s/%s: %w", s.Namespace, s.Name, err)
	}
	log.FromContext(ctx).Info("Delivering session result", "AgentSession", klog.KObj(s), "status", o.status, "reason", o.reason)
	return nil
}

// SetupWithManager watches sessions that ask for delivery.
func (r *DeliveryReconciler) SetupWithManager(mgr ctrl.Manager) error {
	wants := predicate.NewPredicateFuncs(func(o client.Object) bool {
		s, ok := o.(*v1.AgentSession)
		return ok && s.Spec.Delivery != nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentSession{}, builder.WithPredicates(wants)).
		Named("delivery").
		Complete(r)
}
