package controllers

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// LabelGitCredentials marks a Secret its owner lets sessions use as
// spec.repository.credentialsSecretRef. Only the value "true" opts in: a session may not
// send just any Secret of its namespace to a repository URL it chose.
const LabelGitCredentials = "agentry.dev/git-credentials"

// AnnotationGitCredentialsHosts, on a credentials Secret, lists the repository hosts
// (comma-separated) the Secret may be sent to. Without it, any host.
const AnnotationGitCredentialsHosts = "agentry.dev/git-credentials-hosts"

// admission is the decision on a session that has no pod yet.
type admission struct {
	// verdict is one of admit, wait, queue, reject.
	verdict verdict
	reason  string
	message string
	// model is the model name the session will use (the provider's default when the
	// session names none).
	model string
	// pod is what the namespace's policies decide about the runner pod.
	pod podSettings
}

// podSettings are the runner pod's resources and volume sizes, decided at admission from
// the session and the namespace's AgentPolicies.
type podSettings struct {
	// agentResources are the agent container's requests and limits: spec.runner.resources
	// with the policies' (or the built-in) defaults filled in.
	agentResources corev1.ResourceRequirements
	// workspace, home and tmp are the emptyDir sizeLimits.
	workspace, home, tmp resource.Quantity
	// plainHTTPGateway: the gateway serves plain HTTP and the namespace is labelled to allow
	// it (contract.LabelGatewayPlainHTTP); the runner refuses plain HTTP otherwise.
	plainHTTPGateway bool
	// instructions are the AgentPolicy and session instructions, resolved by the reconciler
	// (a ConfigMap read) once the session is admitted.
	instructions []contract.Instruction
	// contextWindow is the session model's context window in tokens, from its ModelProvider
	// (0: unknown, no compaction); set by the reconciler at admission.
	contextWindow int64
}

// Built-in defaults, for namespaces whose AgentPolicies say nothing.
var (
	defaultAgentResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
	}
	defaultWorkspaceSize = resource.MustParse("10Gi")
	defaultHomeSize      = resource.MustParse("1Gi")
	defaultTmpSize       = resource.MustParse("1Gi")
)

type verdict int

const (
	admit verdict = iota
	// wait: something the session needs does not exist yet (its ModelProvider); check again later.
	wait
	// queue: the namespace is at its concurrency limit.
	queue
	// reject: the spec can never run as written.
	reject
)

// admitSession decides whether a session may start, from its ModelProvider (nil when it
// does not exist), the AgentPolicies of its namespace, and the namespace's sessions. A pure
// function: the reconciler gathers the inputs, this decides.
//
// secret is the metadata of the Secret spec.repository.credentialsSecretRef names (nil
// when the session names none, or it does not exist).
func admitSession(s *v1.AgentSession, provider *v1.ModelProvider, secret *metav1.PartialObjectMetadata, policies []v1.AgentPolicy, siblings []v1.AgentSession, defaultImage string) admission {
	spec := s.Spec
	if a, ok := admitCredentials(s, secret); !ok {
		return a
	}
	if provider == nil {
		return admission{verdict: wait, reason: v1.ReasonPending,
			message: fmt.Sprintf("ModelProvider %q does not exist; the session starts once it is created.", spec.Model.Provider)}
	}
	model := spec.Model.Name
	if model == "" {
		model = provider.Spec.DefaultModel
	}
	if model == "" {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: fmt.Sprintf("spec.model.name is empty and ModelProvider %q has no defaultModel.", provider.Name)}
	}
	if len(provider.Spec.Models) > 0 && !slices.Contains(provider.Spec.Models, model) {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: fmt.Sprintf("spec.model.name: ModelProvider %q does not offer model %q (it offers %s).", provider.Name, model, strings.Join(provider.Spec.Models, ", "))}
	}
	if len(policies) == 0 && len(spec.Network.Egress) > 0 {
		return admission{verdict: reject, reason: v1.ReasonPolicyViolation,
			message: fmt.Sprintf("spec.network.egress is not allowed: no AgentPolicy in namespace %s allows extra egress. "+
				"A platform owner must list these destinations in an AgentPolicy's spec.egress.", s.Namespace)}
	}
	if spec.Delivery != nil && !deliveryGoverned(policies) {
		return admission{verdict: reject, reason: v1.ReasonPolicyViolation, message: "spec.delivery is not allowed: " +
			deliveryPolicyViolation(policies, s, spec.Delivery.GitProvider) + "."}
	}
	if msg := capabilityViolation(s, policies); msg != "" {
		return admission{verdict: reject, reason: v1.ReasonPolicyViolation, message: msg + "."}
	}
	settings, msg := resolvePodSettings(s, policies)
	if msg != "" {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec, message: msg}
	}
	for _, p := range policies {
		if msg := policyViolation(s, model, &p, defaultImage, settings); msg != "" {
			return admission{verdict: reject, reason: v1.ReasonPolicyViolation, message: fmt.Sprintf("AgentPolicy %s: %s", p.Name, msg)}
		}
	}
	if limit, ok := concurrencyLimit(policies); ok {
		active, ahead := 0, 0
		for i := range siblings {
			o := &siblings[i]
			if o.UID == s.UID || o.Status.Phase.IsTerminal() {
				continue
			}
			if o.Status.PodName != "" {
				active++
			} else if queuedBefore(o, s) && !waitingForInputs(o) {
				ahead++
			}
		}
		if active+ahead >= limit {
			return admission{verdict: queue, reason: v1.ReasonQueued, model: model, pod: settings,
				message: fmt.Sprintf("Waiting for a slot: %d of %d sessions running in this namespace, %d queued ahead.", active, limit, ahead)}
		}
	}
	return admission{verdict: admit, model: model, pod: settings}
}

// admitCredentials refuses a credentialsSecretRef that would hand a Secret to whoever
// wrote the session: the Secret must exist and be labelled agentry.dev/git-credentials=true
// by its owner, and the repository URL must not be plain http://, where the credentials
// would cross the network in clear text.
func admitCredentials(s *v1.AgentSession, secret *metav1.PartialObjectMetadata) (admission, bool) {
	ref := s.Spec.Repository.CredentialsSecretRef
	if ref == nil {
		return admission{}, true
	}
	if isPlainHTTP(s.Spec.Repository.URL) {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: "spec.repository.credentialsSecretRef cannot be used with an http:// spec.repository.url: the credentials would be sent in clear text. Use https:// or ssh://."}, false
	}
	if secret == nil {
		return admission{verdict: wait, reason: v1.ReasonPending,
			message: fmt.Sprintf("Secret %q named by spec.repository.credentialsSecretRef does not exist; the session starts once it is created.", ref.Name)}, false
	}
	if secret.Labels[LabelGitCredentials] != "true" {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: fmt.Sprintf("spec.repository.credentialsSecretRef: Secret %q is not labelled %s=true. Sessions may use only Secrets their owner opted in: "+
				"kubectl label secret %s %s=true", ref.Name, LabelGitCredentials, ref.Name, LabelGitCredentials)}, false
	}
	if hosts, ok := secret.Annotations[AnnotationGitCredentialsHosts]; ok {
		host := repositoryHost(s.Spec.Repository.URL)
		allowed := false
		for _, h := range strings.Split(hosts, ",") {
			allowed = allowed || (host != "" && strings.EqualFold(strings.TrimSpace(h), host))
		}
		if !allowed {
			return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
				message: fmt.Sprintf("spec.repository.credentialsSecretRef: Secret %q may be sent only to %s (its %s annotation), not to %q of spec.repository.url",
					ref.Name, hosts, AnnotationGitCredentialsHosts, host)}, false
		}
	}
	return admission{}, true
}

// repositoryHost returns the host of a repository URL (https://, ssh://, git:// or
// scp-like user@host:path), without user or port; "" when there is none.
func repositoryHost(repo string) string {
	if i := strings.Index(repo, "://"); i >= 0 {
		u, err := url.Parse(repo)
		if err != nil {
			return ""
		}
		return strings.ToLower(u.Hostname())
	}
	if at := strings.Index(repo, "@"); at >= 0 {
		rest := repo[at+1:]
		if colon := strings.Index(rest, ":"); colon > 0 {
			return strings.ToLower(rest[:colon])
		}
	}
	return ""
}

// isPlainHTTP reports whether a repository URL is http:// (in any case).
func isPlainHTTP(url string) bool {
	return len(url) >= 7 && strings.EqualFold(url[:7], "http://")
}

// waitingForInputs reports whether a session without a pod is held for its ModelProvider
// or credentials Secret, not for a slot: it does not queue ahead of others, or one session
// naming a missing Secret would keep a free slot from everyone created after it. It takes
// a slot, in its creation order, once what it waits for exists.
func waitingForInputs(o *v1.AgentSession) bool {
	c := meta.FindStatusCondition(o.Status.Conditions, v1.ConditionSucceeded)
	return o.Status.Phase == v1.PhasePending && c != nil && c.Reason == v1.ReasonPending
}

// queuedBefore orders waiting sessions oldest first, by name on ties.
func queuedBefore(a, b *v1.AgentSession) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// concurrencyLimit is the smallest maxConcurrentSessions of the policies.
func concurrencyLimit(policies []v1.AgentPolicy) (int, bool) {
	limit, ok := 0, false
	for _, p := range policies {
		if m := p.Spec.MaxConcurrentSessions; m != nil && (!ok || int(*m) < limit) {
			limit, ok = int(*m), true
		}
	}
	return limit, ok
}

// policyViolation says what in the session a policy forbids, naming the field; "" when nothing.
func policyViolation(s *v1.AgentSession, model string, p *v1.AgentPolicy, defaultImage string, settings podSettings) string {
	spec, ps := s.Spec, p.Spec
	if len(ps.AllowedProviders) > 0 && !slices.Contains(ps.AllowedProviders, spec.Model.Provider) {
		return fmt.Sprintf("spec.model.provider %q is not allowed (allowed: %s)", spec.Model.Provider, strings.Join(ps.AllowedProviders, ", "))
	}
	if len(ps.AllowedModels) > 0 && !slices.Contains(ps.AllowedModels, model) {
		return fmt.Sprintf("model %q is not allowed (allowed: %s)", model, strings.Join(ps.AllowedModels, ", "))
	}
	if img := spec.Runner.Image; img != "" && img != defaultImage {
		ref, err := parseImage(img)
		if err != nil {
			return fmt.Sprintf("spec.runner.image %q: %v", img, err)
		}
		allowed := false
		for _, rule := range ps.AllowedImages {
			allowed = allowed || imageAllowed(ref, rule)
		}
		if !allowed {
			return fmt.Sprintf("spec.runner.image %q is not allowed (allowed registries and repositories: %s)", img, orNone(ps.AllowedImages))
		}
	}
	keys := make([]string, 0, len(spec.Runner.NodeSelector))
	for k := range spec.Runner.NodeSelector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		values, ok := ps.AllowedNodeSelectors[k]
		if !ok {
			return fmt.Sprintf("spec.runner.nodeSelector[%q] is not allowed (allowed keys: %s; set them in the policy's spec.allowedNodeSelectors)", k, orNone(mapKeys(ps.AllowedNodeSelectors)))
		}
		if v := spec.Runner.NodeSelector[k]; !slices.Contains(values, v) {
			return fmt.Sprintf("spec.runner.nodeSelector[%q] value %q is not allowed (allowed: %s)", k, v, orNone(values))
		}
	}
	for i, t := range spec.Runner.Tolerations {
		if !tolerationAllowed(t, ps.AllowedTolerations) {
			return fmt.Sprintf("spec.runner.tolerations[%d] (key %q, operator %s, value %q, effect %q) is not in the policy's spec.allowedTolerations",
				i, t.Key, orEqual(t.Operator), t.Value, t.Effect)
		}
	}
	if rp := ps.AgentResources; rp != nil {
		for _, name := range sortedResourceNames(rp.Max) {
			limit := rp.Max[name]
			if q, ok := settings.agentResources.Requests[name]; ok && q.Cmp(limit) > 0 {
				return fmt.Sprintf("spec.runner.resources.requests.%s %s exceeds the maximum of %s (spec.agentResources.max)", name, q.String(), limit.String())
			}
			if q, ok := settings.agentResources.Limits[name]; ok && q.Cmp(limit) > 0 {
				return fmt.Sprintf("spec.runner.resources.limits.%s %s exceeds the maximum of %s (spec.agentResources.max)", name, q.String(), limit.String())
			}
		}
	}
	if rc := ps.RequiredRuntimeClassName; rc != "" && (spec.Runner.RuntimeClassName == nil || *spec.Runner.RuntimeClassName != rc) {
		return fmt.Sprintf("spec.runner.runtimeClassName must be %q", rc)
	}
	for i, e := range spec.Network.Egress {
		if !egressAllowed(e, ps.Egress) {
			return fmt.Sprintf("spec.network.egress[%d] (%s) is not in the policy's egress list (spec.egress)", i, e.Host+e.CIDR)
		}
	}
	if c := ps.MaxLimits; c != nil {
		if c.MaxTurns != nil && spec.Limits.MaxTurns > *c.MaxTurns {
			return fmt.Sprintf("spec.limits.maxTurns %d exceeds the cap of %d", spec.Limits.MaxTurns, *c.MaxTurns)
		}
		if c.MaxTokens != nil && spec.Limits.MaxTokens > *c.MaxTokens {
			return fmt.Sprintf("spec.limits.maxTokens %d exceeds the cap of %d", spec.Limits.MaxTokens, *c.MaxTokens)
		}
		if c.Timeout != nil && spec.Limits.Timeout != nil && spec.Limits.Timeout.Duration > c.Timeout.Duration {
			return fmt.Sprintf("spec.limits.timeout %s exceeds the cap of %s", spec.Limits.Timeout.Duration, c.Timeout.Duration)
		}
	}
	// Delivery is checked again when it happens (with the GitProvider found by host); here a
	// session the policy forbids is stopped before it spends tokens.
	if d, pd := spec.Delivery, ps.Delivery; d != nil && pd != nil {
		if d.GitProvider != "" && len(pd.AllowedGitProviders) > 0 && !slices.Contains(pd.AllowedGitProviders, d.GitProvider) {
			return fmt.Sprintf("spec.delivery.gitProvider %q is not allowed (allowed: %s)", d.GitProvider, strings.Join(pd.AllowedGitProviders, ", "))
		}
		if repo := repositoryPath(spec.Repository.URL); !repositoryAllowed(pd, repo) {
			return fmt.Sprintf("spec.delivery: the repository %s is not allowed (allowed: %s)", repo, strings.Join(pd.AllowedRepositories, ", "))
		}
	}
	return ""
}

func egressAllowed(e v1.EgressRule, allowed []v1.EgressRule) bool {
	for _, a := range allowed {
		if a.Host == e.Host && a.CIDR == e.CIDR {
			if len(a.Ports) == 0 {
				return true
			}
			ok := true
			for _, p := range portsOrDefault(e.Ports) {
				ok = ok && slices.Contains(a.Ports, p)
			}
			if ok {
				return true
			}
		}
	}
	return false
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	sorted := slices.Clone(s)
	sort.Strings(sorted)
	return strings.Join(sorted, ", ")
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func orEqual(op corev1.TolerationOperator) corev1.TolerationOperator {
	if op == "" {
		return corev1.TolerationOpEqual
	}
	return op
}

// tolerationAllowed reports whether an entry of the allow-list covers t: t tolerates no
// taint the entry would not.
func tolerationAllowed(t corev1.Toleration, allowed []v1.AllowedToleration) bool {
	for _, a := range allowed {
		if a.Effect != "" && a.Effect != t.Effect {
			continue // an empty effect in t tolerates every effect: only an empty entry covers it
		}
		switch orEqual(a.Operator) {
		case corev1.TolerationOpExists:
			if a.Key == "" || a.Key == t.Key {
				return true
			}
		case corev1.TolerationOpEqual:
			if a.Key == t.Key && orEqual(t.Operator) == corev1.TolerationOpEqual && a.Value == t.Value {
				return true
			}
		}
	}
	return false
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// resolvePodSettings decides the runner pod's resources and volume sizes: the strictest
// value of the policies wins, and the built-in defaults fill what no policy sets. The
// message names the field when the session's own resources contradict each other.
func resolvePodSettings(s *v1.AgentSession, policies []v1.AgentPolicy) (podSettings, string) {
	defReq := corev1.ResourceList{}
	defLim := corev1.ResourceList{}
	maxes := corev1.ResourceList{}
	lower := func(l corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if cur, ok := l[name]; !ok || q.Cmp(cur) < 0 {
			l[name] = q
		}
	}
	for _, p := range policies {
		rp := p.Spec.AgentResources
		if rp == nil {
			continue
		}
		if d := rp.Default; d != nil {
			for n, q := range d.Requests {
				lower(defReq, n, q)
			}
			for n, q := range d.Limits {
				lower(defLim, n, q)
			}
		}
		for n, q := range rp.Max {
			lower(maxes, n, q)
		}
	}
	for n, q := range defaultAgentResources.Requests {
		if _, ok := defReq[n]; !ok {
			defReq[n] = q
		}
	}
	for n, q := range defaultAgentResources.Limits {
		if _, ok := defLim[n]; !ok {
			defLim[n] = q
		}
	}
	// A default never exceeds a maximum.
	for n, q := range maxes {
		lower(defReq, n, q)
		lower(defLim, n, q)
	}

	asked := s.Spec.Runner.Resources
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}, Claims: asked.Claims}
	for n, q := range asked.Limits {
		res.Limits[n] = q
	}
	for n, q := range asked.Requests {
		res.Requests[n] = q
	}
	for _, n := range sortedResourceNames(asked.Requests) {
		r := asked.Requests[n]
		if l, ok := asked.Limits[n]; ok && r.Cmp(l) > 0 {
			return podSettings{}, fmt.Sprintf("spec.runner.resources.requests.%s %s exceeds spec.runner.resources.limits.%s %s", n, r.String(), n, l.String())
		}
	}
	// Limits first: a default limit below the session's own request is raised to it, and
	// a resource with a maximum but no limit gets the maximum.
	for n, q := range defLim {
		if _, ok := res.Limits[n]; ok {
			continue
		}
		if r, ok := asked.Requests[n]; ok && r.Cmp(q) > 0 {
			q = r
		}
		res.Limits[n] = q
	}
	for n, q := range maxes {
		if _, ok := res.Limits[n]; !ok {
			res.Limits[n] = q
		}
	}
	// Then requests: a default request never exceeds the limit (Kubernetes would refuse
	// the pod).
	for n, q := range defReq {
		if _, ok := res.Requests[n]; ok {
			continue
		}
		if _, ok := asked.Limits[n]; ok {
			continue // Kubernetes defaults the request to the session's own limit
		}
		if l, ok := res.Limits[n]; ok && q.Cmp(l) > 0 {
			q = l
		}
		res.Requests[n] = q
	}

	settings := podSettings{agentResources: res, workspace: defaultWorkspaceSize, home: defaultHomeSize, tmp: defaultTmpSize}
	set := map[string]bool{}
	for _, p := range policies {
		v := p.Spec.VolumeSizeLimits
		if v == nil {
			continue
		}
		for _, f := range []struct {
			name string
			q    *resource.Quantity
			dst  *resource.Quantity
		}{{"workspace", v.Workspace, &settings.workspace}, {"home", v.Home, &settings.home}, {"tmp", v.Tmp, &settings.tmp}} {
			if f.q != nil && (!set[f.name] || f.q.Cmp(*f.dst) < 0) {
				*f.dst, set[f.name] = f.q.DeepCopy(), true
			}
		}
	}
	return settings, ""
}

// Image reference grammar (github.com/distribution/reference, simplified to what a
// policy needs: no IPv6 registry hosts).
var (
	imageComponent = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	imageDomain    = `(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?`
	imageRefRE     = regexp.MustCompile(`^(?:(` + imageDomain + `)/)?(` + imageComponent + `(?:/` + imageComponent + `)*)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$`)
	imageDomainRE  = regexp.MustCompile(`^` + imageDomain + `$`)
)

// imageRef is a parsed, normalised image reference.
type imageRef struct {
	// name is domain/path, with Docker Hub's defaults filled in (docker.io/library/golang).
	name string
	// tag and digest, when given.
	tag, digest string
}

// parseImage parses an image reference, normalising Docker Hub short names.
func parseImage(ref string) (imageRef, error) {
	m := imageRefRE.FindStringSubmatch(ref)
	if m == nil {
		return imageRef{}, fmt.Errorf("not a valid image reference")
	}
	domain, path := m[1], m[2]
	// As Docker does: the first component is a registry only if it looks like a host.
	if domain != "" && !strings.ContainsAny(domain, ".:") && domain != "localhost" && strings.ToLower(domain) == domain {
		domain, path = "", domain+"/"+path
	}
	if domain == "" {
		domain = "docker.io"
		if !strings.Contains(path, "/") {
			path = "library/" + path
		}
	}
	return imageRef{name: domain + "/" + path, tag: m[3], digest: m[4]}, nil
}

// imageAllowed reports whether an allowedImages entry admits the image: a registry host
// admits every repository on it; a repository admits itself and the repositories under
// it, at a "/" boundary; an entry with a tag or digest admits exactly that image.
func imageAllowed(img imageRef, rule string) bool {
	rule = strings.TrimSuffix(rule, "/")
	if !strings.Contains(rule, "/") && (strings.ContainsAny(rule, ".:") || rule == "localhost") && imageDomainRE.MatchString(rule) {
		return strings.HasPrefix(img.name, rule+"/")
	}
	r, err := parseImage(rule)
	if err != nil {
		return false
	}
	if r.tag != "" || r.digest != "" {
		return img.name == r.name && img.tag == r.tag && img.digest == r.digest
	}
	return img.name == r.name || strings.HasPrefix(img.name, r.name+"/")
}
